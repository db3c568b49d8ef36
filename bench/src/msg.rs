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
}

impl Default for AnswerSpec {
    fn default() -> Self {
        AnswerSpec {
            a: Ipv4Addr::new(192, 0, 2, 1),
            aaaa: "2001:db8::1".parse().unwrap(),
            ttl: 300,
            nxdomain_suffix: Some("nx.example".into()),
            force_rcode: None,
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
    if let Some(f) = spec.force_rcode {
        rc = f;
    } else if spec
        .nxdomain_suffix
        .as_deref()
        .is_some_and(|s| under(&name, s))
    {
        rc = rcode::NXDOMAIN;
    } else if q.qclass == 1 && q.qtype == qtype::A {
        record = Some((qtype::A, spec.a.octets().to_vec()));
    } else if q.qclass == 1 && q.qtype == qtype::AAAA {
        record = Some((qtype::AAAA, spec.aaaa.octets().to_vec()));
    }
    out.clear();
    out.extend_from_slice(&query[..q.end]);
    let flags = 0x8000 | (h.flags() & 0x7900) | 0x0080 | u16::from(rc);
    out[2..4].copy_from_slice(&flags.to_be_bytes());
    out[4..12].copy_from_slice(&[0, 1, 0, record.is_some() as u8, 0, 0, 0, edns as u8]);
    if let Some((t, rdata)) = record {
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&t.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&spec.ttl.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    if edns {
        out.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    }
    Some(())
}

/// The query the load driver sends for sequence number `i`: mostly A
/// records for distinct names, every tenth an AAAA, every seventh a name under
/// the NXDOMAIN suffix (a recursor's mix of hits, misses and negatives).
pub fn query_for(i: u64, id: u16, out: &mut Vec<u8>) {
    let name = if i % 7 == 3 {
        format!("q{i}.nx.example")
    } else {
        format!("q{i}.load.example")
    };
    let t = if i % 10 == 9 { qtype::AAAA } else { qtype::A };
    *out = dns::build_query(id, &name, t);
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(out.len(), q.len());

        let q = dns::build_query(9, "x.example", qtype::AAAA);
        answer(&q, &spec, &mut out).unwrap();
        assert_eq!(&out[out.len() - 16..], &spec.aaaa.octets());

        let mut r = q.clone();
        r[2] |= 0x80;
        assert!(answer(&r, &spec, &mut out).is_none());
        assert!(answer(&q[..5], &spec, &mut out).is_none());
    }

    #[test]
    fn dotted_names() {
        assert_eq!(dotted(b"\x03WwW\x07example\x00"), "www.example");
        assert_eq!(dotted(b"\x00"), "");
    }
}
