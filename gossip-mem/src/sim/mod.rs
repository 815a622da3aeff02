//! A deterministic discrete-event simulator driving many pure protocol
//! cores ([`gossip_core::proto::Node`]) directly.
//!
//! One priority queue of `(time, sequence, action)`, nodes in a `Vec`,
//! virtual time, no async runtime and no threads: the same [`SimConfig`]
//! always gives the same run, bit for bit, which [`Sim::trace_hash`] shows.
//! Each node's RNG is derived from `(master seed, node index, generation)`,
//! so adding a node or a fault to a scenario does not reshuffle every other
//! node's choices. Faults: loss, latency ranges (and so reordering),
//! duplication, partitions (a group id per node), crash/restart,
//! pause/resume, one-way links ([`Sim::set_links`]: a node that cannot send
//! or cannot receive) and slow nodes ([`Sim::set_slow`]: every message and
//! timer handled late, as under CPU starvation).
//!
//! ```
//! use gossip_mem::sim::{Sim, SimConfig};
//! let mut sim = Sim::new(SimConfig::default());
//! let seed = sim.add_node(&[]);
//! for _ in 0..9 {
//!     sim.add_node(&[seed]);
//! }
//! sim.run_for_rounds(20.0, &mut |_, _| {});
//! assert!((0..10).all(|i| sim.node(i).unwrap().member_count() == 10));
//! ```

/// Properties checked on every simulated step in tests.
pub mod invariants;
/// The idealized synchronous push-pull model (DESIGN.md §7).
pub mod model;
/// Experiments and fault scenarios over the simulator.
pub mod scenario;
pub mod spread;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use gossip_core::proto::{Config, Envelope, Event, Instant, MessageKind, Node, NodeId, WriteError};
use rand::rngs::StdRng;

use crate::timed::Timed;
use rand::{RngExt, SeedableRng};
use spread::{Spread, Write};

/// The network's misbehaviour, applied per message.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Probability that a message is lost.
    pub loss: f64,
    /// One-way latency, drawn uniformly from this range (so messages reorder).
    pub latency: (Duration, Duration),
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Probability that a message is held back by up to `reorder_delay` extra.
    pub reorder: f64,
    /// Extra delay of a reordered message, at most.
    pub reorder_delay: Duration,
}

impl Default for Faults {
    /// No loss; 1–5 ms links (a LAN); no duplication or extra reordering.
    fn default() -> Self {
        Faults {
            loss: 0.0,
            latency: (Duration::from_millis(1), Duration::from_millis(5)),
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(50),
        }
    }
}

/// How to run a simulation.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Master seed: every random choice of the run derives from it.
    pub seed: u64,
    /// Protocol configuration of every node.
    pub proto: Config,
    /// Network faults.
    pub faults: Faults,
    /// Encode and decode every message through the codec (slower; proves
    /// the wire format). Off: messages pass as values, sizes still exact.
    pub wire: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            proto: Config::default(),
            faults: Faults::default(),
            wire: false,
        }
    }
}

/// Totals since the simulation started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages sent by nodes.
    pub messages: u64,
    /// Encoded bytes of messages sent.
    pub bytes: u64,
    /// Messages lost to loss, partitions or crashed receivers.
    pub dropped: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Messages and bytes sent, by kind (indexed by [`MessageKind::index`]).
    pub by_kind: [KindStats; MessageKind::ALL.len()],
}

/// Traffic of one message kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindStats {
    /// Messages sent.
    pub messages: u64,
    /// Encoded bytes sent.
    pub bytes: u64,
}

/// One simulated node slot.
#[derive(Debug)]
pub struct SimNode {
    /// Name (stable across restarts).
    pub name: String,
    /// Gossip address (a label; nothing is sent on a real network).
    pub addr: SocketAddr,
    /// Current generation (grows on restart).
    pub generation: u64,
    /// Seeds given at start, by index.
    pub seeds: Vec<usize>,
    /// Partition group; messages flow only within a group.
    pub group: u32,
    node: Option<Node>,
    paused: bool,
    inbox: Vec<Delivery>,
    armed: Option<Instant>,
    sends: bool,
    receives: bool,
    /// Until when it is still catching up after a link came back
    /// ([`Sim::set_links`]).
    catching_up_until: Instant,
    delay: Duration,
}

impl SimNode {
    /// Whether the node runs (not crashed; it may be paused).
    pub fn is_up(&self) -> bool {
        self.node.is_some()
    }

    /// Whether the node is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The running core, if up.
    pub fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    /// Whether what it sends reaches the network ([`Sim::set_links`]).
    pub fn can_send(&self) -> bool {
        self.sends
    }

    /// Whether what is sent to it arrives ([`Sim::set_links`]).
    pub fn can_receive(&self) -> bool {
        self.receives
    }

    /// Whether a link of it came back less than a gossip interval ago
    /// ([`Sim::set_links`]): what it concludes about others, and others
    /// about it, may still rest on what it could not hear or say.
    pub fn catching_up(&self, now: Instant) -> bool {
        now < self.catching_up_until
    }

    /// How late it handles every message and timer ([`Sim::set_slow`]).
    pub fn delay(&self) -> Duration {
        self.delay
    }
}

/// Where an event happened, handed to the event callback with the event:
/// the time, the node that emitted it, and a read-only view of all nodes.
#[derive(Clone, Copy, Debug)]
pub struct Ctx<'a> {
    /// Virtual time of the event.
    pub now: Instant,
    /// Index of the node that emitted it.
    pub node: usize,
    /// All node slots, as they are at that moment.
    pub slots: &'a [SimNode],
}

#[derive(Clone, Debug)]
enum Payload {
    Value(Envelope),
    Wire(Bytes),
}

/// A message on its way to a node.
#[derive(Debug)]
struct Delivery {
    from: SocketAddr,
    payload: Payload,
    /// It carries the value of the write being followed ([`spread::carries`],
    /// decided when it was sent, before any encoding).
    carries: bool,
    /// Already held back once by a slow receiver ([`Sim::set_slow`]).
    held: bool,
}

#[derive(Debug)]
enum Action {
    Timer { node: usize, at: Instant },
    Deliver { to: usize, delivery: Delivery },
}

type Scheduled = Timed<Instant, Action>;

/// Mixes 64 bits (splitmix64's finalizer): derived seeds and trace hashing.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The index in a simulated node's name (simulated names are `n<index>`).
pub fn node_index(name: &str) -> Option<usize> {
    name.strip_prefix('n')?.parse().ok()
}

/// The label address of node `i` (loopback range, never dialled).
pub fn sim_addr(i: usize) -> SocketAddr {
    let i = i as u32;
    SocketAddr::from((
        Ipv4Addr::new(127, 1 + (i >> 16) as u8, (i >> 8) as u8, i as u8),
        7000,
    ))
}

/// A simulation: nodes, a virtual clock and an event queue.
#[derive(Debug)]
pub struct Sim {
    config: SimConfig,
    now: Instant,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    nodes: Vec<SimNode>,
    by_addr: BTreeMap<SocketAddr, usize>,
    rng: StdRng,
    stats: Stats,
    trace: u64,
    /// The write being followed message by message, if any.
    spread: Option<Spread>,
}

impl Sim {
    /// An empty simulation at time zero.
    ///
    /// # Panics
    /// If `config.proto` is invalid (a bug in the scenario, not an input).
    pub fn new(config: SimConfig) -> Self {
        if let Err(e) = config.proto.validate() {
            panic!("simulation given an invalid protocol config: {e}");
        }
        let rng = StdRng::seed_from_u64(mix(config.seed ^ 0x5157_1a7e));
        Sim {
            config,
            now: Instant::ZERO,
            queue: BinaryHeap::new(),
            seq: 0,
            nodes: Vec::new(),
            by_addr: BTreeMap::new(),
            rng,
            stats: Stats::default(),
            trace: 0xcbf2_9ce4_8422_2325,
            spread: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Virtual time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time in gossip rounds (intervals) since the start.
    pub fn rounds(&self) -> f64 {
        self.rounds_since(Instant::ZERO)
    }

    /// Virtual time since `t`, in gossip rounds.
    pub fn rounds_since(&self, t: Instant) -> f64 {
        self.rounds_of(self.now.saturating_since(t))
    }

    /// A duration in gossip rounds (intervals).
    pub fn rounds_of(&self, d: Duration) -> f64 {
        d.as_secs_f64() / self.config.proto.gossip_interval.as_secs_f64()
    }

    /// Number of node slots (crashed ones included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Totals so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// A hash of everything that happened: equal hashes, equal runs.
    pub fn trace_hash(&self) -> u64 {
        self.trace
    }

    /// Node slot `i`.
    pub fn slot(&self, i: usize) -> &SimNode {
        &self.nodes[i]
    }

    /// The running core of node `i` (`None` while crashed).
    pub fn node(&self, i: usize) -> Option<&Node> {
        self.nodes.get(i).and_then(|s| s.node.as_ref())
    }

    /// Whether node `i` runs (not crashed; it may be paused).
    pub fn is_up(&self, i: usize) -> bool {
        self.node(i).is_some()
    }

    /// Whether node `i` is paused.
    pub fn is_paused(&self, i: usize) -> bool {
        self.nodes[i].paused
    }

    /// Index of the node at `addr`.
    pub fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.by_addr.get(&addr).copied()
    }

    /// Adds and starts a node that joins through the nodes `seeds`.
    pub fn add_node(&mut self, seeds: &[usize]) -> usize {
        let i = self.nodes.len();
        let addr = sim_addr(i);
        self.by_addr.insert(addr, i);
        self.nodes.push(SimNode {
            name: format!("n{i}"), // see `node_index`
            addr,
            generation: 1,
            seeds: seeds.to_vec(),
            group: 0,
            node: None,
            paused: false,
            inbox: Vec::new(),
            armed: None,
            sends: true,
            receives: true,
            catching_up_until: Instant::ZERO,
            delay: Duration::ZERO,
        });
        self.boot(i);
        i
    }

    fn boot(&mut self, i: usize) {
        let slot = &self.nodes[i];
        let id = NodeId::new(slot.name.clone(), slot.addr, slot.generation);
        let seeds = slot.seeds.iter().map(|&s| sim_addr(s)).collect();
        let rng_seed = mix(self.config.seed ^ mix(i as u64) ^ mix(slot.generation.rotate_left(32)));
        let node = Node::new(self.config.proto.clone(), id, seeds, rng_seed, self.now)
            .expect("config was validated when the simulation was created");
        self.nodes[i].node = Some(node);
        self.nodes[i].armed = None;
        self.arm(i);
    }

    /// Runs `f` on node `i` (a command: set, delete, leave…) at the current
    /// time and handles its outputs. `None` if the node is down.
    pub fn with_node<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Node, Instant) -> R,
        on_event: &mut impl FnMut(&Ctx<'_>, &Event),
    ) -> Option<R> {
        let now = self.now;
        let r = f(self.nodes[i].node.as_mut()?, now);
        self.flush(i, on_event);
        Some(r)
    }

    /// Writes `key = value` on node `i`, like [`with_node`](Self::with_node)
    /// with [`Node::set`], and follows that write message by message until
    /// [`stop_tracking`](Self::stop_tracking): which delivered messages carry
    /// its value and at which hop each node first holds it ([`Spread`]).
    /// Tracking starts before the writer's first transmit leaves, so a
    /// message sent at once (an eager push) is counted too. Following a new
    /// write replaces the previous one. `None` if the node is down; a
    /// refused write is returned and nothing is followed.
    ///
    /// Following costs one lookup per delivered message and one scan of each
    /// sent message's deltas; it changes nothing in the run (same trace hash).
    pub fn track_write(
        &mut self,
        i: usize,
        key: &str,
        value: Bytes,
        on_event: &mut impl FnMut(&Ctx<'_>, &Event),
    ) -> Option<Result<u64, WriteError>> {
        let now = self.now;
        let r = self.nodes[i].node.as_mut()?.set(now, key, value);
        if let Ok(version) = r {
            let slot = &self.nodes[i];
            let write = Write {
                owner: slot.name.clone(),
                generation: slot.generation,
                key: key.to_owned(),
                version,
            };
            self.spread = Some(Spread::new(write, i, self.nodes.len(), now));
        }
        self.flush(i, on_event);
        Some(r)
    }

    /// The write being followed (see [`track_write`](Self::track_write)).
    pub fn spread(&self) -> Option<&Spread> {
        self.spread.as_ref()
    }

    /// Stops following the current write and returns what was seen.
    pub fn stop_tracking(&mut self) -> Option<Spread> {
        self.spread.take()
    }

    /// Crashes node `i`: its state is lost, messages to it are dropped.
    pub fn crash(&mut self, i: usize) {
        let slot = &mut self.nodes[i];
        slot.node = None;
        slot.paused = false;
        slot.inbox.clear();
        slot.armed = None;
    }

    /// Restarts crashed node `i` with the next generation and empty state.
    pub fn restart(&mut self, i: usize) {
        self.crash(i);
        self.nodes[i].generation += 1;
        self.boot(i);
    }

    /// Pauses node `i` (a GC pause, SIGSTOP): no timers fire, messages wait.
    pub fn pause(&mut self, i: usize) {
        self.nodes[i].paused = true;
    }

    /// Resumes node `i`: it handles what arrived meanwhile, then its timer.
    pub fn resume(&mut self, i: usize, on_event: &mut impl FnMut(&Ctx<'_>, &Event)) {
        if !std::mem::replace(&mut self.nodes[i].paused, false) {
            return;
        }
        for delivery in std::mem::take(&mut self.nodes[i].inbox) {
            self.receive(i, delivery, on_event);
        }
        let now = self.now;
        if let Some(node) = self.nodes[i].node.as_mut() {
            node.handle_timeout(now);
        }
        self.nodes[i].armed = None;
        self.flush(i, on_event);
    }

    /// Puts node `i` in partition group `group`.
    pub fn set_group(&mut self, i: usize, group: u32) {
        self.nodes[i].group = group;
    }

    /// Ends every partition.
    pub fn heal(&mut self) {
        for s in &mut self.nodes {
            s.group = 0;
        }
    }

    /// Cuts or restores node `i`'s links one way at a time: with `send`
    /// false what it sends is lost, with `receive` false what is sent to it
    /// is lost (both false: its links are down), so one-way reachability
    /// can be tested, which partition groups (symmetric) cannot. What it
    /// sends is judged when sent (already in flight, it still arrives);
    /// what it receives when it arrives, as by a partition. Links are a
    /// property of the slot, like its group: kept across crash and restart.
    ///
    /// A link that comes back leaves the node [catching
    /// up](SimNode::catching_up) for one gossip interval.
    pub fn set_links(&mut self, i: usize, send: bool, receive: bool) {
        let n = &mut self.nodes[i];
        if (send && !n.sends) || (receive && !n.receives) {
            n.catching_up_until = self.now + self.config.proto.gossip_interval;
        }
        n.sends = send;
        n.receives = receive;
    }

    /// Makes node `i` handle every message and timer `delay` late (zero:
    /// on time again), as a node starved of CPU would: it still answers,
    /// late, and its own clock reads the late time, so what it measures
    /// (heartbeat arrivals) is late by `delay` too. A message is held once,
    /// by the delay in force when it arrives; a timer is armed `delay`
    /// after it is due. Kept across crash and restart, like the group.
    pub fn set_slow(&mut self, i: usize, delay: Duration) {
        self.nodes[i].delay = delay;
        // The pending timer moves with the new delay (the old one is
        // ignored when it fires: `armed` no longer matches it).
        self.arm(i);
    }

    /// Replaces the fault model from now on.
    pub fn set_faults(&mut self, faults: Faults) {
        self.config.faults = faults;
    }

    fn schedule(&mut self, at: Instant, action: Action) {
        self.seq += 1;
        self.queue.push(Reverse(Timed {
            at,
            seq: self.seq,
            item: action,
        }));
    }

    fn arm(&mut self, i: usize) {
        let Some(node) = self.nodes[i].node.as_ref() else {
            return;
        };
        // A slow node handles each timer `delay` after it is due, not
        // `delay` after the last thing it did: measured from `now`, every
        // message it handles would push its timer back again, and a node
        // hearing from peers more often than every `delay` would never tick.
        let at = (node.poll_timeout() + self.nodes[i].delay).max(self.now);
        if self.nodes[i].armed != Some(at) {
            self.nodes[i].armed = Some(at);
            self.schedule(at, Action::Timer { node: i, at });
        }
    }

    fn hash(&mut self, v: u64) {
        self.trace = mix(self.trace ^ v);
    }

    /// Drains node `i`'s transmits (through the fault model) and events,
    /// then re-arms its timer.
    fn flush(&mut self, i: usize, on_event: &mut impl FnMut(&Ctx<'_>, &Event)) {
        let now = self.now;
        loop {
            let Some(node) = self.nodes[i].node.as_mut() else {
                return;
            };
            let Some(tx) = node.poll_transmit() else {
                break;
            };
            let len = tx.len as u64;
            self.stats.messages += 1;
            self.stats.bytes += len;
            let kind = &mut self.stats.by_kind[tx.envelope.message.kind().index()];
            kind.messages += 1;
            kind.bytes += len;
            let Some(to) = self.index_of(tx.to) else {
                self.stats.dropped += 1;
                continue;
            };
            if !self.nodes[i].sends {
                self.stats.dropped += 1;
                continue;
            }
            let f = &self.config.faults;
            let (loss, dup, reorder, (lo, hi), extra) =
                (f.loss, f.duplicate, f.reorder, f.latency, f.reorder_delay);
            if loss > 0.0 && self.rng.random_bool(loss) {
                self.stats.dropped += 1;
                continue;
            }
            let copies = if dup > 0.0 && self.rng.random_bool(dup) {
                2
            } else {
                1
            };
            let from = self.nodes[i].addr;
            let carries = self
                .spread
                .as_ref()
                .is_some_and(|s| spread::carries(&tx.envelope.message, s.write()));
            let payload = if self.config.wire {
                Payload::Wire(tx.encode())
            } else {
                Payload::Value(tx.envelope)
            };
            let mut payload = Some(payload);
            for c in 0..copies {
                let mut delay = if hi > lo {
                    self.rng.random_range(lo..=hi)
                } else {
                    lo
                };
                if reorder > 0.0 && self.rng.random_bool(reorder) {
                    delay += extra.mul_f64(self.rng.random_range(0.0..1.0));
                }
                if c == 1 {
                    self.stats.duplicated += 1;
                }
                // Clone only for a duplicate: digests are large.
                let copy = if c + 1 == copies {
                    payload.take()
                } else {
                    payload.clone()
                };
                let payload = copy.expect("the last copy takes the payload, earlier ones clone it");
                let delivery = Delivery {
                    from,
                    payload,
                    carries,
                    held: false,
                };
                self.schedule(now + delay, Action::Deliver { to, delivery });
            }
        }
        loop {
            let Some(node) = self.nodes[i].node.as_mut() else {
                return;
            };
            let Some(event) = node.poll_event() else {
                break;
            };
            self.hash(event_tag(&event) ^ ((i as u64) << 8));
            on_event(
                &Ctx {
                    now,
                    node: i,
                    slots: &self.nodes,
                },
                &event,
            );
        }
        self.arm(i);
    }

    fn receive(
        &mut self,
        to: usize,
        delivery: Delivery,
        on_event: &mut impl FnMut(&Ctx<'_>, &Event),
    ) {
        let now = self.now;
        let Delivery {
            from,
            payload,
            carries,
            ..
        } = delivery;
        let Some(node) = self.nodes[to].node.as_mut() else {
            self.stats.dropped += 1;
            return;
        };
        self.stats.delivered += 1;
        // Refusals are counted in the node's metrics; the simulation goes on.
        let _ = match payload {
            Payload::Value(env) => node.handle_message(now, from, env),
            Payload::Wire(bytes) => node.handle_bytes(now, from, &bytes),
        };
        if let Some(spread) = self.spread.as_mut() {
            if carries {
                spread.delivered();
            }
            // Checked after every delivery, not only after carrying ones: a
            // node that comes to hold the value from a message `carries`
            // missed is counted (`Spread::unexplained`), not overlooked.
            if !spread.holds(to) {
                let w = spread.write();
                let held = node
                    .get(&w.owner, &w.key)
                    .is_some_and(|(_, version)| version >= w.version);
                if held {
                    let from_idx = self.by_addr.get(&from).copied();
                    spread.first_held(to, from_idx, now, carries);
                }
            }
        }
        self.flush(to, on_event);
    }

    /// Processes the next scheduled action. Returns `false` when nothing is left.
    pub fn step(&mut self, on_event: &mut impl FnMut(&Ctx<'_>, &Event)) -> bool {
        let Some(Reverse(s)) = self.queue.pop() else {
            return false;
        };
        debug_assert!(s.at >= self.now, "virtual time never goes backwards");
        self.now = s.at;
        match s.item {
            Action::Timer { node, at } => {
                let slot = &self.nodes[node];
                if slot.armed != Some(at) || slot.paused || slot.node.is_none() {
                    return true;
                }
                self.nodes[node].armed = None;
                self.hash(at.as_micros() ^ ((node as u64) << 40) ^ 1);
                if let Some(n) = self.nodes[node].node.as_mut() {
                    n.handle_timeout(at);
                }
                self.flush(node, on_event);
            }
            Action::Deliver { to, mut delivery } => {
                let from = delivery.from;
                let from_idx = self.index_of(from).unwrap_or(usize::MAX);
                let cut =
                    from_idx != usize::MAX && self.nodes[from_idx].group != self.nodes[to].group;
                if cut || !self.nodes[to].receives {
                    self.stats.dropped += 1;
                    return true;
                }
                let delay = self.nodes[to].delay;
                if !delivery.held && !delay.is_zero() {
                    delivery.held = true;
                    self.schedule(s.at + delay, Action::Deliver { to, delivery });
                    return true;
                }
                self.hash(s.at.as_micros() ^ ((to as u64) << 40) ^ ((from_idx as u64) << 20) ^ 2);
                if self.nodes[to].paused {
                    self.nodes[to].inbox.push(delivery);
                    return true;
                }
                self.receive(to, delivery, on_event);
            }
        }
        true
    }

    /// Runs every action scheduled up to `until`, then sets the clock to it.
    pub fn run_until(&mut self, until: Instant, on_event: &mut impl FnMut(&Ctx<'_>, &Event)) {
        while self.queue.peek().is_some_and(|Reverse(s)| s.at <= until) {
            self.step(on_event);
        }
        self.now = self.now.max(until);
    }

    /// Runs for `rounds` gossip intervals of virtual time.
    pub fn run_for_rounds(&mut self, rounds: f64, on_event: &mut impl FnMut(&Ctx<'_>, &Event)) {
        let until = self.now + self.config.proto.gossip_interval.mul_f64(rounds);
        self.run_until(until, on_event);
    }
}

fn event_tag(e: &Event) -> u64 {
    match e {
        Event::MemberJoined { .. } => 1,
        Event::MemberStatus { to, .. } => 2 + ((*to as u64) << 4),
        Event::MemberRestarted { .. } => 3,
        Event::MemberForgotten { .. } => 4,
        Event::NameConflict { .. } => 5,
        Event::KeyChanged { version, .. } => 6 + (version << 8),
        Event::KeyDeleted { .. } => 7,
        Event::Joined => 8,
        Event::LeaveAnnounced => 9,
        _ => 10,
    }
}
