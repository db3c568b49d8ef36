//! The AF_XDP plane's slow path: answers the XDP program leaves to the
//! kernel. A backend's answer that arrives as IPv4 fragments (a DNSSEC
//! answer with EDNS clamping off), with IPv4 options, or behind IPv6
//! extension headers is passed, reassembled by the kernel, and delivered to
//! the socket that reserves its engine port. This thread reads those
//! sockets, completes the answer through the same in-flight table as the
//! workers, and sends it to the client from its frontend address through a
//! raw socket, so the kernel fragments it again where it must. No answer is
//! lost, nor charged to its backend as a timeout, because of its shape.
//!
//! Off the workers' rings and the hot path: this is the rare case, and one
//! blocking thread with its own counters serves every port.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};

use crate::core::{AnswerOutcome, Core};
use crate::frame::FrameEnv;
use crate::io::sys::Epoll;
use crate::shared::Shared;
use crate::stats::DropReason;
use crate::wire::{checksum, udp};

/// Longest wait in epoll: bounds how late a stop is seen.
const WAIT_MS: i32 = 50;
/// Largest UDP payload.
const MAX_DGRAM: usize = 65535;

pub struct SlowPath {
    core: Core,
    shared: Arc<Shared>,
    epoll: Epoll,
    /// The reserved sockets (duplicates: the plane keeps the reservation),
    /// with their global in-flight port.
    socks: Vec<(UdpSocket, u32)>,
    /// Raw UDP sockets bound to a frontend address, made on first use.
    out: HashMap<IpAddr, Socket>,
    buf: Vec<u8>,
    pkt: Vec<u8>,
}

/// A raw UDP socket that sends from `src` and receives nothing: the kernel
/// gives a raw socket a copy of every UDP datagram it sees, and a filter
/// that accepts no byte keeps those copies from being queued at all.
fn raw_sender(src: IpAddr) -> io::Result<Socket> {
    let dom = if src.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(dom, Type::RAW, Some(Protocol::UDP))?;
    s.attach_filter(&[libc::sock_filter {
        code: 0x06, // BPF_RET | BPF_K: accept 0 bytes
        jt: 0,
        jf: 0,
        k: 0,
    }])?;
    s.bind(&SocketAddr::new(src, 0).into())?;
    Ok(s)
}

impl SlowPath {
    /// `reserved` are the plane's port sockets; `core` completes answers
    /// and counts them under its own stats.
    pub fn new(
        core: Core,
        shared: Arc<Shared>,
        env: &FrameEnv,
        reserved: &[UdpSocket],
    ) -> anyhow::Result<SlowPath> {
        let epoll = Epoll::new()?;
        let mut socks = Vec::new();
        for s in reserved {
            let port = s.local_addr()?.port();
            let Some(global) = env.port_index(port) else {
                continue;
            };
            let d = s.try_clone()?;
            d.set_nonblocking(true)?;
            epoll.add(d.as_raw_fd(), socks.len() as u64)?;
            socks.push((d, global));
        }
        Ok(SlowPath {
            core,
            shared,
            epoll,
            socks,
            out: HashMap::new(),
            buf: vec![0; MAX_DGRAM],
            pkt: Vec::with_capacity(MAX_DGRAM + udp::HEADER_LEN),
        })
    }

    pub fn run(mut self) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
        while !self.shared.stop.load(Ordering::Relaxed) {
            let n = self.epoll.wait(&mut events, WAIT_MS);
            for ev in events.iter().take(n) {
                let i = ev.u64 as usize;
                // Drain the socket: level-triggered, but one wake-up may
                // stand for several datagrams.
                while self.receive(i) {}
            }
        }
    }

    /// Reads and handles one datagram from socket `i`; false when none.
    fn receive(&mut self, i: usize) -> bool {
        let Some((sock, port)) = self.socks.get(i) else {
            return false;
        };
        let port = *port;
        let (n, from) = match sock.recv_from(&mut self.buf) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) => {
                // ICMP errors queued on the socket surface here; the data
                // path has nothing to do with them.
                tracing::debug!("slow path: receive: {e}");
                return true;
            }
        };
        self.handle(n, from, port);
        true
    }

    fn handle(&mut self, n: usize, from: SocketAddr, port: u32) {
        let snap = self.shared.snapshot.load_full();
        let now = self.shared.now_ns();
        let from = canonical(from);
        let out = self.core.answer(&mut self.buf[..n], port, now, |b| {
            snap.answer_source_ok(b, from)
        });
        let AnswerOutcome::ToClient { pending, .. } = out else {
            return; // counted by the core
        };
        let Some(fe) = snap.frontend(pending.frontend) else {
            self.core.count_drop(DropReason::FrontendGone);
            return;
        };
        let src = fe.listen;
        let dst = SocketAddr::new(pending.client_ip, pending.client_port);
        if src.is_ipv4() != dst.is_ipv4() {
            self.core.count_drop(DropReason::FamilyMismatch);
            return;
        }
        self.core.stats().answers_slow_path.inc();
        if let Err(e) = self.send(src, dst, n) {
            tracing::debug!("slow path: send to {dst}: {e}");
            self.core.count_drop(DropReason::SendFailed);
        }
    }

    /// Sends the first `n` bytes of `buf` as a UDP datagram `src` → `dst`.
    fn send(&mut self, src: SocketAddr, dst: SocketAddr, n: usize) -> io::Result<()> {
        let len = (udp::HEADER_LEN + n) as u16;
        self.pkt.clear();
        self.pkt.extend_from_slice(&src.port().to_be_bytes());
        self.pkt.extend_from_slice(&dst.port().to_be_bytes());
        self.pkt.extend_from_slice(&len.to_be_bytes());
        self.pkt.extend_from_slice(&[0, 0]);
        self.pkt.extend_from_slice(&self.buf[..n]);
        let pseudo = checksum::pseudo_header(src.ip(), dst.ip(), 17, len);
        let c = match checksum::checksum(pseudo, &self.pkt) {
            0 => 0xffff,
            c => c,
        };
        self.pkt[6..8].copy_from_slice(&c.to_be_bytes());
        let sock = match self.out.entry(src.ip()) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(raw_sender(src.ip())?),
        };
        // A raw socket's "port" is the protocol; the address is all it uses.
        sock.send_to(&self.pkt, &SocketAddr::new(dst.ip(), 0).into())?;
        Ok(())
    }
}

/// An IPv4 address as the IPv6 socket of a dual-stack reservation may
/// report it (::ffff:a.b.c.d) compares as the IPv4 address it is.
fn canonical(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_compare_as_ipv4() {
        let m: SocketAddr = "[::ffff:10.0.0.1]:53".parse().unwrap();
        assert_eq!(canonical(m), "10.0.0.1:53".parse().unwrap());
        let v6: SocketAddr = "[fd00::1]:53".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }
}
