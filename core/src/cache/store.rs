//! The cache's entries: sets of `WAYS` entries, each a sequence lock over
//! atomics (safe code: the crate denies unsafe). Even sequence = stable,
//! odd = a writer is in. A reader copies the entry between two reads of the
//! sequence and keeps the copy only if they match and are even; a writer
//! takes an entry with one compare-and-swap and skips its insert when the
//! entry is held, so nobody waits.
//!
//! Each set has a tag line: its entries' keys side by side (so a miss
//! reads one cache line, not four entries) and a doorkeeper. A full set
//! admits a new key only on its second miss in a row there (TinyLFU's
//! doorkeeper, S3-FIFO's ghost, in four words): a name asked once costs a
//! lookup and one store, and does not push out an answer that is asked
//! for. A set with room admits at once. Eviction within a set: the same
//! key, else an empty entry, else the one that expires first. One entry:
//! 5 words of metadata, 8 of TTL offsets, 64 of message = 616 bytes, and
//! 16 bytes of tag line: 632 bytes (a test holds the docs to it).

use std::sync::atomic::{fence, AtomicU64, Ordering};

use super::{MAX_MSG, MAX_TTLS};

const WAYS: usize = 4;
const WORDS: usize = MAX_MSG / 8;
const TTL_WORDS: usize = MAX_TTLS / 4;

struct Entry {
    seq: AtomicU64,
    /// 0 = empty.
    key: AtomicU64,
    stored_ns: AtomicU64,
    expires_ns: AtomicU64,
    /// length | TTL count << 16
    meta: AtomicU64,
    ttl_at: [AtomicU64; TTL_WORDS],
    data: [AtomicU64; WORDS],
}

impl Default for Entry {
    fn default() -> Self {
        Entry {
            seq: AtomicU64::new(0),
            key: AtomicU64::new(0),
            stored_ns: AtomicU64::new(0),
            expires_ns: AtomicU64::new(0),
            meta: AtomicU64::new(0),
            ttl_at: std::array::from_fn(|_| AtomicU64::new(0)),
            data: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// An entry as a reader copied it. A worker keeps one and reuses it, so a
/// hit does not zero 600 bytes of stack first; only the copied part is
/// ever read.
pub struct Copied {
    pub(super) stored_ns: u64,
    pub(super) expires_ns: u64,
    pub(super) len: u16,
    pub(super) nttl: u8,
    pub(super) ttl_at: [u16; MAX_TTLS],
    pub(super) data: [u8; MAX_MSG],
}

impl Default for Copied {
    fn default() -> Self {
        Copied {
            stored_ns: 0,
            expires_ns: 0,
            len: 0,
            nttl: 0,
            ttl_at: [0; MAX_TTLS],
            data: [0; MAX_MSG],
        }
    }
}

impl Copied {
    /// The answer as kept (its TTLs as they came).
    pub fn msg(&self) -> &[u8] {
        &self.data[..usize::from(self.len)]
    }

    /// Where its TTL fields are.
    pub fn ttl_at(&self) -> &[u16] {
        &self.ttl_at[..usize::from(self.nttl)]
    }

    /// When it was kept and when it expires (the caller's clock).
    pub fn stored_ns(&self) -> u64 {
        self.stored_ns
    }

    pub fn expires_ns(&self) -> u64 {
        self.expires_ns
    }
}

/// A set's keys (a copy of each entry's, written under its lock) and
/// its doorkeeper.
#[repr(align(64))]
#[derive(Default)]
struct Tags {
    keys: [AtomicU64; WAYS],
    /// Keys turned away, in `WAYS` places chosen by the key's low bits: a
    /// name's second miss finds itself there unless another name of the
    /// same place missed in between.
    door: [AtomicU64; WAYS],
}

pub(super) struct Store {
    entries: Box<[Entry]>,
    tags: Box<[Tags]>,
    set_mask: usize,
    /// Entries holding an answer (changed only under an entry's lock).
    used: AtomicU64,
}

impl Store {
    /// At least `n` entries (rounded up to a power of two of sets).
    pub fn new(n: usize) -> Store {
        let sets = Self::capacity_for(n) / WAYS;
        Store {
            entries: (0..sets * WAYS).map(|_| Entry::default()).collect(),
            tags: (0..sets).map(|_| Tags::default()).collect(),
            set_mask: sets - 1,
            used: AtomicU64::new(0),
        }
    }

    pub fn capacity_for(n: usize) -> usize {
        n.div_ceil(WAYS).max(1).next_power_of_two() * WAYS
    }

    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    pub fn len(&self) -> usize {
        self.used.load(Ordering::Relaxed) as usize
    }

    fn set_of(&self, key: u64) -> usize {
        (key >> 32) as usize & self.set_mask
    }

    /// The entry that holds `key`, by its set's tag line.
    #[inline]
    pub fn find(&self, key: u64) -> Option<usize> {
        let s = self.set_of(key);
        let t = &self.tags[s];
        (0..WAYS)
            .find(|&w| t.keys[w].load(Ordering::Relaxed) == key)
            .map(|w| s * WAYS + w)
    }

    /// Whether an answer under `key` may go in: its set has it or has room,
    /// or `key` missed there last time too (the doorkeeper). A refused
    /// key is remembered.
    #[inline]
    pub fn admits(&self, key: u64) -> bool {
        let t = &self.tags[self.set_of(key)];
        let r = Ordering::Relaxed;
        if t.keys.iter().any(|k| {
            let k = k.load(r);
            k == key || k == 0
        }) {
            return true;
        }
        let door = &t.door[key as usize % WAYS];
        if door.load(r) == key {
            return true;
        }
        door.store(key, r);
        false
    }

    /// Copies entry `i` into `out` if it holds `key` and is fresh at
    /// `now_ns` (`Some(false)`), or expired less than `stale_ns` ago
    /// (`Some(true)`).
    #[inline]
    pub fn get(
        &self,
        i: usize,
        key: u64,
        now_ns: u64,
        stale_ns: u64,
        out: &mut Copied,
    ) -> Option<bool> {
        let r = Ordering::Relaxed;
        let e = self.entries.get(i)?;
        let s1 = e.seq.load(Ordering::Acquire);
        if s1 & 1 == 1 {
            return None;
        }
        let expires = e.expires_ns.load(r);
        let stale = now_ns >= expires;
        if stale && now_ns - expires >= stale_ns {
            return None;
        }
        let meta = e.meta.load(r);
        let len = (meta & 0xffff) as usize;
        let nttl = ((meta >> 16) & 0xff) as usize;
        if len > MAX_MSG || nttl > MAX_TTLS {
            return None;
        }
        out.stored_ns = e.stored_ns.load(r);
        out.expires_ns = expires;
        for (w, word) in e.data[..len.div_ceil(8)].iter().enumerate() {
            out.data[w * 8..w * 8 + 8].copy_from_slice(&word.load(r).to_ne_bytes());
        }
        for (w, word) in e.ttl_at[..nttl.div_ceil(4)].iter().enumerate() {
            let v = word.load(r);
            for k in 0..4 {
                if let Some(t) = out.ttl_at.get_mut(w * 4 + k) {
                    *t = (v >> (16 * k)) as u16;
                }
            }
        }
        let key_again = e.key.load(r);
        fence(Ordering::Acquire);
        if e.seq.load(r) != s1 || key_again != key {
            return None; // a writer came in: a miss, not a wait
        }
        out.len = len as u16;
        out.nttl = nttl as u8;
        Some(stale)
    }

    /// Empties every entry whose message `drop` says to drop; returns how
    /// many. An entry a writer holds is looked at again until it is free.
    pub fn purge(&self, drop: impl Fn(&[u8]) -> bool) -> usize {
        let r = Ordering::Relaxed;
        let mut purged = 0;
        let mut c = Copied::default();
        for (i, e) in self.entries.iter().enumerate() {
            loop {
                let key = e.key.load(r);
                if key == 0 {
                    break;
                }
                // Read it as a reader would (stale or not).
                let s = e.seq.load(Ordering::Acquire);
                let len = (e.meta.load(r) & 0xffff) as usize;
                if s & 1 == 1 || len > MAX_MSG {
                    std::hint::spin_loop();
                    continue;
                }
                for (w, word) in e.data[..len.div_ceil(8)].iter().enumerate() {
                    c.data[w * 8..w * 8 + 8].copy_from_slice(&word.load(r).to_ne_bytes());
                }
                fence(Ordering::Acquire);
                if e.seq.load(r) != s {
                    continue;
                }
                if !drop(&c.data[..len]) {
                    break;
                }
                if e.seq
                    .compare_exchange(s, s + 1, Ordering::Acquire, r)
                    .is_err()
                {
                    continue;
                }
                fence(Ordering::Release);
                e.key.store(0, r);
                self.tags[i / WAYS].keys[i % WAYS].store(0, r);
                e.seq.store(s + 2, Ordering::Release);
                self.used.fetch_sub(1, r);
                purged += 1;
                break;
            }
        }
        purged
    }

    /// Keeps `msg` under `key`; `false` when its entry was held by another
    /// writer (the insert is skipped).
    pub fn put(&self, key: u64, msg: &[u8], ttl_at: &[u16], now_ns: u64, expires_ns: u64) -> bool {
        let r = Ordering::Relaxed;
        let s = self.set_of(key);
        let (tags, set) = (&self.tags[s], &self.entries[s * WAYS..(s + 1) * WAYS]);
        let w = (0..WAYS)
            .find(|&w| tags.keys[w].load(r) == key)
            .or_else(|| (0..WAYS).find(|&w| tags.keys[w].load(r) == 0))
            .or_else(|| (0..WAYS).min_by_key(|&w| set[w].expires_ns.load(r)))
            .expect("a set has entries");
        let victim = &set[w];
        let s = victim.seq.load(r);
        if s & 1 == 1
            || victim
                .seq
                .compare_exchange(s, s + 1, Ordering::Acquire, r)
                .is_err()
        {
            return false;
        }
        fence(Ordering::Release);
        if victim.key.load(r) == 0 {
            self.used.fetch_add(1, r);
        }
        victim.key.store(key, r);
        victim.stored_ns.store(now_ns, r);
        victim.expires_ns.store(expires_ns, r);
        victim
            .meta
            .store(msg.len() as u64 | (ttl_at.len() as u64) << 16, r);
        for (w, chunk) in ttl_at.chunks(4).enumerate() {
            let v = chunk
                .iter()
                .enumerate()
                .fold(0u64, |v, (k, &t)| v | u64::from(t) << (16 * k));
            victim.ttl_at[w].store(v, r);
        }
        for (w, chunk) in msg.chunks(8).enumerate() {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            victim.data[w].store(u64::from_ne_bytes(b), r);
        }
        tags.keys[w].store(key, r);
        victim.seq.store(s + 2, Ordering::Release);
        true
    }
}

#[cfg(test)]
mod size {
    use super::*;

    /// The footprint the configuration reference, operations guide and
    /// example state for an entry.
    #[test]
    fn an_entry_and_its_share_of_the_tag_line_take_632_bytes() {
        let per_entry = std::mem::size_of::<Entry>() + std::mem::size_of::<Tags>() / WAYS;
        assert_eq!(per_entry, 632);
        let s = Store::new(1024);
        assert_eq!(s.capacity(), 1024);
    }
}
