//! One packet cache shared by the workers, or one cache per worker? Both
//! are measured here with the same total memory, on the cache's own code
//! (`dnsrail_core::cache::Cache`: its sets, doorkeeper and eviction):
//!
//! 1. **Hit rate.** A resolver farm's query stream: 1 000 000 names asked
//!    with Zipf(0.9) popularity (a few names asked very often, a long tail
//!    asked once), 4 000 000 queries spread over the workers at random, as
//!    RSS spreads clients over NIC queues (the same name reaches every
//!    queue). 65 536 entries in all: one cache of 65 536, or W caches of
//!    65 536 / W. Hit rate over the last 3 000 000 queries (the first
//!    million fill the caches).
//! 2. **Cost.** Two threads on the two CPUs answer hits (1 024 names held
//!    in 16 384 entries) from one shared cache, then each from its own, in interleaved
//!    rounds; ns per answered query, median of the rounds. A hit reads an
//!    entry and writes nothing shared (counts are per worker), so sharing
//!    should cost nothing: this checks it.
//!
//! Run: `cargo run --release -p dnsrail-perf --bin cache_sharing`

use dnsrail_core::cache::{key, Cache, Scratch, Settings};
use dnsrail_core::hash::QuestionKey;
use dnsrail_core::wire::dns::{build_query, parse_question};
use std::sync::Barrier;
use std::time::Instant;

const NAMES: usize = 1_000_000;
const QUERIES: usize = 4_000_000;
const WARM: usize = 1_000_000;
const ENTRIES: usize = 65_536;
const ZIPF_S: f64 = 0.9;
const ROUNDS: usize = 9;
const PER_ROUND: usize = 2_000_000;

/// xorshift64*: a fixed, fast sequence (the same every run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One name: its query, the key the engine would give it, and a backend's
/// answer (one A record, TTL 300).
struct Name {
    query: Vec<u8>,
    key: u64,
}

fn name(i: usize, qk: &QuestionKey) -> Name {
    let query = build_query(7, &format!("n{i}.example.net"), 1);
    let q = parse_question(&query).expect("a query we built");
    let qhash = qk.hash(q.name(&query), q.qtype, q.qclass);
    let key = key::of(&query, &q, qhash).expect("a plain query is cacheable");
    Name { query, key }
}

fn answer_of(query: &[u8]) -> Vec<u8> {
    let mut a = query.to_vec();
    a[2] |= 0x80;
    a[7] = 1;
    a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1]);
    a
}

fn settings(entries: usize) -> Settings {
    Settings {
        entries,
        max_ttl_s: 86_400,
        min_ttl_s: 0,
        negative_ttl_s: 3_600,
        stale_s: 0,
        servfail_s: 0,
    }
}

/// Asks `cache` for name `n` as worker `w`; on a miss, inserts the answer.
/// Returns whether it was a hit.
fn ask(cache: &Cache, w: usize, n: &Name, buf: &mut [u8], now: u64, s: &Settings) -> bool {
    let len = n.query.len();
    buf[..len].copy_from_slice(&n.query);
    let q = parse_question(&buf[..len]).expect("a query we built");
    if cache
        .answer(w, n.key, buf, &q, now, 0, &mut Scratch::default())
        .is_some()
    {
        return true;
    }
    cache.insert(w, n.key, &answer_of(&n.query), now, s);
    false
}

/// Zipf(s) over `n` ranks: the cumulative weights, for a binary search.
fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    let mut c = Vec::with_capacity(n);
    let mut sum = 0.0;
    for r in 1..=n {
        sum += 1.0 / (r as f64).powf(s);
        c.push(sum);
    }
    for v in &mut c {
        *v /= sum;
    }
    c
}

fn hit_rates(names: &[Name]) {
    let cdf = zipf_cdf(NAMES, ZIPF_S);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // (rank, worker draw) per query, the same stream for every layout.
    let stream: Vec<(u32, u32)> = (0..QUERIES)
        .map(|_| {
            let u = rng.unit();
            let rank = cdf.partition_point(|&c| c < u).min(NAMES - 1);
            (rank as u32, rng.next() as u32)
        })
        .collect();
    let distinct = {
        let mut seen = vec![false; NAMES];
        stream[WARM..]
            .iter()
            .filter(|(r, _)| !std::mem::replace(&mut seen[*r as usize], true))
            .count()
    };
    println!(
        "hit rate: {NAMES} names, Zipf({ZIPF_S}), {QUERIES} queries spread at random over the workers, {ENTRIES} entries in all; measured over the last {} queries ({distinct} distinct names among them)\n",
        QUERIES - WARM
    );
    println!("| workers | one shared cache | a cache per worker | difference |");
    println!("|---|---|---|---|");
    let mut buf = [0u8; 600];
    for workers in [1usize, 2, 4, 8] {
        let mut rates = Vec::new();
        for per_worker in [false, true] {
            let caches: Vec<Cache> = if per_worker {
                (0..workers)
                    .map(|_| Cache::new(ENTRIES / workers))
                    .collect()
            } else {
                vec![Cache::new(ENTRIES)]
            };
            let s = settings(ENTRIES);
            let mut hits = 0u64;
            for (i, &(rank, draw)) in stream.iter().enumerate() {
                let w = draw as usize % workers;
                let cache = &caches[if per_worker { w } else { 0 }];
                let now = 1_000_000_000 + i as u64 * 10_000; // 100 000 qps
                let hit = ask(cache, w, &names[rank as usize], &mut buf, now, &s);
                if hit && i >= WARM {
                    hits += 1;
                }
            }
            rates.push(100.0 * hits as f64 / (QUERIES - WARM) as f64);
        }
        println!(
            "| {workers} | {:.1} % | {:.1} % | {:+.1} points |",
            rates[0],
            rates[1],
            rates[1] - rates[0]
        );
    }
}

/// ns per hit with two threads, each answering `names` from `cache(t)`.
fn two_threads<'c>(names: &[Name], cache: &dyn Fn(usize) -> &'c Cache) -> f64 {
    let start = Barrier::new(2);
    let times: Vec<f64> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..2)
            .map(|t| {
                let (start, c) = (&start, cache(t));
                sc.spawn(move || {
                    let mut buf = [0u8; 600];
                    let mut scratch = Scratch::default();
                    start.wait();
                    let t0 = Instant::now();
                    let mut hits = 0usize;
                    for i in 0..PER_ROUND {
                        let n = &names[(i * 7 + t * 512) & 1023];
                        let len = n.query.len();
                        buf[..len].copy_from_slice(&n.query);
                        let q = parse_question(&buf[..len]).expect("a query we built");
                        hits += c
                            .answer(t, n.key, &mut buf, &q, 2_000_000_000, 0, &mut scratch)
                            .is_some() as usize;
                    }
                    assert!(hits * 100 >= PER_ROUND * 99, "names not held: {hits}");
                    t0.elapsed().as_nanos() as f64 / PER_ROUND as f64
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    times.iter().sum::<f64>() / times.len() as f64
}

fn cost(names: &[Name]) {
    let s = settings(16_384);
    // Twice: a name that met a full set is admitted on its second miss.
    let fill = |c: &Cache| {
        let mut buf = [0u8; 600];
        for n in names[..1024].iter().chain(&names[..1024]) {
            ask(c, 0, n, &mut buf, 1_000_000_000, &s);
        }
    };
    let shared = Cache::new(16_384);
    fill(&shared);
    let own = [Cache::new(16_384), Cache::new(16_384)];
    own.iter().for_each(fill);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        a.push(two_threads(names, &|_| &shared));
        b.push(two_threads(names, &|t| &own[t]));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (sa, sb) = (median(&mut a), median(&mut b));
    println!(
        "\ncost: two threads answering hits (1 024 names held in 16 384 entries), {ROUNDS} interleaved rounds of {PER_ROUND} each, median ns per query\n"
    );
    println!("| layout | ns per query |");
    println!("|---|---|");
    println!("| one shared cache | {sa:.1} |");
    println!("| a cache per thread | {sb:.1} |");
    println!("| shared ÷ own | {:.2} |", sa / sb);
}

fn main() {
    let qk = QuestionKey::random();
    let names: Vec<Name> = (0..NAMES).map(|i| name(i, &qk)).collect();
    hit_rates(&names);
    cost(&names);
}
