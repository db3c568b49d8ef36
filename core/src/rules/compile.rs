//! Compiling rules: names to wire form, types to numbers, each match to the
//! condition tree and the indexes that find its candidates, the regexes into
//! one automaton, actions to what the hot path runs.

use ahash::RandomState;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicU64;

use super::*;
use crate::config::rules::{ActionConfig, MatchConfig, RuleConfig, TypeName};
use crate::config::{Config, ConfigError};
use crate::stats::Counter;
use regex_automata::{meta, util::syntax, MatchKind};

/// Lower-case wire form of a dotted name; None if it is not a valid name.
pub fn wire_name(dotted: &str) -> Option<Box<[u8]>> {
    let mut out = Vec::with_capacity(dotted.len() + 2);
    for label in dotted.trim_end_matches('.').split('.') {
        if label.is_empty() {
            if dotted.trim_end_matches('.').is_empty() {
                break;
            }
            return None;
        }
        if label.len() > 63 {
            return None;
        }
        out.push(label.len() as u8);
        out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    out.push(0);
    (out.len() <= 255).then(|| out.into_boxed_slice())
}

fn type_number(t: &TypeName, class: bool) -> Option<u16> {
    match t {
        TypeName::Number(n) => Some(*n),
        TypeName::Name(s) => Some(match (class, s.to_ascii_uppercase().as_str()) {
            (false, "A") => 1,
            (false, "NS") => 2,
            (false, "CNAME") => 5,
            (false, "SOA") => 6,
            (false, "PTR") => 12,
            (false, "MX") => 15,
            (false, "TXT") => 16,
            (false, "AAAA") => 28,
            (false, "SRV") => 33,
            (false, "DS") => 43,
            (false, "RRSIG") => 46,
            (false, "DNSKEY") => 48,
            (false, "SVCB") => 64,
            (false, "HTTPS") => 65,
            (false, "AXFR") => 252,
            (false, "ANY") => 255,
            (true, "IN") => 1,
            (true, "CH") => 3,
            (true, "HS") => 4,
            (true, "ANY") => 255,
            _ => return None,
        }),
    }
}

/// Converts every value of a selector, or names the first bad one.
fn each<T: std::fmt::Debug, U, C: FromIterator<U>>(
    values: &crate::config::rules::OneOrMany<T>,
    key: &str,
    field: &str,
    what: &str,
    f: impl Fn(&T) -> Option<U>,
) -> Result<C, (String, String)> {
    values
        .iter()
        .map(|v| f(v).ok_or_else(|| (format!("{key}.{field}"), format!("{v:?} {what}"))))
        .collect()
}

struct Builder {
    patterns: Vec<String>,
    /// Rate selectors so far (each gets its own table per worker).
    rates: u32,
}

impl Builder {
    fn cond(&mut self, m: &MatchConfig, key: &str) -> Result<Cond, (String, String)> {
        let mut parts = Vec::new();
        if let Some(names) = &m.name {
            let v: Vec<_> = each(names, key, "name", "is not a domain name", |n| wire_name(n))?;
            parts.push(Cond::Names(v.into_iter().collect()));
        }
        if let Some(s) = &m.suffix {
            parts.push(Cond::Suffixes(each(
                s,
                key,
                "suffix",
                "is not a domain name",
                |n| wire_name(n),
            )?));
        }
        if let Some(r) = &m.regex {
            let mut ids = Vec::new();
            for p in r.iter() {
                // Each pattern alone first: a bad one is named, not the set.
                regex_syntax(p).map_err(|e| (format!("{key}.regex"), format!("`{p}`: {e}")))?;
                ids.push(self.patterns.len() as u32);
                self.patterns.push(p.clone());
            }
            parts.push(Cond::Regex(ids.into()));
        }
        if let Some(t) = &m.qtype {
            parts.push(Cond::QType(each(
                t,
                key,
                "qtype",
                "is not a known type",
                |t| type_number(t, false),
            )?));
        }
        if let Some(t) = &m.qclass {
            parts.push(Cond::QClass(each(
                t,
                key,
                "qclass",
                "is not a known class",
                |t| type_number(t, true),
            )?));
        }
        if let Some(s) = &m.source {
            parts.push(Cond::Source(each(
                s,
                key,
                "source",
                "is not an address or prefix",
                |p| Prefix::parse(p),
            )?));
        }
        if let Some(r) = &m.rate {
            if r.qps == 0 || r.prefix_v4 > 32 || r.prefix_v6 > 128 {
                return Err((
                    format!("{key}.rate"),
                    "qps ≥ 1, prefix_v4 ≤ 32, prefix_v6 ≤ 128".into(),
                ));
            }
            parts.push(Cond::Rate(self.rates, r.qps, r.prefix_v4, r.prefix_v6));
            self.rates += 1;
        }
        if let Some(n) = &m.not {
            parts.push(Cond::Not(Box::new(self.cond(n, &format!("{key}.not"))?)));
        }
        if let Some(all) = &m.all {
            let v = all
                .iter()
                .enumerate()
                .map(|(i, c)| self.cond(c, &format!("{key}.all[{i}]")))
                .collect::<Result<_, _>>()?;
            parts.push(Cond::All(v));
        }
        if let Some(any) = &m.any {
            let v = any
                .iter()
                .enumerate()
                .map(|(i, c)| self.cond(c, &format!("{key}.any[{i}]")))
                .collect::<Result<_, _>>()?;
            parts.push(Cond::Any(v));
        }
        Ok(match parts.len() {
            0 => Cond::True,
            1 => parts.pop().unwrap(),
            _ => Cond::All(parts.into()),
        })
    }
}

fn regex_syntax(p: &str) -> Result<(), String> {
    meta::Regex::builder()
        .syntax(syntax_config())
        .configure(meta_config())
        .build(p)
        .map(|_| ())
        .map_err(|e| {
            // The top error only says "error parsing pattern 0"; the cause
            // says what is wrong.
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            msg
        })
}

fn syntax_config() -> syntax::Config {
    syntax::Config::new()
        .case_insensitive(true)
        .unicode(false)
        .utf8(false)
}

fn meta_config() -> meta::Config {
    // Bounded: a pathological pattern fails to compile instead of eating
    // memory; matching is linear in the name (at most 254 bytes) whatever
    // the patterns.
    meta::Config::new()
        .match_kind(MatchKind::All)
        .utf8_empty(false)
        .nfa_size_limit(Some(64 << 20))
        .hybrid_cache_capacity(8 << 20)
}

fn action(a: &ActionConfig, pools: &[String]) -> Result<Action, String> {
    Ok(match a {
        ActionConfig::Simple(s) => match s.as_str() {
            "allow" => Action::Allow,
            "skip-cache" => Action::SkipCache,
            "drop" => Action::Drop,
            "refused" => Action::Rcode(crate::wire::dns::rcode::REFUSED),
            "nxdomain" => Action::Rcode(crate::wire::dns::rcode::NXDOMAIN),
            "servfail" => Action::Rcode(crate::wire::dns::rcode::SERVFAIL),
            "truncate" => Action::Truncate,
            other => {
                return Err(format!(
                    "unknown action `{other}` (allow, skip-cache, drop, refused, nxdomain, servfail, truncate, {{ spoof = [...] }}, {{ pool = \"...\" }})"
                ))
            }
        },
        ActionConfig::Spoof { spoof, ttl } => {
            let (mut v4, mut v6) = (Vec::new(), Vec::new());
            for s in spoof {
                match s.parse::<IpAddr>() {
                    Ok(IpAddr::V4(a)) => v4.push(a.octets()),
                    Ok(IpAddr::V6(a)) => v6.push(a.octets()),
                    Err(_) => return Err(format!("spoof: `{s}` is not an address")),
                }
            }
            if v4.len() + v6.len() == 0 || v4.len() > 16 || v6.len() > 16 {
                return Err("spoof needs 1 to 16 addresses per family".into());
            }
            Action::Spoof {
                v4: v4.into(),
                v6: v6.into(),
                ttl: *ttl,
            }
        }
        ActionConfig::Pool { pool } => match pools.iter().position(|p| p == pool) {
            Some(i) => Action::Pool(i as u16),
            None => return Err(format!("unknown pool `{pool}`")),
        },
    })
}

impl RuleSet {
    /// Compiles a configuration's rules (inline and `rules.file`, in match
    /// order) for `workers` workers: the engine calls it for the workers it
    /// runs, at start and on every reload. An error names the file that
    /// holds the rule, its line and its index there.
    pub fn from_config(cfg: &Config, workers: usize) -> Result<RuleSet, ConfigError> {
        RuleSet::compile(&cfg.rules, &cfg.pool_names(), workers)
            .map_err(|e| cfg.rule_sources.error(e.index, &e.key, e.message))
    }

    /// Whether a configuration's rules compile (the check commands, and
    /// ctl before it hands a file to the engine).
    pub fn check(cfg: &Config) -> Result<(), ConfigError> {
        RuleSet::from_config(cfg, 1).map(drop)
    }

    /// Compiles `rules` for `workers` workers; `pools` are the snapshot's
    /// pool names in index order.
    pub fn compile(
        rules: &[RuleConfig],
        pools: &[String],
        workers: usize,
    ) -> Result<RuleSet, RuleError> {
        let mut b = Builder {
            patterns: Vec::new(),
            rates: 0,
        };
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let mut names = names::NamesBuilder::default();
        let mut sources = prefix::PrefixBuilder::default();
        let mut set = RuleSet {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            rules: Box::new([]),
            names: names::NameIndex::default(),
            regex: None,
            regex_gate: regex_gate::FirstBytes::of(&[], &syntax_config()),
            regex_rules: Vec::new(),
            regex_indexed: false,
            qtype: HashMap::with_hasher(RandomState::new()),
            sources: prefix::PrefixIndex::default(),
            generic: Box::new([]),
            workers: workers.max(1),
            hits: Box::new([]),
            hits_shared: Box::new([]),
        };
        let mut compiled = Vec::with_capacity(rules.len());
        let mut generic = Vec::new();
        let mut regex_rules: Vec<(u32, u32)> = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let err = |(key, message): (String, String)| RuleError {
                index: i,
                key,
                message,
            };
            let key = format!("rule[{i}].match");
            let cond = b.cond(&r.matches, &key).map_err(err)?;
            let act =
                action(&r.action, pools).map_err(|m| err((format!("rule[{i}].action"), m)))?;
            let idx = i as u32;
            // Index by the most selective key; keep the rest as the residual.
            let mut parts = match cond {
                Cond::All(p) => p.into_vec(),
                c => vec![c],
            };
            let rank = |c: &Cond| match c {
                Cond::Names(_) => 0,
                Cond::Suffixes(_) => 1,
                Cond::Source(_) => 2,
                Cond::Regex(_) => 3,
                Cond::QType(_) => 4,
                _ => 9,
            };
            let best = parts
                .iter()
                .enumerate()
                .min_by_key(|(_, c)| rank(c))
                .map(|(j, c)| (j, rank(c)));
            match best {
                Some((j, r)) if r < 9 => match parts.remove(j) {
                    Cond::Names(n) => n.into_iter().for_each(|k| names.exact(k, idx)),
                    Cond::Suffixes(s) => {
                        s.into_vec().into_iter().for_each(|k| names.suffix(k, idx))
                    }
                    Cond::Source(p) => p.iter().for_each(|p| sources.insert(*p, idx)),
                    Cond::Regex(ids) => ids.iter().for_each(|&p| regex_rules.push((p, idx))),
                    Cond::QType(t) => t
                        .iter()
                        .for_each(|&t| set.qtype.entry(t).or_default().push(idx)),
                    _ => unreachable!(),
                },
                _ => generic.push(idx),
            }
            let residual = match parts.len() {
                0 => Cond::True,
                1 => parts.pop().unwrap(),
                _ => Cond::All(parts.into()),
            };
            compiled.push(Rule {
                name: r.name.get_ref().clone(),
                residual,
                action: act,
            });
        }
        if !b.patterns.is_empty() {
            let re = meta::Regex::builder()
                .syntax(syntax_config())
                .configure(meta_config())
                .build_many(&b.patterns)
                .map_err(|e| RuleError {
                    index: 0,
                    key: "rule".into(),
                    message: format!("the combined regex set does not compile: {e}"),
                })?;
            set.regex_rules = vec![None; b.patterns.len()];
            set.regex_indexed = !regex_rules.is_empty();
            for (p, r) in regex_rules {
                set.regex_rules[p as usize] = Some(r);
            }
            set.regex = Some(re);
            set.regex_gate = regex_gate::FirstBytes::of(&b.patterns, &syntax_config());
        }
        set.names = names.build();
        set.sources = sources.build();
        set.hits = (0..set.workers * compiled.len())
            .map(|_| Counter::default())
            .collect();
        set.hits_shared = (0..compiled.len()).map(|_| AtomicU64::new(0)).collect();
        set.rules = compiled.into();
        set.generic = generic.into();
        Ok(set)
    }
}
