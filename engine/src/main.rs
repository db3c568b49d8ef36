//! `dnsrail`: the data-plane engine.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use dnsrail_engine::config::Config;
use dnsrail_engine::control::ControlServer;
use dnsrail_engine::engine::Engine;
use dnsrail_engine::rules::RuleSet;
use dnsrail_engine::stats::{quantile_us, Totals};
use tracing::{error, info};

#[derive(Parser)]
#[command(
    name = "dnsrail",
    version,
    about = "dnsrail DNS load balancer: the UDP data plane"
)]
struct Args {
    /// Configuration file (TOML).
    #[arg(short, long)]
    config: PathBuf,
    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,
    /// Serve the control protocol on this unix socket (the control process,
    /// `dnsrailctl serve`, attaches here).
    #[arg(long)]
    control: Option<PathBuf>,
}

fn main() {
    dnsrail_engine::logging::init();
    let args = Args::parse();
    // Rules are compiled by the engine for its workers; checking them here
    // too makes a bad rule an exit status 2 like any other config error.
    let cfg = match Config::load(&args.config).and_then(|c| RuleSet::check(&c).map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dnsrail: {e}");
            std::process::exit(2);
        }
    };
    if args.check {
        println!("{}: ok", args.config.display());
        return;
    }
    let interval = cfg.engine.stats_interval_s;
    let engine = match Engine::start(cfg) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            eprintln!("dnsrail: {e:#}");
            std::process::exit(1);
        }
    };
    let control = match &args.control {
        Some(path) => match ControlServer::start(
            path,
            Arc::downgrade(&engine),
            args.config.display().to_string(),
        ) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("dnsrail: {e:#}");
                std::process::exit(1);
            }
        },
        None => None,
    };

    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).expect("signal handler");
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
        .expect("signal handler");

    let mut last = engine.totals();
    let mut last_at = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if reload.swap(false, Ordering::Relaxed) {
            // A bad file keeps the running configuration.
            match Config::load(&args.config).and_then(|c| engine.reload(c)) {
                Ok(()) => info!(file = %args.config.display(), "reloaded"),
                Err(e) => error!("reload refused, keeping the running configuration: {e}"),
            }
        }
        if interval > 0 && last_at.elapsed() >= Duration::from_secs(interval) {
            let now = engine.totals();
            info!("{}", summary(&engine, &last, &now, last_at.elapsed()));
            last = now;
            last_at = Instant::now();
        }
    }
    info!("stopping");
    let t = engine.totals();
    info!(
        queries = t.queries,
        answers = t.answers,
        local_replies = t.local_replies,
        dropped = t.dropped(),
        io = ?engine.io(),
        "final counters"
    );
    if let Some(x) = engine.xdp_counters() {
        info!(
            queries = x.queries,
            answers = x.answers,
            blocked = x.blocked,
            passed = x.passed,
            "final XDP program counters"
        );
    }
    drop(control);
    // The last reference: dropping it stops and joins the workers.
    drop(engine);
}

/// One line: rates, drops by reason, latency percentiles, per-backend counts.
fn summary(engine: &Engine, a: &Totals, b: &Totals, dt: Duration) -> String {
    let secs = dt.as_secs_f64().max(1e-3);
    let lat: Vec<u64> = b
        .latency
        .iter()
        .zip(&a.latency)
        .map(|(x, y)| x - y)
        .collect();
    let pct = |q| quantile_us(&lat, q).map_or("-".to_string(), |v| format!("{v}us"));
    let mut s = format!(
        "qps in {:.0} out {:.0} | local {} | inflight {} | p50 {} p99 {}",
        (b.queries - a.queries) as f64 / secs,
        (b.answers - a.answers) as f64 / secs,
        b.local_replies - a.local_replies,
        engine.in_flight(),
        pct(0.5),
        pct(0.99),
    );
    let drops: Vec<String> = b
        .drops
        .iter()
        .zip(&a.drops)
        .filter(|(x, y)| x.1 > y.1)
        .map(|(x, y)| format!("{}={}", x.0.name(), x.1 - y.1))
        .collect();
    if !drops.is_empty() {
        s += &format!(" | drops {}", drops.join(" "));
    }
    if let Some(x) = engine.xdp_counters() {
        // Cumulative: what the XDP program did before userspace saw anything.
        s += &format!(" | xdp blocked {} passed {}", x.blocked, x.passed);
    }
    let snap = engine.snapshot();
    for be in snap.live_backends() {
        let i = usize::from(be.id);
        s += &format!(
            " | {} sent {} ans {} to {}{}",
            be.name,
            b.backend_sent[i] - a.backend_sent[i],
            b.backend_answered[i] - a.backend_answered[i],
            b.backend_timeouts[i] - a.backend_timeouts[i],
            if be.usable() { "" } else { " (down)" },
        );
    }
    s
}
