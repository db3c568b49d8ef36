//! Source prefixes and their index: one hash map per prefix length present,
//! so a lookup costs one masked probe per distinct length, not a list scan.

use ahash::RandomState;
use std::collections::HashMap;
use std::net::IpAddr;

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

type Table = HashMap<u128, Vec<u32>, RandomState>;

#[derive(Default)]
pub struct PrefixIndex {
    /// (v6, length) -> masked address -> rules.
    tables: Vec<(bool, u8, Table)>,
}

impl PrefixIndex {
    pub fn insert(&mut self, p: Prefix, rule: u32) {
        let t = match self
            .tables
            .iter_mut()
            .position(|t| t.0 == p.v6 && t.1 == p.len)
        {
            Some(i) => &mut self.tables[i].2,
            None => {
                self.tables
                    .push((p.v6, p.len, HashMap::with_hasher(RandomState::new())));
                &mut self.tables.last_mut().unwrap().2
            }
        };
        t.entry(p.addr).or_default().push(rule);
    }

    #[inline]
    pub fn lookup(&self, ip: IpAddr, out: &mut Vec<u32>) {
        if self.tables.is_empty() {
            return;
        }
        let (v6, a) = key(ip);
        let width = if v6 { 128 } else { 32 };
        for (tv6, len, t) in &self.tables {
            if *tv6 == v6 {
                if let Some(v) = t.get(&(a & mask(*len, width))) {
                    out.extend_from_slice(v);
                }
            }
        }
    }
}
