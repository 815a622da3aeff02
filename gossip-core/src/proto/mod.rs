//! The pure protocol core: no I/O, no clock, no global RNG.
//!
//! [`Node`] is the state machine; everything else here is what it is made of
//! or what it takes and gives. Callers pass `now` into every call and seed
//! the node's RNG, so the simulator, tests and production run identical logic.

pub mod broadcast;
mod budget;
pub mod codec;
pub mod config;
pub mod detection;
pub mod eager;
pub mod error;
pub mod event;
mod events;
mod failure;
pub mod id;
mod keyspace;
mod loglimit;
mod membership;
pub mod message;
pub mod metrics;
mod node;
mod presets;
pub mod reconcile;
pub mod refute;
pub mod time;

pub use codec::{PROTOCOL_VERSION, cluster_id, decode, encode};
pub use config::Config;
pub use error::{ConfigError, RefuseReason, WriteError};
pub use event::{Event, Status, StatusReason};
pub use id::{Id, NodeId};
pub use message::{
    DigestEntry, Envelope, KeyUpdate, Message, MessageKind, NodeDelta, Rumor, RumorKind,
};
pub use metrics::{Gauges, Metrics, Refused};
pub use node::{MemberInfo, Node, Transmit};
pub use time::Instant;
