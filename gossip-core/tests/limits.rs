//! Handler-level tests of what an insider can make a node hold: members
//! made known per message, bytes of one keyspace and of all state, and the
//! event queue's fairness between members. Crafted envelopes in, counters,
//! state and events out.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use gossip_core::proto::{
    Config, Envelope, Event, Instant, KeyUpdate, Message, Node, NodeDelta, NodeId, WriteError,
    cluster_id,
};

fn addr(i: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + i))
}

fn id(i: u16) -> Arc<NodeId> {
    Arc::new(NodeId::new(format!("n{i}"), addr(i), 1))
}

fn node(config: Config) -> Node {
    Node::new(
        config,
        NodeId::new("n0", addr(0), 1),
        vec![],
        7,
        Instant::ZERO,
    )
    .expect("valid config")
}

fn deliver(n: &mut Node, from: u16, message: Message) {
    let envelope = Envelope {
        cluster: cluster_id(&n.config().cluster),
        from: id(from),
        message,
    };
    n.handle_message(Instant::ZERO, addr(from), envelope)
        .expect("accepted");
}

fn header(i: u16) -> NodeDelta {
    NodeDelta {
        id: id(i),
        heartbeat: 1,
        left: false,
        floor: 0,
        reset: false,
        gc_version: 0,
        max_version: 0,
        updates: Vec::new(),
    }
}

/// A delta of member `i` with `n` keys of `len` bytes of value each.
fn keys(i: u16, n: u64, len: usize) -> NodeDelta {
    NodeDelta {
        max_version: n,
        updates: (1..=n)
            .map(|v| KeyUpdate {
                key: format!("k{v}"),
                version: v,
                value: Some(Bytes::from(vec![b'x'; len])),
            })
            .collect(),
        ..header(i)
    }
}

fn drain_events(n: &mut Node) -> Vec<Event> {
    std::iter::from_fn(|| n.poll_event()).collect()
}

#[test]
fn one_message_makes_only_so_many_members_known() {
    let mut n = node(Config {
        max_new_members_per_message: 10,
        ..Config::default()
    });
    let flood: Vec<NodeDelta> = (100..400).map(header).collect();
    deliver(
        &mut n,
        1,
        Message::Ack {
            delta: flood.clone(),
        },
    );
    // This node, the sender and 9 of the delta's members.
    assert_eq!(n.member_count(), 1 + 10);
    assert_eq!(n.metrics().refused.too_many_new, 291);
    // The next message may bring the next few: the cap is per message.
    deliver(&mut n, 1, Message::Ack { delta: flood });
    assert_eq!(n.member_count(), 1 + 20);
}

#[test]
fn a_catch_up_page_is_not_capped() {
    let mut n = node(Config {
        max_new_members_per_message: 10,
        ..Config::default()
    });
    let page: Vec<NodeDelta> = (100..400).map(header).collect();
    deliver(
        &mut n,
        1,
        Message::SynAck {
            digest: Vec::new(),
            delta: page,
            known: 302,
            next_page: Some(302),
            recon: Default::default(),
        },
    );
    assert_eq!(n.member_count(), 302);
    assert_eq!(n.metrics().refused.too_many_new, 0);
}

#[test]
fn a_keyspace_over_its_byte_limit_is_cut_and_counted_and_others_apply() {
    let config = Config {
        max_keyspace_bytes: 20 * 1024,
        ..Config::default()
    };
    let mut n = node(config);
    // 30 keys of 1 KiB: about 20 fit.
    deliver(
        &mut n,
        1,
        Message::Ack {
            delta: vec![keys(1, 30, 1024), keys(2, 3, 10)],
        },
    );
    let held = n.member("n1").expect("known").keys;
    assert!((18..=20).contains(&held), "{held} keys held");
    assert_eq!(
        n.metrics().refused.keyspace_too_large,
        30 - held as u64,
        "every key skipped is counted"
    );
    assert_eq!(
        n.member("n2").expect("known").keys,
        3,
        "other owners unaffected"
    );
    // Our own writes meet the same limit, as an error.
    for k in 0..19 {
        n.set(
            Instant::ZERO,
            &format!("mine{k}"),
            Bytes::from(vec![0; 1024]),
        )
        .expect("within the limit");
    }
    let err = n
        .set(Instant::ZERO, "one-too-many", Bytes::from(vec![0; 2048]))
        .expect_err("over the limit");
    assert!(matches!(err, WriteError::KeyspaceTooLarge { limit, .. } if limit == 20 * 1024));
    // Overwriting with a smaller value is always allowed.
    n.set(Instant::ZERO, "mine0", Bytes::from_static(b"small"))
        .expect("shrinks");
}

#[test]
fn all_state_together_stays_within_its_limit() {
    let config = Config {
        max_keyspace_bytes: 64 * 1024,
        max_state_bytes: 100 * 1024,
        ..Config::default()
    };
    let mut n = node(config);
    // Four owners of 40 KiB each: 100 KiB fit.
    for owner in 1..=4 {
        deliver(
            &mut n,
            owner,
            Message::Ack {
                delta: vec![keys(owner, 40, 1000)],
            },
        );
    }
    let held: usize = (1..=4)
        .map(|o| n.member(&format!("n{o}")).expect("known").keys)
        .sum();
    let bytes = n.gauges().state_bytes;
    assert!(bytes <= 100 * 1024, "{bytes} bytes held");
    assert!(held >= 95, "the room is used: {held} keys");
    assert_eq!(n.metrics().refused.state_full, 160 - held as u64);
    // The count is exact again after a round.
    n.handle_timeout(Instant::ZERO);
    assert_eq!(n.gauges().state_bytes, bytes);
}

#[test]
fn a_flood_of_events_about_one_member_does_not_push_out_the_others() {
    let mut n = node(Config {
        max_pending_events: 64,
        ..Config::default()
    });
    deliver(
        &mut n,
        2,
        Message::Ack {
            delta: vec![keys(2, 1, 10)],
        },
    );
    deliver(
        &mut n,
        1,
        Message::Ack {
            delta: vec![keys(1, 500, 10)],
        },
    );
    deliver(
        &mut n,
        3,
        Message::Ack {
            delta: vec![keys(3, 1, 10)],
        },
    );
    let events = drain_events(&mut n);
    assert_eq!(events.len(), 64);
    let about = |name: &str| {
        events
            .iter()
            .filter(|e| matches!(e, Event::KeyChanged { owner, .. } if owner.name == name))
            .count()
    };
    assert_eq!(
        (about("n2"), about("n3")),
        (1, 1),
        "the quiet owners' keys are heard"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::MemberJoined { id } if id.name == "n2")),
        "and their joins"
    );
    assert!(n.metrics().events_dropped > 400);
}
