//! Wires range reconciliation ([`reconcile`](crate::proto::reconcile)) into
//! the exchange.
//!
//! The initiator opens with the root's fingerprint. The responder answers
//! each differing range with the fingerprints of its children, or, where it
//! holds few members or the range is a leaf, with its own fingerprint of
//! the range (asking the initiator to list it). The initiator answers those
//! in a follow-up `Syn` to the same peer: it lists its entries of the
//! ranges where it holds few members (or at a leaf), marked as covering
//! them, and sends the children's fingerprints of the others. A listing is
//! answered like any digest, and the side that receives it also sends the
//! members of the covered ranges it holds and the listing did not name. The
//! tree has [`DEPTH`](crate::proto::reconcile::DEPTH) levels, so an
//! exchange needs at most that many follow-ups.

use super::*;
use crate::proto::reconcile::{self, Range, RangeSum, Recon};

/// Most ranges split in one message: their 16 children's fingerprints take
/// at most 17 bytes each, so 32 splits stay under 9 KB.
const MAX_SPLITS: usize = 32;

impl Node {
    /// What an ordinary exchange opens with: the root's fingerprint.
    pub(super) fn opening_recon(&self) -> Recon {
        Recon {
            sums: vec![RangeSum {
                range: Range::ROOT,
                fingerprint: self.members.fingerprint(Range::ROOT),
            }],
            covers: Vec::new(),
        }
    }

    /// The responder's answer to the initiator's fingerprints: children of
    /// the ranges to split, our own fingerprint of the ranges the
    /// initiator should list.
    pub(super) fn answer_sums(&mut self, sums: &[RangeSum]) -> Recon {
        let mut plan = self.plan(sums);
        let mut out = std::mem::take(&mut plan.list);
        out.extend(self.members.children_sums(&plan.split));
        Recon {
            sums: out,
            covers: Vec::new(),
        }
    }

    /// [`reconcile::plan`] against our table, keeping at most
    /// [`MAX_SPLITS`] ranges to split, chosen at random: after a long
    /// partition thousands may differ, and the rest are split in later
    /// exchanges (with this peer or others).
    fn plan(&mut self, sums: &[RangeSum]) -> reconcile::Plan {
        let mut plan = reconcile::plan(sums, |rs| self.members.fingerprints(rs));
        if plan.split.len() > MAX_SPLITS {
            plan.split.shuffle(&mut self.rng);
            plan.split.truncate(MAX_SPLITS);
            plan.split.sort_unstable();
        }
        plan
    }

    /// The members we hold in the ranges a peer's digest covers but did
    /// not name (marked: named by the digest): the peer lacks them, so they
    /// go with all their state.
    pub(super) fn uncovered(&self, covers: &[Range]) -> Vec<(Id, u64)> {
        let covers = reconcile::valid_covers(covers);
        self.members
            .slots_by_range(&covers)
            .concat()
            .into_iter()
            .filter(|&i| !self.members.is_marked(i))
            .map(|i| (self.members.at(i).0.clone(), 0))
            .collect()
    }

    /// The initiator's follow-up to a responder's fingerprints: lists the
    /// ranges where we hold few members, sends the children of the rest.
    /// Nothing is sent when every range agrees.
    pub(super) fn follow_up(&mut self, to: SocketAddr, sums: &[RangeSum]) {
        let plan = self.plan(sums);
        if plan.is_empty() {
            return;
        }
        let budget = self.config.digest_bytes;
        let own = self.own_entry();
        let mut used = size::digest_entry(&own);
        let mut digest = vec![own];
        let mut covers = Vec::new();
        let listed: Vec<Range> = plan.list.iter().map(|s| s.range).collect();
        // A range is covered only if all of it fits: the peer sends what a
        // covering listing leaves out, so a partial one would cost it
        // everything it holds there.
        let by_range = self.members.slots_by_range(&listed);
        for (r, slots) in listed.into_iter().zip(by_range) {
            let entries: Vec<DigestEntry> = slots
                .into_iter()
                .filter(|&i| i != 0)
                .map(|i| self.members.digest_entry(i))
                .collect();
            let bytes: usize = entries.iter().map(size::digest_entry).sum();
            if used + bytes > budget {
                continue;
            }
            used += bytes;
            digest.extend(entries);
            covers.push(r);
        }
        let recon = Recon {
            sums: self.members.children_sums(&plan.split),
            covers,
        };
        self.send_syn_of(to, digest, used, None, recon);
    }
}
