//! The frames of this worker's recent queries, kept after sending, so that
//! the queries a backend held when the engine took it out (its process died
//! with them in its socket buffer, or its host went silent) are sent again
//! to another backend instead of timing out. Single writer (the worker);
//! bounded: the ring holds the last `SLOTS` queries of up to `ROOM` bytes,
//! ~2.3 MiB per worker, ~400 ms of history at 20 000 qps per worker.
//! The ring is the core's (a `Core` owns one); re-sending its frames is
//! `frame::resend`.

use crate::ids::BackendId;

const SLOTS: usize = 8192;
/// Larger query frames are not kept (a query is ~60–120 bytes framed).
pub const ROOM: usize = 256;

#[derive(Clone, Copy, Default)]
struct Entry {
    port: u32,
    backend: BackendId,
    len: u16,
    /// Send time; 0 = empty or already re-sent.
    sent_ns: u64,
}

pub struct ResendRing {
    meta: Box<[Entry]>,
    bytes: Box<[[u8; ROOM]]>,
    next: usize,
    /// `Fate::changes` when the ring was last searched.
    pub seen_changes: u64,
}

impl Default for ResendRing {
    fn default() -> Self {
        ResendRing {
            meta: vec![Entry::default(); SLOTS].into_boxed_slice(),
            bytes: vec![[0u8; ROOM]; SLOTS].into_boxed_slice(),
            next: 0,
            seen_changes: 0,
        }
    }
}

/// A kept query: where it went and its frame as it left.
pub struct Kept<'a> {
    pub port: u32,
    pub backend: BackendId,
    pub sent_ns: u64,
    pub frame: &'a [u8],
}

impl ResendRing {
    /// Keeps a query frame as it left for `backend` from in-flight `port`.
    #[inline]
    pub fn keep(&mut self, port: u32, backend: BackendId, sent_ns: u64, frame: &[u8]) {
        if frame.len() > ROOM {
            return;
        }
        let i = self.next;
        self.next = (i + 1) % SLOTS;
        self.bytes[i][..frame.len()].copy_from_slice(frame);
        self.meta[i] = Entry {
            port,
            backend,
            len: frame.len() as u16,
            sent_ns: sent_ns.max(1),
        };
    }

    /// Indices of kept queries sent to a backend `out` says is out, no
    /// older than `max_age_ns`; each is handed out once.
    pub fn to_resend(
        &mut self,
        now_ns: u64,
        max_age_ns: u64,
        out: impl Fn(BackendId) -> bool,
    ) -> Vec<usize> {
        let mut v = Vec::new();
        for (i, e) in self.meta.iter_mut().enumerate() {
            if e.sent_ns != 0 && now_ns.saturating_sub(e.sent_ns) < max_age_ns && out(e.backend) {
                v.push(i);
            }
        }
        v
    }

    /// The kept query at `i` if `out` still says its backend is out,
    /// marked re-sent (it is handed out once). The check is needed again:
    /// re-sending keeps the new frames in the same ring, and they may
    /// have taken the place of entries found earlier.
    pub fn take(&mut self, i: usize, out: impl Fn(BackendId) -> bool) -> Option<Kept<'_>> {
        let e = self.meta.get_mut(i)?;
        if e.sent_ns == 0 || !out(e.backend) {
            return None;
        }
        let sent_ns = std::mem::take(&mut e.sent_ns);
        Some(Kept {
            port: e.port,
            backend: e.backend,
            sent_ns,
            frame: &self.bytes[i][..usize::from(e.len)],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_recent_small_frames_and_hands_each_out_once() {
        let mut r = ResendRing::default();
        r.keep(3, 1, 100, &[1, 2, 3]);
        r.keep(4, 2, 200, &[4, 5]);
        r.keep(5, 1, 300, &[0u8; ROOM + 1]); // too large: not kept
        let v = r.to_resend(1000, 10_000, |b| b == 1);
        assert_eq!(v, vec![0]);
        assert!(r.take(0, |b| b == 2).is_none(), "its backend is back in");
        let k = r.take(0, |b| b == 1).unwrap();
        assert_eq!(
            (k.port, k.backend, k.sent_ns, k.frame),
            (3, 1, 100, &[1u8, 2, 3][..])
        );
        assert!(r.take(0, |_| true).is_none(), "once");
        assert!(r.to_resend(1000, 10_000, |b| b == 1).is_empty());
        // Too old: left to time out.
        assert!(r.to_resend(1_000_000, 1000, |b| b == 2).is_empty());
        assert!(r.take(SLOTS + 5, |_| true).is_none());
        // The ring wraps: the oldest entry is overwritten.
        for k in 0..SLOTS {
            r.keep(k as u32, 7, 500, &[9]);
        }
        assert_eq!(r.to_resend(600, 10_000, |b| b == 2), Vec::<usize>::new());
        assert_eq!(r.to_resend(600, 10_000, |b| b == 7).len(), SLOTS);
    }

    #[test]
    fn a_resent_frame_that_took_a_found_entry_s_place_is_not_taken() {
        let mut r = ResendRing::default();
        for k in 0..SLOTS {
            r.keep(k as u32, 1, 500, &[1]);
        }
        let due = r.to_resend(600, 10_000, |b| b == 1);
        assert_eq!(due.len(), SLOTS);
        // Re-sending the first keeps its new frame (backend 0) in the place
        // of another found entry: that one is no longer backend 1's.
        let first = r.take(due[0], |b| b == 1).map(|k| k.port);
        assert_eq!(first, Some(0));
        r.keep(99, 0, 700, &[2]);
        assert!(r.take(due[0], |b| b == 1).is_none());
        assert!(r.take(due[1], |b| b == 1).is_some());
    }
}
