//! CPU accounting from /proc: a process's user + system time (all its
//! threads) and each CPU's busy time, so a step can say who was saturated.

use std::time::Instant;

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// (user, system) CPU seconds of `pid`, from `/proc/PID/stat`.
pub fn process_seconds(pid: u32) -> Option<(f64, f64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ticks(&s).map(|(u, k)| (u as f64 / clk_tck(), k as f64 / clk_tck()))
}

/// (utime, stime) (fields 14 and 15) of a `/proc/PID/stat` line; the
/// command name in parentheses may itself hold spaces and parentheses.
pub fn parse_stat_ticks(line: &str) -> Option<(u64, u64)> {
    let rest = &line[line.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    Some((f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?))
}

/// Busy and total ticks per CPU (`cpuN` lines of /proc/stat; busy excludes
/// idle and iowait).
pub fn parse_proc_stat(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total - idle, total)
        })
        .collect()
}

/// (program id, run_time_ns) of a `/proc/PID/fdinfo/N` text when the
/// descriptor is a BPF program (the kernel counts run time while
/// `kernel.bpf_stats_enabled` is 1).
pub fn parse_prog_fdinfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
    };
    Some((field("prog_id:")?, field("run_time_ns:")?))
}

/// Nanoseconds the BPF programs `pid` holds have run: for dnsrail over
/// AF_XDP, its XDP program, which runs in the kernel's receive path and is
/// not the process's CPU time.
pub fn bpf_run_ns(pid: u32) -> Option<u64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fdinfo")).ok()?;
    let mut progs = std::collections::BTreeMap::new();
    for e in dir.flatten() {
        if let Some((id, ns)) = std::fs::read_to_string(e.path())
            .ok()
            .as_deref()
            .and_then(parse_prog_fdinfo)
        {
            progs.insert(id, ns);
        }
    }
    (!progs.is_empty()).then(|| progs.values().sum())
}

/// A sample to measure an interval against.
pub struct Sample {
    at: Instant,
    cpus: Vec<(u64, u64)>,
    proc_s: Option<(f64, f64)>,
    prog_ns: Option<u64>,
    pid: Option<u32>,
}

/// What an interval cost.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Busy percent of each CPU.
    pub cpu_busy_pct: Vec<f64>,
    /// The process's CPU seconds and percent of one core.
    pub proc_s: Option<f64>,
    /// The part of `proc_s` spent in user space (the rest is the kernel's,
    /// in the process's system calls).
    #[serde(default)]
    pub proc_user_s: Option<f64>,
    pub proc_pct: Option<f64>,
    /// Seconds the process's BPF programs ran (its XDP program), not in
    /// `proc_s`.
    #[serde(default)]
    pub prog_s: Option<f64>,
}

impl Sample {
    pub fn now(pid: Option<u32>) -> Sample {
        Sample {
            at: Instant::now(),
            cpus: parse_proc_stat(&std::fs::read_to_string("/proc/stat").unwrap_or_default()),
            proc_s: pid.and_then(process_seconds),
            prog_ns: pid.and_then(bpf_run_ns),
            pid,
        }
    }

    /// What the interval since the sample cost. Percentages are over
    /// `active_s` seconds when given, else over the wall-clock interval: a
    /// load generator that sends for 3 s inside a 5 s process lifetime (its
    /// set-up) would otherwise show a saturated CPU as 60 % busy. Capped at
    /// 100 %.
    pub fn usage_during(&self, active_s: Option<f64>) -> Usage {
        let end = Sample::now(self.pid);
        let elapsed = self.at.elapsed().as_secs_f64().max(1e-6);
        let wall = active_s.map_or(elapsed, |a| a.clamp(1e-6, elapsed));
        let scale = elapsed / wall;
        let (proc_s, proc_user_s) = match (self.proc_s, end.proc_s) {
            (Some(a), Some(b)) => (Some(b.0 + b.1 - a.0 - a.1), Some(b.0 - a.0)),
            _ => (None, None),
        };
        Usage {
            cpu_busy_pct: self
                .cpus
                .iter()
                .zip(&end.cpus)
                .map(|(a, b)| {
                    let t = b.1.saturating_sub(a.1).max(1) as f64;
                    (100.0 * scale * b.0.saturating_sub(a.0) as f64 / t).min(100.0)
                })
                .collect(),
            proc_s,
            proc_user_s,
            // At most every CPU (the scaled figure can overshoot).
            proc_pct: proc_s.map(|s| (100.0 * s / wall).min(100.0 * self.cpus.len().max(1) as f64)),
            prog_s: match (self.prog_ns, end.prog_ns) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e9),
                _ => None,
            },
        }
    }
}

/// The `Udp:` counters of a `/proc/net/snmp` text (name → value).
pub fn parse_udp_snmp(text: &str) -> std::collections::BTreeMap<String, u64> {
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return Default::default();
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .skip(1)
        .filter_map(|(n, v)| Some((n.to_string(), v.parse().ok()?)))
        .collect()
}

/// The UDP counters of namespace `ns` (its /proc/net/snmp; empty when it
/// cannot be read).
fn udp_snmp(ns: &str) -> std::collections::BTreeMap<String, u64> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "cat", "/proc/net/snmp"])
        .output();
    parse_udp_snmp(
        &out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default(),
    )
}

/// The UDP receive and send buffer overflows of namespace `ns`: datagrams
/// the kernel dropped because a socket was not read (or drained) in time.
pub fn udp_overflows(ns: &str) -> u64 {
    let m = udp_snmp(ns);
    m.get("RcvbufErrors").copied().unwrap_or(0) + m.get("SndbufErrors").copied().unwrap_or(0)
}

/// UDP datagrams delivered to sockets in namespace `ns` (its InDatagrams).
/// On a backend host of the cached contenders: the queries its synthetic backend
/// received (the XDP responder's never reach a socket).
pub fn udp_in(ns: &str) -> u64 {
    udp_snmp(ns).get("InDatagrams").copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_counters() {
        let t = "Ip: Forwarding DefaultTTL\nIp: 1 64\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\nUdp: 10 1 5 9 4 1 0 0 0\nUdpLite: InDatagrams\nUdpLite: 0\n";
        let m = parse_udp_snmp(t);
        assert_eq!(m["RcvbufErrors"], 4);
        assert_eq!(m["InDatagrams"], 10);
        assert!(parse_udp_snmp("Ip: x\n").is_empty());
    }

    #[test]
    fn stat_line_with_awkward_name() {
        let l =
            "4242 (dns (x) rail) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 1000 0 0";
        assert_eq!(parse_stat_ticks(l), Some((250, 75)));
        assert_eq!(parse_stat_ticks("garbage"), None);
        assert_eq!(parse_stat_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn proc_stat_per_cpu() {
        let t = "cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 5 0 5 40 0 0 0 0 0 0\ncpu1 5 0 5 30 10 0 0 0 0 0\nintr 1 2\n";
        assert_eq!(parse_proc_stat(t), vec![(10, 50), (10, 50)]);
    }

    #[test]
    fn own_process_is_measured() {
        let s = Sample::now(Some(std::process::id()));
        let t0 = Instant::now();
        let mut x = 0u64;
        while t0.elapsed().as_millis() < 50 {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let u = s.usage_during(None);
        assert!(u.proc_s.is_some() && u.proc_pct.is_some(), "{u:?} {x}");
        assert!(!u.cpu_busy_pct.is_empty());
    }
}
