//! Counters and gauges of one node.

use crate::proto::error::RefuseReason;

/// What this node refused, by reason: whole messages, and parts of
/// messages it otherwise accepted (updates, members).
///
/// Every refusal is counted here; nothing a peer sends is dropped without a
/// counter saying why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refused {
    /// Messages larger than `max_message_bytes`.
    pub oversized: u64,
    /// Undecodable messages.
    pub malformed: u64,
    /// Messages of another protocol version.
    pub wrong_version: u64,
    /// Messages of another cluster.
    pub wrong_cluster: u64,
    /// Messages that claimed to be from this node.
    pub from_self: u64,
    /// Named another node, or another address, than the transport
    /// authenticated.
    pub identity_mismatch: u64,
    /// Messages naming a node whose name is longer than `max_name_bytes`.
    pub name_too_long: u64,
    /// Updates whose key is longer than `max_key_bytes` (skipped; the rest
    /// of the delta applies).
    pub key_too_long: u64,
    /// Updates whose value is larger than `max_value_bytes` (skipped).
    pub value_too_large: u64,
    /// Updates of a new key for an owner holding `max_keys_per_node` keys
    /// already (skipped).
    pub keyspace_full: u64,
    /// Updates that would take their owner's keyspace over
    /// `max_keyspace_bytes` (skipped).
    pub keyspace_too_large: u64,
    /// Updates that would take all state held over `max_state_bytes`
    /// (skipped).
    pub state_full: u64,
    /// Members not admitted because `max_nodes` were known already.
    pub table_full: u64,
    /// Members not admitted because the message had made
    /// `max_new_members_per_message` known already.
    pub too_many_new: u64,
    /// Claims no honest node makes: counters above
    /// [`refute::MAX_CLAIM`](crate::proto::refute::MAX_CLAIM), generations
    /// jumping too far. Whole messages and skipped digest entries or
    /// deltas both count here (and in neither [`total`](Self::total) nor
    /// [`parts`](Self::parts)).
    pub impossible: u64,
    /// Relayed state about an incarnation this node forgot (a stale peer;
    /// see `Config::grace_period`). Not a fault: counted to show it works.
    pub forgotten: u64,
}

/// A refused part of an accepted message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PartRefused {
    KeyTooLong,
    ValueTooLarge,
    KeyspaceFull,
    KeyspaceTooLarge,
    StateFull,
    TableFull,
    TooManyNew,
    Forgotten,
    Impossible,
}

impl Refused {
    pub(crate) fn count(&mut self, reason: RefuseReason) {
        let c = match reason {
            RefuseReason::Oversized => &mut self.oversized,
            RefuseReason::Malformed => &mut self.malformed,
            RefuseReason::WrongVersion => &mut self.wrong_version,
            RefuseReason::WrongCluster => &mut self.wrong_cluster,
            RefuseReason::FromSelf => &mut self.from_self,
            RefuseReason::NameTooLong => &mut self.name_too_long,
            RefuseReason::IdentityMismatch => &mut self.identity_mismatch,
            RefuseReason::Impossible => &mut self.impossible,
        };
        *c += 1;
    }

    pub(crate) fn count_part(&mut self, part: PartRefused) {
        let c = match part {
            PartRefused::KeyTooLong => &mut self.key_too_long,
            PartRefused::ValueTooLarge => &mut self.value_too_large,
            PartRefused::KeyspaceFull => &mut self.keyspace_full,
            PartRefused::KeyspaceTooLarge => &mut self.keyspace_too_large,
            PartRefused::StateFull => &mut self.state_full,
            PartRefused::TableFull => &mut self.table_full,
            PartRefused::TooManyNew => &mut self.too_many_new,
            PartRefused::Forgotten => &mut self.forgotten,
            PartRefused::Impossible => &mut self.impossible,
        };
        *c += 1;
    }

    /// Whole messages refused.
    pub fn total(&self) -> u64 {
        self.oversized
            + self.malformed
            + self.wrong_version
            + self.wrong_cluster
            + self.from_self
            + self.name_too_long
            + self.identity_mismatch
    }

    /// Parts of accepted messages refused by a limit (updates and members;
    /// [`forgotten`](Self::forgotten) is not a limit and not included).
    pub fn parts(&self) -> u64 {
        self.key_too_long
            + self.value_too_large
            + self.keyspace_full
            + self.keyspace_too_large
            + self.state_full
            + self.table_full
            + self.too_many_new
    }
}

/// Monotonic counters since the node started. Read with
/// [`Node::metrics`](crate::proto::Node::metrics); member and key gauges
/// come from [`Node::gauges`](crate::proto::Node::gauges).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Messages accepted.
    pub messages_in: u64,
    /// Encoded bytes of accepted messages (counted when given as bytes).
    pub bytes_in: u64,
    /// Messages queued for sending.
    pub messages_out: u64,
    /// Encoded bytes of messages queued for sending.
    pub bytes_out: u64,
    /// What was refused, by reason.
    pub refused: Refused,
    /// Key updates applied from peers.
    pub updates_applied: u64,
    /// Deltas that could not be applied (gap, unknown base).
    pub deltas_skipped: u64,
    /// Live → Suspect transitions.
    pub suspicions: u64,
    /// Suspect → Dead transitions.
    pub convictions: u64,
    /// Times this node found it had been stalled and restarted its clocks.
    pub stalls: u64,
    /// Transmits dropped because the queue was full.
    pub transmits_dropped: u64,
    /// Events dropped because the queue was full.
    pub events_dropped: u64,
    /// Messages sent to forgotten or unreachable members to find out
    /// whether they are back (see [`Config::grace_period`](crate::proto::Config::grace_period)).
    pub knocks: u64,
    /// Times this node moved its own state above a peer's claim about it
    /// (see [`refute`](crate::proto::refute)).
    pub refutations: u64,
    /// Eager pushes sent (one per peer per piece of news forwarded).
    pub pushes: u64,
    /// Pushes that brought nothing new, answered with a `Prune`.
    pub prunes: u64,
    /// Announced updates asked for because eager push did not bring them.
    pub grafts: u64,
    /// Log lines about a misbehaving peer left out because one about the
    /// same peer was written less than an interval before.
    pub logs_suppressed: u64,
}

/// Point-in-time sizes of one node's view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Members (this node included) by status.
    pub live: usize,
    /// Suspected members.
    pub suspect: usize,
    /// Dead members.
    pub dead: usize,
    /// Members that left.
    pub left: usize,
    /// Live keys held, all owners together.
    pub keys: usize,
    /// Tombstones held, all owners together.
    pub tombstones: usize,
    /// Bytes of keys and values held, all owners together, as counted
    /// against `Config::max_state_bytes` (exact at every round).
    pub state_bytes: usize,
}
