//! Filtered subscriptions: which events an application wants, the handle
//! it reads them from, and the bounded queue behind it.
//!
//! A subscription is a bounded channel from the node to a [`Subscription`]
//! handle. The node never waits for a subscriber: an event that finds the
//! queue full is counted, and once there is room again the subscriber gets
//! one [`Update::Lagged`] saying how many it missed, then events resume. So
//! a slow reader costs the node at most `capacity` queued updates, and
//! always learns that it has to reconcile (for instance by subscribing
//! again as a watch). Dropping the handle ends the subscription: the node
//! notices at the next event and forgets it.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::messages::Value;
use crate::proto::{Event, Id, MemberInfo};

/// The kind of an [`Event`], for [`Filter::kinds`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// [`Event::MemberJoined`].
    MemberJoined,
    /// [`Event::MemberStatus`].
    MemberStatus,
    /// [`Event::MemberRestarted`].
    MemberRestarted,
    /// [`Event::MemberForgotten`].
    MemberForgotten,
    /// [`Event::NameConflict`].
    NameConflict,
    /// [`Event::KeyChanged`].
    KeyChanged,
    /// [`Event::KeyDeleted`].
    KeyDeleted,
    /// [`Event::Joined`] (this node's first exchange succeeded).
    Joined,
    /// [`Event::LeaveAnnounced`].
    LeaveAnnounced,
    /// A broadcast message ([`Update::UserEvent`]; not an [`Event`] of the
    /// core, so [`EventKind::of`] never gives it).
    Broadcast,
}

impl EventKind {
    /// The kind of `event`.
    pub fn of(event: &Event) -> EventKind {
        match event {
            Event::MemberJoined { .. } => EventKind::MemberJoined,
            Event::MemberStatus { .. } => EventKind::MemberStatus,
            Event::MemberRestarted { .. } => EventKind::MemberRestarted,
            Event::MemberForgotten { .. } => EventKind::MemberForgotten,
            Event::NameConflict { .. } => EventKind::NameConflict,
            Event::KeyChanged { .. } => EventKind::KeyChanged,
            Event::KeyDeleted { .. } => EventKind::KeyDeleted,
            Event::Joined => EventKind::Joined,
            Event::LeaveAnnounced => EventKind::LeaveAnnounced,
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of [`EventKind`]s. Build one with the constants or [`Kinds::of`]
/// and combine with `|`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Kinds(u16);

impl Kinds {
    /// Every kind.
    pub const ALL: Kinds = Kinds(u16::MAX);
    /// No kind (a filter that matches nothing).
    pub const NONE: Kinds = Kinds(0);
    /// Membership: joined, status, restarted, forgotten, name conflicts.
    pub const MEMBERS: Kinds = Kinds(
        (1 << EventKind::MemberJoined as u16)
            | (1 << EventKind::MemberStatus as u16)
            | (1 << EventKind::MemberRestarted as u16)
            | (1 << EventKind::MemberForgotten as u16)
            | (1 << EventKind::NameConflict as u16),
    );
    /// Key changes and deletions.
    pub const KEYS: Kinds =
        Kinds((1 << EventKind::KeyChanged as u16) | (1 << EventKind::KeyDeleted as u16));
    /// Broadcast messages ([`Update::UserEvent`]).
    pub const BROADCASTS: Kinds = Kinds(1 << EventKind::Broadcast as u16);
    /// About this node itself: joined, leave announced.
    pub const LOCAL: Kinds =
        Kinds((1 << EventKind::Joined as u16) | (1 << EventKind::LeaveAnnounced as u16));

    /// Exactly these kinds.
    pub fn of(kinds: &[EventKind]) -> Kinds {
        Kinds(kinds.iter().fold(0, |acc, k| acc | k.bit()))
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: EventKind) -> bool {
        self.0 & kind.bit() != 0
    }

    fn intersects(self, other: Kinds) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for Kinds {
    type Output = Kinds;

    fn bitor(self, rhs: Kinds) -> Kinds {
        Kinds(self.0 | rhs.0)
    }
}

/// Which events a subscription receives. All conditions must hold:
///
/// - the event's [kind](EventKind) is in [`kinds`](Filter::kinds);
/// - with an [`owner`](Filter::owner), the event is about that member (the
///   member that joined or changed status, the owner of a key; events of
///   kind [`Kinds::LOCAL`] are about this node itself);
/// - with a [`prefix`](Filter::prefix), a key event's key starts with it.
///   The prefix says nothing about events without a key: use
///   [`Filter::keys`] (which also sets the kinds to [`Kinds::KEYS`]) for
///   "only these keys", as chitchat's prefix subscriptions do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    kinds: Kinds,
    owner: Option<String>,
    prefix: Option<String>,
}

impl Default for Filter {
    fn default() -> Self {
        Filter::all()
    }
}

impl Filter {
    /// Every event.
    pub fn all() -> Filter {
        Filter {
            kinds: Kinds::ALL,
            owner: None,
            prefix: None,
        }
    }

    /// Key changes and deletions of keys starting with `prefix` (of any
    /// owner unless [`owner`](Filter::owner) narrows it).
    pub fn keys(prefix: impl Into<String>) -> Filter {
        Filter::all().kinds(Kinds::KEYS).prefix(prefix)
    }

    /// Broadcast messages on topics starting with `topic_prefix` (of any
    /// sender unless [`owner`](Filter::owner) narrows it).
    pub fn broadcasts(topic_prefix: impl Into<String>) -> Filter {
        Filter::all().kinds(Kinds::BROADCASTS).prefix(topic_prefix)
    }

    /// Membership events only (of any member unless narrowed).
    pub fn members() -> Filter {
        Filter::all().kinds(Kinds::MEMBERS)
    }

    /// Only events of these kinds.
    pub fn kinds(mut self, kinds: Kinds) -> Filter {
        self.kinds = kinds;
        self
    }

    /// Only events about the member named `name`.
    pub fn owner(mut self, name: impl Into<String>) -> Filter {
        self.owner = Some(name.into());
        self
    }

    /// Only key events whose key starts with `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Filter {
        self.prefix = Some(prefix.into());
        self
    }

    /// Whether `event` passes, on the node named `me`.
    pub fn matches(&self, me: &str, event: &Event) -> bool {
        if !self.kinds.contains(EventKind::of(event)) {
            return false;
        }
        if let Some(owner) = &self.owner
            && subject(me, event) != owner
        {
            return false;
        }
        match (&self.prefix, event) {
            (Some(p), Event::KeyChanged { key, .. } | Event::KeyDeleted { key, .. }) => {
                key.starts_with(p.as_str())
            }
            _ => true,
        }
    }

    /// Whether a broadcast passes: kind [`EventKind::Broadcast`], the
    /// owner is its sender, the prefix applies to its topic.
    pub fn matches_broadcast(&self, b: &UserEvent) -> bool {
        self.kinds.contains(EventKind::Broadcast)
            && self.owner.as_deref().is_none_or(|o| o == b.sender.name)
            && self
                .prefix
                .as_deref()
                .is_none_or(|p| b.topic.starts_with(p))
    }

    /// Whether the member named `name` is one this filter's membership
    /// events are about (for a watch's current state).
    fn wants_member(&self, name: &str) -> bool {
        self.kinds.intersects(Kinds::MEMBERS) && self.owner.as_deref().is_none_or(|o| o == name)
    }

    /// Whether `owner`'s `key` is one this filter's key events are about.
    fn wants_key(&self, owner: &str, key: &str) -> bool {
        self.kinds.contains(EventKind::KeyChanged)
            && self.owner.as_deref().is_none_or(|o| o == owner)
            && self.prefix.as_deref().is_none_or(|p| key.starts_with(p))
    }
}

/// The name of the member an event is about (`me` for this node's own).
fn subject<'a>(me: &'a str, event: &'a Event) -> &'a str {
    match event {
        Event::MemberJoined { id }
        | Event::MemberStatus { id, .. }
        | Event::MemberForgotten { id } => &id.name,
        Event::MemberRestarted { new, .. } => &new.name,
        Event::NameConflict { claimant, .. } => &claimant.name,
        Event::KeyChanged { owner, .. } | Event::KeyDeleted { owner, .. } => &owner.name,
        Event::Joined | Event::LeaveAnnounced => me,
    }
}

/// A broadcast message as delivered (see [`Broadcast`](super::Broadcast)):
/// once per node, the sender's own included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserEvent {
    /// Who sent it.
    pub sender: Id,
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: bytes::Bytes,
    /// The sender's sequence number of it (unique per sender process: it
    /// starts at 0 when the sender starts).
    pub seq: u64,
}

/// One live key, as a watch's current state lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// Owner of the keyspace.
    pub owner: Id,
    /// The key.
    pub key: String,
    /// Its value and version.
    pub value: Value,
}

/// What a watch starts with: the state matching its filter at the moment
/// it subscribed. Changes after that moment follow as [`Update::Event`]s,
/// with nothing lost or repeated in between (both are taken in one actor
/// step).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Current {
    /// Members the filter's membership kinds are about, by name (empty if
    /// it has none).
    pub members: Vec<MemberInfo>,
    /// Live keys the filter's key kinds are about, by owner then key.
    pub keys: Vec<KeyValue>,
}

/// One item of a [`Subscription`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Update {
    /// The matching state at subscription time; first, and only for a
    /// watch ([`Subscribe::watch`](super::Subscribe::watch)).
    Current(Current),
    /// A matching event.
    Event(Event),
    /// A matching broadcast message.
    UserEvent(UserEvent),
    /// The subscriber fell behind: `missed` matching events did not fit in
    /// its queue and are gone. One `Lagged` stands for each gap; events
    /// resume after it. Reconcile (e.g. with a new watch) if they matter.
    Lagged {
        /// Events dropped since the previous item.
        missed: u64,
    },
}

impl actix::Message for Update {
    type Result = ();
}

/// The receiving end of a subscription (the reply to
/// [`Subscribe`](super::Subscribe)). Read it with [`recv`](Self::recv), as a
/// [`Stream`], or hand it to an actor with `ctx.add_stream`. It ends (yields
/// `None`) when the node stops; dropping it ends the subscription.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Update>,
}

impl Subscription {
    /// The next update; `None` once the node has stopped.
    pub async fn recv(&mut self) -> Option<Update> {
        self.rx.recv().await
    }

    /// The next update if one is queued.
    pub fn try_recv(&mut self) -> Option<Update> {
        self.rx.try_recv().ok()
    }
}

impl Stream for Subscription {
    type Item = Update;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Update>> {
        self.rx.poll_recv(cx)
    }
}

/// The node's end of one subscription.
#[derive(Debug)]
pub(crate) struct Subscriber {
    tx: mpsc::Sender<Update>,
    filter: Filter,
    /// Matching events dropped since the last item delivered.
    missed: u64,
}

/// What became of one event offered to a subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Not for this subscriber.
    Skipped,
    /// Queued.
    Queued,
    /// The queue was full: counted, to be reported as `Lagged`.
    Missed,
    /// The handle was dropped: remove this subscriber.
    Gone,
}

impl Subscriber {
    /// A subscriber with a queue of `capacity` updates (at least 2: room
    /// for a `Lagged` and the event after it) and its handle.
    pub(crate) fn new(filter: Filter, capacity: usize) -> (Subscriber, Subscription) {
        let (tx, rx) = mpsc::channel(capacity.max(2));
        let s = Subscriber {
            tx,
            filter,
            missed: 0,
        };
        (s, Subscription { rx })
    }

    /// Queues the watch's initial state. The queue is empty at this point,
    /// so it always fits.
    pub(crate) fn send_current(&mut self, current: Current) {
        if self.tx.try_send(Update::Current(current)).is_err() {
            self.missed += 1;
        }
    }

    /// Whether the watch's current state lists `name`'s membership.
    pub(crate) fn wants_member(&self, name: &str) -> bool {
        self.filter.wants_member(name)
    }

    /// Whether the watch's current state lists `owner`'s `key`.
    pub(crate) fn wants_key(&self, owner: &str, key: &str) -> bool {
        self.filter.wants_key(owner, key)
    }

    /// Whether the handle was dropped.
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Offers `event` (on the node named `me`); never waits.
    pub(crate) fn offer(&mut self, me: &str, event: &Event) -> Offer {
        if !self.filter.matches(me, event) {
            return Offer::Skipped;
        }
        self.push(Update::Event(event.clone()))
    }

    /// Offers a broadcast message; never waits.
    pub(crate) fn offer_broadcast(&mut self, b: &UserEvent) -> Offer {
        if !self.filter.matches_broadcast(b) {
            return Offer::Skipped;
        }
        self.push(Update::UserEvent(b.clone()))
    }

    fn push(&mut self, update: Update) -> Offer {
        if self.missed > 0 {
            // The gap is reported only with room for the report and the
            // event after it, so that one gap gives one `Lagged`.
            if self.tx.capacity() < 2 {
                self.missed += 1;
                return Offer::Missed;
            }
            let missed = std::mem::take(&mut self.missed);
            if let Err(TrySendError::Closed(_)) = self.tx.try_send(Update::Lagged { missed }) {
                return Offer::Gone;
            }
        }
        match self.tx.try_send(update) {
            Ok(()) => Offer::Queued,
            Err(TrySendError::Full(_)) => {
                self.missed += 1;
                Offer::Missed
            }
            Err(TrySendError::Closed(_)) => Offer::Gone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::NodeId;
    use bytes::Bytes;
    use std::sync::Arc;

    fn id(name: &str) -> Id {
        Arc::new(NodeId::new(name, "127.0.0.1:1".parse().expect("addr"), 1))
    }

    fn key(owner: &str, key: &str) -> Event {
        Event::KeyChanged {
            owner: id(owner),
            key: key.to_owned(),
            value: Bytes::from_static(b"v"),
            version: 1,
        }
    }

    #[test]
    fn filters_by_kind_owner_and_prefix() {
        let joined = Event::MemberJoined { id: id("b") };
        let f = Filter::keys("service/");
        assert!(f.matches("me", &key("b", "service/port")));
        assert!(!f.matches("me", &key("b", "other")));
        assert!(
            !f.matches("me", &joined),
            "a key filter has no member events"
        );

        let f = Filter::all().owner("b");
        assert!(f.matches("me", &joined));
        assert!(f.matches("me", &key("b", "x")));
        assert!(!f.matches("me", &key("c", "x")));
        assert!(
            !f.matches("me", &Event::Joined),
            "local events are about me"
        );
        assert!(Filter::all().owner("me").matches("me", &Event::Joined));

        let f = Filter::members();
        assert!(f.matches("me", &joined));
        assert!(!f.matches("me", &key("b", "x")));
        let f = Filter::all().kinds(Kinds::of(&[EventKind::KeyDeleted]));
        assert!(!f.matches("me", &key("b", "x")));
        assert!(f.matches(
            "me",
            &Event::KeyDeleted {
                owner: id("b"),
                key: "x".into()
            }
        ));
        assert!(!Filter::all().kinds(Kinds::NONE).matches("me", &joined));
        assert!((Kinds::KEYS | Kinds::LOCAL).contains(EventKind::Joined));

        let b = UserEvent {
            sender: id("b"),
            topic: "deploy/web".into(),
            payload: Bytes::new(),
            seq: 0,
        };
        assert!(Filter::broadcasts("deploy/").matches_broadcast(&b));
        assert!(Filter::all().matches_broadcast(&b));
        assert!(!Filter::broadcasts("other").matches_broadcast(&b));
        assert!(!Filter::broadcasts("").owner("c").matches_broadcast(&b));
        assert!(!Filter::keys("").matches_broadcast(&b), "not a key event");
    }

    #[test]
    fn a_full_queue_gives_one_lagged_with_the_count() {
        let (mut s, mut sub) = Subscriber::new(Filter::all(), 4);
        let offers: Vec<Offer> = (0..10)
            .map(|i| s.offer("me", &key("b", &format!("k{i}"))))
            .collect();
        assert_eq!(offers.iter().filter(|o| **o == Offer::Queued).count(), 4);
        assert_eq!(offers.iter().filter(|o| **o == Offer::Missed).count(), 6);
        for i in 0..4 {
            assert_eq!(
                sub.try_recv(),
                Some(Update::Event(key("b", &format!("k{i}"))))
            );
        }
        assert_eq!(sub.try_recv(), None, "nothing about the gap yet");
        assert_eq!(s.offer("me", &key("b", "next")), Offer::Queued);
        assert_eq!(sub.try_recv(), Some(Update::Lagged { missed: 6 }));
        assert_eq!(sub.try_recv(), Some(Update::Event(key("b", "next"))));
        assert_eq!(sub.try_recv(), None);
        assert_eq!(s.offer("me", &key("b", "again")), Offer::Queued);
        assert_eq!(
            sub.try_recv(),
            Some(Update::Event(key("b", "again"))),
            "no second Lagged for the same gap"
        );
    }

    #[test]
    fn a_lag_is_reported_only_with_room_for_the_event_after_it() {
        let (mut s, mut sub) = Subscriber::new(Filter::all(), 2);
        for i in 0..3 {
            s.offer("me", &key("b", &format!("k{i}")));
        }
        assert!(sub.try_recv().is_some());
        // One slot free: not enough for Lagged + event, so still missed.
        assert_eq!(s.offer("me", &key("b", "k3")), Offer::Missed);
        assert!(sub.try_recv().is_some());
        assert_eq!(s.offer("me", &key("b", "k4")), Offer::Queued);
        assert_eq!(sub.try_recv(), Some(Update::Lagged { missed: 2 }));
        assert_eq!(sub.try_recv(), Some(Update::Event(key("b", "k4"))));
    }

    #[test]
    fn dropping_the_handle_ends_the_subscription() {
        let (mut s, sub) = Subscriber::new(Filter::all(), 4);
        assert!(!s.is_closed());
        drop(sub);
        assert!(s.is_closed());
        assert_eq!(s.offer("me", &key("b", "k")), Offer::Gone);
        assert_eq!(
            s.offer("me", &Event::Joined),
            Offer::Gone,
            "every matching event sees it"
        );
    }
}
