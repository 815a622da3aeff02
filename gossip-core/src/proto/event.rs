//! What the core reports to its shell.

use std::time::Duration;

use bytes::Bytes;

use crate::proto::id::Id;

/// A member's state as this node sees it. Live, Suspect and Dead are this
/// node's own opinion (from its failure detector); Left is announced by the
/// member itself and gossiped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Heartbeats arrive as expected.
    Live,
    /// Heartbeats are overdue (phi above the threshold), or probes went
    /// unanswered.
    Suspect,
    /// Suspected for longer than the suspect timeout; not gossiped to
    /// (except, rarely, to find out whether it came back).
    Dead,
    /// Left the cluster gracefully.
    Left,
}

/// Why a member's status changed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StatusReason {
    /// A newer heartbeat arrived.
    Heartbeat,
    /// No newer heartbeat for `silent_for`; phi reached `phi`.
    Silent {
        /// Time since the last new heartbeat.
        silent_for: Duration,
        /// Phi at the time of the change.
        phi: f64,
    },
    /// The member announced that it is leaving.
    Announced,
    /// Probes of the member went unanswered, direct and indirect (by
    /// `accusers` nodes so far, this one's own probe or others' rumors).
    Unanswered {
        /// Independent accusers known.
        accusers: u32,
        /// Time since this node last saw a new heartbeat of the member.
        silent_for: Duration,
    },
    /// The member, only suspected, answered this node's probe or was
    /// heard from directly.
    Answered,
    /// This node suspected or convicted the member while it heard nobody
    /// at all (its own isolation, not evidence against the member) and
    /// hears the cluster again: the verdict is withdrawn and the member
    /// probed anew.
    Withdrawn,
}

/// An output of the core; drain with [`Node::poll_event`](crate::proto::Node::poll_event).
///
/// Key events are emitted for updates learned from peers, not for this
/// node's own writes. New kinds of events may be added: match with a
/// wildcard arm.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A node became known.
    MemberJoined {
        /// The node.
        id: Id,
    },
    /// A member's status changed.
    MemberStatus {
        /// The member.
        id: Id,
        /// The status before.
        from: Status,
        /// The status now.
        to: Status,
        /// Why.
        reason: StatusReason,
    },
    /// A node restarted: its new generation supersedes the old one, whose
    /// keys are gone (reported as deletions before this event).
    MemberRestarted {
        /// The superseded incarnation.
        old: Id,
        /// The new incarnation.
        new: Id,
    },
    /// A Dead or Left member was forgotten after the grace period.
    MemberForgotten {
        /// The member.
        id: Id,
    },
    /// Two nodes claim one name: `claimant` is not the incarnation this node
    /// tracks (`existing`). When `existing` is this node itself, another
    /// process uses our name.
    NameConflict {
        /// The incarnation tracked (or ourselves).
        existing: Id,
        /// The other claimant.
        claimant: Id,
    },
    /// A key of `owner` got a new value.
    KeyChanged {
        /// Owner of the keyspace.
        owner: Id,
        /// The key.
        key: String,
        /// The new value.
        value: Bytes,
        /// The owner's version of this write.
        version: u64,
    },
    /// A key of `owner` was deleted (or expired, or went with its owner's
    /// old generation).
    KeyDeleted {
        /// Owner of the keyspace.
        owner: Id,
        /// The key.
        key: String,
    },
    /// This node's first exchange with the cluster succeeded.
    Joined,
    /// A peer confirmed it holds our leave announcement: it is safe to stop.
    LeaveAnnounced,
}
