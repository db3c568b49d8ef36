//! Shared set-up for the loopback integration tests: synthetic backends and
//! an in-process engine (socket data plane) on ports the kernel picks.

#![allow(dead_code)]

use dnsrail_bench::backend::{Backend, BackendSpec};
use dnsrail_engine::config::Config;
use dnsrail_engine::engine::Engine;
use dnsrail_engine::stats::{DropReason, Totals};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub fn backend(listen: &str) -> Backend {
    Backend::start(BackendSpec {
        listen: listen.parse().unwrap(),
        threads: 2,
        ..BackendSpec::default()
    })
    .expect("backend starts")
}

/// A config with the given frontends and backends (name, address) plus
/// extra TOML (engine settings, pools).
pub fn config(
    engine: &str,
    frontends: &[&str],
    backends: &[(&str, SocketAddr)],
    extra: &str,
) -> Config {
    let mut t = format!("[engine]\nio = \"socket\"\nstats_interval_s = 0\n{engine}\n");
    for f in frontends {
        t += &format!("[[frontend]]\nlisten = \"{f}\"\n");
    }
    for (n, a) in backends {
        t += &format!("[[backend]]\nname = \"{n}\"\naddress = \"{a}\"\n");
    }
    t += extra;
    Config::parse(&t, "test.toml").unwrap_or_else(|e| panic!("{e}\n{t}"))
}

pub fn engine(cfg: Config) -> Engine {
    Engine::start(cfg).expect("engine starts")
}

/// Waits (bounded) until `f` holds over the engine's totals.
pub fn wait_for(e: &Engine, what: &str, f: impl Fn(&Totals) -> bool) -> Totals {
    let t0 = Instant::now();
    loop {
        let t = e.totals();
        if f(&t) {
            return t;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            panic!("timed out waiting for {what}: {t:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn drops(t: &Totals, r: DropReason) -> u64 {
    t.drop_count(r)
}
