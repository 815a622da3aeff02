//! Several `quic_node` processes on 127.0.0.1, for what only real processes
//! show: one is killed with SIGKILL and declared dead, one is frozen with
//! SIGSTOP and resumed, after which it is Live everywhere again and
//! convicts nobody, one is restarted with a new generation; a key written
//! before all that and one written after are present everywhere at the end.
//! (A freeze of five probe periods looks like a crash to probing, so the
//! frozen node may be suspected or convicted meanwhile; it refutes on
//! waking.)
//!
//! **Finding the binary.** Cargo exposes `CARGO_BIN_EXE_*` for binaries
//! only, not examples. `cargo test` builds every example next to the test
//! binaries (`<target>/debug/examples/`, dev profile), so the test looks
//! there (from its own path, so `CARGO_TARGET_DIR` is honoured) and uses
//! that binary if it is newer than every source it is built from. Otherwise
//! (the test run alone with `cargo test --test multiprocess`, which builds
//! no example, or a stale binary) it runs `cargo build --example quic_node`
//! itself, same target dir (cargo releases its build lock before running
//! tests). Set `QUIC_NODE_BIN` to use a given binary instead.
//!
//! Timings: 200 ms gossip interval, acceptable pause 2 s (the SIGSTOP lasts
//! 1 s), suspect timeout 1 s. The whole test takes about 15–25 s.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

const DEADLINE: Duration = Duration::from_secs(40);
const INTERVAL_MS: u64 = 200;
const ACCEPTABLE_PAUSE_MS: u64 = 2000;
const SUSPECT_TIMEOUT_MS: u64 = 1000;
const PAUSE: Duration = Duration::from_millis(1000);

/// What the test learned from one process's JSON lines.
#[derive(Default)]
struct Seen {
    /// The latest `members` answer: name → (status, generation).
    members: Option<BTreeMap<String, (String, u64)>>,
    /// The latest `get` answer per key: owner → value.
    gets: BTreeMap<String, BTreeMap<String, String>>,
    /// Every line, in order.
    events: Vec<Json>,
    /// Generation announced at start.
    generation: Option<u64>,
}

struct Proc {
    name: String,
    child: Child,
    /// `None` once closed (end of input for the node).
    stdin: Option<ChildStdin>,
    seen: Arc<Mutex<Seen>>,
}

impl Proc {
    fn command(&mut self, line: &str) {
        // A dead or frozen process may not read; the test notices elsewhere.
        if let Some(stdin) = &mut self.stdin {
            let _ = writeln!(stdin, "{line}");
            let _ = stdin.flush();
        }
    }

    fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().expect("seen lock"))
    }

    fn status_of(&self, member: &str) -> Option<(String, u64)> {
        self.seen(|s| s.members.as_ref().and_then(|m| m.get(member).cloned()))
    }
}

/// Kills every process still running when the test ends, pass or fail.
struct Cluster {
    bin: PathBuf,
    certs: PathBuf,
    procs: Vec<Proc>,
    addrs: BTreeMap<String, SocketAddr>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.procs {
            if matches!(p.child.try_wait(), Ok(Some(_))) {
                continue;
            }
            // A frozen process must be resumed to die.
            let _ = Command::new("kill")
                .args(["-CONT", &p.child.id().to_string()])
                .stderr(Stdio::null())
                .status();
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.certs);
    }
}

impl Cluster {
    fn spawn(&mut self, name: &str, seed: &str) -> usize {
        let mut child = Command::new(&self.bin)
            .args(["run", "--name", name, "--json"])
            .args(["--listen", &self.addrs[name].to_string()])
            .args(["--seed", &self.addrs[seed].to_string()])
            .arg("--certs")
            .arg(&self.certs)
            .args(["--cluster", "mp"])
            .args(["--interval-ms", &INTERVAL_MS.to_string()])
            .args(["--acceptable-pause-ms", &ACCEPTABLE_PAUSE_MS.to_string()])
            .args(["--suspect-timeout-ms", &SUSPECT_TIMEOUT_MS.to_string()])
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn quic_node");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(event) = serde_json::from_str::<Json>(&line) else {
                    eprintln!("not json: {line}");
                    continue;
                };
                record(&mut sink.lock().expect("seen lock"), event);
            }
        });
        self.procs.push(Proc {
            name: name.to_owned(),
            child,
            stdin: Some(stdin),
            seen,
        });
        self.procs.len() - 1
    }

    fn index(&self, name: &str) -> usize {
        self.procs
            .iter()
            .rposition(|p| p.name == name)
            .expect("known node")
    }

    /// The processes expected to be running (not killed).
    fn running(&mut self, except: &[&str]) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, p) in self.procs.iter_mut().enumerate() {
            if !except.contains(&p.name.as_str()) && matches!(p.child.try_wait(), Ok(None)) {
                out.push(i);
            }
        }
        out
    }

    /// Asks `nodes` for `commands` until `cond` holds on every one of them.
    fn wait_all(
        &mut self,
        what: &str,
        nodes: &[usize],
        commands: &[String],
        cond: impl Fn(&Proc) -> bool,
    ) {
        let start = Instant::now();
        loop {
            if nodes.iter().all(|&i| cond(&self.procs[i])) {
                eprintln!("[{:>6.2}s] {what}", start.elapsed().as_secs_f64());
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "timed out after {DEADLINE:?} waiting until {what}"
            );
            for &i in nodes {
                for c in commands {
                    self.procs[i].command(c);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn record(seen: &mut Seen, event: Json) {
    match event["event"].as_str() {
        Some("members") => {
            let members = event["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| {
                    let name = m["name"].as_str()?.to_owned();
                    Some((
                        name,
                        (m["status"].as_str()?.to_owned(), m["generation"].as_u64()?),
                    ))
                })
                .collect();
            seen.members = Some(members);
        }
        Some("get") => {
            if let (Some(key), Some(values)) = (event["key"].as_str(), event["values"].as_object())
            {
                let values = values
                    .iter()
                    .filter_map(|(o, v)| Some((o.clone(), v.as_str()?.to_owned())))
                    .collect();
                seen.gets.insert(key.to_owned(), values);
            }
        }
        Some("started") => seen.generation = event["generation"].as_u64(),
        _ => {}
    }
    seen.events.push(event);
}

fn free_port() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind a free udp port");
    s.local_addr().expect("local addr")
}

/// The `quic_node` example binary; see the module docs.
fn quic_node_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("QUIC_NODE_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("test binary path");
    // <target>/<profile>/deps/multiprocess-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary sits in <profile>/deps");
    let bin = profile_dir
        .join("examples")
        .join(format!("quic_node{}", std::env::consts::EXE_SUFFIX));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = [
        "examples/quic_node.rs",
        "Cargo.toml",
        "src",
        "gossip-core",
        "gossip-quic",
    ];
    let newest = sources
        .iter()
        .filter_map(|s| newest_mtime(&root.join(s)))
        .max();
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    if let (Some(built), Some(newest)) = (built, newest)
        && built > newest
    {
        return bin;
    }
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug");
    let target = profile_dir
        .parent()
        .expect("profile dir sits in the target dir");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--example", "quic_node"])
        .env("CARGO_TARGET_DIR", target);
    match profile {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        other => {
            build.args(["--profile", other]);
        }
    }
    build.current_dir(env!("CARGO_MANIFEST_DIR"));
    let status = build.status().expect("run cargo build --example quic_node");
    assert!(status.success(), "cargo build --example quic_node failed");
    assert!(bin.exists(), "{} not found after building", bin.display());
    bin
}

/// The newest modification time of a file, or of any file under a directory.
fn newest_mtime(path: &Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| newest_mtime(&e.path()))
        .max()
}

fn has_event(p: &Proc, pred: impl Fn(&Json) -> bool) -> bool {
    p.seen(|s| s.events.iter().any(pred))
}

#[test]
fn kill_pause_restart_over_quic() {
    let bin = quic_node_bin();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let certs = std::env::temp_dir().join(format!(
        "gossip-multiprocess-{}-{nanos}",
        std::process::id()
    ));
    let names = ["a", "b", "c", "d", "e"];
    let status = Command::new(&bin)
        .args([
            "certs",
            "--cluster",
            "mp",
            "--nodes",
            &names.join(","),
            "--out",
        ])
        .arg(&certs)
        .stdout(Stdio::null())
        .status()
        .expect("run quic_node certs");
    assert!(status.success(), "quic_node certs failed");

    let addrs = names.iter().map(|n| (n.to_string(), free_port())).collect();
    let mut c = Cluster {
        bin,
        certs,
        procs: Vec::new(),
        addrs,
    };
    c.spawn("a", "b");
    for n in &names[1..] {
        c.spawn(n, "a");
    }
    let members = ["members".to_owned()];
    let all = c.running(&[]);
    c.wait_all("all 5 nodes see 5 live members", &all, &members, |p| {
        names
            .iter()
            .all(|n| p.status_of(n).is_some_and(|(s, _)| s == "live"))
    });

    // A key written before the faults.
    let a = c.index("a");
    c.procs[a].command("set before 1");

    // SIGKILL e: everyone declares it dead.
    let e = c.index("e");
    c.procs[e].child.kill().expect("SIGKILL e");
    let _ = c.procs[e].child.wait();
    let killed_at = Instant::now();
    let rest = c.running(&["e"]);
    c.wait_all(
        "everyone declares the SIGKILLed e dead",
        &rest,
        &members,
        |p| p.status_of("e").is_some_and(|(s, _)| s == "dead"),
    );
    eprintln!(
        "SIGKILL detected in {:.2}s",
        killed_at.elapsed().as_secs_f64()
    );

    // SIGSTOP d for 1 s (five probe periods; less than the heartbeat
    // detector's acceptable pause), then SIGCONT.
    let d = c.index("d");
    let pid = c.procs[d].child.id().to_string();
    let stopped = Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .expect("kill -STOP");
    assert!(stopped.success());
    std::thread::sleep(PAUSE); // the fault itself: a process frozen for a fixed time
    let resumed = Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .expect("kill -CONT");
    assert!(resumed.success());
    c.wait_all(
        "everyone sees the resumed d live (and knows a/before)",
        &rest,
        &["members".to_owned(), "get a before".to_owned()],
        |p| {
            p.status_of("d").is_some_and(|(s, _)| s == "live")
                && p.seen(|s| {
                    s.gets
                        .get("before")
                        .and_then(|v| v.get("a"))
                        .is_some_and(|v| v == "1")
                })
        },
    );

    // Restart c: killed, started again on its address with a new generation.
    let ci = c.index("c");
    let old_generation = c.procs[ci]
        .seen(|s| s.generation)
        .expect("c announced its generation");
    c.procs[ci].child.kill().expect("SIGKILL c");
    let _ = c.procs[ci].child.wait();
    let ci = c.spawn("c", "a");
    let start = Instant::now();
    let new_generation = loop {
        if let Some(g) = c.procs[ci].seen(|s| s.generation) {
            break g;
        }
        assert!(start.elapsed() < DEADLINE, "restarted c never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        new_generation > old_generation,
        "a restart takes a higher generation"
    );
    let rest = c.running(&["e"]);
    c.wait_all(
        "everyone sees c's new generation live",
        &rest,
        &members,
        |p| {
            p.status_of("c")
                .is_some_and(|(s, g)| s == "live" && g == new_generation)
        },
    );

    // A key written after all that; both keys everywhere.
    let b = c.index("b");
    c.procs[b].command("set after 2");
    let gets = ["get before".to_owned(), "get after".to_owned()];
    c.wait_all(
        "every running node holds a/before=1 and b/after=2",
        &rest,
        &gets,
        |p| {
            p.seen(|s| {
                s.gets
                    .get("before")
                    .and_then(|v| v.get("a"))
                    .is_some_and(|v| v == "1")
                    && s.gets
                        .get("after")
                        .and_then(|v| v.get("b"))
                        .is_some_and(|v| v == "2")
            })
        },
    );

    // The frozen node, on waking, convicted no one but e (the stall guard).
    let dp = &c.procs[c.index("d")];
    assert!(
        !has_event(dp, |ev| ev["event"] == "member_status"
            && ev["to"] == "dead"
            && ev["member"] != "e"),
        "the resumed d convicted a live peer"
    );

    // Clean stop on end of input.
    let running = c.running(&[]);
    for &i in &running {
        c.procs[i].stdin = None;
    }
    let start = Instant::now();
    for i in running {
        loop {
            match c.procs[i].child.try_wait() {
                Ok(Some(status)) => {
                    assert!(status.success(), "{} exited with {status}", c.procs[i].name);
                    break;
                }
                _ => {
                    assert!(
                        start.elapsed() < DEADLINE,
                        "{} did not stop on end of input",
                        c.procs[i].name
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        assert!(has_event(&c.procs[i], |ev| ev["event"] == "stopped"));
    }
}

/// One GET over a fresh connection; the status line and the body.
fn http_get(addr: SocketAddr, path: &str) -> Option<(String, String)> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nhost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

/// The value of the series `name` whose labels include every one of `labels`.
fn series(body: &str, name: &str, labels: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// `quic_node run --metrics ADDR` serves Prometheus text at /metrics: a
/// two-node cluster's membership and traffic show up in a real scrape.
#[test]
fn metrics_are_served_over_http() {
    let bin = quic_node_bin();
    let (a_addr, b_addr) = (free_port(), free_port());
    let spawn = |name: &str, listen: SocketAddr, extra: &[String]| {
        Command::new(&bin)
            .args([
                "run",
                "--name",
                name,
                "--json",
                "--insecure-dev-mode-no-authentication",
            ])
            .args(["--listen", &listen.to_string()])
            .args(["--cluster", "mp-metrics", "--interval-ms", "100"])
            .args(extra)
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn quic_node")
    };
    let mut procs = Cluster {
        bin: bin.clone(),
        certs: std::env::temp_dir().join("gossip-metrics-test-has-no-certs"),
        procs: Vec::new(),
        addrs: BTreeMap::new(),
    };
    let mut a = spawn("a", a_addr, &["--metrics".into(), "127.0.0.1:0".into()]);
    let stdout = a.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(event) = serde_json::from_str::<Json>(&line) else {
                continue;
            };
            if event["event"] == "metrics"
                && let Some(addr) = event["addr"].as_str().and_then(|a| a.parse().ok())
            {
                let _ = tx.send(addr);
            }
        }
    });
    let b = spawn("b", b_addr, &["--seed".into(), a_addr.to_string()]);
    for (name, mut child) in [("a", a), ("b", b)] {
        let stdin = child.stdin.take();
        procs.procs.push(Proc {
            name: name.to_owned(),
            child,
            stdin,
            seen: Arc::default(),
        });
    }
    let metrics = rx
        .recv_timeout(DEADLINE)
        .expect("a announces its metrics address");
    let start = Instant::now();
    let body = loop {
        if let Some((status, body)) = http_get(metrics, "/metrics") {
            assert_eq!(status, "HTTP/1.1 200 OK");
            let live = series(&body, "gossip_members", &["node=\"a\"", "status=\"live\""]);
            let heard = series(&body, "gossip_messages_in_total", &["node=\"a\""]);
            if live == Some(2.0) && heard.is_some_and(|n| n > 0.0) {
                break body;
            }
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for a scrape showing both members live"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for name in [
        "gossip_bytes_out_total",
        "gossip_keys",
        "gossip_subscribers",
    ] {
        assert!(
            series(&body, name, &["node=\"a\""]).is_some(),
            "{name} missing from:\n{body}"
        );
    }
    let (status, _) = http_get(metrics, "/other").expect("the server answers");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    // `procs` kills both processes when dropped.
    procs.procs.iter_mut().for_each(|p| p.stdin = None);
}
