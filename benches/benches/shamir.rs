//! Shamir split and recombination of the root key (P-256 scalar field, vsss-rs).
//!
//! Run: `cargo bench -p spike-benches --bench shamir`
#![forbid(unsafe_code)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use spike_core::shamir;

fn bench_shamir(c: &mut Criterion) {
    let key = shamir::generate_root_key().expect("OS RNG");
    let kcv = shamir::key_check_value(&key);
    let shares = shamir::split(&key, 3, 5).expect("valid parameters");

    let mut group = c.benchmark_group("shamir");
    group.bench_function("split_3_of_5", |b| {
        b.iter(|| shamir::split(black_box(&key), 3, 5).expect("split"))
    });
    group.bench_function("combine_3_of_5", |b| {
        b.iter(|| shamir::combine(black_box(&shares[2..]), 3).expect("combine"))
    });
    group.bench_function("combine_verified_3_of_5", |b| {
        b.iter(|| shamir::combine_verified(black_box(&shares[..3]), 3, &kcv).expect("combine"))
    });
    group.bench_function("split_then_combine_3_of_5", |b| {
        b.iter(|| {
            let shares = shamir::split(black_box(&key), 3, 5).expect("split");
            shamir::combine_verified(&shares[1..4], 3, &kcv).expect("combine")
        })
    });
    group.finish();
}

criterion_group!(benches, bench_shamir);
criterion_main!(benches);
