//! Rules: ordered (match, action) pairs run on every query before a backend
//! is picked. The first rule that matches decides; every rule counts its hits.
//!
//! Built to cost nearly nothing at 100 000 rules: each rule is indexed by the
//! most selective key of its match (exact names and suffixes in hash maps,
//! regexes in one combined automaton, source prefixes by prefix length, query
//! types in a map); a query gathers the few candidate rules from the indexes
//! and checks only those, in rule order. Rules with nothing to index
//! (`not`, `any`, `all` at the top) are checked for every query.

pub mod config;
mod names;
mod prefix;
mod regex_gate;
pub mod reply;
pub mod runtime;
mod slots;

use ahash::RandomState;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::stats::Counter;
use config::{ActionConfig, MatchConfig, RuleConfig, TypeName};
pub use prefix::Prefix;
use regex_automata::{meta, util::syntax, Input, MatchKind, PatternSet};

/// What a matching rule does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Stop looking at rules; forward as usual.
    Allow,
    /// Forward through this pool (index into the snapshot's pools).
    Pool(u16),
    Drop,
    /// Answer with this RCODE and no records.
    Rcode(u8),
    /// Answer with TC=1: a real client retries over TCP, a spoofed flood
    /// cannot.
    Truncate,
    /// Answer A/AAAA queries with these addresses (a sinkhole); other types
    /// get an empty NOERROR.
    Spoof {
        v4: Box<[[u8; 4]]>,
        v6: Box<[[u8; 16]]>,
        ttl: u32,
    },
}

#[derive(Debug)]
enum Cond {
    True,
    Names(HashSet<Box<[u8]>, RandomState>),
    Suffixes(Box<[Box<[u8]>]>),
    /// Pattern ids in the combined automaton.
    Regex(Box<[u32]>),
    QType(Box<[u16]>),
    QClass(Box<[u16]>),
    Source(Box<[Prefix]>),
    /// Per-source rate: (table id, qps, v4 bits, v6 bits).
    Rate(u32, u32, u8, u8),
    Not(Box<Cond>),
    All(Box<[Cond]>),
    Any(Box<[Cond]>),
}

#[derive(Debug)]
struct Rule {
    name: String,
    /// What must hold besides the key the rule is indexed by.
    residual: Cond,
    action: Action,
}

/// The query as rules see it.
pub struct Query<'a> {
    /// Wire-format name.
    pub name: &'a [u8],
    /// `hash::name_hash(core::NAME_SEED, name)`, which the core computes
    /// for every query anyway.
    pub name_hash: u64,
    /// Labels in `name` (the parser's [`crate::wire::dns::Question::labels`]).
    pub labels: u8,
    pub qtype: u16,
    pub qclass: u16,
    pub source: IpAddr,
    /// The current second (for rate selectors).
    pub now_s: u32,
}

impl<'a> Query<'a> {
    /// The query of message `msg` whose question is `q` (the core builds
    /// its own, with the name hash it has already made).
    pub fn new(
        msg: &'a [u8],
        q: &crate::wire::dns::Question,
        source: IpAddr,
        now_s: u32,
    ) -> Query<'a> {
        let name = q.name(msg);
        Query {
            name,
            name_hash: crate::hash::name_hash(crate::core::NAME_SEED, name),
            labels: q.labels,
            qtype: q.qtype,
            qclass: q.qclass,
            source,
            now_s,
        }
    }
}

/// Per-worker scratch space, so matching allocates nothing.
pub struct Scratch {
    /// The query name in lower case, made when a residual condition needs
    /// it (the indexes read the query's own bytes).
    lower: [u8; 256],
    lower_len: usize,
    lower_done: bool,
    /// The query name, dotted, for the regexes (which ignore case).
    dotted: [u8; 256],
    dotted_len: usize,
    /// This worker's regex search caches, by rule set id: the regex's own
    /// cache pool costs more than the search on a non-matching name.
    regex_caches: Vec<(u64, meta::Cache)>,
    patterns: Option<PatternSet>,
    regex_done: bool,
    /// Some pattern matched this query (the pattern set is only filled, and
    /// only read, then: clearing and iterating it costs its whole capacity).
    regex_hit: bool,
    cands: Vec<u32>,
    /// This worker's rate tables, one per rate selector (made on first use).
    rates: Vec<crate::dynblock::RateTable>,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            lower: [0; 256],
            lower_len: 0,
            lower_done: false,
            dotted: [0; 256],
            dotted_len: 0,
            regex_caches: Vec::new(),
            patterns: None,
            regex_done: false,
            regex_hit: false,
            cands: Vec::with_capacity(64),
            rates: Vec::new(),
        }
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

type Index<K> = HashMap<K, Vec<u32>, RandomState>;

pub struct RuleSet {
    /// Unique per compiled set: names this set's regex cache in a [`Scratch`].
    id: u64,
    rules: Box<[Rule]>,
    /// Exact names and suffixes.
    names: names::NameIndex,
    regex: Option<meta::Regex>,
    /// Which names can skip the automaton.
    regex_gate: regex_gate::FirstBytes,
    /// Rules indexed by a regex: pattern id -> rule.
    regex_rules: Vec<Option<u32>>,
    /// Some rule is indexed by a regex: every query runs the automaton.
    regex_indexed: bool,
    qtype: Index<u16>,
    sources: prefix::PrefixIndex,
    generic: Box<[u32]>,
    workers: usize,
    /// Hits per (worker, rule): worker-major so workers never share a line.
    hits: Box<[Counter]>,
    /// Hits per rule of workers past the count the set was compiled for (a
    /// reload parsed while the interface had other queues than when the
    /// engine started): shared, so counted with an atomic add, never lost.
    hits_shared: Box<[AtomicU64]>,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RuleSet({} rules)", self.rules.len())
    }
}

/// A rule that does not compile: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub index: usize,
    pub key: String,
    pub message: String,
}

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
    values: &config::OneOrMany<T>,
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
            "drop" => Action::Drop,
            "refused" => Action::Rcode(crate::wire::dns::rcode::REFUSED),
            "nxdomain" => Action::Rcode(crate::wire::dns::rcode::NXDOMAIN),
            "servfail" => Action::Rcode(crate::wire::dns::rcode::SERVFAIL),
            "truncate" => Action::Truncate,
            other => {
                return Err(format!(
                    "unknown action `{other}` (allow, drop, refused, nxdomain, servfail, truncate, {{ spoof = [...] }}, {{ pool = \"...\" }})"
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
    pub fn empty() -> RuleSet {
        RuleSet::compile(&[], &[], 1).expect("empty set compiles")
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

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn name(&self, i: usize) -> &str {
        &self.rules[i].name
    }

    /// Hits of rule `i` over all workers.
    pub fn hits(&self, i: usize) -> u64 {
        (0..self.workers)
            .map(|w| self.hits[w * self.rules.len() + i].get())
            .sum::<u64>()
            + self.hits_shared[i].load(Ordering::Relaxed)
    }

    /// The first rule matching `q`, counted as a hit of `worker`.
    #[inline(always)]
    pub fn first_match(&self, q: &Query<'_>, s: &mut Scratch, worker: usize) -> Option<&Action> {
        // An empty set (the runtime rules, usually) costs one compare, not
        // a call.
        if self.rules.is_empty() {
            return None;
        }
        self.search(q, s, worker)
    }

    fn search(&self, q: &Query<'_>, s: &mut Scratch, worker: usize) -> Option<&Action> {
        s.regex_done = false;
        s.lower_done = false;
        s.cands.clear();
        self.names
            .lookup(q.name, q.name_hash, q.labels, &mut s.cands);
        if !self.qtype.is_empty() {
            if let Some(v) = self.qtype.get(&q.qtype) {
                s.cands.extend_from_slice(v);
            }
        }
        self.sources.lookup(q.source, &mut s.cands);
        if self.regex_indexed {
            self.run_regex(q, s);
        }
        if self.regex_indexed && s.regex_hit {
            let set = s.patterns.as_ref().unwrap();
            for p in set.iter() {
                if let Some(r) = self.regex_rules[p.as_usize()] {
                    s.cands.push(r);
                }
            }
        }
        s.cands.extend_from_slice(&self.generic);
        if s.cands.len() > 1 {
            s.cands.sort_unstable();
            s.cands.dedup();
        }
        for k in 0..s.cands.len() {
            let i = s.cands[k] as usize;
            if self.holds(&self.rules[i].residual, q, s) {
                if worker < self.workers {
                    self.hits[worker * self.rules.len() + i].inc();
                } else {
                    self.hits_shared[i].fetch_add(1, Ordering::Relaxed);
                }
                return Some(&self.rules[i].action);
            }
        }
        None
    }

    fn run_regex(&self, q: &Query<'_>, s: &mut Scratch) {
        if s.regex_done {
            return;
        }
        s.regex_done = true;
        s.regex_hit = false;
        let Some(re) = &self.regex else { return };
        if !self.regex_gate.may_match(q.name) {
            return;
        }
        // The patterns ignore case: the name goes in as it came.
        s.dotted_len = crate::wire::dns::dotted(q.name, &mut s.dotted);
        let cache = regex_cache(&mut s.regex_caches, self.id, re);
        // Most names match no regex: an earliest-match search answers that
        // from the meta engine's fastest path (often a literal prefilter);
        // only a hit pays for the overlapping search that names every
        // matching pattern (and for clearing and reading the pattern set,
        // which cost its whole capacity).
        let input = Input::new(&s.dotted[..s.dotted_len]).earliest(true);
        if re.search_half_with(cache, &input).is_none() {
            return;
        }
        let ps = s
            .patterns
            .get_or_insert_with(|| PatternSet::new(re.pattern_len()));
        if ps.capacity() != re.pattern_len() {
            *ps = PatternSet::new(re.pattern_len());
        }
        ps.clear();
        re.which_overlapping_matches_with(cache, &Input::new(&s.dotted[..s.dotted_len]), ps);
        s.regex_hit = true;
    }

    fn holds(&self, c: &Cond, q: &Query<'_>, s: &mut Scratch) -> bool {
        match c {
            Cond::True => true,
            Cond::Names(set) => set.contains(lower_case(q.name, s)),
            Cond::Suffixes(list) => {
                let name = lower_case(q.name, s);
                list.iter().any(|suf| is_suffix(name, suf))
            }
            Cond::Regex(ids) => {
                self.run_regex(q, s);
                if !s.regex_hit {
                    return false;
                }
                let ps = s.patterns.as_ref().unwrap();
                ids.iter()
                    .any(|&p| ps.contains(regex_automata::PatternID::new_unchecked(p as usize)))
            }
            Cond::QType(t) => t.contains(&q.qtype),
            Cond::QClass(t) => t.contains(&q.qclass),
            Cond::Source(p) => p.iter().any(|p| p.contains(q.source)),
            Cond::Rate(id, qps, v4, v6) => {
                let id = *id as usize;
                while s.rates.len() <= id {
                    // 4 096 slots (128 KiB) per selector and worker.
                    s.rates.push(crate::dynblock::RateTable::with_slots(4096));
                }
                let p = crate::dynblock::prefix_of(q.source, *v4, *v6);
                s.rates[id].count(p, q.now_s) > *qps
            }
            Cond::Not(c) => !self.holds(c, q, s),
            Cond::All(cs) => cs.iter().all(|c| self.holds(c, q, s)),
            Cond::Any(cs) => cs.iter().any(|c| self.holds(c, q, s)),
        }
    }
}

/// The query name in lower case (label length bytes are never letters, so
/// the whole wire name folds), made once per query on first use.
#[inline]
fn lower_case<'s>(name: &[u8], s: &'s mut Scratch) -> &'s [u8] {
    if !s.lower_done {
        let n = name.len().min(256);
        for (d, &c) in s.lower.iter_mut().zip(&name[..n]) {
            *d = c.to_ascii_lowercase();
        }
        s.lower_len = n;
        s.lower_done = true;
    }
    &s.lower[..s.lower_len]
}

/// The worker's search cache for rule set `id`'s regex. Caches of sets that
/// a reload replaced are dropped once more than a few pile up.
fn regex_cache<'a>(
    caches: &'a mut Vec<(u64, meta::Cache)>,
    id: u64,
    re: &meta::Regex,
) -> &'a mut meta::Cache {
    let at = match caches.iter().position(|c| c.0 == id) {
        Some(i) => i,
        None => {
            if caches.len() >= 4 {
                caches.remove(0);
            }
            caches.push((id, re.create_cache()));
            caches.len() - 1
        }
    };
    &mut caches[at].1
}

/// Whether lower-case wire name `name` equals `suffix` or lies below it, on
/// a label boundary.
fn is_suffix(name: &[u8], suffix: &[u8]) -> bool {
    let mut pos = 0;
    while pos < name.len() {
        if &name[pos..] == suffix {
            return true;
        }
        pos += 1 + usize::from(name[pos]);
    }
    false
}

#[cfg(test)]
mod tests;
