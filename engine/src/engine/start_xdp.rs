//! Starting the AF_XDP data plane: the interface checks, the XDP program
//! and its maps, the reserved ports, one socket and worker per active
//! queue, the neighbour resolver, the slow path.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tracing::info;

use super::state::{first_snapshot, worker_count, State};
use super::threads::{raise_fd_limit, spawn_blocker, spawn_fate, spawn_pinned};
use super::Engine;
use crate::config::Config;
use crate::core::Core;
use crate::dynblock::DynBlock;
use crate::inflight::InflightTable;
use crate::io::xdp::neighbours::Resolver;
use crate::io::xdp::slow_path::SlowPath;
use crate::io::xdp::worker::{XskSpec, XskWorker};
use crate::io::xdp::XdpPlane;
use crate::rules::RuleSet;
use crate::shared::Shared;
use crate::snapshot::{Overrides, Registry};
use crate::stats::WorkerStats;

impl Engine {
    pub(super) fn start_xdp(cfg: Config, ifname: &str) -> anyhow::Result<Engine> {
        let workers = worker_count(&cfg);
        let rules = Arc::new(RuleSet::from_config(&cfg, workers)?);
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
        let snap0 = first_snapshot(&cfg, &rules, &mut registry, &overrides);
        let plane = Arc::new(XdpPlane::open(
            ifname,
            &snap0,
            workers * per_worker,
            cfg.engine.xdp_attach,
            cfg.engine.xdp_cache_entries,
            cfg.dynblock.qps > 0,
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
        let snap = first_snapshot(&cfg, &rules, &mut registry, &overrides);
        let shared = Shared::new(snap.clone());
        if let Some(t) = &plane.hot {
            t.set_clock_zero(crate::io::xdp::hot::mono_ns().saturating_sub(shared.now_ns()));
        }
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
                hot: plane.hot.clone(),
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
        let control = Arc::new(Mutex::new(State::new(
            cfg,
            registry,
            overrides,
            HashMap::new(),
            Some(plane.clone()),
            rules,
            workers,
        )));
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
        control: Arc<Mutex<State>>,
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
