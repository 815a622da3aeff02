//! The integration suite ([`suite`]) on the in-memory transport
//! (`gossip-mem`'s `MemNetwork`).

mod suite;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use gossip_core::Transport;
use gossip_mem::net::MemNetwork;
use gossip_mem::sim::Faults;

/// A fresh in-memory network per test. The tests on one runtime run on
/// paused tokio time (the nodes' clocks, timers and the network's latencies
/// are tokio time, so deadlines are virtual and nothing waits for real);
/// `spread_over_arbiters` spans several runtimes, so it runs on real time.
struct Mem {
    net: MemNetwork,
}

impl Mem {
    fn new() -> Self {
        Mem {
            net: MemNetwork::new(42),
        }
    }

    /// A network with 5 % loss and 1–5 ms links.
    fn lossy() -> Self {
        let m = Mem::new();
        m.net.set_faults(Faults {
            loss: 0.05,
            latency: (Duration::from_millis(1), Duration::from_millis(5)),
            ..Faults::default()
        });
        m
    }
}

impl suite::Harness for Mem {
    fn transport(&self, name: &str) -> impl Future<Output = Box<dyn Transport>> {
        let t: Box<dyn Transport> = Box::new(self.net.endpoint_as(name));
        async move { t }
    }

    fn rebind(&self, name: &str, addr: SocketAddr) -> impl Future<Output = Box<dyn Transport>> {
        let t: Box<dyn Transport> = Box::new(
            self.net
                .bind_as(name, addr)
                .expect("the address is free once its node stopped"),
        );
        async move { t }
    }

    fn partition(&self, groups: &[Vec<SocketAddr>]) -> bool {
        self.net.partition(groups);
        true
    }

    fn heal(&self) {
        self.net.heal();
    }

    fn crash(&self, addr: SocketAddr) {
        self.net.crash(addr).expect("the address is bound");
    }
}

#[actix_rt::test]
async fn join_via_seeds() {
    tokio::time::pause();
    suite::join_via_seeds(&Mem::new()).await;
}

#[actix_rt::test]
async fn key_spreads() {
    tokio::time::pause();
    suite::key_spreads(&Mem::new()).await;
}

#[actix_rt::test]
async fn key_spreads_despite_loss_and_latency() {
    tokio::time::pause();
    suite::key_spreads(&Mem::lossy()).await;
}

#[actix_rt::test]
async fn delete_spreads() {
    tokio::time::pause();
    suite::delete_spreads(&Mem::new()).await;
}

#[actix_rt::test]
async fn crash_detected() {
    tokio::time::pause();
    suite::crash_detected(&Mem::new()).await;
}

#[actix_rt::test]
async fn leave_seen() {
    tokio::time::pause();
    suite::leave_seen(&Mem::new()).await;
}

#[actix_rt::test]
async fn restart_supersedes() {
    tokio::time::pause();
    suite::restart_supersedes(&Mem::new()).await;
}

#[actix_rt::test]
async fn partition_heals() {
    tokio::time::pause();
    suite::partition_heals(&Mem::new()).await;
}

#[actix_rt::test]
async fn spread_over_arbiters() {
    suite::spread_over_arbiters(&Mem::new()).await;
}

/// Through the actors: a node running under name "a" on an endpoint bound
/// as "c" is refused by everyone it talks to (IdentityMismatch), and never
/// becomes a member; honest nodes on the same network join as usual.
#[actix_rt::test]
async fn impersonation_is_refused_through_the_actor() {
    use gossip_core::actor::{GetMetrics, NodeBuilder, Snapshot};
    use gossip_core::proto::Config;

    let net = MemNetwork::new(5);
    let config = Config::local();
    let b_t = net.endpoint_as("b");
    let b_addr = b_t.local_addr();
    let b = NodeBuilder::new("b")
        .config(config.clone())
        .start(Box::new(b_t))
        .expect("b starts");
    let fake = NodeBuilder::new("a")
        .config(config.clone())
        .seeds(vec![b_addr])
        .start(Box::new(net.endpoint_as("c")))
        .expect("the impostor starts");
    let honest = NodeBuilder::new("d")
        .config(config)
        .seeds(vec![b_addr])
        .start(Box::new(net.endpoint_as("d")))
        .expect("d starts");

    let start = tokio::time::Instant::now();
    loop {
        let m = b.send(GetMetrics).await.expect("b answers");
        let snap = b.send(Snapshot).await.expect("b answers");
        let names: Vec<&str> = snap.members.iter().map(|m| m.id.name.as_str()).collect();
        if m.proto.refused.identity_mismatch >= 2 && names.contains(&"d") {
            assert!(
                !names.contains(&"a"),
                "the impostor is not a member: {names:?}"
            );
            break;
        }
        assert!(
            start.elapsed() < suite::DEADLINE,
            "b never refused the impostor: {:?}, members {names:?}",
            m.proto.refused
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop((fake, honest));
}

#[actix_rt::test]
async fn a_config_larger_than_the_transport_carries_is_refused() {
    use gossip_core::actor::{NodeBuilder, StartError};
    use gossip_core::proto::Config;

    let net = MemNetwork::new(5);
    let t = net.endpoint_as("a");
    let limit = t.max_message_bytes();
    let config = Config {
        max_message_bytes: limit + 1,
        ..Config::local()
    };
    assert!(matches!(
        NodeBuilder::new("a").config(config).start(Box::new(t)),
        Err(StartError::MessageTooLarge { transport, .. }) if transport == limit
    ));
}
