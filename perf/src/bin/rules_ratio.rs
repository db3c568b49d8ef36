//! The rules target as a ratio measured fairly on a noisy machine: the core's
//! query + answer round trip with 0, 1 000 and 100 000 rules (the criterion
//! bench's mix), and with each kind of the 100 000 alone, timed in
//! interleaved rounds — every set once per round, 15 rounds — so that a
//! neighbour's load hits all of them alike. Prints the median per set and
//! its ratio to 0 rules. The last two rows repeat 0 and 100 000 rules over
//! 262 144 distinct names instead of 1 024, so that the name table's slots
//! (4 MiB) do not stay in cache.
//!
//! Run: `cargo run --release -p dnsrail-perf --bin rules_ratio`

use dnsrail_perf::{bench_client, bench_queries, dgram_roundtrip, rig_with_rules_text, rules_text};
use std::time::Instant;

const ROUNDS: usize = 15;
const PER_ROUND: usize = 300_000;

fn main() {
    let mix: Vec<String> = rules_text(100_000)
        .split("[[rule]]")
        .filter(|r| !r.is_empty())
        .map(|r| format!("[[rule]]{r}"))
        .collect();
    let only = |f: &dyn Fn(&str) -> bool| mix.iter().filter(|r| f(r)).cloned().collect::<String>();
    let many: Vec<Vec<u8>> = (0..262_144)
        .map(|i| dnsrail_core::wire::dns::build_query(7, &format!("n{i}.example.org"), 1))
        .collect();
    let sets = [
        ("0 rules", String::new()),
        ("1 000 (mix)", rules_text(1_000)),
        ("100 000 (mix)", rules_text(100_000)),
        (
            "names only (exact + suffix of the mix)",
            only(&|r| r.contains("match = { name") || r.contains("match = { suffix")),
        ),
        ("prefixes only", only(&|r| r.contains("match = { source"))),
        ("regexes only", only(&|r| r.contains("match = { regex"))),
        ("0 rules, 262 144 names", String::new()),
        ("100 000 (mix), 262 144 names", rules_text(100_000)),
    ];
    let mut rigs: Vec<_> = sets
        .into_iter()
        .map(|(label, text)| {
            let n = text.matches("[[rule]]").count();
            let (mut core, snap, _) = rig_with_rules_text("round-robin", 4, text);
            core.begin_batch(&snap);
            (label, n, core, snap, Vec::with_capacity(ROUNDS))
        })
        .collect();
    let (names, client) = (bench_queries(), bench_client());
    let mut buf = [0u8; 512];
    for _ in 0..ROUNDS {
        for (label, _, core, snap, times) in rigs.iter_mut() {
            let list = if label.ends_with("names") {
                &many
            } else {
                &names
            };
            let t = Instant::now();
            for i in 0..PER_ROUND {
                // Both lists are a power of two long.
                let q = &list[i & (list.len() - 1)];
                dgram_roundtrip(core, snap, q, &client, &mut buf);
            }
            times.push(t.elapsed().as_nanos() as f64 / PER_ROUND as f64);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let base = median(&mut rigs[0].4);
    let at = rigs.len() - 2;
    let base_many = median(&mut rigs[at].4);
    println!("| rules | count | ns per query + answer (median of {ROUNDS}) | ratio to 0 rules |");
    println!("|---|---|---|---|");
    for (label, n, _, _, times) in rigs.iter_mut() {
        let m = median(times);
        let b = if label.ends_with("names") {
            base_many
        } else {
            base
        };
        println!("| {label} | {n} | {m:.1} | {:.2} |", m / b);
    }
}
