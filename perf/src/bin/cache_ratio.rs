//! The packet cache's miss-path target (a miss costs at most 10 % more than
//! the forward path of a pool without a cache) as a ratio measured fairly
//! on a noisy machine: the core's query + answer round trip (DNS-message
//! path, round-robin, 4 backends, the backend's answer one A record) over
//! the same 200 000 distinct names, timed in interleaved rounds (each set
//! once per round, 11 rounds) so that a neighbour's load hits all alike.
//! Prints the median per set and its ratio to the forward path.
//!
//! * `forward`: a pool without a cache;
//! * `miss, turned away`: a full cache (1 024 entries): each answer meets a
//!   full set on its name's first miss and the doorkeeper turns it away
//!   (the long tail of names asked once);
//! * `miss, kept`: a cache with room (1 048 576 entries, made anew before
//!   each round outside the timing; making it writes every entry, so its
//!   pages are mapped): nearly every answer is parsed and copied into an
//!   entry, the full insert.
//!
//! Run: `cargo run --release -p dnsrail-perf --bin cache_ratio`

use dnsrail_core::core::Core;
use dnsrail_core::snapshot::Snapshot;
use dnsrail_core::wire::dns::build_query;
use dnsrail_perf::{answered_roundtrip, bench_client, rig_with_pool};
use std::time::Instant;

const ROUNDS: usize = 11;
const NAMES: usize = 200_000;

struct Set {
    label: &'static str,
    pool: &'static str,
    /// Made anew before every round (a cache that starts empty).
    fresh: bool,
    rig: Option<(Core, Snapshot)>,
    times: Vec<f64>,
    hits: usize,
}

fn rig(pool: &str) -> (Core, Snapshot) {
    let (mut core, snap, _) = rig_with_pool("round-robin", 4, pool);
    core.begin_batch(&snap);
    (core, snap)
}

fn main() {
    let names: Vec<Vec<u8>> = (0..NAMES)
        .map(|i| build_query(7, &format!("m{i}.example.com"), 1))
        .collect();
    let client = bench_client();
    let mut buf = [0u8; 512];
    let mut sets = [
        ("forward", "", false),
        (
            "miss, turned away (full cache)",
            "cache_entries = 1024",
            false,
        ),
        (
            "miss, kept (cache with room)",
            "cache_entries = 1048576",
            true,
        ),
    ]
    .map(|(label, pool, fresh)| Set {
        label,
        pool,
        fresh,
        rig: None,
        times: Vec::with_capacity(ROUNDS),
        hits: 0,
    });
    let mut inserts = 0u64;
    for round in 0..ROUNDS {
        for s in sets.iter_mut() {
            let now = 1_000_000 + round as u64 * 1_000_000_000;
            if s.fresh || s.rig.is_none() {
                // Free the old cache before making the new one. Making a
                // cache writes all of its entries: their pages are mapped
                // before the timing.
                s.rig = None;
                s.rig = Some(rig(s.pool));
            }
            let (core, snap) = s.rig.as_mut().expect("made above");
            let t = Instant::now();
            for q in &names {
                s.hits += answered_roundtrip(core, snap, q, &client, &mut buf, now) as usize;
            }
            s.times.push(t.elapsed().as_nanos() as f64 / NAMES as f64);
            if s.fresh {
                inserts += snap.pools[0]
                    .cache
                    .as_ref()
                    .map_or(0, |c| c.counts.totals().inserts);
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let base = median(&mut sets[0].times);
    println!(
        "| path | ns per query + answer (median of {ROUNDS}) | ratio to forward | spread of the rounds | hits |"
    );
    println!("|---|---|---|---|---|");
    for s in sets.iter_mut() {
        let m = median(&mut s.times);
        let (lo, hi) = (s.times[0], s.times[s.times.len() - 1]);
        println!(
            "| {} | {m:.1} | {:.2} | {lo:.1}–{hi:.1} | {} |",
            s.label,
            m / base,
            s.hits
        );
    }
    println!(
        "\nanswers kept by the cache with room: {:.1} % of its misses",
        100.0 * inserts as f64 / (ROUNDS * NAMES) as f64
    );
}
