//! Core cost per query + answer with 0, 1 000 and 100 000 rules (a realistic
//! mix, none matching the traffic, so every query is checked against the
//! whole set and still forwarded), and the cost of one rule that answers.
//!
//! Run: `cargo bench -p dnsrail-perf --bench rules`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dnsrail_core::core::QueryOutcome;
use dnsrail_core::wire::dns::build_query;
use dnsrail_perf::{bench_client, bench_queries, dgram_roundtrip, rig_with_rules};

fn rules(c: &mut Criterion) {
    let mut g = c.benchmark_group("core_query_answer_with_rules");
    g.throughput(Throughput::Elements(1));
    for n in [0usize, 1_000, 100_000] {
        let (mut core, snap, _) = rig_with_rules("round-robin", 4, n);
        core.begin_batch(&snap);
        let (names, client) = (bench_queries(), bench_client());
        let mut buf = [0u8; 512];
        let mut i = 0usize;
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                dgram_roundtrip(&mut core, &snap, &names[i & 1023], &client, &mut buf);
                i += 1;
                black_box(&buf);
            })
        });
    }
    // A query that an exact-name rule answers (NXDOMAIN) among 100 000.
    let (mut core, snap, _) = rig_with_rules("round-robin", 4, 100_000);
    core.begin_batch(&snap);
    let q = build_query(7, "host12345.blocked.example", 1);
    let client = bench_client();
    let mut buf = [0u8; 512];
    g.bench_function("100000_answered_by_rule", |b| {
        b.iter(|| {
            buf[..q.len()].copy_from_slice(&q);
            let out = core.query(&snap, 0, &mut buf, q.len(), &client, 1000, |_| Ok(()));
            assert!(matches!(out, QueryOutcome::Reply { .. }));
            black_box(&buf);
        })
    });
    g.finish();
}

criterion_group!(benches, rules);
criterion_main!(benches);
