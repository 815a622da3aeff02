//! Node-level test setup shared by the handler tests: node n0 knowing
//! n1..=n8, crafted envelopes in, transmits and events out.

#![allow(dead_code)] // each test file uses its own share of these

use std::net::SocketAddr;
use std::sync::Arc;

use gossip_core::proto::{
    Config, DigestEntry, Envelope, Event, Instant, Message, Node, NodeId, Transmit, cluster_id,
};

pub const PEERS: u16 = 8;

pub fn addr(i: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + i))
}

pub fn id(i: u16) -> Arc<NodeId> {
    Arc::new(NodeId::new(format!("n{i}"), addr(i), 1))
}

pub fn deliver(n: &mut Node, now: Instant, from: u16, message: Message) {
    let envelope = Envelope {
        cluster: cluster_id(&n.config().cluster),
        from: id(from),
        message,
    };
    n.handle_message(now, addr(from), envelope)
        .expect("accepted");
}

/// Node `i` tells `n` of itself at `heartbeat` (and no state), in a
/// one-entry digest.
pub fn announce(n: &mut Node, i: u16, heartbeat: u64) {
    let digest = vec![DigestEntry {
        id: id(i),
        heartbeat,
        max_version: 0,
    }];
    deliver(
        n,
        Instant::ZERO,
        i,
        Message::Syn {
            digest,
            known: 9,
            page: None,
            recon: Default::default(),
        },
    );
}

pub fn drain(n: &mut Node) -> (Vec<Transmit>, Vec<Event>) {
    let t = std::iter::from_fn(|| n.poll_transmit()).collect();
    let e = std::iter::from_fn(|| n.poll_event()).collect();
    (t, e)
}

/// Node n0, knowing n1..=n8 (each announced itself), after its first
/// round, with nothing queued.
pub fn node(config: Config) -> Node {
    let mut n = Node::new(
        config,
        NodeId::new("n0", addr(0), 1),
        vec![],
        7,
        Instant::ZERO,
    )
    .expect("valid config");
    for i in 1..=PEERS {
        announce(&mut n, i, 1);
    }
    // The first round, so that the next is far off.
    n.handle_timeout(Instant::ZERO);
    drain(&mut n);
    n
}
