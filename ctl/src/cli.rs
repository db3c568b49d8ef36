//! The operator commands (`status`, `backends`, `drain` …): HTTP calls to a
//! running `dnsrailctl serve`, printed to fit a terminal or as JSON.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

pub struct Api {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

impl Api {
    /// One HTTP/1.1 request with a text body; returns (status, body).
    pub fn call_body(
        &self,
        method: &str,
        path: &str,
        body_out: &str,
    ) -> anyhow::Result<(u16, String)> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(3))
            .with_context(|| format!("cannot reach dnsrailctl serve at {}", self.addr))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body_out}",
            self.addr,
            body_out.len()
        )?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .context("malformed HTTP response")?;
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        };
        Ok((status, body))
    }

    pub fn json(&self, method: &str, path: &str) -> anyhow::Result<Value> {
        self.json_body(method, path, "")
    }

    pub fn json_body(&self, method: &str, path: &str, out: &str) -> anyhow::Result<Value> {
        let (status, body) = self.call_body(method, path, out)?;
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
        if !(200..300).contains(&status) {
            let msg = v
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            bail!("{msg} (HTTP {status})");
        }
        Ok(v)
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn u(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

pub fn print_status(v: &Value) {
    let e = &v["engine"];
    let h = &e["hello"];
    println!(
        "engine: {} (pid {}, io {}, generation {}), restarts {}",
        if e["attached"].as_bool() == Some(true) {
            "attached"
        } else {
            "NOT ATTACHED"
        },
        h["pid"],
        h["io"].as_str().unwrap_or("-"),
        h["generation"],
        e["restarts"]
    );
    println!(
        "ctl: version {}, up {:.0} s, config {}",
        v["ctl"]["version"].as_str().unwrap_or("-"),
        v["ctl"]["uptime_s"].as_f64().unwrap_or(0.0),
        v["ctl"]["config"].as_str().unwrap_or("-")
    );
    println!("{}", node_line(&v["node"]));
}

/// One line for the node: health, drain, announcement.
fn node_line(n: &Value) -> String {
    if n.is_null() {
        return "node: not checked yet".into();
    }
    let mut line = format!(
        "node: {}, {}",
        n["state"].as_str().unwrap_or("-"),
        n["drain"].as_str().unwrap_or("-")
    );
    let problems: Vec<&str> = n["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !problems.is_empty() {
        line += &format!(" ({})", problems.join("; "));
    }
    let a = &n["announce"];
    if a.is_null() {
        line += "; not announced (no [announce])";
    } else {
        let routes = a["routes"].as_u64().map_or("?".into(), |r| r.to_string());
        line += &format!(
            "; {} {} (BIRD holds {routes} route(s): {})",
            a["desired"].as_str().unwrap_or("-"),
            a["vips"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
            a["bird"].as_str().unwrap_or("-")
        );
    }
    line
}

pub fn print_node(v: &Value) {
    println!("{}", node_line(v));
    if !v.is_null() {
        println!(
            "frontend qps {:.0}, in flight {}, health unchanged for {:.0} s",
            v["frontend_qps"].as_f64().unwrap_or(0.0),
            u(v, "in_flight"),
            v["since_s"].as_f64().unwrap_or(0.0)
        );
    }
}

/// Polls `/api/node` until the drain completes: true when drained.
pub fn wait_drained(api: &Api, timeout: Duration) -> anyhow::Result<bool> {
    let end = std::time::Instant::now() + timeout;
    let mut said = String::new();
    let mut last: Option<std::time::Instant> = None;
    loop {
        let v = api.json("GET", "/api/node")?;
        let drain = v["drain"].as_str().unwrap_or("-");
        if drain == "drained" {
            println!("drained");
            return Ok(true);
        }
        // Before the loop's next check the view still shows the node active.
        if drain == "active" && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let now = format!(
            "draining: {} (BIRD: {}), {:.0} qps still arriving, {} in flight",
            v["announce"]["desired"].as_str().unwrap_or("-"),
            v["announce"]["bird"].as_str().unwrap_or("-"),
            v["frontend_qps"].as_f64().unwrap_or(0.0),
            u(&v, "in_flight")
        );
        // A line when the picture changes, at most one a second.
        if now != said && last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            println!("{now}");
            said = now;
            last = Some(std::time::Instant::now());
        }
        if std::time::Instant::now() >= end {
            println!(
                "not drained after {} s (the drain stays)",
                timeout.as_secs()
            );
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn print_backends(v: &Value) {
    println!(
        "{:<16} {:<24} {:<7} {:<8} {:<6} {:>6} {:>12} {:>12} {:>9}  last probe",
        "backend", "address", "health", "why", "state", "weight", "sent", "answered", "timeouts"
    );
    for b in v.as_array().into_iter().flatten() {
        let state = if b["drained"].as_bool() == Some(true) {
            "drain"
        } else if b["usable"].as_bool() == Some(true) {
            "active"
        } else {
            "idle"
        };
        // Why it is in its state: the engine's ejection while it lasts,
        // else the reason of the last transition (health, passive, …).
        let why = b["ejected"]
            .as_str()
            .or_else(|| b["reason"].as_str())
            .unwrap_or("-");
        println!(
            "{:<16} {:<24} {:<7} {:<8} {:<6} {:>6} {:>12} {:>12} {:>9}  {}",
            b["name"].as_str().unwrap_or("-"),
            b["address"].as_str().unwrap_or("-"),
            b["health"].as_str().unwrap_or("-"),
            why,
            state,
            u(b, "weight"),
            u(b, "sent"),
            u(b, "answered"),
            u(b, "timeouts"),
            b["last_probe"].as_str().unwrap_or("-")
        );
    }
}

/// Latency quantile from bucket counts and their upper bounds.
fn quantile(counts: &[u64], bounds: &[u64], q: f64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil() as u64;
    let mut acc = 0;
    for (i, c) in counts.iter().enumerate() {
        acc += c;
        if acc >= rank {
            return bounds.get(i).copied();
        }
    }
    None
}

fn latency_sum(v: &Value) -> (Vec<u64>, Vec<u64>) {
    let bounds: Vec<u64> = v["latency_bounds_us"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    let mut sum = vec![0u64; bounds.len()];
    for b in v["backends"].as_array().into_iter().flatten() {
        for (i, c) in b["latency"].as_array().into_iter().flatten().enumerate() {
            if let Some(s) = sum.get_mut(i) {
                *s += c.as_u64().unwrap_or(0);
            }
        }
    }
    (sum, bounds)
}

pub fn print_cache(v: &Value) {
    println!(
        "{:<20} {:>10} {:>10} {:>12} {:>12} {:>12} {:>10} {:>8}",
        "pool", "entries", "capacity", "hits", "in XDP", "misses", "stale", "hit %"
    );
    for c in v.as_array().into_iter().flatten() {
        let (hits, misses) = (u(c, "hits"), u(c, "misses"));
        let rate = if hits + misses > 0 {
            format!("{:.1}", 100.0 * hits as f64 / (hits + misses) as f64)
        } else {
            "-".into()
        };
        // Hits include the XDP answer tier's ("in XDP").
        println!(
            "{:<20} {:>10} {:>10} {:>12} {:>12} {:>12} {:>10} {:>8}",
            c["pool"].as_str().unwrap_or("-"),
            u(c, "entries"),
            u(c, "capacity"),
            hits,
            u(c, "xdp_hits"),
            misses,
            u(c, "stale_hits"),
            rate
        );
    }
}

/// `s` for a URL query value: every byte but unreserved ones as %XX.
pub fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn print_rules(v: &Value) {
    println!("{:<40} {:<8} {:>12}", "rule", "source", "hits");
    for r in v.as_array().into_iter().flatten() {
        println!(
            "{:<40} {:<8} {:>12}",
            r["name"].as_str().unwrap_or("-"),
            r["source"].as_str().unwrap_or("-"),
            u(r, "hits")
        );
    }
}

pub fn print_stats(v: &Value) {
    println!(
        "queries {}  answers {}  local replies {}  in flight {}  io {}  workers {}",
        u(v, "queries"),
        u(v, "answers"),
        u(v, "local_replies"),
        u(v, "in_flight"),
        v["io"].as_str().unwrap_or("-"),
        u(v, "workers")
    );
    let drops: Vec<String> = v["drops"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, c)| c.as_u64().unwrap_or(0) > 0)
        .map(|(k, c)| format!("{k}={c}"))
        .collect();
    println!(
        "drops: {}",
        if drops.is_empty() {
            "none".into()
        } else {
            drops.join(" ")
        }
    );
    let (sum, bounds) = latency_sum(v);
    let p = |q| quantile(&sum, &bounds, q).map_or("-".into(), |x| format!("{x}us"));
    println!("latency p50 {} p90 {} p99 {}", p(0.5), p(0.9), p(0.99));
}

/// `top`: refreshed every second; rates from the difference of two reports.
pub fn top(api: &Api, iterations: Option<u64>) -> anyhow::Result<()> {
    let mut last: Option<(Value, std::time::Instant)> = None;
    let mut n = 0;
    loop {
        let v = api.json("GET", "/api/stats")?;
        let b = api.json("GET", "/api/backends")?;
        let now = std::time::Instant::now();
        print!("\x1b[H\x1b[2J");
        if let Some((old, t)) = &last {
            let dt = now.duration_since(*t).as_secs_f64().max(1e-3);
            let rate = |k: &str| (u(&v, k).saturating_sub(u(old, k))) as f64 / dt;
            println!(
                "dnsrail top — qps in {:.0}  out {:.0}  in flight {}",
                rate("queries"),
                rate("answers"),
                u(&v, "in_flight")
            );
            // Latency over the last second only.
            let (now_sum, bounds) = latency_sum(&v);
            let (old_sum, _) = latency_sum(old);
            let d: Vec<u64> = now_sum
                .iter()
                .zip(old_sum.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a.saturating_sub(*b))
                .collect();
            let p = |q| quantile(&d, &bounds, q).map_or("-".into(), |x| format!("{x}us"));
            println!(
                "latency (last second) p50 {} p90 {} p99 {}\n",
                p(0.5),
                p(0.9),
                p(0.99)
            );
        } else {
            println!("dnsrail top — collecting…\n");
        }
        print_backends(&b);
        std::io::stdout().flush()?;
        last = Some((v, now));
        n += 1;
        if iterations.is_some_and(|max| n >= max) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
        assert_eq!(dechunk("zz\r\n"), "");
    }

    #[test]
    fn quantiles_use_bucket_bounds() {
        let counts = [0, 90, 0, 10];
        let bounds = [10, 20, 40, 80];
        assert_eq!(quantile(&counts, &bounds, 0.5), Some(20));
        assert_eq!(quantile(&counts, &bounds, 0.99), Some(80));
        assert_eq!(quantile(&[0, 0], &bounds, 0.5), None);
    }
}
