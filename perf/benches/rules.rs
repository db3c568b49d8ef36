//! Core cost per query + answer with 0, 1 000 and 100 000 rules (a realistic
//! mix, none matching the traffic, so every query is checked against the
//! whole set and still forwarded), and the cost of one rule that answers.
//!
//! Run: `cargo bench -p dnsrail-perf --bench rules`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dnsrail_engine::core::{AnswerOutcome, Client, QueryOutcome};
use dnsrail_engine::wire::dns::build_query;
use dnsrail_perf::rig_with_rules;

fn rules(c: &mut Criterion) {
    let mut g = c.benchmark_group("core_query_answer_with_rules");
    g.throughput(Throughput::Elements(1));
    for n in [0usize, 1_000, 100_000] {
        let (mut core, snap, _) = rig_with_rules("round-robin", 4, n);
        core.begin_batch(&snap);
        let names: Vec<Vec<u8>> = (0..1024)
            .map(|i| build_query(7, &format!("www{i}.example.com"), 1))
            .collect();
        let client = Client {
            ip: "198.51.100.7".parse().unwrap(),
            port: 33333,
            mac: [0; 6],
        };
        let mut buf = [0u8; 512];
        let mut i = 0usize;
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                let q = &names[i & 1023];
                i += 1;
                let len = q.len();
                buf[..len].copy_from_slice(q);
                let QueryOutcome::Forward { backend, port, .. } =
                    core.query(&snap, 0, &mut buf, len, &client, 1000, |_| Ok(()))
                else {
                    panic!()
                };
                buf[2] |= 0x80;
                let out = core.answer(&mut buf[..len], port, 2000, |b| b == backend);
                assert!(matches!(out, AnswerOutcome::ToClient { .. }));
                black_box(&buf);
            })
        });
    }
    // A query that an exact-name rule answers (NXDOMAIN) among 100 000.
    let (mut core, snap, _) = rig_with_rules("round-robin", 4, 100_000);
    core.begin_batch(&snap);
    let q = build_query(7, "host12345.blocked.example", 1);
    let client = Client {
        ip: "198.51.100.7".parse().unwrap(),
        port: 33333,
        mac: [0; 6],
    };
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
