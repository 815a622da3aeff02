//! Wires the probing part ([`detection`](crate::proto::detection)) to the
//! node: what it holds of members, status changes, refutation, sending.

use super::*;
use crate::proto::detection::{Held, Out, REFUTE_STRIDE};
use crate::proto::message::Rumor;

impl Node {
    /// A few random live peers for the part: the probe target, helpers and
    /// flood targets are drawn from them.
    fn probe_peers(&mut self) -> Vec<Id> {
        let k = 1 + self.config.indirect_probes.max(self.config.rumor_fanout);
        let live = self.live_peers();
        self.sample(Status::Live, k, live)
    }

    /// Runs the probe schedule and suspicion timers if their time came.
    pub(super) fn probe_tick(&mut self, now: Instant) {
        if !self.config.probe || now < self.detection.deadline(self.members.len()) {
            return;
        }
        let peers = self.probe_peers();
        let members = &self.members;
        self.detection
            .tick(now, &peers, members.len(), |id| held(members, id));
        self.run_detection(now, &peers);
    }

    /// Handles a probe message or flooded rumors from `sender`.
    pub(super) fn on_detection(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: &Id,
        message: Message,
    ) {
        if !self.config.probe {
            return;
        }
        // Rumors first, then the answer: an answer to a ping that carried
        // a suspicion of this node then carries the refutation back.
        let (rumors, answer) = match message {
            Message::Ping { seq, rumors } => (rumors, Answer::Ping(seq)),
            Message::PingReq {
                seq,
                target,
                rumors,
            } => (rumors, Answer::Relay(seq, target)),
            Message::PingAck { seq, rumors } => {
                self.detection.on_ping_ack(now, seq);
                (rumors, Answer::None)
            }
            Message::PingNack { seq } => {
                self.detection.on_ping_nack(now, sender, seq);
                (Vec::new(), Answer::None)
            }
            Message::Rumors { rumors } => (rumors, Answer::None),
            _ => return,
        };
        let rumors: Vec<Rumor> = rumors
            .into_iter()
            .filter(|r| {
                let bad = refute::impossible(r.heartbeat) || refute::impossible(r.id.generation);
                if bad {
                    self.metrics.refused.count_part(PartRefused::Impossible);
                }
                !bad
            })
            .collect();
        let peers = if rumors.is_empty() {
            Vec::new()
        } else {
            self.probe_peers()
        };
        if !rumors.is_empty() {
            let members = &self.members;
            self.detection
                .on_rumors(now, from, sender, rumors, |id| held(members, id), &peers);
            self.run_detection(now, &peers);
        }
        match answer {
            Answer::Ping(seq) => self.detection.on_ping(from, sender, seq),
            Answer::Relay(seq, target) => self.detection.on_ping_req(now, from, seq, target),
            Answer::None => {}
        }
        self.run_detection(now, &peers);
    }

    /// Carries out what the part asked for.
    fn run_detection(&mut self, now: Instant, peers: &[Id]) {
        loop {
            let outs = self.detection.take();
            if outs.is_empty() {
                return;
            }
            for out in outs {
                match out {
                    Out::Send(to, message) => {
                        let len = size::message(&message);
                        self.send(to, message, len);
                    }
                    Out::Suspect { id, accusers } => {
                        self.probe_verdict(now, &id, Status::Suspect, accusers)
                    }
                    Out::Dead { id, accusers } => {
                        self.probe_verdict(now, &id, Status::Dead, accusers)
                    }
                    Out::Alive { id, heartbeat } => {
                        let phi = self.phi;
                        if let Some(i) = self.members.find_id(&id)
                            && self.members.at(i).0.generation == id.generation
                            && self.members.at_mut(i).1.observe(heartbeat, now, &phi)
                        {
                            self.revive(i);
                        }
                    }
                    Out::Lift { id, from, reason } => self.lift(&id, from, reason),
                    Out::Refute { above } => {
                        let m = self.own_mut();
                        let next = m.heartbeat.max(above).saturating_add(REFUTE_STRIDE);
                        if refute::impossible(next) {
                            // No room left: the claim was forged; a new
                            // generation at the next round is the answer.
                            continue;
                        }
                        m.heartbeat = next;
                        // The refutation is also a version of our state:
                        // reconciliation then carries the new heartbeat to
                        // every node the rumor missed (heartbeats alone are
                        // not in the summaries), and eager push sends it now.
                        let floor = m.max_version;
                        m.max_version += 1;
                        self.members.refresh(0);
                        let me = self.me.clone();
                        self.eager.note(&me, floor);
                        self.push_hot(me, floor, now, false);
                        self.metrics.refutations += 1;
                        self.detection.refuted(next, peers);
                    }
                }
            }
        }
    }

    /// The probing part's verdict on `id`: Suspect (only from Live) or
    /// Dead (from Live or Suspect).
    /// The part dropped what it held against a member without a
    /// refutation (see [`Out::Lift`]): Live again if still `from` in this
    /// generation.
    fn lift(&mut self, id: &Id, from: Status, reason: StatusReason) {
        let Some(i) = self.verdict_slot(id, |s| s == from) else {
            return;
        };
        let id = self.members.at(i).0.clone();
        let from = self.members.set_status_at(i, Status::Live);
        tracing::debug!(node = %self.me, member = %id, ?from, ?reason, "member status lifted by probes");
        self.emit(Event::MemberStatus {
            id,
            from,
            to: Status::Live,
            reason,
        });
    }

    /// The slot of the member the probing part judged, if a verdict may
    /// change its status: the same generation, a peer that has not left,
    /// and a status `allowed` to change.
    fn verdict_slot(&self, id: &Id, allowed: impl Fn(Status) -> bool) -> Option<usize> {
        let i = self.members.find_id(id)?;
        let (held, m) = self.members.at(i);
        (i != 0 && held.generation == id.generation && !m.left && allowed(m.status)).then_some(i)
    }

    fn probe_verdict(&mut self, now: Instant, id: &Id, to: Status, accusers: u32) {
        let allowed = |s: Status| match to {
            Status::Suspect => s == Status::Live,
            _ => matches!(s, Status::Live | Status::Suspect),
        };
        let Some(i) = self.verdict_slot(id, allowed) else {
            return;
        };
        let (held, m) = self.members.at(i);
        let id = held.clone();
        let silent_for = now.saturating_since(m.detector.last);
        let from = self.members.set_status_at(i, to);
        match to {
            Status::Suspect => self.metrics.suspicions += 1,
            _ => self.metrics.convictions += 1,
        }
        let reason = StatusReason::Unanswered {
            accusers,
            silent_for,
        };
        tracing::debug!(node = %self.me, member = %id, ?from, ?to, accusers, "member status changed by probes");
        self.emit(Event::MemberStatus {
            id,
            from,
            to,
            reason,
        });
    }
}

/// What a probe message asks of its receiver once its rumors are handled.
enum Answer {
    /// Acknowledge the ping with this sequence number.
    Ping(u64),
    /// Probe this target for the sender's sequence number.
    Relay(u64, Id),
    None,
}

/// What `members` holds of the member named like `id`.
fn held(members: &Members, id: &Id) -> Option<Held> {
    members.entry(&id.name).map(|(held, m)| Held {
        id: held.clone(),
        heartbeat: m.heartbeat,
        status: if m.left { Status::Left } else { m.status },
    })
}
