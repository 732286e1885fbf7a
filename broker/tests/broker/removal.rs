//! `rafka cluster remove NODE_ID` with real processes on loopback:
//!
//! - at the cluster's latest feature level a stopped node is removed for good: a live node is
//!   refused, and so is a removal whose replicas would put a live node over
//!   `--max-partitions-per-node` (changing nothing); once there is room the removed node's
//!   replicas move to the live nodes (the new followers caught up before its replicas are
//!   dropped), it leaves the metadata quorum at once (not after the replacement time) and
//!   metadata stays writable;
//! - at feature level 0 (a cluster mid-upgrade, `--max-feature-level 0`), where the removal
//!   cannot be recorded in the metadata log, the node still leaves the metadata quorum at once
//!   and metadata stays writable.

use std::time::Duration;

use kafka_protocol::ResponseError;

use crate::support::cluster::{ClusterView, ProcessCluster, create_topic, topic_metadata};
use crate::support::run::{Output, rafka, run};
use crate::support::wait_until_blocking;

/// A removal, replica moves and catching up (gossip takes seconds to see a killed node dead).
const SETTLE: Duration = Duration::from_secs(60);
/// A metadata write: the propose timeout is 10 s; a leader change may come first.
const WRITE: Duration = Duration::from_secs(25);
const CLI: Duration = Duration::from_secs(30);
/// Long enough that nothing here is replaced for being dead: only the removal acts.
const NO_REPLACEMENT: &str = "600000";

fn remove(cluster: &ProcessCluster, through: usize, node: i64) -> Output {
    let seed = cluster.node(through).ready.p2p.clone();
    let id = node.to_string();
    run(
        rafka(&["--bootstrap", &seed, "cluster", "remove", &id]),
        b"",
        CLI,
    )
}

fn assert_refused(out: &Output, why: &str) {
    assert!(!out.status.success(), "{}", out.command);
    assert!(out.stderr_text().contains(why), "{}", out.stderr_text());
}

/// Removes `node` (killed before) through node `through`, retrying while the cluster still
/// sees it alive.
fn remove_once_dead(cluster: &ProcessCluster, through: usize, node: i64) {
    wait_until_blocking(SETTLE, "the removal to be accepted", || {
        let out = remove(cluster, through, node);
        if out.status.success() {
            return Ok(());
        }
        let err = out.stderr_text();
        assert!(err.contains("is alive"), "removal refused: {err}");
        Err(err)
    });
}

/// The refusal of removing `node` (killed before) through node `through`, once the cluster no
/// longer sees it alive; panics if the removal is accepted.
fn refusal_once_dead(cluster: &ProcessCluster, through: usize, node: i64) -> String {
    wait_until_blocking(SETTLE, "the node seen dead by the removal", || {
        let out = remove(cluster, through, node);
        assert!(!out.status.success(), "removal accepted: {}", out.command);
        let refusal = out.stderr_text();
        if refusal.contains("is alive") {
            Err(refusal)
        } else {
            Ok(refusal)
        }
    })
}

/// Whether `peer` is a voter or learner of the metadata log in `view`.
fn in_metadata_log(view: &ClusterView, peer: &str) -> bool {
    ["voters", "learners"].iter().any(|k| {
        view.metadata
            .get(*k)
            .is_some_and(|v| v.to_string().contains(peer))
    })
}

/// (replicas, isr) of every partition of `topic`, as node `i` describes it.
fn placement(cluster: &ProcessCluster, i: usize, topic: &str) -> Vec<(Vec<i32>, Vec<i32>)> {
    let Ok(response) = topic_metadata(cluster.kafka(i), topic) else {
        return Vec::new();
    };
    response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| {
            (
                p.replica_nodes.iter().map(|n| n.0).collect(),
                p.isr_nodes.iter().map(|n| n.0).collect(),
            )
        })
        .collect()
}

/// Whether node `i` answers that `topic` does not exist.
fn unknown(cluster: &ProcessCluster, i: usize, topic: &str) -> bool {
    topic_metadata(cluster.kafka(i), topic).is_ok_and(|response| {
        response
            .topics
            .iter()
            .all(|t| t.error_code == ResponseError::UnknownTopicOrPartition.code())
    })
}

fn write(cluster: &ProcessCluster, i: usize, name: &str) {
    let (code, message) = create_topic(cluster.kafka(i), name, 1, WRITE).unwrap();
    assert_eq!(code, 0, "creating {name} through node {i}: {message:?}");
}

#[test]
fn process_a_removed_node_is_gone_for_good_and_its_replicas_move() {
    let mut cluster = ProcessCluster::start(
        3,
        &[
            "--default-replication-factor",
            "2",
            "--voter-replace-after-ms",
            NO_REPLACEMENT,
            "--max-partitions-per-node",
            "7",
        ],
    );
    wait_until_blocking(SETTLE, "the latest feature level", || {
        let view = cluster.view(0).ok_or_else(|| "no view".to_string())?;
        let doc = crate::support::cluster::http_get(cluster.node(0).ready.http, "/cluster")
            .ok_or_else(|| "no /cluster".to_string())?;
        let doc: serde_json::Value = serde_json::from_str(&doc).map_err(|e| e.to_string())?;
        let latest = u64::from(rafka_broker::metadata::features::LATEST.0);
        match doc.pointer("/features/finalized").and_then(|v| v.as_u64()) {
            // Placement uses the nodes node 0 sees alive: with one not seen yet, `moving` would
            // go on two nodes only and `filler` then over the per-node limit.
            Some(level) if level == latest && view.voters() == 3 && view.count("alive") == 3 => {
                Ok(())
            }
            other => Err(format!(
                "finalized {other:?}, {} voters, {} alive",
                view.voters(),
                view.count("alive")
            )),
        }
    });
    // 4 replicas on each node; `filler` adds 4 more over the three.
    let (code, message) = create_topic(cluster.kafka(0), "moving", 6, WRITE).unwrap();
    assert_eq!(code, 0, "{message:?}");
    let (code, message) = create_topic(cluster.kafka(0), "filler", 2, WRITE).unwrap();
    assert_eq!(code, 0, "{message:?}");
    wait_until_blocking(SETTLE, "every replica in sync", || {
        let placement = placement(&cluster, 0, "moving");
        if placement.len() == 6
            && placement
                .iter()
                .all(|(r, isr)| r.len() == 2 && isr.len() == 2)
        {
            Ok(())
        } else {
            Err(format!("{placement:?}"))
        }
    });
    let (peer, node) = cluster.identity(2);
    assert_refused(&remove(&cluster, 0, node), "is alive");

    cluster.kill(2);
    let removed = i32::try_from(node).unwrap();
    // With replication factor 2 and two nodes left, each would hold all 8 partitions: over the
    // limit of 7. Refused, and nothing changed: still registered, its replicas where they were.
    let before = placement(&cluster, 0, "moving");
    let refusal = refusal_once_dead(&cluster, 0, node);
    assert!(
        refusal.contains(
            "over the limit of 7 partition replicas per node (--max-partitions-per-node)"
        ) && refusal.contains("nothing changed"),
        "{refusal}"
    );
    let moving: Vec<Vec<i32>> = placement(&cluster, 0, "moving")
        .into_iter()
        .map(|(replicas, _)| replicas)
        .collect();
    let was: Vec<Vec<i32>> = before.into_iter().map(|(replicas, _)| replicas).collect();
    assert_eq!(moving, was, "replicas changed by a refused removal");
    assert!(in_metadata_log(&cluster.view(0).unwrap(), &peer));
    // Room made: the same removal goes through.
    let deleted = run(
        rafka(&[
            "--bootstrap",
            &cluster.node(0).ready.p2p,
            "topic",
            "delete",
            "filler",
        ]),
        b"",
        CLI,
    );
    assert!(deleted.status.success(), "{}", deleted.stderr_text());
    // Whichever node the CLI's removal reaches must see the room made.
    wait_until_blocking(WRITE, "both live nodes to see the deletion", || {
        [0, 1].iter().all(|&i| unknown(&cluster, i, "filler"))
    });
    remove_once_dead(&cluster, 0, node);
    wait_until_blocking(
        SETTLE,
        "the removed node's replicas moved and in sync",
        || {
            let placement = placement(&cluster, 0, "moving");
            let moved = placement.len() == 6
                && placement.iter().all(|(replicas, isr)| {
                    !replicas.contains(&removed) && replicas.len() == 2 && isr.len() == 2
                });
            if moved {
                Ok(())
            } else {
                Err(format!("{placement:?}"))
            }
        },
    );
    // Out of the metadata quorum at once: two nodes left, one voter.
    for i in [0, 1] {
        wait_out_of_metadata_log(&cluster, i, &peer);
    }
    write(&cluster, 1, "after-removal");
    // Removed for good: a second removal does not know it.
    assert_refused(&remove(&cluster, 1, node), "not registered");
}

#[test]
fn process_removal_at_feature_level_0_still_frees_the_metadata_seat() {
    let mut cluster = ProcessCluster::start(
        3,
        &[
            "--max-feature-level",
            "0",
            "--voter-replace-after-ms",
            NO_REPLACEMENT,
        ],
    );
    cluster.wait_all(SETTLE, "three voters", |v| v.voters() == 3);
    // Not the metadata leader, so the request has to find it.
    let leader = cluster.metadata_leader().expect("a metadata leader");
    let victim = (0..3).find(|&i| i != leader).unwrap();
    let through = (0..3).find(|&i| i != leader && i != victim).unwrap();
    let (peer, node) = cluster.identity(victim);
    cluster.kill(victim);
    remove_once_dead(&cluster, through, node);
    for i in cluster.running() {
        wait_out_of_metadata_log(&cluster, i, &peer);
    }
    write(&cluster, through, "after-removal");
}

/// Waits until node `i` sees one voter and `peer` gone from the metadata log.
fn wait_out_of_metadata_log(cluster: &ProcessCluster, i: usize, peer: &str) {
    wait_until_blocking(SETTLE, "the removed node out of the metadata log", || {
        let view = cluster.view(i).ok_or_else(|| "no view".to_string())?;
        if view.voters() == 1 && !in_metadata_log(&view, peer) {
            Ok(())
        } else {
            Err(format!("{view:#?}"))
        }
    });
}
