use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use gossip_core::proto::{Config, Event, Instant, MessageKind, Status};

use crate::sim::{Ctx, Faults, Sim, SimConfig};

/// Builds a cluster of `nodes` nodes that all start at time zero and join
/// through node 0, and runs until every node knows every other one (or
/// `max_rounds` pass). Returns the simulation and whether membership converged.
pub fn converged_cluster(
    config: SimConfig,
    nodes: usize,
    max_rounds: f64,
    progress: &mut dyn FnMut(f64, usize),
) -> (Sim, bool) {
    let mut sim = Sim::new(config);
    let seed = sim.add_node(&[]);
    for _ in 1..nodes {
        sim.add_node(&[seed]);
    }
    let mut known = vec![1usize; nodes];
    let full = Cell::new(usize::from(nodes == 1));
    let deadline = Instant::ZERO + sim.config().proto.gossip_interval.mul_f64(max_rounds);
    let mut last_report = 0.0;
    let mut on_event = |ctx: &Ctx<'_>, e: &Event| match e {
        Event::MemberJoined { .. } => {
            known[ctx.node] += 1;
            if known[ctx.node] == nodes {
                full.set(full.get() + 1);
            }
        }
        Event::MemberForgotten { .. } => {
            if known[ctx.node] == nodes {
                full.set(full.get() - 1);
            }
            known[ctx.node] -= 1;
        }
        _ => {}
    };
    while full.get() < nodes && sim.now() <= deadline {
        if !sim.step(&mut on_event) {
            break;
        }
        let r = sim.rounds();
        if r - last_report >= 1.0 {
            last_report = r.floor();
            progress(r, full.get());
        }
    }
    (sim, full.get() == nodes)
}

/// Rounds over which a rumor run measures idle traffic.
pub const IDLE_ROUNDS: u32 = 10;

/// What one rumor run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct RumorReport {
    /// Nodes in the cluster.
    pub nodes: usize,
    /// The master seed.
    pub seed: u64,
    /// Rounds until every node knew every other one.
    pub join_rounds: f64,
    /// Whether membership converged.
    pub joined: bool,
    /// Rounds from the write until the last node held the key.
    pub rumor_rounds: f64,
    /// Whether every node got the key.
    pub spread: bool,
    /// Messages sent per node per round, after membership converged.
    pub msgs_per_node_per_round: f64,
    /// Encoded bytes sent per node per round, after membership converged.
    pub bytes_per_node_per_round: f64,
    /// Encoded bytes sent per node per round over [`IDLE_ROUNDS`] rounds
    /// after the traffic window: the cluster converged and nobody writes,
    /// so this is what anti-entropy and failure detection cost at rest.
    pub idle_bytes_per_node_per_round: f64,
    /// Messages sent per node per round over the same idle rounds.
    pub idle_msgs_per_node_per_round: f64,
    /// The idle bytes per node per round by message kind (named as
    /// [`MessageKind::name`] gives them), kinds that sent nothing left out.
    pub idle_bytes_by_kind: Vec<(&'static str, f64)>,
    /// Live → Suspect transitions per node per round after membership
    /// converged. Nobody fails in this experiment: every one is a false
    /// suspicion (heartbeats reaching a node too irregularly).
    pub suspicions_per_node_per_round: f64,
    /// Transitions to Dead per node per round after membership converged:
    /// false convictions, as nobody fails.
    pub convictions_per_node_per_round: f64,
    /// Virtual milliseconds from the write until the last node held the key
    /// (`rumor_rounds` in milliseconds; infinite if it never spread). With
    /// eager push the spread is bounded by hops × link latency rather than
    /// by rounds, so this is the figure that shows it.
    pub rumor_ms: f64,
    /// When each node but the writer first held the key, in virtual
    /// milliseconds after the write, sorted; nodes that never got it are
    /// missing. Kept whole so percentiles can be taken over the nodes of
    /// several seeds pooled ([`percentile`]).
    pub delivery_ms: Vec<f64>,
    /// Messages carrying the key's value (a delta with the update at the
    /// write's version, [`carries`](super::spread::carries)) delivered from
    /// the write until the end of the traffic window, divided by the `n − 1`
    /// nodes that needed it: the floor is 1.0, the rest is redundancy.
    /// Copies delivered to the writer or to nodes already holding it count.
    pub payload_copies_per_node: f64,
    /// The hop at which the last node got the value (writer hop 0; a node
    /// that first holds it after a message of a hop-h node is at h + 1).
    /// `None` if no other node got it.
    pub last_delivery_hops: Option<u32>,
    /// Nodes that came to hold the key from a message not counted as
    /// carrying it: 0 unless [`carries`](super::spread::carries) misses a
    /// message kind.
    pub unexplained_holders: u64,
    /// The run's trace hash.
    pub trace_hash: u64,
}

/// The `q` quantile (`0 < q ≤ 1`) of `sorted` (ascending) by nearest rank:
/// the smallest value with at least `q` of the values at or below it.
/// `None` if `sorted` is empty.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

/// Virtual milliseconds in `d`.
fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The spreading experiment: converge a cluster, write one key on one node
/// and measure the rounds until every node holds it, and the traffic per
/// node per round over `window` rounds after convergence (the write included).
/// The simulator follows the write message by message
/// ([`Sim::track_write`]) for the payload copies and hops, over the same
/// window; following it changes nothing in the run.
pub fn rumor(
    config: SimConfig,
    nodes: usize,
    window: f64,
    progress: &mut dyn FnMut(f64, usize),
) -> RumorReport {
    rumor_after(config, nodes, window, 0, progress)
}

/// [`rumor`], after `warmup` earlier writes on nodes spread over the
/// cluster, a fifth of a round apart: eager push's tree is then pruned by
/// earlier news (a *warm* tree), as in a cluster that has been writing,
/// while [`rumor`] measures the first news after the join (a cold tree).
/// Traffic and the measured write's figures start after the warm-up.
pub fn rumor_after(
    config: SimConfig,
    nodes: usize,
    window: f64,
    warmup: usize,
    progress: &mut dyn FnMut(f64, usize),
) -> RumorReport {
    let interval = config.proto.gossip_interval;
    let seed = config.seed;
    let (mut sim, joined) = converged_cluster(
        config,
        nodes,
        100.0 + 10.0 * (nodes as f64).log2(),
        progress,
    );
    let join_rounds = sim.rounds();
    for k in 0..warmup {
        // Writers other than the measured one (nodes / 2), spread out.
        let w = (k * 7919 + 13) % nodes;
        sim.with_node(
            w,
            |n, now| n.set(now, &format!("warmup{k}"), Bytes::from_static(b"w")),
            &mut |_, _| {},
        );
        sim.run_for_rounds(0.2, &mut |_, _| {});
    }
    let before = sim.stats();
    let start = sim.now();
    let writer = nodes / 2;
    let mut holders = 1usize;
    let done_at = Cell::new(None);
    let (suspicions, convictions) = (Cell::new(0u64), Cell::new(0u64));
    let suspected = |e: &Event| match e {
        Event::MemberStatus {
            to: Status::Suspect,
            ..
        } => suspicions.set(suspicions.get() + 1),
        Event::MemberStatus {
            to: Status::Dead, ..
        } => convictions.set(convictions.get() + 1),
        _ => {}
    };
    let mut count = |ctx: &Ctx<'_>, e: &Event| {
        suspected(e);
        if let Event::KeyChanged { owner, key, .. } = e
            && key == "rumor"
            && owner.name == format!("n{writer}")
        {
            holders += 1;
            if holders == nodes {
                done_at.set(Some(ctx.now));
            }
        }
    };
    sim.track_write(writer, "rumor", Bytes::from_static(b"hello"), &mut count)
        .expect("the writer is up")
        .expect("a small key is accepted");
    let deadline = start + interval.mul_f64(window.max(60.0));
    while done_at.get().is_none() && sim.now() <= deadline && sim.step(&mut count) {}
    let rumor_rounds = done_at
        .get()
        .map_or(f64::INFINITY, |t| sim.rounds_of(t.saturating_since(start)));
    let measure_until = start + interval.mul_f64(window.max(rumor_rounds.ceil()));
    sim.run_until(measure_until, &mut |_, e| suspected(e));
    let after = sim.stats();
    let rounds = sim.rounds_since(start);
    let per = |v: u64| v as f64 / nodes as f64 / rounds;
    let spread = sim
        .stop_tracking()
        .expect("the write has been followed since it was made");
    let idle_start = sim.now();
    sim.run_until(idle_start + interval * IDLE_ROUNDS, &mut |_, _| {});
    let idle = sim.stats();
    let idle_per = |v: u64| v as f64 / nodes as f64 / f64::from(IDLE_ROUNDS);
    let mut delivery_ms: Vec<f64> = (0..nodes)
        .filter(|&i| i != writer)
        .filter_map(|i| spread.held_at(i))
        .map(|t| ms(t.saturating_since(start)))
        .collect();
    delivery_ms.sort_by(f64::total_cmp);
    RumorReport {
        nodes,
        seed,
        join_rounds,
        joined,
        rumor_rounds,
        spread: done_at.get().is_some(),
        msgs_per_node_per_round: per(after.messages - before.messages),
        bytes_per_node_per_round: per(after.bytes - before.bytes),
        idle_bytes_per_node_per_round: idle_per(idle.bytes - after.bytes),
        idle_msgs_per_node_per_round: idle_per(idle.messages - after.messages),
        idle_bytes_by_kind: MessageKind::ALL
            .iter()
            .map(|k| {
                let i = k.index();
                (
                    k.name(),
                    idle_per(idle.by_kind[i].bytes - after.by_kind[i].bytes),
                )
            })
            .filter(|&(_, b)| b > 0.0)
            .collect(),
        suspicions_per_node_per_round: per(suspicions.get()),
        convictions_per_node_per_round: per(convictions.get()),
        rumor_ms: done_at
            .get()
            .map_or(f64::INFINITY, |t| ms(t.saturating_since(start))),
        delivery_ms,
        payload_copies_per_node: spread.copies() as f64 / (nodes.max(2) - 1) as f64,
        last_delivery_hops: spread.last_delivery_hop(),
        unexplained_holders: spread.unexplained(),
        trace_hash: sim.trace_hash(),
    }
}

/// Parameters of the steady-load experiment ([`writes`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LoadConfig {
    /// Writes per second of virtual time, spread evenly over the load
    /// window (the k-th write at `k / rate` seconds).
    pub rate: f64,
    /// How long writes go on.
    pub duration: std::time::Duration,
    /// How long after the last write the run may go on for every write to
    /// reach every node; a run that hits it says so
    /// ([`LoadReport::drained`]).
    pub drain_deadline: std::time::Duration,
    /// Bytes of each written value (small: this measures propagation, not
    /// bulk transfer).
    pub value_bytes: usize,
}

impl Default for LoadConfig {
    /// 100 writes per second for 10 s, 60 s to drain, 8-byte values.
    fn default() -> Self {
        LoadConfig {
            rate: 100.0,
            duration: std::time::Duration::from_secs(10),
            drain_deadline: std::time::Duration::from_secs(60),
            value_bytes: 8,
        }
    }
}

/// What one steady-load run measured. Latencies are virtual milliseconds
/// from a write until every node held it; a write that never reached every
/// node counts as infinitely late (so a percentile that reaches one is
/// infinite, printed `null` in JSON).
#[derive(Clone, Debug, PartialEq)]
pub struct LoadReport {
    /// Nodes in the cluster.
    pub nodes: usize,
    /// The master seed.
    pub seed: u64,
    /// Rounds until every node knew every other one.
    pub join_rounds: f64,
    /// Whether membership converged (the load starts regardless).
    pub joined: bool,
    /// Writes made (accepted by their node).
    pub writes: usize,
    /// Writes a node refused (a keyspace limit); not in `writes`.
    pub refused: usize,
    /// Writes that reached every node before the drain deadline.
    pub writes_delivered_to_all: usize,
    /// Whether every write reached every node before the deadline.
    pub drained: bool,
    /// Virtual milliseconds measured over: the load window and the drain
    /// after it (until the last write reached every node, or the deadline).
    pub window_ms: f64,
    /// Messages sent by all nodes during the window, per write. This
    /// includes the idle gossip (heartbeats, digests) that would flow
    /// without any write: at a low rate that dominates.
    pub msgs_per_write: f64,
    /// Encoded bytes sent by all nodes during the window, per write (idle
    /// gossip included, as for `msgs_per_write`).
    pub bytes_per_write: f64,
    /// `msgs_per_write` by message kind (indexed by [`MessageKind::index`]): where
    /// the traffic goes.
    pub msgs_per_write_by_kind: [f64; MessageKind::ALL.len()],
    /// Median write latency (write → every node holds it).
    pub latency_ms_p50: f64,
    /// 99th percentile write latency.
    pub latency_ms_p99: f64,
    /// Slowest write.
    pub latency_ms_max: f64,
    /// The run's trace hash.
    pub trace_hash: u64,
}

/// One write of the load and what became of it.
struct Written {
    owner: String,
    version: u64,
    at: Instant,
    holders: usize,
    done: Option<Instant>,
}

/// The steady-load experiment: converge a cluster, then write
/// `load.rate` unique keys per second of virtual time, each on a node drawn
/// by a seeded RNG, for `load.duration`; then run until every write reached
/// every node (or `load.drain_deadline` after the last write). Reports the
/// traffic per write and the latency of writes (write → every node).
///
/// Keys are `w<k>` for the k-th write, so nothing but their own events can
/// count toward them.
pub fn writes(
    config: SimConfig,
    nodes: usize,
    load: &LoadConfig,
    progress: &mut dyn FnMut(f64, usize),
) -> LoadReport {
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};
    let seed = config.seed;
    let (mut sim, joined) = converged_cluster(
        config,
        nodes,
        100.0 + 10.0 * (nodes as f64).log2(),
        progress,
    );
    let join_rounds = sim.rounds();
    let before = sim.stats();
    let start = sim.now();
    let mut rng = StdRng::seed_from_u64(super::mix(seed ^ 0x77_72_69_74));
    // A rate that is not a positive finite number writes nothing.
    let count = if load.rate.is_finite() && load.rate > 0.0 {
        (load.rate * load.duration.as_secs_f64()).floor() as usize
    } else {
        0
    };
    let value = Bytes::from(vec![b'v'; load.value_bytes]);
    let mut written: Vec<Written> = Vec::with_capacity(count);
    let mut delivered = 0usize;
    let mut refused = 0usize;
    // Counts a node first holding one of the writes.
    let on_event = |written: &mut Vec<Written>, delivered: &mut usize, ctx: &Ctx<'_>, e: &Event| {
        let Event::KeyChanged {
            owner,
            key,
            version,
            ..
        } = e
        else {
            return;
        };
        let Some(w) = key
            .strip_prefix('w')
            .and_then(|k| k.parse::<usize>().ok())
            .and_then(|k| written.get_mut(k))
        else {
            return;
        };
        if w.version == *version && owner.name == w.owner && w.done.is_none() {
            w.holders += 1;
            if w.holders >= nodes {
                w.done = Some(ctx.now);
                *delivered += 1;
            }
        }
    };
    for k in 0..count {
        let offset =
            std::time::Duration::try_from_secs_f64(k as f64 / load.rate).unwrap_or(load.duration);
        sim.run_until(start + offset, &mut |ctx, e| {
            on_event(&mut written, &mut delivered, ctx, e)
        });
        let i = rng.random_range(0..nodes);
        let key = format!("w{}", written.len());
        let now = sim.now();
        let r = sim.with_node(
            i,
            |n, now| n.set(now, &key, value.clone()),
            &mut |ctx, e| on_event(&mut written, &mut delivered, ctx, e),
        );
        match r {
            Some(Ok(version)) => {
                let done = (nodes == 1).then_some(now);
                delivered += usize::from(done.is_some());
                written.push(Written {
                    owner: sim.slot(i).name.clone(),
                    version,
                    at: now,
                    holders: 1,
                    done,
                });
            }
            _ => refused += 1,
        }
    }
    let load_end = start + load.duration;
    sim.run_until(load_end.max(sim.now()), &mut |ctx, e| {
        on_event(&mut written, &mut delivered, ctx, e)
    });
    let deadline = sim.now() + load.drain_deadline;
    while delivered < written.len()
        && sim.now() <= deadline
        && sim.step(&mut |ctx, e| on_event(&mut written, &mut delivered, ctx, e))
    {}
    let after = sim.stats();
    let per_write = |v: u64| v as f64 / written.len().max(1) as f64;
    let mut latency: Vec<f64> = written
        .iter()
        .map(|w| {
            w.done
                .map_or(f64::INFINITY, |t| ms(t.saturating_since(w.at)))
        })
        .collect();
    latency.sort_by(f64::total_cmp);
    let q = |q: f64| percentile(&latency, q).unwrap_or(0.0);
    LoadReport {
        nodes,
        seed,
        join_rounds,
        joined,
        writes: written.len(),
        refused,
        writes_delivered_to_all: delivered,
        drained: delivered == written.len(),
        window_ms: ms(sim.now().saturating_since(start)),
        msgs_per_write: per_write(after.messages - before.messages),
        bytes_per_write: per_write(after.bytes - before.bytes),
        msgs_per_write_by_kind: std::array::from_fn(|k| {
            per_write(after.by_kind[k].messages - before.by_kind[k].messages)
        }),
        latency_ms_p50: q(0.5),
        latency_ms_p99: q(0.99),
        latency_ms_max: q(1.0),
        trace_hash: sim.trace_hash(),
    }
}

/// A simulation config with `fanout` and `loss` on top of the defaults.
pub fn config(seed: u64, fanout: usize, loss: f64) -> SimConfig {
    SimConfig {
        seed,
        proto: Config {
            fanout,
            ..Config::default()
        },
        faults: Faults {
            loss,
            ..Faults::default()
        },
        wire: false,
    }
}

/// The failure scenarios of the `simulate` example.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One node crashes in a converged cluster.
    Crash,
    /// One node stops processing for 30 rounds, then resumes.
    Pause,
    /// Two halves for 60 rounds with writes on both sides, then heal.
    Partition,
    /// Random crashes, restarts, joins, leaves and deletes, then quiet.
    Churn,
    /// A steady cluster under message loss, then without it: no one may
    /// be convicted, and the cluster converges once the loss stops.
    Loss,
    /// Nodes started at once join through one seed (under `loss`).
    Join,
    /// One node handles every message and timer `delay` late for
    /// `duration` rounds, as under CPU starvation, then 10 rounds on time.
    /// Lifeguard's case: it must convict nobody, and nobody may convict it
    /// while it still answers.
    Slow,
    /// Two nodes for `duration` rounds: one loses all it sends (mute), the
    /// other all sent to it (deaf); then their links come back and the
    /// cluster must see everyone Live again within 60 rounds.
    Oneway,
    /// The links of max(1, n/20) nodes go down (both ways) for 2 rounds and
    /// up for 3, phases staggered, for `duration` rounds; then 20 quiet
    /// rounds, converged at their end.
    Flap,
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "crash" => Kind::Crash,
            "pause" => Kind::Pause,
            "partition" => Kind::Partition,
            "churn" => Kind::Churn,
            "loss" => Kind::Loss,
            "join" => Kind::Join,
            "slow" => Kind::Slow,
            "oneway" => Kind::Oneway,
            "flap" => Kind::Flap,
            other => {
                return Err(format!(
                    "unknown scenario {other:?} (crash, pause, partition, churn, loss, join, slow, oneway, flap)"
                ));
            }
        })
    }
}

impl Kind {
    /// The scenario's name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Crash => "crash",
            Kind::Pause => "pause",
            Kind::Partition => "partition",
            Kind::Churn => "churn",
            Kind::Loss => "loss",
            Kind::Join => "join",
            Kind::Slow => "slow",
            Kind::Oneway => "oneway",
            Kind::Flap => "flap",
        }
    }
}

/// What happens to the victim of the crash scenario before it crashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Before {
    /// Nothing: a fresh, steady cluster.
    Nothing,
    /// Its half of the cluster is cut off from the other for 40 rounds,
    /// healed 10 rounds before the crash.
    Partition,
    /// It stops for 30 rounds, resumed 10 rounds before the crash.
    Pause,
}

impl std::str::FromStr for Before {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "nothing" => Before::Nothing,
            "partition" => Before::Partition,
            "pause" => Before::Pause,
            other => return Err(format!("unknown {other:?} (partition, pause)")),
        })
    }
}

/// What a failure scenario measured. Rounds are gossip intervals.
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioReport {
    /// Which scenario.
    pub scenario: Kind,
    /// Nodes at the start.
    pub nodes: usize,
    /// Join: rounds from the start until every node knew every other one.
    pub join_rounds: Option<f64>,
    /// Crash: rounds from the crash until every live node marked it Dead.
    pub detection_rounds: Option<f64>,
    /// Crash: rounds from the crash until the first live node held a
    /// Suspect (or Dead) verdict about it, the figure SWIM bounds by
    /// e/(e−1) periods; `None` if nobody suspected it within 60 rounds.
    pub first_suspicion_rounds: Option<f64>,
    /// Crash: bytes of failure-detection messages (probes, their answers,
    /// suspicions, convictions, refutations: [`MessageKind::is_detection`])
    /// sent per running node per round, from the crash to the end of the run.
    pub detection_bytes_per_node_per_round: Option<f64>,
    /// Pause: rounds from the resume until every node sees it Live again.
    /// Slow, oneway, flap: rounds from the end of the fault until the
    /// cluster converged (every node sees every other Live).
    pub recovery_rounds: Option<f64>,
    /// Partition: rounds from the heal until every node holds the same state.
    /// Churn: rounds from the end of churn until the same. Loss: rounds
    /// from the end of the loss until the same.
    pub heal_rounds: Option<f64>,
    /// Times a running, unpaused, reachable node was declared Dead. Flap:
    /// every Dead verdict from the start of flapping on (nobody crashes,
    /// and an outage of 2 rounds is shorter than any detector should need
    /// to convict), including verdicts about or by a flapping node made
    /// while its links were down, which reachability alone would excuse.
    pub false_positives: usize,
    /// Slow, oneway, flap: what the cluster concluded about each node the
    /// fault was applied to.
    pub victims: Vec<Victim>,
    /// Deleted keys or forgotten nodes that came back (must be 0).
    pub resurrections: usize,
    /// All invariant violations (false positives and resurrections included).
    pub violations: Vec<super::invariants::Violation>,
    /// Whether the scenario's end condition was reached.
    pub converged: bool,
    /// For a run that did not converge: the first disagreement between
    /// live nodes at its end (who does not see whom Live, or lacks whose
    /// updates), if any. `None` for a converged run (not checked).
    pub disagreement: Option<String>,
    /// Virtual rounds simulated in all.
    pub rounds: f64,
    /// The run's trace hash.
    pub trace_hash: u64,
}

/// What the rest of the cluster concluded about one node a scenario
/// singled out (slow, oneway, flap): a report then says not only whether
/// anything went wrong, but about whom, and whether everybody agreed.
#[derive(Clone, Debug, PartialEq)]
pub struct Victim {
    /// The node's index.
    pub node: usize,
    /// What was done to it: `slow`, `mute` (sends lost), `deaf` (receives
    /// lost) or `flapping` (links down and up).
    pub role: &'static str,
    /// Dead verdicts other nodes reached about it, from the start of the
    /// fault to the end of the run (one node convicting it twice counts
    /// twice).
    pub dead_verdicts: usize,
    /// Rounds from the start of the fault until every other node running
    /// then had declared it Dead at least once; `None` if some never did.
    pub dead_everywhere_rounds: Option<f64>,
    /// How many other running nodes did not see it Live when the fault
    /// ended (before links or speed were restored).
    pub sees_not_live_at_end: usize,
}

/// Parameters of a failure scenario.
#[derive(Clone, Debug)]
pub struct ScenarioConfig {
    /// Nodes.
    pub nodes: usize,
    /// Message loss (all scenarios; `loss` uses it throughout).
    pub loss: f64,
    /// Loss scenario: rounds to run. Churn: rounds of churn. Partition:
    /// rounds the partition lasts. Slow, oneway, flap: rounds the fault
    /// lasts (whole rounds).
    pub duration: f64,
    /// Slow scenario: how late the slow node handles everything
    /// ([`Sim::set_slow`]).
    pub delay: Duration,
    /// Crash scenario: what the victim went through first.
    pub before: Before,
    /// Run invariant checks over the whole cluster every round (slow at
    /// thousands of nodes; event checks always run).
    pub full_checks: bool,
    /// The simulation (seed, protocol config, faults other than loss).
    pub sim: SimConfig,
}

struct Run {
    sim: Sim,
    checker: super::invariants::Checker,
    interval: u64,
}

impl Run {
    fn start(cfg: &ScenarioConfig) -> Option<Self> {
        let mut sim_cfg = cfg.sim.clone();
        sim_cfg.faults.loss = cfg.loss;
        let (sim, joined) = converged_cluster(sim_cfg, cfg.nodes, 200.0, &mut |_, _| {});
        let interval =
            u64::try_from(sim.config().proto.gossip_interval.as_micros()).unwrap_or(u64::MAX);
        joined.then_some(Run {
            sim,
            checker: Default::default(),
            interval,
        })
    }

    /// Runs for `rounds`, checking invariants; `watch` sees every event.
    fn run(&mut self, rounds: f64, full: bool, watch: &mut dyn FnMut(&Ctx<'_>, &Event)) {
        let end = self.sim.now() + self.sim.config().proto.gossip_interval.mul_f64(rounds);
        self.run_until(end, full, watch, &mut |_| false);
    }

    /// Runs until `done` (checked every tenth of a round) or `end`.
    fn run_until(
        &mut self,
        end: Instant,
        full: bool,
        watch: &mut dyn FnMut(&Ctx<'_>, &Event),
        done: &mut dyn FnMut(&Sim) -> bool,
    ) -> bool {
        let tick = self.sim.config().proto.gossip_interval / 10;
        let mut ticks = 0u64;
        loop {
            if done(&self.sim) {
                return true;
            }
            if self.sim.now() >= end {
                return false;
            }
            let next = (self.sim.now() + tick).min(end);
            let (checker, interval) = (&mut self.checker, self.interval);
            self.sim.run_until(next, &mut |ctx: &Ctx<'_>, e: &Event| {
                checker.on_event(ctx, e, interval);
                watch(ctx, e);
            });
            ticks += 1;
            if full && ticks % 10 == 0 {
                self.checker.on_round(&self.sim);
            }
        }
    }

    /// Runs until the cluster converges ([`convergence::check`]), at most
    /// `max_rounds`; the rounds it took, if it did.
    ///
    /// [`convergence::check`]: super::invariants::convergence::check
    fn converge(
        &mut self,
        max_rounds: f64,
        full: bool,
        watch: &mut dyn FnMut(&Ctx<'_>, &Event),
    ) -> Option<f64> {
        let t0 = self.sim.now();
        let end = t0 + self.sim.config().proto.gossip_interval.mul_f64(max_rounds);
        let done = self.run_until(end, full, watch, &mut |sim| {
            super::invariants::convergence::check(sim).is_ok()
        });
        done.then(|| self.sim.rounds_since(t0))
    }

    /// `quiet` rounds after a fault: the rounds until the cluster converged
    /// within them, and whether it still is at their end (a fault's
    /// aftermath, such as a late conviction, must not undo convergence).
    fn settle(
        &mut self,
        quiet: f64,
        full: bool,
        watch: &mut dyn FnMut(&Ctx<'_>, &Event),
    ) -> (Option<f64>, bool) {
        let recovery = self.converge(quiet, full, watch);
        self.run(quiet - recovery.unwrap_or(quiet), full, watch);
        let still = super::invariants::convergence::check(&self.sim).is_ok();
        (recovery, recovery.is_some() && still)
    }

    fn report(self, scenario: Kind, nodes: usize, converged: bool) -> ScenarioReport {
        ScenarioReport {
            scenario,
            nodes,
            join_rounds: None,
            detection_rounds: None,
            first_suspicion_rounds: None,
            detection_bytes_per_node_per_round: None,
            recovery_rounds: None,
            heal_rounds: None,
            false_positives: self.checker.false_dead.count,
            victims: Vec::new(),
            resurrections: self.checker.count_of(super::invariants::resurrection::NAME),
            violations: self.checker.violations().to_vec(),
            converged,
            // The whole-cluster check is O(n²): only for a run that failed.
            disagreement: (!converged)
                .then(|| super::invariants::convergence::check(&self.sim).err())
                .flatten(),
            rounds: self.sim.rounds(),
            trace_hash: self.sim.trace_hash(),
        }
    }
}

/// The running nodes other than `victim` that do not see it Live (they
/// suspect it, convicted it or do not know it).
fn not_live(sim: &Sim, victim: usize) -> BTreeSet<usize> {
    let name = &sim.slot(victim).name;
    (0..sim.len())
        .filter(|&i| {
            i != victim
                && sim
                    .node(i)
                    .is_some_and(|x| x.member(name).is_none_or(|m| m.status != Status::Live))
        })
        .collect()
}

/// `count` distinct victims spread over the cluster from a seeded start,
/// never node 0 (the seed everyone joined through); the first is the one
/// the single-victim scenarios have always picked. Fewer if the cluster
/// has fewer than `count + 1` nodes.
fn pick_victims(seed: u64, n: usize, count: usize) -> Vec<usize> {
    let span = n.saturating_sub(1).max(1);
    let count = count.clamp(1, span);
    let base = super::mix(seed) as usize % span;
    (0..count)
        .map(|k| 1 + (base + k * span / count) % span)
        .collect()
}

/// What one victim's peers concluded, followed event by event.
struct Watched {
    node: usize,
    name: String,
    role: &'static str,
    /// Other nodes running when watching began.
    others: usize,
    /// Nodes that declared it Dead at least once.
    convicted_by: BTreeSet<usize>,
    dead_verdicts: usize,
    first_suspicion: Option<Instant>,
    dead_everywhere: Option<Instant>,
    not_live_at_end: usize,
}

/// Follows, from status events, what the cluster concludes about the
/// victims of a fault (and every Dead verdict at all), from `start`.
struct Verdicts {
    start: Instant,
    watched: Vec<Watched>,
    /// Dead verdicts about anyone.
    dead_total: usize,
}

impl Verdicts {
    fn new(sim: &Sim, victims: &[(usize, &'static str)]) -> Self {
        let watched = victims
            .iter()
            .map(|&(node, role)| Watched {
                node,
                name: sim.slot(node).name.clone(),
                role,
                others: (0..sim.len())
                    .filter(|&i| i != node && sim.is_up(i))
                    .count(),
                convicted_by: BTreeSet::new(),
                dead_verdicts: 0,
                first_suspicion: None,
                dead_everywhere: None,
                not_live_at_end: 0,
            })
            .collect();
        Verdicts {
            start: sim.now(),
            watched,
            dead_total: 0,
        }
    }

    fn on_event(&mut self, ctx: &Ctx<'_>, e: &Event) {
        let Event::MemberStatus { id, to, .. } = e else {
            return;
        };
        let dead = *to == Status::Dead;
        self.dead_total += usize::from(dead);
        if !dead && *to != Status::Suspect {
            return;
        }
        let Some(w) = self
            .watched
            .iter_mut()
            .find(|w| w.name == id.name && w.node != ctx.node)
        else {
            return;
        };
        w.first_suspicion.get_or_insert(ctx.now);
        if dead {
            w.dead_verdicts += 1;
            w.convicted_by.insert(ctx.node);
            if w.dead_everywhere.is_none() && w.convicted_by.len() >= w.others {
                w.dead_everywhere = Some(ctx.now);
            }
        }
    }

    /// Every victim has been declared Dead by every other node.
    fn dead_everywhere(&self) -> bool {
        self.watched.iter().all(|w| w.dead_everywhere.is_some())
    }

    /// Notes who does not see each victim Live as the fault ends.
    fn fault_ended(&mut self, sim: &Sim) {
        for w in &mut self.watched {
            w.not_live_at_end = not_live(sim, w.node).len();
        }
    }

    fn rounds(&self, sim: &Sim, at: Option<Instant>) -> Option<f64> {
        at.map(|t| sim.rounds_of(t.saturating_since(self.start)))
    }

    fn victims(&self, sim: &Sim) -> Vec<Victim> {
        self.watched
            .iter()
            .map(|w| Victim {
                node: w.node,
                role: w.role,
                dead_verdicts: w.dead_verdicts,
                dead_everywhere_rounds: self.rounds(sim, w.dead_everywhere),
                sees_not_live_at_end: w.not_live_at_end,
            })
            .collect()
    }
}

/// How a fault scenario ([`under_fault`]) ended.
struct Faulted {
    verdicts: Verdicts,
    /// Rounds from the end of the fault until the cluster converged.
    recovery: Option<f64>,
    converged: bool,
}

/// The slow, oneway and flap scenarios' common shape: `fault` is applied
/// at the start of each of `cfg.duration` rounds (given the round, from
/// 0), `restore` undoes it, then up to `quiet` rounds for the cluster to
/// converge (with `hold`, all `quiet` rounds are run and it must still be
/// converged at their end). What the cluster concludes about `victims` is
/// followed from the first round of the fault to the end.
fn under_fault(
    run: &mut Run,
    cfg: &ScenarioConfig,
    victims: &[(usize, &'static str)],
    fault: &dyn Fn(&mut Sim, usize),
    restore: &dyn Fn(&mut Sim),
    quiet: f64,
    hold: bool,
) -> Faulted {
    let full = cfg.full_checks;
    let verdicts = RefCell::new(Verdicts::new(&run.sim, victims));
    let mut watch = |ctx: &Ctx<'_>, e: &Event| verdicts.borrow_mut().on_event(ctx, e);
    for round in 0..cfg.duration as usize {
        fault(&mut run.sim, round);
        run.run(1.0, full, &mut watch);
    }
    verdicts.borrow_mut().fault_ended(&run.sim);
    restore(&mut run.sim);
    let (recovery, converged) = if hold {
        run.settle(quiet, full, &mut watch)
    } else {
        let r = run.converge(quiet, full, &mut watch);
        (r, r.is_some())
    };
    Faulted {
        verdicts: verdicts.into_inner(),
        recovery,
        converged,
    }
}

/// Bytes of failure-detection messages sent so far.
fn detection_bytes(sim: &Sim) -> u64 {
    let stats = sim.stats();
    MessageKind::ALL
        .iter()
        .filter(|k| k.is_detection())
        .map(|k| stats.by_kind[k.index()].bytes)
        .sum()
}

/// Runs one failure scenario. Returns `None` if the cluster did not even
/// form (membership did not converge within 200 rounds).
pub fn failure(kind: Kind, cfg: &ScenarioConfig) -> Option<ScenarioReport> {
    if kind == Kind::Join {
        return Some(join(cfg));
    }
    let mut run = Run::start(cfg)?;
    let n = cfg.nodes;
    let full = cfg.full_checks;
    let interval = run.sim.config().proto.gossip_interval;
    // Let failure detectors learn the heartbeat rhythm first.
    run.run(10.0, full, &mut |_, _| {});
    let victim = pick_victims(cfg.sim.seed, n, 1)[0];
    let victim_name = format!("n{victim}");
    match kind {
        Kind::Crash => {
            match cfg.before {
                Before::Nothing => {}
                Before::Partition => {
                    let side = |i: usize| u32::from((i < n / 2) == (victim < n / 2));
                    for i in 0..n {
                        run.sim.set_group(i, side(i));
                    }
                    run.run(40.0, full, &mut |_, _| {});
                    run.sim.heal();
                    run.run(10.0, full, &mut |_, _| {});
                }
                Before::Pause => {
                    run.sim.pause(victim);
                    run.run(30.0, full, &mut |_, _| {});
                    run.sim.resume(victim, &mut |_, _| {});
                    run.run(10.0, full, &mut |_, _| {});
                }
            }
            let t0 = run.sim.now();
            let before = detection_bytes(&run.sim);
            let verdicts = RefCell::new(Verdicts::new(&run.sim, &[(victim, "crashed")]));
            run.sim.crash(victim);
            let mut watch = |ctx: &Ctx<'_>, e: &Event| verdicts.borrow_mut().on_event(ctx, e);
            let end = t0 + interval * 60;
            let detected = run.run_until(end, full, &mut watch, &mut |_| {
                verdicts.borrow().dead_everywhere()
            });
            let detection = detected.then(|| run.sim.rounds_since(t0));
            let v = verdicts.into_inner();
            let first_suspicion = v.rounds(&run.sim, v.watched[0].first_suspicion);
            // A few more rounds: nobody else may be convicted meanwhile.
            run.run(5.0, full, &mut |_, _| {});
            let spent = detection_bytes(&run.sim) - before;
            let rounds = run.sim.rounds_since(t0);
            let detection_bytes = spent as f64 / ((n - 1) as f64 * rounds);
            let mut r = run.report(kind, n, detected);
            r.detection_rounds = detection;
            r.first_suspicion_rounds = first_suspicion;
            r.detection_bytes_per_node_per_round = Some(detection_bytes);
            Some(r)
        }
        Kind::Pause => {
            run.sim.pause(victim);
            run.run(30.0, full, &mut |_, _| {});
            let t0 = run.sim.now();
            let down = not_live(&run.sim, victim);
            run.sim.resume(victim, &mut |_, _| {});
            let down_cell = RefCell::new(down);
            let mut watch = |ctx: &Ctx<'_>, e: &Event| {
                if let Event::MemberStatus { id, to, .. } = e
                    && id.name == victim_name
                {
                    let mut d = down_cell.borrow_mut();
                    if *to == Status::Live {
                        d.remove(&ctx.node);
                    } else {
                        d.insert(ctx.node);
                    }
                }
            };
            let end = t0 + interval * 60;
            let recovered = run.run_until(end, full, &mut watch, &mut |_| {
                down_cell.borrow().is_empty()
            });
            let recovery = recovered.then(|| run.sim.rounds_since(t0));
            run.run(10.0, full, &mut |_, _| {});
            let mut r = run.report(kind, n, recovered);
            r.recovery_rounds = recovery;
            Some(r)
        }
        Kind::Partition => {
            for i in 0..n {
                run.sim.set_group(i, if i < n / 2 { 1 } else { 2 });
            }
            for round in 0..cfg.duration as usize {
                if round % 10 == 0 {
                    for (side, writer) in [
                        (0, 1 + round % (n / 2).max(1)),
                        (1, n / 2 + round % (n - n / 2)),
                    ] {
                        let key = format!("split-{side}-{round}");
                        run.sim.with_node(
                            writer.min(n - 1),
                            |x, now| x.set(now, &key, Bytes::from_static(b"v")),
                            &mut |_, _| {},
                        );
                    }
                }
                run.run(1.0, full, &mut |_, _| {});
            }
            run.sim.heal();
            let heal = run.converge(120.0, full, &mut |_, _| {});
            let mut r = run.report(kind, n, heal.is_some());
            r.heal_rounds = heal;
            Some(r)
        }
        Kind::Churn => Some(churn(run, cfg)),
        Kind::Join => unreachable!("handled before the cluster forms"),
        Kind::Loss => {
            run.run(cfg.duration, full, &mut |_, _| {});
            // Under loss a probe sometimes fails by chance, so a snapshot
            // may hold a suspicion on its way to refutation: the loss stops
            // and the cluster must then converge within a few rounds.
            let mut faults = run.sim.config().faults.clone();
            faults.loss = 0.0;
            run.sim.set_faults(faults);
            let heal = run.converge(10.0, full, &mut |_, _| {});
            let mut r = run.report(kind, n, heal.is_some());
            r.heal_rounds = heal;
            Some(r)
        }
        Kind::Slow => {
            let delay = cfg.delay;
            let f = under_fault(
                &mut run,
                cfg,
                &[(victim, "slow")],
                &|sim, _| sim.set_slow(victim, delay),
                &|sim| sim.set_slow(victim, Duration::ZERO),
                10.0,
                true,
            );
            // Nobody is unreachable: the checker counts every conviction,
            // the slow node's own included.
            Some(f.report(run, kind, n))
        }
        Kind::Oneway => {
            let pair = pick_victims(cfg.sim.seed, n, 2);
            let roles: Vec<(usize, &'static str)> =
                pair.iter().copied().zip(["mute", "deaf"]).collect();
            let links = |sim: &mut Sim, on: bool| {
                for &(v, role) in &roles {
                    sim.set_links(v, on || role == "deaf", on || role == "mute");
                }
            };
            let f = under_fault(
                &mut run,
                cfg,
                &roles,
                &|sim, _| links(sim, false),
                &|sim| links(sim, true),
                60.0,
                false,
            );
            // Verdicts about (or by) the mute and deaf nodes while cut off
            // are not false positives: the checker holds them unreachable.
            // Once links are back, any new conviction counts.
            Some(f.report(run, kind, n))
        }
        Kind::Flap => {
            let flapping = pick_victims(cfg.sim.seed, n, (n / 20).max(1));
            let roles: Vec<_> = flapping.iter().map(|&v| (v, "flapping")).collect();
            let before = run.checker.false_dead.count;
            let f = under_fault(
                &mut run,
                cfg,
                &roles,
                &|sim, round| {
                    // Down 2 rounds of every 5, the k-th node k rounds later.
                    for (k, &v) in flapping.iter().enumerate() {
                        let up = (round + k) % 5 >= 2;
                        sim.set_links(v, up, up);
                    }
                },
                &|sim| {
                    for &v in &flapping {
                        sim.set_links(v, true, true);
                    }
                },
                20.0,
                true,
            );
            // Nobody crashes or pauses: every Dead verdict from the first
            // outage on is false, also one made while the flapping node's
            // links were down (which reachability alone would excuse): an
            // outage of 2 rounds is shorter than any detector should need.
            let dead = f.verdicts.dead_total;
            let mut r = f.report(run, kind, n);
            r.false_positives = before + dead;
            Some(r)
        }
    }
}

impl Faulted {
    fn report(self, run: Run, kind: Kind, n: usize) -> ScenarioReport {
        let victims = self.verdicts.victims(&run.sim);
        let mut r = run.report(kind, n, self.converged);
        r.recovery_rounds = self.recovery;
        r.victims = victims;
        r
    }
}

/// `nodes` nodes start at once and join through node 0 under `loss`;
/// `join_rounds` is when the last of them knew every other one (`None` if
/// that took longer than `duration` rounds).
fn join(cfg: &ScenarioConfig) -> ScenarioReport {
    let mut sim_cfg = cfg.sim.clone();
    sim_cfg.faults.loss = cfg.loss;
    let (sim, joined) = converged_cluster(sim_cfg, cfg.nodes, cfg.duration, &mut |_, _| {});
    ScenarioReport {
        scenario: Kind::Join,
        nodes: cfg.nodes,
        join_rounds: joined.then(|| sim.rounds()),
        detection_rounds: None,
        first_suspicion_rounds: None,
        detection_bytes_per_node_per_round: None,
        recovery_rounds: None,
        heal_rounds: None,
        false_positives: 0,
        victims: Vec::new(),
        resurrections: 0,
        violations: Vec::new(),
        converged: joined,
        disagreement: (!joined)
            .then(|| super::invariants::convergence::check(&sim).err())
            .flatten(),
        rounds: sim.rounds(),
        trace_hash: sim.trace_hash(),
    }
}

fn churn(mut run: Run, cfg: &ScenarioConfig) -> ScenarioReport {
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};
    let n0 = cfg.nodes;
    let full = cfg.full_checks;
    let interval = run.sim.config().proto.gossip_interval;
    let mut rng = StdRng::seed_from_u64(super::mix(cfg.sim.seed ^ 0xc4u64));
    let mut leaving: Vec<(usize, Instant)> = Vec::new();
    let mut keys: Vec<(usize, String)> = Vec::new();
    for round in 0..cfg.duration as u64 {
        let len = run.sim.len();
        let pick = |rng: &mut StdRng| 1 + rng.random_range(0..len - 1);
        let i = pick(&mut rng);
        match rng.random_range(0..10u32) {
            // Crash a running node.
            0 if run.sim.is_up(i) => run.sim.crash(i),
            // Restart a crashed one: a new generation, empty state.
            1 if !run.sim.is_up(i) => {
                run.sim.restart(i);
                run.checker.versions.restarted(i);
                run.checker.resurrection.restarted(i);
            }
            // A new node joins through the seed.
            2 => {
                run.sim.add_node(&[0]);
            }
            // A graceful leave; the node stops a few rounds later.
            3 if run.sim.is_up(i) && !leaving.iter().any(|(l, _)| *l == i) => {
                run.sim.with_node(i, |x, now| x.leave(now), &mut |_, _| {});
                leaving.push((i, run.sim.now() + interval * 3));
            }
            // Writes and deletes.
            4..=6 if run.sim.is_up(i) => {
                let key = format!("k{round}");
                let ok = run.sim.with_node(
                    i,
                    |x, now| x.set(now, &key, Bytes::from_static(b"v")).is_ok(),
                    &mut |_, _| {},
                );
                if ok == Some(true) {
                    keys.push((i, key));
                }
            }
            7..=8 if !keys.is_empty() => {
                let (owner, key) = keys.swap_remove(rng.random_range(0..keys.len()));
                let deleted = run.sim.with_node(
                    owner,
                    |x, now| x.delete(now, &key).ok().flatten(),
                    &mut |_, _| {},
                );
                if let Some(Some(version)) = deleted {
                    let slot = run.sim.slot(owner);
                    let (name, generation) = (slot.name.clone(), slot.generation);
                    run.checker
                        .resurrection
                        .deleted(&name, generation, &key, version);
                }
            }
            _ => {}
        }
        let now = run.sim.now();
        leaving.retain(|&(l, at)| {
            if at <= now {
                run.sim.crash(l);
                false
            } else {
                true
            }
        });
        run.run(1.0, full, &mut |_, _| {});
    }
    for (l, _) in leaving {
        run.sim.crash(l);
    }
    let heal = run.converge(200.0, full, &mut |_, _| {});
    let quiet = heal.is_some();
    // Keep going past the grace period, so forgetting and tombstone GC
    // happen, and check nothing comes back.
    let grace = run.sim.rounds_of(run.sim.config().proto.grace_period);
    run.run(grace + 20.0, full, &mut |_, _| {});
    run.checker.on_round(&run.sim);
    let still = super::invariants::convergence::check(&run.sim).is_ok();
    let mut r = run.report(Kind::Churn, n0, quiet && still);
    r.heal_rounds = heal;
    r
}
