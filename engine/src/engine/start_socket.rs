//! Starting the kernel-socket data plane: frontends bound (port 0 resolved
//! once for every worker), the backend-side socket pools, one worker per
//! CPU.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use socket2::Socket;
use tracing::info;

use super::state::{first_snapshot, worker_count, State};
use super::threads::{apply_resolved, raise_fd_limit, spawn_blocker, spawn_fate, spawn_pinned};
use super::Engine;
use crate::config::Config;
use crate::core::Core;
use crate::dynblock::DynBlock;
use crate::inflight::InflightTable;
use crate::io::socket::{bind_frontend, claim_frontend, SocketWorker};
use crate::rules::RuleSet;
use crate::shared::Shared;
use crate::snapshot::{Overrides, Registry};
use crate::stats::WorkerStats;

impl Engine {
    pub(super) fn start_socket(mut cfg: Config) -> anyhow::Result<Engine> {
        // The same count the rule set's hit counters were sized for.
        let workers = worker_count(&cfg);
        let rules = Arc::new(RuleSet::from_config(&cfg, workers)?);
        let per_worker = cfg.engine.ports_per_worker as usize;
        let table = Arc::new(InflightTable::new(
            workers,
            per_worker,
            cfg.engine.slots_per_worker as usize,
        ));
        raise_fd_limit(workers * (per_worker + cfg.frontends.len()) + 1024);

        // Claim each frontend address (nobody else listens; port 0 resolves
        // here), then bind worker 0's sockets.
        let mut resolved = HashMap::new();
        let mut first: Vec<Socket> = Vec::new();
        for f in &cfg.frontends {
            let addr = Config::frontend_addr(f);
            let listen = |what| format!("cannot listen on {addr}{what}");
            let actual = claim_frontend(addr).with_context(|| listen(""))?;
            if addr.port() == 0 {
                resolved.insert(addr, actual);
            }
            first.push(bind_frontend(actual).with_context(|| listen(" (after claiming it)"))?);
        }
        apply_resolved(&mut cfg, &resolved);

        let mut registry = Registry::default();
        let overrides = Overrides::default();
        let snap = first_snapshot(&cfg, &rules, &mut registry, &overrides);
        let shared = Shared::new(snap.clone());
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
        let control = Arc::new(Mutex::new(State::new(
            cfg, registry, overrides, resolved, None, rules, workers,
        )));
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
}
