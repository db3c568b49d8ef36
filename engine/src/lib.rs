//! dnsrail engine: the UDP data plane of the dnsrail DNS load balancer.
//!
//! Layout (see docs/architecture.md): `wire` views over packet bytes;
//! `inflight` the lock-free table of queries waiting for answers; `policy`
//! and `snapshot` the immutable state workers read; `core` the sans-I/O
//! processing of queries and answers, `frame` the same over Ethernet frames;
//! `stats` counters; `config` the file; `io` the data planes; `engine` the
//! running engine (workers, reload, stop).

pub mod config;
pub mod control;
pub mod core;
pub mod dynblock;
pub mod engine;
pub mod fate;
pub mod frame;
pub mod hash;
pub mod inflight;
pub mod io;
pub mod logging;
pub mod policy;
pub mod rules;
pub mod shared;
pub mod snapshot;
pub mod stats;
pub mod wire;
