//! Backend selection policies.
//!
//! A [`Selector`] is built once per snapshot over the backends that may take
//! traffic (health and drain are applied at build time, since both produce a
//! new snapshot), so picking never scans past down backends and costs O(1) or
//! O(log n), except least-outstanding which must look at every member.

pub use crate::config::PolicyKind;
use crate::hash;
use crate::ids::BackendId;

/// What a selector needs from the query to decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    None,
    Qname,
    Client,
}

/// A candidate backend as the snapshot builder sees it.
#[derive(Clone, Debug)]
pub struct Member<'a> {
    pub id: BackendId,
    pub name: &'a str,
    pub weight: u32,
    pub order: u32,
}

/// Longest weighted-round-robin schedule; larger weight sums are scaled down.
const MAX_SCHEDULE: u64 = 1 << 16;
/// Ring points per unit of weight, and the most points a ring may hold.
const RING_POINTS_PER_WEIGHT: u64 = 160;
const MAX_RING_POINTS: u64 = 1 << 16;

#[derive(Clone, Debug)]
pub enum Selector {
    Empty,
    RoundRobin(Box<[BackendId]>),
    /// Smooth weighted round robin, unrolled into one cycle.
    Schedule(Box<[BackendId]>),
    Random {
        ids: Box<[BackendId]>,
        /// Cumulative weights; pick = first entry above a random draw.
        cum: Box<[u64]>,
    },
    Least(Box<[(BackendId, u32)]>),
    First(BackendId),
    Ring {
        key: Key,
        points: Box<[(u64, BackendId)]>,
    },
}

/// Per-worker mutable state a pick may advance.
pub struct PickState<'a> {
    pub counter: &'a mut u64,
    pub rng: &'a mut u64,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Selector {
    /// Builds the selector of `kind` over `members` (weight-0 members never
    /// take traffic).
    pub fn build(kind: PolicyKind, members: &[Member<'_>]) -> Selector {
        let live: Vec<&Member> = members.iter().filter(|m| m.weight > 0).collect();
        if live.is_empty() {
            return Selector::Empty;
        }
        match kind {
            PolicyKind::RoundRobin => Selector::RoundRobin(live.iter().map(|m| m.id).collect()),
            PolicyKind::WeightedRoundRobin => Selector::Schedule(schedule(&live)),
            PolicyKind::WeightedRandom => {
                let mut acc = 0u64;
                let cum = live
                    .iter()
                    .map(|m| {
                        acc += u64::from(m.weight);
                        acc
                    })
                    .collect();
                Selector::Random {
                    ids: live.iter().map(|m| m.id).collect(),
                    cum,
                }
            }
            PolicyKind::LeastOutstanding => {
                Selector::Least(live.iter().map(|m| (m.id, m.weight)).collect())
            }
            PolicyKind::FirstAvailable => {
                let first = live.iter().min_by_key(|m| (m.order, m.id)).unwrap();
                Selector::First(first.id)
            }
            PolicyKind::QnameHash => ring(Key::Qname, &live),
            PolicyKind::ClientHash => ring(Key::Client, &live),
        }
    }

    pub fn key(&self) -> Key {
        match self {
            Selector::Ring { key, .. } => *key,
            _ => Key::None,
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Selector::Empty)
    }

    /// Picks a backend. `key_hash` is the hash named by [`Selector::key`];
    /// `outstanding` reports this worker's waiting queries per backend.
    #[inline]
    pub fn pick(
        &self,
        st: PickState<'_>,
        key_hash: u64,
        outstanding: impl Fn(BackendId) -> u32,
    ) -> Option<BackendId> {
        match self {
            Selector::Empty => None,
            Selector::RoundRobin(ids) | Selector::Schedule(ids) => {
                let i = *st.counter;
                *st.counter = i.wrapping_add(1);
                Some(ids[(i % ids.len() as u64) as usize])
            }
            Selector::Random { ids, cum } => {
                let total = *cum.last().unwrap();
                let r = next_rand(st.rng) % total;
                let i = cum.partition_point(|&c| c <= r);
                Some(ids[i])
            }
            Selector::Least(members) => {
                // Start at a rotating index so ties spread instead of piling
                // onto the first member.
                let n = members.len();
                let start = (*st.counter % n as u64) as usize;
                *st.counter = st.counter.wrapping_add(1);
                let mut best = members[start];
                let mut best_load = outstanding(best.0);
                for k in 1..n {
                    let m = members[(start + k) % n];
                    let load = outstanding(m.0);
                    // load/weight < best_load/best_weight, without division
                    if u64::from(load) * u64::from(best.1) < u64::from(best_load) * u64::from(m.1) {
                        best = m;
                        best_load = load;
                    }
                }
                Some(best.0)
            }
            Selector::First(id) => Some(*id),
            Selector::Ring { points, .. } => {
                let i = points.partition_point(|p| p.0 < key_hash);
                Some(points[if i == points.len() { 0 } else { i }].1)
            }
        }
    }
}

/// xorshift64*: the per-worker random source of weighted-random.
#[inline]
pub fn next_rand(s: &mut u64) -> u64 {
    let mut x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn schedule(live: &[&Member]) -> Box<[BackendId]> {
    let mut weights: Vec<u64> = live.iter().map(|m| u64::from(m.weight)).collect();
    let g = weights.iter().fold(0, |g, &w| gcd(g, w));
    weights.iter_mut().for_each(|w| *w /= g);
    let sum: u64 = weights.iter().sum();
    if sum > MAX_SCHEDULE {
        weights
            .iter_mut()
            .for_each(|w| *w = (*w * MAX_SCHEDULE / sum).max(1));
    }
    let total: i64 = weights.iter().sum::<u64>() as i64;
    // nginx's smooth weighted round robin: interleaves instead of bursting.
    let mut current = vec![0i64; live.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += *w as i64;
        }
        let (best, _) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
            .unwrap();
        current[best] -= total;
        out.push(live[best].id);
    }
    out.into_boxed_slice()
}

fn ring(key: Key, live: &[&Member]) -> Selector {
    let sum: u64 = live.iter().map(|m| u64::from(m.weight)).sum();
    let per_weight = (MAX_RING_POINTS / sum).clamp(1, RING_POINTS_PER_WEIGHT);
    let mut points = Vec::new();
    for m in live {
        // Points derive from the backend's name, not its id, so a rebuilt
        // ring (reload, health change) puts every backend where it was.
        let base = hash::bytes_hash(0x5eed, m.name.as_bytes());
        for i in 0..u64::from(m.weight) * per_weight {
            points.push((
                hash::mix(base ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                m.id,
            ));
        }
    }
    points.sort_unstable();
    Selector::Ring {
        key,
        points: points.into_boxed_slice(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(weights: &[u32]) -> Vec<Member<'static>> {
        const NAMES: [&str; 8] = ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"];
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Member {
                id: i as BackendId,
                name: NAMES[i],
                weight: w,
                order: (10 - i) as u32,
            })
            .collect()
    }

    fn counts(sel: &Selector, n: usize, picks: usize, key: impl Fn(usize) -> u64) -> Vec<usize> {
        let (mut ctr, mut rng) = (0u64, 0x1234_5678u64);
        let mut c = vec![0; n];
        for i in 0..picks {
            let st = PickState {
                counter: &mut ctr,
                rng: &mut rng,
            };
            c[usize::from(sel.pick(st, key(i), |_| 0).unwrap())] += 1;
        }
        c
    }

    #[test]
    fn round_robin_is_even() {
        let s = Selector::build(PolicyKind::RoundRobin, &members(&[1, 5, 1]));
        assert_eq!(counts(&s, 3, 3000, |_| 0), vec![1000, 1000, 1000]);
    }

    #[test]
    fn weighted_round_robin_within_one_percent() {
        let w = [5u32, 3, 2];
        let s = Selector::build(PolicyKind::WeightedRoundRobin, &members(&w));
        let c = counts(&s, 3, 100_000, |_| 0);
        for (i, &wi) in w.iter().enumerate() {
            let want = 100_000.0 * f64::from(wi) / 10.0;
            assert!((c[i] as f64 - want).abs() / want < 0.01, "{c:?}");
        }
        // Smooth: the heaviest never takes more than its share in a row.
        if let Selector::Schedule(s) = &s {
            assert_eq!(s.len(), 10);
            assert!(
                s.windows(3).all(|w| !(w[0] == w[1] && w[1] == w[2])),
                "{s:?}"
            );
        }
    }

    #[test]
    fn weighted_round_robin_huge_weights_are_bounded() {
        let s = Selector::build(
            PolicyKind::WeightedRoundRobin,
            &members(&[1_000_000, 999_999, 1]),
        );
        let Selector::Schedule(s) = s else { panic!() };
        assert!(s.len() as u64 <= MAX_SCHEDULE + 3);
        assert!(s.contains(&2));
    }

    #[test]
    fn weighted_random_follows_weights() {
        let s = Selector::build(PolicyKind::WeightedRandom, &members(&[1, 3]));
        let c = counts(&s, 2, 100_000, |_| 0);
        let share = c[1] as f64 / 100_000.0;
        assert!((share - 0.75).abs() < 0.01, "{c:?}");
    }

    #[test]
    fn zero_weight_never_picked_and_empty_is_none() {
        let s = Selector::build(PolicyKind::RoundRobin, &members(&[0, 1]));
        assert_eq!(counts(&s, 2, 10, |_| 0), vec![0, 10]);
        let e = Selector::build(PolicyKind::QnameHash, &members(&[0, 0]));
        assert!(e.is_empty());
        let (mut a, mut b) = (0, 1);
        let st = PickState {
            counter: &mut a,
            rng: &mut b,
        };
        assert_eq!(e.pick(st, 0, |_| 0), None);
    }

    #[test]
    fn first_available_uses_order() {
        let s = Selector::build(PolicyKind::FirstAvailable, &members(&[1, 1, 1]));
        // order is 10 - index: the last member has the lowest order
        assert_eq!(counts(&s, 3, 5, |_| 0), vec![0, 0, 5]);
    }

    #[test]
    fn least_outstanding_prefers_idle() {
        let s = Selector::build(PolicyKind::LeastOutstanding, &members(&[1, 1, 1]));
        let load = [50u32, 0, 7];
        let (mut ctr, mut rng) = (0u64, 1u64);
        for _ in 0..10 {
            let st = PickState {
                counter: &mut ctr,
                rng: &mut rng,
            };
            assert_eq!(s.pick(st, 0, |b| load[usize::from(b)]), Some(1));
        }
        // Weighted: 10 waiting on weight 10 beats 2 waiting on weight 1.
        let s = Selector::build(PolicyKind::LeastOutstanding, &members(&[1, 10]));
        let load = [2u32, 10];
        let st = PickState {
            counter: &mut ctr,
            rng: &mut rng,
        };
        assert_eq!(s.pick(st, 0, |b| load[usize::from(b)]), Some(1));
    }

    #[test]
    fn qname_hash_moves_about_one_nth_on_removal() {
        let all = members(&[1, 1, 1, 1, 1]);
        let full = Selector::build(PolicyKind::QnameHash, &all);
        let without: Vec<_> = all.iter().filter(|m| m.id != 2).cloned().collect();
        let less = Selector::build(PolicyKind::QnameHash, &without);
        let names = 100_000;
        let (mut a, mut b) = (0, 1);
        let mut moved = 0;
        let mut per = [0usize; 5];
        for i in 0..names {
            let name = format!("\x05q{i:04}\x07example\x03com\x00");
            let h = hash::name_hash(7, name.as_bytes());
            let before = full
                .pick(
                    PickState {
                        counter: &mut a,
                        rng: &mut b,
                    },
                    h,
                    |_| 0,
                )
                .unwrap();
            let after = less
                .pick(
                    PickState {
                        counter: &mut a,
                        rng: &mut b,
                    },
                    h,
                    |_| 0,
                )
                .unwrap();
            per[usize::from(before)] += 1;
            if before != after {
                moved += 1;
                // Only names of the removed backend move.
                assert_eq!(before, 2);
            }
        }
        let frac = moved as f64 / names as f64;
        assert!((0.15..0.25).contains(&frac), "moved {frac}");
        // And the ring spreads names fairly evenly.
        assert!(per.iter().all(|&c| c > names / 5 * 7 / 10), "{per:?}");
    }

    #[test]
    fn client_hash_is_sticky() {
        let s = Selector::build(PolicyKind::ClientHash, &members(&[1, 1, 1]));
        assert_eq!(s.key(), Key::Client);
        let (mut a, mut b) = (0, 1);
        let h = hash::bytes_hash(3, &[192, 0, 2, 1]);
        let first = s.pick(
            PickState {
                counter: &mut a,
                rng: &mut b,
            },
            h,
            |_| 0,
        );
        for _ in 0..10 {
            assert_eq!(
                s.pick(
                    PickState {
                        counter: &mut a,
                        rng: &mut b
                    },
                    h,
                    |_| 0
                ),
                first
            );
        }
    }
}
