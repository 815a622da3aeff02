//! The figures issue 12 (eager push) is judged by: milliseconds until a
//! write reaches every node, payload copies per node, the hop of the last
//! delivery, and traffic and latency per write under steady load. Checked
//! for consistency with each other and with the physics of the run (each
//! hop takes at least the minimum link latency), over several seeds, and
//! for determinism. A failure prints the replay command.

use std::time::Duration;

use gossip_mem::sim::SimConfig;
use gossip_mem::sim::scenario::{self, LoadConfig, LoadReport, RumorReport, percentile};

fn config(seed: u64, latency_ms: (u64, u64), interval_ms: u64) -> SimConfig {
    let mut c = scenario::config(seed, 3, 0.0);
    c.faults.latency = (
        Duration::from_millis(latency_ms.0),
        Duration::from_millis(latency_ms.1),
    );
    c.proto.gossip_interval = Duration::from_millis(interval_ms);
    c
}

fn replay(nodes: usize, seed: u64, latency_ms: (u64, u64), interval_ms: u64) -> String {
    format!(
        "replay: cargo run --release --example simulate -- --nodes {nodes} --seed {seed} --seeds 1 --latency-ms {},{} --interval-ms {interval_ms} --json",
        latency_ms.0, latency_ms.1
    )
}

/// Runs one rumor and checks every new figure against the others.
fn rumor_checked(nodes: usize, seed: u64, latency_ms: (u64, u64), interval_ms: u64) -> RumorReport {
    let r = scenario::rumor(
        config(seed, latency_ms, interval_ms),
        nodes,
        10.0,
        &mut |_, _| {},
    );
    let why = format!("{r:?}\n{}", replay(nodes, seed, latency_ms, interval_ms));
    assert!(r.joined && r.spread, "did not converge: {why}");
    // Every node but the writer got it, and the last of them is rumor_ms.
    assert_eq!(r.delivery_ms.len(), nodes - 1, "{why}");
    assert!(r.delivery_ms.windows(2).all(|w| w[0] <= w[1]), "{why}");
    let last = *r.delivery_ms.last().expect("nodes > 1");
    assert_eq!(last, r.rumor_ms, "the last node's time is rumor_ms: {why}");
    // rumor_ms is rumor_rounds in milliseconds.
    let interval = interval_ms as f64;
    assert!(r.rumor_ms > 0.0, "{why}");
    assert!(
        r.rumor_ms <= r.rumor_rounds * interval + latency_ms.1 as f64 + 1e-6,
        "{why}"
    );
    assert!(
        (r.rumor_ms - r.rumor_rounds * interval).abs() < 1e-3,
        "{why}"
    );
    // Every node needed one copy at least; hops are a path from the writer.
    assert!(r.payload_copies_per_node >= 1.0, "{why}");
    let hops = r.last_delivery_hops.expect("somebody got it");
    assert!(hops >= 1 && (hops as usize) < nodes, "{why}");
    // Each hop takes at least the shortest link latency.
    assert!(
        r.rumor_ms >= f64::from(hops) * latency_ms.0 as f64,
        "{hops} hops cannot take {} ms: {why}",
        r.rumor_ms
    );
    // Every node came to hold it through a message counted as carrying it.
    assert_eq!(r.unexplained_holders, 0, "{why}");
    // Percentiles are ordered and within the times seen.
    let p50 = percentile(&r.delivery_ms, 0.5).expect("not empty");
    let p99 = percentile(&r.delivery_ms, 0.99).expect("not empty");
    assert!(
        r.delivery_ms[0] <= p50 && p50 <= p99 && p99 <= r.rumor_ms,
        "{why}"
    );
    r
}

#[test]
fn rumor_figures_are_consistent_over_seeds() {
    for seed in 1..=5 {
        rumor_checked(100, seed, (1, 5), 1000);
    }
}

#[test]
fn rumor_figures_follow_latency_and_interval() {
    for seed in 1..=3 {
        let r = rumor_checked(60, seed, (20, 40), 200);
        // Slow links: the hops alone take a visible part of the spread.
        let hops = f64::from(r.last_delivery_hops.expect("spread"));
        assert!(r.rumor_ms >= 20.0 * hops, "{r:?}");
    }
}

#[test]
fn following_a_write_works_on_the_wire_too() {
    let config = SimConfig {
        wire: true,
        ..config(5, (1, 5), 1000)
    };
    let r = scenario::rumor(config, 60, 10.0, &mut |_, _| {});
    assert!(r.spread, "{r:?}");
    assert!(r.payload_copies_per_node >= 1.0, "{r:?}");
    assert_eq!(r.unexplained_holders, 0, "{r:?}");
}

#[test]
fn rumor_figures_are_deterministic() {
    let a = rumor_checked(80, 42, (1, 5), 1000);
    let b = rumor_checked(80, 42, (1, 5), 1000);
    assert_eq!(
        a.trace_hash, b.trace_hash,
        "same seed must replay bit for bit"
    );
    assert_eq!(a, b, "and give the same figures");
}

fn load(nodes: usize, seed: u64, rate: f64, secs: u64) -> LoadReport {
    let cfg = LoadConfig {
        rate,
        duration: Duration::from_secs(secs),
        ..LoadConfig::default()
    };
    scenario::writes(config(seed, (1, 5), 1000), nodes, &cfg, &mut |_, _| {})
}

#[test]
fn steady_load_reaches_everyone_and_reports_ordered_latencies() {
    for seed in 1..=3 {
        let r = load(60, seed, 200.0, 2);
        let why = format!(
            "{r:?}\nreplay: cargo run --release --example simulate -- --workload writes --rate 200 --duration 2 --nodes 60 --seed {seed} --json"
        );
        assert!(r.joined && r.drained, "{why}");
        assert_eq!((r.writes, r.refused), (400, 0), "{why}");
        assert_eq!(r.writes_delivered_to_all, r.writes, "{why}");
        // One hop at least, and nothing later than the window it ran in.
        assert!(r.latency_ms_p50 >= 1.0, "{why}");
        assert!(
            r.latency_ms_p50 <= r.latency_ms_p99 && r.latency_ms_p99 <= r.latency_ms_max,
            "{why}"
        );
        assert!(r.latency_ms_max <= r.window_ms, "{why}");
        assert!(r.window_ms >= 2000.0, "{why}");
        // Messages carry bytes; a write costs at least one message per
        // node that had to learn it, spread over the batches gossip sends.
        assert!(r.msgs_per_write > 0.0, "{why}");
        assert!(r.bytes_per_write > r.msgs_per_write, "{why}");
    }
}

#[test]
fn steady_load_is_deterministic() {
    let a = load(40, 9, 100.0, 2);
    let b = load(40, 9, 100.0, 2);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a, b);
    let c = load(40, 10, 100.0, 2);
    assert_ne!(a.trace_hash, c.trace_hash, "another seed is another run");
}

#[test]
fn percentile_is_nearest_rank() {
    let v = [1.0, 2.0, 3.0, 4.0];
    assert_eq!(percentile(&v, 0.5), Some(2.0));
    assert_eq!(percentile(&v, 0.51), Some(3.0));
    assert_eq!(percentile(&v, 0.99), Some(4.0));
    assert_eq!(percentile(&v, 1.0), Some(4.0));
    assert_eq!(percentile(&v, 0.0), Some(1.0));
    assert_eq!(percentile(&[], 0.5), None);
}
