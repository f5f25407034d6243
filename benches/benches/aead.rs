//! AES-256-GCM-SIV record sealing and opening, as every stored record goes through it.
//!
//! Run: `cargo bench -p spike-benches --bench aead` (throughput is reported in bytes/s, so
//! criterion prints GiB/s for the larger sizes).
#![forbid(unsafe_code)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use spike_benches::payload;
use spike_core::crypto::aead::{self, Aad, RecordKind};
use spike_core::secret::DataKey;

const SIZES: [(usize, &str); 3] = [(64, "64B"), (1024, "1KiB"), (64 * 1024, "64KiB")];

fn bench_aead(c: &mut Criterion) {
    let key = DataKey::generate().expect("OS RNG");
    let aad = Aad::new(RecordKind::SecretVersion, "bench/app/db/password", 7);

    let mut group = c.benchmark_group("aead");
    for (len, label) in SIZES {
        let plaintext = payload(len);
        let record = aead::seal(&key, 1, &aad, &plaintext).expect("seal");
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("seal", label), &plaintext, |b, pt| {
            b.iter(|| aead::seal(&key, 1, black_box(&aad), black_box(pt)).expect("seal"))
        });
        group.bench_with_input(BenchmarkId::new("open", label), &record, |b, rec| {
            b.iter(|| aead::open(&key, black_box(&aad), black_box(rec)).expect("open"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_aead);
criterion_main!(benches);
