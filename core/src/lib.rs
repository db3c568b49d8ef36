//! dnsrail-core: the sans-I/O part of the dnsrail data plane. Bytes, a
//! timestamp and a configuration in; verdicts, rewritten bytes and counters
//! out. No sockets, no AF_XDP, no C library: the engine (`dnsrail-engine`)
//! drives it over kernel sockets or AF_XDP, the fuzzer and the benchmarks
//! drive it directly.
//!
//! Layers, bottom to top (a module uses only those below it; checked by
//! `tests/layers.rs`):
//!
//! 1. `ids`, `hash`: shared ids, bounds and hashes;
//! 2. `wire`: views over packet bytes;
//! 3. `config`: the file as plain data and its validation (no compiled
//!    state, no I/O beyond reading the files it names);
//! 4. `stats`, `fate`: counters, the engine's verdicts on backends;
//! 5. `dynblock`: per-source rate tables and blocks;
//! 6. `rules`, `policy`, `cache`: compiled rule sets, backend selection,
//!    the packet cache;
//! 7. `snapshot`: the immutable state workers read;
//! 8. `inflight`: the table of queries waiting for answers;
//! 9. `core`: the processing of one query or answer;
//! 10. `frame`: the same over whole Ethernet frames (AF_XDP).

// Unsafe code is refused here, with one marked exception: the in-flight
// table's prefetch hint (`inflight::prefetch`), an intrinsic the compiler
// still calls unsafe. `forbid` could not make that exception.
#![deny(unsafe_code)]

pub mod cache;
pub mod config;
pub mod core;
pub mod dynblock;
pub mod fate;
pub mod frame;
pub mod hash;
pub mod ids;
pub mod inflight;
pub mod policy;
pub mod rules;
pub mod snapshot;
pub mod stats;
pub mod wire;
