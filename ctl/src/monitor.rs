//! The health loop of `dnsrailctl serve`: active probes of every backend
//! and the engine's own verdicts and passive-health samples, turned into the
//! up/down state ctl pushes to the engine.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tracing::{info, warn};

use dnsrail_engine::config::Config;
use dnsrail_engine::control::Request;

use crate::health::{self, ProbeSpec};
use crate::serve::Ctl;

/// Active probes (every interval; every quarter interval for a suspect
/// backend) and passive health from the engine's counters (sampled every
/// interval).
pub async fn health_loop(ctl: Arc<Ctl>, spec: ProbeSpec, stop: Arc<AtomicBool>) {
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
        let mut probes = JoinSet::new();
        for (n, a) in &due {
            id = id.wrapping_add(1);
            let (spec, a, n, id) = (spec.clone(), *a, n.clone(), id);
            probes.spawn(async move { (n, health::probe(&spec, a, id).await) });
        }
        let results = probes.join_all().await;
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
