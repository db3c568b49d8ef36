//! ICMP and ICMPv6 error messages: the header and the quoted packet that
//! follows it (RFC 792, RFC 4443). Only what the failover path reads.

use core::ops::Range;

use super::WireError;

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const QUOTE: usize = 8;
}

pub const HEADER_LEN: usize = field::QUOTE;
/// IPv4 protocol number of ICMP, IPv6 next header of ICMPv6.
pub const PROTO_ICMP: u8 = 1;
pub const NEXT_ICMPV6: u8 = 58;
/// ICMP destination unreachable, and its code that is no failure of the
/// destination but a path MTU report (the kernel's to handle).
pub const V4_DEST_UNREACH: u8 = 3;
pub const V4_FRAG_NEEDED: u8 = 4;
/// ICMPv6 destination unreachable (every code is a failure to deliver).
pub const V6_DEST_UNREACH: u8 = 1;

pub struct Message<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> Message<T> {
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        if buf.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Message { buf })
    }

    pub fn msg_type(&self) -> u8 {
        self.buf.as_ref()[field::TYPE]
    }

    pub fn code(&self) -> u8 {
        self.buf.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        let b = &self.buf.as_ref()[field::CHECKSUM];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// A destination-unreachable error that says the destination (not the
    /// path MTU) failed.
    pub fn is_unreachable(&self, v6: bool) -> bool {
        if v6 {
            self.msg_type() == V6_DEST_UNREACH
        } else {
            self.msg_type() == V4_DEST_UNREACH && self.code() != V4_FRAG_NEEDED
        }
    }

    /// Whether the checksum over the whole message (plus, for ICMPv6, the
    /// pseudo-header sum `pseudo`) holds.
    pub fn checksum_ok(&self, pseudo: u64) -> bool {
        super::checksum::checksum(pseudo, self.buf.as_ref()) == 0
    }

    /// The start of the packet that caused the error.
    pub fn quote(&self) -> &[u8] {
        &self.buf.as_ref()[field::QUOTE..]
    }

    /// Where the quote starts in the message.
    pub fn quote_range(&self) -> Range<usize> {
        field::QUOTE..self.buf.as_ref().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_unreachable_is_unreachable_frag_needed_is_not() {
        // type 3 code 3, checksum over the 8 bytes + 4 quoted bytes.
        let mut b = [3u8, 3, 0, 0, 0, 0, 0, 0, 0x45, 0, 0, 0x1c];
        let c = crate::wire::checksum::checksum(0, &b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
        let m = Message::new_checked(&b[..]).unwrap();
        assert!(m.is_unreachable(false));
        assert!(m.checksum_ok(0));
        assert_eq!(m.quote(), &[0x45, 0, 0, 0x1c]);
        assert_eq!(m.quote_range(), 8..12);
        let mut bad = b;
        bad[9] ^= 1;
        assert!(!Message::new_checked(&bad[..]).unwrap().checksum_ok(0));
        let frag = [3u8, 4, 0, 0, 0, 0, 0, 0];
        assert!(!Message::new_checked(&frag[..])
            .unwrap()
            .is_unreachable(false));
        let echo = [8u8, 0, 0, 0, 0, 0, 0, 0];
        assert!(!Message::new_checked(&echo[..])
            .unwrap()
            .is_unreachable(false));
        let v6 = [1u8, 4, 0, 0, 0, 0, 0, 0];
        assert!(Message::new_checked(&v6[..]).unwrap().is_unreachable(true));
        assert_eq!(
            Message::new_checked(&v6[..7]).err(),
            Some(WireError::Truncated)
        );
    }
}
