//! A rolling upgrade from the upgrade baseline: three `rafka-node` processes of the baseline
//! release (`RAFKA_BASELINE_NODE`, built by `scripts/baseline.sh`; that script names the commit),
//! a topic with replication factor 3 and min.insync.replicas 2, and `python/checker.py`
//! (confluent-kafka, idempotent, acks=all) producing throughout. Each node in turn is stopped with
//! SIGTERM and started again on its data dir and addresses with this build's `rafka-node`. Then:
//! - the checker finds nothing acknowledged lost, duplicated, out of order or vanished;
//! - while any baseline node is still registered the cluster's finalized feature level stays 0
//!   (the upgraded nodes' `GET /cluster` says so, with the nodes' gossiped levels in view), and
//!   once the last node runs this build it rises to this build's highest level;
//! - a node restarted with `--max-feature-level 0` then is refused with a message naming the levels.
//!
//! Skipped with a message without `RAFKA_BASELINE_NODE` (unless `RAFKA_REQUIRE_BASELINE=1`, as
//! CI sets) or without python3 and confluent-kafka (unless `RAFKA_REQUIRE_EXTERNAL_CLIENTS=1`).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::checker::{Checker, Plan, assert_clean};
use crate::support::cluster::{ProcessCluster, create_topic, http_get, topic_metadata};
use crate::support::process::{Ready, workspace_binary};
use crate::support::run::{confluent_kafka_available, run};
use crate::support::wait_until_blocking;

const TOPIC: &str = "upgraded";
const PARTITIONS: i32 = 3;
const RATE: u64 = 1500;
/// Long enough for three upgrades under a loaded machine; the test checks the checker was still
/// producing when the last upgrade finished.
const SECONDS: u64 = 40;
const STEP: Duration = Duration::from_secs(30);
/// Acknowledgements the checker must make between two steps: the load goes on throughout.
const BETWEEN_STEPS: u64 = 2_000;
/// This build's highest feature level, as `GET /cluster` reports it.
const LATEST: u64 = rafka_broker::metadata::features::LATEST.0 as u64;

/// The baseline `rafka-node`, or `None` (skip) when it was not built.
fn baseline_binary() -> Option<PathBuf> {
    let required = std::env::var("RAFKA_REQUIRE_BASELINE").is_ok_and(|v| v == "1");
    match std::env::var_os("RAFKA_BASELINE_NODE") {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.exists(),
                "RAFKA_BASELINE_NODE={} is missing",
                path.display()
            );
            Some(path)
        }
        None => {
            assert!(
                !required,
                "RAFKA_REQUIRE_BASELINE=1 but RAFKA_BASELINE_NODE is not set (scripts/test.sh sets it)"
            );
            eprintln!(
                "SKIPPED: RAFKA_BASELINE_NODE is not set (RAFKA_BASELINE_NODE=$(scripts/baseline.sh))"
            );
            None
        }
    }
}

/// Node `i`'s `GET /cluster`, as JSON, if it answers.
fn cluster_doc(cluster: &ProcessCluster, i: usize) -> Option<Value> {
    let body = http_get(cluster.node(i).ready.http, "/cluster")?;
    serde_json::from_str(&body).ok()
}

/// The finalized feature level node `i` reports (`None` from a baseline node: it has none).
fn finalized_level(cluster: &ProcessCluster, i: usize) -> Option<u64> {
    cluster_doc(cluster, i)?
        .pointer("/features/finalized")?
        .as_u64()
}

/// Whether node `i` sees every upgraded node gossip this build's levels and every other one none.
fn gossip_shows(cluster: &ProcessCluster, i: usize, upgraded: &[usize]) -> bool {
    let Some(doc) = cluster_doc(cluster, i) else {
        return false;
    };
    let Some(members) = doc["members"].as_array() else {
        return false;
    };
    let expected = format!("0-{LATEST}");
    (0..3).all(|j| {
        let kafka = cluster.kafka(j).to_string();
        let Some(member) = members.iter().find(|m| m["kafka"].as_str() == Some(&kafka)) else {
            return false;
        };
        let levels = member["feature_levels"].as_str();
        if upgraded.contains(&j) {
            levels == Some(expected.as_str())
        } else {
            levels.is_none()
        }
    })
}

/// Waits until every partition of the topic has all three replicas in sync, as node `i` says.
fn wait_in_sync(cluster: &ProcessCluster, i: usize) {
    let addr = cluster.kafka(i);
    wait_until_blocking(STEP, "every replica back in sync", || {
        topic_metadata(addr, TOPIC).is_ok_and(|m| {
            m.topics.first().is_some_and(|t| {
                t.partitions.len() == PARTITIONS as usize
                    && t.partitions
                        .iter()
                        .all(|p| p.error_code == 0 && p.isr_nodes.len() == 3)
            })
        })
    });
}

fn baseline_cluster(baseline: &std::path::Path) -> ProcessCluster {
    let args = [
        "--default-replication-factor",
        "3",
        "--min-insync-replicas",
        "2",
    ];
    let cluster = ProcessCluster::start_with(baseline, 3, &args);
    cluster.wait_all(STEP, "every member alive", |view| view.count("alive") == 3);
    wait_until_blocking(STEP, "the topic created with three replicas", || {
        matches!(
            create_topic(cluster.kafka(0), TOPIC, PARTITIONS, Duration::from_secs(10)),
            Ok((0 | 36, _))
        )
    });
    for i in 0..3 {
        wait_in_sync(&cluster, i);
    }
    cluster
}

#[test]
fn process_upgrade_rolling_from_the_baseline_loses_nothing_and_raises_the_level_last() {
    let Some(baseline) = baseline_binary() else {
        return;
    };
    if !confluent_kafka_available() {
        return;
    }
    let mut cluster = baseline_cluster(&baseline);
    assert_eq!(
        finalized_level(&cluster, 0),
        None,
        "a baseline node has no level"
    );
    cluster.binary = workspace_binary("rafka-node");
    let bootstrap = (0..3)
        .map(|i| cluster.kafka(i).to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut checker = Checker::start(&Plan {
        bootstrap,
        topic: TOPIC.into(),
        partitions: PARTITIONS,
        seconds: SECONDS,
        rate: RATE,
        acks: "all",
    });
    checker.wait_acked(BETWEEN_STEPS, STEP);

    let load_started = Instant::now();
    let was: Vec<Ready> = (0..3).map(|i| cluster.node(i).ready.clone()).collect();
    let mut upgraded = Vec::new();
    for i in 0..3 {
        let acked = checker.poll();
        let started = Instant::now();
        let mut node = cluster.nodes[i].take().unwrap();
        assert!(node.terminate(), "node {i} did not stop cleanly on SIGTERM");
        cluster.restart_in_place(&[i], &was);
        upgraded.push(i);
        wait_in_sync(&cluster, i);
        eprintln!(
            "node {i} upgraded and back in sync after {:?}",
            started.elapsed()
        );
        checker.wait_acked(acked + BETWEEN_STEPS, STEP);
        if upgraded.len() < 3 {
            // The upgraded nodes know who runs what, and still hold the level at 0.
            for &j in &upgraded {
                wait_until_blocking(STEP, "every node's feature levels gossiped", || {
                    gossip_shows(&cluster, j, &upgraded)
                });
            }
            checker.wait_acked(checker.acked + BETWEEN_STEPS, STEP);
            for &j in &upgraded {
                assert_eq!(
                    finalized_level(&cluster, j),
                    Some(0),
                    "node {j} reports a level above 0 while a baseline node is registered"
                );
            }
        }
    }
    wait_until_blocking(STEP, "every node at this build's level", || {
        (0..3).all(|i| finalized_level(&cluster, i) == Some(LATEST))
    });
    eprintln!(
        "three upgrades and the level raised {:?} into the {SECONDS} s of load",
        load_started.elapsed()
    );
    let doc = cluster_doc(&cluster, 0).unwrap();
    let nodes = doc
        .pointer("/features/nodes")
        .and_then(Value::as_object)
        .unwrap();
    assert_eq!(nodes.len(), 3, "{doc}");
    let expected = format!("0-{LATEST}");
    assert!(
        nodes
            .values()
            .all(|v| v.as_str() == Some(expected.as_str())),
        "every node's levels recorded: {doc}"
    );
    // Still producing: the upgrade happened under load, not after it.
    checker.wait_acked(checker.acked + BETWEEN_STEPS, STEP);
    assert_clean(&checker.report(), "rolling upgrade", RATE * SECONDS / 2);

    // A node cannot go back below the finalized level: refused at start, saying why.
    let mut node = cluster.nodes[2].take().unwrap();
    assert!(node.terminate());
    let mut below = Command::new(&cluster.binary);
    below
        .args(["--data-dir", cluster.dirs[2].to_str().unwrap()])
        .args(["--kafka-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .args(["--p2p-addr", "/ip4/127.0.0.1/tcp/0"])
        .args(["--control-addr", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
        .args([
            "--bootstrap",
            was[0].p2p.as_str(),
            "--max-feature-level",
            "0",
        ]);
    let output = run(below, b"", STEP);
    let log = output.stderr_text();
    assert!(
        !output.status.success(),
        "a node below the finalized level started; log:\n{log}"
    );
    assert!(
        log.contains("supports cluster feature levels 0-0")
            && log.contains(&format!("finalized feature level is {LATEST}")),
        "no clear refusal in the log:\n{log}"
    );
}
