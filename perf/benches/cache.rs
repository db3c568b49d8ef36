//! The packet cache's cost, one core, no I/O (DNS-message path,
//! round-robin, 4 backends):
//!
//! * `hit`: a query answered from the cache (1 024 names, all cached);
//! * `miss`: a query that misses, is forwarded, and whose answer (one A
//!   record) is offered to the cache — names never repeat within the cache's
//!   reach (65 536 names over 1 024 entries);
//! * `forward`: the same round trip in a pool without a cache, the base
//!   the miss is compared with.
//!
//! Run: `cargo bench -p dnsrail-perf --bench cache`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use dnsrail_core::wire::dns::build_query;
use dnsrail_perf::{answered_roundtrip, bench_client, bench_queries, rig_with_pool};

fn cache(c: &mut Criterion) {
    let mut g = c.benchmark_group("core_cache");
    g.throughput(Throughput::Elements(1));
    let client = bench_client();
    let mut buf = [0u8; 512];

    let (mut core, snap, _) = rig_with_pool("round-robin", 4, "cache_entries = 4096");
    core.begin_batch(&snap);
    let names = bench_queries();
    for q in &names {
        answered_roundtrip(&mut core, &snap, q, &client, &mut buf, 1_000);
    }
    let mut i = 0usize;
    g.bench_function("hit", |b| {
        b.iter(|| {
            let hit =
                answered_roundtrip(&mut core, &snap, &names[i & 1023], &client, &mut buf, 2_000);
            debug_assert!(hit);
            i += 1;
            black_box(&buf);
        })
    });

    let many: Vec<Vec<u8>> = (0..65_536)
        .map(|i| build_query(7, &format!("m{i}.example.com"), 1))
        .collect();
    // The same never-repeating names with a full cache, then without one.
    for (name, pool) in [("miss", "cache_entries = 1024"), ("forward", "")] {
        let (mut core, snap, _) = rig_with_pool("round-robin", 4, pool);
        core.begin_batch(&snap);
        let mut i = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                let q = &many[i & 65_535];
                answered_roundtrip(&mut core, &snap, q, &client, &mut buf, 2_000);
                i += 1;
                black_box(&buf);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, cache);
criterion_main!(benches);
