//! A bounded load driver: sends a fixed number of queries (at a fixed rate or
//! as fast as a bound on outstanding queries allows) over several sockets,
//! matches every answer to its query by ID and question, and reports loss,
//! RCODEs and latency. Stops by itself at `queries` or `max_duration`.

use crate::msg::{mixed_query, HitMix};
use dnsrail_engine::stats::{bucket_floor, bucket_of, quantile_us, HIST_BUCKETS};
use dnsrail_engine::wire::dns;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub target: SocketAddr,
    pub queries: u64,
    /// Queries per second; 0 = as fast as `max_outstanding` allows.
    pub rate: u64,
    /// Client sockets (source ports): each holds at most 65 536 IDs.
    pub sockets: usize,
    pub max_outstanding: u64,
    /// How long to wait for the last answers after the last query.
    pub timeout: Duration,
    /// Hard bound on the whole run.
    pub max_duration: Duration,
    /// First sequence number (distinct runs ask distinct names).
    pub first: u64,
    /// Ask a cache's mix of popular and new names instead of new names only.
    pub mix: Option<HitMix>,
    /// Check every answer's records against what a synthetic backend
    /// answering as this says (`msg::answer`) gives, TTLs aside: with
    /// `per_name`, a cache that served another name's records is caught.
    pub check_answers: Option<crate::msg::AnswerSpec>,
}

impl LoadSpec {
    pub fn new(target: SocketAddr, queries: u64) -> LoadSpec {
        LoadSpec {
            target,
            queries,
            rate: 0,
            sockets: 4,
            max_outstanding: 2000,
            timeout: Duration::from_secs(3),
            max_duration: Duration::from_secs(60),
            first: 0,
            mix: None,
            check_answers: None,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub sent: u64,
    pub answered: u64,
    /// Sent and never answered.
    pub lost: u64,
    /// Answers for no waiting query (duplicates, stray IDs).
    pub unexpected: u64,
    /// Answers whose question differs from the query's.
    pub wrong_question: u64,
    /// With `check_answers`: answers whose records are not the backend's
    /// for the question (counted as answered too).
    pub wrong_answer: u64,
    /// Answers that came after the query was counted lost (older than the
    /// run's timeout): not wrong, too late.
    pub late: u64,
    pub rcodes: [u64; 16],
    pub latency: Vec<u64>,
    pub peak_outstanding: u64,
    pub elapsed: Duration,
    /// From the start to the last query sent: longer than `queries / rate`
    /// when the driver could not keep the rate.
    pub sending: Duration,
}

impl LoadReport {
    pub fn p(&self, q: f64) -> Option<u64> {
        quantile_us(&self.latency, q)
    }

    pub fn qps(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64().max(1e-6)
    }

    /// What `dnsrail-bench load --json` prints (and `compare` reads back).
    pub fn brief(&self) -> LoadBrief {
        LoadBrief {
            sent: self.sent,
            answered: self.answered,
            lost: self.lost,
            unexpected: self.unexpected,
            wrong_question: self.wrong_question,
            elapsed_s: self.elapsed.as_secs_f64(),
            send_s: self.sending.as_secs_f64(),
            noerror: self.rcodes[0],
            nxdomain: self.rcodes[3],
            servfail: self.rcodes[2],
            p50_us: self.p(0.5),
            p99_us: self.p(0.99),
            latency: self
                .latency
                .iter()
                .enumerate()
                .filter(|(_, &n)| n > 0)
                .map(|(i, &n)| (bucket_floor(i), n))
                .collect(),
        }
    }

    pub fn summary(&self) -> String {
        let f = |v: Option<u64>| v.map_or("-".into(), |v| format!("{v}us"));
        format!(
            "sent {} answered {} lost {} ({:.3}%) late {} unexpected {} wrong-question {} wrong-answer {} | NOERROR {} NXDOMAIN {} SERVFAIL {} | {:.0} answers/s over {:.2}s | p50 {} p99 {} | peak in flight {}",
            self.sent,
            self.answered,
            self.lost,
            100.0 * self.lost as f64 / self.sent.max(1) as f64,
            self.late,
            self.unexpected,
            self.wrong_question,
            self.wrong_answer,
            self.rcodes[0],
            self.rcodes[3],
            self.rcodes[2],
            self.qps(),
            self.elapsed.as_secs_f64(),
            f(self.p(0.5)),
            f(self.p(0.99)),
            self.peak_outstanding,
        )
    }
}

/// A load run's figures as JSON: counts, answers by RCODE, p50/p99 and the
/// latency histogram as (bucket floor µs, answers), non-empty buckets only.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoadBrief {
    pub sent: u64,
    pub answered: u64,
    pub lost: u64,
    #[serde(default)]
    pub unexpected: u64,
    #[serde(default)]
    pub wrong_question: u64,
    #[serde(default)]
    pub elapsed_s: f64,
    /// Seconds from the start to the last query sent.
    #[serde(default)]
    pub send_s: f64,
    #[serde(default)]
    pub noerror: u64,
    #[serde(default)]
    pub nxdomain: u64,
    #[serde(default)]
    pub servfail: u64,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub latency: Vec<(u64, u64)>,
}

struct Slots {
    /// Send time in ns since start + 1 (0 = free), per (socket, ID).
    sent_at: Vec<AtomicU64>,
    seq: Vec<AtomicU64>,
    /// The query under this ID was given up as lost (an answer now is late).
    expired: Vec<AtomicBool>,
}

pub fn run(spec: &LoadSpec) -> io::Result<LoadReport> {
    let nsock = spec.sockets.max(1);
    let bind: SocketAddr = if spec.target.is_ipv6() {
        "[::]:0".parse().unwrap()
    } else {
        "0.0.0.0:0".parse().unwrap()
    };
    let socks: Vec<UdpSocket> = (0..nsock)
        .map(|_| {
            let s = UdpSocket::bind(bind)?;
            s.connect(spec.target)?;
            s.set_nonblocking(true)?;
            dnsrail_engine::io::sys::grow_buffers(s.as_raw_fd(), 8 << 20);
            Ok(s)
        })
        .collect::<io::Result<_>>()?;
    let socks = Arc::new(socks);
    let slots = Arc::new(Slots {
        sent_at: (0..nsock * 65536).map(|_| AtomicU64::new(0)).collect(),
        seq: (0..nsock * 65536).map(|_| AtomicU64::new(0)).collect(),
        expired: (0..nsock * 65536).map(|_| AtomicBool::new(false)).collect(),
    });
    let lost = Arc::new(AtomicU64::new(0));
    let outstanding = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let deadline = start + spec.max_duration;

    let receiver = {
        let (socks, slots, outstanding, done, lost) = (
            socks.clone(),
            slots.clone(),
            outstanding.clone(),
            done.clone(),
            lost.clone(),
        );
        let (timeout, mix, check) = (spec.timeout, spec.mix, spec.check_answers.clone());
        std::thread::spawn(move || {
            let until = Until {
                done: &done,
                start,
                timeout,
            };
            receive(&socks, &slots, &outstanding, &until, (mix, check), &lost)
        })
    };

    let mut sent = 0u64;
    let mut peak = 0u64;
    let mut next_id = vec![0u16; nsock];
    let mut q = Vec::with_capacity(64);
    'send: for i in 0..spec.queries {
        if Instant::now() >= deadline {
            break;
        }
        if let Some(gap) = 1_000_000_000u64.checked_div(spec.rate) {
            let due = start + Duration::from_nanos(i * gap);
            let now = Instant::now();
            if due > now + Duration::from_micros(200) {
                std::thread::sleep(due - now);
            }
        }
        while outstanding.load(Ordering::Relaxed) >= spec.max_outstanding {
            if Instant::now() >= deadline {
                break 'send;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        let s = (i % nsock as u64) as usize;
        // Skip IDs still waiting (a lost answer keeps its ID busy).
        let mut tries = 0;
        let id = loop {
            let id = next_id[s];
            next_id[s] = id.wrapping_add(1);
            if slots.sent_at[s * 65536 + usize::from(id)].load(Ordering::Acquire) == 0 {
                break Some(id);
            }
            tries += 1;
            if tries > 65536 {
                break None;
            }
        };
        let Some(id) = id else { break };
        let seq = spec.first + i;
        mixed_query(spec.mix, seq, id, &mut q);
        let k = s * 65536 + usize::from(id);
        slots.expired[k].store(false, Ordering::Relaxed);
        slots.seq[k].store(seq, Ordering::Relaxed);
        slots.sent_at[k].store(start.elapsed().as_nanos() as u64 + 1, Ordering::Release);
        let o = outstanding.fetch_add(1, Ordering::Relaxed) + 1;
        peak = peak.max(o);
        loop {
            match socks[s].send(&q) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_micros(20))
                }
                Err(e) => return Err(e),
            }
        }
        sent += 1;
    }
    let sending = start.elapsed();
    let wait_until = (Instant::now() + spec.timeout).min(deadline + spec.timeout);
    while outstanding.load(Ordering::Relaxed) > 0 && Instant::now() < wait_until {
        std::thread::sleep(Duration::from_millis(5));
    }
    done.store(true, Ordering::Relaxed);
    let mut r = receiver.join().expect("receiver thread");
    r.sent = sent;
    r.lost = outstanding.load(Ordering::Relaxed) + lost.load(Ordering::Relaxed);
    r.peak_outstanding = peak;
    r.elapsed = start.elapsed();
    r.sending = sending;
    Ok(r)
}

/// When the receiver stops, and when it gives a query up.
struct Until<'a> {
    done: &'a AtomicBool,
    start: Instant,
    timeout: Duration,
}

/// Receives answers until `done`; every 100 ms counts queries older than
/// `timeout` as lost and frees their IDs, so that a burst of losses (a
/// balancer slow to notice a dead backend) does not hold the window of
/// outstanding queries shut for the rest of the run.
fn receive(
    socks: &[UdpSocket],
    slots: &Slots,
    outstanding: &AtomicU64,
    until: &Until,
    (mix, check): (Option<HitMix>, Option<crate::msg::AnswerSpec>),
    lost: &AtomicU64,
) -> LoadReport {
    let mut want = Vec::with_capacity(512);
    let Until {
        done,
        start,
        timeout,
    } = *until;
    let timeout_ns = timeout.as_nanos() as u64;
    let mut last_expiry = 0u64;
    let mut r = LoadReport {
        latency: vec![0; HIST_BUCKETS],
        ..LoadReport::default()
    };
    let mut pfds: Vec<libc::pollfd> = socks
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut buf = vec![0u8; 65535];
    let mut q = Vec::with_capacity(64);
    while !done.load(Ordering::Relaxed) {
        // SAFETY: pfds is a valid array of pollfd for the call.
        unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 10) };
        let now = start.elapsed().as_nanos() as u64;
        if now.saturating_sub(last_expiry) >= 100_000_000 {
            last_expiry = now;
            for (k, at) in slots.sent_at.iter().enumerate() {
                let t = at.load(Ordering::Acquire);
                if t != 0
                    && now.saturating_sub(t - 1) > timeout_ns
                    && at
                        .compare_exchange(t, 0, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                {
                    slots.expired[k].store(true, Ordering::Relaxed);
                    outstanding.fetch_sub(1, Ordering::Relaxed);
                    lost.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        for (s, sock) in socks.iter().enumerate() {
            while let Ok(len) = sock.recv(&mut buf) {
                let now = start.elapsed().as_nanos() as u64;
                let msg = &buf[..len];
                let Ok(h) = dns::Header::new_checked(msg) else {
                    r.unexpected += 1;
                    continue;
                };
                let k = s * 65536 + usize::from(h.id());
                let seq = slots.seq[k].load(Ordering::Relaxed);
                let sent = slots.sent_at[k].load(Ordering::Acquire);
                if sent == 0 {
                    if slots.expired[k].swap(false, Ordering::Relaxed) {
                        r.late += 1;
                    } else {
                        r.unexpected += 1;
                    }
                    continue;
                }
                mixed_query(mix, seq, h.id(), &mut q);
                if msg.len() < q.len() || msg[12..q.len()] != q[12..] {
                    r.wrong_question += 1;
                    continue;
                }
                if let Some(backend) = &check {
                    want.clear();
                    let ok = crate::msg::answer(&q, backend, &mut want).is_some()
                        && crate::msg::same_answer_but_ttls(msg, &want);
                    r.wrong_answer += u64::from(!ok);
                }
                if slots.sent_at[k]
                    .compare_exchange(sent, 0, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    r.unexpected += 1;
                    continue;
                }
                outstanding.fetch_sub(1, Ordering::Relaxed);
                r.answered += 1;
                r.rcodes[usize::from(h.rcode())] += 1;
                r.latency[bucket_of(now.saturating_sub(sent - 1) / 1000)] += 1;
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that answers every query but those of every fifth socket
    /// ID, and some of those only after the run's timeout.
    fn lossy_server() -> (SocketAddr, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let addr = s.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let h = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let mut held: Vec<(Instant, Vec<u8>, SocketAddr)> = Vec::new();
            while !st.load(Ordering::Relaxed) {
                let now = Instant::now();
                held.retain(|(t, m, to)| {
                    if *t <= now {
                        let _ = s.send_to(m, to);
                        false
                    } else {
                        true
                    }
                });
                let Ok((n, from)) = s.recv_from(&mut buf) else {
                    continue;
                };
                let mut a = buf[..n].to_vec();
                a[2] |= 0x80;
                let id = u16::from_be_bytes([a[0], a[1]]);
                match id % 10 {
                    0 => {}
                    5 => held.push((now + Duration::from_millis(400), a, from)),
                    _ => {
                        let _ = s.send_to(&a, from);
                    }
                }
            }
        });
        (addr, stop, h)
    }

    #[test]
    fn a_hit_mix_run_matches_every_answer_to_its_query() {
        let b = crate::backend::Backend::start(crate::backend::BackendSpec::default()).unwrap();
        let mut spec = LoadSpec::new(b.addr, 3000);
        spec.first = 7 << 32;
        spec.mix = Some(HitMix {
            hot_pct: 90,
            hot_names: 50,
        });
        spec.check_answers = Some(crate::msg::AnswerSpec::default());
        let r = run(&spec).unwrap();
        let asked = b.queries();
        b.stop();
        assert_eq!((r.sent, r.answered), (3000, 3000), "{}", r.summary());
        assert_eq!(
            r.wrong_question + r.wrong_answer + r.unexpected + r.lost,
            0,
            "{}",
            r.summary()
        );
        assert_eq!(asked, 3000);
        // NXDOMAIN only in the tail: a tenth of the queries, one in seven.
        let nx = r.rcodes[3];
        assert!((10..120).contains(&nx), "{nx} NXDOMAIN: {}", r.summary());
    }

    /// Answers with every name's own records pass the check made for
    /// them; checked as if every name had the same records, they fail.
    #[test]
    fn checked_answers_catch_records_that_are_not_the_names() {
        let mut bs = crate::backend::BackendSpec::default();
        bs.answers.per_name = true;
        let b = crate::backend::Backend::start(bs.clone()).unwrap();
        let mut spec = LoadSpec::new(b.addr, 200);
        spec.check_answers = Some(bs.answers.clone());
        let right = run(&spec).unwrap();
        spec.first = 1000;
        spec.check_answers = Some(crate::msg::AnswerSpec::default());
        let wrong = run(&spec).unwrap();
        b.stop();
        assert_eq!(
            right.wrong_answer + right.wrong_question,
            0,
            "{}",
            right.summary()
        );
        assert_eq!(wrong.wrong_question, 0, "{}", wrong.summary());
        // Only the addresses differ (not NXDOMAIN's answers): those, and
        // only those, are wrong.
        assert!(
            wrong.wrong_answer > 100 && wrong.wrong_answer <= wrong.rcodes[0],
            "{}",
            wrong.summary()
        );
    }

    #[test]
    fn losses_beyond_the_window_neither_stall_the_run_nor_count_as_wrong() {
        let (addr, stop, h) = lossy_server();
        let mut spec = LoadSpec::new(addr, 3000);
        spec.sockets = 1;
        spec.rate = 10_000;
        // A window smaller than the losses: without expiry the run would
        // stall at 100 lost queries and end at max_duration.
        spec.max_outstanding = 100;
        spec.timeout = Duration::from_millis(200);
        spec.max_duration = Duration::from_secs(20);
        let r = run(&spec).unwrap();
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
        assert_eq!(r.sent, 3000, "{}", r.summary());
        assert_eq!(r.lost, 600, "{}", r.summary());
        assert_eq!(r.answered, 2400, "{}", r.summary());
        assert_eq!(r.wrong_question + r.unexpected, 0, "{}", r.summary());
        assert!(r.late > 0, "{}", r.summary());
    }
}
