//! The few raw syscalls the socket data plane needs that std and socket2 do
//! not offer: epoll, recvmmsg, sendmmsg, and reading the source address
//! the kernel wrote into a receive header (socket2's `SockAddr::new` over a
//! raw buffer is itself unsafe, so that one cast stays here; destinations
//! are `socket2::SockAddr`).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use socket2::SockAddr;

pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall; the returned fd is owned below.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll { fd })
    }

    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: ev lives across the call; fds are valid.
        let r = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout_ms`; returns the number of events filled in.
    pub fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> usize {
        // SAFETY: the buffer is valid for events.len() entries.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                timeout_ms,
            )
        };
        n.max(0) as usize
    }
}

pub fn empty_storage() -> libc::sockaddr_storage {
    // SAFETY: all-zero is a valid sockaddr_storage.
    unsafe { zeroed() }
}

pub fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: family says this storage holds a sockaddr_in.
            let a: &libc::sockaddr_in = unsafe { &*(s as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: family says this storage holds a sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*(s as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Receive buffers and headers for one recvmmsg batch, reused forever so the
/// loop allocates nothing.
pub struct RecvBatch {
    pub buf_size: usize,
    bufs: Vec<u8>,
    names: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside point into the batch's own vectors and are
// rebuilt before every syscall; the batch moves between threads only whole.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub fn new(n: usize, buf_size: usize) -> RecvBatch {
        RecvBatch {
            buf_size,
            bufs: vec![0u8; n * buf_size],
            names: vec![empty_storage(); n],
            // SAFETY: a zeroed iovec is valid (null pointer, zero length).
            iovs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            // SAFETY: a zeroed mmsghdr is valid (null pointers, zero lengths).
            hdrs: (0..n).map(|_| unsafe { zeroed() }).collect(),
        }
    }

    /// Receives up to a batch without blocking. Ok(0): nothing waiting.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let n = self.hdrs.len();
        for i in 0..n {
            self.iovs[i] = libc::iovec {
                // SAFETY: in bounds: i < n and bufs holds n * buf_size bytes.
                iov_base: unsafe { self.bufs.as_mut_ptr().add(i * self.buf_size) } as *mut _,
                iov_len: self.buf_size,
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = &mut self.names[i] as *mut _ as *mut _;
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points at live buffers owned by self.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(0),
                _ => Err(e),
            };
        }
        Ok(r as usize)
    }

    pub fn len(&self, i: usize) -> usize {
        self.hdrs[i].msg_len as usize
    }

    pub fn truncated(&self, i: usize) -> bool {
        self.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0
    }

    pub fn source(&self, i: usize) -> Option<SocketAddr> {
        from_storage(&self.names[i])
    }

    pub fn buf_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i * self.buf_size..(i + 1) * self.buf_size]
    }

    pub fn buf(&self, i: usize) -> &[u8] {
        &self.bufs[i * self.buf_size..(i + 1) * self.buf_size]
    }
}

/// One datagram to send from a received buffer.
#[derive(Clone, Copy, Debug)]
pub struct Out {
    /// Which socket sends it (the caller's key).
    pub key: u64,
    pub msg: u16,
    pub len: u32,
    /// None on a connected socket.
    pub dest: Option<SocketAddr>,
}

/// Header space for sendmmsg runs, reused forever.
pub struct SendBatch {
    /// Destinations, converted by socket2 (no hand-written sockaddr casts).
    names: Vec<SockAddr>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: as for RecvBatch.
unsafe impl Send for SendBatch {}

impl SendBatch {
    pub fn new(n: usize) -> SendBatch {
        SendBatch {
            names: vec![SockAddr::from(SocketAddr::from(([0, 0, 0, 0], 0))); n],
            // SAFETY: a zeroed iovec is valid (null pointer, zero length).
            iovs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            // SAFETY: a zeroed mmsghdr is valid (null pointers, zero lengths).
            hdrs: (0..n).map(|_| unsafe { zeroed() }).collect(),
        }
    }

    /// Sends `outs` (all for socket `fd`) from `rb`'s buffers. Calls
    /// `failed(out, error)` for each datagram the kernel refused; never blocks.
    pub fn send(
        &mut self,
        fd: RawFd,
        rb: &RecvBatch,
        outs: &[Out],
        mut failed: impl FnMut(&Out, io::Error),
    ) {
        let mut start = 0;
        while start < outs.len() {
            let run = &outs[start..(start + self.hdrs.len()).min(outs.len())];
            for (j, o) in run.iter().enumerate() {
                self.iovs[j] = libc::iovec {
                    iov_base: rb.buf(usize::from(o.msg)).as_ptr() as *mut _,
                    iov_len: o.len as usize,
                };
                let h = &mut self.hdrs[j].msg_hdr;
                match &o.dest {
                    Some(d) => {
                        self.names[j] = SockAddr::from(*d);
                        h.msg_namelen = self.names[j].len();
                        h.msg_name = self.names[j].as_ptr() as *mut _;
                    }
                    None => {
                        h.msg_name = std::ptr::null_mut();
                        h.msg_namelen = 0;
                    }
                }
                h.msg_iov = &mut self.iovs[j];
                h.msg_iovlen = 1;
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
                h.msg_flags = 0;
            }
            // SAFETY: headers point at live buffers for the call's duration.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs.as_mut_ptr(),
                    run.len() as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if r < 0 {
                // The first datagram failed: report it and go on with the rest.
                failed(&run[0], io::Error::last_os_error());
                start += 1;
            } else {
                start += r as usize;
            }
        }
    }
}

/// Asks for `bytes` of receive and send buffer. As root (CAP_NET_ADMIN) the
/// FORCE variants pass `net.core.rmem_max`, so bursts queue instead of being
/// dropped by the kernel; otherwise take what the limit allows.
pub fn grow_buffers(fd: RawFd, bytes: usize) {
    let v = bytes.min(i32::MAX as usize) as libc::c_int;
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        let set = |opt| {
            // SAFETY: setsockopt with a valid int option value.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    &v as *const _ as *const libc::c_void,
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            }
        };
        if set(force) != 0 {
            set(plain);
        }
    }
}

/// One ICMP error the kernel queued on a socket with IP_RECVERR: the
/// destination of the datagram it was about, and the errno it maps to.
#[derive(Debug, PartialEq, Eq)]
pub struct QueuedError {
    pub dest: SocketAddr,
    pub errno: i32,
}

/// Turns on IP_RECVERR (and IPV6_RECVERR on an IPv6 socket): an
/// unconnected UDP socket then hears the ICMP errors its datagrams caused,
/// on its error queue, instead of nothing.
pub fn enable_recverr(fd: RawFd, v6: bool) -> io::Result<()> {
    let one: libc::c_int = 1;
    let mut opts = vec![(libc::SOL_IP, libc::IP_RECVERR)];
    if v6 {
        opts.push((libc::SOL_IPV6, libc::IPV6_RECVERR));
    }
    for (level, opt) in opts {
        // SAFETY: setsockopt with a valid int option value.
        let r = unsafe {
            libc::setsockopt(
                fd,
                level,
                opt,
                &one as *const _ as *const libc::c_void,
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Reads one entry of the socket's error queue (`None`: the queue is
/// empty). The quoted payload is read into `buf` and not used.
pub fn recv_error(fd: RawFd, buf: &mut [u8]) -> Option<QueuedError> {
    let mut name = empty_storage();
    let mut ctrl = [0u64; 64];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut _,
        iov_len: buf.len(),
    };
    // SAFETY: all-zero is a valid msghdr; the pointers set below outlive the call.
    let mut h: libc::msghdr = unsafe { zeroed() };
    h.msg_name = &mut name as *mut _ as *mut _;
    h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    h.msg_iov = &mut iov;
    h.msg_iovlen = 1;
    h.msg_control = ctrl.as_mut_ptr() as *mut _;
    h.msg_controllen = std::mem::size_of_val(&ctrl) as _;
    // SAFETY: the header points at live buffers for the call's duration.
    let r = unsafe { libc::recvmsg(fd, &mut h, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
    if r < 0 {
        return None;
    }
    let dest = from_storage(&name)?;
    let mut errno = 0;
    // SAFETY: CMSG_* walk the control buffer the kernel just filled, within
    // the length it reported.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&h);
        while !c.is_null() {
            let (level, ty) = ((*c).cmsg_level, (*c).cmsg_type);
            if (level == libc::SOL_IP && ty == libc::IP_RECVERR)
                || (level == libc::SOL_IPV6 && ty == libc::IPV6_RECVERR)
            {
                let e =
                    std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::sock_extended_err);
                errno = e.ee_errno as i32;
            }
            c = libc::CMSG_NXTHDR(&h, c);
        }
    }
    Some(QueuedError { dest, errno })
}
