//! `dnsrailctl serve`: the control process. Attaches to (or starts and
//! supervises) the engine, runs health checks and pushes their verdicts,
//! serves TCP/53, the HTTP API and `/metrics`, and reloads on SIGHUP or
//! `POST /api/reload` after validating the file itself.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::Semaphore;
use tracing::{error, info, warn};

use dnsrail_engine::config::Config;
use dnsrail_engine::control::Request;

use crate::health::{self, ProbeSpec};
use crate::supervisor::EngineLink;
use crate::tcp::{self, Picker, TcpCounters, TcpSpec};

pub struct Ctl {
    pub config_path: PathBuf,
    pub config: RwLock<Config>,
    pub link: Arc<EngineLink>,
    token: String,
    pub health_checks: Mutex<HashMap<(String, bool), u64>>,
    /// Backend state changes: (backend, "up"/"down", reason) → count.
    pub transitions: Mutex<HashMap<(String, &'static str, &'static str), u64>>,
    pub tcp: Arc<TcpCounters>,
    rr: AtomicUsize,
    started: Instant,
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

    fn backend_names(&self) -> Vec<String> {
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
        let cfg = Config::load(&self.config_path).map_err(|e| e.to_string())?;
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

pub fn run(config_path: PathBuf, spawn: bool) -> anyhow::Result<()> {
    let cfg = Config::load(&config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
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
        tokio::spawn(axum_serve(listener, router(ctl.clone())));

        // TCP/53 on every frontend.
        if cfg.ctl.tcp {
            let spec = Arc::new(TcpSpec {
                idle: Duration::from_millis(cfg.ctl.tcp_idle_timeout_ms),
                limit: Arc::new(Semaphore::new(cfg.ctl.tcp_max_connections)),
                counters: ctl.tcp.clone(),
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

        // Health checks.
        tokio::spawn(health_loop(ctl.clone(), probe, stop.clone()));

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

/// Active probes (every interval; every quarter interval for a suspect
/// backend) and passive health from the engine's counters (sampled every
/// interval).
async fn health_loop(ctl: Arc<Ctl>, spec: ProbeSpec, stop: Arc<AtomicBool>) {
    let mut id: u16 = 1;
    let mut next_probe: HashMap<String, tokio::time::Instant> = HashMap::new();
    let mut last_passive = tokio::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let (interval, rise, fall, backends) = {
            let c = ctl.config.read().unwrap();
            let bs: Vec<(String, SocketAddr)> = c
                .backends
                .iter()
                .map(|b| (b.name.get_ref().clone(), Config::backend_addr(b)))
                .collect();
            (
                Duration::from_millis(c.health.interval_ms),
                c.health.rise,
                c.health.fall,
                bs,
            )
        };
        let tick = interval / 4;
        let now = tokio::time::Instant::now();
        next_probe.retain(|n, _| backends.iter().any(|(b, _)| b == n));
        let due: Vec<(String, SocketAddr)> = backends
            .iter()
            .filter(|(n, _)| next_probe.get(n).is_none_or(|t| *t <= now))
            .cloned()
            .collect();
        {
            let d = ctl.link.desired.lock().unwrap();
            for (n, _) in &due {
                let suspect = d.passive.get(n).is_some_and(|p| p.suspect);
                next_probe.insert(n.clone(), now + if suspect { tick } else { interval });
            }
        }
        let probes = due.iter().map(|(n, a)| {
            id = id.wrapping_add(1);
            let (spec, a, n, id) = (spec.clone(), *a, n.clone(), id);
            async move { (n, health::probe(&spec, a, id).await) }
        });
        let results = futures_join_all(probes.collect()).await;
        let mut changed = Vec::new();
        {
            let mut d = ctl.link.desired.lock().unwrap();
            d.health.retain(|n, _| backends.iter().any(|(b, _)| b == n));
            d.passive
                .retain(|n, _| backends.iter().any(|(b, _)| b == n));
            let mut hc = ctl.health_checks.lock().unwrap();
            for (name, r) in results {
                *hc.entry((name.clone(), r.ok())).or_default() += 1;
                let suspect = d.passive.get(&name).is_some_and(|p| p.suspect);
                let h = d.health.entry(name.clone()).or_default();
                if let Some(up) = h.observe(r.clone(), rise, fall) {
                    if up {
                        info!(backend = %name, reason = "health", "backend UP (health checks: {rise} successes)");
                    } else {
                        // Faster probing of a suspect confirmed what live
                        // traffic showed: say so.
                        h.reason = if suspect { "passive" } else { "health" };
                        warn!(backend = %name, reason = h.reason, last = %r, "backend DOWN (health check)");
                    }
                    changed.push((name, up, h.reason));
                }
            }
        }
        for (name, up, reason) in changed {
            ctl.transition(&name, if up { "up" } else { "down" }, reason);
            let link = ctl.link.clone();
            let _ = tokio::task::spawn_blocking(move || {
                // Coming up after `rise` successes readmits a backend the
                // engine took out.
                if let Err(e) = link.push_backend(&name, up) {
                    warn!(backend = %name, "cannot push health state to the engine: {e:#}");
                }
            })
            .await;
        }
        // The engine's own verdicts every tick (they count toward rise from
        // here); passive health every interval.
        let passive = now.duration_since(last_passive) >= interval;
        if passive {
            last_passive = now;
        }
        engine_sample(&ctl, passive).await;
        tokio::time::sleep_until(now + tick).await;
    }
}

/// The engine's report: backends it took out (down in ctl too, until
/// `rise` probes succeed) and, when `passive`, a passive-health sample.
async fn engine_sample(ctl: &Arc<Ctl>, passive: bool) {
    let link = ctl.link.clone();
    let Ok(Ok(r)) = tokio::task::spawn_blocking(move || {
        let r = link.call(&Request::Summary)?;
        r.stats.ok_or_else(|| anyhow::anyhow!("no report"))
    })
    .await
    else {
        return;
    };
    let mut d = ctl.link.desired.lock().unwrap();
    for b in &r.backends {
        if let Some(why) = b.ejected.as_deref() {
            let reason = match why {
                "icmp" => "icmp",
                _ => "silent",
            };
            if d.health.entry(b.name.clone()).or_default().eject(reason) {
                warn!(backend = %b.name, reason, "backend DOWN (taken out by the engine); back after the health checks' rise successes");
                ctl.transition(&b.name, "down", reason);
            }
        }
        if !passive {
            continue;
        }
        let bad = b.timeouts + b.rcodes.get("SERVFAIL").copied().unwrap_or(0);
        let p = d.passive.entry(b.name.clone()).or_default();
        match p.observe(b.sent, bad) {
            Some(true) => {
                warn!(backend = %b.name, ratio = format!("{:.0}%", p.ratio() * 100.0), "backend SUSPECT (passive: timeouts and SERVFAIL); probing faster")
            }
            Some(false) => info!(backend = %b.name, "backend no longer suspect (passive)"),
            None => {}
        }
    }
}

/// Runs futures concurrently and collects their outputs in order.
async fn futures_join_all<F: std::future::Future + Send + 'static>(fs: Vec<F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("probe task"));
    }
    out
}

fn router(ctl: Arc<Ctl>) -> Router {
    Router::new()
        .route("/api/status", get(status))
        .route("/api/backends", get(backends))
        .route("/api/stats", get(stats))
        .route("/api/backends/:name/:action", post(backend_action))
        .route("/api/reload", post(reload))
        .route(
            "/api/rules",
            get(rules_list).post(rules_add).put(rules_load),
        )
        .route("/api/rules/:name", axum::routing::delete(rules_del))
        .route("/metrics", get(metrics))
        .merge(crate::dashboard::routes())
        .with_state(ctl)
}

fn err(code: StatusCode, msg: impl std::fmt::Display) -> Response {
    (code, Json(json!({ "error": msg.to_string() }))).into_response()
}

/// `None` when the request carries the token, else the 401 to send.
fn unauthorized(ctl: &Ctl, h: &HeaderMap) -> Option<Response> {
    let given = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Constant-time enough for a 32-character token compared once.
    match given {
        Some(t)
            if t.len() == ctl.token.len()
                && t.bytes()
                    .zip(ctl.token.bytes())
                    .fold(0, |a, (x, y)| a | (x ^ y))
                    == 0 =>
        {
            None
        }
        _ => Some(err(
            StatusCode::UNAUTHORIZED,
            "changes need Authorization: Bearer <token>",
        )),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

async fn status(State(ctl): State<Arc<Ctl>>) -> Response {
    let hello = ctl.link.hello.lock().unwrap().clone();
    Json(json!({
        "ctl": {
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": ctl.started.elapsed().as_secs_f64(),
            "config": ctl.config_path.display().to_string(),
        },
        "engine": {
            "attached": ctl.link.attached(),
            "restarts": ctl.link.restarts.load(Ordering::Relaxed),
            "hello": hello,
        },
    }))
    .into_response()
}

#[derive(serde::Deserialize)]
struct StatsQuery {
    /// Keep only the N most-hit rules (the dashboard asks for a few; a
    /// 100 000-rule set would otherwise be sent every second).
    top_rules: Option<usize>,
}

async fn stats(State(ctl): State<Arc<Ctl>>, Query(q): Query<StatsQuery>) -> Response {
    let link = ctl.link.clone();
    match blocking(move || link.stats()).await {
        Ok(mut r) => {
            if let Some(n) = q.top_rules {
                r.rules.sort_by_key(|r| std::cmp::Reverse(r.hits));
                r.rules.truncate(n);
            }
            Json(r).into_response()
        }
        Err(e) => err(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
    }
}

async fn backends(State(ctl): State<Arc<Ctl>>) -> Response {
    let link = ctl.link.clone();
    let report = blocking(move || link.summary()).await;
    let d = ctl.link.desired.lock().unwrap();
    let mut out = Vec::new();
    for b in ctl.config.read().unwrap().backends.iter() {
        let name = b.name.get_ref();
        let h = d.health.get(name);
        let eng = report
            .as_ref()
            .ok()
            .and_then(|r| r.backends.iter().find(|x| &x.name == name));
        out.push(json!({
            "name": name,
            "address": Config::backend_addr(b).to_string(),
            "health": h.map_or("unknown", |h| if h.up { "up" } else { "down" }),
            "reason": h.map(|h| h.reason),
            "ejected": eng.and_then(|e| e.ejected.clone()),
            "last_probe": h.map(|h| h.last.to_string()),
            "suspect": d.passive.get(name).is_some_and(|p| p.suspect),
            "drained": d.drained.get(name).copied().unwrap_or(false),
            "weight": d.weight.get(name).copied().unwrap_or(b.weight),
            "usable": eng.map(|e| e.usable),
            "sent": eng.map(|e| e.sent),
            "answered": eng.map(|e| e.answered),
            "timeouts": eng.map(|e| e.timeouts),
        }));
    }
    Json(out).into_response()
}

#[derive(serde::Deserialize)]
struct WeightQuery {
    value: Option<u32>,
}

async fn backend_action(
    State(ctl): State<Arc<Ctl>>,
    headers: HeaderMap,
    UrlPath((name, action)): UrlPath<(String, String)>,
    Query(q): Query<WeightQuery>,
) -> Response {
    if let Some(r) = unauthorized(&ctl, &headers) {
        return r;
    }
    if !ctl.backend_names().contains(&name) {
        return err(StatusCode::NOT_FOUND, format!("no backend named {name:?}"));
    }
    {
        let mut d = ctl.link.desired.lock().unwrap();
        match action.as_str() {
            "drain" => {
                if d.drained.insert(name.clone(), true) != Some(true) {
                    ctl.transition(&name, "down", "operator");
                }
            }
            "undrain" => {
                if d.drained.insert(name.clone(), false) == Some(true) {
                    ctl.transition(&name, "up", "operator");
                }
            }
            "weight" => match q.value {
                Some(w) if w <= 1_000_000 => {
                    d.weight.insert(name.clone(), w);
                }
                _ => {
                    return err(
                        StatusCode::BAD_REQUEST,
                        "weight needs ?value=N (0 to 1000000)",
                    )
                }
            },
            other => return err(StatusCode::NOT_FOUND, format!("unknown action {other:?}")),
        }
    }
    info!(backend = %name, %action, value = ?q.value, "operator change");
    let link = ctl.link.clone();
    let n = name.clone();
    match blocking(move || link.push_backend(&n, false)).await {
        Ok(()) => Json(json!({ "ok": true, "backend": name, "action": action })).into_response(),
        // Kept in ctl's desired state: pushed when the engine is back.
        Err(e) => err(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("recorded, but the engine did not take it now: {e:#}"),
        ),
    }
}

async fn reload(State(ctl): State<Arc<Ctl>>, headers: HeaderMap) -> Response {
    if let Some(r) = unauthorized(&ctl, &headers) {
        return r;
    }
    let c = ctl.clone();
    match blocking(move || c.reload()).await {
        Ok(()) => Json(json!({ "ok": true })).into_response(),
        Err(e) => err(StatusCode::BAD_REQUEST, e),
    }
}

async fn rules_list(State(ctl): State<Arc<Ctl>>) -> Response {
    let link = ctl.link.clone();
    match blocking(move || link.call(&Request::RulesList)).await {
        Ok(r) if r.ok => Json(r.rules.unwrap_or_default()).into_response(),
        Ok(r) => err(StatusCode::BAD_GATEWAY, r.error.unwrap_or_default()),
        Err(e) => err(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
    }
}

#[derive(serde::Deserialize)]
struct AddQuery {
    #[serde(default)]
    replace: bool,
}

async fn rules_change(ctl: Arc<Ctl>, headers: HeaderMap, req: Request) -> Response {
    if let Some(r) = unauthorized(&ctl, &headers) {
        return r;
    }
    let link = ctl.link.clone();
    match blocking(move || link.rules_change(&req)).await {
        Ok(()) => Json(json!({ "ok": true })).into_response(),
        Err(e) => err(StatusCode::BAD_REQUEST, format!("{e:#}")),
    }
}

/// `POST /api/rules[?replace=true]` with `[[rule]]` TOML: add.
async fn rules_add(
    State(ctl): State<Arc<Ctl>>,
    headers: HeaderMap,
    Query(q): Query<AddQuery>,
    body: String,
) -> Response {
    rules_change(
        ctl,
        headers,
        Request::RulesAdd {
            text: body,
            replace: q.replace,
        },
    )
    .await
}

/// `PUT /api/rules` with `[[rule]]` TOML: replace every runtime rule.
async fn rules_load(State(ctl): State<Arc<Ctl>>, headers: HeaderMap, body: String) -> Response {
    rules_change(ctl, headers, Request::RulesLoad { text: body }).await
}

async fn rules_del(
    State(ctl): State<Arc<Ctl>>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
) -> Response {
    rules_change(ctl, headers, Request::RulesDel { name }).await
}

async fn metrics(State(ctl): State<Arc<Ctl>>) -> Response {
    let link = ctl.link.clone();
    let report = blocking(move || link.stats()).await.ok();
    let d = ctl.link.desired.lock().unwrap();
    let hc = ctl.health_checks.lock().unwrap();
    let tr = ctl.transitions.lock().unwrap();
    let text = crate::metrics::render(
        report.as_ref(),
        &crate::metrics::CtlView {
            engine_up: ctl.link.attached(),
            engine_restarts: ctl.link.restarts.load(Ordering::Relaxed),
            health: &d.health,
            passive: &d.passive,
            health_checks: &hc,
            transitions: &tr,
            tcp: &ctl.tcp,
        },
    );
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}
