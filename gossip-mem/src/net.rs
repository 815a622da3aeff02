//! An in-memory network of bounded channels: one [`MemTransport`] per
//! endpoint, all implementing [`gossip_core::Transport`], with the
//! simulator's fault model ([`Faults`]: loss, latency ranges, duplication,
//! reordering) plus partitions (a group id per endpoint) and crashes.
//!
//! It is meant for actor tests and demos that put many `GossipNode`s (the
//! actix actor of `gossip-core`'s `actor` feature) in
//! one process, possibly spread over several actix Arbiters: the network is
//! `Send + Sync`, a send never blocks (it takes a short lock, decides the
//! message's fate with the network's seeded RNG and `try_send`s into the
//! receiver's bounded queue), and every dropped message is counted in
//! [`NetStats`]. Latency is applied on the receiving side: the endpoint's
//! stream holds a message back until its delivery time, in a bounded heap.
//!
//! Faults mean what they mean in the simulator: loss, duplication and
//! latency are drawn at send; a partition or a crashed receiver is decided
//! at delivery, so a message in flight when a partition starts is lost, and
//! one sent just before it heals may arrive after; a crashed endpoint sends
//! nothing.
//!
//! An endpoint bound with a name ([`MemNetwork::endpoint_as`],
//! [`MemNetwork::bind_as`]) is authenticated: its receivers get that name
//! with each of its messages ([`Received::peer`]), as QUIC gets the name
//! from the peer's certificate, so the core refuses envelopes that claim
//! another node. Endpoints bound without one ([`MemNetwork::endpoint`],
//! [`MemNetwork::bind`]) are anonymous (`peer: None`).
//!
//! ```
//! use futures::StreamExt;
//! use gossip_core::Transport;
//! use gossip_mem::net::MemNetwork;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let net = MemNetwork::new(7);
//! let a = net.endpoint();
//! let mut b = net.endpoint();
//! a.send(b.local_addr(), "hello".into()).unwrap();
//! let got = b.incoming().next().await.unwrap();
//! assert_eq!((got.addr, &got.bytes[..]), (a.local_addr(), &b"hello"[..]));
//! # });
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use gossip_core::{Incoming, Received, Transport, TransportError};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

use crate::sim::Faults;
use crate::timed::Timed;

/// Messages an endpoint's receive queue holds before further messages to it
/// are dropped, unless [`MemNetwork::with_queue_capacity`] says otherwise.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// Largest message the network carries by default (1 MiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;

/// A network operation that could not be done.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NetError {
    /// A live endpoint already holds this address.
    #[error("address in use: {0}")]
    AddrInUse(SocketAddr),
    /// No endpoint holds this address.
    #[error("unknown address: {0}")]
    UnknownAddr(SocketAddr),
}

/// What happened to the messages sent over a network, since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Sends accepted from live endpoints.
    pub sent: u64,
    /// Messages handed to a receiver's stream.
    pub delivered: u64,
    /// Dropped by the loss probability.
    pub lost: u64,
    /// Dropped because sender and receiver are in different partition groups.
    pub partitioned: u64,
    /// Dropped because the receiver had crashed (or the sender had).
    pub crashed: u64,
    /// Dropped because the receiver's queue was full.
    pub queue_full: u64,
    /// Refused because no endpoint holds the address.
    pub unreachable: u64,
    /// Extra copies delivered by the duplication fault.
    pub duplicated: u64,
    /// Refused because larger than the network carries.
    pub too_large: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    delivered: AtomicU64,
    lost: AtomicU64,
    partitioned: AtomicU64,
    crashed: AtomicU64,
    queue_full: AtomicU64,
    unreachable: AtomicU64,
    duplicated: AtomicU64,
    too_large: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One message on its way: delivered once `at` has passed (`None`: at once).
struct Delivery {
    from: SocketAddr,
    /// The sender's bound name, if it has one.
    peer: Option<Arc<str>>,
    bytes: Bytes,
    at: Option<Instant>,
}

/// An endpoint as the network sees it.
struct Slot {
    /// Distinguishes incarnations bound to one address.
    incarnation: u64,
    tx: mpsc::Sender<Delivery>,
    group: u32,
    crashed: bool,
    /// The name bound with the endpoint (its authenticated identity).
    name: Option<Arc<str>>,
}

struct State {
    endpoints: HashMap<SocketAddr, Slot>,
    faults: Faults,
    rng: StdRng,
    next_addr: u32,
    next_incarnation: u64,
}

struct Shared {
    state: Mutex<State>,
    counters: Counters,
    queue_capacity: usize,
    max_message_bytes: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the maps consistent (every
        // update is a single insert or field write), so keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn send(
        &self,
        from: SocketAddr,
        incarnation: u64,
        to: SocketAddr,
        bytes: Bytes,
    ) -> Result<(), TransportError> {
        if bytes.len() > self.max_message_bytes {
            bump(&self.counters.too_large);
            return Err(TransportError::TooLarge(bytes.len()));
        }
        let mut guard = self.lock();
        let state = &mut *guard;
        let peer = match state.endpoints.get(&from) {
            Some(s) if s.incarnation == incarnation && !s.crashed => s.name.clone(),
            Some(s) if s.incarnation == incarnation => {
                // A crashed node's messages go nowhere, silently.
                bump(&self.counters.crashed);
                return Ok(());
            }
            _ => return Err(TransportError::Closed),
        };
        bump(&self.counters.sent);
        let Some(dest) = state.endpoints.get(&to) else {
            bump(&self.counters.unreachable);
            return Err(TransportError::Unreachable(to));
        };
        let f = &state.faults;
        if f.loss > 0.0 && state.rng.random_bool(f.loss.min(1.0)) {
            bump(&self.counters.lost);
            return Ok(());
        }
        let copies = if f.duplicate > 0.0 && state.rng.random_bool(f.duplicate.min(1.0)) {
            2
        } else {
            1
        };
        let now = Instant::now();
        for copy in 0..copies {
            let mut delay = draw(&mut state.rng, f.latency.0, f.latency.1);
            if f.reorder > 0.0 && state.rng.random_bool(f.reorder.min(1.0)) {
                delay += draw(&mut state.rng, Duration::ZERO, f.reorder_delay);
            }
            let at = (!delay.is_zero()).then(|| now + delay);
            match dest.tx.try_send(Delivery {
                from,
                peer: peer.clone(),
                bytes: bytes.clone(),
                at,
            }) {
                Ok(()) if copy > 0 => bump(&self.counters.duplicated),
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    bump(&self.counters.queue_full);
                    return Err(TransportError::QueueFull);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    // The receiving transport was dropped without `close`.
                    state.endpoints.remove(&to);
                    bump(&self.counters.unreachable);
                    return Err(TransportError::Unreachable(to));
                }
            }
        }
        Ok(())
    }

    /// Whether a message from `from` may reach the endpoint `to` (of
    /// `incarnation`) now: not if it crashed or the two are in different
    /// partition groups (counted). A sender gone since is no partition.
    fn admits(&self, from: SocketAddr, to: SocketAddr, incarnation: u64) -> bool {
        let state = self.lock();
        let Some(dest) = state
            .endpoints
            .get(&to)
            .filter(|s| s.incarnation == incarnation)
        else {
            return true;
        };
        if dest.crashed {
            bump(&self.counters.crashed);
            return false;
        }
        if state
            .endpoints
            .get(&from)
            .is_some_and(|s| s.group != dest.group)
        {
            bump(&self.counters.partitioned);
            return false;
        }
        true
    }

    fn remove(&self, addr: SocketAddr, incarnation: u64) {
        let mut state = self.lock();
        if state
            .endpoints
            .get(&addr)
            .is_some_and(|s| s.incarnation == incarnation)
        {
            state.endpoints.remove(&addr);
        }
    }
}

/// A duration drawn uniformly from `[lo, hi]` (`lo` if the range is empty).
fn draw(rng: &mut StdRng, lo: Duration, hi: Duration) -> Duration {
    if hi <= lo {
        return lo;
    }
    let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(rng.random_range(micros(lo)..=micros(hi)))
}

/// An in-memory network. Cheap to clone (all clones are the same network);
/// `Send + Sync`, so endpoints can be driven from any thread or Arbiter.
///
/// Starts with no faults at all (no loss, zero latency); set some with
/// [`set_faults`](MemNetwork::set_faults). Fault decisions come from one RNG
/// seeded at creation; with endpoints on several threads the order of sends,
/// and so the exact decisions, still vary from run to run.
#[derive(Clone)]
pub struct MemNetwork {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemNetwork")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl MemNetwork {
    /// A fault-free network whose fault decisions are seeded by `seed`.
    pub fn new(seed: u64) -> Self {
        Self::with_queue_capacity(seed, DEFAULT_QUEUE_CAPACITY)
    }

    /// A network whose endpoints each queue at most `capacity` received
    /// messages (and hold back at most as many delayed ones).
    pub fn with_queue_capacity(seed: u64, capacity: usize) -> Self {
        let faults = Faults {
            latency: (Duration::ZERO, Duration::ZERO),
            ..Faults::default()
        };
        MemNetwork {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    endpoints: HashMap::new(),
                    faults,
                    rng: StdRng::seed_from_u64(seed),
                    next_addr: 1,
                    next_incarnation: 1,
                }),
                counters: Counters::default(),
                queue_capacity: capacity.max(1),
                max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            }),
        }
    }

    /// Replaces the fault model applied to every later message.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().faults = faults;
    }

    /// The fault model in force.
    pub fn faults(&self) -> Faults {
        self.shared.lock().faults.clone()
    }

    /// A new endpoint at a fresh address (10.x.y.z:7000, never reused by
    /// this method).
    pub fn endpoint(&self) -> MemTransport {
        let addr = loop {
            let mut state = self.shared.lock();
            let n = state.next_addr;
            state.next_addr = state.next_addr.wrapping_add(1).max(1);
            let addr =
                SocketAddr::new(Ipv4Addr::from(0x0a00_0000 | (n & 0x00ff_ffff)).into(), 7000);
            if !state.endpoints.contains_key(&addr) {
                break addr;
            }
        };
        self.bind(addr).expect("a fresh address is free")
    }

    /// A new endpoint at a fresh address, authenticated as node `name`:
    /// its receivers get `name` with each of its messages.
    pub fn endpoint_as(&self, name: &str) -> MemTransport {
        let mut t = self.endpoint();
        let name: Arc<str> = Arc::from(name);
        if let Some(slot) = self.shared.lock().endpoints.get_mut(&t.addr) {
            slot.name = Some(name.clone());
        }
        t.name = Some(name);
        t
    }

    /// An anonymous endpoint at `addr` (its messages carry no name): fails
    /// if a live endpoint holds it; replaces a crashed one (a restart on the
    /// same address).
    pub fn bind(&self, addr: SocketAddr) -> Result<MemTransport, NetError> {
        self.bind_with(addr, None)
    }

    /// An endpoint at `addr` authenticated as node `name`, as
    /// [`bind`](MemNetwork::bind) otherwise.
    pub fn bind_as(&self, name: &str, addr: SocketAddr) -> Result<MemTransport, NetError> {
        self.bind_with(addr, Some(Arc::from(name)))
    }

    fn bind_with(
        &self,
        addr: SocketAddr,
        name: Option<Arc<str>>,
    ) -> Result<MemTransport, NetError> {
        let mut state = self.shared.lock();
        if state
            .endpoints
            .get(&addr)
            .is_some_and(|s| !s.crashed && !s.tx.is_closed())
        {
            return Err(NetError::AddrInUse(addr));
        }
        let incarnation = state.next_incarnation;
        state.next_incarnation += 1;
        let (tx, rx) = mpsc::channel(self.shared.queue_capacity);
        state.endpoints.insert(
            addr,
            Slot {
                incarnation,
                tx,
                group: 0,
                crashed: false,
                name: name.clone(),
            },
        );
        Ok(MemTransport {
            shared: self.shared.clone(),
            addr,
            incarnation,
            name,
            rx: Some(rx),
        })
    }

    /// Crashes the endpoint at `addr`: from now on every message to or from
    /// it is dropped (counted as `crashed`), as if its process died or its
    /// cable was pulled: to every other endpoint, exactly the simulator's
    /// crash. The node driving it keeps running unless stopped (stop it
    /// too, to model the process dying).
    pub fn crash(&self, addr: SocketAddr) -> Result<(), NetError> {
        let mut state = self.shared.lock();
        let slot = state
            .endpoints
            .get_mut(&addr)
            .ok_or(NetError::UnknownAddr(addr))?;
        slot.crashed = true;
        Ok(())
    }

    /// Undoes [`crash`](MemNetwork::crash): the endpoint sends and receives again.
    pub fn recover(&self, addr: SocketAddr) -> Result<(), NetError> {
        let mut state = self.shared.lock();
        let slot = state
            .endpoints
            .get_mut(&addr)
            .ok_or(NetError::UnknownAddr(addr))?;
        slot.crashed = false;
        Ok(())
    }

    /// Puts the endpoint at `addr` in partition `group`: messages only pass
    /// between endpoints of the same group (all start in group 0).
    pub fn set_group(&self, addr: SocketAddr, group: u32) -> Result<(), NetError> {
        let mut state = self.shared.lock();
        let slot = state
            .endpoints
            .get_mut(&addr)
            .ok_or(NetError::UnknownAddr(addr))?;
        slot.group = group;
        Ok(())
    }

    /// Splits the network: the endpoints of `groups[i]` go to group `i + 1`;
    /// endpoints not listed stay where they are. Unknown addresses are
    /// skipped.
    pub fn partition(&self, groups: &[Vec<SocketAddr>]) {
        let mut state = self.shared.lock();
        for (i, addrs) in groups.iter().enumerate() {
            let group = u32::try_from(i + 1).unwrap_or(u32::MAX);
            for a in addrs {
                if let Some(slot) = state.endpoints.get_mut(a) {
                    slot.group = group;
                }
            }
        }
    }

    /// Ends every partition (all endpoints back to group 0).
    pub fn heal(&self) {
        for slot in self.shared.lock().endpoints.values_mut() {
            slot.group = 0;
        }
    }

    /// Addresses of the endpoints bound now (crashed ones included).
    pub fn addrs(&self) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = self.shared.lock().endpoints.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Counters since the network was made.
    pub fn stats(&self) -> NetStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NetStats {
            sent: get(&c.sent),
            delivered: get(&c.delivered),
            lost: get(&c.lost),
            partitioned: get(&c.partitioned),
            crashed: get(&c.crashed),
            queue_full: get(&c.queue_full),
            unreachable: get(&c.unreachable),
            duplicated: get(&c.duplicated),
            too_large: get(&c.too_large),
        }
    }
}

/// One endpoint of a [`MemNetwork`]: a [`Transport`] at one address.
/// Dropping it closes it.
pub struct MemTransport {
    shared: Arc<Shared>,
    addr: SocketAddr,
    incarnation: u64,
    name: Option<Arc<str>>,
    rx: Option<mpsc::Receiver<Delivery>>,
}

impl MemTransport {
    /// The name this endpoint was bound as (`None`: anonymous).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl std::fmt::Debug for MemTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemTransport")
            .field("addr", &self.addr)
            .field("incarnation", &self.incarnation)
            .field("name", &self.name)
            .finish()
    }
}

#[async_trait]
impl Transport for MemTransport {
    fn send(&self, to: SocketAddr, bytes: Bytes) -> Result<(), TransportError> {
        self.shared.send(self.addr, self.incarnation, to, bytes)
    }

    fn incoming(&mut self) -> Incoming {
        match self.rx.take() {
            Some(rx) => Box::pin(Inbox {
                rx,
                rx_done: false,
                delayed: BinaryHeap::new(),
                seq: 0,
                max_delayed: self.shared.queue_capacity,
                sleep: None,
                shared: self.shared.clone(),
                addr: self.addr,
                incarnation: self.incarnation,
            }),
            None => Box::pin(futures::stream::empty()),
        }
    }

    fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn max_message_bytes(&self) -> usize {
        self.shared.max_message_bytes
    }

    async fn close(&self) {
        self.shared.remove(self.addr, self.incarnation);
    }
}

impl Drop for MemTransport {
    fn drop(&mut self) {
        self.shared.remove(self.addr, self.incarnation);
    }
}

/// A message held back until its delivery time.
type Held = Reverse<Timed<Instant, Delivery>>;

/// The receiving side of an endpoint: the bounded queue, plus a bounded
/// heap of messages waiting out their latency.
struct Inbox {
    rx: mpsc::Receiver<Delivery>,
    rx_done: bool,
    delayed: BinaryHeap<Held>,
    seq: u64,
    max_delayed: usize,
    sleep: Option<Pin<Box<Sleep>>>,
    shared: Arc<Shared>,
    /// This endpoint, to decide partitions and crashes at delivery.
    addr: SocketAddr,
    incarnation: u64,
}

impl Inbox {
    /// The message, if the network still lets it through.
    fn deliver(&self, d: Delivery) -> Option<Received> {
        if !self.shared.admits(d.from, self.addr, self.incarnation) {
            return None;
        }
        bump(&self.shared.counters.delivered);
        Some(Received {
            addr: d.from,
            peer: d.peer.map(|n| n.to_string()),
            bytes: d.bytes,
        })
    }
}

impl Stream for Inbox {
    type Item = Received;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            let now = Instant::now();
            if this.delayed.peek().is_some_and(|Reverse(h)| h.at <= now) {
                let Reverse(h) = this.delayed.pop().expect("peeked just now");
                match this.deliver(h.item) {
                    Some(r) => return Poll::Ready(Some(r)),
                    None => continue,
                }
            }
            // While the heap has room, take more from the queue (when it is
            // full, the queue fills and senders see `QueueFull`).
            if !this.rx_done && this.delayed.len() < this.max_delayed {
                match this.rx.poll_recv(cx) {
                    Poll::Ready(Some(d)) => match d.at {
                        Some(at) if at > now => {
                            this.seq += 1;
                            this.delayed.push(Reverse(Timed {
                                at,
                                seq: this.seq,
                                item: d,
                            }));
                            continue;
                        }
                        _ => match this.deliver(d) {
                            Some(r) => return Poll::Ready(Some(r)),
                            None => continue,
                        },
                    },
                    Poll::Ready(None) => {
                        this.rx_done = true;
                        continue;
                    }
                    Poll::Pending => {}
                }
            }
            let Some(next) = this.delayed.peek().map(|Reverse(h)| h.at) else {
                return if this.rx_done {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                };
            };
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(next)));
            if sleep.deadline() != next {
                sleep.as_mut().reset(next);
            }
            match sleep.as_mut().poll(cx) {
                Poll::Ready(()) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::{FutureExt, StreamExt};

    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    }

    #[test]
    fn delivers_between_endpoints() {
        rt().block_on(async {
            let net = MemNetwork::new(1);
            let a = net.endpoint();
            let mut b = net.endpoint();
            let mut inbox = b.incoming();
            for i in 0..3u8 {
                a.send(b.local_addr(), Bytes::from(vec![i])).expect("sent");
            }
            for i in 0..3u8 {
                let got = inbox.next().await.expect("a message");
                assert_eq!(got.addr, a.local_addr());
                assert_eq!(got.peer, None, "an anonymous endpoint");
                assert_eq!(&got.bytes[..], &[i]);
            }
            assert_eq!(net.stats().delivered, 3);
        });
    }

    #[test]
    fn queue_is_bounded_and_drops_are_counted() {
        let net = MemNetwork::with_queue_capacity(1, 4);
        let a = net.endpoint();
        let b = net.endpoint();
        let results: Vec<_> = (0..10)
            .map(|_| a.send(b.local_addr(), Bytes::from_static(b"x")))
            .collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 4);
        assert!(
            results[4..]
                .iter()
                .all(|r| *r == Err(TransportError::QueueFull))
        );
        assert_eq!(net.stats().queue_full, 6);
    }

    #[test]
    fn partitions_crashes_and_unknown_addresses() {
        let net = MemNetwork::new(1);
        let a = net.endpoint();
        let mut b = net.endpoint();
        let unknown: SocketAddr = "192.0.2.1:1".parse().expect("valid address");
        assert_eq!(
            a.send(unknown, Bytes::new()),
            Err(TransportError::Unreachable(unknown))
        );

        // Decided at delivery, as in the simulator: sent before the
        // partition, delivered during it, the message is lost.
        let mut inbox = b.incoming();
        assert_eq!(a.send(b.local_addr(), Bytes::new()), Ok(()));
        net.partition(&[vec![a.local_addr()], vec![b.local_addr()]]);
        assert!(inbox.next().now_or_never().is_none(), "nothing arrives");
        assert_eq!(net.stats().partitioned, 1);
        // Sent during it, delivered after the heal: it arrives.
        assert_eq!(a.send(b.local_addr(), Bytes::new()), Ok(()));
        net.heal();
        let got = inbox.next().now_or_never().flatten().expect("delivered");
        assert_eq!(got.addr, a.local_addr());
        assert_eq!(net.stats().partitioned, 1);

        // A crashed endpoint sends nothing and receives nothing.
        net.crash(b.local_addr()).expect("known");
        assert_eq!(a.send(b.local_addr(), Bytes::new()), Ok(()));
        assert_eq!(b.send(a.local_addr(), Bytes::new()), Ok(()));
        assert!(inbox.next().now_or_never().is_none());
        assert_eq!(net.stats().crashed, 2);
        assert_eq!(net.stats().delivered, 1);
        drop(inbox);

        // A crashed address can be bound again (a restart); a live one cannot.
        assert!(matches!(
            net.bind(a.local_addr()),
            Err(NetError::AddrInUse(_))
        ));
        let b2 = net.bind(b.local_addr()).expect("crashed address is free");
        assert_eq!(
            b.send(a.local_addr(), Bytes::new()),
            Err(TransportError::Closed)
        );
        drop(b);
        assert!(
            net.addrs().contains(&b2.local_addr()),
            "dropping the old incarnation keeps the new one"
        );
    }

    #[test]
    fn loss_is_seeded_and_roughly_right() {
        let net = MemNetwork::with_queue_capacity(42, 100_000);
        net.set_faults(Faults {
            loss: 0.3,
            latency: (Duration::ZERO, Duration::ZERO),
            ..Faults::default()
        });
        let a = net.endpoint();
        let b = net.endpoint();
        for _ in 0..10_000 {
            a.send(b.local_addr(), Bytes::new())
                .expect("loss is silent");
        }
        let lost = net.stats().lost;
        assert!(
            (2_500..3_500).contains(&lost),
            "lost {lost} of 10000 at p = 0.3"
        );
    }

    #[test]
    fn latency_delays_and_reorders() {
        rt().block_on(async {
            let net = MemNetwork::new(3);
            net.set_faults(Faults {
                latency: (Duration::from_millis(5), Duration::from_millis(30)),
                ..Faults::default()
            });
            let a = net.endpoint();
            let mut b = net.endpoint();
            let mut inbox = b.incoming();
            let start = Instant::now();
            for i in 0..20u8 {
                a.send(b.local_addr(), Bytes::from(vec![i])).expect("sent");
            }
            let mut got = Vec::new();
            for _ in 0..20 {
                let r = inbox.next().await.expect("a message");
                got.push(r.bytes[0]);
            }
            assert!(start.elapsed() >= Duration::from_millis(5));
            let mut sorted = got.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..20).collect::<Vec<u8>>());
            assert_ne!(got, sorted, "random latency reorders");
        });
    }

    #[test]
    fn closing_ends_the_stream_and_frees_the_address() {
        rt().block_on(async {
            let net = MemNetwork::new(1);
            let a = net.endpoint();
            let mut b = net.endpoint();
            let mut inbox = b.incoming();
            a.send(b.local_addr(), Bytes::from_static(b"last"))
                .expect("sent");
            b.close().await;
            assert_eq!(
                inbox.next().await.map(|r| r.bytes),
                Some(Bytes::from_static(b"last"))
            );
            assert_eq!(inbox.next().await, None);
            assert_eq!(
                a.send(b.local_addr(), Bytes::new()),
                Err(TransportError::Unreachable(b.local_addr()))
            );
            assert!(net.bind(b.local_addr()).is_ok());
        });
    }

    #[test]
    fn named_endpoints_are_authenticated() {
        rt().block_on(async {
            let net = MemNetwork::new(1);
            let a = net.endpoint_as("a");
            let mut b = net.endpoint();
            let mut inbox = b.incoming();
            a.send(b.local_addr(), Bytes::from_static(b"x"))
                .expect("sent");
            let got = inbox.next().await.expect("a message");
            assert_eq!((got.addr, got.peer.as_deref()), (a.local_addr(), Some("a")));
            assert_eq!(a.name(), Some("a"));
            // A restart under another name is heard under the new name.
            let addr = a.local_addr();
            drop(a);
            let a2 = net.bind_as("a2", addr).expect("free again");
            a2.send(b.local_addr(), Bytes::from_static(b"y"))
                .expect("sent");
            let got = inbox.next().await.expect("a message");
            assert_eq!(got.peer.as_deref(), Some("a2"));
            assert_eq!(b.max_message_bytes(), DEFAULT_MAX_MESSAGE_BYTES);
        });
    }

    #[test]
    fn endpoints_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<MemNetwork>();
        check::<MemTransport>();
    }
}
