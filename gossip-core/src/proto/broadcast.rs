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
//! The key is `PREFIX` + the sender's sequence number + `/` + topic, so two
//! broadcasts of one sender never share a key, and the topic may hold any
//! character (slashes too).

/// Keys under this prefix are broadcasts, not application keys.
pub const PREFIX: &str = "__broadcast/";

/// The key of broadcast number `seq` of its sender on `topic`.
pub fn key(seq: u64, topic: &str) -> String {
    format!("{PREFIX}{seq}/{topic}")
}

/// Whether `key` is a broadcast's.
pub fn is_broadcast(key: &str) -> bool {
    key.starts_with(PREFIX)
}

/// The sequence number and topic of a broadcast's key; `None` for any
/// other key, including keys under the prefix that do not parse (a peer
/// may write anything there: such keys are ignored, never a panic).
pub fn parse(key: &str) -> Option<(u64, &str)> {
    let rest = key.strip_prefix(PREFIX)?;
    let (seq, topic) = rest.split_once('/')?;
    Some((seq.parse().ok()?, topic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_with_any_topic() {
        for (seq, topic) in [(0, "deploy"), (u64::MAX, "a/b/c"), (7, "")] {
            let k = key(seq, topic);
            assert!(is_broadcast(&k));
            assert_eq!(parse(&k), Some((seq, topic)));
        }
    }

    #[test]
    fn other_keys_are_not_broadcasts() {
        assert!(!is_broadcast("service/port"));
        assert_eq!(parse("service/port"), None);
        assert_eq!(parse("__broadcast/x/topic"), None, "not a number");
        assert_eq!(parse("__broadcast/12"), None, "no topic");
        assert_eq!(parse("__broadcast/-1/t"), None);
    }
}
