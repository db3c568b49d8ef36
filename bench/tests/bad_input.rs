//! Bad input through real sockets: every malformed query and every bogus
//! answer is dropped and counted under its reason; none reaches a client or
//! a backend, none panics.

mod common;

use common::*;
use dnsrail_engine::stats::DropReason;
use dnsrail_engine::wire::dns::build_query;
use std::net::UdpSocket;
use std::time::Duration;

#[test]
fn malformed_queries_are_counted() {
    let b = backend("127.0.0.1:0");
    let e = engine(config(
        "workers = 1",
        &["127.0.0.1:0"],
        &[("r1", b.addr)],
        "",
    ));
    let vip = e.frontend_addrs()[0];
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    let good = build_query(7, "www.example.com", 1);
    let mut cases: Vec<(Vec<u8>, DropReason)> = vec![
        (vec![1, 2, 3], DropReason::Truncated),
        (good[..20].to_vec(), DropReason::Truncated),
    ];
    let mut m = good.clone();
    m[2] |= 0x80;
    cases.push((m, DropReason::QueryIsResponse));
    let mut m = good.clone();
    m[5] = 2;
    cases.push((m, DropReason::QdCount));
    let mut m = good.clone();
    m[16] = 0xc0;
    cases.push((m, DropReason::Compression));
    let mut m = good.clone();
    m[16] = 0x50;
    cases.push((m, DropReason::BadLabel));
    let mut long = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for _ in 0..5 {
        long.push(63);
        long.extend_from_slice(&[b'a'; 63]);
    }
    long.extend_from_slice(&[0, 0, 1, 0, 1]);
    cases.push((long, DropReason::NameTooLong));
    for (m, _) in &cases {
        c.send_to(m, vip).unwrap();
    }
    let t = wait_for(&e, "all drops counted", |t| {
        t.dropped() == cases.len() as u64
    });
    for (_, r) in &cases {
        let want = cases.iter().filter(|c| c.1 == *r).count() as u64;
        assert_eq!(drops(&t, *r), want, "{r:?}");
    }
    assert_eq!(t.queries, 0);
    assert_eq!(b.queries(), 0, "nothing malformed reached the backend");
    // The engine still works afterwards.
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    c.send_to(&good, vip).unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = c.recv_from(&mut buf).unwrap();
    assert!(n > good.len());
}

/// A hand-driven backend: answers each query with the bytes `mangle` makes.
fn fake_backend() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

fn answer_of(q: &[u8]) -> Vec<u8> {
    let mut a = q.to_vec();
    a[2] |= 0x80;
    a
}

#[test]
fn bogus_answers_are_counted_and_the_real_one_gets_through() {
    let fake = fake_backend();
    let e = engine(config(
        "workers = 1\ntimeout_ms = 300",
        &["127.0.0.1:0"],
        &[("fake", fake.local_addr().unwrap())],
        "",
    ));
    let vip = e.frontend_addrs()[0];
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let q = build_query(0x1111, "a.example", 1);
    c.send_to(&q, vip).unwrap();
    let mut buf = [0u8; 512];
    let (n, engine_port) = fake.recv_from(&mut buf).unwrap();
    let fwd = buf[..n].to_vec();
    assert_eq!(&fwd[2..], &q[2..], "forwarded unchanged but for the ID");

    let mut wrong_id = answer_of(&fwd);
    wrong_id[0] ^= 0xff;
    fake.send_to(&wrong_id, engine_port).unwrap();
    let mut wrong_q = answer_of(&fwd);
    wrong_q[13] = b'b';
    fake.send_to(&wrong_q, engine_port).unwrap();
    fake.send_to(&fwd, engine_port).unwrap(); // QR=0
    fake.send_to(&fwd[..7], engine_port).unwrap(); // truncated header
    let mut no_q = answer_of(&fwd);
    no_q[5] = 0; // QDCOUNT 0
    fake.send_to(&no_q[..12], engine_port).unwrap();
    // From another socket (another source port): the backend-side sockets
    // are unconnected, so the engine checks the source itself.
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    other.send_to(&answer_of(&fwd), engine_port).unwrap();
    let t = wait_for(&e, "bogus answers counted", |t| t.dropped() == 6);
    assert_eq!(drops(&t, DropReason::WrongSource), 1);
    assert_eq!(drops(&t, DropReason::UnknownId), 1);
    assert_eq!(drops(&t, DropReason::WrongQuestion), 1);
    assert_eq!(
        drops(&t, DropReason::NoQuestion),
        1,
        "NOERROR without question"
    );
    assert_eq!(drops(&t, DropReason::AnswerNotResponse), 1);
    assert_eq!(drops(&t, DropReason::Truncated), 1);
    fake.send_to(&answer_of(&fwd), engine_port).unwrap();
    let (n, _) = c.recv_from(&mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        &answer_of(&q)[..],
        "the client gets the real answer, its ID"
    );
    // The client got exactly one answer.
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(c.recv_from(&mut buf).is_err());

    // An answer after the timeout is late: counted, not delivered.
    let q = build_query(0x2222, "late.example", 1);
    c.send_to(&q, vip).unwrap();
    let (n, engine_port) = fake.recv_from(&mut buf).unwrap();
    let fwd = buf[..n].to_vec();
    wait_for(&e, "timeout", |t| t.backend_timeouts[0] == 1);
    fake.send_to(&answer_of(&fwd), engine_port).unwrap();
    wait_for(&e, "late answer", |t| t.drop_count(DropReason::Late) == 1);
    assert!(c.recv_from(&mut buf).is_err(), "late answer not delivered");
}

/// A FORMERR, SERVFAIL, NOTIMP or REFUSED without the question, from the
/// right backend with the right ID, reaches its client (with the client's
/// ID); a question-less NOERROR does not.
#[test]
fn an_error_answer_without_question_reaches_the_client() {
    let fake = fake_backend();
    let e = engine(config(
        "workers = 1\ntimeout_ms = 2000",
        &["127.0.0.1:0"],
        &[("fake", fake.local_addr().unwrap())],
        "",
    ));
    let vip = e.frontend_addrs()[0];
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 512];
    for (i, rcode) in [1u8, 2, 4, 5].into_iter().enumerate() {
        let id = 0x3000 + i as u16;
        let q = build_query(id, "bare.example", 1);
        c.send_to(&q, vip).unwrap();
        let (n, engine_port) = fake.recv_from(&mut buf).unwrap();
        // Header only: QR=1, the RCODE, every count 0.
        let mut bare = buf[..12].to_vec();
        bare[2] = 0x80;
        bare[3] = rcode;
        bare[4..12].fill(0);
        assert!(n > 12);
        fake.send_to(&bare, engine_port).unwrap();
        let (n, _) = c.recv_from(&mut buf).unwrap();
        assert_eq!(n, 12, "rcode {rcode}: the bare header");
        assert_eq!(u16::from_be_bytes([buf[0], buf[1]]), id, "the client's ID");
        assert_eq!(buf[3] & 0x0f, rcode);
    }
    let t = e.totals();
    assert_eq!(t.answers, 4);
    assert_eq!(t.dropped(), 0);
}

/// A backend the engine cannot open a socket to (UDP connect to the
/// broadcast address is refused without SO_BROADCAST): its queries are
/// counted as not sent, hold no in-flight slot and charge no timeout.
#[test]
fn a_backend_without_sockets_is_a_counted_drop_not_a_leaked_slot() {
    let e = engine(config(
        "workers = 1\ntimeout_ms = 200",
        &["127.0.0.1:0"],
        &[("nosock", "255.255.255.255:53".parse().unwrap())],
        "",
    ));
    let vip = e.frontend_addrs()[0];
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..5u16 {
        c.send_to(&build_query(i, "x.example", 1), vip).unwrap();
    }
    let t = wait_for(&e, "queries counted", |t| t.queries == 5);
    std::thread::sleep(Duration::from_millis(400)); // past the timeout
    let t2 = e.totals();
    assert_eq!(drops(&t, DropReason::SendFailed), 5, "{t:?}");
    assert_eq!(t2.backend_timeouts.iter().sum::<u64>(), 0, "{t2:?}");
    assert_eq!(e.in_flight(), 0);
}
