//! The sans-I/O processing core: bytes and a timestamp in, a verdict out.
//!
//! `query` and `answer` work on a DNS message in place and know nothing of
//! sockets or frames; the frame wrapper (`frame.rs`, AF_XDP) and the socket
//! data plane (`io::socket`) call them with the message slice and the
//! addresses they parsed or were given. One `Core` per worker.

use std::net::IpAddr;
use std::sync::Arc;

use crate::cache::{self, Cache};
use crate::config::WhenAllDown;
use crate::dynblock::{DynBlock, RateTable};
use crate::fate::{Ejection, Fate, Silence};
use crate::hash::{self, NAME_SEED};
use crate::inflight::{Allocator, InflightTable, Pending, Reject};
use crate::policy::{next_rand, Key, PickState};
use crate::rules::{self, Action};
use crate::snapshot::{Backend, BackendId, Mac, Pool, Snapshot};
use crate::stats::{DropReason, WorkerStats};
use crate::wire::checksum::Delta;
use crate::wire::dns::{self, rcode, Header};
use crate::wire::WireError;

pub mod resend_ring;

/// The worker number of a core that only completes answers.
const ANSWER_ONLY: usize = usize::MAX;

/// The client as the query showed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client {
    pub ip: IpAddr,
    pub port: u16,
    /// Frame mode: the MAC the query came from (the client's next hop).
    pub mac: Mac,
}

#[derive(Debug, PartialEq, Eq)]
pub enum QueryOutcome {
    /// The message now carries the in-flight ID; send it to `backend` from
    /// `port`. `delta` is the checksum change of the ID rewrite.
    Forward {
        backend: BackendId,
        port: u32,
        delta: Delta,
    },
    /// The message was turned into a reply of `len` bytes for the client.
    Reply {
        len: usize,
    },
    Drop(DropReason),
}

/// What became of a query an ICMP error quoted.
#[derive(Debug, PartialEq, Eq)]
pub enum IcmpOutcome {
    /// Re-dispatched: the quoted message carries a new in-flight ID; send
    /// it to `backend` from `port`.
    Forward {
        backend: BackendId,
        port: u32,
        delta: Delta,
    },
    /// The query's slot was freed without an answer (counted under the
    /// reason): the quote was cut short, re-dispatch is off, or no other
    /// backend can take it.
    Released(DropReason),
    Drop(DropReason),
}

#[derive(Debug, PartialEq, Eq)]
pub enum AnswerOutcome {
    /// The message carries the client's ID again; send it to `pending`'s
    /// client from its frontend.
    ToClient {
        pending: Pending,
        delta: Delta,
    },
    Drop(DropReason),
}

impl From<WireError> for DropReason {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Truncated => DropReason::Truncated,
            WireError::BadIpHeader => DropReason::BadIpHeader,
            WireError::IpOptions => DropReason::IpOptions,
            WireError::Fragment => DropReason::Fragment,
            WireError::NotUdp => DropReason::NotUdp,
            WireError::UdpLength => DropReason::UdpLength,
            WireError::QdCount => DropReason::QdCount,
            WireError::Compression => DropReason::Compression,
            WireError::BadLabel => DropReason::BadLabel,
            WireError::NameTooLong => DropReason::NameTooLong,
        }
    }
}

impl From<Reject> for DropReason {
    fn from(r: Reject) -> Self {
        match r {
            Reject::UnknownId => DropReason::UnknownId,
            Reject::WrongSource => DropReason::WrongSource,
            Reject::WrongQuestion => DropReason::WrongQuestion,
            Reject::Late => DropReason::Late,
        }
    }
}

pub struct Core {
    worker: usize,
    table: Arc<InflightTable>,
    stats: Arc<WorkerStats>,
    /// This worker's side of the in-flight table (none for a core that
    /// only completes answers).
    alloc: Option<Allocator>,
    /// Round-robin position per pool.
    counters: Vec<u64>,
    rng: u64,
    generation: u64,
    rule_scratch: rules::Scratch,
    /// Dynamic blocks: the shared list and this worker's rate table.
    dynblock: Option<(Arc<DynBlock>, Box<RateTable>)>,
    /// Backends the engine took out, and this worker's silence watch.
    fate: Arc<Fate>,
    silence: Silence,
    /// Frame data plane: recent query frames, to re-send those a backend
    /// held when it was taken out.
    resend: Option<Box<resend_ring::ResendRing>>,
    /// Each pool's packet cache as of the last snapshot (`begin_batch`),
    /// for the answer path, which has no snapshot.
    caches: Vec<Option<(Arc<Cache>, cache::Settings)>>,
    /// Where a cache lookup copies an entry (reused: never zeroed per hit).
    cache_scratch: Box<cache::Scratch>,
    /// The last query's fresh cache hit, until the data plane takes it
    /// (the AF_XDP plane copies it into the XDP answer tier).
    cache_hit: Option<CacheHit>,
}

/// A query answered from a fresh cache entry: its pool and the query's
/// cache key bits (`cache::key::bits`). The entry is in the core's scratch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheHit {
    pub pool: u16,
    pub bits: u32,
}

impl Core {
    /// Worker `worker`'s core: it sends from that worker's ports and
    /// slots (made here, with the worker's random source).
    pub fn new(worker: usize, table: Arc<InflightTable>, stats: Arc<WorkerStats>) -> Core {
        let alloc = table.allocator(worker);
        Core {
            worker,
            table,
            stats,
            alloc,
            counters: Vec::new(),
            rng: hash::mix(0x5eed ^ worker as u64) | 1,
            generation: u64::MAX,
            rule_scratch: rules::Scratch::new(),
            dynblock: None,
            fate: Arc::new(Fate::default()),
            silence: Silence::default(),
            resend: None,
            caches: Vec::new(),
            cache_scratch: Box::default(),
            cache_hit: None,
        }
    }

    /// The last fresh cache hit since this was last asked, with the entry
    /// it was answered from.
    #[inline]
    pub fn take_cache_hit(&mut self) -> Option<(CacheHit, &cache::Scratch)> {
        let hit = self.cache_hit.take()?;
        Some((hit, &self.cache_scratch))
    }

    /// Keeps recent query frames for re-sending (the AF_XDP workers).
    pub fn with_resend(mut self) -> Core {
        self.resend = Some(Box::default());
        self
    }

    pub(crate) fn resend_ring(&mut self) -> Option<&mut resend_ring::ResendRing> {
        self.resend.as_deref_mut()
    }

    /// Shares the engine's backend verdicts (a core alone keeps its own).
    pub fn with_fate(mut self, f: Arc<Fate>) -> Core {
        self.fate = f;
        self
    }

    pub fn fate(&self) -> &Arc<Fate> {
        &self.fate
    }

    /// A core that only completes answers (the AF_XDP slow path): it owns
    /// no ports and sends no query.
    pub fn answer_only(table: Arc<InflightTable>, stats: Arc<WorkerStats>) -> Core {
        Core::new(ANSWER_ONLY, table, stats)
    }

    /// Counts per-source rates and drops blocked sources (`[dynblock]`).
    pub fn with_dynblock(mut self, d: Arc<DynBlock>) -> Core {
        self.dynblock = Some((d, Box::default()));
        self
    }

    pub fn worker(&self) -> usize {
        self.worker
    }

    pub fn stats(&self) -> &Arc<WorkerStats> {
        &self.stats
    }

    pub fn table(&self) -> &Arc<InflightTable> {
        &self.table
    }

    /// Once per batch: adopt a new snapshot's shape.
    #[inline]
    pub fn begin_batch(&mut self, snap: &Snapshot) {
        if snap.generation != self.generation {
            self.counters.resize(snap.pools.len(), 0);
            self.caches.clear();
            self.caches.extend(
                snap.pools
                    .iter()
                    .map(|p| p.cache.clone().map(|c| (c, p.cache_settings))),
            );
            self.generation = snap.generation;
        }
    }

    /// A client's query arrived on frontend `frontend`: the message is the
    /// first `len` bytes of `buf`, and the rest of `buf` is room a reply may
    /// grow into. `reachable` vetoes a picked backend the I/O layer cannot send
    /// to (frame mode: no MAC, other family); it runs before any in-flight
    /// slot is taken.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn query(
        &mut self,
        snap: &Snapshot,
        frontend: u16,
        buf: &mut [u8],
        len: usize,
        client: &Client,
        now_ns: u64,
        reachable: impl Fn(&Backend) -> Result<(), DropReason>,
    ) -> QueryOutcome {
        let Some(msg) = buf.get_mut(..len) else {
            return self.dropped(DropReason::Truncated);
        };
        let stats = &*self.stats;
        let h = match Header::new_checked(&*msg) {
            Ok(h) => h,
            Err(e) => return self.dropped(e.into()),
        };
        if h.is_response() {
            return self.dropped(DropReason::QueryIsResponse);
        }
        let orig_id = h.id();
        let q = match dns::parse_question(msg) {
            Ok(q) => q,
            Err(e) => return self.dropped(e.into()),
        };
        // The public name hash (rules' name index, qname policy) is made
        // only where one of those needs it.
        let mut name_hash = None;
        stats.queries.inc();
        if let Some(c) = stats.frontend_queries.get(usize::from(frontend)) {
            c.inc();
        }
        let Some(fe) = snap.frontend(frontend) else {
            return self.dropped(DropReason::NotOurs);
        };
        if let Some((db, rates)) = &mut self.dynblock {
            let p = db.prefix(client.ip);
            if db.is_blocked_prefix(p) {
                return self.dropped(DropReason::DynBlocked);
            }
            if rates.over(p, (now_ns / 1_000_000_000) as u32, db.cfg.qps) {
                db.report(p);
            }
        }
        let mut pool_idx = usize::from(fe.pool);
        let mut skip_cache = false;
        if !snap.rules.is_empty() || !snap.runtime_rules.is_empty() {
            let rq = rules::Query {
                name: q.name(msg),
                name_hash: *name_hash
                    .get_or_insert_with(|| hash::name_hash(NAME_SEED, q.name(msg))),
                labels: q.labels,
                qtype: q.qtype,
                qclass: q.qclass,
                source: client.ip,
                now_s: (now_ns / 1_000_000_000) as u32,
            };
            // Runtime rules (an operator's) first, then the file's.
            let hit = match snap
                .runtime_rules
                .first_match(&rq, &mut self.rule_scratch, self.worker)
            {
                Some(a) => Some(a),
                None => snap
                    .rules
                    .first_match(&rq, &mut self.rule_scratch, self.worker),
            };
            match hit {
                None | Some(Action::Allow) => {}
                Some(Action::SkipCache) => skip_cache = true,
                Some(Action::Pool(p)) => pool_idx = usize::from(*p),
                Some(Action::Drop) => return self.dropped(DropReason::RuleDrop),
                Some(action) => {
                    return match rules::reply::write(buf, &q, action) {
                        Some(len) => {
                            stats.local_replies.inc();
                            QueryOutcome::Reply { len }
                        }
                        None => self.dropped(DropReason::NoRoom),
                    };
                }
            }
        }
        let Some(pool) = snap.pools.get(pool_idx) else {
            return self.dropped(DropReason::NoBackend);
        };
        let qhash = self
            .table
            .question_hash(q.name(&buf[..len]), q.qtype, q.qclass);
        // The pool's packet cache, after the rules (a rule may answer, drop,
        // route or skip it): a hit is the reply, written over the query.
        let mut cache_key = 0;
        if let Some(cache) = pool.cache.as_ref().filter(|_| !skip_cache) {
            if let Some(bits) = cache::key::bits(&buf[..len], &q) {
                let k = cache::key::with_bits(qhash, bits);
                let stale_s = if pool.active.is_empty() {
                    pool.cache_settings.stale_s
                } else {
                    0
                };
                let scratch = &mut self.cache_scratch;
                if let Some(n) = cache.answer(self.worker, k, buf, &q, now_ns, stale_s, scratch) {
                    if now_ns < scratch.expires_ns() {
                        self.cache_hit = Some(CacheHit {
                            pool: pool_idx as u16,
                            bits,
                        });
                    }
                    stats.local_replies.inc();
                    return QueryOutcome::Reply { len: n };
                }
                cache_key = k;
            }
        }
        let msg = &mut buf[..len];

        let selector = if pool.active.is_empty() {
            match pool.when_all_down {
                WhenAllDown::Servfail => {
                    Header::new_checked(&mut *msg)
                        .unwrap()
                        .make_reply(rcode::SERVFAIL);
                    stats.local_replies.inc();
                    return QueryOutcome::Reply { len: q.end };
                }
                WhenAllDown::Drop => return self.dropped(DropReason::NoBackend),
                WhenAllDown::Any => &pool.fallback,
            }
        } else {
            &pool.active
        };
        let key_hash = match selector.key() {
            Key::None => 0,
            Key::Qname => name_hash.unwrap_or_else(|| hash::name_hash(NAME_SEED, q.name(msg))),
            Key::Client => match client.ip {
                IpAddr::V4(a) => hash::bytes_hash(NAME_SEED, &a.octets()),
                IpAddr::V6(a) => hash::bytes_hash(NAME_SEED, &a.octets()),
            },
        };
        let (table, worker) = (&*self.table, self.worker);
        let picked = selector.pick(
            PickState {
                counter: &mut self.counters[pool_idx],
                rng: &mut self.rng,
            },
            key_hash,
            |b| table.outstanding(worker, b),
        );
        let Some(mut backend) = picked else {
            return self.dropped(DropReason::NoBackend);
        };
        // Taken out by the engine since this snapshot was built: the next
        // usable member takes the query until the new snapshot is in.
        // (`when_all_down = "any"` sends anyway, ejected or not.)
        if !pool.active.is_empty() && self.fate.is_ejected(backend) {
            match self.fallback_pick(snap, pool, None, &reachable) {
                Some(b) => backend = b,
                None => return self.dropped(DropReason::NoBackend),
            }
        }
        let Some(be) = snap.backend(backend) else {
            return self.dropped(DropReason::NoBackend);
        };
        if let Err(r) = reachable(be) {
            return self.dropped(r);
        }

        let pending = Pending {
            client_ip: client.ip,
            client_port: client.port,
            client_mac: client.mac,
            orig_id,
            backend,
            frontend,
            pool: pool_idx as u16,
            qhash,
            sent_ns: now_ns,
            cache_key,
        };
        match self.send(&pending, msg) {
            Some((port, mut delta)) => {
                if snap.edns_max != 0 {
                    delta.add(dns::clamp_edns(msg, &q, snap.edns_max));
                }
                QueryOutcome::Forward {
                    backend,
                    port,
                    delta,
                }
            }
            None => self.dropped(DropReason::InflightFull),
        }
    }

    /// Takes an in-flight slot for `pending` under a random (port, ID) of
    /// this worker's and stamps the ID into `msg`: the port and the
    /// checksum change, or `None` when the table is full. Inlined: it is
    /// the query path's own tail (out of line it cost ~100 instructions a
    /// query under callgrind).
    #[inline(always)]
    fn send(&mut self, pending: &Pending, msg: &mut [u8]) -> Option<(u32, Delta)> {
        let backend = pending.backend;
        let (key, skipped) = self.table.alloc(self.alloc.as_mut()?, pending);
        if skipped > 0 {
            self.stats.id_skips.add(u64::from(skipped));
        }
        let (port, id) = key?;
        let delta = Header::new_checked(&mut *msg).unwrap().set_id(id);
        self.stats.backends[usize::from(backend)].sent.inc();
        let was_idle = self.table.outstanding(self.worker, backend) <= 1;
        self.silence
            .sent(&self.fate, backend, pending.sent_ns, was_idle);
        Some((port, delta))
    }

    /// A usable member of `pool` other than `exclude`, not taken out by the
    /// engine and reachable, from a random start: for the moments between
    /// an ejection and the snapshot that reflects it, and for re-dispatch.
    fn fallback_pick(
        &mut self,
        snap: &Snapshot,
        pool: &Pool,
        exclude: Option<BackendId>,
        reachable: &impl Fn(&Backend) -> Result<(), DropReason>,
    ) -> Option<BackendId> {
        let n = pool.members.len();
        if n == 0 {
            return None;
        }
        let start = next_rand(&mut self.rng) as usize % n;
        (0..n).map(|k| pool.members[(start + k) % n]).find(|&b| {
            Some(b) != exclude
                && !self.fate.is_ejected(b)
                && snap
                    .backend(b)
                    .is_some_and(|be| be.usable() && reachable(be).is_ok())
        })
    }

    /// An ICMP destination unreachable quoted one of our queries: the
    /// quote's DNS message is `quote` (`complete`: the whole datagram, not
    /// cut short) and it left on in-flight port `port`. `source_ok` checks
    /// the quoted destination against the slot's backend. The backend is
    /// taken out at once and the query re-sent to another member of its
    /// pool, so the client still gets its answer.
    #[allow(clippy::too_many_arguments)]
    pub fn icmp_error(
        &mut self,
        snap: &Snapshot,
        port: u32,
        quote: &mut [u8],
        complete: bool,
        now_ns: u64,
        source_ok: impl Fn(BackendId) -> bool,
        reachable: impl Fn(&Backend) -> Result<(), DropReason>,
    ) -> IcmpOutcome {
        let Ok(h) = Header::new_checked(&*quote) else {
            return self.dropped_icmp(DropReason::IcmpQuoteShort);
        };
        if h.is_response() {
            return self.dropped_icmp(DropReason::IcmpUnmatched);
        }
        let id = h.id();
        // The question proves the quote is of our query; a quote cut before
        // its end is matched on port, ID and backend alone.
        let qhash = match dns::parse_question(quote) {
            Ok(q) => Some(self.table.question_hash(q.name(quote), q.qtype, q.qclass)),
            Err(WireError::Truncated) if !complete => None,
            Err(_) => return self.dropped_icmp(DropReason::IcmpUnmatched),
        };
        let Ok(p) = self.table.complete(port, id, qhash, source_ok) else {
            return self.dropped_icmp(DropReason::IcmpUnmatched);
        };
        self.stats.icmp_errors.inc();
        self.stats.backends[usize::from(p.backend)].errors.inc();
        if snap.icmp_failover {
            self.fate.eject(p.backend, Ejection::Icmp, now_ns);
        }
        if !complete || qhash.is_none() {
            return self.released(DropReason::IcmpQuoteShort);
        }
        if !snap.redispatch {
            return self.released(DropReason::RedispatchOff);
        }
        match self.resend_query(snap, p, quote, now_ns, reachable) {
            Some((backend, port, delta)) => IcmpOutcome::Forward {
                backend,
                port,
                delta,
            },
            None => IcmpOutcome::Released(DropReason::RedispatchFailed),
        }
    }

    /// Sends a waiting query (its slot already taken from the backend the
    /// engine gave up on) to another usable member of its pool: the new
    /// backend, port and the ID's checksum change in `msg`. `None` (counted)
    /// when no backend or ID is free.
    pub(crate) fn resend_query(
        &mut self,
        snap: &Snapshot,
        p: Pending,
        msg: &mut [u8],
        now_ns: u64,
        reachable: impl Fn(&Backend) -> Result<(), DropReason>,
    ) -> Option<(BackendId, u32, Delta)> {
        let pool = snap.pools.get(usize::from(p.pool));
        let backend =
            pool.and_then(|pool| self.fallback_pick(snap, pool, Some(p.backend), &reachable));
        let Some(backend) = backend else {
            self.stats.count_drop(DropReason::RedispatchFailed);
            return None;
        };
        let again = Pending {
            backend,
            sent_ns: now_ns,
            ..p
        };
        match self.send(&again, msg) {
            Some((port, delta)) => {
                self.stats.redispatched.inc();
                Some((backend, port, delta))
            }
            None => {
                self.stats.count_drop(DropReason::RedispatchFailed);
                None
            }
        }
    }

    /// The kernel reported a backend's host unreachable on a connected
    /// socket (ECONNREFUSED: ICMP port unreachable): take it out.
    pub fn backend_refused(&self, snap: &Snapshot, backend: BackendId, now_ns: u64) {
        self.stats.backends[usize::from(backend)].errors.inc();
        if snap.icmp_failover {
            self.fate.eject(backend, Ejection::Icmp, now_ns);
        }
    }

    /// The silence rule over this worker's queries: a usable backend with
    /// a query waiting since `dead_after` and no answer since, while a peer
    /// in one of its pools answered within `dead_after`, is taken out.
    pub fn check_silence(&mut self, snap: &Snapshot, now_ns: u64) {
        let dead_after = snap.dead_after_ns;
        if dead_after == 0 {
            return;
        }
        for be in snap.live_backends() {
            let b = be.id;
            if !be.usable() || self.fate.is_ejected(b) {
                continue;
            }
            let waiting = self.table.outstanding(self.worker, b);
            if !self
                .silence
                .silent(&self.fate, b, waiting, now_ns, dead_after)
            {
                continue;
            }
            let fate = &self.fate;
            let peer_answers = snap.pools.iter().any(|p| {
                p.members.contains(&b)
                    && p.members.iter().any(|&c| {
                        let la = fate.last_answer(c);
                        c != b && la != 0 && now_ns.saturating_sub(la) < dead_after
                    })
            });
            if peer_answers {
                fate.eject(b, Ejection::Silent, now_ns);
            }
        }
    }

    /// A backend's answer arrived on in-flight port `port` (global index).
    /// `source_ok` says whether it came from the given backend's address.
    #[inline]
    pub fn answer(
        &mut self,
        msg: &mut [u8],
        port: u32,
        now_ns: u64,
        source_ok: impl Fn(BackendId) -> bool,
    ) -> AnswerOutcome {
        let h = match Header::new_checked(&*msg) {
            Ok(h) => h,
            Err(e) => return self.dropped_answer(e.into()),
        };
        if !h.is_response() {
            return self.dropped_answer(DropReason::AnswerNotResponse);
        }
        let id = h.id();
        let rc = h.rcode();
        let qhash = match dns::parse_question(msg) {
            Ok(q) => Some(self.table.question_hash(q.name(msg), q.qtype, q.qclass)),
            // A server that cannot parse or will not serve a query may
            // answer without echoing it (RFC 1035 leaves the question out
            // of FORMERR and the like): matched by source, port and ID,
            // so the client hears the error instead of timing out.
            Err(WireError::QdCount) if h.qdcount() == 0 && answers_without_question(rc) => None,
            // Any other answer without exactly one question cannot be
            // matched to its query.
            Err(WireError::QdCount) => return self.dropped_answer(DropReason::NoQuestion),
            Err(e) => return self.dropped_answer(e.into()),
        };
        match self.table.complete(port, id, qhash, source_ok) {
            Ok(pending) => {
                let delta = Header::new_checked(&mut *msg)
                    .unwrap()
                    .set_id(pending.orig_id);
                self.fate.answered(pending.backend, now_ns);
                let b = &self.stats.backends[usize::from(pending.backend)];
                b.answered.inc();
                b.rcodes[usize::from(rc)].inc();
                b.latency
                    .record_us(now_ns.saturating_sub(pending.sent_ns) / 1000);
                self.stats.answers.inc();
                if self.worker != ANSWER_ONLY && self.table.owner(port) != self.worker {
                    self.stats.answers_cross_worker.inc();
                }
                if pending.cache_key != 0 {
                    if let Some(Some((cache, settings))) =
                        self.caches.get(usize::from(pending.pool))
                    {
                        cache.insert(self.worker, pending.cache_key, msg, now_ns, settings);
                    }
                }
                AnswerOutcome::ToClient { pending, delta }
            }
            Err(r) => self.dropped_answer(r.into()),
        }
    }

    /// Times out this worker's queries older than the snapshot's timeout and
    /// counts them against their backends. Returns an upper bound of the
    /// queries still waiting.
    pub fn sweep(&mut self, snap: &Snapshot, now_ns: u64) -> usize {
        let stats = &self.stats;
        let Some(alloc) = self.alloc.as_mut() else {
            return 0;
        };
        self.table.sweep(alloc, now_ns, snap.timeout_ns, |p| {
            stats.backends[usize::from(p.backend)].timeouts.inc();
        })
    }

    /// Counts a datagram the I/O layer dropped itself.
    #[inline]
    pub fn count_drops(&self, r: DropReason, n: u64) {
        self.stats.drops[r as usize].add(n);
    }

    pub fn count_drop(&self, r: DropReason) {
        self.stats.count_drop(r);
    }

    #[inline]
    fn dropped(&self, r: DropReason) -> QueryOutcome {
        self.stats.count_drop(r);
        QueryOutcome::Drop(r)
    }

    fn dropped_icmp(&self, r: DropReason) -> IcmpOutcome {
        self.stats.count_drop(r);
        IcmpOutcome::Drop(r)
    }

    fn released(&self, r: DropReason) -> IcmpOutcome {
        self.stats.count_drop(r);
        IcmpOutcome::Released(r)
    }

    #[inline]
    fn dropped_answer(&self, r: DropReason) -> AnswerOutcome {
        self.stats.count_drop(r);
        AnswerOutcome::Drop(r)
    }
}

/// RCODEs a server may send without the question: the errors about the
/// query itself.
fn answers_without_question(rc: u8) -> bool {
    matches!(
        rc,
        rcode::FORMERR | rcode::SERVFAIL | rcode::NOTIMP | rcode::REFUSED
    )
}

#[cfg(test)]
mod tests;
