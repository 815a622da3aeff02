//! The integration suite, written once and generic over the transport.
//!
//! Each scenario is an `async fn` taking a [`Harness`] — a factory of
//! transports plus the network faults it can inject — and runs a small
//! cluster of [`GossipNode`] actors on the current actix system. A test file
//! per transport implements `Harness` and calls the scenarios:
//!
//! ```ignore
//! mod suite;
//! struct Quic { /* ... */ }
//! impl suite::Harness for Quic { /* ... */ }
//! #[actix_rt::test]
//! async fn key_spreads() {
//!     suite::key_spreads(&Quic::new()).await;
//! }
//! ```
//!
//! No fixed sleeps: every scenario waits for a condition with a generous
//! deadline ([`wait_until`]) and fails with a message saying what it waited
//! for. Clusters are small (5–6 nodes) and use [`Config::local`] (100 ms
//! rounds), so each scenario takes a second or a few.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use gossip_core::Transport;
use gossip_core::actor::{
    Delete, Get, GetMember, GetMetrics, GossipNode, Leave, LeaveOutcome, NodeBuilder, Set,
    Snapshot, Stop, Subscribe, Update,
};
use gossip_core::proto::{Config, Event, Status, WriteError};

/// Deadline for one condition. Scenarios normally meet theirs within a few
/// seconds; the margin absorbs a loaded CI machine.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Nodes per scenario cluster.
pub const NODES: usize = 5;

/// What the suite needs from a transport under test.
pub trait Harness {
    /// A transport bound to a fresh address, authenticated as node `name`.
    fn transport(&self, name: &str) -> impl Future<Output = Box<dyn Transport>>;

    /// A transport for node `name` bound to `addr` again, after the node
    /// that held it was stopped (a restart on the same address).
    fn rebind(&self, name: &str, addr: SocketAddr) -> impl Future<Output = Box<dyn Transport>>;

    /// Splits the network: endpoints of `groups[i]` only reach each other.
    /// Returns `false` if this transport cannot partition (the partition
    /// scenario is then skipped).
    fn partition(&self, groups: &[Vec<SocketAddr>]) -> bool {
        let _ = groups;
        false
    }

    /// Ends every partition.
    fn heal(&self) {}

    /// Cuts the endpoint at `addr` off abruptly, before its node is stopped
    /// (a process crash sends no goodbye). Optional: stopping the node
    /// (closing its transport) follows either way.
    fn crash(&self, addr: SocketAddr) {
        let _ = addr;
    }

    /// Protocol settings for the scenarios.
    fn config(&self) -> Config {
        Config::local()
    }
}

/// Polls `cond` until it holds, failing the test after `deadline`.
pub async fn wait_until(deadline: Duration, what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let start = tokio::time::Instant::now();
    loop {
        if cond().await {
            return;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One node of a scenario cluster.
#[derive(Clone)]
pub struct Member {
    /// Its name.
    pub name: String,
    /// Its gossip address.
    pub addr: SocketAddr,
    /// The actor.
    pub node: Addr<GossipNode>,
    /// Whether it was stopped.
    pub stopped: bool,
}

/// A small cluster started through a harness.
pub struct Cluster<'h, H: Harness> {
    h: &'h H,
    config: Config,
    /// The nodes, in start order; node 0 is the seed.
    pub members: Vec<Member>,
}

impl<'h, H: Harness> Cluster<'h, H> {
    /// Starts `n` nodes named `n0..`; node 0 is every other node's seed.
    pub async fn start(h: &'h H, cluster: &str, n: usize) -> Self {
        let config = Config {
            cluster: cluster.to_owned(),
            ..h.config()
        };
        let mut c = Cluster {
            h,
            config,
            members: Vec::new(),
        };
        for i in 0..n {
            let name = format!("n{i}");
            let transport = h.transport(&name).await;
            c.spawn(name, 1, transport);
        }
        c
    }

    fn spawn(&mut self, name: String, generation: u64, transport: Box<dyn Transport>) -> usize {
        let addr = transport.local_addr();
        let seeds = self
            .members
            .first()
            .map(|m| vec![m.addr])
            .unwrap_or_default();
        let seed = 1000 * generation + self.members.len() as u64;
        let node = NodeBuilder::new(name.clone())
            .config(self.config.clone())
            .seeds(seeds)
            .generation(generation)
            .rng_seed(seed)
            .start(transport)
            .expect("node starts");
        self.members.push(Member {
            name,
            addr,
            node,
            stopped: false,
        });
        self.members.len() - 1
    }

    /// The running members other than `except`.
    pub fn others(&self, except: usize) -> Vec<Member> {
        self.members
            .iter()
            .enumerate()
            .filter(|(i, m)| *i != except && !m.stopped)
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// The running members.
    pub fn running(&self) -> Vec<Member> {
        self.members
            .iter()
            .filter(|m| !m.stopped)
            .cloned()
            .collect()
    }

    /// Waits until every running node sees `live` members Live (itself included).
    pub async fn wait_converged(&self, live: usize) {
        let nodes = self.running();
        wait_until(
            DEADLINE,
            &format!("every node sees {live} live members"),
            async || {
                for m in &nodes {
                    if live_count(&m.node).await != Some(live) {
                        return false;
                    }
                }
                true
            },
        )
        .await;
    }

    /// Stops node `i` (closing its transport).
    pub async fn stop(&mut self, i: usize) {
        let m = &mut self.members[i];
        m.node.send(Stop).await.expect("node answers stop");
        m.stopped = true;
    }

    /// Stops every running node.
    pub async fn shutdown(mut self) {
        for i in 0..self.members.len() {
            if !self.members[i].stopped {
                self.stop(i).await;
            }
        }
    }
}

/// Live members a node sees (itself included); `None` if it does not answer.
pub async fn live_count(node: &Addr<GossipNode>) -> Option<usize> {
    node.send(GetMetrics).await.ok().map(|m| m.gauges.live)
}

/// `name`'s status as `node` sees it.
pub async fn status_of(node: &Addr<GossipNode>, name: &str) -> Option<Status> {
    node.send(GetMember::new(name))
        .await
        .ok()
        .flatten()
        .map(|m| m.status)
}

/// `owner`'s `key` as `node` holds it.
pub async fn value_of(node: &Addr<GossipNode>, owner: &str, key: &str) -> Option<Bytes> {
    node.send(Get::new(owner, key))
        .await
        .ok()
        .flatten()
        .map(|v| v.value)
}

/// Waits until every node of `nodes` sees `name` with a status in `want`.
pub async fn wait_status(nodes: &[Member], name: &str, want: &[Status]) {
    wait_until(
        DEADLINE,
        &format!("every node sees {name} as {want:?}"),
        async || {
            for m in nodes {
                match status_of(&m.node, name).await {
                    Some(s) if want.contains(&s) => {}
                    _ => return false,
                }
            }
            true
        },
    )
    .await;
}

/// Waits until every node of `nodes` holds `owner`'s `key` as `value`
/// (`None`: holds no value).
pub async fn wait_value(nodes: &[Member], owner: &str, key: &str, value: Option<&Bytes>) {
    wait_until(
        DEADLINE,
        &format!("every node holds {owner}/{key} = {value:?}"),
        async || {
            for m in nodes {
                if value_of(&m.node, owner, key).await.as_ref() != value {
                    return false;
                }
            }
            true
        },
    )
    .await;
}

/// Records the events it is subscribed to.
pub struct Collector {
    /// Events received so far.
    pub events: Arc<Mutex<Vec<Event>>>,
}

impl Actor for Collector {
    type Context = Context<Self>;
}

impl StreamHandler<Update> for Collector {
    fn handle(&mut self, update: Update, _ctx: &mut Self::Context) {
        if let Update::Event(event) = update {
            self.events.lock().expect("collector lock").push(event);
        }
    }
}

/// Subscribes a new [`Collector`] to `node`; returns its event log.
pub async fn collect(node: &Addr<GossipNode>) -> Arc<Mutex<Vec<Event>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sub = node
        .send(Subscribe::all())
        .await
        .expect("node answers subscribe");
    let log = events.clone();
    Collector::create(move |ctx| {
        Collector::add_stream(sub, ctx);
        Collector { events: log }
    });
    events
}

fn has_event(log: &Arc<Mutex<Vec<Event>>>, pred: impl Fn(&Event) -> bool) -> bool {
    log.lock().expect("collector lock").iter().any(pred)
}

// ----- scenarios ----------------------------------------------------------

/// Nodes that know only the seed discover each other and all see each other
/// Live; each has heard from a peer and counted traffic.
pub async fn join_via_seeds<H: Harness>(h: &H) {
    let c = Cluster::start(h, "suite-join", NODES).await;
    c.wait_converged(NODES).await;
    for m in c.running() {
        let snap = m.node.send(Snapshot).await.expect("snapshot");
        assert!(snap.joined, "{} has heard from a peer", m.name);
        assert_eq!(snap.members.len(), NODES);
        assert!(snap.members.iter().all(|i| i.status == Status::Live));
        let metrics = m.node.send(GetMetrics).await.expect("metrics");
        assert!(
            metrics.proto.messages_in > 0
                && metrics.actor.sent > 0
                && metrics.actor.timer_fires > 0
        );
        assert_eq!(
            metrics.proto.refused.total(),
            0,
            "nothing refused on a clean network"
        );
    }
    c.shutdown().await;
}

/// A key written on one node reaches every node, with subscribers told;
/// bad writes come back as errors.
pub async fn key_spreads<H: Harness>(h: &H) {
    let c = Cluster::start(h, "suite-spread", NODES).await;
    c.wait_converged(NODES).await;
    let log = collect(&c.members[1].node).await;
    let writer = &c.members[2];
    let version = writer
        .node
        .send(Set::new("color", "blue"))
        .await
        .expect("node answers")
        .expect("write accepted");
    assert!(version > 0);
    let blue = Bytes::from_static(b"blue");
    wait_value(&c.running(), "n2", "color", Some(&blue)).await;
    wait_until(DEADLINE, "the subscriber hears of the key", async || {
        has_event(&log, |e| matches!(e, Event::KeyChanged { owner, key, .. } if owner.name == "n2" && key == "color"))
    })
    .await;

    let snap = c.members[4].node.send(Snapshot).await.expect("snapshot");
    assert_eq!(
        snap.keys
            .get("n2")
            .and_then(|k| k.get("color"))
            .map(|v| v.value.clone()),
        Some(blue)
    );

    let long = "k".repeat(10_000);
    let refused = writer
        .node
        .send(Set::new(long, "x"))
        .await
        .expect("node answers");
    assert!(
        matches!(refused, Err(WriteError::KeyTooLong { .. })),
        "{refused:?}"
    );
    let ttl = writer
        .node
        .send(Set::with_ttl("short", "lived", Duration::from_millis(300)))
        .await
        .expect("answers");
    assert!(ttl.is_ok());
    // The owner expires the key by itself; the tombstone then spreads.
    wait_value(std::slice::from_ref(writer), "n2", "short", None).await;
    wait_value(&c.running(), "n2", "short", None).await;
    c.shutdown().await;
}

/// A delete (tombstone) spreads like a write.
pub async fn delete_spreads<H: Harness>(h: &H) {
    let c = Cluster::start(h, "suite-delete", NODES).await;
    c.wait_converged(NODES).await;
    let writer = &c.members[3].node;
    writer
        .send(Set::new("doomed", "x"))
        .await
        .expect("answers")
        .expect("accepted");
    wait_value(
        &c.running(),
        "n3",
        "doomed",
        Some(&Bytes::from_static(b"x")),
    )
    .await;
    let v = writer
        .send(Delete::new("doomed"))
        .await
        .expect("answers")
        .expect("accepted");
    assert!(v.is_some(), "the key held a value");
    assert_eq!(
        writer
            .send(Delete::new("never-set"))
            .await
            .expect("answers"),
        Ok(None)
    );
    wait_value(&c.running(), "n3", "doomed", None).await;
    c.shutdown().await;
}

/// A node that dies without a word is suspected, then declared Dead by all.
pub async fn crash_detected<H: Harness>(h: &H) {
    let mut c = Cluster::start(h, "suite-crash", NODES).await;
    c.wait_converged(NODES).await;
    let victim = NODES - 1;
    let logs = collect(&c.members[0].node).await;
    h.crash(c.members[victim].addr);
    c.stop(victim).await;
    let others = c.others(victim);
    wait_status(&others, "n4", &[Status::Dead]).await;
    wait_until(DEADLINE, "the subscriber hears n4 was suspected, then dead", async || {
        let to = |s: Status| move |e: &Event| matches!(e, Event::MemberStatus { id, to, .. } if id.name == "n4" && *to == s);
        has_event(&logs, to(Status::Suspect)) && has_event(&logs, to(Status::Dead))
    })
    .await;
    let m = c.members[0].node.send(GetMetrics).await.expect("metrics");
    assert!(m.proto.convictions >= 1 && m.gauges.dead == 1);
    c.shutdown().await;
}

/// A graceful leave is confirmed to the leaver and seen as Left by all.
pub async fn leave_seen<H: Harness>(h: &H) {
    let mut c = Cluster::start(h, "suite-leave", NODES).await;
    c.wait_converged(NODES).await;
    let leaver = NODES - 1;
    // A peer holding the leave echoes the leaver's entry back: confirmed.
    let outcome = c.members[leaver]
        .node
        .send(Leave {
            timeout: Duration::from_secs(10),
        })
        .await
        .expect("answers");
    assert_eq!(outcome, LeaveOutcome::Announced);
    let refused = c.members[leaver]
        .node
        .send(Set::new("late", "x"))
        .await
        .expect("answers");
    assert_eq!(refused, Err(WriteError::Left));
    c.stop(leaver).await;
    wait_status(&c.others(leaver), "n4", &[Status::Left]).await;
    c.shutdown().await;
}

/// A node restarted on its address with a higher generation replaces the
/// old incarnation everywhere: old keys gone, new ones spread.
pub async fn restart_supersedes<H: Harness>(h: &H) {
    let mut c = Cluster::start(h, "suite-restart", NODES).await;
    c.wait_converged(NODES).await;
    let r = NODES - 1;
    c.members[r]
        .node
        .send(Set::new("old", "1"))
        .await
        .expect("answers")
        .expect("accepted");
    wait_value(&c.running(), "n4", "old", Some(&Bytes::from_static(b"1"))).await;
    let addr = c.members[r].addr;
    c.stop(r).await;

    let transport = h.rebind("n4", addr).await;
    let i = c.spawn("n4".to_owned(), 2, transport);
    c.members[i]
        .node
        .send(Set::new("new", "2"))
        .await
        .expect("answers")
        .expect("accepted");
    let others = c.others(i);
    wait_until(
        DEADLINE,
        "every node knows n4's second generation",
        async || {
            for m in &others {
                match m.node.send(GetMember::new("n4")).await {
                    Ok(Some(info)) if info.id.generation == 2 && info.status == Status::Live => {}
                    _ => return false,
                }
            }
            true
        },
    )
    .await;
    wait_value(&others, "n4", "new", Some(&Bytes::from_static(b"2"))).await;
    wait_value(&others, "n4", "old", None).await;
    c.shutdown().await;
}

/// Two halves cut off from each other declare the other half failed, then
/// find each other again once the partition heals.
pub async fn partition_heals<H: Harness>(h: &H) {
    let n = 6;
    let c = Cluster::start(h, "suite-partition", n).await;
    c.wait_converged(n).await;
    let (a, b): (Vec<Member>, Vec<Member>) = c.running().into_iter().partition(|m| {
        let i: usize = m.name[1..].parse().expect("names are n<i>");
        i < n / 2
    });
    if !h.partition(&[
        a.iter().map(|m| m.addr).collect(),
        b.iter().map(|m| m.addr).collect(),
    ]) {
        eprintln!("partition_heals skipped: this transport cannot partition");
        c.shutdown().await;
        return;
    }
    let down = [Status::Suspect, Status::Dead];
    for (side, other) in [(&a, &b), (&b, &a)] {
        for m in other {
            wait_status(side, &m.name, &down).await;
        }
    }
    h.heal();
    c.wait_converged(n).await;
    c.shutdown().await;
}

/// Nodes started on different Arbiters (threads) form one cluster.
pub async fn spread_over_arbiters<H: Harness>(h: &H) {
    let arbiters = [Arbiter::new(), Arbiter::new()];
    let config = Config {
        cluster: "suite-arbiters".to_owned(),
        ..h.config()
    };
    let mut nodes = Vec::new();
    let mut seed = None;
    for i in 0..NODES {
        let transport = h.transport(&format!("n{i}")).await;
        let addr = transport.local_addr();
        let node = NodeBuilder::new(format!("n{i}"))
            .config(config.clone())
            .seeds(seed.into_iter().collect())
            .generation(1)
            .rng_seed(i as u64)
            .start_in(&arbiters[i % arbiters.len()].handle(), transport)
            .expect("node starts");
        seed = seed.or(Some(addr));
        nodes.push(node);
    }
    nodes[0]
        .send(Set::new("k", "v"))
        .await
        .expect("answers")
        .expect("accepted");
    wait_until(
        DEADLINE,
        "nodes on two arbiters converge and share a key",
        async || {
            for node in &nodes {
                if live_count(node).await != Some(NODES)
                    || value_of(node, "n0", "k").await.is_none()
                {
                    return false;
                }
            }
            true
        },
    )
    .await;
    for node in &nodes {
        node.send(Stop).await.expect("node answers stop");
    }
    for a in arbiters {
        a.stop();
    }
}
