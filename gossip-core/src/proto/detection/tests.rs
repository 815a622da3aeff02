//! Handler-level tests of the probing part: crafted inputs, exact outputs.

use std::sync::Arc;

use super::*;
use crate::proto::id::NodeId;

const MS: Duration = Duration::from_millis(1);

fn id(name: &str, port: u16) -> Id {
    Arc::new(NodeId::new(
        name,
        SocketAddr::from(([127, 0, 0, 1], port)),
        1,
    ))
}

fn params() -> Params {
    Params {
        period: Duration::from_secs(1),
        timeout: 200 * MS,
        indirect: 3,
        flood: 2,
        suspicion_mult: 1.0,
        suspicion_max_mult: 2.0,
        confirmations: 3,
        fresh_heartbeats: false,
    }
}

fn at(ms: u64) -> Instant {
    Instant::ZERO + Duration::from_millis(ms)
}

/// Node "me" with peers p1..p5; p1 is always the first random peer drawn.
struct T {
    d: Detection,
    me: Id,
    peers: Vec<Id>,
    /// The heartbeat held of every peer.
    heartbeat: u64,
    /// The status held of every peer.
    status: Status,
    /// Whether the helpers of an indirect probe answer this node (each
    /// sends its `PingNack` as the `PingReq` goes out), as they do unless
    /// this node is the one cut off.
    helpers_answer: bool,
}

impl T {
    fn new() -> T {
        let me = id("me", 1000);
        let peers: Vec<Id> = (1..=5).map(|i| id(&format!("p{i}"), 1000 + i)).collect();
        T {
            d: Detection::new(params(), me.clone(), at(0)),
            me,
            peers,
            heartbeat: 10,
            status: Status::Live,
            helpers_answer: true,
        }
    }

    fn tick(&mut self, now: Instant) -> Vec<Out> {
        if self.helpers_answer {
            // Not cut off: the cluster's messages keep reaching this node.
            self.d.heard(now);
        }
        let peers = self.peers.clone();
        let held = |id: &Id| held_in(&peers, id, self.heartbeat, self.status);
        self.d.tick(now, &self.peers.clone(), 100, held);
        let outs = self.d.take();
        if self.helpers_answer {
            for o in &outs {
                if let Out::Send(to, Message::PingReq { seq, .. }) = o {
                    let helper = peers.iter().find(|p| p.addr == *to).expect("a peer");
                    self.d.on_ping_nack(now, helper, *seq);
                }
            }
        }
        outs
    }

    fn rumors(&mut self, now: Instant, from: usize, rumors: Vec<Rumor>) -> Vec<Out> {
        let peers = self.peers.clone();
        let held = |id: &Id| held_in(&peers, id, self.heartbeat, self.status);
        let sender = self.peers[from].clone();
        self.d
            .on_rumors(now, sender.addr, &sender, rumors, held, &self.peers.clone());
        self.d.take()
    }

    fn seq_of_ping(outs: &[Out]) -> u64 {
        outs.iter()
            .find_map(|o| match o {
                Out::Send(_, Message::Ping { seq, .. }) => Some(*seq),
                _ => None,
            })
            .expect("a ping was sent")
    }
}

/// Every peer held at `heartbeat` with `status`.
fn held_in(peers: &[Id], id: &Id, heartbeat: u64, status: Status) -> Option<Held> {
    peers.iter().find(|p| p.name == id.name).map(|p| Held {
        id: p.clone(),
        heartbeat,
        status,
    })
}

fn rumor(about: &Id, heartbeat: u64, kind: RumorKind, by: &str) -> Rumor {
    Rumor {
        id: about.clone(),
        heartbeat,
        kind,
        by: by.to_owned(),
    }
}

fn sends(outs: &[Out]) -> Vec<(SocketAddr, MessageKind)> {
    outs.iter()
        .filter_map(|o| match o {
            Out::Send(to, m) => Some((*to, m.kind())),
            _ => None,
        })
        .collect()
}

use crate::proto::message::MessageKind;

#[test]
fn a_ping_is_answered_with_its_seq() {
    let mut t = T::new();
    let p = t.peers[2].clone();
    t.d.on_ping(p.addr, &p, 77);
    assert_eq!(
        t.d.take(),
        vec![Out::Send(
            p.addr,
            Message::PingAck {
                seq: 77,
                rumors: vec![]
            }
        )]
    );
}

#[test]
fn an_answered_probe_suspects_nobody() {
    let mut t = T::new();
    let outs = t.tick(at(0));
    let target = t.peers[0].clone();
    assert_eq!(sends(&outs), vec![(target.addr, MessageKind::Ping)]);
    let seq = T::seq_of_ping(&outs);
    t.d.on_ping_ack(Instant::ZERO, seq);
    // No retry after the timeout, no suspicion at the next period.
    assert!(t.tick(at(200)).is_empty());
    let outs = t.tick(at(1000));
    assert_eq!(
        sends(&outs),
        vec![(target.addr, MessageKind::Ping)],
        "just the next probe"
    );
    assert_eq!(t.d.health(), 0);
    assert_eq!(t.d.suspected(), 0);
}

#[test]
fn an_unanswered_probe_retries_directly_and_through_three_others() {
    let mut t = T::new();
    let seq = T::seq_of_ping(&t.tick(at(0)));
    assert!(t.tick(at(199)).is_empty(), "not before the timeout");
    let outs = t.tick(at(200));
    let target = t.peers[0].clone();
    let mut want = vec![(target.addr, MessageKind::Ping)];
    want.extend(t.peers[1..4].iter().map(|p| (p.addr, MessageKind::PingReq)));
    assert_eq!(sends(&outs), want);
    for o in &outs {
        if let Out::Send(
            _,
            Message::PingReq {
                seq: s, target: tg, ..
            },
        ) = o
        {
            assert_eq!((*s, &tg.name), (seq, &target.name));
        }
    }
    // An answer relayed by a helper counts.
    t.d.on_ping_ack(Instant::ZERO, seq);
    let outs = t.tick(at(1000));
    assert!(!outs.iter().any(|o| matches!(o, Out::Suspect { .. })));
}

#[test]
fn a_failed_probe_suspects_tells_the_suspect_floods_and_probes_it_again() {
    let mut t = T::new();
    t.tick(at(0));
    t.tick(at(200));
    let outs = t.tick(at(1000));
    let target = t.peers[0].clone();
    assert_eq!(
        outs[0],
        Out::Suspect {
            id: target.clone(),
            accusers: 1
        }
    );
    let s = rumor(&target, 10, RumorKind::Suspect, "me");
    let one = |r: &Rumor| Message::Rumors {
        rumors: vec![r.clone()],
    };
    assert_eq!(
        outs[1],
        Out::Send(target.addr, one(&s)),
        "the suspect first"
    );
    assert_eq!(outs[2], Out::Send(t.peers[1].addr, one(&s)));
    assert_eq!(outs[3], Out::Send(t.peers[2].addr, one(&s)));
    // The next probe (here drawn to be the suspect again) carries the
    // suspicion to it.
    match &outs[4] {
        Out::Send(to, Message::Ping { rumors, .. }) => {
            assert_eq!(*to, target.addr);
            assert_eq!(rumors, &vec![s]);
        }
        other => panic!("expected a ping of the suspect, got {other:?}"),
    }
    assert_eq!(outs.len(), 5);
    assert_eq!(
        t.d.health(),
        0,
        "a helper answered: the failure is the target's, not this node's"
    );
}

#[test]
fn every_message_to_a_suspect_carries_the_suspicion_however_often_it_went() {
    let mut t = T::new();
    suspect_first(&mut t);
    let target = t.peers[0].clone();
    let s = rumor(&target, 10, RumorKind::Suspect, "me");
    // Answers to another peer's pings use up the rumor's retransmits.
    let other = t.peers[3].clone();
    for seq in 0..2 * u64::from(RETRANSMITS) {
        t.d.on_ping(other.addr, &other, seq);
    }
    let carried = t
        .d
        .take()
        .iter()
        .filter(
            |o| matches!(o, Out::Send(_, Message::PingAck { rumors, .. }) if rumors.contains(&s)),
        )
        .count();
    assert_eq!(
        carried, RETRANSMITS as usize,
        "others hear it a fixed few times"
    );
    // The suspect still hears it, first, on every message to it.
    for seq in 0..3 {
        t.d.on_ping(target.addr, &target, 100 + seq);
        match &t.d.take()[..] {
            [Out::Send(to, Message::PingAck { rumors, .. })] => {
                assert_eq!(*to, target.addr);
                assert_eq!(rumors.first(), Some(&s));
            }
            other => panic!("expected one answer, got {other:?}"),
        }
    }
}

#[test]
fn suspicion_timeout_falls_with_confirmations_to_the_minimum() {
    let p = params();
    let (min, max) = p.suspicion_bounds(100);
    assert_eq!((min, max), (Duration::from_secs(2), Duration::from_secs(4)));
    let t: Vec<Duration> = (1..=6).map(|c| p.suspicion_timeout(100, c)).collect();
    assert_eq!(t[0], max);
    assert!(t.windows(2).all(|w| w[1] <= w[0]), "{t:?}");
    assert_eq!(t[3], min, "K = 3 confirmations reach the minimum");
    assert_eq!(t[5], min);
    // Small clusters: at least one and a half periods.
    assert_eq!(p.suspicion_bounds(2).0, Duration::from_millis(1500));
}

/// Fails the probe of `peers[0]` at 0 and returns the time it was suspected.
fn suspect_first(t: &mut T) -> Instant {
    t.tick(at(0));
    t.tick(at(200));
    t.tick(at(1000));
    at(1000)
}

#[test]
fn the_accuser_convicts_when_its_timeout_passes_unrefuted() {
    let mut t = T::new();
    let since = suspect_first(&mut t);
    let target = t.peers[0].clone();
    // One accuser: the longest timeout, 4 s from its own failed probe; the
    // re-probes of the suspect that fail meanwhile neither postpone it nor
    // count against this node's health.
    let mut dead_at = None;
    while dead_at.is_none() {
        let now = t.d.deadline(100);
        assert!(now < at(20_000));
        for o in t.tick(now) {
            if let Out::Dead { id, .. } = &o {
                assert_eq!(id.name, target.name);
                dead_at.get_or_insert(now);
            }
        }
    }
    let dead_at = dead_at.expect("convicted");
    // Helpers answered every probe: local health stays 0, nothing stretched.
    assert_eq!(dead_at.saturating_since(since), Duration::from_secs(4));
    assert_eq!(t.d.health(), 0);
}

#[test]
fn confirmations_shorten_the_accusers_wait() {
    let mut t = T::new();
    let since = suspect_first(&mut t);
    let target = t.peers[0].clone();
    let others: Vec<Rumor> = ["p2", "p3", "p4"]
        .iter()
        .map(|by| rumor(&target, 10, RumorKind::Suspect, by))
        .collect();
    t.rumors(since, 1, others);
    // Four accusers: the minimum, 2 s (local health 0).
    let dead_at = loop {
        let now = t.d.deadline(100);
        if t.tick(now).iter().any(|o| matches!(o, Out::Dead { .. })) {
            break now;
        }
        assert!(now < at(30_000));
    };
    assert_eq!(dead_at.saturating_since(since), Duration::from_secs(2));
}

#[test]
fn a_suspicion_of_this_node_is_refuted_once_and_the_refutation_floods() {
    let mut t = T::new();
    let me = t.me.clone();
    let s = rumor(&me, 40, RumorKind::Suspect, "p3");
    assert_eq!(
        t.rumors(at(5), 2, vec![s.clone()]),
        vec![Out::Refute { above: 40 }]
    );
    let peers = t.peers.clone();
    t.d.refuted(40 + REFUTE_STRIDE, &peers);
    let alive = rumor(&me, 40 + REFUTE_STRIDE, RumorKind::Alive, "me");
    assert_eq!(
        sends(&t.d.take()),
        vec![
            (peers[0].addr, MessageKind::Rumors),
            (peers[1].addr, MessageKind::Rumors)
        ]
    );
    // The same suspicion again, or a stale one well below the refutation:
    // no new refutation, the teller is told of the one made.
    let tell = vec![Out::Send(
        peers[3].addr,
        Message::Rumors {
            rumors: vec![alive.clone()],
        },
    )];
    assert_eq!(t.rumors(at(6), 3, vec![s]), tell);
    assert_eq!(
        t.rumors(at(7), 3, vec![rumor(&me, 41, RumorKind::Dead, "p4")]),
        tell
    );
    // One at or above it: refuted again.
    assert_eq!(
        t.rumors(
            at(8),
            2,
            vec![rumor(&me, alive.heartbeat, RumorKind::Suspect, "p4")]
        ),
        vec![Out::Refute {
            above: alive.heartbeat
        }]
    );
}

#[test]
fn a_convicted_member_that_talks_is_told_once_a_period() {
    let mut t = T::new();
    t.status = Status::Suspect;
    let victim = t.peers[4].clone();
    t.rumors(at(0), 1, vec![rumor(&victim, 10, RumorKind::Dead, "p2")]);
    t.d.contact(at(100), &victim);
    let told = vec![Out::Send(
        victim.addr,
        Message::Rumors {
            rumors: vec![rumor(&victim, 10, RumorKind::Dead, "me")],
        },
    )];
    assert_eq!(t.d.take(), told);
    t.d.contact(at(600), &victim);
    assert!(t.d.take().is_empty(), "not again within a period");
    t.d.contact(at(1100), &victim);
    assert_eq!(t.d.take(), told);
}

#[test]
fn a_failed_probe_costs_health_only_if_no_helper_was_heard() {
    let mut t = T::new();
    t.tick(at(0));
    t.tick(at(200));
    let helper = t.peers[1].clone();
    t.d.contact(at(300), &helper);
    let outs = t.tick(at(1000));
    assert!(outs.iter().any(|o| matches!(o, Out::Suspect { .. })));
    assert_eq!(
        t.d.health(),
        0,
        "the helpers could reach us: the target is at fault"
    );
}

#[test]
fn a_heard_suspicion_marks_suspect_and_floods_but_never_convicts_alone() {
    let mut t = T::new();
    let victim = t.peers[4].clone();
    // Relayed by p2; p3 accused.
    let outs = t.rumors(at(0), 1, vec![rumor(&victim, 10, RumorKind::Suspect, "p3")]);
    assert_eq!(
        sends(&outs),
        vec![
            (t.peers[0].addr, MessageKind::Rumors),
            (t.peers[2].addr, MessageKind::Rumors)
        ],
        "flooded, not back to the sender nor to the suspect"
    );
    assert!(outs.contains(&Out::Suspect {
        id: victim.clone(),
        accusers: 1
    }));
    // Its first probe went to p1 and was answered; at the longest timeout
    // (4 s) this node probes the suspect itself instead of convicting.
    let seq = T::seq_of_ping(&t.tick(at(0)));
    t.d.on_ping_ack(Instant::ZERO, seq);
    let mut now = at(0);
    while now < at(4000) {
        now = t.d.deadline(100);
        let outs = t.tick(now);
        assert!(
            !outs.iter().any(|o| matches!(o, Out::Dead { .. })),
            "at {now:?}"
        );
        if let Some(Out::Send(to, Message::Ping { seq, .. })) = outs
            .iter()
            .find(|o| matches!(o, Out::Send(_, Message::Ping { .. })))
        {
            if *to != victim.addr {
                t.d.on_ping_ack(Instant::ZERO, *seq);
            }
        }
    }
    let outs = t.tick(at(5000));
    assert!(
        sends(&outs).contains(&(victim.addr, MessageKind::Ping)),
        "the suspect probed once the suspicion outlived the longest timeout: {outs:?}"
    );
}

#[test]
fn a_suspicion_straight_from_its_accuser_makes_the_suspect_the_next_probe() {
    let mut t = T::new();
    let victim = t.peers[4].clone();
    // p2 accused and told this node itself.
    t.rumors(at(0), 1, vec![rumor(&victim, 10, RumorKind::Suspect, "p2")]);
    let outs = t.tick(at(0));
    let pings: Vec<SocketAddr> = outs
        .iter()
        .filter_map(|o| match o {
            Out::Send(to, Message::Ping { .. }) => Some(*to),
            _ => None,
        })
        .collect();
    assert_eq!(pings, vec![victim.addr], "the suspect, not p1: {outs:?}");
    // Unanswered too: this node becomes a second accuser, which floods.
    t.tick(at(200));
    let outs = t.tick(at(1000));
    assert!(outs.contains(&Out::Suspect {
        id: victim.clone(),
        accusers: 2
    }));
    let mine = rumor(&victim, 10, RumorKind::Suspect, "me");
    assert!(outs.contains(&Out::Send(
        victim.addr,
        Message::Rumors { rumors: vec![mine] }
    )));
}

#[test]
fn a_heard_suspicion_that_outlives_the_longest_timeout_and_fails_our_probe_convicts() {
    let mut t = T::new();
    let victim = t.peers[4].clone();
    // Relayed by p2; p3 accused. The Dead rumor that follows never arrives.
    t.rumors(at(0), 1, vec![rumor(&victim, 10, RumorKind::Suspect, "p3")]);
    let mut now = at(0);
    let mut probed_at = None;
    while probed_at.is_none() {
        now = t.d.deadline(100);
        assert!(now <= at(10_000), "the suspect is probed in time");
        let outs = t.tick(now);
        match outs.iter().find_map(|o| match o {
            Out::Send(to, Message::Ping { seq, .. }) => Some((*to, *seq)),
            _ => None,
        }) {
            Some((to, _)) if to == victim.addr => probed_at = Some(now),
            Some((_, seq)) => t.d.on_ping_ack(Instant::ZERO, seq),
            None => {}
        }
    }
    assert!(
        probed_at >= Some(at(4000)),
        "only after the longest timeout"
    );
    // Unanswered, directly and through helpers: convicted at the period's end.
    let outs = t.tick(now + Duration::from_millis(200));
    assert!(!outs.iter().any(|o| matches!(o, Out::Dead { .. })));
    let outs = t.tick(now + Duration::from_secs(1));
    assert!(
        outs.contains(&Out::Dead {
            id: victim.clone(),
            accusers: 2
        }),
        "{outs:?}"
    );
    let dead = rumor(&victim, 10, RumorKind::Dead, "me");
    assert!(outs.contains(&Out::Send(
        t.peers[0].addr,
        Message::Rumors { rumors: vec![dead] }
    )));
}

#[test]
fn a_refuting_heartbeat_revives_a_lagging_one_does_not() {
    let mut t = T::new();
    let victim = t.peers[4].clone();
    t.rumors(at(0), 1, vec![rumor(&victim, 10, RumorKind::Dead, "p2")]);
    assert!(
        !t.d.allows_revival(&victim, 11),
        "a lagging heartbeat catching up"
    );
    assert!(!t.d.allows_revival(&victim, 10 + REFUTE_MARGIN - 1));
    let alive = rumor(&victim, 10 + REFUTE_STRIDE, RumorKind::Alive, "p5");
    let outs = t.rumors(at(1), 1, vec![alive]);
    assert!(outs.contains(&Out::Alive {
        id: victim.clone(),
        heartbeat: 10 + REFUTE_STRIDE
    }));
    assert!(
        t.d.allows_revival(&victim, 12),
        "nothing stands against it now"
    );
}

#[test]
fn a_direct_message_lifts_a_heard_suspicion_but_not_a_conviction() {
    let mut t = T::new();
    let victim = t.peers[4].clone();
    t.rumors(at(0), 1, vec![rumor(&victim, 10, RumorKind::Suspect, "p2")]);
    assert!(!t.d.allows_revival(&victim, 11));
    t.d.take();
    t.d.contact(at(1), &victim);
    assert!(t.d.allows_revival(&victim, 11));
    // The status goes with the suspicion (heartbeats may not come soon).
    assert_eq!(
        t.d.take(),
        vec![Out::Lift {
            id: victim.clone(),
            from: Status::Suspect,
            reason: StatusReason::Answered,
        }]
    );
    // Held Suspect again (a Dead rumor about a member held Live is only
    // checked, see below), the conviction is taken.
    t.status = Status::Suspect;
    t.rumors(at(1), 1, vec![rumor(&victim, 12, RumorKind::Dead, "p2")]);
    t.d.contact(at(1), &victim);
    assert!(
        !t.d.allows_revival(&victim, 13),
        "only a refutation revives the convicted"
    );
}

#[test]
fn an_answer_to_the_accusers_re_probe_ends_its_suspicion() {
    let mut t = T::new();
    let since = suspect_first(&mut t);
    let target = t.peers[0].clone();
    assert!(!t.d.allows_revival(&target, 11));
    t.d.contact(since, &target);
    assert!(
        !t.d.allows_revival(&target, 11),
        "mere contact does not end an accusation"
    );
    // The re-probe went out at `since`; its answer does.
    let seq =
        t.d.probe
            .as_ref()
            .map(|p| p.seq)
            .expect("re-probe in flight");
    t.d.take();
    t.d.on_ping_ack(Instant::ZERO, seq);
    assert!(t.d.allows_revival(&target, 11));
    assert_eq!(t.d.suspected(), 0);
    assert!(
        t.d.take().contains(&Out::Lift {
            id: target.clone(),
            from: Status::Suspect,
            reason: StatusReason::Answered,
        }),
        "the status goes with the suspicion"
    );
    let _ = since;
}

#[test]
fn a_node_whose_probes_all_fail_accuses_nobody_until_it_is_alone() {
    let mut t = T::new();
    // Probes fail and no helper answers either (nobody can reach this
    // node: it is the one cut off); the peers rotate, so each probe goes
    // to another one.
    t.helpers_answer = false;
    let mut first_accusation = None;
    let mut dead = 0;
    let mut sent = Vec::new();
    for round in 0..40u64 {
        t.peers.rotate_left(1);
        let outs = t.tick(at(round * 1000));
        sent.extend(sends(&outs));
        if outs.iter().any(|o| matches!(o, Out::Suspect { .. })) {
            first_accusation.get_or_insert(round);
        }
        dead += outs
            .iter()
            .filter(|o| matches!(o, Out::Dead { .. }))
            .count();
        sent.extend(sends(&t.tick(at(round * 1000 + 200))));
        if round == u64::from(ALONE_PERIODS) {
            // Five probes concluded, each costing local health; none
            // accused its target.
            assert_eq!(t.d.health(), ALONE_PERIODS);
            assert_eq!(
                first_accusation, None,
                "a node that heard no helper accuses nobody"
            );
        }
    }
    // Once ALONE_PERIODS probes in a row reached nobody, it takes itself to
    // be alone and accuses again, and its suspicions convict in the end,
    // for itself: nothing is sent but probes.
    assert_eq!(first_accusation, Some(u64::from(ALONE_PERIODS) + 1));
    assert!(dead > 0, "an alone node comes to see the others Dead");
    assert!(
        sent.iter()
            .all(|&(_, k)| matches!(k, MessageKind::Ping | MessageKind::PingReq)),
        "{sent:?}"
    );
}

#[test]
fn rumors_about_strangers_or_other_generations_are_dropped_unforwarded() {
    let mut t = T::new();
    let stranger = id("stranger", 2000);
    assert!(
        t.rumors(at(0), 1, vec![rumor(&stranger, 5, RumorKind::Dead, "p2")])
            .is_empty()
    );
    let older = Arc::new(NodeId::new("p5", t.peers[4].addr, 0));
    assert!(
        t.rumors(at(0), 1, vec![rumor(&older, 5, RumorKind::Dead, "p2")])
            .is_empty()
    );
}

#[test]
fn a_dead_rumor_about_a_suspect_convicts_once_and_floods_once() {
    let mut t = T::new();
    t.status = Status::Suspect;
    let victim = t.peers[4].clone();
    let r = rumor(&victim, 10, RumorKind::Dead, "p2");
    let outs = t.rumors(at(0), 1, vec![r.clone()]);
    assert!(outs.contains(&Out::Dead {
        id: victim.clone(),
        accusers: 1
    }));
    assert_eq!(sends(&outs).len(), 2);
    assert!(t.rumors(at(1), 2, vec![r]).is_empty());
}

/// The pings among `outs`, by target.
/// The member `outs` convict, if any.
fn convicted(outs: &[Out]) -> Option<Id> {
    outs.iter().find_map(|o| match o {
        Out::Dead { id, .. } => Some(id.clone()),
        _ => None,
    })
}

fn pings(outs: &[Out]) -> Vec<(SocketAddr, u64)> {
    outs.iter()
        .filter_map(|o| match o {
            Out::Send(to, Message::Ping { seq, .. }) => Some((*to, *seq)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_dead_rumor_about_a_member_held_live_is_checked_not_believed() {
    // However fresh or stale the heartbeats held: a node that never heard
    // the suspicion (a verdict from across a healed partition) checks.
    for held in [10, 10 + 100] {
        let mut t = T::new();
        t.heartbeat = held;
        let victim = t.peers[4].clone();
        let outs = t.rumors(at(0), 1, vec![rumor(&victim, 10, RumorKind::Dead, "p2")]);
        assert_eq!(
            outs,
            vec![Out::Suspect {
                id: victim.clone(),
                accusers: 1
            }],
            "suspected, neither convicted nor flooded"
        );
        // The member is probed next, before any random peer.
        let outs = t.tick(at(0));
        let seq = match pings(&outs)[..] {
            [(to, seq)] if to == victim.addr => seq,
            ref other => panic!("one ping, to the member: {other:?}"),
        };
        if held == 10 {
            // No answer at all: the probe's end makes this node an
            // accuser, and its own suspicion convicts when it times out.
            t.tick(at(200));
            let outs = t.tick(at(1000));
            assert!(
                !outs.iter().any(|o| matches!(o, Out::Dead { .. })),
                "{outs:?}"
            );
            assert!(
                outs.contains(&Out::Suspect {
                    id: victim.clone(),
                    accusers: 2
                }),
                "{outs:?}"
            );
            let outs: Vec<Out> = (2..=20).flat_map(|s| t.tick(at(s * 500))).collect();
            assert!(
                outs.iter().any(|o| matches!(o, Out::Dead { .. })),
                "{outs:?}"
            );
        } else {
            // It answers: the suspicion ends, nobody convicts.
            t.d.on_ping_ack(Instant::ZERO, seq);
            t.d.take();
            t.tick(at(200));
            let outs = t.tick(at(1000));
            assert!(
                !outs.iter().any(|o| matches!(o, Out::Dead { .. })),
                "{outs:?}"
            );
            assert_eq!(t.d.suspected(), 0);
        }
    }
}

#[test]
fn a_rumor_stops_riding_on_probes_after_its_lifetime() {
    let mut t = T::new();
    let victim = t.peers[4].clone();
    let r = rumor(&victim, 10, RumorKind::Suspect, "p3");
    t.rumors(at(0), 1, vec![r.clone()]);
    let other = t.peers[3].clone();
    let carried = |t: &mut T, seq: u64| {
        t.d.on_ping(other.addr, &other, seq);
        t.d.take().iter().any(
            |o| matches!(o, Out::Send(_, Message::PingAck { rumors, .. }) if rumors.contains(&r)),
        )
    };
    // Periods go by with the probes answered, the rumor not yet sent.
    for p in 0..RUMOR_LIFETIME_PERIODS {
        let seq = T::seq_of_ping(&t.tick(at(p * 1000)));
        t.d.on_ping_ack(Instant::ZERO, seq);
    }
    assert!(carried(&mut t, 900), "still within its lifetime");
    let seq = T::seq_of_ping(&t.tick(at(RUMOR_LIFETIME_PERIODS * 1000)));
    t.d.on_ping_ack(Instant::ZERO, seq);
    assert!(!carried(&mut t, 901), "spent after its lifetime");
}

#[test]
fn members_gone_silent_are_pinged_beside_the_probe_and_probed_if_silent_still() {
    let mut t = T::new();
    let extra: Vec<Id> = (6..=12).map(|i| id(&format!("p{i}"), 1000 + i)).collect();
    for m in &extra {
        t.d.check(m.clone());
        t.d.check(m.clone());
    }
    let pings = |outs: &[Out]| -> Vec<(SocketAddr, u64)> {
        outs.iter()
            .filter_map(|o| match o {
                Out::Send(to, Message::Ping { seq, .. }) => Some((*to, *seq)),
                _ => None,
            })
            .collect()
    };
    // The first four checked, once each, beside the random probe (p1).
    let first = pings(&t.tick(at(0)));
    let to: Vec<SocketAddr> = first.iter().map(|p| p.0).collect();
    let mut want: Vec<SocketAddr> = extra[..MAX_CHECKS].iter().map(|m| m.addr).collect();
    want.push(t.peers[0].addr);
    assert_eq!(to, want);
    // p6 and the random probe answer; p7..p9 do not.
    t.d.on_ping_ack(Instant::ZERO, first[0].1);
    t.d.on_ping_ack(Instant::ZERO, first[MAX_CHECKS].1);
    // Next period: p7 gets the full probe (the others wait their turn).
    let second = pings(&t.tick(at(1000)));
    assert_eq!(
        second.first().map(|p| p.0),
        Some(extra[1].addr),
        "{second:?}"
    );
    assert!(
        !second.iter().any(|p| p.0 == extra[0].addr),
        "an answered check is done"
    );
}

#[test]
fn a_relayed_probe_pings_the_target_and_returns_its_answer() {
    let mut t = T::new();
    let (requester, target) = (t.peers[1].clone(), t.peers[2].clone());
    t.d.on_ping_req(at(0), requester.addr, 9, target.clone());
    let outs = t.d.take();
    assert_eq!(sends(&outs), vec![(target.addr, MessageKind::Ping)]);
    let ours = T::seq_of_ping(&outs);
    t.d.on_ping_ack(Instant::ZERO, ours);
    assert_eq!(
        t.d.take(),
        vec![Out::Send(
            requester.addr,
            Message::PingAck {
                seq: 9,
                rumors: vec![]
            }
        )]
    );
    // A second answer has nobody to go to.
    t.d.on_ping_ack(Instant::ZERO, ours);
    assert!(t.d.take().is_empty());
}

#[test]
fn a_stall_voids_the_probe_in_flight() {
    let mut t = T::new();
    t.tick(at(0));
    t.tick(at(200));
    // Stalled from 300 ms to 6 s: the probe's answer may have come and
    // gone unread.
    t.d.stalled(at(6000));
    let outs = t.tick(at(6000));
    assert!(
        !outs.iter().any(|o| matches!(o, Out::Suspect { .. })),
        "{outs:?}"
    );
    assert_eq!(t.d.suspected(), 0);
}

#[test]
fn with_fresh_heartbeats_held_only_a_stale_dead_rumor_is_checked() {
    let fresh = |t: &mut T| {
        t.d = Detection::new(
            Params {
                fresh_heartbeats: true,
                ..params()
            },
            t.me.clone(),
            at(0),
        );
    };
    let mut t = T::new();
    fresh(&mut t);
    t.heartbeat = 10 + STALE_VERDICT;
    let victim = t.peers[4].clone();
    let outs = t.rumors(at(0), 1, vec![rumor(&victim, 10, RumorKind::Dead, "p2")]);
    assert!(
        !outs.iter().any(|o| matches!(o, Out::Dead { .. })),
        "checked: {outs:?}"
    );
    assert_eq!(pings(&t.tick(at(0))), vec![(victim.addr, 1)]);
    // One heartbeat less: the verdict is recent, and believed.
    let mut t = T::new();
    fresh(&mut t);
    t.heartbeat = 10 + STALE_VERDICT - 1;
    let outs = t.rumors(at(0), 1, vec![rumor(&victim, 10, RumorKind::Dead, "p2")]);
    assert!(outs.contains(&Out::Dead {
        id: victim,
        accusers: 1
    }));
}

#[test]
fn without_fresh_heartbeats_a_conviction_heard_with_its_suspicion_is_checked() {
    let mut t = T::new();
    let victim = t.peers[4].clone();
    t.rumors(at(0), 1, vec![rumor(&victim, 10, RumorKind::Suspect, "p2")]);
    t.status = Status::Suspect;
    // The verdict arrives with the suspicion (a healed partition replaying
    // both): probed, not believed.
    let outs = t.rumors(at(5), 2, vec![rumor(&victim, 10, RumorKind::Dead, "p2")]);
    assert!(
        !outs.iter().any(|o| matches!(o, Out::Dead { .. })),
        "{outs:?}"
    );
    assert!(
        pings(&t.tick(at(5)))
            .iter()
            .any(|&(to, _)| to == victim.addr)
    );
    // A verdict the shortest timeout after the suspicion is believed.
    let mut t = T::new();
    t.rumors(at(0), 1, vec![rumor(&victim, 10, RumorKind::Suspect, "p2")]);
    t.status = Status::Suspect;
    let outs = t.rumors(at(1500), 2, vec![rumor(&victim, 10, RumorKind::Dead, "p2")]);
    assert!(
        outs.iter().any(|o| matches!(o, Out::Dead { .. })),
        "{outs:?}"
    );
}

#[test]
fn a_helper_nacks_a_relayed_probe_its_target_does_not_answer_in_time() {
    let mut t = T::new();
    t.tick(at(0));
    let (requester, target) = (t.peers[4].clone(), t.peers[3].clone());
    t.d.on_ping_req(at(0), requester.addr, 9, target.clone());
    let ours = match pings(&t.d.take())[..] {
        [(to, seq)] if to == target.addr => seq,
        ref other => panic!("one ping, to the target: {other:?}"),
    };
    assert_eq!(t.d.deadline(100), at(200), "the nack is timed");
    assert_eq!(
        t.tick(at(200))
            .into_iter()
            .filter(|o| matches!(o, Out::Send(to, _) if *to == requester.addr))
            .collect::<Vec<_>>(),
        vec![Out::Send(requester.addr, Message::PingNack { seq: 9 })],
    );
    // A late answer is still relayed, and the nack is not sent twice.
    t.d.on_ping_ack(Instant::ZERO, ours);
    assert_eq!(
        t.d.take(),
        vec![Out::Send(
            requester.addr,
            Message::PingAck {
                seq: 9,
                rumors: vec![]
            }
        )]
    );
    assert!(!sends(&t.tick(at(400))).contains(&(requester.addr, MessageKind::PingNack)));

    // Answered in time: the answer goes back, no nack ever.
    t.d.on_ping_req(at(500), requester.addr, 10, target.clone());
    let ours = pings(&t.d.take())[0].1;
    t.d.on_ping_ack(Instant::ZERO, ours);
    t.d.take();
    assert!(
        !sends(&t.tick(at(1000)))
            .iter()
            .any(|&(_, k)| k == MessageKind::PingNack)
    );
}

#[test]
fn only_a_nack_from_a_helper_of_the_current_probe_clears_this_node() {
    let mut t = T::new();
    t.helpers_answer = false;
    let seq = T::seq_of_ping(&t.tick(at(0)));
    t.tick(at(200));
    // p5 was not asked (helpers are p2..p4); a nack of another seq neither.
    t.d.on_ping_nack(at(500), &t.peers[4].clone(), seq);
    t.d.on_ping_nack(at(500), &t.peers[1].clone(), seq + 1);
    let outs = t.tick(at(1000));
    assert!(
        !outs.iter().any(|o| matches!(o, Out::Suspect { .. })),
        "{outs:?}"
    );
    assert_eq!(t.d.health(), 1);
    // p2's nack of this probe does.
    let seq = T::seq_of_ping(&outs);
    // Local health 1 doubles the wait before the indirect probe.
    t.tick(at(1400));
    t.d.on_ping_nack(at(1500), &t.peers[1].clone(), seq);
    let outs = t.tick(at(2000));
    assert!(outs.contains(&Out::Suspect {
        id: t.peers[0].clone(),
        accusers: 1
    }));
}

#[test]
fn an_accuser_cut_off_when_its_suspicion_expires_convicts_only_once_it_hears_a_helper() {
    let mut t = T::new();
    let since = suspect_first(&mut t);
    // From now on nobody reaches this node: its probes and their helpers
    // go unanswered. The 4 s suspicion expires meanwhile.
    t.helpers_answer = false;
    let mut now = since;
    // (Not so long that it takes itself to be alone.)
    while now < since + Duration::from_secs(u64::from(ALONE_PERIODS) - 1) {
        now = t.d.deadline(100);
        let outs = t.tick(now);
        assert!(
            !outs.iter().any(|o| matches!(o, Out::Dead { .. })),
            "convicted while cut off, at {now:?}"
        );
    }
    // Reachable again: the next probe's helpers answer, and the suspicion,
    // still unrefuted, starts over: it convicts a whole timeout (4 s, one
    // accuser) after that, its re-probes having had that long.
    t.helpers_answer = true;
    let back = now;
    let dead_at = loop {
        let now = t.d.deadline(100);
        assert!(now < back + Duration::from_secs(6), "convicted in time");
        if t.tick(now).iter().any(|o| matches!(o, Out::Dead { .. })) {
            break now;
        }
    };
    assert!(
        dead_at >= back + Duration::from_secs(4),
        "{dead_at:?}, back at {back:?}"
    );
}

#[test]
fn what_an_alone_node_suspected_ends_once_a_probe_gets_through() {
    let mut t = T::new();
    t.helpers_answer = false;
    let mut accused = None;
    let mut round = 0;
    while accused.is_none() {
        assert!(round < 20, "an alone node accuses in the end");
        t.peers.rotate_left(1);
        accused = t.tick(at(round * 1000)).into_iter().find_map(|o| match o {
            Out::Suspect { id, .. } => Some(id),
            _ => None,
        });
        t.tick(at(round * 1000 + 200));
        round += 1;
    }
    let accused = accused.expect("just found");
    assert_eq!(t.d.suspected(), 1);
    // The probe in flight is answered: this node was never alone, its
    // suspicion ends, and the member it accused is probed next.
    let seq =
        t.d.probe
            .as_ref()
            .map(|p| p.seq)
            .expect("a probe in flight");
    t.d.on_ping_ack(at(round * 1000 - 500), seq);
    assert_eq!(t.d.suspected(), 0);
    let outs = t.tick(at(round * 1000));
    assert!(
        outs.contains(&Out::Lift {
            id: accused.clone(),
            from: Status::Suspect,
            reason: StatusReason::Withdrawn,
        }),
        "{outs:?}"
    );
    assert!(
        pings(&outs).iter().any(|&(to, _)| to == accused.addr),
        "{outs:?}"
    );
}

#[test]
fn what_an_alone_node_suspected_ends_once_anyone_is_heard() {
    let mut t = T::new();
    t.helpers_answer = false;
    let mut round = 0;
    while t.d.suspected() == 0 {
        assert!(round < 20, "an alone node accuses in the end");
        t.peers.rotate_left(1);
        t.tick(at(round * 1000));
        t.tick(at(round * 1000 + 200));
        round += 1;
    }
    // A message from any peer (here one it does not suspect): not alone.
    let other = t.peers[3].clone();
    t.d.contact(at(round * 1000 - 500), &other);
    assert_eq!(t.d.suspected(), 0);
    // Its probes still reach nobody (it was cut off one way): the next one
    // that fails makes it alone once more, and it accuses again, for
    // itself (the suspect alone hears of it, on the re-probe).
    let outs = t.tick(at(round * 1000));
    assert!(
        outs.iter().any(|o| matches!(o, Out::Suspect { .. })),
        "{outs:?}"
    );
    let told: Vec<SocketAddr> = outs
        .iter()
        .filter_map(|o| match o {
            Out::Send(to, Message::Rumors { .. }) => Some(*to),
            Out::Send(to, Message::Ping { rumors, .. }) if !rumors.is_empty() => Some(*to),
            _ => None,
        })
        .collect();
    assert!(told.len() <= 1, "{outs:?}");
}

#[test]
fn a_conviction_made_alone_is_withdrawn_once_anyone_is_heard() {
    let mut t = T::new();
    t.helpers_answer = false;
    let mut convicted = None;
    let mut ms = 0;
    // Alone for long: its own suspicions run out and convict, for itself
    // (no Dead rumor leaves it).
    while convicted.is_none() {
        assert!(ms < 60_000, "an alone node convicts in the end");
        if ms % 1000 == 0 {
            t.peers.rotate_left(1);
        }
        let outs = t.tick(at(ms));
        assert!(
            !outs
                .iter()
                .any(|o| matches!(o, Out::Send(_, Message::Rumors { rumors })
                if rumors.iter().any(|r| r.kind == RumorKind::Dead))),
            "{outs:?}"
        );
        convicted = self::convicted(&outs);
        ms += 100;
    }
    let convicted = convicted.expect("just found");
    // Heard again (here from a member it did not convict): the verdict is
    // withdrawn, and the member is probed first.
    let other = t
        .peers
        .iter()
        .find(|p| p.name != convicted.name)
        .expect("more than one peer")
        .clone();
    t.d.contact(at(ms), &other);
    let outs = t.d.take();
    assert_eq!(
        outs.iter()
            .filter(|o| matches!(o, Out::Lift { id, from: Status::Dead, .. } if id.name == convicted.name))
            .count(),
        1,
        "{outs:?}"
    );
    // Withdrawn once: heard again, nothing more to withdraw.
    t.d.contact(at(ms + 1), &other);
    assert!(
        !t.d.take().iter().any(|o| matches!(
            o,
            Out::Lift {
                from: Status::Dead,
                ..
            }
        )),
        "withdrawn twice"
    );
    let mut probed = false;
    for k in 1..=20 {
        let outs = t.tick(at(ms + k * 100));
        probed |= pings(&outs).iter().any(|&(to, _)| to == convicted.addr);
    }
    assert!(probed, "the member is probed anew");
}

#[test]
fn a_conviction_not_made_alone_is_not_withdrawn() {
    let mut t = T::new();
    // Helpers answer (nack): the target is the one not answering, and the
    // verdict is spread, not this node's alone.
    let mut convicted = None;
    let mut ms = 0;
    while convicted.is_none() {
        assert!(ms < 60_000, "an unanswered member is convicted");
        convicted = self::convicted(&t.tick(at(ms)));
        ms += 100;
    }
    let other = t
        .peers
        .iter()
        .find(|p| p.name != convicted.as_ref().expect("just found").name)
        .expect("more than one peer")
        .clone();
    t.d.contact(at(ms), &other);
    assert!(
        !t.d.take().iter().any(|o| matches!(
            o,
            Out::Lift {
                from: Status::Dead,
                ..
            }
        )),
        "a verdict with helpers heard stands"
    );
}

#[test]
fn an_accuser_that_heard_nothing_for_a_probe_timeout_convicts_only_once_it_hears_again() {
    let mut t = T::new();
    let since = suspect_first(&mut t);
    let target = t.peers[0].clone();
    let dead = |outs: &[Out]| convicted(outs).is_some_and(|id| id.name == target.name);
    // Periods go by as usual, the cluster heard at every tick.
    for ms in [1200, 2000, 2200, 3000, 3200, 4000, 4200] {
        assert!(!dead(&t.tick(at(ms))));
    }
    // Then nothing more reaches this node (its links just went down, say),
    // before any probe could fail for it: its suspicion comes due.
    t.helpers_answer = false;
    let due = since + Duration::from_secs(4);
    let outs = t.tick(due);
    assert!(!dead(&outs), "convicted while hearing nothing: {outs:?}");
    assert_eq!(t.d.suspected(), 1, "the suspicion waits, it does not lapse");
    // Still nothing heard a probe timeout later: still waiting.
    assert!(!dead(&t.tick(due + 200 * MS)));
    // A message arrives: the verdict follows at the next look.
    t.d.heard(due + 300 * MS);
    let outs = t.tick(due + 400 * MS);
    assert!(dead(&outs), "{outs:?}");
}
