//! An in-memory cluster of gossip actors, watched while it works.
//!
//! ```text
//! cargo run --release --example cluster                     # 64 nodes, fanout 3, 100 ms rounds
//! cargo run --release --example cluster -- --nodes 1000 --json
//! ```
//!
//! Starts `--nodes` `GossipNode` actors over one `MemNetwork` (1–5 ms links,
//! as in the simulator), spread over one actix Arbiter per core, and shows in
//! turn:
//!
//! 1. membership converging through three seeds;
//! 2. a key written on one node spreading: milliseconds until all hold it,
//!    and round by round beside the ideal synchronous push-pull figure
//!    (Monte Carlo, DESIGN.md §7) and the simulator's figure for the same n,
//!    fanout and config;
//! 3. a crashed node suspected, then declared dead by everyone;
//! 4. a node leaving gracefully, seen as Left by everyone;
//! 5. a partition into two halves, detected, then healed.
//!
//! A "round" is one gossip interval of wall time. Every phase waits for its
//! condition with a deadline and reports `null` if it is not met. With
//! `--json`, the last line is one JSON object with the figures.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use clap::Parser;
use gossip_core::actor::{
    EventFn, GetMetrics, GossipNode, Leave, NodeBuilder, NodeMetrics, Set, Stop, Subscribe, Update,
};
use gossip_core::proto::{Config, Event, Status};
use gossip_mem::net::MemNetwork;
use gossip_mem::sim::{Ctx, Faults, SimConfig, model, scenario};
use serde_json::json;

/// Command-line options.
#[derive(Parser, Debug, Clone)]
#[command(
    about = "Watch an in-memory cluster of gossip actors converge, spread a key, detect a crash, see a leave and heal a partition"
)]
struct Args {
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 64)]
    nodes: usize,
    /// Peers contacted per round.
    #[arg(long, default_value_t = 3)]
    fanout: usize,
    /// Gossip interval in milliseconds (failure-detector timings scale with it).
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// Arbiters (threads) to spread the nodes over; default: one per core.
    #[arg(long)]
    arbiters: Option<usize>,
    /// Seed of the network's faults and of the nodes' RNGs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Probability that a message is lost.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Print a JSON summary as the last line.
    #[arg(long)]
    json: bool,
}

/// What a tap saw: one event of interest, when, on which node.
#[derive(Clone, Debug)]
enum Seen {
    Key { key: String },
    Status { name: String, to: Status },
}

#[derive(Clone, Debug)]
struct Record {
    node: usize,
    at: Instant,
    seen: Seen,
}

type Log = Arc<Mutex<Vec<Record>>>;

/// What a node's subscription keeps of each event the demo measures.
fn tap(node: usize, log: Log) -> impl FnMut(Update) + Unpin + 'static {
    move |update| {
        let Update::Event(event) = update else {
            return;
        };
        let seen = match event {
            Event::KeyChanged { key, .. } => Seen::Key { key },
            Event::MemberStatus { id, to, .. } => Seen::Status {
                name: id.name.clone(),
                to,
            },
            _ => return,
        };
        let record = Record {
            node,
            at: Instant::now(),
            seen,
        };
        log.lock().expect("log lock").push(record);
    }
}

struct Demo {
    interval: Duration,
    net: MemNetwork,
    nodes: Vec<Addr<GossipNode>>,
    addrs: Vec<SocketAddr>,
    alive: Vec<bool>,
    log: Log,
}

impl Demo {
    fn rounds(&self, d: Duration) -> f64 {
        d.as_secs_f64() / self.interval.as_secs_f64()
    }

    fn say(&self, line: impl AsRef<str>) {
        println!("{}", line.as_ref());
    }

    /// Metrics of every running node, in index order (`None` for stopped ones).
    async fn metrics(&self) -> Vec<Option<NodeMetrics>> {
        // Queue every request first (`send` enqueues at once), then collect:
        // one pass of each Arbiter answers them all, instead of one
        // cross-thread round trip per node.
        let requests: Vec<_> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| self.alive[i].then(|| n.send(GetMetrics)))
            .collect();
        let mut out = Vec::with_capacity(requests.len());
        for r in requests {
            out.push(match r {
                Some(r) => r.await.ok(),
                None => None,
            });
        }
        out
    }

    /// Polls until `cond` holds over all running nodes' metrics, or `limit`.
    async fn wait_metrics(
        &self,
        limit: Duration,
        mut cond: impl FnMut(usize, &NodeMetrics) -> bool,
    ) -> Option<Duration> {
        let start = Instant::now();
        loop {
            let all = self.metrics().await;
            let ok = all
                .iter()
                .enumerate()
                .all(|(i, m)| !self.alive[i] || m.as_ref().is_some_and(|m| cond(i, m)));
            if ok {
                return Some(start.elapsed());
            }
            if start.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(self.interval / 4).await;
        }
    }

    /// Waits until `count(log)` reaches `target`, or `limit`.
    async fn wait_log(
        &self,
        limit: Duration,
        target: usize,
        count: impl Fn(&[Record]) -> usize,
    ) -> bool {
        let start = Instant::now();
        loop {
            if count(&self.log.lock().expect("log lock")) >= target {
                return true;
            }
            if start.elapsed() > limit {
                return false;
            }
            tokio::time::sleep(self.interval / 10).await;
        }
    }

    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.alive[i]).collect()
    }
}

/// CPU time (user + system) of this process so far, from /proc/self/stat.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// The simulator's figure for the same experiment: the same config and
/// links, membership converged, `quiet` rounds of idle gossip, then one key
/// written on node `n / 2`; rounds until every node holds it.
fn sim_rumor(cfg: &Config, faults: &Faults, n: usize, seed: u64, quiet: f64) -> Option<f64> {
    let config = SimConfig {
        seed,
        proto: cfg.clone(),
        faults: faults.clone(),
        wire: false,
    };
    let (mut sim, joined) =
        scenario::converged_cluster(config, n, 100.0 + 10.0 * (n as f64).log2(), &mut |_, _| {});
    if !joined {
        return None;
    }
    sim.run_for_rounds(quiet, &mut |_, _| {});
    let writer = n / 2;
    let owner = format!("n{writer}");
    let holders = Cell::new(1usize);
    let done = Cell::new(None);
    let mut count = |ctx: &Ctx<'_>, e: &Event| {
        if let Event::KeyChanged { owner: o, key, .. } = e
            && key == "rumor"
            && o.name == owner
        {
            holders.set(holders.get() + 1);
            if holders.get() == n {
                done.set(Some(ctx.now));
            }
        }
    };
    let start = sim.now();
    sim.with_node(
        writer,
        |node, now| node.set(now, "rumor", Bytes::from_static(b"hello")),
        &mut count,
    )?
    .ok()?;
    let deadline = start + cfg.gossip_interval * 100;
    while done.get().is_none() && sim.now() <= deadline && sim.step(&mut count) {}
    done.get()
        .map(|t| t.saturating_since(start).as_secs_f64() / cfg.gossip_interval.as_secs_f64())
}

/// `Config::local()` with the interval and fanout asked for; the
/// failure-detector timings keep their ratio to the interval.
fn config(args: &Args) -> Config {
    let base = Config::local();
    let scale = args.interval_ms as f64 / base.gossip_interval.as_millis() as f64;
    Config {
        cluster: "cluster-demo".to_owned(),
        gossip_interval: Duration::from_millis(args.interval_ms),
        fanout: args.fanout,
        min_std_dev: base.min_std_dev.mul_f64(scale),
        acceptable_pause: base.acceptable_pause.mul_f64(scale),
        suspect_timeout: base.suspect_timeout.mul_f64(scale),
        stall_threshold: base.stall_threshold.mul_f64(scale),
        join_retry_min: base.join_retry_min.mul_f64(scale),
        join_retry_max: base.join_retry_max.mul_f64(scale),
        ..base
    }
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if args.nodes < 4 || args.fanout == 0 || args.interval_ms == 0 {
        eprintln!("need --nodes >= 4, --fanout >= 1 and --interval-ms >= 1");
        std::process::exit(2);
    }
    let summary = System::new().block_on(run(args.clone()));
    if args.json {
        println!("{summary}");
    }
}

async fn run(args: Args) -> serde_json::Value {
    let wall = Instant::now();
    let n = args.nodes;
    let cfg = config(&args);
    let interval = cfg.gossip_interval;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let arbiter_count = args.arbiters.unwrap_or(cores).max(1);
    let arbiters: Vec<Arbiter> = (0..arbiter_count).map(|_| Arbiter::new()).collect();

    let net = MemNetwork::with_queue_capacity(args.seed, 4096);
    let faults = Faults {
        loss: args.loss,
        latency: (Duration::from_millis(1), Duration::from_millis(5)),
        ..Faults::default()
    };
    net.set_faults(faults.clone());

    // Idle rounds between convergence and the write, in the cluster and in
    // the simulator alike: long enough for the joins' "hot" pushes to end.
    let quiet = (n as f64).log2().ceil() + 4.0;
    // The simulator's figure for the same n, fanout, config and links, run
    // first so that it does not compete with the actors for CPU.
    let sim_rumor_rounds = sim_rumor(&cfg, &faults, n, args.seed, quiet);

    println!(
        "cluster: {n} gossip actors on {arbiter_count} arbiters, fanout {}, interval {} ms, links 1-5 ms, loss {}",
        args.fanout, args.interval_ms, args.loss
    );

    // ----- start and converge -------------------------------------------
    let transports: Vec<_> = (0..n).map(|i| net.endpoint_as(&format!("n{i}"))).collect();
    let addrs: Vec<SocketAddr> = transports
        .iter()
        .map(gossip_core::Transport::local_addr)
        .collect();
    let seeds: Vec<SocketAddr> = addrs.iter().take(3).copied().collect();
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let mut nodes = Vec::with_capacity(n);
    let start = Instant::now();
    for (i, t) in transports.into_iter().enumerate() {
        let arbiter = arbiters[i % arbiter_count].handle();
        let node = NodeBuilder::new(format!("n{i}"))
            .config(cfg.clone())
            .seeds(seeds.clone())
            .generation(1)
            .rng_seed(args.seed.wrapping_mul(1_000_003).wrapping_add(i as u64))
            .start_in(&arbiter, Box::new(t))
            .expect("the demo's config is valid");
        nodes.push(node);
    }
    let mut demo = Demo {
        interval,
        net,
        nodes,
        addrs,
        alive: vec![true; n],
        log: log.clone(),
    };
    let limit = interval * 300 + Duration::from_secs(10);
    let converge = demo.wait_metrics(limit, |_, m| m.gauges.live == n).await;
    let converge_rounds = converge.map(|_| demo.rounds(start.elapsed()));
    match converge_rounds {
        Some(r) => demo.say(format!(
            "membership: all {n} nodes see {n} live members after {r:.1} rounds"
        )),
        None => demo.say(format!(
            "membership: not converged after {:.0} rounds",
            demo.rounds(limit)
        )),
    }

    // ----- steady-state cost ---------------------------------------------
    let window = interval.mul_f64(quiet);
    let m0 = demo.metrics().await;
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let cpu1 = cpu_time();
    let m1 = demo.metrics().await;
    let quiet_rounds = demo.rounds(t0.elapsed());
    let sum = |ms: &[Option<NodeMetrics>], f: fn(&NodeMetrics) -> u64| {
        ms.iter().flatten().map(f).sum::<u64>()
    };
    let per_node_round =
        |f: fn(&NodeMetrics) -> u64| (sum(&m1, f) - sum(&m0, f)) as f64 / n as f64 / quiet_rounds;
    let msgs_per_node_round = per_node_round(|m| m.proto.messages_out);
    let bytes_per_node_round = per_node_round(|m| m.proto.bytes_out);
    let cpu_us_per_node_round = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some((b - a).as_secs_f64() * 1e6 / n as f64 / quiet_rounds),
        _ => None,
    };
    demo.say(format!(
        "steady state over {quiet_rounds:.1} rounds: {msgs_per_node_round:.1} messages and {:.0} bytes sent per node per round, CPU {} per node per round",
        bytes_per_node_round,
        cpu_us_per_node_round.map_or("n/a".to_owned(), |c| format!("{c:.0} µs")),
    ));

    // Taps record what each node sees from now on.
    for (i, node) in demo.nodes.iter().enumerate() {
        let log = demo.log.clone();
        let sub = node.send(Subscribe::all()).await.expect("node answers");
        EventFn::start_in_arbiter(&arbiters[i % arbiter_count].handle(), move |ctx| {
            <EventFn<_> as actix::StreamHandler<Update>>::add_stream(sub, ctx);
            EventFn(tap(i, log))
        });
    }

    // ----- a key spreads ---------------------------------------------------
    let writer = n / 2;
    // Ideal synchronous push-pull (DESIGN.md §7): `curve[r]` is the share
    // of nodes holding the update after `r` rounds.
    let ideal = model::push_pull(n, args.fanout, if n <= 2000 { 200 } else { 30 }, args.seed);
    let ideal_rounds = ideal.mean_rounds;
    let written = Instant::now();
    demo.nodes[writer]
        .send(Set::new("rumor", "hello"))
        .await
        .expect("node answers")
        .expect("accepted");
    let spread = demo
        .wait_log(interval * 60, n - 1, |log| rumor_holders(log).len())
        .await;
    let times: Vec<Instant> = {
        let log = demo.log.lock().expect("log lock");
        let mut t: Vec<Instant> = rumor_holders(&log).into_values().collect();
        t.sort_unstable();
        t
    };
    let rumor_took = spread.then(|| {
        times
            .last()
            .map_or(Duration::ZERO, |t| t.duration_since(written))
    });
    let rumor_rounds = rumor_took.map(|d| demo.rounds(d));
    let rumor_ms = rumor_took.map(|d| d.as_secs_f64() * 1000.0);
    let fmt_ms = |ms: Option<f64>| ms.map_or("never".to_owned(), |v| format!("{v:.0} ms"));
    demo.say(format!("\nkey n{writer}/rumor written; nodes holding it after each round (ideal synchronous push-pull beside):"));
    let last_round = rumor_rounds
        .map_or(60, |r| r.ceil() as usize)
        .max(ideal.curve.len() - 1);
    for r in 1..=last_round {
        let t = written + interval * r as u32;
        let holders = 1 + times.iter().filter(|&&x| x <= t).count();
        let ideal_holders = ideal.curve.get(r).copied().unwrap_or(1.0) * n as f64;
        demo.say(format!(
            "  round {r:>2}: {holders:>5} / {n}   ideal {ideal_holders:>7.1}"
        ));
    }
    demo.say(format!(
        "all {n} hold it after {} ({} rounds; ideal synchronous push-pull {ideal_rounds:.1}, simulator {} rounds)",
        fmt_ms(rumor_ms),
        fmt_rounds(rumor_rounds),
        fmt_rounds(sim_rumor_rounds)
    ));

    // ----- a crash is detected --------------------------------------------
    let victim = n - 1;
    let victim_name = format!("n{victim}");
    demo.say(format!("\ncrashing {victim_name} (no goodbye) ..."));
    let crashed = Instant::now();
    demo.net
        .crash(demo.addrs[victim])
        .expect("the victim's address is bound");
    demo.nodes[victim].send(Stop).await.expect("node answers");
    demo.alive[victim] = false;
    let watchers = n - 1;
    let limit = interval * 200;
    let first_suspect = demo
        .wait_log(limit, 1, |log| {
            count_status(log, &victim_name, &[Status::Suspect])
        })
        .await;
    let first_suspect_rounds = first_suspect.then(|| demo.rounds(crashed.elapsed()));
    let all_suspect = demo
        .wait_log(limit, watchers, |log| {
            count_status(log, &victim_name, &[Status::Suspect])
        })
        .await;
    let suspect_rounds = all_suspect.then(|| demo.rounds(crashed.elapsed()));
    let all_dead = demo
        .wait_log(limit, watchers, |log| {
            count_status(log, &victim_name, &[Status::Dead])
        })
        .await;
    let detection_rounds = all_dead.then(|| demo.rounds(crashed.elapsed()));
    demo.say(format!(
        "{victim_name} first suspected after {} rounds, suspected by all {watchers} after {}, declared dead by all after {} rounds",
        fmt_rounds(first_suspect_rounds),
        fmt_rounds(suspect_rounds),
        fmt_rounds(detection_rounds)
    ));

    // ----- a leave is seen -------------------------------------------------
    let leaver = n - 2;
    let leaver_name = format!("n{leaver}");
    demo.say(format!("\n{leaver_name} leaves gracefully ..."));
    let left = Instant::now();
    // The request is queued at once; watch the others while it waits for
    // the core's confirmation.
    let request = demo.nodes[leaver].send(Leave {
        timeout: interval * 20,
    });
    let watchers = n - 2;
    let seen = demo
        .wait_log(interval * 100, watchers, |log| {
            count_status(log, &leaver_name, &[Status::Left])
        })
        .await;
    let leave_seen_rounds = seen.then(|| demo.rounds(left.elapsed()));
    let outcome = request.await.expect("node answers");
    demo.nodes[leaver].send(Stop).await.expect("node answers");
    demo.alive[leaver] = false;
    demo.say(format!(
        "leave {outcome:?}; all {watchers} others see {leaver_name} as Left after {} rounds",
        fmt_rounds(leave_seen_rounds)
    ));

    // ----- a partition heals -----------------------------------------------
    let live = demo.live();
    let (side_a, side_b) = live.split_at(live.len() / 2);
    let group: HashMap<usize, usize> = side_a
        .iter()
        .map(|&i| (i, side_a.len()))
        .chain(side_b.iter().map(|&i| (i, side_b.len())))
        .collect();
    demo.say(format!(
        "\npartitioning into halves of {} and {} nodes ...",
        side_a.len(),
        side_b.len()
    ));
    let cut = Instant::now();
    demo.net.partition(&[
        side_a.iter().map(|&i| demo.addrs[i]).collect(),
        side_b.iter().map(|&i| demo.addrs[i]).collect(),
    ]);
    let split = demo
        .wait_metrics(interval * 200, |i, m| {
            group.get(&i).is_some_and(|&size| m.gauges.live == size)
        })
        .await;
    let split_rounds = split.map(|_| demo.rounds(cut.elapsed()));
    demo.say(format!(
        "each side sees only itself live after {} rounds; healing ...",
        fmt_rounds(split_rounds)
    ));
    let healed_at = Instant::now();
    demo.net.heal();
    let everyone = live.len();
    let healed = demo
        .wait_metrics(interval * 300, |_, m| m.gauges.live == everyone)
        .await;
    let heal_rounds = healed.map(|_| demo.rounds(healed_at.elapsed()));
    demo.say(format!(
        "all {everyone} nodes see each other live again after {} rounds",
        fmt_rounds(heal_rounds)
    ));

    // ----- summary ----------------------------------------------------------
    let all = demo.metrics().await;
    let false_suspicions: u64 = all
        .iter()
        .flatten()
        .map(|m| m.proto.suspicions)
        .sum::<u64>()
        .saturating_sub((n - 1) as u64 + (side_a.len() * side_b.len() * 2) as u64);
    let send_errors: u64 = all
        .iter()
        .flatten()
        .map(|m| m.actor.send_errors.total())
        .sum();
    let events_dropped: u64 = all.iter().flatten().map(|m| m.actor.events_dropped).sum();
    let stats = demo.net.stats();
    let wall_ms = wall.elapsed().as_millis() as u64;
    demo.say(format!(
        "\nsummary: {n} nodes, fanout {}: converged {} rounds, rumor {} = {} rounds (ideal {ideal_rounds:.1}, simulator {}), \
         crash detected {} rounds, leave seen {} rounds, partition healed {} rounds; \
         {msgs_per_node_round:.1} msgs / {bytes_per_node_round:.0} B / {} CPU per node per round; wall {wall_ms} ms",
        args.fanout,
        fmt_rounds(converge_rounds),
        fmt_ms(rumor_ms),
        fmt_rounds(rumor_rounds),
        fmt_rounds(sim_rumor_rounds),
        fmt_rounds(detection_rounds),
        fmt_rounds(leave_seen_rounds),
        fmt_rounds(heal_rounds),
        cpu_us_per_node_round.map_or("n/a".to_owned(), |c| format!("{c:.0} µs")),
    ));
    demo.say(format!(
        "network: {} sent, {} delivered, {} lost, {} partitioned, {} to crashed, {} queue full; \
         actor send errors {send_errors}, subscriber events dropped {events_dropped}, suspicions beyond the faults {false_suspicions}",
        stats.sent, stats.delivered, stats.lost, stats.partitioned, stats.crashed, stats.queue_full
    ));

    for a in arbiters {
        a.stop();
    }
    let r2 = |x: Option<f64>| x.map(|v| (v * 100.0).round() / 100.0);
    json!({
        "nodes": n,
        "fanout": args.fanout,
        "interval_ms": args.interval_ms,
        "arbiters": arbiter_count,
        "converge_rounds": r2(converge_rounds),
        "rumor_rounds": r2(rumor_rounds),
        "rumor_ms": r2(rumor_ms),
        "ideal_rounds": r2(Some(ideal_rounds)),
        "sim_rumor_rounds": r2(sim_rumor_rounds),
        "first_suspect_rounds": r2(first_suspect_rounds),
        "suspect_rounds": r2(suspect_rounds),
        "detection_rounds": r2(detection_rounds),
        "leave_outcome": format!("{outcome:?}"),
        "leave_seen_rounds": r2(leave_seen_rounds),
        "partition_detect_rounds": r2(split_rounds),
        "heal_rounds": r2(heal_rounds),
        "msgs_per_node_round": r2(Some(msgs_per_node_round)),
        "bytes_per_node_round": bytes_per_node_round.round(),
        "cpu_us_per_node_round": r2(cpu_us_per_node_round),
        "false_suspicions": false_suspicions,
        "send_errors": send_errors,
        "net_lost": stats.lost,
        "net_queue_full": stats.queue_full,
        "wall_ms": wall_ms,
    })
}

/// For each node that learned the rumor, when it did (first time).
fn rumor_holders(log: &[Record]) -> HashMap<usize, Instant> {
    let mut out = HashMap::new();
    for r in log {
        if let Seen::Key { key } = &r.seen
            && key == "rumor"
        {
            out.entry(r.node).or_insert(r.at);
        }
    }
    out
}

/// Nodes that have seen `name` go to one of `to`.
fn count_status(log: &[Record], name: &str, to: &[Status]) -> usize {
    let mut nodes: Vec<usize> = log
        .iter()
        .filter(
            |r| matches!(&r.seen, Seen::Status { name: m, to: s } if m == name && to.contains(s)),
        )
        .map(|r| r.node)
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes.len()
}

fn fmt_rounds(r: Option<f64>) -> String {
    r.map_or("n/a".to_owned(), |r| format!("{r:.1}"))
}
