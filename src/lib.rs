//! gossip: facade crate.
pub use gossip_core as core;
