//! Settings of the QUIC transport.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::certs::{NodeIdentity, server_name};
use crate::error::QuicError;

/// How nodes authenticate each other.
#[derive(Clone)]
pub enum Security {
    /// Mutual TLS: present this identity, and require from every peer a
    /// certificate signed by the same cluster CA. The default, and the only
    /// mode for anything but a developer's laptop.
    MutualTls(Box<NodeIdentity>),
    /// No authentication at all: a throwaway self-signed certificate, any
    /// peer certificate accepted, no client certificate asked. Traffic is
    /// still encrypted, but anyone who can reach the port can join the
    /// cluster and rewrite its state. Only through
    /// [`QuicConfig::insecure_dev_mode_no_authentication`].
    InsecureDevModeNoAuthentication,
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Security::MutualTls(_) => f.write_str("MutualTls"),
            Security::InsecureDevModeNoAuthentication => {
                f.write_str("InsecureDevModeNoAuthentication")
            }
        }
    }
}

/// Everything that tunes a [`QuicTransport`](crate::QuicTransport). Start
/// from [`QuicConfig::new`] (mutual TLS) and change what you need; the
/// defaults suit a LAN cluster at a 1 s gossip interval.
#[derive(Clone, Debug)]
pub struct QuicConfig {
    /// UDP address to bind; one endpoint both listens and dials, so peers
    /// see this as the remote address of our connections. Port 0 picks one.
    pub listen: SocketAddr,
    /// Address peers reach us at, if `listen` is not it (a wildcard bind).
    pub advertise: Option<SocketAddr>,
    /// Authentication.
    pub security: Security,
    /// The cluster's name. Every peer certificate must name a node of this
    /// cluster ([`node_uri`](crate::certs::node_uri)), so a CA shared by two
    /// clusters does not merge them.
    pub cluster: String,
    /// SNI presented on every dial and expected as DNS SAN in every node
    /// certificate; [`server_name`]`(cluster)`.
    pub server_name: String,
    /// Node names refused at the handshake whatever their certificate (a
    /// revoked or compromised node), counted in `denied`. More can be added
    /// at run time with [`QuicTransport::deny`](crate::QuicTransport::deny).
    pub deny: Vec<String>,
    /// Largest message (frame payload) sent or accepted. Set it to the
    /// protocol's `max_message_bytes`; a peer announcing a larger frame is
    /// cut off before its body is read.
    pub max_frame_bytes: usize,
    /// Messages queued per peer before `send` drops (and counts).
    pub peer_queue: usize,
    /// Received messages buffered before the reader drops (and counts).
    pub incoming_queue: usize,
    /// Most of `incoming_queue` one peer (by authenticated name) may hold at
    /// once; its further messages are dropped and counted
    /// (`dropped_peer_share`), so one busy or hostile peer cannot crowd out
    /// the others.
    pub incoming_per_peer: usize,
    /// Most payload bytes written to one stream: small messages queued for
    /// the same peer are batched on one stream up to this.
    pub batch_bytes: usize,
    /// A connection with no packet for this long is closed (a vanished peer).
    pub idle_timeout: Duration,
    /// Keep-alive PING interval, well below `idle_timeout`, so a quiet but
    /// live peer keeps its connection.
    pub keep_alive: Duration,
    /// A dial not finished in this long fails.
    pub connect_timeout: Duration,
    /// First wait after a failed dial; doubles up to `reconnect_max`.
    /// Messages for the peer are dropped (and counted) while waiting.
    pub reconnect_min: Duration,
    /// Longest wait between dials to an unreachable peer.
    pub reconnect_max: Duration,
    /// A connection with no gossip traffic either way for this long is
    /// closed, so a node does not keep a connection to every peer it ever
    /// spoke to.
    pub connection_idle: Duration,
    /// A peer's send queue and writer task are released after this long
    /// without a message for it.
    pub peer_idle: Duration,
    /// Most peers with a send queue at once; sends to more are dropped.
    pub max_peers: usize,
    /// Most connections accepted from peers' dials open at once; more are
    /// refused (counted in `connections_refused`). Separate from
    /// `max_dialed_connections` so peers dialing in cannot use up the room
    /// our own dials need.
    pub max_accepted_connections: usize,
    /// Most connections of our own dials open at once; a dial beyond fails
    /// (counted in `dials_refused`).
    pub max_dialed_connections: usize,
    /// Unidirectional streams a peer may have open at once (QUIC flow
    /// control: a peer cannot exceed it).
    pub max_concurrent_streams: u32,
    /// Streams a peer may open per second (a token bucket with this burst);
    /// more and it is cut off. Our writers pace themselves to half of it.
    pub max_streams_per_sec: u32,
    /// A stream not finished this long after it opened cuts the peer off
    /// (a peer that trickles bytes to hold our buffers).
    pub stream_timeout: Duration,
    /// How long a peer that was cut off is refused before it may reconnect.
    /// Keyed by its authenticated node name (by address in insecure mode),
    /// so it cannot come back from another port.
    pub cut_off_penalty: Duration,
    /// Two connections to the same peer, opened from both ends within this
    /// window, are a simultaneous dial: both ends keep the one dialed by the
    /// lower address. Outside it the newest connection wins (the peer
    /// restarted or found the old one dead).
    pub dedup_window: Duration,
    /// How long the losing connection of a simultaneous dial stays open for
    /// streams already in flight on it.
    pub dedup_linger: Duration,
}

impl QuicConfig {
    /// Mutual TLS with `identity`, for cluster `cluster` (whose
    /// [`server_name`] the node certificates carry).
    pub fn new(listen: SocketAddr, cluster: &str, identity: NodeIdentity) -> Self {
        Self::with_security(listen, cluster, Security::MutualTls(Box::new(identity)))
    }

    /// **No authentication: development only.** Anyone who can reach the
    /// port joins the cluster. Logs a warning at bind.
    pub fn insecure_dev_mode_no_authentication(listen: SocketAddr, cluster: &str) -> Self {
        Self::with_security(listen, cluster, Security::InsecureDevModeNoAuthentication)
    }

    fn with_security(listen: SocketAddr, cluster: &str, security: Security) -> Self {
        QuicConfig {
            listen,
            advertise: None,
            security,
            cluster: cluster.to_owned(),
            server_name: server_name(cluster),
            deny: Vec::new(),
            max_frame_bytes: 64 * 1024,
            peer_queue: 1024,
            incoming_queue: 8192,
            incoming_per_peer: 1024,
            batch_bytes: 256 * 1024,
            idle_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(10),
            connection_idle: Duration::from_secs(120),
            peer_idle: Duration::from_secs(60),
            max_peers: 65_536,
            max_accepted_connections: 16_384,
            max_dialed_connections: 16_384,
            max_concurrent_streams: 64,
            max_streams_per_sec: 2000,
            stream_timeout: Duration::from_secs(10),
            cut_off_penalty: Duration::from_secs(10),
            dedup_window: Duration::from_secs(2),
            dedup_linger: Duration::from_secs(1),
        }
    }

    /// Sets `max_frame_bytes` (use the protocol's `max_message_bytes`).
    pub fn with_max_frame_bytes(mut self, max: usize) -> Self {
        self.max_frame_bytes = max;
        self
    }

    /// Refuses node `node` at the handshake (see `deny`).
    pub fn with_denied(mut self, node: impl Into<String>) -> Self {
        self.deny.push(node.into());
        self
    }

    /// Sets the address peers reach us at. It must be the address peers see
    /// our connections come from (we dial from the listening endpoint): the
    /// core refuses messages whose claimed address is not the connection's.
    pub fn with_advertise(mut self, addr: SocketAddr) -> Self {
        self.advertise = Some(addr);
        self
    }

    /// The quinn server and client configurations this transport uses
    /// (TLS, ALPN, transport parameters), for tools and tests that speak to
    /// a cluster with a bare quinn endpoint.
    pub fn quinn_configs(&self) -> Result<(quinn::ServerConfig, quinn::ClientConfig), QuicError> {
        self.validate()?;
        let policy = std::sync::Arc::new(crate::tls::Policy::new(self, Default::default()));
        crate::tls::quinn_configs(self, self.identity(), &policy)
    }

    /// The identity of mutual TLS; `None` in insecure mode.
    pub(crate) fn identity(&self) -> Option<&NodeIdentity> {
        match &self.security {
            Security::MutualTls(identity) => Some(identity),
            Security::InsecureDevModeNoAuthentication => None,
        }
    }

    /// Checks that the settings make sense together.
    pub fn validate(&self) -> Result<(), QuicError> {
        let bad = |what| Err(QuicError::Config(what));
        if self.max_frame_bytes == 0 || self.max_frame_bytes > u32::MAX as usize {
            return bad("max_frame_bytes must be in [1, u32::MAX]");
        }
        if self.batch_bytes < self.max_frame_bytes {
            return bad("batch_bytes must be at least max_frame_bytes");
        }
        if self.peer_queue == 0
            || self.incoming_queue == 0
            || self.max_peers == 0
            || self.max_accepted_connections == 0
            || self.max_dialed_connections == 0
        {
            return bad("queues and limits must be positive");
        }
        if self.incoming_per_peer == 0 || self.incoming_per_peer > self.incoming_queue {
            return bad("incoming_per_peer must be in [1, incoming_queue]");
        }
        if let Some(identity) = self.identity() {
            if identity.cluster_label() != crate::certs::cluster_label(&self.cluster) {
                return bad("the certificate is of another cluster");
            }
        }
        if self.keep_alive.is_zero() || self.keep_alive >= self.idle_timeout {
            return bad("keep_alive must be positive and below idle_timeout");
        }
        if self.connect_timeout.is_zero() || self.stream_timeout.is_zero() {
            return bad("timeouts must be positive");
        }
        if self.reconnect_min.is_zero() || self.reconnect_max < self.reconnect_min {
            return bad("reconnect bounds must be positive and ordered");
        }
        if self.max_concurrent_streams == 0 || self.max_streams_per_sec < 2 {
            return bad("stream limits must be positive");
        }
        if rustls::pki_types::ServerName::try_from(self.server_name.as_str()).is_err() {
            return bad("server_name must be a dns name");
        }
        Ok(())
    }
}
