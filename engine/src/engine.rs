//! A running engine: the workers, the current snapshot, and the control
//! operations on it (reload, backend state), independent of how it is
//! driven (the `dnsrail` binary, the control process, tests).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{bail, Context};
use arc_swap::ArcSwap;
use socket2::Socket;
use toml::Spanned;
use tracing::{info, warn};

use crate::config::{Config, IoMode};
use crate::core::{Core, PortPlan};
use crate::inflight::InflightTable;
use crate::io::socket::{bind_frontend, SocketWorker};
use crate::snapshot::{Overrides, Registry, Snapshot, MAX_BACKENDS};
use crate::stats::{Totals, WorkerStats};

/// What workers share with the engine.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub stop: AtomicBool,
    epoch: Instant,
}

impl Shared {
    /// Monotonic nanoseconds since the engine started.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

struct Control {
    config: Config,
    registry: Registry,
    overrides: Overrides,
    generation: u64,
    /// Frontends configured with port 0, and the port they got.
    resolved: HashMap<SocketAddr, SocketAddr>,
}

pub struct Engine {
    shared: Arc<Shared>,
    stats: Vec<Arc<WorkerStats>>,
    table: Arc<InflightTable>,
    threads: Vec<JoinHandle<()>>,
    control: Mutex<Control>,
}

/// Frontends configured with port 0 take the port the first bind got, so
/// every worker (and a reload) listens on the same one.
fn apply_resolved(cfg: &mut Config, resolved: &HashMap<SocketAddr, SocketAddr>) {
    for f in &mut cfg.frontends {
        if let Some(actual) = resolved.get(&Config::frontend_addr(f)) {
            f.listen = Spanned::new(f.listen.span(), actual.to_string());
        }
    }
}

impl Engine {
    /// Starts the workers of a validated configuration. Sockets are bound
    /// before this returns, so a busy address is an error here, not a log line.
    pub fn start(mut cfg: Config) -> anyhow::Result<Engine> {
        match cfg.engine.io {
            IoMode::Socket => {}
            IoMode::Auto => {
                info!("io = auto: using the socket data plane (this build has no AF_XDP data plane yet)")
            }
            IoMode::Xdp => bail!("io = \"xdp\": this build has no AF_XDP data plane yet; use io = \"socket\" or \"auto\""),
        };
        // The same count the rule set's hit counters were sized for.
        let workers = cfg.worker_count();
        let per_backend = cfg.engine.ports_per_backend;
        let table = Arc::new(InflightTable::new(
            workers,
            MAX_BACKENDS * per_backend as usize,
        ));

        // Bind worker 0's frontend sockets first: port 0 resolves here.
        let mut resolved = HashMap::new();
        let mut first: Vec<Socket> = Vec::new();
        for f in &cfg.frontends {
            let addr = Config::frontend_addr(f);
            let s = bind_frontend(addr).with_context(|| format!("cannot listen on {addr}"))?;
            if addr.port() == 0 {
                let actual = s.local_addr()?.as_socket().expect("inet");
                resolved.insert(addr, actual);
            }
            first.push(s);
        }
        apply_resolved(&mut cfg, &resolved);

        let mut registry = Registry::default();
        let overrides = Overrides::default();
        let snap = Snapshot::build(&cfg, &mut registry, &overrides, 1);
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snap.clone()),
            stop: AtomicBool::new(false),
            epoch: Instant::now(),
        });

        let ids: Vec<u16> = cfg
            .frontends
            .iter()
            .map(|f| {
                let a = Config::frontend_addr(f);
                snap.frontend_by_addr(a).expect("built from cfg").id
            })
            .collect();
        let core_ids = core_affinity::get_core_ids().unwrap_or_default();
        let mut stats = Vec::new();
        let mut threads = Vec::new();
        let mut first = Some(first);
        for w in 0..workers {
            let socks: Vec<Socket> = match first.take() {
                Some(s) => s,
                None => cfg
                    .frontends
                    .iter()
                    .map(|f| {
                        let addr = Config::frontend_addr(f);
                        bind_frontend(addr).with_context(|| format!("cannot listen on {addr}"))
                    })
                    .collect::<anyhow::Result<_>>()?,
            };
            let st = Arc::new(WorkerStats::default());
            stats.push(st.clone());
            let core = Core::new(w, table.clone(), st, PortPlan::PerBackend { per_backend });
            let worker = SocketWorker::new(
                core,
                shared.clone(),
                per_backend,
                cfg.engine.batch,
                ids.iter().copied().zip(socks).collect(),
            )?;
            let cpu = match &cfg.engine.cpus {
                Some(list) => list.get(w).map(|&id| core_affinity::CoreId { id }),
                None if !core_ids.is_empty() => Some(core_ids[w % core_ids.len()]),
                None => None,
            };
            let h = std::thread::Builder::new()
                .name(format!("dnsrail-w{w}"))
                .spawn(move || {
                    if let Some(c) = cpu {
                        if !core_affinity::set_for_current(c) {
                            warn!(worker = w, cpu = c.id, "cannot pin worker");
                        }
                    }
                    worker.run();
                })?;
            threads.push(h);
        }
        info!(
            workers,
            io = "socket",
            frontends = ?snap.live_frontends().map(|f| f.listen).collect::<Vec<_>>(),
            backends = snap.live_backends().count(),
            "engine started"
        );
        Ok(Engine {
            shared,
            stats,
            table,
            threads,
            control: Mutex::new(Control {
                config: cfg,
                registry,
                overrides,
                generation: 1,
                resolved,
            }),
        })
    }

    /// Swaps in a new, validated configuration. Workers pick it up at their
    /// next batch; queries in flight complete against their stable ids.
    /// Engine-level settings (workers, io, ports) need a restart. Cannot
    /// fail: a `Config` is validated and its rules compiled when parsed.
    pub fn reload(&self, mut cfg: Config) {
        let mut c = self.control.lock().unwrap();
        let (old, new) = (&c.config.engine, &cfg.engine);
        if old.workers != new.workers
            || old.io != new.io
            || old.ports_per_backend != new.ports_per_backend
            || old.batch != new.batch
        {
            warn!("engine.workers/io/ports_per_backend/batch change only on restart; keeping the running values");
        }
        cfg.engine.workers = old.workers;
        cfg.engine.io = old.io;
        cfg.engine.ports_per_backend = old.ports_per_backend;
        cfg.engine.batch = old.batch;
        let resolved = c.resolved.clone();
        apply_resolved(&mut cfg, &resolved);
        c.config = cfg;
        self.publish(&mut c);
    }

    /// Changes health/drain/weight overrides (the control process).
    pub fn update_overrides(&self, f: impl FnOnce(&mut Overrides)) {
        let mut c = self.control.lock().unwrap();
        f(&mut c.overrides);
        self.publish(&mut c);
    }

    fn publish(&self, c: &mut Control) {
        c.generation += 1;
        let Control {
            config,
            registry,
            overrides,
            generation,
            ..
        } = c;
        let snap = Snapshot::build(config, registry, overrides, *generation);
        info!(
            generation = snap.generation,
            backends = snap.live_backends().count(),
            frontends = snap.live_frontends().count(),
            "new snapshot"
        );
        self.shared.snapshot.store(Arc::new(snap));
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    pub fn frontend_addrs(&self) -> Vec<SocketAddr> {
        self.snapshot().live_frontends().map(|f| f.listen).collect()
    }

    pub fn totals(&self) -> Totals {
        Totals::of(&self.stats)
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
