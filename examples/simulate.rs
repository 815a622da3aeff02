//! Runs the gossip protocol in the deterministic simulator.
//!
//! `cargo run --release --example simulate -- --nodes 1000 --fanout 3 --seeds 5 --json`
//!
//! Starts N nodes that join through one seed node, waits until membership
//! has converged everywhere, writes one key on one node and measures the
//! rounds (gossip intervals of virtual time) until every node holds it.
//!
//! With `--scenario crash|pause|partition|churn|loss|join` it runs a
//! failure scenario instead and reports detection, false positives, healing
//! and resurrections (`--seeds K` runs K seeds and reports each):
//! `cargo run --release --example simulate -- --scenario crash --nodes 100 --json`
//! `cargo run --release --example simulate -- --scenario crash --after partition --nodes 50`
//! `cargo run --release --example simulate -- --scenario partition --nodes 20 --duration 300 --grace-s 60`
//! `cargo run --release --example simulate -- --scenario join --nodes 100 --loss 0.3 --seeds 50`

use std::io::Write;
use std::time::Instant as WallClock;

use clap::Parser;
use gossip::mem::sim::scenario::{self, Before, Kind, RumorReport, ScenarioConfig};
use serde_json::json;

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
    /// Rounds over which traffic is averaged after membership converged.
    #[arg(long, default_value_t = 10.0)]
    window: f64,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
    /// Run a failure scenario: crash, pause, partition, churn, loss or join.
    #[arg(long)]
    scenario: Option<Kind>,
    /// Scenario length in rounds. loss: steady rounds (default 100); churn:
    /// rounds of churn (100); partition: rounds split (60); join: rounds
    /// allowed for everyone to know everyone (60).
    #[arg(long)]
    duration: Option<f64>,
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

fn main() {
    let args = Args::parse();
    if let Some(kind) = args.scenario {
        run_scenario(kind, &args);
        return;
    }
    let wall = WallClock::now();
    let mut reports: Vec<RumorReport> = Vec::new();
    for s in 0..args.seeds {
        let seed = args.seed + s;
        let mut config = scenario::config(seed, args.fanout, args.loss);
        if let Some(d) = args.digest_bytes {
            config.proto.digest_bytes = d;
        }
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
        let r = scenario::rumor(config, args.nodes, args.window, &mut progress);
        eprint!("\r{:80}\r", "");
        if !args.json {
            println!(
                "{label}: joined in {:.1} rounds, key reached all {} nodes in {:.2} rounds; {:.1} msgs, {:.0} bytes, {:.4} false suspicions, {:.4} false convictions per node per round; trace {:016x}",
                r.join_rounds,
                r.nodes,
                r.rumor_rounds,
                r.msgs_per_node_per_round,
                r.bytes_per_node_per_round,
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
    if args.json {
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
            "msgs_per_node_per_round": mean(|r| r.msgs_per_node_per_round),
            "bytes_per_node_per_round": mean(|r| r.bytes_per_node_per_round),
            "suspicions_per_node_per_round": mean(|r| r.suspicions_per_node_per_round),
            "convictions_per_node_per_round": mean(|r| r.convictions_per_node_per_round),
            "trace_hash": format!("{trace:016x}"),
            "wall_ms": wall_ms,
        });
        println!("{out}");
    } else {
        println!(
            "{} nodes, fanout {}, loss {}: rumor rounds mean {:.2}, max {:.2} over {} seed(s); {:.0} bytes per node per round; trace of all seeds {trace:016x}; {} ms",
            args.nodes,
            args.fanout,
            args.loss,
            rumor_mean,
            rumor_max,
            args.seeds,
            mean(|r| r.bytes_per_node_per_round),
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
        let mut sim = scenario::config(seed, args.fanout, 0.0);
        if let Some(d) = args.digest_bytes {
            sim.proto.digest_bytes = d;
        }
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
                "{} with {} nodes (seed {seed}): join {} rounds, detection {} rounds, recovery {} rounds, heal {} rounds, {} false positives, {} resurrections, converged: {}; {:.0} rounds simulated; trace {:016x}",
                kind.name(),
                r.nodes,
                show(r.join_rounds),
                show(r.detection_rounds),
                show(r.recovery_rounds),
                show(r.heal_rounds),
                r.false_positives,
                r.resurrections,
                r.converged,
                r.rounds,
                r.trace_hash
            );
        }
        if !r.converged {
            eprintln!(
                "seed {seed}: did not converge; replay with --scenario {} --nodes {} --loss {} --seed {seed} --seeds 1",
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
            "recovery_rounds": mean(|r| r.recovery_rounds),
            "heal_rounds": mean(|r| r.heal_rounds),
            "heal_rounds_max": max(|r| r.heal_rounds),
            "false_positives": reports.iter().map(|r| r.false_positives).sum::<usize>(),
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
            "{} over {} seeds: {converged} converged; join mean {:?} (max {:?}, {} within 15 rounds), detection mean {:?}, heal mean {:?}; trace of all seeds {trace:016x}; {wall_ms} ms",
            kind.name(),
            reports.len(),
            mean(|r| r.join_rounds),
            max(|r| r.join_rounds),
            within(|r| r.join_rounds, 15.0),
            mean(|r| r.detection_rounds),
            mean(|r| r.heal_rounds),
        );
    }
    if converged < reports.len() {
        std::process::exit(1);
    }
}
