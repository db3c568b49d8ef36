//! The two rtnetlink questions the frame data plane asks the kernel: which
//! interface and next hop a backend is reached through (`ip route get`), and
//! which MAC that next hop has (`ip neigh`). Raw netlink over libc: two
//! request shapes do not justify a netlink crate.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::snapshot::Mac;

const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const IFLA_ADDRESS: u16 = 1;
const IFLA_MTU: u16 = 4;
const IFLA_NUM_RX_QUEUES: u16 = 32;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// Neighbour states whose link-layer address can be used.
const NUD_USABLE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;

/// How the kernel reaches an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub ifindex: u32,
    /// The gateway, or the destination itself when it is on-link.
    pub next_hop: IpAddr,
    pub prefsrc: Option<IpAddr>,
}

/// What RTM_GETLINK tells of an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub mac: Option<Mac>,
    /// Receive queues the driver allocated (not how many are in use).
    pub rx_allocated: u32,
    pub mtu: u32,
}

pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

fn family(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn ip_from(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

fn push_attr(msg: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = 4 + data.len();
    msg.extend_from_slice(&(len as u16).to_ne_bytes());
    msg.extend_from_slice(&ty.to_ne_bytes());
    msg.extend_from_slice(data);
    msg.resize(msg.len().next_multiple_of(4), 0);
}

/// Route attributes `(type, payload)` after a fixed header of `skip` bytes.
fn attrs(body: &[u8], skip: usize) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = body.get(skip..).unwrap_or(&[]);
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let ty = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            return None;
        }
        let data = &rest[4..len];
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        Some((ty, data))
    })
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: valid fd and option buffer of the declared size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as u32,
            )
        };
        Ok(Netlink {
            fd,
            seq: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Sends one request and calls `each(type, body)` for every reply message
    /// until the kernel is done (a dump) or has answered (a plain request).
    fn ask(
        &mut self,
        ty: u16,
        flags: u16,
        body: &[u8],
        mut each: impl FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut msg = Vec::with_capacity(NLMSG_HDR + body.len());
        msg.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&ty.to_ne_bytes());
        msg.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        // SAFETY: valid fd; msg outlives the call. The kernel is the default
        // destination of an unbound netlink socket.
        let sent = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let dump = flags & NLM_F_DUMP != 0;
        loop {
            // SAFETY: valid fd, buffer of the given length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut rest = &self.buf[..n as usize];
            while rest.len() >= NLMSG_HDR {
                let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
                let mty = u16::from_ne_bytes([rest[4], rest[5]]);
                let mseq = u32::from_ne_bytes(rest[8..12].try_into().unwrap());
                if len < NLMSG_HDR || len > rest.len() {
                    return Err(io::Error::other("malformed netlink reply"));
                }
                let body = &rest[NLMSG_HDR..len];
                rest = rest.get(len.next_multiple_of(4)..).unwrap_or(&[]);
                if mseq != seq {
                    continue; // a late reply to an earlier request
                }
                match mty {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let code = i32::from_ne_bytes(body[0..4].try_into().unwrap_or([0; 4]));
                        return if code == 0 {
                            Ok(())
                        } else {
                            Err(io::Error::from_raw_os_error(-code))
                        };
                    }
                    _ => {
                        each(mty, body);
                        if !dump {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// The link-layer address and receive-queue count of interface
    /// `ifindex` (`ip link show`). Asked over netlink, not read from /sys:
    /// /sys shows the namespace it was mounted in, a socket the namespace
    /// of the thread that opened it.
    /// The link's MAC, allocated receive queues and MTU.
    pub fn link(&mut self, ifindex: u32) -> io::Result<Link> {
        // struct ifinfomsg: family, pad, type(2), index(4), flags(4), change(4)
        let mut body = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
        body.extend_from_slice(&(ifindex as i32).to_ne_bytes());
        body.extend_from_slice(&[0; 8]);
        let mut out = Link {
            mac: None,
            rx_allocated: 1,
            mtu: 1500,
        };
        self.ask(RTM_GETLINK, 0, &body, |ty, b| {
            if ty != RTM_NEWLINK {
                return;
            }
            for (t, d) in attrs(b, 16) {
                match t {
                    IFLA_ADDRESS if d.len() == 6 => out.mac = Some(<Mac>::try_from(d).unwrap()),
                    IFLA_NUM_RX_QUEUES if d.len() == 4 => {
                        out.rx_allocated = u32::from_ne_bytes(d.try_into().unwrap()).max(1)
                    }
                    IFLA_MTU if d.len() == 4 => out.mtu = u32::from_ne_bytes(d.try_into().unwrap()),
                    _ => {}
                }
            }
        })?;
        Ok(out)
    }

    /// `ip route get ADDR`.
    pub fn route_get(&mut self, dst: IpAddr) -> io::Result<Route> {
        let bits = if dst.is_ipv4() { 32 } else { 128 };
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type; flags u32
        let mut body = vec![family(dst), bits, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        push_attr(&mut body, RTA_DST, &ip_bytes(&dst));
        let mut route = None;
        self.ask(RTM_GETROUTE, 0, &body, |ty, b| {
            if ty != RTM_NEWROUTE {
                return;
            }
            let (mut oif, mut gw, mut src) = (None, None, None);
            for (t, d) in attrs(b, 12) {
                match t {
                    RTA_OIF if d.len() == 4 => {
                        oif = Some(u32::from_ne_bytes(d.try_into().unwrap()))
                    }
                    RTA_GATEWAY => gw = ip_from(d),
                    RTA_PREFSRC => src = ip_from(d),
                    _ => {}
                }
            }
            route = oif.map(|ifindex| Route {
                ifindex,
                next_hop: gw.unwrap_or(dst),
                prefsrc: src,
            });
        })?;
        route.ok_or_else(|| io::Error::other(format!("no route to {dst}")))
    }

    /// The usable link-layer address of `ip` on interface `ifindex`, if the
    /// kernel has one.
    pub fn neighbour(&mut self, ifindex: u32, ip: IpAddr) -> io::Result<Option<Mac>> {
        // struct ndmsg: family, pad1, pad2(2), ifindex(4), state(2), flags, type
        let mut body = vec![family(ip), 0, 0, 0];
        body.extend_from_slice(&(ifindex as i32).to_ne_bytes());
        body.extend_from_slice(&[0, 0, 0, 0]);
        let want = ip_bytes(&ip);
        let mut found = None;
        self.ask(RTM_GETNEIGH, NLM_F_DUMP, &body, |ty, b| {
            if ty != RTM_NEWNEIGH || b.len() < 12 {
                return;
            }
            let idx = i32::from_ne_bytes(b[4..8].try_into().unwrap()) as u32;
            let state = u16::from_ne_bytes([b[8], b[9]]);
            if idx != ifindex || state & NUD_USABLE == 0 {
                return;
            }
            let (mut dst, mut ll) = (None, None);
            for (t, d) in attrs(b, 12) {
                match t {
                    NDA_DST => dst = Some(d),
                    NDA_LLADDR if d.len() == 6 => ll = Some(<Mac>::try_from(d).unwrap()),
                    _ => {}
                }
            }
            if dst == Some(&want[..]) {
                found = ll.or(found);
            }
        })?;
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_walked_with_padding_and_bad_lengths_stop_the_walk() {
        let mut m = vec![0u8; 12];
        push_attr(&mut m, RTA_OIF, &7u32.to_ne_bytes());
        push_attr(&mut m, RTA_GATEWAY, &[10, 0, 0, 1]);
        push_attr(&mut m, 99, &[1, 2, 3]); // padded to 8
        push_attr(&mut m, RTA_PREFSRC, &[10, 0, 0, 2]);
        let got: Vec<(u16, Vec<u8>)> = attrs(&m, 12).map(|(t, d)| (t, d.to_vec())).collect();
        assert_eq!(got.len(), 4);
        assert_eq!(got[1], (RTA_GATEWAY, vec![10, 0, 0, 1]));
        assert_eq!(got[2], (99, vec![1, 2, 3]));
        assert_eq!(got[3], (RTA_PREFSRC, vec![10, 0, 0, 2]));
        // A length past the end ends the walk instead of reading out of bounds.
        let mut bad = vec![0u8; 12];
        bad.extend_from_slice(&200u16.to_ne_bytes());
        bad.extend_from_slice(&1u16.to_ne_bytes());
        assert_eq!(attrs(&bad, 12).count(), 0);
        assert_eq!(attrs(&[0u8; 3], 12).count(), 0);
    }

    #[test]
    fn loopback_route_and_no_neighbour_for_it() {
        let mut nl = Netlink::open().unwrap();
        let r = nl.route_get("127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(r.next_hop, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert!(r.ifindex > 0);
        assert_eq!(nl.neighbour(r.ifindex, r.next_hop).unwrap(), None);
    }
}
