//! The query side: whether a query may be answered from the cache, and its
//! key. The key is the in-flight table's keyed question hash (lower-cased
//! name, type, class) mixed with what changes the answer a server gives:
//! RD, CD, AD, DO and whether the query had EDNS at all.
//!
//! Bypassed (answered by a backend, never cached): an opcode other than
//! QUERY; answer or authority records; additional records other than one
//! EDNS version 0 OPT; an OPT carrying ECS (its answers are scoped to the
//! client's subnet: the backends' caches know about that, ours does not);
//! bytes after the records.

use crate::hash::mix;
use crate::wire::dns::{qtype, Header, Question};

const OPT_ECS: u16 = 8;

/// Where [`bits`] puts "the query has EDNS" and its DO bit (the header's
/// RD, AD and CD bits keep their places).
pub const EDNS: u32 = 1 << 16;
pub const DO: u32 = 1 << 17;

/// The cache key of the query `msg` (question `q`), or `None` when it must
/// go past the cache.
#[inline]
pub fn of(msg: &[u8], q: &Question, qhash: u64) -> Option<u64> {
    Some(with_bits(qhash, bits(msg, q)?))
}

/// The cache key of a question hash and its query's [`bits`].
#[inline]
pub fn with_bits(qhash: u64, bits: u32) -> u64 {
    mix(qhash ^ u64::from(bits).wrapping_mul(0x9e37_79b9_7f4a_7c15)).max(1)
}

/// What of the query `msg` besides its question changes the answer (RD,
/// AD, CD, [`EDNS`], [`DO`]), or `None` when it must go past the cache.
#[inline]
pub fn bits(msg: &[u8], q: &Question) -> Option<u32> {
    let h = Header::new_checked(msg).ok()?;
    if h.opcode() != 0 || h.ancount() != 0 || h.nscount() != 0 || h.arcount() > 1 {
        return None;
    }
    let flags = h.flags();
    // RD (0x0100), AD (0x0020), CD (0x0010).
    let mut bits = u32::from(flags & 0x0130);
    if h.arcount() == 1 {
        bits |= EDNS;
        let opt = msg.get(q.end..)?;
        // Root name, TYPE, CLASS (payload), TTL (ext-rcode, version,
        // flags), RDLENGTH.
        if opt.len() < 11 || opt[0] != 0 || u16::from_be_bytes([opt[1], opt[2]]) != qtype::OPT {
            return None;
        }
        if opt[6] != 0 {
            return None; // EDNS version other than 0
        }
        if opt[7] & 0x80 != 0 {
            bits |= DO;
        }
        let rdlen = usize::from(u16::from_be_bytes([opt[9], opt[10]]));
        let rdata = opt.get(11..11 + rdlen)?;
        if opt.len() != 11 + rdlen {
            return None; // trailing bytes
        }
        let mut p = 0;
        while p < rdata.len() {
            let o = rdata.get(p..p + 4)?;
            let code = u16::from_be_bytes([o[0], o[1]]);
            let olen = usize::from(u16::from_be_bytes([o[2], o[3]]));
            if code == OPT_ECS {
                return None;
            }
            p += 4 + olen;
        }
        if p != rdata.len() {
            return None;
        }
    } else if msg.len() != q.end {
        return None;
    }
    Some(bits)
}
