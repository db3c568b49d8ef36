//! Compile time and memory of a large rule set: prints the median of five
//! compiles of N rules (default 100 000) and the resident memory they hold.
//!
//! Run: `cargo run --release -p dnsrail-perf --bin rules_footprint [N]`

use dnsrail_core::config::rules::RulesFile;
use dnsrail_core::rules::RuleSet;
use std::time::Instant;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let text = dnsrail_perf::rules_text(n);
    let t0 = Instant::now();
    let file: RulesFile = toml::from_str(&text).expect("rules parse");
    let parse = t0.elapsed();
    let pools = vec!["default".to_string()];
    let mut times = Vec::new();
    let mut kept = None;
    let mut grown = 0;
    for i in 0..5 {
        drop(kept.take());
        // SAFETY: as below; the parse's freed pages must not be counted as
        // reused by the compile.
        unsafe { libc::malloc_trim(0) };
        let before = rss_kib();
        let t = Instant::now();
        let set = RuleSet::compile(&file.rules, &pools, 2).expect("rules compile");
        times.push(t.elapsed());
        // Only the first compile shows the growth: later ones reuse the
        // memory the allocator kept from the dropped set.
        if i == 0 {
            // What the set holds, not the compile's transient peak (the
            // builders' maps are freed, but glibc keeps the pages until
            // trimmed).
            // SAFETY: malloc_trim only returns free memory to the kernel.
            unsafe { libc::malloc_trim(0) };
            grown = rss_kib().saturating_sub(before);
        }
        kept = Some(set);
    }
    times.sort();
    println!(
        "{n} rules: TOML parse {:.0} ms, compile median {:.0} ms (min {:.0}, max {:.0}), resident memory of the compiled set ~{:.1} MiB",
        parse.as_secs_f64() * 1e3,
        times[2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[4].as_secs_f64() * 1e3,
        grown as f64 / 1024.0
    );
}
