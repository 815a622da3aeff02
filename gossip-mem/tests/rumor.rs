//! Simulation tests of membership convergence and dissemination.

use gossip_mem::sim::scenario;

#[test]
fn probe_rumor() {
    for n in [std::env::var("N").ok().and_then(|v| v.parse().ok()).unwrap_or(100usize)] {
        for fanout in [3usize] {
            let t = std::time::Instant::now();
            let r = scenario::rumor(scenario::config(1, fanout, 0.0), n, 10.0, &mut |_, _| {});
            println!("n={n} k={fanout} {r:?} wall={:?}", t.elapsed());
        }
    }
}
