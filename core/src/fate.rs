//! The engine's own verdicts on backends: taken out at once on evidence the
//! data plane sees before any health check could, and kept out until the
//! control process's health checks bring them back (rise).
//!
//! Two kinds of evidence:
//! * `Icmp`: the backend's host answered one of our queries with an ICMP
//!   destination unreachable (the DNS server process is gone), or the
//!   kernel reported the same on a connected socket (ECONNREFUSED).
//! * `Silent`: the backend has had a query outstanding for `dead_after` with
//!   no answer at all since, while another backend of one of its pools did
//!   answer in that window (a host that vanished, a firewall that drops).
//!   One answer in the window keeps a slow backend in: this is about
//!   silence, not latency.
//!
//! Workers read a backend's state with one relaxed load per query (until the
//! next snapshot takes the backend out of the selectors) and write only on
//! a transition or, for `last_answer`, at most once a millisecond. The
//! engine's fate thread turns transitions into a new snapshot and a log line.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;

use crate::ids::{BackendId, MAX_BACKENDS};

/// Why the engine took a backend out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ejection {
    Icmp = 1,
    Silent = 2,
}

impl Ejection {
    pub const ALL: [Ejection; 2] = [Ejection::Icmp, Ejection::Silent];

    /// The reason's name in logs, reports and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Ejection::Icmp => "icmp",
            Ejection::Silent => "silent",
        }
    }

    fn from_u8(v: u8) -> Option<Ejection> {
        match v {
            1 => Some(Ejection::Icmp),
            2 => Some(Ejection::Silent),
            _ => None,
        }
    }
}

/// `last_answer` is written at most this often per backend: every answer
/// would bounce the line between workers.
const ANSWER_GRAIN_NS: u64 = 1_000_000;

#[repr(align(64))]
#[derive(Default)]
struct BackendFate {
    /// 0 = in, else `Ejection as u8`.
    state: AtomicU8,
    /// Engine time of the latest answer (within `ANSWER_GRAIN_NS`); 0 = none.
    last_answer: AtomicU64,
    ejected_at: AtomicU64,
    /// Ejections so far, per reason (cumulative: ctl sees each one).
    count: [AtomicU64; 2],
}

pub struct Fate {
    backends: Box<[BackendFate]>,
    /// Bumped on every transition; the fate thread compares it.
    changes: AtomicU64,
    waker: OnceLock<Thread>,
    /// Backends ejected since the fate thread last looked, in order.
    log: Mutex<Vec<(BackendId, Ejection)>>,
}

impl Default for Fate {
    fn default() -> Self {
        Fate {
            backends: (0..MAX_BACKENDS).map(|_| BackendFate::default()).collect(),
            changes: AtomicU64::new(0),
            waker: OnceLock::new(),
            log: Mutex::new(Vec::new()),
        }
    }
}

impl Fate {
    /// The thread to wake on a transition (the engine's fate thread).
    pub fn set_waker(&self, t: Thread) {
        let _ = self.waker.set(t);
    }

    /// Why `b` is out, if the engine took it out.
    #[inline]
    pub fn ejected(&self, b: BackendId) -> Option<Ejection> {
        let f = self.backends.get(usize::from(b))?;
        Ejection::from_u8(f.state.load(Ordering::Relaxed))
    }

    #[inline]
    pub fn is_ejected(&self, b: BackendId) -> bool {
        self.hot(b).state.load(Ordering::Relaxed) != 0
    }

    /// The per-query lookups: ids come from the snapshot (< MAX_BACKENDS),
    /// so a mask instead of a bounds check and its branch.
    #[inline(always)]
    fn hot(&self, b: BackendId) -> &BackendFate {
        &self.backends[usize::from(b) & (MAX_BACKENDS - 1)]
    }

    /// Takes `b` out for `why`; true if this call did (it was in). Rare:
    /// a lock and a wake-up are fine here.
    pub fn eject(&self, b: BackendId, why: Ejection, now_ns: u64) -> bool {
        let Some(f) = self.backends.get(usize::from(b)) else {
            return false;
        };
        if f.state
            .compare_exchange(0, why as u8, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        f.ejected_at.store(now_ns, Ordering::Relaxed);
        f.count[why as usize - 1].fetch_add(1, Ordering::Relaxed);
        self.log.lock().unwrap().push((b, why));
        self.changes.fetch_add(1, Ordering::Release);
        if let Some(t) = self.waker.get() {
            t.unpark();
        }
        true
    }

    /// Lets `b` back in (health checks counted `rise` successes, or the
    /// standalone hold ran out). Returns the reason it was out for.
    pub fn readmit(&self, b: BackendId) -> Option<Ejection> {
        let f = self.backends.get(usize::from(b))?;
        let was = Ejection::from_u8(f.state.swap(0, Ordering::AcqRel));
        if was.is_some() {
            // A fresh start for the silence rule: its window begins now.
            f.last_answer.store(0, Ordering::Relaxed);
            self.changes.fetch_add(1, Ordering::Release);
        }
        was
    }

    /// When `b` was taken out (engine ns), if it is out.
    pub fn ejected_at(&self, b: BackendId) -> Option<u64> {
        let f = self.backends.get(usize::from(b))?;
        (f.state.load(Ordering::Acquire) != 0).then(|| f.ejected_at.load(Ordering::Relaxed))
    }

    /// Ejections of `b` so far for `why`.
    pub fn count(&self, b: BackendId, why: Ejection) -> u64 {
        self.backends
            .get(usize::from(b))
            .map_or(0, |f| f.count[why as usize - 1].load(Ordering::Relaxed))
    }

    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// Ejections since the last call, oldest first.
    pub fn take_log(&self) -> Vec<(BackendId, Ejection)> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    /// `b` answered at `now_ns`.
    #[inline]
    pub fn answered(&self, b: BackendId, now_ns: u64) {
        let f = self.hot(b);
        let last = f.last_answer.load(Ordering::Relaxed);
        if now_ns >= last + ANSWER_GRAIN_NS {
            f.last_answer.store(now_ns, Ordering::Relaxed);
        }
    }

    /// When `b` last answered (0: not since start or readmission).
    #[inline]
    pub fn last_answer(&self, b: BackendId) -> u64 {
        self.hot(b).last_answer.load(Ordering::Relaxed)
    }
}

/// One worker's view for the silence rule: per backend, when the oldest of
/// this worker's queries sent since the backend's last answer left. Single
/// writer, no sharing: the shared part is `Fate::last_answer`.
pub struct Silence {
    first_sent: Box<[u64]>,
}

impl Default for Silence {
    fn default() -> Self {
        Silence {
            first_sent: vec![0; MAX_BACKENDS].into_boxed_slice(),
        }
    }
}

impl Silence {
    /// A query left for `b` at `now_ns`; `was_idle`: nothing of this
    /// worker's was waiting on `b` before it.
    #[inline]
    pub fn sent(&mut self, fate: &Fate, b: BackendId, now_ns: u64, was_idle: bool) {
        let t = &mut self.first_sent[usize::from(b) & (MAX_BACKENDS - 1)];
        if was_idle || *t <= fate.last_answer(b) {
            *t = now_ns;
        }
    }

    /// True when `b` has been silent toward this worker: a query of ours
    /// waiting (`waiting > 0`) that left at least `dead_after_ns` ago, and no
    /// answer from `b` since it left. Whether peers answered is the
    /// caller's question (it knows the pools).
    pub fn silent(
        &self,
        fate: &Fate,
        b: BackendId,
        waiting: u32,
        now_ns: u64,
        dead_after_ns: u64,
    ) -> bool {
        let Some(&t) = self.first_sent.get(usize::from(b)) else {
            return false;
        };
        waiting > 0
            && t != 0
            && t > fate.last_answer(b)
            && now_ns.saturating_sub(t) >= dead_after_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eject_once_readmit_and_count() {
        let f = Fate::default();
        assert!(!f.is_ejected(3));
        assert!(f.eject(3, Ejection::Icmp, 10));
        assert!(!f.eject(3, Ejection::Silent, 20), "already out");
        assert_eq!(f.ejected(3), Some(Ejection::Icmp));
        assert_eq!(f.ejected_at(3), Some(10));
        assert_eq!(f.take_log(), vec![(3, Ejection::Icmp)]);
        assert!(f.take_log().is_empty());
        assert_eq!(f.readmit(3), Some(Ejection::Icmp));
        assert_eq!(f.readmit(3), None);
        assert!(f.eject(3, Ejection::Silent, 30));
        assert_eq!(f.count(3, Ejection::Icmp), 1);
        assert_eq!(f.count(3, Ejection::Silent), 1);
        // Out of range ids (none exist) are no one: no panic.
        assert!(!f.eject(u16::MAX, Ejection::Icmp, 0));
        assert_eq!(f.ejected(u16::MAX), None);
        assert_eq!(f.readmit(u16::MAX), None);
        let _ = (f.is_ejected(u16::MAX), f.last_answer(u16::MAX));
        f.answered(u16::MAX, 1);
    }

    #[test]
    fn silence_needs_a_waiting_query_older_than_the_window_and_no_answer() {
        let f = Fate::default();
        let mut s = Silence::default();
        let ms = 1_000_000;
        s.sent(&f, 1, 10 * ms, true);
        // Young query: not yet.
        assert!(!s.silent(&f, 1, 1, 50 * ms, 100 * ms));
        // Old enough, nothing answered: silent.
        assert!(s.silent(&f, 1, 1, 111 * ms, 100 * ms));
        // Nothing waiting (all answered or timed out): not silent.
        assert!(!s.silent(&f, 1, 0, 111 * ms, 100 * ms));
        // An answer after the query left clears it...
        f.answered(1, 60 * ms);
        assert!(!s.silent(&f, 1, 1, 200 * ms, 100 * ms));
        // ...and the next query starts a new window.
        s.sent(&f, 1, 210 * ms, false);
        assert!(!s.silent(&f, 1, 1, 300 * ms, 100 * ms));
        assert!(s.silent(&f, 1, 1, 310 * ms, 100 * ms));
        // A query after an idle spell starts the window even when the last
        // answer is old.
        s.sent(&f, 1, 900 * ms, true);
        assert!(!s.silent(&f, 1, 1, 950 * ms, 100 * ms));
    }

    #[test]
    fn answers_are_recorded_at_millisecond_grain() {
        let f = Fate::default();
        f.answered(2, 5_000_000);
        f.answered(2, 5_500_000);
        assert_eq!(f.last_answer(2), 5_000_000);
        f.answered(2, 6_000_000);
        assert_eq!(f.last_answer(2), 6_000_000);
    }
}
