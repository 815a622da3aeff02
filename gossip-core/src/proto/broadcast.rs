//! Broadcast messages (Serf's user events) carried by the keyspace: a
//! payload on a topic, written by its sender as a key with a TTL under a
//! reserved prefix. That gives broadcasts everything keys have — the eager
//! push fast path and the periodic exchange as repair, delivery once per
//! node (a key update is applied once per version), a bounded lifetime (the
//! TTL, after which the key's tombstone spreads and is collected), the
//! keyspace limits as back-pressure — without a message type of its own.
//! The actor shell turns these keys into broadcast events for its
//! subscribers and keeps them out of key queries.
//!
//! The key is `PREFIX` + the sender's generation when it sent it + `/` +
//! its sequence number + `/` + topic, so no two broadcasts share a key,
//! across the sender's restarts too, and the topic may hold any character
//! (slashes too). A broadcast keeps its key when its sender later takes a
//! new generation with its keys (refuting a forged one): peers then take
//! the sender's whole state again, and [`Seen`] keeps the broadcasts they
//! already delivered from being delivered twice.

use std::collections::{HashSet, VecDeque};

/// Keys under this prefix are broadcasts, not application keys.
pub const PREFIX: &str = "__broadcast/";

/// The key of broadcast number `seq` on `topic` of a sender at
/// `generation`.
pub fn key(generation: u64, seq: u64, topic: &str) -> String {
    format!("{PREFIX}{generation}/{seq}/{topic}")
}

/// Whether `key` is a broadcast's.
pub fn is_broadcast(key: &str) -> bool {
    key.starts_with(PREFIX)
}

/// The generation, sequence number and topic of a broadcast's key; `None`
/// for any other key, including keys under the prefix that do not parse
/// (a peer may write anything there: such keys are ignored, never a
/// panic).
pub fn parse(key: &str) -> Option<(u64, u64, &str)> {
    let rest = key.strip_prefix(PREFIX)?;
    let (generation, rest) = rest.split_once('/')?;
    let (seq, topic) = rest.split_once('/')?;
    Some((generation.parse().ok()?, seq.parse().ok()?, topic))
}

/// The broadcasts delivered lately, by sender name and key, so that one
/// arriving again is not delivered twice: the last [`Seen::CAPACITY`] of
/// them (a broadcast's lifetime is short; older ones are forgotten).
#[derive(Debug, Default)]
pub struct Seen {
    set: HashSet<(String, String)>,
    order: VecDeque<(String, String)>,
}

impl Seen {
    /// How many deliveries are remembered.
    pub const CAPACITY: usize = 4096;

    /// Records the broadcast `key` of `sender`; `true` the first time.
    pub fn first(&mut self, sender: &str, key: &str) -> bool {
        let entry = (sender.to_owned(), key.to_owned());
        if self.set.contains(&entry) {
            return false;
        }
        if self.order.len() >= Self::CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(entry.clone());
        self.order.push_back(entry);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_with_any_topic() {
        for (generation, seq, topic) in
            [(1, 0, "deploy"), (u64::MAX, u64::MAX, "a/b/c"), (7, 7, "")]
        {
            let k = key(generation, seq, topic);
            assert!(is_broadcast(&k));
            assert_eq!(parse(&k), Some((generation, seq, topic)));
        }
    }

    #[test]
    fn other_keys_are_not_broadcasts() {
        assert!(!is_broadcast("service/port"));
        assert_eq!(parse("service/port"), None);
        assert_eq!(parse("__broadcast/x/1/topic"), None, "not a number");
        assert_eq!(parse("__broadcast/1/x/topic"), None, "not a number");
        assert_eq!(parse("__broadcast/12"), None, "no seq");
        assert_eq!(parse("__broadcast/12/3"), None, "no topic");
        assert_eq!(parse("__broadcast/-1/1/t"), None);
    }

    #[test]
    fn a_broadcast_is_seen_first_once_per_sender_and_key() {
        let mut seen = Seen::default();
        let k = key(5, 0, "deploy");
        assert!(seen.first("a", &k));
        assert!(!seen.first("a", &k), "the same broadcast again");
        assert!(seen.first("b", &k), "another sender's");
        assert!(
            seen.first("a", &key(6, 0, "deploy")),
            "the sender restarted"
        );
    }

    #[test]
    fn only_the_latest_deliveries_are_remembered() {
        let mut seen = Seen::default();
        for seq in 0..Seen::CAPACITY as u64 + 1 {
            assert!(seen.first("a", &key(1, seq, "t")));
        }
        assert_eq!(seen.order.len(), Seen::CAPACITY);
        assert!(seen.first("a", &key(1, 0, "t")), "the oldest was forgotten");
        assert!(!seen.first("a", &key(1, Seen::CAPACITY as u64, "t")));
    }
}
