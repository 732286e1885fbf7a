//! Exactly-once consume-transform-produce across failures (issue 15): three `rafka-node`
//! processes, replication factor 3 for the topics, `__consumer_offsets` and
//! `__transaction_state` (min.insync.replicas 2). confluent-kafka (librdkafka) copies 20,000
//! records from a 3-partition input to a 3-partition output as an exactly-once application
//! does (`tests/python/txn.py copy`: read_committed consumer, one transaction per batch with
//! send_offsets_to_transaction), while the transaction coordinator is SIGKILLed once and then
//! the leader of output partitions once, each restarted before the next kill. The output, read
//! committed, must hold every input record exactly once, each partition in its input
//! partition's order; the input's aborted transaction must not be copied.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::FindCoordinatorRequest;
use serde_json::Value;

use crate::support::cluster::{ProcessCluster, kafka_call, partition_leaders, topic_metadata};
use crate::support::run::{Running, confluent_kafka_available, rafka, run, spawn_to_file};
use crate::support::wait_until_blocking;
use crate::support::wire::str;

const INPUT: &str = "eos-in";
const OUTPUT: &str = "eos-out";
const PARTITIONS: i32 = 3;
const RECORDS: usize = 20_000;
/// Aborted records written to each input partition before the input.
const ABORTED: usize = 50;
/// Records per transaction of the copier.
const BATCH: &str = "100";
const GROUP: &str = "eos";
/// The copier's transactional id (`txn.py`: `copy-<group>`).
const TRANSACTIONAL_ID: &str = "copy-eos";
const STEP: Duration = Duration::from_secs(120);
/// The copier's whole run.
const RUN: Duration = Duration::from_secs(900);
/// Node flags: one partition each for `__transaction_state` and `__consumer_offsets`, so the
/// coordinators are easy to find; restarted nodes get them again.
const FLAGS: [&str; 8] = [
    "--transaction-state-partitions",
    "1",
    "--offsets-topic-partitions",
    "1",
    "--default-replication-factor",
    "3",
    "--min-insync-replicas",
    "2",
];

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/txn.py")
}

/// The Kafka addresses of the running nodes, comma-separated.
fn bootstrap(cluster: &ProcessCluster) -> String {
    let addrs: Vec<String> = cluster
        .running()
        .into_iter()
        .map(|i| cluster.kafka(i).to_string())
        .collect();
    addrs.join(",")
}

/// Runs `txn.py` with `args` to completion; its stdout is one JSON object.
fn txn_py(cluster: &ProcessCluster, args: &[&str]) -> Value {
    let mut command = Command::new("python3");
    command.arg(script()).arg(bootstrap(cluster)).args(args);
    let out = run(command, b"", STEP);
    serde_json::from_slice(&out.ok()).expect("txn.py prints JSON")
}

/// Every partition's values of `topic` under `isolation`, by partition.
fn dump(cluster: &ProcessCluster, topic: &str, isolation: &str) -> BTreeMap<i32, Vec<String>> {
    let partitions = PARTITIONS.to_string();
    let report = txn_py(cluster, &["dump", topic, &partitions, isolation]);
    (0..PARTITIONS)
        .map(|p| {
            let values = report["partitions"][p.to_string()]
                .as_array()
                .unwrap_or_else(|| panic!("partition {p} of {topic}: {report}"))
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            (p, values)
        })
        .collect()
}

/// Creates `topic` and waits until every node serves it with every replica in sync.
fn create(cluster: &ProcessCluster, topic: &str) {
    cluster.create_topic_on_all(STEP, topic, PARTITIONS);
    wait_in_sync(cluster, &[topic]);
}

/// Waits until every running node says each partition of `topics` has a leader and 3 in-sync
/// replicas.
fn wait_in_sync(cluster: &ProcessCluster, topics: &[&str]) {
    for i in cluster.running() {
        let addr = cluster.kafka(i);
        for topic in topics {
            wait_until_blocking(STEP, &format!("{topic} fully in sync on node {i}"), || {
                let m = topic_metadata(addr, topic).map_err(|e| e.to_string())?;
                let t = m.topics.first().ok_or("no topic")?;
                let ok = t.partitions.len() == PARTITIONS as usize
                    && t.partitions
                        .iter()
                        .all(|p| p.error_code == 0 && p.leader_id.0 >= 0 && p.isr_nodes.len() == 3);
                if ok {
                    Ok(())
                } else {
                    Err(format!("{:?}", t.partitions))
                }
            });
        }
    }
}

/// The node id coordinating the copier's transactional id, as the node at `addr` says.
fn transaction_coordinator(addr: SocketAddr) -> Result<i32, String> {
    let request = FindCoordinatorRequest::default()
        .with_key(str(TRANSACTIONAL_ID))
        .with_key_type(1);
    let response =
        kafka_call(addr, &request, 3, Duration::from_secs(15)).map_err(|e| e.to_string())?;
    match ResponseError::try_from_code(response.error_code) {
        None => Ok(response.node_id.0),
        Some(e) => Err(format!("{e:?}")),
    }
}

/// The process index of node id `node`.
fn index_of(cluster: &ProcessCluster, node: i64) -> usize {
    cluster
        .running()
        .into_iter()
        .find(|&i| cluster.identity(i).1 == node)
        .unwrap_or_else(|| panic!("no running node has id {node}"))
}

/// The copier running in the background, its stdout in a file.
struct Copier {
    running: Option<Running>,
    out: PathBuf,
}

impl Copier {
    fn start(cluster: &ProcessCluster, dir: &Path) -> Copier {
        let out = dir.join("copier.out");
        let file = std::fs::File::create(&out).unwrap();
        let mut command = Command::new("python3");
        command
            .arg(script())
            .arg(bootstrap(cluster))
            .args(["copy", INPUT, OUTPUT, GROUP, BATCH]);
        Copier {
            running: Some(spawn_to_file(command, b"", file)),
            out,
        }
    }

    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Input offsets committed so far, all partitions together.
    fn progress(&self) -> i64 {
        self.lines()
            .iter()
            .filter_map(|l| l["progress"].as_i64())
            .max()
            .unwrap_or(0)
    }

    /// Waits until at least `at` input offsets are committed; returns how many are. Panics if
    /// the copier exits first.
    fn wait_for(&mut self, at: i64, what: &str) -> i64 {
        wait_until_blocking(RUN, what, || {
            let progress = self.progress();
            if progress >= at {
                return Ok(progress);
            }
            let running = self.running.as_mut().unwrap();
            if running.exited() {
                let output = self.running.take().unwrap().wait(STEP);
                panic!(
                    "the copier exited at {progress} of {at}: {}",
                    output.stderr_text()
                );
            }
            Err(format!("{progress} of {at} input offsets committed"))
        })
    }

    /// Waits for the copier to finish; its last line.
    fn finish(mut self) -> Value {
        let output = self.running.take().unwrap().wait(RUN);
        let stderr = output.stderr_text();
        assert!(output.status.success(), "the copier failed: {stderr}");
        self.lines()
            .into_iter()
            .rev()
            .find(|l| l.get("copied").is_some())
            .unwrap_or_else(|| panic!("the copier printed no result; stderr: {stderr}"))
    }
}

#[test]
fn process_consume_transform_produce_is_exactly_once_across_coordinator_and_leader_kills() {
    if !confluent_kafka_available() {
        return;
    }
    let started = Instant::now();
    let mut cluster = ProcessCluster::replicated(INPUT, PARTITIONS, &FLAGS[..4]);
    create(&cluster, OUTPUT);

    // The input: an aborted transaction on every partition, then the records to copy.
    let aborted = ABORTED.to_string();
    let partitions = PARTITIONS.to_string();
    let seeded = txn_py(&cluster, &["seed-aborted", INPUT, &partitions, &aborted]);
    assert_eq!(seeded["aborted"], ABORTED * PARTITIONS as usize);
    let input: String = (0..RECORDS).map(|i| format!("k{i}:v{i}\n")).collect();
    let args = [
        "--kafka",
        &bootstrap(&cluster),
        "produce",
        INPUT,
        "--key-separator",
        ":",
        "--acks",
        "all",
    ];
    run(rafka(&args), input.as_bytes(), STEP).ok();
    let input = dump(&cluster, INPUT, "read_committed");
    let total: usize = input.values().map(Vec::len).sum();
    assert_eq!(total, RECORDS, "the input read committed");
    assert!(input.values().flatten().all(|v| v.starts_with('v')));
    // Input offsets to commit: the records and the aborted transaction's records and markers.
    let end = i64::try_from(RECORDS + PARTITIONS as usize * (ABORTED + 1)).unwrap();
    eprintln!("input ready after {:?}", started.elapsed());

    let tmp = tempfile::tempdir().unwrap();
    let mut copier = Copier::start(&cluster, tmp.path());

    // SIGKILL the transaction coordinator a fifth of the way in.
    copier.wait_for(end / 5, "a fifth of the input copied");
    let coordinator = wait_until_blocking(STEP, "the transaction coordinator", || {
        transaction_coordinator(cluster.kafka(0))
    });
    let victim = index_of(&cluster, i64::from(coordinator));
    let killed_at = copier.progress();
    cluster.kill(victim);
    eprintln!("SIGKILLed the transaction coordinator (node {victim}) at {killed_at} of {end}");
    let resumed = copier.wait_for(
        killed_at + end / 10,
        "copying on after the coordinator's kill",
    );
    let survivor = cluster.running()[0];
    let p2p = cluster.node(survivor).ready.p2p.clone();
    cluster.restart(victim, &p2p, &FLAGS);
    wait_in_sync(&cluster, &[INPUT, OUTPUT]);
    eprintln!("node {victim} back in sync; {resumed} of {end} committed before its restart");

    // SIGKILL the leader of output partitions (not the transaction coordinator now, if another
    // node leads one).
    let coordinator = wait_until_blocking(STEP, "the transaction coordinator", || {
        transaction_coordinator(cluster.kafka(survivor))
    });
    let leaders = partition_leaders(cluster.kafka(survivor), OUTPUT).unwrap();
    let leader = leaders
        .iter()
        .map(|&(_, _, leader)| leader)
        .find(|&leader| leader != coordinator)
        .unwrap_or(leaders[0].2);
    let victim = index_of(&cluster, i64::from(leader));
    let killed_at = copier.progress();
    assert!(
        killed_at < end,
        "the copier finished before the second kill"
    );
    cluster.kill(victim);
    eprintln!("SIGKILLed output leader node {victim} at {killed_at} of {end}");
    copier.wait_for(
        (killed_at + end / 10).min(end),
        "copying on after the leader's kill",
    );
    let survivor = cluster.running()[0];
    let p2p = cluster.node(survivor).ready.p2p.clone();
    cluster.restart(victim, &p2p, &FLAGS);

    let report = copier.finish();
    eprintln!("copier: {report}");
    assert_eq!(report["done"], true, "the copier committed the whole input");
    let output = dump(&cluster, OUTPUT, "read_committed");
    for (partition, values) in &input {
        let expected: Vec<String> = values.iter().map(|v| format!("{v}-copied")).collect();
        let got = &output[partition];
        if *got != expected {
            let mut seen = BTreeMap::<&str, usize>::new();
            for v in got {
                *seen.entry(v.as_str()).or_default() += 1;
            }
            let duplicated = seen.values().filter(|&&n| n > 1).count();
            let missing = expected
                .iter()
                .filter(|v| !seen.contains_key(v.as_str()))
                .count();
            panic!(
                "output partition {partition}: {} records for {} inputs, {duplicated} \
                 duplicated, {missing} missing",
                got.len(),
                expected.len()
            );
        }
    }
    let uncommitted: usize = dump(&cluster, OUTPUT, "read_uncommitted")
        .values()
        .map(Vec::len)
        .sum();
    eprintln!(
        "exactly once: {RECORDS} records in {} transactions ({} aborted, {} producers); \
         {uncommitted} records in the output read uncommitted; test took {:?}",
        report["transactions"],
        report["aborted"],
        report["producers"],
        started.elapsed()
    );
}
