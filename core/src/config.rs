//! The TOML configuration file, shared by the engine (`dnsrail --config`) and
//! the control process.
//!
//! Every error names the file, the line and the key: syntax and type errors
//! come from toml with a byte span and from serde_path_to_error with the key
//! path; semantic errors (an unknown pool, a duplicate name) use the span of
//! the value that is wrong.

//!
//! Plain data here; `parse` reads a file into it, `validate` checks it,
//! `error` says where a problem is.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use toml::Spanned;

mod announce;
#[cfg(test)]
mod doc_tests;
mod error;
mod parse;
pub mod rules;
#[cfg(test)]
mod tests;
mod validate;
pub use announce::AnnounceConfig;
pub use error::ConfigError;
pub use parse::{parse_addr, parse_mac};
pub use rules::RuleConfig;

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
    /// Every rule in match order: those written in this file, then those
    /// of `rules.file` (appended by `Config::load`). Compiled by the engine
    /// (`RuleSet::from_config`), not here.
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleConfig>,
    #[serde(default, rename = "rules")]
    pub rules_section: RulesSection,
    /// Where each rule of `rules` was written, for compile errors.
    #[serde(skip)]
    pub rule_sources: Arc<RuleSources>,
}

/// Where the rules of a configuration were written: the file (and line) a
/// compile error must name, and the rule's index as that file counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSources {
    /// The configuration file.
    pub file: String,
    /// Rules written inline in it (the first `inline` of `Config::rules`).
    pub inline: usize,
    /// `rules.file` as read, holding the rules after those.
    pub rules_file: Option<String>,
    /// The line of each rule, in match order.
    pub lines: Vec<Option<usize>>,
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
    /// AF_XDP: entries of the XDP answer tier (0 = off), rounded up to a
    /// power of two. The pool caches' answers that are asked for again
    /// are copied there, and the XDP program answers them itself.
    pub xdp_cache_entries: usize,
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
            xdp_cache_entries: 0,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    pub policy: PolicyKind,
    pub when_all_down: WhenAllDown,
    /// Packet cache entries (0 = no cache).
    pub cache_entries: usize,
    /// Longest and shortest an answer is kept.
    pub cache_max_ttl_s: u32,
    pub cache_min_ttl_s: u32,
    /// Cap on a negative answer's lifetime (otherwise the SOA's, RFC 2308).
    pub cache_negative_ttl_s: u32,
    /// Serve-stale: while the pool has no usable backend, answers expired
    /// less than this long ago are served with TTL 30 (RFC 8767).
    pub cache_stale_s: u32,
    /// SERVFAIL kept this long (0 = never).
    pub cache_servfail_s: u32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            policy: PolicyKind::default(),
            when_all_down: WhenAllDown::default(),
            cache_entries: 0,
            cache_max_ttl_s: 86_400,
            cache_min_ttl_s: 0,
            cache_negative_ttl_s: 3_600,
            cache_stale_s: 86_400,
            cache_servfail_s: 0,
        }
    }
}

/// Most packet cache entries a pool may have (632 bytes each: 9.9 GiB).
pub const MAX_CACHE_ENTRIES: usize = 1 << 24;
/// Largest `engine.xdp_cache_entries` (896 MiB of tier).
pub const MAX_XDP_CACHE_ENTRIES: usize = 1 << 20;

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

impl Config {
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
}

/// A pool's backend selection policy (`pool.NAME.policy`); `policy`
/// builds the selector for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    #[default]
    RoundRobin,
    WeightedRoundRobin,
    WeightedRandom,
    LeastOutstanding,
    FirstAvailable,
    /// Consistent hash of the query name: each name stays on one backend's
    /// cache, and losing one of N backends moves only its ~1/N of the names.
    QnameHash,
    /// Consistent hash of the client address (sticky clients).
    ClientHash,
}

impl PolicyKind {
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::RoundRobin => "round-robin",
            PolicyKind::WeightedRoundRobin => "weighted-round-robin",
            PolicyKind::WeightedRandom => "weighted-random",
            PolicyKind::LeastOutstanding => "least-outstanding",
            PolicyKind::FirstAvailable => "first-available",
            PolicyKind::QnameHash => "qname-hash",
            PolicyKind::ClientHash => "client-hash",
        }
    }
}
