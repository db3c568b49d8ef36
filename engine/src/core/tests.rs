//! Message-path tests of the core across workers sharing one in-flight table.

use super::*;
use crate::config::Config;
use crate::snapshot::{Overrides, Registry};
use crate::wire::dns::build_query;

fn two_workers() -> (Snapshot, Core, Core) {
    let cfg = Config::parse(
        r#"
[[frontend]]
listen = "192.0.2.53:53"
[[backend]]
name = "b1"
address = "10.9.0.11:53"
"#,
        "test",
    )
    .unwrap();
    let snap = Snapshot::build(&cfg, &mut Registry::default(), &Overrides::default(), 1);
    let table = Arc::new(InflightTable::new(2, 2));
    for p in 0..4 {
        table.ensure_port(p);
    }
    let mut cores = (0..2).map(|w| {
        let stats = Arc::new(WorkerStats::default());
        Core::new(w, table.clone(), stats, PortPlan::Shared)
    });
    let (mut a, mut b) = (cores.next().unwrap(), cores.next().unwrap());
    a.begin_batch(&snap);
    b.begin_batch(&snap);
    (snap, a, b)
}

/// Sends one query through `sender`; returns the backend's answer to it and
/// the in-flight port it must arrive on.
fn forward(snap: &Snapshot, sender: &mut Core) -> (Vec<u8>, u32) {
    let client = Client {
        ip: "198.51.100.7".parse().unwrap(),
        port: 5353,
        mac: [0; 6],
    };
    let q = build_query(0x1234, "www.example.com", 1);
    let mut buf = q.clone();
    buf.resize(512, 0);
    let QueryOutcome::Forward { port, .. } =
        sender.query(snap, 0, &mut buf, q.len(), &client, 1, |_| Ok(()))
    else {
        panic!("forwarded");
    };
    let mut answer = buf[..q.len()].to_vec();
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
