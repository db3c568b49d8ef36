//! Data planes: thin I/O around the sans-I/O core.

pub mod socket;
pub mod sys;
