//! The XDP answer tier (`engine/bpf/hot.h`): the pool caches' answers that
//! are asked for again, copied into an array the XDP program reads, so that
//! the program answers them itself (XDP_TX) and a hit wakes no worker.
//!
//! A worker copies an entry in when it answers a query from a fresh cache
//! entry ([`HotTier::promote`]): the query was asked at least twice, and
//! the next one will not reach the worker. The tier is a copy: the pool's
//! cache stays the truth, and anything the program does not answer (a
//! miss, an expired entry, one being written, a query it does not take)
//! goes to the worker as before. Entries expire with the cache entry they
//! came from; purge and a reload that changes a pool's cache empty them.
//!
//! The array is a BPF array map mmapped here: entries are sequence locks
//! over atomic words (odd = a writer is in). Writers take an entry with one
//! compare-and-swap and skip their copy when it is held; the program reads
//! between two loads of the sequence and leaves the query to the worker
//! when they differ. Layout, hash and key bits are `hot.h`'s.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};

use crate::cache::key;
use crate::cache::Scratch;
use crate::core::CacheHit;
use crate::wire::dns;

/// Entries per set.
pub const WAYS: usize = 2;
/// Bytes of one entry (`struct hot_entry`).
pub const ENTRY_BYTES: usize = 896;
const WORDS: usize = ENTRY_BYTES / 8;
const NAME: usize = 256;
const TAIL: usize = 512;
const TTLS: usize = 32;
/// Where unused TTL slots point: past any answer, inside the program's
/// scratch (`HOT_TTL_NONE`).
const TTL_NONE: u16 = 600;
const EDNS: u16 = 0x8000;
const DO: u16 = 0x4000;

// Word and byte places of `struct hot_entry`.
const W_SEQ: usize = 0;
const W_KEY: usize = 1;
const W_EXPIRES: usize = 2;
const W_STORED: usize = 3;
const B_META: usize = 32; // tail_len, name_len, bits, pool (u16 each)
const B_QTC: usize = 40;
const B_NTTL: usize = 44;
const B_HDR: usize = 48;
const B_TTL: usize = 64;
const B_NAME: usize = 128;
const B_TAIL: usize = 384;
const W_META: usize = B_META / 8;

fn fnv(h: u64, b: u8) -> u64 {
    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
}

/// `hot_key()` of `hot.h`: the key of a question (`lname`: the name
/// lower-cased, root byte excluded; `qtc`: QTYPE and QCLASS as on the
/// wire), the query's tier bits and its pool.
pub fn hot_key(seed: u64, lname: &[u8], qtc: [u8; 4], bits: u16, pool: u16) -> u64 {
    let mut h = seed ^ 0xcbf2_9ce4_8422_2325;
    for &c in lname {
        h = fnv(h, c);
    }
    h = fnv(h, 0);
    for c in qtc {
        h = fnv(h, c);
    }
    for b in bits.to_le_bytes().into_iter().chain(pool.to_le_bytes()) {
        h = fnv(h, b);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h | 1
}

/// The cache key bits (`cache::key::bits`) as the program computes them.
pub fn tier_bits(bits: u32) -> u16 {
    let mut b = (bits & 0x0130) as u16;
    if bits & key::EDNS != 0 {
        b |= EDNS;
    }
    if bits & key::DO != 0 {
        b |= DO;
    }
    b
}

/// The sets for at least `entries` entries (a power of two).
pub fn sets_for(entries: usize) -> usize {
    entries.div_ceil(WAYS).max(1).next_power_of_two()
}

pub struct HotTier {
    base: NonNull<AtomicU64>,
    bytes: usize,
    entries: usize,
    set_mask: u64,
    seed: u64,
    /// CLOCK_MONOTONIC (the program's clock) at the engine clock's zero.
    mono_at_zero: AtomicU64,
    /// Off while the snapshot has rules or dynamic blocks (which the
    /// program does not run): nothing is copied in.
    active: AtomicBool,
    pub promoted: AtomicU64,
}

// SAFETY: the mapping is only touched through atomics, and lives as long
// as the tier.
unsafe impl Send for HotTier {}
// SAFETY: as for Send: shared access is atomic loads, stores and CASes.
unsafe impl Sync for HotTier {}

impl Drop for HotTier {
    fn drop(&mut self) {
        // SAFETY: mapped in `map` with this length; nobody holds a
        // reference into it once the tier is dropped.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.bytes);
        }
    }
}

impl HotTier {
    /// Maps the `hot` array (`fd`, `entries` entries) and takes it over.
    pub fn map(fd: BorrowedFd<'_>, entries: usize, seed: u64) -> std::io::Result<HotTier> {
        HotTier::over(entries, seed, libc::MAP_SHARED, fd.as_raw_fd())
    }

    /// A tier over anonymous memory (tests: no BPF map needed).
    #[cfg(test)]
    fn anonymous(entries: usize, seed: u64) -> HotTier {
        let t = HotTier::over(entries, seed, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1)
            .expect("anonymous memory");
        t.set_active(true);
        t
    }

    /// `entries` entries of memory mapped with `flags` from `fd`.
    fn over(entries: usize, seed: u64, flags: i32, fd: i32) -> std::io::Result<HotTier> {
        let bytes = entries * ENTRY_BYTES;
        // SAFETY: a new mapping of `bytes` (of a BPF array created
        // mmapable with `entries` values of ENTRY_BYTES, or anonymous);
        // checked for failure below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast::<AtomicU64>()).expect("mmap succeeded");
        Ok(HotTier {
            base,
            bytes,
            entries,
            set_mask: (entries / WAYS) as u64 - 1,
            seed,
            mono_at_zero: AtomicU64::new(0),
            active: AtomicBool::new(false),
            promoted: AtomicU64::new(0),
        })
    }

    pub fn capacity(&self) -> usize {
        self.entries
    }

    /// Where the engine's clock (`Shared::now_ns`) starts on the
    /// program's (CLOCK_MONOTONIC).
    pub fn set_clock_zero(&self, mono_ns: u64) {
        self.mono_at_zero.store(mono_ns, Ordering::Relaxed);
    }

    pub fn set_active(&self, on: bool) {
        self.active.store(on, Ordering::Relaxed);
    }

    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    fn entry(&self, i: usize) -> &[AtomicU64] {
        assert!(i < self.entries);
        // SAFETY: entry i lies inside the mapping; AtomicU64 has u64's
        // layout and the mapping is 8-byte aligned (page-aligned).
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(i * WORDS), WORDS) }
    }

    /// Copies the entry `c` answered `hit` from into the tier (`now_ns`:
    /// the engine's clock). False when it does not go there: the tier is
    /// off, the answer does not fit, its place is being written, or the
    /// tier holds this very entry already (a query the program leaves to
    /// the workers must not rewrite it on every hit).
    pub fn promote(&self, hit: CacheHit, c: &Scratch, now_ns: u64) -> bool {
        if !self.is_active() || hit.pool > 255 {
            return false;
        }
        let Some(image) = self.image(hit, c) else {
            return false;
        };
        let k = u64::from_ne_bytes(image[8..16].try_into().expect("8 bytes"));
        let now = self.mono_at_zero.load(Ordering::Relaxed) + now_ns;
        if self.write(k, &image, now) {
            self.promoted.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// The entry's bytes as `struct hot_entry` lays them out (sequence 0).
    fn image(&self, hit: CacheHit, c: &Scratch) -> Option<[u8; ENTRY_BYTES]> {
        let msg = c.msg();
        let q = dns::parse_question(msg).ok()?;
        let name = &msg[dns::HEADER_LEN..q.name_end];
        let (lname, root) = name.split_at(name.len().checked_sub(1)?);
        // A label holding a zero byte would end the program's name early:
        // such a name is never answered there, so it is not copied.
        if root != [0] || name.len() > 255 || lname.contains(&0) {
            return None;
        }
        let tail = &msg[q.end..];
        if tail.len() > TAIL || c.ttl_at().len() > TTLS {
            return None;
        }
        let qtc: [u8; 4] = msg[q.name_end..q.end].try_into().ok()?;
        let bits = tier_bits(hit.bits);
        let mut lower = [0u8; NAME];
        let lower = &mut lower[..lname.len()];
        lower.copy_from_slice(lname);
        lower.make_ascii_lowercase();
        let key = hot_key(self.seed, lower, qtc, bits, hit.pool);
        let mut b = [0u8; ENTRY_BYTES];
        b[8..16].copy_from_slice(&key.to_ne_bytes());
        let zero = self.mono_at_zero.load(Ordering::Relaxed);
        b[16..24].copy_from_slice(&(zero + c.expires_ns()).to_ne_bytes());
        b[24..32].copy_from_slice(&(zero + c.stored_ns()).to_ne_bytes());
        b[B_META..B_META + 2].copy_from_slice(&(tail.len() as u16).to_ne_bytes());
        b[B_META + 2..B_META + 4].copy_from_slice(&(name.len() as u16).to_ne_bytes());
        b[B_META + 4..B_META + 6].copy_from_slice(&bits.to_ne_bytes());
        b[B_META + 6..B_META + 8].copy_from_slice(&hit.pool.to_ne_bytes());
        b[B_QTC..B_QTC + 4].copy_from_slice(&qtc);
        b[B_NTTL] = c.ttl_at().len() as u8;
        b[B_HDR..B_HDR + 10].copy_from_slice(&msg[2..dns::HEADER_LEN]);
        for j in 0..TTLS {
            let at = match c.ttl_at().get(j) {
                Some(&at) => {
                    let rel = usize::from(at).checked_sub(q.end)?;
                    if rel + 4 > tail.len() {
                        return None;
                    }
                    rel as u16
                }
                None => TTL_NONE,
            };
            b[B_TTL + 2 * j..B_TTL + 2 * j + 2].copy_from_slice(&at.to_ne_bytes());
        }
        b[B_NAME..B_NAME + lower.len()].copy_from_slice(lower);
        b[B_TAIL..B_TAIL + tail.len()].copy_from_slice(tail);
        Some(b)
    }

    /// Writes `image` (key `k`) into its set: over the same key, else an
    /// empty or expired entry (`now`: the program's clock), else the one
    /// expiring first. False when the same key is there from the same
    /// store already.
    fn write(&self, k: u64, image: &[u8; ENTRY_BYTES], now: u64) -> bool {
        let r = Ordering::Relaxed;
        let first = ((k >> 24) & self.set_mask) as usize * WAYS;
        let ways: [&[AtomicU64]; WAYS] = std::array::from_fn(|w| self.entry(first + w));
        let w = (0..WAYS)
            .find(|&w| ways[w][W_KEY].load(r) == k)
            .or_else(|| {
                (0..WAYS)
                    .find(|&w| ways[w][W_KEY].load(r) == 0 || ways[w][W_EXPIRES].load(r) <= now)
            })
            .or_else(|| (0..WAYS).min_by_key(|&w| ways[w][W_EXPIRES].load(r)))
            .expect("a set has entries");
        let e = ways[w];
        let stored = u64::from_ne_bytes(image[24..32].try_into().expect("8 bytes"));
        if e[W_KEY].load(r) == k && e[W_STORED].load(r) == stored {
            return false;
        }
        let s = e[W_SEQ].load(r);
        if s & 1 == 1
            || e[W_SEQ]
                .compare_exchange(s, s + 1, Ordering::Acquire, r)
                .is_err()
        {
            return false;
        }
        // The odd sequence is visible before any new byte.
        fence(Ordering::Release);
        for (word, bytes) in e.iter().zip(image.chunks_exact(8)).skip(1) {
            word.store(u64::from_ne_bytes(bytes.try_into().expect("8 bytes")), r);
        }
        e[W_SEQ].store(s + 2, Ordering::Release);
        true
    }

    /// Empties the entries whose name `drop` (given the lower-cased wire
    /// name, root byte included) says to; returns how many.
    fn remove_where(&self, drop: impl Fn(&[u8]) -> bool) -> usize {
        let r = Ordering::Relaxed;
        let mut removed = 0;
        let mut name = [0u8; NAME];
        for i in 0..self.entries {
            let e = self.entry(i);
            loop {
                if e[W_KEY].load(r) == 0 {
                    break;
                }
                let s = e[W_SEQ].load(Ordering::Acquire);
                if s & 1 == 1 {
                    std::hint::spin_loop();
                    continue;
                }
                let meta = e[W_META].load(r).to_ne_bytes();
                let len = usize::from(u16::from_ne_bytes([meta[2], meta[3]])).min(NAME);
                for (w, chunk) in name.chunks_exact_mut(8).enumerate() {
                    chunk.copy_from_slice(&e[B_NAME / 8 + w].load(r).to_ne_bytes());
                }
                fence(Ordering::Acquire);
                if e[W_SEQ].load(r) != s {
                    continue;
                }
                if !drop(&name[..len]) {
                    break;
                }
                if e[W_SEQ]
                    .compare_exchange(s, s + 1, Ordering::Acquire, r)
                    .is_err()
                {
                    continue;
                }
                fence(Ordering::Release);
                e[W_KEY].store(0, r);
                e[W_SEQ].store(s + 2, Ordering::Release);
                removed += 1;
                break;
            }
        }
        removed
    }

    /// Empties the entries for `name` (wire form, any case), or with
    /// `suffix` for it and every name below it.
    pub fn purge(&self, name: &[u8], suffix: bool) -> usize {
        let name = name.to_ascii_lowercase();
        self.remove_where(|held| {
            if suffix {
                dns::is_at_or_below(held, &name)
            } else {
                held == name.as_slice()
            }
        })
    }

    /// Empties every entry.
    pub fn clear(&self) -> usize {
        self.remove_where(|_| true)
    }

    /// Entries holding an answer, fresh or not (a scan; tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        (0..self.entries)
            .filter(|&i| self.entry(i)[W_KEY].load(Ordering::Relaxed) != 0)
            .count()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; CLOCK_MONOTONIC always exists.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests;
