//! Embedding a gossip node in an application: the walk-through behind the
//! README's "Embedding" section. Three nodes on the in-memory network:
//!
//! 1. install a `metrics` recorder (Prometheus text here) before any node
//!    starts, so every node reports from its first round;
//! 2. start nodes with metadata (`NodeBuilder::key`): peers admit each
//!    node together with its keys;
//! 3. watch the keys under `service/` on one node: the current state
//!    first, then each change, with a `Lagged` report if it fell behind;
//! 4. ask cheap questions: who am I, who is live, what does each node say
//!    about `service/port`, what keys does one node have;
//! 5. point a node that started with a wrong seed at the right one
//!    (`SetSeeds`);
//! 6. broadcast a message to every node (`Broadcast`);
//! 7. read the metrics, leave and stop.
//!
//! `cargo run --example embed`. It waits for conditions, each with a
//! deadline, never for fixed times, and finishes in well under a second.

use std::collections::BTreeMap;
use std::time::Duration;

use actix::Addr;
use gossip_core::Transport;
use gossip_core::actor::{
    Broadcast, Filter, GetId, GetKeys, GetMembers, GetValues, GossipNode, Leave, NodeBuilder, Set,
    SetSeeds, Stop, Subscribe, Subscription, Update, Value,
};
use gossip_core::proto::{Config, Event, Status};
use gossip_mem::net::MemNetwork;
use metrics_exporter_prometheus::PrometheusBuilder;

/// Longest wait for any one condition.
const DEADLINE: Duration = Duration::from_secs(10);

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    actix::System::new().block_on(run())
}

async fn run() -> Result<(), Error> {
    // 1. Metrics: any `metrics` recorder works; Prometheus text here.
    let prometheus = PrometheusBuilder::new().install_recorder()?;

    // 2. Nodes with metadata. Each node's keys are written before it sends
    //    anything, and its first knock on a seed carries them.
    let net = MemNetwork::new(7);
    let config = Config {
        cluster: "shop".to_owned(),
        ..Config::local()
    };
    let t = net.endpoint_as("db-1");
    let seed = t.local_addr();
    let db = NodeBuilder::new("db-1")
        .config(config.clone())
        .keys([("role", "db"), ("service/port", "5432")])
        .start(Box::new(t))?;

    // 3. A watch on db-1 of everyone's `service/` keys, before the others join.
    let mut watch = db
        .send(Subscribe::new(Filter::keys("service/")).watch())
        .await?;
    match next(&mut watch).await? {
        Update::Current(now) => println!(
            "watch starts with {} service key(s): {}",
            now.keys.len(),
            now.keys
                .iter()
                .map(|k| format!("{}/{}", k.owner.name, k.key))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => return Err(format!("a watch starts with its state, got {other:?}").into()),
    }

    let web1 = NodeBuilder::new("web-1")
        .config(config.clone())
        .key("role", "web")
        .key("service/port", "8080")
        .seeds(vec![seed])
        .start(Box::new(net.endpoint_as("web-1")))?;

    // 5 (set up). web-2 is given a seed nobody listens on.
    let nowhere = net.endpoint_as("decommissioned").local_addr();
    let web2 = NodeBuilder::new("web-2")
        .config(config.clone())
        .key("role", "web")
        .key("service/port", "8081")
        .seeds(vec![nowhere])
        .start(Box::new(net.endpoint_as("web-2")))?;
    web2.send(SetSeeds { seeds: vec![seed] }).await?;
    println!("web-2 had a stale seed; told the right one with SetSeeds");

    // The watch reports each node's port as it arrives.
    let mut ports = BTreeMap::new();
    while ports.len() < 2 {
        match next(&mut watch).await? {
            Update::Event(Event::KeyChanged {
                owner, key, value, ..
            }) => {
                println!(
                    "watch: {}/{key} = {}",
                    owner.name,
                    String::from_utf8_lossy(&value)
                );
                ports.insert(owner.name.clone(), value);
            }
            Update::Lagged { missed } => println!("watch fell behind by {missed} events"),
            _ => {}
        }
    }

    // 4. Cheap queries: none copies the whole state like a Snapshot does.
    let me = db.send(GetId).await?;
    println!(
        "db-1 is {} at {} (generation {})",
        me.name, me.addr, me.generation
    );
    let live = wait_live(&db, 3).await?;
    println!("live members seen by db-1: {}", live.join(", "));
    let everyone = db.send(GetValues::new("service/port")).await?;
    println!(
        "what each node says about service/port: {}",
        show(&everyone)
    );
    let web1_keys = db
        .send(GetKeys::new("web-1"))
        .await?
        .ok_or("db-1 knows web-1")?;
    println!("web-1's keys as db-1 holds them: {}", show(&web1_keys));

    // A write after the join still reaches the watch.
    web1.send(Set::new("service/port", "8443")).await??;
    loop {
        if let Update::Event(Event::KeyChanged { owner, value, .. }) = next(&mut watch).await?
            && owner.name == "web-1"
        {
            println!("watch: web-1 moved to {}", String::from_utf8_lossy(&value));
            break;
        }
    }
    // Dropping the handle ends the subscription.
    drop(watch);

    // 6. A broadcast: every node's broadcast subscribers get it once.
    let mut heard = Vec::new();
    for node in [&db, &web1, &web2] {
        heard.push(
            node.send(Subscribe::new(Filter::broadcasts("deploy")))
                .await?,
        );
    }
    web1.send(Broadcast::new("deploy", "release 42")).await??;
    for sub in &mut heard {
        loop {
            if let Update::UserEvent(e) = next(sub).await? {
                println!(
                    "broadcast from {} on {}: {}",
                    e.sender.name,
                    e.topic,
                    String::from_utf8_lossy(&e.payload)
                );
                break;
            }
        }
    }

    // 7. Metrics, as a Prometheus scrape would see them.
    db.send(gossip_core::actor::GetMetrics).await?;
    let text = prometheus.render();
    println!("metrics of db-1 (excerpt):");
    for line in text
        .lines()
        .filter(|l| l.contains("node=\"db-1\""))
        .filter(|l| l.starts_with("gossip_members") || l.starts_with("gossip_messages"))
    {
        println!("  {line}");
    }

    // The web nodes leave gracefully (a peer confirms each announcement);
    // db-1, last, has nobody left to tell and just stops.
    for (name, node) in [("web-2", &web2), ("web-1", &web1)] {
        let outcome = node.send(Leave { timeout: DEADLINE }).await?;
        println!("{name} left: {outcome:?}");
        node.send(Stop).await?;
    }
    db.send(Stop).await?;
    Ok(())
}

/// The next update of `sub`, or an error after [`DEADLINE`].
async fn next(sub: &mut Subscription) -> Result<Update, Error> {
    match tokio::time::timeout(DEADLINE, sub.recv()).await {
        Ok(Some(update)) => Ok(update),
        Ok(None) => Err("the node stopped".into()),
        Err(_) => Err("no update before the deadline".into()),
    }
}

/// Waits until `node` sees `n` live members; their names.
async fn wait_live(node: &Addr<GossipNode>, n: usize) -> Result<Vec<String>, Error> {
    let start = tokio::time::Instant::now();
    loop {
        let live = node.send(GetMembers::with_status(Status::Live)).await?;
        if live.len() >= n {
            return Ok(live.into_iter().map(|m| m.id.name.clone()).collect());
        }
        if start.elapsed() > DEADLINE {
            return Err(format!("only {} live members before the deadline", live.len()).into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn show(values: &BTreeMap<String, Value>) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k} = {}", String::from_utf8_lossy(&v.value)))
        .collect::<Vec<_>>()
        .join(", ")
}
