//! The AF_XDP data plane: our XDP program steers the engine's UDP traffic
//! into one AF_XDP socket per receive queue; one pinned worker per queue runs
//! the frame core over it ([`worker`]). This module sets the plane up: the
//! interface, the backend-side ports, the program and its maps, the sockets.

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
    pub fn open(
        ifname: &str,
        snap: &Snapshot,
        ports: usize,
        attach: crate::config::XdpAttach,
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
        let mut program = Program::load(iface.index, attach)?;
        program.set_local(v4, v6, &numbers)?;
        program.sync_frontends(&fronts)?;
        let env = FrameEnv::new(iface.mac, v4, v6, numbers);
        Ok(XdpPlane {
            iface,
            program: Arc::new(Mutex::new(program)),
            env: Arc::new(env),
            reserved,
        })
    }

    pub fn add_socket(&self, queue: u32, fd: std::os::fd::RawFd) -> anyhow::Result<()> {
        // SAFETY: the worker that owns the socket is alive during this call;
        // the map keeps a reference to the socket itself, not to the fd.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        self.program.lock().unwrap().set_socket(queue, fd)
    }

    /// Keeps the program's frontend maps in step with a new snapshot.
    pub fn sync(&self, snap: &Snapshot) {
        let fronts: Vec<SocketAddr> = snap.live_frontends().map(|f| f.listen).collect();
        if let Err(e) = self.program.lock().unwrap().sync_frontends(&fronts) {
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
}
