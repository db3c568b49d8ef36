//! Matching a query against a compiled rule set: the candidates from the
//! indexes, checked in rule order, the first match counted. The hot path:
//! no allocation, the lower-cased name and the regex search made at most
//! once per query.

use std::sync::atomic::Ordering;

use super::*;
use regex_automata::{meta, Input, PatternSet};

impl RuleSet {
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
