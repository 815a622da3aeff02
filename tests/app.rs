//! The application's side of a node (issue 16), over the in-memory
//! network: filtered subscriptions, watches, lag reports, cheap queries,
//! metadata at join, seeds changed at run time.

use std::time::Duration;

use actix::Addr;
use bytes::Bytes;
use gossip_core::actor::{
    Filter, GetMetrics, GossipNode, NodeBuilder, Set, Subscribe, Subscription, Update,
};
use gossip_core::proto::{Config, Event};
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
    let seed = gossip_core::Transport::local_addr(&ta);
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
