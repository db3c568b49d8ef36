//! The in-flight table: which client is waiting for which backend answer.
//!
//! Every worker owns a slab of slots (a power of two, `slots_per_worker`)
//! and `ports_per_worker` backend-side ports (AF_XDP: reserved UDP port
//! numbers; sockets: one unconnected socket each). A query is sent under a
//! key drawn at random from the worker's CSPRNG (ChaCha12, seeded from the
//! OS): a port among the worker's and a 16-bit DNS ID. The key names its
//! slot through a fixed hash; a key whose slot is busy is drawn again. An
//! off-path forger must therefore guess port and ID together —
//! `log2(ports_per_worker) + 16` bits — and the question, which the slot
//! holds as a hash keyed with a per-process secret (`hash::QuestionKey`).
//!
//! Completion is a compare-and-swap on the slot's state word, so the
//! answer may be handled by any worker (RSS hashes it wherever it likes)
//! and still complete without a lock. The state word carries the key: a
//! guessed (port, ID) that names a busy slot under another key is refused
//! on one load.
//!
//! Slot contents are plain relaxed atomics guarded by the state word,
//! seqlock style: the owner writes the fields only while the slot is not
//! busy, then publishes `BUSY | key | generation` with release ordering; a
//! completer reads the state (acquire), copies the fields, checks them, and
//! only trusts the copy if its CAS from that exact state succeeds — any
//! rewrite in between would have changed the generation.
//!
//! Timeouts: the owner keeps a FIFO of its allocations (slot, generation)
//! in send order. The sweep pops from its head while the head is answered
//! (a stale generation) or old enough to time out, and stops at the first
//! query still young: its cost follows what was sent since the last sweep,
//! not the table's size (an idle balancer touches nothing).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::hash::QuestionKey;
use crate::ids::{BackendId, MAX_BACKENDS};

/// Busy slots an allocation skips before it gives up (the table is then
/// nearly full: at half occupancy 16 busy draws in a row happen once in
/// 65 536 allocations).
const MAX_PROBES: u32 = 16;
pub use crate::ids::{MAX_PORTS_PER_WORKER, MAX_SLOTS, MIN_SLOTS};
/// Allocation FIFO entries per slot: at most one entry per slot is live, so
/// a full FIFO is at least three quarters answered entries and compacting
/// it costs O(1) per allocation, amortised.
const FIFO_PER_SLOT: usize = 4;

const ST_FREE: u64 = 0;
const ST_BUSY: u64 = 1;
/// Free for reuse, but remembers it timed out so a late answer is told apart
/// from a wrong ID.
const ST_TIMED_OUT: u64 = 2;
const ST_MASK: u64 = 3;
const KEY_SHIFT: u32 = 2;
const GEN_SHIFT: u32 = 34;
const GEN_MASK: u64 = (1 << 30) - 1;

const FLAG_V4: u64 = 1 << 63;
const POOL_SHIFT: u32 = 48;
const POOL_MASK: u64 = 0x7fff;

/// What an answer needs to reach the client that asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    pub client_ip: IpAddr,
    pub client_port: u16,
    /// The client's next-hop MAC (frame mode; zero in socket mode).
    pub client_mac: [u8; 6],
    pub orig_id: u16,
    pub backend: BackendId,
    pub frontend: u16,
    /// The pool the backend was picked from (a rule may route away from
    /// the frontend's): a re-dispatch picks from it again. At most 32 767.
    pub pool: u16,
    /// The question, hashed with the table's secret key.
    pub qhash: u64,
    pub sent_ns: u64,
    /// The query's packet cache key (0 = its answer is not to be kept).
    pub cache_key: u64,
}

#[repr(C, align(64))]
#[derive(Default)]
struct Slot {
    /// state | key << 2 | generation << 34
    state: AtomicU64,
    ip_hi: AtomicU64,
    ip_lo: AtomicU64,
    /// client port | orig id << 16 | backend << 32 | frontend << 48
    meta: AtomicU64,
    /// client MAC | pool << 48 | FLAG_V4
    mac: AtomicU64,
    qhash: AtomicU64,
    sent: AtomicU64,
    /// The slot's eighth word: the cache key.
    cache_key: AtomicU64,
}

impl Slot {
    fn write(&self, p: &Pending) {
        let (ip, v4) = match p.client_ip {
            IpAddr::V4(a) => (a.to_ipv6_mapped().octets(), FLAG_V4),
            IpAddr::V6(a) => (a.octets(), 0),
        };
        let r = Ordering::Relaxed;
        self.ip_hi
            .store(u64::from_be_bytes(ip[..8].try_into().unwrap()), r);
        self.ip_lo
            .store(u64::from_be_bytes(ip[8..].try_into().unwrap()), r);
        let meta = u64::from(p.client_port)
            | u64::from(p.orig_id) << 16
            | u64::from(p.backend) << 32
            | u64::from(p.frontend) << 48;
        self.meta.store(meta, r);
        let mut mac = [0u8; 8];
        mac[2..].copy_from_slice(&p.client_mac);
        let pool = (u64::from(p.pool) & POOL_MASK) << POOL_SHIFT;
        self.mac.store(u64::from_be_bytes(mac) | pool | v4, r);
        self.qhash.store(p.qhash, r);
        self.sent.store(p.sent_ns, r);
        self.cache_key.store(p.cache_key, r);
    }

    fn read(&self) -> Pending {
        let r = Ordering::Relaxed;
        let mut ip = [0u8; 16];
        ip[..8].copy_from_slice(&self.ip_hi.load(r).to_be_bytes());
        ip[8..].copy_from_slice(&self.ip_lo.load(r).to_be_bytes());
        let meta = self.meta.load(r);
        let mac = self.mac.load(r);
        let v6 = Ipv6Addr::from(ip);
        let client_ip = if mac & FLAG_V4 != 0 {
            IpAddr::V4(v6.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED))
        } else {
            IpAddr::V6(v6)
        };
        let mb = mac.to_be_bytes();
        Pending {
            client_ip,
            client_port: meta as u16,
            orig_id: (meta >> 16) as u16,
            backend: (meta >> 32) as u16,
            frontend: (meta >> 48) as u16,
            client_mac: mb[2..].try_into().unwrap(),
            pool: ((mac >> POOL_SHIFT) & POOL_MASK) as u16,
            qhash: self.qhash.load(r),
            sent_ns: self.sent.load(r),
            cache_key: self.cache_key.load(r),
        }
    }
}

#[inline]
fn key_of(s: u64) -> u32 {
    (s >> KEY_SHIFT) as u32
}

#[inline]
fn gen_of(s: u64) -> u64 {
    (s >> GEN_SHIFT) & GEN_MASK
}

/// Asks for `slot`'s cache line ahead of its use (a hint: no effect on
/// what any load returns). The crate's one unsafe block: `_mm_prefetch` is
/// a `target_feature` intrinsic the compiler still calls unsafe, and
/// without it allocation misses the cache on a random slot (#13).
#[inline(always)]
#[allow(unsafe_code)]
fn prefetch(slot: &Slot) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing into the program and cannot fault;
    // the pointer is to a live slot.
    unsafe {
        std::arch::x86_64::_mm_prefetch(
            slot as *const Slot as *const i8,
            std::arch::x86_64::_MM_HINT_T0,
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = slot;
}

/// Why an answer was not matched to a waiting query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// No port with that index, or no query waiting under that port and ID.
    UnknownId,
    /// The slot is waiting, but for an answer from another backend.
    WrongSource,
    /// Right source, different question.
    WrongQuestion,
    /// It matches a query that already timed out.
    Late,
}

pub struct InflightTable {
    /// One slab per worker, allocated when the worker's allocator is made.
    slabs: Box<[OnceLock<Box<[Slot]>>]>,
    ports_per_worker: u32,
    slot_bits: u32,
    /// Queries waiting, per (owning worker, backend): least-outstanding reads it.
    outstanding: Box<[AtomicU32]>,
    qkey: QuestionKey,
}

/// A worker's own side of the table: its random source and its
/// allocations in send order. Only the owning worker holds it.
pub struct Allocator {
    worker: u32,
    rng: ChaCha12Rng,
    /// The next query's key, drawn one query ahead so that its slot's
    /// cache line is being fetched while this one is processed: random
    /// slots over a 4 MiB slab miss the cache, a counter's did not.
    ahead: u32,
    /// (slot index | generation << 32), oldest at `head`.
    fifo: Box<[u64]>,
    head: usize,
    tail: usize,
}

impl Allocator {
    fn push(&mut self, entry: u64) {
        let mask = self.fifo.len() - 1;
        self.fifo[self.tail & mask] = entry;
        self.tail = self.tail.wrapping_add(1);
    }

    fn len(&self) -> usize {
        self.tail.wrapping_sub(self.head)
    }
}

impl InflightTable {
    /// `slots_per_worker` is rounded up to a power of two within
    /// [`MIN_SLOTS`, `MAX_SLOTS`]; `ports_per_worker` is clamped to
    /// 1..=[`MAX_PORTS_PER_WORKER`] (configuration validates both).
    pub fn new(workers: usize, ports_per_worker: usize, slots_per_worker: usize) -> Self {
        let slots = slots_per_worker
            .clamp(MIN_SLOTS, MAX_SLOTS)
            .next_power_of_two();
        InflightTable {
            slabs: (0..workers).map(|_| OnceLock::new()).collect(),
            ports_per_worker: ports_per_worker.clamp(1, MAX_PORTS_PER_WORKER) as u32,
            slot_bits: slots.trailing_zeros(),
            outstanding: (0..workers * MAX_BACKENDS)
                .map(|_| AtomicU32::new(0))
                .collect(),
            qkey: QuestionKey::random(),
        }
    }

    pub fn ports_per_worker(&self) -> usize {
        self.ports_per_worker as usize
    }

    pub fn slots_per_worker(&self) -> usize {
        1 << self.slot_bits
    }

    /// Global index of a worker's local port.
    pub fn port_index(&self, worker: usize, local: usize) -> u32 {
        (worker * self.ports_per_worker as usize + local) as u32
    }

    /// The worker that owns global port `port`.
    pub fn owner(&self, port: u32) -> usize {
        (port / self.ports_per_worker) as usize
    }

    /// The per-process keyed hash of a question (name without case, type,
    /// class) that answers are checked against.
    #[inline]
    pub fn question_hash(&self, name: &[u8], qtype: u16, qclass: u16) -> u64 {
        self.qkey.hash(name, qtype, qclass)
    }

    /// Worker `worker`'s allocator, with its slab (64 bytes a slot) made
    /// now and a CSPRNG seeded from the OS. Control path: once per worker.
    /// `None` for a worker the table was not sized for.
    pub fn allocator(&self, worker: usize) -> Option<Allocator> {
        let cell = self.slabs.get(worker)?;
        let n = self.slots_per_worker();
        cell.get_or_init(|| (0..n).map(|_| Slot::default()).collect());
        let mut rng = ChaCha12Rng::from_entropy();
        Some(Allocator {
            worker: worker as u32,
            ahead: self.key_of_draw(rng.next_u64()),
            rng,
            fifo: vec![0; n * FIFO_PER_SLOT].into_boxed_slice(),
            head: 0,
            tail: 0,
        })
    }

    /// A key from 64 random bits: the ID from 16, the port from 32 by
    /// Lemire's reduction (uniform to within 2^-16 for any port count).
    #[inline]
    fn key_of_draw(&self, r: u64) -> u32 {
        let local = ((r >> 32) * u64::from(self.ports_per_worker)) >> 32;
        (local as u32) << 16 | u32::from(r as u16)
    }

    #[inline]
    fn slot_index(&self, key: u32) -> usize {
        // Fibonacci hashing: keys are random, this only spreads the few
        // bits a small port count leaves over the whole slab.
        (key.wrapping_mul(0x9e37_79b1) >> (32 - self.slot_bits)) as usize
    }

    /// The slot (port, id) names, and its key.
    #[inline]
    fn locate(&self, port: u32, id: u16) -> Option<(&Slot, u32)> {
        let slab = self.slabs.get(self.owner(port))?.get()?;
        let key = (port % self.ports_per_worker) << 16 | u32::from(id);
        Some((&slab[self.slot_index(key)], key))
    }

    #[inline]
    fn outstanding_cell(&self, worker: usize, backend: BackendId) -> Option<&AtomicU32> {
        self.outstanding
            .get(worker * MAX_BACKENDS + usize::from(backend))
    }

    /// Queries worker `worker` has waiting on `backend`.
    pub fn outstanding(&self, worker: usize, backend: BackendId) -> u32 {
        self.outstanding_cell(worker, backend)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Takes a free slot for `p` under a random key: the global port and
    /// DNS ID to send under, and how many busy slots were drawn first. Only
    /// the allocator's owner calls this. `None`: the table is (nearly)
    /// full, or the allocator is not this table's.
    #[inline]
    pub fn alloc(&self, a: &mut Allocator, p: &Pending) -> (Option<(u32, u16)>, u32) {
        let w = a.worker as usize;
        let Some(slab) = self.slabs.get(w).and_then(OnceLock::get) else {
            return (None, 0);
        };
        if a.len() == a.fifo.len() {
            self.compact(a, slab);
        }
        for probe in 0..MAX_PROBES {
            let key = std::mem::replace(&mut a.ahead, self.key_of_draw(a.rng.next_u64()));
            let idx = self.slot_index(key);
            let slot = &slab[idx];
            let s = slot.state.load(Ordering::Acquire);
            prefetch(&slab[self.slot_index(a.ahead)]);
            if s & ST_MASK == ST_BUSY {
                continue;
            }
            let (local, id) = (key >> 16, key as u16);
            slot.write(p);
            let gen = (gen_of(s) + 1) & GEN_MASK;
            slot.state.store(
                gen << GEN_SHIFT | u64::from(key) << KEY_SHIFT | ST_BUSY,
                Ordering::Release,
            );
            a.push(idx as u64 | gen << 32);
            if let Some(c) = self.outstanding_cell(w, p.backend) {
                c.fetch_add(1, Ordering::Relaxed);
            }
            return (Some((self.port_index(w, local as usize), id)), probe);
        }
        (None, MAX_PROBES)
    }

    /// Drops the answered entries of a full FIFO, keeping the order of
    /// the rest (at most one per slot, so at least 3/4 of it is freed).
    #[cold]
    fn compact(&self, a: &mut Allocator, slab: &[Slot]) {
        let mask = a.fifo.len() - 1;
        let mut kept = a.head;
        let mut i = a.head;
        while i != a.tail {
            let e = a.fifo[i & mask];
            if Self::live(slab, e).is_some() {
                a.fifo[kept & mask] = e;
                kept = kept.wrapping_add(1);
            }
            i = i.wrapping_add(1);
        }
        a.tail = kept;
    }

    /// The state of the slot a FIFO entry names, if that allocation is
    /// still waiting.
    #[inline]
    fn live(slab: &[Slot], e: u64) -> Option<(&Slot, u64)> {
        let slot = slab.get((e as u32) as usize)?;
        let s = slot.state.load(Ordering::Acquire);
        (s & ST_MASK == ST_BUSY && gen_of(s) == e >> 32).then_some((slot, s))
    }

    /// Completes the query waiting under (port, id) if `source_ok` accepts its
    /// backend and the question matches (`None`: an error answer that carries
    /// no question, matched by source and ID alone). Any worker may call this.
    #[inline]
    pub fn complete(
        &self,
        port: u32,
        id: u16,
        qhash: Option<u64>,
        source_ok: impl Fn(BackendId) -> bool,
    ) -> Result<Pending, Reject> {
        let (slot, key) = self.locate(port, id).ok_or(Reject::UnknownId)?;
        let s = slot.state.load(Ordering::Acquire);
        let st = s & ST_MASK;
        if st == ST_FREE || key_of(s) != key {
            return Err(Reject::UnknownId);
        }
        let p = slot.read();
        if !source_ok(p.backend) {
            return Err(if st == ST_BUSY {
                Reject::WrongSource
            } else {
                Reject::UnknownId
            });
        }
        if qhash.is_some_and(|q| q != p.qhash) {
            return Err(if st == ST_BUSY {
                Reject::WrongQuestion
            } else {
                Reject::UnknownId
            });
        }
        if st == ST_TIMED_OUT {
            // Only trust the copy if nothing rewrote the slot meanwhile.
            return if slot.state.load(Ordering::Acquire) == s {
                Err(Reject::Late)
            } else {
                Err(Reject::UnknownId)
            };
        }
        match slot.state.compare_exchange(
            s,
            (s & !ST_MASK) | ST_FREE,
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                if let Some(c) = self.outstanding_cell(self.owner(port), p.backend) {
                    c.fetch_sub(1, Ordering::Relaxed);
                }
                Ok(p)
            }
            // Completed (a duplicate answer) or timed out under our feet.
            Err(now) if now & ST_MASK == ST_TIMED_OUT && now >> GEN_SHIFT == s >> GEN_SHIFT => {
                Err(Reject::Late)
            }
            Err(_) => Err(Reject::UnknownId),
        }
    }

    /// Takes the query waiting under (port, id) if `is_it` recognises it (its
    /// backend and send time): the engine gives up waiting for that backend
    /// and re-sends the query elsewhere. Any worker may call this.
    pub fn take(&self, port: u32, id: u16, is_it: impl Fn(&Pending) -> bool) -> Option<Pending> {
        let (slot, key) = self.locate(port, id)?;
        let s = slot.state.load(Ordering::Acquire);
        if s & ST_MASK != ST_BUSY || key_of(s) != key {
            return None;
        }
        let p = slot.read();
        if !is_it(&p) {
            return None;
        }
        slot.state
            .compare_exchange(
                s,
                (s & !ST_MASK) | ST_FREE,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .ok()?;
        if let Some(c) = self.outstanding_cell(self.owner(port), p.backend) {
            c.fetch_sub(1, Ordering::Relaxed);
        }
        Some(p)
    }

    /// Frees a slot the owner just allocated but could not send (the kernel
    /// refused the datagram), so it is neither answered nor timed out.
    pub fn cancel(&self, port: u32, id: u16) {
        let Some((slot, key)) = self.locate(port, id) else {
            return;
        };
        let s = slot.state.load(Ordering::Acquire);
        if s & ST_MASK != ST_BUSY || key_of(s) != key {
            return;
        }
        let backend = (slot.meta.load(Ordering::Relaxed) >> 32) as u16;
        if slot
            .state
            .compare_exchange(s, s & !ST_MASK, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            if let Some(c) = self.outstanding_cell(self.owner(port), backend) {
                c.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Times out the allocator's queries older than `timeout_ns`;
    /// `on_timeout` sees each one (to count it against its backend). Owner
    /// only. Walks the allocations in send order and stops at the first
    /// one still young, so it costs what was sent since the last sweep.
    /// Returns how many allocations it still holds (an upper bound of the
    /// queries waiting). A query re-sent with an older clock than the one
    /// before it times out at most one `timeout_ns` late.
    pub fn sweep(
        &self,
        a: &mut Allocator,
        now_ns: u64,
        timeout_ns: u64,
        mut on_timeout: impl FnMut(&Pending),
    ) -> usize {
        let w = a.worker as usize;
        let Some(slab) = self.slabs.get(w).and_then(OnceLock::get) else {
            return 0;
        };
        let mask = a.fifo.len() - 1;
        while a.head != a.tail {
            let e = a.fifo[a.head & mask];
            let Some((slot, s)) = Self::live(slab, e) else {
                a.head = a.head.wrapping_add(1);
                continue;
            };
            if now_ns.saturating_sub(slot.sent.load(Ordering::Relaxed)) < timeout_ns {
                break;
            }
            let p = slot.read();
            if slot
                .state
                .compare_exchange(
                    s,
                    (s & !ST_MASK) | ST_TIMED_OUT,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                if let Some(c) = self.outstanding_cell(w, p.backend) {
                    c.fetch_sub(1, Ordering::Relaxed);
                }
                on_timeout(&p);
            }
            a.head = a.head.wrapping_add(1);
        }
        a.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn pending(backend: BackendId, qhash: u64, sent: u64) -> Pending {
        Pending {
            client_ip: "192.0.2.7".parse().unwrap(),
            client_port: 5353,
            client_mac: [2, 0, 0, 0, 0, 7],
            orig_id: 0xabcd,
            backend,
            frontend: 1,
            pool: 2,
            qhash,
            sent_ns: sent,
            cache_key: 0,
        }
    }

    fn table(ports: usize, slots: usize) -> (InflightTable, Allocator) {
        let t = InflightTable::new(1, ports, slots);
        let a = t.allocator(0).unwrap();
        (t, a)
    }

    #[test]
    fn alloc_complete_roundtrip_v4_and_v6() {
        let (t, mut a) = table(4, 1024);
        let p = pending(3, 77, 10);
        let ((port, id), skipped) = match t.alloc(&mut a, &p) {
            (Some(k), s) => (k, s),
            (None, _) => panic!("empty table refused"),
        };
        assert_eq!(skipped, 0);
        assert!(port < 4);
        assert_eq!(t.outstanding(0, 3), 1);
        assert_eq!(t.complete(port, id, Some(77), |b| b == 3), Ok(p));
        assert_eq!(t.outstanding(0, 3), 0);
        // A duplicate answer finds the slot free.
        assert_eq!(
            t.complete(port, id, Some(77), |b| b == 3),
            Err(Reject::UnknownId)
        );

        let mut p6 = pending(4, 1, 10);
        p6.client_ip = "2001:db8::53".parse().unwrap();
        p6.pool = 32_767;
        let (port, id) = t.alloc(&mut a, &p6).0.unwrap();
        assert_eq!(t.complete(port, id, Some(1), |_| true), Ok(p6));
    }

    #[test]
    fn wrong_source_question_port_or_id_leaves_slot_waiting() {
        let (t, mut a) = table(4, 1024);
        let p = pending(1, 42, 0);
        let (port, id) = t.alloc(&mut a, &p).0.unwrap();
        assert_eq!(
            t.complete(port, id, Some(42), |b| b == 2),
            Err(Reject::WrongSource)
        );
        assert_eq!(
            t.complete(port, id, Some(43), |b| b == 1),
            Err(Reject::WrongQuestion)
        );
        // Every other ID on that port, and the same ID on every other port
        // (and ports the table does not have), is unknown.
        for other in (0..=u16::MAX).filter(|&i| i != id) {
            assert_eq!(
                t.complete(port, other, Some(42), |b| b == 1),
                Err(Reject::UnknownId)
            );
        }
        for other in (0..9).filter(|&q| q != port) {
            assert_eq!(
                t.complete(other, id, Some(42), |b| b == 1),
                Err(Reject::UnknownId)
            );
        }
        assert_eq!(t.complete(port, id, Some(42), |b| b == 1), Ok(p));
    }

    #[test]
    fn keys_are_spread_over_ports_and_ids_without_pattern() {
        let (t, mut a) = table(1024, 1 << 16);
        let mut ports = std::collections::HashSet::new();
        let mut pairs = std::collections::HashSet::new();
        let (mut low_bit_flips, mut prev) = (0, None);
        for i in 0..20_000u64 {
            let (port, id) = t.alloc(&mut a, &pending(1, i, 0)).0.unwrap();
            ports.insert(port);
            pairs.insert((port, id));
            if let Some(p) = prev {
                low_bit_flips += usize::from((p ^ id) & 1 == 1);
            }
            prev = Some(id);
            t.complete(port, id, Some(i), |_| true).unwrap();
        }
        // 20 000 draws over 1 024 ports leave none out but by a fluke of
        // probability 1024·e^-19.5.
        assert_eq!(ports.len(), 1024);
        // Birthday bound over 2^26 keys: ~3 repeats expected.
        assert!(pairs.len() > 19_950, "{} distinct", pairs.len());
        // A counter would flip the low bit every time; chance, about half
        // (±6 σ of a binomial over 19 999 trials).
        assert!((9_150..10_850).contains(&low_bit_flips), "{low_bit_flips}");
    }

    #[test]
    fn two_tables_draw_different_keys_and_hash_questions_differently() {
        let (t1, mut a1) = table(1024, 1024);
        let (t2, mut a2) = table(1024, 1024);
        let k1: Vec<_> = (0..8)
            .map(|_| t1.alloc(&mut a1, &pending(1, 1, 0)).0)
            .collect();
        let k2: Vec<_> = (0..8)
            .map(|_| t2.alloc(&mut a2, &pending(1, 1, 0)).0)
            .collect();
        assert_ne!(k1, k2);
        let name = b"\x07example\x03com\x00";
        assert_ne!(t1.question_hash(name, 1, 1), t2.question_hash(name, 1, 1));
        // Within a table: case does not matter, type and class do.
        assert_eq!(
            t1.question_hash(name, 1, 1),
            t1.question_hash(b"\x07ExAmPlE\x03COM\x00", 1, 1)
        );
        assert_ne!(t1.question_hash(name, 1, 1), t1.question_hash(name, 28, 1));
        assert_ne!(t1.question_hash(name, 1, 1), t1.question_hash(name, 1, 3));
        assert_ne!(
            t1.question_hash(name, 1, 1),
            t1.question_hash(b"\x07example\x03org\x00", 1, 1)
        );
    }

    #[test]
    fn sweep_times_out_and_late_answer_is_named() {
        let (t, mut a) = table(2, 1024);
        let old = t.alloc(&mut a, &pending(1, 5, 100)).0.unwrap();
        let young = t.alloc(&mut a, &pending(2, 6, 900)).0.unwrap();
        let mut timed_out = vec![];
        let held = t.sweep(&mut a, 1000, 500, |p| timed_out.push(p.backend));
        assert_eq!(timed_out, vec![1]);
        assert_eq!(held, 1);
        assert_eq!(t.outstanding(0, 1), 0);
        assert_eq!(
            t.complete(old.0, old.1, Some(5), |b| b == 1),
            Err(Reject::Late)
        );
        assert_eq!(
            t.complete(old.0, old.1, Some(9), |b| b == 1),
            Err(Reject::UnknownId)
        );
        // The young one still waits: the next sweep looks again and times it out.
        assert_eq!(t.sweep(&mut a, 2000, 500, |p| timed_out.push(p.backend)), 0);
        assert_eq!(timed_out, vec![1, 2]);
        assert_eq!(
            t.complete(young.0, young.1, Some(6), |b| b == 2),
            Err(Reject::Late)
        );
    }

    #[test]
    fn sweep_costs_what_was_sent_and_skips_answered() {
        let (t, mut a) = table(2, 1024);
        // Nothing sent: nothing held, nothing looked at.
        assert_eq!(t.sweep(&mut a, 10_000, 100, |_| panic!()), 0);
        let keys: Vec<_> = (0..10)
            .map(|i| t.alloc(&mut a, &pending(1, i, i * 10)).0.unwrap())
            .collect();
        for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
            t.complete(k.0, k.1, Some(i as u64), |_| true).unwrap();
        }
        // At 145 with timeout 100: sent at ≤ 45 time out (10 and 30; 0, 20
        // and 40 were answered); 50 stops the walk.
        let mut out = vec![];
        assert_eq!(t.sweep(&mut a, 145, 100, |p| out.push(p.qhash)), 5);
        assert_eq!(out, vec![1, 3]);
        assert_eq!(t.sweep(&mut a, 1_000, 100, |p| out.push(p.qhash)), 0);
        assert_eq!(out, vec![1, 3, 5, 7, 9]);
        assert_eq!(t.outstanding(0, 1), 0);
    }

    #[test]
    fn a_full_fifo_is_compacted_in_order() {
        let (t, mut a) = table(1, 1024);
        // One query stays waiting while 10 000 others come and go: the
        // FIFO (4 096 entries) fills with answered ones and is compacted.
        let first = t.alloc(&mut a, &pending(1, 0, 0)).0.unwrap();
        for i in 1..10_000u64 {
            let k = t.alloc(&mut a, &pending(1, i, i)).0.unwrap();
            t.complete(k.0, k.1, Some(i), |_| true).unwrap();
        }
        let last = t.alloc(&mut a, &pending(2, 1, 20_000)).0.unwrap();
        assert!(a.len() <= a.fifo.len());
        let mut out = vec![];
        t.sweep(&mut a, 20_001, 10, |p| out.push(p.backend));
        assert_eq!(out, vec![1]);
        t.sweep(&mut a, 40_000, 10, |p| out.push(p.backend));
        assert_eq!(out, vec![1, 2]);
        assert_eq!(
            t.complete(first.0, first.1, Some(0), |_| true),
            Err(Reject::Late)
        );
        assert_eq!(
            t.complete(last.0, last.1, Some(1), |_| true),
            Err(Reject::Late)
        );
    }

    #[test]
    fn busy_slots_are_never_overwritten_and_a_full_table_refuses() {
        let (t, mut a) = table(1, 1024);
        let mut keys = vec![];
        let mut refused = 0;
        for i in 0..1024u64 {
            match t.alloc(&mut a, &pending(1, i, 0)) {
                (Some(k), _) => keys.push((k, i)),
                (None, skipped) => {
                    assert_eq!(skipped, MAX_PROBES);
                    refused += 1;
                }
            }
        }
        // Random probing fills most of the slab before it gives up.
        assert!(keys.len() > 700, "{} of 1024 placed", keys.len());
        assert_eq!(keys.len() + refused, 1024);
        assert_eq!(t.outstanding(0, 1) as usize, keys.len());
        // Every query is still there, under its own key.
        for ((port, id), q) in keys {
            assert_eq!(
                t.complete(port, id, Some(q), |_| true).map(|p| p.qhash),
                Ok(q)
            );
        }
        // An allocator of a worker the table was not made for: refused.
        assert!(t.allocator(1).is_none());
    }

    #[test]
    fn take_only_the_query_it_names() {
        let (t, mut a) = table(2, 1024);
        let p = pending(1, 9, 77);
        let (port, id) = t.alloc(&mut a, &p).0.unwrap();
        assert_eq!(t.take(port, id, |q| q.sent_ns == 78), None, "another query");
        assert_eq!(t.take(port, id ^ 1, |_| true), None, "another id");
        assert_eq!(t.take(port, id, |q| q.sent_ns == 77), Some(p));
        assert_eq!(t.outstanding(0, 1), 0);
        assert_eq!(t.take(port, id, |_| true), None, "taken once");
        assert_eq!(
            t.complete(port, id, Some(9), |_| true),
            Err(Reject::UnknownId)
        );
        assert_eq!(t.take(99, id, |_| true), None, "no such port");
    }

    #[test]
    fn cancel_frees_without_answer() {
        let (t, mut a) = table(2, 1024);
        let (port, id) = t.alloc(&mut a, &pending(1, 1, 0)).0.unwrap();
        t.cancel(port, id ^ 1); // another key: nothing happens
        assert_eq!(t.outstanding(0, 1), 1);
        t.cancel(port, id);
        assert_eq!(t.outstanding(0, 1), 0);
        assert_eq!(
            t.complete(port, id, Some(1), |_| true),
            Err(Reject::UnknownId)
        );
        t.cancel(port, id); // twice: harmless
        t.cancel(7, id); // no such port: harmless
        assert_eq!(t.sweep(&mut a, u64::MAX, 1, |_| panic!()), 0);
    }

    #[test]
    fn completion_from_other_threads_races_cleanly_with_sweep() {
        let t = Arc::new(InflightTable::new(1, 64, 1 << 16));
        let mut a = t.allocator(0).unwrap();
        let keys: Vec<(u32, u16)> = (0..20_000)
            .map(|i| t.alloc(&mut a, &pending(1, i, 0)).0.unwrap())
            .collect();
        let keys = Arc::new(keys);
        let mut hands = vec![];
        for k in 0..2 {
            let (t, keys) = (t.clone(), keys.clone());
            hands.push(std::thread::spawn(move || {
                let mut ok = 0;
                for (i, (port, id)) in keys.iter().enumerate() {
                    if i % 2 == k && t.complete(*port, *id, Some(i as u64), |_| true).is_ok() {
                        ok += 1;
                    }
                }
                ok
            }));
        }
        let mut swept = 0;
        t.sweep(&mut a, 10, 1, |_| swept += 1);
        let done: usize = hands.into_iter().map(|h| h.join().unwrap()).sum();
        // Each query ended exactly once: answered or timed out.
        assert_eq!(done + swept, 20_000);
        assert_eq!(t.outstanding(0, 1), 0);
    }
}
