//! IPv6 fixed header view. Extension headers (including the fragment header)
//! are refused: DNS over UDP to a VIP never needs them, and walking them on the
//! data path buys nothing but attack surface.

use super::checksum::Delta;
use super::WireError;
use std::net::Ipv6Addr;

mod field {
    use core::ops::Range;
    pub const VER: usize = 0;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

pub const HEADER_LEN: usize = 40;
pub const NEXT_UDP: u8 = 17;
pub const NEXT_FRAGMENT: u8 = 44;

pub struct Packet<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[field::VER] >> 4 != 6 {
            return Err(WireError::BadIpHeader);
        }
        let p = Packet { buf };
        if HEADER_LEN + usize::from(p.payload_len()) > p.buf.as_ref().len() {
            return Err(WireError::Truncated);
        }
        match p.next_header() {
            NEXT_UDP => Ok(p),
            NEXT_FRAGMENT => Err(WireError::Fragment),
            _ => Err(WireError::NotUdp),
        }
    }

    pub fn payload_len(&self) -> u16 {
        let b = &self.buf.as_ref()[field::PAYLOAD_LEN];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn next_header(&self) -> u8 {
        self.buf.as_ref()[field::NEXT_HEADER]
    }

    pub fn src(&self) -> Ipv6Addr {
        let b: [u8; 16] = self.buf.as_ref()[field::SRC].try_into().unwrap();
        Ipv6Addr::from(b)
    }

    pub fn dst(&self) -> Ipv6Addr {
        let b: [u8; 16] = self.buf.as_ref()[field::DST].try_into().unwrap();
        Ipv6Addr::from(b)
    }

    pub fn pseudo_header_sum(&self, l4_len: u16) -> u64 {
        let b = self.buf.as_ref();
        super::checksum::sum_bytes(&b[field::SRC.start..field::DST.end])
            + u64::from(self.next_header())
            + u64::from(l4_len)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets both addresses; IPv6 has no header checksum, the returned delta is
    /// for the transport checksum's pseudo-header.
    pub fn set_addrs(&mut self, src: Ipv6Addr, dst: Ipv6Addr) -> Delta {
        let mut d = Delta::ZERO;
        let b = self.buf.as_mut();
        d.bytes(&b[field::SRC], &src.octets());
        d.bytes(&b[field::DST], &dst.octets());
        b[field::SRC].copy_from_slice(&src.octets());
        b[field::DST].copy_from_slice(&dst.octets());
        d
    }

    pub fn set_payload_len(&mut self, len: u16) {
        self.buf.as_mut()[field::PAYLOAD_LEN].copy_from_slice(&len.to_be_bytes());
    }

    pub fn set_hop_limit(&mut self, hops: u8) {
        self.buf.as_mut()[field::HOP_LIMIT] = hops;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt() -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 8, NEXT_UDP, 64];
        p.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&[0, 53, 0, 53, 0, 8, 0, 0]);
        p
    }

    #[test]
    fn parse_and_set() {
        let mut p = pkt();
        let mut v = Packet::new_checked(&mut p[..]).unwrap();
        assert_eq!(v.src(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(v.dst(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(v.payload_len(), 8);
        v.set_addrs(
            "2001:db8::a".parse().unwrap(),
            "2001:db8::b".parse().unwrap(),
        );
        v.set_payload_len(9);
        v.set_hop_limit(1);
        assert_eq!(p[23], 0x0a);
        assert_eq!(p[39], 0x0b);
        assert_eq!(p[5], 9);
        assert_eq!(p[7], 1);
    }

    #[test]
    fn bad_inputs() {
        let p = pkt();
        assert_eq!(
            Packet::new_checked(&p[..39]).err(),
            Some(WireError::Truncated)
        );
        assert_eq!(
            Packet::new_checked(&p[..47]).err(),
            Some(WireError::Truncated)
        );
        let mut q = p.clone();
        q[0] = 0x40;
        assert_eq!(
            Packet::new_checked(&q[..]).err(),
            Some(WireError::BadIpHeader)
        );
        let mut q = p.clone();
        q[6] = NEXT_FRAGMENT;
        assert_eq!(Packet::new_checked(&q[..]).err(), Some(WireError::Fragment));
        q[6] = 0; // hop-by-hop options
        assert_eq!(Packet::new_checked(&q[..]).err(), Some(WireError::NotUdp));
    }
}
