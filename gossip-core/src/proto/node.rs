//! The protocol state machine of one node.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngExt, SeedableRng};

use crate::proto::codec::{self, cluster_id};
use crate::proto::config::Config;
use crate::proto::error::{ConfigError, RefuseReason, WriteError};
use crate::proto::event::{Event, Status, StatusReason};
use crate::proto::failure::{Detector, PhiParams};
use crate::proto::id::{Id, NodeId};
use crate::proto::keyspace::{Change, Entry, Keyspace};
use crate::proto::membership::{Forgotten, Member, Members};
use crate::proto::message::{DigestEntry, Envelope, Message, NodeDelta, size};
use crate::proto::metrics::{Gauges, Metrics};
use crate::proto::time::Instant;

/// A message for the shell to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Transmit {
    /// Gossip address of the receiver.
    pub to: SocketAddr,
    /// What to send; [`Transmit::encode`] turns it into bytes.
    pub envelope: Envelope,
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
}

/// A catch-up in progress: paging through one peer's membership.
#[derive(Clone, Debug)]
struct Sweep {
    peer: Id,
    /// Where the next page starts in the peer's membership.
    cursor: u64,
    /// Where this run of pages started.
    resumed_at: u64,
    /// Pages are being fetched (false: finished, kept for resuming).
    active: bool,
    /// The last run brought nothing new: try another peer next time.
    exhausted: bool,
    /// Last time a page arrived.
    progress: Instant,
}

/// How a digest entry compares with what this node holds.
enum Cmp {
    /// Forgotten or otherwise not to act on.
    Ignore,
    /// Another node claims this name; our entry for it (sent back, so the
    /// claimant learns its name is taken).
    Conflict(DigestEntry),
    /// We do not know this incarnation (unknown name or newer generation).
    Unknown,
    /// The peer holds updates we lack; our entry.
    TheyAhead(DigestEntry),
    /// We hold updates above `floor` the peer lacks.
    WeAhead { floor: u64 },
    /// Same versions; our entry if our heartbeat is newer.
    Same { newer: Option<DigestEntry> },
}

/// Most hot nodes tracked, and most "behind" nodes remembered for the next digest.
const MAX_HOT: usize = 64;
const MAX_BEHIND: usize = 256;
/// Members checked by the failure detector per round, at least.
const FD_SLICE: usize = 1024;
/// A peer must know this many more members than we do (at least) before
/// we sweep through its membership.
const SWEEP_MIN: u64 = 16;
/// Rounds between two full sweeps made for a small shortfall.
const FULL_SWEEP_ROUNDS: u32 = 5;
/// Bytes reserved for an envelope's own fields and list lengths.
const ENVELOPE_SLACK: usize = 32;

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
    forgotten: Forgotten,
    seeds: Vec<SocketAddr>,
    hot: VecDeque<Hot>,
    behind: Vec<Id>,
    digest_cursor: usize,
    sweep: Option<Sweep>,
    best_known: Option<(Id, u64)>,
    last_full_sweep: Option<Instant>,
    fd_cursor: usize,
    next_tick: Instant,
    last_activity: Instant,
    joined: bool,
    join_backoff: Duration,
    next_join: Instant,
    leave_version: Option<u64>,
    leave_announced: bool,
    conflicts_reported: Vec<Id>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
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
        let me: Id = Arc::new(id);
        let phi = PhiParams {
            min_std_dev: config.min_std_dev.as_secs_f32(),
            acceptable_pause: config.acceptable_pause.as_secs_f32(),
            smoothing: config.phi_smoothing as f32,
        };
        let mut rng = StdRng::seed_from_u64(rng_seed);
        let own = Member {
            heartbeat: 1,
            max_version: 0,
            left: false,
            status: Status::Live,
            detector: Detector::new(now, config.gossip_interval),
            keys: None,
        };
        let members = Members::new(me.clone(), own, (rng.next_u64(), rng.next_u64()));
        let seeds = seeds.into_iter().filter(|s| *s != me.addr).collect();
        Ok(Node {
            cluster: cluster_id(&config.cluster),
            join_backoff: config.join_retry_min,
            config,
            me,
            phi,
            rng,
            members,
            forgotten: Forgotten::default(),
            seeds,
            hot: VecDeque::new(),
            behind: Vec::new(),
            digest_cursor: 0,
            sweep: None,
            best_known: None,
            last_full_sweep: None,
            fd_cursor: 0,
            next_tick: now,
            last_activity: now,
            joined: false,
            next_join: now,
            leave_version: None,
            leave_announced: false,
            conflicts_reported: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
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
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Node::handle_timeout) next.
    pub fn poll_timeout(&self) -> Instant {
        self.next_tick
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
        self.members.set_status(&me.name, Status::Left);
        self.leave_version = Some(v);
        self.push_hot(me, floor, now, false);
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
        let me = self.me.clone();
        let m = self.own_mut();
        let ks = m.keyspace_mut();
        if ks.entries.len() >= limit && !ks.entries.contains_key(key) {
            return Err(WriteError::KeyspaceFull { limit });
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
        m.keyspace_mut().entries.insert(key.to_owned(), entry);
        self.push_hot(me, floor, now, false);
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
            Err(reason) => Err(self.refuse(from, reason)),
        }
    }

    /// Handles one decoded message (the simulator skips the codec).
    pub fn handle_message(
        &mut self,
        now: Instant,
        from: SocketAddr,
        envelope: Envelope,
    ) -> Result<(), RefuseReason> {
        if envelope.cluster != self.cluster {
            return Err(self.refuse(from, RefuseReason::WrongCluster));
        }
        if envelope.from.name == self.me.name {
            if *envelope.from != *self.me {
                self.report_conflict(self.me.clone(), envelope.from.clone());
            }
            return Err(self.refuse(from, RefuseReason::FromSelf));
        }
        self.check_stall(now);
        self.metrics.messages_in += 1;
        if !self.joined {
            self.joined = true;
            self.emit(Event::Joined);
        }
        let sender = envelope.from;
        self.check_sender(&sender);
        match envelope.message {
            Message::Syn {
                digest,
                known,
                page,
            } => {
                self.on_syn(now, &sender, digest, page);
                self.consider_sweep(now, &sender, known);
            }
            Message::SynAck {
                digest,
                delta,
                known,
                next_page,
            } => {
                for d in delta {
                    self.apply_delta(now, d);
                }
                self.continue_sweep(now, &sender, known, next_page);
                let mut wanted = Vec::new();
                for e in &digest {
                    match self.compare(now, e) {
                        Cmp::WeAhead { floor } => wanted.push((e.id.clone(), floor)),
                        Cmp::TheyAhead(_) | Cmp::Unknown => self.add_behind(e.id.clone()),
                        Cmp::Same { .. } | Cmp::Ignore | Cmp::Conflict(_) => {}
                    }
                }
                if !wanted.is_empty() {
                    let budget = self.config.max_message_bytes - self.overhead();
                    let delta = self.build_deltas(wanted, budget);
                    self.send(sender.addr, Message::Ack { delta });
                }
            }
            Message::Ack { delta } => {
                for d in delta {
                    self.apply_delta(now, d);
                }
            }
        }
        Ok(())
    }

    /// Runs a gossip round if its time has come (earlier calls do nothing):
    /// heartbeat, TTL expiry, failure detection, and exchanges with peers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_tick {
            return;
        }
        self.check_stall(now);
        self.own_mut().heartbeat += 1;
        self.expire_ttls(now);
        self.check_failures(now);
        self.hot.retain(|h| h.until > now);
        self.gossip(now);
        let jitter = self.config.interval_jitter;
        let factor = if jitter > 0.0 {
            self.rng.random_range(1.0 - jitter..=1.0 + jitter)
        } else {
            1.0
        };
        self.next_tick = now + self.config.gossip_interval.mul_f64(factor);
    }

    // ----- the exchange --------------------------------------------------

    fn gossip(&mut self, now: Instant) {
        let mut targets: Vec<SocketAddr> = Vec::with_capacity(self.config.fanout + 2);
        let live_peers = self.live_peers();
        for id in self.sample(Status::Live, self.config.fanout, live_peers) {
            targets.push(id.addr);
        }
        let unreachable = self.members.count(Status::Dead) + self.members.count(Status::Suspect);
        if unreachable > 0
            && (targets.is_empty() || self.rng.random_bool(self.config.unreachable_probability))
        {
            let pick = self.sample_scan(|m| matches!(m.status, Status::Dead | Status::Suspect), 1);
            targets.extend(pick.into_iter().map(|id| id.addr));
        }
        if live_peers == 0 {
            // Not (or no longer) part of a cluster: knock on every seed, with backoff.
            if now >= self.next_join && !self.seeds.is_empty() {
                targets.extend(self.seeds.iter().copied());
                self.next_join = now + self.join_backoff;
                self.join_backoff = (self.join_backoff * 2).min(self.config.join_retry_max);
            }
        } else {
            self.join_backoff = self.config.join_retry_min;
            if !self.seeds.is_empty() && self.rng.random_bool(self.config.seed_probability) {
                let seed = self.seeds[self.rng.random_range(0..self.seeds.len())];
                targets.push(seed);
            }
        }
        targets.sort_unstable();
        targets.dedup();
        if let Some(sw) = &mut self.sweep
            && sw.active
            && now.saturating_since(sw.progress) > self.config.gossip_interval * 3
        {
            // The peer we were catching up from went quiet.
            self.sweep = None;
        }
        self.resume_sweep(now);
        for to in targets {
            self.send_syn(to, None);
        }
    }

    fn send_syn(&mut self, to: SocketAddr, page: Option<u64>) {
        let digest = match page {
            // A catch-up exchange carries no window: it is about the page.
            Some(_) => vec![self.own_entry()],
            None => self.syn_digest(),
        };
        let known = self.members.len() as u64;
        self.send(
            to,
            Message::Syn {
                digest,
                known,
                page,
            },
        );
    }

    fn own_entry(&self) -> DigestEntry {
        let (id, m) = self.members.at(0);
        DigestEntry {
            id: id.clone(),
            heartbeat: m.heartbeat,
            max_version: m.max_version,
        }
    }

    /// Notes a peer's member count. A node that knows far fewer members
    /// than a peer (it just joined) catches up by sweeping through one
    /// peer's membership a page per exchange instead of learning members a
    /// digest window at a time. The first sweep starts at once.
    fn consider_sweep(&mut self, now: Instant, peer: &Id, known: u64) {
        if known <= self.members.len() as u64 {
            return;
        }
        if self.best_known.as_ref().is_none_or(|(_, k)| known > *k) {
            self.best_known = Some((peer.clone(), known));
        }
        if self.sweep.is_none() && known > self.sweep_threshold() {
            let ours = self.members.len() as u64;
            self.members.reserve(
                usize::try_from(known - ours)
                    .unwrap_or(0)
                    .min(self.config.max_nodes),
            );
            self.start_sweep(now, peer.clone(), 0);
        }
    }

    fn sweep_threshold(&self) -> u64 {
        let ours = self.members.len() as u64;
        ours + SWEEP_MIN.max(ours / 16)
    }

    fn start_sweep(&mut self, now: Instant, peer: Id, cursor: u64) {
        let addr = peer.addr;
        if cursor == 0 {
            self.last_full_sweep = Some(now);
        }
        self.sweep = Some(Sweep {
            peer,
            cursor,
            resumed_at: cursor,
            active: true,
            exhausted: false,
            progress: now,
        });
        self.send_syn(addr, Some(cursor));
    }

    /// Once a round: if a peer knew far more members than we do, resume the
    /// sweep from the peer we swept before (its members are kept in arrival
    /// order, so resuming reads only the newer ones), or, if that peer is
    /// gone or had nothing new, start over from the peer that knows most.
    fn resume_sweep(&mut self, now: Instant) {
        let Some((best, known)) = self.best_known.take() else {
            return;
        };
        let ours = self.members.len() as u64;
        match &self.sweep {
            Some(sw) if sw.active => {}
            // Resuming costs only the members we lack (and one exchange):
            // worth it for any shortfall, which ends the long tail of a join.
            Some(sw)
                if !sw.exhausted
                    && known > ours
                    && self
                        .members
                        .get(&sw.peer.name)
                        .is_some_and(|m| m.status == Status::Live) =>
            {
                let (peer, cursor) = (sw.peer.clone(), sw.cursor);
                self.start_sweep(now, peer, cursor);
            }
            // The peer we swept before is gone or had nothing new: start
            // over from the peer that knows most. That reads its whole
            // membership: at once for a large shortfall, and at most every
            // `FULL_SWEEP_ROUNDS` for a handful of members windows missed.
            _ if known > ours + SWEEP_MIN
                || self.last_full_sweep.is_none_or(|t| {
                    now.saturating_since(t) >= self.config.gossip_interval * FULL_SWEEP_ROUNDS
                }) =>
            {
                self.start_sweep(now, best, 0)
            }
            _ => {}
        }
    }

    /// Asks for the next page of a sweep right away, or ends it.
    fn continue_sweep(&mut self, now: Instant, peer: &Id, known: u64, next_page: Option<u64>) {
        match (&mut self.sweep, next_page) {
            (Some(sw), Some(next)) if sw.active && sw.peer == *peer => {
                sw.cursor = next;
                sw.progress = now;
                if next < known {
                    self.send_syn(peer.addr, Some(next));
                } else {
                    sw.active = false;
                    sw.exhausted = next == sw.resumed_at;
                }
            }
            _ => self.consider_sweep(now, peer, known),
        }
    }

    fn live_peers(&self) -> usize {
        let own_live = usize::from(
            self.members
                .get(&self.me.name)
                .is_some_and(|m| m.status == Status::Live),
        );
        self.members.count(Status::Live) - own_live
    }

    /// Up to `k` distinct random peers with `status`, of which there are `available`.
    fn sample(&mut self, status: Status, k: usize, available: usize) -> Vec<Id> {
        if available <= 2 * k {
            return self.sample_scan(|m| m.status == status, k);
        }
        let mut out: Vec<Id> = Vec::with_capacity(k);
        for _ in 0..16 * k {
            if out.len() == k {
                break;
            }
            // Slot 0 is this node.
            let (id, m) = self
                .members
                .at(self.rng.random_range(1..self.members.len()));
            if m.status == status && !out.iter().any(|o| o.name == id.name) {
                out.push(id.clone());
            }
        }
        out
    }

    fn sample_scan(&mut self, pred: impl Fn(&Member) -> bool, k: usize) -> Vec<Id> {
        let mut all: Vec<Id> = self
            .members
            .iter()
            .skip(1)
            .filter(|(_, m)| pred(m))
            .map(|(id, _)| id.clone())
            .collect();
        all.shuffle(&mut self.rng);
        all.truncate(k);
        all
    }

    /// This node's digest: itself, fresh nodes (up to half the budget),
    /// nodes it knows it lags on, then a window rotating through the
    /// membership, all within `digest_bytes`.
    fn syn_digest(&mut self) -> Vec<DigestEntry> {
        let budget = self.config.digest_bytes;
        let behind = std::mem::take(&mut self.behind);
        let mut used = 0;
        let mut out: Vec<DigestEntry> = Vec::new();
        let mut listed: HashSet<&str> = HashSet::new();
        let mut push = |e: DigestEntry, limit: usize, out: &mut Vec<DigestEntry>| -> bool {
            let s = size::digest_entry(&e);
            if used + s > limit {
                return false;
            }
            used += s;
            out.push(e);
            true
        };
        let entry = |name: &str| {
            self.members.entry(name).map(|(id, m)| {
                (
                    id,
                    DigestEntry {
                        id: id.clone(),
                        heartbeat: m.heartbeat,
                        max_version: m.max_version,
                    },
                )
            })
        };
        let own = self.own_entry();
        listed.insert(&self.me.name);
        push(own, budget, &mut out);
        for h in &self.hot {
            if let Some((id, e)) = entry(&h.id.name)
                && !listed.contains(id.name.as_str())
            {
                if !push(e, budget / 2, &mut out) {
                    break;
                }
                listed.insert(&id.name);
            }
        }
        for wanted in &behind {
            if listed.contains(wanted.name.as_str()) {
                continue;
            }
            let e = match entry(&wanted.name) {
                Some((ours, e)) if ours.generation >= wanted.generation => e,
                _ => DigestEntry {
                    id: wanted.clone(),
                    heartbeat: 0,
                    max_version: 0,
                },
            };
            if !push(e, budget * 3 / 4, &mut out) {
                break;
            }
            listed.insert(&wanted.name);
        }
        let n = self.members.len();
        let mut next = self.digest_cursor;
        // Only fresh and lagging nodes can already be listed (besides us).
        let check = listed.len() > 1;
        for i in rotate(n, self.digest_cursor) {
            let (id, m) = self.members.at(i);
            next = i + 1;
            if i == 0 || (check && listed.contains(id.name.as_str())) {
                continue;
            }
            let e = DigestEntry {
                id: id.clone(),
                heartbeat: m.heartbeat,
                max_version: m.max_version,
            };
            if !push(e, budget, &mut out) {
                next = i;
                break;
            }
        }
        self.digest_cursor = next;
        out
    }

    fn on_syn(&mut self, now: Instant, sender: &Id, digest: Vec<DigestEntry>, page: Option<u64>) {
        let budget = self.config.digest_bytes;
        let mut used = 0;
        let mut reply: Vec<DigestEntry> = Vec::new();
        // Newer heartbeats only refresh failure detectors: they get what
        // room the requests (which move state) leave in the reply.
        let mut newer: Vec<DigestEntry> = Vec::new();
        let mut wanted: Vec<(Id, u64)> = Vec::new();
        let mentioned: HashSet<&str> = digest.iter().map(|e| e.id.name.as_str()).collect();
        for e in &digest {
            let answer = match self.compare(now, e) {
                Cmp::Unknown => Some(DigestEntry {
                    id: e.id.clone(),
                    heartbeat: 0,
                    max_version: 0,
                }),
                Cmp::TheyAhead(ours) => Some(ours),
                Cmp::WeAhead { floor } => {
                    wanted.push((e.id.clone(), floor));
                    None
                }
                // A leaver learns its announcement arrived when it sees its
                // own entry come back at the leave's version.
                Cmp::Same { newer: None }
                    if e.id.name == sender.name
                        && self.members.get(&e.id.name).is_some_and(|m| m.left) =>
                {
                    Some(e.clone())
                }
                Cmp::Same { newer: n } => {
                    newer.extend(n);
                    None
                }
                Cmp::Conflict(ours) => Some(ours),
                Cmp::Ignore => None,
            };
            reply.extend(answer);
        }
        reply.extend(newer);
        reply.retain(|a| {
            let s = size::digest_entry(a);
            let fits = used + s <= budget;
            used += if fits { s } else { 0 };
            fits
        });
        for h in &self.hot {
            if !mentioned.contains(h.id.name.as_str()) {
                wanted.push((h.id.clone(), h.floor));
            }
        }
        if !mentioned.contains(self.me.name.as_str()) {
            // The initiator may not know us yet (a joiner knocking on a seed):
            // our header costs a few bytes and tells it we are alive.
            let own = self
                .members
                .get(&self.me.name)
                .expect("this node is always in its own membership");
            wanted.push((self.me.clone(), own.max_version));
        }
        let budget = self.config.max_message_bytes - self.overhead() - used;
        let mut delta = self.build_deltas(wanted, budget);
        let mut next_page = None;
        if let Some(start) = page {
            let room = budget.saturating_sub(delta.iter().map(size::node_delta).sum::<usize>());
            let (headers, next) = self.membership_page(room, start);
            next_page = Some(next);
            delta.extend(headers);
        }
        let known = self.members.len() as u64;
        self.send(
            sender.addr,
            Message::SynAck {
                digest: reply,
                delta,
                known,
                next_page,
            },
        );
    }

    /// Headers of the members in slots `start..`, within `room` bytes.
    /// Returns them and the slot the next page starts at.
    fn membership_page(&self, room: usize, start: u64) -> (Vec<NodeDelta>, u64) {
        let n = self.members.len();
        let mut used = 0;
        let mut page = Vec::with_capacity(room / 24);
        let start = usize::try_from(start).unwrap_or(usize::MAX).min(n);
        for i in start..n {
            let (id, m) = self.members.at(i);
            let d = NodeDelta {
                id: id.clone(),
                heartbeat: m.heartbeat,
                left: m.left,
                floor: m.max_version,
                reset: false,
                gc_version: m.gc_version(),
                max_version: m.max_version,
                updates: Vec::new(),
            };
            let s = size::node_delta(&d);
            if used + s > room {
                return (page, i as u64);
            }
            used += s;
            page.push(d);
        }
        (page, n as u64)
    }

    /// Compares a peer's digest entry with what we hold, adopting a newer
    /// heartbeat on the way.
    fn compare(&mut self, now: Instant, e: &DigestEntry) -> Cmp {
        if e.id.name == self.me.name {
            return self.compare_self(e);
        }
        if self.forgotten.contains(&e.id) {
            return Cmp::Ignore;
        }
        let phi = self.phi;
        let Some((id, m)) = self.members.entry_mut(&e.id.name) else {
            return Cmp::Unknown;
        };
        if e.id.generation != id.generation || e.heartbeat == 0 {
            return if e.id.generation > id.generation {
                Cmp::Unknown
            } else {
                Cmp::WeAhead { floor: 0 }
            };
        }
        if e.id.addr != id.addr {
            let ours = DigestEntry {
                id: id.clone(),
                heartbeat: m.heartbeat,
                max_version: m.max_version,
            };
            self.report_conflict(ours.id.clone(), e.id.clone());
            return Cmp::Conflict(ours);
        }
        let revived = m.observe(e.heartbeat, now, &phi);
        let ours = DigestEntry {
            id: id.clone(),
            heartbeat: m.heartbeat,
            max_version: m.max_version,
        };
        if revived {
            self.revive(&ours.id);
        }
        match ours.max_version.cmp(&e.max_version) {
            std::cmp::Ordering::Greater => Cmp::WeAhead {
                floor: e.max_version,
            },
            std::cmp::Ordering::Less => Cmp::TheyAhead(ours),
            std::cmp::Ordering::Equal => Cmp::Same {
                newer: (ours.heartbeat > e.heartbeat).then_some(ours),
            },
        }
    }

    /// A peer's entry about this very node.
    fn compare_self(&mut self, e: &DigestEntry) -> Cmp {
        if *e.id != *self.me {
            if e.id.generation >= self.me.generation {
                self.report_conflict(self.me.clone(), e.id.clone());
                return Cmp::Ignore;
            }
            // Our own previous incarnation: tell them about this one.
            return Cmp::WeAhead { floor: 0 };
        }
        if let Some(v) = self.leave_version
            && e.max_version >= v
            && !self.leave_announced
        {
            self.leave_announced = true;
            self.emit(Event::LeaveAnnounced);
        }
        let own = self
            .members
            .get(&self.me.name)
            .expect("this node is always in its own membership");
        if e.heartbeat == 0 {
            Cmp::WeAhead { floor: 0 }
        } else if own.max_version > e.max_version {
            Cmp::WeAhead {
                floor: e.max_version,
            }
        } else {
            Cmp::Same { newer: None }
        }
    }

    /// Deltas for the wanted nodes within `budget` bytes. Nodes are served
    /// in random order, first each up to a fair share, then the rest of the
    /// budget in that order: no node's updates starve behind a busy one's.
    fn build_deltas(&mut self, mut wanted: Vec<(Id, u64)>, budget: usize) -> Vec<NodeDelta> {
        wanted.sort_unstable_by(|a, b| a.0.name.cmp(&b.0.name).then(a.1.cmp(&b.1)));
        wanted.dedup_by(|later, first| later.0.name == first.0.name);
        wanted.shuffle(&mut self.rng);
        let share = budget / wanted.len().max(1);
        let mut used = 0;
        let mut out: Vec<NodeDelta> = Vec::with_capacity(wanted.len());
        let mut cut: Vec<usize> = Vec::new();
        for (id, floor) in &wanted {
            let Some(d) = self.node_delta(id, *floor, share.min(budget - used)) else {
                continue;
            };
            used += size::node_delta(&d);
            if d.max_version < self.members.get(&id.name).map_or(0, |m| m.max_version) {
                cut.push(out.len());
            }
            out.push(d);
        }
        for i in cut {
            let d = &mut out[i];
            let Some(ks) = self.members.get(&d.id.name).and_then(Member::keyspace) else {
                continue;
            };
            let before = size::node_delta(d);
            let target = self.members.get(&d.id.name).map_or(0, |m| m.max_version);
            let room = budget.saturating_sub(used).saturating_sub(3);
            let (more, complete) = ks.updates_after(d.max_version, target, room);
            if !more.is_empty() {
                d.updates.extend(more);
                d.max_version = complete;
                used = used - before + size::node_delta(d);
            }
        }
        out
    }

    /// The delta of one node for a peer that holds everything up to `floor`,
    /// within `budget` bytes; `None` if not even the header fits.
    fn node_delta(&self, id: &Id, floor: u64, budget: usize) -> Option<NodeDelta> {
        let (ours, m) = self.members.entry(&id.name)?;
        // A peer on an older generation takes the whole state.
        let floor = if ours.generation != id.generation {
            0
        } else {
            floor
        };
        let gc = m.gc_version();
        let reset = floor < gc && floor < m.max_version;
        let floor = if reset { 0 } else { floor.min(m.max_version) };
        let mut d = NodeDelta {
            id: ours.clone(),
            heartbeat: m.heartbeat,
            left: m.left,
            floor,
            reset,
            gc_version: gc,
            max_version: m.max_version,
            updates: Vec::new(),
        };
        let header = size::delta_header(&d) + 3;
        if header > budget {
            return None;
        }
        if let Some(ks) = m.keyspace() {
            let (updates, complete) = ks.updates_after(floor, m.max_version, budget - header);
            d.updates = updates;
            d.max_version = complete;
        }
        Some(d)
    }

    fn apply_delta(&mut self, now: Instant, d: NodeDelta) {
        if d.id.name == self.me.name {
            if *d.id != *self.me && d.id.generation >= self.me.generation {
                self.report_conflict(self.me.clone(), d.id.clone());
            }
            return;
        }
        if self.forgotten.contains(&d.id) {
            return;
        }
        let (i, fresh) = match self.members.find(&d.id.name) {
            None => {
                if self.members.len() >= self.config.max_nodes {
                    self.metrics.nodes_refused += 1;
                    return;
                }
                (self.admit(now, d.id.clone(), None), true)
            }
            Some(i) => {
                let id = self.members.at(i).0;
                if id.generation < d.id.generation {
                    (self.admit(now, d.id.clone(), Some(i)), true)
                } else if id.generation > d.id.generation {
                    return;
                } else if id.addr != d.id.addr {
                    let existing = id.clone();
                    self.report_conflict(existing, d.id.clone());
                    return;
                } else {
                    (i, false)
                }
            }
        };
        let phi = self.phi;
        let (owner, m) = self.members.at_mut(i);
        let owner = owner.clone();
        let revived = m.observe(d.heartbeat, now, &phi);
        let announced = d.left && !m.left;
        m.left |= d.left;
        let old_mv = m.max_version;
        let mut gone: Vec<String> = Vec::new();
        if d.reset && m.max_version < d.gc_version {
            // We are older than tombstones the peer has forgotten: start over.
            let old = m.keys.take();
            gone = old
                .iter()
                .flat_map(|k| k.entries.iter())
                .filter(|(_, e)| e.value.is_some())
                .map(|(k, _)| k.clone())
                .collect();
            m.keyspace_mut().gc_version = d.gc_version;
            m.max_version = 0;
        }
        let applicable = d.floor <= m.max_version;
        let mut changes: Vec<Event> = Vec::new();
        if applicable {
            let (max_keys, max_key, max_value) = (
                self.config.max_keys_per_node,
                self.config.max_key_bytes,
                self.config.max_value_bytes,
            );
            let base = m.max_version;
            let mut complete = d.max_version;
            for u in d.updates {
                if u.version <= base {
                    continue;
                }
                let ks = m.keyspace_mut();
                let too_big =
                    u.key.len() > max_key || u.value.as_ref().is_some_and(|v| v.len() > max_value);
                if too_big || (ks.entries.len() >= max_keys && !ks.entries.contains_key(&u.key)) {
                    // Refuse the rest: we stay complete only below this update.
                    complete = u.version - 1;
                    break;
                }
                let key = u.key.clone();
                let version = u.version;
                match ks.apply(u, now) {
                    Some(Change::Set(value)) => changes.push(Event::KeyChanged {
                        owner: owner.clone(),
                        key,
                        value,
                        version,
                    }),
                    Some(Change::Deleted) => changes.push(Event::KeyDeleted {
                        owner: owner.clone(),
                        key,
                    }),
                    None => {}
                }
            }
            m.max_version = m.max_version.max(complete);
        }
        for key in gone {
            if m.keyspace().and_then(|k| k.get(&key)).is_none() {
                changes.push(Event::KeyDeleted {
                    owner: owner.clone(),
                    key,
                });
            }
        }
        let new_mv = m.max_version;
        if announced {
            let from = self.members.set_status_at(i, Status::Left);
            self.emit(Event::MemberStatus {
                id: owner.clone(),
                from,
                to: Status::Left,
                reason: StatusReason::Announced,
            });
        } else if revived {
            self.revive(&owner);
        }
        if !applicable {
            // A gap: we lack updates between our version and the delta's floor.
            self.metrics.deltas_skipped += 1;
            self.add_behind(owner.clone());
        }
        self.metrics.updates_applied += changes.len() as u64;
        for e in changes {
            self.emit(e);
        }
        if fresh || new_mv > old_mv || announced {
            self.push_hot(owner, if fresh { 0 } else { old_mv }, now, fresh);
        }
    }

    /// Admits a new member, or a new generation of the known one in slot
    /// `replacing` (which then supersedes everything of the old one).
    /// Returns its slot.
    fn admit(&mut self, now: Instant, id: Id, replacing: Option<usize>) -> usize {
        let m = Member {
            heartbeat: 0,
            max_version: 0,
            left: false,
            status: Status::Live,
            detector: Detector::new(now, self.config.gossip_interval),
            keys: None,
        };
        let Some(i) = replacing else {
            let i = self.members.insert(id.clone(), m);
            self.emit(Event::MemberJoined { id });
            return i;
        };
        let (old, gone) = self.members.replace(i, id.clone(), m);
        for (key, e) in gone.keys.iter().flat_map(|k| k.entries.iter()) {
            if e.value.is_some() {
                self.emit(Event::KeyDeleted {
                    owner: old.clone(),
                    key: key.clone(),
                });
            }
        }
        self.hot.retain(|h| h.id.name != old.name);
        self.emit(Event::MemberRestarted { old, new: id });
        i
    }

    /// A Suspect or Dead member heartbeats again.
    fn revive(&mut self, id: &Id) {
        let from = self
            .members
            .set_status(&id.name, Status::Live)
            .expect("member exists");
        self.emit(Event::MemberStatus {
            id: id.clone(),
            from,
            to: Status::Live,
            reason: StatusReason::Heartbeat,
        });
    }

    fn check_sender(&mut self, sender: &Id) {
        // An older incarnation still talking while a newer one holds its name.
        if let Some((id, m)) = self.members.entry(&sender.name)
            && (id.generation > sender.generation
                || (id.generation == sender.generation && id.addr != sender.addr))
            && m.status == Status::Live
        {
            let existing = id.clone();
            self.report_conflict(existing, sender.clone());
        }
    }

    // ----- timers --------------------------------------------------------

    /// If this node went silent for longer than `stall_threshold` (no timer,
    /// no message), it was stalled, not its peers: restart their clocks.
    fn check_stall(&mut self, now: Instant) {
        if now.saturating_since(self.last_activity) > self.config.stall_threshold {
            self.metrics.stalls += 1;
            tracing::warn!(node = %self.me, stalled_ms = now.saturating_since(self.last_activity).as_millis() as u64, "node was stalled; restarting failure-detector clocks");
            for (_, m) in self.members.iter_mut() {
                m.detector.restart_clock(now);
            }
        }
        self.last_activity = now;
    }

    fn expire_ttls(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .members
            .get(&self.me.name)
            .and_then(Member::keyspace)
            .into_iter()
            .flat_map(|k| k.entries.iter())
            .filter(|(_, e)| e.value.is_some() && e.expires.is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            // Cannot fail: the key exists and we have not left (or the write is refused harmlessly).
            let _ = self.write(now, &key, None, None);
        }
    }

    /// Failure detection over a rotating slice of the membership (all of it
    /// up to `FD_SLICE` members), plus tombstone GC and forgetting.
    fn check_failures(&mut self, now: Instant) {
        let n = self.members.len();
        let slice = FD_SLICE.max(n / 4);
        let grace = self.config.grace_period;
        let threshold = self.config.phi_threshold;
        let mut changes: Vec<(Id, Status, StatusReason)> = Vec::new();
        let mut forget: Vec<Id> = Vec::new();
        let mut gc: Vec<Id> = Vec::new();
        for i in rotate(n, self.fd_cursor).take(slice.min(n)) {
            let (id, m) = self.members.at(i);
            if m.keys
                .as_ref()
                .is_some_and(|ks| ks.entries.values().any(|e| e.value.is_none()))
            {
                gc.push(id.clone());
            }
            if i == 0 {
                continue;
            }
            let silent = now.saturating_since(m.detector.last);
            if silent < self.config.acceptable_pause {
                continue;
            }
            match m.status {
                Status::Live => {
                    let phi = m.detector.phi_after(silent, &self.phi);
                    if phi > threshold {
                        changes.push((
                            id.clone(),
                            Status::Suspect,
                            StatusReason::Silent {
                                silent_for: silent,
                                phi,
                            },
                        ));
                    }
                }
                Status::Suspect => {
                    let phi = m.detector.phi_after(
                        silent.saturating_sub(self.config.suspect_timeout),
                        &self.phi,
                    );
                    if phi > threshold {
                        let now_phi = m.detector.phi_after(silent, &self.phi);
                        changes.push((
                            id.clone(),
                            Status::Dead,
                            StatusReason::Silent {
                                silent_for: silent,
                                phi: now_phi,
                            },
                        ));
                    }
                }
                Status::Dead | Status::Left => {
                    if silent >= grace {
                        forget.push(id.clone());
                    }
                }
            }
        }
        self.fd_cursor = (self.fd_cursor + slice.min(n)) % n;
        for (id, to, reason) in changes {
            let from = self
                .members
                .set_status(&id.name, to)
                .expect("member was just checked");
            match to {
                Status::Suspect => self.metrics.suspicions += 1,
                Status::Dead => self.metrics.convictions += 1,
                _ => {}
            }
            tracing::debug!(node = %self.me, member = %id, ?from, ?to, ?reason, "member status changed");
            self.emit(Event::MemberStatus {
                id,
                from,
                to,
                reason,
            });
        }
        for id in forget {
            self.members.remove(&id.name);
            self.forgotten.insert(&id, self.config.max_nodes);
            self.hot.retain(|h| h.id.name != id.name);
            self.emit(Event::MemberForgotten { id });
        }
        for id in gc {
            if let Some(m) = self.members.get_mut(&id.name)
                && let Some(ks) = m.keys.as_mut()
            {
                ks.gc(now, grace);
            }
        }
    }

    // ----- helpers -------------------------------------------------------

    /// Marks a node's state as fresh news. `new` says the node (or its
    /// generation) was just admitted, so it cannot be listed yet.
    fn push_hot(&mut self, id: Id, floor: u64, now: Instant, new: bool) {
        let rounds = self.config.hot_rounds.unwrap_or_else(|| {
            let n = self.members.len().max(2) as f64;
            n.log2().ceil() as u32 + 2
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
            return;
        }
        if self.hot.len() >= MAX_HOT {
            self.hot.pop_front();
        }
        self.hot.push_back(Hot { id, floor, until });
    }

    fn add_behind(&mut self, id: Id) {
        if self.behind.len() < MAX_BEHIND && !self.behind.iter().any(|b| b.name == id.name) {
            self.behind.push(id);
        }
    }

    fn overhead(&self) -> usize {
        ENVELOPE_SLACK + size::node_id(&self.me)
    }

    fn send(&mut self, to: SocketAddr, message: Message) {
        let envelope = Envelope {
            cluster: self.cluster,
            from: self.me.clone(),
            message,
        };
        self.metrics.messages_out += 1;
        self.metrics.bytes_out += envelope.encoded_len() as u64;
        if self.transmits.len() >= self.config.max_pending_transmits {
            self.transmits.pop_front();
            self.metrics.transmits_dropped += 1;
        }
        self.transmits.push_back(Transmit { to, envelope });
    }

    fn emit(&mut self, event: Event) {
        if self.events.len() >= self.config.max_pending_events {
            self.events.pop_front();
            self.metrics.events_dropped += 1;
        }
        self.events.push_back(event);
    }

    fn refuse(&mut self, from: SocketAddr, reason: RefuseReason) -> RefuseReason {
        self.metrics.refused.count(reason);
        tracing::debug!(node = %self.me, %from, %reason, "message refused");
        reason
    }

    fn report_conflict(&mut self, existing: Id, claimant: Id) {
        if self.conflicts_reported.iter().any(|c| **c == *claimant) {
            return;
        }
        if self.conflicts_reported.len() >= MAX_BEHIND {
            self.conflicts_reported.remove(0);
        }
        tracing::warn!(node = %self.me, %existing, %claimant, "two nodes claim one name");
        self.conflicts_reported.push(claimant.clone());
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
