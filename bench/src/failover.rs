//! A backend failing under load, end to end: two real DNS servers (knotd)
//! behind a balancer on the namespace topology, a bounded load from the
//! client namespace, and one backend failing part way through — its process
//! killed (its host then answers with ICMP port unreachable), or its host
//! silenced by an nft rule that drops everything — or slow but alive. Then
//! the backend is restored and the time until it serves again measured.
//!
//! The balancer is dnsrail as an operator runs it (`dnsrailctl serve`,
//! which starts the engine: AF_XDP on the balancer's eth0), or dnsdist with
//! its default health checks, for the comparison. Used by
//! `bench/tests/failover.rs` (the bounds) and `dnsrail-bench failover`
//! (the figures in docs/benchmarks.md).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::load::{self, LoadReport, LoadSpec};
use crate::netns::{backend4, Topo, VIP4};

/// How the failing backend fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL of its DNS server: its host answers ICMP port unreachable.
    Kill,
    /// An nft rule in its namespace drops every packet: no answer, no ICMP.
    Silent,
    /// No failure: the backend answers a fifth of its queries after 20 ms
    /// (a recursor's cache misses). It must stay in.
    Slow,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "process killed",
            Fault::Silent => "host silent",
            Fault::Slow => "slow (20 % after 20 ms)",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Balancer {
    /// `dnsrailctl serve` starting the engine `engine`.
    Dnsrail {
        ctl: PathBuf,
        engine: PathBuf,
    },
    Dnsdist {
        bin: String,
    },
}

impl Balancer {
    pub fn name(&self) -> &'static str {
        match self {
            Balancer::Dnsrail { .. } => "dnsrail",
            Balancer::Dnsdist { .. } => "dnsdist",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Spec {
    /// Namespace prefix (starts with `dr`).
    pub prefix: String,
    /// A plain veth pair for the balancer (kernel-default queues, TX
    /// checksum offload on) instead of the tuned one.
    pub plain: bool,
    pub balancer: Balancer,
    pub fault: Fault,
    pub rate: u64,
    pub seconds: u64,
    /// When the fault happens, after the load started.
    pub fault_at: Duration,
    /// Health checks (dnsrail): every `interval`, `rise` successes to come
    /// back, `fall` failures to go down. dnsdist keeps its defaults.
    pub interval_ms: u64,
    pub rise: u32,
    pub fall: u32,
    /// The synthetic backend binary (dnsrail-bench) for the slow backend.
    pub bench: PathBuf,
    /// The load's window of unanswered queries. Queries unanswered after
    /// 3 s are counted lost and leave it, but a balancer that loses more
    /// than this many within 3 s stalls the load until they do: its loss
    /// is then a lower bound.
    pub max_outstanding: u64,
}

impl Spec {
    pub fn new(prefix: &str, balancer: Balancer, fault: Fault, bench: PathBuf) -> Spec {
        Spec {
            prefix: prefix.to_string(),
            plain: false,
            balancer,
            fault,
            rate: 20_000,
            seconds: 15,
            fault_at: Duration::from_secs(3),
            interval_ms: 500,
            rise: 2,
            fall: 2,
            bench,
            max_outstanding: 2000,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub load: LoadReport,
    /// dnsrail: time from the restored backend answering again to the
    /// engine sending it queries again (usable in its report).
    pub back_after: Option<Duration>,
    /// dnsrail: the failing backend's state and counters from
    /// `/api/backends` after the fault, and `/metrics` at the end.
    pub backend_json: String,
    pub metrics: String,
    /// The balancer's log (ctl's and the engine's lines).
    pub log: String,
}

impl Outcome {
    pub fn loss(&self) -> f64 {
        self.load.lost as f64 / self.load.sent.max(1) as f64
    }

    /// Answers that were not the answer to their query.
    pub fn wrong(&self) -> u64 {
        self.load.wrong_question + self.load.unexpected
    }

    fn metric_sum(&self, name: &str) -> Option<u64> {
        let mut found = false;
        let sum = self
            .metrics
            .lines()
            .filter(|l| {
                l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .inspect(|_| found = true)
            .sum();
        found.then_some(sum)
    }

    /// dnsrail: queries sent that never reached the engine (lost on the
    /// veth and bridge before the balancer: this machine's, not ours).
    pub fn path_lost(&self) -> Option<u64> {
        Some(
            self.load
                .sent
                .saturating_sub(self.metric_sum("dnsrail_queries_total")?),
        )
    }

    /// dnsrail: queries the engine received and did not answer, less those
    /// the healthy backend (be1) timed out on (lost on its path or in it:
    /// the machine's, not the failover's), as a fraction of all sent.
    pub fn balancer_loss(&self) -> Option<f64> {
        let q = self.metric_sum("dnsrail_queries_total")?;
        let a = self.metric_sum("dnsrail_answers_total")?
            + self.metric_sum("dnsrail_local_replies_total").unwrap_or(0);
        let healthy = self.timeouts("be1").unwrap_or(0);
        Some(q.saturating_sub(a).saturating_sub(healthy) as f64 / self.load.sent.max(1) as f64)
    }

    /// dnsrail: the engine's timeouts toward a backend.
    pub fn timeouts(&self, backend: &str) -> Option<u64> {
        let key = format!("dnsrail_backend_timeouts_total{{backend=\"{backend}\"}} ");
        self.metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key)?.trim().parse().ok())
    }
}

const API: &str = "127.0.0.1:8053";
const TOKEN: &str = "failover-token";
/// Where the failing backend lives (namespace be2); be1 stays healthy.
const FAILING: usize = 2;

/// knotd serving `example.`: the load's names (`*.load.example`, A and
/// AAAA; `*.nx.example` is NXDOMAIN) and the health check's.
fn knot_files(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir.join("run"))?;
    std::fs::create_dir_all(dir.join("db"))?;
    std::fs::write(
        dir.join("example.zone"),
        "$ORIGIN example.\n$TTL 300\n\
         @ SOA ns.example. hostmaster.example. 1 3600 900 604800 300\n\
         @ NS ns.example.\nns A 192.0.2.53\nhealth A 192.0.2.1\n\
         *.load A 192.0.2.1\n*.load AAAA 2001:db8::1\n",
    )?;
    let conf = dir.join("knot.conf");
    let d = dir.display();
    std::fs::write(
        &conf,
        format!(
            "server:\n  rundir: \"{d}/run\"\n  listen: [ 0.0.0.0@53, ::@53 ]\n  \
             udp-workers: 2\n  tcp-workers: 1\n  background-workers: 1\n\
             database:\n  storage: \"{d}/db\"\n\
             log:\n  - target: stderr\n    any: warning\n\
             zone:\n  - domain: example.\n    storage: \"{d}\"\n    file: \"example.zone\"\n"
        ),
    )?;
    Ok(conf)
}

fn start_knot(topo: &mut Topo, i: usize, work: &Path) -> anyhow::Result<u32> {
    let dir = work.join(format!("knot{i}"));
    let conf = knot_files(&dir)?;
    let pid = topo.spawn_logged(
        &format!("be{i}"),
        "knotd",
        &["-c", &conf.display().to_string()],
        Some(&dir.join("knotd.log")),
    )?;
    let addr: SocketAddr = format!("{}:53", backend4(i)).parse().unwrap();
    topo.wait_udp("cli", addr)
        .with_context(|| format!("knotd in be{i} (log: {})", dir.join("knotd.log").display()))?;
    Ok(pid)
}

fn dnsrail_conf(spec: &Spec, engine: &Path, work: &Path) -> String {
    let mut t = format!(
        "[engine]\nio = \"xdp\"\ninterface = \"eth0\"\nstats_interval_s = 0\n\
         [[frontend]]\nlisten = \"{VIP4}:53\"\n\
         [health]\ninterval_ms = {}\ntimeout_ms = {}\nrise = {}\nfall = {}\n\
         query_name = \"health.example.\"\n\
         [ctl]\napi_listen = \"{API}\"\ncontrol_socket = \"{}\"\n\
         engine_binary = \"{}\"\ntoken = \"{TOKEN}\"\n",
        spec.interval_ms,
        (spec.interval_ms * 4 / 5).max(50),
        spec.rise,
        spec.fall,
        work.join("ctl.sock").display(),
        engine.display(),
    );
    for i in 1..=2 {
        t += &format!(
            "[[backend]]\nname = \"be{i}\"\naddress = \"{}:53\"\n",
            backend4(i)
        );
    }
    t
}

fn dnsdist_conf() -> String {
    let mut t = format!(
        "setSecurityPollSuffix(\"\")\n\
         setLocal(\"{VIP4}:53\", {{reusePort=true}})\n\
         setACL({{\"0.0.0.0/0\", \"::/0\"}})\n\
         setServerPolicy(roundrobin)\n"
    );
    for i in 1..=2 {
        // Default health checks (one a second), asking a name knotd serves.
        t += &format!(
            "newServer({{address=\"{}:53\", name=\"be{i}\", checkName=\"health.example.\"}})\n",
            backend4(i)
        );
    }
    t
}

/// One HTTP GET to ctl's API inside the balancer namespace.
pub fn api_get(topo: &Topo, path: &str) -> anyhow::Result<String> {
    let path = path.to_string();
    topo.within("lb", move || -> anyhow::Result<String> {
        let mut s = std::net::TcpStream::connect(API)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out
            .split_once("\r\n\r\n")
            .map(|x| x.1)
            .unwrap_or("")
            .to_string())
    })
}

/// The failing backend's entry in `/api/backends`.
fn failing_entry(topo: &Topo) -> Option<serde_json::Value> {
    let body = api_get(topo, "/api/backends").ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v.as_array()?
        .iter()
        .find(|b| b["name"] == format!("be{FAILING}"))
        .cloned()
}

fn wait(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> anyhow::Result<()> {
    let t0 = Instant::now();
    while !ok() {
        if t0.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Socket receive buffers of the size a resolver farm tunes its servers
/// to (`net.core.rmem_default`, 4 MiB) while a scenario runs, restored on
/// drop. With the kernel's 208 KiB, one knotd taking a failed peer's share
/// (20 000 qps) on this two-CPU machine overflows its buffer on every
/// scheduling hiccup and drops ~1 % of the queries itself: a loss that
/// would be the backend's, not the balancer's. The value is global (the
/// kernel reads it from the initial namespace for every socket).
struct RmemDefault(Option<String>);

const RMEM: &str = "/proc/sys/net/core/rmem_default";

impl RmemDefault {
    fn raise(to: u64) -> RmemDefault {
        let old = std::fs::read_to_string(RMEM).ok();
        let low = old
            .as_deref()
            .and_then(|o| o.trim().parse::<u64>().ok())
            .is_some_and(|v| v < to);
        if low && std::fs::write(RMEM, to.to_string()).is_ok() {
            RmemDefault(old)
        } else {
            RmemDefault(None)
        }
    }
}

impl Drop for RmemDefault {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = std::fs::write(RMEM, old.trim());
        }
    }
}

/// Runs one scenario; the topology is torn down when it returns.
pub fn run(spec: &Spec) -> anyhow::Result<Outcome> {
    let _rmem = RmemDefault::raise(4 << 20);
    let env: Vec<(&str, &str)> = if spec.plain {
        vec![("PLAIN", "1")]
    } else {
        Vec::new()
    };
    let mut topo = Topo::up_with(&spec.prefix, 2, 1, &env)?;
    let work = std::env::temp_dir().join(format!("{}-{}", spec.prefix, std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let r = run_in(&mut topo, spec, &work);
    if r.is_ok() {
        let _ = std::fs::remove_dir_all(&work);
    }
    r
}

fn run_in(topo: &mut Topo, spec: &Spec, work: &Path) -> anyhow::Result<Outcome> {
    start_knot(topo, 1, work)?;
    let mut failing = if spec.fault == Fault::Slow {
        topo.synthetic_backend(
            &spec.bench.display().to_string(),
            FAILING,
            53,
            None,
            spec.seconds + 60,
            &["--delay-ms", "20", "--delay-fraction", "0.2"],
        )?
    } else {
        start_knot(topo, FAILING, work)?
    };
    let log = work.join("balancer.log");
    match &spec.balancer {
        Balancer::Dnsrail { ctl, engine } => {
            let cfg = work.join("dnsrail.toml");
            std::fs::write(&cfg, dnsrail_conf(spec, engine, work))?;
            topo.spawn_logged(
                "lb",
                &ctl.display().to_string(),
                &["serve", "-c", &cfg.display().to_string()],
                Some(&log),
            )?;
        }
        Balancer::Dnsdist { bin } => {
            let cfg = work.join("dnsdist.conf");
            std::fs::write(&cfg, dnsdist_conf())?;
            topo.spawn_logged(
                "lb",
                bin,
                &[
                    "--supervised",
                    "--disable-syslog",
                    "-C",
                    &cfg.display().to_string(),
                ],
                Some(&log),
            )?;
        }
    }
    let vip: SocketAddr = format!("{VIP4}:53").parse().unwrap();
    topo.wait_udp("cli", vip).with_context(|| {
        format!(
            "{} does not answer; its log:\n{}",
            spec.balancer.name(),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    })?;
    let dnsrail = matches!(spec.balancer, Balancer::Dnsrail { .. });
    if dnsrail {
        // Health checks have seen both backends up.
        wait("both backends usable", Duration::from_secs(10), || {
            failing_entry(topo).is_some_and(|b| b["usable"] == true)
        })?;
    } else {
        std::thread::sleep(Duration::from_millis(2 * spec.interval_ms));
    }

    let mut ls = LoadSpec::new(vip, spec.rate * spec.seconds);
    ls.rate = spec.rate;
    ls.max_outstanding = spec.max_outstanding;
    ls.max_duration = Duration::from_secs(spec.seconds + 30);
    let load = {
        let h = topo.handle();
        std::thread::spawn(move || h.within("cli", move || load::run(&ls)))
    };
    std::thread::sleep(spec.fault_at);
    let be = format!("be{FAILING}");
    match spec.fault {
        Fault::Kill => {
            // SAFETY: kill with a pid of our own child.
            unsafe { libc::kill(failing as libc::pid_t, libc::SIGKILL) };
            topo.stop(failing);
        }
        Fault::Silent => {
            let out = topo.exec(
                &be,
                "nft",
                &[
                    "add table inet drsilent; \
                     add chain inet drsilent in { type filter hook input priority 0; policy drop; }; \
                     add chain inet drsilent out { type filter hook output priority 0; policy drop; }",
                ],
            );
            if !out.status.success() {
                bail!("nft: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        Fault::Slow => {}
    }
    let mut backend_json = String::new();
    if dnsrail && spec.fault != Fault::Slow {
        // Whatever took it out, it is out well before the load ends.
        let _ = wait("the failing backend out", Duration::from_secs(5), || {
            failing_entry(topo).is_some_and(|b| b["usable"] == false)
        });
        backend_json = failing_entry(topo)
            .map(|b| b.to_string())
            .unwrap_or_default();
    }
    let report = load
        .join()
        .map_err(|_| anyhow::anyhow!("load thread panicked"))??;
    if spec.fault == Fault::Slow {
        backend_json = failing_entry(topo)
            .map(|b| b.to_string())
            .unwrap_or_default();
    }

    // Restore, and time the way back into rotation.
    let mut back_after = None;
    if spec.fault != Fault::Slow {
        match spec.fault {
            Fault::Kill => failing = start_knot(topo, FAILING, work)?,
            Fault::Silent => {
                topo.exec(&be, "nft", &["delete table inet drsilent"]);
                let addr: SocketAddr = format!("{}:53", backend4(FAILING)).parse().unwrap();
                topo.wait_udp("cli", addr)?;
            }
            Fault::Slow => {}
        }
        let _ = failing;
        if dnsrail {
            let t0 = Instant::now();
            wait(
                "the backend back in rotation",
                Duration::from_secs(10),
                || failing_entry(topo).is_some_and(|b| b["usable"] == true),
            )?;
            back_after = Some(t0.elapsed());
        }
    }
    let metrics = if dnsrail {
        api_get(topo, "/metrics").unwrap_or_default()
    } else {
        String::new()
    };
    Ok(Outcome {
        load: report,
        back_after,
        backend_json,
        metrics,
        log: std::fs::read_to_string(&log).unwrap_or_default(),
    })
}
