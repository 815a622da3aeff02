
use std::cell::Cell;
use std::time::Duration;

use bytes::Bytes;
use gossip_core::proto::{Config, Event, Instant, Status};

use crate::sim::{Ctx, Faults, Sim, SimConfig};

/// Builds a cluster of `nodes` nodes that all start at time zero and join
/// through node 0, and runs until every node knows every other one (or
/// `max_rounds` pass). Returns the simulation and whether membership converged.
pub fn converged_cluster(config: SimConfig, nodes: usize, max_rounds: f64, progress: &mut dyn FnMut(f64, usize)) -> (Sim, bool) {
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
    /// The run's trace hash.
    pub trace_hash: u64,
}

/// The spreading experiment: converge a cluster, write one key on one node
/// and measure the rounds until every node holds it, and the traffic per
/// node per round over `window` rounds after convergence (the write included).
pub fn rumor(config: SimConfig, nodes: usize, window: f64, progress: &mut dyn FnMut(f64, usize)) -> RumorReport {
    let interval = config.proto.gossip_interval;
    let seed = config.seed;
    let (mut sim, joined) = converged_cluster(config, nodes, 100.0 + 10.0 * (nodes as f64).log2(), progress);
    let join_rounds = sim.rounds();
    let before = sim.stats();
    let start = sim.now();
    let writer = nodes / 2;
    let mut holders = 1usize;
    let done_at = Cell::new(None);
    let mut count = |ctx: &Ctx<'_>, e: &Event| {
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
    sim.with_node(writer, |n, now| n.set(now, "rumor", Bytes::from_static(b"hello")), &mut count)
        .expect("the writer is up")
        .expect("a small key is accepted");
    let deadline = start + interval.mul_f64(window.max(60.0));
    while done_at.get().is_none() && sim.now() <= deadline && sim.step(&mut count) {}
    let rumor_rounds = done_at.get().map_or(f64::INFINITY, |t| t.saturating_since(start).as_secs_f64() / interval.as_secs_f64());
    let measure_until = start + interval.mul_f64(window.max(rumor_rounds.ceil()));
    sim.run_until(measure_until, &mut |_, _| {});
    let after = sim.stats();
    let rounds = sim.now().saturating_since(start).as_secs_f64() / interval.as_secs_f64();
    let per = |v: u64| v as f64 / nodes as f64 / rounds;
    RumorReport {
        nodes,
        seed,
        join_rounds,
        joined,
        rumor_rounds,
        spread: done_at.get().is_some(),
        msgs_per_node_per_round: per(after.messages - before.messages),
        bytes_per_node_per_round: per(after.bytes - before.bytes),
        trace_hash: sim.trace_hash(),
    }
}

/// A simulation config with `fanout` and `loss` on top of the defaults.
pub fn config(seed: u64, fanout: usize, loss: f64) -> SimConfig {
    SimConfig {
        seed,
        proto: Config { fanout, ..Config::default() },
        faults: Faults { loss, ..Faults::default() },
        wire: false,
    }
}

/// Rounds of `d` at `interval`.
pub fn rounds(d: Duration, interval: Duration) -> f64 {
    d.as_secs_f64() / interval.as_secs_f64()
}

/// Whether every up, not-left node holds the same view: every other such
/// node known at its current generation, Live, with all of its updates.
/// Returns the first disagreement found.
pub fn check_converged(sim: &Sim) -> Result<(), String> {
    let up: Vec<usize> = (0..sim.len()).filter(|&i| sim.node(i).is_some_and(|n| n.member(&n.id().name).is_some_and(|m| m.status == Status::Live))).collect();
    let truth: Vec<(String, u64, u64)> = up
        .iter()
        .map(|&k| {
            let n = sim.node(k).expect("listed as up");
            let me = n.member(&n.id().name).expect("a node knows itself");
            (n.id().name.clone(), n.id().generation, me.max_version)
        })
        .collect();
    for &i in &up {
        let n = sim.node(i).expect("listed as up");
        for (name, generation, mv) in &truth {
            match n.member(name) {
                None => return Err(format!("n{i} does not know {name}")),
                Some(m) if m.id.generation != *generation => {
                    return Err(format!("n{i} holds {name} at generation {}, not {generation}", m.id.generation));
                }
                Some(m) if m.status != Status::Live => return Err(format!("n{i} sees {name} as {:?}", m.status)),
                Some(m) if m.max_version != *mv => {
                    return Err(format!("n{i} holds {name} up to version {}, not {mv}", m.max_version));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}
