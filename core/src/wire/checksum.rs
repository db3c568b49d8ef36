//! Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Every rewrite on the data path changes a handful of 16-bit words (addresses,
//! ports, the DNS ID). Recomputing the UDP checksum would touch the whole
//! payload; RFC 1624 eqn. 3 (`HC' = ~(~HC + ~m + m')`) touches only the words
//! that changed. [`Delta`] accumulates the changed words of one rewrite so the
//! fold is done once per checksum, not once per field.

/// Folds a 32-bit one's-complement accumulator into 16 bits.
#[inline]
pub fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// One's-complement sum of `data` as big-endian 16-bit words (odd tail
/// padded), not yet folded. Summed as 32-bit words: 2^16 ≡ 1 (mod 0xffff),
/// so the fold of their sum is the fold of the 16-bit words' sum, at half
/// the additions (every received datagram's checksum is verified).
pub fn sum_bytes(data: &[u8]) -> u64 {
    let mut sum = 0u64;
    let mut quads = data.chunks_exact(4);
    for c in &mut quads {
        sum += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let mut pairs = quads.remainder().chunks_exact(2);
    for c in &mut pairs {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = pairs.remainder() {
        sum += u64::from(u16::from_be_bytes([*last, 0]));
    }
    sum
}

/// The pseudo-header sum of a transport checksum from its addresses (both
/// of one family), protocol and transport length; not folded.
pub fn pseudo_header(src: std::net::IpAddr, dst: std::net::IpAddr, proto: u8, len: u16) -> u64 {
    use std::net::IpAddr;
    let addrs = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => sum_bytes(&s.octets()) + sum_bytes(&d.octets()),
        (IpAddr::V6(s), IpAddr::V6(d)) => sum_bytes(&s.octets()) + sum_bytes(&d.octets()),
        // A caller's bug, not a packet's: no valid checksum matches it.
        _ => return u64::MAX >> 1,
    };
    addrs + u64::from(proto) + u64::from(len)
}

/// What the checksum of a received UDP datagram says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpCheck {
    Valid,
    /// Checksum 0: the sender computed none (allowed over IPv4 only).
    Absent,
    /// The sender left it to the NIC (TX offload, CHECKSUM_PARTIAL): the
    /// field holds the folded pseudo-header sum and nothing of the
    /// datagram. A local veth sender does this; the value is what the NIC
    /// would have written.
    Partial(u16),
    Bad,
}

/// Checks the checksum of `datagram` (UDP header and payload) whose
/// pseudo-header sums to `pseudo`.
pub fn check_udp(pseudo: u64, datagram: &[u8]) -> UdpCheck {
    let Some(f) = datagram.get(6..8) else {
        return UdpCheck::Bad;
    };
    let stored = u16::from_be_bytes([f[0], f[1]]);
    if stored == 0 {
        return UdpCheck::Absent;
    }
    let data = sum_bytes(datagram);
    if fold(pseudo + data) == 0xffff {
        return UdpCheck::Valid;
    }
    if stored == fold(pseudo) {
        // As the NIC does it: sum from the UDP header on, seeded by the
        // field's pseudo-header sum.
        return UdpCheck::Partial(match !fold(data) {
            0 => 0xffff,
            c => c,
        });
    }
    UdpCheck::Bad
}

/// Full checksum of `data` plus an initial accumulator (pseudo-header).
pub fn checksum(initial: u64, data: &[u8]) -> u16 {
    !fold(initial + sum_bytes(data))
}

/// Changed words of one rewrite, applied to any number of checksums.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delta(u64);

impl Delta {
    pub const ZERO: Delta = Delta(0);

    /// Records that the 16-bit word `old` became `new`.
    #[inline]
    pub fn word(&mut self, old: u16, new: u16) {
        self.0 += u64::from(!old) + u64::from(new);
    }

    /// Records that the 16-bit field at byte `offset` of the checksummed data
    /// changed. At an odd offset the field straddles two checksum words, and
    /// contributes its bytes swapped.
    #[inline]
    pub fn word_at(&mut self, offset: usize, old: u16, new: u16) {
        if offset.is_multiple_of(2) {
            self.word(old, new);
        } else {
            self.word(old.swap_bytes(), new.swap_bytes());
        }
    }

    /// Records that an even-length run of bytes changed (addresses, MACs).
    /// Both slices must start at an even offset of the checksummed data.
    #[inline]
    pub fn bytes(&mut self, old: &[u8], new: &[u8]) {
        debug_assert_eq!(old.len(), new.len());
        for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
            self.word(
                u16::from_be_bytes([o[0], o[1]]),
                u16::from_be_bytes([n[0], n[1]]),
            );
        }
    }

    /// Merges another delta (a field covered by both checksums).
    #[inline]
    pub fn add(&mut self, other: Delta) {
        self.0 += other.0;
    }

    pub fn is_zero(&self) -> bool {
        self.0 == 0
    }

    /// Applies the delta to a checksum as stored in a header.
    #[inline]
    pub fn apply(self, csum: u16) -> u16 {
        if self.0 == 0 {
            return csum;
        }
        !fold(u64::from(!csum) + self.0)
    }

    /// Applies the delta to a UDP checksum: 0 means "no checksum" over IPv4
    /// and must stay 0, and a computed 0 is sent as 0xffff (RFC 768).
    #[inline]
    pub fn apply_udp(self, csum: u16) -> u16 {
        if csum == 0 {
            return 0;
        }
        match self.apply(csum) {
            0 => 0xffff,
            c => c,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // An IPv4 header (UDP, 192.168.0.1 -> 192.168.0.199) with its checksum
    // field zero; its checksum is 0xb861.
    const HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn full_checksum_of_known_header() {
        assert_eq!(checksum(0, &HDR), 0xb861);
    }

    #[test]
    fn incremental_equals_full() {
        let mut h = HDR;
        let c = checksum(0, &h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        let mut d = Delta::ZERO;
        d.bytes(&h[16..20], &[10, 1, 2, 3]);
        d.word(u16::from_be_bytes([h[8], h[9]]), 0x3f11);
        h[16..20].copy_from_slice(&[10, 1, 2, 3]);
        h[8..10].copy_from_slice(&0x3f11u16.to_be_bytes());
        let inc = d.apply(c);
        h[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(inc, checksum(0, &h));
    }

    #[test]
    fn udp_zero_checksum_stays_zero_and_computed_zero_is_ffff() {
        let mut d = Delta::ZERO;
        d.word(1, 2);
        assert_eq!(d.apply_udp(0), 0);
        // ~0xfffe + ~1 + 2: result folds to 0x0000 -> sent as 0xffff.
        let mut d = Delta::ZERO;
        d.word(0x0000, 0x0001);
        assert_eq!(d.apply(0x0001), 0x0000);
        assert_eq!(d.apply_udp(0x0001), 0xffff);
        let mut d = Delta::ZERO;
        d.word(0x0001, 0x0000);
        assert_eq!(d.apply_udp(0xfffe), 0xffff);
    }

    #[test]
    fn odd_offset_fields() {
        let mut data = [1u8, 2, 3, 4, 5, 6, 7];
        let c = checksum(0, &data);
        let mut d = Delta::ZERO;
        d.word_at(3, u16::from_be_bytes([4, 5]), 0xabcd);
        data[3..5].copy_from_slice(&0xabcdu16.to_be_bytes());
        assert_eq!(d.apply(c), checksum(0, &data));
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum_bytes(&[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
        assert_eq!(
            fold(sum_bytes(&[0xff, 0xff, 0xff, 0xff, 0x00, 0x01])),
            fold(0xffff + 0xffff + 0x0001)
        );
    }

    /// A UDP datagram 10.0.0.1:12345 -> 10.0.0.2:53 with 5 payload bytes,
    /// and its pseudo-header sum.
    fn datagram() -> (u64, Vec<u8>) {
        let d = vec![0x30, 0x39, 0x00, 0x35, 0x00, 0x0d, 0, 0, 1, 2, 3, 4, 5];
        let pseudo = sum_bytes(&[10, 0, 0, 1, 10, 0, 0, 2]) + 17 + 13;
        let from_addrs = pseudo_header(
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            17,
            13,
        );
        assert_eq!(fold(from_addrs), fold(pseudo));
        (pseudo, d)
    }

    #[test]
    fn udp_checks_valid_absent_partial_and_bad() {
        let (pseudo, mut d) = datagram();
        assert_eq!(check_udp(pseudo, &d), UdpCheck::Absent);
        let full = checksum(pseudo, &d);
        d[6..8].copy_from_slice(&full.to_be_bytes());
        assert_eq!(check_udp(pseudo, &d), UdpCheck::Valid);
        // What a kernel with TX offload leaves in the field.
        d[6..8].copy_from_slice(&fold(pseudo).to_be_bytes());
        assert_eq!(check_udp(pseudo, &d), UdpCheck::Partial(full));
        // One flipped payload bit: neither valid nor the partial signature.
        d[6..8].copy_from_slice(&full.to_be_bytes());
        d[10] ^= 0x40;
        assert_eq!(check_udp(pseudo, &d), UdpCheck::Bad);
        assert_eq!(check_udp(pseudo, &d[..5]), UdpCheck::Bad);
    }
}
