//! Range reconciliation at the node: two real nodes, every message between
//! them looked at. Agreeing nodes exchange one fingerprint; a difference is
//! found by descending the tree and repaired within the same exchange.

mod common;

use common::{addr, announce, drain};
use gossip_core::proto::reconcile::Range;
use gossip_core::proto::{Config, Instant, Message, Node, NodeId, Transmit};

/// Members both nodes know, besides each other.
const SHARED: u16 = 60;

fn config() -> Config {
    Config {
        // No eager push and no hot list: reconciliation alone is under test.
        eager: false,
        hot_rounds: Some(0),
        heartbeat_window: false,
        // The nodes hear nobody else, so their probes fail. Without helpers
        // to ask, a node cannot tell it is cut off, so it blames each
        // target (and soon stops, its local health gone) rather than take
        // itself to be alone and suspect everyone in turn, the peer too;
        // and no suspicion ends within the rounds a test runs.
        indirect_probes: 0,
        suspicion_mult: 100.0,
        ..Config::default()
    }
}

/// Node `me` knowing n2..n(SHARED+1), plus `extra`, all announced by one
/// digest each, as the shared test setup does.
fn node(me: u16, peer: u16, extra: &[u16]) -> Node {
    let mut n = Node::new(
        config(),
        NodeId::new(format!("n{me}"), addr(me), 1),
        vec![],
        u64::from(me),
        Instant::ZERO,
    )
    .expect("valid config");
    let members = std::iter::once(peer)
        .chain(2..SHARED + 2)
        .chain(extra.iter().copied());
    for i in members {
        announce(&mut n, i, 1);
    }
    // A first round: the hot list, which lasts no round here, empties.
    n.handle_timeout(Instant::ZERO);
    drain(&mut n);
    n
}

/// Messages from `n` to `to` among its transmits (the rest is dropped).
fn to(n: &mut Node, to: u16) -> Vec<Transmit> {
    drain(n)
        .0
        .into_iter()
        .filter(|t| t.to == addr(to))
        .collect()
}

/// Runs rounds of `a` (n0) from `now` on until one opens an exchange with
/// b (n1), then delivers everything between a and b until both are quiet;
/// returns the messages in delivery order. Messages to others are dropped.
fn exchange(a: &mut Node, b: &mut Node, mut now: Instant) -> Vec<(u16, Message)> {
    let mut queue: Vec<(u16, Transmit)> = Vec::new();
    for _ in 0..200 {
        a.handle_timeout(now);
        queue = to(a, 1)
            .into_iter()
            .filter(|t| matches!(t.envelope.message, Message::Syn { .. }))
            .map(|t| (0, t))
            .collect();
        if !queue.is_empty() {
            break;
        }
        now = a.poll_timeout();
    }
    assert_eq!(queue.len(), 1, "a round of a opens one exchange with b");
    let mut log = Vec::new();
    while let Some((from, t)) = (!queue.is_empty()).then(|| queue.remove(0)) {
        let dst = if from == 0 { &mut *b } else { &mut *a };
        dst.handle_message(now, addr(from), t.envelope.clone())
            .expect("accepted");
        log.push((from, t.envelope.message));
        for t in to(dst, from) {
            // Probes are not part of the exchange.
            if !t.envelope.message.kind().is_detection() {
                queue.push((1 - from, t));
            }
        }
    }
    log
}

fn kinds(log: &[(u16, Message)]) -> Vec<String> {
    log.iter()
        .map(|(from, m)| format!("{from}:{}", m.kind().name()))
        .collect()
}

#[test]
fn agreeing_nodes_exchange_one_fingerprint_whatever_the_heartbeats() {
    let mut a = node(0, 1, &[]);
    let mut b = node(1, 0, &[]);
    // b hears newer heartbeats of some members: heartbeats are not in the
    // summaries, so nothing differs.
    for i in 2..10 {
        announce(&mut b, i, 50);
    }
    drain(&mut b);
    let log = exchange(&mut a, &mut b, Instant::from_micros(1_000_000));
    assert_eq!(kinds(&log), ["0:syn", "1:synack"], "{log:#?}");
    let Message::Syn { recon, .. } = &log[0].1 else {
        unreachable!()
    };
    assert_eq!(recon.sums.len(), 1, "the opening carries the root alone");
    assert_eq!(recon.sums[0].range, Range::ROOT);
    let Message::SynAck { recon, delta, .. } = &log[1].1 else {
        unreachable!()
    };
    assert!(recon.is_empty(), "equal roots: nothing to descend into");
    assert!(delta.is_empty());
}

#[test]
fn a_member_only_the_responder_holds_is_found_by_descent_and_sent_in_the_same_exchange() {
    let mut a = node(0, 1, &[]);
    let mut b = node(1, 0, &[99]);
    assert!(a.member("n99").is_none());
    let log = exchange(&mut a, &mut b, Instant::from_micros(1_000_000));
    // Root differs and b holds many there: b sends the 16 children; a lists
    // the child holding n99 (few members there) as covered; b sends n99.
    assert_eq!(
        kinds(&log),
        ["0:syn", "1:synack", "0:syn", "1:synack"],
        "{log:#?}"
    );
    let Message::SynAck { recon, .. } = &log[1].1 else {
        unreachable!()
    };
    assert_eq!(recon.sums.len(), 16);
    let Message::Syn { recon, digest, .. } = &log[2].1 else {
        unreachable!()
    };
    assert_eq!(recon.covers.len(), 1, "{recon:?}");
    assert!(digest.iter().all(|e| e.id.name != "n99"));
    let Message::SynAck { delta, .. } = &log[3].1 else {
        unreachable!()
    };
    assert!(delta.iter().any(|d| d.id.name == "n99"), "{delta:?}");
    assert!(a.member("n99").is_some(), "a learned n99");
    // And now they agree.
    let later = a.poll_timeout();
    let log = exchange(&mut a, &mut b, later);
    assert_eq!(kinds(&log), ["0:syn", "1:synack"], "{log:#?}");
}

#[test]
fn a_member_only_the_initiator_holds_reaches_the_responder_from_the_listing() {
    let mut a = node(0, 1, &[77]);
    let mut b = node(1, 0, &[]);
    let log = exchange(&mut a, &mut b, Instant::from_micros(1_000_000));
    // a lists the range holding n77 once the descent reaches a range where
    // it holds few members, covering it.
    let listing = log.iter().find_map(|(from, m)| match m {
        Message::Syn { digest, recon, .. }
            if *from == 0 && digest.iter().any(|e| e.id.name == "n77") =>
        {
            Some(recon.covers.clone())
        }
        _ => None,
    });
    assert_eq!(listing.map(|c| c.len()), Some(1), "{:?}", kinds(&log));
    assert!(b.member("n77").is_some(), "b admitted n77 from the listing");
}

#[test]
fn many_differences_are_all_repaired_within_an_exchange() {
    let extra: Vec<u16> = (200..260).collect();
    let mut a = node(0, 1, &[]);
    let mut b = node(1, 0, &extra);
    let log = exchange(&mut a, &mut b, Instant::from_micros(1_000_000));
    for i in &extra {
        assert!(
            a.member(&format!("n{i}")).is_some(),
            "n{i} missing; {:?}",
            kinds(&log)
        );
    }
    assert!(
        log.len() <= 2 * 4,
        "at most a follow-up per level: {:?}",
        kinds(&log)
    );
}
