//! Runs the gossip protocol in the deterministic simulator.
//!
//! `cargo run --release --example simulate -- --nodes 1000 --fanout 3 --seeds 5 --json`
//!
//! Starts N nodes that join through one seed node, waits until membership
//! has converged everywhere, writes one key on one node and measures the
//! rounds (gossip intervals of virtual time) and virtual milliseconds until
//! every node holds it, the payload copies each node received and the hop at
//! which the last node got it. `--json` reports `rumor_ms_mean`,
//! `rumor_ms_p99` (over the per-node delivery times of all seeds pooled: by
//! then 99 % of the nodes of a run held the key), `rumor_ms_max` (slowest
//! seed), `payload_copies_per_node` and `last_delivery_hops` (means over
//! seeds), and each seed's figures under `per_seed`.
//!
//! With `--workload writes` it puts the converged cluster under steady load
//! instead: `--rate R` unique keys per second of virtual time on random
//! nodes for `--duration S` seconds, then runs until every write reached
//! every node (`--drain-s`, default 60 s, bounds that; the report says if it
//! was hit), and reports traffic per write (`msgs_per_write`,
//! `bytes_per_write`: everything all nodes sent in the load window and the
//! drain, idle gossip included, divided by the writes) and write latency
//! (write → every node holds it) p50, p99 and max (with `--seeds K`, JSON
//! p50 and p99 are means of the seeds' own, max the slowest write of all):
//! `cargo run --release --example simulate -- --workload writes --rate 1000 --duration 10 --nodes 100 --json`
//!
//! `--warmup-writes K` makes K writes first, so the measured one runs on a
//! tree pruned by earlier news (default 0: the first news after the join).
//!
//! The JSON also reports `idle_bytes_per_node_per_round` and
//! `idle_msgs_per_node_per_round` (ten rounds after the traffic window,
//! converged and nobody writing) and `idle_bytes_by_kind`.
//!
//! Every mode takes `--heartbeat-window on|off` (the rotating heartbeat
//! window in digests, off by default: anti-entropy is range
//! reconciliation alone; on adds the window) and `--eager on|off` (eager push, on by default; off leaves
//! the periodic exchange alone: `--nodes 1000 --seeds 5 --eager off`),
//! `--latency-ms MIN,MAX` (one-way link latency, uniform;
//! default `1,5`) and `--interval-ms MS` (the gossip interval; default 1000;
//! other protocol timeouts stay as configured, in seconds):
//! `cargo run --release --example simulate -- --nodes 1000 --seeds 5 --latency-ms 10,50 --interval-ms 200 --json`
//!
//! With `--scenario crash|pause|partition|churn|loss|join|slow|oneway|flap`
//! it runs a failure scenario instead and reports detection, false
//! positives, healing and resurrections (`--seeds K` runs K seeds and
//! reports each). The crash scenario's JSON has `detection_rounds` (until
//! every live node declared the victim Dead) and `first_suspicion_rounds`
//! (until the first one suspected it). Three scenarios fault some nodes for
//! `--duration` rounds (default 100) and report, under `victims`, what the
//! cluster concluded about each (`dead_verdicts`, `dead_everywhere_rounds`,
//! `sees_not_live_at_end`), and `recovery_rounds` (from the end of the
//! fault until everyone sees everyone Live): `slow` (one node handles
//! every message and timer `--delay-ms D` late, default 500, as under CPU
//! starvation; then 10 rounds on time), `oneway` (one node's sends are
//! lost, another's receives; then 60 rounds at most to recover) and `flap`
//! (the links of n/20 nodes go down for 2 rounds and up for 3; then 20
//! quiet rounds; every Dead verdict counts as a false positive):
//! `cargo run --release --example simulate -- --scenario crash --nodes 100 --json`
//! `cargo run --release --example simulate -- --scenario slow --delay-ms 500 --nodes 100 --seeds 3 --json`
//! `cargo run --release --example simulate -- --scenario crash --after partition --nodes 50`
//! `cargo run --release --example simulate -- --scenario partition --nodes 20 --duration 300 --grace-s 60`
//! `cargo run --release --example simulate -- --scenario join --nodes 100 --loss 0.3 --seeds 50`

use std::io::Write;
use std::time::{Duration, Instant as WallClock};

use clap::{Parser, ValueEnum};
use gossip::core::proto::MessageKind;
use gossip::mem::sim::SimConfig;
use gossip::mem::sim::scenario::{
    self, Before, Kind, LoadConfig, LoadReport, RumorReport, ScenarioConfig,
};
use serde_json::json;

/// What the cluster does once it has converged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// One key written on one node; how fast and at what cost it spreads.
    Rumor,
    /// `--rate` keys per second for `--duration` seconds; traffic per write
    /// and write latency.
    Writes,
}

/// A one-way latency range, `MIN,MAX` in milliseconds (fractions allowed).
#[derive(Clone, Copy, Debug, PartialEq)]
struct LatencyMs(Duration, Duration);

impl std::str::FromStr for LatencyMs {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (lo, hi) = s
            .split_once(',')
            .ok_or_else(|| format!("expected MIN,MAX in milliseconds, got {s:?}"))?;
        let ms = |v: &str| -> Result<Duration, String> {
            let x: f64 = v
                .trim()
                .parse()
                .map_err(|e| format!("{v:?} is not a number of milliseconds: {e}"))?;
            Duration::try_from_secs_f64(x / 1e3)
                .map_err(|_| format!("{v:?} is not a latency (finite, not negative)"))
        };
        let (lo, hi) = (ms(lo)?, ms(hi)?);
        if lo > hi {
            return Err(format!("MIN must not exceed MAX, got {s:?}"));
        }
        Ok(LatencyMs(lo, hi))
    }
}

#[derive(Parser, Debug)]
#[command(about = "Simulate a gossip cluster on virtual time")]
struct Args {
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Peers contacted per round.
    #[arg(long, default_value_t = 3)]
    fanout: usize,
    /// Probability that a message is lost.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Master seed (the first of `--seeds` consecutive seeds).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of seeds to run (results are averaged).
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// One-way link latency in milliseconds, drawn uniformly from MIN,MAX
    /// for every message (so messages reorder). Every mode and scenario.
    #[arg(long, default_value = "1,5", value_name = "MIN,MAX")]
    latency_ms: LatencyMs,
    /// Gossip interval in milliseconds (`Config::gossip_interval`; rounds
    /// are this long). Every mode and scenario. Other protocol timeouts
    /// (suspicion, grace) keep their defaults in seconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    interval_ms: u64,
    /// Writes made (a fifth of a round apart, on nodes spread over the
    /// cluster) before the measured one, so that eager push's tree is
    /// pruned by earlier news (a warm tree). Rumor workload only.
    #[arg(long, default_value_t = 0)]
    warmup_writes: usize,
    /// Eager push (`Config::eager`): `on` (the default) or `off`, which
    /// leaves the periodic exchange alone. Every mode and scenario.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    eager: OnOff,
    /// Failure detection by probes (`Config::probe`): `on` (the default)
    /// or `off`, which leaves the heartbeat (phi) detector alone. Every
    /// mode and scenario.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    probe: OnOff,
    /// The heartbeat window in digests (`Config::heartbeat_window`): `off`
    /// (the default: anti-entropy is range reconciliation alone) or `on`,
    /// which adds a window rotating through the heartbeats to every digest.
    /// Every mode and scenario.
    #[arg(long, value_enum, default_value_t = OnOff::Off)]
    heartbeat_window: OnOff,
    /// What the converged cluster does: `rumor` (one write) or `writes`
    /// (steady load: `--rate`, `--duration`). Ignored with `--scenario`.
    #[arg(long, value_enum, default_value_t = Workload::Rumor)]
    workload: Workload,
    /// `--workload writes`: writes per second of virtual time.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// `--workload writes`: how long after the last write the run may go on
    /// for every write to reach every node, in seconds.
    #[arg(long, default_value_t = 60.0)]
    drain_s: f64,
    /// Rounds over which traffic is averaged after membership converged.
    #[arg(long, default_value_t = 10.0)]
    window: f64,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
    /// Run a failure scenario: crash, pause, partition, churn, loss, join,
    /// slow, oneway or flap.
    #[arg(long)]
    scenario: Option<Kind>,
    /// Scenario length in rounds. loss: steady rounds (default 100); churn:
    /// rounds of churn (100); partition: rounds split (60); join: rounds
    /// allowed for everyone to know everyone (60); slow, oneway, flap:
    /// rounds the fault lasts (100). With `--workload writes`: seconds of
    /// load (default 10).
    #[arg(long)]
    duration: Option<f64>,
    /// Slow scenario: how late the slow node handles every message and
    /// timer, in milliseconds.
    #[arg(long, default_value_t = 500)]
    delay_ms: u64,
    /// Crash scenario: what the victim goes through first (partition: its
    /// half is cut off for 40 rounds, healed 10 rounds before the crash;
    /// pause: it stops for 30 rounds, resumed 10 rounds before).
    #[arg(long, default_value = "nothing")]
    after: Before,
    /// Grace period in seconds (how long Dead nodes are kept before they
    /// are forgotten; default: the protocol's, or 60 s for churn).
    #[arg(long)]
    grace_s: Option<f64>,
    /// Digest budget in bytes (default: the protocol default).
    #[arg(long)]
    digest_bytes: Option<usize>,
    /// Eager push: how long an announced update may take to arrive before
    /// it is grafted (`Config::graft_timeout`; default: the protocol's).
    #[arg(long)]
    graft_timeout_ms: Option<u64>,
    /// Eager push: the batching window of pushes (`Config::eager_batch`).
    #[arg(long)]
    eager_batch_ms: Option<u64>,
    /// Eager push: the batching window of announcements
    /// (`Config::lazy_batch`).
    #[arg(long)]
    lazy_batch_ms: Option<u64>,
    /// Check whole-cluster invariants every round (slow above ~1,000 nodes).
    #[arg(long)]
    full_checks: bool,
}

/// jemalloc, not the system allocator: with 10⁸ long-lived members beside
/// millions of short-lived messages, glibc's malloc spent 8-16 % of a
/// 10,000-node run searching its free lists (BENCHMARKS.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The simulation config of one seed: fanout, loss, link latency, gossip
/// interval and digest budget from the command line, defaults otherwise.
fn sim_config(args: &Args, seed: u64, loss: f64) -> SimConfig {
    let mut config = scenario::config(seed, args.fanout, loss);
    if let Some(d) = args.digest_bytes {
        config.proto.digest_bytes = d;
    }
    config.faults.latency = (args.latency_ms.0, args.latency_ms.1);
    config.proto.gossip_interval = Duration::from_millis(args.interval_ms);
    config.proto.eager = args.eager == OnOff::On;
    config.proto.probe = args.probe == OnOff::On;
    config.proto.heartbeat_window = args.heartbeat_window == OnOff::On;
    let ms = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_millis);
    config.proto.graft_timeout = ms(args.graft_timeout_ms, config.proto.graft_timeout);
    config.proto.eager_batch = ms(args.eager_batch_ms, config.proto.eager_batch);
    config.proto.lazy_batch = ms(args.lazy_batch_ms, config.proto.lazy_batch);
    config
}

/// A switch on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

fn main() {
    let args = Args::parse();
    if let Some(kind) = args.scenario {
        run_scenario(kind, &args);
        return;
    }
    if args.workload == Workload::Writes {
        run_writes(&args);
        return;
    }
    let wall = WallClock::now();
    let mut reports: Vec<RumorReport> = Vec::new();
    for s in 0..args.seeds {
        let seed = args.seed + s;
        let config = sim_config(&args, seed, args.loss);
        let label = format!("seed {seed} ({}/{})", s + 1, args.seeds);
        let mut progress = |round: f64, full: usize| {
            if !args.json || args.nodes >= 2000 {
                eprint!(
                    "\r{label}: joining, round {round:.0}, {full}/{} nodes know everyone   ",
                    args.nodes
                );
                let _ = std::io::stderr().flush();
            }
        };
        let r = scenario::rumor_after(
            config,
            args.nodes,
            args.window,
            args.warmup_writes,
            &mut progress,
        );
        eprint!("\r{:80}\r", "");
        if !args.json {
            println!(
                "{label}: joined in {:.1} rounds, key reached all {} nodes in {:.2} rounds ({:.1} ms, last at hop {}, {:.2} payload copies per node); {:.1} msgs, {:.0} bytes ({:.0} idle), {:.4} false suspicions, {:.4} false convictions per node per round; trace {:016x}",
                r.join_rounds,
                r.nodes,
                r.rumor_rounds,
                r.rumor_ms,
                r.last_delivery_hops
                    .map_or("-".to_owned(), |h| h.to_string()),
                r.payload_copies_per_node,
                r.msgs_per_node_per_round,
                r.bytes_per_node_per_round,
                r.idle_bytes_per_node_per_round,
                r.suspicions_per_node_per_round,
                r.convictions_per_node_per_round,
                r.trace_hash
            );
        }
        if !r.joined || !r.spread {
            eprintln!(
                "{label}: did not converge (joined: {}, spread: {}); replay with --seed {seed} --seeds 1",
                r.joined, r.spread
            );
        }
        reports.push(r);
    }
    let n = reports.len() as f64;
    let mean = |f: fn(&RumorReport) -> f64| reports.iter().map(f).sum::<f64>() / n;
    let rumor_mean = mean(|r| r.rumor_rounds);
    let rumor_max = reports.iter().map(|r| r.rumor_rounds).fold(0.0, f64::max);
    // One hash over every seed's run (what `--json` reports as
    // `trace_hash`); each seed's own is on its line above.
    let trace = reports
        .iter()
        .fold(0u64, |h, r| gossip::mem::sim::mix(h ^ r.trace_hash));
    let converged = reports.iter().all(|r| r.joined && r.spread);
    let wall_ms = wall.elapsed().as_millis() as u64;
    let rumor_ms_max = reports.iter().map(|r| r.rumor_ms).fold(0.0, f64::max);
    // Pooled: every node's delivery time of every seed, one percentile.
    let mut pooled: Vec<f64> = reports
        .iter()
        .flat_map(|r| r.delivery_ms.iter().copied())
        .collect();
    pooled.sort_by(f64::total_cmp);
    let hops: Vec<f64> = reports
        .iter()
        .filter_map(|r| r.last_delivery_hops.map(f64::from))
        .collect();
    let hops_mean = (!hops.is_empty()).then(|| hops.iter().sum::<f64>() / hops.len() as f64);
    let hops_max = reports.iter().filter_map(|r| r.last_delivery_hops).max();
    if args.json {
        let per_seed: Vec<_> = reports
            .iter()
            .map(|r| {
                json!({
                    "seed": r.seed,
                    "rumor_rounds": r.rumor_rounds,
                    "rumor_ms": r.rumor_ms,
                    "rumor_ms_p99": scenario::percentile(&r.delivery_ms, 0.99),
                    "payload_copies_per_node": r.payload_copies_per_node,
                    "last_delivery_hops": r.last_delivery_hops,
                    "trace_hash": format!("{:016x}", r.trace_hash),
                })
            })
            .collect();
        let out = json!({
            "nodes": args.nodes,
            "fanout": args.fanout,
            "loss": args.loss,
            "seeds": args.seeds,
            "seed": args.seed,
            "converged": converged,
            "join_rounds": mean(|r| r.join_rounds),
            "rumor_rounds_mean": rumor_mean,
            "rumor_rounds_max": rumor_max,
            "rumor_ms_mean": mean(|r| r.rumor_ms),
            "rumor_ms_p99": scenario::percentile(&pooled, 0.99),
            "rumor_ms_max": rumor_ms_max,
            "payload_copies_per_node": mean(|r| r.payload_copies_per_node),
            "last_delivery_hops": hops_mean,
            "last_delivery_hops_max": hops_max,
            "latency_ms": [ms(args.latency_ms.0), ms(args.latency_ms.1)],
            "interval_ms": args.interval_ms,
            "eager": args.eager == OnOff::On,
            "probe": args.probe == OnOff::On,
            "heartbeat_window": args.heartbeat_window == OnOff::On,
            "warmup_writes": args.warmup_writes,
            "per_seed": per_seed,
            "msgs_per_node_per_round": mean(|r| r.msgs_per_node_per_round),
            "bytes_per_node_per_round": mean(|r| r.bytes_per_node_per_round),
            "idle_bytes_per_node_per_round": mean(|r| r.idle_bytes_per_node_per_round),
            "idle_msgs_per_node_per_round": mean(|r| r.idle_msgs_per_node_per_round),
            "idle_bytes_by_kind": idle_by_kind(&reports),
            "suspicions_per_node_per_round": mean(|r| r.suspicions_per_node_per_round),
            "convictions_per_node_per_round": mean(|r| r.convictions_per_node_per_round),
            "trace_hash": format!("{trace:016x}"),
            "wall_ms": wall_ms,
        });
        println!("{out}");
    } else {
        println!(
            "{} nodes, fanout {}, loss {}: rumor rounds mean {:.2}, max {:.2} over {} seed(s); rumor ms mean {:.1}, p99 of nodes {:.1}, max {:.1}; {:.2} payload copies per node; last delivery at hop {:.1} (mean); {:.0} bytes per node per round, {:.0} idle; trace of all seeds {trace:016x}; {} ms",
            args.nodes,
            args.fanout,
            args.loss,
            rumor_mean,
            rumor_max,
            args.seeds,
            mean(|r| r.rumor_ms),
            scenario::percentile(&pooled, 0.99).unwrap_or(f64::NAN),
            rumor_ms_max,
            mean(|r| r.payload_copies_per_node),
            hops_mean.unwrap_or(f64::NAN),
            mean(|r| r.bytes_per_node_per_round),
            mean(|r| r.idle_bytes_per_node_per_round),
            wall_ms
        );
    }
    if !converged {
        std::process::exit(1);
    }
}

fn run_scenario(kind: Kind, args: &Args) {
    let wall = WallClock::now();
    let duration = args.duration.unwrap_or(match kind {
        Kind::Partition => 60.0,
        Kind::Join => 60.0,
        _ => 100.0,
    });
    let mut reports = Vec::new();
    for seed in args.seed..args.seed + args.seeds {
        let mut sim = sim_config(args, seed, 0.0);
        if kind == Kind::Churn {
            // Short enough that forgetting and tombstone GC happen during the run.
            sim.proto.grace_period = std::time::Duration::from_secs(60);
        }
        if let Some(g) = args.grace_s {
            sim.proto.grace_period = std::time::Duration::from_secs_f64(g.max(0.0));
        }
        let cfg = ScenarioConfig {
            nodes: args.nodes,
            loss: args.loss,
            duration,
            before: args.after,
            delay: Duration::from_millis(args.delay_ms),
            full_checks: args.full_checks,
            sim,
        };
        let Some(r) = scenario::failure(kind, &cfg) else {
            eprintln!(
                "the cluster did not form; replay with --scenario {} --nodes {} --seed {seed}",
                kind.name(),
                args.nodes,
            );
            std::process::exit(1);
        };
        for v in &r.violations {
            eprintln!(
                "seed {seed}: violation at round {:.1}: {}: {}",
                v.round, v.property, v.what
            );
        }
        let show = |v: Option<f64>| v.map_or("-".to_owned(), |x| format!("{x:.2}"));
        if !args.json {
            println!(
                "{} with {} nodes (seed {seed}): join {} rounds, first suspicion {} rounds, detection {} rounds, recovery {} rounds, heal {} rounds, {} false positives, {} resurrections, converged: {}; {:.0} rounds simulated; trace {:016x}",
                kind.name(),
                r.nodes,
                show(r.join_rounds),
                show(r.first_suspicion_rounds),
                show(r.detection_rounds),
                show(r.recovery_rounds),
                show(r.heal_rounds),
                r.false_positives,
                r.resurrections,
                r.converged,
                r.rounds,
                r.trace_hash
            );
            for v in &r.victims {
                println!(
                    "  n{} ({}): {} Dead verdicts about it, Dead everywhere after {} rounds, {} others did not see it Live when the fault ended",
                    v.node,
                    v.role,
                    v.dead_verdicts,
                    show(v.dead_everywhere_rounds),
                    v.sees_not_live_at_end
                );
            }
        }
        if !r.converged {
            eprintln!(
                "seed {seed}: did not converge ({}); replay with --scenario {} --nodes {} --loss {} --seed {seed} --seeds 1",
                r.disagreement
                    .as_deref()
                    .unwrap_or("the scenario's own end condition"),
                kind.name(),
                args.nodes,
                args.loss,
            );
        }
        reports.push(r);
    }
    let wall_ms = wall.elapsed().as_millis() as u64;
    let trace = reports
        .iter()
        .fold(0u64, |h, r| gossip::mem::sim::mix(h ^ r.trace_hash));
    let converged = reports.iter().filter(|r| r.converged).count();
    let per_seed = |f: fn(&scenario::ScenarioReport) -> Option<f64>| -> Vec<Option<f64>> {
        reports.iter().map(f).collect()
    };
    let mean = |f: fn(&scenario::ScenarioReport) -> Option<f64>| -> Option<f64> {
        let v: Vec<f64> = reports.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let max = |f: fn(&scenario::ScenarioReport) -> Option<f64>| -> Option<f64> {
        reports.iter().filter_map(f).reduce(f64::max)
    };
    let within = |f: fn(&scenario::ScenarioReport) -> Option<f64>, limit: f64| {
        reports
            .iter()
            .filter(|r| f(r).is_some_and(|x| x <= limit))
            .count()
    };
    let victims: Vec<_> = reports
        .iter()
        .zip(args.seed..)
        .flat_map(|(r, seed)| {
            r.victims.iter().map(move |v| {
                json!({
                    "seed": seed,
                    "node": v.node,
                    "role": v.role,
                    "dead_verdicts": v.dead_verdicts,
                    "dead_everywhere_rounds": v.dead_everywhere_rounds,
                    "sees_not_live_at_end": v.sees_not_live_at_end,
                })
            })
        })
        .collect();
    if args.json {
        let out = json!({
            "scenario": kind.name(),
            "after": format!("{:?}", args.after).to_lowercase(),
            "nodes": args.nodes,
            "fanout": args.fanout,
            "loss": args.loss,
            "seed": args.seed,
            "seeds": args.seeds,
            "duration": duration,
            "grace_s": args.grace_s,
            "join_rounds": mean(|r| r.join_rounds),
            "join_rounds_max": max(|r| r.join_rounds),
            "join_rounds_per_seed": per_seed(|r| r.join_rounds),
            "joined_within_15_rounds": within(|r| r.join_rounds, 15.0),
            "detection_rounds": mean(|r| r.detection_rounds),
            "detection_rounds_max": max(|r| r.detection_rounds),
            "first_suspicion_rounds": mean(|r| r.first_suspicion_rounds),
            "first_suspicion_rounds_max": max(|r| r.first_suspicion_rounds),
            "detection_bytes_per_node_per_round": mean(|r| r.detection_bytes_per_node_per_round),
            "recovery_rounds": mean(|r| r.recovery_rounds),
            "recovery_rounds_max": max(|r| r.recovery_rounds),
            "heal_rounds": mean(|r| r.heal_rounds),
            "heal_rounds_max": max(|r| r.heal_rounds),
            "false_positives": reports.iter().map(|r| r.false_positives).sum::<usize>(),
            "false_positives_per_seed": reports.iter().map(|r| r.false_positives).collect::<Vec<_>>(),
            "victims": victims,
            "delay_ms": (kind == Kind::Slow).then_some(args.delay_ms),
            "resurrections": reports.iter().map(|r| r.resurrections).sum::<usize>(),
            "violations": reports.iter().map(|r| r.violations.len()).sum::<usize>(),
            "converged": converged == reports.len(),
            "converged_seeds": converged,
            "rounds": mean(|r| Some(r.rounds)),
            "trace_hash": format!("{trace:016x}"),
            "wall_ms": wall_ms,
        });
        println!("{out}");
    } else if reports.len() > 1 {
        println!(
            "{} over {} seeds: {converged} converged; join mean {:?} (max {:?}, {} within 15 rounds), first suspicion mean {:?}, detection mean {:?}, recovery mean {:?}, heal mean {:?}; trace of all seeds {trace:016x}; {wall_ms} ms",
            kind.name(),
            reports.len(),
            mean(|r| r.join_rounds),
            max(|r| r.join_rounds),
            within(|r| r.join_rounds, 15.0),
            mean(|r| r.first_suspicion_rounds),
            mean(|r| r.detection_rounds),
            mean(|r| r.recovery_rounds),
            mean(|r| r.heal_rounds),
        );
    }
    if converged < reports.len() {
        std::process::exit(1);
    }
}

/// Milliseconds in `d`, for reports.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `--workload writes`: steady load on a converged cluster, per seed.
fn run_writes(args: &Args) {
    let wall = WallClock::now();
    let load = LoadConfig {
        rate: args.rate,
        duration: Duration::try_from_secs_f64(args.duration.unwrap_or(10.0)).unwrap_or_else(|_| {
            eprintln!("--duration must be a finite, non-negative number of seconds");
            std::process::exit(2);
        }),
        drain_deadline: Duration::try_from_secs_f64(args.drain_s).unwrap_or_else(|_| {
            eprintln!("--drain-s must be a finite, non-negative number of seconds");
            std::process::exit(2);
        }),
        ..LoadConfig::default()
    };
    if !(args.rate.is_finite() && args.rate > 0.0) {
        eprintln!("--rate must be a positive number of writes per second");
        std::process::exit(2);
    }
    let mut reports: Vec<LoadReport> = Vec::new();
    for seed in args.seed..args.seed + args.seeds {
        let config = sim_config(args, seed, args.loss);
        let r = scenario::writes(config, args.nodes, &load, &mut |_, _| {});
        if !args.json {
            println!(
                "seed {seed}: {} writes ({} refused), {} reached all {} nodes in {:.0} ms; {:.1} msgs, {:.0} bytes per write; latency ms p50 {:.1}, p99 {:.1}, max {:.1}; trace {:016x}",
                r.writes,
                r.refused,
                r.writes_delivered_to_all,
                r.nodes,
                r.window_ms,
                r.msgs_per_write,
                r.bytes_per_write,
                r.latency_ms_p50,
                r.latency_ms_p99,
                r.latency_ms_max,
                r.trace_hash
            );
        }
        if !r.joined || !r.drained {
            eprintln!(
                "seed {seed}: did not converge (joined: {}, every write everywhere: {}); replay with --workload writes --rate {} --duration {} --nodes {} --seed {seed} --seeds 1",
                r.joined,
                r.drained,
                args.rate,
                load.duration.as_secs_f64(),
                args.nodes,
            );
        }
        reports.push(r);
    }
    let n = reports.len() as f64;
    let mean = |f: fn(&LoadReport) -> f64| reports.iter().map(f).sum::<f64>() / n;
    let trace = reports
        .iter()
        .fold(0u64, |h, r| gossip::mem::sim::mix(h ^ r.trace_hash));
    let converged = reports.iter().all(|r| r.joined && r.drained);
    let wall_ms = wall.elapsed().as_millis() as u64;
    let latency_max = reports.iter().map(|r| r.latency_ms_max).fold(0.0, f64::max);
    if args.json {
        let per_seed: Vec<_> = reports
            .iter()
            .map(|r| {
                json!({
                    "seed": r.seed,
                    "writes": r.writes,
                    "writes_delivered_to_all": r.writes_delivered_to_all,
                    "msgs_per_write": r.msgs_per_write,
                    "bytes_per_write": r.bytes_per_write,
                    "latency_ms_p50": r.latency_ms_p50,
                    "latency_ms_p99": r.latency_ms_p99,
                    "latency_ms_max": r.latency_ms_max,
                    "trace_hash": format!("{:016x}", r.trace_hash),
                })
            })
            .collect();
        let out = json!({
            "workload": "writes",
            "nodes": args.nodes,
            "fanout": args.fanout,
            "loss": args.loss,
            "seeds": args.seeds,
            "seed": args.seed,
            "rate": args.rate,
            "duration_s": load.duration.as_secs_f64(),
            "latency_ms": [ms(args.latency_ms.0), ms(args.latency_ms.1)],
            "interval_ms": args.interval_ms,
            "eager": args.eager == OnOff::On,
            "probe": args.probe == OnOff::On,
            "heartbeat_window": args.heartbeat_window == OnOff::On,
            "converged": converged,
            "join_rounds": mean(|r| r.join_rounds),
            "writes": reports.iter().map(|r| r.writes).sum::<usize>(),
            "writes_refused": reports.iter().map(|r| r.refused).sum::<usize>(),
            "writes_delivered_to_all": reports.iter().map(|r| r.writes_delivered_to_all).sum::<usize>(),
            "window_ms": mean(|r| r.window_ms),
            "msgs_per_write": mean(|r| r.msgs_per_write),
            "bytes_per_write": mean(|r| r.bytes_per_write),
            "msgs_per_write_by_kind": MessageKind::ALL
                .iter()
                .map(|k| {
                    let per = reports.iter().map(|r| r.msgs_per_write_by_kind[k.index()]);
                    (k.name().to_string(), json!(per.sum::<f64>() / n))
                })
                .collect::<serde_json::Map<_, _>>(),
            "latency_ms_p50": mean(|r| r.latency_ms_p50),
            "latency_ms_p99": mean(|r| r.latency_ms_p99),
            "latency_ms_max": latency_max,
            "per_seed": per_seed,
            "trace_hash": format!("{trace:016x}"),
            "wall_ms": wall_ms,
        });
        println!("{out}");
    } else if reports.len() > 1 {
        println!(
            "{} nodes, {} writes/s for {} s over {} seeds: {:.1} msgs, {:.0} bytes per write; latency ms p50 {:.1}, p99 {:.1} (means of seeds), max {:.1}; trace of all seeds {trace:016x}; {wall_ms} ms",
            args.nodes,
            args.rate,
            load.duration.as_secs_f64(),
            reports.len(),
            mean(|r| r.msgs_per_write),
            mean(|r| r.bytes_per_write),
            mean(|r| r.latency_ms_p50),
            mean(|r| r.latency_ms_p99),
            latency_max,
        );
    }
    if !converged {
        std::process::exit(1);
    }
}

/// Idle bytes per node per round by message kind, the mean over seeds (a
/// kind a seed did not send counts as 0 there).
fn idle_by_kind(reports: &[scenario::RumorReport]) -> serde_json::Map<String, serde_json::Value> {
    let mut sums: std::collections::BTreeMap<&str, f64> = std::collections::BTreeMap::new();
    for r in reports {
        for &(kind, bytes) in &r.idle_bytes_by_kind {
            *sums.entry(kind).or_default() += bytes;
        }
    }
    let n = reports.len().max(1) as f64;
    sums.into_iter()
        .map(|(k, v)| (k.to_owned(), serde_json::json!(v / n)))
        .collect()
}
