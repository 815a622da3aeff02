//! The actix shell around the pure core (feature `actor`).
//!
//! An application embeds one [`GossipNode`] per gossip node, started with
//! a [`NodeBuilder`] over any [`Transport`](crate::Transport), and talks to
//! it with messages:
//!
//! | message | reply |
//! |---|---|
//! | [`Set`] (optionally with TTL) | `Result<u64, WriteError>`: the write's version |
//! | [`Broadcast`] | `Result<u64, WriteError>`; every node's subscribers get an [`UserEvent`] once |
//! | [`Delete`] | `Result<Option<u64>, WriteError>` |
//! | [`Get`] | `Option<Value>` |
//! | [`GetMember`] | `Option<MemberInfo>` |
//! | [`GetId`] | this node's [`Id`](crate::proto::Id) |
//! | [`GetMembers`] | `Vec<MemberInfo>`: status, no keys |
//! | [`GetKeys`] | one owner's keys: `Option<BTreeMap<String, Value>>` |
//! | [`GetValues`] | every owner's value of one key: `BTreeMap<String, Value>` |
//! | [`SetSeeds`] | `()`; new seeds from now on |
//! | [`Snapshot`] | [`NodeSnapshot`]: members with status, key-values |
//! | [`Subscribe`] (a [`Filter`]; optionally a watch) | a [`Subscription`] of [`Update`]s, until dropped; e.g. into an [`EventFn`] |
//! | [`Leave`] | [`LeaveOutcome`] once a peer holds the announcement, or at the timeout |
//! | [`Stop`] | `()` once the transport is closed; the actor stops |
//! | [`GetMetrics`] | [`NodeMetrics`]: protocol counters, gauges, shell counters |
//!
//! With the feature `metrics` (on by default) the node also reports its
//! counters, gauges and detection times through the `metrics` facade; the
//! series are listed in the `telemetry` module's source docs and in the
//! README's "Embedding" section.
//!
//! Many nodes in one process are spread over Arbiters (one per core) with
//! [`NodeBuilder::start_in`].
//!
//! ```no_run
//! use gossip_core::actor::{Get, NodeBuilder, Set};
//! use gossip_core::proto::Config;
//! # async fn demo(t1: Box<dyn gossip_core::Transport>, t2: Box<dyn gossip_core::Transport>) -> Result<(), Box<dyn std::error::Error>> {
//! let a = NodeBuilder::new("a").config(Config::local()).start(t1)?;
//! let seed = vec!["127.0.0.1:7000".parse()?];
//! let b = NodeBuilder::new("b").config(Config::local()).seeds(seed).start(t2)?;
//! a.send(Set::new("color", "blue")).await??;
//! // ... a few gossip rounds later:
//! let seen = b.send(Get::new("a", "color")).await?;
//! # Ok(()) }
//! ```

mod builder;
mod messages;
mod node;
mod sink;
mod subscribe;
#[cfg(feature = "metrics")]
mod telemetry;

pub use builder::{DEFAULT_MAILBOX_CAPACITY, NodeBuilder, StartError};
pub use messages::{
    ActorMetrics, Broadcast, DEFAULT_BROADCAST_TTL, DEFAULT_SUBSCRIBER_CAPACITY, Delete, Get,
    GetId, GetKeys, GetMember, GetMembers, GetMetrics, GetValues, Leave, LeaveOutcome, NodeMetrics,
    NodeSnapshot, SendErrors, Set, SetSeeds, Snapshot, Stop, Subscribe, Value,
};
pub use node::GossipNode;
pub use sink::EventFn;
pub use subscribe::{Current, EventKind, Filter, KeyValue, Kinds, Subscription, Update, UserEvent};
