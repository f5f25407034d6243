//! Policy evaluation: a `PolicySet` of 10 and of 1,000 policies, worst cases.
//!
//! - `deny_no_match`: no SPIFFE ID pattern matches, so every policy is tried and the
//!   answer is the default deny;
//! - `deny_path_mismatch`: every SPIFFE ID pattern matches but no path pattern does, so both
//!   patterns of every policy run;
//! - `allow_last`: only the last policy matches.
//!
//! Run: `cargo bench -p spike-benches --bench policy`
#![forbid(unsafe_code)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use spike_core::policy::{Permission, Policy, PolicySet, PolicySpec};

fn policies(n: usize, id_pattern: impl Fn(usize) -> String) -> PolicySet {
    let policies: Vec<Policy> = (0..n)
        .map(|i| {
            Policy::create(PolicySpec {
                name: format!("policy-{i}"),
                spiffe_id_pattern: id_pattern(i),
                path_pattern: format!("secrets/app{i}/.*"),
                permissions: vec![Permission::Read, Permission::List],
            })
            .expect("valid policy")
        })
        .collect();
    PolicySet::compile(&policies).expect("valid policies")
}

fn bench_policy(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy_decide");
    for n in [10usize, 1_000] {
        let distinct = policies(n, |i| format!(r"spiffe://spike\.ist/ns/prod/sa/app{i}"));
        let shared = policies(n, |_| r"spiffe://spike\.ist/ns/prod/sa/.*".to_owned());
        let last = n - 1;
        let last_id = format!("spiffe://spike.ist/ns/prod/sa/app{last}");
        let last_path = format!("secrets/app{last}/db/password");
        assert!(distinct.decide(&last_id, &last_path, Permission::Read).is_allowed());

        group.bench_with_input(BenchmarkId::new("deny_no_match", n), &distinct, |b, set| {
            b.iter(|| {
                set.decide(
                    black_box("spiffe://spike.ist/ns/prod/sa/intruder"),
                    black_box("secrets/app0/db/password"),
                    Permission::Read,
                )
            })
        });
        group.bench_with_input(BenchmarkId::new("deny_path_mismatch", n), &shared, |b, set| {
            b.iter(|| {
                set.decide(
                    black_box("spiffe://spike.ist/ns/prod/sa/app0"),
                    black_box("secrets/other/db/password"),
                    Permission::Read,
                )
            })
        });
        group.bench_with_input(BenchmarkId::new("allow_last", n), &distinct, |b, set| {
            b.iter(|| set.decide(black_box(&last_id), black_box(&last_path), Permission::Read))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_policy);
criterion_main!(benches);
