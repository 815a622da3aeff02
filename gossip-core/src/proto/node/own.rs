//! This node's own state against peers' claims about it: claims are
//! checked and noted as they arrive, and refuted at the next round (the
//! rules are in [`refute`](crate::proto::refute)).

use super::*;
use crate::proto::refute::{self, Claim, Own};

impl Node {
    fn own_state(&self) -> Own {
        let m = self
            .members
            .get(&self.me.name)
            .expect("this node is always in its own membership");
        Own {
            generation: self.me.generation,
            heartbeat: m.heartbeat,
            max_version: m.max_version,
            left: self.leave_version.is_some(),
            keys: m.keyspace().map_or(0, |k| k.entries.len()),
        }
    }

    /// A peer's claim about a node of our name: `id` and the counters it
    /// claims. Returns `false` if the claim is one no honest node makes
    /// (counted), `true` otherwise; claims ahead of our own state are noted
    /// for refutation, another incarnation claiming our name is reported.
    pub(super) fn claim_about_self(
        &mut self,
        id: &Id,
        heartbeat: u64,
        max_version: u64,
        left: bool,
    ) -> bool {
        if refute::impossible(heartbeat)
            || refute::impossible(max_version)
            || refute::impossible_generation(Some(self.me.generation), id.generation)
        {
            self.metrics.refused.count_part(PartRefused::Impossible);
            return false;
        }
        if id.generation >= self.me.generation && id.addr != self.me.addr {
            self.report_conflict(self.me.clone(), id.clone());
            if id.generation == self.me.generation {
                // Not ahead of us: peers keep the incarnation they hold.
                return true;
            }
        }
        let own = self.own_state();
        let claim = Claim {
            generation: id.generation,
            heartbeat,
            max_version,
            left,
        };
        if self.refutation.claim(&own, &claim) {
            tracing::debug!(node = %self.me, claimant = %id, heartbeat, max_version, left, "a peer holds a claim about this node ahead of its own state");
        }
        true
    }

    /// Moves this node's own state above every claim noted since the last
    /// round. Runs at the start of a round, before the heartbeat moves.
    pub(super) fn refute(&mut self, now: Instant) {
        let own = self.own_state();
        let plan = self.refutation.plan(&own);
        if plan == refute::Plan::default() {
            return;
        }
        self.metrics.refutations += 1;
        tracing::info!(node = %self.me, ?plan, "refuting claims about this node");
        if let Some(generation) = plan.generation {
            self.take_generation(now, generation);
        }
        if let Some(heartbeat) = plan.heartbeat {
            let m = self.own_mut();
            m.heartbeat = m.heartbeat.max(heartbeat);
        }
        if let Some(above) = plan.restamp_above {
            let floor = self.own_mut().max_version;
            self.restamp(above);
            let me = self.me.clone();
            self.eager.note(&me, floor);
            self.push_hot(me, floor, now, false);
        }
        self.push_news(now);
    }

    /// This node becomes generation `generation` at its own address, with
    /// its keys, heartbeat and versions started again: peers replace
    /// whatever they held of our name and take our whole state.
    fn take_generation(&mut self, now: Instant, generation: u64) {
        let me: Id = Arc::new(NodeId::new(self.me.name.clone(), self.me.addr, generation));
        self.members.reidentify(0, me.clone());
        self.me = me.clone();
        let m = self.own_mut();
        m.heartbeat = 1;
        m.max_version = 0;
        if let Some(ks) = m.keys.as_mut() {
            ks.gc_version = 0;
        }
        self.restamp(0);
        self.hot.retain(|h| h.id.name != me.name);
        self.eager.note(&me, 0);
        self.push_hot(me, 0, now, true);
    }

    /// Writes every entry of our keyspace (values and tombstones) again, in
    /// its version order, at versions above `above`; a leave, if we
    /// announced one, comes last again.
    fn restamp(&mut self, above: u64) {
        let left = self.leave_version.is_some();
        let m = self.own_mut();
        let mut next = above;
        if let Some(ks) = m.keys.as_mut() {
            let mut order: Vec<(u64, String)> = ks
                .entries
                .iter()
                .map(|(k, e)| (e.version, k.clone()))
                .collect();
            order.sort_unstable();
            for (_, key) in order {
                next += 1;
                if let Some(e) = ks.entries.get_mut(&key) {
                    e.version = next;
                }
            }
        }
        // The state must move above the claim even with no keys (a forged
        // leave at our own version), and a leave is a version of its own.
        if next == above || left {
            next += 1;
        }
        m.max_version = next;
        self.members.refresh(0);
        if left {
            self.leave_version = Some(next);
        }
    }
}
