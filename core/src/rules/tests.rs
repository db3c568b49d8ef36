use super::*;
use crate::config::rules::RulesFile;
use crate::config::Config;
use crate::wire::dns::{build_query, parse_question, qtype};

fn set(text: &str) -> RuleSet {
    let f: RulesFile = toml::from_str(text).unwrap();
    RuleSet::compile(&f.rules, &["default".into(), "inside".into()], 2).unwrap()
}

fn err(text: &str) -> RuleError {
    let f: RulesFile = toml::from_str(text).unwrap();
    RuleSet::compile(&f.rules, &["default".into()], 1).unwrap_err()
}

/// The index of the rule that decides, and its action.
fn decide(s: &RuleSet, name: &str, t: u16, src: &str) -> Option<(String, Action)> {
    let m = build_query(1, name, t);
    let q = parse_question(&m).unwrap();
    let query = Query::new(&m, &q, src.parse().unwrap(), 0);
    let mut sc = Scratch::new();
    let before: Vec<u64> = (0..s.len()).map(|i| s.hits(i)).collect();
    let a = s.first_match(&query, &mut sc, 1).cloned()?;
    let hit = (0..s.len())
        .find(|&i| s.hits(i) != before[i])
        .expect("a hit was counted");
    Some((s.name(hit).to_string(), a))
}

const RULES: &str = r#"
[[rule]]
name = "any"
match = { qtype = "ANY" }
action = "refused"

[[rule]]
name = "sinkhole"
match = { name = ["Bad.Example", "worse.example"] }
action = { spoof = ["192.0.2.66", "2001:db8::66"], ttl = 60 }

[[rule]]
name = "hide-corp"
match = { suffix = "corp.example", not = { source = ["10.0.0.0/8", "2001:db8:c::/48"] } }
action = "nxdomain"

[[rule]]
name = "corp-inside"
match = { suffix = "corp.example" }
action = { pool = "inside" }

[[rule]]
name = "dga"
match = { regex = '^[a-z0-9]{20,}\.(biz|info)$' }
action = "drop"

[[rule]]
name = "tc-flood"
match = { all = [{ suffix = "flood.example" }, { qtype = ["A", 28] }] }
action = "truncate"

[[rule]]
name = "allow-rest-of-flood"
match = { suffix = "flood.example" }
action = "allow"
"#;

#[test]
fn each_selector_and_action() {
    let s = set(RULES);
    let d = |n: &str, t: u16, src: &str| decide(&s, n, t, src);
    assert_eq!(
        d("x.example", qtype::ANY, "192.0.2.1").unwrap(),
        ("any".into(), Action::Rcode(5))
    );
    let (r, a) = d("BAD.example.", qtype::A, "192.0.2.1").unwrap();
    assert_eq!(r, "sinkhole");
    assert!(matches!(a, Action::Spoof { ttl: 60, .. }));
    assert_eq!(
        d("sub.bad.example", qtype::A, "192.0.2.1"),
        None,
        "exact is exact"
    );
    // Local zone hidden from outside, routed to the inside pool for insiders.
    assert_eq!(
        d("db.corp.example", 1, "198.51.100.9").unwrap().1,
        Action::Rcode(3)
    );
    assert_eq!(
        d("corp.example", 1, "198.51.100.9").unwrap().1,
        Action::Rcode(3)
    );
    assert_eq!(
        d("db.corp.example", 1, "10.1.2.3").unwrap(),
        ("corp-inside".into(), Action::Pool(1))
    );
    assert_eq!(
        d("db.corp.example", 1, "2001:db8:c::5").unwrap().1,
        Action::Pool(1)
    );
    assert_eq!(
        d("db.corp.example", 1, "::ffff:10.0.0.1").unwrap().1,
        Action::Pool(1),
        "v4-mapped is v4"
    );
    // Suffix only on label boundaries.
    assert_eq!(d("evilcorp.example", 1, "198.51.100.9"), None);
    // Regex over the dotted lower-case name.
    assert_eq!(
        d("abcdefghij0123456789xyz.BIZ", 1, "192.0.2.1").unwrap().1,
        Action::Drop
    );
    assert_eq!(d("short.biz", 1, "192.0.2.1"), None);
    // Combinations and ordering: TC for A/AAAA, allow for the rest.
    assert_eq!(
        d("a.flood.example", 28, "192.0.2.1").unwrap().1,
        Action::Truncate
    );
    assert_eq!(
        d("a.flood.example", 16, "192.0.2.1").unwrap(),
        ("allow-rest-of-flood".into(), Action::Allow)
    );
    // ANY is refused before anything else sees it (first rule wins).
    assert_eq!(
        d("db.corp.example", qtype::ANY, "10.1.2.3").unwrap().0,
        "any"
    );
}

#[test]
fn hits_are_counted_per_rule() {
    let s = set(RULES);
    for _ in 0..3 {
        decide(&s, "x", qtype::ANY, "192.0.2.1");
    }
    assert_eq!(s.hits(0), 3);
    assert_eq!(s.hits(1), 0);
}

#[test]
fn match_everything_regex_does_not_shadow_earlier_rules() {
    let s = set(r#"
[[rule]]
name = "first"
match = { name = "keep.example" }
action = "servfail"
[[rule]]
name = "everything"
match = { regex = ".*" }
action = "nxdomain"
"#);
    assert_eq!(
        decide(&s, "keep.example", 1, "192.0.2.1").unwrap().0,
        "first"
    );
    assert_eq!(
        decide(&s, "other.example", 1, "192.0.2.1").unwrap().0,
        "everything"
    );
}

#[test]
fn bad_rules_are_named() {
    let e = err("[[rule]]\nname = \"r\"\nmatch = { regex = \"(unclosed\" }\naction = \"drop\"\n");
    assert_eq!((e.index, e.key.as_str()), (0, "rule[0].match.regex"));
    let e = err("[[rule]]\nname = \"a\"\naction = \"drop\"\n[[rule]]\nname = \"r\"\nmatch = { source = \"10.0.0.0/33\" }\naction = \"drop\"\n");
    assert_eq!((e.index, e.key.as_str()), (1, "rule[1].match.source"));
    let e = err("[[rule]]\nname = \"r\"\nmatch = { qtype = \"BOGUS\" }\naction = \"drop\"\n");
    assert_eq!(e.key, "rule[0].match.qtype");
    let e = err("[[rule]]\nname = \"r\"\naction = { pool = \"nope\" }\n");
    assert_eq!(e.key, "rule[0].action");
    assert!(e.message.contains("unknown pool"));
    let e = err("[[rule]]\nname = \"r\"\naction = \"explode\"\n");
    assert!(e.message.contains("unknown action"));
    let e = err("[[rule]]\nname = \"r\"\nmatch = { name = \"a..b\" }\naction = \"drop\"\n");
    assert_eq!(e.key, "rule[0].match.name");
}

#[test]
fn suffixes_of_every_depth_match() {
    let s = set(r#"
[[rule]]
name = "root"
match = { suffix = "." , qtype = "TXT" }
action = "refused"
[[rule]]
name = "tld"
match = { suffix = "test" }
action = "nxdomain"
[[rule]]
name = "deep"
match = { suffix = "a.b.c.example" }
action = "drop"
"#);
    assert_eq!(decide(&s, "x.y.test", 1, "192.0.2.1").unwrap().0, "tld");
    assert_eq!(decide(&s, "test", 1, "192.0.2.1").unwrap().0, "tld");
    assert_eq!(
        decide(&s, "z.A.b.C.example", 1, "192.0.2.1").unwrap().0,
        "deep"
    );
    assert_eq!(decide(&s, "b.c.example", 1, "192.0.2.1"), None);
    assert_eq!(
        decide(&s, "anything.org", 16, "192.0.2.1").unwrap().0,
        "root"
    );
    assert_eq!(decide(&s, ".", 16, "192.0.2.1").unwrap().0, "root");
}

#[test]
fn prefixes() {
    let p = Prefix::parse("192.0.2.77/24").unwrap();
    assert!(p.contains("192.0.2.1".parse().unwrap()));
    assert!(!p.contains("192.0.3.1".parse().unwrap()));
    assert!(!p.contains("2001:db8::1".parse().unwrap()));
    assert!(Prefix::parse("0.0.0.0/0")
        .unwrap()
        .contains("203.0.113.9".parse().unwrap()));
    assert!(Prefix::parse("2001:db8::1")
        .unwrap()
        .contains("2001:db8::1".parse().unwrap()));
    assert!(Prefix::parse("2001:db8::/129").is_none());
    assert!(Prefix::parse("example").is_none());
}

#[test]
fn wire_names() {
    assert_eq!(&*wire_name("A.b.").unwrap(), b"\x01a\x01b\x00");
    assert_eq!(&*wire_name(".").unwrap(), b"\x00");
    assert!(wire_name("a..b").is_none());
    assert!(wire_name(&"x".repeat(64)).is_none());
}

#[test]
fn replies_are_built_in_place() {
    let s = set(RULES);
    let mut m = build_query(0x4242, "bad.example", qtype::A);
    let qlen = m.len();
    let q = parse_question(&m).unwrap();
    let Some((_, a)) = decide(&s, "bad.example", qtype::A, "192.0.2.1") else {
        panic!()
    };
    m.resize(512, 0);
    let n = reply::write(&mut m, &q, &a).unwrap();
    assert_eq!(n, qlen + 16);
    assert_eq!(&m[..12], &[0x42, 0x42, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    assert_eq!(
        &m[qlen..n],
        &[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 66]
    );
    // No room: refused cleanly.
    let mut small = build_query(1, "bad.example", qtype::A);
    assert_eq!(reply::write(&mut small, &q, &a), None);
    // TC=1, no records.
    let mut m = build_query(7, "a.flood.example", qtype::A);
    let q = parse_question(&m).unwrap();
    let n = reply::write(&mut m, &q, &Action::Truncate).unwrap();
    assert_eq!((n, m[2], m[3]), (q.end, 0x83, 0x80));
}

#[test]
fn a_hundred_thousand_rules_compile_and_match() {
    let mut t = String::new();
    for i in 0..100_000 {
        match i % 100 {
            0..=79 => t += &format!("[[rule]]\nname = \"e{i}\"\nmatch = {{ name = \"host{i}.blocked.example\" }}\naction = \"nxdomain\"\n"),
            80..=97 => t += &format!("[[rule]]\nname = \"s{i}\"\nmatch = {{ suffix = \"zone{i}.example\" }}\naction = \"refused\"\n"),
            98 => t += &format!("[[rule]]\nname = \"p{i}\"\nmatch = {{ source = \"10.{}.{}.0/24\" }}\naction = \"drop\"\n", (i / 256) % 256, i % 256),
            _ => t += &format!("[[rule]]\nname = \"r{i}\"\nmatch = {{ regex = '^dga{i}[a-z]+\\.example$' }}\naction = \"drop\"\n"),
        }
    }
    let s = set(&t);
    assert_eq!(s.len(), 100_000);
    assert_eq!(
        decide(&s, "host80040.blocked.example", 1, "192.0.2.1")
            .unwrap()
            .0,
        "e80040"
    );
    assert_eq!(
        decide(&s, "a.b.zone81.example", 1, "192.0.2.1").unwrap().0,
        "s81"
    );
    assert_eq!(
        decide(&s, "dga99xyz.example", 1, "192.0.2.1").unwrap().0,
        "r99"
    );
    assert_eq!(decide(&s, "www.example.org", 1, "192.0.2.1"), None);
}

#[test]
fn rate_selector_counts_per_source_prefix_per_second() {
    let s = set(r#"
[[rule]]
name = "slow-down"
match = { suffix = "flood.example", rate = { qps = 3, prefix_v4 = 24 } }
action = "truncate"
"#);
    let mut sc = Scratch::new();
    let mut ask = |name: &str, src: &str, now_s: u32| {
        let m = build_query(1, name, qtype::A);
        let q = parse_question(&m).unwrap();
        let query = Query::new(&m, &q, src.parse().unwrap(), now_s);
        s.first_match(&query, &mut sc, 0).is_some()
    };
    let flood = "x.flood.example";
    // Three queries a second pass; the fourth and later hold the rule.
    let got: Vec<bool> = (0..5).map(|_| ask(flood, "192.0.2.1", 10)).collect();
    assert_eq!(got, [false, false, false, true, true]);
    // Same /24 shares the count; another /24 has its own.
    assert!(ask(flood, "192.0.2.99", 10));
    assert!(!ask(flood, "198.51.100.1", 10));
    // A new second starts again.
    assert!(!ask(flood, "192.0.2.1", 11));
    // Names outside the suffix never reach the rate selector.
    for _ in 0..10 {
        assert!(!ask("calm.example", "192.0.2.1", 11));
    }
    // qps 0 is refused with its key.
    let e = err("[[rule]]\nname = \"r\"\nmatch = { rate = { qps = 0 } }\naction = \"drop\"\n");
    assert_eq!(e.key, "rule[0].match.rate");
}

#[test]
fn hits_of_more_workers_than_the_set_was_compiled_for_are_all_counted() {
    // Compiled for 2 workers; 4 run (a reload parsed under another queue
    // count): workers 2 and 3 count concurrently into the shared counters.
    let s = std::sync::Arc::new(set(RULES));
    let m = build_query(1, "worse.example", qtype::A);
    let threads: Vec<_> = (0..4)
        .map(|w| {
            let (s, m) = (s.clone(), m.clone());
            std::thread::spawn(move || {
                let q = parse_question(&m).unwrap();
                let query = Query::new(&m, &q, "192.0.2.1".parse().unwrap(), 0);
                let mut sc = Scratch::new();
                for _ in 0..50_000 {
                    assert!(s.first_match(&query, &mut sc, w).is_some());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let sinkhole = (0..s.len()).find(|&i| s.name(i) == "sinkhole").unwrap();
    assert_eq!(s.hits(sinkhole), 200_000);
}

#[test]
fn the_rules_file_is_read_beside_the_config_and_its_errors_name_it() {
    let dir = std::env::temp_dir().join(format!("dnsrail-rulesfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("dnsrail.toml");
    std::fs::write(
        &cfg,
        "[[frontend]]\nlisten = \"127.0.0.1:5300\"\n[[backend]]\nname = \"r1\"\naddress = \"127.0.0.1:5301\"\n\
         [[rule]]\nname = \"inline\"\nmatch = { qtype = \"ANY\" }\naction = \"refused\"\n\
         [rules]\nfile = \"rules.toml\"\n",
    )
    .unwrap();
    let rules = dir.join("rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"from-file\"\nmatch = { suffix = \"bad.example\" }\naction = \"nxdomain\"\n",
    )
    .unwrap();
    let c = Config::load(&cfg).unwrap();
    let names: Vec<&str> = c.rules.iter().map(|r| r.name.get_ref().as_str()).collect();
    assert_eq!(names, ["inline", "from-file"], "match order: inline first");
    let set = RuleSet::from_config(&c, 2).unwrap();
    assert_eq!(set.len(), 2);
    assert_eq!((set.name(0), set.name(1)), ("inline", "from-file"));

    // A type error on line 3 of the rules file: that file, that line.
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"x\"\nmatch = { suffix = 5 }\naction = \"drop\"\n",
    )
    .unwrap();
    let e = Config::load(&cfg).unwrap_err();
    assert_eq!(e.file, rules.display().to_string(), "{e}");
    assert_eq!(e.line, Some(3), "{e}");
    assert!(
        e.key.as_deref().unwrap_or("").starts_with("rule[0].match"),
        "{e}"
    );
    // A semantic error in the file's second rule is numbered in that file.
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"a\"\naction = \"drop\"\n[[rule]]\nname = \"b\"\naction = { pool = \"nope\" }\n",
    )
    .unwrap();
    // The file reads (rules are compiled by the engine, not the loader);
    // compiling names the rules file, the rule's line and its index there.
    let c = Config::load(&cfg).unwrap();
    let e = RuleSet::from_config(&c, 1).unwrap_err();
    assert_eq!(e.file, rules.display().to_string(), "{e}");
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.key.as_deref().unwrap_or("").starts_with("rule[1]"), "{e}");
    assert_eq!(RuleSet::check(&c).unwrap_err(), e);
    // An inline rule's error names the configuration file and its line.
    std::fs::write(
        &cfg,
        "[[frontend]]\nlisten = \"127.0.0.1:5300\"\n[[backend]]\nname = \"r1\"\naddress = \"127.0.0.1:5301\"\n\
         [[rule]]\nname = \"inline\"\naction = { pool = \"nope\" }\n",
    )
    .unwrap();
    let e = RuleSet::check(&Config::load(&cfg).unwrap()).unwrap_err();
    assert_eq!(
        (e.file.as_str(), e.line),
        (cfg.display().to_string().as_str(), Some(7)),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
