//! A one-byte gate in front of the combined regex automaton: the bytes a
//! match can start with, when every pattern is anchored at the start of the
//! name (`^…`, as DGA and blocklist patterns usually are). A name whose first
//! byte no pattern can start with skips the automaton, and the dotted copy
//! of the name it needs. One unanchored pattern, or one whose first byte is
//! not known, opens the gate for every name: correctness never depends on it.

use regex_automata::util::syntax;
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::Look;

#[derive(Debug, Clone)]
pub struct FirstBytes {
    /// Bit b: some pattern can match a name starting with byte b.
    set: [u64; 4],
}

impl FirstBytes {
    /// The gate for `patterns`, parsed with the configuration the automaton
    /// is built with.
    pub fn of(patterns: &[String], config: &syntax::Config) -> FirstBytes {
        let mut g = FirstBytes { set: [0; 4] };
        for p in patterns {
            match first_bytes(p, config) {
                Some(bytes) => bytes.into_iter().for_each(|b| g.add(b)),
                None => return FirstBytes { set: [u64::MAX; 4] },
            }
        }
        g
    }

    fn add(&mut self, b: u8) {
        self.set[usize::from(b >> 6)] |= 1 << (b & 63);
    }

    /// Whether some pattern may match wire name `name` (whose dotted form
    /// starts with `name[1]`). Names with an empty dotted form always pass.
    #[inline]
    pub fn may_match(&self, name: &[u8]) -> bool {
        match name {
            [len, first, ..] if *len != 0 => {
                self.set[usize::from(first >> 6)] & 1 << (first & 63) != 0
            }
            _ => true,
        }
    }
}

/// The bytes every match of `pattern` starts with, if it is anchored at the
/// start and its prefixes are a finite set of non-empty literals.
fn first_bytes(pattern: &str, config: &syntax::Config) -> Option<Vec<u8>> {
    let hir = syntax::parse_with(pattern, config).ok()?;
    if !hir.properties().look_set_prefix().contains(Look::Start) {
        return None;
    }
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
    let lits = seq.literals()?;
    if lits.is_empty() || lits.iter().any(|l| l.as_bytes().is_empty()) {
        return None;
    }
    Some(lits.iter().map(|l| l.as_bytes()[0]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(patterns: &[&str]) -> FirstBytes {
        let cfg = syntax::Config::new()
            .case_insensitive(true)
            .unicode(false)
            .utf8(false);
        let p: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        FirstBytes::of(&p, &cfg)
    }

    fn wire(dotted: &str) -> Vec<u8> {
        let mut w = Vec::new();
        for l in dotted.split('.').filter(|l| !l.is_empty()) {
            w.push(l.len() as u8);
            w.extend_from_slice(l.as_bytes());
        }
        w.push(0);
        w
    }

    #[test]
    fn anchored_literal_prefixes_close_the_gate_for_other_first_bytes() {
        let g = gate(&[r"^dga[0-9]+\.biz$", r"^(xn--|ab)c"]);
        assert!(g.may_match(&wire("dga12.biz")));
        assert!(g.may_match(&wire("DGA12.biz")), "case-insensitive");
        assert!(g.may_match(&wire("xn--abc.example")));
        assert!(g.may_match(&wire("abc.example")));
        assert!(!g.may_match(&wire("www.example.com")));
        assert!(!g.may_match(&wire("example.com")));
        // The root's dotted form is empty: always tried.
        assert!(g.may_match(&wire(".")));
        assert!(g.may_match(&[]));
    }

    #[test]
    fn any_pattern_without_a_known_first_byte_opens_the_gate() {
        for open in [
            r"dga[0-9]+\.biz$",     // not anchored
            r"^[a-z0-9]{20,}\.biz", // class too large to list
            r"^a*b",                // may start with b or a
            r"^",                   // matches the empty string
            r"(?m)^dga",            // line anchor, not the start
            r"^(dga|)x",            // an empty alternative
        ] {
            let g = gate(&[r"^dga", open]);
            if open == r"^a*b" {
                // A finite set after all: a and b, not w.
                assert!(g.may_match(&wire("bx")) && g.may_match(&wire("ab")));
                assert!(!g.may_match(&wire("www.example")), "{open}");
                continue;
            }
            if open == r"^(dga|)x" {
                assert!(g.may_match(&wire("x.example")), "{open}");
                continue;
            }
            assert!(g.may_match(&wire("www.example")), "{open}");
        }
    }
}
