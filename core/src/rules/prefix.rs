//! Source prefixes and their index: one hash table per prefix length
//! present, so a lookup costs one masked probe per distinct length, not a
//! list scan.

use std::collections::HashMap;
use std::net::IpAddr;

use super::slots::Slots;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    v6: bool,
    /// IPv4 in the low 32 bits.
    addr: u128,
    len: u8,
}

fn mask(bits: u8, width: u8) -> u128 {
    if bits == 0 {
        0
    } else {
        let all = if width == 128 {
            u128::MAX
        } else {
            (1u128 << width) - 1
        };
        all & !((1u128 << (width - bits)) - 1)
    }
}

fn key(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            // A v4-mapped client is an IPv4 client for the rules.
            Some(v4) => (false, u128::from(u32::from(v4))),
            None => (true, u128::from(a)),
        },
    }
}

impl Prefix {
    /// `192.0.2.0/24`, `2001:db8::/32`, or a bare address (a host prefix).
    /// Host bits set beyond the length are cleared.
    pub fn parse(s: &str) -> Option<Prefix> {
        let (ip, len) = match s.split_once('/') {
            Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let (v6, addr) = match ip {
            IpAddr::V4(a) => (false, u128::from(u32::from(a))),
            IpAddr::V6(a) => (true, u128::from(a)),
        };
        let width = if v6 { 128 } else { 32 };
        let len = len.unwrap_or(width);
        if len > width {
            return None;
        }
        Some(Prefix {
            v6,
            addr: addr & mask(len, width),
            len,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (v6, a) = key(ip);
        v6 == self.v6 && a & mask(self.len, if v6 { 128 } else { 32 }) == self.addr
    }
}

/// The masked addresses of one (family, length) and their rules.
struct Table {
    v6: bool,
    len: u8,
    /// The prefix mask, made once (a variable-width u128 mask per query
    /// costs more than the probe).
    mask: u128,
    slots: Slots,
    keys: Vec<u128>,
    /// Rules of key i: `ids[starts[i]..starts[i + 1]]`.
    starts: Vec<u32>,
    ids: Vec<u32>,
}

/// One folded multiply (the high and low halves of a 64×64 product xored):
/// both the slot bits and the tag bits depend on every address bit, at a
/// fraction of the latency of a full avalanche.
#[inline]
fn key_hash(addr: u128) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let x = (addr as u64) ^ ((addr >> 64) as u64).wrapping_mul(K) ^ 0x7072_6566_6978;
    let m = u128::from(x) * u128::from(K ^ 0x5bd1_e995);
    (m as u64) ^ (m >> 64) as u64
}

#[derive(Default)]
pub struct PrefixBuilder {
    /// (v6, length) -> masked address -> rules, in rule order.
    tables: Vec<(bool, u8, HashMap<u128, Vec<u32>>)>,
}

impl PrefixBuilder {
    pub fn insert(&mut self, p: Prefix, rule: u32) {
        let i = match self.tables.iter().position(|t| t.0 == p.v6 && t.1 == p.len) {
            Some(i) => i,
            None => {
                self.tables.push((p.v6, p.len, HashMap::new()));
                self.tables.len() - 1
            }
        };
        self.tables[i].2.entry(p.addr).or_default().push(rule);
    }

    pub fn build(self) -> PrefixIndex {
        let mut tables: Vec<Table> = self
            .tables
            .into_iter()
            .map(|(v6, len, map)| {
                let mut t = Table {
                    v6,
                    len,
                    mask: mask(len, if v6 { 128 } else { 32 }),
                    slots: Slots::default(),
                    keys: Vec::with_capacity(map.len()),
                    starts: vec![0],
                    ids: Vec::new(),
                };
                for (k, rules) in map {
                    t.keys.push(k);
                    t.ids.extend_from_slice(&rules);
                    t.starts.push(t.ids.len() as u32);
                }
                t.slots = Slots::build(t.keys.iter().map(|&k| key_hash(k)));
                t
            })
            .collect();
        // Longest first: the order does not change the answer (candidates
        // are sorted by rule), only keeps it stable.
        tables.sort_by_key(|t| (t.v6, std::cmp::Reverse(t.len)));
        PrefixIndex { tables }
    }
}

/// One open-addressing table per (family, prefix length) present: a lookup
/// costs one masked probe per distinct length, not a list scan.
#[derive(Default)]
pub struct PrefixIndex {
    tables: Vec<Table>,
}

impl PrefixIndex {
    #[inline]
    pub fn lookup(&self, ip: IpAddr, out: &mut Vec<u32>) {
        if self.tables.is_empty() {
            return;
        }
        let (v6, a) = key(ip);
        for t in &self.tables {
            if t.v6 == v6 {
                let k = a & t.mask;
                if let Some(i) = t.slots.find(key_hash(k), |i| t.keys[i] == k) {
                    out.extend_from_slice(&t.ids[t.starts[i] as usize..t.starts[i + 1] as usize]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_and_shorter_prefixes_all_report_their_rules() {
        let mut b = PrefixBuilder::default();
        b.insert(Prefix::parse("10.0.0.0/8").unwrap(), 0);
        b.insert(Prefix::parse("10.1.0.0/16").unwrap(), 1);
        b.insert(Prefix::parse("10.1.2.3").unwrap(), 2);
        b.insert(Prefix::parse("2001:db8::/32").unwrap(), 3);
        b.insert(Prefix::parse("10.1.0.0/16").unwrap(), 4);
        b.insert(Prefix::parse("0.0.0.0/0").unwrap(), 5);
        let ix = b.build();
        let find = |ip: &str| {
            let mut out = Vec::new();
            ix.lookup(ip.parse().unwrap(), &mut out);
            out.sort();
            out
        };
        assert_eq!(find("10.1.2.3"), [0, 1, 2, 4, 5]);
        assert_eq!(find("10.1.9.9"), [0, 1, 4, 5]);
        assert_eq!(find("10.2.0.1"), [0, 5]);
        assert_eq!(find("192.0.2.1"), [5]);
        // A v4-mapped client is an IPv4 client.
        assert_eq!(find("::ffff:10.1.2.3"), [0, 1, 2, 4, 5]);
        assert_eq!(find("2001:db8:1::1"), [3]);
        assert_eq!(find("2001:db9::1"), Vec::<u32>::new());
    }
}
