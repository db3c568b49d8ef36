//! What the data-plane workers share with the engine that runs them: the
//! current snapshot, the stop flag, the engine's own backend verdicts, the
//! count of attached control processes, the clock. Below io and engine, so
//! neither needs the other for it.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::fate::Fate;
use crate::snapshot::Snapshot;

/// What workers share with the engine.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub stop: AtomicBool,
    /// Backends the engine took out on its own (ICMP, silence).
    pub fate: Arc<Fate>,
    /// Control processes attached (said hello, still connected): while
    /// there is none, nothing would readmit an ejected backend, so the
    /// engine does after `failover.standalone_hold_ms`.
    pub controllers: AtomicUsize,
    epoch: Instant,
}

impl Shared {
    /// A new shared state around the first snapshot.
    pub fn new(snap: Snapshot) -> Arc<Shared> {
        Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snap),
            stop: AtomicBool::new(false),
            fate: Arc::new(Fate::default()),
            controllers: AtomicUsize::new(0),
            epoch: Instant::now(),
        })
    }

    /// Monotonic nanoseconds since the engine started.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}
