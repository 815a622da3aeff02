//! In-memory network and deterministic simulator for gossip.
#[cfg(feature = "net")]
pub mod net;
