//! Mesh benchmarks on one machine: clusters of `rafka-node` processes on loopback (OS-assigned
//! ports, no mDNS, data dirs under a temporary directory), timed from the outside.
//!
//! For each cluster size N (`--nodes`), `--reps` times, on a fresh cluster:
//!
//! 1. **cold start**: spawn N nodes with `--bootstrap-expect N` (the others join through the
//!    first one's address) until every node printed its ready line (the metadata log formed and
//!    the node registered), and until every node's `GET /cluster` lists all N `alive`, each with
//!    its node id, and the metadata log holds all N (voters + learners);
//! 2. once every node has seen 10 heartbeats of every other (a warm failure detector), **SIGKILL
//!    the metadata leader**: the time until it is `dead` on every survivor, and until the first
//!    CreateTopics through a survivor succeeds (an attempt is started every 100 ms, round robin
//!    over the survivors, each on its own connection: the failover time);
//! 3. **SIGTERM** a survivor other than the new leader: the time until it is `left` on every other
//!    survivor.
//!
//! Then for each size in `--load-nodes` and replication factor in `--load-rf`, `--load-reps`
//! times: **heartbeat gaps idle vs under produce load**: a topic with two partitions led by each
//! node, `--load-secs` idle, then as long under `rafka bench produce` (unlimited rate, 100-byte
//! records, acks=1, two producers) over the mesh (with a replication factor above 1, followers
//! also fetch from the leaders over the mesh); each window is measured with every node's
//! `rafka_mesh_heartbeat_gap_seconds` histogram (`/metrics`, see `rafka_mesh::metrics`), while
//! `/cluster` is polled for any member not alive.
//!
//! Times are from the signal (or the first spawn) to the first poll that shows the state (`/cluster`
//! is polled every 50 ms per node), so they include up to one poll period. Quantiles of heartbeat
//! gaps are bucket bounds (upper bounds).
//!
//! Build and run (release; `rafka-node` and `rafka` are taken from the same target directory):
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p rafka-broker --example mesh_bench -- --nodes 3,5,10 --reps 5
//! ```
//!
//! Every process it starts is killed by its PID when it is done with it, and on SIGINT, SIGTERM
//! or SIGHUP; the temporary directory is removed.

#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code)]

// The broker tests' process harness; this benchmark uses only part of it.
#[allow(dead_code)]
#[path = "../tests/broker/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;
use support::cluster::{
    ClusterView, POLL, ProcessCluster, READY_TIMEOUT, cluster_view, create_topic, http_get,
    partition_leaders, wait_exit,
};
use support::mesh_metrics::{GapWindow, MeshSample};
use support::process::workspace_binary;
use support::run::{rafka, spawn};
use support::wait_until_blocking;

/// Heartbeats every node must have seen of every other before a failure is timed.
const WARM_HEARTBEATS: u64 = 10;
/// Bound of every step; a step that takes longer fails the benchmark.
const STEP: Duration = Duration::from_secs(60);
/// How often a failover attempt (CreateTopics) is started.
const ATTEMPT_EVERY: Duration = Duration::from_millis(100);

/// Mesh benchmarks: cold start, failure detection, metadata failover, heartbeats under load.
#[derive(Debug, Parser)]
struct Args {
    /// Cluster sizes for cold start, failure detection and failover.
    #[arg(long, value_delimiter = ',', default_value = "3,5,10")]
    nodes: Vec<usize>,
    /// Repetitions per size.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Cluster sizes for heartbeat gaps idle vs under produce load (empty: none).
    #[arg(long, value_delimiter = ',', default_value = "3")]
    load_nodes: Vec<usize>,
    /// Repetitions per load size.
    #[arg(long, default_value_t = 3)]
    load_reps: usize,
    /// Replication factors of the loaded topic.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    load_rf: Vec<i16>,
    /// Seconds of each idle and each loaded window.
    #[arg(long, default_value_t = 20)]
    load_secs: u64,
}

fn main() {
    let args = Args::parse();
    // SAFETY: still single-threaded; nothing else reads the environment concurrently.
    let root = unsafe { bench_root() };
    cleanup_on_signal(root.clone());
    let _root = RemoveOnDrop(root);
    let node_bin = workspace_binary("rafka-node");
    print_machine(&node_bin);

    let mut lifecycles: BTreeMap<usize, Vec<Lifecycle>> = BTreeMap::new();
    for &n in &args.nodes {
        for rep in 0..args.reps {
            let result = lifecycle(&node_bin, n);
            println!("N={n} rep {rep}: {result}");
            lifecycles.entry(n).or_default().push(result);
        }
    }
    let mut loads: BTreeMap<(usize, i16), Vec<LoadResult>> = BTreeMap::new();
    for &n in args.load_nodes.iter().filter(|&&n| n > 0) {
        for &rf in args
            .load_rf
            .iter()
            .filter(|&&rf| rf > 0 && rf as usize <= n)
        {
            for rep in 0..args.load_reps {
                let length = Duration::from_secs(args.load_secs);
                let result = heartbeats_under_load(&node_bin, n, rf, length);
                println!("N={n} RF={rf} load rep {rep}: {result}");
                loads.entry((n, rf)).or_default().push(result);
            }
        }
    }
    print_summary(&lifecycles, &loads);
    println!("load average at the end: {}", load_average());
}

// -------------------------------------------------------------------------------------------------
// Cold start, failure detection, failover

/// One repetition on a fresh cluster.
#[derive(Debug)]
struct Lifecycle {
    /// Until every node printed its ready line.
    ready: Duration,
    /// Until every node sees all N alive with node ids, and the metadata log holds all N.
    converged: Duration,
    /// SIGKILL of the metadata leader → `dead` on each survivor (slowest survivor).
    dead: Duration,
    /// SIGKILL of the metadata leader → first successful CreateTopics through a survivor.
    failover: Duration,
    /// SIGTERM of a survivor → `left` on each other survivor (slowest), if one was left to see.
    left: Option<Duration>,
}

impl std::fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ready {} s, converged {} s, leader SIGKILL -> dead everywhere {} s, -> topic created {} s, SIGTERM -> left everywhere {}",
            secs(self.ready),
            secs(self.converged),
            secs(self.dead),
            secs(self.failover),
            self.left.map_or("-".into(), |d| format!("{} s", secs(d)))
        )
    }
}

fn converged(n: usize) -> impl Fn(&ClusterView) -> bool {
    move |view| {
        let ids: BTreeSet<i64> = view.members.iter().filter_map(|m| m.node_id).collect();
        view.members.len() == n
            && view.count("alive") == n
            && ids.len() == n
            && log_members(view) == n
    }
}

/// Voters plus learners in the metadata log, as the node behind `view` sees it.
fn log_members(view: &ClusterView) -> usize {
    ["voters", "learners"]
        .iter()
        .filter_map(|role| view.metadata.get(role)?.as_object().map(|m| m.len()))
        .sum()
}

fn lifecycle(node_bin: &Path, n: usize) -> Lifecycle {
    let started = Instant::now();
    let spawned = ProcessCluster::spawn_all(node_bin, n, &[]);
    let nodes = spawned
        .nodes
        .into_iter()
        .map(|s| Some(s.wait_ready(READY_TIMEOUT)))
        .collect();
    let ready = started.elapsed();
    let mut cluster = ProcessCluster {
        nodes,
        dirs: spawned.dirs,
        binary: node_bin.to_path_buf(),
        _root: spawned.root,
    };
    cluster.wait_all(STEP, "convergence", converged(n));
    let converged = started.elapsed();
    cluster.wait_all(STEP, "warm failure detectors", |v| {
        v.members.iter().all(|m| m.heartbeat >= WARM_HEARTBEATS)
    });

    let leader = cluster.metadata_leader().expect("a metadata leader");
    let (leader_peer, _) = cluster.identity(leader);
    let survivors: Vec<usize> = cluster
        .running()
        .into_iter()
        .filter(|&i| i != leader)
        .collect();
    let kafka: Vec<_> = survivors.iter().map(|&i| cluster.kafka(i)).collect();
    let http: Vec<_> = survivors
        .iter()
        .map(|&i| cluster.node(i).ready.http)
        .collect();
    let killed = cluster.kill(leader);
    let (dead, failover) = std::thread::scope(|scope| {
        let dead = scope.spawn(|| time_until_everywhere(&http, &leader_peer, "dead", killed));
        let failover = time_until_topic_created(&kafka, killed);
        (dead.join().unwrap(), failover)
    });

    let left = sigterm_a_follower(&mut cluster);
    Lifecycle {
        ready,
        converged,
        dead,
        failover,
        left,
    }
}

/// Polls every node in `http` until each shows `peer` in `state`; returns the slowest's time
/// since `from`.
fn time_until_everywhere(
    http: &[std::net::SocketAddr],
    peer: &str,
    state: &str,
    from: Instant,
) -> Duration {
    let mut done: BTreeMap<usize, Duration> = BTreeMap::new();
    while done.len() < http.len() {
        for (i, addr) in http.iter().enumerate() {
            if done.contains_key(&i) {
                continue;
            }
            if cluster_view(*addr).is_some_and(|v| v.state_of(peer) == Some(state)) {
                done.insert(i, from.elapsed());
            }
        }
        assert!(
            from.elapsed() < STEP,
            "{peer} not {state} everywhere after {:?}: {done:?}; last views: {:#?}",
            from.elapsed(),
            http.iter().map(|a| cluster_view(*a)).collect::<Vec<_>>()
        );
        std::thread::sleep(POLL);
    }
    done.values().copied().max().unwrap_or_default()
}

/// Starts a CreateTopics every [`ATTEMPT_EVERY`] through the survivors in turn, until one
/// succeeds; returns when the first success was answered, since `from`.
fn time_until_topic_created(kafka: &[std::net::SocketAddr], from: Instant) -> Duration {
    let (tx, rx) = mpsc::channel();
    let mut attempt = 0usize;
    loop {
        if let Ok(at) = rx.try_recv() {
            // Attempts still running finish on their own (bounded by their timeout).
            return at;
        }
        assert!(
            from.elapsed() < STEP,
            "no topic created within {STEP:?} of the failure"
        );
        let addr = kafka[attempt % kafka.len()];
        let name = format!("failover-{}-{attempt}", std::process::id());
        let tx = tx.clone();
        std::thread::spawn(move || {
            if let Ok((0, _)) = create_topic(addr, &name, 1, Duration::from_secs(10)) {
                let _ = tx.send(from.elapsed());
            }
        });
        attempt += 1;
        if let Ok(at) = rx.recv_timeout(ATTEMPT_EVERY) {
            return at;
        }
    }
}

/// SIGTERMs a running node that does not lead the metadata log; returns the time until every
/// other running node shows it `left` (`None` if no other node is left to see it).
fn sigterm_a_follower(cluster: &mut ProcessCluster) -> Option<Duration> {
    let running = cluster.running();
    if running.len() < 2 {
        return None;
    }
    let leader = cluster.metadata_leader();
    let victim = *running.iter().rev().find(|&&i| Some(i) != leader)?;
    let (peer, _) = cluster.identity(victim);
    let others: Vec<_> = running
        .iter()
        .filter(|&&i| i != victim)
        .map(|&i| cluster.node(i).ready.http)
        .collect();
    let mut node = cluster.nodes[victim].take().expect("running");
    let pid = libc::pid_t::try_from(node.child.id()).expect("pid fits");
    let signalled = Instant::now();
    // SAFETY: kill(2) on the PID of our own child, which has not been reaped.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let left = time_until_everywhere(&others, &peer, "left", signalled);
    assert!(
        wait_exit(&mut node),
        "node {victim} did not exit cleanly on SIGTERM"
    );
    Some(left)
}

// -------------------------------------------------------------------------------------------------
// Heartbeat gaps idle vs under produce load

/// One window of one repetition, all nodes' heartbeat gaps together.
#[derive(Debug, Default)]
struct WindowResult {
    gaps: GapWindow,
    /// `/cluster` sightings of a member not alive.
    not_alive: usize,
    elapsed: Duration,
}

impl std::fmt::Display for WindowResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = &self.gaps;
        write!(
            f,
            "{} gaps, mean {:.3} s, p50 <= {} s, p99 <= {} s, max <= {} s, {} above 2 s, \
             {} sightings of a member not alive; over the mesh {:.1} MiB/s in, {:.1} MiB/s out",
            g.count(),
            g.mean(),
            g.quantile_bound(0.5),
            g.quantile_bound(0.99),
            g.quantile_bound(1.0),
            g.above(2.0),
            self.not_alive,
            mib_per_s(g.p2p_bytes_in(), self.elapsed),
            mib_per_s(g.p2p_bytes_out(), self.elapsed)
        )
    }
}

#[derive(Debug)]
struct LoadResult {
    idle: WindowResult,
    loaded: WindowResult,
    load_average: String,
}

impl std::fmt::Display for LoadResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "\n  idle:   {}\n  loaded: {} (load average {})",
            self.idle, self.loaded, self.load_average
        )
    }
}

fn scrape(cluster: &ProcessCluster) -> Vec<MeshSample> {
    cluster
        .running()
        .into_iter()
        .map(|i| {
            MeshSample::parse(&http_get(cluster.node(i).ready.http, "/metrics").expect("/metrics"))
        })
        .collect()
}

/// Measures a window of `length`: heartbeat gaps on every node, `/cluster` polled throughout.
fn window(cluster: &ProcessCluster, length: Duration) -> WindowResult {
    let before = scrape(cluster);
    let started = Instant::now();
    let mut not_alive = 0;
    while started.elapsed() < length {
        for i in cluster.running() {
            if let Some(view) = cluster.view(i) {
                not_alive += view.members.len() - view.count("alive");
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let elapsed = started.elapsed();
    let after = scrape(cluster);
    let mut gaps = GapWindow::default();
    for (b, a) in before.iter().zip(&after) {
        gaps.merge(&GapWindow::new(b, a));
    }
    WindowResult {
        gaps,
        not_alive,
        elapsed,
    }
}

fn heartbeats_under_load(node_bin: &Path, n: usize, rf: i16, length: Duration) -> LoadResult {
    let rf = rf.to_string();
    let cluster =
        ProcessCluster::start_with(node_bin, n, &["--default-replication-factor", rf.as_str()]);
    cluster.wait_all(STEP, "convergence", converged(n));
    let partitions = i32::try_from(2 * n).expect("small");
    let (code, message) = create_topic(cluster.kafka(0), "load", partitions, STEP).unwrap();
    assert_eq!(code, 0, "create topic: {message:?}");
    wait_until_blocking(STEP, "every partition of `load` led", || {
        partition_leaders(cluster.kafka(0), "load").is_ok_and(|p| {
            p.len() == 2 * n && p.iter().all(|&(_, e, leader)| e == 0 && leader >= 0)
        })
    });
    cluster.wait_all(STEP, "warm failure detectors", |v| {
        v.members.iter().all(|m| m.heartbeat >= WARM_HEARTBEATS)
    });

    let idle = window(&cluster, length);
    let bootstrap = cluster.node(0).ready.p2p.clone();
    let start = scrape(&cluster);
    let load = spawn(
        rafka(&[
            "--bootstrap",
            &bootstrap,
            "bench",
            "produce",
            "--topic",
            "load",
            "--records",
            "10000000000",
            "--record-size",
            "100",
            "--acks",
            "1",
            "--producers",
            "2",
        ]),
        b"",
    );
    wait_until_blocking(
        STEP,
        "produce load reaching every node over the mesh",
        || {
            scrape(&cluster)
                .iter()
                .zip(&start)
                .all(|(now, then)| now.p2p_bytes_in > then.p2p_bytes_in + 1e6)
        },
    );
    let loaded = window(&cluster, length);
    let load_average = load_average();
    drop(load);
    LoadResult {
        idle,
        loaded,
        load_average,
    }
}

// -------------------------------------------------------------------------------------------------
// Reporting

fn mib_per_s(bytes: f64, over: Duration) -> f64 {
    bytes / (1024.0 * 1024.0) / over.as_secs_f64().max(1e-9)
}

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

/// "median / max" of some durations, in seconds.
fn median_max(mut values: Vec<Duration>) -> String {
    if values.is_empty() {
        return "-".into();
    }
    values.sort_unstable();
    let mid = values.len() / 2;
    let median = if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2
    };
    format!("{} / {}", secs(median), secs(values[values.len() - 1]))
}

fn print_summary(
    lifecycles: &BTreeMap<usize, Vec<Lifecycle>>,
    loads: &BTreeMap<(usize, i16), Vec<LoadResult>>,
) {
    println!();
    println!(
        "| nodes | reps | ready (s) | converged (s) | SIGKILL -> dead everywhere (s) | SIGKILL leader -> topic created (s) | SIGTERM -> left everywhere (s) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (n, reps) in lifecycles {
        let pick =
            |f: fn(&Lifecycle) -> Option<Duration>| median_max(reps.iter().filter_map(f).collect());
        println!(
            "| {n} | {} | {} | {} | {} | {} | {} |",
            reps.len(),
            pick(|l| Some(l.ready)),
            pick(|l| Some(l.converged)),
            pick(|l| Some(l.dead)),
            pick(|l| Some(l.failover)),
            pick(|l| l.left),
        );
    }
    println!("(each cell: median / max over the repetitions; per repetition the slowest observer)");
    if loads.is_empty() {
        return;
    }
    println!();
    println!(
        "| nodes | RF | window | gaps | mean (s) | p50 <= (s) | p99 <= (s) | max <= (s) | gaps > 2 s | member not alive | mesh in (MiB/s) | mesh out (MiB/s) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for ((n, rf), reps) in loads {
        for (name, pick) in [
            (
                "idle",
                (|r: &LoadResult| &r.idle) as fn(&LoadResult) -> &WindowResult,
            ),
            ("loaded", |r: &LoadResult| &r.loaded),
        ] {
            let mut all = GapWindow::default();
            let mut not_alive = 0;
            let mut elapsed = Duration::ZERO;
            for r in reps {
                all.merge(&pick(r).gaps);
                not_alive += pick(r).not_alive;
                elapsed += pick(r).elapsed;
            }
            println!(
                "| {n} | {rf} | {name} ({} x {} s) | {} | {:.3} | {} | {} | {} | {} | {} | {:.1} | {:.1} |",
                reps.len(),
                pick(&reps[0]).elapsed.as_secs(),
                all.count(),
                all.mean(),
                all.quantile_bound(0.5),
                all.quantile_bound(0.99),
                all.quantile_bound(1.0),
                all.above(2.0),
                not_alive,
                mib_per_s(all.p2p_bytes_in(), elapsed),
                mib_per_s(all.p2p_bytes_out(), elapsed)
            );
        }
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn print_machine(node_bin: &Path) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "machine: {cores} cores ({cpu}), load average {}; rafka-node: {}",
        load_average(),
        node_bin.display()
    );
}

// -------------------------------------------------------------------------------------------------
// Cleanup

/// Removes the benchmark directory when dropped (at the end, or when a panic unwinds; the
/// clusters inside were dropped first, killing their nodes).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Creates the directory every cluster's data dirs go under (through `TMPDIR`, which `tempfile`
/// reads) and returns it.
///
/// # Safety
/// Sets an environment variable: call it while the process is single-threaded.
unsafe fn bench_root() -> PathBuf {
    let root = std::env::temp_dir().join(format!("rafka-mesh-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root).expect("create the benchmark directory");
    // SAFETY: the caller guarantees no other thread exists yet.
    unsafe { std::env::set_var("TMPDIR", &root) };
    root
}

/// The signal received, if any (set by [`on_signal`]).
static SIGNALLED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    SIGNALLED.store(signal, Ordering::SeqCst);
}

/// On SIGINT, SIGTERM or SIGHUP: SIGKILL every child of this process by its PID (the nodes and
/// the load generator), remove `root`, and exit. A handler records the signal and a thread acts
/// on it. (Blocking the signals instead would leak into the children: they inherit the mask, and
/// a node would then never see the SIGTERM the benchmark sends it.)
fn cleanup_on_signal(root: PathBuf) {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installs an async-signal-safe handler (one atomic store); exec resets it.
        unsafe {
            libc::signal(signal, on_signal as *const () as libc::sighandler_t);
        }
    }
    std::thread::spawn(move || {
        let signal = loop {
            match SIGNALLED.load(Ordering::SeqCst) {
                0 => std::thread::sleep(Duration::from_millis(50)),
                signal => break signal,
            }
        };
        let children = children_of(std::process::id());
        for pid in &children {
            // SAFETY: kill(2) by PID on a child of this process.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        let _ = std::fs::remove_dir_all(&root);
        eprintln!(
            "signal {signal}: killed {} child process(es) {children:?}, removed {}",
            children.len(),
            root.display()
        );
        std::process::exit(128 + signal);
    });
}

/// PIDs of the live children of `parent`, from /proc.
fn children_of(parent: u32) -> Vec<libc::pid_t> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // pid (comm) state ppid ...: the command may hold spaces and parentheses.
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}
