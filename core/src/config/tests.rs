//! The loader's own tests: parsing, errors with their line and key,
//! limits.

use super::*;

const GOOD: &str = r#"
[engine]
io = "socket"
workers = 2
timeout_ms = 1500

[[frontend]]
listen = "127.0.0.1:5300"

[[frontend]]
listen = "[::1]:5300"
pool = "hashed"

[[backend]]
name = "r1"
address = "127.0.0.1:5301"
weight = 3
pools = ["default", "hashed"]

[[backend]]
name = "r2"
address = "::1"
pools = ["hashed"]

[pool.hashed]
policy = "qname-hash"
when_all_down = "any"
"#;

#[test]
fn parses_a_full_file() {
    let c = Config::parse(GOOD, "t.toml").unwrap();
    assert_eq!(c.engine.io, IoMode::Socket);
    assert_eq!(c.engine.workers, 2);
    assert_eq!(c.frontends.len(), 2);
    assert_eq!(c.frontends[0].pool.get_ref(), "default");
    assert_eq!(
        Config::backend_addr(&c.backends[1]),
        "[::1]:53".parse().unwrap()
    );
    assert_eq!(c.pool("hashed").unwrap().policy, PolicyKind::QnameHash);
    assert_eq!(c.pool("default").unwrap().policy, PolicyKind::RoundRobin);
    assert_eq!(c.health.fall, 3);
}

fn err(text: &str) -> ConfigError {
    Config::parse(text, "t.toml").unwrap_err()
}

#[test]
fn type_error_names_line_and_key() {
    let e = err(&GOOD.replace("weight = 3", "weight = \"x\""));
    assert_eq!(e.line, Some(17), "{e}");
    assert_eq!(e.key.as_deref(), Some("backend[0].weight"), "{e}");
    assert!(
        e.to_string()
            .starts_with("t.toml:17: key `backend[0].weight`:"),
        "{e}"
    );
}

#[test]
fn unknown_key_is_refused() {
    let e = err(&GOOD.replace("timeout_ms = 1500", "timeout = 1500"));
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.message.contains("unknown field `timeout`"), "{e}");
}

#[test]
fn syntax_error_has_a_line() {
    let e = err("[engine]\nio = \n");
    assert_eq!(e.line, Some(2), "{e}");
}

#[test]
fn semantic_errors_point_at_the_value() {
    let e = err(&GOOD.replace("pool = \"hashed\"", "pool = \"nope\""));
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(12), Some("frontend[1].pool")),
        "{e}"
    );
    assert!(e.message.contains("unknown pool `nope`"));

    let e = err(&GOOD.replace("name = \"r2\"", "name = \"r1\""));
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(21), Some("backend[1].name")),
        "{e}"
    );

    let e = err(&GOOD.replace("address = \"::1\"", "address = \"resolver.example\""));
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(22), Some("backend[1].address")),
        "{e}"
    );

    let e = err(&GOOD.replace("policy = \"qname-hash\"", "policy = \"fastest\""));
    assert_eq!(e.line, Some(26), "{e}");
    assert!(
        e.key.as_deref().unwrap().starts_with("pool.hashed.policy"),
        "{e}"
    );
}

#[test]
fn engine_limits() {
    let e = err(&GOOD.replace("io = \"socket\"", "io = \"xdp\""));
    assert_eq!(e.key.as_deref(), Some("engine.interface"));
    let e = err(&GOOD.replace("timeout_ms = 1500", "timeout_ms = 0"));
    assert_eq!(e.key.as_deref(), Some("engine.timeout_ms"));
    let tier = |n: usize| {
        GOOD.replace(
            "timeout_ms = 1500",
            &format!("timeout_ms = 1500\nxdp_cache_entries = {n}"),
        )
    };
    let e = err(&tier(super::MAX_XDP_CACHE_ENTRIES + 1));
    assert_eq!(e.key.as_deref(), Some("engine.xdp_cache_entries"));
    assert!(Config::parse(&tier(super::MAX_XDP_CACHE_ENTRIES), "t.toml").is_ok());
    let e = err("[[backend]]\nname = \"a\"\naddress = \"127.0.0.1\"\n");
    assert_eq!(e.key.as_deref(), Some("frontend"));
}

#[test]
fn failover_limits_and_defaults() {
    let c = Config::parse(GOOD, "t").unwrap();
    assert_eq!(c.failover, FailoverConfig::default());
    assert!(c.failover.icmp && c.failover.redispatch);
    assert_eq!(c.failover.dead_after_ms, 100);
    // The silence window must end before a query times out.
    let e = err(&format!("{GOOD}\n[failover]\ndead_after_ms = 1500\n"));
    assert_eq!(e.key.as_deref(), Some("failover.dead_after_ms"));
    assert!(
        e.message.contains("engine.timeout_ms (1500)"),
        "{}",
        e.message
    );
    let e = err(&format!("{GOOD}\n[failover]\ndead_after_ms = 5\n"));
    assert_eq!(e.key.as_deref(), Some("failover.dead_after_ms"));
    let c = Config::parse(&format!("{GOOD}\n[failover]\ndead_after_ms = 0\n"), "t").unwrap();
    assert_eq!(c.failover.dead_after_ms, 0, "0 = off");
    let e = err(&format!("{GOOD}\n[failover]\nstandalone_hold_ms = 10\n"));
    assert_eq!(e.key.as_deref(), Some("failover.standalone_hold_ms"));
    let e = err(&format!("{GOOD}\n[failover]\nicmp = \"yes\"\n"));
    assert!(e.to_string().contains("failover"), "{e}");
}

#[test]
fn the_shipped_example_is_valid() {
    let text = include_str!("../../../examples/dnsrail.toml");
    let c = Config::parse(text, "examples/dnsrail.toml").unwrap();
    assert_eq!(c.backends.len(), 3);
    assert_eq!(
        c.pool("cache-affine").unwrap().when_all_down,
        WhenAllDown::Any
    );
    assert_eq!(c.engine.ports_per_worker, 1024);
    assert_eq!(c.engine.slots_per_worker, 65536);
    assert_eq!(c.ctl.control_socket, "/run/dnsrail/engine.sock");
}

#[test]
fn addresses_and_macs() {
    assert_eq!(
        parse_addr("192.0.2.1", 53),
        Some("192.0.2.1:53".parse().unwrap())
    );
    assert_eq!(
        parse_addr("[2001:db8::1]:5353", 53),
        Some("[2001:db8::1]:5353".parse().unwrap())
    );
    assert_eq!(parse_addr("example.com", 53), None);
    assert_eq!(
        parse_mac("02:00:00:aa:bb:cc"),
        Some([2, 0, 0, 0xaa, 0xbb, 0xcc])
    );
    assert_eq!(parse_mac("02:00:00:aa:bb"), None);
    assert_eq!(parse_mac("02:00:00:aa:bb:cc:dd"), None);
    assert_eq!(parse_mac("zz:00:00:aa:bb:cc"), None);
}
