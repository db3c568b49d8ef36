//! dnsrail engine: the UDP data plane of the dnsrail DNS load balancer.
//!
//! Layout (see docs/architecture.md): the sans-I/O data path is the
//! `dnsrail-core` crate, re-exported here under the same module names
//! (`wire`, `config`, `rules`, `policy`, `snapshot`, `inflight`, `core`,
//! `frame`, `stats` …). This crate adds what touches the system: `io` the
//! data planes (kernel sockets, AF_XDP), `shared` the state workers share,
//! `engine` the running engine (workers, reload, stop), `control` its
//! control socket, `logging`.

pub use dnsrail_core::{
    cache, config, core, dynblock, fate, frame, hash, ids, inflight, policy, rules, snapshot,
    stats, wire,
};

pub mod control;
pub mod engine;
pub mod io;
pub mod logging;
pub mod shared;
