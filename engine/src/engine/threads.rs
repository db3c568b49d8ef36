//! The engine's threads besides the workers' loop: a pinned worker thread,
//! the dynamic-block thread, the fate thread; the port-0 frontends'
//! resolution both the socket plane and reloads share; the open-file limit.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use toml::Spanned;
use tracing::{info, warn};

use super::state::State;
use crate::config::Config;
use crate::dynblock::DynBlock;
use crate::fate::Ejection;
use crate::io::xdp::XdpPlane;
use crate::shared::Shared;

/// Frontends configured with port 0 take the port the first bind got, so
/// every worker (and a reload) listens on the same one.
pub(super) fn apply_resolved(cfg: &mut Config, resolved: &HashMap<SocketAddr, SocketAddr>) {
    for f in &mut cfg.frontends {
        if let Some(actual) = resolved.get(&Config::frontend_addr(f)) {
            f.listen = Spanned::new(f.listen.span(), actual.to_string());
        }
    }
}

/// Starts worker `w` on its CPU (the configured list, else CPU w).
pub(super) fn spawn_pinned(
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
pub(super) fn spawn_blocker(
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
pub(super) fn spawn_fate(
    shared: Arc<Shared>,
    control: Arc<Mutex<State>>,
) -> anyhow::Result<JoinHandle<()>> {
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

/// Raises the soft limit on open files toward `want` (up to the hard
/// limit): every backend-side port is a socket, 1 024 per worker by
/// default, past the usual soft limit of 1 024. A limit it cannot raise
/// surfaces as the error of the socket that does not open.
pub(super) fn raise_fd_limit(want: usize) {
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
