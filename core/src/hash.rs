//! Small, fast, well-mixed 64-bit hashes for the data path: question
//! matching, consistent hashing of names and client addresses.
//!
//! Names hash case-insensitively (DNS compares names without case, and a
//! resolver doing 0x20 randomisation must not hop between backends). ASCII
//! upper case is folded eight bytes at a time; label length bytes are never
//! in 'A'..='Z' (labels are at most 63 bytes), so the whole wire name folds.

const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// Final avalanche (murmur3 fmix64).
#[inline]
pub fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Lower-cases the ASCII letters of eight packed bytes.
#[inline]
pub(crate) fn fold_case(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low7 = x & !HIGH;
    let ge_a = low7 + (0x80 - u64::from(b'A')) * ONES;
    let gt_z = low7 + (0x7f - u64::from(b'Z')) * ONES;
    let upper = ge_a & !gt_z & !x & HIGH;
    x | (upper >> 2)
}

#[inline]
fn step(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(K).rotate_left(29)
}

/// Seed of the name hash the core and the rules' name indexes share: fixed,
/// so qname-hash keeps each name on the same backend across engine restarts
/// (the backends' caches stay useful). Here, below both, so that rules do
/// not depend on the core for it.
pub const NAME_SEED: u64 = 0x6472_6169_6c00_0001;

/// Case-insensitive hash of a wire-format name.
#[inline]
pub fn name_hash(seed: u64, name: &[u8]) -> u64 {
    suffix_hash(seed, name, 0)
}

/// `name_hash(seed, &name[at..])`, computed in place: the last, partial
/// eight bytes are read as the eight that end the name, shifted, rather than
/// copied out byte by byte (a copy reloaded as one word stalls on store
/// forwarding).
#[inline]
pub fn suffix_hash(seed: u64, name: &[u8], mut at: usize) -> u64 {
    let end = name.len();
    let mut h = seed ^ (end.saturating_sub(at) as u64).wrapping_mul(K);
    while at + 8 <= end {
        h = step(
            h,
            fold_case(u64::from_le_bytes(name[at..at + 8].try_into().unwrap())),
        );
        at += 8;
    }
    if at < end {
        let w = if end >= 8 {
            u64::from_le_bytes(name[end - 8..end].try_into().unwrap()) >> ((at + 8 - end) * 8)
        } else {
            let mut tail = [0u8; 8];
            tail[..end - at].copy_from_slice(&name[at..]);
            u64::from_le_bytes(tail)
        };
        h = step(h, fold_case(w));
    }
    mix(h)
}

/// Exact hash of arbitrary bytes (addresses).
#[inline]
pub fn bytes_hash(seed: u64, data: &[u8]) -> u64 {
    let mut h = seed ^ (data.len() as u64).wrapping_mul(K);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        h = step(h, u64::from_le_bytes(c.try_into().unwrap()));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut tail = [0u8; 8];
        tail[..rest.len()].copy_from_slice(rest);
        h = step(h, u64::from_le_bytes(tail));
    }
    mix(h)
}

/// The secret key of the question check. An answer is only accepted when
/// its question (name without case, type, class) hashes as the query's did
/// under this key, drawn from the OS once per process: a forger cannot aim a
/// different question at the same 64-bit value, and no hash ever leaves the
/// process (a mismatch is a silent, counted drop), so there is no oracle to
/// learn the key from. aHash keyed this way, not SipHash: a third of the
/// cost per query, and the same 64 bits against a blind guess.
#[derive(Clone)]
pub struct QuestionKey(ahash::RandomState);

impl QuestionKey {
    /// A fresh key from the OS's random source (panics only where the OS
    /// has none, which Linux ≥ 3.17 always has).
    pub fn random() -> QuestionKey {
        let mut k = [0u8; 32];
        getrandom::getrandom(&mut k).expect("the OS random source failed");
        let w = |i: usize| u64::from_le_bytes(k[i * 8..i * 8 + 8].try_into().unwrap());
        QuestionKey(ahash::RandomState::with_seeds(w(0), w(1), w(2), w(3)))
    }

    #[inline]
    pub fn hash(&self, name: &[u8], qtype: u16, qclass: u16) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = self.0.build_hasher();
        h.write_u64((name.len() as u64) << 32 | u64::from(qtype) << 16 | u64::from(qclass));
        let mut words = name.chunks_exact(8);
        for w in &mut words {
            h.write_u64(fold_case(u64::from_le_bytes(w.try_into().unwrap())));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut tail = [0u8; 8];
            tail[..rest.len()].copy_from_slice(rest);
            h.write_u64(fold_case(u64::from_le_bytes(tail)));
        }
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_case_only_touches_letters() {
        for b in 0u8..=255 {
            let x = u64::from_le_bytes([b; 8]);
            let want = if b.is_ascii_uppercase() { b + 32 } else { b };
            assert_eq!(fold_case(x), u64::from_le_bytes([want; 8]), "byte {b}");
        }
    }

    #[test]
    fn name_hash_ignores_case_only() {
        let a = b"\x03WwW\x07ExAmPlE\x03com\x00";
        let b = b"\x03www\x07example\x03com\x00";
        let c = b"\x03www\x07example\x03org\x00";
        assert_eq!(name_hash(1, a), name_hash(1, b));
        assert_ne!(name_hash(1, b), name_hash(1, c));
        assert_ne!(name_hash(1, b), name_hash(2, b));
    }

    #[test]
    fn a_suffix_hashes_in_place_as_it_would_alone() {
        let name = b"\x0bsubdomain01\x03WwW\x07ExAmPlE\x03com\x00";
        for at in 0..=name.len() {
            assert_eq!(
                suffix_hash(9, name, at),
                name_hash(9, &name[at..]),
                "at {at}"
            );
        }
        // Short names take the copy path; the same answer.
        assert_eq!(suffix_hash(9, b"\x01a\x00", 1), name_hash(9, b"a\x00"));
    }
}
