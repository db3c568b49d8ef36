//! The packet cache through the running balancer (socket data plane),
//! checked with dig: hits that never reach the backend, TTLs going down,
//! the client's letter case, DO and plain kept apart, NXDOMAIN kept for the
//! SOA's MINIMUM, purge, reload, and serve-stale once every backend is gone.

mod common;

use common::*;
use std::time::Duration;

/// The TTL of the first answer record for `name` in dig's output.
fn ttl(out: &str, name: &str) -> Option<u32> {
    out.lines()
        .filter(|l| !l.starts_with(';'))
        .find(|l| l.to_ascii_lowercase().starts_with(&format!("{name}.")))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|t| t.parse().ok())
}

const CACHE: &str = "[pool.default]\ncache_entries = 1024\n";

/// Waits (bounded) until the backend has seen `n` queries, then a moment
/// more, and returns what it saw.
fn seen(b: &dnsrail_bench::backend::Backend, n: u64) -> u64 {
    for _ in 0..100 {
        if b.queries() >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(50));
    b.queries()
}

#[test]
fn answers_come_from_the_cache_as_a_client_sees_them() {
    let b = backend("127.0.0.1:0");
    let cfg = |extra: &str| config("workers = 2", &["127.0.0.1:0"], &[("r1", b.addr)], extra);
    let e = engine(cfg(CACHE));
    let vip = e.frontend_addrs()[0];
    let first = dig(vip, &["www.example.com", "A"]);
    assert_eq!(ttl(&first, "www.example.com"), Some(300), "{first}");
    assert_eq!(seen(&b, 1), 1);

    // Again, and with another case: from the cache.
    let again = dig(vip, &["www.example.com", "A"]);
    assert!(
        again.contains("status: NOERROR") && again.contains("192.0.2.1"),
        "{again}"
    );
    let cased = dig(vip, &["WwW.ExAmPlE.cOm", "A"]);
    assert!(
        cased.contains("WwW.ExAmPlE.cOm."),
        "the client's case: {cased}"
    );
    assert_eq!(seen(&b, 1), 1, "the backend was asked once");

    // TTLs go down.
    std::thread::sleep(Duration::from_millis(2100));
    let later = dig(vip, &["www.example.com", "A"]);
    let t = ttl(&later, "www.example.com").expect("an answer");
    assert!((296..=298).contains(&t), "TTL {t}: {later}");
    assert_eq!(seen(&b, 1), 1);

    // DO and no EDNS are other keys: each asked once, then cached.
    for args in [["+dnssec"], ["+noedns"]] {
        let n = b.queries();
        dig(vip, &["www.example.com", "A", args[0]]);
        assert_eq!(seen(&b, n + 1), n + 1, "{args:?} asks the backend");
        let out = dig(vip, &["www.example.com", "A", args[0]]);
        assert!(out.contains("192.0.2.1"), "{out}");
        assert_eq!(seen(&b, n + 1), n + 1, "{args:?} cached");
    }

    // NXDOMAIN is kept for the SOA's MINIMUM (2 s), not its TTL (300 s).
    let n = b.queries();
    let nx = dig(vip, &["gone.nx.example", "A"]);
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    assert!(dig(vip, &["gone.nx.example", "A"]).contains("status: NXDOMAIN"));
    assert_eq!(seen(&b, n + 1), n + 1, "the second NXDOMAIN from the cache");
    std::thread::sleep(Duration::from_millis(2100));
    dig(vip, &["gone.nx.example", "A"]);
    assert_eq!(seen(&b, n + 2), n + 2, "expired after 2 s");

    // Purge: the three variants of the name go; the next query asks.
    assert_eq!(e.cache_purge("www.example.com", false), Ok(3));
    assert!(e.cache_purge("bad..name", false).is_err());
    let n = b.queries();
    dig(vip, &["www.example.com", "A"]);
    assert_eq!(seen(&b, n + 1), n + 1, "asked again after the purge");
    let c = e.snapshot().pools[0].cache.clone().unwrap();
    let hits = c.counts.totals().hits;
    assert!(hits >= 5, "{hits} hits");

    // A reload keeps the cache; a new size starts it empty.
    let vip_s = vip.to_string();
    let same = config("workers = 2", &[&vip_s], &[("r1", b.addr)], CACHE);
    e.reload(same).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    dig(vip, &["www.example.com", "A"]);
    assert_eq!(seen(&b, n + 1), n + 1, "kept across the reload");
    let bigger = config(
        "workers = 2",
        &[&vip_s],
        &[("r1", b.addr)],
        "[pool.default]\ncache_entries = 4096\n",
    );
    e.reload(bigger).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    dig(vip, &["www.example.com", "A"]);
    assert_eq!(seen(&b, n + 2), n + 2, "emptied by the new size");
}

#[test]
fn expired_answers_are_served_stale_once_every_backend_is_gone() {
    let b1 = backend("127.0.0.1:0");
    let b2 = backend("127.0.0.1:0");
    let e = engine(config(
        "workers = 1",
        &["127.0.0.1:0"],
        &[("r1", b1.addr), ("r2", b2.addr)],
        "[pool.default]\ncache_entries = 64\ncache_max_ttl_s = 1\n",
    ));
    let vip = e.frontend_addrs()[0];
    let out = dig(vip, &["www.example.com", "A"]);
    assert_eq!(ttl(&out, "www.example.com"), Some(300), "{out}");
    std::thread::sleep(Duration::from_millis(1100));
    b1.stop();
    b2.stop();
    // The engine takes each backend out on the ICMP error of its first
    // query to it (those queries time out); then, with no usable backend,
    // the expired answer is served with TTL 30.
    let mut last = String::new();
    for _ in 0..8 {
        last = dig(vip, &["www.example.com", "A", "+time=1"]);
        if ttl(&last, "www.example.com") == Some(30) {
            break;
        }
    }
    assert_eq!(
        ttl(&last, "www.example.com"),
        Some(30),
        "served stale: {last}"
    );
    let c = e.snapshot().pools[0].cache.clone().unwrap();
    assert!(c.counts.totals().stale_hits >= 1);
    // A name never cached gets the pool's all-down answer (SERVFAIL).
    let other = dig(vip, &["other.example", "A", "+time=1"]);
    assert!(other.contains("status: SERVFAIL"), "{other}");
}
