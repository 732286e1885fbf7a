//! Stock transactional clients against `rafka-node` processes: confluent-kafka for Python
//! (librdkafka) commits and aborts across three topics, is fenced by a newer producer with the
//! same transactional id, and has a transaction left open aborted at its timeout
//! (`tests/python/txn.py`); kafka-python's transactional producer and read_committed consumer
//! do the first two (`tests/python/txn_kafka_python.py`).
//!
//! Each test skips with a message when its client is missing, and fails instead when
//! `RAFKA_REQUIRE_EXTERNAL_CLIENTS=1` (CI). `scripts/install-test-deps.sh` installs them.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::cluster::create_topic;
use crate::support::process::NodeProcess;
use crate::support::run::{confluent_kafka_available, external_client, probe, run};

const TIMEOUT: Duration = Duration::from_secs(300);

fn start(dir: &std::path::Path) -> NodeProcess {
    NodeProcess::start(
        dir,
        &[
            "--transaction-state-partitions",
            "4",
            "--offsets-topic-partitions",
            "4",
        ],
    )
}

fn topic(node: &NodeProcess, name: &str, partitions: i32) {
    let (code, message) = create_topic(node.ready.kafka, name, partitions, Duration::from_secs(10))
        .expect("CreateTopics answered");
    assert_eq!(code, 0, "creating {name}: {message:?}");
}

fn kafka_python_available() -> bool {
    external_client(
        "python3 with kafka-python",
        probe("python3", &["-c", "import kafka"]),
    )
}

/// Runs `txn.py` (confluent-kafka) with `args` against `node`; its stdout is one JSON object.
fn txn_py(node: &NodeProcess, args: &[&str]) -> Value {
    python(node, "txn.py", args)
}

/// Runs `txn_kafka_python.py` with `args` against `node`; its stdout is one JSON object.
fn txn_kafka_python(node: &NodeProcess, args: &[&str]) -> Value {
    python(node, "txn_kafka_python.py", args)
}

fn python(node: &NodeProcess, script: &str, args: &[&str]) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let mut command = Command::new("python3");
    command
        .arg(&script)
        .arg(node.ready.kafka.to_string())
        .args(args);
    let out = run(command, b"", TIMEOUT);
    eprintln!("{script:?} {args:?}: {:?}", out.elapsed);
    let stdout = out.ok();
    serde_json::from_slice(&stdout).unwrap_or_else(|e| panic!("{script:?}: not JSON ({e})"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn values(prefix: &str, topic: &str) -> Vec<String> {
    (0..3).map(|i| format!("{prefix}-{topic}-{i}")).collect()
}

/// Three transactions across `topics` (commit, abort, commit) by `script`'s client, then
/// each topic read back both ways.
fn commits_and_aborts(script: fn(&NodeProcess, &[&str]) -> Value, topics: [&str; 3]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    for name in topics {
        topic(&node, name, 1);
    }
    let mut args = vec!["commit-abort"];
    args.extend(topics);
    let report = script(&node, &args);
    assert_eq!(report["errors"], Value::Array(vec![]));
    for name in topics {
        let committed = strings(&report["read_committed"][name]);
        let expected: Vec<String> = [values("c1", name), values("c3", name)].concat();
        assert_eq!(committed, expected, "read_committed {name}");
        let uncommitted = strings(&report["read_uncommitted"][name]);
        let all: Vec<String> =
            [values("c1", name), values("a2", name), values("c3", name)].concat();
        assert_eq!(uncommitted, all, "read_uncommitted {name}");
    }
    report
}

/// Producer A is fenced by B (same transactional id) by `script`'s client: A's next commit
/// fails fatally and only B's record is committed.
fn fenced(script: fn(&NodeProcess, &[&str]) -> Value, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    topic(&node, name, 1);
    let report = script(&node, &["fence", name]);
    let error = &report["a_commit_error"];
    assert!(
        error["fatal"].as_bool() == Some(true),
        "the fenced producer fails fatally: {error}"
    );
    assert_eq!(
        strings(&report["read_committed"]),
        vec!["from-b".to_string()],
        "only the newer producer's transaction is visible"
    );
}

#[test]
fn confluent_kafka_commits_and_aborts_across_three_topics() {
    if !confluent_kafka_available() {
        return;
    }
    commits_and_aborts(txn_py, ["txn-x", "txn-y", "txn-z"]);
}

#[test]
fn kafka_python_commits_and_aborts_across_three_topics() {
    if !kafka_python_available() {
        return;
    }
    let report = commits_and_aborts(txn_kafka_python, ["kp-x", "kp-y", "kp-z"]);
    eprintln!("kafka-python {}", report["version"]);
}

#[test]
fn confluent_kafka_producer_is_fenced_by_a_newer_one() {
    if !confluent_kafka_available() {
        return;
    }
    fenced(txn_py, "txn-fence");
}

#[test]
fn kafka_python_producer_is_fenced_by_a_newer_one() {
    if !kafka_python_available() {
        return;
    }
    fenced(txn_kafka_python, "kp-fence");
}

#[test]
fn a_transaction_left_open_is_aborted_at_its_timeout() {
    if !confluent_kafka_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    topic(&node, "txn-timeout", 1);
    let report = txn_py(&node, &["timeout", "txn-timeout", "2000"]);
    let released = report["released_after_ms"].as_i64();
    assert!(
        released.is_some(),
        "read_committed readers were released: {report}"
    );
    assert!(
        report["commit_error"].is_object(),
        "the late commit failed: {report}"
    );
    assert!(strings(&report["read_committed"]).is_empty());
}
