//! The core's modules form layers without cycles: a module uses only the
//! modules of lower layers (or of its own file tree). This reads the
//! sources, so an upward `use crate::…` (or a `crate::…` path in code) fails
//! here instead of growing into a cycle. Test code (`tests.rs`, `tests/`,
//! and what follows `#[cfg(test)]` in a file) may reach anywhere.

use std::path::{Path, PathBuf};

/// Bottom to top; modules on one line share a layer and may not use each
/// other either.
const LAYERS: &[&[&str]] = &[
    &["ids", "hash"],
    &["wire"],
    &["config"],
    &["stats", "fate"],
    &["dynblock"],
    &["rules", "policy", "cache"],
    &["snapshot"],
    &["inflight"],
    &["core"],
    &["frame"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Every `.rs` file under `dir`, with the top-level module it belongs to.
fn sources(dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p.strip_prefix(src_dir()).unwrap();
            let top = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            let module = top.trim_end_matches(".rs").to_string();
            out.push((module, p));
        }
    }
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn is_test_file(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n == "tests.rs")
        || p.components().any(|c| c.as_os_str() == "tests")
        || p.file_name().is_some_and(|n| n == "doc_tests.rs")
}

/// The crate modules `text` (non-test code) refers to by `crate::NAME`.
fn uses(text: &str) -> Vec<String> {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = Vec::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            // `crate::{a, b::c}` names several.
            let names: Vec<&str> = if let Some(list) = after.strip_prefix('{') {
                let list = list.split('}').next().unwrap_or("");
                list.split(',')
                    .map(|n| n.trim().split("::").next().unwrap_or(""))
                    .collect()
            } else {
                vec![after
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .next()
                    .unwrap_or("")]
            };
            out.extend(
                names
                    .iter()
                    .filter(|n| !n.is_empty())
                    .map(|n| n.to_string()),
            );
            rest = after;
        }
    }
    out
}

/// (file, module, used module) for every use that is not strictly down.
fn violations() -> Vec<String> {
    let mut files = Vec::new();
    sources(&src_dir(), &mut files);
    assert!(files.len() > 40, "found {} sources", files.len());
    let mut bad = Vec::new();
    for (module, path) in files {
        if module == "lib" || is_test_file(&path) {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            bad.push(format!(
                "{}: module `{module}` has no layer",
                path.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap();
        for used in uses(&text) {
            if used == module {
                continue;
            }
            match layer_of(&used) {
                Some(l) if l < own => {}
                Some(_) => bad.push(format!(
                    "{}: `{module}` uses `{used}`, which is not below it",
                    path.display()
                )),
                None => {} // not a module of the crate (a macro path, say)
            }
        }
    }
    bad
}

#[test]
fn every_module_uses_only_lower_layers() {
    let bad = violations();
    assert!(bad.is_empty(), "layer violations:\n{}", bad.join("\n"));
}

#[test]
fn the_scan_sees_uses_of_every_form() {
    let text = "use crate::snapshot::Snapshot;\nuse crate::{wire, rules::RuleSet};\n\
                // crate::frame in a comment\nlet x = crate::core::f();\n\
                #[cfg(test)]\nmod tests {\n use crate::frame::X;\n}\n";
    assert_eq!(uses(text), ["snapshot", "wire", "rules", "core"]);
    assert_eq!(layer_of("config"), Some(2));
    assert!(layer_of("wire") < layer_of("config"));
}
