//! IPv4 header view. Options and fragments are refused by [`Packet::new_checked`]:
//! the data plane only forwards plain 20-byte headers carrying a whole datagram.

use super::checksum::Delta;
use super::WireError;
use std::net::Ipv4Addr;

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: Range<usize> = 2..4;
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

pub const HEADER_LEN: usize = 20;
pub const PROTO_UDP: u8 = 17;
const MF: u16 = 0x2000;
const FRAG_OFFSET: u16 = 0x1fff;

pub struct Packet<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Validates version, header length, total length and fragmentation.
    /// Returns the packet; `total_len()` may be shorter than the buffer
    /// (Ethernet padding).
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(WireError::BadIpHeader);
        }
        let ihl = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        if ihl < HEADER_LEN {
            return Err(WireError::BadIpHeader);
        }
        if ihl > HEADER_LEN {
            return Err(WireError::IpOptions);
        }
        let p = Packet { buf };
        let total = usize::from(p.total_len());
        if total < HEADER_LEN {
            return Err(WireError::BadIpHeader);
        }
        if total > p.buf.as_ref().len() {
            return Err(WireError::Truncated);
        }
        if p.flags_frag() & (MF | FRAG_OFFSET) != 0 {
            return Err(WireError::Fragment);
        }
        Ok(p)
    }

    fn u16_at(&self, r: core::ops::Range<usize>) -> u16 {
        let b = &self.buf.as_ref()[r];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn total_len(&self) -> u16 {
        self.u16_at(field::TOTAL_LEN)
    }

    fn flags_frag(&self) -> u16 {
        self.u16_at(field::FLAGS_FRAG)
    }

    pub fn ttl(&self) -> u8 {
        self.buf.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> u8 {
        self.buf.as_ref()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    pub fn src(&self) -> Ipv4Addr {
        let b: [u8; 4] = self.buf.as_ref()[field::SRC].try_into().unwrap();
        Ipv4Addr::from(b)
    }

    pub fn dst(&self) -> Ipv4Addr {
        let b: [u8; 4] = self.buf.as_ref()[field::DST].try_into().unwrap();
        Ipv4Addr::from(b)
    }

    /// The UDP/TCP pseudo-header sum for this packet's addresses.
    pub fn pseudo_header_sum(&self, l4_len: u16) -> u64 {
        let b = self.buf.as_ref();
        super::checksum::sum_bytes(&b[field::SRC.start..field::DST.end])
            + u64::from(self.protocol())
            + u64::from(l4_len)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets both addresses, fixes the header checksum in place and returns the
    /// delta the transport checksum needs (its pseudo-header covers them).
    pub fn set_addrs(&mut self, src: Ipv4Addr, dst: Ipv4Addr) -> Delta {
        let mut d = Delta::ZERO;
        let b = self.buf.as_mut();
        d.bytes(&b[field::SRC], &src.octets());
        d.bytes(&b[field::DST], &dst.octets());
        b[field::SRC].copy_from_slice(&src.octets());
        b[field::DST].copy_from_slice(&dst.octets());
        let c = d.apply(u16::from_be_bytes([b[10], b[11]]));
        b[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
        d
    }

    /// Sets the total length (a locally built reply changed the payload size)
    /// and fixes the header checksum.
    pub fn set_total_len(&mut self, len: u16) {
        let mut d = Delta::ZERO;
        d.word(self.total_len(), len);
        let c = d.apply(self.checksum());
        let b = self.buf.as_mut();
        b[field::TOTAL_LEN].copy_from_slice(&len.to_be_bytes());
        b[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }

    /// Resets the TTL of a packet we originate (a reply to the client): the
    /// client must not see the hop count of the backend leg.
    pub fn set_ttl(&mut self, ttl: u8) {
        let b = self.buf.as_ref();
        let old = u16::from_be_bytes([b[field::TTL], b[field::PROTOCOL]]);
        let new = u16::from_be_bytes([ttl, b[field::PROTOCOL]]);
        let mut d = Delta::ZERO;
        d.word(old, new);
        let c = d.apply(self.checksum());
        let b = self.buf.as_mut();
        b[field::TTL] = ttl;
        b[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::checksum;

    // 10.0.0.1 -> 10.0.0.2, UDP, total length 28, checksum 0x26cc.
    const P: [u8; 28] = [
        0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x14, 0x6a, 10, 0, 0, 1, 10, 0,
        0, 2, 0, 53, 0, 53, 0, 8, 0, 0,
    ];

    fn fixed() -> [u8; 28] {
        let mut p = P;
        p[10] = 0;
        p[11] = 0;
        let c = checksum(0, &p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn parse() {
        let p = fixed();
        let v = Packet::new_checked(&p[..]).unwrap();
        assert_eq!(v.src(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(v.dst(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(v.protocol(), PROTO_UDP);
        assert_eq!(v.total_len(), 28);
        assert_eq!(checksum(0, &p[..20]), 0);
    }

    #[test]
    fn rewrite_keeps_checksum_valid() {
        let mut p = fixed();
        let mut v = Packet::new_checked(&mut p[..]).unwrap();
        v.set_addrs(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 7));
        v.set_ttl(64);
        v.set_total_len(27);
        assert_eq!(checksum(0, &p[..20]), 0);
        assert_eq!(&p[12..20], &[192, 0, 2, 1, 198, 51, 100, 7]);
    }

    #[test]
    fn bad_inputs() {
        let p = fixed();
        assert_eq!(
            Packet::new_checked(&p[..19]).err(),
            Some(WireError::Truncated)
        );
        let mut q = p;
        q[0] = 0x65;
        assert_eq!(
            Packet::new_checked(&q[..]).err(),
            Some(WireError::BadIpHeader)
        );
        q[0] = 0x44;
        assert_eq!(
            Packet::new_checked(&q[..]).err(),
            Some(WireError::BadIpHeader)
        );
        q[0] = 0x46;
        assert_eq!(
            Packet::new_checked(&q[..]).err(),
            Some(WireError::IpOptions)
        );
        let mut q = p;
        q[2..4].copy_from_slice(&29u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&q[..]).err(),
            Some(WireError::Truncated)
        );
        q[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&q[..]).err(),
            Some(WireError::BadIpHeader)
        );
        let mut q = p;
        q[6] = 0x20; // MF
        assert_eq!(Packet::new_checked(&q[..]).err(), Some(WireError::Fragment));
        let mut q = p;
        q[6] = 0x40;
        q[7] = 0x01; // DF + offset 8: a later fragment
        assert_eq!(Packet::new_checked(&q[..]).err(), Some(WireError::Fragment));
    }
}
