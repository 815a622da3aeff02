//! The one seam between the protocol and the network.

use std::net::SocketAddr;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use thiserror::Error;

/// One message as a transport received it: where it came from, who sent
/// it (as far as the transport can prove), and the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The sender's address: the address replies go to. For QUIC it is the
    /// remote address of the connection, which is the sender's gossip
    /// address (a node dials from the endpoint it listens on).
    pub addr: SocketAddr,
    /// The sender's node name, authenticated by the transport (for QUIC,
    /// read from the peer's verified certificate). `None` only from a
    /// transport that authenticates nobody (QUIC's insecure dev mode, an
    /// unnamed in-memory endpoint): the core then believes the envelope.
    pub peer: Option<String>,
    /// The message, still encoded.
    pub bytes: Bytes,
}

impl Received {
    /// A message from an unauthenticated sender at `addr`.
    pub fn anonymous(addr: SocketAddr, bytes: Bytes) -> Self {
        Received {
            addr,
            peer: None,
            bytes,
        }
    }
}

/// Messages received by a transport, each with its sender.
pub type Incoming = Pin<Box<dyn Stream<Item = Received> + Send>>;

/// Why a send was not accepted. Gossip tolerates loss, so callers count
/// these and go on.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The transport was closed.
    #[error("transport closed")]
    Closed,
    /// The outgoing queue is full; the message was dropped.
    #[error("send queue full")]
    QueueFull,
    /// The message is larger than the transport carries.
    #[error("message too large: {0} bytes")]
    TooLarge(usize),
    /// No route to the address (unknown in-memory endpoint, bad address).
    #[error("unreachable: {0}")]
    Unreachable(SocketAddr),
}

/// Carries opaque gossip messages between nodes, best effort.
///
/// Object safe, so an application holds a `Box<dyn Transport>` and picks the
/// implementation per environment (`gossip-mem` in tests, `gossip-quic` in
/// production). Implementations must never block the caller: `send` queues
/// (bounded) or drops, and delivery happens in the background.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Queues `bytes` for `to`. Returns at once; an error means the message
    /// was dropped (nothing to retry: the protocol repairs loss).
    fn send(&self, to: SocketAddr, bytes: Bytes) -> Result<(), TransportError>;

    /// The stream of received messages. Yields each message once; call it
    /// once (later calls may return an empty stream).
    fn incoming(&mut self) -> Incoming;

    /// The address peers reach this node at (its gossip address).
    fn local_addr(&self) -> SocketAddr;

    /// The largest message this transport carries (and accepts). A node
    /// whose `max_message_bytes` exceeds it is refused at start, instead of
    /// having its large messages dropped one by one at run time.
    fn max_message_bytes(&self) -> usize;

    /// Stops sending and receiving and releases resources; pending
    /// messages may be lost. Idempotent.
    async fn close(&self);
}
