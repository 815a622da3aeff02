//! The simulator's one-way links and slow nodes ([`Sim::set_links`],
//! [`Sim::set_slow`]), checked on virtual time, and the scenarios built on
//! them (slow, oneway, flap) at small sizes over three seeds each.

use std::time::Duration;

use gossip_core::proto::{Event, Instant};
use gossip_mem::sim::scenario::{self, Before, Kind, ScenarioConfig, ScenarioReport};
use gossip_mem::sim::{Faults, Sim, SimConfig};

/// Links of exactly 2 ms, so arrival times are known.
fn fixed_latency(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        faults: Faults {
            latency: (Duration::from_millis(2), Duration::from_millis(2)),
            ..Faults::default()
        },
        ..SimConfig::default()
    }
}

/// Three nodes that know each other, 10 rounds in.
fn trio() -> Sim {
    let mut sim = Sim::new(fixed_latency(11));
    sim.add_node(&[]);
    sim.add_node(&[0]);
    sim.add_node(&[0]);
    sim.run_for_rounds(10.0, &mut |_, _| {});
    for i in 0..3 {
        assert_eq!(sim.node(i).map(|n| n.member_count()), Some(3), "n{i}");
    }
    sim
}

fn heartbeat(sim: &Sim, observer: usize, of: usize) -> u64 {
    sim.node(observer)
        .and_then(|n| n.member(&format!("n{of}")))
        .map_or(0, |m| m.heartbeat)
}

fn metric(sim: &Sim, i: usize, f: fn(&gossip_core::proto::Metrics) -> u64) -> u64 {
    sim.node(i).map_or(0, |n| f(n.metrics()))
}

#[test]
fn a_node_that_cannot_send_is_heard_by_nobody_but_hears_everyone() {
    let mut sim = trio();
    sim.set_links(1, false, true);
    // Let what n1 sent before the cut land (links take 2 ms).
    sim.run_for_rounds(0.01, &mut |_, _| {});
    let (of_n1, of_n0) = (heartbeat(&sim, 0, 1), heartbeat(&sim, 1, 0));
    let (dropped, out) = (sim.stats().dropped, metric(&sim, 1, |m| m.messages_out));
    sim.run_for_rounds(5.0, &mut |_, _| {});
    assert_eq!(heartbeat(&sim, 0, 1), of_n1, "n0 heard n1");
    assert_eq!(heartbeat(&sim, 2, 1), of_n1, "n2 heard n1");
    assert!(heartbeat(&sim, 1, 0) > of_n0, "n1 still hears n0");
    let sent = metric(&sim, 1, |m| m.messages_out) - out;
    assert!(sent > 0, "n1 kept sending");
    assert_eq!(
        sim.stats().dropped - dropped,
        sent,
        "only n1's sends are lost"
    );
    sim.set_links(1, true, true);
    sim.run_for_rounds(3.0, &mut |_, _| {});
    assert!(heartbeat(&sim, 0, 1) > of_n1, "heard again once restored");
}

#[test]
fn a_node_that_cannot_receive_handles_nothing_but_still_sends() {
    let mut sim = trio();
    sim.set_links(1, true, false);
    let (received, out) = (
        metric(&sim, 1, |m| m.messages_in),
        metric(&sim, 1, |m| m.messages_out),
    );
    let of_n0 = heartbeat(&sim, 1, 0);
    sim.run_for_rounds(5.0, &mut |_, _| {});
    assert_eq!(
        metric(&sim, 1, |m| m.messages_in),
        received,
        "n1 got a message"
    );
    assert_eq!(heartbeat(&sim, 1, 0), of_n0, "n1 heard n0");
    assert!(metric(&sim, 1, |m| m.messages_out) > out, "n1 kept sending");
    sim.set_links(1, true, true);
    sim.run_for_rounds(3.0, &mut |_, _| {});
    assert!(metric(&sim, 1, |m| m.messages_in) > received);
}

#[test]
fn a_slow_node_handles_its_timer_late_by_the_delay() {
    let delay = Duration::from_millis(300);
    let mut sim = Sim::new(fixed_latency(12));
    sim.add_node(&[]);
    sim.run_for_rounds(3.5, &mut |_, _| {});
    let due = sim.node(0).expect("up").poll_timeout();
    assert!(due > sim.now());
    sim.set_slow(0, delay);
    let just_before = due + delay - Duration::from_micros(1);
    sim.run_until(just_before, &mut |_, _| {});
    assert_eq!(sim.node(0).expect("up").poll_timeout(), due, "ticked early");
    sim.run_until(due + delay, &mut |_, _| {});
    assert!(
        sim.node(0).expect("up").poll_timeout() > due,
        "did not tick"
    );
}

/// When n0 first learns of a node joining through it, n0 slowed by `delay`.
fn joined_at(delay: Duration) -> Instant {
    let mut sim = Sim::new(fixed_latency(13));
    sim.add_node(&[]);
    sim.set_slow(0, delay);
    sim.add_node(&[0]);
    let mut at = None;
    while at.is_none() && sim.rounds() < 10.0 {
        sim.step(&mut |ctx, e| {
            if ctx.node == 0 && matches!(e, Event::MemberJoined { .. }) {
                at.get_or_insert(ctx.now);
            }
        });
    }
    at.expect("n0 learned of n1")
}

#[test]
fn a_slow_node_handles_each_message_late_by_the_delay() {
    let delay = Duration::from_millis(300);
    let on_time = joined_at(Duration::ZERO);
    assert_eq!(joined_at(delay), on_time + delay);
}

#[test]
fn a_slow_node_handles_nothing_within_the_delay_then_everything() {
    let delay = Duration::from_millis(400);
    let mut sim = trio();
    sim.set_slow(1, delay);
    let (received, start) = (metric(&sim, 1, |m| m.messages_in), sim.now());
    sim.run_until(start + delay - Duration::from_micros(1), &mut |_, _| {});
    assert_eq!(metric(&sim, 1, |m| m.messages_in), received);
    sim.run_for_rounds(2.0, &mut |_, _| {});
    assert!(metric(&sim, 1, |m| m.messages_in) > received);
}

fn fault(kind: Kind, nodes: usize, duration: f64, seed: u64) -> (ScenarioReport, String) {
    let cfg = ScenarioConfig {
        nodes,
        loss: 0.0,
        duration,
        before: Before::Nothing,
        delay: Duration::from_millis(500),
        full_checks: true,
        sim: scenario::config(seed, 3, 0.0),
    };
    let r = scenario::failure(kind, &cfg).expect("the cluster forms");
    let replay = format!(
        "replay: cargo run --release --example simulate -- --scenario {} --nodes {nodes} --duration {duration} --delay-ms 500 --seed {seed} --full-checks",
        kind.name()
    );
    assert_eq!(r.resurrections, 0, "{r:#?}\n{replay}");
    (r, replay)
}

const SEEDS: [u64; 3] = [21, 22, 23];

/// Nobody crashes, pauses or loses a link: every Dead verdict is false.
fn nobody_convicted(r: &ScenarioReport, replay: &str) {
    assert!(r.violations.is_empty(), "{:#?}\n{replay}", r.violations);
    assert_eq!(r.false_positives, 0, "{r:#?}\n{replay}");
    for v in &r.victims {
        assert_eq!(v.dead_verdicts, 0, "{v:?}\n{replay}");
        assert_eq!(v.dead_everywhere_rounds, None, "{v:?}\n{replay}");
    }
}

#[test]
fn a_slow_node_convicts_nobody_and_nobody_convicts_it() {
    for seed in SEEDS {
        let (r, replay) = fault(Kind::Slow, 24, 30.0, seed);
        assert!(r.converged, "{r:#?}\n{replay}");
        nobody_convicted(&r, &replay);
        let [v] = &r.victims[..] else {
            panic!("one slow node: {r:#?}");
        };
        assert_eq!(v.role, "slow");
        assert_eq!(v.sees_not_live_at_end, 0, "Live everywhere while slow");
    }
}

#[test]
fn mute_and_deaf_nodes_are_seen_live_again_once_their_links_are_back() {
    for seed in SEEDS {
        let (r, replay) = fault(Kind::Oneway, 24, 30.0, seed);
        // Verdicts about the two while cut off are no false positives
        // (unreachable); nobody reachable may be convicted.
        assert!(r.violations.is_empty(), "{:#?}\n{replay}", r.violations);
        assert_eq!(r.false_positives, 0, "{replay}");
        let recovery = r.recovery_rounds.expect(&replay);
        assert!(r.converged && recovery <= 60.0, "{r:#?}\n{replay}");
        let [mute, deaf] = &r.victims[..] else {
            panic!("two victims: {r:#?}");
        };
        assert_eq!((mute.role, deaf.role), ("mute", "deaf"));
        assert_ne!(mute.node, deaf.node);
        // Nothing of a mute node reaches anyone: all who can hear convict
        // it. The deaf node hears no verdict; its own probes all
        // unanswered, it takes itself to be cut off, then alone, and what
        // it concludes alone stays its own and is withdrawn once it hears
        // the cluster again (the recovery above).
        assert!(mute.dead_verdicts >= 22, "{mute:?}\n{replay}");
        assert!(mute.sees_not_live_at_end >= 22, "{mute:?}\n{replay}");
    }
}

#[test]
fn flapping_links_convict_nobody_and_leave_a_converged_cluster() {
    for seed in SEEDS {
        // 40 nodes: two flap, out of phase.
        let (r, replay) = fault(Kind::Flap, 40, 30.0, seed);
        assert!(r.converged, "{r:#?}\n{replay}");
        nobody_convicted(&r, &replay);
        let nodes: Vec<usize> = r.victims.iter().map(|v| v.node).collect();
        assert!(
            nodes.len() == 2 && nodes[0] != nodes[1] && !nodes.contains(&0),
            "{nodes:?}"
        );
        assert!(r.victims.iter().all(|v| v.role == "flapping"));
    }
}

#[test]
fn a_slow_node_busy_with_messages_ticks_late_but_no_later() {
    // Its timer is handled `delay` after it is due, and the next one is due
    // a round after that late tick (the core counts from its own clock):
    // one tick per 1.5 rounds. The messages it handles meanwhile (several a
    // round here) must not push a late timer back further (that gave 11).
    let (mut sim, joined) =
        scenario::converged_cluster(scenario::config(14, 3, 0.0), 24, 100.0, &mut |_, _| {});
    assert!(joined);
    sim.set_slow(5, Duration::from_millis(500));
    let before = heartbeat(&sim, 5, 5);
    sim.run_for_rounds(20.0, &mut |_, _| {});
    let ticks = heartbeat(&sim, 5, 5) - before;
    assert!((12..=15).contains(&ticks), "{ticks} ticks in 20 rounds");
}
