//! Answers the engine writes itself, in place in the query's buffer: the
//! header flipped, the question kept byte for byte, records appended with a
//! compression pointer to the question name. Never a re-serialised message.

use super::Action;
use crate::wire::dns::{qtype, rcode, Header, Question};

const TC: u8 = 0x02; // in the high flags byte

/// Writes the reply an action calls for into `buf`, whose first `q.end` bytes
/// are the query up to the end of its question. Returns the reply's length,
/// or None when `buf` cannot hold it (the caller drops the query).
pub fn write(buf: &mut [u8], q: &Question, action: &Action) -> Option<usize> {
    let (code, tc) = match action {
        Action::Rcode(c) => (*c, false),
        Action::Truncate => (rcode::NOERROR, true),
        Action::Spoof { .. } => (rcode::NOERROR, false),
        _ => return None,
    };
    if buf.len() < q.end {
        return None;
    }
    Header::new_checked(&mut buf[..q.end])
        .ok()?
        .make_reply(code);
    if tc {
        buf[2] |= TC;
    }
    let mut len = q.end;
    if let Action::Spoof { v4, v6, ttl } = action {
        if q.qclass != 1 {
            return Some(len);
        }
        let mut add = |rtype: u16, rdata: &[u8]| -> Option<()> {
            let rec = 12 + rdata.len();
            let out = buf.get_mut(len..len + rec)?;
            out[..2].copy_from_slice(&[0xc0, 0x0c]);
            out[2..4].copy_from_slice(&rtype.to_be_bytes());
            out[4..6].copy_from_slice(&1u16.to_be_bytes());
            out[6..10].copy_from_slice(&ttl.to_be_bytes());
            out[10..12].copy_from_slice(&(rdata.len() as u16).to_be_bytes());
            out[12..].copy_from_slice(rdata);
            len += rec;
            Some(())
        };
        let mut n = 0u16;
        if q.qtype == qtype::A {
            for a in v4.iter() {
                add(qtype::A, a)?;
                n += 1;
            }
        } else if q.qtype == qtype::AAAA {
            for a in v6.iter() {
                add(qtype::AAAA, a)?;
                n += 1;
            }
        }
        // The records' owner is a pointer to offset 12: the question's name.
        buf[6..8].copy_from_slice(&n.to_be_bytes());
    }
    Some(len)
}
