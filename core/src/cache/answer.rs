//! The answer side: whether a backend's answer may be kept, for how long,
//! and where its TTLs are. Kept as it came, with one change: a server
//! COOKIE option becomes PADDING of the same length (RFC 7830), so no
//! client is ever handed another client's cookie and nothing moves.
//!
//! Not kept: TC answers; answers over 512 bytes; RCODEs other than NOERROR
//! and NXDOMAIN (and SERVFAIL when `cache_servfail_s` is set); a lowest
//! TTL of 0; negative answers (NXDOMAIN, or NOERROR without answers)
//! without an SOA; more than 32 records; TSIG or SIG(0); anything that
//! does not parse to its last byte. A negative answer lives min(SOA TTL,
//! SOA MINIMUM) (RFC 2308), capped by `cache_negative_ttl_s`; every other
//! lifetime is clamped to [`cache_min_ttl_s`, `cache_max_ttl_s`].

use super::{Settings, MAX_MSG, MAX_TTLS};
use crate::wire::dns::{parse_question, qtype, rcode, skip_name, Header};

const SOA: u16 = 6;
const SIG: u16 = 24;
const TSIG: u16 = 250;
const OPT_COOKIE: u16 = 10;
const OPT_PADDING: u16 = 12;

/// What `analyse` found in an answer it may keep.
#[derive(Debug, PartialEq, Eq)]
pub struct Analysis {
    pub lifetime_s: u32,
    pub ttl_at: [u16; MAX_TTLS],
    pub nttl: usize,
}

/// Whether `msg` may be kept and how; on `Some`, `scratch` holds the bytes
/// to keep (`msg` with a server cookie turned into padding).
pub fn analyse(msg: &[u8], s: &Settings, scratch: &mut [u8; MAX_MSG]) -> Option<Analysis> {
    if msg.len() > MAX_MSG {
        return None;
    }
    let h = Header::new_checked(msg).ok()?;
    if !h.is_response() || h.truncated() || h.opcode() != 0 {
        return None;
    }
    let rc = h.rcode();
    if !(rc == rcode::NOERROR || rc == rcode::NXDOMAIN || rc == rcode::SERVFAIL && s.servfail_s > 0)
    {
        return None;
    }
    let q = parse_question(msg).ok()?;
    let out = &mut scratch[..msg.len()];
    out.copy_from_slice(msg);
    let (an, ns, ar) = (
        u32::from(h.ancount()),
        u32::from(h.nscount()),
        u32::from(h.arcount()),
    );
    let mut a = Analysis {
        lifetime_s: 0,
        ttl_at: [0; MAX_TTLS],
        nttl: 0,
    };
    let mut min_ttl = u32::MAX;
    let mut negative_ttl: Option<u32> = None;
    let mut pos = q.end;
    for i in 0..an + ns + ar {
        let p = skip_name(msg, pos)?;
        let fixed = msg.get(p..p + 10)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
        let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let rdata = p + 10..p + 10 + rdlen;
        msg.get(rdata.clone())?;
        let additional = i >= an + ns;
        if additional && rtype == qtype::OPT {
            pad_cookies(out, rdata.clone())?;
        } else {
            if additional && (rtype == TSIG || rtype == SIG) {
                return None;
            }
            if a.nttl == MAX_TTLS {
                return None;
            }
            a.ttl_at[a.nttl] = (p + 4) as u16;
            a.nttl += 1;
            min_ttl = min_ttl.min(ttl);
            if rtype == SOA && i >= an && i < an + ns && rdlen >= 22 {
                let m = &msg[rdata.end - 4..rdata.end];
                let minimum = u32::from_be_bytes([m[0], m[1], m[2], m[3]]);
                negative_ttl = Some(ttl.min(minimum));
            }
        }
        pos = rdata.end;
    }
    if pos != msg.len() {
        return None;
    }
    let negative = rc == rcode::NXDOMAIN || (rc == rcode::NOERROR && an == 0);
    let lifetime = if rc == rcode::SERVFAIL {
        s.servfail_s
    } else if negative {
        negative_ttl?.min(s.negative_ttl_s)
    } else {
        min_ttl
    };
    if lifetime == 0 || min_ttl == 0 {
        return None;
    }
    a.lifetime_s = if rc == rcode::SERVFAIL || negative {
        lifetime
    } else {
        lifetime.clamp(s.min_ttl_s.min(s.max_ttl_s), s.max_ttl_s)
    };
    Some(a)
}

/// Turns every COOKIE option of the OPT RDATA at `rdata` into PADDING
/// with zeroed content; `None` if the options do not parse.
fn pad_cookies(out: &mut [u8], rdata: std::ops::Range<usize>) -> Option<()> {
    let mut p = rdata.start;
    while p < rdata.end {
        let o = out.get(p..p + 4)?;
        let code = u16::from_be_bytes([o[0], o[1]]);
        let olen = usize::from(u16::from_be_bytes([o[2], o[3]]));
        if p + 4 + olen > rdata.end {
            return None;
        }
        if code == OPT_COOKIE {
            out[p..p + 2].copy_from_slice(&OPT_PADDING.to_be_bytes());
            out[p + 4..p + 4 + olen].fill(0);
        }
        p += 4 + olen;
    }
    Some(())
}
