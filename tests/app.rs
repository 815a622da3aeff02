//! The application's side of a node (issue 16), over the in-memory
//! network: filtered subscriptions, watches, lag reports, cheap queries,
//! metadata at join, seeds changed at run time, broadcasts.
//!
//! Every test runs on paused tokio time: the node's clock, its timers and
//! the network's latencies are all tokio time, so the runtime jumps to the
//! next deadline whenever everything is idle. Runs take no wall-clock time
//! for gossip intervals and TTLs, and deadlines are virtual seconds.

use std::time::Duration;

use actix::Addr;
use bytes::Bytes;
use futures::StreamExt;
use gossip_core::Transport;
use gossip_core::actor::{
    Filter, GetId, GetKeys, GetMembers, GetMetrics, GetValues, GossipNode, NodeBuilder, Set,
    SetSeeds, Subscribe, Subscription, Update,
};
use gossip_core::proto::{Config, Event, Instant, Node, NodeId, Status};
use gossip_mem::net::MemNetwork;

/// Deadline for one condition (met within a second normally; the margin
/// absorbs a loaded machine).
const DEADLINE: Duration = Duration::from_secs(30);

fn config() -> Config {
    Config {
        cluster: "app".to_owned(),
        ..Config::local()
    }
}

/// Polls `cond` until it holds, failing the test after [`DEADLINE`].
async fn wait_until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !cond().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The next update, failing the test after [`DEADLINE`].
async fn next(sub: &mut Subscription) -> Update {
    tokio::time::timeout(DEADLINE, sub.recv())
        .await
        .expect("an update within the deadline")
        .expect("the node still runs")
}

/// The next key event's key, skipping anything else.
async fn next_key(sub: &mut Subscription) -> String {
    loop {
        if let Update::Event(Event::KeyChanged { key, .. }) = next(sub).await {
            return key;
        }
    }
}

/// Node `a` alone, and `b` joined through it.
fn pair(net: &MemNetwork) -> (Addr<GossipNode>, Addr<GossipNode>) {
    let ta = net.endpoint_as("a");
    let seed = ta.local_addr();
    let a = NodeBuilder::new("a")
        .config(config())
        .start(Box::new(ta))
        .expect("a starts");
    let b = NodeBuilder::new("b")
        .config(config())
        .seeds(vec![seed])
        .start(Box::new(net.endpoint_as("b")))
        .expect("b starts");
    (a, b)
}

async fn set(node: &Addr<GossipNode>, key: &str, value: &str) {
    node.send(Set::new(key, Bytes::copy_from_slice(value.as_bytes())))
        .await
        .expect("node answers")
        .expect("write accepted");
}

#[actix_rt::test]
async fn a_prefix_subscription_sees_only_its_keys() {
    tokio::time::pause();
    let net = MemNetwork::new(1);
    let (a, b) = pair(&net);
    let mut sub = a
        .send(Subscribe::new(Filter::keys("service/").owner("b")))
        .await
        .expect("node answers");
    set(&b, "other", "x").await;
    set(&b, "service/port", "80").await;
    set(&b, "other2", "y").await;
    set(&b, "service/last", "z").await;
    // Updates of one owner apply in version order: had "other" or "other2"
    // passed the filter, they would come before the keys after them.
    assert_eq!(next_key(&mut sub).await, "service/port");
    assert_eq!(next_key(&mut sub).await, "service/last");
    assert_eq!(sub.try_recv(), None, "nothing else was queued");
}

#[actix_rt::test]
async fn a_watch_starts_with_the_current_state() {
    tokio::time::pause();
    let net = MemNetwork::new(2);
    let (a, b) = pair(&net);
    set(&b, "service/port", "80").await;
    set(&b, "unrelated", "x").await;
    let mut probe = a
        .send(Subscribe::new(Filter::keys("unrelated")))
        .await
        .expect("node answers");
    // b's writes apply in version order: once "unrelated" is here, so is the port.
    next_key(&mut probe).await;
    let mut watch = a
        .send(Subscribe::new(Filter::keys("service/")).watch())
        .await
        .expect("node answers");
    let Update::Current(current) = next(&mut watch).await else {
        panic!("a watch starts with the current state");
    };
    assert!(current.members.is_empty(), "a key filter lists no members");
    let keys: Vec<(&str, &str, &[u8])> = current
        .keys
        .iter()
        .map(|k| (k.owner.name.as_str(), k.key.as_str(), &k.value.value[..]))
        .collect();
    assert_eq!(keys, [("b", "service/port", &b"80"[..])]);
    set(&b, "service/port", "81").await;
    assert_eq!(next_key(&mut watch).await, "service/port", "then changes");

    let mut members = a
        .send(Subscribe::new(Filter::members()).watch())
        .await
        .expect("node answers");
    let Update::Current(current) = next(&mut members).await else {
        panic!("a watch starts with the current state");
    };
    let names: Vec<&str> = current.members.iter().map(|m| m.id.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert!(current.keys.is_empty(), "a member filter lists no keys");
}

#[actix_rt::test]
async fn dropping_the_handle_ends_the_subscription() {
    tokio::time::pause();
    let net = MemNetwork::new(3);
    let (a, b) = pair(&net);
    let sub = a.send(Subscribe::all()).await.expect("node answers");
    let subscribers = async || {
        a.send(GetMetrics)
            .await
            .expect("node answers")
            .actor
            .subscribers
    };
    assert_eq!(subscribers().await, 1);
    drop(sub);
    assert_eq!(subscribers().await, 0, "a dropped handle is not counted");
    set(&b, "k", "v").await;
    wait_until("a has heard b's key", async || {
        a.send(gossip_core::actor::Get::new("b", "k"))
            .await
            .expect("node answers")
            .is_some()
    })
    .await;
    let m = a.send(GetMetrics).await.expect("node answers").actor;
    assert_eq!(
        m.events_forwarded, 0,
        "nothing was queued for the dropped handle"
    );
}

#[actix_rt::test]
async fn a_slow_subscriber_gets_one_lagged_with_the_count() {
    tokio::time::pause();
    let net = MemNetwork::new(4);
    let (a, b) = pair(&net);
    let mut sub = a
        .send(Subscribe::new(Filter::keys("k")).capacity(2))
        .await
        .expect("node answers");
    for i in 0..10 {
        set(&b, &format!("k{i}"), "v").await;
    }
    wait_until("a holds all ten keys", async || {
        a.send(gossip_core::actor::Get::new("b", "k9"))
            .await
            .expect("node answers")
            .is_some()
    })
    .await;
    let dropped = a
        .send(GetMetrics)
        .await
        .expect("node answers")
        .actor
        .events_dropped;
    assert_eq!(dropped, 8, "two fit, eight did not");
    assert_eq!(next_key(&mut sub).await, "k0");
    assert_eq!(next_key(&mut sub).await, "k1");
    assert_eq!(sub.try_recv(), None);
    set(&b, "k-after", "v").await;
    assert_eq!(next(&mut sub).await, Update::Lagged { missed: 8 });
    assert_eq!(next_key(&mut sub).await, "k-after");
}

#[actix_rt::test]
async fn cheap_queries_answer_without_a_snapshot() {
    tokio::time::pause();
    let net = MemNetwork::new(5);
    let (a, b) = pair(&net);
    set(&a, "service/port", "80").await;
    set(&b, "service/port", "81").await;
    set(&b, "role", "db").await;
    wait_until("a hears b's port", async || {
        a.send(GetValues::new("service/port"))
            .await
            .expect("node answers")
            .len()
            == 2
    })
    .await;
    let ports = a
        .send(GetValues::new("service/port"))
        .await
        .expect("node answers");
    let ports: Vec<(&str, &[u8])> = ports
        .iter()
        .map(|(owner, v)| (owner.as_str(), &v.value[..]))
        .collect();
    assert_eq!(ports, [("a", &b"80"[..]), ("b", &b"81"[..])]);

    let me = a.send(GetId).await.expect("node answers");
    assert_eq!(me.name, "a");
    let members = a.send(GetMembers::all()).await.expect("node answers");
    let view: Vec<(&str, Status)> = members
        .iter()
        .map(|m| (m.id.name.as_str(), m.status))
        .collect();
    assert_eq!(view, [("a", Status::Live), ("b", Status::Live)]);
    let dead = a
        .send(GetMembers::with_status(Status::Dead))
        .await
        .expect("node answers");
    assert!(dead.is_empty());

    wait_until("a holds both of b's keys", async || {
        a.send(GetKeys::new("b"))
            .await
            .expect("node answers")
            .is_some_and(|k| k.len() == 2)
    })
    .await;
    let keys = a
        .send(GetKeys::new("b"))
        .await
        .expect("node answers")
        .expect("b is known");
    let names: Vec<&str> = keys.keys().map(String::as_str).collect();
    assert_eq!(names, ["role", "service/port"]);
    assert_eq!(
        a.send(GetKeys::new("nobody")).await.expect("node answers"),
        None
    );
}

/// The peer here is a pure core fed by hand from a raw endpoint, so the
/// test sees exactly what the peer knows after each message: the joiner
/// must be admitted with its initial keys by the very first message.
#[actix_rt::test]
async fn initial_keys_arrive_with_the_first_message() {
    tokio::time::pause();
    let net = MemNetwork::new(6);
    let mut raw = net.endpoint_as("s");
    let seed = raw.local_addr();
    let mut incoming = raw.incoming();
    let _joiner = NodeBuilder::new("j")
        .config(config())
        .key("role", "db")
        .keys([("service/port", "5432")])
        .seeds(vec![seed])
        .start(Box::new(net.endpoint_as("j")))
        .expect("j starts");
    let mut peer = Node::new(
        config(),
        NodeId::new("s", seed, 1),
        vec![],
        7,
        Instant::ZERO,
    )
    .expect("valid config");
    let first = tokio::time::timeout(DEADLINE, incoming.next())
        .await
        .expect("the joiner knocks within the deadline")
        .expect("the endpoint is open");
    peer.handle_authenticated(
        Instant::ZERO,
        first.addr,
        first.peer.as_deref(),
        &first.bytes,
    )
    .expect("the peer accepts the joiner's message");
    let events: Vec<Event> = std::iter::from_fn(|| peer.poll_event()).collect();
    let joined = events
        .iter()
        .position(|e| matches!(e, Event::MemberJoined { id } if id.name == "j"))
        .expect("the first message admits the joiner");
    let keys: Vec<&str> = events[joined..]
        .iter()
        .filter_map(|e| match e {
            Event::KeyChanged { key, .. } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(keys, ["role", "service/port"], "with its keys: {events:?}");
    assert_eq!(
        peer.get("j", "role").map(|(v, _)| v.clone()),
        Some(Bytes::from_static(b"db"))
    );
}

#[actix_rt::test]
async fn an_initial_key_over_the_limits_refuses_to_start() {
    tokio::time::pause();
    let net = MemNetwork::new(7);
    let long = "k".repeat(10_000);
    let refused = NodeBuilder::new("j")
        .config(config())
        .key(long, "v")
        .start(Box::new(net.endpoint_as("j")));
    assert!(matches!(
        refused,
        Err(gossip_core::actor::StartError::Key { .. })
    ));
}

#[actix_rt::test]
async fn seeds_changed_while_running_are_joined_through() {
    tokio::time::pause();
    let net = MemNetwork::new(8);
    let ta = net.endpoint_as("a");
    let a_addr = ta.local_addr();
    let a = NodeBuilder::new("a")
        .config(config())
        .start(Box::new(ta))
        .expect("a starts");
    // A seed nobody listens on: c stays alone until told better.
    let nowhere = net.endpoint_as("gone").local_addr();
    let c = NodeBuilder::new("c")
        .config(config())
        .seeds(vec![nowhere])
        .start(Box::new(net.endpoint_as("c")))
        .expect("c starts");
    c.send(SetSeeds {
        seeds: vec![a_addr],
    })
    .await
    .expect("node answers");
    wait_until("a and c see each other live", async || {
        let live = |m: Vec<gossip_core::proto::MemberInfo>| m.len() == 2;
        live(
            a.send(GetMembers::with_status(Status::Live))
                .await
                .expect("node answers"),
        ) && live(
            c.send(GetMembers::with_status(Status::Live))
                .await
                .expect("node answers"),
        )
    })
    .await;
}

#[actix_rt::test]
async fn a_broadcast_reaches_every_node_once_and_expires() {
    tokio::time::pause();
    use gossip_core::actor::{Broadcast, Get, Snapshot, UserEvent};
    let net = MemNetwork::new(9);
    let (a, b) = pair(&net);
    let seed = a.send(GetId).await.expect("node answers").addr;
    let c = NodeBuilder::new("c")
        .config(config())
        .seeds(vec![seed])
        .start(Box::new(net.endpoint_as("c")))
        .expect("c starts");
    let nodes = [a.clone(), b.clone(), c.clone()];
    for n in &nodes {
        wait_until("all three are live", async || {
            n.send(GetMembers::with_status(Status::Live))
                .await
                .expect("node answers")
                .len()
                == 3
        })
        .await;
    }
    let mut subs = Vec::new();
    for n in &nodes {
        subs.push(
            n.send(Subscribe::new(Filter::broadcasts("deploy")))
                .await
                .expect("node answers"),
        );
    }
    let mut everything = b.send(Subscribe::all()).await.expect("node answers");
    let keys_before = b.send(GetMetrics).await.expect("node answers").gauges.keys;
    let ttl = Duration::from_millis(300);
    a.send(Broadcast::new("other", "x").with_ttl(ttl))
        .await
        .expect("node answers")
        .expect("accepted");
    let seq = a
        .send(Broadcast::new("deploy", "v2").with_ttl(ttl))
        .await
        .expect("node answers")
        .expect("accepted");
    assert_eq!(seq, 1);
    for sub in &mut subs {
        // "other" was sent first: had it passed the filter, it would come first.
        let Update::UserEvent(UserEvent {
            sender,
            topic,
            payload,
            ..
        }) = next(sub).await
        else {
            panic!("a broadcast")
        };
        assert_eq!((sender.name.as_str(), topic.as_str()), ("a", "deploy"));
        assert_eq!(payload, Bytes::from_static(b"v2"));
    }
    let generation = a.send(GetId).await.expect("node answers").generation;
    let key = gossip_core::proto::broadcast::key(generation, 1, "deploy");
    let held = b
        .send(GetKeys::new("a"))
        .await
        .expect("node answers")
        .expect("a is known");
    assert!(held.is_empty(), "broadcasts are not keys: {held:?}");
    // Nor do they show through any other key query, while b holds them.
    let gauges = b.send(GetMetrics).await.expect("node answers").gauges;
    assert_eq!(gauges.keys, keys_before + 2, "b holds both broadcasts");
    let got = b
        .send(Get::new("a", key.clone()))
        .await
        .expect("node answers");
    assert_eq!(got, None, "a broadcast is not a key");
    let values = b
        .send(GetValues::new(key.clone()))
        .await
        .expect("node answers");
    assert!(values.is_empty(), "{values:?}");
    let snapshot = b.send(Snapshot).await.expect("node answers");
    assert!(
        snapshot
            .keys
            .values()
            .flat_map(|k| k.keys())
            .all(|k| !k.starts_with("__broadcast/")),
        "{:?}",
        snapshot.keys
    );
    // The reserved prefix is not the application's to write.
    let forged = b
        .send(Set::new(key.clone(), Bytes::from_static(b"forged")))
        .await
        .expect("node answers");
    assert_eq!(forged, Err(gossip_core::proto::WriteError::ReservedKey));
    let deleted = b
        .send(gossip_core::actor::Delete::new(key.clone()))
        .await
        .expect("node answers");
    assert_eq!(deleted, Err(gossip_core::proto::WriteError::ReservedKey));
    wait_until("the broadcasts expired on b", async || {
        b.send(GetMetrics).await.expect("node answers").gauges.keys == keys_before
    })
    .await;
    for sub in &mut subs {
        assert_eq!(sub.try_recv(), None, "delivered once, expiry is not news");
    }
    // The unfiltered subscriber saw both broadcasts and no key events for them.
    let mut topics = Vec::new();
    while let Some(u) = everything.try_recv() {
        match u {
            Update::UserEvent(e) => topics.push(e.topic),
            Update::Event(Event::KeyChanged { key, .. } | Event::KeyDeleted { key, .. }) => {
                panic!("broadcast key {key} leaked as a key event")
            }
            _ => {}
        }
    }
    assert_eq!(topics, ["other", "deploy"]);
}
