//! Handler-level tests of eager push (`proto/eager.rs`, `proto/node/push.rs`):
//! crafted messages in, the exact pushes, announcements, grafts, prunes and
//! events out.

use std::net::SocketAddr;

use bytes::Bytes;
use gossip_core::proto::{
    Config, DigestEntry, Event, Instant, KeyUpdate, Message, NodeDelta, Transmit,
};

mod common;
use common::{addr, deliver, drain, id, node};

/// Fan-outs above one, so that "all but one" and "not the eager ones" say
/// something.
fn config() -> Config {
    Config {
        interval_jitter: 0.0,
        eager_fanout: 3,
        lazy_fanout: 4,
        ..Config::default()
    }
}

/// `owner`'s update of `key` at `version`, above `version - 1`.
fn update(owner: u16, key: &str, version: u64) -> NodeDelta {
    NodeDelta {
        id: id(owner),
        heartbeat: 2,
        left: false,
        floor: version - 1,
        reset: false,
        gc_version: 0,
        max_version: version,
        updates: vec![KeyUpdate {
            key: key.into(),
            version,
            value: Some(Bytes::from_static(b"v")),
        }],
    }
}

fn to_of(t: &[Transmit], kind: fn(&Message) -> bool) -> Vec<SocketAddr> {
    let mut v: Vec<_> = t
        .iter()
        .filter(|t| kind(&t.envelope.message))
        .map(|t| t.to)
        .collect();
    v.sort();
    v
}

fn is_push(m: &Message) -> bool {
    matches!(m, Message::Push { .. })
}

fn is_ihave(m: &Message) -> bool {
    matches!(m, Message::IHave { .. })
}

fn key_events(e: &[Event]) -> usize {
    e.iter()
        .filter(|e| matches!(e, Event::KeyChanged { .. }))
        .count()
}

#[test]
fn a_write_is_pushed_at_once_and_announced_to_others() {
    let c = config();
    let mut n = node(c.clone());
    n.set(Instant::ZERO, "color", Bytes::from_static(b"blue"))
        .expect("small");
    let (t, _) = drain(&mut n);
    let pushed = to_of(&t, is_push);
    let announced = to_of(&t, is_ihave);
    assert_eq!(pushed.len(), c.eager_fanout);
    assert_eq!(announced.len(), c.lazy_fanout);
    assert!(
        pushed.iter().all(|a| !announced.contains(a)),
        "lazy peers are not eager ones"
    );
    assert_eq!(
        t.len(),
        pushed.len() + announced.len(),
        "nothing else: {t:?}"
    );
    for tx in t.iter().filter(|t| is_push(&t.envelope.message)) {
        let Message::Push { delta } = &tx.envelope.message else {
            unreachable!("filtered")
        };
        assert_eq!(delta.len(), 1);
        assert_eq!(delta[0].updates[0].key, "color");
    }
}

#[test]
fn news_is_forwarded_to_the_other_eager_peers_and_not_back() {
    let mut n = node(config());
    deliver(
        &mut n,
        Instant::ZERO,
        1,
        Message::Push {
            delta: vec![update(1, "k", 1)],
        },
    );
    let (t, e) = drain(&mut n);
    assert_eq!(key_events(&e), 1);
    let pushed = to_of(&t, is_push);
    assert!(!pushed.is_empty());
    assert!(!pushed.contains(&addr(1)), "not back to the sender");
    assert!(!to_of(&t, is_ihave).contains(&addr(1)));
}

#[test]
fn a_push_of_what_we_hold_is_pruned_and_the_peer_then_left_out() {
    let c = config();
    let mut n = node(c.clone());
    deliver(
        &mut n,
        Instant::ZERO,
        1,
        Message::Push {
            delta: vec![update(1, "k", 1)],
        },
    );
    drain(&mut n);
    // Make n2 eager first (it grafts), then send us a duplicate.
    deliver(&mut n, Instant::ZERO, 2, Message::Graft { want: vec![] });
    deliver(
        &mut n,
        Instant::ZERO,
        2,
        Message::Push {
            delta: vec![update(1, "k", 1)],
        },
    );
    let (t, e) = drain(&mut n);
    assert_eq!(key_events(&e), 0, "an event once per update");
    assert_eq!(t.len(), 1);
    assert!(matches!(t[0].envelope.message, Message::Prune) && t[0].to == addr(2));
    assert_eq!(n.metrics().prunes, 1);
    // Later news is not pushed to n2.
    let later = Instant::ZERO + c.eager_batch;
    deliver(
        &mut n,
        later,
        1,
        Message::Push {
            delta: vec![update(1, "k", 2)],
        },
    );
    let (t, _) = drain(&mut n);
    assert!(!to_of(&t, is_push).contains(&addr(2)), "{t:?}");
}

#[test]
fn a_prune_makes_the_peer_lazy() {
    let c = config();
    let mut n = node(c.clone());
    n.set(Instant::ZERO, "a", Bytes::from_static(b"1"))
        .expect("small");
    let (t, _) = drain(&mut n);
    let pushed = to_of(&t, is_push);
    let pruner = pushed[0];
    let i = pruner.port() - 7000;
    deliver(&mut n, Instant::ZERO, i, Message::Prune);
    let later = Instant::ZERO + c.eager_batch;
    n.set(later, "b", Bytes::from_static(b"2")).expect("small");
    let (t, _) = drain(&mut n);
    let again = to_of(&t, is_push);
    assert_eq!(again.len(), pushed.len() - 1);
    assert!(!again.contains(&pruner));
}

#[test]
fn an_announced_update_is_grafted_when_it_does_not_arrive() {
    let c = config();
    let mut n = node(c.clone());
    let t0 = Instant::ZERO;
    let have = vec![DigestEntry {
        id: id(4),
        heartbeat: 2,
        max_version: 1,
    }];
    deliver(&mut n, t0, 3, Message::IHave { have });
    assert!(drain(&mut n).0.is_empty(), "nothing asked at once");
    assert_eq!(n.poll_timeout(), t0 + c.graft_timeout);
    n.handle_timeout(t0 + c.graft_timeout);
    let (t, _) = drain(&mut n);
    let grafts: Vec<_> = t
        .iter()
        .filter_map(|t| match &t.envelope.message {
            Message::Graft { want } => Some((t.to, want.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(grafts.len(), 1, "{t:?}");
    assert_eq!(grafts[0].0, addr(3), "asked of the announcer");
    assert_eq!(grafts[0].1[0].id, id(4));
    assert_eq!(grafts[0].1[0].max_version, 0, "from the version held");
    assert_eq!(n.metrics().grafts, 1);
}

#[test]
fn an_announced_update_that_arrives_in_time_is_not_grafted() {
    let c = config();
    let mut n = node(c.clone());
    let t0 = Instant::ZERO;
    let have = vec![DigestEntry {
        id: id(4),
        heartbeat: 2,
        max_version: 1,
    }];
    deliver(&mut n, t0, 3, Message::IHave { have });
    deliver(
        &mut n,
        t0,
        5,
        Message::Push {
            delta: vec![update(4, "k", 1)],
        },
    );
    drain(&mut n);
    n.handle_timeout(t0 + c.graft_timeout);
    let (t, _) = drain(&mut n);
    assert!(
        t.iter()
            .all(|t| !matches!(t.envelope.message, Message::Graft { .. })),
        "{t:?}"
    );
}

#[test]
fn a_graft_is_answered_with_the_updates() {
    let mut n = node(config());
    n.set(Instant::ZERO, "k", Bytes::from_static(b"v"))
        .expect("small");
    drain(&mut n);
    let want = vec![DigestEntry {
        id: n.id().clone(),
        heartbeat: 0,
        max_version: 0,
    }];
    deliver(&mut n, Instant::ZERO, 6, Message::Graft { want });
    let (t, _) = drain(&mut n);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].to, addr(6));
    let Message::Push { delta } = &t[0].envelope.message else {
        panic!("a push: {t:?}")
    };
    assert_eq!(delta[0].updates[0].key, "k");
}

#[test]
fn writes_within_the_batch_window_travel_together() {
    let c = config();
    let mut n = node(c.clone());
    let t0 = Instant::ZERO;
    n.set(t0, "a", Bytes::from_static(b"1")).expect("small");
    let first = drain(&mut n).0.len();
    assert!(first > 0, "the first write leaves at once");
    let half = t0 + c.eager_batch / 2;
    for k in ["b", "c", "d"] {
        n.set(half, k, Bytes::from_static(b"2")).expect("small");
    }
    assert!(drain(&mut n).0.is_empty(), "held back within the window");
    assert_eq!(n.poll_timeout(), t0 + c.eager_batch);
    n.handle_timeout(t0 + c.eager_batch);
    let (t, _) = drain(&mut n);
    let pushes: Vec<_> = t.iter().filter(|t| is_push(&t.envelope.message)).collect();
    assert_eq!(pushes.len(), c.eager_fanout, "one push per eager peer");
    for p in pushes {
        let Message::Push { delta } = &p.envelope.message else {
            unreachable!("filtered")
        };
        let keys: Vec<_> = delta[0].updates.iter().map(|u| u.key.as_str()).collect();
        assert_eq!(keys, ["b", "c", "d"]);
    }
}

#[test]
fn with_eager_push_off_nothing_leaves_between_rounds() {
    let mut n = node(Config {
        eager: false,
        ..config()
    });
    n.set(Instant::ZERO, "k", Bytes::from_static(b"v"))
        .expect("small");
    deliver(
        &mut n,
        Instant::ZERO,
        1,
        Message::Push {
            delta: vec![update(1, "k", 1)],
        },
    );
    let (t, e) = drain(&mut n);
    assert!(t.is_empty(), "{t:?}");
    assert_eq!(key_events(&e), 1, "a push received is still applied");
}

#[test]
fn heartbeats_are_not_pushed() {
    let mut n = node(config());
    for r in 0..5 {
        let now = n.poll_timeout();
        n.handle_timeout(now);
        let (t, _) = drain(&mut n);
        assert!(
            t.iter()
                .all(|t| matches!(t.envelope.message, Message::Syn { .. })
                    || t.envelope.message.kind().is_detection()),
            "round {r}: only the periodic exchange and probes: {t:?}"
        );
    }
}
