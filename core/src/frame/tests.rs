//! Frame-mode tests: literal frames built with etherparse, rewritten by the
//! core, and checked against etherparse's full checksum computation.

use super::*;
use crate::config::Config;
use crate::inflight::InflightTable;
use crate::snapshot::{Overrides, Registry};
use crate::stats::WorkerStats;
use crate::wire::dns::{add_opt, build_query, qtype};
use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, TransportHeader};
use proptest::prelude::*;
use std::sync::Arc;

const CLIENT_MAC: Mac = [2, 0, 0, 0, 0, 0xc1];
const LOCAL_MAC: Mac = [2, 0, 0, 0, 0, 0x1b];
const B1_MAC: Mac = [2, 0, 0, 0, 0, 0xb1];
const B2_MAC: Mac = [2, 0, 0, 0, 0, 0xb2];
const VIP4: &str = "192.0.2.53:53";
const VIP6: &str = "[2001:db8::53]:53";
const SRC4: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const PORTS: [u16; 2] = [40000, 40001];

fn cfg(extra: &str) -> Config {
    let text = format!(
        r#"
[[frontend]]
listen = "{VIP4}"
[[frontend]]
listen = "{VIP6}"
pool = "six"
[[backend]]
name = "b1"
address = "10.9.0.11:53"
mac = "02:00:00:00:00:b1"
[[backend]]
name = "b6"
address = "[2001:db8:9::11]:53"
mac = "02:00:00:00:00:b2"
pools = ["six"]
[pool.six]
{extra}
"#
    );
    Config::parse(&text, "test").unwrap()
}

struct Rig {
    core: Core,
    snap: Snapshot,
    env: FrameEnv,
}

fn rig_with(cfg: Config, ov: Overrides) -> Rig {
    let table = Arc::new(InflightTable::new(1, PORTS.len(), 1 << 16));
    let core = Core::new(0, table, Arc::new(WorkerStats::default()));
    let mut snap = Snapshot::build(&cfg, &mut Registry::default(), &ov, 1);
    snap.rules = Arc::new(crate::rules::RuleSet::from_config(&cfg, 1).unwrap());
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

/// query_frame with 512 bytes of room after the frame, as a UMEM frame has.
fn qf(r: &mut Rig, f: &mut Vec<u8>, now: u64) -> FrameVerdict {
    let n = f.len();
    f.resize(n + 512, 0);
    let v = r.core.query_frame(&r.snap, &r.env, f, n, now);
    if !matches!(v, FrameVerdict::Tx { .. }) {
        f.truncate(n);
    }
    v
}

fn rig() -> Rig {
    rig_with(cfg(""), Overrides::default())
}

fn frame(src: SocketAddr, dst: SocketAddr, smac: Mac, dmac: Mac, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(smac, dmac);
    let mut out = Vec::new();
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => b
            .ipv4(s.octets(), d.octets(), 57)
            .udp(src.port(), dst.port())
            .write(&mut out, payload)
            .unwrap(),
        (IpAddr::V6(s), IpAddr::V6(d)) => b
            .ipv6(s.octets(), d.octets(), 57)
            .udp(src.port(), dst.port())
            .write(&mut out, payload)
            .unwrap(),
        _ => unreachable!(),
    }
    out
}

/// What etherparse sees in a frame, after checking every checksum in it.
#[derive(Debug)]
struct Seen {
    smac: Mac,
    dmac: Mac,
    src: SocketAddr,
    dst: SocketAddr,
    ttl: u8,
    payload: Vec<u8>,
}

fn seen(f: &[u8]) -> Seen {
    let h = PacketHeaders::from_ethernet_slice(f).expect("etherparse parses it");
    let eth = h.link.unwrap().ethernet2().unwrap();
    let Some(TransportHeader::Udp(udp)) = h.transport else {
        panic!("not udp")
    };
    let payload = h.payload.slice().to_vec();
    let (src, dst, ttl) = match h.net.unwrap() {
        NetHeaders::Ipv4(ip, _) => {
            assert_eq!(
                ip.header_checksum,
                ip.calc_header_checksum(),
                "ipv4 header checksum"
            );
            if udp.checksum != 0 {
                assert_eq!(
                    udp.checksum,
                    udp.calc_checksum_ipv4(&ip, &payload).unwrap(),
                    "udp/4"
                );
            }
            assert_eq!(usize::from(ip.total_len), f.len() - 14);
            (
                IpAddr::from(ip.source),
                IpAddr::from(ip.destination),
                ip.time_to_live,
            )
        }
        NetHeaders::Ipv6(ip, _) => {
            assert_eq!(
                udp.checksum,
                udp.calc_checksum_ipv6(&ip, &payload).unwrap(),
                "udp/6"
            );
            (
                IpAddr::from(ip.source),
                IpAddr::from(ip.destination),
                ip.hop_limit,
            )
        }
        NetHeaders::Arp(_) => panic!(),
    };
    assert_eq!(usize::from(udp.length), payload.len() + 8);
    Seen {
        smac: eth.source,
        dmac: eth.destination,
        src: SocketAddr::new(src, udp.source_port),
        dst: SocketAddr::new(dst, udp.destination_port),
        ttl,
        payload,
    }
}

/// The backend's answer to a forwarded query: same message, QR set, one A
/// record appended (a compression pointer to the question).
fn answer_payload(query: &[u8]) -> Vec<u8> {
    let mut a = query.to_vec();
    a[2] |= 0x80;
    a[7] = 1;
    a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 51, 100, 1]);
    a
}

fn roundtrip(client: &str, vip: &str, backend: &str, bmac: Mac) {
    let mut r = rig();
    let client: SocketAddr = client.parse().unwrap();
    let q = build_query(0x1234, "www.Example.com", qtype::A);
    let mut f = frame(client, vip.parse().unwrap(), CLIENT_MAC, LOCAL_MAC, &q);
    let FrameVerdict::Tx { len } = qf(&mut r, &mut f, 1_000) else {
        panic!("query dropped")
    };
    let out = seen(&f[..len]);
    assert_eq!((out.smac, out.dmac), (LOCAL_MAC, bmac));
    assert_eq!(out.dst, backend.parse().unwrap());
    assert!(PORTS.contains(&out.src.port()));
    assert_eq!(out.ttl, TTL);
    assert_eq!(out.payload[2..], q[2..], "only the ID changes");

    let ans = answer_payload(&out.payload);
    let mut a = frame(out.dst, out.src, bmac, LOCAL_MAC, &ans);
    let FrameVerdict::Tx { len } = r.core.answer_frame(&r.snap, &r.env, &mut a, 251_000) else {
        panic!("answer dropped")
    };
    let back = seen(&a[..len]);
    assert_eq!((back.smac, back.dmac), (LOCAL_MAC, CLIENT_MAC));
    assert_eq!(back.src, vip.parse().unwrap());
    assert_eq!(back.dst, client);
    assert_eq!(&back.payload[..2], &[0x12, 0x34], "client's ID restored");
    assert_eq!(back.payload[2..], ans[2..], "answer bytes untouched");
    let st = r.core.stats();
    assert_eq!((st.queries.get(), st.answers.get()), (1, 1));
    let hist = st
        .backends
        .iter()
        .map(|b| b.latency.snapshot())
        .fold(0, |n, h| n + h.iter().sum::<u64>());
    assert_eq!(hist, 1);
}

#[test]
fn ipv4_roundtrip() {
    roundtrip("198.51.100.7:33333", VIP4, "10.9.0.11:53", B1_MAC);
}

#[test]
fn ipv6_roundtrip() {
    roundtrip("[2001:db8:c::7]:33333", VIP6, "[2001:db8:9::11]:53", B2_MAC);
}

fn forward(r: &mut Rig) -> (Seen, Vec<u8>) {
    let q = build_query(7, "a.example", qtype::AAAA);
    let mut f = frame(
        "198.51.100.7:1000".parse().unwrap(),
        VIP4.parse().unwrap(),
        CLIENT_MAC,
        LOCAL_MAC,
        &q,
    );
    let FrameVerdict::Tx { len } = qf(r, &mut f, 0) else {
        panic!()
    };
    let s = seen(&f[..len]);
    let a = answer_payload(&s.payload);
    (s, a)
}

#[test]
fn spoofed_answers_are_dropped_and_counted() {
    let mut r = rig();
    let (s, a) = forward(&mut r);
    let drops = |r: &Rig, d| r.core.stats().drops_of(d);
    // From another address.
    let mut f = frame(
        "10.9.0.99:53".parse().unwrap(),
        s.src,
        B1_MAC,
        LOCAL_MAC,
        &a,
    );
    assert_eq!(
        r.core.answer_frame(&r.snap, &r.env, &mut f, 5),
        FrameVerdict::Drop(DropReason::WrongSource)
    );
    // From the right address but another port.
    let mut f = frame(
        "10.9.0.11:54".parse().unwrap(),
        s.src,
        B1_MAC,
        LOCAL_MAC,
        &a,
    );
    assert_eq!(
        r.core.answer_frame(&r.snap, &r.env, &mut f, 5),
        FrameVerdict::Drop(DropReason::WrongSource)
    );
    // With a wrong ID.
    let mut bad = a.clone();
    bad[1] ^= 0x5a;
    let mut f = frame(s.dst, s.src, B1_MAC, LOCAL_MAC, &bad);
    assert_eq!(
        r.core.answer_frame(&r.snap, &r.env, &mut f, 5),
        FrameVerdict::Drop(DropReason::UnknownId)
    );
    // With another question.
    let mut bad = a.clone();
    bad[13] = b'b';
    let mut f = frame(s.dst, s.src, B1_MAC, LOCAL_MAC, &bad);
    assert_eq!(
        r.core.answer_frame(&r.snap, &r.env, &mut f, 5),
        FrameVerdict::Drop(DropReason::WrongQuestion)
    );
    // To a port that is not ours, and to another address of ours.
    let mut f = frame(s.dst, SocketAddr::new(s.src.ip(), 9), B1_MAC, LOCAL_MAC, &a);
    assert_eq!(
        r.core.answer_frame(&r.snap, &r.env, &mut f, 5),
        FrameVerdict::Drop(DropReason::NotOurs)
    );
    // Not a response.
    let mut bad = a.clone();
    bad[2] &= 0x7f;
    let mut f = frame(s.dst, s.src, B1_MAC, LOCAL_MAC, &bad);
    assert_eq!(
        r.core.answer_frame(&r.snap, &r.env, &mut f, 5),
        FrameVerdict::Drop(DropReason::AnswerNotResponse)
    );
    assert_eq!(drops(&r, DropReason::WrongSource), 2);
    assert_eq!(drops(&r, DropReason::UnknownId), 1);
    assert_eq!(drops(&r, DropReason::WrongQuestion), 1);
    assert_eq!(drops(&r, DropReason::NotOurs), 1);
    // The genuine answer still completes after all that.
    let mut f = frame(s.dst, s.src, B1_MAC, LOCAL_MAC, &a);
    assert!(matches!(
        r.core.answer_frame(&r.snap, &r.env, &mut f, 5),
        FrameVerdict::Tx { .. }
    ));
    // And a duplicate of it finds nothing waiting.
    let mut f = frame(s.dst, s.src, B1_MAC, LOCAL_MAC, &a);
    assert_eq!(
        r.core.answer_frame(&r.snap, &r.env, &mut f, 5),
        FrameVerdict::Drop(DropReason::UnknownId)
    );
}

#[test]
fn late_answer_after_timeout() {
    let mut r = rig();
    let (s, a) = forward(&mut r);
    let timeout = r.snap.timeout_ns;
    assert_eq!(r.core.sweep(&r.snap, timeout + 1), 0);
    assert_eq!(r.core.stats().backends[0].timeouts.get(), 1);
    let mut f = frame(s.dst, s.src, B1_MAC, LOCAL_MAC, &a);
    assert_eq!(
        r.core.answer_frame(&r.snap, &r.env, &mut f, timeout + 2),
        FrameVerdict::Drop(DropReason::Late)
    );
}

#[test]
fn malformed_query_frames_are_counted_not_panicking() {
    let mut r = rig();
    let mut good = frame(
        "198.51.100.7:1000".parse().unwrap(),
        VIP4.parse().unwrap(),
        CLIENT_MAC,
        LOCAL_MAC,
        &build_query(1, "x.example", 1),
    );
    // No UDP checksum (allowed over IPv4): the cases below break the DNS
    // message, not the checksum (corrupt_datagrams_… covers that).
    good[40..42].fill(0);
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (good[..10].to_vec(), DropReason::Truncated),
        (good[..30].to_vec(), DropReason::Truncated),
        (
            {
                let mut f = good.clone();
                f[12] = 0x08;
                f[13] = 0x06;
                f
            },
            DropReason::NotIp,
        ),
        (
            {
                let mut f = good.clone();
                f[14] = 0x46;
                f
            },
            DropReason::IpOptions,
        ),
        (
            {
                let mut f = good.clone();
                f[14] = 0x44;
                f
            },
            DropReason::BadIpHeader,
        ),
        (
            {
                let mut f = good.clone();
                f[20] = 0x20;
                f
            },
            DropReason::Fragment,
        ),
        (
            {
                let mut f = good.clone();
                f[23] = 6;
                f
            },
            DropReason::NotUdp,
        ),
        (
            {
                let mut f = good.clone();
                f[39] += 1;
                f
            },
            DropReason::UdpLength,
        ),
        (
            {
                let mut f = good.clone();
                f[16] += 1;
                f
            },
            DropReason::Truncated,
        ),
        (
            {
                let mut f = good.clone();
                f[44] |= 0x80;
                f
            },
            DropReason::QueryIsResponse,
        ),
        (
            {
                let mut f = good.clone();
                f[47] = 2;
                f
            },
            DropReason::QdCount,
        ),
        (
            {
                let mut f = good.clone();
                f[54] = 0xc0;
                f
            },
            DropReason::Compression,
        ),
        (
            {
                let mut f = good.clone();
                f[54] = 0x41;
                f
            },
            DropReason::BadLabel,
        ),
        (
            {
                let mut f = good.clone();
                f[36] = 0;
                f[37] = 54;
                f
            },
            DropReason::NotOurs,
        ),
    ];
    for (i, (mut f, want)) in cases.into_iter().enumerate() {
        assert_eq!(qf(&mut r, &mut f, 0), FrameVerdict::Drop(want), "case {i}");
    }
    // Every prefix of a good frame is refused cleanly.
    for n in 0..good.len() {
        let mut f = good[..n].to_vec();
        assert!(matches!(qf(&mut r, &mut f, 0), FrameVerdict::Drop(_)));
        let mut f = good[..n].to_vec();
        assert!(matches!(
            r.core.answer_frame(&r.snap, &r.env, &mut f, 0),
            FrameVerdict::Drop(_)
        ));
    }
    assert_eq!(r.core.stats().queries.get(), 0);
}

#[test]
fn all_down_servfail_is_a_valid_reply_frame() {
    let mut ov = Overrides::default();
    ov.down.insert("b1".into(), true);
    let mut r = rig_with(cfg(""), ov);
    let client: SocketAddr = "198.51.100.7:1000".parse().unwrap();
    let mut q = build_query(0x4242, "down.example", qtype::A);
    // An OPT record that the local reply drops.
    add_opt(&mut q, 1232);
    let mut f = frame(client, VIP4.parse().unwrap(), CLIENT_MAC, LOCAL_MAC, &q);
    let FrameVerdict::Tx { len } = qf(&mut r, &mut f, 0) else {
        panic!()
    };
    let s = seen(&f[..len]);
    assert_eq!((s.smac, s.dmac), (LOCAL_MAC, CLIENT_MAC));
    assert_eq!((s.src, s.dst), (VIP4.parse().unwrap(), client));
    assert_eq!(&s.payload[..4], &[0x42, 0x42, 0x81, 0x82]);
    assert_eq!(s.payload.len(), q.len() - 11);
    assert_eq!(r.core.stats().local_replies.get(), 1);
}

#[test]
fn all_down_drop_and_any() {
    let mut ov = Overrides::default();
    ov.down.insert("b1".into(), true);
    let extra = "[pool.default]\nwhen_all_down = \"drop\"";
    let mut r = rig_with(cfg(extra), ov.clone());
    let q = build_query(1, "down.example", qtype::A);
    let mut f = frame(
        "198.51.100.7:1000".parse().unwrap(),
        VIP4.parse().unwrap(),
        CLIENT_MAC,
        LOCAL_MAC,
        &q,
    );
    assert_eq!(
        qf(&mut r, &mut f, 0),
        FrameVerdict::Drop(DropReason::NoBackend)
    );
    let extra = "[pool.default]\nwhen_all_down = \"any\"";
    let mut r = rig_with(cfg(extra), ov);
    let mut f = frame(
        "198.51.100.7:1000".parse().unwrap(),
        VIP4.parse().unwrap(),
        CLIENT_MAC,
        LOCAL_MAC,
        &q,
    );
    assert!(matches!(qf(&mut r, &mut f, 0), FrameVerdict::Tx { .. }));
}

#[test]
fn backend_without_mac_or_family_is_refused_before_taking_a_slot() {
    let text = cfg("").clone();
    let mut c = text;
    c.backends[0].mac = None;
    let mut r = rig_with(c, Overrides::default());
    let q = build_query(1, "x.example", qtype::A);
    let mut f = frame(
        "198.51.100.7:1000".parse().unwrap(),
        VIP4.parse().unwrap(),
        CLIENT_MAC,
        LOCAL_MAC,
        &q,
    );
    assert_eq!(
        qf(&mut r, &mut f, 0),
        FrameVerdict::Drop(DropReason::NoNeighbour)
    );
    assert_eq!(r.core.table().outstanding(0, 0), 0);
    // An IPv4 client on the IPv6-only pool: families differ.
    let mut r = rig();
    let mut f = frame(
        "198.51.100.7:1000".parse().unwrap(),
        "192.0.2.54:53".parse().unwrap(),
        CLIENT_MAC,
        LOCAL_MAC,
        &q,
    );
    assert_eq!(
        qf(&mut r, &mut f, 0),
        FrameVerdict::Drop(DropReason::NotOurs)
    );
}

proptest! {
    /// Incremental checksums equal etherparse's full recomputation for any
    /// addresses, ports, IDs and payload tails, both directions, both families.
    #[test]
    fn incremental_checksums_match_full_recomputation(
        v6 in any::<bool>(),
        seed in any::<[u8; 32]>(),
        id in any::<u16>(),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
        label in "[a-zA-Z0-9]{1,20}",
    ) {
        // Addresses must be usable (not unspecified): force a bit.
        let a = |i: usize| -> [u8; 16] { let mut b = [0u8; 16]; b.copy_from_slice(&seed[i..i + 16]); b[0] |= 0x20; b };
        let (cip, bip, sip) = if v6 {
            (IpAddr::V6(Ipv6Addr::from(a(0))), IpAddr::V6(Ipv6Addr::from(a(8))), IpAddr::V6(Ipv6Addr::from(a(16))))
        } else {
            (IpAddr::V4(Ipv4Addr::new(seed[0], seed[1], seed[2], seed[3])),
             IpAddr::V4(Ipv4Addr::new(seed[4] | 1, seed[5], seed[6], seed[7])),
             IpAddr::V4(Ipv4Addr::new(seed[8], seed[9], seed[10], seed[11])))
        };
        let cport = u16::from_be_bytes([seed[28], seed[29]]) | 1;
        let bport = u16::from_be_bytes([seed[30], seed[31]]) | 1;
        let vip = SocketAddr::new(sip, 53);
        let backend = SocketAddr::new(bip, bport);
        let text = format!(
            "[[frontend]]\nlisten = \"{vip}\"\n[[backend]]\nname = \"b\"\naddress = \"{backend}\"\nmac = \"02:00:00:00:00:b1\"\n"
        );
        let c = Config::parse(&text, "p").unwrap();
        let mut r = rig_with(c, Overrides::default());
        r.env.src_v4 = Some(Ipv4Addr::new(seed[12], seed[13], seed[14], seed[15]));
        r.env.src_v6 = Some(Ipv6Addr::from(a(12)));
        let mut q = build_query(id, &format!("{label}.example"), qtype::A);
        q.extend_from_slice(&tail);
        let client = SocketAddr::new(cip, cport);
        let mut f = frame(client, vip, CLIENT_MAC, LOCAL_MAC, &q);
        let v = qf(&mut r, &mut f, 0);
        let FrameVerdict::Tx { len } = v else { panic!("{v:?}") };
        let s = seen(&f[..len]);
        let ans = answer_payload(&s.payload);
        let mut af = frame(s.dst, s.src, B1_MAC, LOCAL_MAC, &ans);
        let v = r.core.answer_frame(&r.snap, &r.env, &mut af, 10);
        let FrameVerdict::Tx { len } = v else { panic!("{v:?}") };
        let back = seen(&af[..len]);
        prop_assert_eq!(back.dst, client);
        prop_assert_eq!(&back.payload[..2], &id.to_be_bytes()[..]);
    }
}

const SINK: &str = r#"
[[rule]]
name = "sink"
match = { name = "bad.example" }
action = { spoof = ["192.0.2.66", "2001:db8::66"], ttl = 30 }
[[rule]]
name = "no-any"
match = { qtype = "ANY" }
action = "refused"
"#;

#[test]
fn spoofed_answers_fit_and_have_correct_checksums() {
    for (client, vip, t, rdata) in [
        ("198.51.100.7:1000", VIP4, qtype::A, vec![192, 0, 2, 66]),
        (
            "[2001:db8:c::7]:1000",
            VIP6,
            qtype::AAAA,
            "2001:db8::66"
                .parse::<Ipv6Addr>()
                .unwrap()
                .octets()
                .to_vec(),
        ),
    ] {
        let mut r = rig_with(cfg(SINK), Overrides::default());
        let q = build_query(0x5151, "Bad.Example", t);
        let client: SocketAddr = client.parse().unwrap();
        let mut f = frame(client, vip.parse().unwrap(), CLIENT_MAC, LOCAL_MAC, &q);
        let FrameVerdict::Tx { len } = qf(&mut r, &mut f, 0) else {
            panic!()
        };
        let s = seen(&f[..len]);
        assert_eq!((s.src, s.dst), (vip.parse().unwrap(), client));
        assert_eq!((s.smac, s.dmac), (LOCAL_MAC, CLIENT_MAC));
        assert_eq!(&s.payload[..8], &[0x51, 0x51, 0x81, 0x80, 0, 1, 0, 1]);
        assert_eq!(
            &s.payload[12..q.len()],
            &q[12..],
            "question kept byte for byte"
        );
        assert_eq!(&s.payload[s.payload.len() - rdata.len()..], &rdata[..]);
        assert_eq!(r.snap.rules.hits(0), 1);
        assert_eq!(r.core.table().outstanding(0, 0), 0, "no slot taken");
    }
}

#[test]
fn refused_by_rule_and_edns_clamped_on_forward() {
    let mut r = rig_with(cfg(SINK), Overrides::default());
    let q = build_query(9, "x.example", qtype::ANY);
    let mut f = frame(
        "198.51.100.7:1000".parse().unwrap(),
        VIP4.parse().unwrap(),
        CLIENT_MAC,
        LOCAL_MAC,
        &q,
    );
    let FrameVerdict::Tx { len } = qf(&mut r, &mut f, 0) else {
        panic!()
    };
    assert_eq!(seen(&f[..len]).payload[3] & 0x0f, 5);

    // Names of even and odd length put the OPT class at even and odd
    // offsets: the checksum delta must handle both (seen() checks it).
    for name in ["x.example", "xy.example"] {
        let mut q = build_query(9, name, qtype::A);
        add_opt(&mut q, 4096);
        let mut f = frame(
            "198.51.100.7:1000".parse().unwrap(),
            VIP4.parse().unwrap(),
            CLIENT_MAC,
            LOCAL_MAC,
            &q,
        );
        let FrameVerdict::Tx { len } = qf(&mut r, &mut f, 0) else {
            panic!()
        };
        let s = seen(&f[..len]);
        let opt = q.len() - 11;
        assert_eq!(
            &s.payload[opt + 3..opt + 5],
            &1232u16.to_be_bytes(),
            "payload size clamped"
        );
        assert_eq!(s.payload[opt + 5..], q[opt + 5..], "rest of OPT untouched");
    }
}

#[test]
fn edns_clamp_off_leaves_queries_alone() {
    let mut r = rig_with(
        cfg("[engine]\nedns_max_payload = 0\n"),
        Overrides::default(),
    );
    let mut q = build_query(9, "x.example", qtype::A);
    add_opt(&mut q, 4096);
    let mut f = frame(
        "198.51.100.7:1000".parse().unwrap(),
        VIP4.parse().unwrap(),
        CLIENT_MAC,
        LOCAL_MAC,
        &q,
    );
    let FrameVerdict::Tx { len } = qf(&mut r, &mut f, 0) else {
        panic!()
    };
    assert_eq!(seen(&f[..len]).payload[2..], q[2..], "only the ID changed");
}

#[test]
fn an_environment_short_of_ports_drops_instead_of_panicking() {
    let mut r = rig();
    r.env = FrameEnv::new(LOCAL_MAC, Some(SRC4), None, vec![40000]);
    let q = build_query(1, "x.example", qtype::A);
    let (mut dropped, mut sent) = (0, 0);
    // The core draws one of the table's two ports at random per query; the
    // second has no UDP port. 64 draws miss either with odds 2^-64.
    for _ in 0..64 {
        let mut f = frame(
            "198.51.100.7:1000".parse().unwrap(),
            VIP4.parse().unwrap(),
            CLIENT_MAC,
            LOCAL_MAC,
            &q,
        );
        match qf(&mut r, &mut f, 0) {
            FrameVerdict::Drop(DropReason::NotOurs) => dropped += 1,
            FrameVerdict::Tx { .. } => sent += 1,
            v => panic!("{v:?}"),
        }
    }
    assert!(dropped > 0 && sent > 0, "{dropped} dropped, {sent} sent");
    assert_eq!(
        r.core.table().outstanding(0, 0),
        sent,
        "the dropped ones hold no slot"
    );
}

#[test]
fn answers_are_told_from_queries_by_port_and_our_address() {
    let r = rig();
    let be: SocketAddr = "10.9.0.11:53".parse().unwrap();
    let ours = SocketAddr::new(IpAddr::V4(SRC4), PORTS[1]);
    let ours6: SocketAddr = format!("[2001:db8:9::1]:{}", PORTS[0]).parse().unwrap();
    let a = frame(be, ours, B1_MAC, LOCAL_MAC, b"x");
    assert!(r.env.is_answer(&a));
    let a6 = frame(
        "[2001:db8:9::11]:53".parse().unwrap(),
        ours6,
        B2_MAC,
        LOCAL_MAC,
        b"x",
    );
    assert!(r.env.is_answer(&a6));
    // Our port on another address, another port on our address, a query.
    let other_ip = frame(
        be,
        SocketAddr::new("10.9.0.2".parse().unwrap(), PORTS[1]),
        B1_MAC,
        LOCAL_MAC,
        b"x",
    );
    assert!(!r.env.is_answer(&other_ip));
    let other_port = frame(
        be,
        SocketAddr::new(IpAddr::V4(SRC4), 40002),
        B1_MAC,
        LOCAL_MAC,
        b"x",
    );
    assert!(!r.env.is_answer(&other_port));
    let q = frame(
        "198.51.100.7:1000".parse().unwrap(),
        VIP4.parse().unwrap(),
        CLIENT_MAC,
        LOCAL_MAC,
        b"x",
    );
    assert!(!r.env.is_answer(&q));
    // Short and non-IP frames are not answers (and do not panic).
    for n in 0..a.len() {
        let _ = r.env.is_answer(&a[..n]);
    }
    assert!(!r.env.is_answer(&a[..20]));
    let mut arp = a.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert!(!r.env.is_answer(&arp));
}

/// Offset of the UDP header in a frame `frame()` built.
fn udp_off(f: &[u8]) -> usize {
    if u16::from_be_bytes([f[12], f[13]]) == ether::ETHERTYPE_IPV6 {
        14 + 40
    } else {
        14 + 20
    }
}

/// Turns the UDP checksum of a `frame()` into what a sender with TX
/// checksum offload leaves there: the folded pseudo-header sum.
fn make_partial(f: &mut [u8]) {
    let u = udp_off(f);
    let udp_len = u16::from_be_bytes([f[u + 4], f[u + 5]]);
    let addrs = if u == 34 { &f[26..34] } else { &f[22..54] };
    let pseudo = checksum::sum_bytes(addrs) + 17 + u64::from(udp_len);
    let p = checksum::fold(pseudo);
    f[u + 6..u + 8].copy_from_slice(&p.to_be_bytes());
}

#[test]
fn partial_checksums_are_completed_on_queries_and_answers() {
    for (client, vip) in [("198.51.100.7:4000", VIP4), ("[2001:db8:c::7]:4000", VIP6)] {
        let mut r = rig();
        let q = build_query(0x4242, "partial.example", qtype::A);
        let mut f = frame(
            client.parse().unwrap(),
            vip.parse().unwrap(),
            CLIENT_MAC,
            LOCAL_MAC,
            &q,
        );
        make_partial(&mut f);
        let FrameVerdict::Tx { len } = qf(&mut r, &mut f, 0) else {
            panic!("{vip}: a partial checksum is not a bad one")
        };
        // seen() checks the forwarded checksum against a full computation.
        let out = seen(&f[..len]);
        let ans = answer_payload(&out.payload);
        let mut a = frame(out.dst, out.src, B1_MAC, LOCAL_MAC, &ans);
        make_partial(&mut a);
        let FrameVerdict::Tx { len } = r.core.answer_frame(&r.snap, &r.env, &mut a, 10) else {
            panic!("{vip}: answer with a partial checksum dropped")
        };
        let back = seen(&a[..len]);
        assert_eq!(back.dst, client.parse().unwrap());
        assert_eq!(r.core.stats().checksums_completed.get(), 2);
    }
}

#[test]
fn corrupt_datagrams_and_udp6_without_checksum_are_dropped_and_counted() {
    let mut r = rig();
    let q = build_query(9, "corrupt.example", qtype::A);
    let client: SocketAddr = "198.51.100.7:4000".parse().unwrap();
    let mut f = frame(client, VIP4.parse().unwrap(), CLIENT_MAC, LOCAL_MAC, &q);
    let n = f.len();
    f[n - 5] ^= 0x20; // a bit of the name flipped in transit
    assert_eq!(
        qf(&mut r, &mut f, 0),
        FrameVerdict::Drop(DropReason::BadChecksum)
    );
    // IPv4 without a checksum is allowed (RFC 768)...
    let mut f = frame(client, VIP4.parse().unwrap(), CLIENT_MAC, LOCAL_MAC, &q);
    f[40..42].fill(0);
    assert!(matches!(qf(&mut r, &mut f, 0), FrameVerdict::Tx { .. }));
    // ...IPv6 without one is not (RFC 8200).
    let c6: SocketAddr = "[2001:db8:c::7]:4000".parse().unwrap();
    let mut f = frame(c6, VIP6.parse().unwrap(), CLIENT_MAC, LOCAL_MAC, &q);
    f[60..62].fill(0);
    assert_eq!(
        qf(&mut r, &mut f, 0),
        FrameVerdict::Drop(DropReason::Udp6ZeroChecksum)
    );
    // A corrupt answer never reaches the client, and its query still can.
    let (s, a) = forward(&mut r);
    let mut bad = frame(s.dst, s.src, B1_MAC, LOCAL_MAC, &a);
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert_eq!(
        r.core.answer_frame(&r.snap, &r.env, &mut bad, 5),
        FrameVerdict::Drop(DropReason::BadChecksum)
    );
    let mut good = frame(s.dst, s.src, B1_MAC, LOCAL_MAC, &a);
    assert!(matches!(
        r.core.answer_frame(&r.snap, &r.env, &mut good, 6),
        FrameVerdict::Tx { .. }
    ));
    let st = r.core.stats();
    assert_eq!(st.drops_of(DropReason::BadChecksum), 2);
    assert_eq!(st.drops_of(DropReason::Udp6ZeroChecksum), 1);
}

#[test]
fn an_error_answer_without_question_completes_and_noerror_does_not() {
    let mut r = rig();
    let (s, a) = forward(&mut r);
    let mut bare = a[..12].to_vec();
    bare[4..12].fill(0);
    bare[3] &= 0xf0; // NOERROR: cannot be matched
    let mut f = frame(s.dst, s.src, B1_MAC, LOCAL_MAC, &bare);
    assert_eq!(
        r.core.answer_frame(&r.snap, &r.env, &mut f, 5),
        FrameVerdict::Drop(DropReason::NoQuestion)
    );
    bare[3] = (bare[3] & 0xf0) | 5; // REFUSED
    let mut f = frame(s.dst, s.src, B1_MAC, LOCAL_MAC, &bare);
    let FrameVerdict::Tx { len } = r.core.answer_frame(&r.snap, &r.env, &mut f, 6) else {
        panic!("a question-less REFUSED is delivered")
    };
    let back = seen(&f[..len]);
    assert_eq!(&back.payload[..2], &[0, 7], "the client's ID");
    assert_eq!(back.payload.len(), 12);
}

mod unreachable;
