//! Data planes: thin I/O around the sans-I/O core.

pub mod ethtool;
pub mod iface;
pub mod netlink;
pub mod socket;
pub mod sys;
pub mod xdp;
