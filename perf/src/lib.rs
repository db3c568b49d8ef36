//! Fixtures for the criterion benches: a core with its snapshot and in-flight
//! table, and the query/answer messages a round trip needs.

use dnsrail_engine::config::Config;
use dnsrail_engine::core::{Core, PortPlan};
use dnsrail_engine::frame::FrameEnv;
use dnsrail_engine::inflight::InflightTable;
use dnsrail_engine::snapshot::{Overrides, Registry, Snapshot};
use dnsrail_engine::stats::WorkerStats;
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
    let mut t = String::from("[[frontend]]\nlisten = \"192.0.2.53:53\"\n");
    for i in 0..backends {
        t += &format!(
            "[[backend]]\nname = \"r{i}\"\naddress = \"10.9.0.{}:53\"\nweight = {}\nmac = \"02:00:00:00:00:{:02x}\"\n",
            i + 10,
            1 + i % 3,
            i + 1
        );
    }
    t += &format!("[pool.default]\npolicy = \"{policy}\"\n");
    let cfg = Config::parse(&t, "bench").unwrap();
    let table = Arc::new(InflightTable::new(1, 2));
    table.ensure_port(0);
    table.ensure_port(1);
    let core = Core::new(0, table, Arc::new(WorkerStats::default()), PortPlan::Shared);
    let snap = Snapshot::build(&cfg, &mut Registry::default(), &Overrides::default(), 1);
    let env = FrameEnv::new(
        [2, 0, 0, 0, 0, 0x1b],
        Some("10.9.0.1".parse().unwrap()),
        None,
        vec![40000, 40001],
    );
    (core, snap, env)
}
