//! The checks serde cannot make: ranges, names, pools that exist, limits,
//! each error at the span of the value that is wrong.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use super::error::Src;
use super::{parse_addr, parse_mac, Config, ConfigError, IoMode};
use crate::ids::{
    MAX_BACKENDS, MAX_FRONTENDS, MAX_PORTS_PER_WORKER, MAX_SLOTS, MAX_WORKERS, MIN_SLOTS,
};

impl Config {
    pub(super) fn validate(&self, src: &Src) -> Result<(), ConfigError> {
        let e = &self.engine;
        let whole = |key: &str, msg: String| src.err(None, key.to_string(), msg);
        if e.io == IoMode::Xdp && e.interface.is_none() {
            return Err(whole(
                "engine.interface",
                "io = \"xdp\" needs an interface".into(),
            ));
        }
        if e.workers > MAX_WORKERS {
            return Err(whole(
                "engine.workers",
                format!("at most {MAX_WORKERS} workers"),
            ));
        }
        if !(1..=MAX_PORTS_PER_WORKER as u32).contains(&e.ports_per_worker) {
            return Err(whole(
                "engine.ports_per_worker",
                format!("must be 1 to {}", MAX_PORTS_PER_WORKER),
            ));
        }
        let slots = e.slots_per_worker as usize;
        if !slots.is_power_of_two() || !(MIN_SLOTS..=MAX_SLOTS).contains(&slots) {
            return Err(whole(
                "engine.slots_per_worker",
                format!("must be a power of two from {} to {}", MIN_SLOTS, MAX_SLOTS),
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
        if e.xdp_cache_entries > super::MAX_XDP_CACHE_ENTRIES {
            return Err(whole(
                "engine.xdp_cache_entries",
                format!(
                    "must be 0 (off) to {} (896 bytes each)",
                    super::MAX_XDP_CACHE_ENTRIES
                ),
            ));
        }
        // The XDP program reads the tier's entries with plain loads, which
        // is a sequence lock only where loads are not reordered (x86).
        if e.xdp_cache_entries > 0 && !cfg!(target_arch = "x86_64") {
            return Err(whole(
                "engine.xdp_cache_entries",
                "the XDP answer tier needs x86-64; set 0".into(),
            ));
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
        for (name, p) in &self.pools {
            if p.cache_entries > super::MAX_CACHE_ENTRIES {
                return Err(whole(
                    &format!("pool.{name}.cache_entries"),
                    format!("at most {}", super::MAX_CACHE_ENTRIES),
                ));
            }
            if p.cache_min_ttl_s > p.cache_max_ttl_s {
                return Err(whole(
                    &format!("pool.{name}.cache_min_ttl_s"),
                    "must not exceed cache_max_ttl_s".into(),
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
