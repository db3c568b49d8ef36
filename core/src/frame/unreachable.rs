//! ICMP destination unreachable for one of our queries, over whole frames:
//! find the quoted query's in-flight slot, let the core take the backend out,
//! and when the quote holds the whole query, turn the frame back into that
//! query and send it to another backend, so the client still gets its answer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{can_send, parse, rewrite, FrameEnv, FrameVerdict, IP_OFF};
use crate::core::{Core, IcmpOutcome};
use crate::snapshot::Snapshot;
use crate::stats::DropReason;
use crate::wire::{checksum, ether, icmp, ipv4, ipv6, udp};

/// The query an ICMP error quotes, as offsets into the frame.
#[derive(Debug, Clone, Copy)]
struct Quoted {
    /// The quoted IP header starts here; the datagram is `ip_len` long.
    ip_off: usize,
    ip_len: usize,
    /// The quoted DNS message: from `dns_off`, `dns_avail` bytes present,
    /// `dns_len` long in the original.
    dns_off: usize,
    dns_avail: usize,
    dns_len: usize,
    /// Our source port and the backend the query went to.
    sport: u16,
    backend: SocketAddr,
}

/// Parses an ICMP(v6) destination unreachable frame whose quote is a UDP
/// datagram we sent from `env`'s address. `NotOurs` for anything else (the
/// XDP program sends only these here; a stray one is counted, not acted on).
fn parse_error(frame: &[u8], env: &FrameEnv) -> Result<Quoted, DropReason> {
    let eth = ether::Frame::new_checked(frame).map_err(DropReason::from)?;
    let v6 = match eth.ethertype() {
        ether::ETHERTYPE_IPV4 => false,
        ether::ETHERTYPE_IPV6 => true,
        _ => return Err(DropReason::NotIp),
    };
    // The outer packet: from the backend's host (or a router) to us.
    let (icmp_off, icmp_len, pseudo) = if v6 {
        let b = &frame[IP_OFF..];
        if b.len() < ipv6::HEADER_LEN || b[0] >> 4 != 6 {
            return Err(DropReason::BadIpHeader);
        }
        if b[6] != icmp::NEXT_ICMPV6 {
            return Err(DropReason::NotOurs);
        }
        let len = usize::from(u16::from_be_bytes([b[4], b[5]]));
        if ipv6::HEADER_LEN + len > b.len() {
            return Err(DropReason::Truncated);
        }
        let src = Ipv6Addr::from(<[u8; 16]>::try_from(&b[8..24]).unwrap());
        let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&b[24..40]).unwrap());
        let pseudo = checksum::pseudo_header(src.into(), dst.into(), icmp::NEXT_ICMPV6, len as u16);
        (IP_OFF + ipv6::HEADER_LEN, len, pseudo)
    } else {
        let ip = ipv4::Packet::new_checked(&frame[IP_OFF..])?;
        if ip.protocol() != icmp::PROTO_ICMP {
            return Err(DropReason::NotOurs);
        }
        (
            IP_OFF + ipv4::HEADER_LEN,
            usize::from(ip.total_len()) - ipv4::HEADER_LEN,
            0,
        )
    };
    let msg = icmp::Message::new_checked(&frame[icmp_off..icmp_off + icmp_len])?;
    if !msg.is_unreachable(v6) {
        return Err(DropReason::NotOurs);
    }
    if !msg.checksum_ok(pseudo) {
        return Err(DropReason::BadChecksum);
    }
    let q = msg.quote();
    let ip_off = icmp_off + msg.quote_range().start;
    // The quoted header is ours: no options, no extension headers.
    let (ip_hdr, ip_len, src, dst) = if v6 {
        if q.len() < ipv6::HEADER_LEN || q[0] >> 4 != 6 || q[6] != ipv6::NEXT_UDP {
            return Err(DropReason::NotOurs);
        }
        let len = ipv6::HEADER_LEN + usize::from(u16::from_be_bytes([q[4], q[5]]));
        let s = Ipv6Addr::from(<[u8; 16]>::try_from(&q[8..24]).unwrap());
        let d = Ipv6Addr::from(<[u8; 16]>::try_from(&q[24..40]).unwrap());
        (ipv6::HEADER_LEN, len, IpAddr::V6(s), IpAddr::V6(d))
    } else {
        if q.len() < ipv4::HEADER_LEN || q[0] != 0x45 || q[9] != ipv4::PROTO_UDP {
            return Err(DropReason::NotOurs);
        }
        let len = usize::from(u16::from_be_bytes([q[2], q[3]]));
        let s = Ipv4Addr::from(<[u8; 4]>::try_from(&q[12..16]).unwrap());
        let d = Ipv4Addr::from(<[u8; 4]>::try_from(&q[16..20]).unwrap());
        (ipv4::HEADER_LEN, len, IpAddr::V4(s), IpAddr::V4(d))
    };
    if env.src_for(dst) != Some(src) {
        return Err(DropReason::NotOurs);
    }
    let u = q
        .get(ip_hdr..ip_hdr + udp::HEADER_LEN)
        .ok_or(DropReason::IcmpQuoteShort)?;
    let sport = u16::from_be_bytes([u[0], u[1]]);
    let dport = u16::from_be_bytes([u[2], u[3]]);
    let udp_len = usize::from(u16::from_be_bytes([u[4], u[5]]));
    if udp_len < udp::HEADER_LEN || ip_hdr + udp_len != ip_len {
        return Err(DropReason::UdpLength);
    }
    let dns_off = ip_off + ip_hdr + udp::HEADER_LEN;
    Ok(Quoted {
        ip_off,
        ip_len,
        dns_off,
        dns_avail: (q.len() - ip_hdr - udp::HEADER_LEN).min(udp_len - udp::HEADER_LEN),
        dns_len: udp_len - udp::HEADER_LEN,
        sport,
        backend: SocketAddr::new(dst, dport),
    })
}

impl Core {
    /// An ICMP(v6) destination unreachable the XDP program steered to us:
    /// `len` bytes of `frame`. Transmits the re-dispatched query from the
    /// same buffer when there is one.
    pub fn icmp_frame(
        &mut self,
        snap: &Snapshot,
        env: &FrameEnv,
        frame: &mut [u8],
        len: usize,
        now_ns: u64,
    ) -> FrameVerdict {
        let Some(framed) = frame.get(..len) else {
            return self.frame_drop(DropReason::Truncated);
        };
        let q = match parse_error(framed, env) {
            Ok(q) => q,
            Err(r) => return self.frame_drop(r),
        };
        let Some(port) = env.port_index(q.sport) else {
            return self.frame_drop(DropReason::NotOurs);
        };
        let complete = q.dns_avail == q.dns_len;
        let v6 = q.backend.is_ipv6();
        let out = {
            let quote = &mut frame[q.dns_off..q.dns_off + q.dns_avail];
            self.icmp_error(
                snap,
                port,
                quote,
                complete,
                now_ns,
                |b| snap.answer_source_ok(b, q.backend),
                can_send(env, v6),
            )
        };
        let (backend, port, delta) = match out {
            IcmpOutcome::Forward {
                backend,
                port,
                delta,
            } => (backend, port, delta),
            IcmpOutcome::Released(r) | IcmpOutcome::Drop(r) => return FrameVerdict::Drop(r),
        };
        // The quote is our query as it left (ID now the new slot's): move it
        // to where an IP packet starts and send it on like any query.
        frame.copy_within(q.ip_off..q.ip_off + q.ip_len, IP_OFF);
        let total = IP_OFF + q.ip_len;
        let (p, be, sport) = match (
            parse(&frame[..total]),
            snap.backend(backend),
            env.port_numbers().get(port as usize),
        ) {
            (Ok(p), Some(be), Some(&sport)) => (p, be, sport),
            _ => {
                // Cannot happen for a quote parse_error accepted; if it
                // does, the new slot must not wait for a timeout.
                let id =
                    u16::from_be_bytes([frame[total - q.dns_len], frame[total - q.dns_len + 1]]);
                self.table().cancel(port, id);
                return self.frame_drop(DropReason::RedispatchFailed);
            }
        };
        let src = SocketAddr::new(env.src_for(be.addr.ip()).expect("checked"), sport);
        let macs = (env.local_mac, be.mac.expect("checked"));
        rewrite(frame, &p, macs, src, be.addr, delta);
        if let Some(r) = self.resend_ring() {
            r.keep(port, backend, now_ns, &frame[..total]);
        }
        FrameVerdict::Tx { len: total }
    }
}
