//! A fixed amount of core work for instruction counting: builds the bench
//! rig with the criterion mix of RULES rules, then runs QUERIES query +
//! answer round trips over the 1 024 bench names. `scripts/instructions.sh`
//! runs it under callgrind at two query counts and divides the difference,
//! so set-up cost cancels out.
//!
//! Run: `core_loop QUERIES [RULES] [POLICY]`

use dnsrail_perf::{bench_client, bench_queries, dgram_roundtrip, rig_with_rules};

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: core_loop QUERIES [RULES] [POLICY]";
    let queries: usize = match args.next().map(|a| a.parse()) {
        Some(Ok(n)) => n,
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let rules: usize = match args.next().map(|a| a.parse()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let policy = args.next().unwrap_or_else(|| "round-robin".into());
    if !dnsrail_perf::POLICIES.contains(&policy.as_str()) {
        eprintln!(
            "core_loop: unknown policy {policy:?} ({:?})",
            dnsrail_perf::POLICIES
        );
        std::process::exit(2);
    }
    let (mut core, snap, _) = rig_with_rules(&policy, 4, rules);
    core.begin_batch(&snap);
    let (names, client) = (bench_queries(), bench_client());
    let mut buf = [0u8; 512];
    for i in 0..queries {
        dgram_roundtrip(&mut core, &snap, &names[i & 1023], &client, &mut buf);
    }
    println!("{queries} round trips, {rules} rules, {policy}");
}
