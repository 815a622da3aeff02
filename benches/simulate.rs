//! Protocol-core throughput in the simulator: virtual gossip rounds of a
//! converged cluster per second of CPU, by cluster size and fan-out.
//!
//! `cargo bench --bench simulate`. Compare fan-outs and sizes within one
//! run (criterion reports each beside the others); absolute times depend on
//! the machine.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gossip::mem::sim::scenario;

fn rounds(c: &mut Criterion) {
    let mut group = c.benchmark_group("ten_rounds");
    group.sample_size(10);
    for nodes in [100usize, 500] {
        for fanout in [1usize, 3] {
            let (mut sim, joined) = scenario::converged_cluster(
                scenario::config(1, fanout, 0.0),
                nodes,
                100.0,
                &mut |_, _| {},
            );
            assert!(joined, "the cluster forms before it is measured");
            group.bench_with_input(
                BenchmarkId::new(format!("fanout{fanout}"), nodes),
                &nodes,
                |b, _| {
                    b.iter(|| sim.run_for_rounds(10.0, &mut |_, _| {}));
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, rounds);
/// jemalloc, not the system allocator: with 10⁸ long-lived members beside
/// millions of short-lived messages, glibc's malloc spent 8-16 % of a
/// 10,000-node run searching its free lists (BENCHMARKS.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

criterion_main!(benches);
