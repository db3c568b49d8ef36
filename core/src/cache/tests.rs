//! The cache with literal messages: what is kept, how a hit is written,
//! aging, expiry, serve-stale, keys kept apart, collisions, and a writer
//! racing a reader.

use super::answer::analyse;
use super::*;
use crate::wire::dns::{add_opt, build_query, parse_question, qtype, rcode};
use std::sync::atomic::Ordering;

const NS: u64 = 1_000_000_000;

fn settings() -> Settings {
    Settings::of(&PoolConfig {
        cache_entries: 64,
        ..PoolConfig::default()
    })
}

/// The answer to `query`: QR and RA set, `rc`, then `records`
/// (section, wire bytes after the owner name pointer) counted in place.
fn answer_to(query: &[u8], rc: u8, records: &[(usize, Vec<u8>)]) -> Vec<u8> {
    let q = parse_question(query).unwrap();
    let mut m = query[..q.end].to_vec();
    m[2] |= 0x80;
    m[3] = 0x80 | rc;
    for (section, _) in records {
        let at = 6 + 2 * section;
        let n = u16::from_be_bytes([m[at], m[at + 1]]) + 1;
        m[at..at + 2].copy_from_slice(&n.to_be_bytes());
    }
    for (_, r) in records {
        m.extend_from_slice(&[0xc0, 12]);
        m.extend_from_slice(r);
    }
    m
}

/// An A record's bytes after the owner name.
fn a(ttl: u32, ip: [u8; 4]) -> Vec<u8> {
    let mut r = vec![0, 1, 0, 1];
    r.extend_from_slice(&ttl.to_be_bytes());
    r.extend_from_slice(&[0, 4]);
    r.extend_from_slice(&ip);
    r
}

/// An SOA record's bytes after the owner name (root mname and rname).
fn soa(ttl: u32, minimum: u32) -> Vec<u8> {
    let mut r = vec![0, 6, 0, 1];
    r.extend_from_slice(&ttl.to_be_bytes());
    r.extend_from_slice(&[0, 22, 0, 0]);
    for v in [1u32, 2, 3, 4, minimum] {
        r.extend_from_slice(&v.to_be_bytes());
    }
    r
}

fn ttl_of_first_record(m: &[u8]) -> u32 {
    let q = parse_question(m).unwrap();
    let at = q.end + 2 + 4;
    u32::from_be_bytes(m[at..at + 4].try_into().unwrap())
}

/// The question's hash as the core makes it (keyed per process there; any
/// hash of name and type does here).
fn qhash(m: &[u8]) -> u64 {
    let q = parse_question(m).unwrap();
    crate::hash::name_hash(crate::hash::NAME_SEED, q.name(m)) ^ u64::from(q.qtype) << 48
}

fn key(m: &[u8]) -> Option<u64> {
    let q = parse_question(m).unwrap();
    key::of(m, &q, qhash(m))
}

/// Looks `query` up: the reply if it hit.
fn look(c: &Cache, query: &[u8], now: u64, stale_s: u32) -> Option<Vec<u8>> {
    let q = parse_question(query).unwrap();
    let k = key::of(query, &q, qhash(query))?;
    let mut buf = query.to_vec();
    buf.resize(2048, 0);
    let n = c.answer(0, k, &mut buf, &q, now, stale_s, &mut Scratch::default())?;
    buf.truncate(n);
    Some(buf)
}

#[test]
fn a_hit_keeps_the_clients_id_and_case_and_ages_every_ttl() {
    let c = Cache::new(64);
    let q1 = build_query(0x1111, "www.Example.com", qtype::A);
    let ans = answer_to(
        &q1,
        rcode::NOERROR,
        &[(0, a(300, [192, 0, 2, 1])), (0, a(200, [192, 0, 2, 2]))],
    );
    c.insert(0, key(&q1).unwrap(), &ans, 10 * NS, &settings());
    let q2 = build_query(0x2222, "WWW.example.COM", qtype::A);
    let r = look(&c, &q2, 12 * NS + 5, 0).expect("a hit");
    assert_eq!(r.len(), ans.len());
    assert_eq!(&r[..2], &[0x22, 0x22], "the client's ID");
    assert_eq!(&r[12..29], &q2[12..29], "the client's question bytes");
    assert_eq!(ttl_of_first_record(&r), 298);
    assert_eq!(
        &r[r.len() - 10..r.len() - 6],
        &198u32.to_be_bytes(),
        "second TTL aged"
    );
    assert_eq!(&r[r.len() - 4..], &[192, 0, 2, 2]);
    assert_eq!(r[2] & 0x80, 0x80, "a response");
    assert_eq!(c.counts.totals().hits, 1);
}

#[test]
fn entries_expire_and_are_served_stale_only_when_asked() {
    let c = Cache::new(64);
    let q = build_query(1, "a.example", qtype::A);
    c.insert(
        0,
        key(&q).unwrap(),
        &answer_to(&q, 0, &[(0, a(60, [1, 2, 3, 4]))]),
        0,
        &settings(),
    );
    assert!(look(&c, &q, 59 * NS, 0).is_some());
    assert!(look(&c, &q, 60 * NS, 0).is_none(), "expired");
    let r = look(&c, &q, 600 * NS, 3600).expect("served stale");
    assert_eq!(ttl_of_first_record(&r), STALE_TTL);
    assert!(
        look(&c, &q, 60 * NS + 3600 * NS, 3600).is_none(),
        "past the stale window"
    );
    assert_eq!(c.counts.totals().stale_hits, 1);
}

#[test]
fn do_plain_cd_and_no_edns_are_kept_apart() {
    let plain = build_query(1, "a.example", qtype::A);
    let mut edns = plain.clone();
    add_opt(&mut edns, 1232); // with DO
    let mut edns_no_do = edns.clone();
    let l = edns_no_do.len();
    edns_no_do[l - 4] = 0; // DO off
    let mut cd = plain.clone();
    cd[3] |= 0x10;
    let mut no_rd = plain.clone();
    no_rd[2] &= !0x01;
    let keys: Vec<u64> = [&plain, &edns, &edns_no_do, &cd, &no_rd]
        .iter()
        .map(|m| key(m).unwrap())
        .collect();
    for i in 0..keys.len() {
        for j in i + 1..keys.len() {
            assert_ne!(keys[i], keys[j], "{i} and {j}");
        }
    }
    // The payload size the client advertises does not matter.
    let mut other_size = edns.clone();
    let at = plain.len() + 3;
    other_size[at..at + 2].copy_from_slice(&4096u16.to_be_bytes());
    assert_eq!(key(&other_size), key(&edns));
}

#[test]
fn queries_that_go_past_the_cache() {
    let q = build_query(1, "a.example", qtype::A);
    let mut notify = q.clone();
    notify[2] |= 4 << 3;
    assert_eq!(key(&notify), None, "opcode NOTIFY");
    let mut two = q.clone();
    add_opt(&mut two, 1232);
    add_opt(&mut two, 1232);
    assert_eq!(key(&two), None, "two additional records");
    let mut v1 = q.clone();
    add_opt(&mut v1, 1232);
    let l = v1.len();
    v1[l - 5] = 1;
    assert_eq!(key(&v1), None, "EDNS version 1");
    let mut ecs = q.clone();
    add_opt(&mut ecs, 1232);
    let l = ecs.len();
    ecs[l - 1] = 8; // RDLENGTH 8: one ECS option of 4 bytes
    ecs.extend_from_slice(&[0, 8, 0, 4, 0, 1, 0, 0]);
    assert_eq!(key(&ecs), None, "ECS");
    let mut cookie = q.clone();
    add_opt(&mut cookie, 1232);
    let l = cookie.len();
    cookie[l - 1] = 12;
    cookie.extend_from_slice(&[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert!(key(&cookie).is_some(), "a client cookie is allowed");
    let mut trailing = q.clone();
    trailing.push(0);
    assert_eq!(key(&trailing), None, "trailing bytes");
    let mut bad_opt = q.clone();
    add_opt(&mut bad_opt, 1232);
    let l = bad_opt.len();
    bad_opt[l - 1] = 9; // RDLENGTH past the end
    assert_eq!(key(&bad_opt), None, "an OPT that does not parse");
}

#[test]
fn what_is_not_kept() {
    let s = settings();
    let mut scratch = [0u8; MAX_MSG];
    let q = build_query(1, "a.example", qtype::A);
    let ok = answer_to(&q, 0, &[(0, a(60, [1, 2, 3, 4]))]);
    assert!(analyse(&ok, &s, &mut scratch).is_some());
    let mut tc = ok.clone();
    tc[2] |= 0x02;
    assert!(analyse(&tc, &s, &mut scratch).is_none(), "TC");
    assert!(
        analyse(
            &answer_to(&q, 0, &[(0, a(0, [1, 2, 3, 4]))]),
            &s,
            &mut scratch
        )
        .is_none(),
        "TTL 0"
    );
    let big: Vec<(usize, Vec<u8>)> = (0..33).map(|i| (0, a(60, [1, 2, 3, i]))).collect();
    assert!(
        analyse(&answer_to(&q, 0, &big), &s, &mut scratch).is_none(),
        "33 records (and over 512 bytes)"
    );
    assert!(
        analyse(&answer_to(&q, rcode::REFUSED, &[]), &s, &mut scratch).is_none(),
        "REFUSED"
    );
    assert!(
        analyse(&answer_to(&q, rcode::SERVFAIL, &[]), &s, &mut scratch).is_none(),
        "SERVFAIL by default"
    );
    let sf = Settings { servfail_s: 5, ..s };
    assert_eq!(
        analyse(&answer_to(&q, rcode::SERVFAIL, &[]), &sf, &mut scratch)
            .unwrap()
            .lifetime_s,
        5
    );
    assert!(
        analyse(&answer_to(&q, rcode::NXDOMAIN, &[]), &s, &mut scratch).is_none(),
        "negative without SOA"
    );
    let mut tsig = answer_to(&q, 0, &[(0, a(60, [1, 2, 3, 4]))]);
    tsig[11] = 1;
    tsig.extend_from_slice(&[0, 0, 250, 0, 255, 0, 0, 0, 0, 0, 0]);
    assert!(analyse(&tsig, &s, &mut scratch).is_none(), "TSIG");
    let mut trailing = ok.clone();
    trailing.push(0);
    assert!(
        analyse(&trailing, &s, &mut scratch).is_none(),
        "trailing bytes"
    );
    assert!(
        analyse(&ok[..ok.len() - 1], &s, &mut scratch).is_none(),
        "cut short"
    );
    assert!(analyse(&q, &s, &mut scratch).is_none(), "a query");
}

#[test]
fn lifetimes_follow_rfc_2308_and_the_clamps() {
    let s = settings();
    let capped = Settings {
        negative_ttl_s: 10,
        ..s
    };
    let floor = Settings {
        min_ttl_s: 120,
        ..s
    };
    let mut scratch = [0u8; MAX_MSG];
    let q = build_query(1, "nx.example", qtype::A);
    // (rcode, section, record, settings, lifetime, why)
    for (rc, section, record, set, lifetime, why) in [
        (rcode::NXDOMAIN, 1, soa(300, 2), &s, 2, "SOA MINIMUM"),
        (rcode::NXDOMAIN, 1, soa(30, 900), &s, 30, "SOA TTL"),
        (rcode::NXDOMAIN, 1, soa(300, 900), &capped, 10, "cap"),
        (0, 1, soa(300, 60), &s, 60, "NODATA"),
        (0, 0, a(1_000_000, [1, 2, 3, 4]), &s, 86_400, "max"),
        (0, 0, a(5, [1, 2, 3, 4]), &floor, 120, "min"),
    ] {
        let msg = answer_to(&q, rc, &[(section, record)]);
        assert_eq!(
            analyse(&msg, set, &mut scratch).unwrap().lifetime_s,
            lifetime,
            "{why}"
        );
    }
}

#[test]
fn a_server_cookie_is_kept_as_padding_and_the_opt_ttl_is_not_aged() {
    let s = settings();
    let mut scratch = [0u8; MAX_MSG];
    let q = build_query(1, "a.example", qtype::A);
    let mut m = answer_to(&q, 0, &[(0, a(60, [1, 2, 3, 4]))]);
    m[11] = 1;
    m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 20]);
    m.extend_from_slice(&[0, 10, 0, 16]);
    m.extend_from_slice(&[0xaa; 16]);
    let an = analyse(&m, &s, &mut scratch).unwrap();
    assert_eq!(an.nttl, 1, "the OPT's TTL field is no TTL");
    let kept = &scratch[..m.len()];
    let opt = m.len() - 20;
    assert_eq!(
        &kept[opt..opt + 4],
        &[0, 12, 0, 16],
        "PADDING of the same length"
    );
    assert!(kept[opt + 4..].iter().all(|&b| b == 0));
    assert_eq!(&kept[..opt], &m[..opt]);
}

#[test]
fn a_key_collision_never_answers_another_question() {
    let c = Cache::new(64);
    let qa = build_query(1, "a.example", qtype::A);
    let k = key(&qa).unwrap();
    c.insert(
        0,
        k,
        &answer_to(&qa, 0, &[(0, a(60, [1, 2, 3, 4]))]),
        0,
        &settings(),
    );
    for other in [
        build_query(2, "b.example", qtype::A),
        build_query(2, "a.example", qtype::AAAA),
        build_query(2, "aa.example", qtype::A),
    ] {
        let q = parse_question(&other).unwrap();
        let mut buf = other.clone();
        buf.resize(512, 0);
        let before = buf.clone();
        assert_eq!(
            c.answer(0, k, &mut buf, &q, NS, 0, &mut Scratch::default()),
            None
        );
        assert_eq!(buf, before, "the query is left untouched");
    }
}

#[test]
fn a_full_set_evicts_what_expires_first_and_sizes_round_up() {
    assert_eq!(Cache::new(1).capacity(), 4);
    assert_eq!(Cache::new(100).capacity(), 128);
    let c = Cache::new(4); // one set
    let s = settings();
    let qs: Vec<Vec<u8>> = (0..5)
        .map(|i| build_query(1, &format!("n{i}.example"), qtype::A))
        .collect();
    let put = |i: usize| {
        let ttl = if i == 1 { 10 } else { 100 };
        let q = &qs[i];
        c.insert(
            0,
            key(q).unwrap(),
            &answer_to(q, 0, &[(0, a(ttl, [1, 2, 3, 4]))]),
            0,
            &s,
        );
    };
    (0..5).for_each(put);
    // The full set turned the fifth name away on its first miss (the
    // doorkeeper): nothing asked for was pushed out by a name asked once.
    assert_eq!(c.counts.totals().not_admitted, 1);
    assert!(look(&c, &qs[4], NS, 0).is_none());
    assert!(look(&c, &qs[1], NS, 0).is_some());
    // Its second miss in a row gets it in, in place of the soonest to expire.
    put(4);
    assert_eq!(c.len(), 4);
    assert!(
        look(&c, &qs[1], NS, 0).is_none(),
        "the soonest to expire went"
    );
    for i in [0, 2, 3, 4] {
        assert!(look(&c, &qs[i], NS, 0).is_some(), "{i}");
    }
}

#[test]
fn a_reader_racing_a_writer_never_sees_a_torn_entry() {
    let c = std::sync::Arc::new(Cache::new(4));
    let q = build_query(1, "race.example", qtype::A);
    let k = key(&q).unwrap();
    let answers: Vec<Vec<u8>> = (0..2u8)
        .map(|v| {
            answer_to(
                &q,
                0,
                &(0..20).map(|_| (0, a(100, [v; 4]))).collect::<Vec<_>>(),
            )
        })
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let (c, answers, stop, written) =
            (c.clone(), answers.clone(), stop.clone(), written.clone());
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) && i < 20_000_000 {
                c.insert(1, k, &answers[i % 2], 0, &settings());
                i += 1;
                written.store(i, Ordering::Relaxed);
                // A short gap, so that some reads fit between two writes
                // (a writer that never pauses leaves every read a miss).
                for _ in 0..64 {
                    std::hint::spin_loop();
                }
            }
            i
        })
    };
    // Reads until enough of them hit (bounded): every hit must be one of
    // the two answers whole, never a mix.
    let (mut hits, mut misses) = (0, 0);
    for _ in 0..20_000_000 {
        match look(&c, &q, NS, 0) {
            Some(r) => {
                hits += 1;
                let body = &r[parse_question(&r).unwrap().end..];
                let v = body[body.len() - 1];
                assert!(
                    body.chunks(16).all(|rr| rr[12..16] == [v; 4]),
                    "torn: {body:?}"
                );
            }
            None => misses += 1,
        }
        // Enough reads, and the writer really wrote meanwhile (on a busy
        // machine it may get its CPU late).
        if hits >= 20_000 && written.load(Ordering::Relaxed) >= 1_000 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().unwrap();
    assert!(
        hits > 0,
        "no read hit in 2 000 000 ({misses} misses, {writes} writes)"
    );
    assert!(
        writes >= 1_000,
        "the writer wrote {writes} times while the reader read"
    );
}

#[test]
fn purge_by_name_and_by_suffix() {
    let c = Cache::new(64);
    let names = ["a.example", "b.a.example", "ba.example", "other.test"];
    for n in names {
        let q = build_query(1, n, qtype::A);
        c.insert(
            0,
            key(&q).unwrap(),
            &answer_to(&q, 0, &[(0, a(60, [1, 2, 3, 4]))]),
            0,
            &settings(),
        );
    }
    assert_eq!(c.len(), 4);
    let wire = |n: &str| crate::rules::wire_name(n).unwrap();
    assert_eq!(c.purge(&wire("A.EXAMPLE"), false), 1, "exact, any case");
    assert_eq!(
        c.purge(&wire("a.example"), true),
        1,
        "b.a.example, not ba.example"
    );
    let hit = |n: &str| look(&c, &build_query(1, n, qtype::A), NS, 0).is_some();
    assert!(!hit("a.example") && !hit("b.a.example"));
    assert!(hit("ba.example") && hit("other.test"));
    assert_eq!(c.purge(&wire("."), true), 2, "the root purges everything");
    assert!(c.is_empty());
}
