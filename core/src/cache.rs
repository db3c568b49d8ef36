//! The packet cache of a pool: backends' answers kept as they came, served
//! again by writing them over a later query in its own buffer (the client's
//! ID and question bytes kept, every TTL aged in place). Nothing is
//! re-serialised.
//!
//! One cache per pool, shared by the workers and lock-free: every entry is
//! a sequence lock over atomics (`store`). A reader copies an entry and
//! keeps the copy only if no writer came in meanwhile; a writer that finds
//! an entry held skips its insert. A hit costs no lock and no allocation.
//! Memory is fixed when the snapshot that first has the cache is built
//! (`cache_entries` × 632 bytes), off the workers.
//!
//! What may be cached is decided on both sides: `key` (the query: plain
//! QUERY, one question, at most one EDNS version 0 OPT without ECS) and
//! `answer` (the answer: not truncated, ≤ 512 bytes, TTL above 0, a
//! negative answer with its SOA, no TSIG/SIG(0)).

pub mod answer;
pub mod key;
mod store;
#[cfg(test)]
mod tests;

use crate::config::PoolConfig;
use crate::ids::MAX_WORKERS;
use crate::stats::Counter;
use crate::wire::dns::{Question, HEADER_LEN};
/// A reader's copy of an entry: one per worker, reused by every lookup.
pub use store::Copied as Scratch;
use store::Store;

/// Largest answer kept: fits every client's UDP size.
pub const MAX_MSG: usize = 512;
/// Most TTL fields an answer kept may have.
pub const MAX_TTLS: usize = 32;
/// TTL of a stale answer (RFC 8767 suggests 30 s).
pub const STALE_TTL: u32 = 30;

/// A pool's cache settings (from `[pool.NAME]`), in the units the data
/// path uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub entries: usize,
    pub max_ttl_s: u32,
    pub min_ttl_s: u32,
    pub negative_ttl_s: u32,
    pub stale_s: u32,
    pub servfail_s: u32,
}

impl Settings {
    pub fn of(p: &PoolConfig) -> Settings {
        Settings {
            entries: p.cache_entries,
            max_ttl_s: p.cache_max_ttl_s,
            min_ttl_s: p.cache_min_ttl_s,
            negative_ttl_s: p.cache_negative_ttl_s,
            stale_s: p.cache_stale_s,
            servfail_s: p.cache_servfail_s,
        }
    }
}

/// What a cache did, per worker: single-writer counters (a shared
/// atomic add per query cost the miss path ~10 ns), one row per worker and
/// a last one for the answer-only core of the AF_XDP slow path.
#[repr(align(64))]
#[derive(Debug, Default)]
pub struct WorkerCounts {
    pub hits: Counter,
    pub stale_hits: Counter,
    pub misses: Counter,
    pub inserts: Counter,
    pub uncacheable: Counter,
    /// Answers a full set turned away on their key's first miss there.
    pub not_admitted: Counter,
}

#[derive(Debug)]
pub struct Counts {
    rows: Box<[WorkerCounts]>,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            rows: (0..=MAX_WORKERS).map(|_| WorkerCounts::default()).collect(),
        }
    }
}

/// A cache's counts over every worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub hits: u64,
    pub stale_hits: u64,
    pub misses: u64,
    pub inserts: u64,
    pub uncacheable: u64,
    pub not_admitted: u64,
}

impl Counts {
    /// Worker `w`'s row (the answer-only core's is the last).
    #[inline]
    fn of(&self, w: usize) -> &WorkerCounts {
        &self.rows[w.min(self.rows.len() - 1)]
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for r in self.rows.iter() {
            t.hits += r.hits.get();
            t.stale_hits += r.stale_hits.get();
            t.misses += r.misses.get();
            t.inserts += r.inserts.get();
            t.uncacheable += r.uncacheable.get();
            t.not_admitted += r.not_admitted.get();
        }
        t
    }
}

/// The entries and counts; the settings travel with the pool (a reload
/// may change them and keep the entries).
pub struct Cache {
    store: Store,
    pub counts: Counts,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cache({} entries)", self.store.capacity())
    }
}

impl Cache {
    /// A cache of at least `entries` entries, all empty.
    pub fn new(entries: usize) -> Cache {
        Cache {
            store: Store::new(entries),
            counts: Counts::default(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.store.capacity()
    }

    /// The capacity `Cache::new(entries)` has (a reload that keeps it keeps
    /// the cache).
    pub fn new_capacity(entries: usize) -> usize {
        Store::capacity_for(entries)
    }

    /// Entries holding an answer (fresh or not).
    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Answers the query in `buf` (its first `len` bytes, question `q`)
    /// from the entry under `key`, in place: the reply's length, or `None`
    /// (a miss). `stale_s` > 0 when the pool has no usable backend: an
    /// entry expired less than that long ago is served with TTL 30. The entry's
    /// question must equal the query's (any case): a key collision is a
    /// miss, never another name's answer.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn answer(
        &self,
        worker: usize,
        key: u64,
        buf: &mut [u8],
        q: &Question,
        now_ns: u64,
        stale_s: u32,
        c: &mut Scratch,
    ) -> Option<usize> {
        let stale_ns = u64::from(stale_s) * 1_000_000_000;
        let counts = self.counts.of(worker);
        let miss = || {
            counts.misses.inc();
            None
        };
        let Some(i) = self.store.find(key) else {
            return miss();
        };
        let Some(stale) = self.store.get(i, key, now_ns, stale_ns, c) else {
            return miss();
        };
        let len = usize::from(c.len);
        let msg = &c.data[..len];
        let qn = &buf[HEADER_LEN..q.end];
        if len > buf.len()
            || msg.len() < q.end
            || !msg[HEADER_LEN..q.end].eq_ignore_ascii_case(qn)
            || msg[q.name_end..q.end] != buf[q.name_end..q.end]
        {
            return miss();
        }
        // The client's ID (bytes 0-1) and question bytes (its letter case)
        // stay; the rest is the kept answer.
        buf[2..HEADER_LEN].copy_from_slice(&msg[2..HEADER_LEN]);
        buf[q.end..len].copy_from_slice(&msg[q.end..len]);
        let age = (now_ns.saturating_sub(c.stored_ns) / 1_000_000_000) as u32;
        for &at in &c.ttl_at[..usize::from(c.nttl)] {
            let at = usize::from(at);
            // Offsets lie inside the answer (the insert found them there);
            // checked anyway: a bad entry is never a panic.
            let Some(field) = buf[..len].get_mut(at..at + 4) else {
                continue;
            };
            let ttl = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
            let aged = if stale {
                STALE_TTL
            } else {
                ttl.saturating_sub(age)
            };
            field.copy_from_slice(&aged.to_be_bytes());
        }
        if stale {
            counts.stale_hits.inc();
        }
        counts.hits.inc();
        Some(len)
    }

    /// Removes the answers for `name` (wire form, any case), or with
    /// `suffix` for `name` and every name below it; returns how many.
    /// Control path: a scan of every entry.
    pub fn purge(&self, name: &[u8], suffix: bool) -> usize {
        self.store.purge(|msg| {
            let Ok(q) = crate::wire::dns::parse_question(msg) else {
                return true; // cannot be: kept answers parse
            };
            let held = q.name(msg);
            if suffix {
                crate::wire::dns::is_at_or_below(held, name)
            } else {
                held.eq_ignore_ascii_case(name)
            }
        })
    }

    /// Keeps the answer `msg` under `key` if it may be cached (see
    /// `answer::analyse`); counts it uncacheable otherwise.
    pub fn insert(&self, worker: usize, key: u64, msg: &[u8], now_ns: u64, settings: &Settings) {
        let counts = self.counts.of(worker);
        if !self.store.admits(key) {
            counts.not_admitted.inc();
            return;
        }
        let mut scratch = [0u8; MAX_MSG];
        match answer::analyse(msg, settings, &mut scratch) {
            Some(a) => {
                let kept = self.store.put(
                    key,
                    &scratch[..msg.len()],
                    &a.ttl_at[..a.nttl],
                    now_ns,
                    now_ns + u64::from(a.lifetime_s) * 1_000_000_000,
                );
                if kept {
                    counts.inserts.inc();
                }
            }
            None => counts.uncacheable.inc(),
        }
    }
}
