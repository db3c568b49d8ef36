//! Core cost per query + answer, one core, no I/O: the sans-I/O core over a
//! DNS message (socket data plane) and over an Ethernet frame (AF_XDP data
//! plane), for every policy.
//!
//! Run: `cargo bench -p dnsrail-perf --bench core`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dnsrail_core::frame::FrameVerdict;
use dnsrail_core::wire::dns::build_query;
use dnsrail_perf::{bench_client, bench_queries, dgram_roundtrip, rig, POLICIES};
use std::net::SocketAddr;

/// One query, then the backend's answer (QR set, one A record), through the
/// core over bare DNS messages.
fn dgram(c: &mut Criterion) {
    let mut g = c.benchmark_group("core_dgram_query_answer");
    g.throughput(Throughput::Elements(1));
    for policy in POLICIES {
        let (mut core, snap, _) = rig(policy, 4);
        core.begin_batch(&snap);
        let (names, client) = (bench_queries(), bench_client());
        let mut buf = [0u8; 512];
        let mut i = 0usize;
        g.bench_function(BenchmarkId::from_parameter(policy), |b| {
            b.iter(|| {
                dgram_roundtrip(&mut core, &snap, &names[i & 1023], &client, &mut buf);
                i += 1;
                black_box(&buf);
            })
        });
    }
    g.finish();
}

fn frame_of(
    src: SocketAddr,
    dst: SocketAddr,
    smac: [u8; 6],
    dmac: [u8; 6],
    payload: &[u8],
) -> Vec<u8> {
    let (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        unreachable!()
    };
    let mut out = Vec::new();
    etherparse::PacketBuilder::ethernet2(smac, dmac)
        .ipv4(s.octets(), d.octets(), 64)
        .udp(src.port(), dst.port())
        .write(&mut out, payload)
        .unwrap();
    out
}

/// The same round trip over whole IPv4 Ethernet frames: parse, rewrite MACs,
/// addresses, ports, ID, checksums, both ways.
fn frame(c: &mut Criterion) {
    let mut g = c.benchmark_group("core_frame_query_answer");
    g.throughput(Throughput::Elements(1));
    for policy in ["round-robin", "qname-hash"] {
        let (mut core, snap, env) = rig(policy, 4);
        core.begin_batch(&snap);
        let client: SocketAddr = "198.51.100.7:33333".parse().unwrap();
        let vip: SocketAddr = "192.0.2.53:53".parse().unwrap();
        let frames: Vec<Vec<u8>> = (0..1024)
            .map(|i| {
                let q = build_query(7, &format!("www{i}.example.com"), 1);
                frame_of(
                    client,
                    vip,
                    [2, 0, 0, 0, 0, 0xc1],
                    [2, 0, 0, 0, 0, 0x1b],
                    &q,
                )
            })
            .collect();
        let mut buf = [0u8; 1024];
        let mut i = 0usize;
        g.bench_function(BenchmarkId::from_parameter(policy), |b| {
            b.iter(|| {
                let f = &frames[i & 1023];
                i += 1;
                let n = f.len();
                buf[..n].copy_from_slice(f);
                let FrameVerdict::Tx { len } = core.query_frame(&snap, &env, &mut buf, n, 1000)
                else {
                    panic!()
                };
                // Turn the forwarded frame into the backend's answer: swap
                // MACs, addresses and ports (checksum-neutral), set QR.
                swap(&mut buf, 0, 6, 6);
                swap(&mut buf, 26, 30, 4);
                swap(&mut buf, 34, 36, 2);
                buf[44] |= 0x80;
                // QR flips one bit of the UDP payload: fix the checksum.
                let ck = u16::from_be_bytes([buf[40], buf[41]]);
                let mut d = dnsrail_core::wire::checksum::Delta::ZERO;
                d.word(
                    u16::from_be_bytes([buf[44] & 0x7f, buf[45]]),
                    u16::from_be_bytes([buf[44], buf[45]]),
                );
                buf[40..42].copy_from_slice(&d.apply_udp(ck).to_be_bytes());
                let v = core.answer_frame(&snap, &env, &mut buf[..len], 2000);
                assert!(matches!(v, FrameVerdict::Tx { .. }), "{v:?}");
                black_box(&buf);
            })
        });
    }
    g.finish();
}

/// What verifying a UDP checksum costs per datagram (the frame path does it
/// for every query and answer): a valid one, and a partial one completed.
fn udp_check(c: &mut Criterion) {
    use dnsrail_core::wire::checksum::{check_udp, checksum, fold, sum_bytes};
    let mut g = c.benchmark_group("udp_checksum_verify");
    for len in [64usize, 512, 1232] {
        let mut d: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        d[4..6].copy_from_slice(&(len as u16).to_be_bytes());
        d[6..8].fill(0);
        let pseudo = sum_bytes(&[192, 0, 2, 53, 198, 51, 100, 7]) + 17 + len as u64;
        let full = checksum(pseudo, &d);
        d[6..8].copy_from_slice(&full.to_be_bytes());
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(BenchmarkId::new("valid", len), |b| {
            b.iter(|| black_box(check_udp(black_box(pseudo), black_box(&d))))
        });
        let mut p = d.clone();
        p[6..8].copy_from_slice(&fold(pseudo).to_be_bytes());
        g.bench_function(BenchmarkId::new("partial", len), |b| {
            b.iter(|| black_box(check_udp(black_box(pseudo), black_box(&p))))
        });
    }
    g.finish();
}

/// Swaps `buf[a..a+n]` and `buf[b..b+n]` without allocating.
fn swap(buf: &mut [u8], a: usize, b: usize, n: usize) {
    let (x, y) = buf.split_at_mut(b);
    x[a..a + n].swap_with_slice(&mut y[..n]);
}

criterion_group!(benches, dgram, frame, udp_check);
criterion_main!(benches);
