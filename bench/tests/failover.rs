//! A backend failing under load, as an operator meets it: `dnsrailctl serve`
//! (AF_XDP engine) in front of two knotd servers on the namespace topology,
//! 20 000 qps for 15 s from the client namespace, one backend failing after
//! 3 s (health checks every 500 ms, rise 2, fall 2). Loss is counted over
//! every query sent. The scenario itself is `dnsrail_bench::failover`
//! (`dnsrail-bench failover` prints the same figures beside dnsdist's).

mod common;

use dnsrail_bench::failover::{self, Balancer, Fault, Outcome, Spec};
use dnsrail_bench::netns::{is_root, skip};
use std::sync::Mutex;
use std::time::Duration;

/// One scenario at a time (they measure loss on two shared CPUs).
static ONE: Mutex<()> = Mutex::new(());

fn bins() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    // Built beside this test by `cargo test --workspace` (other packages:
    // no CARGO_BIN_EXE for them).
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let (ctl, engine) = (dir.join("dnsrailctl"), dir.join("dnsrail"));
    assert!(
        ctl.exists() && engine.exists(),
        "{} and {} are built by cargo test --workspace",
        ctl.display(),
        engine.display()
    );
    Some((ctl, engine))
}

fn have(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn scenario(prefix: &str, fault: Fault, plain: bool) -> Option<(Spec, Outcome)> {
    if !is_root() {
        skip(&format!(
            "{prefix}: the failover tests need root (namespaces, XDP)"
        ));
        return None;
    }
    for tool in ["knotd", "nft"] {
        assert!(have(tool), "{tool} missing: scripts/setup.sh installs it");
    }
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let (ctl, engine) = bins()?;
    let mut spec = Spec::new(
        prefix,
        Balancer::Dnsrail { ctl, engine },
        fault,
        env!("CARGO_BIN_EXE_dnsrail-bench").into(),
    );
    spec.plain = plain;
    let o = failover::run(&spec).unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!(
        "{prefix} {}: {} (back in rotation after {:?})\n{}",
        fault.name(),
        o.load.summary(),
        o.back_after,
        o.backend_json
    );
    // The balancer's state changes, for a failure's record.
    for l in o
        .log
        .lines()
        .filter(|l| l.contains("backend") && !l.contains("new snapshot") || l.contains("ERROR"))
    {
        eprintln!("  | {l}");
    }
    Some((spec, o))
}

/// The healthy backend's own timeouts: queries this shared two-CPU machine
/// lost on the way to or inside the server that did not fail (the engine
/// counts them per backend). Not the failover's loss; a run with any is
/// repeated once.
fn healthy_lost(o: &Outcome) -> u64 {
    o.metrics
        .lines()
        .find(|l| l.starts_with("dnsrail_backend_timeouts_total{backend=\"be1\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

fn check_common(spec: &Spec, o: &Outcome) {
    assert_eq!(o.wrong(), 0, "wrong answers: {}", o.load.summary());
    assert_eq!(o.load.rcodes[2], 0, "SERVFAIL: {}", o.load.summary());
    // Back within rise × interval of the restored backend answering, plus
    // the API poll (20 ms) and the push to the engine.
    let bound = Duration::from_millis(u64::from(spec.rise) * spec.interval_ms + 250);
    let back = o.back_after.expect("dnsrail reports when it is back");
    assert!(
        back <= bound,
        "back in rotation after {back:?} (bound {bound:?})"
    );
}

fn kill(prefix: &str, plain: bool) {
    let Some((spec, mut o)) = scenario(prefix, Fault::Kill, plain) else {
        return;
    };
    if o.loss() >= 0.0001 && healthy_lost(&o) > 0 {
        eprintln!("the healthy backend lost queries too (machine noise): once more");
        o = scenario(prefix, Fault::Kill, plain).unwrap().1;
    }
    check_common(&spec, &o);
    assert!(
        o.loss() < 0.0001,
        "process killed: lost {} of {} ({:.4} %)",
        o.load.lost,
        o.load.sent,
        o.loss() * 100.0
    );
    assert!(
        o.backend_json.contains("\"ejected\":\"icmp\""),
        "taken out on ICMP: {}",
        o.backend_json
    );
    for m in [
        "dnsrail_backend_transitions_total{backend=\"be2\",to=\"down\",reason=\"icmp\"} 1",
        "dnsrail_backend_transitions_total{backend=\"be2\",to=\"up\",reason=\"health\"} 1",
        "dnsrail_backend_ejections_total{backend=\"be2\",reason=\"icmp\"} 1",
    ] {
        assert!(o.metrics.contains(m), "{m} in\n{}", o.metrics);
    }
    assert!(
        !o.metrics.contains("dnsrail_redispatched_total 0\n"),
        "the queries the ICMP errors quoted were re-sent"
    );
}

#[test]
fn a_killed_backend_process_loses_under_a_hundredth_of_a_percent() {
    kill("drfo1", false);
}

#[test]
fn a_killed_backend_process_on_a_plain_veth_pair() {
    // Kernel-default queues and TX checksum offload on: what a container
    // set-up gives.
    kill("drfo2", true);
}

#[test]
fn a_silent_backend_host_loses_under_half_a_percent() {
    let Some((spec, mut o)) = scenario("drfo3", Fault::Silent, false) else {
        return;
    };
    if o.loss() >= 0.005 && healthy_lost(&o) > 0 {
        eprintln!("the healthy backend lost queries too (machine noise): once more");
        o = scenario("drfo3", Fault::Silent, false).unwrap().1;
    }
    check_common(&spec, &o);
    assert!(
        o.loss() < 0.005,
        "host silent: lost {} of {} ({:.3} %)",
        o.load.lost,
        o.load.sent,
        o.loss() * 100.0
    );
    assert!(
        o.backend_json.contains("\"ejected\":\"silent\""),
        "taken out for silence: {}",
        o.backend_json
    );
    assert!(o.metrics.contains(
        "dnsrail_backend_transitions_total{backend=\"be2\",to=\"down\",reason=\"silent\"} 1"
    ));
}

#[test]
fn a_slow_backend_that_answers_stays_in() {
    let Some((_, o)) = scenario("drfo4", Fault::Slow, false) else {
        return;
    };
    assert_eq!(o.wrong(), 0, "{}", o.load.summary());
    assert!(
        o.backend_json.contains("\"usable\":true") && o.backend_json.contains("\"ejected\":null"),
        "the slow backend stayed in: {}",
        o.backend_json
    );
    assert!(
        o.metrics
            .contains("dnsrail_backend_ejections_total{backend=\"be2\",reason=\"silent\"} 0"),
        "{}",
        o.metrics
    );
    assert!(!o.metrics.contains("to=\"down\""), "no transition at all");
    // A fifth of its answers come 20 ms late: slow, not lost.
    assert!(o.loss() < 0.0001, "{}", o.load.summary());
}
