//! Active health checks: one DNS query per backend per interval, over UDP,
//! built and parsed with hickory-proto (no process forked per check). A
//! probe fails on a timeout, a malformed or mismatched answer, or an RCODE
//! listed in `fail_rcodes` — SERVFAIL by default, the failure a dig-based
//! check that only looks for "an answer" misses. `fall` failures in a row mark
//! a backend down, `rise` successes mark it up again.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::net::UdpSocket;

use dnsrail_engine::config::HealthConfig;

/// What a probe asks and what counts as failure.
#[derive(Clone, Debug)]
pub struct ProbeSpec {
    pub name: Name,
    pub qtype: RecordType,
    pub timeout: Duration,
    pub fail_rcodes: Vec<ResponseCode>,
}

impl ProbeSpec {
    pub fn from_config(h: &HealthConfig) -> anyhow::Result<ProbeSpec> {
        let name = Name::from_ascii(&h.query_name)
            .map_err(|e| anyhow::anyhow!("health.query_name {:?}: {e}", h.query_name))?;
        let qtype = RecordType::from_str(&h.query_type.to_ascii_uppercase())
            .map_err(|e| anyhow::anyhow!("health.query_type {:?}: {e}", h.query_type))?;
        let fail_rcodes = h
            .fail_rcodes
            .iter()
            .map(|r| {
                rcode_named(r)
                    .ok_or_else(|| anyhow::anyhow!("health.fail_rcodes: unknown RCODE {r:?}"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(ProbeSpec {
            name,
            qtype,
            timeout: Duration::from_millis(h.timeout_ms),
            fail_rcodes,
        })
    }
}

/// A health-check RCODE by its mnemonic (the engine's one table of names).
fn rcode_named(s: &str) -> Option<ResponseCode> {
    dnsrail_engine::wire::dns::rcode::by_name(s).map(|c| ResponseCode::from(0, c))
}

/// Why a probe failed (logged on state changes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    Ok,
    Timeout,
    Rcode(String),
    Bad(String),
}

impl ProbeResult {
    pub fn ok(&self) -> bool {
        *self == ProbeResult::Ok
    }
}

impl std::fmt::Display for ProbeResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeResult::Ok => write!(f, "ok"),
            ProbeResult::Timeout => write!(f, "timeout"),
            ProbeResult::Rcode(r) => write!(f, "rcode {r}"),
            ProbeResult::Bad(why) => write!(f, "{why}"),
        }
    }
}

pub fn query(spec: &ProbeSpec, id: u16) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(spec.name.clone(), spec.qtype));
    m.to_vec().expect("a one-question message serialises")
}

/// Judges an answer to query `id`.
pub fn judge(spec: &ProbeSpec, id: u16, answer: &[u8]) -> ProbeResult {
    let m = match Message::from_vec(answer) {
        Ok(m) => m,
        Err(e) => return ProbeResult::Bad(format!("malformed answer: {e}")),
    };
    if m.id() != id || m.message_type() != MessageType::Response {
        return ProbeResult::Bad("answer to another query".into());
    }
    let q = m.queries().first();
    if q.map(|q| (q.name(), q.query_type())) != Some((&spec.name, spec.qtype)) {
        return ProbeResult::Bad("answer for another question".into());
    }
    let rc = m.response_code();
    if spec.fail_rcodes.contains(&rc) {
        return ProbeResult::Rcode(rc.to_string());
    }
    ProbeResult::Ok
}

/// One probe of `backend`.
pub async fn probe(spec: &ProbeSpec, backend: SocketAddr, id: u16) -> ProbeResult {
    let bind: SocketAddr = if backend.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let run = async {
        let s = UdpSocket::bind(bind).await?;
        s.connect(backend).await?;
        s.send(&query(spec, id)).await?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = s.recv(&mut buf).await?;
            let r = judge(spec, id, &buf[..n]);
            // A stray datagram on our port is not the answer: keep waiting.
            if r != ProbeResult::Bad("answer to another query".into()) {
                return Ok::<_, std::io::Error>(r);
            }
        }
    };
    match tokio::time::timeout(spec.timeout, run).await {
        Err(_) => ProbeResult::Timeout,
        Ok(Err(e)) => ProbeResult::Bad(format!("socket error: {e}")),
        Ok(Ok(r)) => r,
    }
}

/// Rise/fall hysteresis of one backend.
#[derive(Clone, Debug)]
pub struct Health {
    pub up: bool,
    ok_streak: u32,
    fail_streak: u32,
    pub last: ProbeResult,
    pub changes: u64,
    /// Why it is in its state: `health`, `passive` (probes confirmed what
    /// live traffic suggested), `icmp` or `silent` (the engine took it out).
    pub reason: &'static str,
}

impl Default for Health {
    fn default() -> Self {
        // Up at start: the engine starts with every backend up, and a
        // balancer that waits `rise` intervals before serving anything is
        // worse than one that drops a dead backend after `fall`.
        Health {
            up: true,
            ok_streak: 0,
            fail_streak: 0,
            last: ProbeResult::Ok,
            changes: 0,
            reason: "health",
        }
    }
}

impl Health {
    /// The engine took the backend out (`reason`): down now, and back only
    /// after `rise` successful probes from here on. True if it was up.
    pub fn eject(&mut self, reason: &'static str) -> bool {
        // Already down: its streak of successes since counts (the engine
        // keeps reporting the ejection until the readmission).
        if !self.up {
            return false;
        }
        self.up = false;
        self.ok_streak = 0;
        self.fail_streak = 0;
        self.changes += 1;
        self.reason = reason;
        true
    }

    /// Records a probe; returns the new state when it changed.
    pub fn observe(&mut self, r: ProbeResult, rise: u32, fall: u32) -> Option<bool> {
        let ok = r.ok();
        self.last = r;
        if ok {
            self.ok_streak += 1;
            self.fail_streak = 0;
            if !self.up && self.ok_streak >= rise.max(1) {
                self.up = true;
                self.changes += 1;
                self.reason = "health";
                return Some(true);
            }
        } else {
            self.fail_streak += 1;
            self.ok_streak = 0;
            if self.up && self.fail_streak >= fall.max(1) {
                self.up = false;
                self.changes += 1;
                self.reason = "health";
                return Some(false);
            }
        }
        None
    }
}

/// Passive health: the engine's own counters for a backend, sampled every
/// interval. A backend whose queries over the last `WINDOW` samples timed
/// out or got SERVFAIL half the time or more (with enough of them to judge)
/// is *suspect*: it is probed four times as often, so active checks confirm
/// (or clear) it sooner. Passive data never marks a backend down by itself:
/// one client's query that every recursor fails must not empty a pool.
#[derive(Clone, Debug, Default)]
pub struct Passive {
    /// (sent, timeouts + SERVFAIL) cumulative, oldest first.
    samples: std::collections::VecDeque<(u64, u64)>,
    pub suspect: bool,
}

const WINDOW: usize = 5;
const MIN_SENT: u64 = 20;

impl Passive {
    /// Adds a sample; returns the new suspect state when it changed.
    pub fn observe(&mut self, sent: u64, bad: u64) -> Option<bool> {
        // Counters restart with a new engine: start the window again.
        if self
            .samples
            .back()
            .is_some_and(|&(s, b)| sent < s || bad < b)
        {
            self.samples.clear();
        }
        self.samples.push_back((sent, bad));
        if self.samples.len() > WINDOW + 1 {
            self.samples.pop_front();
        }
        let (s0, b0) = *self.samples.front().unwrap();
        let (ds, db) = (sent - s0, bad - b0);
        let suspect = ds >= MIN_SENT && db * 2 >= ds;
        (suspect != self.suspect).then(|| {
            self.suspect = suspect;
            suspect
        })
    }

    /// Timeouts and SERVFAIL ratio over the window, for the log.
    pub fn ratio(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1) as f64 / (b.0 - a.0) as f64,
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(fail: &[&str]) -> ProbeSpec {
        ProbeSpec::from_config(&HealthConfig {
            fail_rcodes: fail.iter().map(|s| s.to_string()).collect(),
            ..HealthConfig::default()
        })
        .unwrap()
    }

    fn answer(q: &[u8], rcode: ResponseCode) -> Vec<u8> {
        let mut m = Message::from_vec(q).unwrap();
        m.set_message_type(MessageType::Response)
            .set_response_code(rcode);
        m.to_vec().unwrap()
    }

    #[test]
    fn servfail_fails_nxdomain_passes_unless_configured() {
        let s = spec(&["SERVFAIL"]);
        let q = query(&s, 7);
        assert_eq!(
            judge(&s, 7, &answer(&q, ResponseCode::NoError)),
            ProbeResult::Ok
        );
        assert_eq!(
            judge(&s, 7, &answer(&q, ResponseCode::NXDomain)),
            ProbeResult::Ok
        );
        assert!(matches!(
            judge(&s, 7, &answer(&q, ResponseCode::ServFail)),
            ProbeResult::Rcode(_)
        ));
        let strict = spec(&["SERVFAIL", "NXDOMAIN", "REFUSED"]);
        assert!(matches!(
            judge(&strict, 7, &answer(&q, ResponseCode::NXDomain)),
            ProbeResult::Rcode(_)
        ));
    }

    #[test]
    fn garbage_wrong_id_and_wrong_question_fail() {
        let s = spec(&["SERVFAIL"]);
        let q = query(&s, 7);
        assert!(matches!(
            judge(&s, 7, b"\x00\x07garbage"),
            ProbeResult::Bad(_)
        ));
        assert!(matches!(
            judge(&s, 8, &answer(&q, ResponseCode::NoError)),
            ProbeResult::Bad(_)
        ));
        let other = ProbeSpec {
            name: Name::from_ascii("other.example.").unwrap(),
            ..s.clone()
        };
        assert!(matches!(
            judge(&other, 7, &answer(&q, ResponseCode::NoError)),
            ProbeResult::Bad(_)
        ));
        // The query itself (QR=0) is not an answer.
        assert!(matches!(judge(&s, 7, &q), ProbeResult::Bad(_)));
    }

    #[test]
    fn rise_and_fall() {
        let mut h = Health::default();
        assert_eq!(h.observe(ProbeResult::Timeout, 2, 3), None);
        assert_eq!(h.observe(ProbeResult::Timeout, 2, 3), None);
        assert_eq!(
            h.observe(ProbeResult::Ok, 2, 3),
            None,
            "a success resets the streak"
        );
        for _ in 0..2 {
            assert_eq!(h.observe(ProbeResult::Timeout, 2, 3), None);
        }
        assert_eq!(h.observe(ProbeResult::Timeout, 2, 3), Some(false));
        assert_eq!(h.observe(ProbeResult::Timeout, 2, 3), None, "already down");
        assert_eq!(h.observe(ProbeResult::Ok, 2, 3), None);
        assert_eq!(h.observe(ProbeResult::Ok, 2, 3), Some(true));
        assert_eq!(h.changes, 2);
    }

    #[test]
    fn an_engine_ejection_needs_rise_successes_to_come_back() {
        let mut h = Health::default();
        assert_eq!(h.observe(ProbeResult::Ok, 2, 3), None);
        assert!(h.eject("icmp"));
        assert!(!h.up);
        assert_eq!(h.reason, "icmp");
        assert!(!h.eject("silent"), "already down");
        assert_eq!(h.reason, "icmp");
        // The success before the ejection does not count toward rise; the
        // engine reporting the ejection again does not reset the streak.
        assert_eq!(h.observe(ProbeResult::Ok, 2, 3), None);
        assert!(!h.eject("icmp"));
        assert_eq!(h.observe(ProbeResult::Ok, 2, 3), Some(true));
        assert_eq!(h.reason, "health");
        assert_eq!(h.changes, 2);
    }

    #[test]
    fn passive_suspect_needs_volume_and_half_bad_and_clears() {
        let mut p = Passive::default();
        assert_eq!(p.observe(0, 0), None);
        // 10 sent, all bad: too few to judge.
        assert_eq!(p.observe(10, 10), None);
        // 40 sent, 30 bad over the window: suspect.
        assert_eq!(p.observe(40, 30), Some(true));
        // Healthy traffic dilutes the window until the flag clears.
        let mut cleared = false;
        for i in 1..=10 {
            if p.observe(40 + i * 100, 30) == Some(false) {
                cleared = true;
                break;
            }
        }
        assert!(cleared);
        // A restarted engine (counters back to 0) starts a new window.
        assert_eq!(p.observe(5, 0), None);
        assert!(!p.suspect);
    }

    #[test]
    fn bad_health_config_is_a_clear_error() {
        let h = HealthConfig {
            fail_rcodes: vec!["BOGUS".into()],
            ..HealthConfig::default()
        };
        let e = ProbeSpec::from_config(&h).unwrap_err().to_string();
        assert!(e.contains("BOGUS"), "{e}");
        let h = HealthConfig {
            query_type: "NOPE".into(),
            ..HealthConfig::default()
        };
        assert!(ProbeSpec::from_config(&h).is_err());
    }
}
