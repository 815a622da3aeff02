//! The protocol state machine of one node.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use crate::proto::codec::{self, cluster_id};
use crate::proto::config::Config;
use crate::proto::error::{ConfigError, RefuseReason, WriteError};
use crate::proto::event::{Event, Status, StatusReason};
use crate::proto::failure::{Detector, PhiParams};
use crate::proto::id::{Id, NodeId};
use crate::proto::keyspace::{Change, Entry, Keyspace};
use crate::proto::membership::{Forgotten, Member, MemberKey, Members};
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

/// How a digest entry compares with what this node holds.
enum Cmp {
    /// Forgotten, conflicting or otherwise not to act on.
    Ignore,
    /// We do not know this incarnation (unknown name or newer generation).
    Unknown,
    /// The peer holds updates we lack.
    TheyAhead,
    /// We hold updates above `floor` the peer lacks.
    WeAhead { floor: u64 },
    /// Same versions.
    Same,
}

/// Most hot nodes tracked, and most "behind" nodes remembered for the next digest.
const MAX_HOT: usize = 256;
const MAX_BEHIND: usize = 256;
/// Members checked by the failure detector per round, at least.
const FD_SLICE: usize = 1024;
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
    hot: Vec<Hot>,
    behind: Vec<Id>,
    digest_cursor: Option<String>,
    fd_cursor: Option<String>,
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
    pub fn new(config: Config, id: NodeId, seeds: Vec<SocketAddr>, rng_seed: u64, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        let me: Id = Arc::new(id);
        let phi = PhiParams {
            min_std_dev: config.min_std_dev.as_secs_f32(),
            acceptable_pause: config.acceptable_pause.as_secs_f32(),
            smoothing: config.phi_smoothing as f32,
        };
        let mut members = Members::default();
        let own = Member {
            heartbeat: 1,
            max_version: 0,
            left: false,
            status: Status::Live,
            detector: Detector::new(now, config.gossip_interval),
            keys: None,
        };
        members.insert(me.clone(), own, true);
        let seeds = seeds.into_iter().filter(|s| *s != me.addr).collect();
        Ok(Node {
            cluster: cluster_id(&config.cluster),
            join_backoff: config.join_retry_min,
            config,
            me,
            phi,
            rng: StdRng::seed_from_u64(rng_seed),
            members,
            forgotten: Forgotten::default(),
            seeds,
            hot: Vec::new(),
            behind: Vec::new(),
            digest_cursor: None,
            fd_cursor: None,
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
        for ks in self.members.map.values().filter_map(Member::keyspace) {
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

    /// All members, this node included, ordered by name.
    pub fn members(&self) -> impl Iterator<Item = MemberInfo> + '_ {
        self.members.map.iter().map(|(k, m)| info(&k.0, m))
    }

    /// The value and version of `key` in the keyspace of node `owner`.
    pub fn get(&self, owner: &str, key: &str) -> Option<(&Bytes, u64)> {
        let e = self.members.get(owner)?.keyspace()?.get(key)?;
        e.value.as_ref().map(|v| (v, e.version))
    }

    /// Whether `owner`'s `key` is held as a tombstone (deleted, not yet forgotten).
    pub fn is_tombstone(&self, owner: &str, key: &str) -> bool {
        let e = self.members.get(owner).and_then(Member::keyspace).and_then(|k| k.entries.get(key));
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
    pub fn set_with_ttl(&mut self, now: Instant, key: &str, value: Bytes, ttl: Duration) -> Result<u64, WriteError> {
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
        self.push_hot(me, floor, now);
        // Gossip right away rather than at the next interval.
        self.next_tick = now;
    }

    fn write(&mut self, now: Instant, key: &str, value: Option<Bytes>, expires: Option<Instant>) -> Result<u64, WriteError> {
        if self.leave_version.is_some() {
            return Err(WriteError::Left);
        }
        if key.len() > self.config.max_key_bytes {
            return Err(WriteError::KeyTooLong { len: key.len(), limit: self.config.max_key_bytes });
        }
        if let Some(v) = &value
            && v.len() > self.config.max_value_bytes
        {
            return Err(WriteError::ValueTooLarge { len: v.len(), limit: self.config.max_value_bytes });
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
        let entry = Entry { value, version, since: now, expires };
        m.keyspace_mut().entries.insert(key.to_owned(), entry);
        self.push_hot(me, floor, now);
        Ok(version)
    }

    fn own_mut(&mut self) -> &mut Member {
        self.members.get_mut(&self.me.name).expect("this node is always in its own membership")
    }

    // ----- inputs --------------------------------------------------------

    /// Decodes and handles one received message. `from` is the transport's
    /// idea of the sender (replies go to the sender's gossip address).
    /// A refused message leaves the state unchanged and is counted.
    pub fn handle_bytes(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> Result<(), RefuseReason> {
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
    pub fn handle_message(&mut self, now: Instant, from: SocketAddr, envelope: Envelope) -> Result<(), RefuseReason> {
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
            Message::Syn { digest } => self.on_syn(now, &sender, digest),
            Message::SynAck { digest, delta } => {
                for d in delta {
                    self.apply_delta(now, d);
                }
                let mut wanted = Vec::new();
                for e in &digest {
                    match self.compare(now, e) {
                        Cmp::WeAhead { floor } => wanted.push((e.id.clone(), floor)),
                        Cmp::TheyAhead | Cmp::Unknown => self.add_behind(e.id.clone()),
                        Cmp::Same | Cmp::Ignore => {}
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
        let factor = if jitter > 0.0 { self.rng.random_range(1.0 - jitter..=1.0 + jitter) } else { 1.0 };
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
        if unreachable > 0 && (targets.is_empty() || self.rng.random_bool(self.config.unreachable_probability)) {
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
        for to in targets {
            let digest = self.syn_digest();
            self.send(to, Message::Syn { digest });
        }
    }

    fn live_peers(&self) -> usize {
        let own_live = usize::from(self.members.get(&self.me.name).is_some_and(|m| m.status == Status::Live));
        self.members.count(Status::Live) - own_live
    }

    /// Up to `k` distinct random peers with `status`, of which there are `available`.
    fn sample(&mut self, status: Status, k: usize, available: usize) -> Vec<Id> {
        if available <= 2 * k {
            return self.sample_scan(|m| m.status == status, k);
        }
        let mut out: Vec<Id> = Vec::with_capacity(k);
        let peers = &self.members.peers;
        for _ in 0..16 * k {
            if out.len() == k {
                break;
            }
            let id = &peers[self.rng.random_range(0..peers.len())];
            if self.members.get(&id.name).is_some_and(|m| m.status == status) && !out.iter().any(|o| o.name == id.name) {
                out.push(id.clone());
            }
        }
        out
    }

    fn sample_scan(&mut self, pred: impl Fn(&Member) -> bool, k: usize) -> Vec<Id> {
        let mut all: Vec<Id> =
            self.members.peers.iter().filter(|id| self.members.get(&id.name).is_some_and(&pred)).cloned().collect();
        all.shuffle(&mut self.rng);
        all.truncate(k);
        all
    }

    fn entry_of(&self, name: &str) -> Option<DigestEntry> {
        self.members.entry(name).map(|(id, m)| DigestEntry { id: id.clone(), heartbeat: m.heartbeat, max_version: m.max_version })
    }

    /// This node's digest: itself, fresh nodes, nodes it knows it lags on,
    /// then a window rotating through the membership, within `digest_bytes`.
    fn syn_digest(&mut self) -> Vec<DigestEntry> {
        let budget = self.config.digest_bytes;
        let mut used = 0;
        let mut out: Vec<DigestEntry> = Vec::new();
        let mut listed: HashSet<Id> = HashSet::new();
        let mut push = |e: DigestEntry, out: &mut Vec<DigestEntry>, listed: &mut HashSet<Id>| -> bool {
            let s = size::digest_entry(&e);
            if used + s > budget {
                return false;
            }
            if listed.insert(e.id.clone()) {
                used += s;
                out.push(e);
            }
            true
        };
        let own = self.entry_of(&self.me.name).expect("this node is always in its own membership");
        push(own, &mut out, &mut listed);
        for h in &self.hot {
            if let Some(e) = self.entry_of(&h.id.name) {
                push(e, &mut out, &mut listed);
            }
        }
        for id in std::mem::take(&mut self.behind) {
            let e = match self.members.entry(&id.name) {
                Some((ours, m)) if ours.generation >= id.generation => {
                    DigestEntry { id: ours.clone(), heartbeat: m.heartbeat, max_version: m.max_version }
                }
                _ => DigestEntry { id, heartbeat: 0, max_version: 0 },
            };
            push(e, &mut out, &mut listed);
        }
        let mut last = None;
        for (k, m) in rotate(&self.members.map, self.digest_cursor.as_deref()) {
            let e = DigestEntry { id: k.0.clone(), heartbeat: m.heartbeat, max_version: m.max_version };
            if !push(e, &mut out, &mut listed) {
                break;
            }
            last = Some(k.0.name.clone());
        }
        if last.is_some() {
            self.digest_cursor = last;
        }
        out
    }

    fn on_syn(&mut self, now: Instant, sender: &Id, digest: Vec<DigestEntry>) {
        let budget = self.config.digest_bytes;
        let mut used = 0;
        let mut reply: Vec<DigestEntry> = Vec::new();
        let mut wanted: Vec<(Id, u64)> = Vec::new();
        let mentioned: HashSet<&str> = digest.iter().map(|e| e.id.name.as_str()).collect();
        for e in &digest {
            let answer = match self.compare(now, e) {
                Cmp::Unknown => Some(DigestEntry { id: e.id.clone(), heartbeat: 0, max_version: 0 }),
                Cmp::TheyAhead => self.entry_of(&e.id.name),
                Cmp::WeAhead { floor } => {
                    wanted.push((e.id.clone(), floor));
                    None
                }
                Cmp::Same => self.entry_of(&e.id.name).filter(|ours| ours.heartbeat > e.heartbeat),
                Cmp::Ignore => None,
            };
            if let Some(a) = answer {
                let s = size::digest_entry(&a);
                if used + s <= budget {
                    used += s;
                    reply.push(a);
                }
            }
        }
        for h in &self.hot {
            if !mentioned.contains(h.id.name.as_str()) {
                wanted.push((h.id.clone(), h.floor));
            }
        }
        let budget = self.config.max_message_bytes - self.overhead() - used;
        let delta = self.build_deltas(wanted, budget);
        self.send(sender.addr, Message::SynAck { digest: reply, delta });
    }

    /// Compares a peer's digest entry with what we hold, adopting a newer
    /// heartbeat on the way.
    fn compare(&mut self, now: Instant, e: &DigestEntry) -> Cmp {
        if e.id.name == self.me.name {
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
            let own = self.members.get(&self.me.name).expect("this node is always in its own membership");
            return if e.heartbeat == 0 || own.max_version > e.max_version {
                Cmp::WeAhead { floor: if e.heartbeat == 0 { 0 } else { e.max_version } }
            } else {
                Cmp::Same
            };
        }
        if self.forgotten.contains(&e.id) {
            return Cmp::Ignore;
        }
        let Some((id, m)) = self.members.entry(&e.id.name) else {
            return Cmp::Unknown;
        };
        if e.id.generation > id.generation {
            return Cmp::Unknown;
        }
        if e.id.generation < id.generation {
            return Cmp::WeAhead { floor: 0 };
        }
        if e.id.addr != id.addr {
            let existing = id.clone();
            self.report_conflict(existing, e.id.clone());
            return Cmp::Ignore;
        }
        if e.heartbeat == 0 {
            return Cmp::WeAhead { floor: 0 };
        }
        let ours = m.max_version;
        self.observe_heartbeat(now, &e.id.name, e.heartbeat);
        match ours.cmp(&e.max_version) {
            std::cmp::Ordering::Greater => Cmp::WeAhead { floor: e.max_version },
            std::cmp::Ordering::Less => Cmp::TheyAhead,
            std::cmp::Ordering::Equal => Cmp::Same,
        }
    }

    /// Deltas for the wanted nodes within `budget` bytes. Nodes are served
    /// in random order, first each up to a fair share, then the rest of the
    /// budget in that order: no node's updates starve behind a busy one's.
    fn build_deltas(&mut self, mut wanted: Vec<(Id, u64)>, budget: usize) -> Vec<NodeDelta> {
        wanted.dedup_by(|a, b| a.0.name == b.0.name);
        wanted.shuffle(&mut self.rng);
        let share = budget / wanted.len().max(1);
        let mut used = 0;
        let mut out: Vec<NodeDelta> = Vec::with_capacity(wanted.len());
        let mut cut: Vec<usize> = Vec::new();
        for (id, floor) in &wanted {
            let Some(d) = self.node_delta(id, *floor, share.min(budget - used)) else { continue };
            used += size::node_delta(&d);
            if d.max_version < self.members.get(&id.name).map_or(0, |m| m.max_version) {
                cut.push(out.len());
            }
            out.push(d);
        }
        for i in cut {
            let d = &mut out[i];
            let Some(ks) = self.members.get(&d.id.name).and_then(Member::keyspace) else { continue };
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
        let floor = if ours.generation != id.generation { 0 } else { floor };
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
        let name = d.id.name.clone();
        if name == self.me.name {
            if *d.id != *self.me && d.id.generation >= self.me.generation {
                self.report_conflict(self.me.clone(), d.id.clone());
            }
            return;
        }
        if self.forgotten.contains(&d.id) {
            return;
        }
        let mut fresh = false;
        match self.members.entry(&name) {
            None => {
                if self.members.len() >= self.config.max_nodes {
                    self.metrics.nodes_refused += 1;
                    return;
                }
                self.admit(now, d.id.clone());
                fresh = true;
            }
            Some((id, _)) if id.generation < d.id.generation => {
                let old = id.clone();
                self.supersede(now, old, d.id.clone());
                fresh = true;
            }
            Some((id, _)) if id.generation > d.id.generation => return,
            Some((id, _)) if id.addr != d.id.addr => {
                let existing = id.clone();
                self.report_conflict(existing, d.id.clone());
                return;
            }
            Some(_) => {}
        }
        let owner = self.members.entry(&name).map(|(id, _)| id.clone()).expect("member was just looked up or admitted");
        self.observe_heartbeat(now, &name, d.heartbeat);
        let m = self.members.get_mut(&name).expect("member was just looked up or admitted");
        let old_mv = m.max_version;
        if d.left && !m.left {
            m.left = true;
            let from = self.members.set_status(&name, Status::Left).expect("member exists");
            self.emit(Event::MemberStatus { id: owner.clone(), from, to: Status::Left, reason: StatusReason::Announced });
        }
        let m = self.members.get_mut(&name).expect("member exists");
        let mut gone: Vec<String> = Vec::new();
        if d.reset && m.max_version < d.gc_version {
            // We are older than tombstones the peer has forgotten: start over.
            let old = m.keys.take();
            gone = old.iter().flat_map(|k| k.entries.iter()).filter(|(_, e)| e.value.is_some()).map(|(k, _)| k.clone()).collect();
            m.keyspace_mut().gc_version = d.gc_version;
            m.max_version = 0;
        } else if d.floor > m.max_version {
            // A gap: we lack updates between our version and the delta's floor.
            self.metrics.deltas_skipped += 1;
            self.add_behind(owner);
            return;
        }
        let limits = (self.config.max_keys_per_node, self.config.max_key_bytes, self.config.max_value_bytes);
        let base = m.max_version;
        let mut complete = d.max_version;
        let mut changes: Vec<Event> = Vec::new();
        for u in d.updates {
            if u.version <= base {
                continue;
            }
            let ks = m.keyspace_mut();
            let too_big = u.key.len() > limits.1 || u.value.as_ref().is_some_and(|v| v.len() > limits.2);
            if too_big || (ks.entries.len() >= limits.0 && !ks.entries.contains_key(&u.key)) {
                // Refuse the rest: we stay complete only below this update.
                complete = u.version - 1;
                break;
            }
            let key = u.key.clone();
            let version = u.version;
            match ks.apply(u, now) {
                Some(Change::Set(value)) => {
                    changes.push(Event::KeyChanged { owner: owner.clone(), key, value, version });
                }
                Some(Change::Deleted) => changes.push(Event::KeyDeleted { owner: owner.clone(), key }),
                None => {}
            }
        }
        m.max_version = m.max_version.max(complete);
        if !gone.is_empty() {
            let ks = m.keyspace();
            for key in gone {
                if ks.and_then(|k| k.get(&key)).is_none() {
                    changes.push(Event::KeyDeleted { owner: owner.clone(), key });
                }
            }
        }
        let new_mv = m.max_version;
        self.metrics.updates_applied += changes.len() as u64;
        for e in changes {
            self.emit(e);
        }
        if fresh || new_mv > old_mv {
            self.push_hot(owner, if fresh { 0 } else { old_mv }, now);
        }
    }

    fn admit(&mut self, now: Instant, id: Id) {
        let m = Member {
            heartbeat: 0,
            max_version: 0,
            left: false,
            status: Status::Live,
            detector: Detector::new(now, self.config.gossip_interval),
            keys: None,
        };
        self.members.insert(id.clone(), m, false);
        self.emit(Event::MemberJoined { id });
    }

    /// A restart: the new generation replaces everything of the old one.
    fn supersede(&mut self, now: Instant, old: Id, new: Id) {
        if let Some((_, m)) = self.members.remove(&old.name) {
            for (key, e) in m.keys.iter().flat_map(|k| k.entries.iter()) {
                if e.value.is_some() {
                    self.emit(Event::KeyDeleted { owner: old.clone(), key: key.clone() });
                }
            }
        }
        self.hot.retain(|h| h.id.name != old.name);
        self.admit(now, new.clone());
        self.emit(Event::MemberRestarted { old, new });
    }

    fn observe_heartbeat(&mut self, now: Instant, name: &str, heartbeat: u64) {
        let phi = self.phi;
        let Some(m) = self.members.get_mut(name) else { return };
        if heartbeat <= m.heartbeat {
            return;
        }
        m.heartbeat = heartbeat;
        m.detector.heartbeat(now, &phi);
        if matches!(m.status, Status::Suspect | Status::Dead) {
            let id = self.members.entry(name).map(|(id, _)| id.clone()).expect("member exists");
            let from = self.members.set_status(name, Status::Live).expect("member exists");
            self.emit(Event::MemberStatus { id, from, to: Status::Live, reason: StatusReason::Heartbeat });
        }
    }

    fn check_sender(&mut self, sender: &Id) {
        // An older incarnation still talking while a newer one holds its name.
        if let Some((id, m)) = self.members.entry(&sender.name)
            && (id.generation > sender.generation || (id.generation == sender.generation && id.addr != sender.addr))
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
            for m in self.members.map.values_mut() {
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
        let mut last = None;
        let mut changes: Vec<(Id, Status, StatusReason)> = Vec::new();
        let mut forget: Vec<Id> = Vec::new();
        let mut gc: Vec<Id> = Vec::new();
        for (k, m) in rotate(&self.members.map, self.fd_cursor.as_deref()).take(slice.min(n)) {
            last = Some(k.0.name.clone());
            if m.keys.as_ref().is_some_and(|ks| ks.entries.values().any(|e| e.value.is_none())) {
                gc.push(k.0.clone());
            }
            if k.0.name == self.me.name {
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
                        changes.push((k.0.clone(), Status::Suspect, StatusReason::Silent { silent_for: silent, phi }));
                    }
                }
                Status::Suspect => {
                    let phi = m.detector.phi_after(silent.saturating_sub(self.config.suspect_timeout), &self.phi);
                    if phi > threshold {
                        let now_phi = m.detector.phi_after(silent, &self.phi);
                        changes.push((k.0.clone(), Status::Dead, StatusReason::Silent { silent_for: silent, phi: now_phi }));
                    }
                }
                Status::Dead | Status::Left => {
                    if silent >= grace {
                        forget.push(k.0.clone());
                    }
                }
            }
        }
        self.fd_cursor = last;
        for (id, to, reason) in changes {
            let from = self.members.set_status(&id.name, to).expect("member was just checked");
            match to {
                Status::Suspect => self.metrics.suspicions += 1,
                Status::Dead => self.metrics.convictions += 1,
                _ => {}
            }
            tracing::debug!(node = %self.me, member = %id, ?from, ?to, ?reason, "member status changed");
            self.emit(Event::MemberStatus { id, from, to, reason });
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

    fn push_hot(&mut self, id: Id, floor: u64, now: Instant) {
        let rounds = self.config.hot_rounds.unwrap_or_else(|| {
            let n = self.members.len().max(2) as f64;
            n.log2().ceil() as u32 + 2
        });
        let until = now + self.config.gossip_interval * rounds;
        if let Some(h) = self.hot.iter_mut().find(|h| h.id.name == id.name) {
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
            self.hot.remove(0);
        }
        self.hot.push(Hot { id, floor, until });
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
        let envelope = Envelope { cluster: self.cluster, from: self.me.clone(), message };
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

/// Members in name order starting after `after`, wrapping around once.
fn rotate<'a>(
    map: &'a std::collections::BTreeMap<MemberKey, Member>,
    after: Option<&'a str>,
) -> impl Iterator<Item = (&'a MemberKey, &'a Member)> + 'a {
    let (tail, head) = match after {
        Some(a) => (
            map.range::<str, _>((Bound::Excluded(a), Bound::Unbounded)),
            map.range::<str, _>((Bound::Unbounded, Bound::Included(a))),
        ),
        None => (map.range::<str, _>(..), map.range::<str, _>((Bound::Unbounded, Bound::Excluded("")))),
    };
    tail.chain(head)
}
