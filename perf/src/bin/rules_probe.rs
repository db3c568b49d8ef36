//! Where a query's time goes among the rule indexes: times `first_match` for
//! rule sets of one kind each (exact, suffix, prefix, regex), 100 000 rules
//! or 500 regexes, over non-matching names. Prints ns per query.
//!
//! Run: `cargo run --release -p dnsrail-perf --bin rules_probe`

use dnsrail_core::config::rules::RulesFile;
use dnsrail_core::rules::{Query, RuleSet, Scratch};
use dnsrail_core::wire::dns::{build_query, parse_question};
use std::time::Instant;

fn probe(label: &str, text: &str) {
    // `rules_probe LABEL`: only that set (for a profiler).
    if let Some(only) = std::env::args().nth(1) {
        if only != label {
            return;
        }
    }
    let f: RulesFile = toml::from_str(text).unwrap();
    let set = RuleSet::compile(&f.rules, &["default".into()], 1).unwrap();
    let msgs: Vec<Vec<u8>> = (0..1024)
        .map(|i| build_query(1, &format!("www{i}.example.com"), 1))
        .collect();
    let src = "198.51.100.7".parse().unwrap();
    // Made before timing: the core hashes every name anyway, so that is
    // not the rules' cost.
    let qs: Vec<Query> = msgs
        .iter()
        .map(|m| Query::new(m, &parse_question(m).unwrap(), src, 0))
        .collect();
    let mut s = Scratch::new();
    let n = 5_000_000;
    let t = Instant::now();
    let mut hits = 0;
    for i in 0..n {
        let rq = &qs[i & 1023];
        hits += set.first_match(rq, &mut s, 0).is_some() as u32;
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("{label:>10}: {ns:6.1} ns/query ({hits} matched)");
}

fn main() {
    let gen = |n: usize, f: &dyn Fn(usize) -> String| (0..n).map(f).collect::<String>();
    probe("none", "");
    probe(
        "exact1",
        &gen(1, &|i| {
            format!("[[rule]]\nname = \"e{i}\"\nmatch = {{ name = \"host{i}.blocked.example\" }}\naction = \"drop\"\n")
        }),
    );
    probe(
        "exact",
        &gen(100_000, &|i| {
            format!("[[rule]]\nname = \"e{i}\"\nmatch = {{ name = \"host{i}.blocked.example\" }}\naction = \"drop\"\n")
        }),
    );
    probe(
        "suffix",
        &gen(100_000, &|i| {
            format!("[[rule]]\nname = \"s{i}\"\nmatch = {{ suffix = \"zone{i}.example.net\" }}\naction = \"drop\"\n")
        }),
    );
    probe(
        "prefix",
        &gen(100_000, &|i| {
            format!("[[rule]]\nname = \"p{i}\"\nmatch = {{ source = \"10.{}.{}.0/24\" }}\naction = \"drop\"\n", (i / 256) % 256, i % 256)
        }),
    );
    probe(
        "regex",
        &gen(500, &|i| {
            format!("[[rule]]\nname = \"r{i}\"\nmatch = {{ regex = '^dga{i}[a-z0-9]{{12,}}\\.(biz|info)$' }}\naction = \"drop\"\n")
        }),
    );
}
