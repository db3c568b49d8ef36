//! The rule engine through the query path: any question (name bytes as
//! they come, type, class) from any client address, through a snapshot
//! with one rule of each matcher kind and action. Matched, forwarded or
//! dropped: never a panic, and a reply fits its buffer.
#![no_main]

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dnsrail_core::core::{Client, QueryOutcome};
use dnsrail_fuzz::{rig, Rig};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static RIG: RefCell<(Rig, u64)> = RefCell::new((rig(), 0));
}

fuzz_target!(|data: &[u8]| {
    // [v6?][16 address bytes][qtype 2][qclass 2][name wire bytes…]
    if data.len() < 21 {
        return;
    }
    let ip = if data[0] & 1 == 0 {
        IpAddr::V4(Ipv4Addr::new(data[1], data[2], data[3], data[4]))
    } else {
        IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&data[1..17]).unwrap()))
    };
    let frontend = u16::from(data[0] >> 1 & 1);
    let (qt, qc, name) = (&data[17..19], &data[19..21], &data[21..]);
    let mut msg = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    msg.extend_from_slice(name);
    msg.extend_from_slice(qt);
    msg.extend_from_slice(qc);
    let len = msg.len();
    msg.resize(len + 1024, 0);
    RIG.with(|cell| {
        let (r, clock) = &mut *cell.borrow_mut();
        *clock += 100_000_000;
        let now = *clock;
        r.core.sweep(&r.snap, now);
        let client = Client {
            ip,
            port: 5353,
            mac: [0; 6],
        };
        let out = r
            .core
            .query(&r.snap, frontend, &mut msg, len, &client, now, |_| Ok(()));
        if let QueryOutcome::Reply { len } = out {
            assert!(len <= msg.len());
        }
    });
});
