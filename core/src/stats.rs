//! Per-worker counters and latency histograms.
//!
//! Each worker owns one [`WorkerStats`] and is its only writer, so a counter
//! bump is a relaxed load and store (no locked instruction); readers (the
//! summary log, the control process) sum over workers with relaxed loads.

use crate::ids::{MAX_BACKENDS, MAX_FRONTENDS};
use std::sync::atomic::{AtomicU64, Ordering};

/// A single-writer counter.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        let c = &self.0;
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

macro_rules! drop_reasons {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// Why a datagram was dropped. Every drop is counted under one of these.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub enum DropReason { $(#[doc = $doc] $variant,)* }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();
            /// The name used in logs and metrics labels.
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }
        }
    };
}

drop_reasons! {
    Truncated => "truncated", "Shorter than its headers say.";
    NotIp => "not_ip", "Ethernet frame that is neither IPv4 nor IPv6.";
    BadIpHeader => "bad_ip_header", "IP version or header length wrong.";
    IpOptions => "ip_options", "IPv4 header with options.";
    Fragment => "fragment", "IP fragment (not reassembled).";
    NotUdp => "not_udp", "Not UDP, or behind IPv6 extension headers.";
    UdpLength => "udp_length", "UDP length disagrees with the IP length.";
    QueryIsResponse => "query_is_response", "QR=1 sent to a frontend.";
    QdCount => "qdcount", "QDCOUNT is not 1.";
    Compression => "compression_in_question", "Compression pointer in the question.";
    BadLabel => "bad_label", "Label longer than 63 bytes or of a reserved type.";
    NameTooLong => "name_too_long", "Name longer than 255 bytes.";
    NotOurs => "not_ours", "Not addressed to a frontend or an engine port.";
    AnswerNotResponse => "answer_not_response", "QR=0 from a backend.";
    UnknownId => "unknown_id", "Answer with no query waiting under its ID.";
    WrongSource => "wrong_source", "Answer from another address than the backend asked.";
    WrongQuestion => "wrong_question", "Answer whose question differs from the query's.";
    NoQuestion => "no_question", "Answer without exactly one question that is not a FORMERR, SERVFAIL, NOTIMP or REFUSED without question.";
    Late => "late", "Answer to a query that had already timed out.";
    NoBackend => "no_backend", "Every backend of the pool down and when_all_down = drop.";
    InflightFull => "inflight_full", "No free DNS ID on any port toward the backend.";
    NoNeighbour => "no_neighbour", "Backend next-hop MAC unknown (frame mode).";
    FamilyMismatch => "family_mismatch", "Client and backend of different IP families (frame mode).";
    FrontendGone => "frontend_gone", "Answer for a frontend removed by a reload.";
    Oversize => "oversize", "Datagram larger than the receive buffer.";
    SendFailed => "send_failed", "The kernel refused to send (buffer full, unreachable).";
    RuleDrop => "rule_drop", "A rule's action was drop.";
    NoRoom => "no_room", "A rule's reply did not fit the buffer.";
    RingFull => "ring_full", "AF_XDP: dropped by the kernel, the worker's RX ring full or its fill ring empty.";
    DynBlocked => "dyn_blocked", "Source in the dynamic block list (before XDP took it over, or on the socket data plane).";
    BadChecksum => "bad_udp_checksum", "UDP checksum wrong (a corrupt datagram), and not a sender's partial checksum either.";
    Udp6ZeroChecksum => "udp6_zero_checksum", "UDP over IPv6 with checksum 0, which RFC 8200 forbids.";
    IcmpUnmatched => "icmp_unmatched", "ICMP error quoting no query of ours still waiting (answered, timed out, or forged).";
    IcmpQuoteShort => "icmp_quote_short", "ICMP error whose quote ends before the query does: the backend is taken out, the query given up.";
    RedispatchOff => "redispatch_off", "Query an ICMP error quoted, given up because failover.redispatch is off.";
    RedispatchFailed => "redispatch_failed", "Query an ICMP error quoted that no other usable backend could take (or no free ID).";
}

/// Log-linear latency histogram in microseconds: exact below 16 µs, then
/// eight buckets per power of two (12.5 % resolution) up to ~67 s.
pub const HIST_BUCKETS: usize = 16 + 23 * 8;

#[inline]
pub fn bucket_of(us: u64) -> usize {
    if us < 16 {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros() as usize; // >= 4
    let sub = ((us >> (exp - 3)) & 7) as usize;
    (16 + (exp - 4) * 8 + sub).min(HIST_BUCKETS - 1)
}

/// Smallest value that falls into bucket `i`.
pub fn bucket_floor(i: usize) -> u64 {
    if i < 16 {
        return i as u64;
    }
    let exp = (i - 16) / 8 + 4;
    let sub = ((i - 16) % 8) as u64;
    (8 + sub) << (exp - 3)
}

pub struct Histogram {
    pub buckets: Box<[Counter]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..HIST_BUCKETS).map(|_| Counter::default()).collect(),
        }
    }
}

impl Histogram {
    #[inline]
    pub fn record_us(&self, us: u64) {
        self.buckets[bucket_of(us)].inc();
    }

    pub fn snapshot(&self) -> Vec<u64> {
        self.buckets.iter().map(Counter::get).collect()
    }
}

/// Quantile `q` (0..=1) of merged bucket counts, as the bucket's upper bound.
pub fn quantile_us(counts: &[u64], q: f64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut acc = 0;
    for (i, &c) in counts.iter().enumerate() {
        acc += c;
        if acc >= rank {
            return Some(bucket_floor(i + 1).saturating_sub(1).max(bucket_floor(i)));
        }
    }
    None
}

#[derive(Default)]
pub struct BackendStats {
    pub sent: Counter,
    pub answered: Counter,
    pub timeouts: Counter,
    /// Send errors and ICMP errors reported by the kernel for this backend.
    pub errors: Counter,
    pub rcodes: [Counter; 16],
    pub latency: Histogram,
}

#[repr(align(64))]
pub struct WorkerStats {
    pub queries: Counter,
    pub answers: Counter,
    /// Answers this worker completed for a query another worker sent: the
    /// answer came in on another queue than its query (RSS/XPS asymmetry).
    pub answers_cross_worker: Counter,
    /// Replies the engine built itself (SERVFAIL when a pool is down).
    pub local_replies: Counter,
    /// Frames whose sender left the UDP checksum to the NIC (a local veth
    /// peer with TX offload): completed before forwarding.
    pub checksums_completed: Counter,
    /// AF_XDP: answers the kernel reassembled (fragments, IP options, IPv6
    /// extension headers) and the slow path delivered.
    pub answers_slow_path: Counter,
    /// ICMP destination unreachable messages matched to a waiting query.
    pub icmp_errors: Counter,
    /// Queries re-sent to another backend after an ICMP error.
    pub redispatched: Counter,
    pub drops: [Counter; DropReason::COUNT],
    /// Busy in-flight slots skipped while allocating IDs.
    pub id_skips: Counter,
    pub frontend_queries: Box<[Counter]>,
    pub backends: Box<[BackendStats]>,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            queries: Counter::default(),
            answers: Counter::default(),
            answers_cross_worker: Counter::default(),
            local_replies: Counter::default(),
            checksums_completed: Counter::default(),
            answers_slow_path: Counter::default(),
            icmp_errors: Counter::default(),
            redispatched: Counter::default(),
            drops: std::array::from_fn(|_| Counter::default()),
            id_skips: Counter::default(),
            frontend_queries: (0..MAX_FRONTENDS).map(|_| Counter::default()).collect(),
            backends: (0..MAX_BACKENDS).map(|_| BackendStats::default()).collect(),
        }
    }
}

impl WorkerStats {
    #[inline]
    pub fn count_drop(&self, r: DropReason) {
        self.drops[r as usize].inc();
    }

    pub fn drops_of(&self, r: DropReason) -> u64 {
        self.drops[r as usize].get()
    }
}

/// Sums over workers, for summaries and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub queries: u64,
    pub answers: u64,
    pub answers_cross_worker: u64,
    pub local_replies: u64,
    pub checksums_completed: u64,
    pub answers_slow_path: u64,
    pub icmp_errors: u64,
    pub redispatched: u64,
    pub drops: Vec<(DropReason, u64)>,
    pub backend_sent: Vec<u64>,
    pub backend_answered: Vec<u64>,
    pub backend_timeouts: Vec<u64>,
    pub latency: Vec<u64>,
}

impl Totals {
    pub fn of(workers: &[std::sync::Arc<WorkerStats>]) -> Totals {
        let mut t = Totals {
            drops: DropReason::ALL.iter().map(|&r| (r, 0)).collect(),
            backend_sent: vec![0; MAX_BACKENDS],
            backend_answered: vec![0; MAX_BACKENDS],
            backend_timeouts: vec![0; MAX_BACKENDS],
            latency: vec![0; HIST_BUCKETS],
            ..Totals::default()
        };
        for w in workers {
            t.queries += w.queries.get();
            t.answers += w.answers.get();
            t.answers_cross_worker += w.answers_cross_worker.get();
            t.local_replies += w.local_replies.get();
            t.checksums_completed += w.checksums_completed.get();
            t.answers_slow_path += w.answers_slow_path.get();
            t.icmp_errors += w.icmp_errors.get();
            t.redispatched += w.redispatched.get();
            for (i, d) in t.drops.iter_mut().enumerate() {
                d.1 += w.drops[i].get();
            }
            for (i, b) in w.backends.iter().enumerate() {
                t.backend_sent[i] += b.sent.get();
                t.backend_answered[i] += b.answered.get();
                t.backend_timeouts[i] += b.timeouts.get();
                for (j, c) in b.latency.buckets.iter().enumerate() {
                    t.latency[j] += c.get();
                }
            }
        }
        t
    }

    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops.iter().find(|d| d.0 == r).map_or(0, |d| d.1)
    }

    pub fn dropped(&self) -> u64 {
        self.drops.iter().map(|d| d.1).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_cover_their_floor() {
        let mut last = 0;
        for us in 0..200_000u64 {
            let b = bucket_of(us);
            assert!(b >= last);
            assert!(bucket_floor(b) <= us, "us {us} bucket {b}");
            assert!(b + 1 == HIST_BUCKETS || bucket_floor(b + 1) > us);
            last = b;
        }
        assert_eq!(bucket_of(u64::MAX), HIST_BUCKETS - 1);
        assert_eq!(bucket_of(250), bucket_of(255));
        assert_ne!(bucket_of(250), bucket_of(20_000));
    }

    #[test]
    fn quantiles() {
        let h = Histogram::default();
        for _ in 0..90 {
            h.record_us(250);
        }
        for _ in 0..10 {
            h.record_us(20_000);
        }
        let c = h.snapshot();
        let p50 = quantile_us(&c, 0.5).unwrap();
        let p99 = quantile_us(&c, 0.99).unwrap();
        assert!((240..=256).contains(&p50), "{p50}");
        assert!((20_000..=22_600).contains(&p99), "{p99}");
        assert_eq!(quantile_us(&[0; HIST_BUCKETS], 0.5), None);
    }

    #[test]
    fn reason_names_are_unique() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }
}
