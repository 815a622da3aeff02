//! Wire messages and their exact encoded sizes.
//!
//! One exchange is three messages, as in Cassandra's gossiper and
//! Scuttlebutt: `Syn(digest)` → `SynAck(digest + delta)` → `Ack(delta)`.
//! Sizes are computed exactly (postcard's format is simple), so budgets are
//! enforced before encoding and the simulator counts bytes without encoding.

use std::net::SocketAddr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::proto::id::{Id, NodeId};
use crate::proto::reconcile::Recon;

/// What one node knows of another, in a few bytes: enough for the receiver
/// to tell who is ahead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry {
    /// The node described.
    pub id: Id,
    /// Its latest heartbeat known to the sender.
    pub heartbeat: u64,
    /// The sender holds every update of that node up to this version.
    pub max_version: u64,
}

/// One update of a keyspace: a value, or a tombstone (`value: None`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUpdate {
    /// The key.
    pub key: String,
    /// The owner's version of this write.
    pub version: u64,
    /// The value; `None` marks a deletion.
    pub value: Option<Bytes>,
}

/// Updates of one node's state newer than `floor`, in version order with no
/// gap, so a delta cut short by the size budget still leaves the receiver
/// complete up to `max_version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDelta {
    /// The node whose state this is.
    pub id: Id,
    /// Its latest heartbeat known to the sender.
    pub heartbeat: u64,
    /// Whether the node has announced it is leaving.
    pub left: bool,
    /// The updates are every update with version above `floor`. The
    /// receiver applies them only if it holds everything up to `floor`.
    pub floor: u64,
    /// Replace what the receiver holds of this node instead of merging: the
    /// receiver is older than tombstones the sender already forgot.
    pub reset: bool,
    /// The sender has forgotten tombstones up to this version.
    pub gc_version: u64,
    /// After applying, the receiver holds every update up to this version.
    pub max_version: u64,
    /// The updates, in increasing version order.
    pub updates: Vec<KeyUpdate>,
}

/// What a [`Rumor`] says about its member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RumorKind {
    /// A probe of the member went unanswered, direct and indirect.
    Suspect,
    /// The accuser's suspicion timed out unrefuted: the member is dead.
    Dead,
    /// The member itself refutes a suspicion: it lives, with this heartbeat.
    Alive,
}

/// A claim about a member's liveness, spread by flooding and piggybacked
/// on probes (see [`detection`](crate::proto::detection)).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rumor {
    /// The member the claim is about.
    pub id: Id,
    /// Suspect and Dead: the heartbeat of the member the accuser held
    /// (refuted by any heartbeat well above it). Alive: the member's own
    /// heartbeat after refuting.
    pub heartbeat: u64,
    /// What is claimed.
    pub kind: RumorKind,
    /// Name of the node that made the claim (the accuser; for Alive, the
    /// member itself). Independent accusers shorten a suspicion.
    pub by: String,
}

/// A gossip message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Opens an exchange: what the sender knows, freshest first.
    Syn {
        /// The sender's digest.
        digest: Vec<DigestEntry>,
        /// How many members the sender knows: a peer that knows far fewer
        /// (a joiner) catches up by sweeping through our membership.
        known: u64,
        /// A catch-up sweep: asks for a page of member headers starting at
        /// this position of the responder's membership.
        page: Option<u64>,
        /// Range fingerprints to compare and ranges the digest lists in
        /// full (see [`reconcile`](crate::proto::reconcile)).
        recon: Recon,
    },
    /// Answers a `Syn`: what the receiver wants (and newer heartbeats), and
    /// the updates the initiator lacks (plus fresh ones it did not ask for).
    SynAck {
        /// Entries the initiator should answer with updates, or learn from.
        digest: Vec<DigestEntry>,
        /// Updates for the initiator (and the requested page of headers).
        delta: Vec<NodeDelta>,
        /// How many members the responder knows.
        known: u64,
        /// Where the next page starts, if a page was asked for and more remain.
        next_page: Option<u64>,
        /// The responder's side of the reconciliation: fingerprints of the
        /// children of ranges that differ, and ranges the digest lists.
        recon: Recon,
    },
    /// Closes an exchange: the updates the responder asked for.
    Ack {
        /// Updates for the responder.
        delta: Vec<NodeDelta>,
    },
    /// Eager push: updates new to the sender, forwarded the moment it
    /// learned them (see [`eager`](crate::proto::eager)).
    Push {
        /// The updates, gap-free above what the sender held before.
        delta: Vec<NodeDelta>,
    },
    /// Lazy push: the sender holds these states; a receiver that lacks one
    /// and does not get it by eager push soon asks with a `Graft`.
    IHave {
        /// Owners and the versions the sender holds.
        have: Vec<DigestEntry>,
    },
    /// Asks for updates above the versions given, and to be pushed to
    /// eagerly from now on.
    Graft {
        /// Owners and the versions the sender holds of them.
        want: Vec<DigestEntry>,
    },
    /// The sender got a push it already held: push to it lazily from now on.
    Prune,
    /// A probe: answer with a `PingAck` of the same `seq`.
    Ping {
        /// Chosen by the prober; echoed in the answer.
        seq: u64,
        /// Piggybacked liveness claims.
        rumors: Vec<Rumor>,
    },
    /// Asks the receiver to probe `target` and relay its answer, because
    /// the sender's own probe went unanswered (SWIM's indirect probe).
    PingReq {
        /// Echo this in the relayed `PingAck`.
        seq: u64,
        /// Whom to probe.
        target: Id,
        /// Piggybacked liveness claims.
        rumors: Vec<Rumor>,
    },
    /// Answers a `Ping` (or relays the answer of a `PingReq`'s target).
    PingAck {
        /// The `seq` of the probe answered.
        seq: u64,
        /// Piggybacked liveness claims.
        rumors: Vec<Rumor>,
    },
    /// A helper's answer to a `PingReq` whose target did not answer it in
    /// time (Lifeguard's nack): the requester can then tell a target that
    /// does not answer from being cut off itself, when nobody answers.
    PingNack {
        /// The `seq` of the `PingReq`.
        seq: u64,
    },
    /// Liveness claims new to the sender, flooded the moment it learned them.
    Rumors {
        /// The claims.
        rumors: Vec<Rumor>,
    },
}

/// Which message a [`Message`] is, without its contents: for counting
/// traffic by kind (the simulator's `Stats::by_kind`, metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MessageKind {
    /// [`Message::Syn`].
    Syn,
    /// [`Message::SynAck`].
    SynAck,
    /// [`Message::Ack`].
    Ack,
    /// [`Message::Push`].
    Push,
    /// [`Message::IHave`].
    IHave,
    /// [`Message::Graft`].
    Graft,
    /// [`Message::Prune`].
    Prune,
    /// [`Message::Ping`].
    Ping,
    /// [`Message::PingReq`].
    PingReq,
    /// [`Message::PingAck`].
    PingAck,
    /// [`Message::PingNack`].
    PingNack,
    /// [`Message::Rumors`].
    Rumors,
}

impl MessageKind {
    /// Every kind, in declaration order (`ALL[k.index()] == k`).
    pub const ALL: [MessageKind; 12] = [
        MessageKind::Syn,
        MessageKind::SynAck,
        MessageKind::Ack,
        MessageKind::Push,
        MessageKind::IHave,
        MessageKind::Graft,
        MessageKind::Prune,
        MessageKind::Ping,
        MessageKind::PingReq,
        MessageKind::PingAck,
        MessageKind::PingNack,
        MessageKind::Rumors,
    ];

    /// Position in [`ALL`](Self::ALL): an index for per-kind tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Lowercase name, as in reports (`"synack"`, `"ihave"`).
    pub fn name(self) -> &'static str {
        match self {
            MessageKind::Syn => "syn",
            MessageKind::SynAck => "synack",
            MessageKind::Ack => "ack",
            MessageKind::Push => "push",
            MessageKind::IHave => "ihave",
            MessageKind::Graft => "graft",
            MessageKind::Prune => "prune",
            MessageKind::Ping => "ping",
            MessageKind::PingReq => "pingreq",
            MessageKind::PingAck => "pingack",
            MessageKind::PingNack => "pingnack",
            MessageKind::Rumors => "rumors",
        }
    }

    /// Whether this kind serves failure detection (probes and liveness
    /// claims) rather than dissemination.
    pub fn is_detection(self) -> bool {
        matches!(
            self,
            MessageKind::Ping
                | MessageKind::PingReq
                | MessageKind::PingAck
                | MessageKind::PingNack
                | MessageKind::Rumors
        )
    }
}

impl Message {
    /// Which message this is.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Syn { .. } => MessageKind::Syn,
            Message::SynAck { .. } => MessageKind::SynAck,
            Message::Ack { .. } => MessageKind::Ack,
            Message::Push { .. } => MessageKind::Push,
            Message::IHave { .. } => MessageKind::IHave,
            Message::Graft { .. } => MessageKind::Graft,
            Message::Prune => MessageKind::Prune,
            Message::Ping { .. } => MessageKind::Ping,
            Message::PingReq { .. } => MessageKind::PingReq,
            Message::PingAck { .. } => MessageKind::PingAck,
            Message::PingNack { .. } => MessageKind::PingNack,
            Message::Rumors { .. } => MessageKind::Rumors,
        }
    }
}

/// The unit on the wire: who sent it, for which cluster, and the message.
/// Encoded behind one protocol-version byte (see [`codec`](crate::proto::codec)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Hash of the cluster name.
    pub cluster: u64,
    /// The sender.
    pub from: Id,
    /// The message.
    pub message: Message,
}

/// Exact postcard sizes.
pub(crate) mod size {
    use super::*;

    pub fn varint(v: u64) -> usize {
        (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
    }

    pub fn bytes(len: usize) -> usize {
        varint(len as u64) + len
    }

    pub fn addr(a: &SocketAddr) -> usize {
        1 + match a {
            SocketAddr::V4(_) => 4,
            SocketAddr::V6(_) => 16,
        } + varint(u64::from(a.port()))
    }

    pub fn node_id(id: &NodeId) -> usize {
        bytes(id.name.len()) + addr(&id.addr) + varint(id.generation)
    }

    pub fn digest_entry(e: &DigestEntry) -> usize {
        node_id(&e.id) + varint(e.heartbeat) + varint(e.max_version)
    }

    pub fn key_update(u: &KeyUpdate) -> usize {
        bytes(u.key.len()) + varint(u.version) + 1 + u.value.as_ref().map_or(0, |v| bytes(v.len()))
    }

    /// Size of a delta's header (everything but the updates and their count).
    pub fn delta_header(d: &NodeDelta) -> usize {
        node_id(&d.id)
            + varint(d.heartbeat)
            + 1
            + varint(d.floor)
            + 1
            + varint(d.gc_version)
            + varint(d.max_version)
    }

    pub fn node_delta(d: &NodeDelta) -> usize {
        delta_header(d)
            + varint(d.updates.len() as u64)
            + d.updates.iter().map(key_update).sum::<usize>()
    }

    pub fn opt(v: Option<u64>) -> usize {
        1 + v.map_or(0, varint)
    }

    /// Size of a `Syn` whose `entries` digest entries take `entry_bytes`
    /// (a node building a digest has just added them up).
    pub fn syn(
        entries: usize,
        entry_bytes: usize,
        known: u64,
        page: Option<u64>,
        recon: &Recon,
    ) -> usize {
        1 + varint(entries as u64)
            + entry_bytes
            + varint(known)
            + opt(page)
            + crate::proto::reconcile::size::recon(recon)
    }

    /// Size of a `SynAck` from its parts' counts and bytes.
    pub fn synack(
        entries: usize,
        entry_bytes: usize,
        deltas: usize,
        delta_bytes: usize,
        known: u64,
        next_page: Option<u64>,
        recon: &Recon,
    ) -> usize {
        1 + varint(entries as u64)
            + entry_bytes
            + varint(deltas as u64)
            + delta_bytes
            + varint(known)
            + opt(next_page)
            + crate::proto::reconcile::size::recon(recon)
    }

    /// Size of an `IHave` or a `Graft` whose entries take `entry_bytes`.
    pub fn entries(entries: usize, entry_bytes: usize) -> usize {
        1 + varint(entries as u64) + entry_bytes
    }

    /// Size of an `Ack` or a `Push` whose `deltas` take `delta_bytes`.
    pub fn ack(deltas: usize, delta_bytes: usize) -> usize {
        1 + varint(deltas as u64) + delta_bytes
    }

    pub fn rumor(r: &Rumor) -> usize {
        node_id(&r.id) + varint(r.heartbeat) + 1 + bytes(r.by.len())
    }

    pub fn rumors(rs: &[Rumor]) -> usize {
        varint(rs.len() as u64) + rs.iter().map(rumor).sum::<usize>()
    }

    pub fn message(m: &Message) -> usize {
        match m {
            Message::Syn {
                digest,
                known,
                page,
                recon,
            } => syn(
                digest.len(),
                digest.iter().map(digest_entry).sum(),
                *known,
                *page,
                recon,
            ),
            Message::SynAck {
                digest,
                delta,
                known,
                next_page,
                recon,
            } => synack(
                digest.len(),
                digest.iter().map(digest_entry).sum(),
                delta.len(),
                delta.iter().map(node_delta).sum(),
                *known,
                *next_page,
                recon,
            ),
            Message::Ack { delta } | Message::Push { delta } => {
                ack(delta.len(), delta.iter().map(node_delta).sum())
            }
            Message::IHave { have: digest } | Message::Graft { want: digest } => {
                entries(digest.len(), digest.iter().map(digest_entry).sum())
            }
            Message::Prune => 1,
            Message::Ping { seq, rumors: rs } | Message::PingAck { seq, rumors: rs } => {
                1 + varint(*seq) + rumors(rs)
            }
            Message::PingReq {
                seq,
                target,
                rumors: rs,
            } => 1 + varint(*seq) + node_id(target) + rumors(rs),
            Message::PingNack { seq } => 1 + varint(*seq),
            Message::Rumors { rumors: rs } => 1 + rumors(rs),
        }
    }
}

impl Envelope {
    /// Whether every node name in this envelope (its sender's and every
    /// member it describes) is at most `max` bytes long.
    pub fn names_within(&self, max: usize) -> bool {
        let ok = |id: &Id| id.name.len() <= max;
        ok(&self.from)
            && match &self.message {
                Message::Syn { digest, .. } => digest.iter().all(|e| ok(&e.id)),
                Message::SynAck { digest, delta, .. } => {
                    digest.iter().all(|e| ok(&e.id)) && delta.iter().all(|d| ok(&d.id))
                }
                Message::Ack { delta } | Message::Push { delta } => delta.iter().all(|d| ok(&d.id)),
                Message::IHave { have: digest } | Message::Graft { want: digest } => {
                    digest.iter().all(|e| ok(&e.id))
                }
                Message::Prune | Message::PingNack { .. } => true,
                Message::Ping { rumors, .. }
                | Message::PingAck { rumors, .. }
                | Message::Rumors { rumors } => {
                    rumors.iter().all(|r| ok(&r.id) && r.by.len() <= max)
                }
                Message::PingReq { target, rumors, .. } => {
                    ok(target) && rumors.iter().all(|r| ok(&r.id) && r.by.len() <= max)
                }
            }
    }

    /// Exact length of this envelope once encoded, version byte included.
    pub fn encoded_len(&self) -> usize {
        self.len_with_message(size::message(&self.message))
    }

    /// [`encoded_len`](Self::encoded_len), given the message's size.
    pub(crate) fn len_with_message(&self, message_len: usize) -> usize {
        1 + size::varint(self.cluster) + size::node_id(&self.from) + message_len
    }
}

#[cfg(test)]
mod tests {
    use super::MessageKind;

    #[test]
    fn kind_index_matches_its_place_in_all_and_names_are_distinct() {
        for (i, kind) in MessageKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i, "{kind:?}");
        }
        let mut names: Vec<_> = MessageKind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), MessageKind::ALL.len());
    }
}
