//! Next-hop MACs of the backends, from the kernel's route and neighbour
//! tables. The frame data plane writes them into every forwarded frame; a
//! backend whose next hop has no MAC yet is not used (the snapshot marks it
//! unreachable) until one resolves.
//!
//! The kernel only resolves a neighbour it has a reason to talk to, and the
//! engine's own traffic bypasses it. So for a next hop without an entry we
//! send one small DNS query (". NS") to the backend through a kernel socket:
//! the same thing a health check does, and the kernel resolves ARP/ND on the
//! way.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use tracing::{info, warn};

use crate::io::iface::Iface;
use crate::io::netlink::Netlink;
use crate::snapshot::{Mac, Snapshot};

/// `. IN NS`, ID 0x6472 ("dr"), RD set.
const PROBE: [u8; 17] = [
    0x64, 0x72, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1,
];

pub struct Resolver {
    nl: Netlink,
    ifindex: u32,
    prod4: Option<UdpSocket>,
    prod6: Option<UdpSocket>,
    /// Backends already warned about (route via another interface).
    warned: HashSet<String>,
}

impl Resolver {
    pub fn new(iface: &Iface) -> std::io::Result<Resolver> {
        let prod = |ip: IpAddr| {
            let s = UdpSocket::bind(SocketAddr::new(ip, 0)).ok()?;
            s.set_nonblocking(true).ok()?;
            Some(s)
        };
        Ok(Resolver {
            nl: Netlink::open()?,
            ifindex: iface.index,
            prod4: prod(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            prod6: prod(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
            warned: HashSet::new(),
        })
    }

    /// MACs of the next hops of `snap`'s backends, starting from `known`:
    /// a MAC once resolved is kept while the kernel's entry is missing (it
    /// expires from the table when the kernel sees no traffic, and the
    /// engine's traffic bypasses the kernel), and resolution is prodded.
    pub fn resolve(
        &mut self,
        snap: &Snapshot,
        known: &HashMap<String, Mac>,
    ) -> HashMap<String, Mac> {
        let mut out = HashMap::new();
        self.drain();
        for b in snap.live_backends() {
            let route = match self.nl.route_get(b.addr.ip()) {
                Ok(r) => r,
                Err(e) => {
                    if self.warned.insert(b.name.clone()) {
                        warn!(backend = %b.name, addr = %b.addr, "no route to backend: {e}");
                    }
                    continue;
                }
            };
            if route.ifindex != self.ifindex {
                if self.warned.insert(b.name.clone()) {
                    warn!(backend = %b.name, addr = %b.addr, "backend is not reached through the AF_XDP interface; not used");
                }
                continue;
            }
            self.warned.remove(&b.name);
            match self.nl.neighbour(self.ifindex, route.next_hop) {
                Ok(Some(mac)) => {
                    out.insert(b.name.clone(), mac);
                }
                _ => {
                    self.prod(b.addr);
                    if let Some(&mac) = known.get(&b.name) {
                        out.insert(b.name.clone(), mac);
                    }
                }
            }
        }
        for (name, mac) in &out {
            if known.get(name) != Some(mac) {
                info!(backend = %name, mac = %fmt_mac(mac), "backend next hop resolved");
            }
        }
        out
    }

    fn prod(&self, to: SocketAddr) {
        let s = if to.is_ipv4() {
            &self.prod4
        } else {
            &self.prod6
        };
        if let Some(s) = s {
            let _ = s.send_to(&PROBE, to);
        }
    }

    /// Discards answers to earlier prods.
    fn drain(&self) {
        let mut buf = [0u8; 512];
        for s in [&self.prod4, &self.prod6].into_iter().flatten() {
            while s.recv_from(&mut buf).is_ok() {}
        }
    }
}

pub fn fmt_mac(m: &Mac) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
