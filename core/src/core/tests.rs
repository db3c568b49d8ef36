//! Message-path tests of the core across workers sharing one in-flight table.

use super::*;
use crate::config::Config;
use crate::fate::Ejection;

use crate::wire::dns::build_query;

fn two_workers() -> (Snapshot, Core, Core) {
    two_workers_with("")
}

/// Two workers sharing one in-flight table over backend b1, with `extra`
/// TOML appended (pool settings, rules).
fn two_workers_with(extra: &str) -> (Snapshot, Core, Core) {
    let cfg = Config::parse(
        &format!(
            r#"
[[frontend]]
listen = "192.0.2.53:53"
[[backend]]
name = "b1"
address = "10.9.0.11:53"
{extra}
"#
        ),
        "test",
    )
    .unwrap();
    let snap = Snapshot::of_config(&cfg, 2).unwrap();
    let table = Arc::new(InflightTable::new(2, 2, 1 << 16));
    let mut a = Core::new(0, table.clone(), Arc::new(WorkerStats::default()));
    let mut b = Core::new(1, table, Arc::new(WorkerStats::default()));
    a.begin_batch(&snap);
    b.begin_batch(&snap);
    (snap, a, b)
}

/// Sends one query through `sender`; returns the backend's answer to it and
/// the in-flight port it must arrive on.
fn forward(snap: &Snapshot, sender: &mut Core) -> (Vec<u8>, u32) {
    let (out, buf) = ask(snap, sender, 0x1234, "www.example.com", 1);
    let QueryOutcome::Forward { port, .. } = out else {
        panic!("forwarded: {out:?}");
    };
    let mut answer = buf[..build_query(0, "www.example.com", 1).len()].to_vec();
    answer[2] |= 0x80; // QR: the backend's answer, same ID and question
    (answer, port)
}

#[test]
fn an_answer_completed_by_another_worker_is_counted_as_crossing() {
    let (snap, mut a, mut b) = two_workers();
    let (mut answer, port) = forward(&snap, &mut a);
    let out = b.answer(&mut answer, port, 2, |id| id == 0);
    let AnswerOutcome::ToClient { pending, .. } = out else {
        panic!("completed: {out:?}");
    };
    assert_eq!(pending.orig_id, 0x1234);
    assert_eq!(b.stats().answers.get(), 1);
    assert_eq!(b.stats().answers_cross_worker.get(), 1);
    assert_eq!(a.stats().answers_cross_worker.get(), 0);

    // Its own answers are not crossings.
    let (mut answer, port) = forward(&snap, &mut b);
    let out = b.answer(&mut answer, port, 2, |id| id == 0);
    assert!(matches!(out, AnswerOutcome::ToClient { .. }), "{out:?}");
    assert_eq!(b.stats().answers.get(), 2);
    assert_eq!(b.stats().answers_cross_worker.get(), 1);
}

/// A worker over two backends, round robin.
fn pair() -> (Snapshot, Core) {
    let cfg = Config::parse(
        r#"
[[frontend]]
listen = "192.0.2.53:53"
[[backend]]
name = "b1"
address = "10.9.0.11:53"
[[backend]]
name = "b2"
address = "10.9.0.12:53"
"#,
        "test",
    )
    .unwrap();
    let snap = Snapshot::of_config(&cfg, 1).unwrap();
    let table = Arc::new(InflightTable::new(1, 2, 1 << 16));
    let mut c = Core::new(0, table, Arc::new(WorkerStats::default()));
    c.begin_batch(&snap);
    (snap, c)
}

/// One query at `now`: the backend it went to, its answer and port.
fn send_at(snap: &Snapshot, c: &mut Core, now: u64) -> (BackendId, Vec<u8>, u32) {
    let client = Client {
        ip: "198.51.100.7".parse().unwrap(),
        port: 5353,
        mac: [0; 6],
    };
    let q = build_query(0x1234, "www.example.com", 1);
    let mut buf = q.clone();
    buf.resize(512, 0);
    let QueryOutcome::Forward { backend, port, .. } =
        c.query(snap, 0, &mut buf, q.len(), &client, now, |_| Ok(()))
    else {
        panic!("forwarded");
    };
    let mut answer = buf[..q.len()].to_vec();
    answer[2] |= 0x80;
    (backend, answer, port)
}

/// Runs 1 s of traffic, 2 queries a millisecond; `answer_after(backend,
/// i)` says when (ns after sending) the i-th query to a backend is
/// answered, `None` = never. Returns the ejections seen.
fn traffic(answer_after: impl Fn(BackendId, u64) -> Option<u64>) -> Vec<(BackendId, Ejection)> {
    let (snap, mut c) = pair();
    let ms = 1_000_000u64;
    let mut due: Vec<(u64, BackendId, Vec<u8>, u32)> = Vec::new();
    let mut n = [0u64; 2];
    for t in 1..=1000u64 {
        let now = t * ms;
        due.sort_by_key(|d| d.0);
        while due.first().is_some_and(|d| d.0 <= now) {
            let (_, b, mut a, port) = due.remove(0);
            let out = c.answer(&mut a, port, now, |x| x == b);
            assert!(matches!(out, AnswerOutcome::ToClient { .. }), "{out:?}");
        }
        for _ in 0..2 {
            let (b, a, port) = send_at(&snap, &mut c, now);
            let i = n[usize::from(b)];
            n[usize::from(b)] += 1;
            if let Some(after) = answer_after(b, i) {
                due.push((now + after, b, a, port));
            }
        }
        c.check_silence(&snap, now);
    }
    c.fate().take_log()
}

#[test]
fn a_silent_backend_is_taken_out_after_dead_after() {
    let out = traffic(|b, _| (b == 1).then_some(200_000));
    assert_eq!(out, vec![(0, Ejection::Silent)]);
}

#[test]
fn a_slow_backend_that_answers_stays_in() {
    // b1: a fifth of its answers after 20 ms, the rest at once.
    let out = traffic(|b, i| {
        Some(if b == 0 && i % 5 == 0 {
            20_000_000
        } else {
            300_000
        })
    });
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn silence_everywhere_is_no_backend_s_fault() {
    // Nobody answers (our own link is down): nobody is taken out.
    let out = traffic(|_, _| None);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn an_ejected_backend_is_passed_over_before_the_next_snapshot() {
    let (snap, mut c) = pair();
    c.fate().eject(0, Ejection::Icmp, 1);
    for t in 0..20 {
        assert_eq!(send_at(&snap, &mut c, t).0, 1);
    }
    // With every member out, the pool has nothing to offer.
    c.fate().eject(1, Ejection::Silent, 1);
    let client = Client {
        ip: "198.51.100.7".parse().unwrap(),
        port: 5353,
        mac: [0; 6],
    };
    let q = build_query(1, "a.example", 1);
    let mut buf = q.clone();
    assert_eq!(
        c.query(&snap, 0, &mut buf, q.len(), &client, 5, |_| Ok(())),
        QueryOutcome::Drop(DropReason::NoBackend)
    );
}

/// Two workers over a pool with a packet cache, and `rules`.
fn cached(rules: &str) -> (Snapshot, Core, Core) {
    two_workers_with(&format!("[pool.default]\ncache_entries = 1024\n{rules}"))
}

fn ask(snap: &Snapshot, core: &mut Core, id: u16, name: &str, now: u64) -> (QueryOutcome, Vec<u8>) {
    let client = Client {
        ip: "198.51.100.7".parse().unwrap(),
        port: 5353,
        mac: [0; 6],
    };
    let q = build_query(id, name, 1);
    let mut buf = q.clone();
    buf.resize(512, 0);
    let out = core.query(snap, 0, &mut buf, q.len(), &client, now, |_| Ok(()));
    (out, buf)
}

#[test]
fn an_answer_is_kept_and_the_next_query_on_any_worker_is_answered_from_the_cache() {
    let (snap, mut a, mut b) = cached("");
    let (out, buf) = ask(&snap, &mut a, 0x1111, "www.example.com", 1_000);
    let QueryOutcome::Forward { port, .. } = out else {
        panic!("a miss is forwarded: {out:?}");
    };
    // The backend's answer: one A record, TTL 300.
    let qlen = build_query(0, "www.example.com", 1).len();
    let mut answer = buf[..qlen].to_vec();
    answer[2] |= 0x80;
    answer[7] = 1;
    answer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1]);
    let got = a.answer(&mut answer, port, 2_000, |id| id == 0);
    assert!(matches!(got, AnswerOutcome::ToClient { .. }), "{got:?}");
    let cache = snap.pools[0].cache.as_ref().unwrap();
    assert_eq!(cache.counts.totals().inserts, 1);

    // Three seconds later, on the other worker, another ID and case.
    let (out, reply) = ask(&snap, &mut b, 0x2222, "WWW.example.com", 3_000_002_000);
    let QueryOutcome::Reply { len } = out else {
        panic!("a hit: {out:?}");
    };
    assert_eq!(len, answer.len());
    assert_eq!(&reply[..2], &[0x22, 0x22]);
    assert_eq!(&reply[12..16], b"\x03WWW");
    assert_eq!(&reply[len - 10..len - 6], &297u32.to_be_bytes());
    assert_eq!(b.stats().local_replies.get(), 1);
    assert_eq!(
        b.stats().backends[0].sent.get(),
        0,
        "the backend was not asked"
    );
}

#[test]
fn rules_run_before_the_cache_and_skip_cache_sends_a_query_past_it() {
    let (snap, mut a, _) = cached(
        r#"
[[rule]]
name = "fresh"
match = { name = "live.example" }
action = "skip-cache"
"#,
    );
    for (name, cached) in [("live.example", false), ("other.example", true)] {
        let (out, buf) = ask(&snap, &mut a, 7, name, 1_000);
        let QueryOutcome::Forward { port, .. } = out else {
            panic!("{out:?}");
        };
        let qlen = build_query(0, name, 1).len();
        let mut answer = buf[..qlen].to_vec();
        answer[2] |= 0x80;
        answer[7] = 1;
        answer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1]);
        a.answer(&mut answer, port, 2_000, |id| id == 0);
        let (again, _) = ask(&snap, &mut a, 8, name, 3_000);
        assert_eq!(
            matches!(again, QueryOutcome::Reply { .. }),
            cached,
            "{name}: {again:?}"
        );
    }
}
