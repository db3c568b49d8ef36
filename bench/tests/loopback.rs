//! Integration through real sockets on loopback: a DNS client → dnsrail
//! (socket data plane, in process) → synthetic backends.

mod common;

use common::*;
use dnsrail_bench::backend::{Backend, BackendSpec};
use dnsrail_bench::load::{run, LoadSpec};
use dnsrail_bench::msg::AnswerSpec;
use dnsrail_engine::engine::Engine;
use dnsrail_engine::wire::dns::{add_opt, build_query, qtype};
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn dig_through_the_vip_ipv4_and_ipv6() {
    let b4 = backend("127.0.0.1:0");
    let b6 = backend("[::1]:0");
    let e = engine(config(
        "workers = 2",
        &["127.0.0.1:0", "[::1]:0"],
        &[("r4", b4.addr), ("r6", b6.addr)],
        "",
    ));
    let fe = e.frontend_addrs();
    for vip in &fe {
        let out = dig(*vip, &["www.example.com", "A"]);
        assert!(out.contains("status: NOERROR"), "{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with("www.example.com.") && l.ends_with("IN\tA\t192.0.2.1")),
            "{out}"
        );
        assert!(!out.contains("WARNING"), "{out}");
        let out = dig(*vip, &["x.nx.example", "AAAA"]);
        assert!(out.contains("status: NXDOMAIN"), "{out}");
        let out = dig(*vip, &["v6.example", "AAAA", "+noedns"]);
        assert!(out.contains("2001:db8::1"), "{out}");
    }
    // Clients of both families reached backends of both families.
    assert!(b4.queries() > 0 && b6.queries() > 0);
    let t = e.totals();
    assert_eq!(t.queries, 6);
    assert_eq!(t.answers, 6);
    assert_eq!(t.dropped(), 0);
}

#[test]
fn answers_are_byte_identical_to_the_backends_with_the_client_id() {
    let (b1, b2, e) = pair();
    let vip = e.frontend_addrs()[0];
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut a = [0u8; 4096];
    let mut b = [0u8; 4096];
    for i in 0..200u16 {
        let t = [qtype::A, qtype::AAAA, 16, qtype::ANY][usize::from(i % 4)];
        let name = if i % 5 == 0 {
            format!("n{i}.nx.example")
        } else {
            format!("N{i}.Example.ORG")
        };
        let mut q = build_query(i.wrapping_mul(4099), &name, t);
        if i % 2 == 0 {
            add_opt(&mut q, 4096);
        }
        c.send_to(&q, b1.addr).unwrap();
        let (n1, _) = c.recv_from(&mut a).unwrap();
        c.send_to(&q, vip).unwrap();
        let (n2, from) = c.recv_from(&mut b).unwrap();
        assert_eq!(from, vip, "the answer comes from the VIP");
        assert_eq!(&a[..n1], &b[..n2], "query {i}: identical, ID included");
    }
    assert!(b1.queries() > 200 && b2.queries() > 0, "both backends used");
}

#[test]
fn twenty_thousand_queries_none_lost() {
    let (b1, b2, e) = pair();
    let mut spec = LoadSpec::new(e.frontend_addrs()[0], 20_000);
    spec.max_outstanding = 500;
    let r = run(&spec).unwrap();
    assert_eq!(r.sent, 20_000, "{}", r.summary());
    assert_eq!(r.lost, 0, "{}", r.summary());
    assert_eq!((r.unexpected, r.wrong_question), (0, 0), "{}", r.summary());
    assert_eq!(
        r.rcodes[3],
        (0..20_000u64).filter(|i| i % 7 == 3).count() as u64,
        "NXDOMAIN share: {}",
        r.summary()
    );
    assert!(
        b1.queries() > 5_000 && b2.queries() > 5_000,
        "{} {}",
        b1.queries(),
        b2.queries()
    );
    let t = e.totals();
    assert_eq!((t.queries, t.answers, t.dropped()), (20_000, 20_000, 0));
}

#[test]
fn more_than_65536_queries_in_flight_on_one_worker_all_complete() {
    let slow = Backend::start(BackendSpec {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        delay: Duration::from_secs(4),
        ..BackendSpec::default()
    })
    .unwrap();
    let e = engine(config(
        "workers = 1\nslots_per_worker = 262144\ntimeout_ms = 30000",
        &["127.0.0.1:0"],
        &[("slow", slow.addr)],
        "",
    ));
    let e = Arc::new(e);
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (e, peak, done) = (e.clone(), peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(e.in_flight(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mut spec = LoadSpec::new(e.frontend_addrs()[0], 70_000);
    spec.rate = 35_000; // all sent in 2 s, well inside the 4 s delay
    spec.sockets = 4;
    spec.max_outstanding = 100_000;
    spec.timeout = Duration::from_secs(15);
    let r = run(&spec).unwrap();
    done.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    assert_eq!(r.lost, 0, "{}", r.summary());
    assert_eq!(r.answered, 70_000, "{}", r.summary());
    assert!(peak > 65_536, "engine peak in flight {peak}");
    let t = e.totals();
    assert_eq!(
        t.drop_count(dnsrail_engine::stats::DropReason::InflightFull),
        0
    );
}

#[test]
fn reload_swaps_a_backend_under_load_without_loss() {
    let b1 = backend("127.0.0.1:0");
    let b2 = backend("127.0.0.1:0");
    let b3 = backend("127.0.0.1:0");
    let e = engine(config(
        "workers = 2",
        &["127.0.0.1:0"],
        &[("r1", b1.addr), ("r2", b2.addr)],
        "",
    ));
    let vip = e.frontend_addrs()[0];
    let load = std::thread::spawn(move || {
        let mut spec = LoadSpec::new(vip, 20_000);
        spec.rate = 10_000;
        run(&spec).unwrap()
    });
    std::thread::sleep(Duration::from_millis(700));
    let new = config(
        "workers = 2",
        &[&vip.to_string()],
        &[("r1", b1.addr), ("r3", b3.addr)],
        "",
    );
    e.reload(new).unwrap();
    let r = load.join().unwrap();
    assert_eq!(r.lost, 0, "{}", r.summary());
    assert!(b3.queries() > 1_000, "new backend used: {}", b3.queries());
    let b2_after = b2.queries();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(b2.queries(), b2_after, "removed backend gets nothing more");
}

#[test]
fn all_backends_down_answers_servfail_or_drops_as_configured() {
    let b1 = backend("127.0.0.1:0");
    let e = engine(config(
        "workers = 1",
        &["127.0.0.1:0", "127.0.0.1:0"],
        &[("r1", b1.addr)],
        "",
    ));
    let vip = e.frontend_addrs()[0];
    e.update_overrides(|o| {
        o.down.insert("r1".into(), true);
    });
    std::thread::sleep(Duration::from_millis(50));
    let out = dig(vip, &["down.example", "A"]);
    assert!(out.contains("status: SERVFAIL"), "{out}");
    assert_eq!(b1.queries(), 0);
    assert_eq!(e.totals().local_replies, 1);
    // Drain then undrain: traffic comes back.
    e.update_overrides(|o| {
        o.down.clear();
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(dig(vip, &["up.example", "A"]).contains("status: NOERROR"));
}

#[test]
fn when_all_down_drop_sends_nothing() {
    let b1 = backend("127.0.0.1:0");
    let e = engine(config(
        "workers = 1",
        &["127.0.0.1:0"],
        &[("r1", b1.addr)],
        "[pool.default]\nwhen_all_down = \"drop\"\n",
    ));
    e.update_overrides(|o| {
        o.drained.insert("r1".into(), true);
    });
    std::thread::sleep(Duration::from_millis(50));
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    c.send_to(&build_query(1, "x.example", 1), e.frontend_addrs()[0])
        .unwrap();
    assert!(c.recv_from(&mut [0u8; 512]).is_err(), "no answer");
    wait_for(&e, "no_backend drop", |t| {
        t.drop_count(dnsrail_engine::stats::DropReason::NoBackend) == 1
    });
    assert_eq!(b1.queries(), 0);
    let _ = AnswerSpec::default();
}

/// Another socket on the frontend's address, even one with SO_REUSEPORT
/// (which the kernel would let join the port and take a share of the
/// queries), stops the engine from starting; a second engine on the first
/// one's address is refused the same way.
#[test]
fn a_frontend_address_someone_holds_is_refused_not_shared() {
    use socket2::{Domain, Socket, Type};
    let b = backend("127.0.0.1:0");
    // What the engine says when it refuses to start on `listen`.
    let refusal = |workers: &str, listen: std::net::SocketAddr| {
        let cfg = config(workers, &[&listen.to_string()], &[("r1", b.addr)], "");
        format!("{:#}", Engine::start(cfg).err().expect("refused"))
    };
    let squatter = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
    squatter.set_reuse_port(true).unwrap();
    squatter
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    let held = squatter.local_addr().unwrap().as_socket().unwrap();
    let text = refusal("workers = 2", held);
    assert!(
        text.contains(&format!("cannot listen on {held}")) && text.contains("in use"),
        "{text}"
    );
    drop(squatter);

    // A second engine on the first one's address.
    let first = engine(config(
        "workers = 2",
        &["127.0.0.1:0"],
        &[("r1", b.addr)],
        "",
    ));
    let vip = first.frontend_addrs()[0];
    let text = refusal("workers = 1", vip);
    assert!(text.contains("in use"), "{text}");
    // The first one still answers.
    let out = dig(vip, &["www.example.com", "A"]);
    assert!(out.contains("status: NOERROR"), "{out}");
}
