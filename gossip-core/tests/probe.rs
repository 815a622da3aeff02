//! Node-level tests of probing (`proto/node/probe.rs`): how the node wires
//! the detection part's rumors and answers to its own heartbeat.

use gossip_core::proto::{Config, Instant, Message, Rumor, RumorKind};

mod common;
use common::{addr, deliver, drain, node};

fn config() -> Config {
    Config {
        interval_jitter: 0.0,
        probe: true,
        ..Config::default()
    }
}

#[test]
fn the_answer_to_a_ping_that_suspects_this_node_carries_the_refutation() {
    let mut n = node(config());
    let me = n.id().clone();
    let suspicion = Rumor {
        id: me.clone(),
        heartbeat: 40,
        kind: RumorKind::Suspect,
        by: "n1".into(),
    };
    let ping = Message::Ping {
        seq: 5,
        rumors: vec![suspicion],
    };
    deliver(&mut n, Instant::ZERO, 1, ping);
    let (transmits, _) = drain(&mut n);
    let own = n.member(&me.name).expect("knows itself").heartbeat;
    assert!(own >= 40 + 1024, "refuted above the suspicion: {own}");
    let ack = transmits
        .iter()
        .find_map(|t| match &t.envelope.message {
            Message::PingAck { seq: 5, rumors } if t.to == addr(1) => Some(rumors),
            _ => None,
        })
        .expect("the ping is answered");
    let alive = Rumor {
        id: me.clone(),
        heartbeat: own,
        kind: RumorKind::Alive,
        by: me.name.clone(),
    };
    assert!(
        ack.contains(&alive),
        "the answer carries {alive:?}: {ack:?}"
    );
    // And the refutation floods beside it.
    let floods = transmits
        .iter()
        .filter(|t| {
            matches!(&t.envelope.message, Message::Rumors { rumors } if rumors.contains(&alive))
        })
        .count();
    assert!(floods >= 1, "{transmits:?}");
}
