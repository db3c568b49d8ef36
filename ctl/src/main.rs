//! `dnsrailctl`: the control process and CLI of dnsrail.
//!
//! For now it validates configuration files and shows what the engine would
//! build from them; `serve` (supervision, health checks, TCP/53, API) comes
//! with the control-process work.

use clap::{Parser, Subcommand};
use dnsrail_engine::config::Config;
use dnsrail_engine::snapshot::{Overrides, Registry, Snapshot};
use std::path::PathBuf;
use std::process::ExitCode;

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

#[derive(Subcommand)]
enum Cmd {
    /// Validate a configuration file and print the frontends, pools and
    /// backends the engine would run with.
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    match Args::parse().cmd {
        Cmd::Check { config } => match Config::load(&config) {
            Ok(cfg) => {
                print!("{}", describe(&cfg));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("dnsrailctl: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn describe(cfg: &Config) -> String {
    let snap = Snapshot::build(cfg, &mut Registry::default(), &Overrides::default(), 1);
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
        out += &format!(
            "pool {}: {}, when all down: {:?}; {}\n",
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
            "one per CPU".to_string()
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
        assert!(
            d.contains(
                "pool default: qname-hash, when all down: Servfail; r1 (10.0.0.1:53, weight 3)"
            ),
            "{d}"
        );
    }
}
