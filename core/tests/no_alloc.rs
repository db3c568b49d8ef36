//! The data path allocates nothing per packet: query + answer through the
//! core (DNS messages and Ethernet frames), with rules of every index type in
//! force (a rate selector included), replies built by rules, and dynamic
//! blocks counting rates with a non-empty block list, counted by a global
//! allocator.
//!
//! The socket I/O around the core (recvmmsg/sendmmsg batches) reuses
//! buffers made at start; it is not covered here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use dnsrail_core::config::{Config, DynBlockConfig};
use dnsrail_core::core::{AnswerOutcome, Client, Core, QueryOutcome};
use dnsrail_core::dynblock::DynBlock;
use dnsrail_core::frame::{FrameEnv, FrameVerdict};
use dnsrail_core::inflight::InflightTable;
use dnsrail_core::snapshot::Snapshot;
use dnsrail_core::stats::WorkerStats;
use dnsrail_core::wire::dns::build_query;

struct Counting;

thread_local! {
    // Per thread: the test harness's own threads allocate as they like.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's layout, passed on unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: p came from System.alloc/realloc with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: p came from System.alloc/realloc with this layout.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

const CFG: &str = r#"
[[frontend]]
listen = "192.0.2.53:53"
[[backend]]
name = "a"
address = "10.9.0.11:53"
mac = "02:00:00:00:00:b1"
[[backend]]
name = "b"
address = "10.9.0.12:53"
mac = "02:00:00:00:00:b2"
[pool.default]
policy = "qname-hash"
[[rule]]
name = "exact"
match = { name = "blocked.example" }
action = "nxdomain"
[[rule]]
name = "suffix"
match = { suffix = "sink.example", not = { source = "10.0.0.0/8" } }
action = { spoof = ["192.0.2.66"] }
[[rule]]
name = "regex"
match = { regex = '^dga[0-9]+\.example$' }
action = "drop"
[[rule]]
name = "any"
match = { qtype = "ANY" }
action = "refused"
[[rule]]
name = "rate"
match = { suffix = "example.com", rate = { qps = 1000000 } }
action = "drop"
"#;

fn frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xc1], [2, 0, 0, 0, 0, 0x1b])
        .ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut out, payload)
        .unwrap();
    out.resize(out.len() + 256, 0);
    out
}

#[test]
fn query_and_answer_allocate_nothing() {
    let cfg = Config::parse(CFG, "t").unwrap();
    let table = Arc::new(InflightTable::new(1, 2, 1024));
    // Dynamic blocks on, with one (unrelated) prefix blocked so the list
    // lookup runs for every query.
    let db = Arc::new(DynBlock::new(DynBlockConfig {
        qps: 1_000_000,
        ..DynBlockConfig::default()
    }));
    db.report(db.prefix("203.0.113.9".parse().unwrap()));
    db.step(std::time::Instant::now(), |_, _| {});
    assert!(db.is_blocked("203.0.113.9".parse().unwrap()));
    let mut core = Core::new(0, table, Arc::new(WorkerStats::default())).with_dynblock(db);
    let snap = Snapshot::of_config(&cfg, 1).unwrap();
    let env = FrameEnv::new(
        [2, 0, 0, 0, 0, 0x1b],
        Some("10.9.0.1".parse().unwrap()),
        None,
        vec![40000, 40001],
    );
    core.begin_batch(&snap);
    let client = Client {
        ip: "198.51.100.7".parse().unwrap(),
        port: 33333,
        mac: [0; 6],
    };
    // Everything the loop sends is made up front.
    let queries: Vec<Vec<u8>> = (0..64)
        .map(|i| match i % 8 {
            0 => build_query(1, "blocked.example", 1),
            1 => build_query(1, &format!("x{i}.sink.example"), 1),
            2 => build_query(1, &format!("dga{i}.example"), 1),
            3 => build_query(1, "any.example", 255),
            _ => build_query(1, &format!("www{i}.example.com"), 1),
        })
        .collect();
    let frames: Vec<Vec<u8>> = queries
        .iter()
        .map(|q| frame([198, 51, 100, 7], [192, 0, 2, 53], 33333, 53, q))
        .collect();
    let mut buf = vec![0u8; 4096];
    let mut fbuf = vec![0u8; 4096];

    let mut round = |core: &mut Core, count: &mut [u32; 3]| {
        for (q, f) in queries.iter().zip(&frames) {
            // DNS-message path.
            buf[..q.len()].copy_from_slice(q);
            match core.query(&snap, 0, &mut buf, q.len(), &client, 1_000, |_| Ok(())) {
                QueryOutcome::Forward { backend, port, .. } => {
                    buf[2] |= 0x80;
                    let a = core.answer(&mut buf[..q.len()], port, 2_000, |b| b == backend);
                    assert!(matches!(a, AnswerOutcome::ToClient { .. }));
                    count[0] += 1;
                }
                QueryOutcome::Reply { .. } => count[1] += 1,
                QueryOutcome::Drop(_) => count[2] += 1,
            }
            // Frame path: forward, then answer from the backend.
            let n = f.len() - 256;
            fbuf[..f.len()].copy_from_slice(f);
            if let FrameVerdict::Tx { len } = core.query_frame(&snap, &env, &mut fbuf, n, 1_000) {
                if fbuf[44] & 0x80 == 0 {
                    // Swap MACs, addresses, ports (checksum-neutral), set QR
                    // and fix the checksum for that one bit.
                    for (a, b, l) in [(0, 6, 6), (26, 30, 4), (34, 36, 2)] {
                        for k in 0..l {
                            fbuf.swap(a + k, b + k);
                        }
                    }
                    fbuf[44] |= 0x80;
                    let mut d = dnsrail_core::wire::checksum::Delta::ZERO;
                    d.word(
                        u16::from_be_bytes([fbuf[44] & 0x7f, fbuf[45]]),
                        u16::from_be_bytes([fbuf[44], fbuf[45]]),
                    );
                    let ck = d.apply_udp(u16::from_be_bytes([fbuf[40], fbuf[41]]));
                    fbuf[40..42].copy_from_slice(&ck.to_be_bytes());
                    let v = core.answer_frame(&snap, &env, &mut fbuf, 2_000);
                    assert!(matches!(v, FrameVerdict::Tx { .. }), "{v:?} after {len}");
                }
            }
        }
    };
    // Warm-up: lazily made scratch (the regex pattern set, the rate
    // selector's table) may allocate once.
    let mut warm = [0u32; 3];
    round(&mut core, &mut warm);
    let before = allocs();
    let mut count = [0u32; 3];
    for _ in 0..100 {
        round(&mut core, &mut count);
    }
    let after = allocs();
    assert_eq!(after - before, 0, "allocations in 6 400 queries: {count:?}");
    // Every kind of outcome was exercised.
    assert_eq!(
        count,
        [3200, 2400, 800],
        "forwarded, answered by rules, dropped by rules"
    );
}

#[test]
fn cache_hits_misses_and_inserts_allocate_nothing() {
    let cfg = Config::parse(
        "[[frontend]]\nlisten = \"192.0.2.53:53\"\n[[backend]]\nname = \"a\"\naddress = \"10.9.0.11:53\"\n\
         [pool.default]\ncache_entries = 64\n",
        "t",
    )
    .unwrap();
    let table = Arc::new(InflightTable::new(1, 2, 1024));
    let mut core = Core::new(0, table, Arc::new(WorkerStats::default()));
    let snap = Snapshot::of_config(&cfg, 1).unwrap();
    core.begin_batch(&snap);
    let client = Client {
        ip: "198.51.100.7".parse().unwrap(),
        port: 33333,
        mac: [0; 6],
    };
    // More names than the cache holds: hits, misses, inserts and evictions.
    let queries: Vec<Vec<u8>> = (0..200)
        .map(|i| build_query(1, &format!("n{}.example", i % 100), 1))
        .collect();
    let record = [0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1];
    let mut buf = vec![0u8; 4096];
    let mut round = |core: &mut Core, now: u64, count: &mut [u32; 2]| {
        for q in &queries {
            buf[..q.len()].copy_from_slice(q);
            match core.query(&snap, 0, &mut buf, q.len(), &client, now, |_| Ok(())) {
                QueryOutcome::Forward { port, .. } => {
                    buf[2] |= 0x80;
                    buf[7] = 1;
                    buf[q.len()..q.len() + record.len()].copy_from_slice(&record);
                    let n = q.len() + record.len();
                    let a = core.answer(&mut buf[..n], port, now + 1_000, |b| b == 0);
                    assert!(matches!(a, AnswerOutcome::ToClient { .. }));
                    count[0] += 1;
                }
                QueryOutcome::Reply { .. } => count[1] += 1,
                QueryOutcome::Drop(r) => panic!("{r:?}"),
            }
        }
    };
    let mut warm = [0u32; 2];
    round(&mut core, 1_000, &mut warm);
    let before = allocs();
    let mut count = [0u32; 2];
    for i in 0..20 {
        round(&mut core, 2_000 + i, &mut count);
    }
    assert_eq!(allocs() - before, 0, "allocations: {count:?}");
    assert!(count[0] > 0 && count[1] > 0, "misses and hits: {count:?}");
}
