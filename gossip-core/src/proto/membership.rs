//! The membership table: every node this node knows, with its gossiped
//! state (heartbeat, versions, keyspace) and this node's opinion of it.
//!
//! Memory and speed matter here: a 10,000-node simulation holds 10⁸ members
//! and looks one up for every digest entry. Members live in a dense `Vec`
//! (uniform sampling and rotation by index) with a hash index by name whose
//! hasher is keyed from the node's own RNG (deterministic, and an outsider
//! cannot aim collisions at it). Nothing iterates the hash index, so
//! behaviour never depends on hash values.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::proto::event::Status;
use crate::proto::failure::{Detector, PhiParams};
use crate::proto::id::Id;
use crate::proto::keyspace::Keyspace;
use crate::proto::message::DigestEntry;
use crate::proto::reconcile::{self, Fingerprint, Range, RangeSum, Summary};
use crate::proto::time::Instant;

/// What this node holds of one member.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub heartbeat: u64,
    /// Every update up to this version is held.
    pub max_version: u64,
    pub left: bool,
    pub status: Status,
    pub detector: Detector,
    /// `None` until the member has written something.
    pub keys: Option<Box<Keyspace>>,
    /// Scratch for [`Members::mark`]: equal to the table's current mark
    /// when this member was marked in the current pass.
    mark: u32,
    /// The member's bucket and entry hash as the table's summary counts
    /// them (see [`reconcile`](crate::proto::reconcile)), set by [`Members`].
    bucket: u16,
    fp: u64,
}

impl Member {
    /// A Live member with this heartbeat, first heard of at `now`, whose
    /// heartbeats are expected every `interval` until its detector learns
    /// better (see [`Detector::new`]).
    pub fn new(heartbeat: u64, now: Instant, interval: Duration) -> Self {
        Member {
            heartbeat,
            max_version: 0,
            left: false,
            status: Status::Live,
            detector: Detector::new(now, interval),
            keys: None,
            mark: 0,
            bucket: 0,
            fp: 0,
        }
    }

    pub fn keyspace(&self) -> Option<&Keyspace> {
        self.keys.as_deref()
    }

    pub fn keyspace_mut(&mut self) -> &mut Keyspace {
        self.keys.get_or_insert_with(Default::default)
    }

    /// Takes a heartbeat seen in gossip. Returns whether it revives a
    /// Suspect or Dead member (its status is the caller's to change).
    pub fn observe(&mut self, heartbeat: u64, now: Instant, phi: &PhiParams) -> bool {
        if heartbeat <= self.heartbeat {
            return false;
        }
        self.heartbeat = heartbeat;
        self.detector.heartbeat(now, phi);
        matches!(self.status, Status::Suspect | Status::Dead) && !self.left
    }

    pub fn gc_version(&self) -> u64 {
        self.keys.as_ref().map_or(0, |k| k.gc_version)
    }
}

/// A keyed hash of names: folded multiplication (as in foldhash/wyhash)
/// with a per-node secret key, fast on short names and not aimable by an
/// outsider who does not know the key.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NameHasher(u64, u64);

fn fold_mul(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

impl NameHasher {
    pub fn hash(&self, name: &str) -> u64 {
        let bytes = name.as_bytes();
        let mut h = self.0 ^ (bytes.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("chunks_exact yields 8 bytes"));
            h = fold_mul(h ^ w, self.1 | 1);
        }
        // The tail as a little-endian word, byte by byte: names are short,
        // and a `copy_from_slice` here compiles to a call to `memcpy`.
        let tail = chunks
            .remainder()
            .iter()
            .rev()
            .fold(0u64, |t, &b| (t << 8) | u64::from(b));
        fold_mul(
            h ^ tail,
            (self.1 | 1).rotate_left(23) ^ 0x2d35_8dcc_aa6c_78a5,
        )
    }
}

/// Name equality, with a fast path for the usual case: the name was cloned
/// from the very identity stored here (identities are shared `Arc`s), so the
/// bytes are the same allocation and need no comparing.
fn same_name(ours: &str, name: &str) -> bool {
    ours.len() == name.len() && (std::ptr::eq(ours.as_ptr(), name.as_ptr()) || ours == name)
}

/// How many slots after the previous one found [`Members::find_ids`] looks
/// at before asking the index (8 found 70 % of 2,000-node digests' members
/// there; 16 found 71 %).
const HINT_SPAN: usize = 8;

/// Slots by name hash: open addressing over one `u64` per bucket (the low
/// 32 bits of the hash above the slot), linear probing, backward-shift
/// deletion, at most three quarters full.
///
/// Why not a general hash map: at 10⁸ members (a 10,000-node simulation)
/// every lookup misses the cache, and a map that keeps control bytes apart
/// from values misses twice before reaching the member. Here the probe
/// usually stays in one cache line, and the stored hash bits give each
/// entry's home bucket, so growing and deleting never rehash a name.
#[derive(Debug, Default)]
struct SlotIndex {
    buckets: Vec<u64>,
    len: usize,
}

const EMPTY: u64 = u64::MAX;

impl SlotIndex {
    fn home(&self, tag: u32) -> usize {
        tag as usize & (self.buckets.len() - 1)
    }

    fn next(&self, pos: usize) -> usize {
        (pos + 1) & (self.buckets.len() - 1)
    }

    /// Walks the probe run of hash `h` to the first bucket for which `hit`
    /// holds; `None` at the run's end.
    fn probe(&self, h: u64, mut hit: impl FnMut(u64) -> bool) -> Option<usize> {
        if self.buckets.is_empty() {
            return None;
        }
        let mut pos = self.home(h as u32);
        loop {
            let b = self.buckets[pos];
            if b == EMPTY {
                return None;
            }
            if hit(b) {
                return Some(pos);
            }
            pos = self.next(pos);
        }
    }

    /// The slot stored under hash `h` for which `eq` holds.
    fn find(&self, h: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = h as u32;
        self.probe(h, |b| (b >> 32) as u32 == tag && eq(b as u32))
            .map(|pos| self.buckets[pos] as u32)
    }

    /// Bucket position of `slot`, stored under hash `h`.
    fn position(&self, h: u64, slot: u32) -> Option<usize> {
        self.probe(h, |b| b as u32 == slot)
    }

    /// Room for `more` entries without growing.
    fn reserve(&mut self, more: usize) {
        let need = self.len + more;
        if need * 4 <= self.buckets.len() * 3 {
            return;
        }
        let cap = (need * 4 / 3 + 1).next_power_of_two().max(16);
        let old = std::mem::replace(&mut self.buckets, vec![EMPTY; cap]);
        for b in old.into_iter().filter(|&b| b != EMPTY) {
            self.place(b);
        }
    }

    fn place(&mut self, b: u64) {
        let mut pos = self.home((b >> 32) as u32);
        while self.buckets[pos] != EMPTY {
            pos = self.next(pos);
        }
        self.buckets[pos] = b;
    }

    /// Stores `slot` under hash `h`, unless the probe run already holds a
    /// slot for which `eq` holds: then that slot, and nothing is stored.
    fn insert(&mut self, h: u64, slot: u32, eq: impl FnMut(u32) -> bool) -> Result<(), u32> {
        assert!(slot != u32::MAX, "max_nodes keeps slots below u32::MAX");
        if let Some(held) = self.find(h, eq) {
            return Err(held);
        }
        self.reserve(1);
        self.place((h << 32) | u64::from(slot));
        self.len += 1;
        Ok(())
    }

    /// Removes `slot`, stored under hash `h`, shifting later entries of its
    /// probe run back so no lookup stops early at the hole.
    fn remove(&mut self, h: u64, slot: u32) {
        let Some(mut hole) = self.position(h, slot) else {
            return;
        };
        let mask = self.buckets.len() - 1;
        let mut j = self.next(hole);
        loop {
            let b = self.buckets[j];
            if b == EMPTY {
                break;
            }
            // `b` may fill the hole if the hole lies between its home and `j`.
            let home = self.home((b >> 32) as u32);
            if j.wrapping_sub(home) & mask >= j.wrapping_sub(hole) & mask {
                self.buckets[hole] = b;
                hole = j;
            }
            j = self.next(j);
        }
        self.buckets[hole] = EMPTY;
        self.len -= 1;
    }

    /// The entry for `from`, stored under hash `h`, now points at `to`.
    fn repoint(&mut self, h: u64, from: u32, to: u32) {
        if let Some(pos) = self.position(h, from) {
            self.buckets[pos] = (self.buckets[pos] & !u64::from(u32::MAX)) | u64::from(to);
        }
    }
}

/// All members, this node first (slot 0, never removed).
#[derive(Debug)]
pub(crate) struct Members {
    slots: Vec<(Id, Member)>,
    index: SlotIndex,
    hasher: NameHasher,
    counts: [usize; 4],
    /// The current pass of [`Members::mark`].
    pass: u32,
    /// Fingerprints of the membership's ranges, kept up to date by every
    /// change of a member's identity or `max_version` (see [`refresh`](Self::refresh)).
    summary: Summary,
}

fn slot(s: Status) -> usize {
    match s {
        Status::Live => 0,
        Status::Suspect => 1,
        Status::Dead => 2,
        Status::Left => 3,
    }
}

impl Members {
    /// A table holding only this node.
    pub fn new(me: Id, own: Member, key: (u64, u64)) -> Self {
        let mut m = Members {
            slots: Vec::new(),
            index: SlotIndex::default(),
            hasher: NameHasher(key.0, key.1),
            counts: [0; 4],
            pass: 1,
            summary: Summary::default(),
        };
        m.insert(me, own).expect("an empty table holds no name yet");
        m
    }

    fn hash(hasher: &NameHasher, name: &str) -> u64 {
        hasher.hash(name)
    }

    /// Makes room for `more` members at once (a catch-up sweep knows how
    /// many are coming), avoiding repeated growth.
    pub fn reserve(&mut self, more: usize) {
        self.slots.reserve_exact(more);
        self.index.reserve(more);
    }

    /// Slot of the member named `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        let h = Self::hash(&self.hasher, name);
        self.index
            .find(h, |i| same_name(&self.slots[i as usize].0.name, name))
            .map(|i| i as usize)
    }

    /// Slot of the member named like `id`. Faster than [`find`](Self::find)
    /// when `id` is the very identity stored (the usual case: identities
    /// are shared, and one learned from gossip is stored as received):
    /// then the name is not even read.
    pub fn find_id(&self, id: &Id) -> Option<usize> {
        let h = Self::hash(&self.hasher, &id.name);
        self.index
            .find(h, |i| self.is(i as usize, id))
            .map(|i| i as usize)
    }

    /// The slots of many identities, as [`find_id`](Self::find_id) would
    /// give them one by one, but cheaper for lists that follow our slot
    /// order: each is first looked for among the few slots after the
    /// previous one found (comparing identity pointers only: a hint, never
    /// an answer on its own), then in the index.
    ///
    /// Why that works: slots are in arrival order, and nodes learn members
    /// in much the same order (from the same seeds and sweeps), so a digest
    /// window, which walks the sender's slots, mostly walks ours too, and
    /// a reply lists a subsequence of the digest it answers. At 10⁸ members
    /// (a 10,000-node simulation) an index lookup is two cache misses; the
    /// next slots are usually in the line just read. Identities decoded
    /// from the wire are fresh allocations, so there the index answers.
    pub fn find_ids<'a>(&self, ids: impl Iterator<Item = &'a Id>) -> Vec<Option<u32>> {
        let mut next = usize::MAX;
        ids.map(|id| {
            let mut near = self
                .slots
                .get(next..)
                .unwrap_or_default()
                .iter()
                .take(HINT_SPAN);
            let found = if let Some(k) = near.position(|(ours, _)| Arc::ptr_eq(ours, id)) {
                Some(next + k)
            } else {
                self.find_id(id)
            };
            if let Some(i) = found {
                next = i + 1;
            }
            found.map(|i| i as u32)
        })
        .collect()
    }

    /// Whether slot `i` holds the member named like `id`.
    fn is(&self, i: usize, id: &Id) -> bool {
        let ours = &self.slots[i].0;
        Arc::ptr_eq(ours, id) || same_name(&ours.name, &id.name)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Slot `i` (0 is this node).
    pub fn at(&self, i: usize) -> (&Id, &Member) {
        let (id, m) = &self.slots[i];
        (id, m)
    }

    /// What we hold of the member in slot `i`, as a digest entry.
    pub fn digest_entry(&self, i: usize) -> DigestEntry {
        let (id, m) = &self.slots[i];
        DigestEntry {
            id: id.clone(),
            heartbeat: m.heartbeat,
            max_version: m.max_version,
        }
    }

    /// Slot `i`, mutable.
    pub fn at_mut(&mut self, i: usize) -> (&Id, &mut Member) {
        let (id, m) = &mut self.slots[i];
        (&*id, m)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Id, &Member)> {
        self.slots.iter().map(|(id, m)| (id, m))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Id, &mut Member)> {
        self.slots.iter_mut().map(|(id, m)| (&*id, m))
    }

    pub fn get(&self, name: &str) -> Option<&Member> {
        self.find(name).map(|i| &self.slots[i].1)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Member> {
        self.find(name).map(|i| &mut self.slots[i].1)
    }

    pub fn entry(&self, name: &str) -> Option<(&Id, &Member)> {
        self.find(name).map(|i| self.at(i))
    }

    /// Members with this status, this node included.
    pub fn count(&self, s: Status) -> usize {
        self.counts[slot(s)]
    }

    /// Inserts a member. Returns its slot, or `Err` with the slot of the
    /// member already named so and `id` back (then nothing changed): the
    /// caller need not look the name up first, the insertion's own probe
    /// does.
    pub fn insert(&mut self, id: Id, member: Member) -> Result<usize, (usize, Id)> {
        let h = Self::hash(&self.hasher, &id.name);
        let i = u32::try_from(self.slots.len())
            .expect("max_nodes keeps the table far below 2^32 members");
        let slots = &self.slots;
        if let Err(held) = self.index.insert(h, i, |held| {
            same_name(&slots[held as usize].0.name, &id.name)
        }) {
            return Err((held as usize, id));
        }
        if self.slots.len() == self.slots.capacity() {
            // Grow by a quarter, not double: at 10⁸ members (a 10,000-node
            // simulation) doubling's slack alone would cost gigabytes.
            self.slots.reserve_exact(self.slots.len() / 4 + 4);
        }
        self.counts[slot(member.status)] += 1;
        let mut member = member;
        member.bucket = reconcile::bucket(&id.name);
        member.fp = reconcile::entry_hash(&id, member.max_version);
        self.summary.add(member.bucket, member.fp);
        self.slots.push((id, member));
        Ok(i as usize)
    }

    /// Replaces the member in slot `i` by one of the same name (a restart).
    /// Returns the one replaced.
    pub fn replace(&mut self, i: usize, id: Id, member: Member) -> (Id, Member) {
        debug_assert_eq!(
            self.slots[i].0.name, id.name,
            "a replacement keeps the name"
        );
        self.counts[slot(member.status)] += 1;
        let mut member = member;
        member.bucket = reconcile::bucket(&id.name);
        member.fp = reconcile::entry_hash(&id, member.max_version);
        self.summary.add(member.bucket, member.fp);
        let old = std::mem::replace(&mut self.slots[i], (id, member));
        self.summary.remove(old.1.bucket, old.1.fp);
        self.counts[slot(old.1.status)] -= 1;
        old
    }

    /// Gives the member in slot `i` another identity of the same name,
    /// keeping what is held of it (this node taking a new generation).
    pub fn reidentify(&mut self, i: usize, id: Id) {
        debug_assert_eq!(self.slots[i].0.name, id.name, "the name stays");
        self.slots[i].0 = id;
        self.refresh(i);
    }

    /// Counts the member in slot `i` anew in the summary: call after
    /// changing its `max_version` (identity changes go through
    /// [`replace`](Self::replace) and [`reidentify`](Self::reidentify),
    /// which call it themselves).
    pub fn refresh(&mut self, i: usize) {
        let (id, m) = &mut self.slots[i];
        let fp = reconcile::entry_hash(id, m.max_version);
        if fp != m.fp {
            self.summary.remove(m.bucket, m.fp);
            self.summary.add(m.bucket, fp);
            m.fp = fp;
        }
    }

    /// This table's fingerprint of range `r`.
    pub fn fingerprint(&self, r: Range) -> Fingerprint {
        self.fingerprints(&[r])[0]
    }

    /// This table's fingerprints of `ranges`, in order: stored ones looked
    /// up, the others summed in one pass over the members.
    pub fn fingerprints(&self, ranges: &[Range]) -> Vec<Fingerprint> {
        let mut out: Vec<Fingerprint> = ranges
            .iter()
            .map(|&r| self.summary.get(r).unwrap_or_default())
            .collect();
        let unstored: Vec<usize> = (0..ranges.len())
            .filter(|&k| self.summary.get(ranges[k]).is_none())
            .collect();
        if !unstored.is_empty() {
            for (_, m) in &self.slots {
                for &k in &unstored {
                    if ranges[k].contains(m.bucket) {
                        out[k].add(m.fp);
                    }
                }
            }
        }
        out
    }

    /// The fingerprints of the children of every range in `split` (in
    /// order, 16 each).
    pub fn children_sums(&self, split: &[Range]) -> Vec<RangeSum> {
        let kids: Vec<Range> = split
            .iter()
            .filter_map(|r| r.children())
            .flatten()
            .collect();
        let sums = self.fingerprints(&kids);
        kids.into_iter()
            .zip(sums)
            .map(|(range, fingerprint)| RangeSum { range, fingerprint })
            .collect()
    }

    /// The slots of the members in each of `ranges` (one list per range,
    /// in slot order), in one pass over the members.
    pub fn slots_by_range(&self, ranges: &[Range]) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); ranges.len()];
        if ranges.is_empty() {
            return out;
        }
        for (i, (_, m)) in self.slots.iter().enumerate() {
            for (k, r) in ranges.iter().enumerate() {
                if r.contains(m.bucket) {
                    out[k].push(i);
                }
            }
        }
        out
    }

    /// Whether the stored fingerprints match the members (what every
    /// change must keep true; checked in debug builds).
    pub fn summary_is_exact(&self) -> bool {
        let mut fresh = Summary::default();
        for (id, m) in &self.slots {
            if m.fp != reconcile::entry_hash(id, m.max_version)
                || m.bucket != reconcile::bucket(&id.name)
            {
                return false;
            }
            fresh.add(m.bucket, m.fp);
        }
        let levels = std::iter::once(Range::ROOT)
            .chain(Range::ROOT.children().into_iter().flatten())
            .flat_map(|r| std::iter::once(r).chain(r.children().into_iter().flatten()));
        levels
            .into_iter()
            .all(|r| fresh.get(r) == self.summary.get(r))
    }

    pub fn remove(&mut self, name: &str) -> Option<(Id, Member)> {
        let i = self.find(name)?;
        if i == 0 {
            return None; // this node is never removed
        }
        let h = Self::hash(&self.hasher, name);
        self.index.remove(h, i as u32);
        let last = self.slots.len() - 1;
        let removed = self.slots.swap_remove(i);
        if i != last {
            // The former last member now lives at `i`: repoint its index entry.
            let moved = Self::hash(&self.hasher, &self.slots[i].0.name);
            self.index.repoint(moved, last as u32, i as u32);
        }
        self.counts[slot(removed.1.status)] -= 1;
        self.summary.remove(removed.1.bucket, removed.1.fp);
        Some(removed)
    }

    /// Starts a new marking pass: every member is unmarked. Marks answer
    /// "listed already?" within one digest in O(1), without a set of names.
    pub fn start_marking(&mut self) {
        self.pass = self.pass.wrapping_add(1);
        if self.pass == 0 {
            // Wrapped: old marks could collide with new passes.
            for (_, m) in &mut self.slots {
                m.mark = 0;
            }
            self.pass = 1;
        }
    }

    /// Marks the member in slot `i` in the current pass.
    pub fn mark(&mut self, i: usize) {
        self.slots[i].1.mark = self.pass;
    }

    /// Whether the member in slot `i` was marked in the current pass.
    pub fn is_marked(&self, i: usize) -> bool {
        self.slots[i].1.mark == self.pass
    }

    /// Changes a member's status, keeping counts right. Returns the old one.
    pub fn set_status(&mut self, name: &str, to: Status) -> Option<Status> {
        let i = self.find(name)?;
        Some(self.set_status_at(i, to))
    }

    /// Changes the status of the member in slot `i`. Returns the old one.
    pub fn set_status_at(&mut self, i: usize, to: Status) -> Status {
        let m = &mut self.slots[i].1;
        let from = std::mem::replace(&mut m.status, to);
        self.counts[slot(from)] -= 1;
        self.counts[slot(to)] += 1;
        from
    }
}

/// One forgotten incarnation: who it was, the last heartbeat seen of it,
/// and when this node last knocked on it.
#[derive(Clone, Debug)]
pub(crate) struct Gone {
    pub id: Id,
    pub heartbeat: u64,
    pub knocked: Option<Instant>,
}

/// Forgotten incarnations, so a stale peer cannot bring them back.
/// Bounded: the oldest records go first.
///
/// The rule (see [`Config::grace_period`](crate::proto::Config::grace_period)):
/// relayed state about a forgotten incarnation is never adopted; only the
/// incarnation itself, talking to this node, brings it back. Relayed state
/// showing a heartbeat above the one it was forgotten at is a hint that it
/// lives on (behind a healed partition): this node then knocks on it, and
/// its answer, if it runs, re-admits it.
#[derive(Debug, Default)]
pub(crate) struct Forgotten {
    by_name: BTreeMap<String, Gone>,
    order: VecDeque<String>,
}

impl Forgotten {
    /// Records that `id` was forgotten at `heartbeat`.
    pub fn insert(&mut self, id: &Id, heartbeat: u64, cap: usize) {
        let gone = Gone {
            id: id.clone(),
            heartbeat,
            knocked: None,
        };
        if self.by_name.insert(id.name.clone(), gone).is_none() {
            self.order.push_back(id.name.clone());
        }
        while self.order.len() > cap {
            if let Some(name) = self.order.pop_front() {
                self.by_name.remove(&name);
            }
        }
    }

    /// Whether this incarnation (or a newer one of the name) was forgotten.
    pub fn contains(&self, id: &Id) -> bool {
        !self.by_name.is_empty()
            && self
                .by_name
                .get(&id.name)
                .is_some_and(|g| id.generation <= g.id.generation)
    }

    /// The record of a name, if it was forgotten.
    pub fn get(&self, name: &str) -> Option<&Gone> {
        if self.by_name.is_empty() {
            return None;
        }
        self.by_name.get(name)
    }

    /// The record of a name, mutable.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Gone> {
        self.by_name.get_mut(name)
    }

    /// Drops the record of a name (it came back). O(records), and rare.
    pub fn remove(&mut self, name: &str) -> Option<Gone> {
        let gone = self.by_name.remove(name)?;
        self.order.retain(|n| n != name);
        Some(gone)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// The `i`-th oldest record, mutable.
    pub fn nth_mut(&mut self, i: usize) -> Option<&mut Gone> {
        self.order.get(i).and_then(|n| self.by_name.get_mut(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::id::NodeId;

    fn member(status: Status) -> Member {
        Member {
            status,
            ..Member::new(1, Instant::ZERO, Duration::from_secs(1))
        }
    }

    fn id(name: &str, generation: u64) -> Id {
        Arc::new(NodeId::new(
            name,
            "127.0.0.1:1".parse().expect("valid literal address"),
            generation,
        ))
    }

    #[test]
    fn the_summary_follows_every_change_and_the_check_catches_a_missed_one() {
        let mut m = Members::new(id("me", 1), member(Status::Live), (1, 2));
        for i in 0..50 {
            m.insert(id(&format!("n{i}"), 1), member(Status::Live))
                .expect("new name");
        }
        assert!(m.summary_is_exact());
        let before = m.fingerprint(Range::ROOT);
        assert_eq!(before.count, 51);
        // A version moves, and is refreshed.
        let i = m.find("n7").expect("inserted");
        m.at_mut(i).1.max_version = 9;
        assert!(!m.summary_is_exact(), "a change not refreshed is caught");
        m.refresh(i);
        assert!(m.summary_is_exact());
        assert_ne!(m.fingerprint(Range::ROOT), before);
        // Restart, new identity of the node itself, removal.
        m.replace(i, id("n7", 2), member(Status::Live));
        m.reidentify(0, id("me", 2));
        m.remove("n3");
        assert!(m.summary_is_exact());
        assert_eq!(m.fingerprint(Range::ROOT).count, 50);
        // Leaves are summed on demand and agree with their parents.
        let level2: Vec<Range> = Range::ROOT
            .children()
            .expect("the root has children")
            .flat_map(|r| {
                r.children()
                    .expect("level 1 has children")
                    .collect::<Vec<_>>()
            })
            .collect();
        let leaves = m.children_sums(&level2);
        assert_eq!(leaves.len(), 16 * 256);
        let total: u32 = leaves.iter().map(|s| s.fingerprint.count).sum();
        assert_eq!(total, 50);
        for r in &level2[..4] {
            let mut f = Fingerprint::default();
            for s in m.children_sums(&[*r]) {
                f.count += s.fingerprint.count;
                f.hash = f.hash.wrapping_add(s.fingerprint.hash);
            }
            assert_eq!(f, m.fingerprint(*r));
        }
        // Members in ranges: exactly those whose bucket lies there.
        let r = Range::ROOT
            .children()
            .expect("the root has children")
            .nth(3)
            .expect("16 children");
        let inside = m.slots_by_range(&[r, Range::ROOT]);
        assert_eq!(inside[0].len() as u32, m.fingerprint(r).count);
        assert_eq!(inside[1].len(), m.len(), "the root holds everyone");
    }

    #[test]
    fn slot_index_agrees_with_a_map_under_collisions_and_wraparound() {
        use rand::rngs::StdRng;
        use rand::{RngExt, SeedableRng};
        // Hashes from a tiny range: long probe runs that wrap around the
        // end of the table, and deletions in their middle.
        let mut rng = StdRng::seed_from_u64(3);
        let mut index = SlotIndex::default();
        let mut model: BTreeMap<u32, u64> = BTreeMap::new();
        for step in 0..20_000u32 {
            let slot = rng.random_range(0..400u32);
            let h = rng.random_range(0..24u64) | (u64::from(rng.random_range(0..4u32)) << 40);
            if let Some(&old) = model.get(&slot) {
                index.remove(old, slot);
                model.remove(&slot);
            } else {
                assert_eq!(index.insert(h, slot, |x| x == slot), Ok(()));
                model.insert(slot, h);
            }
            if step % 97 == 0 {
                for (&s, &h) in &model {
                    assert_eq!(index.find(h, |x| x == s), Some(s), "step {step}: slot {s}");
                }
                assert_eq!(index.len, model.len());
            }
        }
        // Repointing moves an entry to another slot number.
        let (&s, &h) = model.iter().next().expect("the model is not empty");
        index.repoint(h, s, 1_000);
        assert_eq!(index.find(h, |x| x == 1_000), Some(1_000));
        assert_eq!(index.find(h, |x| x == s), None);
    }

    #[test]
    fn insert_find_remove_keep_index_and_counts_right() {
        let mut m = Members::new(id("me", 1), member(Status::Live), (7, 9));
        for i in 0..100 {
            m.insert(
                id(&format!("n{i}"), 1),
                member(if i % 10 == 0 {
                    Status::Dead
                } else {
                    Status::Live
                }),
            )
            .expect("each name is new");
        }
        assert_eq!(m.len(), 101);
        assert_eq!(m.count(Status::Dead), 10);
        // A name held already is not inserted twice.
        let held = m.find("n7").expect("n7 was inserted");
        let again = id("n7", 2);
        assert!(matches!(
            m.insert(again.clone(), member(Status::Dead)),
            Err((slot, back)) if slot == held && Arc::ptr_eq(&back, &again)
        ));
        assert_eq!((m.len(), m.count(Status::Dead)), (101, 10));
        for i in (0..100).step_by(3) {
            assert!(m.remove(&format!("n{i}")).is_some());
        }
        assert!(m.remove("me").is_none(), "this node is never removed");
        for i in 0..100 {
            let found = m.get(&format!("n{i}")).is_some();
            assert_eq!(found, i % 3 != 0, "n{i}");
        }
        assert_eq!(m.at(0).0.name, "me");
        let live = m.iter().filter(|(_, x)| x.status == Status::Live).count();
        assert_eq!(m.count(Status::Live), live);
        let i = m.find("n1").expect("n1 was there");
        let old = m.replace(i, id("n1", 2), member(Status::Live));
        assert_eq!(old.0.generation, 1);
        assert_eq!(m.entry("n1").map(|(i, _)| i.generation), Some(2));
    }
}
