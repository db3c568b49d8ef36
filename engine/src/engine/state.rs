//! The control side of a running engine: the configuration, the registry
//! of stable ids, the overrides (health, drain, weight, ejections) and the
//! runtime rules a snapshot is built from, and `publish`, which builds one
//! and swaps it in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, info};

use crate::config::{Config, IoMode};
use crate::io::xdp::XdpPlane;
use crate::rules::runtime::RuntimeRules;
use crate::rules::RuleSet;
use crate::shared::Shared;
use crate::snapshot::{BackendId, Overrides, Registry, Snapshot};

pub(super) struct State {
    pub(super) config: Config,
    pub(super) registry: Registry,
    pub(super) overrides: Overrides,
    pub(super) generation: u64,
    /// Frontends configured with port 0, and the port they got.
    pub(super) resolved: HashMap<SocketAddr, SocketAddr>,
    /// The AF_XDP plane, whose frontend maps follow the snapshot.
    pub(super) xdp: Option<Arc<XdpPlane>>,
    /// Backends removed or readdressed by a reload, with when: answers to
    /// queries sent before it stay acceptable for `timeout + 1 s`.
    pub(super) retired: Vec<(BackendId, SocketAddr, Instant)>,
    /// Rules set at run time, and their compiled set with the pool list it
    /// was compiled for (recompiled only when either changes, so hit
    /// counters survive health and drain changes).
    pub(super) runtime: RuntimeRules,
    pub(super) runtime_compiled: Option<(Vec<String>, Arc<RuleSet>)>,
    /// The configuration's rules, compiled for `workers` (one hit counter
    /// per running worker).
    pub(super) rules: Arc<RuleSet>,
    pub(super) workers: usize,
}

impl State {
    /// The state a data plane starts with: generation 1, nothing retired,
    /// no runtime rules yet.
    pub(super) fn new(
        config: Config,
        registry: Registry,
        overrides: Overrides,
        resolved: HashMap<SocketAddr, SocketAddr>,
        xdp: Option<Arc<XdpPlane>>,
        rules: Arc<RuleSet>,
        workers: usize,
    ) -> State {
        State {
            config,
            registry,
            overrides,
            generation: 1,
            resolved,
            xdp,
            retired: Vec::new(),
            runtime: RuntimeRules::default(),
            runtime_compiled: None,
            rules,
            workers,
        }
    }

    /// Builds a snapshot of the current state and swaps it in.
    pub(super) fn publish(&mut self, shared: &Shared) {
        self.generation += 1;
        let mut snap = Snapshot::build(
            &self.config,
            &mut self.registry,
            &self.overrides,
            self.generation,
        );
        let old = shared.snapshot.load();
        let now = Instant::now();
        for b in old.live_backends() {
            if snap.backend(b.id).map(|n| n.addr) != Some(b.addr) {
                self.retired.push((b.id, b.addr, now));
            }
        }
        let keep = Duration::from_nanos(snap.timeout_ns) + Duration::from_secs(1);
        self.retired.retain(|r| now.duration_since(r.2) <= keep);
        snap.rules = self.rules.clone();
        snap.retired = self.retired.iter().map(|&(id, a, _)| (id, a)).collect();
        let pools = self.config.pool_names();
        if self.runtime_compiled.as_ref().map(|c| &c.0) != Some(&pools) {
            let set = match self.runtime.compile(&pools, self.workers) {
                Ok(set) => set,
                Err(e) => {
                    error!("runtime rules do not compile against this configuration ({e}); they are off until replaced");
                    Arc::new(RuleSet::empty())
                }
            };
            self.runtime_compiled = Some((pools, set));
        }
        snap.runtime_rules = self.runtime_compiled.as_ref().expect("set above").1.clone();
        info!(
            generation = snap.generation,
            backends = snap.live_backends().count(),
            usable = snap.live_backends().filter(|b| b.usable()).count(),
            frontends = snap.live_frontends().count(),
            "new snapshot"
        );
        if let Some(x) = &self.xdp {
            x.sync(&snap);
        }
        shared.snapshot.store(Arc::new(snap));
    }
}

/// The first snapshot of a data plane, with the configuration's rules.
pub(super) fn first_snapshot(
    cfg: &Config,
    rules: &Arc<RuleSet>,
    registry: &mut Registry,
    overrides: &Overrides,
) -> Snapshot {
    let mut snap = Snapshot::build(cfg, registry, overrides, 1);
    snap.rules = rules.clone();
    snap
}

/// Workers the engine runs: as configured; else one per receive queue of
/// the interface when AF_XDP may be used, one per CPU otherwise. (Here,
/// not in the configuration: it asks the interface.)
pub fn worker_count(cfg: &Config) -> usize {
    let cpus = || std::thread::available_parallelism().map_or(1, |n| n.get());
    match (cfg.engine.workers, cfg.engine.io, &cfg.engine.interface) {
        (0, IoMode::Socket, _) | (0, _, None) => cpus(),
        (0, _, Some(ifname)) => crate::io::iface::Iface::open(ifname)
            .map(|i| i.rx_queues as usize)
            .unwrap_or_else(|_| cpus()),
        (n, _, _) => n,
    }
}
