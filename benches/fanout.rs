//! Fan-out settings swept in the deterministic simulator, beside the
//! idealized push-pull model of DESIGN.md §7: the figures people need to
//! pick a fan-out and an interval.
//!
//! ```text
//! cargo bench --bench fanout -- --quick        # 100 and 1,000 nodes, < 2 min
//! cargo bench --bench fanout                   # 100, 1,000, 10,000 nodes: many hours
//!                                              # and ~8 GB a 10,000-node run; see BENCHMARKS.md
//! cargo bench --bench fanout -- --quick --write-docs   # also BENCHMARKS.md, docs/plots/
//! cargo bench --bench fanout -- --nodes 100,1000 --loss 0,0.1 --seeds 3
//! ```
//!
//! Grid: nodes × fan-out (`Config::fanout`, the periodic exchange's; eager
//! push keeps its own fan-outs) × loss × eager push on and off, several
//! seeds per cell (`scenario::rumor`: join, one write, its spread, traffic
//! during it and idle after it). Crash detection (`scenario::failure(Kind::Crash)`)
//! runs on a subset: loss 0 and eager on, every fan-out (in `--quick`, fan-out
//! 3 only at 1,000 nodes). Writes `fanout.csv`, `fanout.md` and SVG plots to
//! `$CARGO_TARGET_DIR/gossip-bench/` (or `target/gossip-bench/`), and prints
//! where they are. Options: `--quick`, `--nodes N,N`, `--fanout K,K`,
//! `--loss P,P`, `--seeds S`, `--jobs J` (cells run in parallel, results are
//! the same for any J), `--write-docs`. Unknown arguments (cargo's
//! `--bench`) are ignored.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant as WallClock};

use gossip::mem::sim::model::{self, ModelReport};
use gossip::mem::sim::scenario::{
    self, Before, Kind, RumorReport, ScenarioConfig, ScenarioReport, percentile,
};
use plotters::prelude::*;

/// jemalloc, as in examples/simulate.rs: glibc's malloc spent 8-16 % of a
/// 10,000-node run in its free lists (BENCHMARKS.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Rounds over which traffic during the write is averaged (as `simulate`).
const WINDOW: f64 = 10.0;
/// The simulator's gossip interval (`Config::default()`), for ms ↔ rounds.
const INTERVAL_MS: f64 = 1000.0;

/// What to run, from the command line.
#[derive(Clone, Debug)]
struct Args {
    quick: bool,
    write_docs: bool,
    nodes: Vec<usize>,
    fanouts: Vec<usize>,
    losses: Vec<f64>,
    seeds: u64,
    jobs: usize,
}

/// Parses `args` by hand: criterion's harness convention passes `--bench`
/// and cargo may pass filters; anything unknown is ignored.
fn parse(args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        quick: false,
        write_docs: false,
        nodes: Vec::new(),
        fanouts: (1..=6).collect(),
        losses: vec![0.0, 0.1, 0.3],
        seeds: 0,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let mut args = args.peekable();
    fn list<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<Vec<T>, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        v.split(',')
            .map(|x| {
                x.trim()
                    .parse()
                    .map_err(|_| format!("{flag}: {x:?} is not a number"))
            })
            .collect()
    }
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--write-docs" => a.write_docs = true,
            "--nodes" => a.nodes = list("--nodes", args.next())?,
            "--fanout" => a.fanouts = list("--fanout", args.next())?,
            "--loss" => a.losses = list("--loss", args.next())?,
            "--seeds" => a.seeds = list::<u64>("--seeds", args.next())?[0],
            "--jobs" => a.jobs = list::<usize>("--jobs", args.next())?[0].max(1),
            _ => {}
        }
    }
    if a.nodes.is_empty() {
        a.nodes = if a.quick {
            vec![100, 1000]
        } else {
            vec![100, 1000, 10_000]
        };
    }
    if a.seeds == 0 {
        a.seeds = if a.quick { 2 } else { 3 };
    }
    if a.fanouts.contains(&0) || a.nodes.iter().any(|&n| n < 2) {
        return Err("fan-outs must be ≥ 1 and clusters ≥ 2 nodes".into());
    }
    if a.losses.iter().any(|l| !(0.0..1.0).contains(l)) {
        return Err("loss must be in [0, 1)".into());
    }
    Ok(a)
}

/// One setting of the grid.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cell {
    nodes: usize,
    fanout: usize,
    loss: f64,
    eager: bool,
}

/// One unit of work for a worker thread.
#[derive(Clone, Copy, Debug)]
enum Task {
    Rumor(Cell, u64),
    Crash(Cell, u64),
}

/// What a task produced.
enum Outcome {
    Rumor(RumorReport),
    Crash(Option<ScenarioReport>),
}

/// Whether `--quick` leaves `c` out: at 1,000 nodes and more it keeps
/// loss 0, eager off at every fan-out (the periodic path: rounds vs n, the
/// knee) and eager on at fan-out 3 only. A 1,000-node run takes 7-25 s
/// here (fan-out 1 to 6), ~110 s at 30 % loss, so the whole grid at
/// 1,000 nodes would not fit in 2 minutes.
fn quick_skips(c: &Cell) -> bool {
    c.nodes >= 1000 && (c.loss > 0.0 || (c.eager && c.fanout != 3))
}

/// The seeds a cell of `nodes` runs: `--quick` runs one at 1,000 nodes
/// and more.
fn seeds_for(args: &Args, nodes: usize) -> u64 {
    if args.quick && nodes >= 1000 {
        1
    } else {
        args.seeds
    }
}

/// The cells and tasks of a run, the costliest first so that parallel
/// workers finish together.
fn plan(args: &Args) -> (Vec<Cell>, Vec<Task>) {
    let mut cells = Vec::new();
    for &nodes in &args.nodes {
        for &loss in &args.losses {
            for eager in [true, false] {
                for &fanout in &args.fanouts {
                    let c = Cell {
                        nodes,
                        fanout,
                        loss,
                        eager,
                    };
                    if !(args.quick && quick_skips(&c)) {
                        cells.push(c);
                    }
                }
            }
        }
    }
    let mut tasks = Vec::new();
    for c in &cells {
        for s in 0..seeds_for(args, c.nodes) {
            tasks.push(Task::Rumor(*c, 1 + s));
            if crash_cell(args, c) {
                tasks.push(Task::Crash(*c, 1 + s));
            }
        }
    }
    let cost = |t: &Task| match t {
        Task::Rumor(c, _) | Task::Crash(c, _) => (c.nodes, (c.loss * 100.0) as u64, c.fanout),
    };
    tasks.sort_by_key(|t| std::cmp::Reverse(cost(t)));
    (cells, tasks)
}

/// Whether crash detection runs for `c`: loss 0 and eager on (it does not
/// depend on eager push, and the full grid's crash runs would double its
/// time); in `--quick`, only fan-out 3 at 1,000 nodes and more.
fn crash_cell(args: &Args, c: &Cell) -> bool {
    c.loss == 0.0 && c.eager && !(args.quick && c.nodes >= 1000 && c.fanout != 3)
}

fn run_task(t: Task) -> Outcome {
    match t {
        Task::Rumor(c, seed) => {
            let mut config = scenario::config(seed, c.fanout, c.loss);
            config.proto.eager = c.eager;
            Outcome::Rumor(scenario::rumor(config, c.nodes, WINDOW, &mut |_, _| {}))
        }
        Task::Crash(c, seed) => {
            let mut sim = scenario::config(seed, c.fanout, 0.0);
            sim.proto.eager = c.eager;
            let cfg = ScenarioConfig {
                nodes: c.nodes,
                loss: c.loss,
                duration: 100.0,
                before: Before::Nothing,
                delay: Duration::ZERO,
                full_checks: false,
                sim,
            };
            Outcome::Crash(scenario::failure(Kind::Crash, &cfg))
        }
    }
}

/// Runs `tasks` on `jobs` threads; results in task order, so the output
/// does not depend on `jobs`.
fn run_all(tasks: &[Task], jobs: usize) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new((0..tasks.len()).map(|_| None).collect());
    let wall = WallClock::now();
    std::thread::scope(|s| {
        for _ in 0..jobs.min(tasks.len()).max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&t) = tasks.get(i) else { break };
                    let started = WallClock::now();
                    let out = run_task(t);
                    let k = done.fetch_add(1, Ordering::Relaxed) + 1;
                    let (what, c, seed) = match t {
                        Task::Rumor(c, s) => ("rumor", c, s),
                        Task::Crash(c, s) => ("crash", c, s),
                    };
                    eprintln!(
                        "[{k}/{}] {what} n={} fanout {} loss {} eager {} seed {seed}: {:.1} s (total {:.0} s)",
                        tasks.len(),
                        c.nodes,
                        c.fanout,
                        c.loss,
                        on_off(c.eager),
                        started.elapsed().as_secs_f64(),
                        wall.elapsed().as_secs_f64()
                    );
                    results.lock().expect("no worker panicked")[i] = Some(out);
                }
            });
        }
    });
    results
        .into_inner()
        .expect("no worker panicked")
        .into_iter()
        .map(|o| o.expect("every task ran"))
        .collect()
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// A cell's figures, over its seeds.
#[derive(Clone, Debug)]
struct Row {
    cell: Cell,
    seeds: usize,
    /// Seeds in which every node got the key.
    spread: usize,
    model_rounds: f64,
    rumor_rounds: f64,
    /// The 99th percentile of every node's delivery time, seeds pooled.
    rumor_rounds_p99: f64,
    rumor_ms: f64,
    rumor_ms_p99: f64,
    copies: f64,
    msgs_write: f64,
    bytes_write: f64,
    msgs_idle: f64,
    bytes_idle: f64,
    suspicions: f64,
    /// Pooled, sorted delivery times (ms) of every seed.
    delivery_ms: Vec<f64>,
    /// Crash runs: seeds run, mean and max detection rounds (seeds that
    /// detected), first suspicion, false positives summed.
    crash_seeds: usize,
    detection: Option<f64>,
    detection_max: Option<f64>,
    first_suspicion: Option<f64>,
    false_positives: usize,
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| s / n as f64)
}

fn rows(cells: &[Cell], tasks: &[Task], outcomes: &[Outcome], models: &[ModelReport]) -> Vec<Row> {
    cells
        .iter()
        .map(|c| {
            let mine = |want_crash: bool| {
                tasks
                    .iter()
                    .zip(outcomes)
                    .filter(move |(t, _)| match t {
                        Task::Rumor(x, _) => !want_crash && x == c,
                        Task::Crash(x, _) => want_crash && x == c,
                    })
                    .map(|(_, o)| o)
            };
            let rumors: Vec<&RumorReport> = mine(false)
                .filter_map(|o| match o {
                    Outcome::Rumor(r) => Some(r),
                    Outcome::Crash(_) => None,
                })
                .collect();
            let crashes: Vec<&ScenarioReport> = mine(true)
                .filter_map(|o| match o {
                    Outcome::Crash(Some(r)) => Some(r),
                    _ => None,
                })
                .collect();
            let crash_seeds = mine(true).count();
            let mut delivery_ms: Vec<f64> = rumors
                .iter()
                .flat_map(|r| r.delivery_ms.iter().copied())
                .collect();
            delivery_ms.sort_by(f64::total_cmp);
            let p99 = percentile(&delivery_ms, 0.99).unwrap_or(f64::INFINITY);
            let m = |f: fn(&RumorReport) -> f64| mean(rumors.iter().map(|r| f(r))).unwrap_or(0.0);
            let detections: Vec<f64> = crashes.iter().filter_map(|r| r.detection_rounds).collect();
            Row {
                cell: *c,
                seeds: rumors.len(),
                spread: rumors.iter().filter(|r| r.spread).count(),
                model_rounds: models
                    .iter()
                    .find(|x| x.nodes == c.nodes && x.fanout == c.fanout)
                    .map_or(f64::NAN, |x| x.mean_rounds),
                rumor_rounds: m(|r| r.rumor_rounds),
                rumor_rounds_p99: p99 / INTERVAL_MS,
                rumor_ms: m(|r| r.rumor_ms),
                rumor_ms_p99: p99,
                copies: m(|r| r.payload_copies_per_node),
                msgs_write: m(|r| r.msgs_per_node_per_round),
                bytes_write: m(|r| r.bytes_per_node_per_round),
                msgs_idle: m(|r| r.idle_msgs_per_node_per_round),
                bytes_idle: m(|r| r.idle_bytes_per_node_per_round),
                suspicions: m(|r| r.suspicions_per_node_per_round),
                delivery_ms,
                crash_seeds,
                detection: mean(detections.iter().copied()),
                detection_max: detections.iter().copied().reduce(f64::max),
                first_suspicion: mean(crashes.iter().filter_map(|r| r.first_suspicion_rounds)),
                false_positives: crashes.iter().map(|r| r.false_positives).sum(),
            }
        })
        .collect()
}

/// Where the output goes: `$CARGO_TARGET_DIR/gossip-bench`, else the
/// workspace's `target/gossip-bench`.
fn out_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("gossip-bench")
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(String::new, |x| format!("{x:.digits$}"))
}

fn csv(rows: &[Row]) -> String {
    let mut s = String::from(
        "nodes,fanout,loss,eager,seeds,spread_seeds,model_rounds,rumor_rounds_mean,rumor_rounds_p99,ratio_to_model,rumor_ms_mean,rumor_ms_p99,payload_copies_per_node,msgs_per_node_per_round_write,bytes_per_node_per_round_write,msgs_per_node_per_round_idle,bytes_per_node_per_round_idle,false_suspicions_per_node_per_round,crash_seeds,detection_rounds_mean,detection_rounds_max,first_suspicion_rounds_mean,false_positives\n",
    );
    for r in rows {
        let c = r.cell;
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{:.3},{:.4},{:.4},{:.4},{:.2},{:.2},{:.3},{:.2},{:.0},{:.2},{:.0},{:.4},{},{},{},{},{}",
            c.nodes,
            c.fanout,
            c.loss,
            on_off(c.eager),
            r.seeds,
            r.spread,
            r.model_rounds,
            r.rumor_rounds,
            r.rumor_rounds_p99,
            r.rumor_rounds / r.model_rounds,
            r.rumor_ms,
            r.rumor_ms_p99,
            r.copies,
            r.msgs_write,
            r.bytes_write,
            r.msgs_idle,
            r.bytes_idle,
            r.suspicions,
            r.crash_seeds,
            opt(r.detection, 3),
            opt(r.detection_max, 3),
            opt(r.first_suspicion, 3),
            if r.crash_seeds > 0 {
                r.false_positives.to_string()
            } else {
                String::new()
            },
        );
    }
    s
}

/// Thousands separated by commas, for tables people read.
fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "∞".into();
    }
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if x < 0.0 { format!("-{out}") } else { out }
}

fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| n | fan-out | loss | eager | seeds (spread) | model rounds | rumor rounds mean / p99 | ÷ model | rumor ms mean / p99 | copies / node | msgs / node / round write (idle) | bytes / node / round write (idle) | crash detected, rounds mean (max) | false positives |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let c = r.cell;
        let crash = if r.crash_seeds > 0 {
            format!(
                "{} ({}) of {} seeds",
                opt(r.detection, 2),
                opt(r.detection_max, 2),
                r.crash_seeds
            )
        } else {
            "—".into()
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} ({}) | {:.2} | {:.2} / {:.2} | {:.2} | {:.1} / {:.1} | {:.2} | {:.1} ({:.1}) | {} ({}) | {crash} | {} |",
            thousands(c.nodes as f64),
            c.fanout,
            c.loss,
            on_off(c.eager),
            r.seeds,
            r.spread,
            r.model_rounds,
            r.rumor_rounds,
            r.rumor_rounds_p99,
            r.rumor_rounds / r.model_rounds,
            r.rumor_ms,
            r.rumor_ms_p99,
            r.copies,
            r.msgs_write,
            r.msgs_idle,
            thousands(r.bytes_write),
            thousands(r.bytes_idle),
            if r.crash_seeds > 0 {
                r.false_positives.to_string()
            } else {
                "—".into()
            },
        );
    }
    s
}

/// The palette of the plots' series, by index.
fn color(i: usize) -> RGBColor {
    const C: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    C[i % C.len()]
}

/// One line of a plot.
struct Line {
    label: String,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    dashed: bool,
}

/// Axes of a plot: title, labels, whether x is logarithmic.
struct Axes<'a> {
    title: &'a str,
    x: &'a str,
    y: &'a str,
    log_x: bool,
    log_y: bool,
    /// Where the legend goes: the corner the data leave empty.
    legend: SeriesLabelPosition,
}

/// Draws `lines` to `path` as an SVG.
fn plot(path: &Path, axes: &Axes<'_>, lines: &[Line]) -> Result<(), Box<dyn std::error::Error>> {
    let pts = lines.iter().flat_map(|l| l.points.iter()).filter(|p| {
        p.0.is_finite()
            && p.1.is_finite()
            && (!axes.log_x || p.0 > 0.0)
            && (!axes.log_y || p.1 > 0.0)
    });
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        return Ok(()); // nothing to draw
    }
    if !axes.log_y {
        y0 = y0.min(0.0);
    }
    let pad = |lo: f64, hi: f64, log: bool| {
        if log {
            (lo / 1.5, hi * 1.5)
        } else {
            let d = (hi - lo).max(1e-9) * 0.05;
            (lo - if lo == 0.0 { 0.0 } else { d }, hi + d)
        }
    };
    let (x0, x1) = pad(x0, x1, axes.log_x);
    let (y0, y1) = pad(y0, y1, axes.log_y);
    let root = SVGBackend::new(path, (820, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut b = ChartBuilder::on(&root);
    b.caption(axes.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(70);
    // Four combinations of linear and log axes: each is its own type.
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(axes.x)
                .y_desc(axes.y)
                .x_labels(8)
                .x_label_formatter(&|v| label(*v))
                .y_label_formatter(&|v| label(*v))
                .light_line_style(WHITE.mix(0.0))
                .draw()?;
            for l in lines {
                let style = ShapeStyle::from(&l.color).stroke_width(2);
                let points: Vec<(f64, f64)> = l
                    .points
                    .iter()
                    .copied()
                    .filter(|p| {
                        p.0.is_finite()
                            && p.1.is_finite()
                            && (!axes.log_x || p.0 > 0.0)
                            && (!axes.log_y || p.1 > 0.0)
                    })
                    .collect();
                let c = l.color;
                let anno = if l.dashed {
                    chart.draw_series(DashedLineSeries::new(points, 6, 4, style))?
                } else {
                    chart.draw_series(LineSeries::new(points, style).point_size(2))?
                };
                anno.label(l.label.clone()).legend(move |(x, y)| {
                    PathElement::new(
                        vec![(x, y), (x + 18, y)],
                        ShapeStyle::from(&c).stroke_width(2),
                    )
                });
            }
            chart
                .configure_series_labels()
                .position(axes.legend.clone())
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 12))
                .draw()?;
        }};
    }
    match (axes.log_x, axes.log_y) {
        (true, true) => draw!(b.build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())?),
        (true, false) => draw!(b.build_cartesian_2d((x0..x1).log_scale(), y0..y1)?),
        (false, true) => draw!(b.build_cartesian_2d(x0..x1, (y0..y1).log_scale())?),
        (false, false) => draw!(b.build_cartesian_2d(x0..x1, y0..y1)?),
    }
    root.present()?;
    Ok(())
}

/// An axis label: whole numbers with thousands separated, fractions to 0.1
/// (a log axis otherwise prints "1000.0" beside "900.0").
fn label(v: f64) -> String {
    if v.abs() >= 100.0 || v.fract() == 0.0 {
        thousands(v)
    } else {
        format!("{v:.1}")
    }
}

/// The size the per-setting plots (curves, CDF, bandwidth) are drawn at:
/// 1,000 nodes if it ran, else the largest.
fn focus_nodes(rows: &[Row]) -> usize {
    let sizes: Vec<usize> = rows.iter().map(|r| r.cell.nodes).collect();
    if sizes.contains(&1000) {
        1000
    } else {
        sizes.into_iter().max().unwrap_or(0)
    }
}

/// The size loss is shown at: the focus size if it ran under loss, else
/// the largest that did (`--quick` runs no loss at 1,000 nodes).
fn loss_nodes(rows: &[Row]) -> usize {
    let lossy = |n: usize| rows.iter().any(|r| r.cell.nodes == n && r.cell.loss > 0.0);
    let f = focus_nodes(rows);
    if lossy(f) {
        return f;
    }
    rows.iter()
        .map(|r| r.cell.nodes)
        .filter(|&n| lossy(n))
        .max()
        .unwrap_or(f)
}

fn find(rows: &[Row], nodes: usize, fanout: usize, loss: f64, eager: bool) -> Option<&Row> {
    rows.iter().find(|r| {
        let c = r.cell;
        c.nodes == nodes && c.fanout == fanout && c.loss == loss && c.eager == eager
    })
}

/// The share-of-nodes curve of pooled delivery times: (ms, share holding).
fn cdf(r: &Row) -> Vec<(f64, f64)> {
    let n = r.delivery_ms.len().max(1) as f64;
    // At most ~200 points: every k-th node.
    let step = (r.delivery_ms.len() / 200).max(1);
    let mut pts: Vec<(f64, f64)> = r
        .delivery_ms
        .iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0 || i + 1 == r.delivery_ms.len())
        .map(|(i, &t)| (t.max(0.1), (i + 1) as f64 / n))
        .collect();
    pts.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    pts
}

/// The plot files written, as (file name, what it shows).
fn plots(dir: &Path, rows: &[Row], models: &[ModelReport], args: &Args) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut emit = |name: &str, what: &str, axes: Axes<'_>, lines: Vec<Line>| {
        if lines.iter().all(|l| l.points.is_empty()) {
            return;
        }
        match plot(&dir.join(name), &axes, &lines) {
            Ok(()) => out.push((name.to_owned(), what.to_owned())),
            Err(e) => eprintln!("plot {name}: {e}"),
        }
    };
    // Rounds vs n per fan-out, eager off (the periodic path), loss 0, and
    // the model beside it.
    let mut lines = Vec::new();
    for (i, &k) in args.fanouts.iter().enumerate() {
        let sim: Vec<(f64, f64)> = args
            .nodes
            .iter()
            .filter_map(|&n| find(rows, n, k, 0.0, false))
            .map(|r| (r.cell.nodes as f64, r.rumor_rounds))
            .collect();
        let m: Vec<(f64, f64)> = models
            .iter()
            .filter(|m| m.fanout == k)
            .map(|m| (m.nodes as f64, m.mean_rounds))
            .collect();
        lines.push(Line {
            label: format!("fan-out {k}, simulator"),
            points: sim,
            color: color(i),
            dashed: false,
        });
        lines.push(Line {
            label: format!("fan-out {k}, sync model"),
            points: m,
            color: color(i),
            dashed: true,
        });
    }
    emit(
        "rounds_vs_nodes.svg",
        "rounds until all hold one write vs cluster size, eager push off, no loss; dashed: the synchronous push-pull model",
        Axes {
            title: "Rounds to reach all nodes (eager off, loss 0) vs sync push-pull model",
            x: "nodes (log)",
            y: "rounds (gossip intervals)",
            log_x: true,
            log_y: false,
            legend: SeriesLabelPosition::UpperLeft,
        },
        lines,
    );
    // Bytes per node per round vs fan-out, per size, idle and during a write.
    let mut lines = Vec::new();
    for (i, &n) in args.nodes.iter().enumerate() {
        for (idle, dashed) in [(false, false), (true, true)] {
            let pts = args
                .fanouts
                .iter()
                .filter_map(|&k| {
                    find(rows, n, k, 0.0, true).or_else(|| find(rows, n, k, 0.0, false))
                })
                .map(|r| {
                    let b = if idle { r.bytes_idle } else { r.bytes_write };
                    (r.cell.fanout as f64, b)
                })
                .collect();
            lines.push(Line {
                label: format!(
                    "{n} nodes, {}",
                    if idle { "idle" } else { "during the write" }
                ),
                points: pts,
                color: color(i),
                dashed,
            });
        }
    }
    emit(
        "bytes_vs_fanout.svg",
        "bytes each node sends per round vs fan-out, no loss (eager on where it ran, else off); solid during the write's window, dashed idle",
        Axes {
            title: "Bytes per node per round vs fan-out (loss 0)",
            x: "fan-out",
            y: "bytes / node / round (log)",
            log_x: false,
            log_y: true,
            legend: SeriesLabelPosition::LowerRight,
        },
        lines,
    );
    let n = focus_nodes(rows);
    // Infection curves at fan-out 3, loss 0, eager on and off, model beside.
    let mut lines = Vec::new();
    for (i, eager) in [true, false].into_iter().enumerate() {
        if let Some(r) = find(rows, n, 3, 0.0, eager) {
            lines.push(Line {
                label: format!("eager {} (simulator)", on_off(eager)),
                points: cdf(r),
                color: color(i),
                dashed: false,
            });
        }
    }
    if let Some(m) = models.iter().find(|m| m.nodes == n && m.fanout == 3) {
        lines.push(Line {
            label: "sync push-pull model (round r at r × 1 s)".into(),
            points: m
                .curve
                .iter()
                .enumerate()
                .map(|(r, &s)| ((r as f64 * INTERVAL_MS).max(0.1), s))
                .collect(),
            color: color(2),
            dashed: true,
        });
    }
    emit(
        "infection_curves.svg",
        &format!(
            "share of {n} nodes holding a write over time, fan-out 3, no loss, eager push on and off, model beside"
        ),
        Axes {
            title: &format!("Share of {n} nodes holding the write (fan-out 3, loss 0)"),
            x: "ms after the write (log)",
            y: "share of nodes",
            log_x: true,
            log_y: false,
            legend: SeriesLabelPosition::LowerRight,
        },
        lines,
    );
    // Delivery-latency CDF under loss, fan-out 3, at the size the losses ran.
    let n = loss_nodes(rows);
    let mut lines = Vec::new();
    for (i, &loss) in args.losses.iter().enumerate() {
        for eager in [true, false] {
            if let Some(r) = find(rows, n, 3, loss, eager) {
                lines.push(Line {
                    label: format!("loss {loss}, eager {}", on_off(eager)),
                    points: cdf(r),
                    color: color(i),
                    dashed: !eager,
                });
            }
        }
    }
    emit(
        "latency_cdf_loss.svg",
        &format!(
            "CDF of per-node delivery latency under loss, {n} nodes, fan-out 3 (seeds pooled); dashed eager off"
        ),
        Axes {
            title: &format!("Delivery latency CDF under loss ({n} nodes, fan-out 3)"),
            x: "ms after the write (log)",
            y: "share of nodes holding it",
            log_x: true,
            log_y: false,
            legend: SeriesLabelPosition::LowerRight,
        },
        lines,
    );
    // Detection time vs n per fan-out.
    let mut lines = Vec::new();
    for (i, &k) in args.fanouts.iter().enumerate() {
        let pts: Vec<(f64, f64)> = args
            .nodes
            .iter()
            .filter_map(|&n| find(rows, n, k, 0.0, true))
            .filter_map(|r| r.detection.map(|d| (r.cell.nodes as f64, d)))
            .collect();
        lines.push(Line {
            label: format!("fan-out {k}"),
            points: pts,
            color: color(i),
            dashed: false,
        });
    }
    emit(
        "detection_vs_nodes.svg",
        "rounds from a crash until every live node holds it Dead, by cluster size and fan-out (loss 0, eager on)",
        Axes {
            title: "Crash seen Dead by all (loss 0) vs cluster size",
            x: "nodes (log)",
            y: "rounds",
            log_x: true,
            log_y: false,
            legend: SeriesLabelPosition::UpperLeft,
        },
        lines,
    );
    out
}

/// The machine the figures came from, one line.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or_else(String::new, |kb| {
            format!(", {:.0} GB RAM", kb / 1024.0 / 1024.0)
        });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default();
    let cmd = |c: &str, a: &[&str]| {
        std::process::Command::new(c)
            .args(a)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    format!(
        "{cpu}, {cores} cores{mem}; load average {load} at the start; {}; build {}",
        cmd("rustc", &["-V"]),
        cmd("git", &["rev-parse", "--short", "HEAD"])
    )
}

fn main() {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fanout: {e}");
            std::process::exit(2);
        }
    };
    let wall = WallClock::now();
    let machine = machine();
    let (cells, tasks) = plan(&args);
    eprintln!(
        "fanout: {} cells, {} runs on {} threads ({})",
        cells.len(),
        tasks.len(),
        args.jobs,
        mode(&args)
    );
    let mut models = Vec::new();
    for &n in &args.nodes {
        for &k in &args.fanouts {
            // 200 trials keep the model's standard error near 0.05 rounds.
            let trials = if n > 1000 { 50 } else { 200 };
            models.push(model::push_pull(n, k, trials, 1));
        }
    }
    let outcomes = run_all(&tasks, args.jobs);
    let rows = rows(&cells, &tasks, &outcomes, &models);
    let elapsed = wall.elapsed();
    let dir = out_dir();
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("fanout: cannot create {}: {e}", dir.display());
        std::process::exit(1);
    }
    let table = markdown(&rows);
    let summary = Summary::new(&args, &rows, &models, elapsed, &machine);
    let md = format!("{}\n{table}", summary.header());
    for (name, body) in [("fanout.csv", csv(&rows)), ("fanout.md", md.clone())] {
        if let Err(e) = std::fs::write(dir.join(name), body) {
            eprintln!("fanout: cannot write {name}: {e}");
            std::process::exit(1);
        }
    }
    let plots = plots(&dir, &rows, &models, &args);
    println!("{md}");
    println!(
        "fanout: {} runs in {:.1} s; wrote {}/fanout.csv, fanout.md and {} plots: {}",
        tasks.len(),
        elapsed.as_secs_f64(),
        dir.display(),
        plots.len(),
        plots
            .iter()
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if args.write_docs {
        match write_docs(&dir, &plots, &summary, &table) {
            Ok(p) => println!("fanout: updated {p}"),
            Err(e) => {
                eprintln!("fanout: --write-docs: {e}");
                std::process::exit(1);
            }
        }
    }
}

/// Which sweep `a` is: quick, the full grid, or a subset of it.
fn mode(a: &Args) -> &'static str {
    let full = a.nodes == [100, 1000, 10_000]
        && a.fanouts == [1, 2, 3, 4, 5, 6]
        && a.losses == [0.0, 0.1, 0.3]
        && a.seeds >= 3;
    match (a.quick, full) {
        (true, _) => "quick mode",
        (false, true) => "the full sweep",
        (false, false) => "a subset of the full sweep",
    }
}

/// What the run was and what its data say, for the docs.
struct Summary<'a> {
    args: &'a Args,
    rows: &'a [Row],
    models: &'a [ModelReport],
    elapsed: Duration,
    machine: &'a str,
}

impl<'a> Summary<'a> {
    fn new(
        args: &'a Args,
        rows: &'a [Row],
        models: &'a [ModelReport],
        elapsed: Duration,
        machine: &'a str,
    ) -> Self {
        Summary {
            args,
            rows,
            models,
            elapsed,
            machine,
        }
    }

    /// The command line that reproduces this run.
    fn command(&self) -> String {
        let a = self.args;
        let mut s = String::from("cargo bench --bench fanout --");
        if a.quick {
            s.push_str(" --quick");
        }
        let join = |v: Vec<String>| v.join(",");
        let _ = write!(
            s,
            " --nodes {} --fanout {} --loss {} --seeds {}",
            join(a.nodes.iter().map(|n| n.to_string()).collect()),
            join(a.fanouts.iter().map(|n| n.to_string()).collect()),
            join(a.losses.iter().map(|n| n.to_string()).collect()),
            a.seeds
        );
        s
    }

    fn header(&self) -> String {
        let a = self.args;
        let mut s = format!(
            "Run: `{}` ({}), {:.0} s wall on {} threads. Machine: {}.\n\n",
            self.command(),
            mode(a),
            self.elapsed.as_secs_f64(),
            a.jobs,
            self.machine
        );
        s.push_str(
            "Each run: nodes join through one seed, one key is written once membership converged (a cold eager tree), its spread is followed; traffic is averaged over the 10 rounds after the write (\"write\") and the 10 after those (\"idle\"). Rounds are 1 s gossip intervals; links 1–5 ms; fan-out is `Config::fanout` (the periodic exchange; eager push keeps `eager_fanout` 1, `lazy_fanout` 12). p99 is over every node's delivery time, seeds pooled. \"÷ model\" divides the simulator's mean rounds by the synchronous push-pull model's (DESIGN.md §7, 200 trials, 50 at 10,000 nodes). Crash detection runs only at loss 0 with eager on",
        );
        if a.quick {
            s.push_str(
    ", and at 1,000 nodes only at fan-out 3; at 1,000 nodes quick mode runs one seed, loss 0 only, and eager push on only at fan-out 3",
            );
        }
        s.push_str(".\n");
        s
    }

    /// "Choosing fan-out and interval", from the measured rows only.
    fn advice(&self) -> String {
        let mut s = String::new();
        let n = focus_nodes(self.rows);
        let get = |k, loss, eager| find(self.rows, n, k, loss, eager);
        // The knee: the smallest fan-out after which every further peer
        // saves under half a round (eager off: the periodic path), while
        // each adds about the same bytes.
        let ks = &self.args.fanouts;
        let rounds: Vec<(usize, f64)> = ks
            .iter()
            .filter_map(|&k| get(k, 0.0, false).map(|r| (k, r.rumor_rounds)))
            .collect();
        let saves: Vec<(usize, f64)> = rounds
            .windows(2)
            .map(|w| (w[1].0, w[0].1 - w[1].1))
            .collect();
        let knee = (0..saves.len())
            .find(|&i| saves[i..].iter().all(|&(_, d)| d < 0.5))
            .map(|i| rounds[i].0);
        if !rounds.is_empty() {
            let list = rounds
                .iter()
                .map(|(k, r)| format!("{k}: {r:.2}"))
                .collect::<Vec<_>>()
                .join(", ");
            let saved = saves
                .iter()
                .map(|(k, d)| format!("{k}: {d:.2}"))
                .collect::<Vec<_>>()
                .join(", ");
            let model = self
                .models
                .iter()
                .filter(|m| m.nodes == n)
                .map(|m| format!("{}: {:.1}", m.fanout, m.mean_rounds))
                .collect::<Vec<_>>()
                .join(", ");
            let verdict = match knee {
                Some(k) => {
                    format!("Past fan-out **{k}** each further peer saves less than half a round")
                }
                None => "No knee in this range: some further peer still saves half a round or more"
                    .to_owned(),
            };
            let _ = writeln!(
                s,
                "- **The knee of rounds vs fan-out** ({} nodes, eager off, loss 0: the periodic path alone): rounds until all hold a write, by fan-out, {list}; rounds saved by the last peer added, {saved}. {verdict}, while each adds about the same bytes (below). The synchronous model needs {model} rounds: real nodes fire at random phases and a message takes milliseconds, so news hops several times per interval and the simulator beats the model.",
                thousands(n as f64)
            );
        }
        // What loss costs.
        let k = if ks.contains(&3) { 3 } else { ks[0] };
        let mut loss_parts = Vec::new();
        let ln = loss_nodes(self.rows);
        for &loss in &self.args.losses {
            if let (Some(on), Some(off)) = (
                find(self.rows, ln, k, loss, true),
                find(self.rows, ln, k, loss, false),
            ) {
                loss_parts.push(format!(
                    "loss {loss}: {:.0} ms (p99 {:.0} ms) eager on, {:.2} rounds (p99 {:.2}) eager off, {:.1} msgs and {} bytes / node / round, {:.2} false suspicions / node / round (eager on)",
                    on.rumor_ms,
                    on.rumor_ms_p99,
                    off.rumor_rounds,
                    off.rumor_rounds_p99,
                    on.msgs_write,
                    thousands(on.bytes_write),
                    on.suspicions
                ));
            }
        }
        if loss_parts.len() > 1 {
            let _ = writeln!(
                s,
                "- **What loss costs** ({} nodes, fan-out {k}, until the last node holds the write): {}.",
                thousands(ln as f64),
                loss_parts.join("; ")
            );
        } else {
            let _ = writeln!(
                s,
                "- **What loss costs**: this run measured no lossy cell at fan-out {k} with eager push on and off."
            );
        }
        // What eager push buys.
        if let (Some(on), Some(off)) = (get(k, 0.0, true), get(k, 0.0, false)) {
            let _ = writeln!(
                s,
                "- **What eager push buys** ({} nodes, fan-out {k}, loss 0): the last node holds a write after {:.0} ms (p99 {:.0} ms) with eager push, {:.0} ms ({:.2} rounds) without: {:.0}× sooner, for {:.2} payload copies per node against {:.2}, and {} against {} bytes / node / round during the write.",
                thousands(n as f64),
                on.rumor_ms,
                on.rumor_ms_p99,
                off.rumor_ms,
                off.rumor_rounds,
                off.rumor_ms / on.rumor_ms,
                on.copies,
                off.copies,
                thousands(on.bytes_write),
                thousands(off.bytes_write)
            );
        }
        // Bandwidth per setting.
        let bw: Vec<String> = ks
            .iter()
            .filter_map(|&k| get(k, 0.0, true).or_else(|| get(k, 0.0, false)))
            .map(|r| {
                format!(
                    "{}: {} idle, {} during a write",
                    r.cell.fanout,
                    thousands(r.bytes_idle),
                    thousands(r.bytes_write)
                )
            })
            .collect();
        if !bw.is_empty() {
            // How much the rounds from the write on cost over the idle ones.
            let ratio = ks
                .iter()
                .filter_map(|&k| get(k, 0.0, true).or_else(|| get(k, 0.0, false)))
                .filter(|r| r.bytes_idle > 0.0)
                .map(|r| r.bytes_write / r.bytes_idle)
                .fold(0.0, f64::max);
            let _ = writeln!(
                s,
                "- **Bandwidth per setting** ({} nodes, loss 0; bytes each node sends per round, by fan-out): {}. The ten rounds from the write on cost up to {ratio:.2}× the ten after them (idle). Per second that is these figures ÷ the interval in seconds.",
                thousands(n as f64),
                bw.join("; ")
            );
        }
        // Detection, by size and fan-out.
        for &size in &self.args.nodes {
            let det: Vec<String> = self
                .rows
                .iter()
                .filter(|r| r.cell.nodes == size && r.detection.is_some())
                .map(|r| format!("{}: {}", r.cell.fanout, opt(r.detection, 2)))
                .collect();
            if det.is_empty() {
                continue;
            }
            let fp: usize = self
                .rows
                .iter()
                .filter(|r| r.cell.nodes == size)
                .map(|r| r.false_positives)
                .sum();
            let _ = writeln!(
                s,
                "- **Crash detection** ({} nodes, loss 0; rounds until every live node holds the crashed one Dead, by fan-out): {}; {fp} false positives in all.",
                thousands(size as f64),
                det.join(", ")
            );
        }
        if let (Some(on), Some(off)) = (get(k, 0.0, true), get(k, 0.0, false)) {
            let _ = writeln!(
                s,
                "- **Choosing the interval** (every run here used 1 s): with eager push the last node held the write after {:.0} ms with 1–5 ms links, far below one interval; without it, after {:.2} intervals ({:.1} s at 1 s; {:.2} s at 200 ms if the rounds stay the same, which this run did not measure). Idle bandwidth per second is the idle bytes per round ÷ the interval ({} B/s per node at 1 s and fan-out {k}; five times that at 200 ms), and detection time is its rounds × the interval.",
                on.rumor_ms,
                off.rumor_rounds,
                off.rumor_rounds,
                off.rumor_rounds * 0.2,
                thousands(on.bytes_idle)
            );
        }
        s
    }
}

/// Splices the table, plots, machine and advice into BENCHMARKS.md
/// between the fan-out markers, copies the plots to `docs/plots/`.
fn write_docs(
    dir: &Path,
    plots: &[(String, String)],
    summary: &Summary<'_>,
    table: &str,
) -> Result<String, String> {
    const BEGIN: &str = "<!-- fanout:begin -->";
    const END: &str = "<!-- fanout:end -->";
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let plot_dir = root.join("docs/plots");
    std::fs::create_dir_all(&plot_dir).map_err(|e| format!("{}: {e}", plot_dir.display()))?;
    for (p, _) in plots {
        std::fs::copy(dir.join(p), plot_dir.join(p)).map_err(|e| format!("copy {p}: {e}"))?;
    }
    let mut body = String::new();
    let _ = writeln!(
        body,
        "{BEGIN}\n<!-- Generated by `cargo bench --bench fanout -- --write-docs`; edits here are overwritten. -->\n"
    );
    let _ = writeln!(body, "{}", summary.header());
    let _ = writeln!(
        body,
        "### Choosing fan-out and interval\n\n{}",
        summary.advice()
    );
    let _ = writeln!(body, "### Plots\n");
    for (p, what) in plots {
        let _ = writeln!(body, "- [{p}](docs/plots/{p}): {what}");
    }
    let _ = writeln!(body);
    for (p, _) in plots.iter().take(2) {
        let _ = writeln!(body, "![{p}](docs/plots/{p})\n");
    }
    let _ = writeln!(body, "### Every cell\n\n{table}\n{END}");
    let path = root.join("BENCHMARKS.md");
    let doc = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let new = match (doc.find(BEGIN), doc.find(END)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{}{}", &doc[..b], body.trim_end(), &doc[e + END.len()..])
        }
        _ => format!(
            "{}\n## Fan-out sweep (issue 15)\n\n{}\n",
            doc.trim_end(),
            body.trim_end()
        ),
    };
    std::fs::write(&path, new).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path.display().to_string())
}
