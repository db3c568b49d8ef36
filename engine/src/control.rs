//! The engine's control socket: a unix stream socket on which the control
//! process (`dnsrailctl serve`) sends one JSON request per line and reads one
//! JSON response per line. Versioned (`PROTOCOL`): a ctl that speaks another
//! version is told so by `hello` and refuses to attach.
//!
//! The engine keeps forwarding whatever happens here: a ctl that dies leaves
//! the engine with its last state, and a new ctl attaches by connecting.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::Config;
use crate::engine::Engine;
use crate::fate::Ejection;
use crate::stats::{bucket_floor, DropReason, HIST_BUCKETS};

/// Raised when a message changes shape (2: `Report::rules` carries each
/// rule's source; 3: backends the engine takes out itself, `readmit`; 4:
/// packet caches, `cache_purge`), so that a ctl and an engine of different
/// builds refuse each other at hello instead of failing on every report.
pub const PROTOCOL: u32 = 4;

/// Longest request line accepted (a runtime rule set is the longest).
const MAX_LINE: usize = 16 << 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Hello,
    /// The full report, rule hits included.
    Stats,
    /// The report without rule hits (cheap at any rule count: what ctl
    /// polls every health interval).
    Summary,
    /// Health, drain and weight of one backend (each optional).
    SetBackend {
        name: String,
        #[serde(default)]
        up: Option<bool>,
        #[serde(default)]
        drained: Option<bool>,
        #[serde(default)]
        weight: Option<u32>,
        /// Health checks counted `rise` successes: let the backend back in
        /// if the engine took it out (ICMP, silence). `up` alone does not,
        /// so a ctl pushing its state after an attach readmits nothing.
        #[serde(default)]
        readmit: bool,
    },
    /// Re-read a configuration file (default: the one the engine runs).
    Reload {
        #[serde(default)]
        path: Option<String>,
    },
    /// Every rule (runtime first, then the file's) with its hits.
    RulesList,
    /// Add runtime rules (`[[rule]]` TOML); `replace` lets a rule replace
    /// the runtime rule of the same name.
    RulesAdd {
        text: String,
        #[serde(default)]
        replace: bool,
    },
    RulesDel {
        name: String,
    },
    /// Replace every runtime rule with those of `text`.
    RulesLoad {
        text: String,
    },
    /// The runtime rules as one TOML text.
    RulesExport,
    /// Empty the packet caches of `name` (dotted), or of `name` and every
    /// name below it; `text` says how many answers went.
    CachePurge {
        name: String,
        #[serde(default)]
        suffix: bool,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuleInfo {
    pub name: String,
    /// "runtime" or "file".
    pub source: String,
    pub hits: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hello: Option<Hello>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Report>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<RuleInfo>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl Response {
    fn ok() -> Response {
        Response {
            ok: true,
            ..Response::default()
        }
    }

    fn err(e: impl std::fmt::Display) -> Response {
        Response {
            ok: false,
            error: Some(e.to_string()),
            ..Response::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Hello {
    pub protocol: u32,
    pub pid: u32,
    pub io: String,
    pub config: String,
    pub generation: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct BackendReport {
    pub name: String,
    pub address: String,
    pub pools: Vec<String>,
    pub weight: u32,
    pub up: bool,
    pub drained: bool,
    /// AF_XDP: next hop resolved.
    pub reachable: bool,
    pub usable: bool,
    /// Why the engine took it out ("icmp", "silent"), while it is out.
    #[serde(default)]
    pub ejected: Option<String>,
    /// Times the engine took it out, per reason.
    #[serde(default)]
    pub ejections: BTreeMap<String, u64>,
    pub sent: u64,
    pub answered: u64,
    pub timeouts: u64,
    pub errors: u64,
    /// RCODE name → answers, non-zero only.
    pub rcodes: BTreeMap<String, u64>,
    /// Latency histogram: counts per bucket of `Report::latency_bounds_us`.
    pub latency: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct FrontendReport {
    pub listen: String,
    pub pool: String,
    pub queries: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Report {
    pub pid: u32,
    pub io: String,
    pub generation: u64,
    pub uptime_s: f64,
    pub workers: usize,
    pub queries: u64,
    pub answers: u64,
    /// Answers completed by another worker than the one that sent the query.
    #[serde(default)]
    pub answers_cross_worker: u64,
    pub local_replies: u64,
    /// Frames whose partial UDP checksum (TX offload) the engine completed.
    #[serde(default)]
    pub checksums_completed: u64,
    /// AF_XDP: answers delivered by the slow path (reassembled by the kernel).
    #[serde(default)]
    pub answers_slow_path: u64,
    /// ICMP destination unreachable messages matched to a waiting query.
    #[serde(default)]
    pub icmp_errors: u64,
    /// Queries re-sent to another backend after an ICMP error.
    #[serde(default)]
    pub redispatched: u64,
    pub in_flight: u64,
    /// Every drop reason, zero included (stable series for metrics).
    pub drops: BTreeMap<String, u64>,
    pub frontends: Vec<FrontendReport>,
    pub backends: Vec<BackendReport>,
    /// Upper bound (µs, exclusive) of each latency bucket.
    pub latency_bounds_us: Vec<u64>,
    /// Every rule with its source and hits: the runtime rules, then the
    /// file's, in the order they are tried (a runtime rule may share a
    /// file rule's name; the source tells them apart).
    pub rules: Vec<RuleInfo>,
    /// AF_XDP: what the XDP program did.
    pub xdp: Option<XdpReport>,
    /// `[dynblock]`, when configured.
    #[serde(default)]
    pub dynblock: Option<DynBlockReport>,
    /// Each pool's packet cache, for pools that have one.
    #[serde(default)]
    pub caches: Vec<CacheReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct CacheReport {
    pub pool: String,
    pub capacity: u64,
    pub entries: u64,
    pub hits: u64,
    pub stale_hits: u64,
    pub misses: u64,
    pub inserts: u64,
    pub uncacheable: u64,
    #[serde(default)]
    pub not_admitted: u64,
    /// Of `hits`, those the XDP program answered from the answer tier.
    #[serde(default)]
    pub xdp_hits: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct DynBlockReport {
    /// Blocked prefixes now (`ip/len`) and the seconds left.
    pub active: Vec<(String, u64)>,
    pub added: u64,
    pub expired: u64,
    pub overflow: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct XdpReport {
    pub queries: u64,
    pub answers: u64,
    pub blocked: u64,
    pub passed: u64,
    #[serde(default)]
    pub icmp: u64,
    /// The answer tier (`engine.xdp_cache_entries`), when configured.
    #[serde(default)]
    pub tier: Option<TierReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct TierReport {
    pub capacity: u64,
    /// Answering now (off while rules or dynamic blocks are set).
    pub active: bool,
    pub answers: u64,
    pub misses: u64,
    pub drops: u64,
    /// Cache entries copied in by the workers.
    pub promoted: u64,
}

/// Builds the report of a running engine.
pub fn report(e: &Engine, started: Instant, with_rules: bool) -> Report {
    let snap = e.snapshot();
    // Every counting thread's stats, the slow path's included.
    let stats = &e.counting_stats();
    let sum = |f: &dyn Fn(&crate::stats::WorkerStats) -> u64| stats.iter().map(|w| f(w)).sum();
    let mut drops = BTreeMap::new();
    for &r in DropReason::ALL {
        drops.insert(
            r.name().to_string(),
            stats.iter().map(|w| w.drops_of(r)).sum(),
        );
    }
    let xdp = e.xdp_counters();
    // Queries the XDP program answered from the answer tier never reach a
    // worker: they are added where the workers count theirs.
    let fe_ids = snap.live_frontends().map(|f| usize::from(f.id) + 1).max();
    let tier = e.tier(snap.pools.len(), fe_ids.unwrap_or(0));
    let tier_answers = xdp.map_or(0, |x| x.tier_answers);
    let at = |v: Option<&Vec<u64>>, i: usize| v.and_then(|v| v.get(i)).copied().unwrap_or(0);
    let frontends = snap
        .live_frontends()
        .map(|f| FrontendReport {
            listen: f.listen.to_string(),
            pool: snap.pools[usize::from(f.pool)].name.clone(),
            queries: stats
                .iter()
                .map(|w| w.frontend_queries[usize::from(f.id)].get())
                .sum::<u64>()
                + at(tier.as_ref().map(|t| &t.per_frontend), usize::from(f.id)),
        })
        .collect();
    let backends = snap
        .live_backends()
        .map(|b| {
            let i = usize::from(b.id);
            let bs = |f: &dyn Fn(&crate::stats::BackendStats) -> u64| -> u64 {
                stats.iter().map(|w| f(&w.backends[i])).sum()
            };
            let mut rcodes = BTreeMap::new();
            for (code, name) in crate::wire::dns::rcode::NAMES.iter().enumerate() {
                let n = bs(&|s| s.rcodes[code].get());
                if n > 0 {
                    rcodes.insert(name.to_string(), n);
                }
            }
            let mut latency = vec![0u64; HIST_BUCKETS];
            for w in stats {
                for (j, c) in w.backends[i].latency.buckets.iter().enumerate() {
                    latency[j] += c.get();
                }
            }
            BackendReport {
                name: b.name.clone(),
                address: b.addr.to_string(),
                pools: snap
                    .pools
                    .iter()
                    .filter(|p| p.members.contains(&b.id))
                    .map(|p| p.name.clone())
                    .collect(),
                weight: b.weight,
                up: b.up,
                drained: b.drained,
                reachable: b.reachable,
                usable: b.usable(),
                ejected: e.fate().ejected(b.id).map(|w| w.name().to_string()),
                ejections: Ejection::ALL
                    .iter()
                    .map(|&w| (w.name().to_string(), e.fate().count(b.id, w)))
                    .collect(),
                sent: bs(&|s| s.sent.get()),
                answered: bs(&|s| s.answered.get()),
                timeouts: bs(&|s| s.timeouts.get()),
                errors: bs(&|s| s.errors.get()),
                rcodes,
                latency,
            }
        })
        .collect();
    Report {
        pid: std::process::id(),
        io: format!("{:?}", e.io()).to_lowercase(),
        generation: snap.generation,
        uptime_s: started.elapsed().as_secs_f64(),
        workers: e.worker_stats().len(),
        queries: sum(&|w| w.queries.get()) + tier_answers,
        answers: sum(&|w| w.answers.get()),
        answers_cross_worker: sum(&|w| w.answers_cross_worker.get()),
        local_replies: sum(&|w| w.local_replies.get()) + tier_answers,
        checksums_completed: sum(&|w| w.checksums_completed.get()),
        answers_slow_path: sum(&|w| w.answers_slow_path.get()),
        icmp_errors: sum(&|w| w.icmp_errors.get()),
        redispatched: sum(&|w| w.redispatched.get()),
        in_flight: e.in_flight(),
        drops,
        frontends,
        backends,
        latency_bounds_us: (1..=HIST_BUCKETS).map(bucket_floor).collect(),
        rules: if with_rules {
            e.rules_list()
        } else {
            Vec::new()
        },
        caches: snap
            .pools
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let c = p.cache.as_ref()?;
                let t = c.counts.totals();
                let xdp_hits = at(tier.as_ref().map(|t| &t.per_pool), i);
                Some(CacheReport {
                    pool: p.name.clone(),
                    capacity: c.capacity() as u64,
                    entries: c.len() as u64,
                    hits: t.hits + xdp_hits,
                    xdp_hits,
                    stale_hits: t.stale_hits,
                    misses: t.misses,
                    inserts: t.inserts,
                    uncacheable: t.uncacheable,
                    not_admitted: t.not_admitted,
                })
            })
            .collect(),
        dynblock: e.dynblock().map(|d| {
            let now = Instant::now();
            DynBlockReport {
                active: d
                    .list()
                    .into_iter()
                    .map(|((ip, len), until)| {
                        (
                            format!("{ip}/{len}"),
                            until.saturating_duration_since(now).as_secs(),
                        )
                    })
                    .collect(),
                added: d.added.load(std::sync::atomic::Ordering::Relaxed),
                expired: d.expired.load(std::sync::atomic::Ordering::Relaxed),
                overflow: d.overflow.load(std::sync::atomic::Ordering::Relaxed),
            }
        }),
        xdp: xdp.map(|x| XdpReport {
            queries: x.queries,
            answers: x.answers,
            blocked: x.blocked,
            passed: x.passed,
            icmp: x.icmp,
            tier: tier.as_ref().map(|t| TierReport {
                capacity: t.capacity,
                active: t.active,
                answers: x.tier_answers,
                misses: x.tier_misses,
                drops: x.tier_drops,
                promoted: t.promoted,
            }),
        }),
    }
}

/// Carries out one request.
pub fn handle(e: &Engine, req: Request, config_path: &str, started: Instant) -> Response {
    match req {
        Request::Hello => Response {
            hello: Some(Hello {
                protocol: PROTOCOL,
                pid: std::process::id(),
                io: format!("{:?}", e.io()).to_lowercase(),
                config: config_path.to_string(),
                generation: e.snapshot().generation,
            }),
            ..Response::ok()
        },
        Request::Stats | Request::Summary => Response {
            stats: Some(report(e, started, req == Request::Stats)),
            ..Response::ok()
        },
        Request::SetBackend {
            name,
            up,
            drained,
            weight,
            readmit,
        } => {
            if !e.snapshot().live_backends().any(|b| b.name == name) {
                return Response::err(format!("no backend named {name:?}"));
            }
            if readmit {
                if let Some(why) = e.readmit(&name) {
                    info!(backend = %name, was = why.name(), "backend readmitted: health checks counted rise successes");
                }
            }
            e.update_overrides(|o| {
                if let Some(up) = up {
                    o.down.insert(name.clone(), !up);
                }
                if let Some(d) = drained {
                    o.drained.insert(name.clone(), d);
                }
                if let Some(w) = weight {
                    o.weight.insert(name.clone(), w);
                }
            });
            info!(backend = %name, ?up, ?drained, ?weight, "backend state set by the control process");
            Response::ok()
        }
        Request::RulesList => Response {
            rules: Some(e.rules_list()),
            ..Response::ok()
        },
        Request::RulesAdd { text, replace } => {
            done(e.rules_add(&text, replace), "runtime rules added")
        }
        Request::RulesDel { name } => done(e.rules_del(&name), "runtime rule deleted"),
        Request::RulesLoad { text } => done(e.rules_load(&text), "runtime rules loaded"),
        Request::RulesExport => Response {
            text: Some(e.rules_export()),
            ..Response::ok()
        },
        Request::CachePurge { name, suffix } => match e.cache_purge(&name, suffix) {
            Ok(n) => {
                info!(name = %name, suffix, purged = n, "cache purge");
                Response {
                    text: Some(n.to_string()),
                    ..Response::ok()
                }
            }
            Err(err) => Response::err(err),
        },
        Request::Reload { path } => {
            let path = path.unwrap_or_else(|| config_path.to_string());
            match Config::load(Path::new(&path)).and_then(|c| e.reload(c)) {
                Ok(()) => {
                    info!(file = %path, "reloaded (control socket)");
                    Response::ok()
                }
                Err(err) => {
                    warn!("reload refused, keeping the running configuration: {err}");
                    Response::err(err)
                }
            }
        }
    }
}

fn done(r: Result<(), String>, what: &str) -> Response {
    match r {
        Ok(()) => {
            info!("{what}");
            Response::ok()
        }
        Err(e) => {
            warn!("rules change refused: {e}");
            Response::err(e)
        }
    }
}

/// The listening control socket; dropping it stops serving and removes
/// the socket file.
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControlServer {
    /// Listens on `path`. A socket file left by a dead engine is replaced; one
    /// a live engine answers on is an error (two engines, one socket).
    pub fn start(
        path: &Path,
        engine: Weak<Engine>,
        config_path: String,
    ) -> anyhow::Result<ControlServer> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                bail!(
                    "control socket {} is in use by a running engine",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove stale {}", path.display()))?;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).ok();
        }
        let listener = UnixListener::bind(path)
            .with_context(|| format!("cannot listen on control socket {}", path.display()))?;
        // Only the owner (root, or the service user) may steer the engine.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("dnsrail-control".into())
            .spawn(move || {
                while !st.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let e = engine.clone();
                            let cfg = config_path.clone();
                            let _ = std::thread::Builder::new()
                                .name("dnsrail-control-conn".into())
                                .spawn(move || serve_conn(conn, e, cfg, started));
                        }
                        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Err(err) => {
                            warn!("control socket accept: {err}");
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
            })?;
        info!(socket = %path.display(), protocol = PROTOCOL, "control socket listening");
        Ok(ControlServer {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_conn(conn: UnixStream, engine: Weak<Engine>, config_path: String, started: Instant) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(600)));
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    // A connection that said hello is a control process until it closes.
    struct Controller(Option<Weak<Engine>>);
    impl Drop for Controller {
        fn drop(&mut self) {
            if let Some(e) = self.0.take().and_then(|w| w.upgrade()) {
                e.controller(false);
            }
        }
    }
    let mut controller = Controller(None);
    loop {
        line.clear();
        match std::io::Read::take(&mut reader, MAX_LINE as u64 + 1).read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let resp = if line.len() > MAX_LINE || !line.ends_with('\n') {
            Response::err(format!(
                "request longer than {MAX_LINE} bytes or unterminated"
            ))
        } else {
            match serde_json::from_str::<Request>(line.trim_end()) {
                Err(e) => Response::err(format!("bad request: {e}")),
                Ok(req) => match engine.upgrade() {
                    Some(e) => {
                        if req == Request::Hello && controller.0.is_none() {
                            e.controller(true);
                            controller.0 = Some(engine.clone());
                        }
                        handle(&e, req, &config_path, started)
                    }
                    None => Response::err("engine stopping"),
                },
            }
        };
        let mut text = serde_json::to_string(&resp).expect("responses serialise");
        text.push('\n');
        if out.write_all(text.as_bytes()).is_err() {
            return;
        }
        if line.len() > MAX_LINE {
            return; // cannot resynchronise on an overlong line
        }
    }
}

/// A client of the control socket (the control process, tests).
pub struct ControlClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl ControlClient {
    pub fn connect(path: &Path) -> anyhow::Result<ControlClient> {
        let s = UnixStream::connect(path)
            .with_context(|| format!("cannot connect to the engine at {}", path.display()))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
        Ok(ControlClient {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }

    pub fn call(&mut self, req: &Request) -> anyhow::Result<Response> {
        let mut text = serde_json::to_string(req)?;
        text.push('\n');
        self.writer.write_all(text.as_bytes())?;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("the engine closed the control connection");
        }
        Ok(serde_json::from_str(&line)?)
    }

    /// `hello`, checking the protocol version.
    pub fn hello(&mut self) -> anyhow::Result<Hello> {
        let r = self.call(&Request::Hello)?;
        let h = r
            .hello
            .ok_or_else(|| anyhow::anyhow!("no hello: {:?}", r.error))?;
        if h.protocol != PROTOCOL {
            bail!(
                "engine speaks control protocol {}, this ctl {}",
                h.protocol,
                PROTOCOL
            );
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_tagged_json() {
        let r = Request::SetBackend {
            name: "a".into(),
            up: Some(false),
            drained: None,
            weight: Some(3),
            readmit: true,
        };
        let t = serde_json::to_string(&r).unwrap();
        assert!(t.contains("\"op\":\"set_backend\""), "{t}");
        assert_eq!(serde_json::from_str::<Request>(&t).unwrap(), r);
        assert_eq!(
            serde_json::from_str::<Request>("{\"op\":\"reload\"}").unwrap(),
            Request::Reload { path: None }
        );
        assert!(serde_json::from_str::<Request>("{\"op\":\"format_disk\"}").is_err());
    }
}
