//! The configuration reference (docs/configuration.md) and the example file
//! (examples/dnsrail.toml) against the parser: every documented key is a
//! key, every key is documented, and the example holds every key. The
//! parser lists the keys it accepts itself, in its error for an unknown one.

use super::Config;
use std::collections::BTreeSet;

const DOC: &str = include_str!("../../../docs/configuration.md");
const EXAMPLE: &str = include_str!("../../../examples/dnsrail.toml");

/// The tables of the reference: (section heading's table, how to open it in
/// TOML, its path in the example).
const SECTIONS: &[(&str, &str, &str)] = &[
    ("[engine]", "[engine]", "engine"),
    ("[[frontend]]", "[[frontend]]", "frontend"),
    ("[[backend]]", "[[backend]]", "backend"),
    ("[pool.NAME]", "[pool.p]", "pool"),
    ("[health]", "[health]", "health"),
    ("[failover]", "[failover]", "failover"),
    ("[dynblock]", "[dynblock]", "dynblock"),
    ("[ctl]", "[ctl]", "ctl"),
    ("[announce]", "[announce]", "announce"),
];

/// The keys of the table under "## `HEADING`": the first column of its
/// rows, `a` / `b` rows giving two.
fn documented(heading: &str) -> BTreeSet<String> {
    let start = DOC
        .find(&format!("## `{heading}`"))
        .unwrap_or_else(|| panic!("configuration.md has no section {heading}"));
    let body = &DOC[start..];
    let body = &body[..body[3..].find("\n## ").map_or(body.len(), |e| e + 3)];
    let mut keys = BTreeSet::new();
    for row in body.lines().filter(|l| l.starts_with("| `")) {
        let first = row.split('|').nth(1).unwrap_or("");
        for k in first.split('/') {
            let k = k.trim().trim_matches('`');
            if !k.is_empty() {
                keys.insert(k.to_string());
            }
        }
    }
    keys
}

/// The keys the parser accepts in a table, from its own error message.
fn accepted(open: &str) -> BTreeSet<String> {
    let e = Config::parse(&format!("{open}\nno_such_key_x = 1\n"), "t").unwrap_err();
    let msg = e.message;
    // "expected one of `a`, `b`", "expected `a` or `b`", "expected `a`".
    let list = msg
        .split("expected ")
        .nth(1)
        .unwrap_or_else(|| panic!("{open}: no list of keys in {msg:?}"))
        .trim_start_matches("one of ")
        .replace(" or ", ",");
    list.split(',')
        .map(|k| k.trim().trim_matches('`').to_string())
        .filter(|k| !k.is_empty())
        .collect()
}

/// The keys the example file shows in a table, set or commented out
/// (`# key = …`: keys without a default), over every entry of an array of
/// tables and every pool.
fn in_example(path: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut here = false;
    for line in EXAMPLE.lines() {
        // A table may be shown commented out as a whole (`# [announce]`).
        let l = line.trim().trim_start_matches('#').trim_start();
        if l.starts_with('[') {
            let name = l.trim_matches(|c| c == '[' || c == ']');
            here = name == path || name.split('.').next() == Some(path) && path == "pool";
            continue;
        }
        if !here {
            continue;
        }
        if let Some((k, _)) = l.split_once('=') {
            let k = k.trim();
            if !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                keys.insert(k.to_string());
            }
        }
    }
    keys
}

#[test]
fn every_documented_key_is_a_key_and_every_key_is_documented() {
    for (heading, open, _) in SECTIONS {
        let doc = documented(heading);
        let parser = accepted(open);
        assert_eq!(
            doc, parser,
            "{heading}: configuration.md lists {doc:?}, the parser accepts {parser:?}"
        );
    }
}

#[test]
fn the_example_sets_every_key_and_parses() {
    Config::parse(EXAMPLE, "examples/dnsrail.toml").unwrap();
    for (heading, open, path) in SECTIONS {
        let missing: Vec<String> = accepted(open)
            .difference(&in_example(path))
            .cloned()
            .collect();
        assert!(
            missing.is_empty(),
            "examples/dnsrail.toml: {heading} lacks {missing:?}"
        );
    }
}

#[test]
fn every_toml_block_of_the_reference_is_valid_toml() {
    let mut n = 0;
    for block in DOC.split("```toml").skip(1) {
        let text = &block[..block.find("```").expect("closed block")];
        toml::from_str::<toml::Value>(text)
            .unwrap_or_else(|e| panic!("configuration.md block:\n{text}\n{e}"));
        n += 1;
    }
    assert!(n > 0, "no toml block found");
}
