//! Shared set-up for the loopback integration tests: synthetic backends and
//! an in-process engine (socket data plane) on ports the kernel picks.

#![allow(dead_code)]

pub mod netns;

use dnsrail_bench::backend::{Backend, BackendSpec};
use dnsrail_engine::config::Config;
use dnsrail_engine::engine::Engine;
use dnsrail_engine::stats::{DropReason, Totals};
use std::net::SocketAddr;
use std::process::Command;
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

/// Two synthetic backends on loopback and an engine with 2 workers in front
/// of them, its one frontend on a kernel-picked port.
pub fn pair() -> (Backend, Backend, Engine) {
    let b1 = backend("127.0.0.1:0");
    let b2 = backend("127.0.0.1:0");
    let e = engine(config(
        "workers = 2",
        &["127.0.0.1:0"],
        &[("r1", b1.addr), ("r2", b2.addr)],
        "",
    ));
    (b1, b2, e)
}

/// dig's output (stdout and stderr) for a query to `server`, one try.
pub fn dig(server: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+tries=1", "+time=2"])
        .args(args)
        .output()
        .expect("dig is installed by scripts/setup.sh");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// As [`dig`], from source address `src` (any 127.x works on loopback).
pub fn dig_from(src: &str, server: SocketAddr, args: &[&str]) -> String {
    let mut a = vec!["-b", src];
    a.extend_from_slice(args);
    dig(server, &a)
}
