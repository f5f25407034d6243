//! Shared by the tests that drive the C library from other languages: an in-process SPIKE
//! system (a real spike-dev-agent over Unix sockets and a real Nexus over mTLS on 127.0.0.1,
//! memory backend, with its JWT-SVID listener on too) and the location of the built
//! `libspike_ffi` artifacts.
//!
//! The system runs on its own tokio runtime, so the test thread is free to block on child
//! processes (the C programs, pytest) that talk to it.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use spike_client::identity::IdentitySource;
use spike_server::dev::agent::{DevAgent, DevAgentHandle, RegistrationEntry};
use spike_server::nexus::config::{DEFAULT_JWT_AUDIENCE, JwtBundleSource, JwtListenerConfig};
use spike_server::nexus::{self, BackendKind, NexusConfig, RunningNexus};

/// A workload with no policy: everything it asks for is forbidden.
pub const APP_ID: &str = "spiffe://spike.ist/workload/app";

/// The audience Nexus's JWT-SVID listener accepts (Nexus's default).
pub const JWT_AUDIENCE: &str = DEFAULT_JWT_AUDIENCE;

/// A running agent and Nexus; stopped on drop.
pub struct System {
    rt: tokio::runtime::Runtime,
    agent: Option<DevAgentHandle>,
    nexus: Option<RunningNexus>,
    _dir: tempfile::TempDir,
}

impl System {
    pub fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (agent, nexus) = rt.block_on(async {
            let agent = DevAgent::builder()
                .socket_dir(dir.path().join("sockets"))
                .svid_ttl(Duration::from_secs(3600))
                .entry(RegistrationEntry::new("app", APP_ID).unwrap())
                .build()
                .unwrap()
                .serve()
                .await
                .unwrap();
            let source = IdentitySource::workload_api(
                &agent.endpoint("nexus").unwrap(),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
            let mut config = NexusConfig::dev(dir.path().join("nexus"));
            config.backend = BackendKind::Memory;
            // The JWT-SVID listener, with the trust domain's JWT keys streamed from the agent
            // (as `spike dev` runs it).
            config.jwt = Some(JwtListenerConfig {
                listen: ([127, 0, 0, 1], 0).into(),
                audience: JWT_AUDIENCE.to_owned(),
                bundles: JwtBundleSource::WorkloadApi(agent.endpoint("nexus").unwrap()),
            });
            let nexus = nexus::start(config, source).await.unwrap();
            (agent, nexus)
        });
        Self { rt, agent: Some(agent), nexus: Some(nexus), _dir: dir }
    }

    /// The Workload API endpoint (`unix:///...`) that hands out identity `name`
    /// (`pilot-superuser`, `app`, `lite-workload`, ...).
    pub fn endpoint(&self, name: &str) -> String {
        self.agent.as_ref().unwrap().endpoint(name).unwrap()
    }

    /// Nexus's URL.
    pub fn url(&self) -> String {
        format!("https://{}", self.nexus.as_ref().unwrap().addr())
    }

    /// The URL of Nexus's JWT-SVID listener (what `spike dev` exports as
    /// `SPIKE_NEXUS_JWT_API_URL`).
    pub fn jwt_url(&self) -> String {
        let addr = self.nexus.as_ref().unwrap().jwt_addr().expect("the JWT listener is on");
        format!("https://{addr}")
    }
}

impl Drop for System {
    fn drop(&mut self) {
        let (agent, nexus) = (self.agent.take(), self.nexus.take());
        self.rt.block_on(async {
            if let Some(n) = nexus {
                n.shutdown().await;
            }
            if let Some(a) = agent {
                a.shutdown().await;
            }
        });
    }
}

/// An https URL on which nothing listens (a port just released by the OS).
pub fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("https://127.0.0.1:{port}")
}

/// A private copy of the built `libspike_ffi.so` and `libspike_ffi.a`, or `SPIKE_FFI_LIB_DIR`.
///
/// The copy is taken once per test binary, so another cargo process relinking the library in
/// the shared target directory cannot change it under a running program.
pub fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("SPIKE_FFI_LIB_DIR") {
            return PathBuf::from(dir);
        }
        let built = built_lib_dir();
        let exe = std::env::current_exe().unwrap();
        let stem = exe.file_stem().unwrap().to_string_lossy();
        let test = stem.split('-').next().unwrap_or("test");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("spike-ffi-lib-{test}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["libspike_ffi.so", "libspike_ffi.a"] {
            std::fs::copy(built.join(name), dir.join(name)).unwrap();
        }
        dir
    })
}

/// Where cargo put the library: the `deps` directory this test binary was built into. `cargo
/// test` builds the crate's lib target with all its crate types there, under unhashed names;
/// the copies one level up are only refreshed by `cargo build` and may be stale.
fn built_lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    for dir in [deps, deps.parent().unwrap()] {
        if dir.join("libspike_ffi.so").exists() && dir.join("libspike_ffi.a").exists() {
            return dir.to_path_buf();
        }
    }
    panic!("libspike_ffi.so/.a not found next to {}; set SPIKE_FFI_LIB_DIR", exe.display());
}

/// The crate's directory (`ffi/`).
pub fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}
