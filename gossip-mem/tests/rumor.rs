//! Simulation tests: membership converges and a write reaches every node,
//! under loss; runs are deterministic. A failure prints the replay command.

use gossip_mem::sim::scenario::{self, RumorReport};
use gossip_mem::sim::{Sim, SimConfig};

fn replay(r: &RumorReport, fanout: usize, loss: f64) -> String {
    format!(
        "replay: cargo run --release --example simulate -- --nodes {} --fanout {fanout} --loss {loss} --seed {}",
        r.nodes, r.seed
    )
}

fn spread(nodes: usize, fanout: usize, loss: f64, seed: u64) -> RumorReport {
    let r = scenario::rumor(
        scenario::config(seed, fanout, loss),
        nodes,
        10.0,
        &mut |_, _| {},
    );
    assert!(
        r.joined,
        "membership did not converge: {r:?}\n{}",
        replay(&r, fanout, loss)
    );
    assert!(
        r.spread,
        "the key did not reach every node: {r:?}\n{}",
        replay(&r, fanout, loss)
    );
    r
}

#[test]
fn converges_and_spreads_without_loss() {
    for (nodes, fanout) in [(100, 1), (300, 3), (1000, 3)] {
        let r = spread(nodes, fanout, 0.0, 7);
        // Generous bound: ln(n) push-pull rounds at fanout 1 is ~6 at n=100.
        assert!(r.rumor_rounds < 12.0, "{r:?}\n{}", replay(&r, fanout, 0.0));
    }
}

#[test]
fn converges_and_spreads_under_loss() {
    for loss in [0.1, 0.3] {
        let r = spread(300, 3, loss, 11);
        assert!(r.rumor_rounds < 15.0, "{r:?}\n{}", replay(&r, 3, loss));
    }
}

#[test]
fn same_seed_same_trace() {
    let a = spread(200, 3, 0.1, 42);
    let b = spread(200, 3, 0.1, 42);
    let c = spread(200, 3, 0.1, 43);
    assert_eq!(
        a.trace_hash, b.trace_hash,
        "same seed must replay bit for bit"
    );
    assert_eq!(a, b);
    assert_ne!(a.trace_hash, c.trace_hash, "another seed is another run");
}

#[test]
fn wire_mode_runs_every_message_through_the_codec() {
    let config = SimConfig {
        wire: true,
        ..scenario::config(5, 3, 0.05)
    };
    let (sim, joined) = scenario::converged_cluster(config, 60, 50.0, &mut |_, _| {});
    assert!(joined);
    for i in 0..sim.len() {
        let m = sim.node(i).expect("no crashes here").metrics();
        assert_eq!(m.refused.total(), 0, "n{i} refused its peers' messages");
        assert!(m.bytes_in > 0, "n{i} decoded what it received");
    }
}

#[test]
fn duplication_and_reordering_do_not_break_convergence() {
    let mut config = scenario::config(9, 3, 0.0);
    config.faults.duplicate = 0.2;
    config.faults.reorder = 0.3;
    let r = scenario::rumor(config, 200, 10.0, &mut |_, _| {});
    assert!(r.joined && r.spread, "{r:?}");
    let _ = Sim::new(SimConfig::default());
}
