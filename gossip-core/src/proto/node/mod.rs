//! The protocol state machine of one node.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngExt, SeedableRng};

use crate::proto::budget::Budget;
use crate::proto::codec::{self, cluster_id};
use crate::proto::config::Config;
use crate::proto::detection::{self, Detection};
use crate::proto::eager::Eager;
use crate::proto::error::{ConfigError, RefuseReason, WriteError};
use crate::proto::event::{Event, Status, StatusReason};
use crate::proto::events::EventQueue;
use crate::proto::failure::{Coverage, PhiParams};
use crate::proto::id::{Id, NodeId};
use crate::proto::keyspace::{Change, Entry, Keyspace};
use crate::proto::loglimit::LogLimit;
use crate::proto::membership::{Member, Members};
use crate::proto::message::{DigestEntry, Envelope, Message, NodeDelta, size};
use crate::proto::metrics::{Gauges, Metrics, PartRefused};
use crate::proto::refute;
use crate::proto::time::Instant;

mod app;
mod exchange;
mod own;
mod probe;
mod push;
mod reconcile;
mod rejoin;
mod sweep;
mod timers;

/// A message for the shell to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Transmit {
    /// Gossip address of the receiver.
    pub to: SocketAddr,
    /// What to send; [`Transmit::encode`] turns it into bytes.
    pub envelope: Envelope,
    /// Exact length of `envelope` once encoded, computed once when the
    /// node queued it ([`Envelope::encoded_len`]).
    pub len: usize,
}

impl Transmit {
    /// The bytes to put on the wire.
    pub fn encode(&self) -> Bytes {
        codec::encode(&self.envelope)
    }
}

/// One member as seen by this node, for applications and tests.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberInfo {
    /// Identity.
    pub id: Id,
    /// This node's opinion of it (or Left, as it announced).
    pub status: Status,
    /// Latest heartbeat known.
    pub heartbeat: u64,
    /// Every update of its keyspace up to this version is held here.
    pub max_version: u64,
    /// Live keys held of it.
    pub keys: usize,
}

/// A fresh update being pushed: a node whose state changed recently.
#[derive(Clone, Debug)]
struct Hot {
    id: Id,
    /// Version this node held before the change: pushes carry updates above it.
    floor: u64,
    until: Instant,
    /// Only news that the member exists (it was just admitted): the first
    /// to give way when the list is full, so a join's burst of admissions
    /// does not push key writes out of it.
    admitted: bool,
}

/// Most hot nodes tracked, and most "behind" nodes remembered for the next digest.
const MAX_HOT: usize = 64;
const MAX_BEHIND: usize = 256;
/// Bytes reserved for an envelope's own fields and list lengths.
const ENVELOPE_SLACK: usize = 32;

/// What this node tells about misbehaving or conflicting peers, bounded:
/// name conflicts reported once each, refusals logged once per peer per
/// interval.
#[derive(Debug, Default)]
struct Complaints {
    conflicts: Vec<Id>,
    log: LogLimit,
}

/// One gossip node's protocol state: membership with heartbeats, versioned
/// keyspaces, failure detection, and the push-pull exchange. Sans-io.
///
/// The node does no I/O, reads no clock and owns its RNG (seeded by the
/// caller): the same inputs always give the same outputs.
///
/// # Calling order
///
/// 1. Feed inputs: [`handle_bytes`](Node::handle_bytes) (or
///    [`handle_message`](Node::handle_message)) for every received message,
///    [`handle_timeout`](Node::handle_timeout) when the deadline from
///    `poll_timeout` passes, and commands ([`set`](Node::set),
///    [`delete`](Node::delete), [`leave`](Node::leave)) at any time.
/// 2. After every input, drain [`poll_transmit`](Node::poll_transmit) and
///    send each, then drain [`poll_event`](Node::poll_event).
/// 3. Re-arm one timer at [`poll_timeout`](Node::poll_timeout).
///
/// `now` must never go backwards between calls.
///
/// ```
/// use gossip_core::proto::{Config, Instant, Node, NodeId};
/// let a_addr = "127.0.0.1:7001".parse().unwrap();
/// let b_addr = "127.0.0.1:7002".parse().unwrap();
/// let t = Instant::ZERO;
/// let mut a = Node::new(Config::default(), NodeId::new("a", a_addr, 1), vec![b_addr], 1, t).unwrap();
/// let mut b = Node::new(Config::default(), NodeId::new("b", b_addr, 1), vec![], 2, t).unwrap();
/// a.set(t, "color", "blue".into()).unwrap();
/// // Let the two nodes exchange until nothing is in flight.
/// let mut now = t;
/// for _ in 0..3 {
///     now = a.poll_timeout();
///     a.handle_timeout(now);
///     loop {
///         let mut idle = true;
///         while let Some(tx) = a.poll_transmit() { b.handle_bytes(now, a_addr, &tx.encode()).unwrap(); idle = false; }
///         while let Some(tx) = b.poll_transmit() { a.handle_bytes(now, b_addr, &tx.encode()).unwrap(); idle = false; }
///         if idle { break; }
///     }
/// }
/// assert_eq!(b.get("a", "color").map(|(v, _)| v.clone()), Some("blue".into()));
/// ```
#[derive(Debug)]
pub struct Node {
    config: Config,
    cluster: u64,
    me: Id,
    phi: PhiParams,
    rng: StdRng,
    members: Members,
    rejoin: rejoin::Rejoin,
    refutation: refute::Refutation,
    eager: Eager,
    detection: Detection,
    seeds: Vec<SocketAddr>,
    hot: VecDeque<Hot>,
    behind: Vec<Id>,
    digest_cursor: usize,
    catchup: sweep::CatchUp,
    fd_cursor: usize,
    coverage: Coverage,
    next_tick: Instant,
    last_activity: Instant,
    joined: bool,
    leave_version: Option<u64>,
    leave_announced: bool,
    complaints: Complaints,
    transmits: VecDeque<Transmit>,
    events: EventQueue,
    budget: Budget,
    metrics: Metrics,
}

impl Node {
    /// A node named by `id` that will join the cluster through `seeds`
    /// (addresses; its own is ignored). `rng_seed` seeds all its randomness.
    pub fn new(
        config: Config,
        id: NodeId,
        seeds: Vec<SocketAddr>,
        rng_seed: u64,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        if id.name.len() > config.max_name_bytes {
            return Err(ConfigError::Invalid("node name longer than max_name_bytes"));
        }
        let me: Id = Arc::new(id);
        let phi = PhiParams {
            min_std_dev: config.min_std_dev.as_secs_f32(),
            acceptable_pause: config.acceptable_pause.as_secs_f32(),
            smoothing: config.phi_smoothing as f32,
            y_floor: PhiParams::y_floor(config.phi_threshold),
            gap_floor: 0.0,
            max_sample: PhiParams::max_sample_for(
                config.gossip_interval,
                config.acceptable_pause,
                0.0,
            ),
        };
        let mut rng = StdRng::seed_from_u64(rng_seed);
        let own = Member::new(1, now, config.gossip_interval);
        let members = Members::new(me.clone(), own, (rng.next_u64(), rng.next_u64()));
        let seeds = seeds.into_iter().filter(|s| *s != me.addr).collect();
        let join_retry_min = config.join_retry_min;
        let detection = Detection::new(
            detection::Params {
                period: config.gossip_interval,
                timeout: config.probe_timeout,
                indirect: config.indirect_probes,
                flood: config.rumor_fanout,
                suspicion_mult: config.suspicion_mult,
                suspicion_max_mult: config.suspicion_max_mult,
                confirmations: config.suspicion_confirmations,
                fresh_heartbeats: !config.probe || config.heartbeat_window,
            },
            me.clone(),
            // A random phase, so that probes of nodes started together do
            // not go out in lockstep.
            now + config.gossip_interval.mul_f64(rng.random_range(0.0..1.0)),
        );
        Ok(Node {
            cluster: cluster_id(&config.cluster),
            config,
            me,
            phi,
            rng,
            members,
            rejoin: rejoin::Rejoin {
                backoff: join_retry_min,
                ..rejoin::Rejoin::default()
            },
            refutation: refute::Refutation::default(),
            eager: Eager::default(),
            detection,
            seeds,
            hot: VecDeque::new(),
            behind: Vec::new(),
            digest_cursor: 0,
            catchup: sweep::CatchUp::default(),
            fd_cursor: 0,
            coverage: Coverage::default(),
            next_tick: now,
            last_activity: now,
            joined: false,
            leave_version: None,
            leave_announced: false,
            complaints: Complaints::default(),
            transmits: VecDeque::new(),
            events: EventQueue::default(),
            budget: Budget::default(),
            metrics: Metrics::default(),
        })
    }

    // ----- queries -------------------------------------------------------

    /// This node's identity.
    pub fn id(&self) -> &Id {
        &self.me
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether a peer has answered yet.
    pub fn is_joined(&self) -> bool {
        self.joined
    }

    /// Counters since start.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Members by status and keys held, right now. O(members).
    pub fn gauges(&self) -> Gauges {
        let mut g = Gauges {
            live: self.members.count(Status::Live),
            suspect: self.members.count(Status::Suspect),
            dead: self.members.count(Status::Dead),
            left: self.members.count(Status::Left),
            ..Gauges::default()
        };
        g.state_bytes = self.budget.state_bytes();
        for ks in self.members.iter().filter_map(|(_, m)| m.keyspace()) {
            let live = ks.live_len();
            g.keys += live;
            g.tombstones += ks.entries.len() - live;
        }
        g
    }

    /// Number of members known, this node included.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Members known with this status, this node included.
    pub fn count(&self, status: Status) -> usize {
        self.members.count(status)
    }

    /// One member, by name.
    pub fn member(&self, name: &str) -> Option<MemberInfo> {
        self.members.entry(name).map(|(id, m)| info(id, m))
    }

    /// All members, this node included, ordered by name. O(n log n).
    pub fn members(&self) -> Vec<MemberInfo> {
        let mut all: Vec<MemberInfo> = self.members.iter().map(|(id, m)| info(id, m)).collect();
        all.sort_unstable_by(|a, b| a.id.name.cmp(&b.id.name));
        all
    }

    /// The value and version of `key` in the keyspace of node `owner`.
    pub fn get(&self, owner: &str, key: &str) -> Option<(&Bytes, u64)> {
        let e = self.members.get(owner)?.keyspace()?.get(key)?;
        e.value.as_ref().map(|v| (v, e.version))
    }

    /// Whether `owner`'s `key` is held as a tombstone (deleted, not yet forgotten).
    pub fn is_tombstone(&self, owner: &str, key: &str) -> bool {
        let e = self
            .members
            .get(owner)
            .and_then(Member::keyspace)
            .and_then(|k| k.entries.get(key));
        e.is_some_and(|e| e.value.is_none())
    }

    /// Live keys of `owner`, ordered by key: `(key, value, version)`.
    pub fn keys<'a>(&'a self, owner: &str) -> impl Iterator<Item = (&'a str, &'a Bytes, u64)> + 'a {
        let ks = self.members.get(owner).and_then(Member::keyspace);
        ks.into_iter()
            .flat_map(|k| k.entries.iter())
            .filter_map(|(k, e)| e.value.as_ref().map(|v| (k.as_str(), v, e.version)))
    }

    // ----- outputs -------------------------------------------------------

    /// Next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// When to call [`handle_timeout`](Node::handle_timeout) next.
    pub fn poll_timeout(&self) -> Instant {
        let mut t = self
            .eager
            .deadline()
            .map_or(self.next_tick, |d| d.min(self.next_tick));
        if self.config.probe {
            t = t.min(self.detection.deadline(self.members.len()));
        }
        t
    }

    // ----- commands ------------------------------------------------------

    /// Sets `key` in this node's keyspace. Returns the write's version.
    pub fn set(&mut self, now: Instant, key: &str, value: Bytes) -> Result<u64, WriteError> {
        self.write(now, key, Some(value), None)
    }

    /// Sets `key`, which this node deletes by itself after `ttl`.
    pub fn set_with_ttl(
        &mut self,
        now: Instant,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<u64, WriteError> {
        self.write(now, key, Some(value), Some(now + ttl))
    }

    /// Deletes `key` (a tombstone spreads). `Ok(None)` if it held no value.
    pub fn delete(&mut self, now: Instant, key: &str) -> Result<Option<u64>, WriteError> {
        if self.get(&self.me.name, key).is_none() {
            return Ok(None);
        }
        self.write(now, key, None, None).map(Some)
    }

    /// Announces that this node leaves the cluster. Peers mark it Left at
    /// once instead of waiting to convict it. [`Event::LeaveAnnounced`]
    /// follows once a peer holds the announcement; stop the node after it.
    pub fn leave(&mut self, now: Instant) {
        if self.leave_version.is_some() {
            return;
        }
        let me = self.me.clone();
        let m = self.own_mut();
        let floor = m.max_version;
        m.max_version += 1;
        m.left = true;
        let v = m.max_version;
        self.members.refresh(0);
        self.members.set_status(&me.name, Status::Left);
        self.leave_version = Some(v);
        self.eager.note(&me, floor);
        self.push_hot(me, floor, now, false);
        self.push_news(now);
        // Gossip right away rather than at the next interval.
        self.next_tick = now;
    }

    fn write(
        &mut self,
        now: Instant,
        key: &str,
        value: Option<Bytes>,
        expires: Option<Instant>,
    ) -> Result<u64, WriteError> {
        if self.leave_version.is_some() {
            return Err(WriteError::Left);
        }
        if key.len() > self.config.max_key_bytes {
            return Err(WriteError::KeyTooLong {
                len: key.len(),
                limit: self.config.max_key_bytes,
            });
        }
        if let Some(v) = &value
            && v.len() > self.config.max_value_bytes
        {
            return Err(WriteError::ValueTooLarge {
                len: v.len(),
                limit: self.config.max_value_bytes,
            });
        }
        let limit = self.config.max_keys_per_node;
        let max_bytes = self.config.max_keyspace_bytes;
        let me = self.me.clone();
        let m = self.own_mut();
        let ks = m.keyspace_mut();
        if ks.entries.len() >= limit && !ks.entries.contains_key(key) {
            return Err(WriteError::KeyspaceFull { limit });
        }
        let (old_bytes, new_bytes) = (ks.bytes(), ks.bytes_with(key, value.as_ref()));
        if new_bytes > max_bytes && new_bytes > old_bytes {
            return Err(WriteError::KeyspaceTooLarge {
                bytes: new_bytes,
                limit: max_bytes,
            });
        }
        let floor = m.max_version;
        m.max_version += 1;
        let version = m.max_version;
        let entry = Entry {
            value,
            version,
            since: now,
            expires,
        };
        m.keyspace_mut().put(key.to_owned(), entry);
        self.members.refresh(0);
        self.budget.changed(old_bytes, new_bytes);
        self.eager.note(&me, floor);
        self.push_hot(me, floor, now, false);
        self.push_news(now);
        Ok(version)
    }

    fn own_mut(&mut self) -> &mut Member {
        self.members
            .get_mut(&self.me.name)
            .expect("this node is always in its own membership")
    }

    // ----- inputs --------------------------------------------------------

    /// Decodes and handles one received message. `from` is the transport's
    /// idea of the sender (replies go to the sender's gossip address).
    /// A refused message leaves the state unchanged and is counted.
    pub fn handle_bytes(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), RefuseReason> {
        match codec::decode(bytes, self.config.max_message_bytes) {
            Ok(envelope) => {
                self.handle_message(now, from, envelope)?;
                self.metrics.bytes_in += bytes.len() as u64;
                Ok(())
            }
            Err(reason) => Err(self.refuse(now, from, reason)),
        }
    }

    /// Decodes and handles one message whose sender the transport
    /// authenticated: `addr` is the address it came from, `peer` the node
    /// name the transport proved (its certificate), `None` if the transport
    /// authenticates nobody (then this is [`handle_bytes`](Node::handle_bytes)).
    ///
    /// With `peer` given, an envelope naming another node, or another
    /// address than `addr`, is refused as
    /// [`RefuseReason::IdentityMismatch`]: a member may speak only for
    /// itself, and replies go to the address it was heard from. Otherwise
    /// as `handle_bytes`.
    pub fn handle_authenticated(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        peer: Option<&str>,
        bytes: &[u8],
    ) -> Result<(), RefuseReason> {
        let envelope = match codec::decode(bytes, self.config.max_message_bytes) {
            Ok(envelope) => envelope,
            Err(reason) => return Err(self.refuse(now, addr, reason)),
        };
        if let Some(name) = peer
            && (envelope.from.name != name || envelope.from.addr != addr)
        {
            // Logged by `refuse`, at most once per peer per interval.
            return Err(self.refuse(now, addr, RefuseReason::IdentityMismatch));
        }
        self.handle_message(now, addr, envelope)?;
        self.metrics.bytes_in += bytes.len() as u64;
        Ok(())
    }

    /// Handles one decoded message (the simulator skips the codec).
    pub fn handle_message(
        &mut self,
        now: Instant,
        from: SocketAddr,
        envelope: Envelope,
    ) -> Result<(), RefuseReason> {
        if envelope.cluster != self.cluster {
            return Err(self.refuse(now, from, RefuseReason::WrongCluster));
        }
        if !envelope.names_within(self.config.max_name_bytes) {
            return Err(self.refuse(now, from, RefuseReason::NameTooLong));
        }
        if refute::impossible(envelope.from.generation) {
            return Err(self.refuse(now, from, RefuseReason::Impossible));
        }
        if envelope.from.name == self.me.name {
            if *envelope.from != *self.me {
                // Another process speaks under our name: peers that hear
                // it adopt a newer generation, so we refute that too.
                let claimant = envelope.from.clone();
                self.report_conflict(self.me.clone(), claimant.clone());
                self.claim_about_self(&claimant, 0, 0, false);
            }
            return Err(self.refuse(now, from, RefuseReason::FromSelf));
        }
        self.check_stall(now);
        self.metrics.messages_in += 1;
        if !self.joined {
            self.joined = true;
            self.emit(Event::Joined);
        }
        // A catch-up page this node asked for may make a whole page of
        // members known; any other message only a few.
        let page = matches!(
            envelope.message,
            Message::SynAck {
                next_page: Some(_),
                ..
            }
        );
        let cap = self.config.max_new_members_per_message;
        self.budget.start_message((!page).then_some(cap));
        let sender = envelope.from;
        self.eager.set_source(Some(sender.addr));
        self.check_sender(&sender);
        self.hear_from(now, &sender);
        self.detection.contact(now, &sender);
        match envelope.message {
            Message::Syn {
                digest,
                known,
                page,
                recon,
            } => {
                self.on_syn(now, &sender, digest, page, recon);
                self.consider_sweep(now, &sender, known);
            }
            Message::SynAck {
                digest,
                delta,
                known,
                next_page,
                recon,
            } => {
                self.apply_deltas(now, delta, next_page.is_some());
                self.continue_sweep(now, &sender, known, next_page);
                self.on_synack(now, &sender, digest, recon);
            }
            Message::Ack { delta } => self.apply_deltas(now, delta, false),
            Message::Push { delta } => self.on_push(now, &sender, delta),
            Message::IHave { have } => self.on_ihave(now, &sender, have),
            Message::Graft { want } => self.on_graft(&sender, want),
            Message::Prune => self.eager.remove_peer(&sender.name),
            m @ (Message::Ping { .. }
            | Message::PingReq { .. }
            | Message::PingAck { .. }
            | Message::PingNack { .. }
            | Message::Rumors { .. }) => self.on_detection(now, from, &sender, m),
        }
        self.eager.set_source(None);
        self.push_news(now);
        Ok(())
    }

    /// Runs a gossip round if its time has come (earlier calls do nothing):
    /// heartbeat, TTL expiry, failure detection, and exchanges with peers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.graft_overdue(now);
        self.push_news(now);
        self.probe_tick(now);
        if now < self.next_tick {
            return;
        }
        self.check_stall(now);
        self.refute(now);
        self.rejoin.knocks = 0;
        self.phi.gap_floor = self.coverage.gap_floor(
            self.members.len(),
            self.config.fanout,
            self.config.gossip_interval,
        );
        self.phi.max_sample = PhiParams::max_sample_for(
            self.config.gossip_interval,
            self.config.acceptable_pause,
            self.phi.gap_floor,
        );
        let first = self.own_mut().heartbeat == 1;
        self.own_mut().heartbeat += 1;
        let state_bytes = self
            .members
            .iter()
            .filter_map(|(_, m)| m.keyspace())
            .map(Keyspace::bytes)
            .sum();
        self.budget.recount(state_bytes);
        self.expire_ttls(now);
        self.check_failures(now);
        self.hot.retain(|h| h.until > now);
        self.gossip(now);
        let jitter = self.config.interval_jitter;
        let factor = if first {
            // The first round runs at once (joining should not wait); the
            // second at a random phase, so nodes started together (by an
            // orchestrator, or a simulation) do not gossip in lockstep:
            // news spreads in continuous time, not in bursts once a round.
            self.rng.random_range(0.5..=1.5)
        } else if jitter > 0.0 {
            self.rng.random_range(1.0 - jitter..=1.0 + jitter)
        } else {
            1.0
        };
        self.next_tick = now + self.config.gossip_interval.mul_f64(factor);
    }

    // ----- helpers -------------------------------------------------------

    /// Marks a node's state as fresh news. `new` says the node (or its
    /// generation) was just admitted, so it cannot be listed yet.
    fn push_hot(&mut self, id: Id, floor: u64, now: Instant, new: bool) {
        let rounds = self.config.hot_rounds.unwrap_or_else(|| {
            // ceil(log2 n) + 2
            self.members
                .len()
                .max(2)
                .next_power_of_two()
                .trailing_zeros()
                + 2
        });
        let until = now + self.config.gossip_interval * rounds;
        if !new && let Some(h) = self.hot.iter_mut().find(|h| h.id.name == id.name) {
            if h.id.generation != id.generation {
                h.floor = floor;
                h.id = id;
            } else {
                h.floor = h.floor.min(floor);
            }
            h.until = until;
            h.admitted = false;
            return;
        }
        if self.hot.len() >= MAX_HOT {
            let oldest_admission = self.hot.iter().position(|h| h.admitted);
            self.hot.remove(oldest_admission.unwrap_or(0));
        }
        self.hot.push_back(Hot {
            id,
            floor,
            until,
            admitted: new,
        });
    }

    fn add_behind(&mut self, id: Id) {
        if self.behind.len() < MAX_BEHIND && !self.behind.iter().any(|b| b.name == id.name) {
            self.behind.push(id);
        }
    }

    fn overhead(&self) -> usize {
        ENVELOPE_SLACK + size::node_id(&self.me)
    }

    /// Queues `message` for `to`. `message_len` is its encoded size, which
    /// the caller adds up while building it (a second pass over thousands
    /// of entries would follow a pointer for each; debug builds check it).
    fn send(&mut self, to: SocketAddr, message: Message, message_len: usize) {
        let envelope = Envelope {
            cluster: self.cluster,
            from: self.me.clone(),
            message,
        };
        let len = envelope.len_with_message(message_len);
        debug_assert_eq!(len, envelope.encoded_len(), "sizes are exact");
        self.metrics.messages_out += 1;
        self.metrics.bytes_out += len as u64;
        if self.transmits.len() >= self.config.max_pending_transmits {
            self.transmits.pop_front();
            self.metrics.transmits_dropped += 1;
        }
        self.transmits.push_back(Transmit { to, envelope, len });
    }

    fn emit(&mut self, event: Event) {
        if self.events.push(event, self.config.max_pending_events) {
            self.metrics.events_dropped += 1;
        }
    }

    /// Counts a refused message, and logs it unless this peer was logged
    /// about less than an interval ago.
    fn refuse(&mut self, now: Instant, from: SocketAddr, reason: RefuseReason) -> RefuseReason {
        self.metrics.refused.count(reason);
        if self
            .complaints
            .log
            .allow(now, from, self.config.gossip_interval)
        {
            tracing::debug!(node = %self.me, %from, %reason, "message refused");
        } else {
            self.metrics.logs_suppressed += 1;
        }
        reason
    }

    fn report_conflict(&mut self, existing: Id, claimant: Id) {
        if self.complaints.conflicts.iter().any(|c| **c == *claimant) {
            return;
        }
        if self.complaints.conflicts.len() >= MAX_BEHIND {
            self.complaints.conflicts.remove(0);
        }
        tracing::warn!(node = %self.me, %existing, %claimant, "two nodes claim one name");
        self.complaints.conflicts.push(claimant.clone());
        self.emit(Event::NameConflict { existing, claimant });
    }
}

fn info(id: &Id, m: &Member) -> MemberInfo {
    MemberInfo {
        id: id.clone(),
        status: m.status,
        heartbeat: m.heartbeat,
        max_version: m.max_version,
        keys: m.keyspace().map_or(0, Keyspace::live_len),
    }
}

/// Slot indices from `start`, wrapping around once.
fn rotate(n: usize, start: usize) -> impl Iterator<Item = usize> {
    let start = if start < n { start } else { 0 };
    (start..n).chain(0..start)
}
