//! `spike-load`: end-to-end mTLS load against Nexus, with a bare baseline in the same run.
//!
//! Starts a dev agent, a Nexus (memory and sled backends) and a *bare* server: the same mTLS
//! listener and rustls config, answering every request with the exact bytes Nexus returns for
//! the secret. Clients are real SDK clients with one keep-alive connection each. The ratio
//! Nexus/bare isolates what Nexus itself costs (authz, audit, store, crypto) from TLS and HTTP.
//!
//! Usage: `cargo run --release -p spike-benches --bin spike-load -- [CONNECTIONS] [SECONDS]`
//! (defaults 16 connections, 3 seconds per scenario). Bounded in time and count.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use spike_client::identity::IdentitySource;
use spike_client::{RetryPolicy, Spike};
use spike_core::secret::SecretValues;
use spike_core::shamir;
use spike_server::dev::agent::{DevAgent, DevAgentHandle};
use spike_server::nexus::{self, BackendKind, NexusConfig};

const MAX_REQUESTS_PER_CLIENT: usize = 200_000;

struct Stats {
    label: String,
    requests: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

impl Stats {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

async fn source(agent: &DevAgentHandle, name: &str) -> IdentitySource {
    IdentitySource::workload_api(&agent.endpoint(name).expect("socket"), Duration::from_secs(10))
        .await
        .expect("SVID from the dev agent")
}

async fn clients(agent: &DevAgentHandle, url: &str, n: usize) -> Vec<Spike> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let c = Spike::builder()
            .identity(source(agent, "pilot-superuser").await)
            .url(url)
            .retry(RetryPolicy { attempts: 1, ..RetryPolicy::default() })
            .build()
            .await
            .expect("client");
        out.push(c);
    }
    out
}

#[derive(Clone, Copy)]
enum Op {
    Get,
    Put,
}

async fn run(label: &str, clients: &[Spike], op: Op, secs: u64) -> Stats {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = vec![];
    for (i, c) in clients.iter().enumerate() {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let value = "x".repeat(1024);
            while Instant::now() < deadline && lat.len() < MAX_REQUESTS_PER_CLIENT {
                let t = Instant::now();
                match op {
                    Op::Get => {
                        let v = c.get_secret("bench/one-kib").await.expect("get");
                        assert_eq!(v.get("v").map(str::len), Some(1024));
                    }
                    Op::Put => {
                        let v: SecretValues = [("v", value.as_str())].into_iter().collect();
                        c.put_secret(&format!("bench/put/{i}"), v).await.expect("put");
                    }
                }
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Stats { label: label.into(), requests: all.len(), elapsed, p50: pct(0.50), p99: pct(0.99) }
}

async fn start_nexus(
    agent: &DevAgentHandle,
    dir: &std::path::Path,
    backend: BackendKind,
) -> nexus::RunningNexus {
    let mut config = NexusConfig::dev(dir.to_path_buf());
    config.backend = backend;
    config.rate_limit = None;
    let n = nexus::start(config, source(agent, "nexus").await).await.expect("nexus");
    if backend == BackendKind::Sled {
        let root = shamir::generate_root_key().expect("key");
        n.state().unseal(root).expect("unseal");
    }
    n
}

/// The baseline: same listener and TLS config, fixed answer, no Nexus logic.
async fn start_bare(agent: &DevAgentHandle, body: Vec<u8>) -> std::net::SocketAddr {
    let tls = spike_server::tls::mtls_server(source(agent, "nexus").await)
        .alpn_protocols([b"h2".to_vec(), b"http/1.1".to_vec()])
        .build()
        .expect("tls");
    let listener =
        spike_server::listener::bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let body = Arc::new(body);
    let app = Router::new().route(
        "/v1/store/secrets",
        post(move || {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body.as_ref().clone()) }
        }),
    );
    tokio::spawn(spike_server::listener::serve_mtls(
        listener,
        Arc::new(tls),
        spike_server::listener::Connections::new(Default::default()),
        move |_peer| app.clone(),
        std::future::pending(),
        Duration::from_secs(1),
    ));
    addr
}

fn print(s: &Stats) {
    println!(
        "| {:<24} | {:>8} | {:>9.0} | {:>8.2} | {:>8.2} |",
        s.label,
        s.requests,
        s.rps(),
        s.p50.as_secs_f64() * 1e3,
        s.p99.as_secs_f64() * 1e3
    );
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let conns: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16).clamp(1, 1000);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3).clamp(1, 60);
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = DevAgent::builder()
        .socket_dir(dir.path().join("sockets"))
        .build()
        .expect("agent")
        .serve()
        .await
        .expect("agent");

    let mut results = vec![];
    let mut ratios = vec![];
    for (name, backend) in [("memory", BackendKind::Memory), ("sled", BackendKind::Sled)] {
        let n = start_nexus(&agent, &dir.path().join(name), backend).await;
        let url = format!("https://{}", n.addr());
        let cs = clients(&agent, &url, conns).await;
        let v: SecretValues = [("v", "x".repeat(1024))].into_iter().collect();
        cs[0].put_secret("bench/one-kib", v).await.expect("seed");
        // The exact bytes Nexus answers, for the baseline to return.
        let body = format!(r#"{{"data":{{"v":"{}"}}}}"#, "x".repeat(1024)).into_bytes();
        let bare = start_bare(&agent, body).await;
        let bare_clients = clients(&agent, &format!("https://{bare}"), conns).await;
        let _ = run("warm-up", &cs, Op::Get, 1).await;
        let base = run(&format!("bare GET ({name} run)"), &bare_clients, Op::Get, secs).await;
        let get = run(&format!("nexus {name} GET 1KiB"), &cs, Op::Get, secs).await;
        let put = run(&format!("nexus {name} PUT 1KiB"), &cs, Op::Put, secs).await;
        ratios.push((name, get.rps() / base.rps()));
        results.extend([base, get, put]);
        n.shutdown().await;
    }
    println!("\n{conns} concurrent mTLS keep-alive connections, {secs} s per scenario\n");
    println!("| scenario                 | requests |   req/s   | p50 (ms) | p99 (ms) |");
    println!("|--------------------------|----------|-----------|----------|----------|");
    for r in &results {
        print(r);
    }
    for (name, ratio) in ratios {
        println!("\nGET ratio nexus({name})/bare = {ratio:.2}");
    }
}
