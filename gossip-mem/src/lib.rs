//! # gossip-mem
//!
//! The in-memory world of the gossip framework:
//!
//! - [`sim`]: a deterministic discrete-event simulator that drives many pure
//!   protocol cores directly on virtual time (10,000 nodes on one core,
//!   reproducible by seed), with loss, latency, partitions, crash/restart and
//!   pause/resume.
//! - `net` (feature `net`, default): an in-memory network implementing
//!   [`gossip_core::Transport`] for actor tests, with the same fault model.
#![forbid(unsafe_code)]

#[cfg(feature = "net")]
// A shell: it reads the real clock to feed `now` into the pure core.
#[allow(clippy::disallowed_methods)]
pub mod net;
pub mod sim;
mod timed;
