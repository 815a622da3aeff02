//! Eager push in the simulator, on and off, with and without loss: every
//! node gets the write, over several seeds, and eager push delivers it in
//! a fraction of a round (the periodic path alone needs rounds). A failure
//! prints the replay command.

use gossip_mem::sim::scenario;

const NODES: usize = 100;

fn run(seed: u64, loss: f64, eager: bool) -> scenario::RumorReport {
    let mut c = scenario::config(seed, 3, loss);
    c.proto.eager = eager;
    let r = scenario::rumor(c, NODES, 10.0, &mut |_, _| {});
    let replay = format!(
        "replay: cargo run --release --example simulate -- --nodes {NODES} --seed {seed} --seeds 1 --loss {loss} --eager {} --json",
        if eager { "on" } else { "off" }
    );
    assert!(r.joined, "did not converge: {r:?}\n{replay}");
    assert!(r.spread, "a node never got the write: {r:?}\n{replay}");
    assert_eq!(r.delivery_ms.len(), NODES - 1, "{replay}");
    assert_eq!(r.unexplained_holders, 0, "{replay}");
    r
}

#[test]
fn every_node_gets_the_write_with_eager_push_on_and_off_with_and_without_loss() {
    for seed in 1..=3 {
        for loss in [0.0, 0.2] {
            let on = run(seed, loss, true);
            let off = run(seed, loss, false);
            if loss == 0.0 {
                // A few link latencies, not a round: links are 1-5 ms.
                assert!(
                    on.rumor_rounds < 0.25,
                    "seed {seed}: eager push took {} rounds",
                    on.rumor_rounds
                );
                assert!(
                    off.rumor_rounds > 0.5,
                    "seed {seed}: the periodic path alone took only {} rounds",
                    off.rumor_rounds
                );
            }
            assert!(
                on.rumor_ms < off.rumor_ms,
                "seed {seed}, loss {loss}: eager {} ms, periodic {} ms",
                on.rumor_ms,
                off.rumor_ms
            );
        }
    }
}

#[test]
fn earlier_news_prunes_the_tree_so_later_writes_cost_fewer_copies() {
    for seed in 1..=3 {
        let cold = run(seed, 0.0, true);
        let warm = scenario::rumor_after(
            scenario::config(seed, 3, 0.0),
            NODES,
            10.0,
            20,
            &mut |_, _| {},
        );
        assert!(warm.spread, "seed {seed}: {warm:?}");
        assert!(
            warm.payload_copies_per_node < cold.payload_copies_per_node,
            "seed {seed}: {} copies after 20 writes, {} on the first",
            warm.payload_copies_per_node,
            cold.payload_copies_per_node
        );
        assert!(
            warm.rumor_rounds < 0.25,
            "seed {seed}: {} rounds",
            warm.rumor_rounds
        );
    }
}
