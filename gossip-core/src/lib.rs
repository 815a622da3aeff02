//! # gossip-core
//!
//! The transport-agnostic heart of the gossip framework:
//!
//! - [`proto`]: the pure protocol state machine ([`proto::Node`]) — membership
//!   with heartbeats, phi-accrual failure detection, versioned keyspaces spread
//!   by push-pull digest exchange. No I/O, no clock, no global RNG.
//! - [`transport`]: the [`Transport`] trait that carries bytes between nodes.
//! - `actor` (feature `actor`, on by default): the actix `GossipNode` that
//!   drives a `proto::Node` over a `Transport`.
#![forbid(unsafe_code)]

#[cfg(feature = "actor")]
// A shell: it reads the real clock to feed `now` into the pure core.
#[allow(clippy::disallowed_methods)]
pub mod actor;
pub mod proto;
pub mod transport;

pub use transport::{Incoming, Received, Transport, TransportError};
