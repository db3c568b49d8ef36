//! A running engine: the workers, the current snapshot, and the control
//! operations on it (reload, backend state, runtime rules), independent of
//! how it is driven (the `dnsrail` binary, the control process, tests).
//! Starting each data plane is in `start_xdp` and `start_socket`; the state
//! snapshots are built from in `state`; the helper threads in `threads`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::bail;
use tracing::{info, warn};

use crate::config::{Config, ConfigError, IoMode};
use crate::dynblock::DynBlock;
use crate::fate::{Ejection, Fate};
use crate::inflight::InflightTable;
use crate::io::xdp::{XdpCounters, XdpPlane};
use crate::rules::runtime::RuntimeRules;
use crate::rules::RuleSet;
use crate::shared::Shared;
use crate::snapshot::{Overrides, Snapshot, MAX_BACKENDS};
use crate::stats::{Totals, WorkerStats};

mod start_socket;
mod start_xdp;
mod state;
mod threads;

pub use state::worker_count;
use state::State;
use threads::apply_resolved;

/// Which data plane runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io {
    Socket,
    Xdp,
}

/// What the XDP answer tier did (`Engine::tier`).
pub struct TierCounts {
    pub per_pool: Vec<u64>,
    pub per_frontend: Vec<u64>,
    pub capacity: u64,
    pub promoted: u64,
    pub active: bool,
}

pub struct Engine {
    shared: Arc<Shared>,
    stats: Vec<Arc<WorkerStats>>,
    /// Counters of threads that count but are no worker (the AF_XDP slow
    /// path): in every sum, in no per-worker list.
    extra_stats: Vec<Arc<WorkerStats>>,
    table: Arc<InflightTable>,
    threads: Vec<JoinHandle<()>>,
    control: Arc<Mutex<State>>,
    xdp: Option<Arc<XdpPlane>>,
    dynblock: Option<Arc<DynBlock>>,
}

impl Engine {
    /// Starts the data plane `engine.io` asks for: AF_XDP, sockets, or
    /// (`auto`) AF_XDP when the interface and privileges allow and sockets
    /// otherwise, saying which and why in one log line. Sockets are bound
    /// and the XDP program attached before this returns, so a busy address
    /// or a refused program is an error here, not a log line.
    pub fn start(cfg: Config) -> anyhow::Result<Engine> {
        match (cfg.engine.io, cfg.engine.interface.clone()) {
            (IoMode::Socket, _) => Self::start_socket(cfg),
            (IoMode::Xdp, Some(ifname)) => Self::start_xdp(cfg, &ifname),
            (IoMode::Xdp, None) => bail!("io = \"xdp\" needs engine.interface"),
            (IoMode::Auto, None) => {
                info!("io = auto: no engine.interface configured, using the socket data plane");
                Self::start_socket(cfg)
            }
            (IoMode::Auto, Some(ifname)) => match Self::start_xdp(cfg.clone(), &ifname) {
                Ok(e) => Ok(e),
                Err(e) => {
                    info!("io = auto: AF_XDP unavailable on {ifname} ({e:#}); using the socket data plane");
                    Self::start_socket(cfg)
                }
            },
        }
    }

    /// The data plane that runs.
    pub fn io(&self) -> Io {
        if self.xdp.is_some() {
            Io::Xdp
        } else {
            Io::Socket
        }
    }

    /// The XDP program's counters (AF_XDP data plane only).
    pub fn xdp_counters(&self) -> Option<XdpCounters> {
        self.xdp.as_ref().map(|x| x.counters())
    }

    /// The XDP answer tier's answers per pool index and per frontend id
    /// (empty without a tier), its capacity and how many entries it took.
    pub fn tier(&self, pools: usize, frontends: usize) -> Option<TierCounts> {
        let x = self.xdp.as_ref()?;
        let t = x.hot.as_ref()?;
        let (per_pool, per_frontend) = x.tier_counts(pools, frontends);
        Some(TierCounts {
            per_pool,
            per_frontend,
            capacity: t.capacity() as u64,
            promoted: t.promoted.load(std::sync::atomic::Ordering::Relaxed),
            active: t.is_active(),
        })
    }

    /// Replaces the runtime rules with `next` if it compiles; the swap is
    /// one snapshot, so no query sees half a change.
    fn set_runtime(&self, next: RuntimeRules) -> Result<(), String> {
        let mut c = self.control.lock().unwrap();
        let set = next.compile(&c.config.pool_names(), c.workers)?;
        c.runtime = next;
        c.runtime_compiled = Some((c.config.pool_names(), set));
        c.publish(&self.shared);
        Ok(())
    }

    /// Adds runtime rules (`[[rule]]` TOML); see [`RuntimeRules::with_added`].
    pub fn rules_add(&self, text: &str, replace: bool) -> Result<(), String> {
        let next = self
            .control
            .lock()
            .unwrap()
            .runtime
            .with_added(text, replace)?;
        self.set_runtime(next)
    }

    pub fn rules_del(&self, name: &str) -> Result<(), String> {
        let next = self.control.lock().unwrap().runtime.without(name)?;
        self.set_runtime(next)
    }

    /// Replaces every runtime rule with those of `text` (empty: none).
    pub fn rules_load(&self, text: &str) -> Result<(), String> {
        self.set_runtime(RuntimeRules::parse(text)?)
    }

    pub fn rules_export(&self) -> String {
        self.control.lock().unwrap().runtime.export()
    }

    /// Every rule with its source ("runtime" or "file") and hits, in match
    /// order: the runtime rules first.
    pub fn rules_list(&self) -> Vec<crate::control::RuleInfo> {
        let snap = self.snapshot();
        let mut out = Vec::new();
        for (set, source) in [(&snap.runtime_rules, "runtime"), (&snap.rules, "file")] {
            for i in 0..set.len() {
                out.push(crate::control::RuleInfo {
                    name: set.name(i).to_string(),
                    source: source.to_string(),
                    hits: set.hits(i),
                });
            }
        }
        out
    }

    /// Empties the packet caches of every pool of `name` (dotted), or with
    /// `suffix` of `name` and every name below it: how many answers went.
    pub fn cache_purge(&self, name: &str, suffix: bool) -> Result<usize, String> {
        let wire =
            crate::rules::wire_name(name).ok_or_else(|| format!("`{name}` is not a DNS name"))?;
        // The XDP answer tier first: a name purged from the cache must not
        // be answered by the program from its copy.
        if let Some(t) = self.xdp.as_ref().and_then(|x| x.hot.as_ref()) {
            t.purge(&wire, suffix);
        }
        Ok(self
            .snapshot()
            .pools
            .iter()
            .filter_map(|p| p.cache.as_ref())
            .map(|c| c.purge(&wire, suffix))
            .sum())
    }

    /// Dynamic blocks (`[dynblock]`), when configured.
    pub fn dynblock(&self) -> Option<&Arc<DynBlock>> {
        self.dynblock.as_ref()
    }

    /// The backend-side UDP ports of the AF_XDP data plane (empty on the
    /// socket data plane).
    pub fn xdp_ports(&self) -> Vec<u16> {
        self.xdp
            .as_ref()
            .map_or_else(Vec::new, |x| x.env.port_numbers().to_vec())
    }

    /// Drops every packet from `ip/len` in the XDP program (AF_XDP data
    /// plane only); `None` lifts the block.
    pub fn xdp_block(
        &self,
        ip: std::net::IpAddr,
        len: u32,
        until: Option<u64>,
    ) -> anyhow::Result<()> {
        let Some(x) = &self.xdp else {
            bail!("the XDP block map needs the AF_XDP data plane");
        };
        x.program.lock().unwrap().block(ip, len, until)
    }

    /// Swaps in a new, validated configuration. Workers pick it up at their
    /// next batch; queries in flight complete against their stable ids.
    /// Engine-level settings (workers, io, ports) need a restart. Its rules
    /// are compiled here, for the workers that run: a set that does not
    /// compile refuses the reload and the running configuration stays.
    pub fn reload(&self, mut cfg: Config) -> Result<(), ConfigError> {
        let mut c = self.control.lock().unwrap();
        let rules = Arc::new(RuleSet::from_config(&cfg, c.workers)?);
        let (old, new) = (&c.config.engine, &cfg.engine);
        if old.workers != new.workers
            || old.io != new.io
            || old.ports_per_worker != new.ports_per_worker
            || old.slots_per_worker != new.slots_per_worker
            || old.batch != new.batch
            || old.xdp_cache_entries != new.xdp_cache_entries
        {
            warn!("engine.workers/io/ports_per_worker/slots_per_worker/batch/xdp_cache_entries change only on restart; keeping the running values");
        }
        cfg.engine.workers = old.workers;
        cfg.engine.io = old.io;
        cfg.engine.ports_per_worker = old.ports_per_worker;
        cfg.engine.slots_per_worker = old.slots_per_worker;
        cfg.engine.batch = old.batch;
        cfg.engine.xdp_cache_entries = old.xdp_cache_entries;
        let resolved = c.resolved.clone();
        apply_resolved(&mut cfg, &resolved);
        c.config = cfg;
        c.rules = rules;
        c.publish(&self.shared);
        Ok(())
    }

    /// Changes health/drain/weight overrides (the control process).
    pub fn update_overrides(&self, f: impl FnOnce(&mut Overrides)) {
        let mut c = self.control.lock().unwrap();
        f(&mut c.overrides);
        c.publish(&self.shared);
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    /// Lets a backend the engine took out back in (ctl's health checks
    /// counted `rise` successes). Returns the reason it was out for.
    pub fn readmit(&self, name: &str) -> Option<Ejection> {
        let snap = self.snapshot();
        let be = snap.live_backends().find(|b| b.name == name)?;
        let why = self.shared.fate.readmit(be.id);
        let mut c = self.control.lock().unwrap();
        if c.overrides.ejected.remove(name).is_some() || why.is_some() {
            c.publish(&self.shared);
        }
        why
    }

    pub fn fate(&self) -> &Arc<Fate> {
        &self.shared.fate
    }

    /// A control process attached (`true`) or went away.
    pub fn controller(&self, attached: bool) {
        if attached {
            self.shared.controllers.fetch_add(1, Ordering::Relaxed);
        } else {
            self.shared.controllers.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn frontend_addrs(&self) -> Vec<SocketAddr> {
        self.snapshot().live_frontends().map(|f| f.listen).collect()
    }

    pub fn totals(&self) -> Totals {
        Totals::of(&self.counting_stats())
    }

    /// The workers' counters and those of every other counting thread.
    pub fn counting_stats(&self) -> Vec<Arc<WorkerStats>> {
        self.stats
            .iter()
            .chain(&self.extra_stats)
            .cloned()
            .collect()
    }

    /// The workers' counters, raw (the control socket's report).
    pub fn worker_stats(&self) -> &[Arc<WorkerStats>] {
        &self.stats
    }

    /// Each worker's own counters (a query and its answer may be counted by
    /// different workers when they arrive on different queues).
    pub fn worker_totals(&self) -> Vec<Totals> {
        self.stats
            .iter()
            .map(|s| Totals::of(std::slice::from_ref(s)))
            .collect()
    }

    /// Queries waiting for an answer, over all workers and backends.
    pub fn in_flight(&self) -> u64 {
        (0..self.stats.len())
            .flat_map(|w| (0..MAX_BACKENDS).map(move |b| (w, b as u16)))
            .map(|(w, b)| u64::from(self.table.outstanding(w, b)))
            .sum()
    }

    /// Stops the workers and waits for them (as dropping the engine does).
    pub fn stop(self) {}
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
