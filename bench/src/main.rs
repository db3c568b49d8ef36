//! `dnsrail-bench`: synthetic backend and bounded load driver.

use clap::{Parser, Subcommand};
use dnsrail_bench::backend::{Backend, BackendSpec};
use dnsrail_bench::compare;
use dnsrail_bench::load::{run, LoadSpec};
use dnsrail_bench::msg::{AnswerSpec, HitMix};
use dnsrail_engine::wire::dns::rcode;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "dnsrail-bench", version, about = "dnsrail load harness")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a synthetic DNS backend until SIGINT/SIGTERM or --duration.
    Backend {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Names under this suffix get NXDOMAIN.
        #[arg(long, default_value = "nx.example")]
        nxdomain_suffix: String,
        /// Delay of slow answers, milliseconds.
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
        /// Fraction of answers that are slow (0..1).
        #[arg(long, default_value_t = 1.0)]
        delay_fraction: f64,
        /// Answer everything with this RCODE (e.g. SERVFAIL).
        #[arg(long)]
        rcode: Option<String>,
        #[arg(long, default_value = "192.0.2.1")]
        a: std::net::Ipv4Addr,
        /// Each name its own A/AAAA address (the last two bytes from a hash
        /// of the name): `load --check-answers` then sees any answer served
        /// for another name.
        #[arg(long)]
        per_name: bool,
        /// Stop after this many seconds (0 = until a signal).
        #[arg(long, default_value_t = 0)]
        duration: u64,
    },
    /// Answer DNS queries in XDP on an interface (NOERROR, no records)
    /// until SIGINT/SIGTERM or --duration: a backend that is never the limit.
    XdpBackend {
        #[arg(long)]
        interface: String,
        /// Attach in native (driver) mode instead of generic mode.
        #[arg(long)]
        native: bool,
        /// Stop after this many seconds (0 = until a signal).
        #[arg(long, default_value_t = 0)]
        duration: u64,
    },
    /// The full comparison on the namespace topology (needs root): direct,
    /// dnsrail AF_XDP, dnsrail sockets and dnsdist, one after the other in
    /// one run. Writes results.json and PNG plots into --out and the
    /// markdown section into --doc.
    Compare {
        #[command(flatten)]
        spec: Box<compare::Spec>,
        /// The dnsrail engine binary (default: beside this one).
        #[arg(long)]
        engine: Option<String>,
        #[arg(long, default_value = "dnsdist")]
        dnsdist: String,
        /// Directory for results.json and the plots.
        #[arg(long, default_value = "docs/bench")]
        out: std::path::PathBuf,
        /// Markdown file whose section is replaced.
        #[arg(long)]
        doc: Option<std::path::PathBuf>,
        /// The section of --doc: the text between `<!-- NAME:begin -->` and
        /// `<!-- NAME:end -->`.
        #[arg(long, default_value = "compare")]
        section: String,
    },
    /// A backend failing under load (needs root): two knotd backends, one
    /// killed, then silenced, behind dnsrail (`dnsrailctl serve`, AF_XDP)
    /// and behind dnsdist, one after the other; prints the markdown table
    /// of docs/benchmarks.md.
    Failover {
        /// Queries per second and seconds of load per run.
        #[arg(long, default_value_t = 20_000)]
        rate: u64,
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        #[arg(long, default_value = "dnsdist")]
        dnsdist: String,
        /// Leave dnsdist out.
        #[arg(long)]
        no_dnsdist: bool,
        /// The load's window of unanswered queries (a balancer that loses
        /// more than this many within 3 s stalls the load: its loss is then
        /// a lower bound).
        #[arg(long, default_value_t = 2000)]
        window: u64,
        /// Only these faults (kill, silent, slow; default all).
        #[arg(long)]
        only: Option<String>,
        /// Print each dnsrail run's backend state and failover metrics.
        #[arg(long)]
        verbose: bool,
    },
    /// Redraw the plots and the markdown of a comparison from its results.json.
    Plot {
        #[arg(long, default_value = "docs/bench/results.json")]
        results: std::path::PathBuf,
        #[arg(long, default_value = "docs/bench")]
        out: std::path::PathBuf,
        #[arg(long)]
        doc: Option<std::path::PathBuf>,
        #[arg(long, default_value = "compare")]
        section: String,
    },
    /// Send a bounded load and print what came back.
    Load {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value_t = 10_000)]
        queries: u64,
        /// Queries per second (0 = bounded only by --max-outstanding).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long, default_value_t = 4)]
        sockets: usize,
        #[arg(long, default_value_t = 2000)]
        max_outstanding: u64,
        /// Longest the run may take, seconds.
        #[arg(long, default_value_t = 60)]
        max_duration: u64,
        /// Exit non-zero if more than this percentage is lost.
        #[arg(long, default_value_t = 100.0)]
        max_loss_pct: f64,
        /// Print the report as JSON (with the latency histogram).
        #[arg(long)]
        json: bool,
        /// First sequence number: runs with distinct ranges ask distinct
        /// new names (so a cache holds none of them from an earlier run).
        #[arg(long, default_value_t = 0)]
        first: u64,
        /// Percentage of queries that ask one of --hot-names popular names
        /// (a cache's hits); the rest ask names never asked before.
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100), default_value_t = 0)]
        hot_pct: u8,
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000_000), default_value_t = 1000)]
        hot_names: u32,
        /// Check every answer's records against a synthetic backend's at
        /// its defaults (TTLs aside): wrong ones are counted (wrong-answer)
        /// and fail the run.
        #[arg(long)]
        check_answers: bool,
        /// With --check-answers: the backends run with --per-name.
        #[arg(long, requires = "check_answers")]
        per_name: bool,
    },
}

/// Returns on SIGINT/SIGTERM or after `duration` seconds (0 = no limit).
fn wait_for_stop(duration: u64) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let t0 = Instant::now();
    while !stop.load(Ordering::Relaxed)
        && (duration == 0 || t0.elapsed() < Duration::from_secs(duration))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Args::parse().cmd {
        Cmd::Backend {
            listen,
            threads,
            nxdomain_suffix,
            delay_ms,
            delay_fraction,
            rcode,
            a,
            per_name,
            duration,
        } => {
            let force_rcode = match rcode {
                Some(r) => {
                    Some(rcode::by_name(&r).ok_or_else(|| anyhow::anyhow!("unknown RCODE {r}"))?)
                }
                None => None,
            };
            let b = Backend::start(BackendSpec {
                listen,
                threads,
                answers: AnswerSpec {
                    a,
                    nxdomain_suffix: Some(nxdomain_suffix.to_ascii_lowercase()),
                    force_rcode,
                    per_name,
                    ..AnswerSpec::default()
                },
                delay: Duration::from_millis(delay_ms),
                delay_fraction,
            })?;
            println!("backend listening on {}", b.addr);
            wait_for_stop(duration)?;
            println!("backend {}: {} queries", b.addr, b.queries());
            b.stop();
        }
        Cmd::XdpBackend {
            interface,
            native,
            duration,
        } => {
            let mut r = dnsrail_bench::xdp_backend::XdpResponder::attach(&interface, native)?;
            println!("xdp backend answering on {interface}");
            wait_for_stop(duration)?;
            println!("xdp backend {interface}: {} queries", r.answered());
        }
        Cmd::Compare {
            mut spec,
            engine,
            dnsdist,
            out,
            doc,
            section,
        } => {
            let me = std::env::current_exe()?;
            let beside = |n: &str| me.with_file_name(n).display().to_string();
            spec.bins = compare::contender::Bins {
                engine: engine.unwrap_or_else(|| beside("dnsrail")),
                bench: me.display().to_string(),
                dnsdist,
            };
            spec.command = std::env::var("DNSRAIL_BENCH_COMMAND")
                .unwrap_or_else(|_| std::env::args().collect::<Vec<_>>().join(" "));
            let r = compare::run(&spec)?;
            let doc = doc.as_deref().map(|path| compare::Doc {
                path,
                section: &section,
            });
            let md = compare::write(&r, &out, doc)?;
            println!("{md}");
        }
        Cmd::Failover {
            rate,
            seconds,
            dnsdist,
            no_dnsdist,
            only,
            verbose,
            window,
        } => {
            use dnsrail_bench::failover::{self, Balancer, Fault, Spec};
            let me = std::env::current_exe()?;
            let dnsrail = Balancer::Dnsrail {
                ctl: me.with_file_name("dnsrailctl"),
                engine: me.with_file_name("dnsrail"),
            };
            let mut runs = vec![
                (dnsrail.clone(), Fault::Kill),
                (dnsrail.clone(), Fault::Silent),
                (dnsrail, Fault::Slow),
            ];
            if !no_dnsdist {
                runs.push((
                    Balancer::Dnsdist {
                        bin: dnsdist.clone(),
                    },
                    Fault::Kill,
                ));
                runs.push((Balancer::Dnsdist { bin: dnsdist }, Fault::Silent));
            }
            println!(
                "| balancer | backend | queries | lost | loss | lost before the balancer | wrong answers | back in rotation |"
            );
            println!("|---|---|---|---|---|---|---|---|");
            let wanted = |f: Fault| {
                only.as_deref().is_none_or(|o| {
                    o.split(',').any(|w| {
                        matches!(
                            (w, f),
                            ("kill", Fault::Kill)
                                | ("silent", Fault::Silent)
                                | ("slow", Fault::Slow)
                        )
                    })
                })
            };
            for (b, f) in runs.into_iter().filter(|r| wanted(r.1)) {
                let mut spec = Spec::new("drfob", b.clone(), f, me.clone());
                spec.rate = rate;
                spec.seconds = seconds;
                spec.max_outstanding = window;
                let o = failover::run(&spec)?;
                if verbose {
                    eprintln!("{} / {}: {}", b.name(), f.name(), o.backend_json);
                    for l in o.metrics.lines().filter(|l| {
                        !l.starts_with('#')
                            && (l.contains("icmp")
                                || l.contains("redispatch")
                                || l.contains("eject")
                                || l.contains("transition")
                                || l.contains("backend_sent")
                                || l.contains("backend_answered")
                                || l.contains("backend_timeouts")
                                || l.contains("xdp_")
                                || l.starts_with("dnsrail_queries")
                                || l.starts_with("dnsrail_answers")
                                || (l.contains("drops_total") && !l.ends_with(" 0")))
                    }) {
                        eprintln!("  {l}");
                    }
                }
                println!(
                    "| {} | {} | {} | {} | {:.3} % | {} | {} | {} |",
                    b.name(),
                    f.name(),
                    o.load.sent,
                    o.load.lost,
                    o.loss() * 100.0,
                    o.path_lost().map_or("–".to_string(), |n| n.to_string()),
                    o.wrong(),
                    o.back_after
                        .map_or("–".to_string(), |d| format!("{} ms", d.as_millis()))
                );
            }
        }
        Cmd::Plot {
            results,
            out,
            doc,
            section,
        } => {
            let text = std::fs::read_to_string(&results)
                .map_err(|e| anyhow::anyhow!("{}: {e}", results.display()))?;
            let r: compare::report::Results = serde_json::from_str(&text)?;
            let doc = doc.as_deref().map(|path| compare::Doc {
                path,
                section: &section,
            });
            println!("{}", compare::write(&r, &out, doc)?);
        }
        Cmd::Load {
            target,
            queries,
            rate,
            sockets,
            max_outstanding,
            max_duration,
            max_loss_pct,
            json,
            first,
            hot_pct,
            hot_names,
            check_answers,
            per_name,
        } => {
            let mut spec = LoadSpec::new(target, queries);
            spec.check_answers = check_answers.then(|| AnswerSpec {
                per_name,
                ..AnswerSpec::default()
            });
            spec.first = first;
            spec.mix = (hot_pct > 0).then_some(HitMix { hot_pct, hot_names });
            spec.rate = rate;
            spec.sockets = sockets;
            spec.max_outstanding = max_outstanding;
            spec.max_duration = Duration::from_secs(max_duration);
            let r = run(&spec)?;
            if json {
                println!("{}", serde_json::to_string(&r.brief())?);
            } else {
                println!("{}", r.summary());
            }
            let loss = 100.0 * r.lost as f64 / r.sent.max(1) as f64;
            if loss > max_loss_pct {
                anyhow::bail!("loss {loss:.3}% above {max_loss_pct}%");
            }
            if r.wrong_answer > 0 {
                anyhow::bail!("{} answers with records not the backend's", r.wrong_answer);
            }
        }
    }
    Ok(())
}
