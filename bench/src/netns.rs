//! The namespace topology of `scripts/netns.sh`: client, balancer and
//! backends on one bridge, each host in its own network namespace. Used by
//! the integration tests and by `dnsrail-bench compare`. Torn down on drop
//! (processes it started are killed first), so also when a run fails.

use anyhow::{bail, Context};
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

/// Reports a test that cannot run here (no root, too few CPUs) and passes:
/// on stderr, and appended to the file `$DNSRAIL_SKIPPED` names, so that
/// scripts/test.sh can count and list what a run did not test (libtest
/// hides a passing test's stderr).
pub fn skip(what: &str) {
    eprintln!("SKIPPED: {what}");
    if let Some(path) = std::env::var_os("DNSRAIL_SKIPPED") {
        use std::io::Write;
        if let Ok(mut f) = File::options().create(true).append(true).open(path) {
            let _ = writeln!(f, "{what}");
        }
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub struct Topo {
    pub prefix: String,
    children: Vec<Child>,
}

impl Topo {
    /// Builds topology `prefix` (must start with `dr`) with `backends`
    /// backend namespaces and `queues` queues on the balancer's eth0.
    /// `rps_cpus` (hex mask) moves the switch's frame processing to those
    /// CPUs (benchmarks; see scripts/netns.sh).
    pub fn up(
        prefix: &str,
        backends: usize,
        queues: usize,
        rps_cpus: Option<&str>,
    ) -> anyhow::Result<Topo> {
        let env: Vec<(&str, &str)> = rps_cpus.map(|m| ("RPS_CPUS", m)).into_iter().collect();
        Topo::up_with(prefix, backends, queues, &env)
    }

    /// As [`Topo::up`], with scripts/netns.sh's environment options
    /// (`PLAIN`, `CHANNELS`, `RPS_CPUS`).
    pub fn up_with(
        prefix: &str,
        backends: usize,
        queues: usize,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Topo> {
        let mut c = Command::new("bash");
        c.arg(script())
            .args(["up", prefix, &backends.to_string(), &queues.to_string()]);
        c.envs(env.iter().copied());
        let st = c.status().context("bash runs")?;
        // Built from here on: dropped (torn down) also when `up` failed half way.
        let t = Topo {
            prefix: prefix.to_string(),
            children: Vec::new(),
        };
        if !st.success() {
            bail!("netns.sh up {prefix} failed");
        }
        Ok(t)
    }

    /// Sets the RPS CPU mask (hex; "0" = off) of every switch port: which
    /// CPUs process the frames entering the switch (see scripts/netns.sh).
    pub fn set_rps(&self, mask: &str) -> anyhow::Result<()> {
        let sw = self.ns("sw");
        let script = format!(
            "for q in /sys/class/net/*/queues/rx-*/rps_cpus; do \
             case $q in */br0/*|*/lo/*) ;; *) echo {mask} > $q ;; esac; done"
        );
        let out = self.exec("sw", "sh", &["-c", &script]);
        if !out.status.success() {
            bail!(
                "cannot set RPS in {sw}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
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

    /// Starts a long-running process in a namespace, killed on drop; output
    /// discarded. Returns its pid (`ip netns exec` and `taskset` exec the
    /// program, so it is the program's own).
    pub fn spawn(&mut self, host: &str, program: &str, args: &[&str]) -> u32 {
        self.spawn_logged(host, program, args, None)
            .expect("ip netns exec spawns")
    }

    /// As [`Topo::spawn`], stdout and stderr appended to `log` when given.
    pub fn spawn_logged(
        &mut self,
        host: &str,
        program: &str,
        args: &[&str],
        log: Option<&std::path::Path>,
    ) -> anyhow::Result<u32> {
        let (out, err) = match log {
            Some(p) => {
                let f = File::options().create(true).append(true).open(p)?;
                (Stdio::from(f.try_clone()?), Stdio::from(f))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let c = Command::new("ip")
            .args(["netns", "exec", &self.ns(host), program])
            .args(args)
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {program} in {}", self.ns(host)))?;
        let pid = c.id();
        self.children.push(c);
        Ok(pid)
    }

    /// Stops (SIGTERM, then SIGKILL after 5 s) a process [`Topo::spawn`] started.
    pub fn stop(&mut self, pid: u32) {
        let Some(i) = self.children.iter().position(|c| c.id() == pid) else {
            return;
        };
        let mut c = self.children.swap_remove(i);
        // SAFETY: kill with a pid we own (our child, not yet reaped).
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Whether a process [`Topo::spawn`] started is still running.
    pub fn running(&mut self, pid: u32) -> bool {
        self.children
            .iter_mut()
            .find(|c| c.id() == pid)
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// A synthetic backend on `[::]:port` in namespace `be{i}`, its thread
    /// pinned to `cpu` when given (util-linux's taskset), stopping by itself
    /// after `duration_s` at the latest. `bench` is the dnsrail-bench binary;
    /// `extra` adds backend options (a delay mix).
    pub fn synthetic_backend(
        &mut self,
        bench: &str,
        i: usize,
        port: u16,
        cpu: Option<usize>,
        duration_s: u64,
        extra: &[&str],
    ) -> anyhow::Result<u32> {
        let cpu = cpu.map(|c| c.to_string());
        let listen = format!("[::]:{port}");
        let duration = duration_s.to_string();
        let mut cmd: Vec<&str> = match &cpu {
            Some(c) => vec!["taskset", "-c", c],
            None => Vec::new(),
        };
        cmd.push(bench);
        cmd.extend_from_slice(&[
            "backend",
            "--listen",
            &listen,
            "--threads",
            "1",
            "--duration",
            &duration,
        ]);
        cmd.extend_from_slice(extra);
        let pid = self.spawn_logged(&format!("be{i}"), cmd[0], &cmd[1..], None)?;
        let addr: SocketAddr = format!("{}:{port}", backend4(i)).parse().unwrap();
        self.wait_udp("cli", addr)?;
        Ok(pid)
    }

    /// Waits (at most 10 s) until `addr` answers a DNS query sent from `host`.
    pub fn wait_udp(&self, host: &str, addr: SocketAddr) -> anyhow::Result<()> {
        let t0 = Instant::now();
        let s = self.udp(
            host,
            if addr.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            },
        );
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut q = Vec::new();
        crate::msg::query_for(0, 0x4242, &mut q);
        let mut buf = [0u8; 512];
        loop {
            let _ = s.send_to(&q, addr);
            if s.recv_from(&mut buf).is_ok() {
                return Ok(());
            }
            if t0.elapsed() > Duration::from_secs(10) {
                bail!("{addr} never answered (from {})", self.ns(host));
            }
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

    /// A second handle on the same topology for another thread; it neither
    /// owns processes nor tears anything down.
    pub fn handle(&self) -> TopoRef {
        TopoRef {
            prefix: self.prefix.clone(),
        }
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

/// A non-owning handle on a topology (see [`Topo::handle`]).
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
