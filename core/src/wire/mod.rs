//! Zero-copy typed views over packet bytes, one file per protocol (the smoltcp
//! `wire` style): field offsets named once, getters over `AsRef<[u8]>`, in-place
//! setters over `AsMut<[u8]>` that return checksum deltas instead of
//! recomputing checksums.

pub mod checksum;
pub mod dns;
pub mod ether;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod udp;

/// Why bytes were refused by a view. Each maps to a named drop counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    Truncated,
    BadIpHeader,
    IpOptions,
    Fragment,
    NotUdp,
    UdpLength,
    QdCount,
    Compression,
    BadLabel,
    NameTooLong,
}
