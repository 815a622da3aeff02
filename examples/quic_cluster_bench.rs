//! Benchmark: N gossip nodes in one process, over QUIC on 127.0.0.1 (mutual
//! TLS) and over the in-memory transport, same interval and fanout. Prints
//! how long the cluster takes to converge (everyone sees everyone Live) and
//! how many gossip rounds a fresh key needs to reach every node.
//!
//! ```text
//! cargo run --release --example quic_cluster_bench -- --nodes 50 --interval-ms 100 --fanout 3 --trials 10
//! ```
//!
//! Nodes are spread over `--threads` Arbiters; each QUIC transport is bound
//! inside its node's Arbiter, so its tasks share that thread.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use clap::{Parser, ValueEnum};
use gossip_core::Transport;
use gossip_core::actor::{
    EventFn, Filter, GetMetrics, GossipNode, NodeBuilder, Set, Stop, Subscribe, Update,
};
use gossip_core::proto::{Config, Event};
use gossip_mem::net::MemNetwork;
use gossip_quic::{ClusterCa, NodeIdentity, QuicConfig, QuicTransport};

#[derive(Parser)]
struct Args {
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 50)]
    nodes: usize,
    /// Gossip interval.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// Peers per round.
    #[arg(long, default_value_t = 3)]
    fanout: usize,
    /// Keys spread and timed, one after the other.
    #[arg(long, default_value_t = 10)]
    trials: usize,
    /// Arbiters (threads) the nodes are spread over.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Rounds of gossip between the first (cold) key and the timed ones,
    /// so every node has met its peers (QUIC: connections are set up).
    #[arg(long, default_value_t = 30)]
    warmup_rounds: u32,
    /// Which transports to measure.
    #[arg(long, value_enum, default_value_t = Which::Both)]
    transport: Which,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    Quic,
    Mem,
    Both,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Quic,
    Mem,
}

/// When each key arrived at one node.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

struct Report {
    converge: Duration,
    /// The key written right after convergence: (mean, max).
    cold: (Duration, Duration),
    /// Per trial: (mean, max) time for a key to reach the other nodes.
    spreads: Vec<(Duration, Duration)>,
}

fn main() {
    let args = Args::parse();
    let mut reports = Vec::new();
    let kinds = match args.transport {
        Which::Quic => vec![Kind::Quic],
        Which::Mem => vec![Kind::Mem],
        Which::Both => vec![Kind::Mem, Kind::Quic],
    };
    for kind in kinds {
        let report = actix_rt::System::new().block_on(run(&args, kind));
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
