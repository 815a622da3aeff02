//! Range reconciliation of the membership: anti-entropy that costs a few
//! bytes when two nodes already agree.
//!
//! Every member falls in one of 4,096 buckets by a stable hash of its name,
//! and the buckets are the leaves of a 16-way tree of depth 3. A range (a
//! tree node) is summarised by a [`Fingerprint`]: how many members it holds
//! and the wrapping sum of their entry hashes. An entry hash covers what
//! only the member itself changes — its identity (name, address,
//! generation) and its `max_version` — never the heartbeat or this node's
//! opinion of the member's status, which change every round or differ from
//! node to node; so a converged, idle cluster has equal summaries
//! everywhere.
//!
//! An exchange opens with the root's fingerprint. Where a peer's
//! fingerprint of a range equals ours there is nothing to do; where it
//! differs the range is split (the sums of its 16 children go back) or,
//! once we hold at most [`LIST_AT_MOST`] members in it (or it is a leaf),
//! listed: our digest entries of the range go back, marked as covering it,
//! and the peer answers them as any digest and also sends the members of
//! the range we did not list. So d differences cost O(d · log n) bytes, and
//! the Scuttlebutt deltas carry the data as before.
//!
//! This module holds the tree, the fingerprints and the decision
//! (`plan`); the membership table (`membership.rs`) keeps the stored
//! levels up to date, and `node/exchange.rs` carries the ranges in `Syn`
//! and `SynAck`.

use serde::{Deserialize, Serialize};

use crate::proto::id::NodeId;

/// Bits of a member's bucket: 4,096 leaves.
const LEAF_BITS: u32 = 12;
/// Bits per tree level: 16 children per range.
const BRANCH_BITS: u32 = 4;
/// Depth of the leaves (the root is level 0).
pub const DEPTH: u8 = (LEAF_BITS / BRANCH_BITS) as u8;
/// Levels whose fingerprints are kept up to date as members change (root,
/// 16, 256 ranges: 273 fingerprints); the leaves are summed on demand.
const STORED_LEVELS: u8 = 3;
const STORED: usize = 1 + 16 + 256;
/// A differing range in which this node holds at most this many members is
/// listed rather than split: 16 child sums cost about as much as 8 entries.
pub const LIST_AT_MOST: u32 = 8;
/// Most ranges one message may ask about; the rest are ignored (a peer
/// honest about its tree never needs more than the budget lets it send).
pub const MAX_RANGES: usize = 512;

/// A range of the tree: a level (0 = root) and a prefix of `4 · level` bits
/// of the bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Range(pub u16);

impl Range {
    /// The whole membership.
    pub const ROOT: Range = Range(0);

    fn new(level: u8, prefix: u16) -> Range {
        Range((u16::from(level) << LEAF_BITS) | prefix)
    }

    /// The range's level: 0 is the root, [`DEPTH`] a leaf.
    pub fn level(self) -> u8 {
        (self.0 >> LEAF_BITS) as u8
    }

    fn prefix(self) -> u16 {
        self.0 & ((1 << LEAF_BITS) - 1)
    }

    /// Whether the range exists in the tree (anything from the wire is
    /// checked with this first).
    pub fn is_valid(self) -> bool {
        self.level() <= DEPTH
            && u32::from(self.prefix()) < 1 << (BRANCH_BITS * u32::from(self.level()))
    }

    /// Whether the member in `bucket` lies in this range.
    pub fn contains(self, bucket: u16) -> bool {
        let shift = LEAF_BITS - BRANCH_BITS * u32::from(self.level());
        bucket >> shift == self.prefix()
    }

    /// The 16 children of the range, `None` for a leaf.
    pub fn children(self) -> Option<impl Iterator<Item = Range>> {
        let level = self.level();
        (level < DEPTH).then(|| {
            let base = self.prefix() << BRANCH_BITS;
            (0..1 << BRANCH_BITS).map(move |c| Range::new(level + 1, base | c))
        })
    }

    /// Where the range's fingerprint is stored, if its level is.
    fn stored(self) -> Option<usize> {
        let p = usize::from(self.prefix());
        match self.level() {
            0 => Some(0),
            1 => Some(1 + p),
            2 => Some(17 + p),
            _ => None,
        }
    }
}

/// A range's summary: how many members it holds and the wrapping sum of
/// their entry hashes (a sum, so a member's change is one subtraction and
/// one addition, whatever the order members arrived in).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Members in the range.
    pub count: u32,
    /// Wrapping sum of their entry hashes.
    pub hash: u64,
}

impl Fingerprint {
    /// Adds a member with entry hash `h`.
    pub fn add(&mut self, h: u64) {
        self.count = self.count.wrapping_add(1);
        self.hash = self.hash.wrapping_add(h);
    }

    /// Removes a member with entry hash `h`.
    pub fn remove(&mut self, h: u64) {
        self.count = self.count.wrapping_sub(1);
        self.hash = self.hash.wrapping_sub(h);
    }
}

/// A range and the sender's fingerprint of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeSum {
    /// The range.
    pub range: Range,
    /// The sender's fingerprint of it.
    pub fingerprint: Fingerprint,
}

/// The reconciliation part of a `Syn` or `SynAck`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recon {
    /// Ranges to compare: the receiver splits or lists where its own
    /// fingerprint differs.
    pub sums: Vec<RangeSum>,
    /// Ranges the message's digest lists in full: the receiver also sends
    /// the members it holds there that the digest does not name.
    pub covers: Vec<Range>,
}

impl Recon {
    /// Nothing to reconcile.
    pub fn is_empty(&self) -> bool {
        self.sums.is_empty() && self.covers.is_empty()
    }
}

/// FNV-1a over bytes, then a finaliser: stable across builds and platforms
/// (every node of a cluster must bucket and hash alike).
fn hash_bytes(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// splitmix64's finaliser: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// The bucket of the member named `name`.
pub fn bucket(name: &str) -> u16 {
    (mix(hash_bytes(FNV_OFFSET, name.as_bytes())) >> (64 - LEAF_BITS)) as u16
}

/// The entry hash of a member: its identity and `max_version`.
pub fn entry_hash(id: &NodeId, max_version: u64) -> u64 {
    let mut h = hash_bytes(FNV_OFFSET, id.name.as_bytes());
    h = hash_bytes(h, &[0xff]);
    match id.addr.ip() {
        std::net::IpAddr::V4(ip) => h = hash_bytes(h, &ip.octets()),
        std::net::IpAddr::V6(ip) => h = hash_bytes(h, &ip.octets()),
    }
    h = hash_bytes(h, &id.addr.port().to_le_bytes());
    mix(mix(h ^ mix(id.generation)) ^ max_version)
}

/// The fingerprints of the stored levels, kept up to date by the owner of
/// the members (see [`Members`](crate::proto::membership)).
#[derive(Clone, Debug)]
pub(crate) struct Summary {
    stored: Box<[Fingerprint]>,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            stored: vec![Fingerprint::default(); STORED].into_boxed_slice(),
        }
    }
}

impl Summary {
    fn each_stored(&mut self, bucket: u16, f: impl Fn(&mut Fingerprint)) {
        for level in 0..STORED_LEVELS {
            let shift = LEAF_BITS - BRANCH_BITS * u32::from(level);
            let r = Range::new(level, bucket >> shift);
            let i = r.stored().expect("stored levels have a slot");
            f(&mut self.stored[i]);
        }
    }

    /// A member with entry hash `h` joined `bucket`.
    pub fn add(&mut self, bucket: u16, h: u64) {
        self.each_stored(bucket, |f| f.add(h));
    }

    /// A member with entry hash `h` left `bucket`.
    pub fn remove(&mut self, bucket: u16, h: u64) {
        self.each_stored(bucket, |f| f.remove(h));
    }

    /// The stored fingerprint of `r`, `None` if `r` is below the stored
    /// levels (then the members must be summed).
    pub fn get(&self, r: Range) -> Option<Fingerprint> {
        r.stored().map(|i| self.stored[i])
    }
}

/// What to do about the ranges a peer sent.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Ranges to list in full, with our fingerprint of each.
    pub list: Vec<RangeSum>,
    /// Ranges to split: send the fingerprints of their children.
    pub split: Vec<Range>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.list.is_empty() && self.split.is_empty()
    }
}

/// Compares a peer's range sums with ours (`ours` gives our fingerprints
/// of the ranges asked, in order, all at once: the table sums the unstored
/// ones in one pass): equal ranges need nothing, differing ones are listed
/// where we hold few members (or at a leaf) and split otherwise. Invalid
/// and repeated ranges, and any beyond [`MAX_RANGES`], are ignored.
pub(crate) fn plan(theirs: &[RangeSum], ours: impl FnOnce(&[Range]) -> Vec<Fingerprint>) -> Plan {
    let mut asked: Vec<RangeSum> = Vec::new();
    for s in theirs.iter().take(MAX_RANGES) {
        if s.range.is_valid() && !asked.iter().any(|a| a.range == s.range) {
            asked.push(*s);
        }
    }
    let ranges: Vec<Range> = asked.iter().map(|s| s.range).collect();
    let mut plan = Plan::default();
    for (s, fingerprint) in asked.iter().zip(ours(&ranges)) {
        if fingerprint == s.fingerprint {
            continue;
        }
        if s.range.level() == DEPTH || fingerprint.count <= LIST_AT_MOST {
            plan.list.push(RangeSum {
                range: s.range,
                fingerprint,
            });
        } else {
            plan.split.push(s.range);
        }
    }
    plan
}

/// Ranges from the wire worth acting on: valid, distinct, at most
/// [`MAX_RANGES`].
pub(crate) fn valid_covers(covers: &[Range]) -> Vec<Range> {
    let mut out: Vec<Range> = covers
        .iter()
        .copied()
        .filter(|r| r.is_valid())
        .take(MAX_RANGES)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Exact encoded sizes.
pub(crate) mod size {
    use super::*;
    use crate::proto::message::size::varint;

    pub fn range(r: Range) -> usize {
        varint(u64::from(r.0))
    }

    pub fn range_sum(s: &RangeSum) -> usize {
        range(s.range) + varint(u64::from(s.fingerprint.count)) + varint(s.fingerprint.hash)
    }

    pub fn recon(r: &Recon) -> usize {
        varint(r.sums.len() as u64)
            + r.sums.iter().map(range_sum).sum::<usize>()
            + varint(r.covers.len() as u64)
            + r.covers.iter().map(|&c| range(c)).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(range: Range, count: u32, hash: u64) -> RangeSum {
        RangeSum {
            range,
            fingerprint: Fingerprint { count, hash },
        }
    }

    #[test]
    fn every_bucket_lies_in_exactly_one_range_per_level_and_children_partition_their_parent() {
        for bucket in [0u16, 1, 0x0abc, 0x0fff] {
            for level in 0..=DEPTH {
                let n = (0..1u16 << (BRANCH_BITS * u32::from(level)))
                    .filter(|&p| Range::new(level, p).contains(bucket))
                    .count();
                assert_eq!(n, 1, "bucket {bucket} level {level}");
            }
        }
        let parent = Range::new(1, 0xa);
        let kids: Vec<Range> = parent.children().expect("not a leaf").collect();
        assert_eq!(kids.len(), 16);
        for b in 0..1u16 << LEAF_BITS {
            let inside = kids.iter().filter(|k| k.contains(b)).count();
            assert_eq!(inside, usize::from(parent.contains(b)), "bucket {b}");
        }
        assert!(Range::new(DEPTH, 0x123).children().is_none());
    }

    #[test]
    fn ranges_outside_the_tree_are_invalid() {
        assert!(Range::ROOT.is_valid());
        assert!(Range::new(1, 15).is_valid());
        assert!(!Range::new(1, 16).is_valid());
        assert!(!Range::new(0, 1).is_valid());
        assert!(!Range::new(DEPTH + 1, 0).is_valid());
        assert!(!Range(u16::MAX).is_valid());
    }

    #[test]
    fn stored_levels_follow_adds_and_removes() {
        let mut s = Summary::default();
        s.add(0x0abc, 7);
        s.add(0x0abd, 9);
        s.add(0x0100, 100);
        assert_eq!(
            s.get(Range::ROOT),
            Some(Fingerprint {
                count: 3,
                hash: 116
            })
        );
        assert_eq!(
            s.get(Range::new(1, 0xa)),
            Some(Fingerprint { count: 2, hash: 16 })
        );
        assert_eq!(
            s.get(Range::new(2, 0xab)),
            Some(Fingerprint { count: 2, hash: 16 })
        );
        assert_eq!(
            s.get(Range::new(2, 0x10)),
            Some(Fingerprint {
                count: 1,
                hash: 100
            })
        );
        assert_eq!(
            s.get(Range::new(DEPTH, 0xabc)),
            None,
            "leaves are not stored"
        );
        s.remove(0x0abc, 7);
        assert_eq!(
            s.get(Range::new(1, 0xa)),
            Some(Fingerprint { count: 1, hash: 9 })
        );
        s.remove(0x0abd, 9);
        s.remove(0x0100, 100);
        assert_eq!(s.get(Range::ROOT), Some(Fingerprint::default()));
    }

    #[test]
    fn equal_ranges_need_nothing_differing_ones_are_split_or_listed() {
        let one = |r: &Range| match r.level() {
            0 => Fingerprint {
                count: 100,
                hash: 1,
            },
            1 => Fingerprint { count: 5, hash: 2 },
            _ => Fingerprint { count: 50, hash: 3 },
        };
        let ours = |rs: &[Range]| rs.iter().map(one).collect::<Vec<_>>();
        let theirs = [
            sum(Range::ROOT, 100, 9),         // differs, we hold many: split
            sum(Range::new(1, 3), 5, 2),      // equal: nothing
            sum(Range::new(1, 4), 6, 2),      // differs, we hold few: list
            sum(Range::new(DEPTH, 7), 50, 4), // differs at a leaf: list
            sum(Range::new(2, 9), 50, 3),     // equal
        ];
        let p = plan(&theirs, ours);
        assert_eq!(p.split, vec![Range::ROOT]);
        assert_eq!(
            p.list,
            vec![
                sum(Range::new(1, 4), 5, 2),
                sum(Range::new(DEPTH, 7), 50, 3)
            ],
            "listed with our own fingerprints"
        );
    }

    #[test]
    fn invalid_repeated_and_excess_ranges_are_ignored() {
        let ours = |rs: &[Range]| {
            vec![
                Fingerprint {
                    count: 100,
                    hash: 1,
                };
                rs.len()
            ]
        };
        let mut theirs = vec![
            sum(Range(u16::MAX), 1, 1),
            sum(Range::ROOT, 1, 1),
            sum(Range::ROOT, 2, 2),
        ];
        theirs.extend((0..MAX_RANGES as u16).map(|p| sum(Range::new(DEPTH, p), 1, 1)));
        let p = plan(&theirs, ours);
        assert_eq!(p.split, vec![Range::ROOT]);
        assert_eq!(
            p.list.len(),
            MAX_RANGES - 3,
            "only the first MAX_RANGES ranges count"
        );
        assert_eq!(
            valid_covers(&[
                Range(u16::MAX),
                Range::new(1, 2),
                Range::new(1, 2),
                Range::ROOT
            ]),
            vec![Range::ROOT, Range::new(1, 2)]
        );
    }

    #[test]
    fn entry_hashes_change_with_identity_and_version_only_and_buckets_spread() {
        let id = |name: &str, generation: u64| NodeId {
            name: name.into(),
            addr: "127.0.0.1:7000".parse().expect("valid address"),
            generation,
        };
        let base = entry_hash(&id("n1", 1), 5);
        assert_eq!(base, entry_hash(&id("n1", 1), 5), "deterministic");
        assert_ne!(base, entry_hash(&id("n1", 1), 6));
        assert_ne!(base, entry_hash(&id("n1", 2), 5));
        assert_ne!(base, entry_hash(&id("n2", 1), 5));
        let mut other = id("n1", 1);
        other.addr = "127.0.0.1:7001".parse().expect("valid address");
        assert_ne!(base, entry_hash(&other, 5));
        // 4,096 names over 16 top-level ranges: none empty, none crowded.
        let mut per = [0u32; 16];
        for i in 0..4096 {
            per[usize::from(bucket(&format!("n{i}")) >> 8)] += 1;
        }
        assert!(per.iter().all(|&c| (160..=352).contains(&c)), "{per:?}");
    }

    #[test]
    fn sizes_match_postcard() {
        let r = Recon {
            sums: vec![
                sum(Range::ROOT, 3, u64::MAX),
                sum(Range::new(DEPTH, 0xfff), 0, 0),
            ],
            covers: vec![Range::new(2, 0xff)],
        };
        let bytes = postcard::to_allocvec(&r).expect("encodes");
        assert_eq!(bytes.len(), size::recon(&r));
        assert_eq!(
            postcard::to_allocvec(&Recon::default())
                .expect("encodes")
                .len(),
            size::recon(&Recon::default())
        );
    }
}
