//! # gossip-quic
//!
//! The production [`Transport`](gossip_core::Transport) of the gossip
//! framework: QUIC (quinn) with mutual TLS (rustls, ring provider, TLS 1.3
//! only). Swap it for the in-memory transport with one line:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use gossip_quic::{certs::NodeIdentity, QuicConfig, QuicTransport};
//! let identity = NodeIdentity::load("certs".as_ref(), "a")?;
//! let config = QuicConfig::new("127.0.0.1:7001".parse()?, "prod", identity);
//! let transport: Box<dyn gossip_core::Transport> = Box::new(QuicTransport::bind(config).await?);
//! # let _ = transport; Ok(()) }
//! ```
//!
//! ## What it does
//! - **One endpoint** both listens and dials, so a peer's connections come
//!   from its listen address and the address we see is its gossip address.
//! - **One connection per peer**, cached and used both ways. When two nodes
//!   dial each other at once both keep the connection dialed by the lower
//!   address (so both ends agree without talking); outside that window the
//!   newest connection wins (the peer restarted). The loser lingers
//!   briefly for streams in flight, then closes.
//! - **Frames on unidirectional streams** (never datagrams: they drop under
//!   load): each stream is a tag byte and length-prefixed frames; the
//!   messages queued for a peer are batched onto one stream. The length is
//!   checked against `max_frame_bytes` before the payload is read.
//! - **Never blocks**: `send` puts the message on the peer's bounded queue
//!   or drops it (and counts). A writer task per peer dials on demand, with
//!   exponential backoff after failures; messages for an unreachable peer
//!   are dropped, not hoarded. Keep-alives hold a live peer's connection;
//!   the idle timeout closes a vanished one; an idle writer releases its
//!   queue. What a dead peer costs is bounded by these timeouts.
//! - **Mutual TLS by default** against the cluster CA ([`certs`]); a peer
//!   without a certificate, with another CA's, an expired one, one of
//!   another cluster or of a denied node is refused, logged (a burst is
//!   summarized, not logged line by line) and counted on both sides
//!   (`tls_refused` / `tls_refused_by_peer`, and `tls_wrong_cluster`,
//!   `tls_no_node_name`, `denied` for why). ALPN is
//!   `gossip/<protocol version>`. The unauthenticated mode exists only as
//!   [`QuicConfig::insecure_dev_mode_no_authentication`] and warns at bind.
//! - **A certificate is a node**: the name in the peer's verified
//!   certificate comes with every received message
//!   ([`Received::peer`](gossip_core::Received)), and the core refuses
//!   envelopes claiming another node or another address. Certificates
//!   rotate without a restart ([`QuicTransport::reload_identity`]); nodes
//!   are revoked with the deny list ([`QuicConfig::deny`],
//!   [`QuicTransport::deny`]).
//! - **Bounded**: separate limits for accepted and dialed connections, a
//!   per-peer share of the incoming queue, frame buffers that grow with
//!   the bytes received rather than the length announced.
//! - **Bad input** (garbage streams, oversized frames, stream floods,
//!   streams held open) cuts that one peer off: its connection is closed
//!   with a protocol-violation code, counted, and new connections from it
//!   (by node name) are refused for `cut_off_penalty`. Other peers are
//!   untouched.
//!
//! Counters: [`QuicTransport::metrics`].

pub mod certs;
mod config;
mod error;
mod frame;
mod metrics;
mod tls;
mod transport;

pub use certs::{
    CertName, ClusterCa, DEFAULT_NODE_VALIDITY, NodeCert, NodeIdentity, cert_name, node_uri,
    server_name, write_cluster, write_cluster_valid_for,
};
pub use config::{QuicConfig, Security};
pub use error::{CertError, QuicError};
pub use metrics::QuicMetrics;
pub use tls::alpn;
pub use transport::{ConnectionInfo, QuicHandle, QuicTransport};
