//! The namespace topology for tests: the library's [`dnsrail_bench::netns::Topo`]
//! plus what only tests want: one topology at a time, a skip without root,
//! and synthetic backends from this build's binary.

#![allow(dead_code, unused_imports)]

pub use dnsrail_bench::netns::{backend4, backend6, TopoRef, CLIENT4, LB4, VIP4, VIP6};
use std::ops::{Deref, DerefMut};

/// One topology at a time: the tests measure loss and timing, and several
/// balancers, backends and load generators on two shared cores would starve
/// each other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub struct Topo {
    // Declared first: torn down before the lock is released.
    inner: dnsrail_bench::netns::Topo,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Deref for Topo {
    type Target = dnsrail_bench::netns::Topo;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl DerefMut for Topo {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

impl Topo {
    /// Builds the topology `prefix` with `backends` backend namespaces, or
    /// returns `None` when not root (the test then reports itself skipped).
    pub fn up(prefix: &str, backends: usize) -> Option<Topo> {
        Topo::up_with_queues(prefix, backends, 1)
    }

    /// As [`Topo::up`], with `queues` receive queues on the balancer's eth0.
    pub fn up_with_queues(prefix: &str, backends: usize, queues: usize) -> Option<Topo> {
        Topo::up_env(prefix, backends, queues, &[])
    }

    /// As [`Topo::up`], with scripts/netns.sh's environment options.
    pub fn up_env(
        prefix: &str,
        backends: usize,
        queues: usize,
        env: &[(&str, &str)],
    ) -> Option<Topo> {
        if !dnsrail_bench::netns::is_root() {
            dnsrail_bench::netns::skip(&format!(
                "{prefix}: the AF_XDP tests need root (namespaces, XDP)"
            ));
            return None;
        }
        // A test that failed poisons the lock; the next one still runs.
        let serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let inner = dnsrail_bench::netns::Topo::up_with(prefix, backends, queues, env)
            .unwrap_or_else(|e| panic!("{e:#}"));
        Some(Topo {
            inner,
            _serial: serial,
        })
    }

    pub fn clone_handle(t: &Topo) -> TopoRef {
        t.inner.handle()
    }

    /// A synthetic backend on `[::]:53` in namespace `be{i}`.
    pub fn backend(&mut self, i: usize) {
        self.backend_on(i, None);
    }

    /// As [`Topo::backend`], pinned to `cpu` when given.
    pub fn backend_on(&mut self, i: usize, cpu: Option<usize>) {
        self.backend_full(i, cpu, &[]);
    }

    /// As [`Topo::backend`], with more `dnsrail-bench backend` options.
    pub fn backend_with(&mut self, i: usize, args: &[&str]) {
        self.backend_full(i, None, args);
    }

    fn backend_full(&mut self, i: usize, cpu: Option<usize>, args: &[&str]) {
        self.inner
            .synthetic_backend(env!("CARGO_BIN_EXE_dnsrail-bench"), i, 53, cpu, 300, args)
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Parses `text` (errors name `file`) and starts an engine inside the
    /// balancer namespace (its workers live there), then waits (bounded)
    /// until every backend's next hop is resolved.
    pub fn engine_in_lb(
        &self,
        text: String,
        file: &'static str,
    ) -> anyhow::Result<dnsrail_engine::engine::Engine> {
        let e = self.within("lb", move || {
            let cfg = dnsrail_engine::config::Config::parse(&text, file)
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            dnsrail_engine::engine::Engine::start(cfg)
        })?;
        let t0 = std::time::Instant::now();
        while !e.snapshot().live_backends().all(|b| b.reachable) {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(10),
                "next hops never resolved"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(e)
    }

    /// Waits (bounded) until `addr` answers a DNS query sent from `host`.
    pub fn wait_udp(&self, host: &str, addr: std::net::SocketAddr) {
        self.inner
            .wait_udp(host, addr)
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
}
