//! The XDP program (`engine/bpf/dnsrail_xdp.c`, embedded at build time):
//! load, attach through a BPF link, and the maps the engine fills.
//!
//! Attaching through a link ties the program to this process: when the
//! engine exits, however it exits (`kill -9` included), the kernel closes the
//! link and the interface falls back to the plain kernel path.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use anyhow::{anyhow, Context};
use aya::maps::lpm_trie::Key;
use aya::maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, XskMap};
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader, Pod};

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
    /// Queries the program answered from the answer tier (XDP_TX).
    pub tier_answers: u64,
    /// Queries looked up in the tier and sent on to the workers.
    pub tier_misses: u64,
    /// Queries resized for a tier answer that could not be written, and
    /// dropped (a bad entry; none expected).
    pub tier_drops: u64,
}

/// How the program ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    Native,
    Generic,
}

pub struct Program {
    ebpf: Ebpf,
    /// Each frontend in the maps, with its value there.
    frontends: std::collections::HashMap<SocketAddr, u32>,
    pub attached: Attached,
    /// Entries of the `hot` array (2 when the tier is off).
    hot_entries: usize,
}

/// The value of a frontend in `frontends4`/`frontends6`: bit 0 set, the
/// frontend's id in bits 4-15, and when the tier answers for it, its pool
/// + 1 in bits 16-31.
pub fn frontend_value(id: u16, tier_pool: Option<u16>) -> u32 {
    let pool = tier_pool.map_or(0, |p| u32::from(p) + 1);
    1 | (u32::from(id) & 0xfff) << 4 | pool << 16
}

/// Hash seed and size of the answer tier (`struct hot_conf`).
#[repr(C)]
#[derive(Clone, Copy)]
struct HotConf {
    seed: u64,
    set_mask: u32,
    sets: u32,
}
// SAFETY: repr(C), integers only, no padding (8 + 4 + 4).
unsafe impl Pod for HotConf {}

fn map<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut aya::maps::Map> {
    ebpf.map_mut(name)
        .ok_or_else(|| anyhow!("XDP object has no map {name}"))
}

impl Program {
    /// Loads the program, with an answer tier of `hot_entries` entries
    /// (0 = none; else a power of two, at least 2), and attaches it to
    /// `ifindex`.
    pub fn load(ifindex: u32, attach: XdpAttach, hot_entries: usize) -> anyhow::Result<Program> {
        // A BPF array cannot be empty: the tier off is 2 entries, unused.
        let hot = hot_entries.max(2);
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("hot", u32::try_from(hot).context("answer tier too large")?)
            .load(OBJECT)
            .context("cannot load the XDP program")?;
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
            frontends: std::collections::HashMap::new(),
            attached,
            hot_entries: hot,
        })
    }

    /// Turns the answer tier on (`seed`: the hash seed) and returns the
    /// descriptor of its array, for the engine to map.
    pub fn tier_on(&mut self, seed: u64) -> anyhow::Result<std::os::fd::OwnedFd> {
        let sets = (self.hot_entries / super::hot::WAYS) as u32;
        let mut conf: Array<&mut MapData, HotConf> = map(&mut self.ebpf, "hot_conf")?.try_into()?;
        conf.set(
            0,
            HotConf {
                seed,
                set_mask: sets - 1,
                sets,
            },
            0,
        )?;
        let aya::maps::Map::Array(hot) = map(&mut self.ebpf, "hot")? else {
            anyhow::bail!("XDP object's map hot is not an array");
        };
        use std::os::fd::AsFd;
        Ok(hot.fd().as_fd().try_clone_to_owned()?)
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

    /// Makes the frontend maps hold exactly `want` (address, value).
    pub fn sync_frontends(&mut self, want: &[(SocketAddr, u32)]) -> anyhow::Result<()> {
        let want: std::collections::HashMap<SocketAddr, u32> = want.iter().copied().collect();
        let gone: Vec<SocketAddr> = self
            .frontends
            .keys()
            .filter(|a| !want.contains_key(a))
            .copied()
            .collect();
        for a in gone {
            self.frontend(a, None)?;
        }
        for (&a, &v) in &want {
            if self.frontends.get(&a) != Some(&v) {
                self.frontend(a, Some(v))?;
            }
        }
        self.frontends = want;
        Ok(())
    }

    fn frontend(&mut self, a: SocketAddr, value: Option<u32>) -> anyhow::Result<()> {
        let port = a.port().to_be_bytes();
        match a.ip() {
            IpAddr::V4(ip) => self.fe_set(
                "frontends4",
                FeKey {
                    addr: ip.octets(),
                    port,
                    pad: 0,
                },
                value,
            ),
            IpAddr::V6(ip) => self.fe_set(
                "frontends6",
                FeKey {
                    addr: ip.octets(),
                    port,
                    pad: 0,
                },
                value,
            ),
        }
    }

    fn fe_set<const N: usize>(
        &mut self,
        name: &str,
        k: FeKey<N>,
        value: Option<u32>,
    ) -> anyhow::Result<()> {
        let mut m: HashMap<&mut MapData, FeKey<N>, u32> = map(&mut self.ebpf, name)?.try_into()?;
        match value {
            Some(v) => m.insert(k, v, 0)?,
            None => m.remove(&k)?,
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
            tier_answers: sum(5),
            tier_misses: sum(6),
            tier_drops: sum(7),
        }
    }

    /// Tier answers per index of the per-CPU array `name` (`hot_hits`:
    /// pools, `hot_fe`: frontend ids), for the first `n` indexes.
    pub fn tier_counts(&mut self, name: &str, n: usize) -> Vec<u64> {
        let Some(m) = self.ebpf.map_mut(name) else {
            return vec![0; n];
        };
        let Ok(arr) = PerCpuArray::<&mut MapData, u64>::try_from(m) else {
            return vec![0; n];
        };
        (0..n as u32)
            .map(|i| {
                arr.get(&i, 0)
                    .map(|v| v.iter().copied().sum::<u64>())
                    .unwrap_or(0)
            })
            .collect()
    }
}
