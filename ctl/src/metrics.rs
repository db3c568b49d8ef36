//! `/metrics`: the engine's report and ctl's own state in the Prometheus text
//! exposition format (version 0.0.4).

use std::collections::HashMap;
use std::fmt::Write;

use dnsrail_engine::control::Report;

use crate::health::Health;

/// ctl's side of the metrics.
pub struct CtlView<'a> {
    pub engine_up: bool,
    pub engine_restarts: u64,
    pub health: &'a HashMap<String, Health>,
    pub passive: &'a HashMap<String, crate::health::Passive>,
    pub health_checks: &'a HashMap<(String, bool), u64>,
    /// (backend, "up"/"down", reason) → transitions.
    pub transitions: &'a HashMap<(String, &'static str, &'static str), u64>,
    pub tcp: &'a crate::tcp::TcpCounters,
    /// The node's health and announcement (`None` before the first check).
    pub node: Option<&'a crate::announce::NodeView>,
}

/// Escapes a label value (backslash, quote, newline).
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The node's series: health, drain and, with `[announce]`, what BIRD
/// holds.
fn node(o: &mut String, n: Option<&crate::announce::NodeView>) {
    let Some(n) = n else { return };
    head(
        o,
        "dnsrail_node_healthy",
        "gauge",
        "The node may serve: engine forwarding, enough usable backends per announced pool, not drained.",
    );
    let _ = writeln!(o, "dnsrail_node_healthy {}", u8::from(n.healthy));
    head(
        o,
        "dnsrail_node_drain",
        "gauge",
        "Drain state: 1 for the current one of active, draining, drained.",
    );
    for (s, d) in [
        ("active", crate::node::Drain::Active),
        ("draining", crate::node::Drain::Draining),
        ("drained", crate::node::Drain::Drained),
    ] {
        let _ = writeln!(
            o,
            "dnsrail_node_drain{{state=\"{s}\"}} {}",
            u8::from(n.drain == d)
        );
    }
    let Some(a) = &n.announce else { return };
    head(
        o,
        "dnsrail_announce_desired_routes",
        "gauge",
        "VIP routes the node's health asks BIRD to announce.",
    );
    let want = if a.desired == "announce" {
        a.vips.len()
    } else {
        0
    };
    let _ = writeln!(o, "dnsrail_announce_desired_routes {want}");
    head(
        o,
        "dnsrail_announce_routes",
        "gauge",
        "VIP routes BIRD holds, read back from BIRD (-1: BIRD did not answer).",
    );
    let _ = writeln!(
        o,
        "dnsrail_announce_routes {}",
        a.routes.map_or(-1, |r| r as i64)
    );
    head(
        o,
        "dnsrail_announce_changes_total",
        "counter",
        "Announcements and withdrawals BIRD accepted.",
    );
    let _ = writeln!(
        o,
        "dnsrail_announce_changes_total{{action=\"announce\"}} {}",
        a.announces
    );
    let _ = writeln!(
        o,
        "dnsrail_announce_changes_total{{action=\"withdraw\"}} {}",
        a.withdraws
    );
    head(
        o,
        "dnsrail_announce_errors_total",
        "counter",
        "Failed exchanges with BIRD (unreachable, refused configuration, protocol missing).",
    );
    let _ = writeln!(o, "dnsrail_announce_errors_total {}", a.errors);
}

pub fn render(r: Option<&Report>, v: &CtlView<'_>) -> String {
    let mut o = String::new();
    head(
        &mut o,
        "dnsrail_ctl_up",
        "gauge",
        "The control process is running.",
    );
    o += "dnsrail_ctl_up 1\n";
    head(
        &mut o,
        "dnsrail_engine_up",
        "gauge",
        "ctl is attached to a running engine.",
    );
    let _ = writeln!(
        o,
        "dnsrail_engine_up {}",
        u8::from(v.engine_up && r.is_some())
    );
    head(
        &mut o,
        "dnsrail_engine_restarts_total",
        "counter",
        "Engine restarts by ctl.",
    );
    let _ = writeln!(o, "dnsrail_engine_restarts_total {}", v.engine_restarts);

    node(&mut o, v.node);
    head(
        &mut o,
        "dnsrail_backend_health_up",
        "gauge",
        "Health check state (1 up, 0 down).",
    );
    let mut names: Vec<&String> = v.health.keys().collect();
    names.sort();
    for n in &names {
        let _ = writeln!(
            o,
            "dnsrail_backend_health_up{{backend=\"{}\"}} {}",
            esc(n),
            u8::from(v.health[*n].up)
        );
    }
    head(
        &mut o,
        "dnsrail_backend_suspect",
        "gauge",
        "Passive health: timeouts and SERVFAIL were at least half of recent queries.",
    );
    let mut ps: Vec<_> = v.passive.iter().collect();
    ps.sort_by(|a, b| a.0.cmp(b.0));
    for (n, p) in ps {
        let _ = writeln!(
            o,
            "dnsrail_backend_suspect{{backend=\"{}\"}} {}",
            esc(n),
            u8::from(p.suspect)
        );
    }
    head(
        &mut o,
        "dnsrail_health_checks_total",
        "counter",
        "Health probes by result.",
    );
    let mut hc: Vec<_> = v.health_checks.iter().collect();
    hc.sort();
    for ((n, ok), c) in hc {
        let res = if *ok { "ok" } else { "fail" };
        let _ = writeln!(
            o,
            "dnsrail_health_checks_total{{backend=\"{}\",result=\"{res}\"}} {c}",
            esc(n)
        );
    }
    head(
        &mut o,
        "dnsrail_backend_transitions_total",
        "counter",
        "Backend state changes by direction and reason: health, passive (probes confirmed a suspect), icmp or silent (the engine took it out), operator (drain).",
    );
    let mut tr: Vec<_> = v.transitions.iter().collect();
    tr.sort();
    for ((n, to, why), c) in tr {
        let _ = writeln!(
            o,
            "dnsrail_backend_transitions_total{{backend=\"{}\",to=\"{to}\",reason=\"{why}\"}} {c}",
            esc(n)
        );
    }
    head(
        &mut o,
        "dnsrail_tcp_connections_total",
        "counter",
        "TCP/53 client connections accepted.",
    );
    let _ = writeln!(
        o,
        "dnsrail_tcp_connections_total {}",
        v.tcp.connections.get()
    );
    head(
        &mut o,
        "dnsrail_tcp_queries_total",
        "counter",
        "DNS queries received over TCP/53.",
    );
    let _ = writeln!(o, "dnsrail_tcp_queries_total {}", v.tcp.queries.get());
    head(
        &mut o,
        "dnsrail_tcp_answers_total",
        "counter",
        "DNS answers returned over TCP/53.",
    );
    let _ = writeln!(o, "dnsrail_tcp_answers_total {}", v.tcp.answers.get());
    head(
        &mut o,
        "dnsrail_tcp_servfail_total",
        "counter",
        "TCP/53 queries answered SERVFAIL by ctl (no usable backend, backend connection failed, too many pending).",
    );
    let _ = writeln!(o, "dnsrail_tcp_servfail_total {}", v.tcp.servfail.get());
    head(
        &mut o,
        "dnsrail_tcp_errors_total",
        "counter",
        "TCP/53 connections closed for an error, by reason.",
    );
    for (reason, c) in v.tcp.errors() {
        let _ = writeln!(o, "dnsrail_tcp_errors_total{{reason=\"{reason}\"}} {c}");
    }

    let Some(r) = r else { return o };
    head(
        &mut o,
        "dnsrail_queries_total",
        "counter",
        "UDP queries received, by frontend.",
    );
    for f in &r.frontends {
        let _ = writeln!(
            o,
            "dnsrail_queries_total{{frontend=\"{}\",pool=\"{}\"}} {}",
            esc(&f.listen),
            esc(&f.pool),
            f.queries
        );
    }
    head(
        &mut o,
        "dnsrail_answers_total",
        "counter",
        "Answers returned to clients.",
    );
    let _ = writeln!(o, "dnsrail_answers_total {}", r.answers);
    head(
        &mut o,
        "dnsrail_answers_cross_worker_total",
        "counter",
        "Answers completed by another worker than the one that forwarded the query (answer on another queue).",
    );
    let _ = writeln!(
        o,
        "dnsrail_answers_cross_worker_total {}",
        r.answers_cross_worker
    );
    head(
        &mut o,
        "dnsrail_checksums_completed_total",
        "counter",
        "Frames whose sender left the UDP checksum to the NIC (partial checksum, TX offload), completed by the engine.",
    );
    let _ = writeln!(
        o,
        "dnsrail_checksums_completed_total {}",
        r.checksums_completed
    );
    head(
        &mut o,
        "dnsrail_answers_slow_path_total",
        "counter",
        "AF_XDP: answers the kernel reassembled (fragments, IP options, IPv6 extension headers), delivered by the slow path.",
    );
    let _ = writeln!(o, "dnsrail_answers_slow_path_total {}", r.answers_slow_path);
    head(
        &mut o,
        "dnsrail_icmp_errors_total",
        "counter",
        "ICMP destination unreachable messages matched to a waiting query.",
    );
    let _ = writeln!(o, "dnsrail_icmp_errors_total {}", r.icmp_errors);
    head(
        &mut o,
        "dnsrail_redispatched_total",
        "counter",
        "Queries re-sent to another backend after an ICMP error quoted them.",
    );
    let _ = writeln!(o, "dnsrail_redispatched_total {}", r.redispatched);
    head(
        &mut o,
        "dnsrail_local_replies_total",
        "counter",
        "Replies the engine built itself.",
    );
    let _ = writeln!(o, "dnsrail_local_replies_total {}", r.local_replies);
    head(
        &mut o,
        "dnsrail_in_flight",
        "gauge",
        "Queries waiting for a backend's answer.",
    );
    let _ = writeln!(o, "dnsrail_in_flight {}", r.in_flight);
    head(
        &mut o,
        "dnsrail_drops_total",
        "counter",
        "Datagrams dropped, by reason.",
    );
    for (reason, c) in &r.drops {
        let _ = writeln!(o, "dnsrail_drops_total{{reason=\"{}\"}} {c}", esc(reason));
    }
    head(
        &mut o,
        "dnsrail_backend_usable",
        "gauge",
        "The engine sends new queries to this backend.",
    );
    for b in &r.backends {
        let _ = writeln!(
            o,
            "dnsrail_backend_usable{{backend=\"{}\"}} {}",
            esc(&b.name),
            u8::from(b.usable)
        );
    }
    head(
        &mut o,
        "dnsrail_backend_ejected",
        "gauge",
        "1 while the engine has taken the backend out (ICMP, silence), until health checks readmit it.",
    );
    for b in &r.backends {
        let _ = writeln!(
            o,
            "dnsrail_backend_ejected{{backend=\"{}\"}} {}",
            esc(&b.name),
            u8::from(b.ejected.is_some())
        );
    }
    head(
        &mut o,
        "dnsrail_backend_ejections_total",
        "counter",
        "Times the engine took the backend out, by reason.",
    );
    for b in &r.backends {
        for (why, c) in &b.ejections {
            let _ = writeln!(
                o,
                "dnsrail_backend_ejections_total{{backend=\"{}\",reason=\"{why}\"}} {c}",
                esc(&b.name)
            );
        }
    }
    for (metric, help, get) in [
        (
            "dnsrail_backend_sent_total",
            "Queries sent to the backend.",
            (|b| b.sent) as fn(&dnsrail_engine::control::BackendReport) -> u64,
        ),
        (
            "dnsrail_backend_answered_total",
            "Answers accepted from the backend.",
            |b| b.answered,
        ),
        (
            "dnsrail_backend_timeouts_total",
            "Queries the backend did not answer in time.",
            |b| b.timeouts,
        ),
        (
            "dnsrail_backend_errors_total",
            "Send errors and ICMP errors toward the backend.",
            |b| b.errors,
        ),
    ] {
        head(&mut o, metric, "counter", help);
        for b in &r.backends {
            let _ = writeln!(o, "{metric}{{backend=\"{}\"}} {}", esc(&b.name), get(b));
        }
    }
    head(
        &mut o,
        "dnsrail_backend_rcode_total",
        "counter",
        "Answers by RCODE.",
    );
    for b in &r.backends {
        for (rc, c) in &b.rcodes {
            let _ = writeln!(
                o,
                "dnsrail_backend_rcode_total{{backend=\"{}\",rcode=\"{}\"}} {c}",
                esc(&b.name),
                esc(rc)
            );
        }
    }
    head(&mut o, "dnsrail_backend_latency_us", "histogram", "Backend answer latency seen by the engine, microseconds (sum approximated from bucket bounds).");
    for b in &r.backends {
        let name = esc(&b.name);
        let (mut acc, mut sum) = (0u64, 0u64);
        let mut lower = 0u64;
        for (i, &c) in b.latency.iter().enumerate() {
            acc += c;
            let upper = r.latency_bounds_us.get(i).copied().unwrap_or(u64::MAX);
            sum += c * lower;
            lower = upper;
            // Only bounds where the count moves (and the last): the full set
            // is ~200 buckets per backend.
            if c > 0 || i + 1 == b.latency.len() {
                let _ = writeln!(
                    o,
                    "dnsrail_backend_latency_us_bucket{{backend=\"{name}\",le=\"{upper}\"}} {acc}"
                );
            }
        }
        let _ = writeln!(
            o,
            "dnsrail_backend_latency_us_bucket{{backend=\"{name}\",le=\"+Inf\"}} {acc}"
        );
        let _ = writeln!(
            o,
            "dnsrail_backend_latency_us_sum{{backend=\"{name}\"}} {sum}"
        );
        let _ = writeln!(
            o,
            "dnsrail_backend_latency_us_count{{backend=\"{name}\"}} {acc}"
        );
    }
    head(
        &mut o,
        "dnsrail_rule_hits_total",
        "counter",
        "Queries decided by each rule.",
    );
    for rule in &r.rules {
        let _ = writeln!(
            o,
            "dnsrail_rule_hits_total{{rule=\"{}\",source=\"{}\"}} {}",
            esc(&rule.name),
            esc(&rule.source),
            rule.hits
        );
    }
    if !r.caches.is_empty() {
        type Field = fn(&dnsrail_engine::control::CacheReport) -> u64;
        let series: [(&str, &str, &str, Field); 9] = [
            ("dnsrail_cache_entries", "gauge", "Answers held by the pool's packet cache.", |c| c.entries),
            ("dnsrail_cache_capacity", "gauge", "Entries the pool's packet cache has room for.", |c| c.capacity),
            ("dnsrail_cache_hits_total", "counter", "Queries answered from the packet cache (stale ones included).", |c| c.hits),
            ("dnsrail_cache_stale_hits_total", "counter", "Queries answered with an expired answer while the pool had no usable backend.", |c| c.stale_hits),
            ("dnsrail_cache_misses_total", "counter", "Cacheable queries the packet cache could not answer.", |c| c.misses),
            ("dnsrail_cache_inserts_total", "counter", "Answers kept by the packet cache.", |c| c.inserts),
            ("dnsrail_cache_uncacheable_total", "counter", "Answers to cacheable queries that could not be kept (TC, size, TTL 0, RCODE, no SOA ...).", |c| c.uncacheable),
            ("dnsrail_cache_not_admitted_total", "counter", "Answers a full set turned away on their name's first miss there (the doorkeeper).", |c| c.not_admitted),
            ("dnsrail_cache_xdp_hits_total", "counter", "Of the cache hits, those the XDP program answered from the answer tier.", |c| c.xdp_hits),
        ];
        for (name, kind, help, f) in series {
            head(&mut o, name, kind, help);
            for c in &r.caches {
                let _ = writeln!(o, "{name}{{pool=\"{}\"}} {}", esc(&c.pool), f(c));
            }
        }
    }
    if let Some(d) = &r.dynblock {
        head(
            &mut o,
            "dnsrail_dynblock_active",
            "gauge",
            "Source prefixes blocked now.",
        );
        let _ = writeln!(o, "dnsrail_dynblock_active {}", d.active.len());
        head(
            &mut o,
            "dnsrail_dynblock_added_total",
            "counter",
            "Dynamic blocks added.",
        );
        let _ = writeln!(o, "dnsrail_dynblock_added_total {}", d.added);
        head(
            &mut o,
            "dnsrail_dynblock_expired_total",
            "counter",
            "Dynamic blocks expired.",
        );
        let _ = writeln!(o, "dnsrail_dynblock_expired_total {}", d.expired);
    }
    if let Some(x) = &r.xdp {
        head(
            &mut o,
            "dnsrail_xdp_blocked_total",
            "counter",
            "Packets the XDP program dropped for a blocked source.",
        );
        let _ = writeln!(o, "dnsrail_xdp_blocked_total {}", x.blocked);
        head(
            &mut o,
            "dnsrail_xdp_passed_total",
            "counter",
            "Packets the XDP program left to the kernel.",
        );
        let _ = writeln!(o, "dnsrail_xdp_passed_total {}", x.passed);
        head(
            &mut o,
            "dnsrail_xdp_icmp_total",
            "counter",
            "XDP: ICMP errors quoting one of the engine's queries, sent to the workers.",
        );
        let _ = writeln!(o, "dnsrail_xdp_icmp_total {}", x.icmp);
        if let Some(t) = &x.tier {
            type Field = fn(&dnsrail_engine::control::TierReport) -> u64;
            let series: [(&str, &str, &str, Field); 6] = [
                ("dnsrail_xdp_tier_capacity", "gauge", "Entries the XDP answer tier has room for.", |t| t.capacity),
                ("dnsrail_xdp_tier_active", "gauge", "1 while the XDP program answers from the tier (0 while rules or dynamic blocks are set).", |t| u64::from(t.active)),
                ("dnsrail_xdp_tier_answers_total", "counter", "Queries the XDP program answered from the answer tier.", |t| t.answers),
                ("dnsrail_xdp_tier_misses_total", "counter", "Queries looked up in the answer tier and sent on to the workers.", |t| t.misses),
                ("dnsrail_xdp_tier_drops_total", "counter", "Queries dropped after being resized for a tier answer that could not be written.", |t| t.drops),
                ("dnsrail_xdp_tier_promoted_total", "counter", "Cache entries the workers copied into the answer tier.", |t| t.promoted),
            ];
            for (name, kind, help, f) in series {
                head(&mut o, name, kind, help);
                let _ = writeln!(o, "{name} {}", f(t));
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use dnsrail_engine::control::RuleInfo;

    #[test]
    fn a_runtime_rule_named_like_a_file_rule_is_its_own_series() {
        let rule = |source: &str, hits| RuleInfo {
            name: "block\"x".into(),
            source: source.into(),
            hits,
        };
        let r = Report {
            rules: vec![rule("runtime", 3), rule("file", 5)],
            ..Report::default()
        };
        let empty = HashMap::new();
        let (passive, checks) = (HashMap::new(), HashMap::new());
        let mut transitions = HashMap::new();
        transitions.insert(("r1".to_string(), "down", "icmp"), 2);
        let tcp = crate::tcp::TcpCounters::default();
        let text = render(
            Some(&r),
            &CtlView {
                engine_up: true,
                engine_restarts: 0,
                health: &empty,
                passive: &passive,
                health_checks: &checks,
                transitions: &transitions,
                tcp: &tcp,
                node: None,
            },
        );
        assert!(
            text.contains(
                "dnsrail_backend_transitions_total{backend=\"r1\",to=\"down\",reason=\"icmp\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("dnsrail_rule_hits_total{rule=\"block\\\"x\",source=\"runtime\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("dnsrail_rule_hits_total{rule=\"block\\\"x\",source=\"file\"} 5\n"),
            "{text}"
        );
    }

    #[test]
    fn node_series_follow_the_view() {
        use crate::announce::{AnnounceView, NodeView};
        let node = NodeView {
            state: "unhealthy",
            healthy: false,
            problems: vec!["drained".into()],
            drain: crate::node::Drain::Draining,
            since_s: 1.0,
            frontend_qps: 0.0,
            in_flight: 0,
            announce: Some(AnnounceView {
                bird_socket: "/run/bird/bird.ctl".into(),
                include_file: "/run/dnsrail/bird-vips.conf".into(),
                vips: vec!["192.0.2.53".into(), "2001:db8::53".into()],
                desired: "withdraw",
                routes: None,
                bird: "cannot reach BIRD".into(),
                announces: 2,
                withdraws: 3,
                errors: 4,
            }),
        };
        let (h, p, c, t) = (
            HashMap::new(),
            HashMap::new(),
            HashMap::new(),
            HashMap::new(),
        );
        let tcp = crate::tcp::TcpCounters::default();
        let text = render(
            None,
            &CtlView {
                engine_up: false,
                engine_restarts: 0,
                health: &h,
                passive: &p,
                health_checks: &c,
                transitions: &t,
                tcp: &tcp,
                node: Some(&node),
            },
        );
        for want in [
            "dnsrail_node_healthy 0\n",
            "dnsrail_node_drain{state=\"active\"} 0\n",
            "dnsrail_node_drain{state=\"draining\"} 1\n",
            "dnsrail_node_drain{state=\"drained\"} 0\n",
            "dnsrail_announce_desired_routes 0\n",
            "dnsrail_announce_routes -1\n",
            "dnsrail_announce_changes_total{action=\"announce\"} 2\n",
            "dnsrail_announce_changes_total{action=\"withdraw\"} 3\n",
            "dnsrail_announce_errors_total 4\n",
        ] {
            assert!(text.contains(want), "{want} missing:\n{text}");
        }
    }
}
