//! py-spiffe (PyPI `spiffe`, an independent Workload API client) against Nexus's JWT-SVID
//! listener (issue 17): the dev agent and Nexus run in-process; the Python script
//! `tests/interop/python/jwt_svid_nexus.py` fetches a JWT-SVID from the agent with py-spiffe,
//! validates it against the agent's JWT bundle, and calls the listener with Python's own
//! `ssl` and `urllib` (raw HTTPS, `Authorization: Bearer`). No SPIKE code on the client side.
//!
//! Runs when `SPIKE_TEST_PYTHON` names an interpreter with py-spiffe (CI's venv has
//! `spiffe==0.3.2`); skipped with a message otherwise, like the agent's X.509 interop test.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use spike_client::Spike;
use spike_core::policy::Permission;
use spike_server::dev::agent::{DevAgent, RegistrationEntry};
use spike_server::nexus::config::{DEFAULT_JWT_AUDIENCE, JwtBundleSource, JwtListenerConfig};
use spike_server::nexus::{self, BackendKind, NexusConfig};

const APP: &str = "spiffe://spike.ist/apps/py";
const NEXUS: &str = "spiffe://spike.ist/spike/nexus";
const CANARY: &str = "py-spiffe-jwt-5521";

#[test]
fn py_spiffe_jwt_svids_read_through_nexus_jwt_listener_and_tampered_ones_are_refused() {
    let Some(python) = std::env::var_os("SPIKE_TEST_PYTHON") else {
        eprintln!("SPIKE_TEST_PYTHON unset: skipping the py-spiffe JWT-SVID interop check");
        return;
    };
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/python/jwt_svid_nexus.py");
    let dir = tempfile::tempdir().unwrap();
    // Its own runtime, so this thread is free to wait for the Python process.
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (agent, nexus, app_socket, jwt_url) = rt.block_on(async {
        let agent = DevAgent::builder()
            .socket_dir(dir.path().join("sockets"))
            .svid_ttl(Duration::from_secs(3600))
            .entry(RegistrationEntry::new("py", APP).unwrap())
            .build()
            .unwrap()
            .serve()
            .await
            .unwrap();
        let source = spike_client::identity::IdentitySource::workload_api(
            &agent.endpoint("nexus").unwrap(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        let mut config = NexusConfig::dev(dir.path().join("nexus"));
        config.backend = BackendKind::Memory;
        config.jwt = Some(JwtListenerConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            audience: DEFAULT_JWT_AUDIENCE.to_owned(),
            bundles: JwtBundleSource::WorkloadApi(agent.endpoint("nexus").unwrap()),
        });
        let nexus = nexus::start(config, source).await.unwrap();
        let jwt_url = format!("https://{}", nexus.jwt_addr().expect("JWT listener on"));

        // The Pilot superuser, over mTLS: two secrets, read granted on apps/py/ only.
        let admin = Spike::builder()
            .socket(agent.endpoint("pilot-superuser").unwrap())
            .url(format!("https://{}", nexus.addr()))
            .nexus_id(NEXUS)
            .build()
            .await
            .unwrap();
        admin.put_secret("apps/py/db", [("pass", CANARY)].into_iter().collect()).await.unwrap();
        admin.put_secret("apps/other/db", [("pass", "other")].into_iter().collect()).await.unwrap();
        admin
            .create_policy(
                "py-read",
                r"^spiffe://spike\.ist/apps/py$",
                r"^apps/py/.*$",
                &[Permission::Read],
            )
            .await
            .unwrap();
        drop(admin);
        let app_socket = agent.endpoint("py").unwrap();
        (agent, nexus, app_socket, jwt_url)
    });

    let out = Command::new(&python)
        .arg(&script)
        .args(["--socket", &app_socket, "--url", &jwt_url])
        .args(["--audience", DEFAULT_JWT_AUDIENCE])
        .args(["--path", "apps/py/db", "--denied-path", "apps/other/db", "--key", "pass"])
        .args(["--timeout", "10"])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("SPIFFE_ENDPOINT_SOCKET")
        .output()
        .expect("run the py-spiffe JWT-SVID script");
    rt.block_on(async {
        nexus.shutdown().await;
        agent.shutdown().await;
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "py-spiffe script failed:\n{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            format!("svid {APP}"),
            format!("validated {APP}"),
            format!("granted 200 {CANARY}"),
            "ungranted 401".to_owned(),
            "tampered 401".to_owned(),
            "no-token 401".to_owned(),
        ],
        "stderr: {stderr}"
    );
}
