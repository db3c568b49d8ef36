//! The results of a comparison, the bottleneck named for each sweep, and
//! the markdown written to docs/benchmarks.md (figures, ratios against the
//! targets, the command that reproduces them).

use super::contender::Kind;
use super::cpu::Usage;
use super::tools::{Gun, Load, Perf};
use crate::msg::HitMix;
use dnsrail_engine::control::CacheReport;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One step of a rate sweep.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Step {
    pub offered: u64,
    pub gun: Gun,
    pub usage: Usage,
    /// dnsrail only: the engine's drops by reason during the step.
    pub engine_drops: BTreeMap<String, u64>,
    /// UDP buffer overflows counted by the kernel in the balancer's
    /// namespace during the step.
    #[serde(default)]
    pub udp_overflows: u64,
    pub secs: u64,
    /// The cached contenders: queries that reached the backends during the step.
    #[serde(default)]
    pub backend_queries: Option<u64>,
}

/// The balancer's cost at a fixed offered rate.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fixed {
    pub rate: u64,
    pub secs: u64,
    pub gun: Gun,
    pub usage: Usage,
    /// Balancer CPU (user + system, all threads) per answered query.
    pub us_per_query: Option<f64>,
    /// Its user-space part.
    #[serde(default)]
    pub user_us_per_query: Option<f64>,
    /// The cached contenders: queries that reached the backends meanwhile.
    #[serde(default)]
    pub backend_queries: Option<u64>,
}

impl Fixed {
    /// Share of answered queries that did not reach a backend, percent.
    pub fn hit_pct(&self) -> Option<f64> {
        let answered = self.gun.answered_pps * self.gun.secs_or(self.secs);
        hit_pct(self.backend_queries?, answered)
    }
}

impl Step {
    pub fn hit_pct(&self) -> Option<f64> {
        let answered = self.gun.answered_pps * self.gun.secs_or(self.secs);
        hit_pct(self.backend_queries?, answered)
    }
}

fn hit_pct(backend: u64, answered: f64) -> Option<f64> {
    (answered > 0.0).then(|| (100.0 * (1.0 - backend as f64 / answered)).max(0.0))
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Row {
    pub kind: Kind,
    pub steps: Vec<Step>,
    pub perf: Option<Perf>,
    pub fixed: Option<Fixed>,
    /// Our load driver at a fixed rate, immediate backends.
    pub latency: Option<Load>,
    /// The same against the latency-mix backends.
    pub mix: Option<Load>,
    /// dnsrail with a cache: its own counts at the end of the dnsperf run.
    #[serde(default)]
    pub engine_cache: Option<CacheReport>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Results {
    pub date: String,
    pub command: String,
    pub cpus: usize,
    pub dnsdist_version: Option<String>,
    pub backends: usize,
    pub secs: u64,
    pub perf_secs: u64,
    pub lat_rate: u64,
    pub mix_rate: u64,
    /// (delay ms, fraction of answers delayed) of the mix backends.
    pub mix: (u64, f64),
    /// The cached contenders' query mix, when it ran.
    #[serde(default)]
    pub hit_mix: Option<HitMix>,
    /// The open-loop generator of the sweep and the CPU figure.
    #[serde(default = "kxdpgun")]
    pub open_loop: String,
    pub rows: Vec<Row>,
}

fn kxdpgun() -> String {
    "kxdpgun".into()
}

/// Answered share at or above which a step counts as held.
pub const HELD_PCT: f64 = 99.0;

impl Row {
    /// The highest answered rate of a step with ≥ 99 % answered.
    pub fn max_qps(&self) -> f64 {
        self.steps
            .iter()
            .filter(|s| s.gun.answered_pct >= HELD_PCT)
            .map(|s| s.gun.answered_pps)
            .fold(0.0, f64::max)
    }

    /// What stopped the sweep, from the evidence of the step that stopped
    /// it (or the last step when none failed):
    /// * the generator sent < 95 % of the offered rate → client;
    /// * the engine counted drops for > 0.5 % of what was sent → balancer
    ///   (with the main reason);
    /// * the balancer's process used ≥ 90 % of its core → balancer;
    /// * the kernel dropped > 0.5 % at the balancer's full UDP socket
    ///   buffers → balancer (it did not read in time);
    /// * CPU 0 (generator, switch, backends' XDP) ≥ 95 % busy → kernel on CPU 0;
    /// * else the loss happened where nothing was saturated: kernel path.
    pub fn bottleneck(&self) -> String {
        let Some(last) = self.steps.last() else {
            return "no sweep".into();
        };
        let fail = self.steps.iter().find(|s| s.gun.answered_pct < HELD_PCT);
        let s = fail.unwrap_or(last);
        let cpu = |i: usize| s.usage.cpu_busy_pct.get(i).copied().unwrap_or(0.0);
        let short = s.gun.sent_pps < 0.95 * s.offered as f64;
        let ctx = format!(
            "at {} offered: sent {:.0}, {:.1} % answered; CPU0 {:.0} %, CPU1 {:.0} %",
            k(s.offered as f64),
            s.gun.sent_pps,
            s.gun.answered_pct,
            cpu(0),
            cpu(1)
        );
        if fail.is_none() {
            return if short {
                format!(
                    "client: the generator could not send more, on CPU 0 with the switch ({ctx})"
                )
            } else {
                format!("not reached: every step held ({ctx})")
            };
        }
        let sent = s.gun.sent_pps * s.gun.secs_or(s.secs);
        let dropped: u64 = s.engine_drops.values().sum();
        if self.kind.is_balancer() && dropped as f64 > 0.005 * sent {
            let (why, n) = s
                .engine_drops
                .iter()
                .max_by_key(|(_, n)| **n)
                .expect("non-empty");
            return format!("balancer: the engine dropped {dropped} ({why} {n}) ({ctx})");
        }
        let overflowed = self.kind.is_balancer() && s.udp_overflows as f64 > 0.005 * sent;
        if let Some(p) = s
            .usage
            .proc_pct
            .filter(|p| self.kind.is_balancer() && *p >= 90.0)
        {
            let over = if overflowed {
                format!(
                    ", {} datagrams overflowed its UDP socket buffers",
                    s.udp_overflows
                )
            } else {
                String::new()
            };
            return format!("balancer: its process at {p:.0} % of its core{over} ({ctx})");
        }
        if overflowed {
            return format!(
                "balancer: {} datagrams overflowed its UDP socket buffers ({ctx})",
                s.udp_overflows
            );
        }
        if short {
            return format!(
                "client: the generator fell short of the offered rate, on CPU 0 with the switch ({ctx})"
            );
        }
        if cpu(0) >= 95.0 {
            return format!("kernel on CPU 0: generator, switch and backends share it ({ctx})");
        }
        format!("kernel path: lost with no CPU saturated ({ctx})")
    }

    /// p99 of the fixed-rate run, µs.
    pub fn p99(&self) -> Option<u64> {
        self.latency.as_ref()?.p99_us
    }
}

fn k(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.0} k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> String) -> String {
    v.map_or_else(|| "–".into(), f)
}

/// Thousands separated with thin spaces, as the rest of the docs.
fn num(v: f64) -> String {
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 && c.is_ascii_digit() {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

impl Results {
    pub fn row(&self, kind: Kind) -> Option<&Row> {
        self.rows.iter().find(|r| r.kind == kind)
    }

    /// The contender's name in tables and plots (dnsdist with its version).
    pub fn label(&self, kind: Kind) -> String {
        match (kind, &self.dnsdist_version) {
            (Kind::Dnsdist, Some(v)) => format!("dnsdist {v}"),
            (Kind::DnsdistCache, Some(v)) => format!("dnsdist {v}, packet cache"),
            _ => kind.label().to_string(),
        }
    }

    /// The results section of docs/benchmarks.md, its plots in docs/bench.
    pub fn markdown(&self) -> String {
        self.markdown_linking("bench")
    }

    /// The results section, with links to the plots and results.json in
    /// `plots` (relative to the document).
    pub fn markdown_linking(&self, plots: &str) -> String {
        let mut m = String::new();
        let direct_p99 = self.row(Kind::Direct).and_then(Row::p99);
        let cpu_rate = self
            .rows
            .iter()
            .find_map(|r| r.fixed.as_ref().map(|f| f.rate))
            .unwrap_or(0);
        let _ = writeln!(
            m,
            "Run of {}, {} CPUs, {} backends. Command:\n\n    {}\n",
            self.date, self.cpus, self.backends, self.command
        );
        let plain: Vec<&Row> = self.rows.iter().filter(|r| !r.kind.cached()).collect();
        if !plain.is_empty() {
            let _ = writeln!(
                m,
                "| contender | max qps, ≥ 99 % answered ({}, {} s steps) | limited by | dnsperf qps (avg latency) | p50 / p99 at {} qps | p99 added over direct | balancer CPU µs/query at {} qps |",
                self.open_loop,
                self.secs,
                num(self.lat_rate as f64),
                num(cpu_rate as f64)
            );
            m.push_str("|---|---|---|---|---|---|---|\n");
            for r in plain {
                let added = match (r.kind, r.p99(), direct_p99) {
                    (Kind::Direct, ..) => "–".into(),
                    (_, Some(a), Some(d)) => format!("{} µs", a as i64 - d as i64),
                    _ => "–".into(),
                };
                let _ = writeln!(
                    m,
                    "| {} | **{}** | {} | {} | {} | {} | {} |",
                    self.label(r.kind),
                    num(r.max_qps()),
                    r.bottleneck(),
                    perf_cell(r),
                    latency_cell(r),
                    added,
                    cpu_cell(r)
                );
            }
            m.push('\n');
            m.push_str(&self.targets());
        }
        m.push_str(&self.cached_section(cpu_rate));
        let _ = writeln!(
            m,
            "\nWith the latency-mix backends ({} % of answers after {} ms, the rest at once), our load driver at {} qps:\n",
            self.mix.1 * 100.0,
            self.mix.0,
            num(self.mix_rate as f64)
        );
        m.push_str(
            "| contender | answered / sent | NXDOMAIN | p50 | p99 |\n|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            if let Some(l) = &r.mix {
                let _ = writeln!(
                    m,
                    "| {} | {} / {} | {} | {} µs | {} µs |",
                    self.label(r.kind),
                    num(l.answered as f64),
                    num(l.sent as f64),
                    num(l.nxdomain as f64),
                    opt(l.p50_us, |v| num(v as f64)),
                    opt(l.p99_us, |v| num(v as f64))
                );
            }
        }
        let _ = writeln!(
            m,
            "\nPlots: [answered vs offered]({plots}/answered_vs_offered.png), \
             [latency histogram]({plots}/latency_histogram.png), \
             [CPU per query]({plots}/cpu_per_query.png); raw figures in \
             [{plots}/results.json]({plots}/results.json)."
        );
        m
    }

    /// The cached contenders' table and targets (issue #15), when it ran.
    fn cached_section(&self, cpu_rate: u64) -> String {
        let mut m = String::new();
        let rows: Vec<&Row> = self.rows.iter().filter(|r| r.kind.cached()).collect();
        let Some(mix) = self.hit_mix.filter(|_| !rows.is_empty()) else {
            return m;
        };
        let _ = writeln!(
            m,
            "\nThe cached contenders, each cache {} entries, in front of synthetic backends answering at once (A and AAAA records, TTL 300). Query mix: {} % of queries ask one of {} popular names, the rest names never asked before (one in seven NXDOMAIN). Hits: answered queries that reached no backend (datagrams the backends' sockets received, counted in their namespaces).\n",
            num(f64::from(super::contender::CACHE_ENTRIES)),
            mix.hot_pct,
            num(f64::from(mix.hot_names)),
        );
        let _ = writeln!(
            m,
            "| contender | hits at {} qps | max qps, ≥ 99 % answered ({}, {} s steps) (hits at it) | limited by | dnsperf qps (avg latency) | p50 / p99 at {} qps | balancer CPU µs/query at {} qps |",
            num(cpu_rate as f64),
            self.open_loop,
            self.secs,
            num(self.lat_rate as f64),
            num(cpu_rate as f64)
        );
        m.push_str("|---|---|---|---|---|---|---|\n");
        for r in &rows {
            let pct = |v: Option<f64>| opt(v, |p| format!("{p:.1} %"));
            let best = r
                .steps
                .iter()
                .filter(|s| s.gun.answered_pct >= HELD_PCT)
                .max_by(|a, b| a.gun.answered_pps.total_cmp(&b.gun.answered_pps));
            let _ = writeln!(
                m,
                "| {} | {} | **{}** ({}) | {} | {} | {} | {} |",
                self.label(r.kind),
                pct(r.fixed.as_ref().and_then(Fixed::hit_pct)),
                num(r.max_qps()),
                pct(best.and_then(Step::hit_pct)),
                r.bottleneck(),
                perf_cell(r),
                latency_cell(r),
                cpu_cell(r)
            );
        }
        let Some(d) = self.row(Kind::DnsdistCache) else {
            return m;
        };
        m.push_str("\n| target | measured | ratio | verdict |\n|---|---|---|---|\n");
        for (kind, name) in [
            (Kind::XdpTier, "dnsrail with the XDP answer tier"),
            (Kind::XdpCache, "dnsrail, cache in the workers only"),
        ] {
            if let Some(x) = self.row(kind) {
                m.push_str(&cached_targets(x, d, name));
            }
        }
        m
    }
    /// The targets of issue #6, as ratios.
    pub fn targets(&self) -> String {
        let mut m = String::from("| target | measured | ratio | verdict |\n|---|---|---|---|\n");
        let d = self.row(Kind::Dnsdist);
        let direct_p99 = self.row(Kind::Direct).and_then(Row::p99);
        for (kind, name) in [(Kind::Xdp, "AF_XDP"), (Kind::XdpBusy, "AF_XDP busy poll")] {
            let Some(x) = self.row(kind) else { continue };
            if let Some(d) = d {
                let (a, b) = (x.max_qps(), d.max_qps());
                let r = if b > 0.0 { a / b } else { 0.0 };
                let verdict = if r >= 4.0 {
                    "met".to_string()
                } else if x.bottleneck().starts_with("balancer") {
                    "**not met**".to_string()
                } else {
                    format!(
                        "**not shown**: the sweep stopped at its {}",
                        x.bottleneck().split(':').next().unwrap_or("")
                    )
                };
                let _ = writeln!(
                    m,
                    "| {name} max qps ≥ 4× dnsdist's | {} against {} | {r:.2}× | {verdict} |",
                    num(a),
                    num(b)
                );
                // A spinning worker's CPU is a full core whatever the load.
                let cx = x.fixed.as_ref().and_then(|f| f.us_per_query);
                let cd = d.fixed.as_ref().and_then(|f| f.us_per_query);
                if let (Kind::Xdp, Some(cx), Some(cd)) = (kind, cx, cd) {
                    let _ = writeln!(
                        m,
                        "| {name} CPU per query ≤ 1/5 of dnsdist's | {cx:.2} against {cd:.2} µs | 1/{:.2} | {} |",
                        cd / cx,
                        if cx / cd <= 0.2 { "met" } else { "**not met**" }
                    );
                }
            }
            if let (Some(p), Some(dp)) = (x.p99(), direct_p99) {
                let added = p as i64 - dp as i64;
                let _ = writeln!(
                    m,
                    "| {name}: p99 added over direct ≤ 50 µs | {p} against {dp} µs | {added:+} µs | {} |",
                    if added <= 50 { "met" } else { "**not met**" }
                );
            }
        }
        m
    }
}

/// The cached contenders' targets for dnsrail row `x` (`name`) against
/// dnsdist's `d`.
fn cached_targets(x: &Row, d: &Row, name: &str) -> String {
    let mut m = String::new();
    let cx = x.fixed.as_ref().and_then(|f| f.us_per_query);
    let cd = d.fixed.as_ref().and_then(|f| f.us_per_query);
    if let (Some(cx), Some(cd)) = (cx, cd) {
        let _ = writeln!(
            m,
            "| cached, {name}: CPU per query ≤ 1/3 of dnsdist's | {cx:.2} against {cd:.2} µs | 1/{:.2} | {} |",
            cd / cx,
            if cx * 3.0 <= cd { "met" } else { "**not met**" }
        );
    }
    // Ahead counts when dnsdist stopped at its own limit; when the client
    // stopped dnsrail, the figures are the client's, not ours.
    let (a, b) = (x.max_qps(), d.max_qps());
    let (limit, d_limit) = (x.bottleneck(), d.bottleneck());
    let verdict = if a > b && d_limit.starts_with("balancer") {
        "met: ahead, dnsdist at its own limit".to_string()
    } else if limit.starts_with("client") {
        if d_limit.starts_with("client") {
            "the client is the limit of both (see the table)".to_string()
        } else {
            "the client is the limit (see the table)".to_string()
        }
    } else if limit.starts_with("not reached") {
        "**not shown**: every step held; offer more (`--rates`)".to_string()
    } else if a > b {
        "met: ahead".to_string()
    } else {
        "**not met**".to_string()
    };
    let _ = writeln!(
        m,
        "| cached, {name}: max qps ahead of dnsdist's, or the client named as the limit | {} against {} | {:.2}× | {verdict} |",
        num(a),
        num(b),
        if b > 0.0 { a / b } else { 0.0 }
    );
    m
}

fn perf_cell(r: &Row) -> String {
    opt(r.perf, |p| {
        format!(
            "{} ({} µs, {:.2} % completed)",
            num(p.qps),
            num(p.avg_latency_us),
            p.completed_pct
        )
    })
}

fn latency_cell(r: &Row) -> String {
    opt(r.latency.as_ref(), |l| {
        format!(
            "{} / {} µs",
            opt(l.p50_us, |v| v.to_string()),
            opt(l.p99_us, |v| v.to_string())
        )
    })
}

/// The balancer's CPU per query at the fixed rate (a spinning worker's is a
/// full core whatever the load).
fn cpu_cell(r: &Row) -> String {
    opt(r.fixed.as_ref(), |f| {
        if r.kind == Kind::XdpBusy {
            return format!(
                "spins: {} of a core ({:.1} %)",
                opt(f.usage.proc_pct, |p| format!("{p:.0} %")),
                f.gun.answered_pct
            );
        }
        // Share of one core over the seconds kxdpgun sent.
        let share = f.usage.proc_s.map(|s| 100.0 * s / f.gun.secs_or(f.secs));
        // The XDP program's part, when its run time was counted.
        let prog = f
            .usage
            .prog_s
            .filter(|_| r.kind.is_xdp())
            .map(|p| p * 1e6 / (f.gun.answered_pps * f.gun.secs_or(f.secs)).max(1.0));
        format!(
            "{} (user {}{}; {} of a core; {:.1} % answered)",
            opt(f.us_per_query, |v| format!("**{v:.2}**")),
            opt(f.user_us_per_query, |v| format!("{v:.2}")),
            prog.map_or(String::new(), |p| format!(", XDP program {p:.2}")),
            opt(share, |p| format!("{p:.0} %")),
            f.gun.answered_pct
        )
    })
}

/// Replaces the text between `<!-- NAME:begin -->` and `<!-- NAME:end -->`
/// in `doc` (appends the section when absent).
pub fn splice(doc: &str, name: &str, section: &str) -> String {
    let b_mark = format!("<!-- {name}:begin -->");
    let e_mark = format!("<!-- {name}:end -->");
    match (doc.find(&b_mark), doc.find(&e_mark)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{b_mark}\n{section}{}", &doc[..b], &doc[e..])
        }
        _ => format!("{doc}\n{b_mark}\n{section}{e_mark}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(offered: u64, sent: f64, got: f64, cpus: [f64; 2], proc_pct: f64) -> Step {
        Step {
            offered,
            gun: Gun {
                sent_pps: sent,
                answered_pps: got,
                answered_pct: 100.0 * got / sent,
                secs: 0.0,
            },
            usage: Usage {
                cpu_busy_pct: cpus.to_vec(),
                proc_s: Some(proc_pct / 100.0),
                proc_user_s: Some(proc_pct / 200.0),
                proc_pct: Some(proc_pct),
                prog_s: None,
            },
            engine_drops: BTreeMap::new(),
            udp_overflows: 0,
            secs: 2,
            backend_queries: None,
        }
    }

    fn row(kind: Kind, steps: Vec<Step>) -> Row {
        Row {
            kind,
            steps,
            perf: None,
            fixed: None,
            latency: None,
            mix: None,
            engine_cache: None,
        }
    }

    #[test]
    fn max_qps_takes_held_steps_only() {
        let r = row(
            Kind::Dnsdist,
            vec![
                step(50_000, 50_000.0, 50_000.0, [40.0, 50.0], 50.0),
                step(100_000, 100_000.0, 70_000.0, [60.0, 100.0], 99.0),
            ],
        );
        assert_eq!(r.max_qps(), 50_000.0);
        assert!(
            r.bottleneck().starts_with("balancer: its process at 99 %"),
            "{}",
            r.bottleneck()
        );
    }

    /// A run of 2 CPUs and 2 backends with the default settings.
    fn results(rows: Vec<Row>, hit_mix: Option<HitMix>) -> Results {
        Results {
            date: "2026-11-22".into(),
            command: "scripts/bench.sh".into(),
            cpus: 2,
            dnsdist_version: Some("1.7.3".into()),
            backends: 2,
            secs: 2,
            perf_secs: 3,
            lat_rate: 20_000,
            mix_rate: 5_000,
            mix: (20, 0.2),
            hit_mix,
            open_loop: "kxdpgun".into(),
            rows,
        }
    }

    /// Asserts that `r`'s bottleneck text starts with `start` and holds `part`.
    fn says(r: &Row, start: &str, part: &str) {
        let b = r.bottleneck();
        assert!(
            b.starts_with(start) && b.contains(part),
            "expected {start:?}…{part:?} in {b:?}"
        );
    }

    #[test]
    fn bottleneck_names_client_engine_drops_and_kernel() {
        let short = step(400_000, 200_000.0, 200_000.0, [100.0, 30.0], 30.0);
        says(&row(Kind::Xdp, vec![short]), "client", "");
        let held = step(50_000, 50_000.0, 50_000.0, [30.0, 30.0], 30.0);
        says(&row(Kind::Xdp, vec![held]), "not reached", "");

        let mut s = step(200_000, 200_000.0, 150_000.0, [100.0, 60.0], 60.0);
        s.engine_drops.insert("ring_full".into(), 90_000);
        says(
            &row(Kind::Xdp, vec![s.clone()]),
            "balancer: ",
            "ring_full 90000",
        );
        // The same loss without engine drops, CPU 0 saturated: the kernel.
        s.engine_drops.clear();
        says(&row(Kind::Xdp, vec![s.clone()]), "kernel on CPU 0", "");
        s.udp_overflows = 40_000;
        says(
            &row(Kind::Dnsdist, vec![s]),
            "balancer: ",
            "40000 datagrams overflowed",
        );
        let quiet = step(200_000, 200_000.0, 150_000.0, [50.0, 50.0], 0.0);
        says(&row(Kind::Direct, vec![quiet]), "kernel path", "");
        assert_eq!(row(Kind::Direct, vec![]).bottleneck(), "no sweep");
    }

    #[test]
    fn targets_as_ratios() {
        let mut x = row(
            Kind::Xdp,
            vec![step(400_000, 300_000.0, 300_000.0, [100.0, 40.0], 40.0)],
        );
        x.fixed = Some(Fixed {
            us_per_query: Some(2.0),
            ..Fixed::default()
        });
        x.latency = Some(Load {
            p99_us: Some(130),
            ..Load::default()
        });
        let mut d = row(
            Kind::Dnsdist,
            vec![step(100_000, 100_000.0, 60_000.0, [60.0, 100.0], 99.0)],
        );
        d.steps
            .insert(0, step(50_000, 50_000.0, 50_000.0, [40.0, 60.0], 60.0));
        d.fixed = Some(Fixed {
            us_per_query: Some(12.0),
            ..Fixed::default()
        });
        let mut direct = row(Kind::Direct, vec![]);
        direct.latency = Some(Load {
            p99_us: Some(100),
            ..Load::default()
        });
        let r = results(vec![direct, x, d], None);
        let t = r.targets();
        assert!(
            t.contains("| AF_XDP max qps ≥ 4× dnsdist's | 300 000 against 50 000 | 6.00× | met |"),
            "{t}"
        );
        assert!(t.contains("| 1/6.00 | met |"), "{t}");
        assert!(
            t.contains(
                "| AF_XDP: p99 added over direct ≤ 50 µs | 130 against 100 µs | +30 µs | met |"
            ),
            "{t}"
        );
        let md = r.markdown();
        assert!(md.contains("| dnsdist 1.7.3 | **50 000** |"), "{md}");
        assert!(md.contains("scripts/bench.sh"));
    }

    #[test]
    fn cached_pair_has_its_own_table_hit_rates_and_targets() {
        let fixed = |us: f64, backend: u64| Fixed {
            rate: 50_000,
            secs: 5,
            gun: Gun {
                sent_pps: 50_000.0,
                answered_pps: 50_000.0,
                answered_pct: 100.0,
                secs: 0.0,
            },
            us_per_query: Some(us),
            backend_queries: Some(backend),
            ..Fixed::default()
        };
        let mut x = row(
            Kind::XdpCache,
            vec![step(100_000, 100_000.0, 100_000.0, [100.0, 40.0], 40.0)],
        );
        x.steps[0].backend_queries = Some(19_000);
        // 250 000 answered at 50 000 qps for 5 s, 25 000 reached a backend.
        x.fixed = Some(fixed(3.0, 25_000));
        let mut d = row(
            Kind::DnsdistCache,
            vec![step(100_000, 100_000.0, 80_000.0, [60.0, 100.0], 99.0)],
        );
        d.fixed = Some(fixed(10.0, 26_000));
        let plain = row(
            Kind::Xdp,
            vec![step(50_000, 50_000.0, 50_000.0, [30.0, 30.0], 30.0)],
        );
        // The tier: 4.0 µs a query of which the XDP program ran 0.25 s over
        // 250 000 queries (1 µs).
        let mut t = row(
            Kind::XdpTier,
            vec![step(100_000, 100_000.0, 100_000.0, [100.0, 20.0], 20.0)],
        );
        let mut tf = fixed(4.0, 25_000);
        tf.usage.prog_s = Some(0.25);
        t.fixed = Some(tf);
        let mix = HitMix {
            hot_pct: 90,
            hot_names: 1000,
        };
        let r = results(vec![plain, x, d, t], Some(mix));
        let md = r.markdown();
        // The plain table holds the plain contenders only.
        let plain_table = &md[..md.find("The cached contenders").unwrap()];
        assert!(plain_table.contains("| dnsrail AF_XDP |"), "{md}");
        assert!(!plain_table.contains("packet cache"), "{md}");
        assert!(
            md.contains("90 % of queries ask one of 1 000 popular names"),
            "{md}"
        );
        assert!(
            md.contains("| dnsrail AF_XDP, packet cache | 90.0 % | **100 000** (90.5 %) |"),
            "{md}"
        );
        assert!(
            md.contains("| dnsdist 1.7.3, packet cache | 89.6 % | **0** (–) |"),
            "{md}"
        );
        assert!(
            md.contains("| cached, dnsrail, cache in the workers only: CPU per query ≤ 1/3 of dnsdist's | 3.00 against 10.00 µs | 1/3.33 | met |"),
            "{md}"
        );
        assert!(
            md.contains("| cached, dnsrail with the XDP answer tier: CPU per query ≤ 1/3 of dnsdist's | 4.00 against 10.00 µs | 1/2.50 | **not met** |"),
            "{md}"
        );
        assert!(md.contains(", XDP program 1.00;"), "{md}");
        assert!(
            md.contains("| 100 000 against 0 |") && md.contains("met: ahead"),
            "{md}"
        );
        // Without the pair, no section.
        let mut r = r;
        r.rows.retain(|row| !row.kind.cached());
        assert!(!r.markdown().contains("The cached contenders"));
    }

    #[test]
    fn splice_replaces_between_markers_or_appends() {
        let doc = "# B\n<!-- compare:begin -->\nold\n<!-- compare:end -->\ntail\n";
        assert_eq!(
            splice(doc, "compare", "new\n"),
            "# B\n<!-- compare:begin -->\nnew\n<!-- compare:end -->\ntail\n"
        );
        let added = splice("# B\n", "compare", "new\n");
        assert!(added.ends_with("<!-- compare:begin -->\nnew\n<!-- compare:end -->\n"));
        assert_eq!(
            splice(&added, "compare", "newer\n")
                .matches("compare:begin")
                .count(),
            1
        );
        // Another section leaves this one alone.
        let both = splice(&added, "compare-cache", "cached\n");
        assert!(both.contains("<!-- compare:begin -->\nnew\n<!-- compare:end -->"));
        assert!(
            both.ends_with("<!-- compare-cache:begin -->\ncached\n<!-- compare-cache:end -->\n")
        );
    }
}
