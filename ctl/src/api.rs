//! The HTTP API of `dnsrailctl serve` (also what the CLI and the dashboard
//! call): status, backends, stats, backend and node changes, reload, rules,
//! `/metrics`. Changes need the bearer token.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tracing::info;

use dnsrail_engine::config::Config;
use dnsrail_engine::control::Request;

use crate::serve::Ctl;

pub fn router(ctl: Arc<Ctl>) -> Router {
    Router::new()
        .route("/api/status", get(status))
        .route("/api/backends", get(backends))
        .route("/api/stats", get(stats))
        .route("/api/backends/:name/:action", post(backend_action))
        .route("/api/reload", post(reload))
        .route("/api/node", get(node))
        .route("/api/node/:action", post(node_action))
        .route(
            "/api/rules",
            get(rules_list).post(rules_add).put(rules_load),
        )
        .route("/api/rules/:name", axum::routing::delete(rules_del))
        .route("/api/cache", get(cache_stats))
        .route("/api/cache/purge", post(cache_purge))
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
        "node": ctl.announcer.view(),
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

/// The node's health, drain and announcement (`null` before the first
/// check).
async fn node(State(ctl): State<Arc<Ctl>>) -> Response {
    Json(ctl.announcer.view()).into_response()
}

/// `drain` withdraws the node's routes (the CLI then waits for `drained`);
/// `undrain` lets it announce again after `rise` good checks.
async fn node_action(
    State(ctl): State<Arc<Ctl>>,
    headers: HeaderMap,
    UrlPath(action): UrlPath<String>,
) -> Response {
    if let Some(r) = unauthorized(&ctl, &headers) {
        return r;
    }
    let drain = match action.as_str() {
        "drain" => true,
        "undrain" => false,
        other => return err(StatusCode::NOT_FOUND, format!("unknown action {other:?}")),
    };
    if ctl.config.read().unwrap().announce.is_none() {
        return err(
            StatusCode::CONFLICT,
            "no [announce] table: nothing announces this node to the routers, so there is nothing to withdraw",
        );
    }
    let a = ctl.announcer.clone();
    match blocking(move || a.set_drained(drain)).await {
        Ok(()) => Json(json!({ "ok": true, "action": action })).into_response(),
        Err(e) => err(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot record the drain: {e:#}"),
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

/// `GET /api/cache`: each pool's packet cache.
async fn cache_stats(State(ctl): State<Arc<Ctl>>) -> Response {
    let link = ctl.link.clone();
    match blocking(move || link.summary()).await {
        Ok(r) => Json(r.caches).into_response(),
        Err(e) => err(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
    }
}

#[derive(serde::Deserialize)]
struct PurgeQuery {
    name: String,
    #[serde(default)]
    suffix: bool,
}

/// `POST /api/cache/purge?name=NAME[&suffix=true]`: empty the packet
/// caches of a name (and, with `suffix`, every name below it).
async fn cache_purge(
    State(ctl): State<Arc<Ctl>>,
    headers: HeaderMap,
    Query(q): Query<PurgeQuery>,
) -> Response {
    if let Some(r) = unauthorized(&ctl, &headers) {
        return r;
    }
    let link = ctl.link.clone();
    let req = Request::CachePurge {
        name: q.name,
        suffix: q.suffix,
    };
    match blocking(move || link.call(&req)).await {
        Ok(r) if r.ok => {
            let purged = r.text.and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
            Json(json!({ "ok": true, "purged": purged })).into_response()
        }
        Ok(r) => err(StatusCode::BAD_REQUEST, r.error.unwrap_or_default()),
        Err(e) => err(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
    }
}

async fn metrics(State(ctl): State<Arc<Ctl>>) -> Response {
    let link = ctl.link.clone();
    let report = blocking(move || link.stats()).await.ok();
    let d = ctl.link.desired.lock().unwrap();
    let hc = ctl.health_checks.lock().unwrap();
    let tr = ctl.transitions.lock().unwrap();
    let node = ctl.announcer.view();
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
            node: node.as_ref(),
        },
    );
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}
