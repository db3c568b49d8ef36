//! The immutable state workers read: backends, pools with their built
//! selectors, frontends. A change (reload, health, drain, weight) builds a new
//! snapshot and swaps it in atomically; workers load it once per batch.
//!
//! Backends and frontends keep a stable numeric id across snapshots (by name,
//! by listen address): in-flight slots and counters refer to those ids, so an
//! answer for a query sent before a reload still finds its client.

use crate::cache::{Cache, Settings};
use crate::config::{Config, ConfigError, WhenAllDown};
use crate::fate::Ejection;
use crate::policy::{Member, PolicyKind, Selector};
use crate::rules::RuleSet;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

pub use crate::ids::{BackendId, Mac, MAX_BACKENDS, MAX_FRONTENDS};

#[derive(Clone, Debug)]
pub struct Backend {
    pub id: BackendId,
    pub name: String,
    pub addr: SocketAddr,
    pub weight: u32,
    pub order: u32,
    pub mac: Option<Mac>,
    /// Frame data plane: false while the backend's next hop has no MAC
    /// (treated as down). Always true on the socket data plane.
    pub reachable: bool,
    /// Health as last decided by the control process (up at start).
    pub up: bool,
    /// Drained by an operator: no new queries, answers still accepted.
    pub drained: bool,
    /// Taken out by the engine itself (ICMP, silence) until the control
    /// process readmits it: not `up` meanwhile.
    pub ejected: Option<Ejection>,
}

impl Backend {
    pub fn usable(&self) -> bool {
        self.up && self.reachable && !self.drained && self.weight > 0
    }
}

#[derive(Clone, Debug)]
pub struct Pool {
    pub name: String,
    pub policy: PolicyKind,
    pub when_all_down: WhenAllDown,
    pub members: Box<[BackendId]>,
    /// Over the usable members.
    pub active: Selector,
    /// Over all members regardless of health (`when_all_down = "any"`).
    pub fallback: Selector,
    /// The pool's packet cache (`cache_entries` > 0), kept across
    /// snapshots by the registry, and its settings.
    pub cache: Option<Arc<Cache>>,
    pub cache_settings: Settings,
}

#[derive(Clone, Debug)]
pub struct Frontend {
    pub id: u16,
    pub listen: SocketAddr,
    pub pool: u16,
}

/// Operator and health overrides on top of the file, by backend name.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub down: HashMap<String, bool>,
    pub drained: HashMap<String, bool>,
    pub weight: HashMap<String, u32>,
    /// Frame data plane: next-hop MACs resolved from the kernel's neighbour
    /// table. `None` on the socket data plane, where MACs do not matter.
    pub neighbours: Option<HashMap<String, Mac>>,
    /// Frame data plane: the interface's addresses. A wildcard frontend
    /// (`0.0.0.0:53`, `[::]:53`) becomes one frontend per address of its
    /// family, so that each answer leaves from the address its query was
    /// sent to, and a query to an address the host does not own is not
    /// ours. `None` on the socket data plane, where the kernel does both.
    pub local_addrs: Option<Vec<IpAddr>>,
    /// Backends the engine took out (`fate`), by name.
    pub ejected: HashMap<String, Ejection>,
}

/// Stable ids by name / listen address. Ids are only recycled when the
/// table is full, and then only ids absent from the configuration at hand.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    backends: Vec<String>,
    frontends: Vec<SocketAddr>,
    /// Each pool's cache by name: a reload keeps it unless its size
    /// changes (then it starts empty).
    caches: HashMap<String, Arc<Cache>>,
}

impl Registry {
    fn id_for<K: PartialEq + Clone>(
        table: &mut Vec<K>,
        key: &K,
        max: usize,
        in_use: impl Fn(&K) -> bool,
    ) -> Option<u16> {
        if let Some(i) = table.iter().position(|k| k == key) {
            return Some(i as u16);
        }
        if table.len() < max {
            table.push(key.clone());
            return Some((table.len() - 1) as u16);
        }
        let i = table.iter().position(|k| !in_use(k))?;
        table[i] = key.clone();
        Some(i as u16)
    }
}

fn as_member(b: &Backend) -> Member<'_> {
    Member {
        id: b.id,
        name: &b.name,
        weight: b.weight,
        order: b.order,
    }
}

#[derive(Clone, Debug)]
pub struct Snapshot {
    pub generation: u64,
    pub backends: Box<[Option<Backend>]>,
    pub pools: Box<[Pool]>,
    pub frontends: Box<[Option<Frontend>]>,
    pub timeout_ns: u64,
    /// The configuration's rules, compiled by the engine for the workers it
    /// runs (empty from `build`: the caller sets them).
    pub rules: Arc<RuleSet>,
    /// Rules set at run time (ctl's API), checked before `rules`.
    pub runtime_rules: Arc<RuleSet>,
    /// 0 = do not clamp.
    pub edns_max: u16,
    /// Backends a reload removed (or readdressed) recently, by id and old
    /// address: their answers to queries sent before the reload are still
    /// accepted (frame mode checks the source against this too).
    pub retired: Vec<(BackendId, SocketAddr)>,
    /// `[failover]`: silence window (0 = off), act on ICMP, re-dispatch.
    pub dead_after_ns: u64,
    pub icmp_failover: bool,
    pub redispatch: bool,
}

/// The addresses frontends listen on, with their pool: as configured, a
/// wildcard expanded over `local` (when given) after every explicit one,
/// without repeating an address an explicit frontend has.
fn frontend_listens<'a>(cfg: &'a Config, local: Option<&[IpAddr]>) -> Vec<(SocketAddr, &'a str)> {
    let mut out: Vec<(SocketAddr, &str)> = Vec::new();
    let mut wild = Vec::new();
    for f in &cfg.frontends {
        let addr = Config::frontend_addr(f);
        let pool = f.pool.get_ref().as_str();
        match local {
            Some(_) if addr.ip().is_unspecified() => wild.push((addr, pool)),
            _ => out.push((addr, pool)),
        }
    }
    for (w, pool) in wild {
        for ip in local.unwrap_or_default() {
            let a = SocketAddr::new(*ip, w.port());
            if ip.is_ipv4() == w.is_ipv4() && !out.iter().any(|o| o.0 == a) {
                out.push((a, pool));
            }
        }
    }
    out
}

impl Snapshot {
    /// Builds a snapshot of a validated configuration. Rules are not in it
    /// (`rules` and `runtime_rules` are empty): they are compiled for the
    /// running workers by their owner, which sets them.
    pub fn build(cfg: &Config, reg: &mut Registry, ov: &Overrides, generation: u64) -> Snapshot {
        let names: Vec<&str> = cfg
            .backends
            .iter()
            .map(|b| b.name.get_ref().as_str())
            .collect();
        let mut backends: Vec<Option<Backend>> = vec![None; MAX_BACKENDS];
        let mut by_name = HashMap::new();
        for b in &cfg.backends {
            let name = b.name.get_ref().clone();
            let id = Registry::id_for(&mut reg.backends, &name, MAX_BACKENDS, |k| {
                names.contains(&k.as_str())
            })
            .expect("validated: at most MAX_BACKENDS backends");
            by_name.insert(name.clone(), id);
            // A static MAC wins over the neighbour table.
            let mac = b
                .mac
                .as_ref()
                .and_then(|m| crate::config::parse_mac(m.get_ref()))
                .or_else(|| ov.neighbours.as_ref()?.get(&name).copied());
            backends[usize::from(id)] = Some(Backend {
                id,
                addr: Config::backend_addr(b),
                weight: ov.weight.get(&name).copied().unwrap_or(b.weight),
                order: b.order,
                reachable: ov.neighbours.is_none() || mac.is_some(),
                mac,
                up: !ov.down.get(&name).copied().unwrap_or(false)
                    && !ov.ejected.contains_key(&name),
                ejected: ov.ejected.get(&name).copied(),
                drained: ov.drained.get(&name).copied().unwrap_or(false),
                name,
            });
        }

        let pool_names = cfg.pool_names();
        // Caches of pools that no longer have one are let go.
        reg.caches.retain(|name, _| {
            pool_names.contains(name) && cfg.pool(name).is_some_and(|p| p.cache_entries > 0)
        });
        let pools: Vec<Pool> = pool_names
            .iter()
            .map(|pname| {
                let pc = cfg.pool(pname).expect("validated");
                let members: Vec<&Backend> = cfg
                    .backends
                    .iter()
                    .filter(|b| b.pools.iter().any(|p| p.get_ref() == pname))
                    .map(|b| {
                        backends[usize::from(by_name[b.name.get_ref()])]
                            .as_ref()
                            .unwrap()
                    })
                    .collect();
                let usable: Vec<Member> = members
                    .iter()
                    .filter(|b| b.usable())
                    .map(|b| as_member(b))
                    .collect();
                // The fallback ignores health and drain but not weight 0,
                // nor a missing next hop (a frame cannot be sent there).
                let all: Vec<Member> = members
                    .iter()
                    .filter(|b| b.reachable)
                    .map(|b| as_member(b))
                    .collect();
                let cache_settings = Settings::of(&pc);
                let cache = (cache_settings.entries > 0).then(|| {
                    let c = reg
                        .caches
                        .entry(pname.clone())
                        .or_insert_with(|| Arc::new(Cache::new(cache_settings.entries)));
                    if c.capacity() != Cache::new_capacity(cache_settings.entries) {
                        *c = Arc::new(Cache::new(cache_settings.entries));
                    }
                    c.clone()
                });
                Pool {
                    cache,
                    cache_settings,
                    name: pname.clone(),
                    policy: pc.policy,
                    when_all_down: pc.when_all_down,
                    members: members.iter().map(|b| b.id).collect(),
                    active: Selector::build(pc.policy, &usable),
                    fallback: Selector::build(pc.policy, &all),
                }
            })
            .collect();

        let listens = frontend_listens(cfg, ov.local_addrs.as_deref());
        let addrs: Vec<SocketAddr> = listens.iter().map(|l| l.0).collect();
        let mut frontends: Vec<Option<Frontend>> = vec![None; MAX_FRONTENDS];
        for &(addr, pool_name) in &listens {
            // Validation caps the configured frontends; a wildcard's
            // addresses beyond the table are left out (and said so).
            let Some(id) = Registry::id_for(&mut reg.frontends, &addr, MAX_FRONTENDS, |k| {
                addrs.contains(k)
            }) else {
                tracing::warn!(
                    "frontend {addr} left out: more than {MAX_FRONTENDS} frontend addresses"
                );
                continue;
            };
            let pool = pool_names
                .iter()
                .position(|p| p == pool_name)
                .expect("validated");
            frontends[usize::from(id)] = Some(Frontend {
                id,
                listen: addr,
                pool: pool as u16,
            });
        }

        Snapshot {
            generation,
            backends: backends.into_boxed_slice(),
            pools: pools.into_boxed_slice(),
            frontends: frontends.into_boxed_slice(),
            timeout_ns: cfg.engine.timeout_ms * 1_000_000,
            rules: Arc::new(RuleSet::empty()),
            runtime_rules: Arc::new(RuleSet::empty()),
            edns_max: cfg.engine.edns_max_payload,
            retired: Vec::new(),
            dead_after_ns: cfg.failover.dead_after_ms * 1_000_000,
            icmp_failover: cfg.failover.icmp,
            redispatch: cfg.failover.redispatch,
        }
    }

    /// A snapshot of `cfg` with its rules compiled for `workers`, for
    /// callers with no running engine (tests, benchmarks, the fuzzer).
    pub fn of_config(cfg: &Config, workers: usize) -> Result<Snapshot, ConfigError> {
        let mut snap = Snapshot::build(cfg, &mut Registry::default(), &Overrides::default(), 1);
        snap.rules = Arc::new(RuleSet::from_config(cfg, workers)?);
        Ok(snap)
    }

    /// Whether an answer from `from` may complete a query sent to backend
    /// `id`: its current address, or the address it had before a reload.
    #[inline]
    pub fn answer_source_ok(&self, id: BackendId, from: SocketAddr) -> bool {
        self.backend(id).is_some_and(|be| be.addr == from)
            || self.retired.iter().any(|&(r, a)| r == id && a == from)
    }

    #[inline]
    pub fn backend(&self, id: BackendId) -> Option<&Backend> {
        self.backends.get(usize::from(id)).and_then(Option::as_ref)
    }

    #[inline]
    pub fn frontend(&self, id: u16) -> Option<&Frontend> {
        self.frontends.get(usize::from(id)).and_then(Option::as_ref)
    }

    pub fn live_backends(&self) -> impl Iterator<Item = &Backend> {
        self.backends.iter().flatten()
    }

    pub fn live_frontends(&self) -> impl Iterator<Item = &Frontend> {
        self.frontends.iter().flatten()
    }

    /// The frontend listening on `addr` (frame mode: the query's destination).
    #[inline]
    pub fn frontend_by_addr(&self, addr: SocketAddr) -> Option<&Frontend> {
        self.live_frontends().find(|f| f.listen == addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"
[[frontend]]
listen = "127.0.0.1:5300"
[[frontend]]
listen = "127.0.0.1:5400"
pool = "other"
[[backend]]
name = "a"
address = "127.0.0.1:5301"
[[backend]]
name = "b"
address = "127.0.0.1:5302"
pools = ["default", "other"]
[pool.other]
policy = "first-available"
when_all_down = "drop"
"#;

    #[test]
    fn builds_pools_and_ids() {
        let cfg = Config::parse(CFG, "t").unwrap();
        let mut reg = Registry::default();
        let s = Snapshot::build(&cfg, &mut reg, &Overrides::default(), 1);
        assert_eq!(s.backend(0).unwrap().name, "a");
        assert_eq!(s.backend(1).unwrap().name, "b");
        assert_eq!(s.pools.len(), 2);
        let def = &s.pools[0];
        assert_eq!(def.name, "default");
        assert_eq!(&*def.members, &[0, 1]);
        let other = &s.pools[s.frontend(1).unwrap().pool as usize];
        assert_eq!(other.name, "other");
        assert_eq!(&*other.members, &[1]);
        assert_eq!(
            s.frontend_by_addr("127.0.0.1:5400".parse().unwrap())
                .map(|f| f.id),
            Some(1)
        );
    }

    #[test]
    fn wildcard_frontends_expand_over_the_interface_addresses() {
        let text = r#"
[[frontend]]
listen = "0.0.0.0:53"
[[frontend]]
listen = "[::]:53"
[[frontend]]
listen = "10.0.0.2:53"
pool = "other"
[[backend]]
name = "a"
address = "10.0.0.9"
pools = ["default", "other"]
[pool.other]
"#;
        let cfg = Config::parse(text, "t").unwrap();
        let local: Vec<IpAddr> = ["10.0.0.1", "10.0.0.2", "fd00::1", "fe80::1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let ov = Overrides {
            local_addrs: Some(local),
            ..Overrides::default()
        };
        let s = Snapshot::build(&cfg, &mut Registry::default(), &ov, 1);
        let mut got: Vec<(String, String)> = s
            .live_frontends()
            .map(|f| {
                (
                    f.listen.to_string(),
                    s.pools[usize::from(f.pool)].name.clone(),
                )
            })
            .collect();
        got.sort();
        let want: Vec<(String, String)> = [
            ("10.0.0.1:53", "default"),
            ("10.0.0.2:53", "other"),
            ("[fd00::1]:53", "default"),
            ("[fe80::1]:53", "default"),
        ]
        .iter()
        .map(|(a, p)| (a.to_string(), p.to_string()))
        .collect();
        assert_eq!(
            got, want,
            "the explicit frontend keeps its address and pool"
        );
        // Sockets: the wildcard stays one frontend (the kernel routes).
        let s = Snapshot::build(&cfg, &mut Registry::default(), &Overrides::default(), 1);
        assert_eq!(s.live_frontends().count(), 3);
        assert!(s.frontend_by_addr("0.0.0.0:53".parse().unwrap()).is_some());
    }

    #[test]
    fn ids_are_stable_across_reloads_and_down_backends_leave_the_selector() {
        let cfg = Config::parse(CFG, "t").unwrap();
        let mut reg = Registry::default();
        let _ = Snapshot::build(&cfg, &mut reg, &Overrides::default(), 1);
        // Reload without "a", with a new "c": b keeps id 1, c gets id 2.
        let cfg2 = Config::parse(
            &CFG.replace(
                "name = \"a\"\naddress = \"127.0.0.1:5301\"",
                "name = \"c\"\naddress = \"127.0.0.1:5303\"",
            ),
            "t",
        )
        .unwrap();
        let mut ov = Overrides::default();
        ov.down.insert("b".into(), true);
        let s = Snapshot::build(&cfg2, &mut reg, &ov, 2);
        assert!(s.backend(0).is_none());
        assert_eq!(s.backend(1).unwrap().name, "b");
        assert_eq!(s.backend(2).unwrap().name, "c");
        let other = &s.pools[1];
        assert!(other.active.is_empty(), "b is down");
        assert!(!other.fallback.is_empty());
    }
}
