//! The load generators of a comparison, run in the client namespace pinned
//! to CPU 0 (the balancers get CPU 1): kxdpgun (open loop, AF_XDP), dnsperf
//! (closed loop, kernel sockets) and our own `dnsrail-bench load` (fixed
//! rate, every answer matched, a latency histogram). Each run is bounded by
//! its own duration and by `timeout`; the parsers read their text output.

use crate::msg::HitMix;
use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One kxdpgun run: what it sent and what came back, per second.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Gun {
    pub sent_pps: f64,
    pub answered_pps: f64,
    /// Answered / sent, percent (from the totals, not kxdpgun's rounded figure).
    pub answered_pct: f64,
    /// Seconds the generator took to send (0 = as asked: kxdpgun keeps its
    /// duration). The rates above are over these seconds.
    #[serde(default)]
    pub secs: f64,
}

impl Gun {
    /// The seconds the rates are over: `asked` unless the generator took
    /// longer.
    pub fn secs_or(&self, asked: u64) -> f64 {
        self.secs.max(asked as f64).max(1e-6)
    }
}

/// Parses kxdpgun's summary (`total queries: N (R pps)`,
/// `total replies: N (R pps) (P%)`).
pub fn parse_kxdpgun(out: &str) -> Option<Gun> {
    let field = |prefix: &str| -> Option<(f64, f64)> {
        let line = out.lines().find(|l| l.trim_start().starts_with(prefix))?;
        let mut nums = line[line.find(':')? + 1..]
            .split(|c: char| !c.is_ascii_digit() && c != '.')
            .filter(|t| !t.is_empty())
            .map(|t| t.parse::<f64>());
        Some((nums.next()?.ok()?, nums.next()?.ok()?))
    };
    let (sent, sent_pps) = field("total queries:")?;
    // No reply line at all means nothing came back.
    let (got, got_pps) = field("total replies:").unwrap_or((0.0, 0.0));
    Some(Gun {
        sent_pps,
        answered_pps: got_pps,
        answered_pct: if sent > 0.0 { 100.0 * got / sent } else { 0.0 },
        secs: 0.0,
    })
}

/// What a contender's generators ask: the resolver-shaped query file
/// (kxdpgun, dnsperf; our driver asks names never asked before), or the
/// cache's hit mix, for which every run gets a range of sequence numbers of
/// its own, so that no run's new names were asked by an earlier one.
#[derive(Clone, Debug)]
pub struct Queries {
    pub names: PathBuf,
    pub mix: Option<HitMix>,
    /// Where a run's query file of the mix is written.
    pub work: PathBuf,
}

/// One run's queries: the file for kxdpgun or dnsperf and the first
/// sequence number for our driver.
pub struct Run {
    pub file: PathBuf,
    pub first: u64,
    pub mix: Option<HitMix>,
}

/// The next run's range of sequence numbers (2^32 each).
static NEXT_RANGE: AtomicU64 = AtomicU64::new(1);

impl Queries {
    /// The queries of a run of about `n` queries (the file holds `n`
    /// lines; kxdpgun and dnsperf start it again when they reach its end).
    pub fn run(&self, n: u64) -> anyhow::Result<Run> {
        let Some(mix) = self.mix else {
            return Ok(self.driver());
        };
        let run = self.driver();
        let file = self.work.join("mix.txt");
        std::fs::write(&file, crate::msg::mix_file(mix, run.first, n.max(1)))
            .with_context(|| file.display().to_string())?;
        Ok(Run { file, ..run })
    }

    /// The queries of a run of our driver alone (no file written).
    pub fn driver(&self) -> Run {
        Run {
            file: self.names.clone(),
            first: match self.mix {
                Some(_) => NEXT_RANGE.fetch_add(1, Ordering::Relaxed) << 32,
                None => 0,
            },
            mix: self.mix,
        }
    }
}

/// kxdpgun from namespace `ns` at `rate` qps for `secs` seconds, names from
/// `q`; its threads start at CPU 0 (`-F 0`). Where kxdpgun cannot run,
/// `bench` (`dnsrail-bench load`) at the same rate.
pub fn kxdpgun(
    bench: &str,
    ns: &str,
    target: SocketAddr,
    rate: u64,
    secs: u64,
    q: &Queries,
) -> anyhow::Result<Gun> {
    let run = q.run(rate * secs)?;
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "timeout",
            &(secs + 20).to_string(),
            "kxdpgun",
        ])
        .args(["-F", "0", "-t", &secs.to_string(), "-Q", &rate.to_string()])
        .args(["-p", &target.port().to_string(), "-i"])
        .arg(&run.file)
        .arg(target.ip().to_string())
        .output()
        .context("kxdpgun runs")?;
    // kxdpgun leaves its XDP program on the client's interface.
    let _ = Command::new("ip")
        .args(["-n", ns, "link", "set", "dev", "eth0", "xdp", "off"])
        .status();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if let Some(g) = parse_kxdpgun(&text) {
        return Ok(g);
    }
    // Knot 3.2's XDP program is refused by some kernels (6.18.44 here:
    // "program of this type cannot use helper bpf_xdp_adjust_meta"). The
    // step then runs with our own generator at the same rate, and the
    // report says so.
    if text.contains("failed to initialize XDP socket") {
        if !KXDPGUN_REFUSED.swap(true, Ordering::Relaxed) {
            eprintln!(
                "compare: kxdpgun cannot load its XDP program on this kernel; the open-loop steps use dnsrail-bench load at the same rates"
            );
        }
        let l = load(bench, ns, target, rate, rate * secs, &run)?;
        // Over the seconds it took to send: a driver that could not keep
        // the rate sent for longer, at a lower rate than asked (the
        // client's limit), not at the rate asked.
        let took = l.send_s.max(secs.max(1) as f64);
        return Ok(Gun {
            sent_pps: l.sent as f64 / took,
            answered_pps: l.answered as f64 / took,
            answered_pct: if l.sent > 0 {
                100.0 * l.answered as f64 / l.sent as f64
            } else {
                0.0
            },
            secs: took,
        });
    }
    bail!("kxdpgun printed no summary:\n{text}")
}

/// Set once kxdpgun could not run here and `dnsrail-bench load` stood in.
pub static KXDPGUN_REFUSED: AtomicBool = AtomicBool::new(false);

/// The open-loop generator the run used.
pub fn open_loop_generator() -> &'static str {
    if KXDPGUN_REFUSED.load(Ordering::Relaxed) {
        "dnsrail-bench load (kxdpgun refused by this kernel)"
    } else {
        "kxdpgun"
    }
}

/// One dnsperf run.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Perf {
    pub qps: f64,
    pub avg_latency_us: f64,
    pub completed_pct: f64,
}

/// Parses dnsperf's statistics block.
pub fn parse_dnsperf(out: &str) -> Option<Perf> {
    let after = |key: &str| -> Option<f64> {
        let l = out.lines().find(|l| l.trim_start().starts_with(key))?;
        l[l.find(':')? + 1..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let completed = out
        .lines()
        .find(|l| l.trim_start().starts_with("Queries completed:"))?;
    let pct = completed[completed.find('(')? + 1..completed.find('%')?]
        .parse()
        .ok()?;
    Some(Perf {
        qps: after("Queries per second:")?,
        avg_latency_us: after("Average Latency (s):")? * 1e6,
        completed_pct: pct,
    })
}

/// dnsperf from namespace `ns`, closed loop: 4 clients, up to 500 queries
/// outstanding, `secs` seconds, pinned to CPU 0. A mix's file holds 200 000
/// queries a second, more than dnsperf sends here.
pub fn dnsperf(ns: &str, target: SocketAddr, secs: u64, q: &Queries) -> anyhow::Result<Perf> {
    let run = q.run(200_000 * secs)?;
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "timeout", &(secs + 20).to_string()])
        .args([
            "taskset",
            "-c",
            "0",
            "dnsperf",
            "-s",
            &target.ip().to_string(),
        ])
        .args(["-p", &target.port().to_string(), "-l", &secs.to_string()])
        .args(["-c", "4", "-T", "1", "-q", "500", "-d"])
        .arg(&run.file)
        .output()
        .context("dnsperf runs")?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    parse_dnsperf(&text).with_context(|| format!("dnsperf printed no statistics:\n{text}"))
}

/// One `dnsrail-bench load --json` run.
pub use crate::load::LoadBrief as Load;

/// Our load driver from namespace `ns` at `rate` qps for `queries` queries
/// of `run`, pinned to CPU 0.
pub fn load(
    bench: &str,
    ns: &str,
    target: SocketAddr,
    rate: u64,
    queries: u64,
    run: &Run,
) -> anyhow::Result<Load> {
    let max = queries / rate.max(1) + 15;
    let mut mix = vec!["--first".to_string(), run.first.to_string()];
    if let Some(m) = run.mix {
        mix.extend([
            "--hot-pct".into(),
            m.hot_pct.to_string(),
            "--hot-names".into(),
            m.hot_names.to_string(),
        ]);
    }
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "taskset", "-c", "0", bench, "load", "--json",
        ])
        .args([
            "--target",
            &target.to_string(),
            "--queries",
            &queries.to_string(),
        ])
        .args([
            "--rate",
            &rate.to_string(),
            "--max-duration",
            &max.to_string(),
        ])
        .args(["--max-outstanding", "20000"])
        .args(&mix)
        .output()
        .context("dnsrail-bench load runs")?;
    if !out.status.success() {
        bail!(
            "dnsrail-bench load failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("dnsrail-bench load --json output")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KXDPGUN: &str = "using interface eth0, XDP threads 1, UDP, native mode
thread#00: sent 300000, received 219836
total queries:     300000 (100000 pps)
total replies:     219836 (73278 pps) (73%)
average DNS reply size: 29 B
responded NOERROR:   219836
duration: 3 s
";

    #[test]
    fn kxdpgun_summary() {
        let g = parse_kxdpgun(KXDPGUN).unwrap();
        assert_eq!(g.sent_pps, 100000.0);
        assert_eq!(g.answered_pps, 73278.0);
        assert!((g.answered_pct - 73.2787).abs() < 1e-3, "{g:?}");
    }

    #[test]
    fn kxdpgun_without_replies_is_zero_answered_and_garbage_is_none() {
        let g = parse_kxdpgun("total queries:     3000 (1000 pps)\n").unwrap();
        assert_eq!((g.answered_pps, g.answered_pct), (0.0, 0.0));
        assert_eq!(parse_kxdpgun("failed to set up XDP\n"), None);
        assert_eq!(parse_kxdpgun("total queries: lots\n"), None);
    }

    const DNSPERF: &str = "Statistics:

  Queries sent:         175107
  Queries completed:    174801 (99.83%)
  Queries lost:         306 (0.17%)

  Response codes:       NOERROR 174801 (100.00%)
  Average packet size:  request 28, response 28
  Run time (s):         3.006525
  Queries per second:   58139.693451

  Average Latency (s):  0.003175 (min 0.000020, max 0.008853)
  Latency StdDev (s):   0.001694
";

    #[test]
    fn dnsperf_statistics() {
        let p = parse_dnsperf(DNSPERF).unwrap();
        assert!((p.qps - 58139.693451).abs() < 1e-6);
        assert!((p.avg_latency_us - 3175.0).abs() < 1e-6);
        assert_eq!(p.completed_pct, 99.83);
        assert_eq!(parse_dnsperf("Error: cannot reread input\n"), None);
    }

    #[test]
    fn rates_are_over_the_seconds_the_generator_took() {
        let g = Gun {
            secs: 6.0,
            ..Gun::default()
        };
        assert_eq!(g.secs_or(3), 6.0, "a driver that fell behind sent for 6 s");
        assert_eq!(Gun::default().secs_or(3), 3.0, "kxdpgun keeps its duration");
    }

    #[test]
    fn load_json_round_trips() {
        let j = r#"{"sent":10,"answered":9,"lost":1,"unexpected":0,"wrong_question":0,"noerror":7,"nxdomain":2,"servfail":0,"elapsed_s":1.0,"p50_us":100,"p99_us":null,"latency":[[96,9]]}"#;
        let l: Load = serde_json::from_str(j).unwrap();
        assert_eq!((l.noerror, l.nxdomain), (7, 2));
        assert_eq!(
            (l.sent, l.answered, l.p50_us, l.p99_us),
            (10, 9, Some(100), None)
        );
        assert_eq!(l.latency, vec![(96, 9)]);
    }
}
