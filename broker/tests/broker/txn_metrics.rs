//! The transaction metrics a `rafka-node` process exports on `/metrics` (docs/operations.md,
//! "Transactions"), driven by confluent-kafka's transactional producer
//! (`tests/python/txn_metrics.py`): commits and aborts, open transactions, a fenced producer, a
//! timeout, and the last stable offset lag of a partition held back by an open transaction.
//!
//! Skips with a message when confluent-kafka is missing, and fails instead when
//! `RAFKA_REQUIRE_EXTERNAL_CLIENTS=1` (CI).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::cluster::create_topic;
use crate::support::process::NodeProcess;
use crate::support::run::{confluent_kafka_available, run};
use crate::support::wait_until_blocking;

const TIMEOUT: Duration = Duration::from_secs(120);
/// The coordinator publishes its gauges and counters every 5 s.
const METRICS_DEADLINE: Duration = Duration::from_secs(30);

fn step(node: &NodeProcess, args: &[&str]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/txn_metrics.py");
    let mut command = Command::new("python3");
    command
        .arg(script)
        .arg(node.ready.kafka.to_string())
        .args(args);
    let stdout = run(command, b"", TIMEOUT).ok();
    let report: Value = serde_json::from_slice(&stdout)
        .unwrap_or_else(|e| panic!("txn_metrics.py {args:?}: not JSON ({e})"));
    assert_eq!(report["errors"], Value::Array(vec![]), "{args:?}");
}

/// The value of the sample `series` (name and labels, exactly as rendered) in a /metrics text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Waits until every `(series, value)` of `expected` is in the node's /metrics.
fn wait_for(node: &NodeProcess, what: &str, expected: &[(&str, f64)]) {
    wait_until_blocking(METRICS_DEADLINE, what, || {
        let text = node.http_get("/metrics").map_err(|e| e.to_string())?;
        for (series, value) in expected {
            let got = sample(&text, series);
            if got != Some(*value) {
                return Err(format!("{series} is {got:?}, not {value}"));
            }
        }
        Ok(())
    });
}

fn lso_lag(topic: &str) -> String {
    format!("rafka_partition_last_stable_offset_lag{{topic=\"{topic}\",partition=\"0\"}}")
}

fn high_watermark(topic: &str) -> String {
    format!("rafka_partition_high_watermark{{topic=\"{topic}\",partition=\"0\"}}")
}

#[test]
fn process_metrics_count_commits_aborts_fences_timeouts_and_the_lso_lag() {
    if !confluent_kafka_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), &["--transaction-state-partitions", "2"]);
    for topic in ["m-done", "m-open"] {
        let (code, message) = create_topic(node.ready.kafka, topic, 1, Duration::from_secs(10))
            .expect("CreateTopics answered");
        assert_eq!(code, 0, "creating {topic}: {message:?}");
    }
    let commits = "rafka_txn_ended_total{outcome=\"commit\"}";
    let aborts = "rafka_txn_ended_total{outcome=\"abort\"}";
    let open = "rafka_txn_open_transactions";
    let fenced = "rafka_txn_fenced_producers_total";
    let timeouts = "rafka_txn_timeouts_total";
    let (lag_done, lag_open) = (lso_lag("m-done"), lso_lag("m-open"));
    let (hw_done, hw_open) = (high_watermark("m-done"), high_watermark("m-open"));

    // One commit (two records and a marker) and one abort (a record and a marker) on m-done;
    // one transaction left open with a record on m-open, which holds its LSO at 0.
    step(&node, &["commit-abort", "m-done", "m-a"]);
    step(&node, &["leave-open", "m-open", "m-b", "600000"]);
    wait_for(
        &node,
        "a commit, an abort and an open transaction",
        &[
            (commits, 1.0),
            (aborts, 1.0),
            (open, 1.0),
            (fenced, 0.0),
            (timeouts, 0.0),
            (&hw_done, 5.0),
            (&lag_done, 0.0),
            (&hw_open, 1.0),
            (&lag_open, 1.0),
        ],
    );

    // A newer producer with the open transaction's id fences the old one and aborts it: its
    // marker releases the LSO.
    step(&node, &["fence", "m-b"]);
    wait_for(
        &node,
        "the open transaction fenced and aborted",
        &[
            (commits, 1.0),
            (aborts, 2.0),
            (open, 0.0),
            (fenced, 1.0),
            (timeouts, 0.0),
            (&hw_open, 2.0),
            (&lag_open, 0.0),
        ],
    );

    // A transaction left open past its 2 s timeout is aborted by the coordinator.
    step(&node, &["leave-open", "m-open", "m-c", "2000"]);
    wait_for(
        &node,
        "the transaction aborted at its timeout",
        &[
            (aborts, 3.0),
            (open, 0.0),
            (timeouts, 1.0),
            (fenced, 1.0),
            (&hw_open, 4.0),
            (&lag_open, 0.0),
        ],
    );
}
