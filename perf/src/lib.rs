//! Fixtures for the criterion benches: a core with its snapshot and in-flight
//! table, and the query/answer messages a round trip needs.

use dnsrail_core::config::Config;
use dnsrail_core::core::{AnswerOutcome, Client, Core, QueryOutcome};
use dnsrail_core::frame::FrameEnv;
use dnsrail_core::inflight::InflightTable;
use dnsrail_core::snapshot::Snapshot;
use dnsrail_core::stats::WorkerStats;
use std::sync::Arc;

pub const POLICIES: &[&str] = &[
    "round-robin",
    "weighted-round-robin",
    "weighted-random",
    "least-outstanding",
    "first-available",
    "qname-hash",
    "client-hash",
];

/// A one-worker core over `backends` backends with `policy`, frame-mode
/// ports ready, as a worker would hold it.
pub fn rig(policy: &str, backends: usize) -> (Core, Snapshot, FrameEnv) {
    rig_with_rules(policy, backends, 0)
}

/// `n` rules in a realistic mix: 80 % exact names, 17 % suffixes, 1 % source
/// prefixes, 2 % regexes (at most 500), none of which matches the bench's
/// traffic (`www{i}.example.com` from 198.51.100.7), so every query pays for
/// the whole set and is still forwarded.
pub fn rules_text(n: usize) -> String {
    let mut t = String::new();
    let mut regexes = 0;
    for i in 0..n {
        match i % 100 {
            0..=79 => t += &format!("[[rule]]\nname = \"e{i}\"\nmatch = {{ name = \"host{i}.blocked.example\" }}\naction = \"nxdomain\"\n"),
            80..=96 => t += &format!("[[rule]]\nname = \"s{i}\"\nmatch = {{ suffix = \"zone{i}.example.net\" }}\naction = \"refused\"\n"),
            97 => t += &format!("[[rule]]\nname = \"p{i}\"\nmatch = {{ source = \"10.{}.{}.0/24\" }}\naction = \"drop\"\n", (i / 256) % 256, i % 256),
            _ if regexes < 500 => {
                regexes += 1;
                t += &format!("[[rule]]\nname = \"r{i}\"\nmatch = {{ regex = '^dga{i}[a-z0-9]{{12,}}\\.(biz|info)$' }}\naction = \"drop\"\n");
            }
            _ => t += &format!("[[rule]]\nname = \"x{i}\"\nmatch = {{ name = \"extra{i}.blocked.example\" }}\naction = \"nxdomain\"\n"),
        }
    }
    t
}

/// As [`rig`], with `rules` rules from [`rules_text`].
pub fn rig_with_rules(policy: &str, backends: usize, rules: usize) -> (Core, Snapshot, FrameEnv) {
    rig_with_rules_text(policy, backends, rules_text(rules))
}

/// As [`rig`], with the rules of `rules` (TOML `[[rule]]` entries).
pub fn rig_with_rules_text(
    policy: &str,
    backends: usize,
    rules: String,
) -> (Core, Snapshot, FrameEnv) {
    rig_with(policy, backends, rules, "")
}

/// As [`rig`], with `pool` appended to the default pool's table (say
/// `cache_entries = 4096`).
pub fn rig_with_pool(policy: &str, backends: usize, pool: &str) -> (Core, Snapshot, FrameEnv) {
    rig_with(policy, backends, String::new(), pool)
}

fn rig_with(
    policy: &str,
    backends: usize,
    rules: String,
    pool: &str,
) -> (Core, Snapshot, FrameEnv) {
    let mut t = rules;
    t += "[[frontend]]\nlisten = \"192.0.2.53:53\"\n";
    for i in 0..backends {
        t += &format!(
            "[[backend]]\nname = \"r{i}\"\naddress = \"10.9.0.{}:53\"\nweight = {}\nmac = \"02:00:00:00:00:{:02x}\"\n",
            i + 10,
            1 + i % 3,
            i + 1
        );
    }
    t += &format!("[pool.default]\npolicy = \"{policy}\"\n{pool}\n");
    let cfg = Config::parse(&t, "bench").unwrap();
    let table = Arc::new(InflightTable::new(1, 1024, 1 << 16));
    let core = Core::new(0, table, Arc::new(WorkerStats::default()));
    let snap = Snapshot::of_config(&cfg, 1).unwrap();
    let env = FrameEnv::new(
        [2, 0, 0, 0, 0, 0x1b],
        Some("10.9.0.1".parse().unwrap()),
        None,
        (40000..41024).collect(),
    );
    (core, snap, env)
}

/// The client every bench query comes from.
pub fn bench_client() -> Client {
    Client {
        ip: "198.51.100.7".parse().unwrap(),
        port: 33333,
        mac: [0; 6],
    }
}

/// 1 024 distinct A queries, `www{i}.example.com`.
pub fn bench_queries() -> Vec<Vec<u8>> {
    (0..1024)
        .map(|i| dnsrail_core::wire::dns::build_query(7, &format!("www{i}.example.com"), 1))
        .collect()
}

/// One query through the core and the backend's answer back (QR set), on
/// bare DNS messages: what one forwarded query costs the socket data plane.
#[inline]
pub fn dgram_roundtrip(
    core: &mut Core,
    snap: &Snapshot,
    q: &[u8],
    client: &Client,
    buf: &mut [u8],
) {
    let n = q.len();
    buf[..n].copy_from_slice(q);
    let QueryOutcome::Forward { backend, port, .. } =
        core.query(snap, 0, buf, n, client, 1000, |_| Ok(()))
    else {
        panic!("query not forwarded")
    };
    buf[2] |= 0x80;
    let out = core.answer(&mut buf[..n], port, 2000, |b| b == backend);
    assert!(matches!(out, AnswerOutcome::ToClient { .. }));
}

/// One query through the core; if forwarded, the backend's answer (QR set,
/// one A record, TTL 300) back. Returns whether the core answered it itself
/// (a cache hit).
#[inline]
pub fn answered_roundtrip(
    core: &mut Core,
    snap: &Snapshot,
    q: &[u8],
    client: &Client,
    buf: &mut [u8],
    now: u64,
) -> bool {
    let n = q.len();
    buf[..n].copy_from_slice(q);
    match core.query(snap, 0, buf, n, client, now, |_| Ok(())) {
        QueryOutcome::Forward { backend, port, .. } => {
            buf[2] |= 0x80;
            buf[7] = 1;
            const RECORD: [u8; 16] = [0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1];
            buf[n..n + 16].copy_from_slice(&RECORD);
            let out = core.answer(&mut buf[..n + 16], port, now + 1000, |b| b == backend);
            assert!(matches!(out, AnswerOutcome::ToClient { .. }));
            false
        }
        QueryOutcome::Reply { .. } => true,
        QueryOutcome::Drop(r) => panic!("dropped: {r:?}"),
    }
}
