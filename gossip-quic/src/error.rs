//! Errors of the QUIC transport: setting it up, and certificates.
//!
//! Sending never returns these: `Transport::send` reports drops as
//! [`gossip_core::TransportError`] and counts them in
//! [`QuicMetrics`](crate::QuicMetrics).

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Why a transport could not be set up, or an explicit dial failed.
#[derive(Debug, Error)]
pub enum QuicError {
    /// `bind` was called outside a tokio runtime (or actix System).
    #[error("no tokio runtime: bind inside a runtime or actix system")]
    NoRuntime,
    /// The UDP socket could not be bound.
    #[error("bind failed: {0}")]
    Bind(#[source] io::Error),
    /// A setting is out of range.
    #[error("invalid config: {0}")]
    Config(&'static str),
    /// rustls refused the TLS configuration (bad key, bad certificate).
    #[error("tls config: {0}")]
    Tls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built (no CA roots).
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// quinn refused the rustls configuration (no TLS 1.3 initial suite).
    #[error("quic crypto config: {0}")]
    Crypto(String),
    /// Certificates could not be created, read or parsed.
    #[error("certificate: {0}")]
    Cert(#[from] CertError),
    /// The dial could not start (bad address, endpoint closed).
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The handshake or the connection failed.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The handshake did not finish within `connect_timeout`.
    #[error("connect timed out")]
    ConnectTimeout,
    /// The transport is closed.
    #[error("transport closed")]
    Closed,
    /// `max_dialed_connections` connections we dialed are open already.
    #[error("too many dialed connections")]
    TooManyConnections,
    /// The peer's certificate names a node on the deny list, or one serving
    /// a cut-off penalty.
    #[error("peer refused: {0}")]
    PeerRefused(String),
    /// Reloading the identity needs mutual TLS (insecure mode has none).
    #[error("no identity to reload in insecure mode")]
    NoIdentity,
}

/// Why certificates could not be created, written or read.
#[derive(Debug, Error)]
pub enum CertError {
    /// rcgen failed to generate or sign.
    #[error("generate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A file holds no usable PEM item of the expected kind.
    #[error("{path}: no {what} in pem file")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was looked for: "certificate" or "private key".
        what: &'static str,
    },
    /// A node name is not usable as a file name and certificate subject.
    #[error("bad node name: {0:?}")]
    BadName(String),
    /// A certificate does not name a gossip node (`gossip://` URI SAN);
    /// certificates issued before node names were required must be issued
    /// again.
    #[error("certificate names no gossip node: {0}")]
    NoNodeName(&'static str),
    /// A certificate names another node than the one it is used for.
    #[error("certificate is node {found:?}'s, not {expected:?}'s")]
    WrongNode {
        /// The node it was loaded or reloaded for.
        expected: String,
        /// The node its certificate names.
        found: String,
    },
    /// A certificate names another cluster than the transport serves.
    #[error("certificate is of cluster {found:?}, not {expected:?}")]
    WrongCluster {
        /// The transport's cluster label.
        expected: String,
        /// The cluster label its certificate names.
        found: String,
    },
}
