//! `nexus-cost`: what Nexus itself costs per request, without TLS or sockets.
//!
//! A secret GET and PUT (1 KiB) go through Nexus's own router (request decode, policy, store
//! read or durable write, reply, audit line written to a file) on the memory and sled
//! backends; a *bare* router answering the same bytes is timed in the same process, in
//! alternating rounds, so the figures are comparable on a busy machine. One request at a time
//! (the cost per request, not concurrency), then `WRITERS` concurrent PUTs on sled to show how
//! writers share flushes.
//!
//! Usage: `cargo run --release -p spike-benches --bin nexus-cost -- [ROUNDS]` (default 5 rounds
//! of 2,000 requests per scenario). Bounded in count. Two investigation modes:
//! `NEXUS_COST_PROFILE_GET=1` runs 100,000 memory GETs only (for `perf record`), and
//! `NEXUS_COST_SLED_RSS=N` (with `NEXUS_COST_SLED_MIB`, default 64) puts N secrets straight into
//! a sled store from 16 threads, printing this process's RSS every 20,000.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use axum::routing::post;
use spike_core::path::SecretPath;
use spike_core::secret::{RootKey, SecretValues};
use spike_core::store::PutOptions;
use spike_server::nexus::state::NexusState;
use spike_server::nexus::{BackendKind, Caller, NexusConfig, router};
use tower::ServiceExt;

const SUPERUSER: &str = "spiffe://spike.ist/spike/pilot/role/superuser";
const PER_ROUND: usize = 2_000;
const WRITERS: usize = 16;
const PUTS_PER_WRITER: usize = 200;

fn request(action: &str, body: String) -> Request<Body> {
    let mut req = Request::builder()
        .method("POST")
        .uri(if action == "put" {
            "/v1/store/secrets".to_owned()
        } else {
            format!("/v1/store/secrets?action={action}")
        })
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("request");
    req.extensions_mut().insert(Caller(Arc::from(SUPERUSER)));
    req
}

fn get_body() -> String {
    r#"{"path":"bench/one-kib"}"#.to_owned()
}

fn put_body(path: &str) -> String {
    format!(r#"{{"path":"{path}","values":{{"v":"{}"}}}}"#, "x".repeat(1024))
}

async fn call(app: &axum::Router, req: Request<Body>) {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
    assert_eq!(status, 200, "request failed: {}", String::from_utf8_lossy(&body));
}

fn nexus(dir: &std::path::Path, backend: BackendKind) -> axum::Router {
    let mut config = NexusConfig::dev(dir.to_path_buf());
    config.backend = backend;
    if let Ok(d) = std::env::var("NEXUS_COST_AUDIT_DIR") {
        config.audit = spike_server::nexus::AuditSink::File(
            std::path::Path::new(&d).join(format!("{}-audit.log", std::process::id())),
        );
    }
    let state = NexusState::open(config).expect("nexus state");
    if !state.is_ready() {
        state.unseal(RootKey::generate().expect("OS RNG")).expect("unseal");
    }
    let values: SecretValues = [("v", "x".repeat(1024))].into_iter().collect();
    let unsealed = state.unsealed().expect("unsealed");
    let path = SecretPath::parse("bench/one-kib").expect("path");
    unsealed.vault().secrets().put(&path, &values, &PutOptions::new()).expect("seed");
    router(state)
}

fn bare() -> axum::Router {
    let body = format!(r#"{{"data":{{"v":"{}"}}}}"#, "x".repeat(1024));
    axum::Router::new().route(
        "/v1/store/secrets",
        post(move || {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    )
}

/// Mean time per request of `n` sequential requests made by `make`.
async fn time(app: &axum::Router, n: usize, make: impl Fn(usize) -> Request<Body>) -> Duration {
    let started = Instant::now();
    for i in 0..n {
        call(app, make(i)).await;
    }
    started.elapsed() / n as u32
}

/// Requests per second of `WRITERS` concurrent writers, each on its own path.
async fn concurrent_puts(app: &axum::Router) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let app = app.clone();
            tokio::spawn(async move {
                for _ in 0..PUTS_PER_WRITER {
                    call(&app, request("put", put_body(&format!("bench/w/{w}")))).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    (WRITERS * PUTS_PER_WRITER) as f64 / started.elapsed().as_secs_f64()
}

/// The store alone (no HTTP): `WRITERS` threads putting to their own paths on sled; the
/// rate, and how many writes each `fsync` covered.
fn store_puts(dir: &std::path::Path) -> (f64, spike_core::store::FlushStats) {
    use spike_core::store::{SledBackend, Vault};
    let sled = Arc::new(SledBackend::open(dir).expect("sled"));
    let vault =
        Arc::new(Vault::open(sled.clone(), &RootKey::generate().expect("rng")).expect("vault"));
    let before = sled.stats();
    let started = Instant::now();
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let vault = vault.clone();
            std::thread::spawn(move || {
                let path = SecretPath::parse(&format!("bench/t/{w}")).expect("path");
                let values: SecretValues = [("v", "x".repeat(1024))].into_iter().collect();
                for _ in 0..PUTS_PER_WRITER {
                    vault.secrets().put(&path, &values, &PutOptions::new()).expect("put");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer");
    }
    let rate = (WRITERS * PUTS_PER_WRITER) as f64 / started.elapsed().as_secs_f64();
    let after = sled.stats();
    (
        rate,
        spike_core::store::FlushStats {
            writes: after.writes - before.writes,
            flushes: after.flushes - before.flushes,
            replayed: after.replayed,
        },
    )
}

/// Investigation aid: RSS of this process while `n` secrets go into a sled store directly.
fn sled_rss(dir: &std::path::Path, n: usize) {
    use spike_core::store::{SledBackend, Vault};
    let mib =
        std::env::var("NEXUS_COST_SLED_MIB").ok().and_then(|m| m.parse::<u64>().ok()).unwrap_or(64);
    let sled = Arc::new(SledBackend::open_with_cache(dir, mib << 20).expect("sled"));
    let vault = Arc::new(Vault::open(sled, &RootKey::generate().expect("rng")).expect("vault"));
    let threads: Vec<_> = (0..16)
        .map(|w| {
            let vault = vault.clone();
            std::thread::spawn(move || {
                for i in (w..n).step_by(16) {
                    let path = SecretPath::parse(&format!("scale/s{i:08}")).expect("path");
                    let values: SecretValues = [(
                        "v",
                        format!("{i:08}-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
                    )]
                    .into_iter()
                    .collect();
                    vault.secrets().put(&path, &values, &PutOptions::new()).expect("put");
                    if w == 0 && i % 20_000 == 0 {
                        let rss = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
                        let rss =
                            rss.lines().find(|l| l.starts_with("VmRSS")).unwrap_or("").to_owned();
                        println!("{i}: {rss}");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer");
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let rounds: usize =
        std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5).clamp(1, 50);
    let dir = tempfile::tempdir().expect("tempdir");
    let bare = bare();
    let memory = nexus(&dir.path().join("memory"), BackendKind::Memory);
    let sled = nexus(&dir.path().join("sled"), BackendKind::Sled);
    let apps = [("bare", &bare), ("memory", &memory), ("sled", &sled)];
    if let Some(n) = std::env::var("NEXUS_COST_SLED_RSS").ok().and_then(|n| n.parse::<usize>().ok())
    {
        sled_rss(&dir.path().join("rss"), n);
        return;
    }
    if std::env::var_os("NEXUS_COST_PROFILE_GET").is_some() {
        time(&memory, 100_000, |_| request("get", get_body())).await;
        return;
    }
    let mut gets: Vec<Vec<Duration>> = vec![vec![]; 3];
    let mut puts: Vec<Vec<Duration>> = vec![vec![]; 3];
    // Warm-up.
    for (_, app) in &apps {
        time(app, 200, |_| request("get", get_body())).await;
    }
    for _ in 0..rounds {
        for (i, (_, app)) in apps.iter().enumerate() {
            gets[i].push(time(app, PER_ROUND, |_| request("get", get_body())).await);
        }
        for (i, (_, app)) in apps.iter().enumerate().skip(1) {
            let n = if i == 2 { PER_ROUND / 10 } else { PER_ROUND };
            puts[i]
                .push(time(app, n, |k| request("put", put_body(&format!("p/{}", k % 50)))).await);
        }
    }
    println!("\nNexus's own cost per request (no TLS), median of {rounds} rounds\n");
    println!("| scenario | GET µs | GET ratio bare/this | PUT µs (one writer) |");
    println!("|---|---|---|---|");
    let bare_get = median(gets[0].clone());
    for (i, (name, _)) in apps.iter().enumerate() {
        let get = median(gets[i].clone());
        let put =
            if i == 0 { "-".to_owned() } else { format!("{:.1}", us(median(puts[i].clone()))) };
        println!(
            "| {name} | {:.1} | {:.2} | {put} |",
            us(get),
            bare_get.as_secs_f64() / get.as_secs_f64()
        );
    }
    let (store_rate, stats) = store_puts(&dir.path().join("store-only"));
    println!(
        "\nstore only, {WRITERS} threads: {store_rate:.0} PUT/s on sled, {} writes in {} flushes",
        stats.writes, stats.flushes
    );
    let mem_rate = concurrent_puts(&memory).await;
    let sled_rate = concurrent_puts(&sled).await;
    println!(
        "\n{WRITERS} concurrent writers, {PUTS_PER_WRITER} PUTs each: memory {mem_rate:.0}/s, \
         sled {sled_rate:.0}/s (flushed before each ack)"
    );
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
