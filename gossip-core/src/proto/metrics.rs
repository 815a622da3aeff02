//! Counters and gauges of one node.

use crate::proto::error::RefuseReason;

/// Incoming messages refused, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refused {
    /// Larger than `max_message_bytes`.
    pub oversized: u64,
    /// Undecodable.
    pub malformed: u64,
    /// Another protocol version.
    pub wrong_version: u64,
    /// Another cluster.
    pub wrong_cluster: u64,
    /// Claimed to be from this node.
    pub from_self: u64,
    /// Named another node, or another address, than the transport
    /// authenticated.
    pub identity_mismatch: u64,
}

impl Refused {
    pub(crate) fn count(&mut self, reason: RefuseReason) {
        let c = match reason {
            RefuseReason::Oversized => &mut self.oversized,
            RefuseReason::Malformed => &mut self.malformed,
            RefuseReason::WrongVersion => &mut self.wrong_version,
            RefuseReason::WrongCluster => &mut self.wrong_cluster,
            RefuseReason::FromSelf => &mut self.from_self,
            RefuseReason::IdentityMismatch => &mut self.identity_mismatch,
        };
        *c += 1;
    }

    /// All refusals.
    pub fn total(&self) -> u64 {
        self.oversized
            + self.malformed
            + self.wrong_version
            + self.wrong_cluster
            + self.from_self
            + self.identity_mismatch
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
    /// Messages refused, by reason.
    pub refused: Refused,
    /// Key updates applied from peers.
    pub updates_applied: u64,
    /// Deltas that could not be applied (gap, unknown base).
    pub deltas_skipped: u64,
    /// Nodes not admitted because `max_nodes` was reached.
    pub nodes_refused: u64,
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
}
