//! The engine as the control process sees it: attach to a running engine's
//! control socket, or start one as a child; restart a crashed child with
//! backoff; after every (re)attach push the state ctl holds (health, drains,
//! weights) so a restarted engine serves with it at once.
//!
//! The child runs in its own process group and is never killed by ctl: if ctl
//! dies, the engine keeps forwarding with its last state, and the next ctl
//! attaches to it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dnsrail_engine::control::{ControlClient, Hello, Report, Request, Response};
use tracing::{error, info, warn};

use crate::health::Health;

/// What ctl wants the engine's backends to be, by name.
#[derive(Default, Debug)]
pub struct Desired {
    pub health: HashMap<String, Health>,
    pub drained: HashMap<String, bool>,
    pub weight: HashMap<String, u32>,
    pub passive: HashMap<String, crate::health::Passive>,
    /// The runtime rules as last accepted by the engine (TOML), pushed to a
    /// restarted engine; `None` until an operator changed them.
    pub runtime_rules: Option<String>,
}

pub struct EngineLink {
    socket: PathBuf,
    config: PathBuf,
    binary: PathBuf,
    spawn: bool,
    client: Mutex<Option<ControlClient>>,
    pub hello: Mutex<Option<Hello>>,
    pub restarts: AtomicU64,
    pub desired: Mutex<Desired>,
    attached: AtomicBool,
}

impl EngineLink {
    pub fn new(socket: PathBuf, config: PathBuf, binary: PathBuf, spawn: bool) -> EngineLink {
        EngineLink {
            socket,
            config,
            binary,
            spawn,
            client: Mutex::new(None),
            hello: Mutex::new(None),
            restarts: AtomicU64::new(0),
            desired: Mutex::new(Desired::default()),
            attached: AtomicBool::new(false),
        }
    }

    pub fn attached(&self) -> bool {
        self.attached.load(Ordering::Relaxed)
    }

    /// One request; a broken connection is dropped (the supervisor
    /// reconnects) and reported as an error.
    pub fn call(&self, req: &Request) -> anyhow::Result<Response> {
        let mut c = self.client.lock().unwrap();
        let Some(client) = c.as_mut() else {
            anyhow::bail!("not attached to the engine");
        };
        match client.call(req) {
            Ok(r) => Ok(r),
            Err(e) => {
                *c = None;
                self.attached.store(false, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    pub fn stats(&self) -> anyhow::Result<Report> {
        let r = self.call(&Request::Stats)?;
        r.stats
            .ok_or_else(|| anyhow::anyhow!("engine: {}", r.error.unwrap_or_default()))
    }

    /// The report without rule hits (cheap at any rule count).
    pub fn summary(&self) -> anyhow::Result<Report> {
        let r = self.call(&Request::Summary)?;
        r.stats
            .ok_or_else(|| anyhow::anyhow!("engine: {}", r.error.unwrap_or_default()))
    }

    /// Sends one backend's desired state; `readmit`: health checks just
    /// brought it back, so the engine lets it in if it had taken it out.
    pub fn push_backend(&self, name: &str, readmit: bool) -> anyhow::Result<()> {
        let req = {
            let d = self.desired.lock().unwrap();
            Request::SetBackend {
                name: name.to_string(),
                up: d.health.get(name).map(|h| h.up),
                drained: d.drained.get(name).copied(),
                weight: d.weight.get(name).copied(),
                readmit,
            }
        };
        let r = self.call(&req)?;
        if !r.ok {
            anyhow::bail!("{}", r.error.unwrap_or_default());
        }
        Ok(())
    }

    /// Sends a rules request and, when the engine accepts it, records the
    /// resulting runtime set so a restarted engine gets it back.
    pub fn rules_change(&self, req: &Request) -> anyhow::Result<()> {
        let r = self.call(req)?;
        if !r.ok {
            anyhow::bail!("{}", r.error.unwrap_or_default());
        }
        let text = self.call(&Request::RulesExport)?.text.unwrap_or_default();
        self.desired.lock().unwrap().runtime_rules = Some(text);
        Ok(())
    }

    fn push_all(&self, names: &[String]) {
        let rules = self.desired.lock().unwrap().runtime_rules.clone();
        if let Some(text) = rules {
            match self.call(&Request::RulesLoad { text }) {
                Ok(r) if r.ok => {}
                Ok(r) => warn!(
                    "the engine refused the runtime rules: {}",
                    r.error.unwrap_or_default()
                ),
                Err(e) => warn!("cannot push the runtime rules: {e:#}"),
            }
        }
        for n in names {
            if let Err(e) = self.push_backend(n, false) {
                warn!(backend = %n, "cannot push backend state: {e:#}");
            }
        }
    }

    fn try_attach(&self) -> bool {
        let Ok(mut c) = ControlClient::connect(&self.socket) else {
            return false;
        };
        match c.hello() {
            Ok(h) => {
                info!(pid = h.pid, io = %h.io, socket = %self.socket.display(), "attached to the engine");
                *self.hello.lock().unwrap() = Some(h);
                *self.client.lock().unwrap() = Some(c);
                self.attached.store(true, Ordering::Relaxed);
                true
            }
            Err(e) => {
                error!("engine on {} refused: {e:#}", self.socket.display());
                false
            }
        }
    }

    fn spawn_engine(&self) -> std::io::Result<Child> {
        use std::os::unix::process::CommandExt;
        info!(binary = %self.binary.display(), "starting the engine");
        Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .arg("--control")
            .arg(&self.socket)
            // Its own process group: a ^C or a signal to ctl's group does not
            // stop the data plane.
            .process_group(0)
            .spawn()
    }

    /// Runs until `stop`: keeps ctl attached to an engine. `backends` gives
    /// the names whose state to push after an attach.
    pub fn supervise(self: Arc<Self>, stop: Arc<AtomicBool>, backends: impl Fn() -> Vec<String>) {
        let mut child: Option<Child> = None;
        let mut backoff = Duration::from_millis(500);
        // "Long ago": check at once (checked_sub: the monotonic clock may be
        // younger than 10 s right after boot).
        let mut last_check = Instant::now()
            .checked_sub(Duration::from_secs(10))
            .unwrap_or_else(Instant::now);
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            if let Some(c) = child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    error!(%status, "the engine exited; restarting in {:?}", backoff);
                    self.attached.store(false, Ordering::Relaxed);
                    *self.client.lock().unwrap() = None;
                    child = None;
                    self.restarts.fetch_add(1, Ordering::Relaxed);
                    sleep_unless(&stop, backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
            if self.attached() {
                if last_check.elapsed() >= Duration::from_secs(1) {
                    last_check = Instant::now();
                    if self.call(&Request::Hello).is_err() {
                        warn!("lost the engine's control connection");
                    } else {
                        backoff = Duration::from_millis(500);
                    }
                }
                continue;
            }
            if self.try_attach() {
                self.push_all(&backends());
                continue;
            }
            if child.is_some() || !self.spawn {
                continue; // starting, or attach-only: try again
            }
            match self.spawn_engine() {
                Ok(c) => {
                    child = Some(c);
                    // Give it its start-up time before the next attach try.
                    wait_for_socket(&self.socket, &stop, Duration::from_secs(10));
                }
                Err(e) => {
                    error!(binary = %self.binary.display(), "cannot start the engine: {e}");
                    self.restarts.fetch_add(1, Ordering::Relaxed);
                    sleep_unless(&stop, backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for_socket(path: &Path, stop: &AtomicBool, max: Duration) {
    let end = Instant::now() + max;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
