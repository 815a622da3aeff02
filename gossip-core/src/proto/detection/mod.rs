//! Failure detection by probing: SWIM (Das et al. 2002) with Lifeguard's
//! refinements (Dadgar et al. 2017), on our heartbeat counter as the
//! incarnation.
//!
//! - Every `period` a node probes one random live peer with a `Ping`. If no
//!   `PingAck` comes within the probe timeout it pings again and asks
//!   `indirect` other peers to probe on its behalf (`PingReq`); a helper
//!   whose own ping goes unanswered says so (`PingNack`). A probe answered
//!   by nobody before the period ends makes the target Suspect, if a
//!   helper was heard meanwhile: a prober that heard nobody is probably
//!   the one cut off (Lifeguard's nacks), and accuses nobody.
//! - A suspicion is a [`Rumor`]: flooded at once to a few peers by everyone
//!   who learns it (and to the suspect itself), and piggybacked on later
//!   probes to repair what the flood lost.
//! - The suspect refutes by advancing its heartbeat by [`REFUTE_STRIDE`] and
//!   spreading an Alive rumor; every node that sees its heartbeat that far
//!   above the suspicion's (by the rumor, or by ordinary gossip) revives it.
//!   A stride, not a step: heartbeats relayed through digests lag the
//!   owner's by a few rounds, so a lagging view catching up must not be
//!   mistaken for a refutation of a node that crashed.
//! - Only accusers convict: a node whose own probe failed declares the
//!   suspect Dead when its suspicion times out unrefuted, and floods that.
//!   A node that only heard the suspicion probes the suspect itself once
//!   the longest timeout passed, so a lost Dead rumor or a crashed accuser
//!   leaves nobody suspecting forever.
//! - Lifeguard's suspicion timeout: it starts at `max` and falls towards
//!   `min` (a multiple of log₁₀ n periods) as independent accusers confirm
//!   it; and local health: a node whose own probes fail, or which is
//!   itself suspected, is probably the slow one, so it waits longer for
//!   answers before it suspects anyone.
//!
//! This file holds the part's state and decisions; `node/probe.rs` wires it
//! to the node (membership, statuses, heartbeats, sending).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use crate::proto::event::{Status, StatusReason};
use crate::proto::id::Id;
use crate::proto::message::{Message, Rumor, RumorKind};
use crate::proto::time::Instant;

#[cfg(test)]
mod tests;

/// How far a refuting node moves its heartbeat above the suspicion's.
pub const REFUTE_STRIDE: u64 = 1024;
/// A heartbeat this far above a suspicion's refutes it: far more than the
/// rounds a relayed heartbeat can lag the owner's, far less than the stride.
pub(crate) const REFUTE_MARGIN: u64 = REFUTE_STRIDE / 2;
/// Most rumors piggybacked on one probe message.
const PIGGYBACK: usize = 6;
/// Times each rumor is piggybacked: the flood reaches almost every node,
/// so a fixed few repair the rest.
const RETRANSMITS: u32 = 8;
/// Most rumors waiting to be piggybacked (older ones give way).
const MAX_QUEUED: usize = 64;
/// Periods a rumor rides on probes at most, retransmits left or not: the
/// flood and a few piggybacks spread it within them, and a verdict
/// delivered much later (say, after a partition healed) would be stale.
const RUMOR_LIFETIME_PERIODS: u64 = 4;
/// A Dead rumor whose heartbeat is this far below the one held of a Live
/// member is about an earlier stretch of its life (heartbeats advance one
/// a round): with fresh heartbeats held, the receiver checks the member
/// instead of convicting it.
const STALE_VERDICT: u64 = 32;
/// Rumors remembered as seen, so each is flooded once.
const MAX_SEEN: usize = 4096;
/// Most suspicions and convictions tracked at once.
const MAX_TRACKED: usize = 4096;
/// Most probes relayed for others at once.
const MAX_RELAYS: usize = 64;
/// Shortest suspicion, in periods: an accuser re-probes its suspect every
/// period, so a node cut off for up to two periods (a flapping link) can
/// answer before it is convicted.
const MIN_SUSPICION_PERIODS: f64 = 1.5;
/// Most members waiting to be probed before random ones because their
/// heartbeats stopped arriving ([`Detection::check`]); suspects heard of
/// are queued beside them regardless.
const MAX_CHECKS: usize = 4;
/// Most suspects an accuser pings again per period.
const MAX_REPROBES: usize = 8;
/// Highest local-health score (timeouts stretch up to `1 + MAX_HEALTH`-fold).
pub(crate) const MAX_HEALTH: u32 = 8;
/// Probes in a row that reach nobody, helpers included, after which a node
/// takes itself to be alone (everyone else gone, or cut off for long)
/// rather than briefly cut off, and accuses again, for itself only: longer
/// than a flapping link's outage of a few periods, during which it
/// accuses nobody, yet a node that outlived the rest of its cluster, or a
/// partition of one, still comes to see the others Dead.
const ALONE_PERIODS: u32 = 5;

/// Settings the part reads from [`Config`](crate::proto::Config).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Params {
    /// One probe per period.
    pub period: Duration,
    /// Wait for a direct answer before probing indirectly.
    pub timeout: Duration,
    /// Peers asked to probe indirectly.
    pub indirect: usize,
    /// Peers each new rumor is flooded to.
    pub flood: usize,
    /// Shortest suspicion, in log₁₀(n) periods (at least
    /// [`MIN_SUSPICION_PERIODS`]).
    pub suspicion_mult: f64,
    /// Longest suspicion, as a multiple of the shortest.
    pub suspicion_max_mult: f64,
    /// Independent accusers after which a suspicion lasts the shortest.
    pub confirmations: usize,
    /// Whether the heartbeats held of members are relayed ones, a few
    /// rounds old at most (the digest window); if not, they are as old as
    /// the last direct contact and cannot date a verdict.
    pub fresh_heartbeats: bool,
}

impl Params {
    /// The shortest and longest suspicion in a cluster of `members`.
    pub fn suspicion_bounds(&self, members: usize) -> (Duration, Duration) {
        let rounds = (self.suspicion_mult * (members.max(1) as f64).log10())
            .clamp(MIN_SUSPICION_PERIODS, 1e3);
        let min = self.period.mul_f64(rounds);
        (min, min.mul_f64(self.suspicion_max_mult.clamp(1.0, 1e3)))
    }

    /// How long a suspicion with `accusers` independent accusers lasts
    /// (Lifeguard: `max − (max − min)·ln(C + 1)/ln(K + 1)`, C the
    /// confirmations beyond the first, floored at `min`).
    pub fn suspicion_timeout(&self, members: usize, accusers: usize) -> Duration {
        let (min, max) = self.suspicion_bounds(members);
        let c = accusers.saturating_sub(1) as f64;
        let k = self.confirmations.max(1) as f64;
        let share = ((c + 1.0).ln() / (k + 1.0).ln()).clamp(0.0, 1.0);
        max.saturating_sub((max - min).mul_f64(share)).max(min)
    }
}

/// What the part asks the node to do; drained with [`Detection::take`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Out {
    /// Send this message.
    Send(SocketAddr, Message),
    /// The member is suspected (by `accusers` nodes so far): Suspect if Live.
    Suspect { id: Id, accusers: u32 },
    /// The member is convicted: Dead unless it left.
    Dead { id: Id, accusers: u32 },
    /// The member refuted a suspicion with this heartbeat: adopt it, Live.
    Alive { id: Id, heartbeat: u64 },
    /// What this node held against the member ended without a refutation
    /// (its probe was answered, it was heard from directly, or the verdict
    /// was made alone): Live again if still `from` (Suspect, or Dead from a
    /// verdict made alone), so that no status outlives its reason.
    Lift {
        id: Id,
        from: Status,
        reason: StatusReason,
    },
    /// A peer suspects this node at this heartbeat: move above it by
    /// [`REFUTE_STRIDE`] and call [`Detection::refuted`].
    Refute { above: u64 },
}

/// What the node holds of a member a rumor is about.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Held {
    pub id: Id,
    pub heartbeat: u64,
    pub status: Status,
}

/// The probe of this period.
#[derive(Clone, Debug, PartialEq)]
struct Probe {
    target: Id,
    seq: u64,
    /// Peers asked to probe indirectly.
    helpers: Vec<Id>,
    /// Whether any message came from a helper since: then this node is
    /// not cut off, and an unanswered probe is the target's fault.
    helper_heard: bool,
    /// When to try again and indirectly, if still unanswered.
    retry: Option<Instant>,
    acked: bool,
}

/// A probe this node makes for another's `PingReq`.
#[derive(Clone, Debug, PartialEq)]
struct Relay {
    seq: u64,
    requester: SocketAddr,
    their_seq: u64,
    /// When to tell the requester the target has not answered (once).
    nack_at: Option<Instant>,
    until: Instant,
}

/// A member suspected here.
#[derive(Clone, Debug, PartialEq)]
struct Suspicion {
    id: Id,
    /// The highest heartbeat of it that accusers (and this node) held.
    stamp: u64,
    since: Instant,
    /// Names of independent accusers, up to `confirmations + 1`.
    accusers: Vec<String>,
    /// Whether this node's own probe failed (only accusers convict).
    mine: bool,
    /// Whether this node already probed it for a suspicion it only heard.
    reprobed: bool,
    /// Whether this node accused it while [`alone`](Detection::alone): the
    /// suspicion and the verdict it leads to are this node's view only,
    /// never spread (they say that this node heard nobody, not that the
    /// member is gone), and its timeout is not stretched by local health.
    local: bool,
}

/// The probing part of a node.
#[derive(Debug)]
pub(crate) struct Detection {
    params: Params,
    me: Id,
    seq: u64,
    probe: Option<Probe>,
    next_probe: Instant,
    /// Members to probe before random ones (suspects, to confirm or clear).
    urgent: VecDeque<Id>,
    /// Members gone silent here, pinged beside the period's probe (so
    /// random probing goes on): by seq, and whether the ping went out.
    checks: VecDeque<(u64, Id, bool)>,
    relays: VecDeque<Relay>,
    /// Pings of suspects sent by [`reprobe`](Self::reprobe), by seq.
    reprobes: VecDeque<(u64, Id)>,
    suspects: HashMap<String, Suspicion>,
    /// Convicted members: generation, the heartbeat convicted at, and when
    /// this node last told the member so.
    dead: HashMap<String, (u64, u64, Option<Instant>)>,
    /// Members this node convicted while [`alone`](Detection::alone):
    /// withdrawn once it hears the cluster again.
    local_dead: Vec<Id>,
    seen: HashSet<Rumor>,
    seen_order: VecDeque<Rumor>,
    /// Rumors to piggyback: retransmits left, and the period queued in.
    queued: Vec<(Rumor, u32, u64)>,
    /// Probe periods begun so far.
    periods: u64,
    /// This node's last refutation.
    alive: Option<Rumor>,
    health: u32,
    /// How many probes in a row went unanswered with none of their helpers
    /// heard: this node is probably cut off itself (see [`cut_off`]).
    ///
    /// [`cut_off`]: Detection::cut_off
    cut_off_for: u32,
    /// When any message last reached this node.
    last_heard: Instant,
    /// The membership's size at the last tick (for suspicion timeouts).
    members: usize,
    out: Vec<Out>,
}

impl Detection {
    /// A part for node `me`, whose first probe goes at `first_probe`.
    pub fn new(params: Params, me: Id, first_probe: Instant) -> Self {
        Detection {
            params,
            me,
            seq: 0,
            probe: None,
            next_probe: first_probe,
            urgent: VecDeque::new(),
            checks: VecDeque::new(),
            relays: VecDeque::new(),
            reprobes: VecDeque::new(),
            suspects: HashMap::new(),
            dead: HashMap::new(),
            local_dead: Vec::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            queued: Vec::new(),
            periods: 0,
            alive: None,
            health: 0,
            cut_off_for: 0,
            last_heard: Instant::ZERO,
            members: 1,
            out: Vec::new(),
        }
    }

    /// Drains what the node must do.
    pub fn take(&mut self) -> Vec<Out> {
        std::mem::take(&mut self.out)
    }

    /// Local health score: 0 healthy, up to [`MAX_HEALTH`].
    #[cfg(test)]
    pub fn health(&self) -> u32 {
        self.health
    }

    /// Members suspected here.
    #[cfg(test)]
    pub fn suspected(&self) -> usize {
        self.suspects.len()
    }

    /// When [`tick`](Self::tick) has something to do.
    pub fn deadline(&self, members: usize) -> Instant {
        let mut t = self.next_probe;
        if let Some(r) = self.probe.as_ref().and_then(|p| p.retry) {
            t = t.min(r);
        }
        if let Some(n) = self.relays.iter().filter_map(|r| r.nack_at).min() {
            t = t.min(n);
        }
        for s in self.suspects.values() {
            t = t.min(self.suspicion_deadline(s, members));
        }
        t
    }

    fn stretch(&self, d: Duration) -> Duration {
        d * (1 + self.health)
    }

    /// Whether this node's own probes fail so often that it is probably the
    /// one cut off or starved: it then accuses and convicts nobody (unless
    /// it is [`alone`](Self::alone)).
    fn impaired(&self) -> bool {
        self.health >= MAX_HEALTH / 2 && !self.alone()
    }

    /// Whether this node's latest probes reached nobody, helpers included,
    /// for fewer than [`ALONE_PERIODS`] periods: it is probably cut off
    /// itself (a link down), so it accuses nobody and its own suspicions
    /// wait before they convict.
    fn cut_off(&self) -> bool {
        (1..=ALONE_PERIODS).contains(&self.cut_off_for)
    }

    /// Whether this node's probes have reached nobody for longer than
    /// [`ALONE_PERIODS`]: it is alone, and accuses again.
    fn alone(&self) -> bool {
        self.cut_off_for > ALONE_PERIODS
    }

    fn suspicion_deadline(&self, s: &Suspicion, members: usize) -> Instant {
        if s.local {
            s.since + self.params.suspicion_timeout(members, s.accusers.len())
        } else if s.mine && self.impaired() {
            // Looked at again every period, when health may have recovered.
            Instant::from_micros(u64::MAX)
        } else if s.mine {
            s.since + self.stretch(self.params.suspicion_timeout(members, s.accusers.len()))
        } else if s.reprobed {
            Instant::from_micros(u64::MAX)
        } else {
            s.since + self.params.suspicion_bounds(members).1
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Runs the probe schedule and the suspicion timers. `peers` are a few
    /// random live peers (probe target, helpers, flood targets are drawn
    /// from them in order); `members` is the membership's size.
    pub fn tick(
        &mut self,
        now: Instant,
        peers: &[Id],
        members: usize,
        held: impl Fn(&Id) -> Option<Held>,
    ) {
        self.members = members;
        for r in &mut self.relays {
            if r.nack_at.is_some_and(|t| t <= now) {
                r.nack_at = None;
                self.out.push(Out::Send(
                    r.requester,
                    Message::PingNack { seq: r.their_seq },
                ));
            }
        }
        self.relays.retain(|r| r.until > now);
        if let Some(p) = self.probe.as_mut()
            && !p.acked
            && p.retry.is_some_and(|t| t <= now)
        {
            p.retry = None;
            let (target, seq) = (p.target.clone(), p.seq);
            let helpers: Vec<Id> = peers
                .iter()
                .filter(|h| h.name != target.name)
                .take(self.params.indirect)
                .cloned()
                .collect();
            p.helpers = helpers.clone();
            let rumors = self.piggyback(Some(&target));
            self.out
                .push(Out::Send(target.addr, Message::Ping { seq, rumors }));
            for h in helpers {
                let rumors = self.piggyback(None);
                let target = target.clone();
                self.out.push(Out::Send(
                    h.addr,
                    Message::PingReq {
                        seq,
                        target,
                        rumors,
                    },
                ));
            }
        }
        if now >= self.next_probe {
            self.periods += 1;
            let periods = self.periods;
            self.queued
                .retain(|&(_, _, at)| periods - at <= RUMOR_LIFETIME_PERIODS);
            self.conclude_probe(now, peers, held);
            self.run_checks();
            self.start_probe(now, peers);
            self.reprobe();
            self.next_probe = now + self.params.period;
        }
        self.expire_suspicions(now, peers, members);
    }

    fn conclude_probe(&mut self, now: Instant, peers: &[Id], held: impl Fn(&Id) -> Option<Held>) {
        let Some(p) = self.probe.take() else { return };
        if p.acked {
            self.health = self.health.saturating_sub(1);
            self.in_touch(now);
            return;
        }
        // Lifeguard's rule: if a helper could reach this node (its nack,
        // or any message from it), the target is the one not answering.
        // If none could, this node is probably the one cut off: it takes
        // the blame and accuses nobody, until it has been so long that it
        // is alone. With no helpers to ask (a cluster of two, or every
        // other member suspected), the target takes it, and whether this
        // node is cut off stays as it was. A probe of a member already
        // suspected says nothing new about this node's health.
        if p.helper_heard {
            self.in_touch(now);
        } else if !p.helpers.is_empty() {
            self.cut_off_for = self.cut_off_for.saturating_add(1);
        }
        let impaired = self.impaired();
        if !p.helper_heard && !self.suspects.contains_key(&p.target.name) {
            self.health = (self.health + 1).min(MAX_HEALTH);
        }
        if impaired || self.cut_off() {
            return;
        }
        // A member gone meanwhile (left, forgotten, restarted) or already
        // convicted is not accused.
        let Some(h) = held(&p.target).filter(|h| {
            h.id.generation == p.target.generation
                && matches!(h.status, Status::Live | Status::Suspect)
        }) else {
            return;
        };
        // A suspicion heard of that outlived the longest timeout, and this
        // node's own probe fails too: the suspect had all that time to
        // refute, so convict now (a Dead rumor the flood missed here).
        if let Some(s) = self
            .suspects
            .get(&p.target.name)
            .filter(|s| s.reprobed && !s.mine && s.id.generation == p.target.generation)
            .filter(|_| !self.alone())
        {
            let (id, stamp, accusers) = (s.id.clone(), s.stamp.max(h.heartbeat), s.accusers.len());
            let rumor = Rumor {
                id: id.clone(),
                heartbeat: stamp,
                kind: RumorKind::Dead,
                by: self.me.name.clone(),
            };
            self.convict(&id, stamp, accusers as u32 + 1);
            self.spread(rumor, None, peers);
            return;
        }
        let by = self.me.name.clone();
        self.accuse(now, p.target.clone(), h.heartbeat, by, true, peers);
    }

    /// A probe of this node's got through (answered, or a helper heard):
    /// it is not cut off. What it suspected while alone was its own
    /// isolation speaking: those suspicions end, and the members are
    /// probed first instead. Its own suspicions from before it was cut off
    /// start over, so the re-probes that go with them have a whole timeout
    /// to be answered.
    fn in_touch(&mut self, now: Instant) {
        if self.cut_off_for == 0 {
            return;
        }
        self.cut_off_for = 0;
        self.withdraw_local_verdicts();
        for s in self.suspects.values_mut().filter(|s| s.mine) {
            s.since = now;
        }
    }

    /// Withdraws what this node concluded while alone: its suspicions end
    /// and its convictions are reinstated (a member still Dead here is Live
    /// again, the others never heard of the verdict), and their members
    /// are probed first, so that one really gone is convicted again, this
    /// time with helpers to tell.
    fn withdraw_local_verdicts(&mut self) {
        let mut local: Vec<Id> = self
            .suspects
            .values()
            .filter(|s| s.local)
            .map(|s| s.id.clone())
            .collect();
        local.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        for id in &local {
            self.suspects.remove(&id.name);
            self.out.push(Out::Lift {
                id: id.clone(),
                from: Status::Suspect,
                reason: StatusReason::Withdrawn,
            });
        }
        for id in std::mem::take(&mut self.local_dead) {
            if self
                .dead
                .get(&id.name)
                .is_some_and(|&(generation, _, _)| generation == id.generation)
            {
                self.dead.remove(&id.name);
                self.out.push(Out::Lift {
                    id: id.clone(),
                    from: Status::Dead,
                    reason: StatusReason::Withdrawn,
                });
                local.push(id);
            }
        }
        for id in local {
            if self.urgent.len() < MAX_TRACKED && !self.urgent.iter().any(|u| u.name == id.name) {
                self.urgent.push_back(id);
            }
        }
    }

    /// Pings every member this node accused once more (beside the period's
    /// probe): an answer ends the suspicion, and the ping carries the
    /// suspicion to the suspect, which can then refute it.
    fn reprobe(&mut self) {
        let current = self.probe.as_ref().map(|p| p.target.name.clone());
        let mut mine: Vec<Id> = self
            .suspects
            .values()
            .filter(|s| s.mine && current.as_ref() != Some(&s.id.name))
            .map(|s| s.id.clone())
            .collect();
        mine.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        for id in mine.into_iter().take(MAX_REPROBES) {
            let seq = self.next_seq();
            let rumors = self.piggyback(Some(&id));
            self.out
                .push(Out::Send(id.addr, Message::Ping { seq, rumors }));
            if self.reprobes.len() >= MAX_RELAYS {
                self.reprobes.pop_front();
            }
            self.reprobes.push_back((seq, id));
        }
    }

    fn start_probe(&mut self, now: Instant, peers: &[Id]) {
        let target = loop {
            match self.urgent.pop_front() {
                Some(t) if t.name == self.me.name => continue,
                Some(t) => break Some(t),
                None => break peers.first().cloned(),
            }
        };
        let Some(target) = target else { return };
        let seq = self.next_seq();
        let rumors = self.piggyback(Some(&target));
        self.out
            .push(Out::Send(target.addr, Message::Ping { seq, rumors }));
        let retry = now
            + self
                .stretch(self.params.timeout)
                .min(self.params.period / 2);
        self.probe = Some(Probe {
            target,
            seq,
            helpers: Vec::new(),
            helper_heard: false,
            retry: Some(retry),
            acked: false,
        });
    }

    fn expire_suspicions(&mut self, now: Instant, peers: &[Id], members: usize) {
        let mut due: Vec<String> = self
            .suspects
            .iter()
            .filter(|(_, s)| self.suspicion_deadline(s, members) <= now)
            .map(|(name, _)| name.clone())
            .collect();
        due.sort_unstable();
        // Why this node's own suspicions may have to wait, and how long:
        // its probes reach nobody (the suspect may only be out of its
        // reach: a period, and once a probe gets through the suspicion
        // starts over, see `in_touch`), or nothing reached it for a whole
        // probe timeout (its links may have just gone down, before a failed
        // probe could tell it so, and the refutation may be what it missed:
        // a timeout, convicting once it hears the cluster again).
        let wait = if self.cut_off_for > 0 {
            Some(self.params.period)
        } else if now.saturating_since(self.last_heard) > self.params.timeout {
            Some(self.params.timeout)
        } else {
            None
        };
        for name in due {
            let Some(s) = self.suspects.get_mut(&name) else {
                continue;
            };
            if let Some(wait) = wait.filter(|_| s.mine && !s.local) {
                s.since += wait;
            } else if s.mine {
                let s = self.suspects.remove(&name).expect("just found");
                let rumor = Rumor {
                    id: s.id.clone(),
                    heartbeat: s.stamp,
                    kind: RumorKind::Dead,
                    by: self.me.name.clone(),
                };
                self.convict(&s.id, s.stamp, s.accusers.len() as u32);
                if s.local {
                    if self.local_dead.len() < MAX_TRACKED {
                        self.local_dead.push(s.id);
                    }
                } else {
                    self.spread(rumor, None, peers);
                }
            } else {
                s.reprobed = true;
                let id = s.id.clone();
                if !self.urgent.iter().any(|u| u.name == id.name) {
                    self.urgent.push_back(id);
                }
            }
        }
    }

    /// Whether a Dead rumor is to be checked rather than believed (see
    /// where [`on_rumors`](Self::on_rumors) uses it).
    fn doubts(&self, now: Instant, r: &Rumor, h: &Held) -> bool {
        if h.status == Status::Live {
            return !self.params.fresh_heartbeats
                || h.heartbeat >= r.heartbeat.saturating_add(STALE_VERDICT);
        }
        // Held Suspect: an accuser convicts only after its suspicion lasted
        // the shortest timeout, and its suspicion was flooded when it
        // began. Heard much more recently than that, the two arrived
        // together: replayed from elsewhere (a healed partition), which
        // only fresh heartbeats would otherwise date.
        let (min, _) = self.params.suspicion_bounds(self.members);
        !self.params.fresh_heartbeats
            && h.status == Status::Suspect
            && self
                .suspects
                .get(&r.id.name)
                .is_some_and(|s| !s.mine && now.saturating_since(s.since) < min / 2)
    }

    fn convict(&mut self, id: &Id, stamp: u64, accusers: u32) {
        self.suspects.remove(&id.name);
        // Convicted now for everyone's reasons, not only this node's.
        self.local_dead.retain(|d| d.name != id.name);
        if self.dead.len() < MAX_TRACKED || self.dead.contains_key(&id.name) {
            self.dead
                .insert(id.name.clone(), (id.generation, stamp, None));
        }
        self.out.push(Out::Dead {
            id: id.clone(),
            accusers,
        });
    }

    /// Records an accusation of `id` by `by` at `stamp`; `mine` when this
    /// node's own probe failed (made while [`alone`](Self::alone), it is
    /// kept local).
    fn accuse(&mut self, now: Instant, id: Id, stamp: u64, by: String, mine: bool, peers: &[Id]) {
        let alone = self.alone();
        let limit = self.params.confirmations + 1;
        let s = match self.suspects.get_mut(&id.name) {
            Some(s) if s.id.generation == id.generation => s,
            _ => {
                if self.suspects.len() >= MAX_TRACKED {
                    return;
                }
                self.suspects.insert(
                    id.name.clone(),
                    Suspicion {
                        id: id.clone(),
                        stamp,
                        since: now,
                        accusers: Vec::new(),
                        mine: false,
                        reprobed: false,
                        local: false,
                    },
                );
                self.suspects.get_mut(&id.name).expect("just inserted")
            }
        };
        s.stamp = s.stamp.max(stamp);
        // Only a first accusation of its own is news to flood.
        let mine = mine && !s.mine;
        if mine {
            s.mine = true;
            s.local = alone;
            // An accuser's own timer starts with its own probe.
            s.since = now;
        }
        let new_accuser = !s.accusers.contains(&by);
        if new_accuser && s.accusers.len() < limit {
            s.accusers.push(by.clone());
        }
        let accusers = s.accusers.len() as u32;
        let stamp = s.stamp;
        self.out.push(Out::Suspect {
            id: id.clone(),
            accusers,
        });
        if mine && !alone {
            let rumor = Rumor {
                id: id.clone(),
                heartbeat: stamp,
                kind: RumorKind::Suspect,
                by,
            };
            // The suspect hears it straight away, to refute.
            self.out.push(Out::Send(
                id.addr,
                Message::Rumors {
                    rumors: vec![rumor.clone()],
                },
            ));
            self.spread(rumor, Some(id.addr), peers);
        }
    }

    /// Floods `rumor` (new here) to the first `flood` of `peers` other
    /// than `skip`, and queues it for piggybacking.
    fn spread(&mut self, rumor: Rumor, skip: Option<SocketAddr>, peers: &[Id]) {
        self.remember(&rumor);
        let targets: Vec<SocketAddr> = peers
            .iter()
            .filter(|p| Some(p.addr) != skip && p.name != rumor.id.name)
            .take(self.params.flood)
            .map(|p| p.addr)
            .collect();
        for to in targets {
            self.out.push(Out::Send(
                to,
                Message::Rumors {
                    rumors: vec![rumor.clone()],
                },
            ));
        }
        if self.queued.len() >= MAX_QUEUED {
            self.queued.remove(0);
        }
        self.queued.push((rumor, RETRANSMITS, self.periods));
    }

    fn remember(&mut self, rumor: &Rumor) -> bool {
        if !self.seen.insert(rumor.clone()) {
            return false;
        }
        self.seen_order.push_back(rumor.clone());
        if self.seen_order.len() > MAX_SEEN
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }

    /// Up to [`PIGGYBACK`] rumors for a probe message to `to`: first what
    /// this node holds against `to` (it must hear it to refute, however
    /// often the rumor was sent already), then queued rumors, the least
    /// sent first.
    fn piggyback(&mut self, to: Option<&Id>) -> Vec<Rumor> {
        let mut picked: Vec<Rumor> = to.and_then(|t| self.claim_against(t)).into_iter().collect();
        let mut order: Vec<usize> = (0..self.queued.len())
            .filter(|&i| !picked.contains(&self.queued[i].0))
            .collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.queued[i].1));
        order.truncate(PIGGYBACK - picked.len());
        picked.extend(order.iter().map(|&i| self.queued[i].0.clone()));
        for &i in &order {
            self.queued[i].1 = self.queued[i].1.saturating_sub(1);
        }
        self.queued.retain(|&(_, left, _)| left > 0);
        picked
    }

    /// The suspicion or conviction of `id` this node holds, as a rumor.
    fn claim_against(&self, id: &Id) -> Option<Rumor> {
        if let Some(s) = self
            .suspects
            .get(&id.name)
            .filter(|s| s.id.generation == id.generation)
        {
            let by = if s.mine {
                self.me.name.clone()
            } else {
                s.accusers.first()?.clone()
            };
            return Some(Rumor {
                id: s.id.clone(),
                heartbeat: s.stamp,
                kind: RumorKind::Suspect,
                by,
            });
        }
        let &(generation, stamp, _) = self.dead.get(&id.name)?;
        (generation == id.generation).then(|| Rumor {
            id: id.clone(),
            heartbeat: stamp,
            kind: RumorKind::Dead,
            by: self.me.name.clone(),
        })
    }

    /// A `Ping` arrived: answer it.
    pub fn on_ping(&mut self, from: SocketAddr, sender: &Id, seq: u64) {
        let rumors = self.piggyback(Some(sender));
        self.out
            .push(Out::Send(from, Message::PingAck { seq, rumors }));
    }

    /// A `PingReq` arrived: probe `target` for the requester.
    pub fn on_ping_req(&mut self, now: Instant, from: SocketAddr, seq: u64, target: Id) {
        if target.name == self.me.name {
            // Asked to probe ourselves: answer as the target would.
            self.out.push(Out::Send(
                from,
                Message::PingAck {
                    seq,
                    rumors: Vec::new(),
                },
            ));
            return;
        }
        let ours = self.next_seq();
        if self.relays.len() >= MAX_RELAYS {
            self.relays.pop_front();
        }
        self.relays.push_back(Relay {
            seq: ours,
            requester: from,
            their_seq: seq,
            nack_at: Some(
                now + self
                    .stretch(self.params.timeout)
                    .min(self.params.period / 4),
            ),
            until: now + self.params.period,
        });
        let rumors = self.piggyback(Some(&target));
        self.out
            .push(Out::Send(target.addr, Message::Ping { seq: ours, rumors }));
    }

    /// A `PingAck` arrived: our probe answered, or one we relay.
    pub fn on_ping_ack(&mut self, now: Instant, seq: u64) {
        if let Some(p) = self.probe.as_mut()
            && p.seq == seq
        {
            p.acked = true;
            p.retry = None;
            // Answered: whatever this node suspected of it lapses.
            let target = p.target.clone();
            self.end_suspicion(&target);
            self.in_touch(now);
            return;
        }
        if let Some(i) = self
            .checks
            .iter()
            .position(|&(s, _, sent)| sent && s == seq)
        {
            self.checks.remove(i);
            return;
        }
        if let Some(i) = self.reprobes.iter().position(|(s, _)| *s == seq) {
            let (_, id) = self.reprobes.remove(i).expect("position found it");
            self.end_suspicion(&id);
            return;
        }
        if let Some(i) = self.relays.iter().position(|r| r.seq == seq) {
            let r = self.relays.remove(i).expect("position found it");
            self.out.push(Out::Send(
                r.requester,
                Message::PingAck {
                    seq: r.their_seq,
                    rumors: Vec::new(),
                },
            ));
        }
    }

    /// A `PingNack` arrived from `sender`: if it helps with our probe,
    /// this node is not cut off, and the probe's failure is the target's.
    pub fn on_ping_nack(&mut self, now: Instant, sender: &Id, seq: u64) {
        if let Some(p) = self.probe.as_mut()
            && p.seq == seq
            && p.helpers.iter().any(|h| h.name == sender.name)
        {
            p.helper_heard = true;
            self.in_touch(now);
        }
    }

    fn end_suspicion(&mut self, id: &Id) {
        if self
            .suspects
            .get(&id.name)
            .is_some_and(|s| s.id.generation == id.generation)
        {
            self.suspects.remove(&id.name);
            self.out.push(Out::Lift {
                id: id.clone(),
                from: Status::Suspect,
                reason: StatusReason::Answered,
            });
        }
    }

    /// A message came straight from `sender`: it is up, so a suspicion this
    /// node only heard of lapses (its heartbeats revive it). Not its own
    /// accusation (only an answer to its probe, or a refutation, ends
    /// that) nor a conviction (only a refutation): a node that sends but
    /// cannot receive would otherwise flap between Dead and Live.
    ///
    /// A convicted member that talks is told of its conviction (once a
    /// period), so that it refutes: how a node cut off by a partition, or
    /// by a one-way link, comes back once it can be heard again.
    ///
    /// A node that took itself to be alone is not: what it suspected alone
    /// ends.
    pub fn contact(&mut self, now: Instant, sender: &Id) {
        self.heard(now);
        if self.alone() {
            // Heard again: not alone, though maybe still cut off one way
            // (probes going out unanswered). What it suspected alone ends;
            // whether it is cut off its next probes tell.
            self.cut_off_for = ALONE_PERIODS;
            self.withdraw_local_verdicts();
        }
        if let Some(p) = self.probe.as_mut()
            && p.helpers.iter().any(|h| h.name == sender.name)
        {
            p.helper_heard = true;
        }
        if let Some((g, stamp, told)) = self.dead.get_mut(&sender.name)
            && *g == sender.generation
            && told.is_none_or(|t| now >= t + self.params.period)
        {
            *told = Some(now);
            let rumor = Rumor {
                id: sender.clone(),
                heartbeat: *stamp,
                kind: RumorKind::Dead,
                by: self.me.name.clone(),
            };
            self.out.push(Out::Send(
                sender.addr,
                Message::Rumors {
                    rumors: vec![rumor],
                },
            ));
        }
        if self
            .suspects
            .get(&sender.name)
            .is_some_and(|s| s.id.generation == sender.generation && !s.mine)
        {
            self.suspects.remove(&sender.name);
            self.out.push(Out::Lift {
                id: sender.clone(),
                from: Status::Suspect,
                reason: StatusReason::Answered,
            });
        }
    }

    /// A message reached this node at `now` (see [`contact`](Self::contact)).
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = self.last_heard.max(now);
    }

    /// Whether a newer `heartbeat` of `id` may revive it: not while a
    /// suspicion or conviction of it stands that the heartbeat is not
    /// [`REFUTE_MARGIN`] above. A revival clears them.
    pub fn allows_revival(&mut self, id: &Id, heartbeat: u64) -> bool {
        let stamp = self
            .suspects
            .get(&id.name)
            .filter(|s| s.id.generation == id.generation)
            .map(|s| s.stamp)
            .into_iter()
            .chain(
                self.dead
                    .get(&id.name)
                    .filter(|&&(g, _, _)| g == id.generation)
                    .map(|&(_, s, _)| s),
            )
            .max();
        match stamp {
            Some(s) if heartbeat < s.saturating_add(REFUTE_MARGIN) => false,
            Some(_) => {
                self.suspects.remove(&id.name);
                self.dead.remove(&id.name);
                true
            }
            None => true,
        }
    }

    /// The member's heartbeats stopped arriving here: ping it beside the
    /// next probe, and probe it in full (directly and indirectly) if that
    /// ping goes unanswered, unless [`MAX_CHECKS`] members already wait.
    pub fn check(&mut self, id: Id) {
        if self.checks.len() < MAX_CHECKS && !self.checks.iter().any(|(_, c, _)| c.name == id.name)
        {
            self.checks.push_back((0, id, false));
        }
    }

    /// At a period's start: checks pinged last period and unanswered get a
    /// full probe; new ones are pinged now.
    fn run_checks(&mut self) {
        let (unanswered, waiting): (Vec<_>, Vec<_>) =
            self.checks.drain(..).partition(|&(_, _, sent)| sent);
        for (_, id, _) in unanswered {
            if !self.urgent.iter().any(|u| u.name == id.name) {
                self.urgent.push_back(id);
            }
        }
        for (_, id, _) in waiting {
            let seq = self.next_seq();
            let rumors = self.piggyback(Some(&id));
            self.out
                .push(Out::Send(id.addr, Message::Ping { seq, rumors }));
            self.checks.push_back((seq, id, true));
        }
    }

    /// This node was stalled: probes and suspicion timers that ran through
    /// the stall prove nothing, start them again.
    pub fn stalled(&mut self, now: Instant) {
        self.probe = None;
        self.reprobes.clear();
        self.checks.clear();
        for s in self.suspects.values_mut() {
            s.since = now;
        }
        self.next_probe = self.next_probe.max(now);
    }

    /// A member left or was forgotten: nothing to suspect any more.
    pub fn forget(&mut self, name: &str) {
        self.suspects.remove(name);
        self.dead.remove(name);
    }

    /// This node refuted a suspicion: its heartbeat is now `heartbeat`.
    pub fn refuted(&mut self, heartbeat: u64, peers: &[Id]) {
        self.health = (self.health + 1).min(MAX_HEALTH);
        let rumor = Rumor {
            id: self.me.clone(),
            heartbeat,
            kind: RumorKind::Alive,
            by: self.me.name.clone(),
        };
        self.alive = Some(rumor.clone());
        self.spread(rumor, None, peers);
    }

    /// Rumors arrived from `sender` at `from` (alone, or piggybacked).
    /// `held` tells what this node holds of a member; `peers` are flood
    /// targets.
    pub fn on_rumors(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: &Id,
        rumors: Vec<Rumor>,
        held: impl Fn(&Id) -> Option<Held>,
        peers: &[Id],
    ) {
        for r in rumors {
            if r.id.name == self.me.name {
                if r.id.generation != self.me.generation || r.kind == RumorKind::Alive {
                    continue;
                }
                match &self.alive {
                    Some(a) if r.heartbeat.saturating_add(REFUTE_MARGIN) <= a.heartbeat => {
                        // Refuted already, but the teller has not heard:
                        // tell it (and it floods what is new to it).
                        let rumors = vec![a.clone()];
                        self.out.push(Out::Send(from, Message::Rumors { rumors }));
                    }
                    _ => self.out.push(Out::Refute { above: r.heartbeat }),
                }
                continue;
            }
            if self.seen.contains(&r) {
                continue;
            }
            let Some(h) = held(&r.id) else { continue };
            if h.id.generation != r.id.generation || h.status == Status::Left {
                continue;
            }
            let refuted = h.heartbeat >= r.heartbeat.saturating_add(REFUTE_MARGIN);
            match r.kind {
                RumorKind::Suspect if refuted || h.status == Status::Dead => continue,
                RumorKind::Suspect => {
                    let (id, stamp, by) = (r.id.clone(), r.heartbeat, r.by.clone());
                    // Straight from its accuser: one of the few first told,
                    // who probe the suspect next, so that a crash gathers
                    // its confirmations within a period and a false
                    // suspicion is answered by the suspect's own acks.
                    if by == sender.name && !self.urgent.iter().any(|u| u.name == id.name) {
                        self.urgent.push_back(id.clone());
                    }
                    self.spread(r, Some(from), peers);
                    self.accuse(now, id, stamp.max(h.heartbeat), by, false, peers);
                }
                RumorKind::Dead if refuted => continue,
                // A conviction this node has reason to doubt: of a member
                // it holds Live and whose heartbeat it holds well above the
                // verdict's (an earlier stretch of its life, say the other
                // side of a partition just healed), or of any member held
                // Live when held heartbeats are too old to date a verdict.
                // It suspects the member and probes it at once: an answer
                // ends the suspicion; a failed probe makes it an accuser,
                // convicting only once its own suspicion times out (a
                // flapping link gets the whole timeout to come back).
                RumorKind::Dead if self.doubts(now, &r, &h) => {
                    let (id, stamp, by) =
                        (r.id.clone(), r.heartbeat.max(h.heartbeat), r.by.clone());
                    self.remember(&r);
                    self.accuse(now, id.clone(), stamp, by, false, peers);
                    if !self.urgent.iter().any(|u| u.name == id.name) {
                        self.urgent.push_back(id);
                    }
                }
                RumorKind::Dead => {
                    let accusers = self
                        .suspects
                        .get(&r.id.name)
                        .map_or(1, |s| s.accusers.len().max(1) as u32);
                    let (id, stamp) = (r.id.clone(), r.heartbeat.max(h.heartbeat));
                    self.spread(r, Some(from), peers);
                    if h.status != Status::Dead {
                        self.convict(&id, stamp, accusers);
                    }
                }
                RumorKind::Alive => {
                    let (id, heartbeat) = (r.id.clone(), r.heartbeat);
                    self.spread(r, Some(from), peers);
                    if self.allows_revival(&id, heartbeat) && heartbeat > h.heartbeat {
                        self.out.push(Out::Alive { id, heartbeat });
                    }
                }
            }
        }
    }
}
