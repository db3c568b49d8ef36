//! The ids and bounds every layer shares: a backend's stable id, a MAC, and
//! the table sizes that configuration validates against and the data path
//! allocates by. They live at the bottom so that configuration, counters
//! and the in-flight table need not import the snapshot or each other for
//! a constant.

/// A backend's stable id across snapshots (by name).
pub type BackendId = u16;
/// An Ethernet address.
pub type Mac = [u8; 6];

/// Backends and frontend addresses a snapshot can hold (ids index tables).
pub const MAX_BACKENDS: usize = 256;
pub const MAX_FRONTENDS: usize = 64;
/// Workers the engine runs at most (one XSKMAP entry and one counter row
/// each).
pub const MAX_WORKERS: usize = 256;

/// Bounds of `slots_per_worker` and `ports_per_worker` (a port's local
/// index fits the in-flight key's upper 16 bits).
pub const MIN_SLOTS: usize = 1 << 10;
pub const MAX_SLOTS: usize = 1 << 22;
pub const MAX_PORTS_PER_WORKER: usize = 1 << 14;
