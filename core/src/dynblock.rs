//! Dynamic blocks: a source prefix sending more than `qps` queries per second
//! (per worker) is blocked for `block_s` seconds. Workers count rates in
//! their own fixed-size table (bounded memory, no sharing) and report an
//! offender once per second through a lock-free queue; the engine's blocker
//! thread adds the prefix to the block list — and, on the AF_XDP data plane,
//! to the XDP program's drop map, so the flood stops before userspace — and
//! removes it when it expires.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;

use crate::config::DynBlockConfig;

/// `ip` with only its first `bits` kept, and the prefix length.
pub fn prefix_of(ip: IpAddr, v4: u8, v6: u8) -> (IpAddr, u8) {
    match ip {
        IpAddr::V4(a) => {
            let bits = v4.min(32);
            let m = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            (IpAddr::V4((u32::from(a) & m).into()), bits)
        }
        IpAddr::V6(a) => {
            let bits = v6.min(128);
            let m = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            (IpAddr::V6((u128::from(a) & m).into()), bits)
        }
    }
}

/// The block list workers read and the blocker thread writes.
pub struct DynBlock {
    pub cfg: DynBlockConfig,
    reports: ArrayQueue<(IpAddr, u8)>,
    /// False while the list is empty: the per-query check is one load.
    active: AtomicBool,
    set: ArcSwap<HashMap<(IpAddr, u8), Instant>>,
    pub added: AtomicU64,
    pub expired: AtomicU64,
    /// Reports lost because the queue was full (a flood of distinct sources).
    pub overflow: AtomicU64,
}

impl DynBlock {
    pub fn new(cfg: DynBlockConfig) -> DynBlock {
        DynBlock {
            cfg,
            reports: ArrayQueue::new(4096),
            active: AtomicBool::new(false),
            set: ArcSwap::from_pointee(HashMap::new()),
            added: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            overflow: AtomicU64::new(0),
        }
    }

    pub fn prefix(&self, ip: IpAddr) -> (IpAddr, u8) {
        prefix_of(ip, self.cfg.prefix_v4, self.cfg.prefix_v6)
    }

    #[inline]
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        self.is_blocked_prefix(self.prefix(ip))
    }

    /// As [`DynBlock::is_blocked`] for a prefix made with [`DynBlock::prefix`]
    /// (the worker makes it once per query for both the check and the rate).
    #[inline]
    pub fn is_blocked_prefix(&self, p: (IpAddr, u8)) -> bool {
        self.active.load(Ordering::Relaxed) && self.set.load().contains_key(&p)
    }

    pub fn report(&self, p: (IpAddr, u8)) {
        if self.reports.push(p).is_err() {
            self.overflow.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Blocked prefixes and their expiry.
    pub fn list(&self) -> Vec<((IpAddr, u8), Instant)> {
        self.set.load().iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// One round of the blocker thread: new reports in, expired blocks out.
    /// `apply(prefix, add)` mirrors each change (the XDP drop map).
    pub fn step(&self, now: Instant, mut apply: impl FnMut((IpAddr, u8), bool)) {
        let mut next: Option<HashMap<(IpAddr, u8), Instant>> = None;
        while let Some(p) = self.reports.pop() {
            let cur = next.get_or_insert_with(|| (**self.set.load()).clone());
            if cur.contains_key(&p) || cur.len() >= self.cfg.max_blocked {
                continue;
            }
            cur.insert(p, now + Duration::from_secs(self.cfg.block_s));
            self.added.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(prefix = %format!("{}/{}", p.0, p.1), seconds = self.cfg.block_s, "dynamic block: source over its rate");
            apply(p, true);
        }
        let expired: Vec<(IpAddr, u8)> = self
            .set
            .load()
            .iter()
            .filter(|(_, &until)| until <= now)
            .map(|(k, _)| *k)
            .collect();
        if !expired.is_empty() {
            let cur = next.get_or_insert_with(|| (**self.set.load()).clone());
            for p in expired {
                cur.remove(&p);
                self.expired.fetch_add(1, Ordering::Relaxed);
                tracing::info!(prefix = %format!("{}/{}", p.0, p.1), "dynamic block expired");
                apply(p, false);
            }
        }
        if let Some(n) = next {
            self.active.store(!n.is_empty(), Ordering::Relaxed);
            self.set.store(Arc::new(n));
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Slot {
    key: u128,
    len: u8,
    second: u32,
    count: u32,
}

/// A worker's per-source rates: a fixed table indexed by a hash of the
/// prefix; a colliding source takes the slot over (memory stays bounded; a
/// flooder, which keeps coming back, keeps its slot).
pub struct RateTable {
    slots: Box<[Slot]>,
}

const SLOTS: usize = 1 << 16;

impl Default for RateTable {
    fn default() -> Self {
        RateTable::with_slots(SLOTS)
    }
}

impl RateTable {
    /// A table of `slots` (a power of two) entries of 32 bytes.
    pub fn with_slots(slots: usize) -> RateTable {
        RateTable {
            slots: vec![Slot::default(); slots.next_power_of_two()].into_boxed_slice(),
        }
    }

    /// Counts one query of prefix `p` in second `now_s`; true exactly when
    /// its count in this second passes `qps` (once per second).
    #[inline]
    pub fn over(&mut self, p: (IpAddr, u8), now_s: u32, qps: u32) -> bool {
        self.count(p, now_s) == qps.saturating_add(1)
    }

    /// Counts one query of prefix `p` in second `now_s`; its count so far
    /// in that second.
    #[inline]
    pub fn count(&mut self, p: (IpAddr, u8), now_s: u32) -> u32 {
        let key = match p.0 {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a) ^ (1 << 127),
        };
        let h = crate::hash::mix((key as u64) ^ ((key >> 64) as u64) ^ u64::from(p.1));
        let mask = self.slots.len() - 1;
        let s = &mut self.slots[(h as usize) & mask];
        if s.key != key || s.len != p.1 || s.second != now_s {
            *s = Slot {
                key,
                len: p.1,
                second: now_s,
                count: 0,
            };
        }
        s.count = s.count.saturating_add(1);
        s.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DynBlockConfig {
        DynBlockConfig {
            qps: 10,
            prefix_v4: 24,
            prefix_v6: 48,
            block_s: 5,
            max_blocked: 2,
        }
    }

    #[test]
    fn prefixes_mask_host_bits() {
        let (a, l) = prefix_of("192.0.2.77".parse().unwrap(), 24, 64);
        assert_eq!((a, l), ("192.0.2.0".parse().unwrap(), 24));
        let (a, l) = prefix_of("2001:db8:1:2:3::9".parse().unwrap(), 24, 48);
        assert_eq!((a, l), ("2001:db8:1::".parse().unwrap(), 48));
        assert_eq!(prefix_of("10.1.2.3".parse().unwrap(), 0, 0).1, 0);
    }

    #[test]
    fn rate_passes_once_per_second() {
        let mut t = RateTable::default();
        let p = prefix_of("192.0.2.1".parse().unwrap(), 32, 64);
        let hits: Vec<bool> = (0..25).map(|_| t.over(p, 7, 10)).collect();
        assert_eq!(hits.iter().filter(|&&h| h).count(), 1);
        assert!(hits[10], "the 11th query of the second passes 10 qps");
        assert!(!t.over(p, 8, 10), "a new second starts again");
    }

    #[test]
    fn blocks_are_added_once_capped_and_expire() {
        let d = DynBlock::new(cfg());
        let t0 = Instant::now();
        let mut log = Vec::new();
        assert!(!d.is_blocked("192.0.2.9".parse().unwrap()));
        d.report(d.prefix("192.0.2.9".parse().unwrap()));
        d.report(d.prefix("192.0.2.10".parse().unwrap())); // same /24
        d.report(d.prefix("198.51.100.1".parse().unwrap()));
        d.report(d.prefix("203.0.113.1".parse().unwrap())); // over max_blocked
        d.step(t0, |p, add| log.push((p, add)));
        assert_eq!(log.len(), 2);
        assert!(d.is_blocked("192.0.2.200".parse().unwrap()));
        assert!(!d.is_blocked("203.0.113.1".parse().unwrap()));
        d.step(t0 + Duration::from_secs(6), |p, add| log.push((p, add)));
        assert_eq!(log.len(), 4);
        assert!(log[2..].iter().all(|(_, add)| !add));
        assert!(!d.is_blocked("192.0.2.9".parse().unwrap()));
        assert_eq!(d.added.load(Ordering::Relaxed), 2);
        assert_eq!(d.expired.load(Ordering::Relaxed), 2);
    }
}
