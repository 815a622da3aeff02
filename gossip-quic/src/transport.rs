//! [`QuicTransport`]: one quinn endpoint that both listens and dials, one
//! cached connection per peer, a bounded send queue and a writer task per
//! peer.
//!
//! Tasks (all spawned on the runtime `bind` ran in):
//! - accept loop: handshakes incoming connections (refusing peers serving a
//!   cut-off penalty), registers them;
//! - per connection, a reader: accepts streams (rate limited), spawns one
//!   frame reader per stream (QUIC caps how many are open at once);
//! - per peer, a writer: owns the peer's queue, dials when there is no
//!   connection (with backoff), batches queued messages onto one stream;
//! - a sweeper: closes connections with no traffic for `connection_idle`,
//!   forgets expired penalties, summarizes suppressed handshake logs.
//!
//! Each connection knows its peer's node name (from the verified
//! certificate); received messages carry it up to the core, and penalties
//! and the per-peer share of the incoming queue are keyed by it.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use gossip_core::{Incoming, Received, Transport, TransportError};
use quinn::{Connection, ConnectionError};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::certs::{CertName, NodeIdentity};
use crate::config::{QuicConfig, Security};
use crate::error::{CertError, QuicError};
use crate::frame::{FrameError, encode_batch, read_frames};
use crate::metrics::{Counters, QuicMetrics};
use crate::tls::{self, Policy};

/// Application close codes.
mod code {
    use quinn::VarInt;
    /// The transport is shutting down.
    pub const SHUTDOWN: VarInt = VarInt::from_u32(0);
    /// The loser of a simultaneous dial, or replaced by a newer connection.
    pub const DUPLICATE: VarInt = VarInt::from_u32(1);
    /// No traffic for `connection_idle`.
    pub const IDLE: VarInt = VarInt::from_u32(2);
    /// The peer sent bad input and is cut off.
    pub const PROTOCOL_VIOLATION: VarInt = VarInt::from_u32(3);
    /// The peer is serving a cut-off penalty, or was denied.
    pub const REFUSED: VarInt = VarInt::from_u32(4);
}

/// One connection as seen by [`QuicTransport::connections`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The peer's address (its listen address: peers dial from it).
    pub peer: SocketAddr,
    /// Whether we dialed it (else the peer did).
    pub dialed: bool,
    /// quinn's stable id of the connection.
    pub stable_id: usize,
    /// The peer's node name, from its verified certificate (`None` in
    /// insecure mode).
    pub peer_name: Option<String>,
}

/// Who a peer is for penalties and shares: its authenticated node name,
/// or (insecure mode only) its address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum PeerKey {
    Name(Arc<str>),
    Addr(SocketAddr),
}

/// A received message on the incoming queue, with the share of its sender
/// it counts against until the consumer takes it.
struct Queued {
    msg: Received,
    share: Arc<AtomicUsize>,
}

/// What a running [`QuicTransport`] offers besides the [`Transport`]
/// trait, once the transport itself belongs to a node: certificate
/// rotation, revocation, counters. It does not keep the transport alive;
/// once the transport is dropped, every call fails or reads nothing.
#[derive(Clone, Debug)]
pub struct QuicHandle {
    inner: std::sync::Weak<Inner>,
}

impl QuicHandle {
    /// See [`QuicTransport::reload_identity`].
    pub fn reload_identity(&self, identity: NodeIdentity) -> Result<(), QuicError> {
        self.inner
            .upgrade()
            .ok_or(QuicError::Closed)?
            .reload_identity(identity)
    }

    /// See [`QuicTransport::deny`].
    pub fn deny(&self, node: &str) {
        if let Some(inner) = self.inner.upgrade() {
            inner.deny(node);
        }
    }

    /// A snapshot of the counters (all zero once the transport is gone).
    pub fn metrics(&self) -> QuicMetrics {
        self.inner
            .upgrade()
            .map(|i| i.counters.snapshot())
            .unwrap_or_default()
    }
}

/// A gossip [`Transport`] over QUIC with mutual TLS. See the crate docs.
pub struct QuicTransport {
    inner: Arc<Inner>,
    incoming: Option<mpsc::Receiver<Queued>>,
}

struct Inner {
    config: QuicConfig,
    endpoint: quinn::Endpoint,
    /// Replaced by `reload_identity`; used for every new dial.
    client_config: Mutex<quinn::ClientConfig>,
    /// What peer certificates must name (cluster, deny list).
    policy: Arc<Policy>,
    /// The node our own certificate names (`None` in insecure mode).
    own: Option<CertName>,
    local: SocketAddr,
    runtime: tokio::runtime::Handle,
    counters: Arc<Counters>,
    state: Mutex<State>,
    incoming_tx: Mutex<Option<mpsc::Sender<Queued>>>,
    handshake_log: Mutex<LogBurst>,
    next_conn_id: AtomicU64,
    start: Instant,
    /// Flips to `true` at shutdown, so timers end their tasks at once (the
    /// socket is released only when every task has let go of the endpoint).
    shutdown: tokio::sync::watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    closed: bool,
    peers: HashMap<SocketAddr, Peer>,
    /// Peers cut off for bad input, refused until the deadline.
    penalty: HashMap<PeerKey, Instant>,
    /// Messages of each peer waiting in the incoming queue.
    shares: HashMap<PeerKey, Arc<AtomicUsize>>,
}

struct Peer {
    /// The writer's queue; `None` while no writer runs.
    queue: Option<mpsc::Sender<Bytes>>,
    /// The connection in use for this peer, both directions.
    conn: Option<Cached>,
    /// Next wait after a failed dial.
    backoff: Duration,
    /// No dial before this (after a failure).
    retry_at: Option<Instant>,
}

#[derive(Clone)]
struct Cached {
    conn: Connection,
    ctx: Arc<ConnCtx>,
}

struct ConnCtx {
    id: u64,
    peer: SocketAddr,
    /// The peer's authenticated node name (`None` in insecure mode).
    name: Option<Arc<str>>,
    key: PeerKey,
    /// The peer's messages waiting in the incoming queue.
    share: Arc<AtomicUsize>,
    dialed: bool,
    established: Instant,
    /// Milliseconds since `Inner::start` of the last stream either way.
    last_activity: AtomicU64,
    /// Set once when the peer is cut off, so it is counted once.
    cut: AtomicBool,
}

/// Why a peer was cut off.
#[derive(Clone, Copy, Debug)]
enum CutOff {
    Garbage(&'static str),
    Oversized(u64),
    StreamFlood,
    StreamTimeout,
}

impl std::fmt::Display for CutOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CutOff::Garbage(what) => write!(f, "garbage: {what}"),
            CutOff::Oversized(len) => write!(f, "oversized frame: {len} bytes"),
            CutOff::StreamFlood => f.write_str("too many streams"),
            CutOff::StreamTimeout => f.write_str("stream held open too long"),
        }
    }
}

impl QuicTransport {
    /// Binds the endpoint and starts accepting. Must run inside a tokio
    /// runtime (an actix `System` or `Arbiter` is one); all background tasks
    /// run on that runtime.
    pub async fn bind(config: QuicConfig) -> Result<Self, QuicError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| QuicError::NoRuntime)?;
        if matches!(config.security, Security::InsecureDevModeNoAuthentication) {
            warn!(
                listen = %config.listen,
                "INSECURE DEV MODE: no authentication, anyone who reaches this port can join the cluster"
            );
        }
        let counters = Arc::new(Counters::default());
        let policy = Arc::new(Policy::new(&config, counters.clone()));
        let (server_config, client_config) =
            tls::quinn_configs(&config, config.identity(), &policy)?;
        let own = config.identity().map(|id| id.name.clone());
        let endpoint =
            quinn::Endpoint::server(server_config, config.listen).map_err(QuicError::Bind)?;
        let bound = endpoint.local_addr().map_err(QuicError::Bind)?;
        let local = config.advertise.unwrap_or(bound);
        let (tx, rx) = mpsc::channel(config.incoming_queue);
        let inner = Arc::new(Inner {
            config,
            endpoint,
            client_config: Mutex::new(client_config),
            policy,
            own,
            local,
            runtime: runtime.clone(),
            counters,
            state: Mutex::new(State::default()),
            incoming_tx: Mutex::new(Some(tx)),
            handshake_log: Mutex::new(LogBurst::default()),
            next_conn_id: AtomicU64::new(1),
            start: Instant::now(),
            shutdown: tokio::sync::watch::Sender::new(false),
        });
        runtime.spawn(accept_loop(inner.clone()));
        runtime.spawn(sweeper(inner.clone()));
        info!(local = %local, bound = %bound, "quic transport bound");
        Ok(QuicTransport {
            inner,
            incoming: Some(rx),
        })
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> QuicMetrics {
        self.inner.counters.snapshot()
    }

    /// The connections in use, one per peer.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        let state = self.inner.lock();
        let mut out: Vec<_> = state
            .peers
            .iter()
            .filter_map(|(peer, p)| p.conn.as_ref().map(|c| (peer, c)))
            .filter(|(_, c)| c.conn.close_reason().is_none())
            .map(|(peer, c)| ConnectionInfo {
                peer: *peer,
                dialed: c.ctx.dialed,
                stable_id: c.conn.stable_id(),
                peer_name: c.ctx.name.as_deref().map(str::to_owned),
            })
            .collect();
        out.sort_by_key(|c| c.peer);
        out
    }

    /// Swaps in a new certificate and key (a rotation) without a restart:
    /// every handshake from now on, accepted or dialed, presents `identity`
    /// and trusts its CA certificates; open connections go on until they
    /// close. The new certificate must name the same node of the same
    /// cluster. Refused in insecure mode.
    pub fn reload_identity(&self, identity: NodeIdentity) -> Result<(), QuicError> {
        self.inner.reload_identity(identity)
    }

    /// Adds `node` to the deny list (a revocation): its handshakes are
    /// refused from now on, and its open connections are closed.
    pub fn deny(&self, node: &str) {
        self.inner.deny(node);
    }

    /// A handle for rotating the identity, denying nodes and reading the
    /// counters after the transport was handed to a node (`NodeBuilder`
    /// takes it by value).
    pub fn handle(&self) -> QuicHandle {
        QuicHandle {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Connects to `peer` now, unless a connection exists, and waits for
    /// the handshake (sends connect on demand; this is for warming up
    /// connections to seeds, and for tests).
    pub async fn connect(&self, peer: SocketAddr) -> Result<(), QuicError> {
        let peer = canonical(peer);
        if self.inner.cached(peer).is_some() {
            return Ok(());
        }
        self.inner.dial(peer).await.map(|_| ())
    }
}

impl Drop for QuicTransport {
    fn drop(&mut self) {
        self.inner.shutdown();
    }
}

#[async_trait]
impl Transport for QuicTransport {
    fn send(&self, to: SocketAddr, bytes: Bytes) -> Result<(), TransportError> {
        let inner = &self.inner;
        let c = &inner.counters;
        if bytes.len() > inner.config.max_frame_bytes {
            Counters::inc(&c.too_large);
            return Err(TransportError::TooLarge(bytes.len()));
        }
        if to.port() == 0 || to.ip().is_unspecified() {
            return Err(TransportError::Unreachable(to));
        }
        let to = canonical(to);
        let mut state = inner.lock();
        if state.closed {
            return Err(TransportError::Closed);
        }
        let peers = state.peers.len();
        let peer = match state.peers.get_mut(&to) {
            Some(peer) => peer,
            None if peers >= inner.config.max_peers => {
                Counters::inc(&c.dropped_queue_full);
                return Err(TransportError::QueueFull);
            }
            None => state
                .peers
                .entry(to)
                .or_insert_with(|| Peer::new(&inner.config)),
        };
        let queue = match &peer.queue {
            Some(queue) => queue,
            None => {
                let (tx, rx) = mpsc::channel(inner.config.peer_queue);
                inner.runtime.spawn(run_writer(inner.clone(), to, rx));
                peer.queue.insert(tx)
            }
        };
        match queue.try_send(bytes) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                Counters::inc(&c.dropped_queue_full);
                Err(TransportError::QueueFull)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // The writer ended without retiring (runtime shutting down).
                peer.queue = None;
                Counters::inc(&c.dropped_unsent);
                Err(TransportError::Closed)
            }
        }
    }

    fn incoming(&mut self) -> Incoming {
        match self.incoming.take() {
            Some(mut rx) => Box::pin(futures::stream::poll_fn(move |cx| {
                rx.poll_recv(cx).map(|q| {
                    q.map(|q| {
                        q.share.fetch_sub(1, Ordering::Relaxed);
                        q.msg
                    })
                })
            })),
            None => Box::pin(futures::stream::empty()),
        }
    }

    fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    fn max_message_bytes(&self) -> usize {
        self.inner.config.max_frame_bytes
    }

    async fn close(&self) {
        self.inner.shutdown();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.endpoint.wait_idle()).await;
    }
}

impl Peer {
    fn new(config: &QuicConfig) -> Self {
        Peer {
            queue: None,
            conn: None,
            backoff: config.reconnect_min,
            retry_at: None,
        }
    }
}

impl ConnCtx {
    fn touch(&self, inner: &Inner) {
        self.last_activity.store(inner.now_ms(), Ordering::Relaxed);
    }
}

impl Inner {
    /// Swaps in a new certificate and key (a rotation) without a restart:
    /// every handshake from now on, accepted or dialed, presents `identity`
    /// and trusts its CA certificates; open connections go on until they
    /// close. The new certificate must name the same node of the same
    /// cluster. Refused in insecure mode.
    fn reload_identity(&self, identity: NodeIdentity) -> Result<(), QuicError> {
        let inner = self;
        let own = inner.own.as_ref().ok_or(QuicError::NoIdentity)?;
        if identity.name.cluster != own.cluster {
            return Err(CertError::WrongCluster {
                expected: own.cluster.clone(),
                found: identity.name.cluster,
            }
            .into());
        }
        if identity.name.node != own.node {
            return Err(CertError::WrongNode {
                expected: own.node.clone(),
                found: identity.name.node,
            }
            .into());
        }
        let (server, client) = tls::quinn_configs(&inner.config, Some(&identity), &inner.policy)?;
        inner.endpoint.set_server_config(Some(server));
        *inner
            .client_config
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = client;
        info!(node = %own.node, "tls identity reloaded");
        Ok(())
    }

    /// Adds `node` to the deny list (a revocation): its handshakes are
    /// refused from now on, and its open connections are closed.
    fn deny(&self, node: &str) {
        let inner = self;
        inner.policy.deny(node);
        let cut: Vec<Cached> = inner
            .lock()
            .peers
            .values()
            .filter_map(|p| p.conn.clone())
            .filter(|c| c.ctx.name.as_deref() == Some(node))
            .collect();
        for cached in cut {
            Counters::inc(&inner.counters.denied);
            warn!(peer = %cached.ctx.peer, node, "closing connection of a denied node");
            cached.conn.close(code::REFUSED, b"denied");
            inner.forget(cached.ctx.peer, cached.ctx.id);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain maps behind; keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn shutdown(&self) {
        let peers = {
            let mut state = self.lock();
            state.closed = true;
            std::mem::take(&mut state.peers)
        };
        // Dropping the queues ends the writers.
        drop(peers);
        self.incoming_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.endpoint.close(code::SHUTDOWN, b"shutdown");
    }

    /// The live connection to `peer`, if any.
    fn cached(&self, peer: SocketAddr) -> Option<Cached> {
        let state = self.lock();
        let cached = state.peers.get(&peer)?.conn.as_ref()?;
        cached.conn.close_reason().is_none().then(|| cached.clone())
    }

    /// Dials `peer` and registers the connection; returns the connection to
    /// use (a simultaneous dial from the peer may win).
    async fn dial(self: &Arc<Self>, peer: SocketAddr) -> Result<Cached, QuicError> {
        let c = &self.counters;
        if c.dialed_open.load(Ordering::Relaxed) >= self.config.max_dialed_connections as u64 {
            Counters::inc(&c.dials_refused);
            return Err(QuicError::TooManyConnections);
        }
        let client_config = self
            .client_config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let connecting =
            match self
                .endpoint
                .connect_with(client_config, peer, &self.config.server_name)
            {
                Ok(connecting) => connecting,
                Err(e) => {
                    Counters::inc(&c.dial_failures);
                    return Err(e.into());
                }
            };
        let conn = match tokio::time::timeout(self.config.connect_timeout, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                Counters::inc(&c.dial_failures);
                self.handshake_failed(peer, &e, "dial");
                return Err(e.into());
            }
            Err(_) => {
                Counters::inc(&c.dial_failures);
                Counters::inc(&c.handshake_failures);
                debug!(%peer, "dial timed out");
                return Err(QuicError::ConnectTimeout);
            }
        };
        Counters::inc(&c.connections_dialed);
        debug!(%peer, "dialed");
        self.register(conn, true)
    }

    fn handshake_failed(&self, peer: SocketAddr, error: &ConnectionError, side: &'static str) {
        let c = &self.counters;
        match tls_failure(error) {
            Some(TlsFailure::WeRefused) => {
                Counters::inc(&c.tls_refused);
                if self.log_handshake_failure() {
                    warn!(%peer, side, %error, "refused peer: tls handshake failed (certificate or alpn)");
                }
            }
            Some(TlsFailure::PeerRefused) => {
                Counters::inc(&c.tls_refused_by_peer);
                if self.log_handshake_failure() {
                    warn!(%peer, side, %error, "refused by peer: it rejected our tls handshake (certificate or alpn)");
                }
            }
            None => {
                Counters::inc(&c.handshake_failures);
                debug!(%peer, side, %error, "handshake failed");
            }
        }
    }

    /// Whether to log this failed handshake: the first few of a burst are
    /// logged, the rest counted and summarized once the burst's window ends.
    fn log_handshake_failure(&self) -> bool {
        let mut log = self.handshake_log.lock().unwrap_or_else(|p| p.into_inner());
        let (log_it, summary) = log.note(Instant::now());
        drop(log);
        if let Some(suppressed) = summary {
            warn!(suppressed, window = ?LOG_WINDOW, "failed handshakes not logged in the last burst");
        }
        if !log_it {
            Counters::inc(&self.counters.handshake_logs_suppressed);
        }
        log_it
    }

    /// Logs the summary of a finished burst of failed handshakes, if any.
    fn flush_handshake_log(&self) {
        let summary = self
            .handshake_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .flush(Instant::now());
        if let Some(suppressed) = summary {
            warn!(suppressed, window = ?LOG_WINDOW, "failed handshakes not logged in the last burst");
        }
    }

    /// Records a failed dial: no new dial to `peer` before the backoff.
    fn note_failure(&self, peer: SocketAddr) {
        let mut state = self.lock();
        if let Some(p) = state.peers.get_mut(&peer) {
            let wait = jitter(p.backoff);
            p.retry_at = Some(Instant::now() + wait);
            p.backoff = (p.backoff * 2).min(self.config.reconnect_max);
        }
    }

    fn note_success(&self, peer: SocketAddr) {
        let mut state = self.lock();
        if let Some(p) = state.peers.get_mut(&peer) {
            p.backoff = self.config.reconnect_min;
            p.retry_at = None;
        }
    }

    /// Makes `conn` the connection of its peer, or not (deduplication), and
    /// starts reading it. Returns the connection to use for the peer.
    /// Refuses (closes) a connection of a peer serving a penalty.
    fn register(self: &Arc<Self>, conn: Connection, dialed: bool) -> Result<Cached, QuicError> {
        let peer = canonical(conn.remote_address());
        let name: Option<Arc<str>> = match self.own {
            Some(_) => match tls::peer_name(&conn) {
                Some(name) => Some(name.into()),
                None => {
                    // Mutual TLS verified a certificate naming a node; this
                    // cannot happen, but never serve an unnamed peer.
                    conn.close(code::REFUSED, b"no node name");
                    return Err(QuicError::PeerRefused("no node name".to_owned()));
                }
            },
            None => None,
        };
        let key = match &name {
            Some(name) => PeerKey::Name(name.clone()),
            None => PeerKey::Addr(peer),
        };
        let (winner, loser, new) = {
            let mut state = self.lock();
            if state.closed {
                conn.close(code::SHUTDOWN, b"shutdown");
                return Err(QuicError::Closed);
            }
            let now = Instant::now();
            if state.penalty.get(&key).is_some_and(|until| *until > now) {
                drop(state);
                Counters::inc(&self.counters.connections_refused);
                debug!(%peer, node = ?name, "connection refused: the peer serves a penalty");
                conn.close(code::REFUSED, b"penalty");
                return Err(QuicError::PeerRefused("serving a penalty".to_owned()));
            }
            // Every connection of one peer shares one count.
            let share = state.shares.entry(key.clone()).or_default().clone();
            let ctx = Arc::new(ConnCtx {
                id: self.next_conn_id.fetch_add(1, Ordering::Relaxed),
                peer,
                name,
                key,
                share,
                dialed,
                established: Instant::now(),
                last_activity: AtomicU64::new(self.now_ms()),
                cut: AtomicBool::new(false),
            });
            let new = Cached { conn, ctx };
            let entry = state
                .peers
                .entry(peer)
                .or_insert_with(|| Peer::new(&self.config));
            match entry.conn.take() {
                Some(old) if old.conn.close_reason().is_none() => {
                    let simultaneous = old.ctx.dialed != dialed
                        && old.ctx.established.elapsed() < self.config.dedup_window;
                    // In a simultaneous dial both ends keep the connection
                    // dialed by the lower address; otherwise the newest wins
                    // (the peer restarted or gave the old one up).
                    let keep_new = !simultaneous || {
                        let dialer = |d: bool| if d { self.local } else { peer };
                        dialer(dialed) < dialer(old.ctx.dialed)
                    };
                    if keep_new {
                        entry.conn = Some(new.clone());
                        (new.clone(), Some((old, simultaneous)), new)
                    } else {
                        entry.conn = Some(old.clone());
                        (old, Some((new.clone(), simultaneous)), new)
                    }
                }
                _ => {
                    entry.conn = Some(new.clone());
                    (new.clone(), None, new)
                }
            }
        };
        Counters::inc(&self.counters.connections_open);
        Counters::inc(if dialed {
            &self.counters.dialed_open
        } else {
            &self.counters.accepted_open
        });
        self.runtime.spawn(serve_connection(self.clone(), new));
        if let Some((loser, simultaneous)) = loser {
            Counters::inc(&self.counters.duplicates_closed);
            debug!(%peer, simultaneous, kept_dialed = winner.ctx.dialed, "closing duplicate connection");
            let linger = self.config.dedup_linger;
            let mut shutdown = self.shutdown.subscribe();
            self.runtime.spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(linger) => {}
                    _ = shutdown.wait_for(|closed| *closed) => {}
                }
                loser.conn.close(code::DUPLICATE, b"duplicate");
            });
        }
        Ok(winner)
    }

    /// Drops `peer`'s cached connection if it is connection `id`.
    fn forget(&self, peer: SocketAddr, id: u64) {
        let mut state = self.lock();
        if let Some(p) = state.peers.get_mut(&peer) {
            if p.conn.as_ref().is_some_and(|c| c.ctx.id == id) {
                p.conn = None;
            }
            if p.conn.is_none() && p.queue.is_none() {
                state.peers.remove(&peer);
            }
        }
    }

    /// The writer of `peer` may exit: nothing queued, and no send can race
    /// in (sends hold the same lock).
    fn retire(&self, peer: SocketAddr, rx: &mpsc::Receiver<Bytes>) -> bool {
        let mut state = self.lock();
        if !rx.is_empty() {
            return false;
        }
        if let Some(p) = state.peers.get_mut(&peer) {
            p.queue = None;
            if p.conn.is_none() {
                state.peers.remove(&peer);
            }
        }
        true
    }

    fn cut_off(&self, conn: &Connection, ctx: &ConnCtx, why: CutOff) {
        if ctx.cut.swap(true, Ordering::Relaxed) {
            return;
        }
        let c = &self.counters;
        Counters::inc(&c.peers_cut_off);
        match why {
            CutOff::Garbage(_) => Counters::inc(&c.garbage),
            CutOff::Oversized(_) => Counters::inc(&c.oversized_frames),
            CutOff::StreamFlood => Counters::inc(&c.stream_floods),
            CutOff::StreamTimeout => Counters::inc(&c.stream_timeouts),
        }
        warn!(peer = %ctx.peer, node = ?ctx.name, reason = %why, penalty = ?self.config.cut_off_penalty, "peer cut off for bad input");
        {
            let mut state = self.lock();
            let now = Instant::now();
            state.penalty.retain(|_, until| *until > now);
            // Bound the penalty box; a flood of distinct peers must not grow it.
            let bound = self.config.max_accepted_connections + self.config.max_dialed_connections;
            if state.penalty.len() < bound {
                state
                    .penalty
                    .insert(ctx.key.clone(), now + self.config.cut_off_penalty);
            }
        }
        conn.close(code::PROTOCOL_VIOLATION, b"protocol violation");
        self.forget(ctx.peer, ctx.id);
    }

    /// Whether an incoming connection from `peer` must be refused before
    /// its handshake: capacity, or (insecure mode, where the address is all
    /// we know) a penalty. With mutual TLS penalties are by name, checked
    /// once the handshake says who it is.
    fn refuse_incoming(&self, peer: SocketAddr) -> bool {
        let state = self.lock();
        if state.closed {
            return true;
        }
        let penalized = state
            .penalty
            .get(&PeerKey::Addr(peer))
            .is_some_and(|until| *until > Instant::now());
        penalized
            || self.counters.accepted_open.load(Ordering::Relaxed)
                >= self.config.max_accepted_connections as u64
    }

    fn incoming_sender(&self) -> Option<mpsc::Sender<Queued>> {
        self.incoming_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

async fn accept_loop(inner: Arc<Inner>) {
    while let Some(incoming) = inner.endpoint.accept().await {
        let peer = canonical(incoming.remote_address());
        if inner.refuse_incoming(peer) {
            Counters::inc(&inner.counters.connections_refused);
            debug!(%peer, "incoming connection refused (penalty or capacity)");
            incoming.refuse();
            continue;
        }
        let inner = inner.clone();
        let runtime = inner.runtime.clone();
        runtime.spawn(async move {
            let connecting = match incoming.accept() {
                Ok(connecting) => connecting,
                Err(e) => {
                    inner.handshake_failed(peer, &e, "accept");
                    return;
                }
            };
            match tokio::time::timeout(inner.config.connect_timeout, connecting).await {
                Ok(Ok(conn)) => {
                    Counters::inc(&inner.counters.connections_accepted);
                    debug!(%peer, "accepted");
                    if let Err(error) = inner.register(conn, false) {
                        debug!(%peer, %error, "accepted connection not kept");
                    }
                }
                Ok(Err(e)) => inner.handshake_failed(peer, &e, "accept"),
                Err(_) => {
                    Counters::inc(&inner.counters.handshake_failures);
                    debug!(%peer, "incoming handshake timed out");
                }
            }
        });
    }
    debug!("accept loop ended");
}

/// Reads one connection until it closes: accepts streams, spawns a frame
/// reader per stream, then accounts for how the connection ended.
async fn serve_connection(inner: Arc<Inner>, cached: Cached) {
    let Cached { conn, ctx } = cached;
    let c = &inner.counters;
    let mut bucket = TokenBucket::new(inner.config.max_streams_per_sec);
    let error = loop {
        match conn.accept_uni().await {
            Ok(mut stream) => {
                Counters::inc(&c.streams_in);
                ctx.touch(&inner);
                if !bucket.take() {
                    inner.cut_off(&conn, &ctx, CutOff::StreamFlood);
                    continue;
                }
                let (inner, conn, ctx) = (inner.clone(), conn.clone(), ctx.clone());
                let runtime = inner.runtime.clone();
                runtime.spawn(async move {
                    let tx = inner.incoming_sender();
                    let max = inner.config.max_frame_bytes;
                    let share_limit = inner.config.incoming_per_peer;
                    let peer_name = ctx.name.as_deref().map(str::to_owned);
                    let deliver = |bytes: Bytes| {
                        let c = &inner.counters;
                        Counters::inc(&c.frames_in);
                        Counters::add(&c.bytes_in, bytes.len() as u64);
                        let Some(tx) = &tx else { return };
                        if ctx.share.fetch_add(1, Ordering::Relaxed) >= share_limit {
                            ctx.share.fetch_sub(1, Ordering::Relaxed);
                            Counters::inc(&c.dropped_peer_share);
                            return;
                        }
                        let queued = Queued {
                            msg: Received {
                                addr: ctx.peer,
                                peer: peer_name.clone(),
                                bytes,
                            },
                            share: ctx.share.clone(),
                        };
                        if tx.try_send(queued).is_err() {
                            ctx.share.fetch_sub(1, Ordering::Relaxed);
                            Counters::inc(&c.dropped_incoming);
                        }
                    };
                    let result = tokio::time::timeout(
                        inner.config.stream_timeout,
                        read_frames(
                            &mut stream,
                            max,
                            &inner.counters.frame_bytes_buffered,
                            deliver,
                        ),
                    )
                    .await;
                    match result {
                        Ok(Ok(())) => inner.note_success(ctx.peer),
                        Ok(Err(FrameError::Garbage(what))) => {
                            inner.cut_off(&conn, &ctx, CutOff::Garbage(what))
                        }
                        Ok(Err(FrameError::Oversized(len))) => {
                            inner.cut_off(&conn, &ctx, CutOff::Oversized(len))
                        }
                        Ok(Err(FrameError::Read(e))) => {
                            debug!(peer = %ctx.peer, error = %e, "stream read failed")
                        }
                        Err(_) => inner.cut_off(&conn, &ctx, CutOff::StreamTimeout),
                    }
                });
            }
            Err(e) => break e,
        }
    };
    Counters::dec(&c.connections_open);
    Counters::dec(if ctx.dialed {
        &c.dialed_open
    } else {
        &c.accepted_open
    });
    inner.forget(ctx.peer, ctx.id);
    let peer = ctx.peer;
    match &error {
        ConnectionError::ApplicationClosed(close)
            if close.error_code == code::PROTOCOL_VIOLATION =>
        {
            Counters::inc(&c.cut_off_by_peer);
            warn!(%peer, "peer cut us off (protocol violation)");
        }
        ConnectionError::ApplicationClosed(close) => {
            debug!(%peer, code = %close.error_code, "connection closed by peer");
        }
        ConnectionError::TimedOut => {
            Counters::inc(&c.connections_idle_closed);
            info!(%peer, "connection timed out (peer vanished)");
        }
        ConnectionError::LocallyClosed => debug!(%peer, "connection closed"),
        e => match tls_failure(e) {
            // With TLS 1.3 a refused client learns of it only now.
            Some(_) => {
                inner.handshake_failed(peer, e, "after connect");
                inner.note_failure(peer);
            }
            None => debug!(%peer, error = %e, "connection lost"),
        },
    }
}

/// Owns `peer`'s queue: dials when needed, batches and writes.
async fn run_writer(inner: Arc<Inner>, peer: SocketAddr, mut rx: mpsc::Receiver<Bytes>) {
    let c = &inner.counters;
    let mut pacer = Pacer::new(inner.config.max_streams_per_sec / 2);
    let mut batch: Vec<Bytes> = Vec::new();
    loop {
        let first = match tokio::time::timeout(inner.config.peer_idle, rx.recv()).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return,
            Err(_) => {
                if inner.retire(peer, &rx) {
                    debug!(%peer, "peer writer retired");
                    return;
                }
                continue;
            }
        };
        batch.push(first);
        let cached = match inner.cached(peer) {
            Some(cached) => Some(cached),
            None => {
                let wait = inner
                    .lock()
                    .peers
                    .get(&peer)
                    .and_then(|p| p.retry_at)
                    .filter(|t| *t > Instant::now());
                if wait.is_some() {
                    None
                } else {
                    match inner.dial(peer).await {
                        Ok(cached) => Some(cached),
                        Err(error) => {
                            debug!(%peer, %error, "dial failed");
                            inner.note_failure(peer);
                            None
                        }
                    }
                }
            }
        };
        let Some(cached) = cached else {
            // Unreachable for now: drop what is queued, count it.
            while let Ok(bytes) = rx.try_recv() {
                batch.push(bytes);
            }
            Counters::add(&c.dropped_unsent, batch.len() as u64);
            batch.clear();
            continue;
        };
        pacer.wait().await;
        let mut len: usize = batch.iter().map(Bytes::len).sum();
        while len < inner.config.batch_bytes {
            match rx.try_recv() {
                Ok(bytes) => {
                    len += bytes.len();
                    batch.push(bytes);
                }
                Err(_) => break,
            }
        }
        match write_batch(&cached.conn, &batch).await {
            Ok(()) => {
                Counters::inc(&c.streams_out);
                Counters::add(&c.frames_out, batch.len() as u64);
                Counters::add(&c.bytes_out, len as u64);
                cached.ctx.touch(&inner);
            }
            Err(error) => {
                Counters::add(&c.dropped_unsent, batch.len() as u64);
                debug!(%peer, %error, "write failed");
                if cached.conn.close_reason().is_some() {
                    inner.forget(peer, cached.ctx.id);
                }
            }
        }
        batch.clear();
    }
}

#[derive(Debug, thiserror::Error)]
enum WriteFailure {
    #[error("open stream: {0}")]
    Open(#[from] ConnectionError),
    #[error("write: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("finish: {0}")]
    Finish(#[from] quinn::ClosedStream),
}

async fn write_batch(conn: &Connection, batch: &[Bytes]) -> Result<(), WriteFailure> {
    let mut stream = conn.open_uni().await?;
    stream.write_all(&encode_batch(batch)).await?;
    stream.finish()?;
    Ok(())
}

/// Closes connections without traffic for `connection_idle`, forgets
/// expired penalties.
async fn sweeper(inner: Arc<Inner>) {
    let period = (inner.config.connection_idle / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|closed| *closed) => return,
        }
        let idle_ms = u64::try_from(inner.config.connection_idle.as_millis()).unwrap_or(u64::MAX);
        let now_ms = inner.now_ms();
        let idle: Vec<Cached> = {
            let mut state = inner.lock();
            if state.closed {
                return;
            }
            let now = Instant::now();
            state.penalty.retain(|_, until| *until > now);
            // Forget the shares of peers with no connection and nothing queued.
            state.shares.retain(|_, share| {
                Arc::strong_count(share) > 1 || share.load(Ordering::Relaxed) > 0
            });
            state
                .peers
                .values()
                .filter_map(|p| p.conn.clone())
                .filter(|c| {
                    now_ms.saturating_sub(c.ctx.last_activity.load(Ordering::Relaxed)) > idle_ms
                })
                .collect()
        };
        inner.flush_handshake_log();
        for cached in idle {
            debug!(peer = %cached.ctx.peer, "closing idle connection");
            Counters::inc(&inner.counters.connections_idle_closed);
            cached.conn.close(code::IDLE, b"idle");
            inner.forget(cached.ctx.peer, cached.ctx.id);
        }
    }
}

enum TlsFailure {
    WeRefused,
    PeerRefused,
}

/// TLS alerts travel as QUIC CRYPTO_ERROR codes 0x100..=0x1ff.
fn tls_failure(error: &ConnectionError) -> Option<TlsFailure> {
    let is_crypto = |code: quinn::TransportErrorCode| (0x100..0x200).contains(&u64::from(code));
    match error {
        ConnectionError::TransportError(e) if is_crypto(e.code) => Some(TlsFailure::WeRefused),
        ConnectionError::ConnectionClosed(close) if is_crypto(close.error_code) => {
            Some(TlsFailure::PeerRefused)
        }
        _ => None,
    }
}

/// IPv4-mapped IPv6 addresses as plain IPv4, so one peer has one key.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// `base` ± 25 %, so peers that lost each other do not redial in lockstep.
fn jitter(base: Duration) -> Duration {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0);
    let r = (h.finish() % 1000) as f64 / 1000.0;
    base.mul_f64(0.75 + 0.5 * r)
}

/// How long a burst of failed-handshake log lines lasts.
const LOG_WINDOW: Duration = Duration::from_secs(10);
/// Failed handshakes logged one by one per window; the rest are counted.
const LOG_BURST: u32 = 5;

/// Rate limit of failed-handshake logs: a scan or a misconfigured peer
/// retrying must not write a line per attempt. The first [`LOG_BURST`] of a
/// [`LOG_WINDOW`] are logged, the rest only counted, and one summary line
/// says how many were left out.
#[derive(Debug, Default)]
struct LogBurst {
    start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl LogBurst {
    /// Notes one failure at `now`: whether to log it, and the summary of a
    /// window that just ended (lines left out), if any.
    fn note(&mut self, now: Instant) -> (bool, Option<u64>) {
        let summary = self.flush(now);
        self.start.get_or_insert(now);
        if self.logged < LOG_BURST {
            self.logged += 1;
            (true, summary)
        } else {
            self.suppressed += 1;
            (false, summary)
        }
    }

    /// Ends the window if it is over: the lines left out in it, if any.
    fn flush(&mut self, now: Instant) -> Option<u64> {
        let start = self.start?;
        if now.duration_since(start) < LOG_WINDOW {
            return None;
        }
        let suppressed = std::mem::take(&mut self.suppressed);
        *self = LogBurst::default();
        (suppressed > 0).then_some(suppressed)
    }
}

/// Receive-side stream rate limit: a token bucket of `rate` tokens
/// refilled at `rate` per second.
struct TokenBucket {
    tokens: f64,
    rate: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32) -> Self {
        TokenBucket {
            tokens: f64::from(rate),
            rate: f64::from(rate),
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Send-side pacing of stream opens at `rate` per second with a burst of
/// `rate`: half the receiver's limit, so a busy writer batches more instead
/// of tripping it.
struct Pacer {
    interval: Duration,
    burst: Duration,
    next: tokio::time::Instant,
}

impl Pacer {
    fn new(rate: u32) -> Self {
        let interval = Duration::from_secs(1) / rate.max(1);
        Pacer {
            interval,
            burst: interval * rate.max(1),
            next: tokio::time::Instant::now(),
        }
    }

    async fn wait(&mut self) {
        let now = tokio::time::Instant::now();
        if let Some(earliest) = now.checked_sub(self.burst) {
            self.next = self.next.max(earliest);
        }
        if self.next > now {
            tokio::time::sleep_until(self.next).await;
        }
        self.next += self.interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_limits_bursts() {
        let mut b = TokenBucket::new(10);
        let taken = (0..20).filter(|_| b.take()).count();
        assert!((10..=11).contains(&taken));
    }

    #[test]
    fn handshake_logs_summarize_bursts() {
        let mut log = LogBurst::default();
        let t0 = Instant::now();
        let logged = (0..100).filter(|_| log.note(t0).0).count();
        assert_eq!(logged, LOG_BURST as usize);
        assert_eq!(
            log.flush(t0 + Duration::from_secs(1)),
            None,
            "window still open"
        );
        let later = t0 + LOG_WINDOW;
        assert_eq!(log.flush(later), Some(100 - u64::from(LOG_BURST)));
        assert_eq!(log.note(later), (true, None), "a new window logs again");
    }

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..100 {
            let j = jitter(Duration::from_millis(1000));
            assert!(j >= Duration::from_millis(750) && j <= Duration::from_millis(1250));
        }
    }

    #[test]
    fn canonical_unmaps_v4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5".parse().expect("literal address");
        assert_eq!(
            canonical(mapped),
            "127.0.0.1:5".parse().expect("literal address")
        );
    }
}
