//! Rules: ordered (match, action) pairs run on every query before a backend
//! is picked. The first rule that matches decides; every rule counts its hits.
//!
//! Built to cost nearly nothing at 100 000 rules: each rule is indexed by the
//! most selective key of its match (exact names and suffixes in hash maps,
//! regexes in one combined automaton, source prefixes by prefix length, query
//! types in a map); a query gathers the few candidate rules from the indexes
//! and checks only those, in rule order. Rules with nothing to index
//! (`not`, `any`, `all` at the top) are checked for every query.

mod compile;
mod matcher;
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

pub use compile::wire_name;
pub use prefix::Prefix;
use regex_automata::{meta, PatternSet};

/// What a matching rule does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Stop looking at rules; forward as usual.
    Allow,
    /// Stop looking at rules; forward past the pool's packet cache (not
    /// answered from it, its answer not kept).
    SkipCache,
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
    /// `hash::name_hash(hash::NAME_SEED, name)`, which the core computes
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
            name_hash: crate::hash::name_hash(crate::hash::NAME_SEED, name),
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

impl RuleSet {
    pub fn empty() -> RuleSet {
        RuleSet::compile(&[], &[], 1).expect("empty set compiles")
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

    /// Workers with a single-writer hit counter of their own (those past it
    /// count into a shared atomic).
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Hits of rule `i` over all workers.
    pub fn hits(&self, i: usize) -> u64 {
        (0..self.workers)
            .map(|w| self.hits[w * self.rules.len() + i].get())
            .sum::<u64>()
            + self.hits_shared[i].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests;
