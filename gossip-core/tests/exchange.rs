//! Two and three real nodes exchanging messages: merge laws (any order of
//! delivery ends in the same state; re-delivery changes nothing), delta
//! cutting under the size budget, refusals, TTL and leave.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gossip_core::proto::{Config, Event, Instant, Node, NodeId, RefuseReason, Status, Transmit};
use proptest::prelude::*;

fn addr(i: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + i))
}

fn node(i: u16, seeds: &[u16], config: Config) -> Node {
    let id = NodeId::new(format!("n{i}"), addr(i), 1);
    Node::new(
        config,
        id,
        seeds.iter().map(|&s| addr(s)).collect(),
        u64::from(i) + 100,
        Instant::ZERO,
    )
    .expect("valid config")
}

/// Delivers everything in flight between `nodes` (by address) until quiet.
fn settle(nodes: &mut [Node], now: Instant) {
    loop {
        let mut moved = false;
        for i in 0..nodes.len() {
            while let Some(tx) = nodes[i].poll_transmit() {
                moved = true;
                deliver(nodes, i, tx, now);
            }
        }
        if !moved {
            return;
        }
    }
}

fn deliver(nodes: &mut [Node], from: usize, tx: Transmit, now: Instant) {
    let from_addr = nodes[from].id().addr;
    if let Some(to) = nodes.iter().position(|n| n.id().addr == tx.to) {
        let bytes = tx.encode();
        assert!(
            bytes.len() <= nodes[to].config().max_message_bytes,
            "every message fits the budget"
        );
        let _ = nodes[to].handle_bytes(now, from_addr, &bytes);
    }
}

/// Runs `rounds` gossip rounds on every node, settling after each.
fn rounds(nodes: &mut [Node], start: Instant, rounds: u32) -> Instant {
    let mut now = start;
    for _ in 0..rounds {
        now += Duration::from_secs(1);
        for n in nodes.iter_mut() {
            n.handle_timeout(now);
        }
        settle(nodes, now);
    }
    now
}

fn view(n: &Node, owner: &str) -> Vec<(String, Bytes, u64)> {
    n.keys(owner)
        .map(|(k, v, ver)| (k.to_owned(), v.clone(), ver))
        .collect()
}

#[derive(Clone, Debug)]
enum Op {
    Set(u8, u8),
    Delete(u8),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            (0u8..6, any::<u8>()).prop_map(|(k, v)| Op::Set(k, v)),
            (0u8..6).prop_map(Op::Delete)
        ],
        1..20,
    )
}

fn apply(n: &mut Node, ops: &[Op], now: Instant) {
    for op in ops {
        match op {
            Op::Set(k, v) => {
                n.set(now, &format!("k{k}"), Bytes::from(vec![*v]))
                    .expect("small writes are accepted");
            }
            Op::Delete(k) => {
                n.delete(now, &format!("k{k}"))
                    .expect("deletes are accepted");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever order the messages of several exchanges arrive in, and
    /// however often, both nodes end up with the owners' exact state.
    #[test]
    fn merge_is_order_independent_and_idempotent(a_ops in ops(), b_ops in ops(), order in prop::collection::vec(any::<prop::sample::Index>(), 0..40), dup in any::<bool>()) {
        let mut nodes = vec![node(1, &[2], Config::default()), node(2, &[1], Config::default())];
        let t = Instant::ZERO;
        apply(&mut nodes[0], &a_ops[..a_ops.len() / 2], t);
        let mut now = rounds(&mut nodes, t, 1);
        apply(&mut nodes[0], &a_ops[a_ops.len() / 2..], now);
        apply(&mut nodes[1], &b_ops, now);
        // Several rounds whose messages are shuffled and possibly duplicated.
        let mut seen: Vec<(usize, Transmit)> = Vec::new();
        for _ in 0..3 {
            now += Duration::from_secs(1);
            let mut flying: Vec<(usize, Transmit)> = Vec::new();
            for (i, n) in nodes.iter_mut().enumerate() {
                n.handle_timeout(now);
                while let Some(tx) = n.poll_transmit() { flying.push((i, tx)); }
            }
            for _ in 0..6 {
                if flying.is_empty() { break; }
                let pick = order.get(seen.len()).map_or(0, |ix| ix.index(flying.len()));
                let (i, tx) = flying.swap_remove(pick);
                seen.push((i, tx.clone()));
                deliver(&mut nodes, i, tx.clone(), now);
                if dup { deliver(&mut nodes, i, tx, now); }
                for (j, n) in nodes.iter_mut().enumerate() {
                    while let Some(tx) = n.poll_transmit() { flying.push((j, tx)); }
                }
            }
        }
        now = rounds(&mut nodes, now, 3);
        let want_a = view(&nodes[0], "n1");
        let want_b = view(&nodes[1], "n2");
        prop_assert_eq!(view(&nodes[1], "n1"), want_a.clone());
        prop_assert_eq!(view(&nodes[0], "n2"), want_b.clone());
        // Replaying every old message changes nothing.
        for (i, tx) in seen {
            deliver(&mut nodes, i, tx, now);
        }
        settle(&mut nodes, now);
        prop_assert_eq!(view(&nodes[1], "n1"), want_a);
        prop_assert_eq!(view(&nodes[0], "n2"), want_b);
    }
}

#[test]
fn large_keyspaces_arrive_in_budgeted_pieces_without_gaps() {
    let config = Config {
        max_message_bytes: 4096,
        digest_bytes: 1024,
        max_value_bytes: 512,
        ..Config::default()
    };
    let mut nodes = vec![node(1, &[2], config.clone()), node(2, &[1], config)];
    let t = Instant::ZERO;
    for k in 0..200 {
        nodes[0]
            .set(t, &format!("key-{k:03}"), Bytes::from(vec![b'x'; 300]))
            .expect("fits");
    }
    // 200 × 300 bytes cannot travel in one 4 KiB message: it takes rounds,
    // every message stays within the budget (checked in `deliver`), and
    // whatever has arrived is a prefix of the owner's versions.
    let mut now = t;
    let mut last = 0;
    for _ in 0..60 {
        now = rounds(&mut nodes, now, 1);
        let held = nodes[1].member("n1").map_or(0, |m| m.max_version);
        assert!(held >= last, "versions held never go back");
        for (_, _, v) in nodes[1].keys("n1") {
            assert!(v <= held, "nothing beyond the contiguous prefix is held");
        }
        last = held;
    }
    assert_eq!(nodes[1].keys("n1").count(), 200);
    assert_eq!(last, 200);
}

#[test]
fn busy_writer_does_not_starve_a_quiet_one() {
    let config = Config {
        max_message_bytes: 4096,
        digest_bytes: 1024,
        max_value_bytes: 512,
        ..Config::default()
    };
    let mut nodes = vec![
        node(1, &[3], config.clone()),
        node(2, &[3], config.clone()),
        node(3, &[1], config),
    ];
    let mut now = rounds(&mut nodes, Instant::ZERO, 3);
    for k in 0..300 {
        nodes[0]
            .set(now, &format!("busy-{k}"), Bytes::from(vec![b'b'; 400]))
            .expect("fits");
    }
    rounds(&mut nodes, now, 2);
    now += Duration::from_secs(2);
    nodes[1]
        .set(now, "quiet", Bytes::from_static(b"q"))
        .expect("fits");
    // The quiet write reaches node 3 long before the busy backlog is through.
    let mut got_quiet = None;
    for r in 1..=40 {
        now = rounds(&mut nodes, now, 1);
        if got_quiet.is_none() && nodes[2].get("n2", "quiet").is_some() {
            got_quiet = Some(r);
        }
    }
    let r = got_quiet.expect("the quiet update arrived");
    assert!(r <= 3, "quiet update took {r} rounds behind a busy writer");
}

#[test]
fn refusals_are_counted_and_change_nothing() {
    let mut a = node(1, &[], Config::default());
    let mut other = Node::new(
        Config {
            cluster: "other".into(),
            ..Config::default()
        },
        NodeId::new("x", addr(9), 1),
        vec![addr(1)],
        1,
        Instant::ZERO,
    )
    .expect("valid");
    other.handle_timeout(Instant::ZERO);
    let tx = other.poll_transmit().expect("a join attempt to the seed");
    assert_eq!(
        a.handle_bytes(Instant::ZERO, addr(9), &tx.encode()),
        Err(RefuseReason::WrongCluster)
    );
    assert_eq!(
        a.handle_bytes(Instant::ZERO, addr(9), &garbage()),
        Err(RefuseReason::Malformed)
    );
    assert_eq!(
        a.handle_bytes(Instant::ZERO, addr(9), &vec![0u8; 1 << 20]),
        Err(RefuseReason::Oversized)
    );
    let r = a.metrics().refused;
    assert_eq!((r.wrong_cluster, r.malformed, r.oversized), (1, 1, 1));
    assert_eq!(a.member_count(), 1);
    assert!(a.poll_transmit().is_none());
}

#[test]
fn ttl_keys_expire_everywhere_and_deletes_spread() {
    let mut nodes = vec![
        node(1, &[2], Config::default()),
        node(2, &[1], Config::default()),
    ];
    let t = Instant::ZERO;
    nodes[0]
        .set_with_ttl(t, "lease", Bytes::from_static(b"1"), Duration::from_secs(5))
        .expect("fits");
    nodes[0]
        .set(t, "doomed", Bytes::from_static(b"1"))
        .expect("fits");
    let now = rounds(&mut nodes, t, 2);
    assert!(nodes[1].get("n1", "lease").is_some());
    nodes[0]
        .delete(now, "doomed")
        .expect("deletes are accepted");
    let now = rounds(&mut nodes, now, 2);
    assert!(nodes[1].get("n1", "doomed").is_none());
    assert!(nodes[1].is_tombstone("n1", "doomed"));
    rounds(&mut nodes, now, 5);
    assert!(
        nodes[0].get("n1", "lease").is_none(),
        "the owner expired its key"
    );
    assert!(
        nodes[1].get("n1", "lease").is_none(),
        "the expiry spread as a tombstone"
    );
}

#[test]
fn leave_is_announced_and_seen_as_left() {
    // Three nodes: the others have a live peer besides the leaver, so they
    // do not gossip to it; the leaver must learn from their answers.
    let mut nodes = vec![
        node(1, &[3], Config::default()),
        node(2, &[1], Config::default()),
        node(3, &[1], Config::default()),
    ];
    let now = rounds(&mut nodes, Instant::ZERO, 3);
    while nodes[0].poll_event().is_some() {}
    nodes[1].leave(now);
    assert!(
        nodes[1].set(now, "k", Bytes::new()).is_err(),
        "a node that left refuses writes"
    );
    let now = rounds(&mut nodes, now, 6);
    let _ = now;
    assert_eq!(nodes[0].member("n2").map(|m| m.status), Some(Status::Left));
    let mut announced = false;
    while let Some(e) = nodes[1].poll_event() {
        announced |= e == Event::LeaveAnnounced;
    }
    assert!(
        announced,
        "the leaver learns that a peer holds its announcement"
    );
}

#[test]
fn a_node_started_before_its_seed_still_joins() {
    // Its seed does not exist yet: join attempts go nowhere. By default
    // they stay frequent (every round); a longer cap backs off to it.
    let attempts = |config: Config| {
        let mut n = node(1, &[2], config);
        let mut now = Instant::ZERO;
        let mut attempts = 0;
        for _ in 0..20 {
            now += Duration::from_secs(1);
            n.handle_timeout(now);
            while n.poll_transmit().is_some() {
                attempts += 1;
            }
        }
        (n, now, attempts)
    };
    let backing_off = Config {
        join_retry_max: Duration::from_secs(4),
        ..Config::default()
    };
    let (_, _, sparse) = attempts(backing_off);
    assert!(
        (4..=7).contains(&sparse),
        "1 s, 2 s, then every 4 s over 20 s: {sparse}"
    );
    let (early, now, frequent) = attempts(Config::default());
    assert!(
        frequent >= 12,
        "every round while alone: {frequent} in 20 s"
    );
    let mut nodes = vec![early, node(2, &[], Config::default())];
    rounds(&mut nodes, now, 35);
    assert!(nodes[0].is_joined());
    assert_eq!(nodes[0].member_count(), 2);
    assert_eq!(nodes[1].member_count(), 2);
}

#[test]
fn two_nodes_claiming_one_name_are_reported() {
    let a = node(1, &[2], Config::default());
    let b = node(2, &[1], Config::default());
    let impostor = Node::new(
        Config::default(),
        NodeId::new("n1", addr(3), 1),
        vec![addr(2)],
        9,
        Instant::ZERO,
    )
    .expect("valid");
    let mut nodes = vec![a, b, impostor];
    rounds(&mut nodes, Instant::ZERO, 5);
    let reported = |n: &mut Node| {
        let mut seen = false;
        while let Some(e) = n.poll_event() {
            seen |= matches!(e, Event::NameConflict { .. });
        }
        seen
    };
    assert!(
        reported(&mut nodes[1]),
        "the peer that hears both reports the conflict"
    );
    assert!(
        reported(&mut nodes[0]) || reported(&mut nodes[2]),
        "a claimant learns its name is taken"
    );
}

/// A message may name a member unknown to the receiver twice (a peer's bug,
/// or an attacker): the second delta applies to the member the first one
/// admitted, as if they had come in two messages, and the member is held once.
#[test]
fn a_message_naming_a_new_member_twice_admits_it_once() {
    use gossip_core::proto::{Envelope, KeyUpdate, Message, NodeDelta, cluster_id};
    use std::sync::Arc;

    let config = Config::default();
    let mut a = node(1, &[], config.clone());
    let c = Arc::new(NodeId::new("n3", addr(3), 1));
    let delta = |heartbeat, floor, key: &str, version| NodeDelta {
        // Separate allocations, as decoded from the wire.
        id: Arc::new((*c).clone()),
        heartbeat,
        left: false,
        floor,
        reset: false,
        gc_version: 0,
        max_version: version,
        updates: vec![KeyUpdate {
            key: key.to_owned(),
            version,
            value: Some(Bytes::from_static(b"v")),
        }],
    };
    let envelope = Envelope {
        cluster: cluster_id(&config.cluster),
        from: Arc::new(NodeId::new("n2", addr(2), 1)),
        message: Message::Ack {
            delta: vec![delta(3, 0, "k1", 1), delta(5, 1, "k2", 2)],
        },
    };
    a.handle_message(Instant::ZERO, addr(2), envelope)
        .expect("a well-formed message from this cluster");
    let held: Vec<_> = a
        .members()
        .into_iter()
        .filter(|m| m.id.name == "n3")
        .collect();
    assert_eq!(held.len(), 1, "held once: {held:?}");
    assert_eq!(
        (held[0].heartbeat, held[0].max_version, held[0].keys),
        (5, 2, 2)
    );
    assert_eq!(view(&a, "n3").len(), 2, "both updates applied");
    let joined = std::iter::from_fn(|| a.poll_event())
        .filter(|e| matches!(e, Event::MemberJoined { id } if id.name == "n3"))
        .count();
    assert_eq!(joined, 1, "one MemberJoined event");
}

/// Detectors expect heartbeats no faster than the digests a node receives
/// can bring them; a node that receives nothing at all (cut off) must not
/// take that as heartbeats having become rare: it still suspects its peers.
#[test]
fn a_node_cut_off_from_everyone_still_suspects_its_peers() {
    // The smallest digests: about 18 entries, fewer per round than the
    // 150 members, so the expected-gap floor is in force. The heartbeat
    // detector alone: with probing on, a node cut off from everyone is
    // impaired and rightly accuses nobody (tested in proto::detection).
    let config = Config {
        digest_bytes: 256,
        probe: false,
        ..Config::default()
    };
    let mut nodes: Vec<Node> = (1..=150).map(|i| node(i, &[1], config.clone())).collect();
    let mut now = rounds(&mut nodes, Instant::ZERO, 40);
    assert!(
        nodes.iter().all(|n| n.members().len() == 150),
        "the cluster formed"
    );
    let live = |n: &Node| {
        n.members()
            .iter()
            .filter(|m| m.status == Status::Live)
            .count()
    };
    assert_eq!(live(&nodes[0]), 150, "no suspicion before the cut");
    // From now on node 1 hears nothing, and nobody hears it.
    let (cut, rest) = nodes.split_at_mut(1);
    for _ in 0..60 {
        now += Duration::from_secs(1);
        cut[0].handle_timeout(now);
        while cut[0].poll_transmit().is_some() {}
        for n in rest.iter_mut() {
            n.handle_timeout(now);
        }
        settle(rest, now);
    }
    assert_eq!(live(&cut[0]), 1, "only itself is still Live");
    assert!(
        rest.iter()
            .all(|n| n.member("n1").is_some_and(|m| m.status != Status::Live)),
        "and the others no longer count it Live"
    );
}

/// Bytes with this build's version byte that are no envelope.
fn garbage() -> Vec<u8> {
    let mut b = vec![gossip_core::proto::PROTOCOL_VERSION];
    b.extend_from_slice(b"garbage");
    b
}
