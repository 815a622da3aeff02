//! # gossip
//!
//! A framework for gossip (epidemic) protocols: failure detection,
//! membership and dissemination of versioned key-value state, with a pure
//! protocol core and pluggable transports. This facade re-exports the crates:
//!
//! - [`core`] (`gossip-core`): the sans-io protocol ([`core::proto`]), the
//!   [`core::Transport`] trait and the actix actor;
//! - [`mem`] (`gossip-mem`, feature `mem`, default): the deterministic
//!   simulator and the in-memory transport;
//! - `quic` (`gossip-quic`, feature `quic`): the QUIC transport with mutual TLS.
#![forbid(unsafe_code)]

pub use gossip_core as core;
#[cfg(feature = "mem")]
pub use gossip_mem as mem;
#[cfg(feature = "quic")]
pub use gossip_quic as quic;
