//! `dnsrailctl serve`: the control process. Attaches to (or starts and
//! supervises) the engine, runs health checks and pushes their verdicts
//! (`monitor`), announces the node to the routers (`announce`), serves
//! TCP/53, the HTTP API and `/metrics` (`api`), and reloads on SIGHUP or
//! `POST /api/reload` after validating the file itself.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use tokio::sync::Semaphore;
use tracing::{error, info, warn};

use dnsrail_engine::config::{Config, ConfigError};
use dnsrail_engine::control::Request;
use dnsrail_engine::rules::RuleSet;

use crate::announce::Announcer;
use crate::health::ProbeSpec;
use crate::supervisor::EngineLink;
use crate::tcp::{self, Picker, TcpCounters, TcpSpec};

pub struct Ctl {
    pub config_path: PathBuf,
    pub config: RwLock<Config>,
    pub link: Arc<EngineLink>,
    pub(crate) token: String,
    pub health_checks: Mutex<HashMap<(String, bool), u64>>,
    /// Backend state changes: (backend, "up"/"down", reason) → count.
    pub transitions: Mutex<HashMap<(String, &'static str, &'static str), u64>>,
    pub tcp: Arc<TcpCounters>,
    pub announcer: Arc<Announcer>,
    /// True while the node is withdrawn (set by `announce`): TCP/53 client
    /// connections close at their next wait for a query.
    pub tcp_closing: tokio::sync::watch::Sender<bool>,
    rr: AtomicUsize,
    pub(crate) started: Instant,
}

impl Picker for Ctl {
    fn pick(&self, pool: &str) -> Option<SocketAddr> {
        let cfg = self.config.read().unwrap();
        let d = self.link.desired.lock().unwrap();
        let usable: Vec<SocketAddr> = cfg
            .backends
            .iter()
            .filter(|b| b.pools.iter().any(|p| p.get_ref() == pool))
            .filter(|b| {
                let n = b.name.get_ref();
                d.health.get(n).is_none_or(|h| h.up)
                    && !d.drained.get(n).copied().unwrap_or(false)
                    && d.weight.get(n).copied().unwrap_or(b.weight) > 0
            })
            .map(Config::backend_addr)
            .collect();
        if usable.is_empty() {
            return None;
        }
        Some(usable[self.rr.fetch_add(1, Ordering::Relaxed) % usable.len()])
    }
}

impl Ctl {
    /// Counts a backend's transition for `/metrics`.
    pub fn transition(&self, backend: &str, to: &'static str, reason: &'static str) {
        *self
            .transitions
            .lock()
            .unwrap()
            .entry((backend.to_string(), to, reason))
            .or_default() += 1;
    }

    pub(crate) fn backend_names(&self) -> Vec<String> {
        self.config
            .read()
            .unwrap()
            .backends
            .iter()
            .map(|b| b.name.get_ref().clone())
            .collect()
    }

    /// Validates the file, then has the engine load it. A bad file is
    /// refused with its file:line:key message and nothing changes.
    pub fn reload(&self) -> Result<(), String> {
        let cfg = load_config(&self.config_path).map_err(|e| e.to_string())?;
        let r = self
            .link
            .call(&Request::Reload {
                path: Some(self.config_path.display().to_string()),
            })
            .map_err(|e| format!("engine: {e:#}"))?;
        if !r.ok {
            return Err(r
                .error
                .unwrap_or_else(|| "engine refused the reload".into()));
        }
        *self.config.write().unwrap() = cfg;
        info!(file = %self.config_path.display(), "reloaded");
        Ok(())
    }
}

/// The API token: configured, read from a file, or generated and written
/// (mode 0600) beside the control socket for the CLI to find.
fn api_token(cfg: &Config) -> anyhow::Result<String> {
    if let Some(t) = &cfg.ctl.token {
        return Ok(t.clone());
    }
    if let Some(f) = &cfg.ctl.token_file {
        let t = std::fs::read_to_string(f).with_context(|| format!("ctl.token_file {f}"))?;
        return Ok(t.lines().next().unwrap_or("").trim().to_string());
    }
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b)
        .map_err(|e| anyhow::anyhow!("no random source for the API token: {e}"))?;
    let t: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let path = default_token_path(cfg);
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).ok();
    }
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot write the API token to {}", path.display()))?;
        std::io::Write::write_all(&mut f, format!("{t}\n").as_bytes())?;
    }
    info!(file = %path.display(), "API token generated");
    Ok(t)
}

pub fn default_token_path(cfg: &Config) -> PathBuf {
    Path::new(&cfg.ctl.control_socket)
        .parent()
        .unwrap_or(Path::new("/run/dnsrail"))
        .join("api.token")
}

fn engine_binary(cfg: &Config) -> PathBuf {
    if let Some(b) = &cfg.ctl.engine_binary {
        return PathBuf::from(b);
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("dnsrail")))
        .unwrap_or_else(|| PathBuf::from("dnsrail"))
}

/// Reads and validates a configuration file and checks that its rules
/// compile (the configuration holds them as written; the engine compiles
/// them for its workers), so ctl refuses what the engine would.
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    let cfg = Config::load(path)?;
    RuleSet::check(&cfg)?;
    Ok(cfg)
}

pub fn run(config_path: PathBuf, spawn: bool) -> anyhow::Result<()> {
    let cfg = load_config(&config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let probe = ProbeSpec::from_config(&cfg.health)?;
    let token = api_token(&cfg)?;
    let link = Arc::new(EngineLink::new(
        PathBuf::from(&cfg.ctl.control_socket),
        config_path.clone(),
        engine_binary(&cfg),
        spawn,
    ));
    let ctl = Arc::new(Ctl {
        config_path,
        config: RwLock::new(cfg.clone()),
        link: link.clone(),
        token,
        health_checks: Mutex::new(HashMap::new()),
        transitions: Mutex::new(HashMap::new()),
        tcp: Arc::new(TcpCounters::default()),
        announcer: Arc::new(Announcer::new(&cfg)),
        tcp_closing: tokio::sync::watch::Sender::new(false),
        rr: AtomicUsize::new(0),
        started: Instant::now(),
    });

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;

    let sup = {
        let (c, st) = (ctl.clone(), stop.clone());
        std::thread::Builder::new()
            .name("ctl-supervisor".into())
            .spawn(move || c.link.clone().supervise(st, || c.backend_names()))?
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        // HTTP API.
        let api: SocketAddr = cfg.ctl.api_listen.parse().expect("validated");
        let listener = tokio::net::TcpListener::bind(api)
            .await
            .with_context(|| format!("cannot listen on {api} (ctl.api_listen)"))?;
        info!(%api, "HTTP API listening");
        tokio::spawn(axum_serve(listener, crate::api::router(ctl.clone())));

        // TCP/53 on every frontend.
        if cfg.ctl.tcp {
            let spec = Arc::new(TcpSpec {
                idle: Duration::from_millis(cfg.ctl.tcp_idle_timeout_ms),
                limit: Arc::new(Semaphore::new(cfg.ctl.tcp_max_connections)),
                counters: ctl.tcp.clone(),
                closing: ctl.tcp_closing.subscribe(),
            });
            for f in &cfg.frontends {
                let addr = Config::frontend_addr(f);
                match bind_tcp(addr) {
                    Ok(l) => {
                        info!(%addr, "TCP/53 listening");
                        tokio::spawn(tcp::serve(
                            l,
                            f.pool.get_ref().clone(),
                            ctl.clone() as Arc<dyn Picker>,
                            spec.clone(),
                        ));
                    }
                    Err(e) => warn!(%addr, "cannot serve TCP: {e}"),
                }
            }
        }

        // Health checks, and the node's announcement from them.
        tokio::spawn(crate::monitor::health_loop(
            ctl.clone(),
            probe,
            stop.clone(),
        ));
        tokio::spawn(crate::announce::run(ctl.clone(), stop.clone()));

        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if hup.swap(false, Ordering::Relaxed) {
                let c = ctl.clone();
                match tokio::task::spawn_blocking(move || c.reload()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => error!("reload refused, keeping the running configuration: {e}"),
                    Err(e) => error!("reload: {e}"),
                }
            }
        }
        anyhow::Ok(())
    })?;
    info!("stopping (the engine keeps running)");
    stop.store(true, Ordering::Relaxed);
    let _ = sup.join();
    Ok(())
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let s = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    s.set_reuseaddr(true)?;
    s.bind(addr)?;
    s.listen(1024)
}

async fn axum_serve(l: tokio::net::TcpListener, app: Router) {
    if let Err(e) = axum::serve(l, app).await {
        error!("HTTP API stopped: {e}");
    }
}
