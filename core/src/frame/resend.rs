//! Re-sending the kept query frames (`core::resend_ring`) whose backend
//! the engine took out: each is given a new in-flight slot toward another
//! member of its pool and rewritten in a free frame.

use std::net::SocketAddr;

use super::{can_send, parse, rewrite, FrameEnv, FrameVerdict};
use crate::core::Core;
use crate::snapshot::Snapshot;
use crate::stats::DropReason;

impl Core {
    /// Kept queries to re-send because the engine took their backend out
    /// since the last look (empty, at the cost of one atomic load, when
    /// nothing changed or the ring is off).
    pub fn resend_due(&mut self, snap: &Snapshot, now_ns: u64) -> Vec<usize> {
        let changes = self.fate().changes();
        match self.resend_ring() {
            Some(r) if r.seen_changes != changes => r.seen_changes = changes,
            _ => return Vec::new(),
        }
        if !snap.redispatch {
            return Vec::new();
        }
        let fate = self.fate().clone();
        let r = self.resend_ring().expect("checked above");
        r.to_resend(now_ns, snap.timeout_ns, |b| fate.is_ejected(b))
    }

    /// Writes kept query `i` into `buf` as a query to another usable member
    /// of its pool (its slot toward the ejected backend taken, a new one
    /// allocated). `Drop(NotOurs)` when there is nothing to send: it was
    /// answered or timed out meanwhile (not counted), or `Drop(reason)`
    /// counted when no backend can take it.
    pub fn resend_frame(
        &mut self,
        snap: &Snapshot,
        env: &FrameEnv,
        i: usize,
        buf: &mut [u8],
        now_ns: u64,
    ) -> FrameVerdict {
        let fate = self.fate().clone();
        let Some((port, backend, sent_ns, len)) = self.resend_ring().and_then(|r| {
            let k = r.take(i, |b| fate.is_ejected(b))?;
            let len = k.frame.len();
            buf.get_mut(..len)?.copy_from_slice(k.frame);
            Some((k.port, k.backend, k.sent_ns, len))
        }) else {
            return FrameVerdict::Drop(DropReason::NotOurs);
        };
        let Ok(p) = parse(&buf[..len]) else {
            return FrameVerdict::Drop(DropReason::NotOurs);
        };
        let id = u16::from_be_bytes([buf[p.payload_off], buf[p.payload_off + 1]]);
        let Some(pending) = self
            .table()
            .take(port, id, |q| q.backend == backend && q.sent_ns == sent_ns)
        else {
            return FrameVerdict::Drop(DropReason::NotOurs);
        };
        let v6 = p.v6;
        let msg = &mut buf[p.payload_off..p.payload_off + p.payload_len];
        let Some((to, port, delta)) =
            self.resend_query(snap, pending, msg, now_ns, can_send(env, v6))
        else {
            return FrameVerdict::Drop(DropReason::RedispatchFailed);
        };
        let (Some(be), Some(&sport)) = (snap.backend(to), env.port_numbers().get(port as usize))
        else {
            let id = u16::from_be_bytes([buf[p.payload_off], buf[p.payload_off + 1]]);
            self.table().cancel(port, id);
            return self.frame_drop(DropReason::RedispatchFailed);
        };
        let src = SocketAddr::new(env.src_for(be.addr.ip()).expect("checked"), sport);
        rewrite(
            buf,
            &p,
            (env.local_mac, be.mac.expect("checked")),
            src,
            be.addr,
            delta,
        );
        if let Some(r) = self.resend_ring() {
            r.keep(port, to, now_ns, &buf[..len]);
        }
        FrameVerdict::Tx { len }
    }
}
