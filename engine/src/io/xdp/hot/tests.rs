use super::*;
use crate::cache::{Cache, Settings};
use crate::config::PoolConfig;
use crate::wire::dns::{add_opt, build_query, parse_question, qtype};

const NS: u64 = 1_000_000_000;

/// `query`'s answer: QR, RA, one A record per TTL (owner: a pointer to
/// the question's name).
fn answer(query: &[u8], ttls: &[u32]) -> Vec<u8> {
    let q = parse_question(query).unwrap();
    let mut m = query[..q.end].to_vec();
    m[2] |= 0x80;
    m[3] = 0x80;
    m[6..8].copy_from_slice(&(ttls.len() as u16).to_be_bytes());
    m[10..12].copy_from_slice(&[0, 0]);
    for &t in ttls {
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        m.extend_from_slice(&t.to_be_bytes());
        m.extend_from_slice(&[0, 4, 192, 0, 2, 1]);
    }
    m
}

/// A cache holding the answer to `query`, and the entry a hit on it
/// copied into a scratch, as a worker has it when it promotes.
fn hit_on(query: &[u8], ttls: &[u32], stored: u64, now: u64) -> (CacheHit, Box<Scratch>) {
    let c = Cache::new(64);
    let settings = Settings::of(&PoolConfig {
        cache_entries: 64,
        ..PoolConfig::default()
    });
    let q = parse_question(query).unwrap();
    let bits = key::bits(query, &q).unwrap();
    let k = key::with_bits(7, bits);
    c.insert(0, k, &answer(query, ttls), stored, &settings);
    let mut buf = query.to_vec();
    buf.resize(2048, 0);
    let mut s = Box::<Scratch>::default();
    c.answer(0, k, &mut buf, &q, now, 0, &mut s).expect("a hit");
    (CacheHit { pool: 3, bits }, s)
}

fn bytes_of(t: &HotTier, i: usize) -> Vec<u8> {
    t.entry(i)
        .iter()
        .flat_map(|w| w.load(Ordering::Relaxed).to_ne_bytes())
        .collect()
}

/// The entry holding `key`, if any.
fn find(t: &HotTier, key: u64) -> Option<Vec<u8>> {
    (0..t.capacity())
        .map(|i| bytes_of(t, i))
        .find(|b| b[8..16] == key.to_ne_bytes())
}

#[test]
fn the_entry_is_laid_out_as_the_xdp_program_reads_it() {
    let t = HotTier::anonymous(16, 42);
    t.set_clock_zero(1000 * NS);
    let query = build_query(1, "WwW.Example.COM", qtype::A);
    let (hit, s) = hit_on(&query, &[300, 200], 5 * NS, 6 * NS);
    assert!(t.promote(hit, &s, NS));
    assert_eq!(t.promoted.load(Ordering::Relaxed), 1);
    assert_eq!(t.len(), 1);

    let name = b"\x03www\x07example\x03com\x00";
    let k = hot_key(42, &name[..name.len() - 1], [0, 1, 0, 1], 0x0100, 3);
    let b = find(&t, k).expect("under the program's key");
    let msg = answer(&query, &[300, 200]);
    let q = parse_question(&msg).unwrap();
    let tail = &msg[q.end..];
    assert_eq!(
        &b[0..8],
        &2u64.to_ne_bytes(),
        "sequence even again: written once"
    );
    assert_eq!(
        b[16..24],
        (1005 * NS + 200 * NS).to_ne_bytes(),
        "expiry (the lowest TTL), program clock"
    );
    assert_eq!(
        b[24..32],
        (1005 * NS).to_ne_bytes(),
        "stored, program clock"
    );
    assert_eq!(b[32..34], (tail.len() as u16).to_ne_bytes());
    assert_eq!(b[34..36], (name.len() as u16).to_ne_bytes());
    assert_eq!(b[36..38], 0x0100u16.to_ne_bytes(), "RD, no EDNS");
    assert_eq!(b[38..40], 3u16.to_ne_bytes(), "pool");
    assert_eq!(&b[40..44], &[0, 1, 0, 1]);
    assert_eq!(b[44], 2, "TTL fields");
    assert_eq!(&b[48..58], &msg[2..12], "flags and counts");
    // TTL offsets from the end of the question; unused ones past any answer.
    let ttl_at: Vec<u16> = b[64..128]
        .chunks(2)
        .map(|c| u16::from_ne_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(&ttl_at[..2], &[6, 22]);
    assert!(ttl_at[2..].iter().all(|&a| a == TTL_NONE));
    assert_eq!(
        &tail[6..10],
        &300u32.to_be_bytes(),
        "the kept TTLs, not aged"
    );
    assert_eq!(&b[128..128 + name.len()], name, "the name lower-cased");
    assert!(b[128 + name.len()..384].iter().all(|&x| x == 0));
    assert_eq!(&b[384..384 + tail.len()], tail);
}

#[test]
fn the_key_follows_the_query_bits_and_pool_and_ignores_case() {
    let n = b"\x01a\x07example";
    let base = hot_key(1, n, [0, 1, 0, 1], 0, 0);
    assert_eq!(base, hot_key(1, n, [0, 1, 0, 1], 0, 0));
    assert_eq!(base & 1, 1, "never 0 (an empty entry)");
    for other in [
        hot_key(2, n, [0, 1, 0, 1], 0, 0),
        hot_key(1, b"\x01b\x07example", [0, 1, 0, 1], 0, 0),
        hot_key(1, n, [0, 28, 0, 1], 0, 0),
        hot_key(1, n, [0, 1, 0, 1], EDNS, 0),
        hot_key(1, n, [0, 1, 0, 1], EDNS | DO, 0),
        hot_key(1, n, [0, 1, 0, 1], 0, 1),
    ] {
        assert_ne!(base, other);
    }
    assert_eq!(tier_bits(0x0130 | key::EDNS | key::DO), 0x0130 | EDNS | DO);
    assert_eq!(tier_bits(0x0100), 0x0100);
    assert_eq!(sets_for(1), 1);
    assert_eq!(sets_for(1000), 512);
}

#[test]
fn do_and_plain_queries_are_separate_entries() {
    let t = HotTier::anonymous(16, 9);
    let plain = build_query(1, "x.example", qtype::A);
    let mut dnssec = plain.clone();
    add_opt(&mut dnssec, 1232); // with DO
    for q in [&plain, &dnssec] {
        let (hit, s) = hit_on(q, &[60], NS, NS);
        assert!(t.promote(hit, &s, NS));
    }
    assert_eq!(t.len(), 2);
    // The same key kept again later (a refetch) goes over itself.
    let (hit, s) = hit_on(&plain, &[60], 2 * NS, 2 * NS);
    assert!(t.promote(hit, &s, 2 * NS));
    assert_eq!(t.len(), 2);
    // The very entry it holds is not written again: a query the program
    // leaves to the workers must not rewrite it on every hit.
    assert!(!t.promote(hit, &s, 3 * NS));
    assert_eq!(t.promoted.load(Ordering::Relaxed), 3);
}

#[test]
fn purge_removes_a_name_or_everything_below_a_zone_and_clear_all() {
    let t = HotTier::anonymous(64, 5);
    // Each kept at its own time: "A.example" is a refetch of "a.example".
    for (i, name) in ["a.example", "b.a.example", "A.example", "other.test"]
        .into_iter()
        .enumerate()
    {
        let at = (i as u64 + 1) * NS;
        for qt in [qtype::A, qtype::AAAA] {
            let (hit, s) = hit_on(&build_query(1, name, qt), &[60], at, at);
            assert!(t.promote(hit, &s, at));
        }
    }
    // "a.example" and "A.example" are one name.
    assert_eq!(t.len(), 6);
    assert_eq!(t.purge(b"\x01A\x07EXAMPLE\x00", false), 2);
    assert_eq!(t.len(), 4);
    assert_eq!(t.purge(b"\x07example\x00", true), 2);
    assert_eq!(t.len(), 2);
    assert_eq!(t.clear(), 2);
    assert!(t.is_empty());
}

#[test]
fn nothing_is_copied_while_the_tier_is_off_or_an_entry_is_held() {
    let t = HotTier::anonymous(2, 5);
    let query = build_query(1, "held.example", qtype::A);
    let (hit, s) = hit_on(&query, &[60], NS, NS);
    t.set_active(false);
    assert!(!t.promote(hit, &s, NS));
    t.set_active(true);
    // Both ways of the only set held by writers: the copy is skipped.
    t.entry(0)[W_SEQ].store(1, Ordering::Relaxed);
    t.entry(1)[W_SEQ].store(1, Ordering::Relaxed);
    assert!(!t.promote(hit, &s, NS));
    t.entry(0)[W_SEQ].store(2, Ordering::Relaxed);
    assert!(t.promote(hit, &s, NS));
    assert_eq!(
        bytes_of(&t, 0)[0..8],
        4u64.to_ne_bytes(),
        "even again, moved on"
    );
}

#[test]
fn a_pool_past_the_programs_counters_is_not_copied() {
    let t = HotTier::anonymous(2, 5);
    let (mut hit, s) = hit_on(&build_query(1, "p.example", qtype::A), &[60], NS, NS);
    hit.pool = 256;
    assert!(!t.promote(hit, &s, NS));
}

/// The C side states the same layout; a change on one side only fails
/// here, not in a client's answer.
#[test]
fn the_program_source_agrees_on_sizes() {
    let h = include_str!("../../../../bpf/hot.h");
    assert!(h.contains(&format!("sizeof(struct hot_entry) == {ENTRY_BYTES}")));
    assert!(h.contains(&format!("#define HOT_TTL_NONE {TTL_NONE}")));
    assert!(h.contains(&format!("#define HOT_EDNS {EDNS:#06x}")));
    assert!(h.contains(&format!("#define HOT_DO {DO:#06x}")));
    assert!(h.contains(&format!("#define HOT_TTLS {TTLS}")));
    assert!(h.contains(&format!("#define HOT_TAIL {TAIL}")));
}
