//! A running engine: the workers, the current snapshot, and the control
//! operations on it (reload, backend state), independent of how it is
//! driven (the `dnsrail` binary, the control process, tests).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use arc_swap::ArcSwap;
use socket2::Socket;
use toml::Spanned;
use tracing::{error, info, warn};

use crate::config::{Config, IoMode};
use crate::core::Core;
use crate::dynblock::DynBlock;
use crate::fate::{Ejection, Fate};
use crate::inflight::InflightTable;
use crate::io::socket::{bind_frontend, SocketWorker};
use crate::io::xdp::neighbours::Resolver;
use crate::io::xdp::slow_path::SlowPath;
use crate::io::xdp::worker::{XskSpec, XskWorker};
use crate::io::xdp::{XdpCounters, XdpPlane};
use crate::rules::runtime::RuntimeRules;
use crate::rules::RuleSet;
use crate::snapshot::{BackendId, Overrides, Registry, Snapshot, MAX_BACKENDS};
use crate::stats::{Totals, WorkerStats};

/// What workers share with the engine.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub stop: AtomicBool,
    /// Backends the engine took out on its own (ICMP, silence).
    pub fate: Arc<Fate>,
    /// Control processes attached (said hello, still connected): while
    /// there is none, nothing would readmit an ejected backend, so the
    /// engine does after `failover.standalone_hold_ms`.
    pub controllers: AtomicUsize,
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
    /// The AF_XDP plane, whose frontend maps follow the snapshot.
    xdp: Option<Arc<XdpPlane>>,
    /// Backends removed or readdressed by a reload, with when: answers to
    /// queries sent before it stay acceptable for `timeout + 1 s`.
    retired: Vec<(BackendId, SocketAddr, Instant)>,
    /// Rules set at run time, and their compiled set with the pool list it
    /// was compiled for (recompiled only when either changes, so hit
    /// counters survive health and drain changes).
    runtime: RuntimeRules,
    runtime_compiled: Option<(Vec<String>, Arc<RuleSet>)>,
    workers: usize,
}

impl Control {
    /// Builds a snapshot of the current state and swaps it in.
    fn publish(&mut self, shared: &Shared) {
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

/// Which data plane runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io {
    Socket,
    Xdp,
}

pub struct Engine {
    shared: Arc<Shared>,
    stats: Vec<Arc<WorkerStats>>,
    /// Counters of threads that count but are no worker (the AF_XDP slow
    /// path): in every sum, in no per-worker list.
    extra_stats: Vec<Arc<WorkerStats>>,
    table: Arc<InflightTable>,
    threads: Vec<JoinHandle<()>>,
    control: Arc<Mutex<Control>>,
    xdp: Option<Arc<XdpPlane>>,
    dynblock: Option<Arc<DynBlock>>,
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

/// Starts worker `w` on its CPU (the configured list, else CPU w).
fn spawn_pinned(
    cfg: &Config,
    w: usize,
    run: impl FnOnce() + Send + 'static,
) -> anyhow::Result<JoinHandle<()>> {
    let core_ids = core_affinity::get_core_ids().unwrap_or_default();
    let cpu = match &cfg.engine.cpus {
        Some(list) => list.get(w).map(|&id| core_affinity::CoreId { id }),
        None if !core_ids.is_empty() => Some(core_ids[w % core_ids.len()]),
        None => None,
    };
    Ok(std::thread::Builder::new()
        .name(format!("dnsrail-w{w}"))
        .spawn(move || {
            if let Some(c) = cpu {
                if !core_affinity::set_for_current(c) {
                    warn!(worker = w, cpu = c.id, "cannot pin worker");
                }
            }
            run();
        })?)
}

/// The dynamic-block thread: every 50 ms, reports in and expiries out,
/// mirrored into the XDP drop map when there is one.
fn spawn_blocker(
    d: Arc<DynBlock>,
    xdp: Option<Arc<XdpPlane>>,
    shared: Arc<Shared>,
) -> anyhow::Result<JoinHandle<()>> {
    Ok(std::thread::Builder::new()
        .name("dnsrail-dynblock".into())
        .spawn(move || {
            while !shared.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                d.step(Instant::now(), |(ip, len), add| {
                    if let Some(x) = &xdp {
                        let r =
                            x.program
                                .lock()
                                .unwrap()
                                .block(ip, u32::from(len), add.then_some(1));
                        if let Err(e) = r {
                            warn!(%ip, len, "XDP block map: {e:#}");
                        }
                    }
                });
            }
        })?)
}

/// The fate thread: turns the workers' ejections into a snapshot without
/// the backend and a log line, and with no control process attached lets
/// a backend back in after `failover.standalone_hold_ms` (nothing else
/// would). Woken by the worker that ejects; else looks every 100 ms.
fn spawn_fate(shared: Arc<Shared>, control: Arc<Mutex<Control>>) -> anyhow::Result<JoinHandle<()>> {
    let fate = shared.fate.clone();
    let t = std::thread::Builder::new()
        .name("dnsrail-fate".into())
        .spawn(move || {
            let fate = shared.fate.clone();
            let mut seen = u64::MAX;
            while !shared.stop.load(Ordering::Relaxed) {
                let snap = shared.snapshot.load_full();
                for (b, why) in fate.take_log() {
                    let name = snap.backend(b).map_or("?", |be| be.name.as_str());
                    warn!(backend = %name, reason = why.name(), "backend DOWN ({}); taken out by the engine until health checks bring it back", match why {
                        Ejection::Icmp => "icmp: its host reports the DNS port unreachable",
                        Ejection::Silent => "silent: no answer to queries outstanding past failover.dead_after_ms while its peers answer",
                    });
                }
                let hold_ns = control.lock().unwrap().config.failover.standalone_hold_ms * 1_000_000;
                if shared.controllers.load(Ordering::Relaxed) == 0 {
                    let now = shared.now_ns();
                    for be in snap.live_backends() {
                        if fate
                            .ejected_at(be.id)
                            .is_some_and(|t| now.saturating_sub(t) >= hold_ns)
                        {
                            if let Some(why) = fate.readmit(be.id) {
                                info!(backend = %be.name, reason = why.name(), "backend readmitted: no control process attached, failover.standalone_hold_ms elapsed");
                            }
                        }
                    }
                }
                let changes = fate.changes();
                if changes != seen {
                    seen = changes;
                    let mut c = control.lock().unwrap();
                    let ejected: HashMap<String, Ejection> = snap
                        .live_backends()
                        .filter_map(|be| Some((be.name.clone(), fate.ejected(be.id)?)))
                        .collect();
                    if ejected != c.overrides.ejected {
                        c.overrides.ejected = ejected;
                        c.publish(&shared);
                    }
                }
                std::thread::park_timeout(Duration::from_millis(100));
            }
        })?;
    fate.set_waker(t.thread().clone());
    Ok(t)
}

fn new_shared(snap: Snapshot) -> Arc<Shared> {
    Arc::new(Shared {
        snapshot: ArcSwap::from_pointee(snap),
        stop: AtomicBool::new(false),
        fate: Arc::new(Fate::default()),
        controllers: AtomicUsize::new(0),
        epoch: Instant::now(),
    })
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

    fn start_xdp(cfg: Config, ifname: &str) -> anyhow::Result<Engine> {
        let workers = cfg.worker_count();
        let per_worker = cfg.engine.ports_per_worker as usize;
        let iface = crate::io::iface::Iface::open(ifname)?;
        check_interface(&iface, workers)?;
        let table = Arc::new(InflightTable::new(
            workers,
            per_worker,
            cfg.engine.slots_per_worker as usize,
        ));
        // Two families per port, and the slow path's duplicate of each.
        raise_fd_limit(workers * per_worker * 4 + 1024);
        let mut registry = Registry::default();
        let mut overrides = Overrides {
            neighbours: Some(HashMap::new()),
            local_addrs: Some(iface.addrs.clone()),
            ..Overrides::default()
        };
        let snap0 = Snapshot::build(&cfg, &mut registry, &overrides, 1);
        let plane = Arc::new(XdpPlane::open(
            ifname,
            &snap0,
            workers * per_worker,
            cfg.engine.xdp_attach,
        )?);

        // Resolve next hops before serving; prodded ones get a moment.
        let mut resolver = Resolver::new(&plane.iface)?;
        let mut macs = resolver.resolve(&snap0, &HashMap::new());
        for _ in 0..20 {
            if macs.len() >= snap0.live_backends().count() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            macs = resolver.resolve(&snap0, &macs);
        }
        overrides.neighbours = Some(macs);
        let snap = Snapshot::build(&cfg, &mut registry, &overrides, 1);
        let shared = new_shared(snap.clone());
        let dynblock =
            (cfg.dynblock.qps > 0).then(|| Arc::new(DynBlock::new(cfg.dynblock.clone())));

        // Set up (the fallible part) before any thread starts.
        let slow_stats = Arc::new(WorkerStats::default());
        let slow = SlowPath::new(
            Core::answer_only(table.clone(), slow_stats.clone()).with_fate(shared.fate.clone()),
            shared.clone(),
            &plane.env,
            plane.reserved(),
        )
        .context("AF_XDP slow path")?;
        // Every socket is bound before any thread starts: a queue that
        // refuses its bind (and `io = "auto"` then falling back to sockets)
        // leaves no worker running behind.
        let mut stats = Vec::new();
        let mut bound_workers = Vec::new();
        let mut bound = None;
        for w in 0..workers {
            let st = Arc::new(WorkerStats::default());
            stats.push(st.clone());
            let mut core = Core::new(w, table.clone(), st)
                .with_fate(shared.fate.clone())
                .with_resend();
            if let Some(d) = &dynblock {
                core = core.with_dynblock(d.clone());
            }
            let spec = XskSpec {
                ifname,
                queue: w as u32,
                mode: cfg.engine.xdp_bind,
                poll: cfg.engine.poll,
                batch: cfg.engine.batch,
            };
            let worker = XskWorker::new(core, shared.clone(), plane.env.clone(), &spec)?;
            plane.add_socket(w as u32, worker.fd())?;
            bound = Some(worker.bound);
            bound_workers.push(worker);
        }
        let mut threads = vec![std::thread::Builder::new()
            .name("dnsrail-slow".into())
            .spawn(move || slow.run())?];
        for (w, worker) in bound_workers.into_iter().enumerate() {
            threads.push(spawn_pinned(&cfg, w, move || worker.run())?);
        }
        let attached = plane.program.lock().unwrap().attached;
        info!(
            workers,
            io = "xdp",
            interface = ifname,
            attach = ?attached,
            bind = ?bound,
            src_v4 = ?plane.env.src_v4,
            src_v6 = ?plane.env.src_v6,
            frontends = ?snap.live_frontends().map(|f| f.listen).collect::<Vec<_>>(),
            backends = snap.live_backends().count(),
            reachable = snap.live_backends().filter(|b| b.reachable).count(),
            "engine started"
        );
        let control = Arc::new(Mutex::new(Control {
            config: cfg,
            registry,
            overrides,
            generation: 1,
            resolved: HashMap::new(),
            xdp: Some(plane.clone()),
            retired: Vec::new(),
            runtime: RuntimeRules::default(),
            runtime_compiled: None,
            workers,
        }));
        threads.push(Self::spawn_neighbours(
            ifname.to_string(),
            resolver,
            shared.clone(),
            control.clone(),
        )?);
        threads.push(spawn_fate(shared.clone(), control.clone())?);
        if let Some(d) = &dynblock {
            threads.push(spawn_blocker(
                d.clone(),
                Some(plane.clone()),
                shared.clone(),
            )?);
        }
        Ok(Engine {
            shared,
            stats,
            extra_stats: vec![slow_stats],
            table,
            threads,
            control,
            xdp: Some(plane),
            dynblock,
        })
    }

    /// Refreshes next-hop MACs every second, at once after a new snapshot
    /// (a reload may add backends), and every 100 ms for 3 s after that while
    /// some backend has none (resolution was just prodded; a backend that
    /// stays unresolved is then prodded once a second, not ten times);
    /// publishes a snapshot when one changes.
    fn spawn_neighbours(
        ifname: String,
        mut resolver: Resolver,
        shared: Arc<Shared>,
        control: Arc<Mutex<Control>>,
    ) -> anyhow::Result<JoinHandle<()>> {
        Ok(std::thread::Builder::new()
            .name("dnsrail-neigh".into())
            .spawn(move || {
                let mut last = Instant::now();
                let mut seen_generation = shared.snapshot.load().generation;
                let mut missing = false;
                let mut fast_until = Instant::now() + Duration::from_secs(3);
                while !shared.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    let snap = shared.snapshot.load_full();
                    if snap.generation != seen_generation {
                        fast_until = Instant::now() + Duration::from_secs(3);
                    }
                    let due = last.elapsed() >= Duration::from_secs(1)
                        || snap.generation != seen_generation
                        || (missing && Instant::now() < fast_until);
                    if !due {
                        continue;
                    }
                    last = Instant::now();
                    // Addresses come and go (a VIP moved here by another
                    // tool): wildcard frontends follow them.
                    let addrs = Some(crate::io::iface::addresses(&ifname));
                    {
                        let mut c = control.lock().unwrap();
                        if addrs != c.overrides.local_addrs {
                            info!(interface = %ifname, addresses = ?addrs, "interface addresses changed");
                            c.overrides.local_addrs = addrs;
                            c.publish(&shared);
                        }
                    }
                    let known = control
                        .lock()
                        .unwrap()
                        .overrides
                        .neighbours
                        .clone()
                        .unwrap_or_default();
                    let fresh = resolver.resolve(&snap, &known);
                    missing = fresh.len() < snap.live_backends().count();
                    seen_generation = snap.generation;
                    if fresh != known {
                        let mut c = control.lock().unwrap();
                        c.overrides.neighbours = Some(fresh);
                        c.publish(&shared);
                        seen_generation = shared.snapshot.load().generation;
                    }
                }
            })?)
    }

    fn start_socket(mut cfg: Config) -> anyhow::Result<Engine> {
        // The same count the rule set's hit counters were sized for.
        let workers = cfg.worker_count();
        let per_worker = cfg.engine.ports_per_worker as usize;
        let table = Arc::new(InflightTable::new(
            workers,
            per_worker,
            cfg.engine.slots_per_worker as usize,
        ));
        raise_fd_limit(workers * (per_worker + cfg.frontends.len()) + 1024);

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
        let shared = new_shared(snap.clone());
        let dynblock =
            (cfg.dynblock.qps > 0).then(|| Arc::new(DynBlock::new(cfg.dynblock.clone())));

        let ids: Vec<u16> = cfg
            .frontends
            .iter()
            .map(|f| {
                let a = Config::frontend_addr(f);
                snap.frontend_by_addr(a).expect("built from cfg").id
            })
            .collect();
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
            let mut core = Core::new(w, table.clone(), st).with_fate(shared.fate.clone());
            if let Some(d) = &dynblock {
                core = core.with_dynblock(d.clone());
            }
            let worker = SocketWorker::new(
                core,
                shared.clone(),
                cfg.engine.batch,
                ids.iter().copied().zip(socks).collect(),
            )?;
            threads.push(spawn_pinned(&cfg, w, move || worker.run())?);
        }
        if let Some(d) = &dynblock {
            threads.push(spawn_blocker(d.clone(), None, shared.clone())?);
        }
        info!(
            workers,
            io = "socket",
            frontends = ?snap.live_frontends().map(|f| f.listen).collect::<Vec<_>>(),
            backends = snap.live_backends().count(),
            "engine started"
        );
        let control = Arc::new(Mutex::new(Control {
            config: cfg,
            registry,
            overrides,
            generation: 1,
            resolved,
            xdp: None,
            retired: Vec::new(),
            runtime: RuntimeRules::default(),
            runtime_compiled: None,
            workers,
        }));
        threads.push(spawn_fate(shared.clone(), control.clone())?);
        Ok(Engine {
            shared,
            stats,
            extra_stats: Vec::new(),
            table,
            threads,
            control,
            xdp: None,
            dynblock,
        })
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
    /// Engine-level settings (workers, io, ports) need a restart. Cannot
    /// fail: a `Config` is validated and its rules compiled when parsed.
    pub fn reload(&self, mut cfg: Config) {
        let mut c = self.control.lock().unwrap();
        let (old, new) = (&c.config.engine, &cfg.engine);
        if old.workers != new.workers
            || old.io != new.io
            || old.ports_per_worker != new.ports_per_worker
            || old.slots_per_worker != new.slots_per_worker
            || old.batch != new.batch
        {
            warn!("engine.workers/io/ports_per_worker/slots_per_worker/batch change only on restart; keeping the running values");
        }
        cfg.engine.workers = old.workers;
        cfg.engine.io = old.io;
        cfg.engine.ports_per_worker = old.ports_per_worker;
        cfg.engine.slots_per_worker = old.slots_per_worker;
        cfg.engine.batch = old.batch;
        let resolved = c.resolved.clone();
        apply_resolved(&mut cfg, &resolved);
        c.config = cfg;
        c.publish(&self.shared);
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

/// What the AF_XDP data plane refuses to start on: more workers than the
/// interface has active receive queues (a worker on an inactive queue never
/// sees a frame, and the kernel refuses the bind), and an MTU whose frames
/// do not fit a UMEM frame (they would be dropped, never cut).
fn check_interface(iface: &crate::io::iface::Iface, workers: usize) -> anyhow::Result<()> {
    let active = iface.rx_queues as usize;
    if workers > active {
        bail!(
            "engine.workers = {workers}, but {} has {active} active receive queue(s) ({} allocated; \
             counted from {}): one worker per active queue. Leave workers unset, or make more \
             queues active with `{}`",
            iface.name,
            iface.rx_allocated,
            iface.rx_queues_from,
            iface.set_queues_command(workers as u32),
        );
    }
    let max_mtu = crate::io::xdp::worker::MAX_MTU;
    if iface.mtu > max_mtu {
        bail!(
            "{} has MTU {}, above the {max_mtu} bytes an AF_XDP frame of the engine holds \
             ({} bytes usable per frame, less the Ethernet header): frames that large would be \
             dropped. Lower it with `ip link set {} mtu 1500`",
            iface.name,
            iface.mtu,
            crate::io::xdp::worker::FRAME_ROOM,
            iface.name,
        );
    }
    Ok(())
}

/// Raises the soft limit on open files toward `want` (up to the hard
/// limit): every backend-side port is a socket, 1 024 per worker by
/// default, past the usual soft limit of 1 024. A limit it cannot raise
/// surfaces as the error of the socket that does not open.
fn raise_fd_limit(want: usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    let want = (want as libc::rlim_t).min(lim.rlim_max);
    if lim.rlim_cur < want {
        lim.rlim_cur = want;
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            warn!("cannot raise the open-file limit to {want}");
        }
    }
}
