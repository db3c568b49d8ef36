//! The announcement loop: every `[announce] interval_ms` ctl checks the
//! node (engine, pools, drain), keeps BIRD's VIP routes in line with the
//! verdict, and publishes the state for the API, `/metrics` and the
//! dashboard.
//!
//! Restarts on either side:
//! * BIRD restarts: it reads the include file, which always holds ctl's
//!   current verdict; ctl also reads BIRD's routes back every second and
//!   reloads BIRD when they differ (a BIRD started with another file, a
//!   `configure` someone else ran).
//! * ctl restarts while BIRD runs: the new ctl reads the file back. Routes
//!   there mean the node was healthy, so a good first check keeps them
//!   (no withdraw-and-rise flap); a bad one withdraws at once. A drain is
//!   kept in a file beside the control socket and survives the restart.
//! * ctl stops: the routes stay as they are, like the engine, which keeps
//!   forwarding. Drain the node before stopping the host.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{debug, error, info, warn};

use dnsrail_engine::config::{AnnounceConfig, Config};

use crate::bird::{self, Target};
use crate::node::{Check, Drain, Node};
use crate::serve::Ctl;

/// The announcement as ctl last saw it in BIRD.
#[derive(Debug, Clone, Serialize)]
pub struct AnnounceView {
    pub bird_socket: String,
    pub include_file: String,
    pub vips: Vec<String>,
    /// "announce" or "withdraw": what the node's health asks for.
    pub desired: &'static str,
    /// VIP routes BIRD holds (read back from BIRD), when it answered.
    pub routes: Option<usize>,
    /// "ok", or why BIRD does not hold what ctl wants.
    pub bird: String,
    pub announces: u64,
    pub withdraws: u64,
    pub errors: u64,
}

/// What `/api/node` returns.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    /// "healthy", "rising" (good, waiting for `rise` checks) or "unhealthy".
    pub state: &'static str,
    pub healthy: bool,
    pub problems: Vec<String>,
    pub drain: Drain,
    /// Seconds since the health last changed.
    pub since_s: f64,
    /// Queries per second on the announced frontends (last check).
    pub frontend_qps: f64,
    pub in_flight: u64,
    /// `None` without an `[announce]` table.
    pub announce: Option<AnnounceView>,
}

pub struct Announcer {
    node: Mutex<Node>,
    view: Mutex<Option<NodeView>>,
    drain_file: PathBuf,
    announces: AtomicU64,
    withdraws: AtomicU64,
    errors: AtomicU64,
    /// A drain or undrain asked for: the loop acts on it at once.
    poke: AtomicBool,
}

/// The drain marker: beside the engine's control socket, so it survives a
/// ctl restart (and, on a tmpfs /run, not a reboot).
fn drain_file(cfg: &Config) -> PathBuf {
    std::path::Path::new(&cfg.ctl.control_socket)
        .parent()
        .unwrap_or(std::path::Path::new("/run/dnsrail"))
        .join("node.drained")
}

fn frontend_ips(cfg: &Config) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = cfg
        .frontends
        .iter()
        .map(|f| Config::frontend_addr(f).ip())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

fn target(cfg: &Config) -> Option<Target> {
    let a: &AnnounceConfig = cfg.announce.as_ref()?;
    Some(Target {
        socket: PathBuf::from(&a.bird_socket),
        file: PathBuf::from(&a.include_file),
        protocol: a.protocol.clone(),
        vips: a.vips(&frontend_ips(cfg)),
    })
}

impl Announcer {
    pub fn new(cfg: &Config) -> Announcer {
        let a = cfg.announce.clone().unwrap_or_default();
        let drain_file = drain_file(cfg);
        let drained = drain_file.exists();
        // Routes in the file: a previous ctl found the node healthy.
        let was_healthy = cfg.announce.is_some()
            && std::fs::read_to_string(&a.include_file)
                .map(|t| bird::announced_routes(&t) > 0)
                .unwrap_or(false);
        if drained {
            warn!(file = %drain_file.display(), "node drained (by an earlier ctl): `dnsrailctl node undrain` to serve again");
        }
        Announcer {
            node: Mutex::new(Node::new(
                a.rise,
                Duration::from_millis(a.drain_quiet_ms),
                was_healthy,
                drained,
                Instant::now(),
            )),
            view: Mutex::new(None),
            drain_file,
            announces: AtomicU64::new(0),
            withdraws: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            poke: AtomicBool::new(false),
        }
    }

    /// `drain` (true) or `undrain`; kept on disk.
    pub fn set_drained(&self, drained: bool) -> anyhow::Result<()> {
        if drained {
            if let Some(d) = self.drain_file.parent() {
                std::fs::create_dir_all(d)?;
            }
            std::fs::write(&self.drain_file, "drained by dnsrailctl node drain\n")?;
        } else if let Err(e) = std::fs::remove_file(&self.drain_file) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(e.into());
            }
        }
        self.node
            .lock()
            .unwrap()
            .set_drained(drained, Instant::now());
        self.poke.store(true, Ordering::Relaxed);
        info!(
            drained,
            "node {}",
            if drained { "DRAIN" } else { "UNDRAIN" }
        );
        Ok(())
    }

    pub fn view(&self) -> Option<NodeView> {
        self.view.lock().unwrap().clone()
    }
}

/// One check of the node from the engine's summary.
fn check(ctl: &Ctl, cfg: &Config) -> Check {
    let mut c = Check::default();
    let min = cfg.announce.as_ref().map_or(1, |a| a.min_backends);
    // The announced addresses; without [announce], every frontend's (a
    // wildcard frontend is reported under its wildcard address).
    let vips = target(cfg).map_or_else(|| frontend_ips(cfg), |t| t.vips);
    let report = match ctl.link.summary() {
        Ok(r) => r,
        Err(e) => {
            c.problems.push(format!("engine: {e:#}"));
            return c;
        }
    };
    c.in_flight = report.in_flight;
    let mut pools: Vec<&str> = Vec::new();
    for ip in &vips {
        let served: Vec<_> = report
            .frontends
            .iter()
            .filter(|f| {
                f.listen
                    .parse::<std::net::SocketAddr>()
                    .is_ok_and(|a| a.ip() == *ip)
            })
            .collect();
        if served.is_empty() {
            c.problems
                .push(format!("the engine serves no frontend on {ip}"));
        }
        for f in served {
            c.frontend_queries += f.queries;
            if !pools.contains(&f.pool.as_str()) {
                pools.push(&f.pool);
            }
        }
    }
    for p in pools {
        let usable = cfg
            .backends
            .iter()
            .filter(|b| b.pools.iter().any(|x| x.get_ref() == p))
            .filter(|b| {
                report
                    .backends
                    .iter()
                    .any(|r| &r.name == b.name.get_ref() && r.usable)
            })
            .count();
        if usable < min {
            c.problems.push(format!(
                "pool {p}: {usable} usable backend{} (min_backends {min})",
                if usable == 1 { "" } else { "s" }
            ));
        }
    }
    c
}

/// How long after BIRD withdrew the routes ctl closes the node's TCP/53
/// client connections: the routers' convergence (BGP update, FIB) in a
/// rack.
const TCP_CLOSE_AFTER: Duration = Duration::from_millis(200);

/// How often ctl reads BIRD's routes back, and so the fastest it tells a
/// BIRD that holds the wrong ones again.
const VERIFY_EVERY: Duration = Duration::from_secs(1);

/// What ctl told BIRD and what it last read back from it.
struct BirdSync {
    /// The verdict BIRD last accepted; None: not yet, or it must be told
    /// again (it held other routes, or did not answer).
    applied: Option<bool>,
    /// Told at least once (the first apply is logged as the start's).
    told: bool,
    withdrawn_at: Option<Instant>,
    /// None: read back at the next chance.
    verified_at: Option<Instant>,
    routes: Option<usize>,
    /// "ok", or what is wrong.
    state: String,
}

impl BirdSync {
    fn new() -> BirdSync {
        BirdSync {
            applied: None,
            told: false,
            withdrawn_at: None,
            verified_at: None,
            routes: None,
            state: "not contacted yet".into(),
        }
    }

    /// TCP/53 clients close once BIRD has held the withdrawal for
    /// `TCP_CLOSE_AFTER`.
    fn closing(&self) -> bool {
        self.applied == Some(false)
            && self
                .withdrawn_at
                .is_some_and(|w| w.elapsed() >= TCP_CLOSE_AFTER)
    }

    /// A problem with BIRD: counted, logged when it is news.
    fn fail(&mut self, an: &Announcer, msg: String) {
        an.errors.fetch_add(1, Ordering::Relaxed);
        if msg != self.state {
            error!("announce: {msg}");
        }
        self.state = msg;
        self.routes = None;
    }

    /// Tells BIRD `healthy` when it has not accepted that yet. `changed`:
    /// the health just changed (a counted announcement or withdrawal).
    async fn apply(&mut self, an: &Announcer, t: &Target, healthy: bool, changed: bool) {
        if self.applied == Some(healthy) {
            return;
        }
        let t2 = t.clone();
        match tokio::task::spawn_blocking(move || t2.apply(healthy)).await {
            Ok(Ok(())) => {
                let what = if healthy { "announces" } else { "withdrew" };
                if self.applied.is_some() || changed {
                    let n = if healthy {
                        &an.announces
                    } else {
                        &an.withdraws
                    };
                    n.fetch_add(1, Ordering::Relaxed);
                    info!(vips = ?t.vips, "BIRD {what}");
                } else if !self.told {
                    info!(vips = ?t.vips, "BIRD {what} (at start)");
                } else {
                    // Telling BIRD again what it should hold.
                    debug!(vips = ?t.vips, "BIRD {what}");
                }
                self.applied = Some(healthy);
                self.told = true;
                self.withdrawn_at = (!healthy).then(Instant::now);
                // Read back a second later: BIRD takes a moment to install
                // what it just read.
                self.verified_at = Some(Instant::now());
            }
            Ok(Err(e)) => self.fail(an, format!("{e:#}")),
            Err(e) => error!("announce: {e}"),
        }
    }

    /// Every `VERIFY_EVERY`: the VIP routes BIRD holds against what ctl
    /// wants (a restarted BIRD, a configure by someone else, a
    /// configuration that does not include the file); a difference or a
    /// BIRD that does not answer makes the next tick tell it again.
    async fn verify(&mut self, an: &Announcer, t: &Target, healthy: bool) {
        if self.applied.is_none() || self.verified_at.is_some_and(|v| v.elapsed() < VERIFY_EVERY) {
            return;
        }
        self.verified_at = Some(Instant::now());
        let want = if healthy { t.vips.len() } else { 0 };
        let t2 = t.clone();
        match tokio::task::spawn_blocking(move || t2.routes()).await {
            Ok(Ok(n)) if n == want => {
                if self.state != "ok" {
                    info!(routes = n, "BIRD holds the VIP routes ctl wants");
                }
                self.state = "ok".into();
                self.routes = Some(n);
            }
            Ok(Ok(n)) => {
                let msg = format!("BIRD holds {n} VIP routes, ctl wants {want}: reloading it");
                if msg != self.state {
                    warn!("{msg}");
                }
                self.state = msg;
                self.routes = Some(n);
                self.applied = None;
            }
            Ok(Err(e)) => {
                self.fail(an, format!("{e:#}"));
                self.applied = None;
            }
            Err(e) => error!("announce: {e}"),
        }
    }

    fn view(&self, an: &Announcer, t: &Target, healthy: bool) -> AnnounceView {
        AnnounceView {
            bird_socket: t.socket.display().to_string(),
            include_file: t.file.display().to_string(),
            vips: t.vips.iter().map(ToString::to_string).collect(),
            desired: if healthy { "announce" } else { "withdraw" },
            routes: self.routes,
            bird: self.state.clone(),
            announces: an.announces.load(Ordering::Relaxed),
            withdraws: an.withdraws.load(Ordering::Relaxed),
            errors: an.errors.load(Ordering::Relaxed),
        }
    }
}

/// The loop; runs until `stop`.
pub async fn run(ctl: Arc<Ctl>, stop: Arc<AtomicBool>) {
    let an = ctl.announcer.clone();
    let mut bird = BirdSync::new();
    let mut last_q: Option<(u64, Instant)> = None;
    let mut qps = 0.0;
    // A starting ctl gives the supervisor its first attach (up to 3 s)
    // before judging the engine: a ctl restarted beside a running engine
    // must not withdraw a healthy node because it has not attached yet.
    let t0 = Instant::now();
    while !ctl.link.attached()
        && t0.elapsed() < Duration::from_secs(3)
        && !stop.load(Ordering::Relaxed)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while !stop.load(Ordering::Relaxed) {
        let cfg = ctl.config.read().unwrap().clone();
        let interval = Duration::from_millis(
            cfg.announce
                .as_ref()
                .map_or(AnnounceConfig::default().interval_ms, |a| a.interval_ms),
        );
        let c = {
            let (ctl, cfg) = (ctl.clone(), cfg.clone());
            tokio::task::spawn_blocking(move || check(&ctl, &cfg))
                .await
                .unwrap_or_default()
        };
        let now = Instant::now();
        if let Some((q0, t0)) = last_q {
            let dt = now.duration_since(t0).as_secs_f64();
            if dt > 0.0 {
                qps = c.frontend_queries.saturating_sub(q0) as f64 / dt;
            }
        }
        last_q = Some((c.frontend_queries, now));
        let (healthy, changed) = {
            let mut n = an.node.lock().unwrap();
            let ch = n.observe(&c, now);
            (n.healthy(), ch)
        };
        match changed {
            Some(true) => info!("node HEALTHY: announcing"),
            Some(false) => {
                warn!(problems = ?an.node.lock().unwrap().problems(), "node UNHEALTHY: withdrawing")
            }
            None => {}
        }
        let t = target(&cfg);
        if let Some(t) = &t {
            bird.apply(&an, t, healthy, changed.is_some()).await;
            bird.verify(&an, t, healthy).await;
        }
        // TCP/53 clients of a withdrawn node: closed once the withdrawal had
        // time to reach the routers, so that they reconnect through them.
        let closing = t.is_some() && bird.closing();
        ctl.tcp_closing.send_if_modified(|c| {
            let change = *c != closing;
            *c = closing;
            change
        });
        {
            let n = an.node.lock().unwrap();
            let state = if n.healthy() {
                "healthy"
            } else if n.rising().is_some() {
                "rising"
            } else {
                "unhealthy"
            };
            *an.view.lock().unwrap() = Some(NodeView {
                state,
                healthy: n.healthy(),
                problems: n.problems().to_vec(),
                drain: n.drain(),
                since_s: n.since.elapsed().as_secs_f64(),
                frontend_qps: qps,
                in_flight: c.in_flight,
                announce: t.as_ref().map(|t| bird.view(&an, t, n.healthy())),
            });
        }
        // Sleep one interval, or less when a drain or undrain came in.
        let end = tokio::time::Instant::now() + interval;
        while tokio::time::Instant::now() < end && !stop.load(Ordering::Relaxed) {
            if an.poke.swap(false, Ordering::Relaxed) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10).min(interval)).await;
        }
    }
}
