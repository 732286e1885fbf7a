//! Our client's transactions against `rafka-node` processes, through the `rafka` CLI, over the
//! mesh and over Kafka TCP, on one node and on three nodes with replication factor 3:
//!
//! - `rafka produce --transactional-id` commits one transaction per input batch: a
//!   read_committed `rafka consume` sees every committed record; `--abort` transactions are seen
//!   only by read_uncommitted consumers;
//! - a second producer with the same transactional id fences the first: the first one's next
//!   transaction fails fatally (PRODUCER_FENCED) and nothing of it becomes visible;
//! - `rafka txn list --json` and `rafka txn describe --json` show the ids, their producers and
//!   states.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::cluster::{ProcessCluster, http_get};
use crate::support::process::{NodeProcess, workspace_binary};
use crate::support::run::{rafka, run};
use crate::support::wait_until_blocking;

const STEP: Duration = Duration::from_secs(60);
const PARTITIONS: i32 = 3;
/// How long a producer waits for the transaction coordinator (on a fresh cluster the first
/// FindCoordinator creates `__transaction_state`, whose leaders then load it).
const MAX_BLOCK_MS: &str = "60000";

/// Flags of nodes serving transactional producers (a small `__transaction_state`).
const TXN_FLAGS: &[&str] = &["--transaction-state-partitions", "3"];

/// Waits until the cluster's feature level enables transactional batches (level 4).
fn wait_for_transactions(http: std::net::SocketAddr) {
    wait_until_blocking(STEP, "the transactions feature level", || {
        let doc = http_get(http, "/cluster").ok_or_else(|| "no /cluster".to_string())?;
        let doc: Value = serde_json::from_str(&doc).map_err(|e| e.to_string())?;
        match doc.pointer("/features/finalized").and_then(Value::as_u64) {
            Some(level) if level >= 4 => Ok(()),
            other => Err(format!("finalized {other:?}")),
        }
    });
}

fn with<'a>(via: &[&'a str], args: &[&'a str]) -> Vec<&'a str> {
    via.iter().chain(args).copied().collect()
}

/// `rafka produce TOPIC --transactional-id ID [extra]` of `lines` (one batch: one transaction).
fn produce(via: &[&str], topic: &str, id: &str, extra: &[&str], lines: &[String]) {
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let args = with(via, &["produce", topic, "--transactional-id", id]);
    let args = with(&args, &["--max-block-ms", MAX_BLOCK_MS]);
    let args = with(&args, extra);
    run(rafka(&args), input.as_bytes(), STEP).ok();
}

/// The values `rafka consume --isolation ISOLATION` prints: `n` of them (it exits then).
fn consume(via: &[&str], topic: &str, isolation: &str, n: usize) -> Vec<String> {
    let n = n.to_string();
    let args = with(
        via,
        &[
            "consume",
            topic,
            "--from-beginning",
            "--isolation",
            isolation,
            "-n",
            &n,
            "--format",
            "%v\\n",
        ],
    );
    let out = run(rafka(&args), b"", STEP).ok();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `rafka txn ARGS --json`, parsed.
fn txn_json(via: &[&str], args: &[&str]) -> Result<Value, String> {
    let all = with(&with(via, &["txn"]), args);
    let all = with(&all, &["--json"]);
    let out = run(rafka(&all), b"", STEP);
    if !out.status.success() {
        return Err(out.stderr_text());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// Waits (up to `STEP`) for a child started here to exit: its status and stderr. Killed (by
/// its own pid) if it does not.
fn wait_child(mut child: Child) -> (ExitStatus, String) {
    let status = wait_until_blocking(STEP, "the producer to exit", || match child.try_wait() {
        Ok(Some(status)) => Ok(status),
        Ok(None) => Err("running".to_string()),
        Err(e) => {
            let _ = child.kill();
            Err(e.to_string())
        }
    });
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    (status, stderr)
}

/// Kills a child (by its own pid) unless it was reaped.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn values(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

fn set(v: &[String]) -> BTreeSet<String> {
    v.iter().cloned().collect()
}

/// The scenario, with `mesh` and `tcp` the bootstrap flags of two ways in (of one node or two).
fn transactions_through_the_cli(mesh: &[&str], tcp: &[&str], topic: &str) {
    // Committed over the mesh, aborted over TCP, committed over TCP.
    let first = values("m-commit", 40);
    produce(mesh, topic, "cli-mesh", &[], &first);
    let aborted = values("t-abort", 25);
    produce(tcp, topic, "cli-tcp", &["--abort"], &aborted);
    let second = values("t-commit", 30);
    produce(tcp, topic, "cli-tcp", &[], &second);

    let committed: BTreeSet<String> = set(&first).union(&set(&second)).cloned().collect();
    for via in [mesh, tcp] {
        // Exactly the committed records: were an aborted one printed, one committed would be
        // missing from the first `committed.len()`.
        let seen = consume(via, topic, "read_committed", committed.len());
        assert_eq!(set(&seen), committed, "read_committed through {via:?}");
        let everything = consume(
            via,
            topic,
            "read_uncommitted",
            committed.len() + aborted.len(),
        );
        let all: BTreeSet<String> = committed.union(&set(&aborted)).cloned().collect();
        assert_eq!(set(&everything), all, "read_uncommitted through {via:?}");
    }

    // `rafka txn describe` and `list` show both ids, ended.
    let described = wait_until_blocking(STEP, "cli-mesh described as committed", || {
        let d = txn_json(tcp, &["describe", "cli-mesh"])?;
        if d["state"] == "CompleteCommit" {
            Ok(d)
        } else {
            Err(d.to_string())
        }
    });
    assert_eq!(described["transactional_id"], "cli-mesh");
    assert!(described["producer_id"].as_i64().unwrap() >= 0);
    assert_eq!(described["timeout_ms"], 60_000);
    wait_until_blocking(STEP, "both ids listed, their transactions complete", || {
        let l = txn_json(mesh, &["list"])?;
        let complete: BTreeSet<String> = l
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["state"] == "CompleteCommit" && t["producer_id"].as_i64() >= Some(0))
            .map(|t| t["transactional_id"].as_str().unwrap().to_owned())
            .collect();
        if complete.contains("cli-mesh") && complete.contains("cli-tcp") {
            Ok(())
        } else {
            Err(l.to_string())
        }
    });
    let ongoing = txn_json(tcp, &["list", "--state", "Ongoing"]).unwrap();
    assert_eq!(ongoing, Value::Array(vec![]), "nothing is open");

    // Fencing: a producer waiting on its input is fenced by a newer one with the same id; its
    // next transaction fails with PRODUCER_FENCED and nothing of it is visible.
    let args = with(
        mesh,
        &[
            "produce",
            topic,
            "--transactional-id",
            "cli-fenced",
            "--max-block-ms",
            MAX_BLOCK_MS,
        ],
    );
    let mut older = KillOnDrop(Some(
        Command::new(workspace_binary("rafka"))
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let mut input = older.0.as_mut().unwrap().stdin.take().unwrap();
    writeln!(input, "older-0").unwrap();
    input.flush().unwrap();
    wait_until_blocking(STEP, "the older producer's first transaction", || {
        let d = txn_json(tcp, &["describe", "cli-fenced"])?;
        if d["state"] == "CompleteCommit" {
            Ok(d)
        } else {
            Err(d.to_string())
        }
    });
    let before = txn_json(tcp, &["describe", "cli-fenced"]).unwrap();
    produce(tcp, topic, "cli-fenced", &[], &["newer-0".to_owned()]);
    let after = txn_json(tcp, &["describe", "cli-fenced"]).unwrap();
    assert!(
        after["producer_epoch"].as_i64() > before["producer_epoch"].as_i64()
            || after["producer_id"] != before["producer_id"],
        "the newer producer has a newer epoch: {before} then {after}"
    );
    writeln!(input, "older-1").unwrap();
    drop(input);
    let (status, stderr) = wait_child(older.0.take().unwrap());
    assert!(!status.success(), "the fenced producer must fail");
    assert!(
        stderr.contains("fenced"),
        "a fenced producer says so: {stderr}"
    );
    let total = committed.len() + 2;
    let seen = set(&consume(tcp, topic, "read_committed", total));
    assert!(seen.contains("older-0") && seen.contains("newer-0"));
    assert!(
        !seen.contains("older-1"),
        "the fenced transaction is not visible"
    );
}

#[test]
fn process_cli_transactions_on_one_node_over_the_mesh_and_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&dir.path().join("node"), TXN_FLAGS);
    wait_for_transactions(node.ready.http);
    let kafka = node.ready.kafka.to_string();
    let mesh = ["--bootstrap", node.ready.p2p.as_str()];
    let tcp = ["--kafka", kafka.as_str()];
    let partitions = PARTITIONS.to_string();
    let create = with(
        &tcp,
        &["topic", "create", "txn-cli", "--partitions", &partitions],
    );
    run(rafka(&create), b"", STEP).ok();
    transactions_through_the_cli(&mesh, &tcp, "txn-cli");
}

#[test]
fn process_cli_transactions_on_three_nodes_rf3_over_the_mesh_and_tcp() {
    let cluster = ProcessCluster::replicated("txn-cli-rf3", PARTITIONS, TXN_FLAGS);
    wait_for_transactions(cluster.node(0).ready.http);
    // In through different nodes: the mesh via node 1, TCP via node 2.
    let kafka = cluster.node(2).ready.kafka.to_string();
    let mesh = ["--bootstrap", cluster.node(1).ready.p2p.as_str()];
    let tcp = ["--kafka", kafka.as_str()];
    transactions_through_the_cli(&mesh, &tcp, "txn-cli-rf3");
}
