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
}
