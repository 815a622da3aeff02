//! One node's versioned keyspace, as held by any node of the cluster.
//!
//! Only the owner writes; every write takes the owner's next version, so a
//! keyspace is fully described by "every update up to version v". Deletes are
//! tombstones, forgotten after the grace period; forgetting raises
//! `gc_version`, and a peer asking for updates older than that gets a reset.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::proto::message::{KeyUpdate, size};
use crate::proto::time::Instant;

/// A stored value or tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// `None` is a tombstone.
    pub value: Option<Bytes>,
    /// The owner's version of this write.
    pub version: u64,
    /// Local time this write was made or learned (tombstone GC).
    pub since: Instant,
    /// Owner only: when this key turns into a tombstone.
    pub expires: Option<Instant>,
}

/// What applying an update did, for events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    Set(Bytes),
    Deleted,
}

/// A node's keyspace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Keyspace {
    pub entries: BTreeMap<String, Entry>,
    /// Tombstones up to this version have been forgotten.
    pub gc_version: u64,
    /// How many entries are tombstones: lets GC skip keyspaces without any.
    tombstones: usize,
    /// Bytes of keys and values held ([`entry_bytes`] summed).
    bytes: usize,
}

/// What one entry counts toward `max_keyspace_bytes` and `max_state_bytes`:
/// its key and its value (a tombstone is its key).
pub(crate) fn entry_bytes(key: &str, value: Option<&Bytes>) -> usize {
    key.len() + value.map_or(0, Bytes::len)
}

impl Keyspace {
    /// Stores an entry, replacing the key's previous one (returned).
    /// The only way entries are added, so the tombstone count stays right.
    pub fn put(&mut self, key: String, entry: Entry) -> Option<Entry> {
        self.tombstones += usize::from(entry.value.is_none());
        self.bytes += entry_bytes(&key, entry.value.as_ref());
        let len = key.len();
        let old = self.entries.insert(key, entry);
        if let Some(o) = &old {
            self.tombstones -= usize::from(o.value.is_none());
            self.bytes -= len + o.value.as_ref().map_or(0, Bytes::len);
        }
        old
    }

    /// Bytes of keys and values held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes held once `key` holds `value` instead of what it holds now.
    pub fn bytes_with(&self, key: &str, value: Option<&Bytes>) -> usize {
        let old = self
            .entries
            .get(key)
            .map_or(0, |e| entry_bytes(key, e.value.as_ref()));
        self.bytes - old + entry_bytes(key, value)
    }

    /// Whether any tombstone is held (GC has work).
    pub fn has_tombstones(&self) -> bool {
        self.tombstones > 0
    }

    /// Applies one update if it is newer than what is held for its key.
    /// Returns the visible change, if any.
    pub fn apply(&mut self, update: KeyUpdate, now: Instant) -> Option<Change> {
        if let Some(old) = self.entries.get(&update.key)
            && old.version >= update.version
        {
            return None;
        }
        let set = update.value.clone();
        let entry = Entry {
            value: update.value,
            version: update.version,
            since: now,
            expires: None,
        };
        let old = self.put(update.key, entry);
        match set {
            Some(v) => Some(Change::Set(v)),
            None => old.and_then(|o| o.value).map(|_| Change::Deleted),
        }
    }

    /// Live value of a key.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key).filter(|e| e.value.is_some())
    }

    /// Updates with version above `floor`, oldest first, cut so that their
    /// encoded size stays within `budget` bytes. Returns them with the
    /// version the receiver will be complete up to, given `max_version`.
    pub fn updates_after(
        &self,
        floor: u64,
        max_version: u64,
        budget: usize,
    ) -> (Vec<KeyUpdate>, u64) {
        let mut newer: Vec<(&String, &Entry)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.version > floor)
            .collect();
        newer.sort_unstable_by_key(|(_, e)| e.version);
        let mut used = 0;
        let mut out = Vec::new();
        for (key, e) in newer {
            let update = KeyUpdate {
                key: key.clone(),
                version: e.version,
                value: e.value.clone(),
            };
            used += size::key_update(&update);
            if used > budget {
                // Cut short: complete only up to the last version sent.
                let complete = out.last().map_or(floor, |u: &KeyUpdate| u.version);
                return (out, complete);
            }
            out.push(update);
        }
        (out, max_version)
    }

    /// Forgets tombstones older than `grace`. Returns how many were dropped.
    pub fn gc(&mut self, now: Instant, grace: std::time::Duration) -> usize {
        let mut dropped = 0;
        let gc_version = &mut self.gc_version;
        let bytes = &mut self.bytes;
        self.entries.retain(|k, e| {
            let expired = e.value.is_none() && now.saturating_since(e.since) >= grace;
            if expired {
                *gc_version = (*gc_version).max(e.version);
                *bytes -= k.len();
                dropped += 1;
            }
            !expired
        });
        self.tombstones -= dropped;
        dropped
    }

    /// Live keys (tombstones excluded).
    pub fn live_len(&self) -> usize {
        self.entries.values().filter(|e| e.value.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn up(key: &str, version: u64, value: Option<&'static str>) -> KeyUpdate {
        KeyUpdate {
            key: key.into(),
            version,
            value: value.map(|v| Bytes::from_static(v.as_bytes())),
        }
    }

    #[test]
    fn newer_wins_older_is_ignored() {
        let mut ks = Keyspace::default();
        let t = Instant::ZERO;
        assert_eq!(
            ks.apply(up("a", 2, Some("x")), t),
            Some(Change::Set(Bytes::from_static(b"x")))
        );
        assert_eq!(ks.apply(up("a", 1, Some("old")), t), None);
        assert_eq!(
            ks.get("a").and_then(|e| e.value.clone()),
            Some(Bytes::from_static(b"x"))
        );
        assert_eq!(ks.apply(up("a", 3, None), t), Some(Change::Deleted));
        assert!(ks.get("a").is_none());
        // A tombstone for a key never seen is stored but is no visible change.
        assert_eq!(ks.apply(up("b", 4, None), t), None);
        assert_eq!(ks.entries.len(), 2);
    }

    #[test]
    fn updates_come_in_version_order_and_cut_without_gaps() {
        let mut ks = Keyspace::default();
        for (i, k) in ["z", "y", "x", "w"].iter().enumerate() {
            ks.apply(up(k, i as u64 + 1, Some("vvvvvvvv")), Instant::ZERO);
        }
        let (all, complete) = ks.updates_after(1, 4, usize::MAX);
        assert_eq!(
            all.iter().map(|u| u.version).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        assert_eq!(complete, 4);
        let one = size::key_update(&all[0]);
        let (cut, complete) = ks.updates_after(1, 4, one * 2 + 1);
        assert_eq!(
            cut.iter().map(|u| u.version).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(
            complete, 3,
            "receiver is complete only up to the last update sent"
        );
        let (none, complete) = ks.updates_after(1, 4, 3);
        assert!(none.is_empty());
        assert_eq!(complete, 1);
    }

    #[test]
    fn gc_forgets_old_tombstones_and_raises_watermark() {
        let mut ks = Keyspace::default();
        ks.apply(up("a", 1, Some("x")), Instant::ZERO);
        ks.apply(up("a", 2, None), Instant::from_micros(10));
        ks.apply(up("b", 3, None), Instant::from_micros(2_000_000));
        assert_eq!(
            ks.gc(Instant::from_micros(1_000_010), Duration::from_secs(1)),
            1
        );
        assert_eq!(ks.gc_version, 2);
        assert!(!ks.entries.contains_key("a"));
        assert!(ks.entries.contains_key("b"), "a young tombstone is kept");
        assert!(ks.has_tombstones());
        assert_eq!(
            ks.gc(Instant::from_micros(9_000_000), Duration::from_secs(1)),
            1
        );
        assert!(
            !ks.has_tombstones(),
            "the count follows every insert, overwrite and drop"
        );
        assert_eq!(ks.bytes(), 0, "so do the bytes");
    }

    #[test]
    fn bytes_follow_inserts_overwrites_and_deletes() {
        let mut ks = Keyspace::default();
        ks.apply(up("ab", 1, Some("xyz")), Instant::ZERO);
        assert_eq!(ks.bytes(), 5);
        assert_eq!(ks.bytes_with("ab", Some(&Bytes::from_static(b"q"))), 3);
        assert_eq!(ks.bytes_with("c", None), 6);
        ks.apply(up("ab", 2, Some("q")), Instant::ZERO);
        assert_eq!(ks.bytes(), 3);
        ks.apply(up("ab", 3, None), Instant::ZERO);
        assert_eq!(ks.bytes(), 2, "a tombstone is its key");
    }
}
