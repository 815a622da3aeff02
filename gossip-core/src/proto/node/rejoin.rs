//! Coming back: admitting a sender from its own message, knocking on
//! forgotten and unreachable members, and joining while alone.
//!
//! The rule for forgotten incarnations (written down on
//! [`Config::grace_period`](crate::proto::Config::grace_period)): a node
//! is the only witness of its own life. Its own message brings it back,
//! even after it was forgotten; state about it relayed by others never
//! does. Relayed state that shows it with a heartbeat above the one it was
//! forgotten at is only a hint: this node knocks (a one-entry `Syn`), and
//! the answer, if the incarnation runs, is its own message.

use super::*;
use crate::proto::membership::Forgotten;

/// The state of coming back: what was forgotten, and the knocks of this
/// round.
#[derive(Debug, Default)]
pub(super) struct Rejoin {
    pub forgotten: Forgotten,
    /// Knocks sent this round (reset on every tick).
    pub knocks: u32,
    /// While alone: the wait before the next knock on seeds, and when.
    pub backoff: Duration,
    pub next_knock: Instant,
}

/// Knocks per round at most, whatever prompted them.
pub(super) const MAX_KNOCKS_PER_ROUND: u32 = 32;
/// Rounds between two knocks on the same forgotten incarnation.
const KNOCK_EVERY_ROUNDS: u32 = 5;

impl Node {
    /// A message arrived from `sender` itself, which shows that it runs.
    /// Admits it if it is new to us, or the very incarnation we forgot (a
    /// partition longer than the grace period healed); a newer generation
    /// supersedes the one we hold at once. One delivered message from a
    /// joiner is enough for the cluster to learn it.
    pub(super) fn hear_from(&mut self, now: Instant, sender: &Id) {
        if let Some(i) = self.members.find_id(sender) {
            if self.members.at(i).0.generation < sender.generation {
                self.restarted(now, sender.clone(), i);
                self.push_hot(sender.clone(), 0, now, true);
            }
            return;
        }
        if let Some(gone) = self.rejoin.forgotten.get(&sender.name) {
            if sender.generation < gone.id.generation {
                // An incarnation older than one we forgot: stale.
                self.metrics.refused.count_part(PartRefused::Forgotten);
                return;
            }
            self.rejoin.forgotten.remove(&sender.name);
            tracing::debug!(node = %self.me, member = %sender, "a forgotten member talks again; admitting it");
        }
        // Otherwise already known, or not admitted (counted by `admit`).
        if let Some(Ok(_)) = self.admit(now, sender.clone()) {
            self.push_hot(sender.clone(), 0, now, true);
        }
    }

    /// Relayed state about a forgotten incarnation arrived (a digest entry
    /// or a delta with this `heartbeat`): refused, and counted; if the
    /// heartbeat moved on since we forgot it, knock on it (at most once per
    /// `KNOCK_EVERY_ROUNDS`).
    pub(super) fn on_forgotten(&mut self, now: Instant, id: &Id, heartbeat: u64) {
        self.metrics.refused.count_part(PartRefused::Forgotten);
        let every = self.config.gossip_interval * KNOCK_EVERY_ROUNDS;
        let Some(gone) = self.rejoin.forgotten.get_mut(&id.name) else {
            return;
        };
        let due = gone
            .knocked
            .is_none_or(|t| now.saturating_since(t) >= every);
        if id.generation != gone.id.generation || heartbeat <= gone.heartbeat || !due {
            return;
        }
        if self.rejoin.knocks < MAX_KNOCKS_PER_ROUND {
            gone.knocked = Some(now);
            let addr = gone.id.addr;
            self.knock(addr);
        }
    }

    /// Once a round, with `unreachable_probability`: knock on one random
    /// forgotten incarnation, so partitions heal even with no seed on the
    /// other side.
    pub(super) fn knock_forgotten(&mut self, now: Instant) {
        let n = self.rejoin.forgotten.len();
        if n == 0 || !self.rng.random_bool(self.config.unreachable_probability) {
            return;
        }
        let i = self.rng.random_range(0..n);
        let every = self.config.gossip_interval * KNOCK_EVERY_ROUNDS;
        let Some(gone) = self.rejoin.forgotten.nth_mut(i) else {
            return;
        };
        if gone
            .knocked
            .is_some_and(|t| now.saturating_since(t) < every)
        {
            return;
        }
        gone.knocked = Some(now);
        let addr = gone.id.addr;
        self.knock(addr);
    }

    /// A one-entry `Syn` to `to`: enough for it to learn we run (it admits
    /// us from the envelope) and to answer with its own header.
    pub(super) fn knock(&mut self, to: SocketAddr) {
        if self.rejoin.knocks >= MAX_KNOCKS_PER_ROUND {
            return;
        }
        self.rejoin.knocks += 1;
        self.metrics.knocks += 1;
        let own = self.own_entry();
        let bytes = size::digest_entry(&own);
        self.send_syn_of(to, vec![own], bytes, None, Default::default());
    }

    /// Where to knock while this node has no live peer: every seed (with a
    /// capped backoff, on the jittered gossip ticks), and members it knew,
    /// unreachable now (a node whose seeds are gone still finds its
    /// cluster).
    pub(super) fn alone_targets(&mut self, now: Instant, targets: &mut Vec<SocketAddr>) {
        if now < self.rejoin.next_knock {
            return;
        }
        targets.extend(self.seeds.iter().copied());
        let known = self.sample_scan(
            |m| matches!(m.status, Status::Dead | Status::Suspect),
            self.config.fanout,
        );
        targets.extend(known.into_iter().map(|id| id.addr));
        // Tries happen on gossip ticks, which are jittered already; half an
        // interval of slack makes a backoff of one interval mean every tick.
        self.rejoin.next_knock = now + self.rejoin.backoff - self.config.gossip_interval / 2;
        self.rejoin.backoff = self
            .rejoin
            .backoff
            .saturating_mul(2)
            .min(self.config.join_retry_max);
    }
}
