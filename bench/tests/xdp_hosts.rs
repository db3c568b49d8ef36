//! The AF_XDP data plane on interfaces as users have them, not only on the
//! tuned test topology: a plain veth pair (receive queues as the kernel
//! allocates them, one active; TX checksum offload on, so every frame a
//! local sender makes carries a partial UDP checksum), a veth with more
//! queues allocated than active, and wildcard frontends. Each test builds
//! its own topology (prefix drh*) and tears it down, also on failure.
//! Without root the tests say SKIPPED on stderr and pass.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::netns::{backend4, backend6, Topo, CLIENT4, LB4, VIP4, VIP6};
use common::wait_for;
use dnsrail_bench::load::{self, LoadSpec};
use dnsrail_engine::engine::{Engine, Io};
use dnsrail_engine::wire::dns::{add_opt, build_query, qtype};

/// Frontends `listens` (pool "default" for IPv4, "v6" for IPv6) in front
/// of `n` backends of each family; `extra_engine` adds [engine] keys.
fn config(listens: &[&str], n: usize, extra_engine: &str) -> String {
    let mut t = format!(
        "[engine]\nio = \"xdp\"\ninterface = \"eth0\"\nstats_interval_s = 0\n{extra_engine}\n\
         [pool.v6]\npolicy = \"round-robin\"\n"
    );
    for l in listens {
        let pool = if l.starts_with('[') { "v6" } else { "default" };
        t += &format!("[[frontend]]\nlisten = \"{l}\"\npool = \"{pool}\"\n");
    }
    for i in 1..=n {
        t += &format!(
            "[[backend]]\nname = \"be{i}\"\naddress = \"{}\"\n\
             [[backend]]\nname = \"be{i}-6\"\naddress = \"[{}]:53\"\npools = [\"v6\"]\n",
            backend4(i),
            backend6(i)
        );
    }
    t
}

fn start(topo: &Topo, text: String) -> anyhow::Result<Engine> {
    topo.engine_in_lb(text, "hosts.toml")
}

fn answers(out: &str) -> bool {
    out.contains("status: NOERROR") && !out.contains("WARNING") && !out.contains("timed out")
}

#[test]
fn a_plain_veth_runs_one_worker_and_completes_partial_checksums() {
    let Some(mut topo) = Topo::up_env("drh1", 2, 1, &[("PLAIN", "1")]) else {
        return;
    };
    topo.backend(1);
    topo.backend(2);
    let ch = topo.exec("lb", "ethtool", &["-l", "eth0"]);
    let ch = String::from_utf8_lossy(&ch.stdout).into_owned();
    eprintln!("{ch}");

    // More workers than active queues: a clear error naming the fix.
    let err = match start(&topo, config(&[&format!("{VIP4}:53")], 2, "workers = 2")) {
        Ok(_) => panic!("2 workers on 1 active queue started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("1 active receive queue"), "{err}");
    assert!(err.contains("ethtool -L eth0 rx 2 tx 2"), "{err}");

    // No workers key: one worker per active queue, and it answers.
    let e = start(
        &topo,
        config(&[&format!("{VIP4}:53"), &format!("[{VIP6}]:53")], 2, ""),
    )
    .expect("starts on a plain veth");
    assert_eq!(e.io(), Io::Xdp);
    assert_eq!(e.worker_totals().len(), 1);
    for (server, qtype) in [(VIP4, "A"), (VIP6, "AAAA")] {
        for i in 0..3 {
            let out = topo.dig(server, &[&format!("p{i}.example.com"), qtype]);
            assert!(answers(&out), "{server}: {out}");
        }
    }
    let t = e.totals();
    assert_eq!(t.answers, 6, "{t:?}");
    assert_eq!(t.dropped(), 0, "{t:?}");
    // dig's queries and the backends' answers all came with partial
    // checksums: forwarding them as they were would lose every one.
    assert!(t.checksums_completed >= 12, "{t:?}");
}

#[test]
fn four_allocated_queues_two_active_run_two_workers_answering_on_both() {
    let Some(mut topo) = Topo::up_env("drh2", 2, 4, &[("CHANNELS", "2")]) else {
        return;
    };
    topo.backend(1);
    topo.backend(2);
    let e = start(
        &topo,
        config(&[&format!("{VIP4}:53")], 2, "ports_per_worker = 8"),
    )
    .expect("starts with 2 of 4 queues active");
    assert_eq!(e.worker_totals().len(), 2, "one worker per active queue");
    let vip: SocketAddr = format!("{VIP4}:53").parse().unwrap();
    let report = topo.within("cli", move || {
        let mut spec = LoadSpec::new(vip, 10_000);
        // Many source ports: the switch port spreads flows over both queues.
        spec.sockets = 32;
        spec.max_outstanding = 256;
        load::run(&spec).expect("load runs")
    });
    assert_eq!(report.lost, 0, "{}", report.summary());
    wait_for(&e, "all answers counted", |t| t.answers >= 10_000);
    let per: Vec<u64> = e
        .worker_totals()
        .iter()
        .map(|t| t.backend_sent.iter().sum())
        .collect();
    eprintln!("queries forwarded per worker: {per:?}");
    assert!(
        per.iter().all(|&n| n > 0),
        "both queues carry queries: {per:?}"
    );
    drop(e);
    // Three workers on two active queues: refused with the command.
    let err = match start(&topo, config(&[&format!("{VIP4}:53")], 2, "workers = 3")) {
        Ok(_) => panic!("3 workers on 2 active queues started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("2 active receive queue(s) (4 allocated"),
        "{err}"
    );
    assert!(err.contains("ethtool -L eth0 rx 3 tx 3"), "{err}");
}

#[test]
fn wildcard_frontends_answer_on_every_address_from_that_address() {
    let Some(mut topo) = Topo::up_env("drh3", 1, 1, &[("PLAIN", "1")]) else {
        return;
    };
    topo.backend(1);
    let e = start(&topo, config(&["0.0.0.0:53", "[::]:53"], 1, "")).expect("starts");
    // dig checks the answer's source ("reply from unexpected source").
    for server in [VIP4, LB4, VIP6, "fd99::2"] {
        let out = topo.dig(server, &["w.example.com", "A"]);
        assert!(answers(&out), "{server}: {out}");
    }
    let t = e.totals();
    assert_eq!((t.answers, t.dropped()), (4, 0), "{t:?}");
    // An address the balancer does not own, sent to its MAC anyway: the
    // program passes it to the kernel, which drops it; the engine never
    // sees it.
    let mac = topo.exec("lb", "cat", &["/sys/class/net/eth0/address"]);
    let mac = String::from_utf8_lossy(&mac.stdout).trim().to_string();
    let add = topo.exec(
        "cli",
        "ip",
        &[
            "neigh",
            "replace",
            "10.99.0.77",
            "lladdr",
            &mac,
            "dev",
            "eth0",
        ],
    );
    assert!(add.status.success(), "{add:?}");
    let passed_before = e.xdp_counters().expect("xdp").passed;
    let out = topo.dig("10.99.0.77", &["x.example.com", "A"]);
    assert!(!answers(&out), "nobody owns 10.99.0.77: {out}");
    let t = e.totals();
    assert_eq!(t.queries, 4, "the engine never saw it: {t:?}");
    assert!(e.xdp_counters().unwrap().passed > passed_before);
    // An address added while the engine runs is served within seconds.
    let add = topo.exec("lb", "ip", &["addr", "add", "10.99.0.54/24", "dev", "eth0"]);
    assert!(add.status.success(), "{add:?}");
    let t0 = Instant::now();
    loop {
        let out = topo.dig("10.99.0.54", &["new.example.com", "A"]);
        if answers(&out) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "new address never served: {out}"
        );
    }
}

#[test]
fn a_fragmented_answer_reaches_the_client_through_the_slow_path() {
    let Some(mut topo) = Topo::up_env("drh4", 1, 1, &[("PLAIN", "1")]) else {
        return;
    };
    topo.backend(1);
    // No EDNS clamp: the backend answers the client's 4096 with ~3 100
    // bytes, which leave its host as IP fragments the XDP program passes.
    let e = start(
        &topo,
        config(
            &[&format!("{VIP4}:53"), &format!("[{VIP6}]:53")],
            1,
            "edns_max_payload = 0",
        ),
    )
    .expect("starts");
    for server in [VIP4, VIP6] {
        let out = topo.dig(server, &["+bufsize=4096", "k.big.example", "TXT"]);
        assert!(answers(&out), "{server}: {out}");
        assert!(!out.contains(" tc "), "{server}: not truncated: {out}");
        assert!(
            out.contains("ANSWER: 12"),
            "{server}: the whole answer: {out}"
        );
    }
    let t = e.totals();
    assert_eq!(t.answers_slow_path, 2, "{t:?}");
    assert_eq!(t.answers, 2, "{t:?}");
    assert_eq!(t.backend_timeouts.iter().sum::<u64>(), 0, "{t:?}");
    // With the clamp (the default), the same query gets a TC answer on the
    // fast path, and dig's retry over TCP is ctl's business.
    drop(e);
    let e = start(&topo, config(&[&format!("{VIP4}:53")], 1, "")).expect("starts");
    let out = topo.dig(VIP4, &["+bufsize=4096", "+ignore", "k.big.example", "TXT"]);
    assert!(out.contains(" tc"), "{out}");
    assert_eq!(e.totals().answers_slow_path, 0);
}

#[test]
fn an_mtu_above_the_frame_is_refused_with_the_limit() {
    let Some(mut topo) = Topo::up_env("drh5", 1, 1, &[("PLAIN", "1")]) else {
        return;
    };
    topo.backend(1);
    let set = topo.exec("lb", "ip", &["link", "set", "eth0", "mtu", "9000"]);
    assert!(set.status.success(), "{set:?}");
    let err = match start(&topo, config(&[&format!("{VIP4}:53")], 1, "")) {
        Ok(_) => panic!("started with MTU 9000"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("MTU 9000") && err.contains("1778"), "{err}");
}

#[test]
fn cache_hits_are_answered_from_the_received_frame_on_a_plain_veth() {
    let Some(mut topo) = Topo::up_env("drh6", 1, 1, &[("PLAIN", "1")]) else {
        return;
    };
    topo.backend(1);
    let text = config(&[&format!("{VIP4}:53"), &format!("[{VIP6}]:53")], 1, "").replace(
        "[pool.v6]\npolicy = \"round-robin\"\n",
        "[pool.v6]\npolicy = \"round-robin\"\ncache_entries = 64\n",
    ) + "[pool.default]\ncache_entries = 64\n";
    let e = start(&topo, text).expect("starts");
    assert_eq!(e.io(), Io::Xdp);
    for (server, qtype) in [(VIP4, "A"), (VIP6, "AAAA")] {
        for _ in 0..3 {
            let out = topo.dig(server, &["cached.example.com", qtype]);
            assert!(answers(&out), "{server}: {out}");
        }
    }
    let t = e.totals();
    // One query per family reached a backend; the other four were
    // answered from the cache, in the frames they arrived in (dig
    // accepted every one: addresses, ports and checksums right).
    assert_eq!(t.answers, 2, "{t:?}");
    assert_eq!(t.local_replies, 4, "{t:?}");
    assert_eq!(t.dropped(), 0, "{t:?}");
    let hits: u64 = e
        .snapshot()
        .pools
        .iter()
        .filter_map(|p| p.cache.as_ref())
        .map(|c| c.counts.totals().hits)
        .sum();
    assert_eq!(hits, 4);
}

/// The XDP answer tier on a plain veth: the first query goes to a backend,
/// the second is a hit in the pool's cache (the worker copies the entry
/// into the tier), and from the third on the XDP program answers by
/// itself. dig accepts those answers (addresses, ports, checksums right),
/// in the client's letter case, with TTLs going down.
#[test]
fn the_xdp_answer_tier_answers_repeated_queries_in_the_driver() {
    let Some(mut topo) = Topo::up_env("drh7", 1, 1, &[("PLAIN", "1")]) else {
        return;
    };
    topo.backend(1);
    let text = config(
        &[&format!("{VIP4}:53"), &format!("[{VIP6}]:53")],
        1,
        "xdp_cache_entries = 1024",
    )
    .replace(
        "[pool.v6]\npolicy = \"round-robin\"\n",
        "[pool.v6]\npolicy = \"round-robin\"\ncache_entries = 64\n",
    ) + "[pool.default]\ncache_entries = 64\n";
    // Native XDP_TX on a veth loses the answers: refused, naming the fix.
    let native = text.replace(
        "xdp_cache_entries = 1024",
        "xdp_cache_entries = 1024\nxdp_attach = \"native\"",
    );
    let err = format!("{:#}", start(&topo, native).err().expect("refused"));
    assert!(err.contains("xdp_attach = \"generic\""), "{err}");
    let e = start(&topo, text).expect("starts");
    for (server, qtype) in [(VIP4, "A"), (VIP6, "AAAA")] {
        for i in 0..4 {
            let name = if i == 3 {
                "TiEr.ExAmPle.CoM"
            } else {
                "tier.example.com"
            };
            let out = topo.dig(server, &[name, qtype]);
            assert!(
                answers(&out),
                "{server} query {i}: {:?}: {out}",
                e.xdp_counters()
            );
            assert!(
                out.contains(&format!("{name}.")),
                "the client's case: {out}"
            );
        }
    }
    let x = e.xdp_counters().expect("AF_XDP");
    let t = e.totals();
    assert_eq!(
        t.answers, 2,
        "one query per family reached a backend: {t:?}"
    );
    assert_eq!(
        t.local_replies, 2,
        "one hit per family in the worker: {t:?}"
    );
    assert_eq!(x.tier_answers, 4, "the rest answered by the program: {x:?}");
    assert_eq!(x.tier_drops, 0, "{x:?}");
    let tier = |e: &Engine| e.xdp_counters().unwrap().tier_answers;

    // Queries for the same name that the tier must not take: each goes to
    // a worker (forwarded past the cache, or dropped and counted), never
    // answered by the program. The well-formed one (without EDNS, unlike
    // dig's) is asked twice first (a backend, then the worker's cache,
    // which copies it into the tier), and the third time after them all
    // the program answers it.
    let before = tier(&e);
    let replies = topo.within("cli", move || {
        let good = build_query(0x4242, "tier.example.com", qtype::A);
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut m = good.clone();
            f(&mut m);
            m
        };
        let mut ecs = good.clone();
        add_opt(&mut ecs, 1232);
        ecs[good.len() + 9..good.len() + 11].copy_from_slice(&[0, 8]);
        ecs.extend_from_slice(&[0, 8, 0, 4, 0, 1, 0, 0]); // ECS, family 1, /0
        let bad = [
            with(&|m| m.push(0)),                  // a byte after the question
            with(&|m| m[5] = 2),                   // QDCOUNT 2
            with(&|m| m[2] |= 0x80),               // a response
            with(&|m| m[2] |= 0x10),               // opcode 2
            with(&|m| m[7] = 1),                   // an answer record
            with(&|m| m.truncate(20)),             // cut in the name
            with(&|m| m.truncate(good.len() - 2)), // cut in the class
            with(&|m| {
                add_opt(m, 1232);
                let v = m.len() - 5;
                m[v] = 1; // EDNS version 1
            }),
            ecs,
            [&good[..12], &[0xc0, 12, 0, 1, 0, 1][..]].concat(), // a pointer
        ];
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1500];
        for m in [&good, &good].into_iter().chain(&bad).chain([&good]) {
            s.send_to(m, format!("{VIP4}:53")).unwrap();
            got.push(s.recv(&mut buf).ok().map(|n| buf[..n].to_vec()));
        }
        got
    });
    assert_eq!(tier(&e), before + 1, "only the good query: {replies:?}");
    let last = replies
        .last()
        .unwrap()
        .as_ref()
        .expect("the good query answered");
    assert_eq!(&last[..2], &[0x42, 0x42]);
    assert_eq!(e.xdp_counters().unwrap().tier_drops, 0);

    // The same held question in a datagram whose UDP checksum is wrong: the
    // program leaves it to the worker, which drops it (bad_checksum).
    let (before, dropped) = (tier(&e), e.totals().dropped());
    let answered = topo.within("cli", move || {
        let rx = std::net::UdpSocket::bind("0.0.0.0:40053").unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let dns = build_query(0x4242, "tier.example.com", qtype::A);
        let ulen = (8 + dns.len()) as u16;
        let mut p = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0];
        p.extend_from_slice(&CLIENT4.parse::<std::net::Ipv4Addr>().unwrap().octets());
        p.extend_from_slice(&VIP4.parse::<std::net::Ipv4Addr>().unwrap().octets());
        p.extend_from_slice(&40053u16.to_be_bytes());
        p.extend_from_slice(&53u16.to_be_bytes());
        p.extend_from_slice(&ulen.to_be_bytes());
        p.extend_from_slice(&[0x12, 0x34]); // not the checksum
        p.extend_from_slice(&dns);
        let total = p.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        // IPPROTO_RAW: the header is ours (the kernel fills its checksum).
        let raw = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(libc::IPPROTO_RAW)),
        )
        .unwrap();
        let to: std::net::SocketAddr = format!("{VIP4}:53").parse().unwrap();
        raw.send_to(&p, &to.into()).unwrap();
        let mut buf = [0u8; 512];
        rx.recv(&mut buf).is_ok()
    });
    assert!(!answered, "a datagram with a bad checksum was answered");
    assert_eq!(tier(&e), before);
    assert_eq!(e.totals().dropped(), dropped + 1, "the worker dropped it");

    // TTLs go down in the program's answers too.
    std::thread::sleep(Duration::from_millis(2100));
    let out = topo.dig(VIP4, &["tier.example.com", "A"]);
    let ttl: u32 = out
        .lines()
        .find(|l| l.starts_with("tier.example.com."))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("an answer: {out}"));
    assert!((296..=298).contains(&ttl), "TTL {ttl}: {out}");
    assert_eq!(tier(&e), 6);

    // An entry past its lifetime is not the program's to serve: NXDOMAIN
    // is kept for the SOA's MINIMUM (2 s); after it, a backend is asked.
    let nx = |topo: &Topo| {
        let out = topo.dig(VIP4, &["gone.nx.example", "A"]);
        assert!(out.contains("status: NXDOMAIN"), "{out}");
    };
    let asked = e.totals().answers;
    for _ in 0..3 {
        nx(&topo);
    }
    assert_eq!(tier(&e), 7, "the third from the program");
    assert_eq!(e.totals().answers, asked + 1);
    std::thread::sleep(Duration::from_millis(2300));
    nx(&topo);
    assert_eq!(tier(&e), 7, "expired: not from the program");
    assert_eq!(e.totals().answers, asked + 2, "a backend asked again");

    // Purged: the next query goes to the backend, not to the tier's copy.
    e.cache_purge("tier.example.com", false).unwrap();
    let asked = e.totals().answers;
    assert!(answers(&topo.dig(VIP4, &["tier.example.com", "A"])));
    assert_eq!(e.totals().answers, asked + 1, "asked the backend again");
    assert_eq!(tier(&e), 7);

    // A rule runs before the cache, and only in the workers: with one set,
    // the program answers nothing, and the rule is obeyed.
    for _ in 0..2 {
        assert!(answers(&topo.dig(VIP4, &["tier.example.com", "A"])));
    }
    let before = tier(&e);
    assert!(before > 7, "the tier answers again");
    e.rules_add(
        "[[rule]]\nname = \"no-tier\"\nmatch = { suffix = \"example.com\" }\naction = \"refused\"\n",
        false,
    )
    .unwrap();
    let out = topo.dig(VIP4, &["tier.example.com", "A"]);
    assert!(out.contains("status: REFUSED"), "{out}");
    assert_eq!(tier(&e), before, "the program stood aside");
}

/// Workers rewrite the tier's entries while the XDP program reads them: a
/// tier of one set (two entries) for eight popular names, so nearly every
/// worker hit copies an entry over another while queries for both arrive.
/// Every answer is checked against the backend's records for its question
/// (TTLs aside): a torn or mixed entry would show as a wrong answer.
#[test]
fn answers_stay_right_while_workers_rewrite_the_tier_under_the_program() {
    let Some(mut topo) = Topo::up_env("drh8", 1, 1, &[("PLAIN", "1")]) else {
        return;
    };
    // Each name its own address: an entry served for another name shows.
    topo.backend_with(1, &["--per-name"]);
    let text = config(&[&format!("{VIP4}:53")], 1, "xdp_cache_entries = 2")
        + "[pool.default]\ncache_entries = 1024\n";
    let e = start(&topo, text).expect("starts");
    let vip: SocketAddr = format!("{VIP4}:53").parse().unwrap();
    let r = topo.within("cli", move || {
        let mut spec = LoadSpec::new(vip, 40_000);
        spec.rate = 20_000;
        spec.first = 9 << 32;
        spec.mix = Some(dnsrail_bench::msg::HitMix {
            hot_pct: 100,
            hot_names: 8,
        });
        spec.check_answers = Some(dnsrail_bench::msg::AnswerSpec {
            per_name: true,
            ..Default::default()
        });
        load::run(&spec).unwrap()
    });
    let x = e.xdp_counters().unwrap();
    let t = e.tier(1, 1).expect("the tier is on");
    assert_eq!(
        (r.wrong_question, r.wrong_answer, r.unexpected),
        (0, 0, 0),
        "{}",
        r.summary()
    );
    assert!(r.lost * 100 <= r.sent, "{}", r.summary());
    // Both sides were busy: the program answered, the workers kept
    // rewriting.
    assert!(x.tier_answers > 1_000, "{x:?}");
    assert!(t.promoted > 1_000, "{} copies", t.promoted);
    assert_eq!(x.tier_drops, 0, "{x:?}");
}
