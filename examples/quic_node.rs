//! One gossip node over QUIC with mutual TLS, driven from the terminal.
//!
//! ```text
//! # a cluster CA and one certificate per node, as PEM files
//! cargo run --release --example quic_node -- certs --out certs --nodes a,b,c
//! # later: add a node to the same CA (or re-issue one: a rotation)
//! cargo run --release --example quic_node -- certs --out certs --nodes d --valid-days 90
//! # one node per terminal
//! cargo run --release --example quic_node -- run --name a --listen 127.0.0.1:7001 --seed 127.0.0.1:7002 --certs certs
//! cargo run --release --example quic_node -- run --name b --listen 127.0.0.1:7002 --seed 127.0.0.1:7001 --certs certs --json
//! ```
//!
//! A running node prints membership and key events as they happen (with
//! `--json`, one JSON object per line, with at least `event` and `node`,
//! plus `key`/`value` where they apply) and reads commands on stdin:
//!
//! | command | effect |
//! |---|---|
//! | `set KEY VALUE` | writes KEY in this node's keyspace |
//! | `del KEY` | deletes it (a tombstone spreads) |
//! | `get KEY` | KEY as held here, for every owner (`get OWNER KEY` for one) |
//! | `members` | every member with its status |
//! | `reload` | reloads this node's certificate and key from `--certs` (also on SIGHUP) |
//! | `deny NODE` | refuses NODE's connections from now on (`--deny` at start) |
//! | `leave` | announces a graceful leave, then stops |
//!
//! It stops cleanly (closing its connections) on Ctrl-C, SIGTERM or end of
//! input. `--interval-ms` scales every timing of the LAN preset to the given
//! gossip interval (the multi-process test uses 200 ms).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use gossip_core::actor::{
    Delete, GetId, GetMembers, GetValues, GossipNode, Leave, NodeBuilder, Set, Stop, Subscribe,
    Update,
};
use gossip_core::proto::{Config, Event, Status};
use gossip_quic::{NodeIdentity, QuicConfig, QuicHandle, QuicTransport, write_cluster_valid_for};
use serde_json::{Value as Json, json};

#[derive(Parser)]
#[command(about = "A gossip node over QUIC with mutual TLS")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes a cluster CA (reused if DIR has one) and a certificate per node.
    Certs {
        /// Directory for the PEM files.
        #[arg(long)]
        out: PathBuf,
        /// Node names, comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<String>,
        /// Cluster name, written into every node certificate (and checked
        /// by every node: a CA shared by two clusters does not merge them).
        #[arg(long, default_value = "default")]
        cluster: String,
        /// Days the node certificates are valid.
        #[arg(long, default_value_t = 365)]
        valid_days: u64,
    },
    /// Runs one node until Ctrl-C, SIGTERM, end of input or `leave`.
    Run(RunArgs),
}

#[derive(Args)]
struct RunArgs {
    /// Node name (unique in the cluster; names its certificate in --certs).
    #[arg(long)]
    name: String,
    /// UDP address to listen on and dial from; peers gossip to it.
    #[arg(long)]
    listen: SocketAddr,
    /// A node to join through (repeatable).
    #[arg(long = "seed")]
    seeds: Vec<SocketAddr>,
    /// Directory written by `certs` (needs ca.pem, NAME.pem, NAME.key).
    #[arg(long, required_unless_present = "insecure_dev_mode_no_authentication")]
    certs: Option<PathBuf>,
    /// Cluster name; must match the certificates' cluster.
    #[arg(long, default_value = "default")]
    cluster: String,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Gossip interval; the LAN preset's other timings scale with it.
    #[arg(long)]
    interval_ms: Option<u64>,
    /// Peers contacted per round.
    #[arg(long)]
    fanout: Option<usize>,
    /// Silence tolerated beyond the mean interval before suspicion rises.
    #[arg(long)]
    acceptable_pause_ms: Option<u64>,
    /// Time from Suspect to Dead.
    #[arg(long)]
    suspect_timeout_ms: Option<u64>,
    /// Incarnation number (default: microseconds since the epoch).
    #[arg(long)]
    generation: Option<u64>,
    /// Node names refused at the handshake (revoked), comma separated.
    #[arg(long, value_delimiter = ',')]
    deny: Vec<String>,
    /// Serve metrics in Prometheus text format at http://ADDR/metrics (port
    /// 0 picks a free one; the address is printed as a `metrics` event).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// NO AUTHENTICATION: anyone reaching the port joins. Development only.
    #[arg(long)]
    insecure_dev_mode_no_authentication: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Certs {
            out,
            nodes,
            cluster,
            valid_days,
        } => {
            let names: Vec<&str> = nodes.iter().map(String::as_str).collect();
            let validity = Duration::from_secs(valid_days.max(1).saturating_mul(24 * 3600));
            match write_cluster_valid_for(&out, &cluster, &names, validity) {
                Ok(_) => {
                    println!(
                        "wrote {} and {} node certificate(s) to {}",
                        gossip_quic::certs::CA_CERT_FILE,
                        names.len(),
                        out.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("certs: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(args) => match actix_rt::System::new().block_on(run(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("run: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn protocol_config(args: &RunArgs) -> Config {
    let mut config = Config {
        cluster: args.cluster.clone(),
        ..Config::lan()
    };
    if let Some(ms) = args.interval_ms {
        let i = Duration::from_millis(ms.max(1));
        config.gossip_interval = i;
        config.min_std_dev = i / 2;
        config.acceptable_pause = i * 2;
        config.suspect_timeout = i * 4;
        config.stall_threshold = i * 6;
        config.join_retry_min = i;
        config.join_retry_max = i;
    }
    if let Some(f) = args.fanout {
        config.fanout = f;
    }
    if let Some(ms) = args.acceptable_pause_ms {
        config.acceptable_pause = Duration::from_millis(ms);
    }
    if let Some(ms) = args.suspect_timeout_ms {
        config.suspect_timeout = Duration::from_millis(ms);
    }
    config
}

async fn run(args: RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = protocol_config(&args);
    let metrics_addr = match args.metrics {
        // Installed before the node starts, so it reports from the first round.
        Some(addr) => Some(metrics_http::serve(addr).await?),
        None => None,
    };
    let quic = match &args.certs {
        Some(dir) if !args.insecure_dev_mode_no_authentication => QuicConfig::new(
            args.listen,
            &args.cluster,
            NodeIdentity::load(dir, &args.name)?,
        ),
        _ => QuicConfig::insecure_dev_mode_no_authentication(args.listen, &args.cluster),
    }
    .with_max_frame_bytes(config.max_message_bytes);
    let mut quic = quic;
    quic.deny.extend(args.deny.iter().cloned());
    let transport = QuicTransport::bind(quic).await?;
    let handle = transport.handle();
    let mut builder = NodeBuilder::new(args.name.clone())
        .config(config)
        .seeds(args.seeds.clone());
    if let Some(g) = args.generation {
        builder = builder.generation(g);
    }
    let node = builder.start(Box::new(transport))?;
    let out = Out {
        node: args.name.clone(),
        json: args.json,
    };
    let sub = node.send(Subscribe::all()).await?;
    let out_here = out.clone();
    Printer::create(move |ctx| {
        Printer::add_stream(sub, ctx);
        Printer { out: out_here }
    });
    let me = node.send(GetId).await?;
    out.emit(
        json!({"event": "started", "addr": me.addr.to_string(), "generation": me.generation, "cluster": args.cluster}),
        format!("started {} at {} (generation {})", me.name, me.addr, me.generation),
    );
    if let Some(addr) = metrics_addr {
        out.emit(
            json!({"event": "metrics", "addr": addr.to_string()}),
            format!("metrics at http://{addr}/metrics"),
        );
    }

    // stdin on a plain thread: a blocked read must not hold the runtime at exit.
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    loop {
        tokio::select! {
            line = lines.recv() => match line {
                Some(line) => {
                    let line = line.trim();
                    let words: Vec<&str> = line.split_whitespace().collect();
                    match words.as_slice() {
                        ["reload"] => reload(&handle, &args, &out),
                        ["deny", name] => {
                            handle.deny(name);
                            out.emit(json!({"event": "denied", "peer": name}), format!("denied {name}"));
                        }
                        _ => {
                            if command(&node, &out, line).await == Flow::Quit {
                                break;
                            }
                        }
                    }
                }
                None => break,
            },
            _ = hup.recv() => reload(&handle, &args, &out),
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    node.send(Stop).await?;
    out.emit(json!({"event": "stopped"}), "stopped".to_owned());
    Ok(())
}

/// Reloads this node's certificate and key from `--certs` (a rotation).
fn reload(handle: &QuicHandle, args: &RunArgs, out: &Out) {
    let result = match &args.certs {
        Some(dir) if !args.insecure_dev_mode_no_authentication => {
            NodeIdentity::load(dir, &args.name)
                .map_err(|e| e.to_string())
                .and_then(|id| handle.reload_identity(id).map_err(|e| e.to_string()))
        }
        _ => Err("no certificates in insecure mode".to_owned()),
    };
    match result {
        Ok(()) => out.emit(
            json!({"event": "reloaded"}),
            "certificate reloaded".to_owned(),
        ),
        Err(e) => out.emit(
            json!({"event": "error", "message": format!("reload: {e}")}),
            format!("error: reload: {e}"),
        ),
    }
}

#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

async fn command(node: &Addr<GossipNode>, out: &Out, line: &str) -> Flow {
    let words: Vec<&str> = line.split_whitespace().collect();
    let result: Result<(), String> = match words.as_slice() {
        [] => Ok(()),
        ["set", key, value @ ..] if !value.is_empty() => {
            let value = value.join(" ");
            match node.send(Set::new(*key, Bytes::from(value.clone()))).await {
                Ok(Ok(version)) => {
                    out.emit(
                        json!({"event": "set", "key": key, "value": value, "version": version}),
                        format!("set {key} = {value} (version {version})"),
                    );
                    Ok(())
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
        ["del", key] => match node.send(Delete::new(*key)).await {
            Ok(Ok(version)) => {
                out.emit(
                    json!({"event": "del", "key": key, "version": version}),
                    format!("del {key} ({version:?})"),
                );
                Ok(())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        ["get", rest @ ..] if (1..=2).contains(&rest.len()) => {
            let (owner, key) = if let [owner, key] = rest {
                (Some(*owner), *key)
            } else {
                (None, rest[0])
            };
            match node.send(GetValues::new(key)).await {
                Ok(all) => {
                    let found: BTreeMap<String, (String, u64)> = all
                        .into_iter()
                        .filter(|(o, _)| owner.is_none_or(|w| w == o))
                        .map(|(o, v)| (o, (text(&v.value), v.version)))
                        .collect();
                    let value = found.values().next().map(|(v, _)| v.clone());
                    let values: BTreeMap<_, _> = found
                        .iter()
                        .map(|(o, (v, _))| (o.clone(), v.clone()))
                        .collect();
                    let human = if found.is_empty() {
                        format!("{key}: not found")
                    } else {
                        found
                            .iter()
                            .map(|(o, (v, ver))| format!("{o}/{key} = {v} (v{ver})"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    out.emit(
                        json!({"event": "get", "key": key, "value": value, "values": values}),
                        human,
                    );
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            }
        }
        ["members"] => match node.send(GetMembers::all()).await {
            Ok(all) => {
                let members: Vec<Json> = all
                    .iter()
                    .map(|m| {
                        json!({"name": m.id.name, "addr": m.id.addr.to_string(), "generation": m.id.generation,
                               "status": status(m.status), "heartbeat": m.heartbeat, "keys": m.keys})
                    })
                    .collect();
                let human = all
                    .iter()
                    .map(|m| {
                        format!(
                            "  {} {} {} gen {}",
                            m.id.name,
                            m.id.addr,
                            status(m.status),
                            m.id.generation
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                out.emit(
                    json!({"event": "members", "members": members}),
                    format!("members:\n{human}"),
                );
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        },
        ["leave"] => match node
            .send(Leave {
                timeout: Duration::from_secs(5),
            })
            .await
        {
            Ok(outcome) => {
                let outcome = format!("{outcome:?}").to_lowercase();
                out.emit(
                    json!({"event": "left", "outcome": outcome}),
                    format!("left ({outcome})"),
                );
                return Flow::Quit;
            }
            Err(e) => Err(e.to_string()),
        },
        _ => Err(format!(
            "unknown command {line:?}: set KEY VALUE | del KEY | get [OWNER] KEY | members | reload | deny NODE | leave"
        )),
    };
    if let Err(message) = result {
        out.emit(
            json!({"event": "error", "message": message}),
            format!("error: {message}"),
        );
    }
    Flow::Continue
}

fn status(s: Status) -> &'static str {
    match s {
        Status::Live => "live",
        Status::Suspect => "suspect",
        Status::Dead => "dead",
        Status::Left => "left",
    }
}

fn text(bytes: &Bytes) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Prints one line per event: JSON or text.
#[derive(Clone)]
struct Out {
    node: String,
    json: bool,
}

impl Out {
    fn emit(&self, mut object: Json, human: String) {
        if self.json {
            if let Json::Object(map) = &mut object {
                map.insert("node".to_owned(), Json::String(self.node.clone()));
            }
            println!("{object}");
        } else {
            println!("[{}] {human}", self.node);
        }
    }
}

/// Subscribed to the node: prints its events as they happen.
struct Printer {
    out: Out,
}

impl Actor for Printer {
    type Context = Context<Self>;
}

impl StreamHandler<Update> for Printer {
    fn handle(&mut self, update: Update, _ctx: &mut Self::Context) {
        let event = match update {
            Update::Event(event) => event,
            Update::Lagged { missed } => {
                self.out.emit(
                    json!({"event": "lagged", "missed": missed}),
                    format!("missed {missed} events"),
                );
                return;
            }
            _ => return,
        };
        let (object, human) = match &event {
            Event::MemberJoined { id } => (
                json!({"event": "member_joined", "member": id.name, "addr": id.addr.to_string(), "generation": id.generation}),
                format!(
                    "member {} joined ({}, gen {})",
                    id.name, id.addr, id.generation
                ),
            ),
            Event::MemberStatus { id, from, to, .. } => (
                json!({"event": "member_status", "member": id.name, "generation": id.generation,
                       "from": status(*from), "to": status(*to)}),
                format!("member {} {} -> {}", id.name, status(*from), status(*to)),
            ),
            Event::MemberRestarted { old, new } => (
                json!({"event": "member_restarted", "member": new.name, "old_generation": old.generation,
                       "generation": new.generation}),
                format!(
                    "member {} restarted (gen {} -> {})",
                    new.name, old.generation, new.generation
                ),
            ),
            Event::MemberForgotten { id } => (
                json!({"event": "member_forgotten", "member": id.name, "generation": id.generation}),
                format!("member {} forgotten", id.name),
            ),
            Event::NameConflict { existing, claimant } => (
                json!({"event": "name_conflict", "member": existing.name, "addr": existing.addr.to_string(),
                       "claimant_addr": claimant.addr.to_string()}),
                format!(
                    "name conflict: {} at {} and {}",
                    existing.name, existing.addr, claimant.addr
                ),
            ),
            Event::KeyChanged {
                owner,
                key,
                value,
                version,
            } => (
                json!({"event": "key_changed", "owner": owner.name, "key": key, "value": text(value), "version": version}),
                format!("{}/{} = {} (v{})", owner.name, key, text(value), version),
            ),
            Event::KeyDeleted { owner, key } => (
                json!({"event": "key_deleted", "owner": owner.name, "key": key}),
                format!("{}/{} deleted", owner.name, key),
            ),
            Event::Joined => (json!({"event": "joined"}), "joined the cluster".to_owned()),
            Event::LeaveAnnounced => (
                json!({"event": "leave_announced"}),
                "leave announced".to_owned(),
            ),
            other => (json!({"event": format!("{other:?}")}), format!("{other:?}")),
        };
        self.out.emit(object, human);
    }
}

/// `--metrics ADDR`: the `metrics` facade's Prometheus recorder, rendered
/// by a tiny HTTP/1.1 handler on a tokio listener (the exporter's own
/// listener would pull in hyper; this is all a scrape needs).
mod metrics_http {
    use std::net::SocketAddr;
    use std::time::Duration;

    use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Longest request head read; a scrape's is a few hundred bytes.
    const MAX_REQUEST: usize = 8 * 1024;
    /// A client that sends no full request head in this time is dropped.
    const READ_TIMEOUT: Duration = Duration::from_secs(5);

    /// Installs the recorder and serves it at `addr`; returns the bound
    /// address.
    pub async fn serve(addr: SocketAddr) -> Result<SocketAddr, Box<dyn std::error::Error>> {
        let handle = PrometheusBuilder::new().install_recorder()?;
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let upkeep = handle.clone();
        // Summaries are rolled by upkeep; the recorder has no thread of its own.
        actix::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                upkeep.run_upkeep();
            }
        });
        actix::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        actix::spawn(answer(stream, handle.clone()));
                    }
                    Err(error) => tracing::warn!(%error, "metrics listener accept failed"),
                }
            }
        });
        Ok(bound)
    }

    /// Answers one connection: `GET /metrics` gets the rendered text,
    /// anything else a 404; then closes it.
    async fn answer(mut stream: TcpStream, handle: PrometheusHandle) {
        let mut head = Vec::with_capacity(512);
        let mut buf = [0u8; 1024];
        let read = tokio::time::timeout(READ_TIMEOUT, async {
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            true
        })
        .await;
        if read != Ok(true) {
            return;
        }
        let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
        let mut words = line.split(|b| *b == b' ');
        let (method, path) = (words.next(), words.next());
        let (status, body) = if method == Some(&b"GET"[..]) && path == Some(&b"/metrics"[..]) {
            ("200 OK", handle.render())
        } else {
            ("404 Not Found", "not found\n".to_owned())
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    }
}
