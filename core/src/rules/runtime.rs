//! Rules changed at run time (the control process's API and CLI), kept apart
//! from the file's rules: they are a small set compiled on its own — a change
//! never recompiles 100 000 file rules — and checked *before* the file's, so
//! an operator's emergency rule wins. Each rule is kept as its own TOML text
//! (the same `[[rule]]` format as the rules file), which is what ctl stores
//! and pushes back to a restarted engine.

use std::sync::Arc;

use serde::Deserialize;

use super::RuleSet;
use crate::config::rules::{RuleConfig, RulesFile};

#[derive(Clone, Debug, Default)]
pub struct RuntimeRules {
    /// (name, the rule's TOML text), in match order.
    rules: Vec<(String, String)>,
}

/// Splits `[[rule]]` TOML into one text per rule, checking each parses.
fn split(text: &str) -> Result<Vec<(String, String)>, String> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(default)]
        rule: Vec<toml::Table>,
    }
    let raw: Raw = toml::from_str(text).map_err(|e| format!("rules: {}", e.message().trim()))?;
    // The typed parse gives the precise key of a bad field.
    let de = toml::Deserializer::new(text);
    let typed: Result<RulesFile, _> = serde_path_to_error::deserialize(de);
    if let Err(e) = typed {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let line = inner
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        return Err(format!(
            "rules:{}: key `{}`: {}",
            line.map_or("?".into(), |l| l.to_string()),
            path,
            inner.message().trim()
        ));
    }
    if raw.rule.is_empty() {
        return Err("rules: no [[rule]] entries".into());
    }
    raw.rule
        .into_iter()
        .map(|t| {
            let name = t
                .get("name")
                .and_then(|n| n.as_str())
                .ok_or("rules: a rule without a name")?
                .to_string();
            let mut wrapper = toml::Table::new();
            wrapper.insert(
                "rule".into(),
                toml::Value::Array(vec![toml::Value::Table(t)]),
            );
            let one = toml::to_string(&wrapper).map_err(|e| format!("rules: {e}"))?;
            Ok((name, one))
        })
        .collect()
}

impl RuntimeRules {
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|(n, _)| n.as_str())
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The whole set as one `[[rule]]` TOML text.
    pub fn export(&self) -> String {
        self.rules
            .iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn configs(&self) -> Vec<RuleConfig> {
        self.rules
            .iter()
            .flat_map(|(_, t)| {
                toml::from_str::<RulesFile>(t)
                    .expect("checked when added")
                    .rules
            })
            .collect()
    }

    /// Compiles the set for a snapshot with `pools`.
    pub fn compile(&self, pools: &[String], workers: usize) -> Result<Arc<RuleSet>, String> {
        RuleSet::compile(&self.configs(), pools, workers)
            .map(Arc::new)
            .map_err(|e| {
                let name = self.rules.get(e.index).map_or("?", |r| r.0.as_str());
                format!("rule {name:?}: {}: {}", e.key, e.message)
            })
    }

    /// Adds the rules of `text` after the current ones; a rule with the name
    /// of an existing one replaces it in place when `replace`, else is an
    /// error. Returns the new set; `self` is unchanged (the caller compiles
    /// it and keeps it only if that succeeds).
    pub fn with_added(&self, text: &str, replace: bool) -> Result<RuntimeRules, String> {
        let mut next = self.clone();
        for (name, one) in split(text)? {
            match next.rules.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) if replace => slot.1 = one,
                Some(_) => {
                    return Err(format!(
                        "a runtime rule named {name:?} exists (replace it, or delete it first)"
                    ))
                }
                None => next.rules.push((name, one)),
            }
        }
        Ok(next)
    }

    /// The set of `text` alone (load: replace everything).
    pub fn parse(text: &str) -> Result<RuntimeRules, String> {
        if text.trim().is_empty() {
            return Ok(RuntimeRules::default());
        }
        RuntimeRules::default().with_added(text, false)
    }

    pub fn without(&self, name: &str) -> Result<RuntimeRules, String> {
        let mut next = self.clone();
        let before = next.rules.len();
        next.rules.retain(|(n, _)| n != name);
        if next.rules.len() == before {
            return Err(format!("no runtime rule named {name:?}"));
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
[[rule]]
name = "block-any"
match = { qtype = "ANY" }
action = "refused"

[[rule]]
name = "sinkhole"
match = { name = "bad.example" }
action = { spoof = ["192.0.2.66"], ttl = 60 }
"#;

    #[test]
    fn add_replace_delete_and_export_round_trip() {
        let r = RuntimeRules::parse(TWO).unwrap();
        assert_eq!(r.names().collect::<Vec<_>>(), ["block-any", "sinkhole"]);
        assert!(r.compile(&["default".into()], 1).is_ok());
        // Same name: refused unless replacing.
        assert!(r.with_added(TWO, false).unwrap_err().contains("exists"));
        let r2 = r.with_added(TWO, true).unwrap();
        assert_eq!(r2.len(), 2);
        let back = RuntimeRules::parse(&r2.export()).unwrap();
        assert_eq!(back.names().collect::<Vec<_>>(), ["block-any", "sinkhole"]);
        let r3 = back.without("block-any").unwrap();
        assert_eq!(r3.names().collect::<Vec<_>>(), ["sinkhole"]);
        assert!(r3.without("nope").is_err());
        assert!(RuntimeRules::parse("").unwrap().is_empty());
    }

    #[test]
    fn malformed_rules_are_refused_with_where_and_what() {
        let e = RuntimeRules::parse("[[rule]]\nname = \"x\"\naction = 5\n").unwrap_err();
        assert!(e.contains("rules:3") && e.contains("action"), "{e}");
        let e = RuntimeRules::parse("[[rule]\n").unwrap_err();
        assert!(e.starts_with("rules"), "{e}");
        assert!(RuntimeRules::parse("x = 1\n").unwrap_err().contains("rule"));
        // Parses, but does not compile: an unknown pool.
        let r = RuntimeRules::parse("[[rule]]\nname = \"p\"\nmatch = { name = \"a.example\" }\naction = { pool = \"nope\" }\n").unwrap();
        let e = r.compile(&["default".into()], 1).unwrap_err();
        assert!(e.contains("\"p\"") && e.contains("nope"), "{e}");
    }
}
