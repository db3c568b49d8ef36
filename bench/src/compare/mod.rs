//! `dnsrail-bench compare`: the whole comparison in one run, so that its
//! ratios are trustworthy on a noisy machine. On the namespace topology of
//! scripts/netns.sh it measures, one contender after the other (direct to a
//! backend, dnsrail over AF_XDP, dnsrail over sockets, dnsdist):
//!
//! 1. latency at a fixed rate with our own load driver (immediate backends);
//! 2. balancer CPU per query at a fixed rate (kxdpgun);
//! 3. a kxdpgun rate sweep (open loop) up to the first step that loses more
//!    than 1 %, with per-CPU load and the engine's drops for each step;
//! 4. dnsperf, closed loop;
//! 5. latency against the latency-mix backends (a recursor's cache hits and
//!    misses).
//!
//! The cached contenders (dnsrail with its packet cache, with and without
//! the XDP answer tier, and dnsdist with its own) go through the same five
//! steps on the hit mix (`--hit-pct` % of queries ask
//! one of `--hot-names` popular names, the rest names never asked before),
//! and each step counts the queries that reached the backends, which gives
//! the hit rate the same way for all.
//!
//! Backends: the XDP responder on port 53 (answers in the driver: not the
//! limit), the synthetic socket backend with the delay mix on port 5301 and,
//! for the cached contenders, the synthetic socket backend answering at once on
//! port 5302 (the XDP responder's answers hold no record a cache keeps),
//! all in every backend namespace. CPU 1 is the balancer's; the load
//! generators, the backends' user space and the switch's frame processing
//! run on CPU 0. Everything is bounded: each tool has a duration and a
//! timeout, and the topology (with every process in it) is torn down on
//! return, error included.

pub mod contender;
pub mod cpu;
pub mod plot;
pub mod report;
pub mod tools;

use crate::msg::HitMix;
use crate::netns::{backend4, Topo};
use anyhow::{bail, Context};
use contender::{Bins, Kind, Running};
use cpu::Sample;
use report::{Fixed, Results, Row, Step, HELD_PCT};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use tools::Queries;

/// Port of the latency-mix backends (the XDP responder has port 53).
pub const MIX_PORT: u16 = 5301;
/// Port of the cached contenders' backends: synthetic, answering at once with
/// records (TTL 300) a cache keeps.
pub const CACHE_PORT: u16 = 5302;

/// A comparison: what to run (the command-line options of
/// `dnsrail-bench compare`), with which binaries.
#[derive(Clone, Debug, clap::Args)]
pub struct Spec {
    /// Namespace prefix (must start with "dr").
    #[arg(long, value_parser = dr_prefix, default_value = "drc")]
    pub prefix: String,
    #[arg(long, value_parser = backend_count, default_value = "2")]
    pub backends: usize,
    /// Contenders, comma-separated (the cached ones, xdp-tier, xdp-cache
    /// and dnsdist-cache, run on their own: `scripts/bench.sh cache`).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "direct,xdp,xdp-busy,socket,dnsdist"
    )]
    pub contenders: Vec<Kind>,
    /// Offered rates of the kxdpgun sweep, qps, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = clap::value_parser!(u64).range(1..),
        default_value = "25000,50000,100000,150000,200000,250000,300000,400000"
    )]
    pub rates: Vec<u64>,
    /// Seconds per sweep step.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=60), default_value_t = 3)]
    pub secs: u64,
    /// Fixed rate of the CPU-per-query measurement, qps.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), default_value_t = 50_000)]
    pub cpu_rate: u64,
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=60), default_value_t = 5)]
    pub cpu_secs: u64,
    /// Seconds of the dnsperf (closed loop) run.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=60), default_value_t = 3)]
    pub perf_secs: u64,
    /// Rate and count of the latency run (immediate backends).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), default_value_t = 20_000)]
    pub lat_rate: u64,
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), default_value_t = 60_000)]
    pub lat_queries: u64,
    /// Rate and count of the latency-mix run.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), default_value_t = 5_000)]
    pub mix_rate: u64,
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), default_value_t = 20_000)]
    pub mix_queries: u64,
    /// The mix: this fraction of answers after --mix-delay-ms.
    #[arg(long, default_value_t = 20)]
    pub mix_delay_ms: u64,
    #[arg(long, value_parser = fraction, default_value_t = 0.2)]
    pub mix_fraction: f64,
    /// The cached contenders' queries: this percentage asks one of --hot-names
    /// popular names, the rest ask names never asked before.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100), default_value_t = 90)]
    pub hit_pct: u8,
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000), default_value_t = 1000)]
    pub hot_names: u32,
    /// Set by the caller, not an option.
    #[arg(skip)]
    pub bins: Bins,
    /// How the run was started, written beside the figures.
    #[arg(skip)]
    pub command: String,
}

fn dr_prefix(s: &str) -> Result<String, String> {
    if s.starts_with("dr") {
        Ok(s.to_string())
    } else {
        Err(format!("must start with \"dr\" (got {s})"))
    }
}

fn backend_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=8).contains(&n) => Ok(n),
        _ => Err(format!("{s} is not a backend count from 1 to 8")),
    }
}

/// A number from 0 to 1.
fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s} is not a fraction from 0 to 1")),
    }
}

/// The query file: 10 000 names shaped like a resolver's traffic (www,
/// mail, CDN and API hosts over several TLDs, a few deep names), A mostly,
/// some AAAA, MX and TXT, and one in seven under `nx.example`, which the
/// synthetic backend answers NXDOMAIN.
pub fn names() -> String {
    const TLD: [&str; 6] = ["com", "net", "org", "de", "io", "co.uk"];
    const HOST: [&str; 6] = ["www", "mail", "cdn", "api", "static", "m"];
    let mut t = String::with_capacity(300_000);
    for i in 0..10_000u64 {
        let qtype = match i % 20 {
            0..=13 => "A",
            14..=17 => "AAAA",
            18 => "MX",
            _ => "TXT",
        };
        if i % 7 == 3 {
            let _ = writeln!(t, "host{i}.nx.example {qtype}");
        } else if i % 11 == 5 {
            let _ = writeln!(
                t,
                "img{}.edge.cdn{}.shop{i}.{} {qtype}",
                i % 3,
                i % 5,
                TLD[i as usize % 6]
            );
        } else {
            let _ = writeln!(
                t,
                "{}.site{}.{} {qtype}",
                HOST[(i / 7) as usize % 6],
                i % 2500,
                TLD[(i / 3) as usize % 6]
            );
        }
    }
    t
}

fn log(msg: impl std::fmt::Display) {
    eprintln!("compare: {msg}");
}

/// Runs the comparison and returns its results.
pub fn run(spec: &Spec) -> anyhow::Result<Results> {
    if !crate::netns::is_root() {
        bail!("compare needs root (namespaces, XDP)");
    }
    for t in ["kxdpgun", "dnsperf", "taskset", "ip"] {
        which(t)?;
    }
    let dnsdist_version = if spec.contenders.iter().any(|k| k.is_dnsdist()) {
        Some(contender::dnsdist_version(&spec.bins.dnsdist)?)
    } else {
        None
    };
    let work = PathBuf::from(format!("/tmp/dnsrail-compare.{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let _cleanup = RemoveDir(work.clone());
    let names_path = work.join("names.txt");
    std::fs::write(&names_path, names())?;

    // Socket buffers as large as the engine's own (it forces them): dnsdist
    // asks for 16 MiB but gets no more than net.core.[rw]mem_max. Global
    // settings: put back as they were when the run ends.
    // And BPF run-time statistics on: dnsrail's XDP program runs in the
    // kernel's receive path, and its time counts in dnsrail's CPU.
    let _buffers = Sysctls::raise(&[
        ("/proc/sys/net/core/rmem_max", 16 << 20),
        ("/proc/sys/net/core/wmem_max", 16 << 20),
        ("/proc/sys/kernel/bpf_stats_enabled", 1),
    ]);
    // The switch's frame processing on CPU 0 (mask 1), with the generators.
    let mut topo = Topo::up(&spec.prefix, spec.backends, 1, Some("1"))?;
    let bound = 1800; // backends stop by themselves after 30 min at the latest
    for i in 1..=spec.backends {
        let d = bound.to_string();
        topo.spawn_logged(
            &format!("be{i}"),
            &spec.bins.bench,
            &["xdp-backend", "--interface", "eth0", "--duration", &d],
            Some(&work.join(format!("xdp-backend{i}.log"))),
        )?;
        let delay = spec.mix_delay_ms.to_string();
        let frac = spec.mix_fraction.to_string();
        topo.synthetic_backend(
            &spec.bins.bench,
            i,
            MIX_PORT,
            Some(0),
            bound,
            &["--delay-ms", &delay, "--delay-fraction", &frac],
        )?;
        if spec.contenders.iter().any(|k| k.cached()) {
            topo.synthetic_backend(&spec.bins.bench, i, CACHE_PORT, Some(0), bound, &[])?;
        }
        topo.wait_udp("cli", format!("{}:53", backend4(i)).parse()?)?;
    }

    let mut rows = Vec::new();
    for &kind in &spec.contenders {
        log(format!("{} …", kind.label()));
        rows.push(measure(spec, &mut topo, kind, &work, &names_path)?);
    }
    Ok(Results {
        date: today(),
        command: spec.command.clone(),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        dnsdist_version,
        backends: spec.backends,
        secs: spec.secs,
        perf_secs: spec.perf_secs,
        lat_rate: spec.lat_rate,
        mix_rate: spec.mix_rate,
        mix: (spec.mix_delay_ms, spec.mix_fraction),
        hit_mix: spec
            .contenders
            .iter()
            .any(|k| k.cached())
            .then(|| spec.hit_mix()),
        open_loop: tools::open_loop_generator().to_string(),
        rows,
    })
}

impl Spec {
    /// The cached contenders' query mix.
    pub fn hit_mix(&self) -> HitMix {
        HitMix {
            hot_pct: self.hit_pct,
            hot_names: self.hot_names,
        }
    }
}

/// Queries that reached the backends' sockets (the synthetic backends of
/// the cached contenders; the XDP responder answers before any socket).
struct BackendQueries<'a> {
    topo: &'a Topo,
    backends: usize,
}

impl BackendQueries<'_> {
    fn now(&self) -> u64 {
        (1..=self.backends)
            .map(|i| cpu::udp_in(&self.topo.ns(&format!("be{i}"))))
            .sum()
    }

    /// Runs `f` and returns its result with the queries the backends
    /// received meanwhile.
    fn during<T>(&self, f: impl FnOnce() -> T) -> (T, u64) {
        let before = self.now();
        let t = f();
        (t, self.now().saturating_sub(before))
    }
}

fn measure(
    spec: &Spec,
    topo: &mut Topo,
    kind: Kind,
    work: &Path,
    names: &Path,
) -> anyhow::Result<Row> {
    let cli = topo.ns("cli");
    let lb = topo.ns("lb");
    let target = kind.target(53);
    let queries = Queries {
        names: names.to_path_buf(),
        mix: kind.cached().then(|| spec.hit_mix()),
        work: work.to_path_buf(),
    };
    let port = if kind.cached() { CACHE_PORT } else { 53 };
    let r = Running::start(topo, kind, &spec.bins, work, spec.backends, port)?;
    let counted = |n: u64| kind.cached().then_some(n);

    let latency = latency_run(
        spec,
        topo,
        target,
        (spec.lat_rate, spec.lat_queries),
        &queries,
        "latency",
    )?;
    let bq = BackendQueries {
        topo,
        backends: spec.backends,
    };

    let fixed = if kind.is_balancer() {
        let s = Sample::now(r.pid);
        let (gun, sent_on) = bq.during(|| {
            tools::kxdpgun(
                &spec.bins.bench,
                &cli,
                target,
                spec.cpu_rate,
                spec.cpu_secs,
                &queries,
            )
        });
        let gun = gun?;
        let secs = gun.secs_or(spec.cpu_secs);
        let usage = s.usage_during(Some(secs));
        let answered = gun.answered_pps * secs;
        let per = |s: Option<f64>| s.filter(|_| answered > 0.0).map(|p| p * 1e6 / answered);
        // The XDP program's run time is dnsrail's too (the answer tier
        // answers there).
        let us = per(usage.proc_s.map(|p| p + usage.prog_s.unwrap_or(0.0)));
        let user_us = per(usage.proc_user_s);
        log(format!(
            "  CPU at {} qps: {us:?} µs/query, {gun:?}, backends asked {sent_on}",
            spec.cpu_rate
        ));
        Some(Fixed {
            rate: spec.cpu_rate,
            secs: spec.cpu_secs,
            gun,
            usage,
            us_per_query: us,
            user_us_per_query: user_us,
            backend_queries: counted(sent_on),
        })
    } else {
        None
    };

    let mut steps = Vec::new();
    for &rate in &spec.rates {
        let before = r.report();
        let udp0 = cpu::udp_overflows(&lb);
        let s = Sample::now(r.pid);
        let (gun, sent_on) =
            bq.during(|| tools::kxdpgun(&spec.bins.bench, &cli, target, rate, spec.secs, &queries));
        let gun = gun?;
        // Percentages over the seconds the generator sent, not its start-up.
        let usage = s.usage_during(Some(gun.secs_or(spec.secs)));
        let udp_overflows = cpu::udp_overflows(&lb).saturating_sub(udp0);
        let engine_drops = match (before, r.report()) {
            (Some(a), Some(b)) => contender::drops_between(&a, &b),
            _ => Default::default(),
        };
        log(format!(
            "  offered {rate}: sent {:.0}/s answered {:.0}/s ({:.2} %), CPU {:?}, balancer {:?} %, drops {:?}, UDP overflows {udp_overflows}, backends asked {sent_on}",
            gun.sent_pps, gun.answered_pps, gun.answered_pct, usage.cpu_busy_pct, usage.proc_pct, engine_drops
        ));
        let failed = gun.answered_pct < HELD_PCT;
        steps.push(Step {
            offered: rate,
            gun,
            usage,
            engine_drops,
            udp_overflows,
            secs: spec.secs,
            backend_queries: counted(sent_on),
        });
        if failed {
            break;
        }
    }

    let perf = tools::dnsperf(&cli, target, spec.perf_secs, &queries)?;
    log(format!("  dnsperf: {perf:?}"));
    let engine_cache = r.report().and_then(|rep| rep.caches.into_iter().next());
    if let Some(c) = &engine_cache {
        log(format!("  engine cache: {c:?}"));
    }
    r.stop(topo)?;

    let mix_target = kind.target(MIX_PORT);
    let r = Running::start(topo, kind, &spec.bins, work, spec.backends, MIX_PORT)?;
    let mix = latency_run(
        spec,
        topo,
        mix_target,
        (spec.mix_rate, spec.mix_queries),
        &queries,
        "latency mix",
    )?;
    r.stop(topo)?;
    Ok(Row {
        kind,
        steps,
        perf: Some(perf),
        fixed,
        latency: Some(latency),
        mix: Some(mix),
        engine_cache,
    })
}

/// Our load driver from the client namespace at a fixed rate. Without RPS:
/// each frame is carried through the switch by the CPU that sent it, as a
/// NIC would carry it, instead of being handed to CPU 0 with an
/// inter-processor interrupt per hop (tens of µs each on this VM). CPU is
/// measured with RPS, so that the switch's work is not billed to the
/// balancer.
fn latency_run(
    spec: &Spec,
    topo: &Topo,
    target: std::net::SocketAddr,
    (rate, n): (u64, u64),
    queries: &Queries,
    what: &str,
) -> anyhow::Result<tools::Load> {
    let run = queries.driver();
    topo.set_rps("0")?;
    let l = tools::load(&spec.bins.bench, &topo.ns("cli"), target, rate, n, &run);
    topo.set_rps("1")?;
    let l = l?;
    log(format!(
        "  {what} at {rate} qps: {}/{} answered, p50 {:?} p99 {:?} µs",
        l.answered, l.sent, l.p50_us, l.p99_us
    ));
    Ok(l)
}

fn which(tool: &str) -> anyhow::Result<()> {
    let ok = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if !ok {
        bail!("{tool} not found: run scripts/setup.sh");
    }
    Ok(())
}

fn today() -> String {
    std::process::Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Kernel settings raised for a run and restored on drop.
struct Sysctls(Vec<(&'static str, String)>);

impl Sysctls {
    fn raise(want: &[(&'static str, u64)]) -> Sysctls {
        let mut old = Vec::new();
        for &(path, v) in want {
            let Ok(cur) = std::fs::read_to_string(path) else {
                continue;
            };
            if cur.trim().parse::<u64>().is_ok_and(|c| c < v)
                && std::fs::write(path, v.to_string()).is_ok()
            {
                log(format!("{path}: {} → {v} for the run", cur.trim()));
                old.push((path, cur));
            }
        }
        Sysctls(old)
    }
}

impl Drop for Sysctls {
    fn drop(&mut self) {
        for (path, v) in &self.0 {
            let _ = std::fs::write(path, v.trim());
        }
    }
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where the markdown of a comparison goes: the section between
/// `<!-- NAME:begin -->` and `<!-- NAME:end -->` of a document.
#[derive(Clone, Copy, Debug)]
pub struct Doc<'a> {
    pub path: &'a Path,
    pub section: &'a str,
}

/// Writes results.json and the plots into `dir`, and the markdown section
/// into `doc` when given (its links lead from the document to `dir`).
/// Returns the markdown.
pub fn write(r: &Results, dir: &Path, doc: Option<Doc>) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(r)? + "\n",
    )?;
    plot::all(r, dir)?;
    let Some(doc) = doc else {
        return Ok(r.markdown_linking(&dir.display().to_string()));
    };
    let md = r.markdown_linking(&relative(dir, doc.path.parent().unwrap_or(Path::new(""))));
    let text = std::fs::read_to_string(doc.path).with_context(|| doc.path.display().to_string())?;
    std::fs::write(doc.path, report::splice(&text, doc.section, &md))?;
    Ok(md)
}

/// `dir` as seen from `from` when it lies below it (`docs/bench` from
/// `docs` is `bench`), else as given.
fn relative(dir: &Path, from: &Path) -> String {
    match dir.strip_prefix(from) {
        Ok(rel) if rel == Path::new("") => ".".into(),
        Ok(rel) if from != Path::new("") => rel.display().to_string(),
        _ => dir.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_lead_from_the_document_to_the_plots() {
        let p = Path::new;
        assert_eq!(relative(p("docs/bench"), p("docs")), "bench");
        assert_eq!(relative(p("docs/bench/cache"), p("docs")), "bench/cache");
        assert_eq!(relative(p("/tmp/x"), p("docs")), "/tmp/x");
        assert_eq!(relative(p("out"), p("")), "out");
        assert_eq!(relative(p("docs"), p("docs")), ".");
    }

    #[test]
    fn names_are_valid_queries_with_some_nxdomain() {
        let t = names();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 10_000);
        let nx = lines.iter().filter(|l| l.contains(".nx.example ")).count();
        assert!((1400..1500).contains(&nx), "{nx}");
        for l in &lines {
            let (name, t) = l.split_once(' ').unwrap();
            assert!(["A", "AAAA", "MX", "TXT"].contains(&t), "{l}");
            assert!(
                name.len() < 100 && name.split('.').all(|x| !x.is_empty() && x.len() < 64),
                "{l}"
            );
        }
    }
}
