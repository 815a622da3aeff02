//! The integration suite ([`suite`]) on the in-memory transport
//! (`gossip-mem`'s `MemNetwork`).

mod suite;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use gossip_core::Transport;
use gossip_mem::net::MemNetwork;
use gossip_mem::sim::Faults;

/// A fresh in-memory network per test.
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
    suite::join_via_seeds(&Mem::new()).await;
}

#[actix_rt::test]
async fn key_spreads() {
    suite::key_spreads(&Mem::new()).await;
}

#[actix_rt::test]
async fn key_spreads_despite_loss_and_latency() {
    suite::key_spreads(&Mem::lossy()).await;
}

#[actix_rt::test]
async fn delete_spreads() {
    suite::delete_spreads(&Mem::new()).await;
}

#[actix_rt::test]
async fn crash_detected() {
    suite::crash_detected(&Mem::new()).await;
}

#[actix_rt::test]
async fn leave_seen() {
    suite::leave_seen(&Mem::new()).await;
}

#[actix_rt::test]
async fn restart_supersedes() {
    suite::restart_supersedes(&Mem::new()).await;
}

#[actix_rt::test]
async fn partition_heals() {
    suite::partition_heals(&Mem::new()).await;
}

#[actix_rt::test]
async fn spread_over_arbiters() {
    suite::spread_over_arbiters(&Mem::new()).await;
}
