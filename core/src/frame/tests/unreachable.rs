//! ICMP destination unreachable for our queries: failover and re-dispatch,
//! with literal frames (the ICMP messages built here the way Linux builds
//! them: the offending packet quoted from its IP header on).

use super::*;
use crate::core::IcmpOutcome;
use crate::fate::Ejection;
use crate::snapshot::BackendId;
use crate::wire::icmp;

/// Two backends per family, so a re-dispatch has somewhere to go.
fn pair_cfg(extra: &str) -> Config {
    Config::parse(
        &format!(
            r#"
[[frontend]]
listen = "{VIP4}"
[[frontend]]
listen = "{VIP6}"
pool = "six"
[pool.default]
policy = "first-available"
[pool.six]
policy = "first-available"
[[backend]]
name = "b1"
address = "10.9.0.11:53"
mac = "02:00:00:00:00:b1"
order = 1
[[backend]]
name = "b2"
address = "10.9.0.12:53"
mac = "02:00:00:00:00:b2"
order = 2
[[backend]]
name = "s1"
address = "[2001:db8:9::11]:53"
mac = "02:00:00:00:00:b1"
pools = ["six"]
order = 1
[[backend]]
name = "s2"
address = "[2001:db8:9::12]:53"
mac = "02:00:00:00:00:b2"
pools = ["six"]
order = 2
{extra}
"#
        ),
        "test",
    )
    .unwrap()
}

fn pair_rig(extra: &str) -> Rig {
    rig_with(pair_cfg(extra), Overrides::default())
}

/// The pair rig whose core keeps its query frames for re-sending, as an
/// AF_XDP worker's does.
fn resend_rig() -> Rig {
    let mut r = pair_rig("");
    let placeholder = Core::new(
        0,
        Arc::new(InflightTable::new(1, 1, 1024)),
        Arc::new(WorkerStats::default()),
    );
    r.core = std::mem::replace(&mut r.core, placeholder).with_resend();
    r
}

fn id(s: &str, r: &Rig) -> BackendId {
    r.snap.live_backends().find(|b| b.name == s).unwrap().id
}

/// A query from a client to `vip`, forwarded: the frame as it left.
fn sent(r: &mut Rig, client: &str, vip: &str) -> Vec<u8> {
    let q = build_query(0x4242, "www.example.com", qtype::A);
    let mut f = frame(
        client.parse().unwrap(),
        vip.parse().unwrap(),
        CLIENT_MAC,
        LOCAL_MAC,
        &q,
    );
    let FrameVerdict::Tx { len } = qf(r, &mut f, 1_000) else {
        panic!("query not forwarded")
    };
    f.truncate(len);
    f
}

/// The ICMP error the backend's host sends for `query` (a frame we sent):
/// `quote` bytes of its IP packet quoted, type/code as given.
fn icmp_for(query: &[u8], quote: usize, ty: u8, code: u8) -> Vec<u8> {
    // Addresses only: a forged quote need not have a valid checksum.
    let h = PacketHeaders::from_ethernet_slice(query).unwrap();
    let dmac = h.link.unwrap().ethernet2().unwrap().destination;
    let (src, dst): (IpAddr, IpAddr) = match h.net.unwrap() {
        NetHeaders::Ipv4(ip, _) => (ip.source.into(), ip.destination.into()),
        NetHeaders::Ipv6(ip, _) => (ip.source.into(), ip.destination.into()),
        NetHeaders::Arp(_) => unreachable!(),
    };
    let ip = &query[14..];
    let quoted = &ip[..quote.min(ip.len())];
    let mut msg = vec![ty, code, 0, 0, 0, 0, 0, 0];
    msg.extend_from_slice(quoted);
    let mut f = Vec::new();
    f.extend_from_slice(&LOCAL_MAC);
    f.extend_from_slice(&dmac);
    match (dst, src) {
        (IpAddr::V4(from), IpAddr::V4(to)) => {
            let c = checksum::checksum(0, &msg);
            msg[2..4].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&[0x08, 0x00]);
            let mut h = etherparse::Ipv4Header::new(
                msg.len() as u16,
                64,
                etherparse::IpNumber::ICMP,
                from.octets(),
                to.octets(),
            )
            .unwrap();
            h.header_checksum = h.calc_header_checksum();
            f.extend_from_slice(&h.to_bytes());
        }
        (IpAddr::V6(from), IpAddr::V6(to)) => {
            let pseudo = checksum::pseudo_header(
                from.into(),
                to.into(),
                icmp::NEXT_ICMPV6,
                msg.len() as u16,
            );
            let c = checksum::checksum(pseudo, &msg);
            msg[2..4].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&[0x86, 0xdd]);
            let h = etherparse::Ipv6Header {
                traffic_class: 0,
                flow_label: Default::default(),
                payload_length: msg.len() as u16,
                next_header: etherparse::IpNumber::IPV6_ICMP,
                hop_limit: 64,
                source: from.octets(),
                destination: to.octets(),
            };
            f.extend_from_slice(&h.to_bytes());
        }
        _ => unreachable!(),
    }
    f.extend_from_slice(&msg);
    f
}

fn port_unreachable(query: &[u8]) -> Vec<u8> {
    if query[12..14] == [0x86, 0xdd] {
        icmp_for(query, 1232, 1, 4)
    } else {
        icmp_for(query, 548, 3, 3)
    }
}

fn icmp(r: &mut Rig, f: &mut [u8], now: u64) -> FrameVerdict {
    assert_eq!(r.env.kind(f), FrameKind::Icmp);
    let n = f.len();
    r.core.icmp_frame(&r.snap, &r.env, f, n, now)
}

fn redispatch(client: &str, vip: &str, dead: &str, live: &str, live_addr: &str) {
    let mut r = pair_rig("");
    let q = sent(&mut r, client, vip);
    let first = seen(&q);
    let dead_id = id(dead, &r);
    assert_eq!(first.dmac, B1_MAC, "policy first: {dead} takes it");

    let mut e = port_unreachable(&q);
    let FrameVerdict::Tx { len } = icmp(&mut r, &mut e, 2_000) else {
        panic!("not re-dispatched")
    };
    let again = seen(&e[..len]);
    assert_eq!((again.smac, again.dmac), (LOCAL_MAC, B2_MAC));
    assert_eq!(again.dst, live_addr.parse().unwrap());
    assert_eq!(again.src.ip(), first.src.ip());
    assert!(PORTS.contains(&again.src.port()));
    assert_eq!(again.ttl, TTL);
    assert_eq!(again.payload[2..], first.payload[2..], "same query");
    assert_eq!(r.core.fate().ejected(dead_id), Some(Ejection::Icmp));
    assert_eq!(r.core.stats().redispatched.get(), 1);
    assert_eq!(r.core.stats().icmp_errors.get(), 1);

    // The dead backend's slot is gone: a late answer from it is unknown.
    let ans = answer_payload(&first.payload);
    let mut a = frame(first.dst, first.src, B1_MAC, LOCAL_MAC, &ans);
    assert!(matches!(
        r.core.answer_frame(&r.snap, &r.env, &mut a, 3_000),
        FrameVerdict::Drop(DropReason::UnknownId)
    ));
    // The live backend's answer reaches the client under its own ID.
    let ans = answer_payload(&again.payload);
    let mut a = frame(again.dst, again.src, B2_MAC, LOCAL_MAC, &ans);
    let FrameVerdict::Tx { len } = r.core.answer_frame(&r.snap, &r.env, &mut a, 4_000) else {
        panic!("answer dropped")
    };
    let back = seen(&a[..len]);
    assert_eq!(back.dst, client.parse().unwrap());
    assert_eq!(back.src, vip.parse().unwrap());
    assert_eq!(&back.payload[..2], &[0x42, 0x42]);

    // Until the next snapshot, new queries pass the ejected backend over.
    let q = sent(&mut r, client, vip);
    assert_eq!(seen(&q).dst, live_addr.parse().unwrap());
    let _ = live;
}

#[test]
fn port_unreachable_v4_takes_the_backend_out_and_redispatches() {
    redispatch("198.51.100.7:3333", VIP4, "b1", "b2", "10.9.0.12:53");
}

#[test]
fn port_unreachable_v6_takes_the_backend_out_and_redispatches() {
    redispatch(
        "[2001:db8:c::7]:3333",
        VIP6,
        "s1",
        "s2",
        "[2001:db8:9::12]:53",
    );
}

#[test]
fn a_quote_cut_short_releases_the_query_and_still_takes_the_backend_out() {
    let mut r = pair_rig("");
    let q = sent(&mut r, "198.51.100.7:3333", VIP4);
    // IP + UDP + 12 bytes of DNS header + 3 bytes of the name.
    let mut e = icmp_for(&q, 20 + 8 + 15, 3, 3);
    assert_eq!(
        icmp(&mut r, &mut e, 2_000),
        FrameVerdict::Drop(DropReason::IcmpQuoteShort)
    );
    assert_eq!(r.core.fate().ejected(id("b1", &r)), Some(Ejection::Icmp));
    assert_eq!(r.core.stats().drops_of(DropReason::IcmpQuoteShort), 1);
    assert_eq!(
        r.core.table().outstanding(0, id("b1", &r)),
        0,
        "slot released"
    );
    // A quote without even a DNS header names no slot.
    let mut r = pair_rig("");
    let q = sent(&mut r, "198.51.100.7:3333", VIP4);
    let mut e = icmp_for(&q, 20 + 8 + 4, 3, 3);
    assert_eq!(
        icmp(&mut r, &mut e, 2_000),
        FrameVerdict::Drop(DropReason::IcmpQuoteShort)
    );
    assert_eq!(r.core.fate().ejected(id("b1", &r)), None);
}

#[test]
fn forged_or_foreign_icmp_changes_nothing() {
    let mut r = pair_rig("");
    let q = sent(&mut r, "198.51.100.7:3333", VIP4);
    let b1 = id("b1", &r);
    // Wrong DNS ID in the quote: no query waits under it.
    let mut forged = q.clone();
    forged[14 + 28] ^= 0x5a;
    let mut e = port_unreachable(&forged);
    assert_eq!(
        icmp(&mut r, &mut e, 2_000),
        FrameVerdict::Drop(DropReason::IcmpUnmatched)
    );
    // Right ID, another question.
    let mut other = q.clone();
    let n = other.len();
    other[n - 6] ^= 0x01; // "com" becomes "col"
    let mut e = port_unreachable(&other);
    assert_eq!(
        icmp(&mut r, &mut e, 2_000),
        FrameVerdict::Drop(DropReason::IcmpUnmatched)
    );
    // Right query, claimed for another backend's address.
    let mut e = port_unreachable(&q);
    e[14 + 20 + 8 + 19] ^= 1; // the quoted destination's last byte
    e[14 + 22..14 + 24].copy_from_slice(&[0, 0]);
    let c = checksum::checksum(0, &e[14 + 20..]);
    e[14 + 22..14 + 24].copy_from_slice(&c.to_be_bytes());
    assert_eq!(
        icmp(&mut r, &mut e, 2_000),
        FrameVerdict::Drop(DropReason::IcmpUnmatched)
    );
    // A corrupt ICMP checksum.
    let mut e = port_unreachable(&q);
    e[14 + 20 + 2] ^= 0xff;
    assert_eq!(
        icmp(&mut r, &mut e, 2_000),
        FrameVerdict::Drop(DropReason::BadChecksum)
    );
    // Fragmentation needed is the kernel's (PMTU), never a failover.
    let mut e = icmp_for(&q, 548, 3, 4);
    assert_eq!(
        icmp(&mut r, &mut e, 2_000),
        FrameVerdict::Drop(DropReason::NotOurs)
    );
    // Truncated everywhere: counted, no panic.
    let e = port_unreachable(&q);
    for cut in 0..e.len() {
        let mut f = e[..cut].to_vec();
        let n = f.len();
        let _ = r.core.icmp_frame(&r.snap, &r.env, &mut f, n, 2_000);
    }
    assert_eq!(r.core.fate().ejected(b1), None);
    assert_eq!(r.core.table().outstanding(0, b1), 1, "still waiting");
    // The real one still works after all that.
    let mut e = port_unreachable(&q);
    assert!(matches!(
        icmp(&mut r, &mut e, 2_000),
        FrameVerdict::Tx { .. }
    ));
}

#[test]
fn redispatch_off_or_nowhere_to_go_releases_the_query() {
    let mut r = pair_rig("[failover]\nredispatch = false");
    let q = sent(&mut r, "198.51.100.7:3333", VIP4);
    let mut e = port_unreachable(&q);
    assert_eq!(
        icmp(&mut r, &mut e, 2_000),
        FrameVerdict::Drop(DropReason::RedispatchOff)
    );
    assert_eq!(r.core.fate().ejected(id("b1", &r)), Some(Ejection::Icmp));

    // One backend only: out it goes, and the query has nowhere to go.
    let mut r = rig();
    let q = sent(&mut r, "198.51.100.7:3333", VIP4);
    let mut e = port_unreachable(&q);
    assert_eq!(
        icmp(&mut r, &mut e, 2_000),
        FrameVerdict::Drop(DropReason::RedispatchFailed)
    );
    assert_eq!(r.core.table().outstanding(0, 0), 0);

    // icmp = false: no ejection, the query is still re-sent.
    let mut r = pair_rig("[failover]\nicmp = false");
    let q = sent(&mut r, "198.51.100.7:3333", VIP4);
    let mut e = port_unreachable(&q);
    assert!(matches!(
        icmp(&mut r, &mut e, 2_000),
        FrameVerdict::Tx { .. }
    ));
    assert_eq!(r.core.fate().ejected(id("b1", &r)), None);
}

#[test]
fn the_core_names_every_icmp_outcome() {
    // Sans-I/O: a quote too short for a DNS header.
    let mut r = pair_rig("");
    let mut short = [0u8; 5];
    let out = r
        .core
        .icmp_error(&r.snap, 0, &mut short, false, 1, |_| true, |_| Ok(()));
    assert_eq!(out, IcmpOutcome::Drop(DropReason::IcmpQuoteShort));
}

#[test]
fn queries_held_by_a_backend_taken_out_are_sent_again_once() {
    let mut r = resend_rig();
    let q1 = sent(&mut r, "198.51.100.7:3333", VIP4);
    let q2 = sent(&mut r, "198.51.100.8:4444", VIP4);
    assert_eq!(seen(&q1).dmac, B1_MAC);
    // q2 is answered: nothing to re-send for it.
    let s2 = seen(&q2);
    let mut a = frame(
        s2.dst,
        s2.src,
        B1_MAC,
        LOCAL_MAC,
        &answer_payload(&s2.payload),
    );
    assert!(matches!(
        r.core.answer_frame(&r.snap, &r.env, &mut a, 1_500),
        FrameVerdict::Tx { .. }
    ));
    assert!(
        r.core.resend_due(&r.snap, 2_000).is_empty(),
        "nothing changed"
    );
    let b1 = id("b1", &r);
    r.core.fate().eject(b1, Ejection::Silent, 2_000);
    let due = r.core.resend_due(&r.snap, 2_000);
    assert_eq!(due.len(), 2, "both were sent to b1");
    let mut out = Vec::new();
    for i in due {
        let mut buf = vec![0u8; 2048];
        if let FrameVerdict::Tx { len } = r.core.resend_frame(&r.snap, &r.env, i, &mut buf, 2_500) {
            out.push(buf[..len].to_vec());
        }
    }
    assert_eq!(out.len(), 1, "only the query still waiting");
    let again = seen(&out[0]);
    let first = seen(&q1);
    assert_eq!(
        (again.dmac, again.dst),
        (B2_MAC, "10.9.0.12:53".parse().unwrap())
    );
    assert_eq!(again.payload[2..], first.payload[2..]);
    assert_eq!(r.core.stats().redispatched.get(), 1);
    // b2's answer reaches the client; b1's late one is unknown.
    let mut a = frame(
        again.dst,
        again.src,
        B2_MAC,
        LOCAL_MAC,
        &answer_payload(&again.payload),
    );
    let FrameVerdict::Tx { len } = r.core.answer_frame(&r.snap, &r.env, &mut a, 3_000) else {
        panic!("answer dropped")
    };
    assert_eq!(seen(&a[..len]).dst, "198.51.100.7:3333".parse().unwrap());
    let mut late = frame(
        first.dst,
        first.src,
        B1_MAC,
        LOCAL_MAC,
        &answer_payload(&first.payload),
    );
    assert_eq!(
        r.core.answer_frame(&r.snap, &r.env, &mut late, 3_500),
        FrameVerdict::Drop(DropReason::UnknownId)
    );
    // Handed out once.
    assert!(r.core.resend_due(&r.snap, 4_000).is_empty());
}

#[test]
fn many_held_queries_are_each_answered_once_after_the_resend() {
    let mut r = resend_rig();
    let clients: Vec<String> = (0..50)
        .map(|i| format!("198.51.100.{}:{}", 10 + i, 1000 + i))
        .collect();
    for c in &clients {
        let q = sent(&mut r, c, VIP4);
        assert_eq!(seen(&q).dmac, B1_MAC);
    }
    r.core.fate().eject(id("b1", &r), Ejection::Silent, 2_000);
    let due = r.core.resend_due(&r.snap, 2_000);
    assert_eq!(due.len(), 50);
    let mut out = Vec::new();
    for i in due {
        let mut buf = vec![0u8; 2048];
        if let FrameVerdict::Tx { len } = r.core.resend_frame(&r.snap, &r.env, i, &mut buf, 2_500) {
            out.push(buf[..len].to_vec());
        }
    }
    assert_eq!(out.len(), 50);
    let mut back = std::collections::HashSet::new();
    for f in &out {
        let s = seen(f);
        let mut a = frame(s.dst, s.src, B2_MAC, LOCAL_MAC, &answer_payload(&s.payload));
        let v = r.core.answer_frame(&r.snap, &r.env, &mut a, 3_000);
        let FrameVerdict::Tx { len } = v else {
            panic!("answer dropped: {v:?}")
        };
        back.insert(seen(&a[..len]).dst);
    }
    assert_eq!(back.len(), 50);
    assert_eq!(r.core.stats().redispatched.get(), 50);
}
