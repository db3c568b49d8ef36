//! The XDP program (`engine/bpf/dnsrail_xdp.c`, embedded at build time):
//! load, attach through a BPF link, and the maps the engine fills.
//!
//! Attaching through a link ties the program to this process: when the
//! engine exits, however it exits (`kill -9` included), the kernel closes the
//! link and the interface falls back to the plain kernel path.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use anyhow::{anyhow, Context};
use aya::maps::lpm_trie::Key;
use aya::maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, XskMap};
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, Pod};

use crate::config::XdpAttach;

static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/dnsrail_xdp.o"));

/// Key of the `frontends4` (N = 4) and `frontends6` (N = 16) maps: address
/// and port in network order, as the program builds it.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct FeKey<const N: usize> {
    addr: [u8; N],
    port: [u8; 2],
    pad: u16,
}
// SAFETY: repr(C), byte arrays and an explicit pad field (no implicit
// padding the kernel could read uninitialised), no pointers.
unsafe impl<const N: usize> Pod for FeKey<N> {}

#[repr(C)]
#[derive(Clone, Copy)]
struct LocalAddrs {
    v4: [u8; 4],
    v6: [u8; 16],
}
// SAFETY: as above (20 bytes, u8 arrays only).
unsafe impl Pod for LocalAddrs {}

/// The program's per-CPU counters, summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpCounters {
    pub queries: u64,
    pub answers: u64,
    pub blocked: u64,
    pub passed: u64,
    /// ICMP errors quoting one of our queries, sent to the workers.
    pub icmp: u64,
}

/// How the program ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    Native,
    Generic,
}

pub struct Program {
    ebpf: Ebpf,
    frontends: HashSet<SocketAddr>,
    pub attached: Attached,
}

fn map<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut aya::maps::Map> {
    ebpf.map_mut(name)
        .ok_or_else(|| anyhow!("XDP object has no map {name}"))
}

impl Program {
    /// Loads the program and attaches it to `ifindex`.
    pub fn load(ifindex: u32, attach: XdpAttach) -> anyhow::Result<Program> {
        let mut ebpf = Ebpf::load(OBJECT).context("cannot load the XDP program")?;
        let prog: &mut Xdp = ebpf
            .program_mut("dnsrail_xdp")
            .ok_or_else(|| anyhow!("XDP object has no program dnsrail_xdp"))?
            .try_into()?;
        prog.load().context("the kernel refused the XDP program")?;
        let attached = match attach {
            XdpAttach::Native => prog
                .attach_to_if_index(ifindex, XdpMode::Driver)
                .map(|_| Attached::Native)
                .context("cannot attach the XDP program in native mode")?,
            XdpAttach::Generic => prog
                .attach_to_if_index(ifindex, XdpMode::Skb)
                .map(|_| Attached::Generic)
                .context("cannot attach the XDP program in generic mode")?,
            XdpAttach::Auto => match prog.attach_to_if_index(ifindex, XdpMode::Driver) {
                Ok(_) => Attached::Native,
                Err(native) => prog
                    .attach_to_if_index(ifindex, XdpMode::Skb)
                    .map(|_| Attached::Generic)
                    .map_err(|generic| {
                        anyhow!(
                            "cannot attach the XDP program: native: {native}; generic: {generic}"
                        )
                    })?,
            },
        };
        Ok(Program {
            ebpf,
            frontends: HashSet::new(),
            attached,
        })
    }

    /// Our backend-side source addresses and ports.
    pub fn set_local(
        &mut self,
        v4: Option<Ipv4Addr>,
        v6: Option<Ipv6Addr>,
        ports: &[u16],
    ) -> anyhow::Result<()> {
        let mut local: Array<&mut MapData, LocalAddrs> =
            map(&mut self.ebpf, "local")?.try_into()?;
        let l = LocalAddrs {
            v4: v4.map_or([0; 4], |a| a.octets()),
            v6: v6.map_or([0; 16], |a| a.octets()),
        };
        local.set(0, l, 0)?;
        let mut pm: Array<&mut MapData, u8> = map(&mut self.ebpf, "ports")?.try_into()?;
        for &p in ports {
            pm.set(u32::from(p), 1u8, 0)?;
        }
        Ok(())
    }

    /// Makes the frontend maps hold exactly `want`.
    pub fn sync_frontends(&mut self, want: &[SocketAddr]) -> anyhow::Result<()> {
        let want: HashSet<SocketAddr> = want.iter().copied().collect();
        let gone: Vec<SocketAddr> = self.frontends.difference(&want).copied().collect();
        let new: Vec<SocketAddr> = want.difference(&self.frontends).copied().collect();
        for a in gone {
            self.frontend(a, false)?;
        }
        for a in new {
            self.frontend(a, true)?;
        }
        self.frontends = want;
        Ok(())
    }

    fn frontend(&mut self, a: SocketAddr, add: bool) -> anyhow::Result<()> {
        let port = a.port().to_be_bytes();
        match a.ip() {
            IpAddr::V4(ip) => self.fe_set(
                "frontends4",
                FeKey {
                    addr: ip.octets(),
                    port,
                    pad: 0,
                },
                add,
            ),
            IpAddr::V6(ip) => self.fe_set(
                "frontends6",
                FeKey {
                    addr: ip.octets(),
                    port,
                    pad: 0,
                },
                add,
            ),
        }
    }

    fn fe_set<const N: usize>(&mut self, name: &str, k: FeKey<N>, add: bool) -> anyhow::Result<()> {
        let mut m: HashMap<&mut MapData, FeKey<N>, u32> = map(&mut self.ebpf, name)?.try_into()?;
        if add {
            m.insert(k, 1, 0)?
        } else {
            m.remove(&k)?
        }
        Ok(())
    }

    /// Puts an AF_XDP socket in the queue's slot of the XSKMAP.
    pub fn set_socket(&mut self, queue: u32, fd: impl AsRawFd) -> anyhow::Result<()> {
        let mut m: XskMap<&mut MapData> = map(&mut self.ebpf, "xsks")?.try_into()?;
        m.set(queue, fd, 0)
            .with_context(|| format!("cannot put the socket of queue {queue} in the XSKMAP"))
    }

    /// Drops every packet from `ip/len` in XDP, before userspace, with
    /// `Some(value)` (the caller's, e.g. an expiry); `None` lifts the block.
    pub fn block(&mut self, ip: IpAddr, len: u32, value: Option<u64>) -> anyhow::Result<()> {
        match ip {
            IpAddr::V4(a) => self.trie_set("block4", Key::new(len.min(32), a.octets()), value),
            IpAddr::V6(a) => self.trie_set("block6", Key::new(len.min(128), a.octets()), value),
        }
    }

    fn trie_set<const N: usize>(
        &mut self,
        name: &str,
        k: Key<[u8; N]>,
        value: Option<u64>,
    ) -> anyhow::Result<()> {
        let mut m: LpmTrie<&mut MapData, [u8; N], u64> = map(&mut self.ebpf, name)?.try_into()?;
        match value {
            Some(v) => m.insert(&k, v, 0)?,
            None => m.remove(&k)?,
        }
        Ok(())
    }

    pub fn counters(&mut self) -> XdpCounters {
        let Some(m) = self.ebpf.map_mut("counters") else {
            return XdpCounters::default();
        };
        let Ok(arr) = PerCpuArray::<&mut MapData, u64>::try_from(m) else {
            return XdpCounters::default();
        };
        let sum = |i: u32| {
            arr.get(&i, 0)
                .map(|v| v.iter().copied().sum::<u64>())
                .unwrap_or(0)
        };
        XdpCounters {
            queries: sum(0),
            answers: sum(1),
            blocked: sum(2),
            passed: sum(3),
            icmp: sum(4),
        }
    }
}
