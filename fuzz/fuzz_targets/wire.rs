//! The wire parsers on any bytes: DNS header and question, the EDNS clamp
//! (which rewrites in place), and the ICMP header. A verdict or an error,
//! never a panic; a clamp never grows or cuts the message.
#![no_main]

use dnsrail_core::wire::dns::{self, Header};
use dnsrail_core::wire::icmp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Header::new_checked(data) {
        let _ = (h.id(), h.flags(), h.rcode(), h.qdcount(), h.truncated());
    }
    if let Ok(q) = dns::parse_question(data) {
        assert!(q.end <= data.len());
        let _ = q.name(data);
        let mut copy = data.to_vec();
        for max in [512u16, 1232, 4096] {
            let _ = dns::clamp_edns(&mut copy, &q, max);
            assert_eq!(copy.len(), data.len());
        }
        // A reply made in place keeps the question where it was.
        let mut r = data.to_vec();
        if let Ok(mut h) = Header::new_checked(&mut r[..]) {
            h.make_reply(dns::rcode::REFUSED);
        }
        assert_eq!(&r[12..q.end], &data[12..q.end]);
    }
    if let Ok(m) = icmp::Message::new_checked(data) {
        let _ = (m.msg_type(), m.code(), m.is_unreachable(false), m.is_unreachable(true));
        let _ = m.checksum_ok(0);
        assert!(m.quote_range().end <= data.len());
        let _ = m.quote();
    }
});
