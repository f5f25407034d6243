//! `spike-load`: end-to-end mTLS load against Nexus, with a bare baseline in the same run.
//!
//! Starts a dev agent, a Nexus (memory and sled backends) and a *bare* server: the same mTLS
//! listener and rustls config, answering every request with the exact bytes Nexus returns for
//! the secret. Clients are real SDK clients with one keep-alive connection each. The ratio
//! Nexus/bare isolates what Nexus itself costs (authz, audit, store, crypto) from TLS and HTTP.
//!
//! Usage: `cargo run --release -p spike-benches --bin spike-load -- [--new-conn] [CONNECTIONS]
//! [SECONDS]` (defaults 16 connections, 3 seconds per scenario). Bounded in time and count.
//!
//! `--new-conn` (issue 15): every GET opens a new TCP + TLS connection (the SDK keeps no idle
//! connection), as SPIKE's Go SDK does; CONNECTIONS is then the number of concurrent callers.
//! Only GETs against the memory backend and the bare baseline run, each twice: with the SDK's
//! default (TLS 1.3 session resumption) and with a full mTLS handshake per connection
//! (`session_resumption(false)`), so the ratio is measured within one run. The bare server's
//! counts of accepted and resumed connections show each request had its own connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use spike_client::identity::IdentitySource;
use spike_client::{RetryPolicy, Spike};
use spike_core::secret::SecretValues;
use spike_core::shamir;
use spike_server::dev::agent::{DevAgent, DevAgentHandle};
use spike_server::listener::TlsListener;
use spike_server::nexus::{self, BackendKind, NexusConfig};

const MAX_REQUESTS_PER_CLIENT: usize = 200_000;

struct Stats {
    label: String,
    requests: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    /// CPU time this process (clients and servers together) spent during the scenario.
    cpu: Duration,
}

/// CPU time (user + system) this process has used so far, from `/proc/self/stat`.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; the kernel
    // counts them in USER_HZ, 100 on Linux.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
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

/// How clients use connections.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One keep-alive connection per client.
    KeepAlive,
    /// A new connection for every request, resuming TLS sessions (the SDK's default).
    NewConnection,
    /// A new connection for every request, each with a full mTLS handshake.
    NewConnectionFullHandshake,
}

async fn clients(agent: &DevAgentHandle, url: &str, n: usize, mode: Mode) -> Vec<Spike> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut builder = Spike::builder()
            .identity(source(agent, "pilot-superuser").await)
            .url(url)
            .retry(RetryPolicy { attempts: 1, ..RetryPolicy::default() });
        if mode != Mode::KeepAlive {
            builder = builder.max_idle_connections(0);
        }
        if mode == Mode::NewConnectionFullHandshake {
            builder = builder.session_resumption(false);
        }
        out.push(builder.build().await.expect("client"));
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
    let cpu_before = process_cpu();
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
    let cpu = process_cpu().saturating_sub(cpu_before);
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Stats { label: label.into(), requests: all.len(), elapsed, p50: pct(0.50), p99: pct(0.99), cpu }
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
async fn start_bare(
    agent: &DevAgentHandle,
    body: Vec<u8>,
) -> (std::net::SocketAddr, Arc<spike_server::listener::Connections>) {
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
    let connections = spike_server::listener::Connections::new(Default::default());
    let listener =
        TlsListener::new(listener, Arc::new(tls), connections.clone(), Duration::from_secs(1));
    tokio::spawn(listener.serve_mtls(move |_peer| app.clone(), std::future::pending()));
    (addr, connections)
}

fn print(s: &Stats) {
    println!(
        "| {:<32} | {:>8} | {:>9.0} | {:>8.2} | {:>8.2} | {:>11.0} |",
        s.label,
        s.requests,
        s.rps(),
        s.p50.as_secs_f64() * 1e3,
        s.p99.as_secs_f64() * 1e3,
        s.cpu.as_secs_f64() * 1e6 / s.requests.max(1) as f64
    );
}

#[tokio::main]
async fn main() {
    let (flags, numbers): (Vec<String>, Vec<String>) =
        std::env::args().skip(1).partition(|a| a.starts_with("--"));
    let mode = match flags.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] => Mode::KeepAlive,
        ["--new-conn"] => Mode::NewConnection,
        other => {
            eprintln!(
                "unknown flags {other:?}; usage: spike-load [--new-conn] [CONNECTIONS] [SECONDS]"
            );
            std::process::exit(2);
        }
    };
    let mut args = numbers.into_iter();
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
    let mut notes = vec![];
    let backends: &[(&str, BackendKind)] = match mode {
        Mode::KeepAlive => &[("memory", BackendKind::Memory), ("sled", BackendKind::Sled)],
        Mode::NewConnection | Mode::NewConnectionFullHandshake => {
            &[("memory", BackendKind::Memory)]
        }
    };
    for &(name, backend) in backends {
        let n = start_nexus(&agent, &dir.path().join(name), backend).await;
        let url = format!("https://{}", n.addr());
        let cs = clients(&agent, &url, conns, mode).await;
        let v: SecretValues = [("v", "x".repeat(1024))].into_iter().collect();
        cs[0].put_secret("bench/one-kib", v).await.expect("seed");
        // The exact bytes Nexus answers, for the baseline to return.
        let body = format!(r#"{{"data":{{"v":"{}"}}}}"#, "x".repeat(1024)).into_bytes();
        let (bare, bare_connections) = start_bare(&agent, body).await;
        let bare_clients = clients(&agent, &format!("https://{bare}"), conns, mode).await;
        let _ = run("warm-up", &cs, Op::Get, 1).await;
        match mode {
            Mode::KeepAlive => {
                let base =
                    run(&format!("bare GET ({name} run)"), &bare_clients, Op::Get, secs).await;
                let get = run(&format!("nexus {name} GET 1KiB"), &cs, Op::Get, secs).await;
                let put = run(&format!("nexus {name} PUT 1KiB"), &cs, Op::Put, secs).await;
                ratios.push((name, get.rps() / base.rps()));
                results.extend([base, get, put]);
            }
            Mode::NewConnection | Mode::NewConnectionFullHandshake => {
                let full = Mode::NewConnectionFullHandshake;
                let bare_full = clients(&agent, &format!("https://{bare}"), conns, full).await;
                let cs_full = clients(&agent, &url, conns, full).await;
                let before = bare_connections.snapshot();
                let base_full = run("bare GET, new conn, full", &bare_full, Op::Get, secs).await;
                let base = run("bare GET, new conn", &bare_clients, Op::Get, secs).await;
                let after = bare_connections.snapshot();
                notes.push(format!(
                    "bare server: {} connections accepted for {} requests, {} of them resumed",
                    after.accepted - before.accepted,
                    base_full.requests + base.requests,
                    after.tls_resumed - before.tls_resumed,
                ));
                let get_full =
                    run(&format!("nexus {name} GET, new conn, full"), &cs_full, Op::Get, secs)
                        .await;
                let get = run(&format!("nexus {name} GET, new conn"), &cs, Op::Get, secs).await;
                ratios.push((name, get.rps() / base.rps()));
                notes.push(format!(
                    "resumed/full: bare {:.2}, nexus({name}) {:.2}",
                    base.rps() / base_full.rps(),
                    get.rps() / get_full.rps()
                ));
                results.extend([base_full, base, get_full, get]);
            }
        }
        n.shutdown().await;
    }
    match mode {
        Mode::KeepAlive => {
            println!("\n{conns} concurrent mTLS keep-alive connections, {secs} s per scenario\n")
        }
        Mode::NewConnection | Mode::NewConnectionFullHandshake => println!(
            "\n{conns} concurrent callers, a new mTLS connection per request, {secs} s per scenario\n"
        ),
    }
    println!(
        "| scenario                         | requests |   req/s   | p50 (ms) | p99 (ms) | CPU µs/req |"
    );
    println!(
        "|----------------------------------|----------|-----------|----------|----------|------------|"
    );
    for r in &results {
        print(r);
    }
    for (name, ratio) in ratios {
        println!("\nGET ratio nexus({name})/bare = {ratio:.2}");
    }
    for note in notes {
        println!("{note}");
    }
}
