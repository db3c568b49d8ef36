//! The TOML configuration file, shared by the engine (`dnsrail --config`) and
//! the control process.
//!
//! Every error names the file, the line and the key: syntax and type errors
//! come from toml with a byte span and from serde_path_to_error with the key
//! path; semantic errors (an unknown pool, a duplicate name) use the span of
//! the value that is wrong.

use crate::policy::PolicyKind;
use crate::rules::config::{RuleConfig, RulesFile};
use crate::rules::RuleSet;
use crate::snapshot::{MAX_BACKENDS, MAX_FRONTENDS};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use toml::Spanned;

mod announce;
#[cfg(test)]
mod doc_tests;
pub use announce::AnnounceConfig;

pub const DEFAULT_POOL: &str = "default";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub engine: EngineConfig,
    #[serde(default, rename = "frontend")]
    pub frontends: Vec<FrontendConfig>,
    #[serde(default, rename = "backend")]
    pub backends: Vec<BackendConfig>,
    #[serde(default, rename = "pool")]
    pub pools: BTreeMap<String, PoolConfig>,
    #[serde(default)]
    pub health: HealthConfig,
    /// What the engine does on its own when a backend dies under load.
    #[serde(default)]
    pub failover: FailoverConfig,
    /// The control process (`dnsrailctl serve`).
    #[serde(default)]
    pub ctl: CtlConfig,
    /// Dynamic blocks of sources over a rate.
    #[serde(default)]
    pub dynblock: DynBlockConfig,
    /// Announcing the VIPs to the routers through BIRD (ctl only).
    #[serde(default)]
    pub announce: Option<AnnounceConfig>,
    /// Rules written in this file, in order (before those of `rules.file`).
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleConfig>,
    #[serde(default, rename = "rules")]
    pub rules_section: RulesSection,
    /// The compiled rules of this file and of `rules.file`.
    #[serde(skip)]
    pub compiled_rules: Option<Arc<RuleSet>>,
}

/// `[dynblock]`: block a source prefix over `qps` for `block_s` seconds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynBlockConfig {
    /// Queries per second per source prefix (per worker); 0 = off.
    pub qps: u32,
    pub prefix_v4: u8,
    pub prefix_v6: u8,
    pub block_s: u64,
    /// Most prefixes blocked at once.
    pub max_blocked: usize,
}

impl Default for DynBlockConfig {
    fn default() -> Self {
        DynBlockConfig {
            qps: 0,
            prefix_v4: 32,
            prefix_v6: 64,
            block_s: 60,
            max_blocked: 10_000,
        }
    }
}

/// `[ctl]`: the control process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CtlConfig {
    /// HTTP API, `/metrics` and the dashboard. Loopback by default.
    pub api_listen: String,
    /// Bearer token required for changes through the API.
    pub token: Option<String>,
    /// A file holding the token (first line), instead of `token`.
    pub token_file: Option<String>,
    /// The engine's control socket.
    pub control_socket: String,
    /// The engine binary; default: `dnsrail` beside `dnsrailctl`.
    pub engine_binary: Option<String>,
    /// Serve TCP/53 on the frontends (proxied to backends over TCP).
    pub tcp: bool,
    /// A TCP client idle this long is closed.
    pub tcp_idle_timeout_ms: u64,
    /// Concurrent TCP client connections, over all frontends.
    pub tcp_max_connections: usize,
}

impl Default for CtlConfig {
    fn default() -> Self {
        CtlConfig {
            api_listen: "127.0.0.1:8053".into(),
            token: None,
            token_file: None,
            control_socket: "/run/dnsrail/engine.sock".into(),
            engine_binary: None,
            tcp: true,
            tcp_idle_timeout_ms: 10_000,
            tcp_max_connections: 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RulesSection {
    /// A file of `[[rule]]` entries (relative to this file's directory),
    /// appended after the rules written here. Meant for large generated sets.
    pub file: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IoMode {
    /// AF_XDP where the interface and privileges allow, else sockets.
    #[default]
    Auto,
    Socket,
    Xdp,
}

/// How AF_XDP sockets bind: zero-copy needs driver support (veth refuses
/// it); `auto` tries zero-copy, then copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum XdpBind {
    #[default]
    Auto,
    Zerocopy,
    Copy,
}

/// How the XDP program attaches: `native` runs in the driver, `generic`
/// after the kernel built an skb (slower, works everywhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum XdpAttach {
    #[default]
    Auto,
    Native,
    Generic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PollMode {
    Busy,
    #[default]
    Adaptive,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    pub io: IoMode,
    /// Interface the AF_XDP data plane attaches to.
    pub interface: Option<String>,
    /// Worker threads; 0 = one per online CPU.
    pub workers: usize,
    /// CPUs to pin workers to, in order; default: CPU i for worker i.
    pub cpus: Option<Vec<usize>>,
    pub poll: PollMode,
    /// Backend-side UDP source ports per worker, each reaching every
    /// backend (AF_XDP: reserved port numbers; sockets: one unconnected
    /// socket each). Every query leaves from one drawn at random, so a
    /// forger must guess log2(ports) + 16 bits with the DNS ID.
    pub ports_per_worker: u32,
    /// In-flight slots per worker (a power of two, 64 bytes each): how many
    /// queries one worker can have waiting.
    pub slots_per_worker: u32,
    /// AF_XDP socket bind mode.
    pub xdp_bind: XdpBind,
    /// XDP program attach mode.
    pub xdp_attach: XdpAttach,
    /// A query unanswered this long is dropped and counted against its backend.
    pub timeout_ms: u64,
    /// Seconds between one-line summaries in the log; 0 disables them.
    pub stats_interval_s: u64,
    /// Datagrams per recvmmsg/sendmmsg batch.
    pub batch: usize,
    /// Largest EDNS UDP payload size a forwarded query may advertise; larger
    /// values are lowered in place so backends do not send answers that
    /// fragment. 0 leaves queries alone.
    pub edns_max_payload: u16,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            io: IoMode::Auto,
            interface: None,
            workers: 0,
            cpus: None,
            poll: PollMode::Adaptive,
            ports_per_worker: 1024,
            slots_per_worker: 1 << 16,
            xdp_bind: XdpBind::Auto,
            xdp_attach: XdpAttach::Auto,
            timeout_ms: 2000,
            stats_interval_s: 10,
            batch: 64,
            edns_max_payload: 1232,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontendConfig {
    /// Address:port clients send to (the VIP).
    pub listen: Spanned<String>,
    #[serde(default = "default_pool")]
    pub pool: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    pub name: Spanned<String>,
    /// `ip`, `ip:port`, `[v6]:port`; the port defaults to 53.
    pub address: Spanned<String>,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default)]
    pub order: u32,
    #[serde(default = "default_pools")]
    pub pools: Vec<Spanned<String>>,
    /// Static next-hop MAC for the AF_XDP data plane (else from neighbours).
    #[serde(default)]
    pub mac: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WhenAllDown {
    /// Answer SERVFAIL at once, so clients fail over instead of waiting.
    #[default]
    Servfail,
    Drop,
    /// Send to the pool's members anyway, as if all were up.
    Any,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    pub policy: PolicyKind,
    pub when_all_down: WhenAllDown,
}

/// Health checking, carried out by the control process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub rise: u32,
    pub fall: u32,
    pub query_name: String,
    pub query_type: String,
    pub fail_rcodes: Vec<String>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval_ms: 1000,
            timeout_ms: 500,
            rise: 2,
            fall: 3,
            query_name: "a.root-servers.net.".into(),
            query_type: "A".into(),
            fail_rcodes: vec!["SERVFAIL".into()],
        }
    }
}

/// `[failover]`: the engine's own, immediate reaction to a dying backend
/// (health checks still decide when it comes back).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailoverConfig {
    /// Take a backend out on an ICMP destination unreachable (or
    /// ECONNREFUSED) that quotes one of our queries to it.
    pub icmp: bool,
    /// AF_XDP: send the query an ICMP message quotes to another backend.
    pub redispatch: bool,
    /// Take a backend out after this long with a query outstanding and no
    /// answer at all while a pool peer answers; 0 = off.
    pub dead_after_ms: u64,
    /// With no control process attached (no health checks to bring it
    /// back), an ejected backend is let in again after this long.
    pub standalone_hold_ms: u64,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            icmp: true,
            redispatch: true,
            dead_after_ms: 100,
            standalone_hold_ms: 5000,
        }
    }
}

fn one() -> u32 {
    1
}
fn default_pool() -> Spanned<String> {
    Spanned::new(0..0, DEFAULT_POOL.to_string())
}
fn default_pools() -> Vec<Spanned<String>> {
    vec![default_pool()]
}

/// A configuration error: where, which key, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": key `{k}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Context for turning spans into lines while validating.
struct Src<'a> {
    file: &'a str,
    text: &'a str,
}

impl Src<'_> {
    fn line_of(&self, span: std::ops::Range<usize>) -> Option<usize> {
        if span.is_empty() && span.start == 0 {
            return None; // a default, not in the file
        }
        let at = span.start.min(self.text.len());
        Some(self.text[..at].bytes().filter(|&b| b == b'\n').count() + 1)
    }

    fn err(&self, span: Option<std::ops::Range<usize>>, key: String, msg: String) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: span.and_then(|s| self.line_of(s)),
            key: Some(key),
            message: msg,
        }
    }
}

/// Parses `ip`, `ip:port` or `[ipv6]:port`, with `default_port` when absent.
pub fn parse_addr(s: &str, default_port: u16) -> Option<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    s.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, default_port))
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        })?;
        Config::parse_in(&text, &file, path.parent().unwrap_or(Path::new(".")))
    }

    /// Parses and validates `text`; `file` names it in errors. A relative
    /// `rules.file` is taken from the current directory.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        Config::parse_in(text, file, Path::new("."))
    }

    fn parse_in(text: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
        let mut cfg = Config::parse_only(text, file)?;
        cfg.compile_rules(text, file, base)?;
        Ok(cfg)
    }

    /// Worker threads the engine will run.
    /// Workers the engine runs: as configured; else one per receive queue
    /// of the interface when AF_XDP may be used, one per CPU otherwise.
    pub fn worker_count(&self) -> usize {
        let cpus = || std::thread::available_parallelism().map_or(1, |n| n.get());
        match (self.engine.workers, self.engine.io, &self.engine.interface) {
            (0, IoMode::Socket, _) | (0, _, None) => cpus(),
            (0, _, Some(ifname)) => crate::io::iface::Iface::open(ifname)
                .map(|i| i.rx_queues as usize)
                .unwrap_or_else(|_| cpus()),
            (n, _, _) => n,
        }
    }

    /// Pools that have backends, in the order the snapshot indexes them.
    pub fn pool_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .backends
            .iter()
            .flat_map(|b| b.pools.iter().map(|p| p.get_ref().clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    fn compile_rules(&mut self, text: &str, file: &str, base: &Path) -> Result<(), ConfigError> {
        let mut all = self.rules.clone();
        let mut extra: Option<(String, String)> = None;
        if let Some(f) = &self.rules_section.file {
            let path = base.join(f);
            let rfile = path.display().to_string();
            let rtext = std::fs::read_to_string(&path).map_err(|e| ConfigError {
                file: file.to_string(),
                line: None,
                key: Some("rules.file".into()),
                message: format!("cannot read {rfile}: {e}"),
            })?;
            let de = toml::Deserializer::new(&rtext);
            let parsed: RulesFile = serde_path_to_error::deserialize(de).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let src = Src {
                    file: &rfile,
                    text: &rtext,
                };
                ConfigError {
                    file: rfile.clone(),
                    line: inner.span().and_then(|s| src.line_of(s)),
                    key: (path != ".").then_some(path),
                    message: inner.message().trim().to_string(),
                }
            })?;
            all.extend(parsed.rules);
            extra = Some((rfile, rtext));
        }
        let inline = self.rules.len();
        let set = RuleSet::compile(&all, &self.pool_names(), self.worker_count()).map_err(|e| {
            let (f, t, idx) = match &extra {
                Some((rf, rt)) if e.index >= inline => (rf.as_str(), rt.as_str(), e.index - inline),
                _ => (file, text, e.index),
            };
            let src = Src { file: f, text: t };
            let key = e
                .key
                .replacen(&format!("rule[{}]", e.index), &format!("rule[{idx}]"), 1);
            src.err(Some(all[e.index].name.span()), key, e.message)
        })?;
        self.compiled_rules = Some(Arc::new(set));
        Ok(())
    }

    fn parse_only(text: &str, file: &str) -> Result<Config, ConfigError> {
        let src = Src { file, text };
        let de = toml::Deserializer::new(text);
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            ConfigError {
                file: file.to_string(),
                line: inner.span().and_then(|s| src.line_of(s)),
                key: (path != ".").then_some(path),
                message: inner.message().trim().to_string(),
            }
        })?;
        cfg.validate(&src)?;
        Ok(cfg)
    }

    /// The pools that exist: those declared plus the implicit `default`.
    pub fn pool(&self, name: &str) -> Option<PoolConfig> {
        match self.pools.get(name) {
            Some(p) => Some(p.clone()),
            None if name == DEFAULT_POOL => Some(PoolConfig::default()),
            None => None,
        }
    }

    pub fn backend_addr(b: &BackendConfig) -> SocketAddr {
        parse_addr(b.address.get_ref(), 53).expect("validated")
    }

    pub fn frontend_addr(f: &FrontendConfig) -> SocketAddr {
        parse_addr(f.listen.get_ref(), 53).expect("validated")
    }

    fn validate(&self, src: &Src) -> Result<(), ConfigError> {
        let e = &self.engine;
        let whole = |key: &str, msg: String| src.err(None, key.to_string(), msg);
        if e.io == IoMode::Xdp && e.interface.is_none() {
            return Err(whole(
                "engine.interface",
                "io = \"xdp\" needs an interface".into(),
            ));
        }
        if e.workers > 256 {
            return Err(whole("engine.workers", "at most 256 workers".into()));
        }
        if !(1..=crate::inflight::MAX_PORTS_PER_WORKER as u32).contains(&e.ports_per_worker) {
            return Err(whole(
                "engine.ports_per_worker",
                format!("must be 1 to {}", crate::inflight::MAX_PORTS_PER_WORKER),
            ));
        }
        let slots = e.slots_per_worker as usize;
        if !slots.is_power_of_two()
            || !(crate::inflight::MIN_SLOTS..=crate::inflight::MAX_SLOTS).contains(&slots)
        {
            return Err(whole(
                "engine.slots_per_worker",
                format!(
                    "must be a power of two from {} to {}",
                    crate::inflight::MIN_SLOTS,
                    crate::inflight::MAX_SLOTS
                ),
            ));
        }
        let d = &self.dynblock;
        if d.prefix_v4 > 32 || d.prefix_v6 > 128 {
            return Err(whole(
                "dynblock.prefix_v4",
                "prefix_v4 ≤ 32 and prefix_v6 ≤ 128".into(),
            ));
        }
        if d.qps > 0 && !(1..=86_400).contains(&d.block_s) {
            return Err(whole("dynblock.block_s", "must be 1 to 86400".into()));
        }
        if !(1..=1_000_000).contains(&d.max_blocked) {
            return Err(whole("dynblock.max_blocked", "must be 1 to 1000000".into()));
        }
        if self.ctl.api_listen.parse::<SocketAddr>().is_err() {
            return Err(whole("ctl.api_listen", "must be ip:port".into()));
        }
        if !(100..=3_600_000).contains(&self.ctl.tcp_idle_timeout_ms) {
            return Err(whole(
                "ctl.tcp_idle_timeout_ms",
                "must be 100 to 3600000".into(),
            ));
        }
        if self.ctl.tcp_max_connections == 0 {
            return Err(whole(
                "ctl.tcp_max_connections",
                "must be at least 1".into(),
            ));
        }
        if !(1..=60_000).contains(&e.timeout_ms) {
            return Err(whole("engine.timeout_ms", "must be 1 to 60000".into()));
        }
        let f = &self.failover;
        if f.dead_after_ms != 0 && !(10..e.timeout_ms).contains(&f.dead_after_ms) {
            return Err(whole(
                "failover.dead_after_ms",
                format!(
                    "must be 0 (off) or from 10 to below engine.timeout_ms ({})",
                    e.timeout_ms
                ),
            ));
        }
        if !(100..=3_600_000).contains(&f.standalone_hold_ms) {
            return Err(whole(
                "failover.standalone_hold_ms",
                "must be 100 to 3600000".into(),
            ));
        }
        if e.edns_max_payload != 0 && e.edns_max_payload < 512 {
            return Err(whole(
                "engine.edns_max_payload",
                "must be 0 (off) or at least 512".into(),
            ));
        }
        if !(1..=1024).contains(&e.batch) {
            return Err(whole("engine.batch", "must be 1 to 1024".into()));
        }
        if self.frontends.is_empty() {
            return Err(whole(
                "frontend",
                "at least one [[frontend]] is needed".into(),
            ));
        }
        if self.backends.is_empty() {
            return Err(whole(
                "backend",
                "at least one [[backend]] is needed".into(),
            ));
        }
        if self.frontends.len() > MAX_FRONTENDS {
            return Err(whole(
                "frontend",
                format!("at most {MAX_FRONTENDS} frontends"),
            ));
        }
        if self.backends.len() > MAX_BACKENDS {
            return Err(whole("backend", format!("at most {MAX_BACKENDS} backends")));
        }
        let mut listens = HashSet::new();
        for (i, f) in self.frontends.iter().enumerate() {
            let Some(addr) = parse_addr(f.listen.get_ref(), 53) else {
                return Err(src.err(
                    Some(f.listen.span()),
                    format!("frontend[{i}].listen"),
                    format!(
                        "`{}` is not an address (ip, ip:port or [ip6]:port)",
                        f.listen.get_ref()
                    ),
                ));
            };
            if addr.port() != 0 && !listens.insert(addr) {
                return Err(src.err(
                    Some(f.listen.span()),
                    format!("frontend[{i}].listen"),
                    format!("{addr} is listed twice"),
                ));
            }
            if self.pool(f.pool.get_ref()).is_none() {
                return Err(src.err(
                    Some(f.pool.span()),
                    format!("frontend[{i}].pool"),
                    format!("unknown pool `{}`", f.pool.get_ref()),
                ));
            }
        }
        if let Some(a) = &self.announce {
            let ips: Vec<IpAddr> = self
                .frontends
                .iter()
                .filter_map(|f| parse_addr(f.listen.get_ref(), 53).map(|a| a.ip()))
                .collect();
            a.validate(&ips).map_err(|(key, msg)| whole(&key, msg))?;
        }
        let mut names = HashSet::new();
        let mut used_pools = HashSet::new();
        for (i, b) in self.backends.iter().enumerate() {
            let name = b.name.get_ref();
            if name.is_empty() || name.len() > 64 || name.contains(char::is_whitespace) {
                return Err(src.err(
                    Some(b.name.span()),
                    format!("backend[{i}].name"),
                    "must be 1 to 64 characters without spaces".into(),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(src.err(
                    Some(b.name.span()),
                    format!("backend[{i}].name"),
                    format!("`{name}` is used by another backend"),
                ));
            }
            match parse_addr(b.address.get_ref(), 53) {
                Some(a) if a.port() != 0 && !a.ip().is_unspecified() => {}
                _ => {
                    return Err(src.err(
                        Some(b.address.span()),
                        format!("backend[{i}].address"),
                        format!("`{}` is not a usable address", b.address.get_ref()),
                    ))
                }
            }
            if b.weight > 1_000_000 {
                return Err(src.err(
                    None,
                    format!("backend[{i}].weight"),
                    "must be at most 1000000".into(),
                ));
            }
            if b.pools.is_empty() {
                return Err(src.err(
                    Some(b.name.span()),
                    format!("backend[{i}].pools"),
                    "a backend must be in at least one pool".into(),
                ));
            }
            for (j, p) in b.pools.iter().enumerate() {
                if self.pool(p.get_ref()).is_none() {
                    return Err(src.err(
                        Some(p.span()),
                        format!("backend[{i}].pools[{j}]"),
                        format!("unknown pool `{}`", p.get_ref()),
                    ));
                }
                used_pools.insert(p.get_ref().clone());
            }
            if let Some(m) = &b.mac {
                if parse_mac(m.get_ref()).is_none() {
                    return Err(src.err(
                        Some(m.span()),
                        format!("backend[{i}].mac"),
                        format!("`{}` is not a MAC address", m.get_ref()),
                    ));
                }
            }
        }
        // The in-flight slot keeps a query's pool in 15 bits.
        if used_pools.len() > 4096 {
            return Err(whole("backend.pools", "at most 4096 pools".into()));
        }
        for (i, f) in self.frontends.iter().enumerate() {
            if !used_pools.contains(f.pool.get_ref()) {
                return Err(src.err(
                    Some(f.pool.span()),
                    format!("frontend[{i}].pool"),
                    format!("pool `{}` has no backends", f.pool.get_ref()),
                ));
            }
        }
        let h = &self.health;
        if h.rise == 0 || h.fall == 0 {
            return Err(whole("health", "rise and fall must be at least 1".into()));
        }
        if h.interval_ms == 0 || h.timeout_ms == 0 || h.timeout_ms > h.interval_ms {
            return Err(whole(
                "health.timeout_ms",
                "interval_ms and timeout_ms must be positive, timeout_ms <= interval_ms".into(),
            ));
        }
        for r in &h.fail_rcodes {
            if crate::wire::dns::rcode::by_name(r).is_none() {
                return Err(whole("health.fail_rcodes", format!("unknown RCODE `{r}`")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[engine]
io = "socket"
workers = 2
timeout_ms = 1500

[[frontend]]
listen = "127.0.0.1:5300"

[[frontend]]
listen = "[::1]:5300"
pool = "hashed"

[[backend]]
name = "r1"
address = "127.0.0.1:5301"
weight = 3
pools = ["default", "hashed"]

[[backend]]
name = "r2"
address = "::1"
pools = ["hashed"]

[pool.hashed]
policy = "qname-hash"
when_all_down = "any"
"#;

    #[test]
    fn parses_a_full_file() {
        let c = Config::parse(GOOD, "t.toml").unwrap();
        assert_eq!(c.engine.io, IoMode::Socket);
        assert_eq!(c.engine.workers, 2);
        assert_eq!(c.frontends.len(), 2);
        assert_eq!(c.frontends[0].pool.get_ref(), "default");
        assert_eq!(
            Config::backend_addr(&c.backends[1]),
            "[::1]:53".parse().unwrap()
        );
        assert_eq!(c.pool("hashed").unwrap().policy, PolicyKind::QnameHash);
        assert_eq!(c.pool("default").unwrap().policy, PolicyKind::RoundRobin);
        assert_eq!(c.health.fall, 3);
    }

    fn err(text: &str) -> ConfigError {
        Config::parse(text, "t.toml").unwrap_err()
    }

    #[test]
    fn type_error_names_line_and_key() {
        let e = err(&GOOD.replace("weight = 3", "weight = \"x\""));
        assert_eq!(e.line, Some(17), "{e}");
        assert_eq!(e.key.as_deref(), Some("backend[0].weight"), "{e}");
        assert!(
            e.to_string()
                .starts_with("t.toml:17: key `backend[0].weight`:"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_is_refused() {
        let e = err(&GOOD.replace("timeout_ms = 1500", "timeout = 1500"));
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.message.contains("unknown field `timeout`"), "{e}");
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = err("[engine]\nio = \n");
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn semantic_errors_point_at_the_value() {
        let e = err(&GOOD.replace("pool = \"hashed\"", "pool = \"nope\""));
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(12), Some("frontend[1].pool")),
            "{e}"
        );
        assert!(e.message.contains("unknown pool `nope`"));

        let e = err(&GOOD.replace("name = \"r2\"", "name = \"r1\""));
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(21), Some("backend[1].name")),
            "{e}"
        );

        let e = err(&GOOD.replace("address = \"::1\"", "address = \"resolver.example\""));
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(22), Some("backend[1].address")),
            "{e}"
        );

        let e = err(&GOOD.replace("policy = \"qname-hash\"", "policy = \"fastest\""));
        assert_eq!(e.line, Some(26), "{e}");
        assert!(
            e.key.as_deref().unwrap().starts_with("pool.hashed.policy"),
            "{e}"
        );
    }

    #[test]
    fn engine_limits() {
        let e = err(&GOOD.replace("io = \"socket\"", "io = \"xdp\""));
        assert_eq!(e.key.as_deref(), Some("engine.interface"));
        let e = err(&GOOD.replace("timeout_ms = 1500", "timeout_ms = 0"));
        assert_eq!(e.key.as_deref(), Some("engine.timeout_ms"));
        let e = err("[[backend]]\nname = \"a\"\naddress = \"127.0.0.1\"\n");
        assert_eq!(e.key.as_deref(), Some("frontend"));
    }

    #[test]
    fn failover_limits_and_defaults() {
        let c = Config::parse(GOOD, "t").unwrap();
        assert_eq!(c.failover, FailoverConfig::default());
        assert!(c.failover.icmp && c.failover.redispatch);
        assert_eq!(c.failover.dead_after_ms, 100);
        // The silence window must end before a query times out.
        let e = err(&format!("{GOOD}\n[failover]\ndead_after_ms = 1500\n"));
        assert_eq!(e.key.as_deref(), Some("failover.dead_after_ms"));
        assert!(
            e.message.contains("engine.timeout_ms (1500)"),
            "{}",
            e.message
        );
        let e = err(&format!("{GOOD}\n[failover]\ndead_after_ms = 5\n"));
        assert_eq!(e.key.as_deref(), Some("failover.dead_after_ms"));
        let c = Config::parse(&format!("{GOOD}\n[failover]\ndead_after_ms = 0\n"), "t").unwrap();
        assert_eq!(c.failover.dead_after_ms, 0, "0 = off");
        let e = err(&format!("{GOOD}\n[failover]\nstandalone_hold_ms = 10\n"));
        assert_eq!(e.key.as_deref(), Some("failover.standalone_hold_ms"));
        let e = err(&format!("{GOOD}\n[failover]\nicmp = \"yes\"\n"));
        assert!(e.to_string().contains("failover"), "{e}");
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let text = include_str!("../../examples/dnsrail.toml");
        let c = Config::parse(text, "examples/dnsrail.toml").unwrap();
        assert_eq!(c.backends.len(), 3);
        assert_eq!(
            c.pool("cache-affine").unwrap().when_all_down,
            WhenAllDown::Any
        );
        assert_eq!(c.engine.ports_per_worker, 1024);
        assert_eq!(c.engine.slots_per_worker, 65536);
        assert_eq!(c.ctl.control_socket, "/run/dnsrail/engine.sock");
    }

    #[test]
    fn addresses_and_macs() {
        assert_eq!(
            parse_addr("192.0.2.1", 53),
            Some("192.0.2.1:53".parse().unwrap())
        );
        assert_eq!(
            parse_addr("[2001:db8::1]:5353", 53),
            Some("[2001:db8::1]:5353".parse().unwrap())
        );
        assert_eq!(parse_addr("example.com", 53), None);
        assert_eq!(
            parse_mac("02:00:00:aa:bb:cc"),
            Some([2, 0, 0, 0xaa, 0xbb, 0xcc])
        );
        assert_eq!(parse_mac("02:00:00:aa:bb"), None);
        assert_eq!(parse_mac("02:00:00:aa:bb:cc:dd"), None);
        assert_eq!(parse_mac("zz:00:00:aa:bb:cc"), None);
    }
}
