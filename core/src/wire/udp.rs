//! UDP header view.

use super::checksum::Delta;
use super::WireError;

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

pub const HEADER_LEN: usize = 8;

pub struct Datagram<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> Datagram<T> {
    /// `ip_payload_len` is what the IP header says the datagram spans; the UDP
    /// length must agree with it exactly (a shorter UDP length would hide
    /// trailing bytes, a longer one read past the packet).
    pub fn new_checked(buf: T, ip_payload_len: usize) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN || ip_payload_len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let d = Datagram { buf };
        if usize::from(d.len()) != ip_payload_len || ip_payload_len > d.buf.as_ref().len() {
            return Err(WireError::UdpLength);
        }
        Ok(d)
    }

    fn u16_at(&self, r: core::ops::Range<usize>) -> u16 {
        let b = &self.buf.as_ref()[r];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }

    pub fn len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }

    pub fn is_empty(&self) -> bool {
        self.len() as usize <= HEADER_LEN
    }

    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Datagram<T> {
    /// Sets both ports and returns their checksum delta (applied by the
    /// caller together with the pseudo-header and payload deltas).
    pub fn set_ports(&mut self, src: u16, dst: u16) -> Delta {
        let mut d = Delta::ZERO;
        d.word(self.src_port(), src);
        d.word(self.dst_port(), dst);
        let b = self.buf.as_mut();
        b[field::SRC_PORT].copy_from_slice(&src.to_be_bytes());
        b[field::DST_PORT].copy_from_slice(&dst.to_be_bytes());
        d
    }

    pub fn set_len(&mut self, len: u16) {
        self.buf.as_mut()[field::LENGTH].copy_from_slice(&len.to_be_bytes());
    }

    pub fn set_checksum(&mut self, c: u16) {
        self.buf.as_mut()[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }

    /// Applies an accumulated delta to the stored checksum.
    pub fn apply_delta(&mut self, d: Delta) {
        let c = d.apply_udp(self.checksum());
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_set() {
        let mut b = [0x30, 0x39, 0x00, 0x35, 0x00, 0x0a, 0x12, 0x34, 0xab, 0xcd];
        let mut d = Datagram::new_checked(&mut b[..], 10).unwrap();
        assert_eq!(d.src_port(), 12345);
        assert_eq!(d.dst_port(), 53);
        assert_eq!(d.len(), 10);
        assert_eq!(d.checksum(), 0x1234);
        let delta = d.set_ports(53, 40000);
        d.apply_delta(delta);
        assert_eq!(&b[..4], &[0, 53, 0x9c, 0x40]);
    }

    #[test]
    fn length_mismatch() {
        let b = [0x30, 0x39, 0x00, 0x35, 0x00, 0x0a, 0, 0, 0, 0];
        assert_eq!(
            Datagram::new_checked(&b[..], 9).err(),
            Some(WireError::UdpLength)
        );
        assert_eq!(
            Datagram::new_checked(&b[..9], 10).err(),
            Some(WireError::UdpLength)
        );
        assert_eq!(
            Datagram::new_checked(&b[..7], 7).err(),
            Some(WireError::Truncated)
        );
        let b = [0x30, 0x39, 0x00, 0x35, 0x00, 0x07, 0, 0, 0, 0];
        assert_eq!(
            Datagram::new_checked(&b[..], 10).err(),
            Some(WireError::UdpLength)
        );
    }
}
