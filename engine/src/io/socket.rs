//! The socket data plane: the worker loop of the design over kernel UDP
//! sockets. Per worker: one SO_REUSEPORT socket per frontend (the kernel
//! spreads clients over workers), `ports_per_backend` connected sockets per
//! backend (the kernel then drops datagrams from anyone but that backend, and
//! each socket is one in-flight port of 65 536 IDs). Datagrams are received
//! in recvmmsg batches, processed in place by the core and sent from the same
//! buffers with sendmmsg.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, warn};

use super::sys::{grow_buffers, Epoll, Out, RecvBatch, SendBatch};
use crate::core::{AnswerOutcome, Client, Core, QueryOutcome};
use crate::engine::Shared;
use crate::snapshot::{BackendId, Snapshot, MAX_BACKENDS, MAX_FRONTENDS};
use crate::stats::DropReason;

/// Largest UDP payload: answers are never cut by our buffers.
pub const BUF_SIZE: usize = 65535;
/// Epoll tokens with this bit name a frontend; without, a backend socket.
const FRONT: u64 = 1 << 63;
/// How often the worker sweeps for timeouts and adopts a new snapshot when
/// idle, and looks for silent backends.
const TICK_MS: i32 = 10;
const SWEEP_NS: u64 = 50_000_000;
const SILENCE_NS: u64 = 10_000_000;
/// Socket buffers we ask for: bursts of a DDoS should queue, not drop.
const SOCK_BUF: usize = 8 << 20;

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

fn connect_backend(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    grow_buffers(s.as_raw_fd(), SOCK_BUF);
    let any: SocketAddr = match addr.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    s.bind(&any.into())?;
    s.connect(&addr.into())?;
    Ok(s)
}

struct FrontSock {
    sock: Socket,
    addr: SocketAddr,
}

struct BackSock {
    sock: Socket,
    backend: BackendId,
    addr: SocketAddr,
    /// Global in-flight port.
    port: u32,
    /// Replaced (reload, address change): closed once its queries are over.
    retire_at: Option<u64>,
}

pub struct SocketWorker {
    core: Core,
    shared: Arc<Shared>,
    per_backend: u32,
    epoll: Epoll,
    fronts: Vec<Option<FrontSock>>,
    backs: Vec<Option<BackSock>>,
    /// Local in-flight port -> index into `backs` of the socket that sends.
    by_port: Vec<Option<usize>>,
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
    /// so bind errors surface before the engine reports itself running.
    pub fn new(
        core: Core,
        shared: Arc<Shared>,
        per_backend: u32,
        batch: usize,
        fronts: Vec<(u16, Socket)>,
    ) -> io::Result<SocketWorker> {
        let worker = core.worker();
        let port_base = core.table().port_index(worker, 0);
        let mut w = SocketWorker {
            core,
            shared,
            per_backend,
            epoll: Epoll::new()?,
            fronts: (0..MAX_FRONTENDS).map(|_| None).collect(),
            backs: Vec::new(),
            by_port: vec![None; MAX_BACKENDS * per_backend as usize],
            port_base,
            generation: u64::MAX,
            rb: RecvBatch::new(batch, BUF_SIZE),
            sb: SendBatch::new(batch),
            outs: Vec::with_capacity(batch),
            last_sweep: 0,
            last_silence: 0,
        };
        for (id, sock) in fronts {
            let addr = sock.local_addr()?.as_socket().expect("inet socket");
            w.epoll.add(sock.as_raw_fd(), FRONT | u64::from(id))?;
            w.fronts[usize::from(id)] = Some(FrontSock { sock, addr });
        }
        Ok(w)
    }

    pub fn run(mut self) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
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
                    self.on_backend(token as usize, &snap);
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
                self.close_retired(now);
            }
        }
    }

    /// Opens sockets for new backends and frontends of a new snapshot and
    /// retires those it no longer has.
    fn reconcile(&mut self, snap: &Snapshot) {
        self.generation = snap.generation;
        let now = self.shared.now_ns();
        let retire_at = now + snap.timeout_ns + 1_000_000_000;
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
        // Backends.
        let k = self.per_backend as usize;
        for id in 0..MAX_BACKENDS {
            let want = snap.backend(id as BackendId).map(|b| b.addr);
            for j in 0..k {
                let local = id * k + j;
                let cur = self.by_port[local];
                let have = cur.and_then(|i| self.backs[i].as_ref()).map(|b| b.addr);
                if want == have {
                    continue;
                }
                if let Some(i) = cur {
                    if let Some(b) = self.backs[i].as_mut() {
                        b.retire_at = Some(retire_at);
                    }
                    self.by_port[local] = None;
                }
                let Some(addr) = want else { continue };
                let port = self.port_base + local as u32;
                self.core.table().ensure_port(port);
                let slot = self
                    .backs
                    .iter()
                    .position(Option::is_none)
                    .unwrap_or_else(|| {
                        self.backs.push(None);
                        self.backs.len() - 1
                    });
                match connect_backend(addr).and_then(|s| {
                    self.epoll.add(s.as_raw_fd(), slot as u64)?;
                    Ok(s)
                }) {
                    Ok(sock) => {
                        self.backs[slot] = Some(BackSock {
                            sock,
                            backend: id as BackendId,
                            addr,
                            port,
                            retire_at: None,
                        });
                        self.by_port[local] = Some(slot);
                    }
                    Err(e) => {
                        warn!(worker = self.core.worker(), %addr, "cannot open backend socket: {e}")
                    }
                }
            }
        }
    }

    fn close_retired(&mut self, now: u64) {
        for b in self.backs.iter_mut() {
            if b.as_ref()
                .and_then(|b| b.retire_at)
                .is_some_and(|t| now >= t)
            {
                debug!(
                    worker = self.core.worker(),
                    "closing retired backend socket"
                );
                *b = None; // closing the fd removes it from epoll
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
        let k = self.per_backend as usize;
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
            let by_port = &self.by_port;
            let buf = self.rb.buf_mut(i);
            // A backend none of whose sockets opened cannot be sent to:
            // refused before an in-flight slot is taken.
            let out = self.core.query(snap, id, buf, len, &client, now, |be| {
                let first = usize::from(be.id) * k;
                match by_port.get(first..first + k) {
                    Some(socks) if socks.iter().any(Option::is_some) => Ok(()),
                    _ => Err(DropReason::SendFailed),
                }
            });
            match out {
                QueryOutcome::Forward { port, .. } => {
                    let local = (port - self.port_base) as usize;
                    if let Some(slot) = self.by_port[local] {
                        self.outs.push(Out {
                            key: slot as u64,
                            msg: i as u16,
                            len: len as u32,
                            dest: None,
                        });
                    } else {
                        // The slot's port has no socket (one of the
                        // backend's sockets failed to open): free the slot
                        // now, so the backend is not charged a timeout, and
                        // count the query as not sent.
                        let b = self.rb.buf_mut(i);
                        let new_id = u16::from_be_bytes([b[0], b[1]]);
                        self.core.table().cancel(port, new_id);
                        self.core.count_drop(DropReason::SendFailed);
                    }
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

    fn on_backend(&mut self, slot: usize, snap: &Snapshot) {
        let Some(bs) = self.backs.get(slot).and_then(Option::as_ref) else {
            return;
        };
        let (fd, backend, port) = (bs.sock.as_raw_fd(), bs.backend, bs.port);
        let n = match self.rb.recv(fd) {
            Ok(n) => n,
            Err(e) => {
                // ECONNREFUSED and the like: the backend's host (or a
                // router) answered one of our queries with ICMP
                // destination unreachable. The query's bytes are gone with
                // the error, so it is not re-sent; it times out.
                let unreachable = matches!(
                    e.raw_os_error(),
                    Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH)
                );
                if unreachable {
                    self.core
                        .backend_refused(snap, backend, self.shared.now_ns());
                } else {
                    self.core.stats().backends[usize::from(backend)]
                        .errors
                        .inc();
                }
                debug!(backend, "backend recv: {e}");
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
            let len = self.rb.len(i);
            let msg = &mut self.rb.buf_mut(i)[..len];
            // The socket is connected: the kernel already checked the source.
            match self.core.answer(msg, port, now, |b| b == backend) {
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
            let (fd, back) = if key & FRONT != 0 {
                match self.fronts[(key & !FRONT) as usize].as_ref() {
                    Some(f) => (f.sock.as_raw_fd(), None),
                    None => continue,
                }
            } else {
                match self.backs[key as usize].as_ref() {
                    Some(b) => (b.sock.as_raw_fd(), Some((b.port, b.backend))),
                    None => continue,
                }
            };
            let (core, rb) = (&self.core, &self.rb);
            self.sb.send(fd, rb, run, |o, e| {
                core.count_drop(DropReason::SendFailed);
                if let Some((port, backend)) = back {
                    // Free the slot: this query will get neither answer nor
                    // timeout, and must not count against the backend's health
                    // as one.
                    let b = rb.buf(usize::from(o.msg));
                    core.table().cancel(port, u16::from_be_bytes([b[0], b[1]]));
                    core.stats().backends[usize::from(backend)].errors.inc();
                }
                debug!("send failed: {e}");
            });
        }
    }
}
