//! The AF_XDP data plane end to end, on the namespace topology of
//! `scripts/netns.sh`: a client, the balancer (XDP program on its eth0) and
//! synthetic backends, each in its own namespace on one bridge. Each test
//! builds its own topology (prefix drx*) and tears it down, also on failure.
//! Without root the tests say SKIPPED on stderr and pass.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::netns::{backend4, backend6, Topo, LB4, VIP4, VIP6};
use common::wait_for;
use dnsrail_bench::load::{self, LoadSpec};
use dnsrail_engine::config::Config;
use dnsrail_engine::engine::{Engine, Io};
use dnsrail_engine::stats::DropReason;

/// An engine config for the balancer namespace: VIP frontends (v4 → pool
/// "default", v6 → pool "v6") in front of `n` backends of each family.
fn xdp_config(n: usize, extra_engine: &str) -> String {
    let mut t = format!(
        "[engine]\nio = \"xdp\"\ninterface = \"eth0\"\nstats_interval_s = 0\n{extra_engine}\n\
         [[frontend]]\nlisten = \"{VIP4}:53\"\n\
         [[frontend]]\nlisten = \"[{VIP6}]:53\"\npool = \"v6\"\n\
         [pool.v6]\npolicy = \"round-robin\"\n"
    );
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

/// Starts an engine inside the balancer namespace (its workers live there)
/// and waits (bounded) until every backend's next hop is resolved.
fn start_in_lb(topo: &Topo, text: String) -> Engine {
    topo.engine_in_lb(text, "xdp.toml")
        .expect("AF_XDP engine starts")
}

fn xdp_attached(topo: &Topo) -> bool {
    let out = topo.exec("lb", "ip", &["link", "show", "dev", "eth0"]);
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}

#[test]
fn dig_v4_and_v6_through_the_vip() {
    let Some(mut topo) = Topo::up("drx1", 2) else {
        return;
    };
    topo.backend(1);
    topo.backend(2);
    let e = start_in_lb(&topo, xdp_config(2, ""));
    assert_eq!(e.io(), Io::Xdp);
    assert!(xdp_attached(&topo));
    for (server, qtype, want) in [(VIP4, "A", "192.0.2.1"), (VIP6, "AAAA", "2001:db8::1")] {
        for i in 0..4 {
            let out = topo.dig(server, &[&format!("www{i}.example.com"), qtype]);
            assert!(out.contains("status: NOERROR"), "{out}");
            assert!(out.contains(want), "{out}");
            assert!(!out.contains("WARNING"), "{out}");
        }
    }
    let out = topo.dig(VIP4, &["missing.nx.example", "A"]);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    let t = e.totals();
    assert_eq!(t.answers, 9, "{t:?}");
    assert_eq!(t.dropped(), 0, "{t:?}");
    // Round robin spread the queries over both backends of each family.
    let snap = e.snapshot();
    for b in snap.live_backends() {
        assert!(
            t.backend_answered[usize::from(b.id)] >= 2,
            "{}: {t:?}",
            b.name
        );
    }
}

/// The engine lost nothing: every query the XDP program redirected reached
/// the engine (no ring overflow), every query the engine saw was answered
/// (no drop, no timeout), and so whatever the client missed never reached
/// the balancer's program. On these shared 2-vCPU machines a starved veth
/// or bridge occasionally drops a few frames before XDP (seen with the code
/// of every version, ~1 run in 5); that is reported, and bounded at 1 %, not
/// charged to the engine.
fn engine_lost_nothing(e: &Engine, t: &dnsrail_engine::stats::Totals, r: &load::LoadReport) {
    let x = e.xdp_counters().expect("AF_XDP");
    assert_eq!(t.dropped(), 0, "engine drops: {t:?}");
    assert_eq!(t.backend_timeouts.iter().sum::<u64>(), 0, "timeouts: {t:?}");
    assert_eq!(t.answers, t.queries, "{t:?}");
    assert_eq!(
        x.queries, t.queries,
        "redirected by XDP = seen by the engine: {x:?}"
    );
    assert_eq!(r.lost, r.sent - t.queries, "{} / {t:?}", r.summary());
    if r.lost > 0 {
        eprintln!(
            "note: {} queries never reached the balancer's XDP program (dropped before it)",
            r.lost
        );
    }
    assert!(r.lost * 100 <= r.sent, "{}", r.summary());
}

#[test]
fn fifty_thousand_queries_lose_none_and_match_the_socket_plane_byte_for_byte() {
    let Some(mut topo) = Topo::up("drx2", 2) else {
        return;
    };
    topo.backend(1);
    topo.backend(2);
    let e = start_in_lb(&topo, xdp_config(2, ""));
    assert_eq!(e.io(), Io::Xdp);
    // The socket data plane in the same namespace, on the balancer's own
    // address: the XDP program passes it to the kernel (not a frontend).
    let sock_text = xdp_config(2, "")
        .replace("io = \"xdp\"", "io = \"socket\"")
        .replace(&format!("{VIP4}:53"), &format!("{LB4}:5300"))
        .replace(&format!("[{VIP6}]:53"), "[fd99::2]:5300");
    let s = start_in_lb(&topo, sock_text);
    assert_eq!(s.io(), Io::Socket);

    let vip: SocketAddr = format!("{VIP4}:53").parse().unwrap();
    let report = topo.within("cli", move || {
        let mut spec = LoadSpec::new(vip, 50_000);
        spec.max_outstanding = 500;
        spec.max_duration = Duration::from_secs(60);
        load::run(&spec).expect("load runs")
    });
    assert_eq!(report.sent, 50_000);
    assert_eq!(
        report.wrong_question + report.unexpected,
        0,
        "{}",
        report.summary()
    );
    let t = wait_for(&e, "all answers counted", |t| {
        t.answers + t.backend_timeouts.iter().sum::<u64>() >= t.queries
    });
    engine_lost_nothing(&e, &t, &report);
    for b in e.snapshot().live_backends().filter(|b| b.addr.is_ipv4()) {
        assert!(
            t.backend_answered[usize::from(b.id)] > 10_000,
            "{} barely used: {t:?}",
            b.name
        );
    }

    // The same 200 queries (same IDs) through both planes: identical bytes.
    let client = topo.udp("cli", "0.0.0.0:0");
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let sock_fe: SocketAddr = format!("{LB4}:5300").parse().unwrap();
    let mut buf_x = [0u8; 1500];
    let mut buf_s = [0u8; 1500];
    for i in 0..200u64 {
        let mut q = Vec::new();
        dnsrail_bench::msg::query_for(1_000_000 + i, 0x1000 + i as u16, &mut q);
        let x = roundtrip(&client, vip, &q, &mut buf_x);
        let y = roundtrip(&client, sock_fe, &q, &mut buf_s);
        assert_eq!(&buf_x[..x], &buf_s[..y], "query {i}");
        assert_eq!(&buf_x[..2], &q[..2], "the client's ID is restored");
    }
}

/// Pins the calling thread (and the threads it starts later) to `cpu`.
fn pin_thread(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays in it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
        assert_eq!(rc, 0, "sched_setaffinity({cpu})");
    }
}

#[test]
fn two_queues_two_workers_answers_complete_across_queues() {
    // Which queue a datagram lands on is the sender's choice, so the test
    // makes it: XPS on the switch port toward the balancer sends what CPU n
    // transmits on queue n. The client runs on CPU 1, so every query reaches
    // worker 1; the backends run on CPU 0, so every answer reaches worker 0,
    // which must complete queries worker 1 sent through the shared table.
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        dnsrail_bench::netns::skip(
            "two CPUs needed to steer queries and answers to different queues",
        );
        return;
    }
    let Some(mut topo) = Topo::up_with_queues("drx7", 2, 2) else {
        return;
    };
    topo.backend_on(1, Some(0));
    topo.backend_on(2, Some(0));
    let xps = topo.exec(
        "sw",
        "sh",
        &[
            "-c",
            "echo 1 > /sys/class/net/lb/queues/tx-0/xps_cpus && \
             echo 2 > /sys/class/net/lb/queues/tx-1/xps_cpus",
        ],
    );
    assert!(xps.status.success(), "XPS: {xps:?}");
    // workers = 0: one per receive queue.
    let e = start_in_lb(&topo, xdp_config(2, "ports_per_worker = 8"));
    assert_eq!(e.worker_totals().len(), 2);
    let vip: SocketAddr = format!("{VIP4}:53").parse().unwrap();
    let report = topo.within("cli", move || {
        pin_thread(1);
        let mut spec = LoadSpec::new(vip, 20_000);
        spec.sockets = 16;
        spec.max_outstanding = 500;
        load::run(&spec).expect("load runs")
    });
    assert_eq!(report.lost, 0, "{}", report.summary());
    wait_for(&e, "all answers counted", |t| t.answers >= 20_000);
    // (forwarded, answered, answered for the other worker) per worker.
    let seen: Vec<(u64, u64, u64)> = e
        .worker_totals()
        .iter()
        .map(|t| {
            (
                t.backend_sent.iter().sum(),
                t.answers,
                t.answers_cross_worker,
            )
        })
        .collect();
    eprintln!("(forwarded, answered, crossed) per worker: {seen:?}");
    assert_eq!(seen.iter().map(|s| s.0).sum::<u64>(), 20_000, "{seen:?}");
    assert_eq!(seen.iter().map(|s| s.1).sum::<u64>(), 20_000, "{seen:?}");
    // Steering puts (nearly) everything across; one crossing proves the
    // shared table, most of them show the steering held.
    let crossed: u64 = seen.iter().map(|s| s.2).sum();
    assert!(
        crossed >= 10_000,
        "answers completed by the other worker: {crossed} of 20000 {seen:?}"
    );
}

#[test]
fn a_blocked_prefix_is_dropped_in_xdp_and_released() {
    let Some(mut topo) = Topo::up("drx8", 1) else {
        return;
    };
    topo.backend(1);
    let e = start_in_lb(&topo, xdp_config(1, ""));
    assert!(topo
        .dig(VIP4, &["before.example", "A"])
        .contains("192.0.2.1"));
    // 10.99.0.8/30 holds the client (.10), not the backend (.21).
    let net: std::net::IpAddr = "10.99.0.8".parse().unwrap();
    e.xdp_block(net, 30, Some(1)).unwrap();
    let queries_before = e.totals().queries;
    let out = topo.dig(VIP4, &["blocked.example", "A"]);
    assert!(out.contains("timed out"), "{out}");
    let x = e.xdp_counters().unwrap();
    assert!(x.blocked >= 1, "{x:?}");
    assert_eq!(e.totals().queries, queries_before, "userspace never saw it");
    // Other traffic from elsewhere is untouched: the backend still answers
    // (its answers come from 10.99.0.21); lifting the block restores service.
    e.xdp_block(net, 30, None).unwrap();
    assert!(topo
        .dig(VIP4, &["after.example", "A"])
        .contains("192.0.2.1"));
    // The engine's API refuses the block map on the socket data plane.
    let sock = start_in_lb(
        &topo,
        xdp_config(1, "")
            .replace("io = \"xdp\"", "io = \"socket\"")
            .replace(&format!("{VIP4}:53"), &format!("{LB4}:5300"))
            .replace(&format!("[{VIP6}]:53"), "[fd99::2]:5300"),
    );
    assert!(sock.xdp_block(net, 30, Some(1)).is_err());
}

#[test]
fn reload_replacing_a_backend_under_load_loses_nothing() {
    let Some(mut topo) = Topo::up("drx9", 3) else {
        return;
    };
    for i in 1..=3 {
        topo.backend(i);
    }
    // be1 + be2 first; the reload swaps be2 for be3 while queries to be2
    // are in flight (its answers then come from a backend no longer listed).
    let two = xdp_config(2, "");
    let e = start_in_lb(&topo, two.clone());
    let vip: SocketAddr = format!("{VIP4}:53").parse().unwrap();
    let load = {
        let t = Topo::clone_handle(&topo);
        std::thread::spawn(move || {
            t.within("cli", move || {
                let mut spec = LoadSpec::new(vip, 60_000);
                spec.rate = 20_000;
                spec.max_outstanding = 2_000;
                load::run(&spec).expect("load runs")
            })
        })
    };
    std::thread::sleep(Duration::from_millis(1_200));
    let three = two
        .replace(&backend4(2), &backend4(3))
        .replace("name = \"be2\"", "name = \"be3\"");
    e.reload(Config::parse(&three, "reload.toml").unwrap())
        .unwrap();
    let report = load.join().unwrap();
    let t = wait_for(&e, "every query answered or timed out", |t| {
        t.answers + t.backend_timeouts.iter().sum::<u64>() >= t.queries
    });
    // The reload refused no answer: nothing from the replaced backend was
    // taken for spoofed, unknown or late, and nothing was dropped at all.
    assert_eq!(t.dropped(), 0, "{t:?}");
    assert_eq!(t.drop_count(DropReason::WrongSource), 0, "{t:?}");
    // What the client missed either never reached the program or was never
    // answered by a backend (a starved synthetic backend on these shared
    // machines, seen with every version); reported, and bounded at 1 %.
    let timeouts: u64 = t.backend_timeouts.iter().sum();
    let unseen = report.sent - t.queries;
    assert_eq!(
        report.lost,
        unseen + timeouts,
        "{} / {t:?}",
        report.summary()
    );
    if report.lost > 0 {
        eprintln!("note: {unseen} queries never reached the program, {timeouts} never answered by a backend");
    }
    assert!(report.lost * 100 <= report.sent, "{}", report.summary());
    let snap = e.snapshot();
    let be3 = snap.live_backends().find(|b| b.name == "be3").unwrap();
    assert!(t.backend_answered[usize::from(be3.id)] > 1_000, "{t:?}");
}

#[test]
fn a_source_over_its_rate_lands_in_the_xdp_drop_map_and_is_released_on_expiry() {
    let Some(mut topo) = Topo::up("drxa", 1) else {
        return;
    };
    topo.backend(1);
    let text = xdp_config(1, "") + "[dynblock]\nqps = 300\nblock_s = 4\n";
    let e = start_in_lb(&topo, text);
    assert!(topo.dig(VIP4, &["calm.example", "A"]).contains("192.0.2.1"));
    // A burst well over 300 qps from the client.
    let vip: SocketAddr = format!("{VIP4}:53").parse().unwrap();
    topo.within("cli", move || {
        // Bounded: once blocked, the rest goes unanswered.
        let mut spec = LoadSpec::new(vip, 2_000);
        spec.max_outstanding = 200;
        spec.timeout = Duration::from_millis(200);
        spec.max_duration = Duration::from_secs(2);
        load::run(&spec).expect("load runs")
    });
    let d = e.dynblock().expect("configured").clone();
    let t0 = Instant::now();
    while d.added.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(5), "never blocked");
        std::thread::sleep(Duration::from_millis(20));
    }
    let blocked: Vec<String> = d
        .list()
        .iter()
        .map(|((ip, l), _)| format!("{ip}/{l}"))
        .collect();
    assert_eq!(blocked, ["10.99.0.10/32"]);
    // In the XDP map: dropped before userspace, counted by the program.
    let queries = e.totals().queries;
    let before = e.xdp_counters().unwrap().blocked;
    let out = topo.dig(VIP4, &["while-blocked.example", "A"]);
    assert!(out.contains("timed out"), "{out}");
    assert!(e.xdp_counters().unwrap().blocked > before);
    assert_eq!(e.totals().queries, queries, "userspace saw none of it");
    // Released on expiry (4 s).
    let t0 = Instant::now();
    while !topo
        .dig(VIP4, &["after-expiry.example", "A"])
        .contains("192.0.2.1")
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "block never expired"
        );
    }
    assert_eq!(d.expired.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(d.list().is_empty());
}

fn roundtrip(s: &UdpSocket, to: SocketAddr, q: &[u8], buf: &mut [u8]) -> usize {
    s.send_to(q, to).unwrap();
    let (n, from) = s.recv_from(buf).unwrap_or_else(|e| panic!("{to}: {e}"));
    assert_eq!(from, to, "the answer comes from the address asked");
    n
}

#[test]
fn the_kernel_path_keeps_working_while_the_engine_runs() {
    let Some(mut topo) = Topo::up("drx3", 1) else {
        return;
    };
    topo.backend(1);
    let e = start_in_lb(&topo, xdp_config(1, ""));
    assert_eq!(e.io(), Io::Xdp);
    // Forget neighbours so ARP and ND run again now, through the XDP program.
    topo.exec("cli", "ip", &["neigh", "flush", "all"]);
    topo.exec("lb", "ip", &["neigh", "flush", "all"]);
    for target in [VIP4, LB4, VIP6, "fd99::2"] {
        let out = topo.exec("cli", "ping", &["-c", "2", "-W", "2", "-i", "0.2", target]);
        assert!(out.status.success(), "ping {target}: {:?}", out);
    }
    // A TCP connection to a kernel listener on the VIP (ctl's TCP/53 lives
    // on the kernel path).
    let listener = topo.within("lb", || {
        std::net::TcpListener::bind(format!("{VIP4}:53")).unwrap()
    });
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut c, _) = listener.accept().unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).unwrap();
        c.write_all(&b).unwrap();
    });
    let reply = topo.within("cli", || {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(format!("{VIP4}:53")).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"hello").unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).unwrap();
        b
    });
    server.join().unwrap();
    assert_eq!(&reply, b"hello");
    // DNS through the VIP still works after all that.
    assert!(topo
        .dig(VIP4, &["after.example", "A"])
        .contains("192.0.2.1"));
    let x = e.xdp_counters().unwrap();
    assert!(x.passed > 0 && x.queries > 0, "{x:?}");
}

#[test]
fn spoofed_and_stray_answers_are_dropped_and_counted() {
    let Some(topo) = Topo::up("drx4", 1) else {
        return;
    };
    // The test plays the backend, to control exactly what it answers.
    let be = topo.udp("be1", &format!("{}:53", backend4(1)));
    be.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let other_port = topo.udp("be1", &format!("{}:5353", backend4(1)));
    let e = start_in_lb(&topo, xdp_config(1, "timeout_ms = 5000"));
    let client = topo.udp("cli", "0.0.0.0:0");
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();

    let mut q = Vec::new();
    dnsrail_bench::msg::query_for(1, 0xabcd, &mut q);
    let vip: SocketAddr = format!("{VIP4}:53").parse().unwrap();
    client.send_to(&q, vip).unwrap();
    let mut buf = [0u8; 1500];
    // The engine's next-hop prod (". NS" from a kernel port) may come first.
    let ports = e.xdp_ports();
    let (n, engine_addr) = loop {
        let (n, from) = be.recv_from(&mut buf).unwrap_or_else(|err| {
            panic!(
                "the query reaches the backend: {err}; engine {:?}; xdp {:?}",
                e.totals(),
                e.xdp_counters()
            )
        });
        if ports.contains(&from.port()) {
            break (n, from);
        }
    };
    assert_eq!(engine_addr.ip().to_string(), LB4);
    let mut answer = buf[..n].to_vec();
    answer[2] |= 0x80; // QR
    let id = u16::from_be_bytes([answer[0], answer[1]]);

    // Wrong ID from the right source.
    let mut wrong_id = answer.clone();
    wrong_id[..2].copy_from_slice(&id.wrapping_add(1).to_be_bytes());
    be.send_to(&wrong_id, engine_addr).unwrap();
    // Right ID from the wrong source port.
    other_port.send_to(&answer, engine_addr).unwrap();
    wait_for(&e, "two drops", |t| {
        t.drop_count(DropReason::UnknownId) >= 1 && t.drop_count(DropReason::WrongSource) >= 1
    });
    assert!(
        client.recv_from(&mut buf).is_err(),
        "nothing reached the client"
    );

    // The real answer still completes, once.
    be.send_to(&answer, engine_addr).unwrap();
    let (n, from) = client.recv_from(&mut buf).expect("the real answer arrives");
    assert_eq!(from, vip);
    assert_eq!(&buf[..2], &[0xab, 0xcd]);
    assert_eq!(&buf[2..n], &answer[2..]);
    // A replay of it is a counted drop, not a second answer.
    be.send_to(&answer, engine_addr).unwrap();
    let t = wait_for(&e, "replay dropped", |t| {
        t.drop_count(DropReason::UnknownId) + t.drop_count(DropReason::Late) >= 2
    });
    assert!(client.recv_from(&mut buf).is_err(), "no second answer");
    assert_eq!(t.answers, 1, "{t:?}");
}

/// The engine binary, built beside this test by `cargo test --workspace`
/// (it belongs to another package, so Cargo gives no CARGO_BIN_EXE for it).
fn dnsrail_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("dnsrail");
    assert!(
        bin.exists(),
        "{} missing: build it with cargo build --release -p dnsrail-engine",
        bin.display()
    );
    bin
}

#[test]
fn kill_9_leaves_the_interface_on_the_kernel_path() {
    let Some(mut topo) = Topo::up("drx5", 1) else {
        return;
    };
    topo.backend(1);
    let dir = std::env::temp_dir().join(format!("drx5-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("dnsrail.toml");
    std::fs::write(&cfg, xdp_config(1, "")).unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &topo.ns("lb")])
        .arg(dnsrail_bin())
        .arg("-c")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsrail starts");
    let t0 = Instant::now();
    while !topo.dig(VIP4, &["up.example", "A"]).contains("192.0.2.1") {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "engine never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(xdp_attached(&topo), "program attached while running");
    // `ip netns exec` execs the binary: this is dnsrail's own pid.
    let pid = child.id() as i32;
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let _ = child.wait();
    let t0 = Instant::now();
    while xdp_attached(&topo) {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "XDP program still attached"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The kernel owns the interface again: ping works, and DNS to the VIP
    // gets the kernel's answer (no listener: port unreachable), not silence.
    let out = topo.exec("cli", "ping", &["-c", "1", "-W", "2", VIP4]);
    assert!(out.status.success());
    let out = topo.dig(VIP4, &["down.example", "A"]);
    assert!(out.contains("connection refused"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn io_auto_picks_xdp_where_it_can_and_sockets_where_it_cannot() {
    let Some(mut topo) = Topo::up("drx6", 1) else {
        return;
    };
    topo.backend(1);
    let auto = xdp_config(1, "").replace("io = \"xdp\"", "io = \"auto\"");
    let e = start_in_lb(&topo, auto.clone());
    assert_eq!(e.io(), Io::Xdp);
    drop(e);
    // Not attached any more: a stopped engine detaches its program.
    assert!(!xdp_attached(&topo));
    // Where AF_XDP cannot run (here: the interface does not exist): sockets.
    let fallback = auto.replace("interface = \"eth0\"", "interface = \"drnosuch0\"");
    let e = start_in_lb(&topo, fallback);
    assert_eq!(e.io(), Io::Socket);
    assert!(topo.dig(VIP4, &["auto.example", "A"]).contains("192.0.2.1"));
}
