//! The integration suite ([`suite`]) over QUIC on 127.0.0.1, with mutual
//! TLS: every node holds a certificate of one test CA.
//!
//! Partitions are made by a thin wrapper that drops messages between the
//! groups (the QUIC connections stay up, as under a real partition of the
//! message flow); everything else is the production transport unchanged.

mod suite;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use gossip_core::proto::Config;
use gossip_core::{Incoming, Transport, TransportError};
use gossip_quic::{ClusterCa, NodeIdentity, QuicConfig, QuicTransport};

/// The partition in force: `None`, or groups that reach only themselves.
type Groups = Arc<Mutex<Option<Vec<Vec<SocketAddr>>>>>;

struct Quic {
    ca: ClusterCa,
    groups: Groups,
}

impl Quic {
    fn new() -> Self {
        Quic {
            ca: ClusterCa::generate("suite").expect("test ca"),
            groups: Arc::default(),
        }
    }

    async fn bind(
        &self,
        name: &str,
        addr: SocketAddr,
    ) -> Result<Box<dyn Transport>, gossip_quic::QuicError> {
        let identity = NodeIdentity::issue(&self.ca, name).expect("node certificate");
        let config = QuicConfig::new(addr, "suite", identity)
            .with_max_frame_bytes(Config::local().max_message_bytes);
        let transport = QuicTransport::bind(config).await?;
        Ok(Box::new(Partitionable {
            inner: transport,
            groups: self.groups.clone(),
        }))
    }
}

fn reachable(groups: &Groups, a: SocketAddr, b: SocketAddr) -> bool {
    match &*groups.lock().expect("groups lock") {
        None => true,
        Some(groups) => {
            let group_of = |x| groups.iter().position(|g| g.contains(&x));
            group_of(a) == group_of(b)
        }
    }
}

/// Drops messages across the partition, both ways.
struct Partitionable {
    inner: QuicTransport,
    groups: Groups,
}

#[async_trait]
impl Transport for Partitionable {
    fn send(&self, to: SocketAddr, bytes: Bytes) -> Result<(), TransportError> {
        if reachable(&self.groups, self.inner.local_addr(), to) {
            self.inner.send(to, bytes)
        } else {
            Ok(())
        }
    }

    fn incoming(&mut self) -> Incoming {
        let (groups, local) = (self.groups.clone(), self.inner.local_addr());
        Box::pin(
            self.inner
                .incoming()
                .filter(move |r| std::future::ready(reachable(&groups, r.addr, local))),
        )
    }

    fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }

    fn max_message_bytes(&self) -> usize {
        self.inner.max_message_bytes()
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}

impl suite::Harness for Quic {
    async fn transport(&self, name: &str) -> Box<dyn Transport> {
        self.bind(name, "127.0.0.1:0".parse().expect("literal address"))
            .await
            .expect("bind on loopback")
    }

    async fn rebind(&self, name: &str, addr: SocketAddr) -> Box<dyn Transport> {
        // The stopped node's socket is released once its endpoint has
        // drained; retry until then.
        let start = tokio::time::Instant::now();
        loop {
            match self.bind(name, addr).await {
                Ok(t) => return t,
                Err(e) => assert!(start.elapsed() < suite::DEADLINE, "rebind {addr}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn partition(&self, groups: &[Vec<SocketAddr>]) -> bool {
        *self.groups.lock().expect("groups lock") = Some(groups.to_vec());
        true
    }

    fn heal(&self) {
        *self.groups.lock().expect("groups lock") = None;
    }
}

#[actix_rt::test]
async fn join_via_seeds() {
    suite::join_via_seeds(&Quic::new()).await;
}

#[actix_rt::test]
async fn key_spreads() {
    suite::key_spreads(&Quic::new()).await;
}

#[actix_rt::test]
async fn delete_spreads() {
    suite::delete_spreads(&Quic::new()).await;
}

#[actix_rt::test]
async fn crash_detected() {
    suite::crash_detected(&Quic::new()).await;
}

#[actix_rt::test]
async fn leave_seen() {
    suite::leave_seen(&Quic::new()).await;
}

#[actix_rt::test]
async fn restart_supersedes() {
    suite::restart_supersedes(&Quic::new()).await;
}

#[actix_rt::test]
async fn partition_heals() {
    suite::partition_heals(&Quic::new()).await;
}

#[actix_rt::test]
async fn spread_over_arbiters() {
    suite::spread_over_arbiters(&Quic::new()).await;
}
