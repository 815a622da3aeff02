//! Micro-benchmarks of the pure protocol core, through its public API only:
//! the codec, one exchange (building a `Syn`, answering it) at 1,000 and
//! 10,000 members, merging a delta, and one timeout tick.
//!
//! ```text
//! cargo bench --bench core
//! ```
//!
//! Membership is filled by handing the node `Ack` deltas naming every
//! member (what it would learn by gossip), so a 10,000-member node is ready
//! in milliseconds instead of a 10,000-node simulation. Failure detection
//! is switched off and its timeouts made long: nobody answers these nodes,
//! and without that the members would turn Suspect, Dead and forgotten as
//! the benchmark's virtual time runs on, and each iteration would measure
//! a smaller cluster.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use gossip::core::proto::{
    Config, Envelope, Instant, KeyUpdate, Message, Node, NodeDelta, NodeId, cluster_id, decode,
    encode,
};

/// Member counts the exchange benchmarks run at.
const SIZES: [usize; 2] = [1_000, 10_000];

fn addr(i: usize) -> SocketAddr {
    let i = i as u32;
    SocketAddr::from((
        Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8),
        7000,
    ))
}

fn id(i: usize) -> Arc<NodeId> {
    Arc::new(NodeId::new(format!("n{i}"), addr(i), 1))
}

/// The default protocol with detection quiet (see the module docs).
fn config() -> Config {
    Config {
        cluster: "bench".into(),
        probe: false,
        phi_threshold: 1e9,
        acceptable_pause: Duration::from_secs(1_000_000),
        suspect_timeout: Duration::from_secs(1_000_000),
        stall_threshold: Duration::from_secs(1_000_000),
        grace_period: Duration::from_secs(10_000_000),
        ..Config::default()
    }
}

fn envelope(from: usize, message: Message) -> Envelope {
    Envelope {
        cluster: cluster_id("bench"),
        from: id(from),
        message,
    }
}

/// A delta naming member `i` with one key at `version` (above `floor`).
fn delta(i: usize, floor: u64, version: u64) -> NodeDelta {
    NodeDelta {
        id: id(i),
        heartbeat: 10 + version,
        left: false,
        floor,
        reset: false,
        gc_version: 0,
        max_version: version,
        updates: vec![KeyUpdate {
            key: "k".into(),
            version,
            value: Some(Bytes::from_static(b"value")),
        }],
    }
}

/// Node `me` of a cluster of `members`, knowing all of them (one key each).
fn node(me: usize, members: usize) -> Node {
    let mut n = Node::new(
        config(),
        (*id(me)).clone(),
        vec![addr(0)],
        7 + me as u64,
        Instant::ZERO,
    )
    .expect("valid config");
    let others: Vec<usize> = (0..members).filter(|&i| i != me).collect();
    // Several messages, as the node would receive them: no more new
    // members in one than `max_new_members_per_message` admits.
    for chunk in others.chunks(config().max_new_members_per_message) {
        let from = if me == 0 { 1 } else { 0 };
        let m = Message::Ack {
            delta: chunk.iter().map(|&i| delta(i, 0, 1)).collect(),
        };
        n.handle_message(Instant::ZERO, addr(from), envelope(from, m))
            .expect("the members are accepted");
    }
    assert_eq!(n.member_count(), members, "node {me} knows every member");
    drain(&mut n);
    n
}

/// Empties the node's queues (sends and events), as a shell would.
fn drain(n: &mut Node) -> usize {
    let mut sent = 0;
    while let Some(t) = n.poll_transmit() {
        black_box(t);
        sent += 1;
    }
    while let Some(e) = n.poll_event() {
        black_box(e);
    }
    sent
}

/// Runs `n` to its next gossip round and returns the first `Syn` it sends.
fn next_syn(n: &mut Node, now: &mut Instant) -> Envelope {
    loop {
        *now = n.poll_timeout().max(*now);
        n.handle_timeout(*now);
        let mut syn = None;
        while let Some(t) = n.poll_transmit() {
            if syn.is_none() && matches!(t.envelope.message, Message::Syn { .. }) {
                syn = Some(t.envelope);
            }
        }
        while n.poll_event().is_some() {}
        if let Some(s) = syn {
            return s;
        }
    }
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.sample_size(10).measurement_time(Duration::from_secs(2));
    let mut a = node(0, 1_000);
    let mut now = Instant::ZERO;
    let syn = next_syn(&mut a, &mut now);
    let bytes = encode(&syn);
    let ack = envelope(
        1,
        Message::Ack {
            delta: (2..52).map(|i| delta(i, 1, 2)).collect(),
        },
    );
    let ack_bytes = encode(&ack);
    for (name, env, wire) in [
        ("syn_1000_members", &syn, &bytes),
        ("ack_50_deltas", &ack, &ack_bytes),
    ] {
        g.bench_function(
            BenchmarkId::new("encode", format!("{name}_{}B", wire.len())),
            |b| b.iter(|| encode(black_box(env))),
        );
        g.bench_function(
            BenchmarkId::new("decode", format!("{name}_{}B", wire.len())),
            |b| b.iter(|| decode(black_box(wire), 64 * 1024).expect("own encoding decodes")),
        );
    }
    g.finish();
}

fn exchange(c: &mut Criterion) {
    let mut g = c.benchmark_group("exchange");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for members in SIZES {
        let mut a = node(0, members);
        let mut b = node(1, members);
        let mut now = Instant::ZERO;
        // Building: one gossip round's timeout, which digests the
        // membership into `fanout` Syns.
        g.bench_with_input(
            BenchmarkId::new("build_round", members),
            &members,
            |bench, _| {
                bench.iter(|| {
                    now = a.poll_timeout().max(now);
                    a.handle_timeout(now);
                    drain(&mut a)
                })
            },
        );
        // Answering: the responder's side of one Syn (its SynAck).
        let syn = next_syn(&mut a, &mut now);
        g.bench_with_input(
            BenchmarkId::new("answer_syn", members),
            &members,
            |bench, _| {
                bench.iter_batched(
                    || syn.clone(),
                    |s| {
                        b.handle_message(now, addr(0), s)
                            .expect("a member's Syn is accepted");
                        drain(&mut b)
                    },
                    BatchSize::SmallInput,
                )
            },
        );
    }
    g.finish();
}

fn merge(c: &mut Criterion) {
    let mut g = c.benchmark_group("merge");
    g.sample_size(10).measurement_time(Duration::from_secs(2));
    for members in SIZES {
        let mut n = node(0, members);
        // Every iteration the next version of member 2's key, gap-free
        // above what the node holds: a delta that changes state (the same
        // one twice would be a no-op), with the keyspace staying one key.
        let mut version = 1u64;
        g.bench_with_input(
            BenchmarkId::new("one_update", members),
            &members,
            |bench, _| {
                bench.iter_batched(
                    || {
                        version += 1;
                        envelope(
                            1,
                            Message::Ack {
                                delta: vec![delta(2, version - 1, version)],
                            },
                        )
                    },
                    |e| {
                        n.handle_message(Instant::ZERO, addr(1), e)
                            .expect("a gap-free delta is accepted");
                        drain(&mut n)
                    },
                    BatchSize::SmallInput,
                )
            },
        );
    }
    g.finish();
}

fn tick(c: &mut Criterion) {
    let mut g = c.benchmark_group("tick");
    g.sample_size(10).measurement_time(Duration::from_secs(2));
    for members in SIZES {
        let mut n = node(0, members);
        let mut now = Instant::ZERO;
        let _ = next_syn(&mut n, &mut now);
        // Between rounds: the timers are checked and nothing is due, the
        // floor of every wake-up of a shell.
        let between = now + Duration::from_millis(10);
        g.bench_with_input(BenchmarkId::new("idle", members), &members, |bench, _| {
            bench.iter(|| {
                n.handle_timeout(black_box(between));
                drain(&mut n)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, codec, exchange, merge, tick);
criterion_main!(benches);
