//! The socket data plane: the worker loop of the design over kernel UDP
//! sockets. Per worker: one SO_REUSEPORT socket per frontend (the kernel
//! spreads clients over workers), and `ports_per_worker` unconnected
//! backend-side sockets on ports the kernel picks at random, shared by all
//! backends: each query leaves from one drawn at random (with a random
//! ID), so an off-path forger must guess both. Answers are accepted only
//! from the address their query went to. Datagrams are received in
//! recvmmsg batches, processed in place by the core and sent from the same
//! buffers with sendmmsg.

use std::io;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, warn};

use super::sys::{enable_recverr, grow_buffers, recv_error, Epoll, Out, RecvBatch, SendBatch};
use crate::core::{AnswerOutcome, Client, Core, QueryOutcome};
use crate::shared::Shared;
use crate::snapshot::{BackendId, Snapshot, MAX_BACKENDS, MAX_FRONTENDS};
use crate::stats::DropReason;

/// Largest UDP payload: answers are never cut by our buffers.
pub const BUF_SIZE: usize = 65535;
/// Epoll tokens with this bit name a frontend; without, a backend-side port.
const FRONT: u64 = 1 << 63;
/// How often the worker sweeps for timeouts and adopts a new snapshot when
/// idle, and looks for silent backends.
const TICK_MS: i32 = 10;
const SWEEP_NS: u64 = 50_000_000;
const SILENCE_NS: u64 = 10_000_000;
/// Frontend socket buffers: bursts of a DDoS should queue, not drop.
const SOCK_BUF: usize = 8 << 20;
/// Buffers of each backend-side socket: a worker's answers spread over all
/// of them, so together they get what one frontend socket gets, but never
/// less than this each.
const PORT_BUF_MIN: usize = 256 << 10;

/// Checks that nobody listens on `addr` and returns it with port 0
/// resolved: a plain socket (no SO_REUSEPORT) is bound there and closed.
/// Call once per address, before the workers bind. SO_REUSEPORT lets any
/// socket of the same user join a port, so without this check a second
/// engine on the same VIP would silently take a share of its queries. For
/// port 0 the kernel would even hand a new reuse-port socket a port that
/// another process's reuse-port sockets already hold; this plain socket
/// gets a port nobody holds. Between the close and the workers' binds
/// another socket could still take the port: a window of microseconds, not
/// the engine's whole life.
pub fn claim_frontend(addr: SocketAddr) -> io::Result<SocketAddr> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into()).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(
                e.kind(),
                format!("{addr} is in use by another socket (is another dnsrail running?)"),
            )
        } else {
            e
        }
    })?;
    s.local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("not an internet address"))
}

/// Opens a frontend socket: SO_REUSEPORT so every worker binds the same VIP.
pub fn bind_frontend(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    grow_buffers(s.as_raw_fd(), SOCK_BUF);
    s.bind(&addr.into())?;
    Ok(s)
}

/// One backend-side port: an unconnected socket on a port the kernel
/// draws from its ephemeral range. Dual-stack where the host has IPv6
/// (`v6`), else IPv4 only. ICMP errors for its datagrams are queued to it.
fn open_port(buf: usize) -> io::Result<(Socket, bool)> {
    let (s, v6) = match Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)) {
        Ok(s) => {
            s.set_only_v6(false)?;
            s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)).into())?;
            (s, true)
        }
        Err(_) => {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.bind(&SocketAddr::from(([0, 0, 0, 0], 0)).into())?;
            (s, false)
        }
    };
    s.set_nonblocking(true)?;
    grow_buffers(s.as_raw_fd(), buf);
    enable_recverr(s.as_raw_fd(), v6)?;
    Ok((s, v6))
}

/// Where a datagram to `addr` goes from a socket of this family (v4
/// addresses as v4-mapped on a dual-stack socket).
fn dest_for(addr: SocketAddr, v6: bool) -> SocketAddr {
    match (addr, v6) {
        (SocketAddr::V4(a), true) => {
            SocketAddr::V6(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0))
        }
        _ => addr,
    }
}

/// A received source as the configuration would write it.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

struct FrontSock {
    sock: Socket,
    addr: SocketAddr,
}

/// The addresses answers for a backend may come from: its current one,
/// and after a reload that moved it, the old one until the queries sent
/// there are over.
#[derive(Clone, Copy, Default)]
struct BackendAddrs {
    now: Option<SocketAddr>,
    before: Option<(SocketAddr, u64)>,
}

impl BackendAddrs {
    fn accepts(&self, src: SocketAddr, now_ns: u64) -> bool {
        self.now == Some(src)
            || self
                .before
                .is_some_and(|(a, until)| a == src && now_ns < until)
    }
}

pub struct SocketWorker {
    core: Core,
    shared: Arc<Shared>,
    epoll: Epoll,
    fronts: Vec<Option<FrontSock>>,
    /// Backend-side sockets by local port index.
    ports: Vec<Socket>,
    /// The port sockets are dual-stack (else IPv4 only).
    v6: bool,
    addrs: Vec<BackendAddrs>,
    port_base: u32,
    generation: u64,
    rb: RecvBatch,
    sb: SendBatch,
    outs: Vec<Out>,
    last_sweep: u64,
    last_silence: u64,
}

impl SocketWorker {
    /// `fronts` are the sockets the engine bound for this worker at start,
    /// so bind errors surface before the engine reports itself running;
    /// the backend-side ports open here, for the same reason.
    pub fn new(
        core: Core,
        shared: Arc<Shared>,
        batch: usize,
        fronts: Vec<(u16, Socket)>,
    ) -> io::Result<SocketWorker> {
        let worker = core.worker();
        let table = core.table().clone();
        let mut w = SocketWorker {
            core,
            shared,
            epoll: Epoll::new()?,
            fronts: (0..MAX_FRONTENDS).map(|_| None).collect(),
            ports: Vec::with_capacity(table.ports_per_worker()),
            v6: true,
            addrs: vec![BackendAddrs::default(); MAX_BACKENDS],
            port_base: table.port_index(worker, 0),
            generation: u64::MAX,
            rb: RecvBatch::new(batch, BUF_SIZE),
            sb: SendBatch::new(batch),
            outs: Vec::with_capacity(batch),
            last_sweep: 0,
            last_silence: 0,
        };
        let buf = (SOCK_BUF / table.ports_per_worker()).max(PORT_BUF_MIN);
        for local in 0..table.ports_per_worker() {
            let (sock, v6) = open_port(buf)
                .map_err(|e| io::Error::new(e.kind(), format!("backend-side port {local}: {e}")))?;
            w.v6 = v6;
            w.epoll.add(sock.as_raw_fd(), local as u64)?;
            w.ports.push(sock);
        }
        for (id, sock) in fronts {
            let addr = sock.local_addr()?.as_socket().expect("inet socket");
            w.epoll.add(sock.as_raw_fd(), FRONT | u64::from(id))?;
            w.fronts[usize::from(id)] = Some(FrontSock { sock, addr });
        }
        Ok(w)
    }

    pub fn run(mut self) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        while !self.shared.stop.load(Ordering::Relaxed) {
            let n = self.epoll.wait(&mut events, TICK_MS);
            let snap = self.shared.snapshot.load_full();
            if snap.generation != self.generation {
                self.reconcile(&snap);
            }
            self.core.begin_batch(&snap);
            for ev in &events[..n] {
                let token = ev.u64;
                if token & FRONT != 0 {
                    self.on_frontend((token & !FRONT) as u16, &snap);
                } else {
                    self.on_port(token as usize, &snap);
                }
            }
            let now = self.shared.now_ns();
            if now.saturating_sub(self.last_silence) >= SILENCE_NS {
                self.last_silence = now;
                self.core.check_silence(&snap, now);
            }
            if now.saturating_sub(self.last_sweep) >= SWEEP_NS {
                self.last_sweep = now;
                self.core.sweep(&snap, now);
            }
        }
    }

    /// Opens sockets for new frontends of a new snapshot, closes those it
    /// no longer has, and follows backends' addresses.
    fn reconcile(&mut self, snap: &Snapshot) {
        self.generation = snap.generation;
        let now = self.shared.now_ns();
        // Frontends: the engine resolved port 0 already; open what is new.
        for id in 0..MAX_FRONTENDS {
            let want = snap.frontend(id as u16).map(|f| f.listen);
            let have = self.fronts[id].as_ref().map(|f| f.addr);
            if want == have {
                continue;
            }
            self.fronts[id] = None;
            if let Some(addr) = want {
                match bind_frontend(addr).and_then(|s| {
                    self.epoll.add(s.as_raw_fd(), FRONT | id as u64)?;
                    Ok(s)
                }) {
                    Ok(sock) => self.fronts[id] = Some(FrontSock { sock, addr }),
                    Err(e) => warn!(worker = self.core.worker(), %addr, "cannot listen: {e}"),
                }
            }
        }
        // Backends: a moved one's answers from the old address still
        // count until its queries there have timed out.
        let until = now + snap.timeout_ns + 1_000_000_000;
        for (id, a) in self.addrs.iter_mut().enumerate() {
            let want = snap.backend(id as BackendId).map(|b| b.addr);
            if want != a.now {
                if let Some(old) = a.now {
                    a.before = Some((old, until));
                }
                a.now = want;
            }
        }
    }

    fn on_frontend(&mut self, id: u16, snap: &Snapshot) {
        let Some(fs) = self.fronts[usize::from(id)].as_ref() else {
            return;
        };
        let fd = fs.sock.as_raw_fd();
        let n = match self.rb.recv(fd) {
            Ok(n) => n,
            Err(e) => {
                debug!("frontend recv: {e}");
                return;
            }
        };
        let now = self.shared.now_ns();
        self.outs.clear();
        let v6 = self.v6;
        for i in 0..n {
            if self.rb.truncated(i) {
                self.core.count_drop(DropReason::Oversize);
                continue;
            }
            let Some(src) = self.rb.source(i) else {
                continue;
            };
            let len = self.rb.len(i);
            let client = Client {
                ip: src.ip(),
                port: src.port(),
                mac: [0; 6],
            };
            let buf = self.rb.buf_mut(i);
            // An IPv6 backend on a host without IPv6 sockets cannot be sent
            // to: refused before an in-flight slot is taken.
            let out = self.core.query(snap, id, buf, len, &client, now, |be| {
                if be.addr.is_ipv6() && !v6 {
                    Err(DropReason::SendFailed)
                } else {
                    Ok(())
                }
            });
            match out {
                QueryOutcome::Forward { port, backend, .. } => {
                    let Some(addr) = snap.backend(backend).map(|b| b.addr) else {
                        continue;
                    };
                    self.outs.push(Out {
                        key: u64::from(port - self.port_base),
                        msg: i as u16,
                        len: len as u32,
                        dest: Some(dest_for(addr, v6)),
                    });
                }
                QueryOutcome::Reply { len } => self.outs.push(Out {
                    key: FRONT | u64::from(id),
                    msg: i as u16,
                    len: len as u32,
                    dest: Some(src),
                }),
                QueryOutcome::Drop(_) => {}
            }
        }
        self.flush();
    }

    /// Datagrams (or queued ICMP errors) on backend-side port `local`.
    fn on_port(&mut self, local: usize, snap: &Snapshot) {
        let Some(sock) = self.ports.get(local) else {
            return;
        };
        let fd = sock.as_raw_fd();
        let port = self.port_base + local as u32;
        let n = match self.rb.recv(fd) {
            Ok(n) => n,
            Err(e) => {
                debug!(port = local, "backend-side recv: {e}");
                self.on_errors(local, snap);
                return;
            }
        };
        let now = self.shared.now_ns();
        self.outs.clear();
        for i in 0..n {
            if self.rb.truncated(i) {
                self.core.count_drop(DropReason::Oversize);
                continue;
            }
            let Some(src) = self.rb.source(i).map(canonical) else {
                continue;
            };
            let len = self.rb.len(i);
            let msg = &mut self.rb.buf_mut(i)[..len];
            // Unconnected: the source is checked here, against the address
            // the query went to.
            let addrs = &self.addrs;
            let ok = |b: BackendId| {
                addrs
                    .get(usize::from(b))
                    .is_some_and(|a| a.accepts(src, now))
            };
            match self.core.answer(msg, port, now, ok) {
                AnswerOutcome::ToClient { pending, .. } => {
                    let fid = pending.frontend;
                    if snap.frontend(fid).is_none() || self.fronts[usize::from(fid)].is_none() {
                        self.core.count_drop(DropReason::FrontendGone);
                        continue;
                    }
                    self.outs.push(Out {
                        key: FRONT | u64::from(fid),
                        msg: i as u16,
                        len: len as u32,
                        dest: Some(SocketAddr::new(pending.client_ip, pending.client_port)),
                    });
                }
                AnswerOutcome::Drop(_) => {}
            }
        }
        self.flush();
    }

    /// Drains the ICMP errors queued on a port: a backend's host (or a
    /// router) answered one of our queries with destination unreachable.
    /// The backend it names is taken out. The query is not re-sent here
    /// (the queue's copy of it may be cut short): it times out.
    fn on_errors(&mut self, local: usize, snap: &Snapshot) {
        let Some(sock) = self.ports.get(local) else {
            return;
        };
        let fd = sock.as_raw_fd();
        let now = self.shared.now_ns();
        // Bounded: a flood of errors is read in the next rounds.
        for _ in 0..64 {
            let Some(err) = recv_error(fd, self.rb.buf_mut(0)) else {
                return;
            };
            let dest = canonical(err.dest);
            let unreachable = matches!(
                err.errno,
                libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH
            );
            let backend = snap.live_backends().find(|b| b.addr == dest).map(|b| b.id);
            match backend {
                Some(b) if unreachable => self.core.backend_refused(snap, b, now),
                Some(b) => self.core.stats().backends[usize::from(b)].errors.inc(),
                None => {}
            }
            debug!(%dest, errno = err.errno, "ICMP error on a backend-side port");
        }
    }

    /// Sends everything queued by the batch, one sendmmsg run per socket.
    fn flush(&mut self) {
        if self.outs.is_empty() {
            return;
        }
        // Unstable: no allocation at any batch size (a stable sort
        // allocates above a few dozen elements); datagrams to one socket
        // need no particular order.
        self.outs.sort_unstable_by_key(|o| o.key);
        let mut start = 0;
        while start < self.outs.len() {
            let key = self.outs[start].key;
            let end = start
                + self.outs[start..]
                    .iter()
                    .take_while(|o| o.key == key)
                    .count();
            let run = &self.outs[start..end];
            start = end;
            let (fd, port) = if key & FRONT != 0 {
                match self.fronts[(key & !FRONT) as usize].as_ref() {
                    Some(f) => (f.sock.as_raw_fd(), None),
                    None => continue,
                }
            } else {
                match self.ports.get(key as usize) {
                    Some(s) => (s.as_raw_fd(), Some(self.port_base + key as u32)),
                    None => continue,
                }
            };
            let (core, rb) = (&self.core, &self.rb);
            self.sb.send(fd, rb, run, |o, e| {
                core.count_drop(DropReason::SendFailed);
                if let Some(port) = port {
                    // Free the slot: this query will get neither answer nor
                    // timeout, and must not count against the backend's
                    // health as one.
                    let b = rb.buf(usize::from(o.msg));
                    let id = u16::from_be_bytes([b[0], b[1]]);
                    if let Some(p) = core.table().take(port, id, |_| true) {
                        core.stats().backends[usize::from(p.backend)].errors.inc();
                    }
                }
                debug!("send failed: {e}");
            });
        }
    }
}
