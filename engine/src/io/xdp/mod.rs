//! The AF_XDP data plane: our XDP program steers the engine's UDP traffic
//! into one AF_XDP socket per receive queue; one pinned worker per queue runs
//! the frame core over it ([`worker`]). This module sets the plane up: the
//! interface, the backend-side ports, the program and its maps, the sockets.

pub mod hot;
pub mod neighbours;
pub mod program;
pub mod slow_path;
pub mod worker;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use socket2::{Domain, Protocol, Socket, Type};

use crate::frame::FrameEnv;
use crate::io::iface::Iface;
use crate::snapshot::Snapshot;

pub use hot::HotTier;
pub use program::{Attached, Program, XdpCounters};

/// What stays alive while the plane runs: the attached program (dropping it
/// detaches) and the kernel sockets that reserve our ports.
pub struct XdpPlane {
    pub iface: Iface,
    pub program: Arc<Mutex<Program>>,
    pub env: Arc<FrameEnv>,
    /// One per port and family: the kernel never hands these ports to
    /// anyone else while we use them. They receive only what the XDP
    /// program passes to the kernel (answers in fragments, with IP options
    /// or IPv6 extension headers), reassembled: the slow path reads them.
    reserved: Vec<UdpSocket>,
    /// The XDP answer tier (`engine.xdp_cache_entries`), when on.
    pub hot: Option<Arc<HotTier>>,
    /// Each pool's cache (its address) the tier's entries were copied
    /// from: a reload that changes one empties the tier.
    tier_caches: Mutex<Vec<usize>>,
    dynblock: bool,
}

/// The value each live frontend of `snap` has in the program's maps:
/// with its pool when the tier answers for it (`tier`: the tier is on and
/// nothing the program does not run, rules or dynamic blocks, is set).
fn frontend_values(snap: &Snapshot, tier: bool) -> Vec<(SocketAddr, u32)> {
    snap.live_frontends()
        .map(|f| {
            let pool = snap
                .pools
                .get(usize::from(f.pool))
                .filter(|p| tier && p.cache.is_some() && f.pool < 256 && f.id < 4096)
                .map(|_| f.pool);
            (f.listen, program::frontend_value(f.id, pool))
        })
        .collect()
}

/// Whether the program may answer for `snap`: no rules (they run before
/// the cache, and only in the workers).
fn tier_allowed(snap: &Snapshot, dynblock: bool) -> bool {
    !dynblock && snap.rules.is_empty() && snap.runtime_rules.is_empty()
}

/// The attach mode with the answer tier on. Native XDP_TX on a veth hands
/// the frame to the peer's NAPI, which a peer in a bridge does not run:
/// measured on Linux 6.18, every such answer was lost (with GRO on the
/// peer, without an error counted anywhere). Generic XDP transmits through
/// the kernel and reaches the client, so `auto` attaches the program
/// generic on a veth when the tier is on, and `native` is refused there.
fn tier_attach(
    iface: &Iface,
    attach: crate::config::XdpAttach,
    tier: bool,
) -> anyhow::Result<crate::config::XdpAttach> {
    use crate::config::XdpAttach;
    if !tier {
        return Ok(attach);
    }
    let driver = crate::io::ethtool::Ethtool::open()
        .and_then(|e| e.driver(&iface.name))
        .map(|d| d.name)
        .unwrap_or_default();
    if driver != "veth" {
        return Ok(attach);
    }
    match attach {
        XdpAttach::Native => bail!(
            "{}: the XDP answer tier (engine.xdp_cache_entries) cannot answer natively on a veth \
             (XDP_TX to a bridged peer is lost); set engine.xdp_attach = \"generic\" or \"auto\"",
            iface.name
        ),
        XdpAttach::Auto => {
            tracing::info!(
                interface = %iface.name,
                "veth with the XDP answer tier: attaching the XDP program in generic mode"
            );
            Ok(XdpAttach::Generic)
        }
        XdpAttach::Generic => Ok(XdpAttach::Generic),
    }
}

fn cache_ids(snap: &Snapshot) -> Vec<usize> {
    snap.pools
        .iter()
        .map(|p| p.cache.as_ref().map_or(0, |c| Arc::as_ptr(c) as usize))
        .collect()
}

/// Binds a UDP socket to `ip:port` (0 = any free port) without reuse flags,
/// so that nobody else can hold the same port.
fn reserve(ip: IpAddr, port: u16) -> std::io::Result<UdpSocket> {
    let s = Socket::new(
        Domain::for_address(SocketAddr::new(ip, 0)),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if ip.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // Only the slow path's answers arrive here: room for a few large ones.
    let _ = s.set_recv_buffer_size(256 * 1024);
    s.bind(&SocketAddr::new(ip, port).into())?;
    Ok(s.into())
}

/// Reserves `n` port numbers free on every source address we use.
fn reserve_ports(
    v4: Option<std::net::Ipv4Addr>,
    v6: Option<std::net::Ipv6Addr>,
    n: usize,
) -> anyhow::Result<(Vec<u16>, Vec<UdpSocket>)> {
    let mut ports = Vec::with_capacity(n);
    let mut socks = Vec::new();
    let mut attempts = 0;
    while ports.len() < n {
        attempts += 1;
        if attempts > n * 20 {
            bail!("cannot reserve {n} UDP ports on the source addresses");
        }
        let first = match (v4, v6) {
            (Some(a), _) => reserve(IpAddr::V4(a), 0)?,
            (None, Some(a)) => reserve(IpAddr::V6(a), 0)?,
            (None, None) => bail!("the interface has no address to send to backends from"),
        };
        let port = first.local_addr()?.port();
        let second = match (v4, v6) {
            (Some(_), Some(a)) => match reserve(IpAddr::V6(a), port) {
                Ok(s) => Some(s),
                Err(_) => continue, // taken in the other family: try another
            },
            _ => None,
        };
        ports.push(port);
        socks.push(first);
        socks.extend(second);
    }
    Ok((ports, socks))
}

impl XdpPlane {
    /// Opens the interface, reserves `ports` backend-side ports, loads and
    /// attaches the program and fills its maps from `snap`. Sockets are
    /// added by [`XdpPlane::add_socket`] as workers bind them.
    /// `tier`: entries of the answer tier (0 = none), `dynblock`: whether
    /// dynamic blocks are on (the tier then stays off).
    pub fn open(
        ifname: &str,
        snap: &Snapshot,
        ports: usize,
        attach: crate::config::XdpAttach,
        tier: usize,
        dynblock: bool,
    ) -> anyhow::Result<XdpPlane> {
        let iface = Iface::open(ifname)?;
        let fronts: Vec<SocketAddr> = snap.live_frontends().map(|f| f.listen).collect();
        if let Some(f) = fronts.iter().find(|f| f.port() == 0) {
            bail!("frontend {f}: the AF_XDP data plane needs an explicit port");
        }
        let fips: Vec<IpAddr> = fronts.iter().map(SocketAddr::ip).collect();
        let (v4, v6) = (iface.source_v4(&fips), iface.source_v6(&fips));
        let (numbers, reserved) = reserve_ports(v4, v6, ports)
            .with_context(|| format!("cannot reserve backend-side ports on {ifname}"))?;
        let entries = if tier > 0 {
            hot::sets_for(tier) * hot::WAYS
        } else {
            0
        };
        let attach = tier_attach(&iface, attach, entries > 0)?;
        let mut program = Program::load(iface.index, attach, entries)?;
        program.set_local(v4, v6, &numbers)?;
        let hot = if entries > 0 {
            let seed = rand_seed();
            let fd = program.tier_on(seed)?;
            let t = HotTier::map(std::os::fd::AsFd::as_fd(&fd), entries, seed)
                .context("cannot map the XDP answer tier")?;
            Some(Arc::new(t))
        } else {
            None
        };
        let allowed = hot.is_some() && tier_allowed(snap, dynblock);
        if let Some(t) = &hot {
            t.set_active(allowed);
        }
        program.sync_frontends(&frontend_values(snap, allowed))?;
        let env = FrameEnv::new(iface.mac, v4, v6, numbers);
        Ok(XdpPlane {
            iface,
            program: Arc::new(Mutex::new(program)),
            env: Arc::new(env),
            reserved,
            hot,
            tier_caches: Mutex::new(cache_ids(snap)),
            dynblock,
        })
    }

    pub fn add_socket(&self, queue: u32, fd: std::os::fd::RawFd) -> anyhow::Result<()> {
        // SAFETY: the worker that owns the socket is alive during this call;
        // the map keeps a reference to the socket itself, not to the fd.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        self.program.lock().unwrap().set_socket(queue, fd)
    }

    /// Keeps the program's frontend maps, and the answer tier, in step
    /// with a new snapshot (before it is swapped in: a snapshot that brings
    /// rules finds the program no longer answering).
    pub fn sync(&self, snap: &Snapshot) {
        let allowed = self.hot.is_some() && tier_allowed(snap, self.dynblock);
        if let Some(t) = &self.hot {
            let ids = cache_ids(snap);
            let mut held = self.tier_caches.lock().unwrap();
            // Entries are by pool index: a pool's cache replaced (resized,
            // turned off) or pools renumbered empties the tier. Turning the
            // tier off (rules set) empties it too: it starts again from the
            // cache's hits when they are gone.
            if (t.is_active() && !allowed) || *held != ids {
                t.set_active(false);
                self.set_frontends(snap, false);
                let n = t.clear();
                if n > 0 {
                    tracing::info!(entries = n, "XDP answer tier emptied");
                }
                *held = ids;
            }
            t.set_active(allowed);
        }
        self.set_frontends(snap, allowed);
    }

    /// The frontend maps as `snap` has them, with the tier's pools or not.
    fn set_frontends(&self, snap: &Snapshot, tier: bool) {
        let values = frontend_values(snap, tier);
        if let Err(e) = self.program.lock().unwrap().sync_frontends(&values) {
            tracing::error!("cannot update the XDP frontend maps: {e:#}");
        }
    }

    /// The sockets that reserve the engine's ports (the slow path reads them).
    pub fn reserved(&self) -> &[UdpSocket] {
        &self.reserved
    }

    pub fn counters(&self) -> XdpCounters {
        self.program.lock().unwrap().counters()
    }

    /// Tier answers per pool index (`n` pools) and per frontend id (`f`).
    pub fn tier_counts(&self, n: usize, f: usize) -> (Vec<u64>, Vec<u64>) {
        let mut p = self.program.lock().unwrap();
        (
            p.tier_counts("hot_hits", n.min(256)),
            p.tier_counts("hot_fe", f.min(4096)),
        )
    }
}

/// A random 64-bit seed (the tier's hash: names that collide cannot be
/// chosen from outside).
fn rand_seed() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return crate::hash::mix(t.as_nanos() as u64 ^ u64::from(std::process::id()));
    }
    u64::from_ne_bytes(b)
}
