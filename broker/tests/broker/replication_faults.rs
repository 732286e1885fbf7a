//! Fault injection against replicated partitions: three `rafka-node` processes on loopback, a
//! topic with replication factor 3 and min.insync.replicas 2, and `python/checker.py`
//! (confluent-kafka, idempotent, acks=all) producing unique records at 1,500 a second while a
//! consumer reads along. Mid-run a partition leader is SIGKILLed (and restarted) or SIGSTOPped
//! past the failure detector's timeout (and continued), or every node is SIGKILLed and restarted
//! on the addresses it had (fsync=always). The checker then reads everything back
//! and the test requires: nothing acknowledged lost, nothing duplicated, nothing out of order
//! within a partition, nothing a consumer saw that later vanished, and at least 1,000
//! acknowledged records a second.
//!
//! Skipped with a message without python3 and confluent-kafka, unless
//! `RAFKA_REQUIRE_EXTERNAL_CLIENTS=1`.

use crate::support::cluster;
use crate::support::wait_until_blocking;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{FindCoordinatorRequest, GroupId, OffsetFetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::support::checker::{Checker, Plan, assert_clean};
use crate::support::cluster::{ProcessCluster, partition_leaders};
use crate::support::process::Ready;
use crate::support::run::confluent_kafka_available;
use crate::support::wire;

const TOPIC: &str = "checked";
const PARTITIONS: i32 = 3;
const RATE: u64 = 1500;
const SECONDS: u64 = 24;
/// At least 1,000 acknowledged records a second over the run.
const MIN_ACKED: u64 = 1_000 * SECONDS;
const STEP: Duration = Duration::from_secs(30);
const REQUEST: Duration = Duration::from_secs(10);
const NOT_COORDINATOR: i16 = 16;
/// Acknowledged records before the fault, and after it before the repair.
const BEFORE_FAULT: u64 = 6_000;
const DURING_FAULT: u64 = 6_000;

fn plan(cluster: &ProcessCluster) -> Plan {
    Plan {
        bootstrap: bootstrap(cluster),
        topic: TOPIC.into(),
        partitions: PARTITIONS,
        seconds: SECONDS,
        rate: RATE,
        acks: "all",
    }
}

/// Three nodes, replication factor 3 by default, min.insync.replicas 2, the topic served.
fn replicated_cluster() -> ProcessCluster {
    replicated_cluster_with(&[])
}

/// As [`replicated_cluster`], every node also given `extra`.
fn replicated_cluster_with(extra: &[&str]) -> ProcessCluster {
    ProcessCluster::replicated(TOPIC, PARTITIONS, extra)
}

fn bootstrap(cluster: &ProcessCluster) -> String {
    (0..3)
        .map(|i| cluster.kafka(i).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The process index of the leader of partition 0.
fn leader_of_partition_zero(cluster: &ProcessCluster) -> usize {
    cluster.leader_of(TOPIC, 0).0
}

fn skip() -> bool {
    !confluent_kafka_available()
}

#[test]
fn process_replication_sigkill_of_a_leader_loses_no_acknowledged_record() {
    if skip() {
        return;
    }
    let mut cluster = replicated_cluster();
    let mut checker = Checker::start(&plan(&cluster));
    checker.wait_acked(BEFORE_FAULT, STEP);
    let victim = leader_of_partition_zero(&cluster);
    let survivor = (0..3).find(|&i| i != victim).unwrap();
    let killed = cluster.kill(victim);
    let acked_at_kill = checker.acked;
    checker.wait_acked(acked_at_kill + DURING_FAULT, STEP);
    eprintln!(
        "{DURING_FAULT} more acknowledged {:?} after the SIGKILL",
        killed.elapsed()
    );
    let bootstrap_p2p = cluster.node(survivor).ready.p2p.clone();
    cluster.restart(victim, &bootstrap_p2p, &[]);
    assert_clean(&checker.report(), "SIGKILL of a leader", MIN_ACKED);
    // The restarted node catches up and rejoins every ISR.
    let addr = cluster.kafka(survivor);
    let deadline = Instant::now() + STEP;
    let rejoined = || {
        cluster::topic_metadata(addr, TOPIC).is_ok_and(|m| {
            m.topics
                .first()
                .is_some_and(|t| t.partitions.iter().all(|p| p.isr_nodes.len() == 3))
        })
    };
    while !rejoined() {
        if Instant::now() > deadline {
            for i in 0..3 {
                let log = std::fs::read_to_string(&cluster.node(i).log).unwrap_or_default();
                let lines: Vec<&str> = log.lines().filter(|l| l.contains("replica")).collect();
                eprintln!(
                    "---- node {i} ----\n{}",
                    lines[lines.len().saturating_sub(30)..].join("\n")
                );
            }
            panic!("the restarted node is not back in every ISR within {STEP:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn process_replication_sigstopped_leader_steps_down_and_loses_nothing() {
    if skip() {
        return;
    }
    let cluster = replicated_cluster();
    let mut checker = Checker::start(&plan(&cluster));
    checker.wait_acked(BEFORE_FAULT, STEP);
    let victim = leader_of_partition_zero(&cluster);
    let (_, victim_id) = cluster.identity(victim);
    let survivor = (0..3).find(|&i| i != victim).unwrap();
    cluster::signal(cluster.node(victim), libc::SIGSTOP);
    // Past the failure detector's timeout the partition has another leader.
    let stopped = Instant::now();
    wait_until_blocking(STEP, "another leader for partition 0", || {
        partition_leaders(cluster.kafka(survivor), TOPIC).is_ok_and(|p| {
            p.iter().any(|&(partition, error, leader)| {
                partition == 0 && error == 0 && i64::from(leader) != victim_id
            })
        })
    });
    eprintln!("SIGSTOP → new leader after {:?}", stopped.elapsed());
    let acked = checker.acked;
    checker.wait_acked(acked + DURING_FAULT, STEP);
    cluster::signal(cluster.node(victim), libc::SIGCONT);
    assert_clean(&checker.report(), "SIGSTOP of a leader", MIN_ACKED);
    // The continued node follows again and every replica is in sync.
    let addr = cluster.kafka(survivor);
    wait_until_blocking(STEP, "the continued node back in every ISR", || {
        cluster::topic_metadata(addr, TOPIC).is_ok_and(|m| {
            m.topics.first().is_some_and(|t| {
                t.partitions.iter().all(|p| {
                    p.isr_nodes
                        .iter()
                        .map(|n| n.0)
                        .collect::<BTreeSet<_>>()
                        .len()
                        == 3
                })
            })
        })
    });
}

#[test]
fn process_replication_every_node_killed_and_restarted_keeps_every_acknowledged_record() {
    if skip() {
        return;
    }
    // fsync=always is the default; said here because this scenario is about it.
    let mut cluster = replicated_cluster_with(&["--fsync", "always"]);
    let was: Vec<Ready> = (0..3).map(|i| cluster.node(i).ready.clone()).collect();
    let mut checker = Checker::start(&plan(&cluster));
    checker.wait_acked(BEFORE_FAULT, STEP);
    for node in 0..3 {
        cluster.kill(node);
    }
    let acked_at_kill = checker.poll();
    let killed = Instant::now();
    cluster.restart_in_place(&[0, 1, 2], &was);
    eprintln!(
        "every node restarted {:?} after the SIGKILLs",
        killed.elapsed()
    );
    checker.wait_acked(acked_at_kill + DURING_FAULT, 2 * STEP);
    eprintln!(
        "{DURING_FAULT} more acknowledged {:?} after the SIGKILLs",
        killed.elapsed()
    );
    assert_clean(&checker.report(), "SIGKILL of every node", MIN_ACKED);
}

/// The coordinator (node index, by the nodes' `ids`) of `group` as node `via` answers
/// FindCoordinator, if any.
fn coordinator(cluster: &ProcessCluster, ids: &[i64], via: usize, group: &str) -> Option<usize> {
    let request = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(group.to_string()))
        .with_key_type(0);
    let response = cluster::kafka_call(cluster.kafka(via), &request, 3, REQUEST).ok()?;
    if response.error_code != 0 {
        return None;
    }
    let id = i64::from(response.node_id.0);
    ids.iter().position(|&n| n == id)
}

/// A simple-consumer commit of `offset` for partition 0 of the topic; the error code.
fn commit_offset(cluster: &ProcessCluster, node: usize, group: &str, offset: i64) -> i16 {
    let request = wire::simple_commit(group, TOPIC, offset);
    cluster::kafka_call(cluster.kafka(node), &request, 8, REQUEST)
        .map_or(-1, |r| r.topics[0].partitions[0].error_code)
}

/// The committed offset of partition 0 as `node` answers OffsetFetch (`Err`: an error code).
fn fetch_offset(cluster: &ProcessCluster, node: usize, group: &str) -> Result<i64, i16> {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partition_indexes(vec![0]),
        ]));
    let response =
        cluster::kafka_call(cluster.kafka(node), &request, 7, REQUEST).map_err(|_| -1_i16)?;
    if response.error_code != 0 {
        return Err(response.error_code);
    }
    Ok(response.topics[0].partitions[0].committed_offset)
}

#[test]
fn process_replication_committed_offsets_survive_the_coordinator_losing_its_partition() {
    let cluster = replicated_cluster();
    const GROUP: &str = "replicated-group";
    let ids: Vec<i64> = (0..3).map(|i| cluster.identity(i).1).collect();
    // The offsets topic is created by the first FindCoordinator, replicated three times.
    wait_until_blocking(STEP, "a coordinator for the group", || {
        coordinator(&cluster, &ids, 0, GROUP).is_some()
    });
    wait_until_blocking(STEP, "the offsets topic with every replica in sync", || {
        cluster::topic_metadata(cluster.kafka(0), "__consumer_offsets").is_ok_and(|m| {
            m.topics.first().is_some_and(|t| {
                !t.partitions.is_empty() && t.partitions.iter().all(|p| p.isr_nodes.len() == 3)
            })
        })
    });
    let old = coordinator(&cluster, &ids, 0, GROUP).unwrap();
    let mut committed = 0;
    for offset in [10, 20, 42] {
        wait_until_blocking(STEP, "a commit accepted", || {
            commit_offset(&cluster, old, GROUP, offset) == 0
        });
        committed = offset;
    }
    assert_eq!(fetch_offset(&cluster, old, GROUP), Ok(committed));

    // Acknowledged means every in-sync replica has it: the next coordinator answers the same.
    cluster::signal(cluster.node(old), libc::SIGSTOP);
    let survivor = (0..3).find(|&i| i != old).unwrap();
    let mut new = None;
    wait_until_blocking(STEP, "another coordinator", || {
        new = coordinator(&cluster, &ids, survivor, GROUP).filter(|&c| c != old);
        new.is_some()
    });
    let new = new.unwrap();
    wait_until_blocking(STEP, "the new coordinator serving the group", || {
        fetch_offset(&cluster, new, GROUP).is_ok()
    });
    assert_eq!(fetch_offset(&cluster, new, GROUP), Ok(committed));
    wait_until_blocking(STEP, "a commit accepted by the new coordinator", || {
        commit_offset(&cluster, new, GROUP, 50) == 0
    });
    // The old coordinator, continued, learns it lost the partition and stops answering for the
    // group: no commit lands in what is now a follower's log, no stale offset is served.
    cluster::signal(cluster.node(old), libc::SIGCONT);
    wait_until_blocking(STEP, "the old coordinator pointing at the new one", || {
        coordinator(&cluster, &ids, old, GROUP) == Some(new)
    });
    assert_eq!(commit_offset(&cluster, old, GROUP, 7), NOT_COORDINATOR);
    assert_eq!(fetch_offset(&cluster, old, GROUP), Err(NOT_COORDINATOR));
    assert_eq!(fetch_offset(&cluster, new, GROUP), Ok(50));
}

#[test]
fn process_replication_leadership_returns_to_the_preferred_replica() {
    let mut cluster = replicated_cluster_with(&["--leader-rebalance-interval-ms", "1000"]);
    let ids: Vec<i64> = (0..3).map(|i| cluster.identity(i).1).collect();
    // (leader, preferred replica) of partition 0 as node `via` answers.
    let partition_zero = |cluster: &ProcessCluster, via: usize| {
        cluster::topic_metadata(cluster.kafka(via), TOPIC)
            .ok()
            .and_then(|m| {
                let p = m.topics.first()?.partitions.first()?.clone();
                Some((
                    i64::from(p.leader_id.0),
                    i64::from(p.replica_nodes.first()?.0),
                    p,
                ))
            })
    };
    let (leader, preferred, _) = partition_zero(&cluster, 0).unwrap();
    assert_eq!(
        leader, preferred,
        "a new topic is led by its preferred replicas"
    );
    let victim = ids.iter().position(|&id| id == preferred).unwrap();
    let survivor = (0..3).find(|&i| i != victim).unwrap();
    cluster.kill(victim);
    wait_until_blocking(STEP, "another leader for partition 0", || {
        partition_zero(&cluster, survivor).is_some_and(|(l, _, _)| l >= 0 && l != preferred)
    });
    let bootstrap_p2p = cluster.node(survivor).ready.p2p.clone();
    cluster.restart(victim, &bootstrap_p2p, &[]);
    // Back in sync, the preferred replica gets partition 0 back within a rebalance interval.
    wait_until_blocking(
        STEP,
        "partition 0 led by its preferred replica again",
        || {
            (0..3).all(|i| {
                partition_zero(&cluster, i)
                    .is_some_and(|(l, _, p)| l == preferred && p.isr_nodes.len() == 3)
            })
        },
    );
}
