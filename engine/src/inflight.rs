//! The in-flight table: which client is waiting for which backend answer.
//!
//! A shared slab of slots indexed by (port, DNS ID). Every port (a backend-side
//! UDP source port, or in socket mode one connected socket) has 65 536 slots,
//! one per DNS ID, and belongs to exactly one worker, which alone allocates
//! from it. Completion is a compare-and-swap on the slot's state word, so the
//! answer may be handled by any worker (RSS hashes it wherever it likes) and
//! still complete without a lock. The owner sweeps its ports for timeouts.
//!
//! Slot contents are plain relaxed atomics guarded by the state word, seqlock
//! style: the owner writes the fields only while the slot is not busy, then
//! publishes `BUSY | generation` with release ordering; a completer reads the
//! state (acquire), copies the fields, checks them, and only trusts the copy
//! if its CAS from that exact state succeeds — any rewrite in between would
//! have changed the generation.
//!
//! IDs are not handed out linearly: each port maps its slot counter through a
//! random bijection of u16 (odd multiplier, xor), so IDs toward a backend are
//! not trivially predictable. This is hygiene, not a security boundary: the
//! answer must also come from the right backend address and carry the same
//! question.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::snapshot::{BackendId, MAX_BACKENDS};

pub const IDS_PER_PORT: usize = 65536;
/// Busy slots an allocation skips on one port before it tries another.
const MAX_PROBES: u32 = 16;

const ST_FREE: u64 = 0;
const ST_BUSY: u64 = 1;
/// Free for reuse, but remembers it timed out so a late answer is told apart
/// from a wrong ID.
const ST_TIMED_OUT: u64 = 2;
const ST_MASK: u64 = 3;

const FLAG_V4: u64 = 1 << 48;

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
    /// the frontend's): a re-dispatch picks from it again.
    pub pool: u16,
    pub qhash: u32,
    pub sent_ns: u64,
}

#[repr(C, align(64))]
#[derive(Default)]
struct Slot {
    state: AtomicU64,
    ip_hi: AtomicU64,
    ip_lo: AtomicU64,
    /// client port | orig id << 16 | backend << 32 | frontend << 48
    meta: AtomicU64,
    /// client MAC | FLAG_V4
    mac: AtomicU64,
    /// qhash | pool << 32
    qhash: AtomicU64,
    sent: AtomicU64,
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
        self.mac.store(u64::from_be_bytes(mac) | v4, r);
        self.qhash
            .store(u64::from(p.qhash) | u64::from(p.pool) << 32, r);
        self.sent.store(p.sent_ns, r);
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
        let qp = self.qhash.load(r);
        Pending {
            client_ip,
            client_port: meta as u16,
            orig_id: (meta >> 16) as u16,
            backend: (meta >> 32) as u16,
            frontend: (meta >> 48) as u16,
            client_mac: mb[2..].try_into().unwrap(),
            pool: (qp >> 32) as u16,
            qhash: qp as u32,
            sent_ns: self.sent.load(r),
        }
    }
}

struct PortSlab {
    slots: Box<[Slot]>,
    mul: u16,
    mul_inv: u16,
    xor: u16,
    /// Highest slot counter handed out + 1 (bounded scan for never-used slabs).
    used: AtomicU32,
}

impl PortSlab {
    fn new(seed: u64) -> Self {
        let mul = (seed as u16) | 1;
        // Newton's iteration for the inverse of an odd number mod 2^16.
        let mut inv = mul;
        for _ in 0..4 {
            inv = inv.wrapping_mul(2u16.wrapping_sub(mul.wrapping_mul(inv)));
        }
        let slots = (0..IDS_PER_PORT).map(|_| Slot::default()).collect();
        PortSlab {
            slots,
            mul,
            mul_inv: inv,
            xor: (seed >> 16) as u16,
            used: AtomicU32::new(0),
        }
    }

    #[inline]
    fn id_of(&self, idx: u16) -> u16 {
        idx.wrapping_mul(self.mul) ^ self.xor
    }

    #[inline]
    fn idx_of(&self, id: u16) -> u16 {
        (id ^ self.xor).wrapping_mul(self.mul_inv)
    }
}

/// Why an answer was not matched to a waiting query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// No port with that index, or no query waiting under that ID.
    UnknownId,
    /// The slot is waiting, but for an answer from another backend.
    WrongSource,
    /// Right source, different question.
    WrongQuestion,
    /// It matches a query that already timed out.
    Late,
}

pub struct InflightTable {
    ports: Box<[OnceLock<PortSlab>]>,
    ports_per_worker: usize,
    /// Queries waiting, per (owning worker, backend): least-outstanding reads it.
    outstanding: Box<[AtomicU32]>,
    seed: u64,
}

/// A worker's allocation cursor on one of its ports.
#[derive(Clone, Debug, Default)]
pub struct PortCursor {
    pub port: u32,
    ctr: u32,
    /// `ctr` at the last sweep, and how many queries it left waiting: a port
    /// with no allocation since and nothing waiting needs no scan (an idle
    /// balancer then touches none of its 4 MiB slabs).
    swept_ctr: u32,
    waiting: usize,
}

impl PortCursor {
    pub fn new(port: u32) -> Self {
        PortCursor {
            port,
            ..PortCursor::default()
        }
    }
}

impl InflightTable {
    pub fn new(workers: usize, ports_per_worker: usize) -> Self {
        let n = workers * ports_per_worker;
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(n);
            h.finish()
        };
        InflightTable {
            ports: (0..n).map(|_| OnceLock::new()).collect(),
            ports_per_worker,
            outstanding: (0..workers * MAX_BACKENDS)
                .map(|_| AtomicU32::new(0))
                .collect(),
            seed,
        }
    }

    pub fn ports_per_worker(&self) -> usize {
        self.ports_per_worker
    }

    /// Global index of a worker's local port.
    pub fn port_index(&self, worker: usize, local: usize) -> u32 {
        (worker * self.ports_per_worker + local) as u32
    }

    /// Allocates a port's slots (4 MiB) the first time it is used. Control
    /// path only: called when a worker opens the port, never per packet.
    pub fn ensure_port(&self, port: u32) {
        if let Some(cell) = self.ports.get(port as usize) {
            cell.get_or_init(|| PortSlab::new(crate::hash::mix(self.seed ^ u64::from(port))));
        }
    }

    #[inline]
    fn slab(&self, port: u32) -> Option<&PortSlab> {
        self.ports.get(port as usize).and_then(|c| c.get())
    }

    #[inline]
    fn outstanding_cell(&self, port: u32, backend: BackendId) -> Option<&AtomicU32> {
        let worker = port as usize / self.ports_per_worker.max(1);
        self.outstanding
            .get(worker * MAX_BACKENDS + usize::from(backend))
    }

    /// Queries worker `worker` has waiting on `backend`.
    pub fn outstanding(&self, worker: usize, backend: BackendId) -> u32 {
        self.outstanding
            .get(worker * MAX_BACKENDS + usize::from(backend))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Takes a free slot on the cursor's port for `p` and returns the DNS ID to
    /// send under, plus how many busy slots were skipped. Only the port's
    /// owner may call this. `None`: the port is full (or not allocated).
    #[inline]
    pub fn alloc(&self, cur: &mut PortCursor, p: &Pending) -> (Option<u16>, u32) {
        let Some(slab) = self.slab(cur.port) else {
            return (None, 0);
        };
        for probe in 0..MAX_PROBES {
            let idx = cur.ctr as u16;
            cur.ctr = cur.ctr.wrapping_add(1);
            let slot = &slab.slots[usize::from(idx)];
            let s = slot.state.load(Ordering::Acquire);
            if s & ST_MASK == ST_BUSY {
                continue;
            }
            slot.write(p);
            let gen = (s >> 2) + 1;
            slot.state.store(gen << 2 | ST_BUSY, Ordering::Release);
            if slab.used.load(Ordering::Relaxed) < cur.ctr.min(IDS_PER_PORT as u32) {
                slab.used
                    .store(cur.ctr.min(IDS_PER_PORT as u32), Ordering::Relaxed);
            }
            if let Some(c) = self.outstanding_cell(cur.port, p.backend) {
                c.fetch_add(1, Ordering::Relaxed);
            }
            return (Some(slab.id_of(idx)), probe);
        }
        (None, MAX_PROBES)
    }

    /// Completes the query waiting under (port, id) if `source_ok` accepts its
    /// backend and the question matches (`None`: an error answer that carries
    /// no question, matched by source and ID alone). Any worker may call this.
    #[inline]
    pub fn complete(
        &self,
        port: u32,
        id: u16,
        qhash: Option<u32>,
        source_ok: impl Fn(BackendId) -> bool,
    ) -> Result<Pending, Reject> {
        let slab = self.slab(port).ok_or(Reject::UnknownId)?;
        let slot = &slab.slots[usize::from(slab.idx_of(id))];
        let s = slot.state.load(Ordering::Acquire);
        let st = s & ST_MASK;
        if st == ST_FREE {
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
                if let Some(c) = self.outstanding_cell(port, p.backend) {
                    c.fetch_sub(1, Ordering::Relaxed);
                }
                Ok(p)
            }
            // Completed (a duplicate answer) or timed out under our feet.
            Err(now) if now & ST_MASK == ST_TIMED_OUT && now >> 2 == s >> 2 => Err(Reject::Late),
            Err(_) => Err(Reject::UnknownId),
        }
    }

    /// Takes the query waiting under (port, id) if `is_it` recognises it (its
    /// backend and send time): the engine gives up waiting for that backend
    /// and re-sends the query elsewhere. Any worker may call this.
    pub fn take(&self, port: u32, id: u16, is_it: impl Fn(&Pending) -> bool) -> Option<Pending> {
        let slab = self.slab(port)?;
        let slot = &slab.slots[usize::from(slab.idx_of(id))];
        let s = slot.state.load(Ordering::Acquire);
        if s & ST_MASK != ST_BUSY {
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
        if let Some(c) = self.outstanding_cell(port, p.backend) {
            c.fetch_sub(1, Ordering::Relaxed);
        }
        Some(p)
    }

    /// Frees a slot the owner just allocated but could not send (the kernel
    /// refused the datagram), so it is neither answered nor timed out.
    pub fn cancel(&self, port: u32, id: u16) {
        let Some(slab) = self.slab(port) else {
            return;
        };
        let slot = &slab.slots[usize::from(slab.idx_of(id))];
        let s = slot.state.load(Ordering::Acquire);
        if s & ST_MASK != ST_BUSY {
            return;
        }
        let backend = (slot.meta.load(Ordering::Relaxed) >> 32) as u16;
        if slot
            .state
            .compare_exchange(s, s & !ST_MASK, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            if let Some(c) = self.outstanding_cell(port, backend) {
                c.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Times out the cursor's port's queries older than `timeout_ns`;
    /// `on_timeout` sees each one (to count it against its backend). Owner
    /// only; returns how many slots are still waiting.
    pub fn sweep(
        &self,
        cur: &mut PortCursor,
        now_ns: u64,
        timeout_ns: u64,
        on_timeout: impl FnMut(&Pending),
    ) -> usize {
        if cur.ctr == cur.swept_ctr && cur.waiting == 0 {
            return 0;
        }
        cur.swept_ctr = cur.ctr;
        cur.waiting = self.scan(cur.port, now_ns, timeout_ns, on_timeout);
        cur.waiting
    }

    fn scan(
        &self,
        port: u32,
        now_ns: u64,
        timeout_ns: u64,
        mut on_timeout: impl FnMut(&Pending),
    ) -> usize {
        let Some(slab) = self.slab(port) else {
            return 0;
        };
        let used = slab.used.load(Ordering::Relaxed) as usize;
        let mut waiting = 0;
        for slot in &slab.slots[..used] {
            let s = slot.state.load(Ordering::Acquire);
            if s & ST_MASK != ST_BUSY {
                continue;
            }
            let sent = slot.sent.load(Ordering::Relaxed);
            if now_ns.saturating_sub(sent) < timeout_ns {
                waiting += 1;
                continue;
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
                if let Some(c) = self.outstanding_cell(port, p.backend) {
                    c.fetch_sub(1, Ordering::Relaxed);
                }
                on_timeout(&p);
            }
        }
        waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn pending(backend: BackendId, qhash: u32, sent: u64) -> Pending {
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
        }
    }

    #[test]
    fn id_permutation_is_a_bijection() {
        let s = PortSlab::new(0x1234_5678_9abc);
        let mut seen = vec![false; IDS_PER_PORT];
        for i in 0..=u16::MAX {
            let id = s.id_of(i);
            assert!(!seen[usize::from(id)]);
            seen[usize::from(id)] = true;
            assert_eq!(s.idx_of(id), i);
        }
    }

    #[test]
    fn alloc_complete_roundtrip_v4_and_v6() {
        let t = InflightTable::new(1, 1);
        t.ensure_port(0);
        let mut c = PortCursor::new(0);
        let p = pending(3, 77, 10);
        let (id, skipped) = t.alloc(&mut c, &p);
        let id = id.unwrap();
        assert_eq!(skipped, 0);
        assert_eq!(t.outstanding(0, 3), 1);
        assert_eq!(t.complete(0, id, Some(77), |b| b == 3), Ok(p));
        assert_eq!(t.outstanding(0, 3), 0);
        // A duplicate answer finds the slot free.
        assert_eq!(
            t.complete(0, id, Some(77), |b| b == 3),
            Err(Reject::UnknownId)
        );

        let mut p6 = pending(4, 1, 10);
        p6.client_ip = "2001:db8::53".parse().unwrap();
        let id = t.alloc(&mut c, &p6).0.unwrap();
        assert_eq!(t.complete(0, id, Some(1), |_| true), Ok(p6));
    }

    #[test]
    fn wrong_source_or_question_leaves_slot_waiting() {
        let t = InflightTable::new(1, 1);
        t.ensure_port(0);
        let mut c = PortCursor::new(0);
        let p = pending(1, 42, 0);
        let id = t.alloc(&mut c, &p).0.unwrap();
        assert_eq!(
            t.complete(0, id, Some(42), |b| b == 2),
            Err(Reject::WrongSource)
        );
        assert_eq!(
            t.complete(0, id, Some(43), |b| b == 1),
            Err(Reject::WrongQuestion)
        );
        assert_eq!(
            t.complete(0, id ^ 1, Some(42), |b| b == 1),
            Err(Reject::UnknownId)
        );
        assert_eq!(
            t.complete(1, id, Some(42), |b| b == 1),
            Err(Reject::UnknownId)
        );
        assert_eq!(t.complete(0, id, Some(42), |b| b == 1), Ok(p));
    }

    #[test]
    fn sweep_times_out_and_late_answer_is_named() {
        let t = InflightTable::new(1, 1);
        t.ensure_port(0);
        let mut c = PortCursor::new(0);
        let old = t.alloc(&mut c, &pending(1, 5, 100)).0.unwrap();
        let young = t.alloc(&mut c, &pending(2, 6, 900)).0.unwrap();
        let mut timed_out = vec![];
        let waiting = t.sweep(&mut c, 1000, 500, |p| timed_out.push(p.backend));
        assert_eq!(timed_out, vec![1]);
        assert_eq!(waiting, 1);
        assert_eq!(t.outstanding(0, 1), 0);
        assert_eq!(t.complete(0, old, Some(5), |b| b == 1), Err(Reject::Late));
        assert_eq!(
            t.complete(0, old, Some(9), |b| b == 1),
            Err(Reject::UnknownId)
        );
        // The young one still waits: the next sweep looks again and times it out.
        assert_eq!(t.sweep(&mut c, 2000, 500, |p| timed_out.push(p.backend)), 0);
        assert_eq!(timed_out, vec![1, 2]);
        assert_eq!(t.complete(0, young, Some(6), |b| b == 2), Err(Reject::Late));
    }

    #[test]
    fn idle_ports_are_not_scanned_but_new_queries_are_seen() {
        let t = InflightTable::new(1, 1);
        t.ensure_port(0);
        let mut c = PortCursor::new(0);
        t.alloc(&mut c, &pending(1, 1, 0)).0.unwrap();
        let mut n = 0;
        assert_eq!(t.sweep(&mut c, 10, 100, |_| n += 1), 1);
        assert_eq!(t.sweep(&mut c, 200, 100, |_| n += 1), 0);
        assert_eq!(n, 1);
        // Nothing waiting, nothing new: skipped (a timeout it could find
        // would need an allocation first).
        assert_eq!(t.sweep(&mut c, 10_000, 100, |_| n += 1), 0);
        t.alloc(&mut c, &pending(1, 1, 10_000)).0.unwrap();
        assert_eq!(t.sweep(&mut c, 20_000, 100, |_| n += 1), 0);
        assert_eq!(n, 2);
    }

    #[test]
    fn busy_slots_are_skipped_never_overwritten() {
        let t = InflightTable::new(1, 1);
        t.ensure_port(0);
        let mut c = PortCursor::new(0);
        let first = t.alloc(&mut c, &pending(1, 1, 0)).0.unwrap();
        // Fill the rest of the ring, then come round: slot 0 is still busy.
        for i in 1..IDS_PER_PORT {
            let (id, _) = t.alloc(&mut c, &pending(1, 2, i as u64));
            let id = id.unwrap();
            assert!(t.complete(0, id, Some(2), |_| true).is_ok());
        }
        let (id, skipped) = t.alloc(&mut c, &pending(1, 3, 0));
        assert_eq!(skipped, 1);
        assert_ne!(id.unwrap(), first);
        assert_eq!(
            t.complete(0, first, Some(1), |_| true).map(|p| p.qhash),
            Ok(1)
        );
    }

    #[test]
    fn take_only_the_query_it_names() {
        let t = InflightTable::new(1, 1);
        t.ensure_port(0);
        let mut c = PortCursor::new(0);
        let p = pending(1, 9, 77);
        let id = t.alloc(&mut c, &p).0.unwrap();
        assert_eq!(t.take(0, id, |q| q.sent_ns == 78), None, "another query");
        assert_eq!(t.take(0, id, |q| q.sent_ns == 77), Some(p));
        assert_eq!(t.outstanding(0, 1), 0);
        assert_eq!(t.take(0, id, |_| true), None, "taken once");
        assert_eq!(t.complete(0, id, Some(9), |_| true), Err(Reject::UnknownId));
        assert_eq!(t.take(9, id, |_| true), None, "no such port");
    }

    #[test]
    fn cancel_frees_without_answer() {
        let t = InflightTable::new(1, 1);
        t.ensure_port(0);
        let mut c = PortCursor::new(0);
        let id = t.alloc(&mut c, &pending(1, 1, 0)).0.unwrap();
        t.cancel(0, id);
        assert_eq!(t.outstanding(0, 1), 0);
        assert_eq!(t.complete(0, id, Some(1), |_| true), Err(Reject::UnknownId));
        t.cancel(0, id); // twice: harmless
        t.cancel(7, id); // no such port: harmless
    }

    #[test]
    fn full_port_refuses() {
        let t = InflightTable::new(1, 2);
        t.ensure_port(0);
        let mut c = PortCursor::new(0);
        for _ in 0..IDS_PER_PORT {
            assert!(t.alloc(&mut c, &pending(1, 1, 0)).0.is_some());
        }
        assert_eq!(t.alloc(&mut c, &pending(1, 1, 0)), (None, MAX_PROBES));
        // Unallocated port: refused, no panic.
        assert_eq!(t.alloc(&mut PortCursor::new(1), &pending(1, 1, 0)).0, None);
        assert_eq!(t.alloc(&mut PortCursor::new(99), &pending(1, 1, 0)).0, None);
    }

    #[test]
    fn completion_from_other_threads_races_cleanly_with_sweep() {
        let t = Arc::new(InflightTable::new(1, 1));
        t.ensure_port(0);
        let mut c = PortCursor::new(0);
        let ids: Vec<u16> = (0..20_000)
            .map(|i| t.alloc(&mut c, &pending(1, i, 0)).0.unwrap())
            .collect();
        let ids = Arc::new(ids);
        let mut hands = vec![];
        for k in 0..2 {
            let (t, ids) = (t.clone(), ids.clone());
            hands.push(std::thread::spawn(move || {
                let mut ok = 0;
                for (i, id) in ids.iter().enumerate() {
                    if i % 2 == k && t.complete(0, *id, Some(i as u32), |_| true).is_ok() {
                        ok += 1;
                    }
                }
                ok
            }));
        }
        let mut swept = 0;
        t.sweep(&mut c, 10, 1, |_| swept += 1);
        let done: usize = hands.into_iter().map(|h| h.join().unwrap()).sum();
        // Each query ended exactly once: answered or timed out.
        assert_eq!(done + swept, 20_000);
        assert_eq!(t.outstanding(0, 1), 0);
    }
}
