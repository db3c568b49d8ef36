//! One AF_XDP worker: a queue's socket, its UMEM and four rings, driven by a
//! poll-mode loop. Every frame is rewritten in place by the frame core and
//! leaves from the buffer it arrived in; a dropped frame goes straight back to
//! the fill ring. Frames cycle fill → RX → (TX → completion →) fill, so no
//! frame is ever lost and none is allocated after start.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context;
use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

use super::hot::HotTier;
use crate::config::{PollMode, XdpBind};
use crate::core::Core;
use crate::frame::{FrameEnv, FrameKind, FrameVerdict};
use crate::shared::Shared;
use crate::stats::DropReason;

/// Frames per worker and ring sizes: 8192 × 2 KiB = 16 MiB of UMEM; half
/// the frames wait in the fill ring, the rest are in RX/TX/completion. 4096
/// RX descriptors hold ~200 ms of a 20 k qps load while the worker is
/// descheduled on a busy machine. 2 KiB frames carry up to 1792 bytes
/// (256 go to the kernel's XDP headroom): MTU 1500, no jumbo frames.
const FRAMES: u32 = 8192;
const FRAME_SIZE: u32 = 2048;
/// Bytes of a frame a packet may use: the rest is the kernel's XDP headroom.
pub const FRAME_ROOM: u32 = FRAME_SIZE - 256;
/// Largest interface MTU whose frames fit: the room less the Ethernet header.
pub const MAX_MTU: u32 = FRAME_ROOM - 14;
const RING: u32 = 4096;
/// Sweep timed-out queries this often (a scan of the ports' used slots;
/// timeouts are seconds, so 50 ms is precise enough and cheap).
const SWEEP_NS: u64 = 50_000_000;
/// Look for silent backends this often (a pass over the snapshot's
/// backends; detection takes `failover.dead_after_ms` plus up to this).
const SILENCE_NS: u64 = 10_000_000;
/// Longest sleep in poll(): bounds how late a stop, a sweep or a silence
/// check happens.
const POLL_MS: i32 = 10;

/// The bind mode a socket ended up with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    ZeroCopy,
    Copy,
}

/// Where and how a worker binds its socket.
pub struct XskSpec<'a> {
    pub ifname: &'a str,
    pub queue: u32,
    pub mode: XdpBind,
    pub poll: PollMode,
    pub batch: usize,
    /// The XDP answer tier, when on: fresh cache hits are copied there.
    pub hot: Option<Arc<HotTier>>,
}

pub struct XskWorker {
    core: Core,
    shared: Arc<Shared>,
    env: Arc<FrameEnv>,
    umem: Umem,
    fq: FillQueue,
    cq: CompQueue,
    tx: TxQueue,
    rx: RxQueue,
    /// Frames we own that are in no ring, waiting for the fill ring.
    free: Vec<FrameDesc>,
    rx_batch: Vec<FrameDesc>,
    comp: Vec<FrameDesc>,
    /// Rewritten frames the TX ring has not taken yet.
    to_send: Vec<FrameDesc>,
    /// Frames in the TX ring or in flight, not yet completed.
    in_tx: usize,
    poll: PollMode,
    pub bound: Bound,
    /// Kernel-side drops seen so far, and when they were last logged.
    kernel_drops: u64,
    drops_logged: u64,
    hot: Option<Arc<HotTier>>,
}

fn socket_config(bind: BindFlags) -> SocketConfig {
    SocketConfig::builder()
        .rx_queue_size(QueueSize::new(RING).unwrap())
        .tx_queue_size(QueueSize::new(RING).unwrap())
        // Our own program is attached; libxdp must not load its default one.
        .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
        .bind_flags(bind | BindFlags::XDP_USE_NEED_WAKEUP)
        .build()
}

type Rings = (TxQueue, RxQueue, FillQueue, CompQueue);

/// Creates a socket on `queue`, retrying a transient EBUSY (the previous
/// owner's socket may still be closing).
fn bind(umem: &Umem, iface: &Interface, queue: u32, flags: BindFlags) -> anyhow::Result<Rings> {
    let mut last = None;
    for attempt in 0..20 {
        // SAFETY: the UMEM is this socket's alone; its frames are only handed
        // to the kernel through this socket's rings.
        match unsafe { Socket::new(socket_config(flags), umem, iface, queue) } {
            Ok((tx, rx, Some((fq, cq)))) => return Ok((tx, rx, fq, cq)),
            Ok((_, _, None)) => anyhow::bail!("the UMEM already had a fill queue"),
            Err(e) => {
                let errno = std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<std::io::Error>())
                    .and_then(std::io::Error::raw_os_error);
                let busy = errno == Some(libc::EBUSY);
                last = Some(bind_error(errno, queue, flags));
                if !busy {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50 * (attempt + 1)));
            }
        }
    }
    Err(anyhow::anyhow!("{}", last.expect("at least one attempt")))
}

/// A bind failure in words: the kernel's errno says which of the usual
/// causes it was.
fn bind_error(errno: Option<i32>, queue: u32, flags: BindFlags) -> String {
    let zc = flags.contains(BindFlags::XDP_ZEROCOPY);
    match errno {
        Some(libc::EINVAL) => format!(
            "queue {queue} is not an active receive queue of the interface (see `ethtool -l`)"
        ),
        Some(libc::EOPNOTSUPP) if zc => {
            "the driver has no zero-copy AF_XDP support (copy mode may still work)".to_string()
        }
        Some(libc::EOPNOTSUPP) => "the driver does not support AF_XDP sockets".to_string(),
        Some(libc::EBUSY) => format!(
            "queue {queue} is already bound by another AF_XDP socket (another engine running?)"
        ),
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "not permitted: AF_XDP needs CAP_NET_ADMIN and CAP_NET_RAW (run as root)".to_string()
        }
        Some(libc::ENOMEM) | Some(libc::ENOBUFS) => {
            "out of memory for the rings or the UMEM (raise `ulimit -l`, memlock)".to_string()
        }
        Some(libc::ENODEV) | Some(libc::ENXIO) => "no such interface".to_string(),
        Some(n) => std::io::Error::from_raw_os_error(n).to_string(),
        None => "the AF_XDP socket could not be created".to_string(),
    }
}

/// Binds (and closes again) an AF_XDP socket on `ifname` queue `queue` in
/// one mode: what `dnsrailctl doctor` tries for real.
pub fn try_bind(ifname: &str, queue: u32, zerocopy: bool) -> Result<(), String> {
    let iface: Interface = ifname
        .parse()
        .map_err(|_| "bad interface name".to_string())?;
    let ucfg = UmemConfig::builder()
        .frame_size(FrameSize::new(FRAME_SIZE).unwrap())
        .fill_queue_size(QueueSize::new(RING).unwrap())
        .comp_queue_size(QueueSize::new(RING).unwrap())
        .build()
        .map_err(|e| format!("UMEM configuration: {e}"))?;
    let (umem, _frames) = Umem::new(ucfg, FRAMES.try_into().unwrap(), false)
        .map_err(|e| format!("cannot create a UMEM: {e}"))?;
    let flags = if zerocopy {
        BindFlags::XDP_ZEROCOPY
    } else {
        BindFlags::XDP_COPY
    };
    bind(&umem, &iface, queue, flags)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl XskWorker {
    pub fn new(
        core: Core,
        shared: Arc<Shared>,
        env: Arc<FrameEnv>,
        spec: &XskSpec,
    ) -> anyhow::Result<XskWorker> {
        let XskSpec {
            ifname,
            queue,
            mode,
            poll,
            batch,
            hot,
        } = spec;
        let (queue, mode, poll, batch) = (*queue, *mode, *poll, *batch);
        let iface: Interface = ifname.parse().context("interface name")?;
        let tries: &[(BindFlags, Bound)] = match mode {
            XdpBind::Zerocopy => &[(BindFlags::XDP_ZEROCOPY, Bound::ZeroCopy)],
            XdpBind::Copy => &[(BindFlags::XDP_COPY, Bound::Copy)],
            XdpBind::Auto => &[
                (BindFlags::XDP_ZEROCOPY, Bound::ZeroCopy),
                (BindFlags::XDP_COPY, Bound::Copy),
            ],
        };
        let mut errors = Vec::new();
        for &(flags, bound) in tries {
            // A failed bind leaves the UMEM half-used: each try gets its own.
            let ucfg = UmemConfig::builder()
                .frame_size(FrameSize::new(FRAME_SIZE).unwrap())
                .fill_queue_size(QueueSize::new(RING).unwrap())
                .comp_queue_size(QueueSize::new(RING).unwrap())
                .build()
                .context("UMEM configuration")?;
            let (umem, frames) = Umem::new(ucfg, FRAMES.try_into().unwrap(), false)
                .map_err(|e| anyhow::anyhow!("cannot create a UMEM: {e}"))?;
            match bind(&umem, &iface, queue, flags) {
                Ok((tx, rx, fq, cq)) => {
                    let mut w = XskWorker {
                        core,
                        shared,
                        env,
                        umem,
                        fq,
                        cq,
                        tx,
                        rx,
                        free: frames,
                        rx_batch: vec![FrameDesc::default(); batch],
                        comp: vec![FrameDesc::default(); RING as usize],
                        to_send: Vec::with_capacity(FRAMES as usize),
                        in_tx: 0,
                        poll,
                        bound,
                        kernel_drops: 0,
                        drops_logged: 0,
                        hot: hot.clone(),
                    };
                    // The fill ring is full before the socket goes into the
                    // XSKMAP: the first frames must not find it empty (they
                    // would be dropped before the worker thread first runs).
                    w.refill();
                    return Ok(w);
                }
                Err(e) => errors.push(format!("{bound:?}: {e}")),
            }
        }
        anyhow::bail!(
            "cannot bind an AF_XDP socket to {ifname} queue {queue}: {}",
            errors.join("; ")
        )
    }

    /// The socket's descriptor, for the XSKMAP.
    pub fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.rx.fd().as_raw_fd()
    }

    pub fn run(mut self) {
        let mut last_sweep = 0u64;
        let mut last_silence = 0u64;
        while !self.shared.stop.load(Ordering::Relaxed) {
            self.reap();
            self.refill();
            // SAFETY: rx_batch descriptors are filled by the RX ring of this
            // socket's UMEM.
            let n = unsafe { self.rx.consume(&mut self.rx_batch) };
            let now = self.shared.now_ns();
            if n > 0 {
                let snap = self.shared.snapshot.load_full();
                self.core.begin_batch(&snap);
                for i in 0..n {
                    let mut desc = self.rx_batch[i];
                    match self.process(&snap, &mut desc, now) {
                        true => self.to_send.push(desc),
                        false => self.free.push(desc),
                    }
                }
                // An ICMP error in this batch may have taken a backend out.
                self.resend(&snap, now);
            }
            self.transmit();
            if now.saturating_sub(last_silence) >= SILENCE_NS {
                last_silence = now;
                let snap = self.shared.snapshot.load_full();
                self.core.check_silence(&snap, now);
                self.resend(&snap, now);
                if now.saturating_sub(last_sweep) >= SWEEP_NS {
                    last_sweep = now;
                    self.core.sweep(&snap, now);
                    self.check_kernel_drops(now);
                }
            }
            // Frames waiting for completion are no reason to spin: copy mode
            // completes them when the receiver frees the skb, maybe much
            // later; the next wake-up reaps them.
            if n > 0 || !self.to_send.is_empty() {
                continue;
            }
            if self.poll == PollMode::Adaptive {
                // Nothing to do: sleep until a frame arrives (or the tick
                // ends), so an idle balancer costs ~0 CPU. Sleeping at once
                // beats spinning a while: measured at 50 k qps on veth, a
                // wake-up (~4 us) is cheaper than spinning through the gaps.
                let _ = self.rx.poll(POLL_MS);
            }
        }
    }

    /// Runs one received frame through the core; true = transmit it.
    #[inline]
    fn process(
        &mut self,
        snap: &crate::snapshot::Snapshot,
        desc: &mut FrameDesc,
        now: u64,
    ) -> bool {
        // SAFETY: the frame came from our RX ring and is in no ring now.
        let mut data = unsafe { self.umem.data_mut(desc) };
        let len = data.contents().len();
        // Expose the whole frame buffer: a rule's reply may grow the frame.
        let mut cur = data.cursor();
        let cap = cur.buf_len();
        cur.set_pos(cap);
        let buf = data.contents_mut();
        let verdict = match self.env.kind(&buf[..len]) {
            FrameKind::Answer => self
                .core
                .answer_frame(snap, &self.env, &mut buf[..len], now),
            FrameKind::Query => {
                let v = self.core.query_frame(snap, &self.env, buf, len, now);
                // A fresh cache hit: asked again, so the XDP program gets
                // it and answers the next ones itself.
                if let Some(t) = &self.hot {
                    if let Some((hit, entry)) = self.core.take_cache_hit() {
                        t.promote(hit, entry, now);
                    }
                }
                v
            }
            FrameKind::Icmp => self.core.icmp_frame(snap, &self.env, buf, len, now),
        };
        match verdict {
            FrameVerdict::Tx { len } => {
                data.cursor().set_pos(len);
                true
            }
            FrameVerdict::Drop(_) => false,
        }
    }

    /// Re-sends this worker's queries still waiting on a backend the engine
    /// just took out (one atomic load when nothing changed). Each goes out
    /// in a free frame of the UMEM; with none free, the rest time out.
    fn resend(&mut self, snap: &crate::snapshot::Snapshot, now: u64) {
        for i in self.core.resend_due(snap, now) {
            let Some(mut desc) = self.free.pop() else {
                break;
            };
            // SAFETY: a free frame of our UMEM, in no ring.
            let mut data = unsafe { self.umem.data_mut(&mut desc) };
            let mut cur = data.cursor();
            let cap = cur.buf_len();
            cur.set_pos(cap);
            let verdict = self
                .core
                .resend_frame(snap, &self.env, i, data.contents_mut(), now);
            match verdict {
                FrameVerdict::Tx { len } => {
                    data.cursor().set_pos(len);
                    self.to_send.push(desc);
                }
                FrameVerdict::Drop(_) => self.free.push(desc),
            }
        }
    }

    /// Frames the kernel dropped because our RX ring was full or the fill
    /// ring empty (the worker fell behind): counted, and logged at most
    /// every 10 s.
    fn check_kernel_drops(&mut self, now: u64) {
        let Ok(st) = self.rx.fd().xdp_statistics() else {
            return;
        };
        let total = st.rx_dropped() + st.rx_ring_full() + st.rx_fill_ring_empty_descs();
        if total > self.kernel_drops {
            self.core
                .count_drops(DropReason::RingFull, total - self.kernel_drops);
            if now.saturating_sub(self.drops_logged) >= 10_000_000_000 {
                tracing::warn!(
                    worker = self.core.worker(),
                    dropped = total - self.kernel_drops,
                    "AF_XDP: the kernel dropped frames (RX ring full or fill ring empty): the worker fell behind"
                );
                self.drops_logged = now;
            }
            self.kernel_drops = total;
        }
    }

    /// Completed transmissions return their frames.
    fn reap(&mut self) {
        if self.in_tx == 0 {
            return;
        }
        // SAFETY: completions are frames of this UMEM we put in the TX ring.
        let c = unsafe { self.cq.consume(&mut self.comp) };
        self.in_tx -= c;
        self.free.extend_from_slice(&self.comp[..c]);
    }

    /// Hands free frames to the kernel for receiving.
    fn refill(&mut self) {
        let room = self.fq.nb_free(self.free.len() as u32) as usize;
        let k = room.min(self.free.len());
        if k == 0 {
            return;
        }
        let start = self.free.len() - k;
        // SAFETY: these frames are ours and in no other ring.
        let done = unsafe { self.fq.produce(&self.free[start..]) };
        self.free.truncate(self.free.len() - done);
        if self.fq.needs_wakeup() {
            let _ = self.rx.poll(0);
        }
    }

    /// Puts rewritten frames in the TX ring and kicks the kernel.
    fn transmit(&mut self) {
        if !self.to_send.is_empty() {
            let room = self.tx.nb_free(self.to_send.len() as u32) as usize;
            let k = room.min(self.to_send.len());
            if k > 0 {
                // SAFETY: rewritten frames of this UMEM, in no other ring.
                let done = unsafe { self.tx.produce(&self.to_send[..k]) };
                self.to_send.drain(..done);
                self.in_tx += done;
            }
        }
        // Kick only while the kernel has descriptors left in the TX ring:
        // each kick is a system call, and copy mode takes at most 32 frames
        // per kick.
        let queued = self.tx.nb_free(RING) < RING;
        if queued && self.tx.needs_wakeup() {
            if let Err(e) = self.tx.wakeup() {
                tracing::debug!(worker = self.core.worker(), "TX kick failed: {e}");
            }
        }
    }
}
