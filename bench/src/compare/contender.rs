//! The contenders of a comparison and how each is started on the namespace
//! topology: one backend directly, dnsrail over AF_XDP, dnsrail over kernel
//! sockets, and dnsdist; then the cached contenders: dnsrail over AF_XDP
//! with its packet cache, with and without the XDP answer tier, and dnsdist
//! with its own. The balancers serve the same VIP
//! (10.99.0.53:53) from the balancer namespace, pinned to CPU 1, in front
//! of the same backends.

use crate::netns::{backend4, Topo, VIP4};
use anyhow::{bail, Context};
use dnsrail_engine::control::{ControlClient, Report, Request};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Direct,
    Xdp,
    /// The AF_XDP data plane with `poll = "busy"`: the worker spins on its
    /// rings (one full core) instead of sleeping when idle.
    XdpBusy,
    Socket,
    Dnsdist,
    /// The AF_XDP data plane with a packet cache in front of the backends.
    XdpCache,
    /// dnsdist with its packet cache.
    DnsdistCache,
    /// The AF_XDP data plane with a packet cache and the XDP answer tier
    /// (`engine.xdp_cache_entries`): repeated hits answered by the XDP
    /// program.
    XdpTier,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Direct,
        Kind::Xdp,
        Kind::XdpBusy,
        Kind::Socket,
        Kind::Dnsdist,
        Kind::XdpCache,
        Kind::DnsdistCache,
        Kind::XdpTier,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Xdp => "xdp",
            Kind::XdpBusy => "xdp-busy",
            Kind::Socket => "socket",
            Kind::Dnsdist => "dnsdist",
            Kind::XdpCache => "xdp-cache",
            Kind::DnsdistCache => "dnsdist-cache",
            Kind::XdpTier => "xdp-tier",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Direct => "direct to one backend",
            Kind::Xdp => "dnsrail AF_XDP",
            Kind::XdpBusy => "dnsrail AF_XDP, busy poll",
            Kind::Socket => "dnsrail sockets",
            Kind::Dnsdist => "dnsdist",
            Kind::XdpCache => "dnsrail AF_XDP, packet cache",
            Kind::DnsdistCache => "dnsdist, packet cache",
            Kind::XdpTier => "dnsrail AF_XDP, packet cache + XDP answer tier",
        }
    }

    /// A cached contender: its backends answer with records a
    /// cache keeps, and it is measured on the hit mix.
    pub fn cached(self) -> bool {
        matches!(self, Kind::XdpCache | Kind::DnsdistCache | Kind::XdpTier)
    }

    /// dnsrail over AF_XDP: its XDP program's own run time is part of its
    /// CPU (the tier answers there, in the kernel's receive path).
    pub fn is_xdp(self) -> bool {
        matches!(
            self,
            Kind::Xdp | Kind::XdpBusy | Kind::XdpCache | Kind::XdpTier
        )
    }

    /// dnsdist, with or without its cache.
    pub fn is_dnsdist(self) -> bool {
        matches!(self, Kind::Dnsdist | Kind::DnsdistCache)
    }

    pub fn is_balancer(self) -> bool {
        self != Kind::Direct
    }

    /// Where the client sends queries; `backend_port` is the backends'.
    pub fn target(self, backend_port: u16) -> SocketAddr {
        let ip = match self {
            Kind::Direct => backend4(1),
            _ => VIP4.to_string(),
        };
        let port = if self == Kind::Direct {
            backend_port
        } else {
            53
        };
        format!("{ip}:{port}").parse().expect("literal address")
    }
}

/// Entries of each cached contender's cache: room for every popular name
/// many times over (dnsrail: 79 MiB at 632 bytes an entry).
pub const CACHE_ENTRIES: u32 = 131_072;

/// Entries of the XDP answer tier of `xdp-tier`: the popular names many
/// times over (56 MiB at 896 bytes an entry).
pub const TIER_ENTRIES: u32 = 65_536;

/// The engine's configuration for `kind` (a dnsrail kind): one worker on
/// CPU 1, the VIP as its frontend, `backends` backends on `backend_port`,
/// and for the cached kind a packet cache of [`CACHE_ENTRIES`] at its
/// defaults.
pub fn engine_toml(kind: Kind, backends: usize, backend_port: u16) -> String {
    let (io, poll) = match kind {
        Kind::Xdp | Kind::XdpCache | Kind::XdpTier => ("xdp", "adaptive"),
        Kind::XdpBusy => ("xdp", "busy"),
        _ => ("socket", "adaptive"),
    };
    let mut t = format!(
        "[engine]\nio = \"{io}\"\npoll = \"{poll}\"\ninterface = \"eth0\"\ncpus = [1]\n\
         stats_interval_s = 0\n"
    );
    if kind == Kind::XdpTier {
        let _ = writeln!(t, "xdp_cache_entries = {TIER_ENTRIES}");
    }
    let _ = write!(t, "\n[[frontend]]\nlisten = \"{VIP4}:53\"\n");
    for i in 1..=backends {
        let _ = write!(
            t,
            "\n[[backend]]\nname = \"be{i}\"\naddress = \"{}:{backend_port}\"\n",
            backend4(i)
        );
    }
    if kind.cached() {
        let _ = write!(t, "\n[pool.default]\ncache_entries = {CACHE_ENTRIES}\n");
    }
    t
}

/// dnsdist's configuration: two UDP listeners on the VIP (one thread each,
/// SO_REUSEPORT), two sockets per backend, round robin as dnsrail's default,
/// no security poll (no internet here), 16 MiB socket buffers as the engine
/// asks for its own, health checks at their default (one query a second per
/// backend). With `cache`, the default pool gets a packet cache of
/// [`CACHE_ENTRIES`] with dnsdist's defaults for everything else (20 shards
/// so that its two threads do not share a lock, as its guide advises).
pub fn dnsdist_conf(backends: usize, backend_port: u16, cache: bool) -> String {
    let mut t = format!(
        "setSecurityPollSuffix(\"\")\n\
         setLocal(\"{VIP4}:53\", {{reusePort=true}})\n\
         addLocal(\"{VIP4}:53\", {{reusePort=true}})\n\
         setUDPSocketBufferSizes(16777216, 16777216)\n\
         setACL({{\"0.0.0.0/0\", \"::/0\"}})\n\
         setServerPolicy(roundrobin)\n"
    );
    for i in 1..=backends {
        let _ = writeln!(
            t,
            "newServer({{address=\"{}:{backend_port}\", name=\"be{i}\", sockets=2}})",
            backend4(i)
        );
    }
    if cache {
        let _ = writeln!(
            t,
            "getPool(\"\"):setCache(newPacketCache({CACHE_ENTRIES}, {{numberOfShards=20}}))"
        );
    }
    t
}

/// The binaries a comparison runs.
#[derive(Clone, Debug, Default)]
pub struct Bins {
    pub engine: String,
    pub bench: String,
    pub dnsdist: String,
}

/// A started contender; [`Running::stop`] ends it.
pub struct Running {
    pub kind: Kind,
    /// The balancer's pid (None for direct).
    pub pid: Option<u32>,
    control: Option<PathBuf>,
    pub log: PathBuf,
}

impl Running {
    /// Starts `kind` in front of `backends` backends on `backend_port` and
    /// waits (bounded) until it answers from the client namespace.
    pub fn start(
        topo: &mut Topo,
        kind: Kind,
        bins: &Bins,
        work: &Path,
        backends: usize,
        backend_port: u16,
    ) -> anyhow::Result<Running> {
        let log = work.join(format!("{}-{backend_port}.log", kind.slug()));
        let (pid, control) = match kind {
            Kind::Direct => (None, None),
            Kind::Xdp | Kind::XdpBusy | Kind::Socket | Kind::XdpCache | Kind::XdpTier => {
                let cfg = work.join(format!("{}.toml", kind.slug()));
                std::fs::write(&cfg, engine_toml(kind, backends, backend_port))?;
                let sock = work.join(format!("{}.sock", kind.slug()));
                let _ = std::fs::remove_file(&sock);
                let (c, s) = (cfg.display().to_string(), sock.display().to_string());
                let pid = topo.spawn_logged(
                    "lb",
                    &bins.engine,
                    &["-c", &c, "--control", &s],
                    Some(&log),
                )?;
                (Some(pid), Some(sock))
            }
            Kind::Dnsdist | Kind::DnsdistCache => {
                let cfg = work.join(format!("{}.conf", kind.slug()));
                std::fs::write(&cfg, dnsdist_conf(backends, backend_port, kind.cached()))?;
                let c = cfg.display().to_string();
                let args = [
                    "-c",
                    "1",
                    &bins.dnsdist,
                    "--supervised",
                    "--disable-syslog",
                    "-C",
                    &c,
                ];
                let pid = topo.spawn_logged("lb", "taskset", &args, Some(&log))?;
                (Some(pid), None)
            }
        };
        let r = Running {
            kind,
            pid,
            control,
            log,
        };
        if let Err(e) = topo.wait_udp("cli", kind.target(backend_port)) {
            let log = std::fs::read_to_string(&r.log).unwrap_or_default();
            if let Some(p) = r.pid {
                topo.stop(p);
            }
            bail!("{} does not answer: {e:#}\n{log}", kind.label());
        }
        Ok(r)
    }

    /// The engine's report (dnsrail contenders only).
    pub fn report(&self) -> Option<Report> {
        let c = self.control.as_ref()?;
        let mut cl = ControlClient::connect(c).ok()?;
        cl.call(&Request::Summary).ok()?.stats
    }

    pub fn stop(self, topo: &mut Topo) -> anyhow::Result<()> {
        if let Some(p) = self.pid {
            if !topo.running(p) {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                bail!("{} exited during the run:\n{log}", self.kind.label());
            }
            topo.stop(p);
        }
        Ok(())
    }
}

/// The engine's drops by reason between two reports (non-zero only).
pub fn drops_between(a: &Report, b: &Report) -> BTreeMap<String, u64> {
    b.drops
        .iter()
        .filter_map(|(k, v)| {
            let d = v.saturating_sub(a.drops.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

/// dnsdist's version line (`dnsdist 1.7.3 (…)` → `1.7.3`).
pub fn dnsdist_version(bin: &str) -> anyhow::Result<String> {
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .with_context(|| format!("{bin} --version"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .map(str::to_string)
        .with_context(|| format!("{bin} printed no version: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_config_is_valid_and_pinned() {
        for kind in [
            Kind::Xdp,
            Kind::XdpBusy,
            Kind::Socket,
            Kind::XdpCache,
            Kind::XdpTier,
        ] {
            let t = engine_toml(kind, 2, 5301);
            let c = dnsrail_engine::config::Config::parse(&t, "compare.toml")
                .unwrap_or_else(|e| panic!("{e}\n{t}"));
            assert_eq!(c.backends.len(), 2);
            assert_eq!(c.engine.cpus, Some(vec![1]));
            assert!(t.contains("10.99.0.22:5301"), "{t}");
            let cache = c.pools.get("default").map_or(0, |p| p.cache_entries);
            let want = if kind.cached() { CACHE_ENTRIES } else { 0 };
            assert_eq!(cache as u64, u64::from(want), "{kind:?}");
            let tier = if kind == Kind::XdpTier {
                TIER_ENTRIES
            } else {
                0
            };
            assert_eq!(c.engine.xdp_cache_entries as u64, u64::from(tier));
        }
    }

    #[test]
    fn dnsdist_config_names_every_backend_once() {
        let t = dnsdist_conf(3, 53, false);
        assert_eq!(t.matches("newServer(").count(), 3);
        assert!(t.contains("address=\"10.99.0.23:53\""));
        assert!(t.contains("setSecurityPollSuffix(\"\")"));
        assert!(!t.contains("PacketCache"));
        let t = dnsdist_conf(2, 5302, true);
        assert!(
            t.contains("getPool(\"\"):setCache(newPacketCache(131072, {numberOfShards=20}))"),
            "{t}"
        );
    }

    #[test]
    fn targets() {
        assert_eq!(Kind::Direct.target(5301).to_string(), "10.99.0.21:5301");
        assert_eq!(Kind::Dnsdist.target(5301).to_string(), "10.99.0.53:53");
        // The command line's names are the slugs of file names and JSON.
        use clap::ValueEnum;
        for k in Kind::ALL {
            assert_eq!(Kind::from_str(k.slug(), false), Ok(k));
        }
        assert!(Kind::from_str("dnsdist-1.7", false).is_err());
    }
}
