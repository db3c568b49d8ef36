//! The namespace topology of `scripts/netns.sh` for tests: client, balancer
//! and backends on one bridge. Torn down on drop, so also when a test fails.
//! Needs root; [`Topo::up`] returns `None` (and says so on stderr) without.

#![allow(dead_code)]

use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const VIP4: &str = "10.99.0.53";
pub const VIP6: &str = "fd99::53";
pub const LB4: &str = "10.99.0.2";
pub const CLIENT4: &str = "10.99.0.10";

pub fn backend4(i: usize) -> String {
    format!("10.99.0.{}", 20 + i)
}

pub fn backend6(i: usize) -> String {
    format!("fd99::{}", 20 + i)
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/netns.sh")
}

/// One topology at a time: the tests measure loss and timing, and several
/// balancers, backends and load generators on two shared cores would starve
/// each other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub struct Topo {
    pub prefix: String,
    children: Vec<Child>,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Topo {
    /// Builds the topology `prefix` with `backends` backend namespaces, or
    /// returns `None` when not root (the test then reports itself skipped).
    pub fn up(prefix: &str, backends: usize) -> Option<Topo> {
        Topo::up_with_queues(prefix, backends, 1)
    }

    /// As [`Topo::up`], with `queues` receive queues on the balancer's eth0.
    pub fn up_with_queues(prefix: &str, backends: usize, queues: usize) -> Option<Topo> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: {prefix}: the AF_XDP tests need root (namespaces, XDP)");
            return None;
        }
        // A test that failed poisons the lock; the next one still runs.
        let serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let st = Command::new("bash")
            .arg(script())
            .args(["up", prefix, &backends.to_string(), &queues.to_string()])
            .status()
            .expect("bash runs");
        assert!(st.success(), "netns.sh up {prefix} failed");
        Some(Topo {
            prefix: prefix.to_string(),
            children: Vec::new(),
            _serial: serial,
        })
    }

    /// A second handle on the same topology for another thread; it neither
    /// owns processes nor tears anything down.
    pub fn clone_handle(t: &Topo) -> TopoRef {
        TopoRef {
            prefix: t.prefix.clone(),
        }
    }

    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// `ip netns exec NS program args…`, output captured.
    pub fn exec(&self, host: &str, program: &str, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(host), program])
            .args(args)
            .output()
            .expect("ip netns exec runs")
    }

    /// Starts a long-running process in a namespace, killed on drop.
    pub fn spawn(&mut self, host: &str, program: &str, args: &[&str]) -> u32 {
        let c = Command::new("ip")
            .args(["netns", "exec", &self.ns(host), program])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ip netns exec spawns");
        let pid = c.id();
        self.children.push(c);
        pid
    }

    /// A synthetic backend on `[::]:53` in namespace `be{i}` (stops by
    /// itself after 300 s at the latest).
    pub fn backend(&mut self, i: usize) {
        self.backend_on(i, None);
    }

    /// As [`Topo::backend`], its threads pinned to `cpu` when given (with
    /// util-linux's taskset, which every Debian system has).
    pub fn backend_on(&mut self, i: usize, cpu: Option<usize>) {
        let cpu = cpu.map(|c| c.to_string());
        let mut cmd: Vec<&str> = match &cpu {
            Some(c) => vec!["taskset", "-c", c],
            None => Vec::new(),
        };
        cmd.push(env!("CARGO_BIN_EXE_dnsrail-bench"));
        self.spawn(
            &format!("be{i}"),
            cmd[0],
            &[
                &cmd[1..],
                &[
                    "backend",
                    "--listen",
                    "[::]:53",
                    "--threads",
                    "1",
                    "--duration",
                    "300",
                ],
            ]
            .concat(),
        );
        let addr: SocketAddr = format!("{}:53", backend4(i)).parse().unwrap();
        self.wait_udp("cli", addr);
    }

    /// Waits (bounded) until `addr` answers a DNS query sent from `host`.
    pub fn wait_udp(&self, host: &str, addr: SocketAddr) {
        let t0 = Instant::now();
        let s = self.udp(
            host,
            if addr.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            },
        );
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut q = Vec::new();
        dnsrail_bench::msg::query_for(0, 0x4242, &mut q);
        let mut buf = [0u8; 512];
        loop {
            let _ = s.send_to(&q, addr);
            if s.recv_from(&mut buf).is_ok() {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{addr} never answered"
            );
        }
    }

    /// Runs `f` on a thread inside namespace `host`: sockets it creates and
    /// threads it starts (an engine's workers) live in that namespace.
    pub fn within<T: Send + 'static>(
        &self,
        host: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        within_ns(format!("/run/netns/{}", self.ns(host)), f)
    }

    /// A UDP socket bound to `bind` inside namespace `host`.
    pub fn udp(&self, host: &str, bind: &str) -> UdpSocket {
        let bind = bind.to_string();
        self.within(host, move || {
            UdpSocket::bind(&bind).unwrap_or_else(|e| panic!("bind {bind}: {e}"))
        })
    }

    /// dig from the client namespace, one try.
    pub fn dig(&self, server: &str, args: &[&str]) -> String {
        let at = format!("@{server}");
        let mut a = vec![at.as_str(), "+notcp", "+tries=1", "+time=2"];
        a.extend_from_slice(args);
        let out = self.exec("cli", "dig", &a);
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("bash")
            .arg(script())
            .args(["down", &self.prefix])
            .status();
    }
}

/// A non-owning handle on a topology (see [`Topo::clone_handle`]).
pub struct TopoRef {
    prefix: String,
}

impl TopoRef {
    pub fn within<T: Send + 'static>(
        &self,
        host: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        within_ns(format!("/run/netns/{}-{host}", self.prefix), f)
    }
}

fn within_ns<T: Send + 'static>(path: String, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let ns = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on this thread only, with a valid namespace fd.
        let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("namespace thread")
}
