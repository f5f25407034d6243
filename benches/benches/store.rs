//! The versioned secret store: put and get of a 1 KiB secret on the memory and sled backends.
//!
//! Run: `cargo bench -p spike-benches --bench store`. A sled put includes the `fsync` that
//! makes it durable (one writer here, so no flush is shared), so it measures the disk.
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use spike_core::path::SecretPath;
use spike_core::secret::{RootKey, SecretValues};
use spike_core::store::{Backend, MemoryBackend, PutOptions, SledBackend, Vault};

const SECRET_LEN: usize = 1024;

fn secret() -> SecretValues {
    // Printable, deterministic 1 KiB value under one key.
    let value: String = (0..SECRET_LEN).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    [("value", value)].into_iter().collect()
}

fn bench_backend(c: &mut Criterion, name: &str, backend: Arc<dyn Backend>) {
    let root = RootKey::generate().expect("OS RNG");
    let vault = Vault::open(backend, &root).expect("open store");
    let store = vault.secrets();
    let path = SecretPath::parse("bench/app/db").expect("valid path");
    let values = secret();
    let options = PutOptions::new();
    // Fill past the version limit, so puts measure the steady state (including pruning).
    for _ in 0..12 {
        store.put(&path, &values, &options).expect("put");
    }

    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Bytes(SECRET_LEN as u64));
    if name == "sled" {
        group.sample_size(20).measurement_time(Duration::from_secs(10));
    }
    group.bench_function(BenchmarkId::new("put_1KiB", name), |b| {
        b.iter(|| store.put(black_box(&path), black_box(&values), &options).expect("put"))
    });
    group.bench_function(BenchmarkId::new("get_1KiB", name), |b| {
        b.iter(|| store.get(black_box(&path), None).expect("get"))
    });
    group.finish();
}

fn bench_store(c: &mut Criterion) {
    bench_backend(c, "memory", Arc::new(MemoryBackend::new()));
    let dir = tempfile::tempdir().expect("temporary directory");
    let sled = SledBackend::open(dir.path()).expect("open sled");
    bench_backend(c, "sled", Arc::new(sled));
}

criterion_group!(benches, bench_store);
criterion_main!(benches);
