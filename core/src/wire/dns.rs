//! DNS message header and question, parsed by hand and bounded.
//!
//! Only the 12-byte header and the single question are ever read; nothing
//! after the question is parsed or re-serialised (the dnsbalancer author lost
//! name compression and broke home routers by re-packing answers). Writes are
//! in place: the ID, the flags, the counts.

use super::checksum::Delta;
use super::WireError;

mod field {
    use core::ops::Range;
    pub const ID: Range<usize> = 0..2;
    pub const FLAGS: Range<usize> = 2..4;
    pub const QDCOUNT: Range<usize> = 4..6;
    pub const ANCOUNT: Range<usize> = 6..8;
    pub const NSCOUNT: Range<usize> = 8..10;
    pub const ARCOUNT: Range<usize> = 10..12;
}

pub const HEADER_LEN: usize = 12;
/// Longest name on the wire, root label included (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;
pub const MAX_LABEL_LEN: usize = 63;

const QR: u16 = 0x8000;
const OPCODE_MASK: u16 = 0x7800;
const AA: u16 = 0x0400;
const TC: u16 = 0x0200;
const RD: u16 = 0x0100;
const RA: u16 = 0x0080;
const RCODE_MASK: u16 = 0x000f;

pub mod rcode {
    pub const NOERROR: u8 = 0;
    pub const FORMERR: u8 = 1;
    pub const SERVFAIL: u8 = 2;
    pub const NXDOMAIN: u8 = 3;
    pub const NOTIMP: u8 = 4;
    pub const REFUSED: u8 = 5;

    /// The mnemonic of each 4-bit RCODE: the one table of names (metrics,
    /// health checks, configuration).
    pub const NAMES: [&str; 16] = [
        "NOERROR",
        "FORMERR",
        "SERVFAIL",
        "NXDOMAIN",
        "NOTIMP",
        "REFUSED",
        "YXDOMAIN",
        "YXRRSET",
        "NXRRSET",
        "NOTAUTH",
        "NOTZONE",
        "DSOTYPENI",
        "RCODE12",
        "RCODE13",
        "RCODE14",
        "RCODE15",
    ];

    /// An RCODE by its mnemonic, in any case.
    pub fn by_name(name: &str) -> Option<u8> {
        NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .map(|i| i as u8)
    }
}

pub mod qtype {
    pub const A: u16 = 1;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const OPT: u16 = 41;
    pub const ANY: u16 = 255;
}

/// Typed view over a DNS message's header.
pub struct Header<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        if buf.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Header { buf })
    }

    fn u16_at(&self, r: core::ops::Range<usize>) -> u16 {
        let b = &self.buf.as_ref()[r];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn id(&self) -> u16 {
        self.u16_at(field::ID)
    }
    pub fn flags(&self) -> u16 {
        self.u16_at(field::FLAGS)
    }
    pub fn is_response(&self) -> bool {
        self.flags() & QR != 0
    }
    pub fn opcode(&self) -> u8 {
        ((self.flags() & OPCODE_MASK) >> 11) as u8
    }
    pub fn truncated(&self) -> bool {
        self.flags() & TC != 0
    }
    pub fn rcode(&self) -> u8 {
        (self.flags() & RCODE_MASK) as u8
    }
    pub fn qdcount(&self) -> u16 {
        self.u16_at(field::QDCOUNT)
    }
    pub fn ancount(&self) -> u16 {
        self.u16_at(field::ANCOUNT)
    }
    pub fn nscount(&self) -> u16 {
        self.u16_at(field::NSCOUNT)
    }
    pub fn arcount(&self) -> u16 {
        self.u16_at(field::ARCOUNT)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Writes a new ID and returns the checksum delta of the change.
    #[inline]
    pub fn set_id(&mut self, id: u16) -> Delta {
        let mut d = Delta::ZERO;
        d.word(self.id(), id);
        self.buf.as_mut()[field::ID].copy_from_slice(&id.to_be_bytes());
        d
    }

    fn set_u16(&mut self, r: core::ops::Range<usize>, v: u16) {
        self.buf.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    /// Turns a query header into the header of a reply we answer ourselves:
    /// QR set, opcode and RD kept, RA set (we front recursors), the given
    /// RCODE, and only the question left counted.
    pub fn make_reply(&mut self, rcode: u8) {
        let flags = (self.flags() & (OPCODE_MASK | RD)) | QR | RA | u16::from(rcode & 0x0f);
        self.set_u16(field::FLAGS, flags & !(AA | TC));
        self.set_u16(field::QDCOUNT, 1);
        self.set_u16(field::ANCOUNT, 0);
        self.set_u16(field::NSCOUNT, 0);
        self.set_u16(field::ARCOUNT, 0);
    }
}

/// Where the single question of a message lies, and what it asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Question {
    /// Offset just past the name's root label (start of QTYPE).
    pub name_end: usize,
    /// Offset just past QCLASS: the length of header + question.
    pub end: usize,
    pub qtype: u16,
    pub qclass: u16,
    /// Labels in the name, the root not counted (the parser counts them
    /// anyway; the rules' name index needs the depth).
    pub labels: u8,
}

impl Question {
    /// The name in wire form (length-prefixed labels, root included).
    pub fn name<'a>(&self, msg: &'a [u8]) -> &'a [u8] {
        &msg[HEADER_LEN..self.name_end]
    }
}

/// Parses the question of `msg`. Requires QDCOUNT = 1; refuses compression
/// pointers and the reserved label types, labels over 63 bytes and names over
/// 255. Work is bounded by the name length limit, whatever the input.
pub fn parse_question(msg: &[u8]) -> Result<Question, WireError> {
    let h = Header::new_checked(msg)?;
    if h.qdcount() != 1 {
        return Err(WireError::QdCount);
    }
    let mut pos = HEADER_LEN;
    let mut labels = 0u8;
    loop {
        let Some(&len) = msg.get(pos) else {
            return Err(WireError::Truncated);
        };
        match len & 0xc0 {
            0x00 => {}
            0xc0 => return Err(WireError::Compression),
            _ => return Err(WireError::BadLabel),
        }
        let len = usize::from(len);
        pos += 1 + len;
        if pos - HEADER_LEN > MAX_NAME_LEN {
            return Err(WireError::NameTooLong);
        }
        if len == 0 {
            break;
        }
        // At most 127 labels fit in 255 bytes.
        labels += 1;
        debug_assert!(len <= MAX_LABEL_LEN);
    }
    let name_end = pos;
    let Some(tail) = msg.get(name_end..name_end + 4) else {
        return Err(WireError::Truncated);
    };
    Ok(Question {
        name_end,
        end: name_end + 4,
        qtype: u16::from_be_bytes([tail[0], tail[1]]),
        qclass: u16::from_be_bytes([tail[2], tail[3]]),
        labels,
    })
}

/// Offset just past the (possibly compressed) name at `pos`, bounded.
pub fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    for _ in 0..128 {
        let len = *msg.get(pos)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(pos + 1),
            0x00 => pos += 1 + usize::from(len),
            0xc0 => return msg.get(pos + 1).map(|_| pos + 2),
            _ => return None,
        }
    }
    None
}

/// Lowers the UDP payload size advertised by the query's OPT record to
/// `max` if it is larger, in place, and returns the checksum delta. A query
/// without OPT, or whose records after the question do not parse, is left
/// alone (the backend will judge it).
pub fn clamp_edns(msg: &mut [u8], q: &Question, max: u16) -> Delta {
    let mut d = Delta::ZERO;
    let Ok(h) = Header::new_checked(&*msg) else {
        return d;
    };
    let (an, ns, ar) = (h.ancount(), h.nscount(), h.arcount());
    if ar == 0 {
        return d;
    }
    let mut pos = q.end;
    for i in 0..u32::from(an) + u32::from(ns) + u32::from(ar) {
        let Some(p) = skip_name(msg, pos) else {
            return d;
        };
        let Some(fixed) = msg.get(p..p + 10) else {
            return d;
        };
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let class = u16::from_be_bytes([fixed[2], fixed[3]]);
        let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        if i >= u32::from(an) + u32::from(ns) && rtype == qtype::OPT {
            if class > max {
                d.word_at(p + 2, class, max);
                msg[p + 2..p + 4].copy_from_slice(&max.to_be_bytes());
            }
            return d;
        }
        pos = p + 10 + rdlen;
    }
    d
}

/// Writes the dotted form of a wire name into `out`, without the final dot
/// (the root writes nothing), and returns its length: one copy of the label
/// bytes, then a dot over each inner length byte. Stops at the root label
/// or the end of `wire` (at most 256 bytes are read: no name is longer).
#[inline]
pub fn dotted(wire: &[u8], out: &mut [u8; 256]) -> usize {
    let n = wire.len().min(256);
    if n < 2 || wire[0] == 0 {
        return 0;
    }
    out[..n - 1].copy_from_slice(&wire[1..n]);
    // `out[i]` holds `wire[i + 1]`.
    let mut pos = usize::from(wire[0]) + 1;
    while pos < n && wire[pos] != 0 {
        out[pos - 1] = b'.';
        pos += usize::from(wire[pos]) + 1;
    }
    pos.min(n) - 1
}

/// Appends the dotted form of a wire name (see [`dotted`]).
pub fn push_dotted(wire: &[u8], out: &mut Vec<u8>) {
    let mut buf = [0u8; 256];
    let n = dotted(wire, &mut buf);
    out.extend_from_slice(&buf[..n]);
}

/// Whether the wire name `name` is `zone` or below it (label boundaries,
/// any case). Both uncompressed.
pub fn is_at_or_below(name: &[u8], zone: &[u8]) -> bool {
    if zone.len() > name.len() {
        return false;
    }
    let mut pos = 0;
    // Walk `name`'s labels until the rest is as long as `zone`.
    while name.len() - pos > zone.len() {
        match name.get(pos) {
            Some(&l) if l != 0 => pos += 1 + usize::from(l),
            _ => return false,
        }
    }
    name.len() - pos == zone.len() && name[pos..].eq_ignore_ascii_case(zone)
}

/// Test helper: a query for `name` (dotted) and `qtype`, class IN, RD set.
pub fn build_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m
}

/// Test helper: appends an OPT record advertising `payload` bytes with the
/// DO bit set, and counts it in ARCOUNT (which must be 0 before).
pub fn add_opt(msg: &mut Vec<u8>, payload: u16) {
    msg[11] += 1;
    msg.extend_from_slice(&[0, 0, 41]);
    msg.extend_from_slice(&payload.to_be_bytes());
    msg.extend_from_slice(&[0, 0, 0x80, 0, 0, 0]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rcode_names_round_trip_in_any_case() {
        for (i, n) in rcode::NAMES.iter().enumerate() {
            assert_eq!(rcode::by_name(n), Some(i as u8));
            assert_eq!(rcode::by_name(&n.to_ascii_lowercase()), Some(i as u8));
        }
        assert_eq!(rcode::by_name("ServFail"), Some(rcode::SERVFAIL));
        assert_eq!(rcode::by_name("BOGUS"), None);
        assert_eq!(rcode::by_name(""), None);
    }

    // id 0xbeef, RD, one question: www.example.com A IN
    const Q: [u8; 33] = [
        0xbe, 0xef, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 3, b'w', b'w',
        b'w', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, 0x00, 0x01,
        0x00, 0x01,
    ];

    #[test]
    fn header_fields() {
        let h = Header::new_checked(&Q[..]).unwrap();
        assert_eq!(h.id(), 0xbeef);
        assert!(!h.is_response());
        assert_eq!(h.opcode(), 0);
        assert_eq!(h.qdcount(), 1);
        assert_eq!(h.arcount(), 0);
    }

    #[test]
    fn question() {
        let q = parse_question(&Q).unwrap();
        assert_eq!(q.name_end, 29);
        assert_eq!(q.end, 33);
        assert_eq!(q.qtype, qtype::A);
        assert_eq!(q.qclass, 1);
        assert_eq!(q.name(&Q), &Q[12..29]);
        assert_eq!(
            build_query(0xbeef, "www.example.com.", qtype::A),
            Q.to_vec()
        );
    }

    #[test]
    fn root_name() {
        let m = build_query(1, ".", 2);
        let q = parse_question(&m).unwrap();
        assert_eq!(q.name(&m), &[0]);
    }

    #[test]
    fn set_id_and_reply() {
        let mut m = Q;
        let mut h = Header::new_checked(&mut m[..]).unwrap();
        let d = h.set_id(0x0102);
        assert!(!d.is_zero());
        h.make_reply(rcode::SERVFAIL);
        assert_eq!(&m[..12], &[0x01, 0x02, 0x81, 0x82, 0, 1, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn bad_questions() {
        assert_eq!(parse_question(&Q[..11]).err(), Some(WireError::Truncated));
        assert_eq!(parse_question(&Q[..20]).err(), Some(WireError::Truncated));
        assert_eq!(parse_question(&Q[..31]).err(), Some(WireError::Truncated));
        let mut m = Q;
        m[5] = 2;
        assert_eq!(parse_question(&m).err(), Some(WireError::QdCount));
        m[5] = 0;
        assert_eq!(parse_question(&m).err(), Some(WireError::QdCount));
        let mut m = Q;
        m[16] = 0xc0; // pointer where "example" starts
        assert_eq!(parse_question(&m).err(), Some(WireError::Compression));
        m[16] = 0x47; // 71: neither a 63-byte label nor a pointer
        assert_eq!(parse_question(&m).err(), Some(WireError::BadLabel));
        m[16] = 0x80;
        assert_eq!(parse_question(&m).err(), Some(WireError::BadLabel));
    }

    #[test]
    fn dotted_names() {
        let mut out = Vec::new();
        push_dotted(&Q[12..29], &mut out);
        assert_eq!(out, b"www.example.com");
        out.clear();
        push_dotted(&[0], &mut out);
        assert!(out.is_empty());
        push_dotted(&[5, b'a', b'b'], &mut out); // truncated: what is there
        assert_eq!(out, b"ab");
        let mut buf = [0u8; 256];
        let mut d = |w: &[u8]| {
            let n = dotted(w, &mut buf);
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        assert_eq!(d(b"\x03WwW\x07example\x03com\x00"), "WwW.example.com");
        assert_eq!(d(b"\x01a\x00\x00\x01"), "a", "stops at the root");
        assert_eq!(d(b"\x00\x03abc"), "");
        assert_eq!(d(b""), "");
        assert_eq!(d(b"\x03www\x07exa"), "www.exa");
        assert_eq!(d(b"\x09www"), "www");
    }

    #[test]
    fn edns_clamp() {
        let mut m = Q.to_vec();
        add_opt(&mut m, 4096);
        let q = parse_question(&m).unwrap();
        let d = clamp_edns(&mut m, &q, 1232);
        assert!(!d.is_zero());
        assert_eq!(&m[36..38], &1232u16.to_be_bytes());
        // Already small: untouched.
        let before = m.clone();
        assert!(clamp_edns(&mut m, &q, 4096).is_zero());
        assert_eq!(m, before);
        // No OPT, or garbage after the question: untouched, no panic.
        let mut plain = Q.to_vec();
        assert!(clamp_edns(&mut plain, &q, 512).is_zero());
        let mut bad = Q.to_vec();
        bad[11] = 3;
        bad.extend_from_slice(&[0xc0]);
        assert!(clamp_edns(&mut bad, &q, 512).is_zero());
        for n in 33..m.len() {
            let mut cut = before[..n].to_vec();
            let _ = clamp_edns(&mut cut, &q, 512);
        }
    }

    #[test]
    fn name_too_long() {
        // five 63-byte labels = 320 bytes of name
        let mut m = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..5 {
            m.push(63);
            m.extend_from_slice(&[b'a'; 63]);
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(parse_question(&m).err(), Some(WireError::NameTooLong));
        // exactly 255: three 63-byte labels + one 61-byte label + root
        let mut m = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..3 {
            m.push(63);
            m.extend_from_slice(&[b'a'; 63]);
        }
        m.push(61);
        m.extend_from_slice(&[b'b'; 61]);
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        let q = parse_question(&m).unwrap();
        assert_eq!(q.name_end - HEADER_LEN, 255);
    }
}
