//! Ethernet II frame view (no VLAN: tagged frames are not ours and the XDP
//! program passes them to the kernel).

use super::WireError;

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;
}

pub const HEADER_LEN: usize = field::PAYLOAD;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

pub type Mac = [u8; 6];

pub struct Frame<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        if buf.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Frame { buf })
    }

    pub fn dst(&self) -> Mac {
        self.buf.as_ref()[field::DST].try_into().unwrap()
    }

    pub fn src(&self) -> Mac {
        self.buf.as_ref()[field::SRC].try_into().unwrap()
    }

    pub fn ethertype(&self) -> u16 {
        let b = &self.buf.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    pub fn set_dst(&mut self, mac: Mac) {
        self.buf.as_mut()[field::DST].copy_from_slice(&mac);
    }

    pub fn set_src(&mut self, mac: Mac) {
        self.buf.as_mut()[field::SRC].copy_from_slice(&mac);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: [u8; 14] = [0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00];

    #[test]
    fn parse_and_set() {
        let mut b = F;
        let mut f = Frame::new_checked(&mut b[..]).unwrap();
        assert_eq!(f.dst(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(f.src(), [2, 0, 0, 0, 0, 2]);
        assert_eq!(f.ethertype(), ETHERTYPE_IPV4);
        f.set_dst([2, 0, 0, 0, 0, 9]);
        f.set_src([2, 0, 0, 0, 0, 8]);
        assert_eq!(&b[..12], &[2, 0, 0, 0, 0, 9, 2, 0, 0, 0, 0, 8]);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Frame::new_checked(&F[..13]).err(),
            Some(WireError::Truncated)
        );
    }
}
