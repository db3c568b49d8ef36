//! The core over whole Ethernet frames (the AF_XDP data plane): parse
//! L2–L4, hand the DNS message to [`Core`], rewrite MACs, addresses, ports and
//! checksums in place so the frame leaves from the buffer it arrived in.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::core::{AnswerOutcome, Client, Core, QueryOutcome};
use crate::snapshot::{Backend, Mac, Snapshot};
use crate::stats::DropReason;
use crate::stats::WorkerStats;
use crate::wire::checksum::{self, Delta, UdpCheck};
use crate::wire::{ether, icmp, ipv4, ipv6, udp};

pub mod resend;
mod unreachable;

/// TTL / hop limit of every packet the engine sends: the client must not see
/// the hop count of the backend leg, nor the backend the client's.
pub const TTL: u8 = 64;

/// What the frame data plane knows about itself.
pub struct FrameEnv {
    pub local_mac: Mac,
    /// Source addresses toward backends, per family.
    pub src_v4: Option<Ipv4Addr>,
    pub src_v6: Option<Ipv6Addr>,
    /// UDP port number of each global in-flight port.
    port_numbers: Vec<u16>,
    /// Global in-flight port of each UDP port number (`u32::MAX`: not ours).
    port_of: Box<[u32]>,
}

impl FrameEnv {
    pub fn new(
        local_mac: Mac,
        src_v4: Option<Ipv4Addr>,
        src_v6: Option<Ipv6Addr>,
        port_numbers: Vec<u16>,
    ) -> FrameEnv {
        let mut port_of = vec![u32::MAX; 65536].into_boxed_slice();
        for (i, &p) in port_numbers.iter().enumerate() {
            port_of[usize::from(p)] = i as u32;
        }
        FrameEnv {
            local_mac,
            src_v4,
            src_v6,
            port_numbers,
            port_of,
        }
    }

    /// True when `frame` is UDP to one of our backend-side ports on our own
    /// source address: an answer. Everything else is treated as a query (and
    /// dropped with its reason if it is neither). A peek, not a validation.
    #[inline]
    pub fn is_answer(&self, frame: &[u8]) -> bool {
        let ethertype = frame.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]]));
        let (dst_ip, port_off) = match ethertype {
            Some(ether::ETHERTYPE_IPV4) => (
                frame
                    .get(IP_OFF + 16..IP_OFF + 20)
                    .map(|b| IpAddr::from(<[u8; 4]>::try_from(b).unwrap())),
                IP_OFF + ipv4::HEADER_LEN + 2,
            ),
            Some(ether::ETHERTYPE_IPV6) => (
                frame
                    .get(IP_OFF + 24..IP_OFF + 40)
                    .map(|b| IpAddr::from(<[u8; 16]>::try_from(b).unwrap())),
                IP_OFF + ipv6::HEADER_LEN + 2,
            ),
            _ => return false,
        };
        let Some(port) = frame
            .get(port_off..port_off + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
        else {
            return false;
        };
        self.port_of[usize::from(port)] != u32::MAX
            && dst_ip.is_some_and(|ip| self.src_for(ip) == Some(ip))
    }

    /// What a received frame is, from a peek at its headers: ICMP(v6)
    /// (the XDP program sends only destination unreachable quoting our
    /// ports), an answer, or else a query.
    #[inline]
    pub fn kind(&self, frame: &[u8]) -> FrameKind {
        let ethertype = frame.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]]));
        let icmp = match ethertype {
            Some(ether::ETHERTYPE_IPV4) => frame.get(IP_OFF + 9) == Some(&icmp::PROTO_ICMP),
            Some(ether::ETHERTYPE_IPV6) => frame.get(IP_OFF + 6) == Some(&icmp::NEXT_ICMPV6),
            _ => false,
        };
        if icmp {
            FrameKind::Icmp
        } else if self.is_answer(frame) {
            FrameKind::Answer
        } else {
            FrameKind::Query
        }
    }

    /// The global in-flight port of UDP port `port`, if it is ours.
    pub fn port_index(&self, port: u16) -> Option<u32> {
        Some(self.port_of[usize::from(port)]).filter(|&p| p != u32::MAX)
    }

    /// UDP port number of each global in-flight port.
    pub fn port_numbers(&self) -> &[u16] {
        &self.port_numbers
    }

    fn src_for(&self, backend: IpAddr) -> Option<IpAddr> {
        match backend {
            IpAddr::V4(_) => self.src_v4.map(IpAddr::V4),
            IpAddr::V6(_) => self.src_v6.map(IpAddr::V6),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    Query,
    Answer,
    Icmp,
}

#[derive(Debug, PartialEq, Eq)]
pub enum FrameVerdict {
    /// Transmit the first `len` bytes of the buffer.
    Tx {
        len: usize,
    },
    Drop(DropReason),
}

/// Offsets and addresses of a parsed UDP frame.
#[derive(Clone, Copy, Debug)]
struct Parsed {
    v6: bool,
    udp_off: usize,
    payload_off: usize,
    payload_len: usize,
    src: SocketAddr,
    dst: SocketAddr,
}

const IP_OFF: usize = ether::HEADER_LEN;

fn parse(frame: &[u8]) -> Result<Parsed, DropReason> {
    let eth = ether::Frame::new_checked(frame).map_err(DropReason::from)?;
    let (v6, udp_off, udp_len, sip, dip) = match eth.ethertype() {
        ether::ETHERTYPE_IPV4 => {
            let ip = ipv4::Packet::new_checked(&frame[IP_OFF..])?;
            if ip.protocol() != ipv4::PROTO_UDP {
                return Err(DropReason::NotUdp);
            }
            let total = usize::from(ip.total_len());
            let udp_off = IP_OFF + ipv4::HEADER_LEN;
            (
                false,
                udp_off,
                total - ipv4::HEADER_LEN,
                IpAddr::V4(ip.src()),
                IpAddr::V4(ip.dst()),
            )
        }
        ether::ETHERTYPE_IPV6 => {
            let ip = ipv6::Packet::new_checked(&frame[IP_OFF..])?;
            let udp_off = IP_OFF + ipv6::HEADER_LEN;
            (
                true,
                udp_off,
                usize::from(ip.payload_len()),
                IpAddr::V6(ip.src()),
                IpAddr::V6(ip.dst()),
            )
        }
        _ => return Err(DropReason::NotIp),
    };
    let u = udp::Datagram::new_checked(&frame[udp_off..], udp_len)?;
    Ok(Parsed {
        v6,
        udp_off,
        payload_off: udp_off + udp::HEADER_LEN,
        payload_len: udp_len - udp::HEADER_LEN,
        src: SocketAddr::new(sip, u.src_port()),
        dst: SocketAddr::new(dip, u.dst_port()),
    })
}

/// Verifies the UDP checksum of a parsed frame as the kernel would before
/// the frame is forwarded: a partial one (a local sender with TX offload)
/// is completed in place, a wrong one dropped. Without this the engine would
/// forward a partial checksum, and the receiver's kernel drop it.
fn verify_udp(frame: &mut [u8], p: &Parsed, stats: &WorkerStats) -> Result<(), DropReason> {
    let udp_len = (p.payload_len + udp::HEADER_LEN) as u16;
    // From the addresses parse() already read: no second look at the IP header.
    let pseudo = checksum::pseudo_header(p.src.ip(), p.dst.ip(), ipv4::PROTO_UDP, udp_len);
    let end = p.udp_off + usize::from(udp_len);
    match checksum::check_udp(pseudo, &frame[p.udp_off..end]) {
        UdpCheck::Valid => Ok(()),
        UdpCheck::Absent if p.v6 => Err(DropReason::Udp6ZeroChecksum),
        UdpCheck::Absent => Ok(()),
        UdpCheck::Partial(c) => {
            frame[p.udp_off + 6..p.udp_off + 8].copy_from_slice(&c.to_be_bytes());
            stats.checksums_completed.inc();
            Ok(())
        }
        UdpCheck::Bad => Err(DropReason::BadChecksum),
    }
}

/// The frame data plane's veto on a picked backend (queries, ICMP
/// re-dispatch, re-sends alike): a frame is rewritten in place, so the
/// backend must be of the frame's family, we need a source address in it,
/// and its next hop's MAC must be known.
fn can_send(env: &FrameEnv, v6: bool) -> impl Fn(&Backend) -> Result<(), DropReason> + '_ {
    move |be| {
        if be.addr.is_ipv6() != v6 || env.src_for(be.addr.ip()).is_none() {
            return Err(DropReason::FamilyMismatch);
        }
        be.mac.map(|_| ()).ok_or(DropReason::NoNeighbour)
    }
}

/// Rewrites L2–L4 of a parsed frame in place; `payload` is the checksum
/// change inside the DNS message. Families of `src`/`dst` match `p.v6`.
fn rewrite(
    frame: &mut [u8],
    p: &Parsed,
    (smac, dmac): (Mac, Mac),
    src: SocketAddr,
    dst: SocketAddr,
    payload: Delta,
) {
    let mut e = ether::Frame::new_checked(&mut *frame).unwrap();
    e.set_src(smac);
    e.set_dst(dmac);
    let mut d = payload;
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(t)) => {
            let mut ip = ipv4::Packet::new_checked(&mut frame[IP_OFF..]).unwrap();
            d.add(ip.set_addrs(s, t));
            ip.set_ttl(TTL);
        }
        (IpAddr::V6(s), IpAddr::V6(t)) => {
            let mut ip = ipv6::Packet::new_checked(&mut frame[IP_OFF..]).unwrap();
            d.add(ip.set_addrs(s, t));
            ip.set_hop_limit(TTL);
        }
        _ => unreachable!("families checked by the caller"),
    }
    let udp_len = p.payload_len + udp::HEADER_LEN;
    let mut u = udp::Datagram::new_checked(&mut frame[p.udp_off..], udp_len).unwrap();
    d.add(u.set_ports(src.port(), dst.port()));
    u.apply_delta(d);
}

impl Core {
    /// A frame addressed to a frontend (VIP:port): the first `len` bytes of
    /// `frame`; the rest of the buffer is room for a reply the engine builds
    /// (a rule's spoofed answer).
    pub fn query_frame(
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
        let p = match parse(framed) {
            Ok(p) => p,
            Err(r) => return self.frame_drop(r),
        };
        let Some(fe) = snap.frontend_by_addr(p.dst) else {
            return self.frame_drop(DropReason::NotOurs);
        };
        if let Err(r) = verify_udp(&mut frame[..len], &p, self.stats()) {
            return self.frame_drop(r);
        }
        let client_mac = ether::Frame::new_checked(&*frame).unwrap().src();
        let local_mac = env.local_mac;
        let client = Client {
            ip: p.src.ip(),
            port: p.src.port(),
            mac: client_mac,
        };
        let v6 = p.v6;
        // A reply may grow up to the largest UDP datagram the frame can carry.
        let room = frame.len().min(p.udp_off + 65535);
        let msg = &mut frame[p.payload_off..room];
        let out = self.query(
            snap,
            fe.id,
            msg,
            p.payload_len,
            &client,
            now_ns,
            can_send(env, v6),
        );
        match out {
            QueryOutcome::Forward {
                backend,
                port,
                delta,
            } => {
                let be = snap.backend(backend).expect("picked from this snapshot");
                let Some(&sport) = env.port_numbers.get(port as usize) else {
                    // An environment with fewer ports than the table: a wiring
                    // bug, but one that costs a query, not the worker.
                    let id = u16::from_be_bytes([frame[p.payload_off], frame[p.payload_off + 1]]);
                    self.table().cancel(port, id);
                    return self.frame_drop(DropReason::NotOurs);
                };
                let src = SocketAddr::new(env.src_for(be.addr.ip()).expect("checked"), sport);
                let macs = (local_mac, be.mac.expect("checked"));
                rewrite(frame, &p, macs, src, be.addr, delta);
                let len = p.payload_off + p.payload_len;
                if let Some(r) = self.resend_ring() {
                    r.keep(port, backend, now_ns, &frame[..len]);
                }
                FrameVerdict::Tx { len }
            }
            QueryOutcome::Reply { len } => FrameVerdict::Tx {
                len: reply_in_place(frame, &p, (local_mac, client_mac), len),
            },
            QueryOutcome::Drop(r) => FrameVerdict::Drop(r),
        }
    }

    /// A frame addressed to one of the engine's backend-side ports.
    pub fn answer_frame(
        &mut self,
        snap: &Snapshot,
        env: &FrameEnv,
        frame: &mut [u8],
        now_ns: u64,
    ) -> FrameVerdict {
        let p = match parse(frame) {
            Ok(p) => p,
            Err(r) => return self.frame_drop(r),
        };
        let Some(port) = env
            .port_index(p.dst.port())
            .filter(|_| env.src_for(p.dst.ip()) == Some(p.dst.ip()))
        else {
            return self.frame_drop(DropReason::NotOurs);
        };
        if let Err(r) = verify_udp(frame, &p, self.stats()) {
            return self.frame_drop(r);
        }
        let from = p.src;
        let msg = &mut frame[p.payload_off..p.payload_off + p.payload_len];
        let out = self.answer(msg, port, now_ns, |b| snap.answer_source_ok(b, from));
        match out {
            AnswerOutcome::ToClient { pending, delta } => {
                let Some(fe) = snap.frontend(pending.frontend) else {
                    return self.frame_drop(DropReason::FrontendGone);
                };
                if fe.listen.is_ipv6() != p.v6 || pending.client_ip.is_ipv6() != p.v6 {
                    return self.frame_drop(DropReason::FamilyMismatch);
                }
                let client = SocketAddr::new(pending.client_ip, pending.client_port);
                rewrite(
                    frame,
                    &p,
                    (env.local_mac, pending.client_mac),
                    fe.listen,
                    client,
                    delta,
                );
                FrameVerdict::Tx {
                    len: p.payload_off + p.payload_len,
                }
            }
            AnswerOutcome::Drop(r) => FrameVerdict::Drop(r),
        }
    }

    fn frame_drop(&self, r: DropReason) -> FrameVerdict {
        self.count_drop(r);
        FrameVerdict::Drop(r)
    }
}

/// Turns a query frame whose message the core rewrote into a `msg_len`-byte
/// reply back into a frame to the client: addresses swapped, lengths and the
/// UDP checksum recomputed (a rare path: a full sum is fine here).
fn reply_in_place(frame: &mut [u8], p: &Parsed, (smac, dmac): (Mac, Mac), msg_len: usize) -> usize {
    let udp_len = (udp::HEADER_LEN + msg_len) as u16;
    let mut e = ether::Frame::new_checked(&mut *frame).unwrap();
    e.set_src(smac);
    e.set_dst(dmac);
    let pseudo = match (p.dst.ip(), p.src.ip()) {
        (IpAddr::V4(vip), IpAddr::V4(client)) => {
            let mut ip = ipv4::Packet::new_checked(&mut frame[IP_OFF..]).unwrap();
            ip.set_addrs(vip, client);
            ip.set_ttl(TTL);
            ip.set_total_len(ipv4::HEADER_LEN as u16 + udp_len);
            ip.pseudo_header_sum(udp_len)
        }
        (IpAddr::V6(vip), IpAddr::V6(client)) => {
            let mut ip = ipv6::Packet::new_checked(&mut frame[IP_OFF..]).unwrap();
            ip.set_addrs(vip, client);
            ip.set_hop_limit(TTL);
            ip.set_payload_len(udp_len);
            ip.pseudo_header_sum(udp_len)
        }
        _ => unreachable!("one packet has one family"),
    };
    let end = p.udp_off + usize::from(udp_len);
    {
        let mut u =
            udp::Datagram::new_checked(&mut frame[p.udp_off..], p.payload_len + udp::HEADER_LEN)
                .unwrap();
        u.set_ports(p.dst.port(), p.src.port());
        u.set_len(udp_len);
        u.set_checksum(0);
    }
    let c = checksum::checksum(pseudo, &frame[p.udp_off..end]);
    let c = if c == 0 { 0xffff } else { c };
    frame[p.udp_off + 6..p.udp_off + 8].copy_from_slice(&c.to_be_bytes());
    end
}

#[cfg(test)]
mod tests;
