//! Handler-level tests of joining and coming back (`proto/node/rejoin.rs`)
//! and of the robustness rules around them: crafted envelopes in, the
//! exact transmits, events and counters out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gossip_core::proto::{
    Config, DigestEntry, Envelope, Event, Instant, KeyUpdate, Message, Node, NodeDelta, NodeId,
    RefuseReason, Status, Transmit, cluster_id,
};

fn addr(i: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + i))
}

fn id(i: u16, generation: u64) -> Arc<NodeId> {
    Arc::new(NodeId::new(format!("n{i}"), addr(i), generation))
}

fn config() -> Config {
    Config {
        grace_period: Duration::from_secs(20),
        interval_jitter: 0.0,
        unreachable_probability: 0.0,
        seed_probability: 0.0,
        ..Config::default()
    }
}

fn node(config: Config, seeds: &[u16]) -> Node {
    Node::new(
        config,
        NodeId::new("n0", addr(0), 1),
        seeds.iter().map(|&s| addr(s)).collect(),
        7,
        Instant::ZERO,
    )
    .expect("valid config")
}

fn envelope(n: &Node, from: Arc<NodeId>, message: Message) -> Envelope {
    Envelope {
        cluster: cluster_id(&n.config().cluster),
        from,
        message,
    }
}

fn syn(digest: Vec<DigestEntry>) -> Message {
    Message::Syn {
        digest,
        known: 2,
        page: None,
        recon: Default::default(),
    }
}

fn entry(id: Arc<NodeId>, heartbeat: u64) -> DigestEntry {
    DigestEntry {
        id,
        heartbeat,
        max_version: 0,
    }
}

fn drain(n: &mut Node) -> (Vec<Transmit>, Vec<Event>) {
    let mut t = Vec::new();
    while let Some(tx) = n.poll_transmit() {
        t.push(tx);
    }
    let mut e = Vec::new();
    while let Some(ev) = n.poll_event() {
        e.push(ev);
    }
    (t, e)
}

fn joined(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::MemberJoined { id } => Some(id.name.clone()),
            _ => None,
        })
        .collect()
}

/// Lets `n` hear from `peers` (one Syn each) and then nothing: after the
/// grace period they are Dead and forgotten. Returns the time then.
fn forget(n: &mut Node, peers: &[Arc<NodeId>]) -> Instant {
    let mut now = Instant::from_micros(1);
    for p in peers {
        let e = envelope(n, p.clone(), syn(vec![entry(p.clone(), 10)]));
        n.handle_message(now, p.addr, e).expect("accepted");
    }
    drain(n);
    for _ in 0..60 {
        now += Duration::from_secs(1);
        n.handle_timeout(now);
        drain(n);
    }
    for p in peers {
        assert!(n.member(&p.name).is_none(), "{} was forgotten", p.name);
    }
    now
}

#[test]
fn one_message_from_a_joiner_is_enough_to_know_it() {
    let mut n = node(config(), &[]);
    let joiner = id(1, 1);
    let e = envelope(&n, joiner.clone(), syn(vec![entry(joiner.clone(), 3)]));
    n.handle_message(Instant::from_micros(1), addr(1), e)
        .expect("accepted");
    let (t, events) = drain(&mut n);
    assert_eq!(joined(&events), ["n1"]);
    let m = n.member("n1").expect("admitted");
    assert_eq!((m.status, m.heartbeat), (Status::Live, 3));
    assert_eq!(t.len(), 1, "one answer");
    assert_eq!(t[0].to, addr(1));
    assert!(matches!(t[0].envelope.message, Message::SynAck { .. }));
}

#[test]
fn a_digest_entry_makes_an_unknown_member_known_at_once() {
    let mut n = node(config(), &[]);
    let relay = id(1, 1);
    let third = id(2, 1);
    let e = envelope(
        &n,
        relay.clone(),
        syn(vec![entry(relay.clone(), 3), entry(third.clone(), 9)]),
    );
    n.handle_message(Instant::from_micros(1), addr(1), e)
        .expect("accepted");
    let (_, events) = drain(&mut n);
    assert_eq!(joined(&events), ["n1", "n2"]);
    assert_eq!(n.member("n2").map(|m| m.heartbeat), Some(9));
    // An entry asking about a member nobody told the sender of admits nothing.
    let ask = envelope(&n, relay, syn(vec![entry(id(3, 1), 0)]));
    n.handle_message(Instant::from_micros(2), addr(1), ask)
        .expect("accepted");
    assert!(n.member("n3").is_none());
}

#[test]
fn a_forgotten_node_comes_back_only_by_talking_for_itself() {
    let mut n = node(config(), &[]);
    let (a, b) = (id(1, 1), id(2, 1));
    let mut now = forget(&mut n, &[a.clone(), b.clone()]);
    let relay = id(3, 1);
    // A stale relay repeats what we forgot: refused, no knock.
    now += Duration::from_millis(1);
    let stale = envelope(
        &n,
        relay.clone(),
        syn(vec![entry(relay.clone(), 1), entry(a.clone(), 10)]),
    );
    n.handle_message(now, relay.addr, stale).expect("accepted");
    let (t, events) = drain(&mut n);
    assert!(n.member("n1").is_none(), "relayed state never re-admits");
    assert_eq!(joined(&events), ["n3"]);
    assert!(t.iter().all(|tx| tx.to != a.addr), "no knock on stale news");
    let refused = n.metrics().refused.forgotten;
    assert!(refused >= 1);
    // A relay showing it moved on makes us knock, once: a one-entry Syn.
    now += Duration::from_millis(1);
    let moved = envelope(
        &n,
        relay.clone(),
        syn(vec![entry(relay.clone(), 2), entry(a.clone(), 50)]),
    );
    n.handle_message(now, relay.addr, moved.clone())
        .expect("accepted");
    let (t, _) = drain(&mut n);
    let knocks: Vec<&Transmit> = t.iter().filter(|tx| tx.to == a.addr).collect();
    assert_eq!(knocks.len(), 1, "one knock");
    assert!(
        matches!(&knocks[0].envelope.message, Message::Syn { digest, page: None, .. } if digest.len() == 1)
    );
    assert!(n.member("n1").is_none(), "still not admitted");
    n.handle_message(now, relay.addr, moved).expect("accepted");
    let (t, _) = drain(&mut n);
    assert!(t.iter().all(|tx| tx.to != a.addr), "not twice in a row");
    assert_eq!(n.metrics().knocks, 1);
    // Its own answer brings it back.
    now += Duration::from_millis(1);
    let own = envelope(&n, a.clone(), syn(vec![entry(a.clone(), 51)]));
    n.handle_message(now, a.addr, own).expect("accepted");
    let (_, events) = drain(&mut n);
    assert_eq!(joined(&events), ["n1"]);
    assert_eq!(
        n.member("n1").map(|m| (m.status, m.heartbeat)),
        Some((Status::Live, 51))
    );
    // An older incarnation than the one forgotten stays out.
    let older = Arc::new(NodeId::new("n2", addr(2), 0));
    let e = envelope(&n, older.clone(), syn(vec![entry(older, 99)]));
    n.handle_message(now, addr(2), e).expect("accepted");
    assert!(n.member("n2").is_none());
}

#[test]
fn a_node_alone_knocks_on_its_seeds_and_the_members_it_knew() {
    let mut n = node(config(), &[9]);
    let peers = [id(1, 1), id(2, 1)];
    let mut now = Instant::from_micros(1);
    for p in &peers {
        let e = envelope(&n, p.clone(), syn(vec![entry(p.clone(), 10)]));
        n.handle_message(now, p.addr, e).expect("accepted");
    }
    drain(&mut n);
    // Both go silent: once they are Dead, every tick knocks on the seed and
    // on both of them (the grace period of 20 s has not passed yet).
    let mut last = Vec::new();
    for _ in 0..15 {
        now += Duration::from_secs(1);
        n.handle_timeout(now);
        let (t, _) = drain(&mut n);
        last = t.iter().map(|tx| tx.to).collect::<Vec<_>>();
    }
    assert_eq!(n.count(Status::Dead), 2);
    last.sort();
    assert_eq!(last, vec![addr(1), addr(2), addr(9)]);
}

#[test]
fn a_name_longer_than_the_limit_is_refused_whole() {
    let mut n = node(config(), &[]);
    let long = Arc::new(NodeId::new("x".repeat(129), addr(1), 1));
    let e = envelope(&n, long.clone(), syn(vec![entry(long.clone(), 1)]));
    assert_eq!(
        n.handle_message(Instant::from_micros(1), addr(1), e),
        Err(RefuseReason::NameTooLong)
    );
    // Also when only a described member has one.
    let ok = id(1, 1);
    let e = envelope(&n, ok.clone(), syn(vec![entry(ok, 1), entry(long, 1)]));
    assert_eq!(
        n.handle_message(Instant::from_micros(2), addr(1), e),
        Err(RefuseReason::NameTooLong)
    );
    assert_eq!(n.metrics().refused.name_too_long, 2);
    assert_eq!(n.member_count(), 1, "nothing admitted");
    let too_long = NodeId::new("y".repeat(200), addr(5), 1);
    assert!(Node::new(config(), too_long, vec![], 1, Instant::ZERO).is_err());
}

#[test]
fn an_update_over_a_limit_is_skipped_and_counted_and_the_rest_applies() {
    let mut n = node(config(), &[]);
    let owner = id(1, 1);
    let up = |key: &str, version: u64, len: usize| KeyUpdate {
        key: key.into(),
        version,
        value: Some(Bytes::from(vec![1u8; len])),
    };
    let big = n.config().max_value_bytes + 1;
    let delta = NodeDelta {
        id: owner.clone(),
        heartbeat: 5,
        left: false,
        floor: 0,
        reset: false,
        gc_version: 0,
        max_version: 3,
        updates: vec![up("a", 1, 4), up("b", 2, big), up("c", 3, 4)],
    };
    let e = envelope(&n, owner, Message::Ack { delta: vec![delta] });
    n.handle_message(Instant::from_micros(1), addr(1), e)
        .expect("accepted");
    assert!(n.get("n1", "a").is_some() && n.get("n1", "c").is_some());
    assert!(n.get("n1", "b").is_none());
    assert_eq!(n.metrics().refused.value_too_large, 1);
    assert_eq!(
        n.member("n1").map(|m| m.max_version),
        Some(3),
        "not stalled behind the refused update"
    );
}

#[test]
fn a_sweep_page_is_answered_even_when_fresh_data_would_fill_the_message() {
    // The responder holds a fresh member with more than a message of data.
    let c = Config {
        max_message_bytes: 4096,
        digest_bytes: 1024,
        max_value_bytes: 512,
        ..config()
    };
    let mut n = node(c.clone(), &[]);
    let busy = id(1, 1);
    let updates: Vec<KeyUpdate> = (1..=20)
        .map(|v| KeyUpdate {
            key: format!("k{v}"),
            version: v,
            value: Some(Bytes::from(vec![0u8; 400])),
        })
        .collect();
    let delta = NodeDelta {
        id: busy.clone(),
        heartbeat: 5,
        left: false,
        floor: 0,
        reset: false,
        gc_version: 0,
        max_version: 20,
        updates,
    };
    let now = Instant::from_micros(1);
    let e = envelope(&n, busy, Message::Ack { delta: vec![delta] });
    n.handle_message(now, addr(1), e).expect("accepted");
    for i in 2..40 {
        let p = id(i, 1);
        let e = envelope(&n, p.clone(), syn(vec![entry(p, 1)]));
        n.handle_message(now, addr(i), e).expect("accepted");
    }
    drain(&mut n);
    // A joiner asks for the first page of members.
    let joiner = id(50, 1);
    let ask = envelope(
        &n,
        joiner.clone(),
        Message::Syn {
            digest: vec![entry(joiner, 1)],
            known: 1,
            page: Some(0),
            recon: Default::default(),
        },
    );
    n.handle_message(now, addr(50), ask).expect("accepted");
    let (t, _) = drain(&mut n);
    let Some(Message::SynAck { next_page, .. }) = t
        .iter()
        .find(|tx| tx.to == addr(50))
        .map(|tx| tx.envelope.message.clone())
    else {
        panic!("the page request is answered");
    };
    assert!(
        next_page.is_some_and(|p| p > 0),
        "the page moved on: {next_page:?}"
    );
}
