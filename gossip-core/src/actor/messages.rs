//! The messages an application sends to a [`GossipNode`](super::GossipNode),
//! and what it gets back.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use actix::Message;
use bytes::Bytes;

use super::subscribe::{Filter, Subscription};
use crate::proto::{Gauges, Id, MemberInfo, Metrics as ProtoMetrics, Status, WriteError};

/// Sets `key` in this node's keyspace, optionally expiring after `ttl`.
/// Replies with the write's version.
#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<u64, WriteError>")]
pub struct Set {
    /// The key (at most `max_key_bytes`).
    pub key: String,
    /// The value (at most `max_value_bytes`).
    pub value: Bytes,
    /// If set, the node deletes the key by itself after this long.
    pub ttl: Option<Duration>,
}

impl Set {
    /// A write that never expires.
    pub fn new(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Set {
            key: key.into(),
            value: value.into(),
            ttl: None,
        }
    }

    /// A write the node deletes by itself after `ttl`.
    pub fn with_ttl(key: impl Into<String>, value: impl Into<Bytes>, ttl: Duration) -> Self {
        Set {
            key: key.into(),
            value: value.into(),
            ttl: Some(ttl),
        }
    }
}

/// How long a [`Broadcast`] lives unless it says otherwise: long enough
/// for gossip to reach every live node many times over at LAN and local
/// intervals, short enough that its key gives way soon.
pub const DEFAULT_BROADCAST_TTL: Duration = Duration::from_secs(30);

/// Sends `payload` on `topic` to every live node (Serf's user events):
/// every node's subscribers with [`Kinds::BROADCASTS`](super::Kinds::BROADCASTS)
/// in their filter get one [`Update::UserEvent`](super::Update::UserEvent),
/// this node's included. Replies with its sequence number.
///
/// It travels as a key with a TTL under
/// [`proto::broadcast::PREFIX`](crate::proto::broadcast), so it takes the
/// eager-push fast path, is delivered once per node, and lives `ttl`: a
/// node that joins (or heals from a partition) within that time still gets
/// it; later, nobody does. It counts against the keyspace limits like any
/// key (`WriteError` when they are reached) and is hidden from key events
/// and the key queries.
#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<u64, WriteError>")]
pub struct Broadcast {
    /// The topic (the key holds it: at most `max_key_bytes` with the prefix).
    pub topic: String,
    /// The payload (at most `max_value_bytes`).
    pub payload: Bytes,
    /// How long the broadcast may still be delivered.
    pub ttl: Duration,
}

impl Broadcast {
    /// A broadcast living [`DEFAULT_BROADCAST_TTL`].
    pub fn new(topic: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Broadcast {
            topic: topic.into(),
            payload: payload.into(),
            ttl: DEFAULT_BROADCAST_TTL,
        }
    }

    /// A broadcast living `ttl`.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
}

/// Deletes `key` from this node's keyspace (a tombstone spreads). Replies
/// with the tombstone's version, or `None` if the key held no value.
#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<Option<u64>, WriteError>")]
pub struct Delete {
    /// The key.
    pub key: String,
}

impl Delete {
    /// Deletes `key`.
    pub fn new(key: impl Into<String>) -> Self {
        Delete { key: key.into() }
    }
}

/// A value with the owner's version of the write that set it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    /// The value.
    pub value: Bytes,
    /// The owner's version of the write.
    pub version: u64,
}

/// Reads `key` of node `owner` as this node holds it (possibly stale: gossip
/// is eventually consistent).
#[derive(Clone, Debug, Message)]
#[rtype(result = "Option<Value>")]
pub struct Get {
    /// Name of the node owning the keyspace.
    pub owner: String,
    /// The key.
    pub key: String,
}

impl Get {
    /// Reads `owner`'s `key`.
    pub fn new(owner: impl Into<String>, key: impl Into<String>) -> Self {
        Get {
            owner: owner.into(),
            key: key.into(),
        }
    }
}

/// This node's view of one member, by name; `None` if it does not know it.
/// Cheaper than a [`Snapshot`] when watching a single member.
#[derive(Clone, Debug, Message)]
#[rtype(result = "Option<MemberInfo>")]
pub struct GetMember {
    /// The member's name.
    pub name: String,
}

impl GetMember {
    /// Looks up `name`.
    pub fn new(name: impl Into<String>) -> Self {
        GetMember { name: name.into() }
    }
}

/// This node's identity (name, address, generation): O(1), unlike a
/// [`Snapshot`].
#[derive(Clone, Copy, Debug, Default, Message)]
#[rtype(result = "Id")]
pub struct GetId;

/// The members this node knows, with status, heartbeat and key count but
/// no keys: O(members), for membership views that a [`Snapshot`] (which
/// copies every key) makes too costly. Ordered by name, this node included.
#[derive(Clone, Copy, Debug, Default, Message)]
#[rtype(result = "Vec<MemberInfo>")]
pub struct GetMembers {
    /// Only members with this status (`None`: all).
    pub status: Option<Status>,
}

impl GetMembers {
    /// Every member.
    pub fn all() -> Self {
        GetMembers { status: None }
    }

    /// Only the members with `status` (e.g. the live ones).
    pub fn with_status(status: Status) -> Self {
        GetMembers {
            status: Some(status),
        }
    }
}

/// One owner's live keys as this node holds them; `None` if it does not
/// know the owner. O(that owner's keys).
#[derive(Clone, Debug, Message)]
#[rtype(result = "Option<BTreeMap<String, Value>>")]
pub struct GetKeys {
    /// Name of the owner.
    pub owner: String,
}

impl GetKeys {
    /// `owner`'s keys.
    pub fn new(owner: impl Into<String>) -> Self {
        GetKeys {
            owner: owner.into(),
        }
    }
}

/// Every owner's value of one key, by owner name: "what does each node say
/// about `service/port`". O(members); owners without a live value under
/// the key are left out.
#[derive(Clone, Debug, Message)]
#[rtype(result = "BTreeMap<String, Value>")]
pub struct GetValues {
    /// The key.
    pub key: String,
}

impl GetValues {
    /// Every owner's `key`.
    pub fn new(key: impl Into<String>) -> Self {
        GetValues { key: key.into() }
    }
}

/// Replaces the node's seeds while it runs (its own address is ignored),
/// for deployments whose seed addresses change. A node that is alone
/// knocks on the new seeds at its next round.
#[derive(Clone, Debug, Message)]
#[rtype(result = "()")]
pub struct SetSeeds {
    /// The new seeds.
    pub seeds: Vec<SocketAddr>,
}

/// Everything this node knows, copied out: O(members + keys), so meant
/// for inspection and tests, not for a hot path.
#[derive(Clone, Debug, Default, Message)]
#[rtype(result = "NodeSnapshot")]
pub struct Snapshot;

/// Reply to [`Snapshot`].
#[derive(Clone, Debug, PartialEq)]
pub struct NodeSnapshot {
    /// This node.
    pub id: Id,
    /// Whether a peer has answered yet.
    pub joined: bool,
    /// Every member known, this node included, ordered by name, with its
    /// status as this node sees it.
    pub members: Vec<MemberInfo>,
    /// Live keys by owner name, then key.
    pub keys: BTreeMap<String, BTreeMap<String, Value>>,
}

/// Updates a subscriber's queue holds unless [`Subscribe::capacity`] says
/// otherwise.
pub const DEFAULT_SUBSCRIBER_CAPACITY: usize = 1024;

/// Subscribes to this node's later [`Event`](crate::proto::Event)s that pass `filter`; replies
/// with the [`Subscription`] handle to read them from. The subscription
/// ends when the handle is dropped.
///
/// Each subscriber has a queue of `capacity` updates. The node never waits
/// for it: events that find it full are dropped, counted in
/// [`ActorMetrics::events_dropped`], and reported to the subscriber as one
/// [`Update::Lagged`](super::Update::Lagged) once there is room again, so
/// a reader that stops reading costs the node at most `capacity` updates
/// and never loses events silently.
///
/// With [`watch`](Subscribe::watch), the first update is the
/// [`Current`](super::Current) state matching the filter (members with
/// status, live keys), taken in the same actor step as the subscription, so
/// the events that follow are exactly the changes since.
///
/// ```no_run
/// use gossip_core::actor::{Filter, Subscribe, Update};
/// # async fn demo(node: actix::Addr<gossip_core::actor::GossipNode>) -> Result<(), actix::MailboxError> {
/// let mut sub = node.send(Subscribe::new(Filter::keys("service/")).watch()).await?;
/// while let Some(update) = sub.recv().await {
///     match update {
///         Update::Current(now) => println!("{} service keys now", now.keys.len()),
///         Update::Event(event) => println!("{event:?}"),
///         Update::Lagged { missed } => println!("missed {missed}: resubscribe"),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Message)]
#[rtype(result = "Subscription")]
pub struct Subscribe {
    /// Which events to receive.
    pub filter: Filter,
    /// Updates queued for this subscriber at most; at least 2.
    pub capacity: usize,
    /// Whether the first update is the current matching state.
    pub watch: bool,
}

impl Subscribe {
    /// Events passing `filter`, with [`DEFAULT_SUBSCRIBER_CAPACITY`].
    pub fn new(filter: Filter) -> Self {
        Subscribe {
            filter,
            capacity: DEFAULT_SUBSCRIBER_CAPACITY,
            watch: false,
        }
    }

    /// Every event.
    pub fn all() -> Self {
        Subscribe::new(Filter::all())
    }

    /// A queue of `capacity` updates instead of the default.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Starts with the current matching state ([`Update::Current`](super::Update::Current)).
    pub fn watch(mut self) -> Self {
        self.watch = true;
        self
    }
}

/// Announces that this node leaves the cluster, then waits until a peer
/// confirms it holds the announcement ([`Event::LeaveAnnounced`](crate::proto::Event::LeaveAnnounced)) or
/// `timeout` passes. The node keeps running (and refuses writes): send
/// [`Stop`] after this resolves.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "LeaveOutcome")]
pub struct Leave {
    /// How long to wait for a peer to confirm.
    pub timeout: Duration,
}

/// How a [`Leave`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaveOutcome {
    /// A peer holds the announcement; it will spread without us.
    Announced,
    /// No peer confirmed in time (no peer reachable?). Peers that missed the
    /// announcement will declare this node dead instead.
    TimedOut,
    /// The node was stopped while waiting.
    Stopped,
}

/// Closes the transport and stops the actor. Peers are not told: use
/// [`Leave`] first for a graceful exit. Messages sent after this fail with
/// a mailbox error.
#[derive(Clone, Copy, Debug, Default, Message)]
#[rtype(result = "()")]
pub struct Stop;

/// Asks for this node's counters and gauges.
#[derive(Clone, Copy, Debug, Default, Message)]
#[rtype(result = "NodeMetrics")]
pub struct GetMetrics;

/// Reply to [`GetMetrics`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeMetrics {
    /// Protocol counters (messages and bytes in/out, refusals by reason,
    /// suspicions, convictions, ...).
    pub proto: ProtoMetrics,
    /// Members by status and keys held, right now.
    pub gauges: Gauges,
    /// What the actor shell itself counted.
    pub actor: ActorMetrics,
}

/// Counters of the actor shell (the protocol's are in [`ProtoMetrics`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActorMetrics {
    /// Messages handed over by the transport.
    pub received: u64,
    /// Of those, refused by the protocol (see the protocol's counters by reason).
    pub refused: u64,
    /// Messages the transport accepted for sending.
    pub sent: u64,
    /// Sends the transport refused, by reason (each message dropped).
    pub send_errors: SendErrors,
    /// Gossip timer expiries handled.
    pub timer_fires: u64,
    /// Events queued for subscribers (one per subscriber per event).
    pub events_forwarded: u64,
    /// Events dropped because a subscriber's queue was full (each gap is
    /// reported to it as one `Lagged`).
    pub events_dropped: u64,
    /// Subscribers currently registered.
    pub subscribers: usize,
}

/// Failed sends by the transport's reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendErrors {
    /// The transport was closed.
    pub closed: u64,
    /// The transport's queue was full.
    pub queue_full: u64,
    /// The message was larger than the transport carries.
    pub too_large: u64,
    /// No route to the receiver.
    pub unreachable: u64,
}

impl SendErrors {
    /// All failed sends.
    pub fn total(&self) -> u64 {
        self.closed + self.queue_full + self.too_large + self.unreachable
    }
}
