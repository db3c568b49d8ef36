//! dnsrail load harness: a synthetic DNS backend and a bounded load driver,
//! used by the integration tests, the demo and the benchmarks.

pub mod backend;
pub mod compare;
pub mod failover;
pub mod load;
pub mod msg;
pub mod netns;
pub mod xdp_backend;
