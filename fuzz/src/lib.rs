//! What the fuzz targets share: a one-worker core with its snapshot and
//! frame environment, as an AF_XDP worker holds them, and frame builders.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use dnsrail_core::config::Config;
use dnsrail_core::core::Core;
use dnsrail_core::frame::FrameEnv;
use dnsrail_core::inflight::InflightTable;
use dnsrail_core::snapshot::Snapshot;
use dnsrail_core::stats::WorkerStats;

pub const LOCAL_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x1b];
pub const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xc1];
pub const SRC4: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
pub const VIP4: &str = "192.0.2.53:53";
pub const BACKEND4: &str = "10.9.0.11:53";
pub const PORTS: [u16; 4] = [40000, 40001, 40002, 40003];

/// The rules every target's snapshot carries: one of each matcher kind,
/// so the query path walks the whole rule engine.
pub const RULES: &str = r#"
[[rule]]
name = "exact"
match = { name = "blocked.example" }
action = "nxdomain"
[[rule]]
name = "suffix"
match = { suffix = "refused.example", qtype = "AAAA" }
action = "refused"
[[rule]]
name = "source"
match = { source = "203.0.113.0/24" }
action = "drop"
[[rule]]
name = "regex"
match = { regex = '^dga[a-z0-9]{8,}\.(biz|info)$' }
action = "drop"
[[rule]]
name = "spoof"
match = { name = "local.example" }
action = { spoof = ["192.0.2.99", "2001:db8::99"] }
[[rule]]
name = "route"
match = { suffix = "six.example" }
action = { pool = "six" }
[[rule]]
name = "rate"
match = { suffix = "rated.example", rate = { qps = 5 } }
action = "truncate"
[[rule]]
name = "logic"
match = { all = [{ suffix = "logic.example" }, { not = { qclass = "CH" } }] }
action = "servfail"
"#;

pub struct Rig {
    pub core: Core,
    pub snap: Snapshot,
    pub env: FrameEnv,
}

pub fn rig() -> Rig {
    let text = format!(
        r#"
[engine]
edns_max_payload = 1232
[[frontend]]
listen = "{VIP4}"
[[frontend]]
listen = "[2001:db8::53]:53"
pool = "six"
[[backend]]
name = "b1"
address = "{BACKEND4}"
mac = "02:00:00:00:00:b1"
[[backend]]
name = "b2"
address = "10.9.0.12:53"
mac = "02:00:00:00:00:b2"
[[backend]]
name = "b6"
address = "[2001:db8:9::11]:53"
mac = "02:00:00:00:00:b6"
pools = ["six"]
[pool.six]
policy = "round-robin"
{RULES}"#
    );
    let cfg = Config::parse(&text, "fuzz").expect("the fuzz config parses");
    let table = Arc::new(InflightTable::new(1, PORTS.len(), 1 << 12));
    let core = Core::new(0, table, Arc::new(WorkerStats::default()));
    let snap = Snapshot::of_config(&cfg, 1).unwrap();
    let env = FrameEnv::new(
        LOCAL_MAC,
        Some(SRC4),
        Some("2001:db8:9::1".parse().unwrap()),
        PORTS.to_vec(),
    );
    let mut r = Rig { core, snap, env };
    r.core.begin_batch(&r.snap);
    r
}

/// An Ethernet/IPv4/UDP frame carrying `payload` (UDP checksum 0: none),
/// in a 2 KiB buffer as a UMEM frame would be.
pub fn frame4(src: SocketAddr, dst: SocketAddr, src_mac: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
        panic!("IPv4 addresses")
    };
    let mut f = Vec::with_capacity(2048);
    f.extend_from_slice(&LOCAL_MAC);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&s.ip().octets());
    ip[16..20].copy_from_slice(&d.ip().octets());
    let mut sum = 0u32;
    for c in ip.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&s.port().to_be_bytes());
    f.extend_from_slice(&d.port().to_be_bytes());
    f.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}
