//! Starting a node: identity, seeds, config and transport in one place.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use actix::{Actor, Addr, ArbiterHandle};
use bytes::Bytes;
use thiserror::Error;

use super::node::{Clock, GossipNode};
use crate::proto::{Config, ConfigError, Node, NodeId, WriteError};
use crate::transport::Transport;

/// Mailbox capacity of a node unless [`NodeBuilder::mailbox_capacity`] says
/// otherwise: room for bursts of queries without letting callers queue
/// without bound (`Addr::send` waits when the mailbox is full).
pub const DEFAULT_MAILBOX_CAPACITY: usize = 256;

/// Why a node could not be started. Nothing was started.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StartError {
    /// The configuration is inconsistent.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A node needs a name.
    #[error("node name is empty")]
    EmptyName,
    /// `start` was called outside a running actix system.
    #[error("no actix arbiter running on this thread")]
    NoRuntime,
    /// An initial key ([`NodeBuilder::key`]) was refused by the limits.
    #[error("initial key {key:?} refused: {error}")]
    Key {
        /// The key.
        key: String,
        /// Why it was refused.
        error: WriteError,
    },
    /// The config's `max_message_bytes` exceeds what the transport carries:
    /// the node's large messages would be dropped at every send.
    #[error("max_message_bytes {config} exceeds the transport's limit of {transport} bytes")]
    MessageTooLarge {
        /// The config's `max_message_bytes`.
        config: usize,
        /// The transport's [`Transport::max_message_bytes`].
        transport: usize,
    },
}

/// Builds and starts a [`GossipNode`].
///
/// ```no_run
/// # use gossip_core::actor::NodeBuilder;
/// # use gossip_core::proto::Config;
/// # fn demo(transport: Box<dyn gossip_core::Transport>) -> Result<(), gossip_core::actor::StartError> {
/// let seeds = vec!["10.0.0.1:7000".parse().expect("valid address")];
/// let node = NodeBuilder::new("web-1").config(Config::lan()).seeds(seeds).start(transport)?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct NodeBuilder {
    name: String,
    config: Config,
    seeds: Vec<SocketAddr>,
    generation: Option<u64>,
    rng_seed: Option<u64>,
    mailbox_capacity: usize,
    keys: Vec<(String, Bytes)>,
}

impl NodeBuilder {
    /// A node named `name` (unique in its cluster), with [`Config::default`],
    /// no seeds, the current time as generation.
    pub fn new(name: impl Into<String>) -> Self {
        NodeBuilder {
            name: name.into(),
            config: Config::default(),
            seeds: Vec::new(),
            generation: None,
            rng_seed: None,
            mailbox_capacity: DEFAULT_MAILBOX_CAPACITY,
            keys: Vec::new(),
        }
    }

    /// The protocol settings; see [`Config::lan`], [`Config::wan`] and
    /// [`Config::local`] for presets.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Addresses to join through. A node with no seeds waits to be
    /// contacted; its own address among them is ignored.
    pub fn seeds(mut self, seeds: Vec<SocketAddr>) -> Self {
        self.seeds = seeds;
        self
    }

    /// The incarnation number. Default: microseconds since the Unix epoch
    /// at `start`, so a restarted node supersedes its previous run. Set it
    /// explicitly when restarts may come faster than the clock advances or
    /// the clock may step back.
    pub fn generation(mut self, generation: u64) -> Self {
        self.generation = Some(generation);
        self
    }

    /// Seeds the node's RNG (peer choice, jitter). Default: derived from
    /// the name and generation, so runs are reproducible given those.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        self
    }

    /// A key this node holds from the start (metadata: role, service port,
    /// version...). Initial keys are written before the node sends
    /// anything, and its first knock on a seed pushes them ahead of its
    /// digest, so peers admit the node together with its keys instead of
    /// seeing it bare first. A key set twice keeps the later value.
    pub fn key(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.keys.push((key.into(), value.into()));
        self
    }

    /// Several initial keys; see [`key`](Self::key).
    pub fn keys<K: Into<String>, V: Into<Bytes>>(
        mut self,
        keys: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.keys
            .extend(keys.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// The node's mailbox capacity (default [`DEFAULT_MAILBOX_CAPACITY`]).
    pub fn mailbox_capacity(mut self, capacity: usize) -> Self {
        self.mailbox_capacity = capacity.max(1);
        self
    }

    /// Starts the node on the current thread's Arbiter (inside a running
    /// actix `System`).
    pub fn start(self, transport: Box<dyn Transport>) -> Result<Addr<GossipNode>, StartError> {
        if actix::Arbiter::try_current().is_none() {
            return Err(StartError::NoRuntime);
        }
        let node = self.build(transport)?;
        Ok(node.start())
    }

    /// Starts the node on `arbiter`, so many nodes of one process can be
    /// spread over Arbiters (one per core). The transport must be usable
    /// from that Arbiter's thread.
    pub fn start_in(
        self,
        arbiter: &ArbiterHandle,
        transport: Box<dyn Transport>,
    ) -> Result<Addr<GossipNode>, StartError> {
        let node = self.build(transport)?;
        Ok(GossipNode::start_in_arbiter(arbiter, move |_ctx| node))
    }

    fn build(self, transport: Box<dyn Transport>) -> Result<GossipNode, StartError> {
        if self.name.is_empty() {
            return Err(StartError::EmptyName);
        }
        let limit = transport.max_message_bytes();
        if self.config.max_message_bytes > limit {
            return Err(StartError::MessageTooLarge {
                config: self.config.max_message_bytes,
                transport: limit,
            });
        }
        let generation = self.generation.unwrap_or_else(unix_micros);
        let rng_seed = self
            .rng_seed
            .unwrap_or_else(|| mix(name_hash(&self.name) ^ mix(generation)));
        let id = NodeId::new(self.name, transport.local_addr(), generation);
        let clock = Clock::start();
        let mut core = Node::new(self.config, id, self.seeds, rng_seed, clock.now())?;
        for (key, value) in self.keys {
            core.set(clock.now(), &key, value)
                .map_err(|error| StartError::Key { key, error })?;
        }
        Ok(GossipNode::new(
            core,
            transport,
            clock,
            self.mailbox_capacity,
        ))
    }
}

/// Microseconds since the Unix epoch (at least 1: generation 0 is "unknown"
/// in digests).
fn unix_micros() -> u64 {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    u64::try_from(micros).unwrap_or(u64::MAX).max(1)
}

/// FNV-1a of a name.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64 finalizer: spreads nearby inputs over the whole range.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
