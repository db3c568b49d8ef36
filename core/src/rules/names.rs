//! The exact-name and suffix index: every name a rule lists (exact or
//! suffix) in one open-addressing table.
//!
//! A query probes only the depths (label counts) some key has: its whole
//! name when an exact or suffix key is that deep, and each shorter suffix
//! whose depth a suffix key has. Each probe hashes that suffix of the
//! query's own bytes eight at a time, case folded on the fly, and compares
//! a tag in one cache line (see [`super::slots`]): a miss — nearly every
//! query — touches nothing else.

use std::collections::HashMap;

use super::slots::Slots;
use crate::hash::suffix_hash;
use crate::hash::NAME_SEED;

/// Start offsets of the labels of wire name `name`, up to the root or to a
/// label that would run past its end (never trusted to be valid).
#[inline]
fn label_starts(name: &[u8], out: &mut [u8; 128]) -> usize {
    let n = name.len();
    let (mut pos, mut depth) = (0usize, 0usize);
    while pos < n && name[pos] != 0 && depth < 128 {
        let next = pos + 1 + usize::from(name[pos]);
        if next >= n {
            break;
        }
        out[depth] = pos as u8;
        depth += 1;
        pos = next;
    }
    depth
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The lower-case wire name in the arena.
    off: u32,
    len: u32,
    /// Rules in `ids[start..]`: `exact` rules listing the name, then
    /// `suffix` rules naming it as a suffix.
    start: u32,
    exact: u32,
    suffix: u32,
}

/// The rules naming one key: as an exact name, as a suffix (rule order).
type KeyRules = (Vec<u32>, Vec<u32>);

#[derive(Default)]
pub struct NamesBuilder {
    names: HashMap<Box<[u8]>, KeyRules>,
}

impl NamesBuilder {
    /// `name`: lower-case wire form.
    pub fn exact(&mut self, name: Box<[u8]>, rule: u32) {
        self.names.entry(name).or_default().0.push(rule);
    }

    pub fn suffix(&mut self, name: Box<[u8]>, rule: u32) {
        self.names.entry(name).or_default().1.push(rule);
    }

    pub fn build(self) -> NameIndex {
        let mut ix = NameIndex {
            slots: Slots::default(),
            entries: Vec::new(),
            arena: Vec::new(),
            ids: Vec::new(),
            kinds: [0; 128],
            min_suffix: u8::MAX,
        };
        let mut arena = Vec::new();
        let mut ids = Vec::new();
        let mut hashes = Vec::with_capacity(self.names.len());
        let mut starts = [0u8; 128];
        for (name, (exact, suffix)) in self.names {
            let n = name.len().min(255);
            let depth = label_starts(&name[..n], &mut starts);
            hashes.push(suffix_hash(NAME_SEED, &name[..n], 0));
            let d = depth.min(127);
            if !exact.is_empty() {
                ix.kinds[d] |= EXACT;
            }
            if !suffix.is_empty() {
                ix.kinds[d] |= SUFFIX;
                ix.min_suffix = ix.min_suffix.min(d as u8);
            }
            ix.entries.push(Entry {
                off: arena.len() as u32,
                len: n as u32,
                start: ids.len() as u32,
                exact: exact.len() as u32,
                suffix: suffix.len() as u32,
            });
            arena.extend_from_slice(&name[..n]);
            ids.extend_from_slice(&exact);
            ids.extend_from_slice(&suffix);
        }
        ix.slots = Slots::build(hashes.into_iter());
        ix.arena = arena;
        ix.ids = ids;
        ix
    }
}

/// Keys are hashed as the core hashes query names (`NAME_SEED`): the whole
/// name's hash, which the core needs anyway, serves the deepest probe. The
/// seed is public, but the keys are the operator's: a crafted query name can
/// only land in a cluster the table already has, at a load of a quarter.
pub struct NameIndex {
    slots: Slots,
    entries: Vec<Entry>,
    arena: Vec<u8>,
    ids: Vec<u32>,
    /// Per depth d (labels): `EXACT` if some exact key has d labels,
    /// `SUFFIX` if some suffix key has.
    kinds: [u8; 128],
    /// The fewest labels of a suffix key (`u8::MAX`: no suffix key).
    min_suffix: u8,
}

const EXACT: u8 = 1;
const SUFFIX: u8 = 2;

impl Default for NameIndex {
    fn default() -> Self {
        NamesBuilder::default().build()
    }
}

impl NameIndex {
    /// Appends the rules whose exact name is the query's, and those whose
    /// suffix the query's name equals or lies below, for the wire name
    /// `name` (any case) of `labels` labels whose [`crate::hash::name_hash`]
    /// under `NAME_SEED` is `name_hash`.
    #[inline]
    pub fn lookup(&self, name: &[u8], name_hash: u64, labels: u8, out: &mut Vec<u32>) {
        if self.entries.is_empty() || name.is_empty() || name.len() > 255 {
            return;
        }
        // The whole name, if some key is as deep: the core's hash serves,
        // no walk needed. Exact keys only match there.
        let depth = usize::from(labels).min(127);
        let k = self.kinds[depth];
        if k != 0 {
            self.probe(name, name_hash, k & SUFFIX != 0, k & EXACT != 0, out);
        }
        if usize::from(self.min_suffix) < depth {
            self.shallower(name, depth, out);
        }
    }

    /// Probes the query's suffixes shallower than the whole name at the
    /// depths suffix keys have: the label walk and its stack frame stay off
    /// the path of a query that only needs its whole name probed.
    #[inline(never)]
    fn shallower(&self, name: &[u8], depth: usize, out: &mut Vec<u32>) {
        let n = name.len();
        if self.kinds[0] & SUFFIX != 0 {
            // The root as a suffix (`suffix = "."`).
            let h = suffix_hash(NAME_SEED, name, n - 1);
            self.probe(&name[n - 1..], h, true, false, out);
        }
        let mut starts = [0u8; 128];
        if label_starts(name, &mut starts) != depth {
            return; // `labels` does not describe `name`
        }
        for d in usize::from(self.min_suffix).max(1)..depth {
            if self.kinds[d] & SUFFIX != 0 {
                let at = usize::from(starts[depth - d]);
                self.probe(
                    &name[at..],
                    suffix_hash(NAME_SEED, name, at),
                    true,
                    false,
                    out,
                );
            }
        }
    }

    /// Looks `key` (a suffix of the query name, any case) up under `hash`.
    #[inline]
    fn probe(&self, key: &[u8], hash: u64, suffix: bool, exact: bool, out: &mut Vec<u32>) {
        let found = self.slots.find(hash, |i| {
            let e = &self.entries[i];
            self.arena
                .get(e.off as usize..(e.off + e.len) as usize)
                .is_some_and(|k| k.eq_ignore_ascii_case(key))
        });
        if let Some(i) = found {
            let e = self.entries[i];
            let s = e.start as usize;
            if exact {
                out.extend_from_slice(&self.ids[s..s + e.exact as usize]);
            }
            if suffix {
                let s = s + e.exact as usize;
                out.extend_from_slice(&self.ids[s..s + e.suffix as usize]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire_name;
    use super::*;

    /// Looks `dotted` up in its case as given (wire form, not folded).
    fn lookup(ix: &NameIndex, dotted: &str) -> Vec<u32> {
        let mut w = Vec::new();
        for l in dotted.split('.').filter(|l| !l.is_empty()) {
            w.push(l.len() as u8);
            w.extend_from_slice(l.as_bytes());
        }
        w.push(0);
        let mut out = Vec::new();
        let labels = dotted.split('.').filter(|l| !l.is_empty()).count() as u8;
        ix.lookup(&w, crate::hash::name_hash(NAME_SEED, &w), labels, &mut out);
        out.sort();
        out
    }

    fn index() -> NameIndex {
        let mut b = NamesBuilder::default();
        b.exact(wire_name("host.example.com").unwrap(), 0);
        b.suffix(wire_name("example.com").unwrap(), 1);
        b.exact(wire_name("example.com").unwrap(), 2);
        b.suffix(wire_name("b.c.d.e.f").unwrap(), 3);
        b.suffix(wire_name("example.com").unwrap(), 4);
        b.build()
    }

    #[test]
    fn exact_names_match_only_themselves_and_suffixes_on_label_boundaries() {
        let ix = index();
        assert_eq!(lookup(&ix, "host.example.com"), [0, 1, 4]);
        assert_eq!(lookup(&ix, "HoSt.Example.COM"), [0, 1, 4]);
        assert_eq!(lookup(&ix, "example.com"), [1, 2, 4]);
        assert_eq!(lookup(&ix, "a.host.example.com"), [1, 4]);
        assert_eq!(lookup(&ix, "evilexample.com"), Vec::<u32>::new());
        assert_eq!(lookup(&ix, "com"), Vec::<u32>::new());
        assert_eq!(lookup(&ix, "a.b.c.d.e.f"), [3]);
        assert_eq!(lookup(&ix, "c.d.e.f"), Vec::<u32>::new());
        assert_eq!(lookup(&ix, "."), Vec::<u32>::new());
    }

    #[test]
    fn the_root_as_a_suffix_matches_every_name() {
        let mut b = NamesBuilder::default();
        b.suffix(wire_name(".").unwrap(), 7);
        let ix = b.build();
        assert_eq!(lookup(&ix, "."), [7]);
        assert_eq!(lookup(&ix, "a.b"), [7]);
    }

    #[test]
    fn long_labels_and_deep_names_hash_consistently() {
        let long = format!("{}.{}.example", "x".repeat(63), "y".repeat(17));
        let deep: String = (0..60).map(|i| format!("l{i}.")).collect::<String>() + "deep";
        let mut b = NamesBuilder::default();
        b.exact(wire_name(&long).unwrap(), 0);
        b.suffix(wire_name("l59.deep").unwrap(), 1);
        let ix = b.build();
        assert_eq!(lookup(&ix, &long), [0]);
        assert_eq!(lookup(&ix, &deep), [1]);
        // Same labels, one byte different in the long one: no match.
        let other = format!("{}z.{}.example", "x".repeat(62), "y".repeat(17));
        assert_eq!(lookup(&ix, &other), Vec::<u32>::new());
    }

    #[test]
    fn a_label_running_past_the_end_stops_the_walk_without_panicking() {
        let ix = index();
        let mut out = Vec::new();
        // Claims 60 bytes, 4 present.
        ix.lookup(&[60, b'c', b'o', b'm', 0], 1, 1, &mut out);
        assert!(out.is_empty());
        ix.lookup(&[], 2, 0, &mut out);
        ix.lookup(&[3, b'c', b'o'], 3, 1, &mut out);
        // A label count that does not fit the name: no panic, no match.
        let w = wire_name("a.b.c.d.e.f").unwrap();
        for labels in [0, 2, 9, 200] {
            ix.lookup(&w, 4, labels, &mut out);
        }
        assert!(out.is_empty());
    }
}
