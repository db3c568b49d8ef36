//! Rules and the EDNS clamp through the running balancer (socket data
//! plane), checked with dig: what a client really sees.

mod common;

use common::*;
use dnsrail_engine::stats::DropReason;
use dnsrail_engine::wire::dns::{add_opt, build_query};
use std::net::UdpSocket;
use std::time::Duration;

const RULES: &str = r#"
[[rule]]
name = "no-any"
match = { qtype = "ANY" }
action = "refused"

[[rule]]
name = "sinkhole"
match = { suffix = "malware.example" }
action = { spoof = ["192.0.2.66", "2001:db8::66"], ttl = 60 }

[[rule]]
name = "hide-corp-outside"
match = { suffix = "corp.example", not = { source = "127.0.0.2/32" } }
action = "refused"

[[rule]]
name = "gone"
match = { regex = '^old[0-9]+\.example$' }
action = "nxdomain"

[[rule]]
name = "flood"
match = { name = "flood.example" }
action = "truncate"

[[rule]]
name = "silence"
match = { name = "silent.example" }
action = "drop"
"#;

#[test]
fn rules_as_a_client_sees_them() {
    let b = backend("127.0.0.1:0");
    let e = engine(config(
        "workers = 2",
        &["127.0.0.1:0"],
        &[("r1", b.addr)],
        RULES,
    ));
    let vip = e.frontend_addrs()[0];
    let out = dig_from("127.0.0.1", vip, &["x.malware.example", "A"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("x.malware.example.") && l.ends_with("60\tIN\tA\t192.0.2.66")),
        "{out}"
    );
    assert!(
        !out.to_lowercase().contains("warning"),
        "dig accepts it without warnings: {out}"
    );
    let out = dig_from("127.0.0.1", vip, &["x.malware.example", "AAAA"]);
    assert!(out.contains("2001:db8::66"), "{out}");
    let out = dig_from("127.0.0.1", vip, &["x.malware.example", "MX"]);
    assert!(
        out.contains("status: NOERROR") && out.contains("ANSWER: 0"),
        "{out}"
    );
    // ANY refused; the local zone hidden from outside, answered inside.
    assert!(
        dig_from("127.0.0.1", vip, &["example.org", "ANY", "+notcp"]).contains("status: REFUSED")
    );
    assert!(dig_from("127.0.0.1", vip, &["db.corp.example", "A"]).contains("status: REFUSED"));
    let inside = dig_from("127.0.0.2", vip, &["db.corp.example", "A"]);
    assert!(
        inside.contains("status: NOERROR") && inside.contains("192.0.2.1"),
        "{inside}"
    );
    assert!(dig_from("127.0.0.1", vip, &["OLD42.example", "A"]).contains("status: NXDOMAIN"));
    // TC=1: dig would retry over TCP (the TCP/53 proxy is the control
    // process's); +ignore shows the truncated UDP answer itself.
    let tc = dig_from("127.0.0.1", vip, &["flood.example", "A", "+ignore"]);
    assert!(tc.contains("flags: qr tc rd ra"), "{tc}");
    let quiet = dig_from("127.0.0.1", vip, &["silent.example", "A", "+time=1"]);
    assert!(
        quiet.contains("timed out") || quiet.contains("no servers could be reached"),
        "{quiet}"
    );
    // Only the inside query reached the backend.
    assert_eq!(b.queries(), 1);
    let t = wait_for(&e, "rule drop", |t| t.drop_count(DropReason::RuleDrop) == 1);
    assert_eq!(t.local_replies, 7);
    let rules = &e.snapshot().rules;
    let hits: Vec<u64> = (0..rules.len()).map(|i| rules.hits(i)).collect();
    assert_eq!(hits, vec![1, 3, 1, 1, 1, 1], "hits per rule");
}

#[test]
fn rules_change_on_reload_and_a_bad_rule_is_refused_by_name() {
    let b = backend("127.0.0.1:0");
    let e = engine(config(
        "workers = 1",
        &["127.0.0.1:0"],
        &[("r1", b.addr)],
        "",
    ));
    let vip = e.frontend_addrs()[0];
    assert!(dig_from("127.0.0.1", vip, &["x.malware.example", "A"]).contains("192.0.2.1"));
    let with_rules = config("workers = 1", &[&vip.to_string()], &[("r1", b.addr)], RULES);
    e.reload(with_rules).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    assert!(dig_from("127.0.0.1", vip, &["x.malware.example", "A"]).contains("192.0.2.66"));
    let text = format!(
        "[[frontend]]\nlisten = \"{vip}\"\n[[backend]]\nname = \"r1\"\naddress = \"{}\"\n[[rule]]\nname = \"bad\"\nmatch = {{ regex = \"(\" }}\naction = \"drop\"\n",
        b.addr
    );
    // The file parses (rules are compiled by the engine for its workers);
    // the reload is refused with the rule's line and key, and the running
    // rules stay.
    let bad = dnsrail_engine::config::Config::parse(&text, "reload.toml").unwrap();
    let err = e.reload(bad).unwrap_err();
    assert_eq!(
        (err.file.as_str(), err.line, err.key.as_deref()),
        ("reload.toml", Some(7), Some("rule[0].match.regex")),
        "{err}"
    );
    assert!(err.message.contains("unclosed group"), "{err}");
    std::thread::sleep(Duration::from_millis(60));
    assert!(dig_from("127.0.0.1", vip, &["x.malware.example", "A"]).contains("192.0.2.66"));
}

#[test]
fn rule_hits_have_a_counter_per_running_worker_after_start_and_reload() {
    // `workers = 0`: one per CPU, a count the file does not say. The rules
    // are compiled for the workers that run, so no two workers share a
    // single-writer counter and no hit is lost.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let b = backend("127.0.0.1:0");
    let e = engine(config(
        "workers = 0",
        &["127.0.0.1:0"],
        &[("r1", b.addr)],
        RULES,
    ));
    assert_eq!(e.snapshot().rules.workers(), cpus);
    let vip = e.frontend_addrs()[0];
    let count = |e: &dnsrail_engine::engine::Engine| {
        let rules = e.snapshot().rules.clone();
        (0..rules.len()).map(|i| rules.hits(i)).sum::<u64>()
    };
    let send = |n: u16| {
        // Many source ports, so the kernel spreads them over every worker.
        for i in 0..n {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.send_to(&build_query(i, "flood.example", 1), vip).unwrap();
            let mut buf = [0u8; 512];
            s.recv_from(&mut buf).expect("a TC answer");
        }
    };
    send(20);
    assert_eq!(count(&e), 20, "hits after start");
    e.reload(config(
        "workers = 0",
        &[&vip.to_string()],
        &[("r1", b.addr)],
        RULES,
    ))
    .unwrap();
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(e.snapshot().rules.workers(), cpus, "after reload");
    send(20);
    // A reload compiles a new set: its counters start at 0.
    assert_eq!(count(&e), 20, "hits after reload");
}

#[test]
fn edns_payload_is_clamped_toward_backends() {
    let fake = UdpSocket::bind("127.0.0.1:0").unwrap();
    fake.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let e = engine(config(
        "workers = 1",
        &["127.0.0.1:0"],
        &[("fake", fake.local_addr().unwrap())],
        "",
    ));
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut q = build_query(1, "big.example", 1);
    add_opt(&mut q, 4096);
    c.send_to(&q, e.frontend_addrs()[0]).unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = fake.recv_from(&mut buf).unwrap();
    let opt = n - 11;
    assert_eq!(&buf[opt + 3..opt + 5], &1232u16.to_be_bytes());
    assert_eq!(&buf[2..opt + 3], &q[2..opt + 3], "nothing else changed");
}

#[test]
fn dynamic_block_on_the_socket_plane_drops_in_userspace_and_expires() {
    let b = common::backend("127.0.0.1:0");
    let e = common::engine(common::config(
        "workers = 1",
        &["127.0.0.1:0"],
        &[("r1", b.addr)],
        "[dynblock]\nqps = 200\nblock_s = 2\n",
    ));
    let fe = e.frontend_addrs()[0];
    // 2 000 qps for a second: over 200 qps within the first 0.1 s.
    let mut spec = dnsrail_bench::load::LoadSpec::new(fe, 2_000);
    spec.rate = 2_000;
    spec.max_outstanding = 200;
    spec.timeout = std::time::Duration::from_millis(200);
    spec.max_duration = std::time::Duration::from_secs(2);
    let r = dnsrail_bench::load::run(&spec).unwrap();
    assert!(r.lost > 0, "the burst was cut off: {}", r.summary());
    let t = common::wait_for(&e, "dyn_blocked drops", |t| {
        t.drop_count(DropReason::DynBlocked) > 0
    });
    let d = e.dynblock().unwrap();
    assert_eq!(d.added.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(t.drop_count(DropReason::DynBlocked) >= r.lost / 2, "{t:?}");
    // Expires after 2 s: answered again.
    let t0 = std::time::Instant::now();
    while !common::dig(fe, &["+notcp", "again.example", "A"]).contains("192.0.2.1") {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(8),
            "never released"
        );
    }
    assert_eq!(d.expired.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn rate_selector_truncates_a_fast_source_through_the_balancer() {
    let b = backend("127.0.0.1:0");
    let e = engine(config(
        "workers = 1",
        &["127.0.0.1:0"],
        &[("r1", b.addr)],
        "[[rule]]\nname = \"fast-to-tcp\"\nmatch = { suffix = \"burst.example\", rate = { qps = 2 } }\naction = \"truncate\"\n",
    ));
    let fe = e.frontend_addrs()[0];
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut tc = 0;
    for i in 0..10u16 {
        s.send_to(&build_query(i, "a.burst.example", 1), fe)
            .unwrap();
        let mut buf = [0u8; 512];
        let (n, _) = s.recv_from(&mut buf).unwrap();
        assert!(n >= 12);
        tc += usize::from(buf[2] & 0x02 != 0);
    }
    // At most 2 a second go through; 10 in a row span at most 2 seconds.
    assert!(tc >= 6, "{tc} of 10 truncated");
    // Other names from the same source are not counted or limited.
    let out = dig(fe, &["+notcp", "calm.example", "A"]);
    assert!(out.contains("192.0.2.1") && !out.contains(" tc"), "{out}");
}
