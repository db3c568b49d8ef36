//! Building DNS answers and queries by hand, for the synthetic backend and
//! the load driver (never on the balancer's data path).

use dnsrail_engine::wire::dns::{self, qtype, rcode, Question};
use std::net::{Ipv4Addr, Ipv6Addr};

/// How the synthetic backend answers.
#[derive(Clone, Debug)]
pub struct AnswerSpec {
    pub a: Ipv4Addr,
    pub aaaa: Ipv6Addr,
    pub ttl: u32,
    /// Names under this suffix (lower case, dotted, no trailing dot) get
    /// NXDOMAIN.
    pub nxdomain_suffix: Option<String>,
    /// Answer every query with this RCODE and no records (e.g. SERVFAIL).
    pub force_rcode: Option<u8>,
    /// TXT queries for names under this suffix get `big_bytes` of TXT
    /// records (a DNSSEC-sized answer that fragments), or TC=1 when the
    /// query's UDP size (EDNS, else 512) is smaller.
    pub big_suffix: Option<String>,
    pub big_bytes: usize,
    /// The A and AAAA addresses' last two bytes from a hash of the name
    /// (lower case): each name its own records, so that a cache that
    /// served one name's records for another is seen.
    pub per_name: bool,
}

impl Default for AnswerSpec {
    fn default() -> Self {
        AnswerSpec {
            a: Ipv4Addr::new(192, 0, 2, 1),
            aaaa: "2001:db8::1".parse().unwrap(),
            ttl: 300,
            nxdomain_suffix: Some("nx.example".into()),
            force_rcode: None,
            big_suffix: Some("big.example".into()),
            big_bytes: 3000,
            per_name: false,
        }
    }
}

/// The dotted, lower-case form of a wire name.
pub fn dotted(wire: &[u8]) -> String {
    let mut out = Vec::with_capacity(wire.len());
    dns::push_dotted(wire, &mut out);
    String::from_utf8_lossy(&out).to_ascii_lowercase()
}

fn under(name: &str, suffix: &str) -> bool {
    name == suffix || name.ends_with(&format!(".{suffix}"))
}

/// Writes the answer to `query` into `out`; None if the query is not one to
/// answer (malformed, a response). The question is copied byte for byte; an
/// A/AAAA record points back at it with a compression pointer; an OPT record
/// in the query gets one (payload 1232) in the answer.
pub fn answer(query: &[u8], spec: &AnswerSpec, out: &mut Vec<u8>) -> Option<()> {
    let h = dns::Header::new_checked(query).ok()?;
    if h.is_response() {
        return None;
    }
    let q: Question = dns::parse_question(query).ok()?;
    let edns = h.arcount() > 0;
    let name = dotted(q.name(query));
    let mut rc = rcode::NOERROR;
    let mut record: Option<(u16, Vec<u8>)> = None;
    let big = q.qtype == qtype::TXT && spec.big_suffix.as_deref().is_some_and(|s| under(&name, s));
    if big && spec.force_rcode.is_none() {
        big_answer(query, &q, edns, spec.big_bytes, out);
        return Some(());
    }
    if let Some(f) = spec.force_rcode {
        rc = f;
    } else if spec
        .nxdomain_suffix
        .as_deref()
        .is_some_and(|s| under(&name, s))
    {
        rc = rcode::NXDOMAIN;
    } else if q.qclass == 1 && q.qtype == qtype::A {
        record = Some((qtype::A, per_name(spec, &name, &spec.a.octets())));
    } else if q.qclass == 1 && q.qtype == qtype::AAAA {
        record = Some((qtype::AAAA, per_name(spec, &name, &spec.aaaa.octets())));
    }
    out.clear();
    out.extend_from_slice(&query[..q.end]);
    let flags = 0x8000 | (h.flags() & 0x7900) | 0x0080 | u16::from(rc);
    out[2..4].copy_from_slice(&flags.to_be_bytes());
    // A negative answer carries its zone's SOA, as a real server's does:
    // TTL 300, MINIMUM 2 (a cache keeps it min(300, 2) = 2 s, RFC 2308).
    let soa = rc == rcode::NXDOMAIN;
    out[4..12].copy_from_slice(&[0, 1, 0, record.is_some() as u8, 0, soa as u8, 0, edns as u8]);
    if let Some((t, rdata)) = record {
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&t.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&spec.ttl.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    if soa {
        // Owner and MNAME/RNAME the root: 22 bytes of RDATA.
        out.extend_from_slice(&[0, 0, 6, 0, 1, 0, 0, 1, 44, 0, 22, 0, 0]);
        for v in [1u32, 3600, 600, 86400, 2] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    if edns {
        out.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    }
    Some(())
}

/// The query's UDP payload size: its EDNS OPT record's class, else 512.
fn udp_size(query: &[u8], q: &Question, edns: bool) -> usize {
    // OPT right after the question: root name, TYPE 41, CLASS = size.
    match query.get(q.end..q.end + 5) {
        Some([0, 0, 41, hi, lo]) if edns => usize::from(u16::from_be_bytes([*hi, *lo])).max(512),
        _ => 512,
    }
}

/// `addr`, with its last two bytes from `name` when the spec says so.
fn per_name(spec: &AnswerSpec, name: &str, addr: &[u8]) -> Vec<u8> {
    let mut v = addr.to_vec();
    if spec.per_name {
        let h = name.bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        let n = v.len();
        v[n - 2..].copy_from_slice(&(h as u16).to_be_bytes());
    }
    v
}

/// Where the TTL fields of `msg`'s records are (an OPT's too: there it is
/// flags, equal in both anyway), or `None` when it does not parse to its
/// last byte.
pub fn ttl_offsets(msg: &[u8]) -> Option<Vec<usize>> {
    let h = dns::Header::new_checked(msg).ok()?;
    let q = dns::parse_question(msg).ok()?;
    let n = usize::from(h.ancount()) + usize::from(h.nscount()) + usize::from(h.arcount());
    let mut pos = q.end;
    let mut at = Vec::with_capacity(n);
    for _ in 0..n {
        let p = dns::skip_name(msg, pos)?;
        let f = msg.get(p..p + 10)?;
        at.push(p + 4);
        pos = p + 10 + usize::from(u16::from_be_bytes([f[8], f[9]]));
    }
    (pos == msg.len()).then_some(at)
}

/// Whether `got` is `want` but for the DNS ID and the TTLs (which a cache
/// ages): the same records, byte for byte.
pub fn same_answer_but_ttls(got: &[u8], want: &[u8]) -> bool {
    let (Some(a), Some(b)) = (ttl_offsets(got), ttl_offsets(want)) else {
        return false;
    };
    if got.len() != want.len() || a != b {
        return false;
    }
    let mut got = got.to_vec();
    let mut want = want.to_vec();
    for &t in &a {
        got[t..t + 4].fill(0);
        want[t..t + 4].fill(0);
    }
    got[2..] == want[2..]
}

/// TXT records of 250-byte strings adding up to about `bytes`, or TC=1 and
/// no records when that does not fit the query's UDP size.
fn big_answer(query: &[u8], q: &Question, edns: bool, bytes: usize, out: &mut Vec<u8>) {
    let h = dns::Header::new_checked(query).expect("checked by the caller");
    const RR: usize = 2 + 10 + 251;
    let n = bytes.div_ceil(RR).max(1);
    let size = q.end + n * RR + if edns { 11 } else { 0 };
    let tc = size > udp_size(query, q, edns);
    out.clear();
    out.extend_from_slice(&query[..q.end]);
    let flags = 0x8000 | (h.flags() & 0x7900) | 0x0080 | if tc { 0x0200 } else { 0 };
    out[2..4].copy_from_slice(&flags.to_be_bytes());
    let an = if tc { 0 } else { n as u16 };
    out[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, edns as u8]);
    out[6..8].copy_from_slice(&an.to_be_bytes());
    for i in 0..an {
        out.extend_from_slice(&[0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 1, 44, 0, 251, 250]);
        let fill = b'a' + (i % 26) as u8;
        out.extend(std::iter::repeat_n(fill, 250));
    }
    if edns {
        out.extend_from_slice(&[0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0]);
    }
}

/// The query the load driver sends for sequence number `i`: mostly A
/// records for distinct names, every tenth an AAAA, every seventh a name under
/// the NXDOMAIN suffix (a recursor's mix of hits, misses and negatives).
pub fn query_for(i: u64, id: u16, out: &mut Vec<u8>) {
    mixed_query(None, i, id, out)
}

/// The name and type of [`query_for`]'s query `i`.
pub fn name_for(i: u64) -> (String, u16) {
    let name = if i % 7 == 3 {
        format!("q{i}.nx.example")
    } else {
        format!("q{i}.load.example")
    };
    (name, if i % 10 == 9 { qtype::AAAA } else { qtype::A })
}

/// A query mix for a cache: `hot_pct` % of the queries ask one of
/// `hot_names` popular names (what a cache answers once it holds them), the
/// rest ask names never asked before ([`name_for`]: a resolver's long tail,
/// one in seven NXDOMAIN), so the share of hits does not grow with the
/// length of a run. Which query is which follows from its sequence number
/// alone, so that a receiver can rebuild the query an answer belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HitMix {
    pub hot_pct: u8,
    pub hot_names: u32,
}

impl HitMix {
    /// The name and type of query `i`. Popular names are positive answers
    /// (A, every tenth AAAA), so every cache keeps them alike; the tail's
    /// NXDOMAIN names are never repeated, so the caches' differing negative
    /// TTLs (RFC 2308's SOA MINIMUM or the SOA's own TTL) do not matter.
    pub fn name_for(self, i: u64) -> (String, u16) {
        let r = splitmix64(i);
        if r % 100 < u64::from(self.hot_pct) && self.hot_names > 0 {
            let k = (r >> 32) % u64::from(self.hot_names);
            let t = if k % 10 == 9 { qtype::AAAA } else { qtype::A };
            (format!("h{k}.hot.example"), t)
        } else {
            name_for(i)
        }
    }
}

/// Query `i` of the driver: [`query_for`], or of `mix` when given.
pub fn mixed_query(mix: Option<HitMix>, i: u64, id: u16, out: &mut Vec<u8>) {
    let (name, t) = match mix {
        Some(m) => m.name_for(i),
        None => name_for(i),
    };
    *out = dns::build_query(id, &name, t);
}

/// Lines `first..first + n` of `mix` as a query file (`name TYPE`), as
/// kxdpgun and dnsperf read one.
pub fn mix_file(mix: HitMix, first: u64, n: u64) -> String {
    let mut t = String::with_capacity(n as usize * 28);
    for i in first..first + n {
        let (name, q) = mix.name_for(i);
        t.push_str(&name);
        t.push_str(if q == qtype::AAAA { " AAAA\n" } else { " A\n" });
    }
    t
}

/// A well-mixed 64-bit hash of a counter (splitmix64's finaliser).
fn splitmix64(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_mix_asks_popular_names_at_its_share_and_never_repeats_the_tail() {
        let mix = HitMix {
            hot_pct: 90,
            hot_names: 1000,
        };
        let mut hot = std::collections::HashMap::new();
        let mut tail = std::collections::HashSet::new();
        for i in 0..100_000 {
            let (name, t) = mix.name_for(i);
            assert!(t == qtype::A || t == qtype::AAAA, "{name}");
            if name.ends_with(".hot.example") {
                *hot.entry(name).or_insert(0u32) += 1;
            } else {
                assert!(tail.insert(name.clone()), "{name} repeated");
            }
        }
        let n: u32 = hot.values().sum();
        assert!((89_000..91_000).contains(&n), "{n} popular of 100 000");
        assert_eq!(hot.len(), 1000, "every popular name is asked");
        // A repeatable sequence: the receiver rebuilds the query from i.
        assert_eq!(mix.name_for(77), mix.name_for(77));
        let plain = HitMix {
            hot_pct: 0,
            hot_names: 1000,
        };
        assert_eq!(plain.name_for(5), name_for(5));
        let f = mix_file(mix, 10, 3);
        assert_eq!(f.lines().count(), 3);
        let (name, _) = mix.name_for(11);
        assert!(
            f.lines().nth(1).unwrap().starts_with(&format!("{name} ")),
            "{f}"
        );
    }

    #[test]
    fn answers_a_aaaa_nxdomain_and_echoes_question() {
        let spec = AnswerSpec::default();
        let mut out = Vec::new();
        let q = dns::build_query(9, "WWW.example.com", qtype::A);
        answer(&q, &spec, &mut out).unwrap();
        assert_eq!(&out[..2], &[0, 9]);
        assert_eq!(out[2], 0x81);
        assert_eq!(out[3] & 0x0f, 0);
        assert_eq!(&out[12..q.len()], &q[12..]);
        assert_eq!(&out[out.len() - 4..], &[192, 0, 2, 1]);

        let q = dns::build_query(9, "a.NX.example", qtype::A);
        answer(&q, &spec, &mut out).unwrap();
        assert_eq!(out[3] & 0x0f, rcode::NXDOMAIN);
        assert_eq!(&out[8..10], &[0, 1], "one SOA in the authority section");
        assert_eq!(out.len(), q.len() + 11 + 22);
        assert_eq!(&out[out.len() - 4..], &2u32.to_be_bytes(), "SOA MINIMUM");

        let q = dns::build_query(9, "x.example", qtype::AAAA);
        answer(&q, &spec, &mut out).unwrap();
        assert_eq!(&out[out.len() - 16..], &spec.aaaa.octets());

        let mut r = q.clone();
        r[2] |= 0x80;
        assert!(answer(&r, &spec, &mut out).is_none());
        assert!(answer(&q[..5], &spec, &mut out).is_none());
    }

    #[test]
    fn big_answers_fit_the_query_size_or_are_truncated() {
        let spec = AnswerSpec::default();
        let mut out = Vec::new();
        let mut q = dns::build_query(5, "k.big.example", qtype::TXT);
        answer(&q, &spec, &mut out).unwrap();
        assert_eq!(out[2] & 0x02, 0x02, "TC: 3000 bytes do not fit 512");
        assert_eq!(&out[6..8], &[0, 0]);
        dns::add_opt(&mut q, 4096);
        answer(&q, &spec, &mut out).unwrap();
        assert_eq!(out[2] & 0x02, 0, "fits 4096");
        assert!(out.len() >= 3000 && out.len() <= 4096, "{}", out.len());
        assert_eq!(u16::from_be_bytes([out[6], out[7]]), 12);
    }

    #[test]
    fn dotted_names() {
        assert_eq!(dotted(b"\x03WwW\x07example\x00"), "www.example");
        assert_eq!(dotted(b"\x00"), "");
    }
}
