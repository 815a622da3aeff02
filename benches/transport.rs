//! gossip-mem against QUIC on loopback (mutual TLS), back to back in one
//! process: small messages per second and round-trip latency through each
//! transport (criterion), then a cluster of `GossipNode` actors on each:
//! how long it takes to converge and how long a fresh key takes to reach
//! every node.
//!
//! ```text
//! cargo bench --bench transport                      # all of it, ~1.5 min
//! cargo bench --bench transport -- --nodes 50 --interval-ms 100 --trials 10 --warmup-rounds 30
//! cargo bench --bench transport -- --spread-only     # only the actor clusters
//! cargo bench --bench transport -- --no-spread       # only the criterion part
//! ```
//!
//! Messages per second: each iteration pushes `BATCH` messages from `a` to
//! `b`, keeping at most `WINDOW` in flight (below the per-peer queue, so
//! nothing is dropped), and waits until `b` has received all of them;
//! sender and receiver share one current-thread tokio runtime, so the
//! figure is per core. Round trip: one 64-byte message `a → b` and its echo
//! `b → a`. Cluster: `--nodes` nodes over `--threads` Arbiters, each QUIC
//! transport bound inside its node's Arbiter (so its tasks share that
//! thread), `Config::local()` with `--interval-ms` and `--fanout`; the
//! warm keys wait `--warmup-rounds` (default 30: with 10, QUIC's keys
//! still met connection set-up and took 5-7 rounds instead of 0.4). Options
//! are parsed by hand; unknown ones (cargo's `--bench`) are ignored.
//! Folds in what were `benches/quic_transport.rs` and
//! `examples/quic_cluster_bench.rs`.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use criterion::{Criterion, Throughput};
use futures::StreamExt;
use gossip_core::actor::{
    EventFn, Filter, GetMetrics, GossipNode, NodeBuilder, Set, Stop, Subscribe, Update,
};
use gossip_core::proto::{Config, Event};
use gossip_core::{Incoming, Transport, TransportError};
use gossip_mem::net::MemNetwork;
use gossip_quic::{ClusterCa, NodeIdentity, QuicConfig, QuicTransport};

const BATCH: u64 = 10_000;
const WINDOW: u64 = 1_000;

/// The cluster part's settings, from the command line.
struct Args {
    nodes: usize,
    interval_ms: u64,
    fanout: usize,
    trials: usize,
    threads: usize,
    warmup_rounds: u32,
    spread: bool,
    criterion: bool,
}

/// Parses the options by hand (see the module docs); bad numbers keep the
/// default and say so.
fn parse() -> Args {
    let mut a = Args {
        nodes: 50,
        interval_ms: 100,
        fanout: 3,
        trials: 5,
        threads: 2,
        warmup_rounds: 30,
        spread: true,
        criterion: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next();
        match flag.as_str() {
            "--nodes" => a.nodes = number(&flag, value(), a.nodes).max(2),
            "--interval-ms" => a.interval_ms = number(&flag, value(), a.interval_ms).max(1),
            "--fanout" => a.fanout = number(&flag, value(), a.fanout).max(1),
            "--trials" => a.trials = number(&flag, value(), a.trials),
            "--threads" => a.threads = number(&flag, value(), a.threads).max(1),
            "--warmup-rounds" => a.warmup_rounds = number(&flag, value(), a.warmup_rounds),
            "--spread-only" => a.criterion = false,
            "--no-spread" => a.spread = false,
            _ => {}
        }
    }
    a
}

/// `value` as a number, or `default` (said on stderr) if it is missing or
/// not one.
fn number<T: std::str::FromStr + std::fmt::Display>(
    flag: &str,
    value: Option<String>,
    default: T,
) -> T {
    match value.map(|v| v.parse::<T>()) {
        Some(Ok(v)) => v,
        _ => {
            eprintln!("transport: {flag} needs a whole number; keeping {default}");
            default
        }
    }
}

async fn bind_quic(ca: &ClusterCa, name: &str) -> Box<dyn Transport> {
    let identity = NodeIdentity::issue(ca, name).expect("node certificate");
    let config = QuicConfig::new(
        "127.0.0.1:0".parse().expect("literal address"),
        "bench",
        identity,
    );
    Box::new(QuicTransport::bind(config).await.expect("bind on loopback"))
}

async fn recv(incoming: &mut Incoming) {
    let got = tokio::time::timeout(Duration::from_secs(10), incoming.next()).await;
    black_box(got.expect("a message within 10 s").expect("incoming open"));
}

/// Sends `BATCH` messages of `payload` from `a` to `b`, windowed; returns
/// when all arrived.
async fn push(a: &dyn Transport, to: SocketAddr, b_in: &mut Incoming, payload: &Bytes) {
    let (mut sent, mut received) = (0u64, 0u64);
    while sent < BATCH {
        if sent - received >= WINDOW {
            recv(b_in).await;
            received += 1;
            continue;
        }
        match a.send(to, payload.clone()) {
            Ok(()) => sent += 1,
            Err(TransportError::QueueFull) => {
                recv(b_in).await;
                received += 1;
            }
            Err(e) => panic!("send failed: {e}"),
        }
    }
    while received < sent {
        recv(b_in).await;
        received += 1;
    }
}

/// One transport's pair of endpoints, with their receive streams.
struct Pair {
    name: &'static str,
    a: Box<dyn Transport>,
    a_in: Incoming,
    b: Box<dyn Transport>,
    b_in: Incoming,
}

fn pairs(rt: &tokio::runtime::Runtime) -> Vec<Pair> {
    let mem = MemNetwork::new(7);
    let ca = ClusterCa::generate("bench").expect("ca");
    rt.block_on(async {
        let mut out = Vec::new();
        for name in ["mem", "quic"] {
            let (mut a, mut b): (Box<dyn Transport>, Box<dyn Transport>) = if name == "mem" {
                (
                    Box::new(mem.endpoint_as("a")),
                    Box::new(mem.endpoint_as("b")),
                )
            } else {
                (bind_quic(&ca, "a").await, bind_quic(&ca, "b").await)
            };
            let (a_in, b_in) = (a.incoming(), b.incoming());
            out.push(Pair {
                name,
                a,
                a_in,
                b,
                b_in,
            });
        }
        out
    })
}

fn transports(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut pairs = pairs(&rt);
    let mut group = c.benchmark_group("messages");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for p in &mut pairs {
        let to = p.b.local_addr();
        for size in [64usize, 1024] {
            let payload = Bytes::from(vec![7u8; size]);
            group.bench_function(format!("{}_{size}B", p.name), |bench| {
                bench.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            push(p.a.as_ref(), to, &mut p.b_in, &payload).await;
                        }
                        start.elapsed()
                    })
                })
            });
        }
    }
    group.finish();
    let mut group = c.benchmark_group("round_trip");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    for p in &mut pairs {
        let (to_b, to_a) = (p.b.local_addr(), p.a.local_addr());
        let payload = Bytes::from_static(&[7u8; 64]);
        // A first exchange sets up QUIC's connections both ways.
        rt.block_on(async {
            p.a.send(to_b, payload.clone()).expect("send");
            recv(&mut p.b_in).await;
            p.b.send(to_a, payload.clone()).expect("send");
            recv(&mut p.a_in).await;
        });
        group.bench_function(format!("{}_64B", p.name), |bench| {
            bench.iter(|| {
                rt.block_on(async {
                    p.a.send(to_b, payload.clone()).expect("send");
                    recv(&mut p.b_in).await;
                    p.b.send(to_a, payload.clone()).expect("send");
                    recv(&mut p.a_in).await;
                })
            })
        });
    }
    group.finish();
    rt.block_on(async {
        for p in &pairs {
            p.a.close().await;
            p.b.close().await;
        }
    });
}

fn main() {
    let args = parse();
    if args.criterion {
        let mut c = Criterion::default();
        transports(&mut c);
        c.final_summary();
    }
    if args.spread {
        spread(&args);
    }
}

/// The actor clusters: memory, then QUIC; prints one table.
fn spread(args: &Args) {
    let mut reports = Vec::new();
    for kind in [Kind::Mem, Kind::Quic] {
        let report = actix_rt::System::new().block_on(run(args, kind));
        reports.push((kind, report));
    }
    let interval = Duration::from_millis(args.interval_ms);
    let rounds = |d: Duration| d.as_secs_f64() / interval.as_secs_f64();
    println!(
        "\n{} nodes, interval {} ms, fanout {}, {} trials (rounds = time / interval)",
        args.nodes, args.interval_ms, args.fanout, args.trials
    );
    println!(
        "| transport | converge | cold key: rounds to all | warm key: rounds to all (mean) | worst warm trial | warm: mean arrival |"
    );
    println!("|---|---|---|---|---|---|");
    for (kind, r) in &reports {
        let n = r.spreads.len().max(1) as f64;
        let mean_max = r.spreads.iter().map(|(_, max)| rounds(*max)).sum::<f64>() / n;
        let worst = r
            .spreads
            .iter()
            .map(|(_, max)| rounds(*max))
            .fold(0.0, f64::max);
        let mean_mean = r.spreads.iter().map(|(mean, _)| rounds(*mean)).sum::<f64>() / n;
        println!(
            "| {kind:?} | {:.2} s | {:.2} | {mean_max:.2} | {worst:.2} | {mean_mean:.2} |",
            r.converge.as_secs_f64(),
            rounds(r.cold.1)
        );
    }
}

/// Which transport a cluster runs on.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Quic,
    Mem,
}

/// When each key arrived at one node.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// One transport's cluster run.
struct Report {
    converge: Duration,
    /// The key written right after convergence: (mean, max).
    cold: (Duration, Duration),
    /// Per trial: (mean, max) time for a key to reach the other nodes.
    spreads: Vec<(Duration, Duration)>,
}

async fn run(args: &Args, kind: Kind) -> Report {
    let n = args.nodes;
    let config = Config {
        cluster: "bench".to_owned(),
        gossip_interval: Duration::from_millis(args.interval_ms),
        fanout: args.fanout,
        ..Config::local()
    };
    let mem = MemNetwork::new(7);
    let ca = ClusterCa::generate("bench").expect("generate ca");
    let arbiters: Vec<Arbiter> = (0..args.threads.max(1)).map(|_| Arbiter::new()).collect();
    let mut nodes: Vec<Addr<GossipNode>> = Vec::new();
    let mut arrivals: Vec<Arrivals> = Vec::new();
    let mut seed: Option<SocketAddr> = None;
    for i in 0..n {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let builder = NodeBuilder::new(format!("n{i}"))
            .config(config.clone())
            .seeds(seed.into_iter().collect())
            .rng_seed(i as u64);
        let transport: TransportFactory = match kind {
            Kind::Mem => {
                let t = mem.endpoint_as(&format!("n{i}"));
                Box::new(move || Box::pin(async move { Box::new(t) as Box<dyn Transport> }))
            }
            Kind::Quic => {
                let identity =
                    NodeIdentity::issue(&ca, &format!("n{i}")).expect("node certificate");
                let quic = QuicConfig::new(
                    "127.0.0.1:0".parse().expect("literal address"),
                    "bench",
                    identity,
                )
                .with_max_frame_bytes(config.max_message_bytes);
                Box::new(move || {
                    Box::pin(async move {
                        Box::new(QuicTransport::bind(quic).await.expect("bind on loopback"))
                            as Box<dyn Transport>
                    })
                })
            }
        };
        arbiters[i % arbiters.len()].spawn(async move {
            let transport = transport().await;
            let addr = transport.local_addr();
            let node = builder.start(transport).expect("node starts");
            let _ = tx.send((addr, node));
        });
        let (addr, node) = rx.await.expect("arbiter started the node");
        seed = seed.or(Some(addr));
        let log = Arrivals::default();
        let arrivals_here = log.clone();
        let sub = node
            .send(Subscribe::new(Filter::keys("")))
            .await
            .expect("subscribe");
        EventFn::spawn(sub, move |update| {
            if let Update::Event(Event::KeyChanged { key, .. }) = update {
                let mut seen = arrivals_here.lock().expect("arrivals lock");
                seen.entry(key).or_insert_with(Instant::now);
            }
        });
        nodes.push(node);
        arrivals.push(log);
    }

    let start = Instant::now();
    loop {
        let mut converged = true;
        for node in &nodes {
            if node
                .send(GetMetrics)
                .await
                .map(|m| m.gauges.live)
                .unwrap_or(0)
                != n
            {
                converged = false;
                break;
            }
        }
        if converged {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{kind:?}: no convergence in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let converge = start.elapsed();
    eprintln!(
        "{kind:?}: {n} nodes converged in {:.2} s",
        converge.as_secs_f64()
    );

    let mut spreads = Vec::new();
    let mut cold = (Duration::ZERO, Duration::ZERO);
    for trial in 0..=args.trials {
        if trial == 1 {
            tokio::time::sleep(config.gossip_interval * args.warmup_rounds).await;
        }
        let writer = (trial * 7) % n;
        let key = format!("k{trial}");
        let t0 = Instant::now();
        nodes[writer]
            .send(Set::new(key.clone(), "v"))
            .await
            .expect("answers")
            .expect("write accepted");
        let times = loop {
            let times: Vec<Duration> = arrivals
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != writer)
                .filter_map(|(_, a)| {
                    a.lock()
                        .expect("arrivals lock")
                        .get(&key)
                        .map(|t| t.saturating_duration_since(t0))
                })
                .collect();
            if times.len() == n - 1 {
                break times;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{kind:?}: key {key} did not reach everyone"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let max = times.iter().copied().max().unwrap_or_default();
        let mean = times.iter().sum::<Duration>() / times.len().max(1) as u32;
        eprintln!(
            "{kind:?}: {key} from n{writer}: all in {:.0} ms (mean {:.0} ms)",
            max.as_secs_f64() * 1e3,
            mean.as_secs_f64() * 1e3
        );
        if trial == 0 {
            cold = (mean, max);
        } else {
            spreads.push((mean, max));
        }
    }
    futures::future::join_all(nodes.iter().map(|node| node.send(Stop))).await;
    for a in arbiters {
        a.stop();
    }
    Report {
        converge,
        cold,
        spreads,
    }
}

type TransportFactory = Box<
    dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = Box<dyn Transport>> + Send>>
        + Send,
>;
