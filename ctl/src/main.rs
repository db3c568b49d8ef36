//! `dnsrailctl`: the control process (`serve`) and the operator CLI of
//! dnsrail.

mod announce;
mod api;
mod bird;
mod cli;
mod dashboard;
mod doctor;
mod health;
mod metrics;
mod monitor;
mod node;
mod serve;
mod supervisor;
mod tcp;

use clap::{Parser, Subcommand};
use dnsrail_engine::config::Config;
use dnsrail_engine::snapshot::{Overrides, Registry, Snapshot};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "dnsrailctl",
    version,
    about = "dnsrail control process and CLI"
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Parser)]
struct ApiArgs {
    /// The API of a running `dnsrailctl serve` (default: ctl.api_listen of
    /// --config, else 127.0.0.1:8053).
    #[arg(long, global = true)]
    api: Option<SocketAddr>,
    /// API token for changes (default: $DNSRAIL_TOKEN, else the token file
    /// beside the control socket).
    #[arg(long, global = true)]
    token: Option<String>,
    /// The configuration file, to find the API and the token file.
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate a configuration file and print the frontends, pools and
    /// backends the engine would run with.
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Run the control process: attach to or start the engine, health
    /// checks, TCP/53, HTTP API and metrics.
    Serve {
        #[arg(short, long)]
        config: PathBuf,
        /// Only attach to an engine started otherwise (e.g. its own systemd
        /// unit); never start one.
        #[arg(long)]
        attach_only: bool,
    },
    /// Check a balancer host's interface before going live: driver, native
    /// XDP and AF_XDP (tried for real), channels, RSS, IRQs, MTU, offloads,
    /// rings, bpffs. Exits 1 when a finding would stop the engine.
    Doctor {
        /// The interface the engine will attach to.
        #[arg(short, long)]
        interface: String,
        /// The configuration (for engine.workers and engine.cpus).
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Do not attach the XDP program or bind a socket (some NICs reset
        /// their rings when a program is attached).
        #[arg(long)]
        no_attach: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Engine and control process state.
    Status(ApiArgs),
    /// Backends with health, state and counters.
    Backends(ApiArgs),
    /// Counters, drops and latency percentiles.
    Stats(ApiArgs),
    /// Stop sending new queries to a backend (answers still accepted).
    Drain {
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Undo a drain.
    Undrain {
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Set a backend's weight.
    Weight {
        name: String,
        weight: u32,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Re-read the configuration file (validated first).
    Reload(ApiArgs),
    /// Runtime rules: list (with the file's), add, delete, load.
    Rules {
        #[command(subcommand)]
        op: RulesOp,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The pools' packet caches: stats, purge.
    Cache {
        #[command(subcommand)]
        op: CacheOp,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// This balancer host as the routers see it: health, drain,
    /// announcement through BIRD (`[announce]`).
    Node {
        #[command(subcommand)]
        op: NodeOp,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Live view, refreshed every second.
    Top {
        /// Stop after this many refreshes.
        #[arg(long)]
        iterations: Option<u64>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand)]
enum CacheOp {
    /// Per pool: entries of capacity, hits, misses, hit rate.
    Stats,
    /// Remove the cached answers for NAME from every pool (needs the token).
    Purge {
        name: String,
        /// NAME and every name below it.
        #[arg(long)]
        suffix: bool,
    },
}

#[derive(Subcommand)]
enum NodeOp {
    /// Health, drain state and what BIRD announces.
    Status,
    /// Withdraw the VIP routes and wait until the frontends receive no more
    /// queries and nothing is in flight: then print "drained" (the engine
    /// can be stopped without losing a query).
    Drain {
        /// Give up waiting after this many seconds (exit 1; the drain
        /// stays).
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Return at once, without waiting for the drain to complete.
        #[arg(long)]
        no_wait: bool,
    },
    /// Announce again (after `[announce] rise` good checks).
    Undrain,
}

#[derive(Subcommand)]
enum RulesOp {
    /// Every rule in match order (runtime first) with its hits.
    List,
    /// Add the `[[rule]]` entries of FILE (- = standard input).
    Add {
        file: String,
        /// A rule may replace the runtime rule of the same name.
        #[arg(long)]
        replace: bool,
    },
    /// Delete a runtime rule.
    Del { name: String },
    /// Replace every runtime rule with those of FILE (- = standard input).
    Load { file: String },
}

fn read_arg_file(f: &str) -> anyhow::Result<String> {
    use std::io::Read;
    if f == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("{f}: {e}"))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !matches!(args.cmd, Cmd::Check { .. } | Cmd::Doctor { .. }) {
        dnsrail_engine::logging::init();
    }
    match run(args.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dnsrailctl: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn api(a: &ApiArgs) -> cli::Api {
    let cfg = a.config.as_ref().and_then(|p| Config::load(p).ok());
    let addr = a.api.unwrap_or_else(|| {
        cfg.as_ref()
            .and_then(|c| c.ctl.api_listen.parse().ok())
            .unwrap_or_else(|| "127.0.0.1:8053".parse().unwrap())
    });
    let token = a
        .token
        .clone()
        .or_else(|| std::env::var("DNSRAIL_TOKEN").ok())
        .or_else(|| {
            let path = match &cfg {
                Some(c) => serve::default_token_path(c),
                None => PathBuf::from("/run/dnsrail/api.token"),
            };
            std::fs::read_to_string(path)
                .ok()
                .map(|t| t.trim().to_string())
        });
    cli::Api { addr, token }
}

fn show(a: &ApiArgs, v: &serde_json::Value, table: fn(&serde_json::Value)) {
    if a.json {
        println!("{}", serde_json::to_string_pretty(v).unwrap());
    } else {
        table(v);
    }
}

fn run(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Check { config } => match serve::load_config(&config) {
            Ok(cfg) => {
                print!("{}", describe(&cfg));
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("dnsrailctl: {e}");
                Ok(ExitCode::from(2))
            }
        },
        Cmd::Serve {
            config,
            attach_only,
        } => {
            serve::run(config, !attach_only)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Doctor {
            interface,
            config,
            no_attach,
            json,
        } => {
            let cfg = config.as_ref().map(|p| Config::load(p)).transpose()?;
            let findings = doctor::run(&interface, &doctor::Plan::of(cfg.as_ref()), !no_attach);
            if json {
                println!("{}", serde_json::to_string_pretty(&findings)?);
            } else {
                print!("{}", doctor::render(&interface, &findings));
            }
            let fail = findings.iter().any(|x| x.level == doctor::Level::Fail);
            Ok(if fail {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Status(a) => {
            show(&a, &api(&a).json("GET", "/api/status")?, cli::print_status);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Backends(a) => {
            show(
                &a,
                &api(&a).json("GET", "/api/backends")?,
                cli::print_backends,
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Stats(a) => {
            show(&a, &api(&a).json("GET", "/api/stats")?, cli::print_stats);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Drain { name, api: a } => change(&a, &format!("/api/backends/{name}/drain")),
        Cmd::Undrain { name, api: a } => change(&a, &format!("/api/backends/{name}/undrain")),
        Cmd::Weight {
            name,
            weight,
            api: a,
        } => change(&a, &format!("/api/backends/{name}/weight?value={weight}")),
        Cmd::Reload(a) => change(&a, "/api/reload"),
        Cmd::Rules { op, api: a } => {
            let c = api(&a);
            match op {
                RulesOp::List => {
                    show(&a, &c.json("GET", "/api/rules")?, cli::print_rules);
                    return Ok(ExitCode::SUCCESS);
                }
                RulesOp::Add { file, replace } => {
                    let path = if replace {
                        "/api/rules?replace=true"
                    } else {
                        "/api/rules"
                    };
                    c.json_body("POST", path, &read_arg_file(&file)?)?
                }
                RulesOp::Del { name } => c.json("DELETE", &format!("/api/rules/{name}"))?,
                RulesOp::Load { file } => {
                    c.json_body("PUT", "/api/rules", &read_arg_file(&file)?)?
                }
            };
            println!("ok");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Cache { op, api: a } => {
            let c = api(&a);
            match op {
                CacheOp::Stats => show(&a, &c.json("GET", "/api/cache")?, cli::print_cache),
                CacheOp::Purge { name, suffix } => {
                    let path = format!(
                        "/api/cache/purge?name={}&suffix={suffix}",
                        cli::query_escape(&name)
                    );
                    let v = c.json("POST", &path)?;
                    if a.json {
                        println!("{v}");
                    } else {
                        println!("purged {}", v["purged"]);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Node { op, api: a } => {
            let c = api(&a);
            match op {
                NodeOp::Status => {
                    show(&a, &c.json("GET", "/api/node")?, cli::print_node);
                    Ok(ExitCode::SUCCESS)
                }
                NodeOp::Drain { timeout, no_wait } => {
                    c.json("POST", "/api/node/drain")?;
                    if no_wait {
                        println!("draining");
                        return Ok(ExitCode::SUCCESS);
                    }
                    Ok(if cli::wait_drained(&c, Duration::from_secs(timeout))? {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    })
                }
                NodeOp::Undrain => {
                    c.json("POST", "/api/node/undrain")?;
                    println!("undrained: announcing after the rise checks");
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Cmd::Top { iterations, api: a } => {
            cli::top(&api(&a), iterations)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn change(a: &ApiArgs, path: &str) -> anyhow::Result<ExitCode> {
    let v = api(a).json("POST", path)?;
    if a.json {
        println!("{v}");
    } else {
        println!("ok");
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(cfg: &Config) -> String {
    // The snapshot shows the pools as the engine builds them, without
    // allocating their packet caches (up to gigabytes) just to describe them.
    let mut shape = cfg.clone();
    shape.pools.values_mut().for_each(|p| p.cache_entries = 0);
    let snap = Snapshot::build(&shape, &mut Registry::default(), &Overrides::default(), 1);
    let mut out = String::new();
    for f in snap.live_frontends() {
        out += &format!(
            "frontend {} -> pool {}\n",
            f.listen,
            snap.pools[usize::from(f.pool)].name
        );
    }
    for p in snap.pools.iter() {
        let members: Vec<String> = p
            .members
            .iter()
            .filter_map(|&id| snap.backend(id))
            .map(|b| format!("{} ({}, weight {})", b.name, b.addr, b.weight))
            .collect();
        let entries = cfg.pool(&p.name).map_or(0, |c| c.cache_entries);
        let cache = if entries > 0 {
            format!(", cache {entries} entries")
        } else {
            String::new()
        };
        out += &format!(
            "pool {}: {}, when all down: {:?}{cache}; {}\n",
            p.name,
            p.policy.name(),
            p.when_all_down,
            members.join(", ")
        );
    }
    out += &format!(
        "engine: io {:?}, workers {}, timeout {} ms\n",
        cfg.engine.io,
        if cfg.engine.workers == 0 {
            match (&cfg.engine.interface, cfg.engine.io) {
                (Some(i), io) if io != dnsrail_engine::config::IoMode::Socket => {
                    format!("one per active receive queue of {i} (AF_XDP), else one per CPU")
                }
                _ => "one per CPU".to_string(),
            }
        } else {
            cfg.engine.workers.to_string()
        },
        cfg.engine.timeout_ms
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_pools_and_frontends() {
        let cfg = Config::parse(
            "[[frontend]]\nlisten = \"192.0.2.53\"\n[[backend]]\nname = \"r1\"\naddress = \"10.0.0.1\"\nweight = 3\n[pool.default]\npolicy = \"qname-hash\"\n",
            "t",
        )
        .unwrap();
        let d = describe(&cfg);
        assert!(d.contains("frontend 192.0.2.53:53 -> pool default"), "{d}");
        let mut big = cfg.clone();
        big.pools.get_mut("default").unwrap().cache_entries = 1 << 24;
        assert!(
            describe(&big).contains("when all down: Servfail, cache 16777216 entries;"),
            "a cache is described, not allocated (9.9 GiB)"
        );
        assert!(
            d.contains(
                "pool default: qname-hash, when all down: Servfail; r1 (10.0.0.1:53, weight 3)"
            ),
            "{d}"
        );
    }

    #[test]
    fn check_refuses_a_rule_that_does_not_compile() {
        let p = std::env::temp_dir().join(format!("dnsrailctl-check-{}.toml", std::process::id()));
        std::fs::write(
            &p,
            "[[frontend]]\nlisten = \"192.0.2.53\"\n[[backend]]\nname = \"r1\"\naddress = \"10.0.0.1\"\n[[rule]]\nname = \"x\"\naction = { pool = \"nope\" }\n",
        )
        .unwrap();
        assert!(Config::load(&p).is_ok(), "the file itself parses");
        let e = serve::load_config(&p).unwrap_err();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(7), Some("rule[0].action")),
            "{e}"
        );
        assert!(e.message.contains("unknown pool"), "{e}");
    }
}
