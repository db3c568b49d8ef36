//! The AF_XDP frame paths on any bytes, as a worker meets them: the first
//! byte picks the path, the rest is the frame or the DNS payload.
//!
//! * 0, 1, 2: the bytes as a raw frame into the query, answer or ICMP path;
//! * 3: the bytes as the DNS payload of a well-formed query frame to the
//!   VIP, and if the engine forwards it, the same bytes (QR set, the
//!   engine's ID) as the backend's answer: the answer path past the key;
//! * 4: a well-formed query, then the bytes as its answer's payload with
//!   the engine's ID patched in.
//!
//! A verdict out, never a panic; a frame sent is never longer than its
//! buffer.
#![no_main]

use std::cell::RefCell;
use std::net::SocketAddr;

use dnsrail_core::frame::FrameVerdict;
use dnsrail_core::wire::dns;
use dnsrail_fuzz::{frame4, rig, Rig, BACKEND4, CLIENT_MAC, VIP4};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static RIG: RefCell<(Rig, u64)> = RefCell::new((rig(), 0));
}

const BUF: usize = 2048;

fn tx(v: &FrameVerdict, buf: &[u8]) -> Option<usize> {
    match *v {
        FrameVerdict::Tx { len } => {
            assert!(len <= buf.len());
            Some(len)
        }
        FrameVerdict::Drop(_) => None,
    }
}

/// Sends `payload` from the client to the VIP; on a forward, the engine's
/// ID and source port toward the backend.
fn forward(r: &mut Rig, payload: &[u8], now: u64) -> Option<(u16, u16)> {
    let client: SocketAddr = "198.51.100.7:33333".parse().unwrap();
    let mut f = frame4(client, VIP4.parse().unwrap(), CLIENT_MAC, payload);
    let len = f.len();
    f.resize(BUF.max(len), 0);
    let v = r.core.query_frame(&r.snap, &r.env, &mut f, len, now);
    let n = tx(&v, &f)?;
    // Forwarded (not a rule's reply): it now goes to a backend port 53.
    if n < 42 + 12 || u16::from_be_bytes([f[36], f[37]]) != 53 {
        return None;
    }
    let sport = u16::from_be_bytes([f[34], f[35]]);
    Some((u16::from_be_bytes([f[42], f[43]]), sport))
}

fn answer(r: &mut Rig, payload: &[u8], sport: u16, now: u64) {
    let dst = SocketAddr::new(dnsrail_fuzz::SRC4.into(), sport);
    // Either backend may have been picked; answer from both addresses.
    for from in [BACKEND4, "10.9.0.12:53"] {
        let mut f = frame4(from.parse().unwrap(), dst, [2, 0, 0, 0, 0, 0xb1], payload);
        let v = r.core.answer_frame(&r.snap, &r.env, &mut f, now);
        tx(&v, &f);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    RIG.with(|cell| {
        let (r, clock) = &mut *cell.borrow_mut();
        // A second of virtual time per input: the sweep keeps the table
        // from filling with queries no answer comes for.
        *clock += 1_000_000_000;
        let now = *clock;
        r.core.sweep(&r.snap, now);
        match sel % 5 {
            0 | 1 | 2 => {
                let mut f = rest.to_vec();
                let len = f.len();
                f.resize(BUF.max(len), 0);
                let v = match sel % 5 {
                    0 => r.core.query_frame(&r.snap, &r.env, &mut f, len, now),
                    1 => {
                        f.truncate(len);
                        r.core.answer_frame(&r.snap, &r.env, &mut f, now)
                    }
                    _ => r.core.icmp_frame(&r.snap, &r.env, &mut f, len, now),
                };
                tx(&v, &f);
            }
            3 => {
                if let Some((id, sport)) = forward(r, rest, now) {
                    let mut a = rest.to_vec();
                    if a.len() >= 12 {
                        a[..2].copy_from_slice(&id.to_be_bytes());
                        a[2] |= 0x80;
                        answer(r, &a, sport, now + 1000);
                    }
                }
            }
            _ => {
                let q = dns::build_query(7, "www.example.com", dns::qtype::A);
                if let Some((id, sport)) = forward(r, &q, now) {
                    let mut a = rest.to_vec();
                    if a.len() >= 2 {
                        a[..2].copy_from_slice(&id.to_be_bytes());
                    }
                    answer(r, &a, sport, now + 1000);
                }
            }
        }
    });
});
