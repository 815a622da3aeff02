//! Following one write message by message: which delivered messages carried
//! its value, and at which hop each node first held it.
//!
//! The protocol core only reports *that* a node learned a key
//! ([`Event::KeyChanged`](gossip_core::proto::Event)); how much traffic the
//! spread cost and along how long a path it travelled are visible only to
//! whoever sees every envelope and its sender, which is the simulator.
//! Eager push (issue 12) is judged by exactly these figures: payload copies
//! per node (the floor is one) and the hop at which the last node got it
//! (the limit of eager spreading is hops × link latency).
//!
//! What counts as "carrying the value" is decided in one place,
//! [`carries`]: a new message kind that transports values (an eager push, a
//! graft answer) is added there and nowhere else.

use gossip_core::proto::{Instant, Message, NodeDelta};

/// Names one write: the owner's incarnation, the key and the version the
/// owner gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The owner's name.
    pub owner: String,
    /// The owner's generation when it wrote (versions are per generation).
    pub generation: u64,
    /// The key.
    pub key: String,
    /// The owner's version of this write.
    pub version: u64,
}

/// Whether `message` carries the value of `write`: a delta of the owner's
/// incarnation that includes the update at exactly the write's version.
///
/// This is the one place that knows which messages transport values:
/// digests (`Syn`, and the digest half of `SynAck`) name versions but never
/// carry them. Add new value-carrying message kinds here.
pub fn carries(message: &Message, write: &Write) -> bool {
    let in_deltas = |deltas: &[NodeDelta]| {
        deltas.iter().any(|d| {
            d.id.generation == write.generation
                && d.id.name == write.owner
                && d.updates
                    .iter()
                    .any(|u| u.version == write.version && u.key == write.key)
        })
    };
    match message {
        Message::Syn { .. }
        | Message::IHave { .. }
        | Message::Graft { .. }
        | Message::Prune
        | Message::Ping { .. }
        | Message::PingReq { .. }
        | Message::PingAck { .. }
        | Message::PingNack { .. }
        | Message::Rumors { .. } => false,
        Message::SynAck { delta, .. } | Message::Ack { delta } | Message::Push { delta } => {
            in_deltas(delta)
        }
    }
}

/// The spread of one write as the simulator saw it, from the write until
/// tracking stopped ([`Sim::track_write`](super::Sim::track_write),
/// [`Sim::stop_tracking`](super::Sim::stop_tracking)).
///
/// Hops: the writer is hop 0; a node that first holds the value after
/// handling a message from a node at hop h is at hop h + 1. A node "holds"
/// the write once its view of the owner's keyspace has the key at the
/// write's version or later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spread {
    write: Write,
    started: Instant,
    writer: usize,
    copies: u64,
    unexplained: u64,
    hops: Vec<Option<u32>>,
    held_at: Vec<Option<Instant>>,
}

impl Spread {
    /// Starts following `write`, made by node `writer` at `now`, in a
    /// simulation of `nodes` slots.
    pub(crate) fn new(write: Write, writer: usize, nodes: usize, now: Instant) -> Self {
        let mut s = Spread {
            write,
            started: now,
            writer,
            copies: 0,
            unexplained: 0,
            hops: vec![None; nodes],
            held_at: vec![None; nodes],
        };
        s.hops[writer] = Some(0);
        s.held_at[writer] = Some(now);
        s
    }

    /// The write followed.
    pub fn write(&self) -> &Write {
        &self.write
    }

    /// Index of the node that wrote it.
    pub fn writer(&self) -> usize {
        self.writer
    }

    /// When the write was made.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Messages carrying the value that were handed to a running node (any
    /// node, the writer and nodes that already held it included: those are
    /// the redundant copies). Lost and partitioned messages do not count.
    pub fn copies(&self) -> u64 {
        self.copies
    }

    /// The hop at which node `i` first held the value (`None`: not yet).
    pub fn hop(&self, i: usize) -> Option<u32> {
        self.hops.get(i).copied().flatten()
    }

    /// When node `i` first held the value (`None`: not yet).
    pub fn held_at(&self, i: usize) -> Option<Instant> {
        self.held_at.get(i).copied().flatten()
    }

    /// Nodes that came to hold the value after handling a message that
    /// [`carries`] said did not carry it: always 0 unless a message kind
    /// that transports values is missing from [`carries`] (tests check it).
    pub fn unexplained(&self) -> u64 {
        self.unexplained
    }

    /// How many nodes hold the value (the writer included).
    pub fn holders(&self) -> usize {
        self.held_at.iter().flatten().count()
    }

    /// The hop of the last node to get the value (the highest hop among
    /// those that got it at that same instant); `None` if nobody but the
    /// writer holds it.
    pub fn last_delivery_hop(&self) -> Option<u32> {
        (0..self.held_at.len())
            .filter(|&i| i != self.writer)
            .filter_map(|i| Some((self.held_at[i]?, self.hops[i]?)))
            .max()
            .map(|(_, hop)| hop)
    }

    /// A message carrying the value was handed to a running node.
    pub(crate) fn delivered(&mut self) {
        self.copies += 1;
    }

    /// Whether node `i` already holds the value.
    pub(crate) fn holds(&self, i: usize) -> bool {
        self.held_at(i).is_some()
    }

    /// Node `to` first holds the value at `now`, after handling a message
    /// of `from` (which [`carries`] judged `carried` the value).
    pub(crate) fn first_held(
        &mut self,
        to: usize,
        from: Option<usize>,
        now: Instant,
        carried: bool,
    ) {
        self.unexplained += u64::from(!carried);
        if to >= self.held_at.len() {
            self.held_at.resize(to + 1, None);
            self.hops.resize(to + 1, None);
        }
        // The sender held the value when it sent it, so its hop is known;
        // a sender we cannot place leaves the hop unknown rather than wrong.
        let hop = from.and_then(|f| self.hop(f)).map(|h| h + 1);
        self.held_at[to] = Some(now);
        self.hops[to] = hop;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use gossip_core::proto::{DigestEntry, KeyUpdate, NodeId};

    use super::*;

    fn write() -> Write {
        Write {
            owner: "n3".to_owned(),
            generation: 2,
            key: "k".to_owned(),
            version: 7,
        }
    }

    fn delta(name: &str, generation: u64, key: &str, version: u64) -> NodeDelta {
        let id = Arc::new(NodeId::new(name, crate::sim::sim_addr(3), generation));
        NodeDelta {
            id,
            heartbeat: 1,
            left: false,
            floor: 0,
            reset: false,
            gc_version: 0,
            max_version: version,
            updates: vec![KeyUpdate {
                key: key.to_owned(),
                version,
                value: Some(Bytes::from_static(b"v")),
            }],
        }
    }

    #[test]
    fn only_deltas_with_the_update_at_its_version_carry_a_write() {
        let w = write();
        let ack = |d: NodeDelta| Message::Ack { delta: vec![d] };
        assert!(carries(&ack(delta("n3", 2, "k", 7)), &w));
        let synack = Message::SynAck {
            digest: Vec::new(),
            delta: vec![delta("n1", 2, "k", 7), delta("n3", 2, "k", 7)],
            known: 5,
            next_page: None,
            recon: Default::default(),
        };
        assert!(carries(&synack, &w));
        // Another version, key, owner or generation is another write.
        assert!(!carries(&ack(delta("n3", 2, "k", 8)), &w));
        assert!(!carries(&ack(delta("n3", 2, "j", 7)), &w));
        assert!(!carries(&ack(delta("n4", 2, "k", 7)), &w));
        assert!(!carries(&ack(delta("n3", 1, "k", 7)), &w));
        // A digest names the version but does not carry the value.
        let id = Arc::new(NodeId::new("n3", crate::sim::sim_addr(3), 2));
        let syn = Message::Syn {
            digest: vec![DigestEntry {
                id,
                heartbeat: 1,
                max_version: 7,
            }],
            known: 5,
            page: None,
            recon: Default::default(),
        };
        assert!(!carries(&syn, &w));
    }

    #[test]
    fn hops_count_from_the_writer_and_the_last_holder_is_reported() {
        let t = |ms: u64| Instant::from_micros(ms * 1000);
        let mut s = Spread::new(write(), 3, 5, t(0));
        assert_eq!(s.last_delivery_hop(), None);
        s.first_held(1, Some(3), t(2), true);
        s.first_held(0, Some(1), t(5), true);
        s.first_held(4, Some(3), t(5), true);
        assert_eq!(
            (s.hop(3), s.hop(1), s.hop(0), s.hop(4)),
            (Some(0), Some(1), Some(2), Some(1))
        );
        // 0 and 4 got it at the same instant: the higher hop is reported.
        assert_eq!(s.last_delivery_hop(), Some(2));
        assert_eq!(s.holders(), 4);
        assert_eq!(s.unexplained(), 0);
        s.first_held(2, None, t(9), false);
        assert_eq!((s.hop(2), s.unexplained()), (None, 1));
    }
}
