//! Fault injection against replicated partitions: three `rafka-node` processes on loopback, a
//! topic with replication factor 3 and min.insync.replicas 2, and `python/checker.py`
//! (confluent-kafka, idempotent, acks=all) producing unique records at 1,500 a second while a
//! consumer reads along. Mid-run a partition leader is SIGKILLed (and restarted) or SIGSTOPped
//! past the failure detector's timeout (and continued). The checker then reads everything back
//! and the test requires: nothing acknowledged lost, nothing duplicated, nothing out of order
//! within a partition, nothing a consumer saw that later vanished, and at least 1,000
//! acknowledged records a second.
//!
//! Skipped with a message without python3 and confluent-kafka, unless
//! `RAFKA_REQUIRE_EXTERNAL_CLIENTS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/cluster.rs"]
mod cluster;
mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cluster::{ProcessCluster, create_topic, partition_leaders};
use serde_json::Value;
use support::run::{confluent_kafka_available, wait_for};

const TOPIC: &str = "checked";
const PARTITIONS: i32 = 3;
const RATE: u64 = 1500;
const SECONDS: u64 = 24;
const STEP: Duration = Duration::from_secs(30);
/// Acknowledged records before the fault, and after it before the repair.
const BEFORE_FAULT: u64 = 6_000;
const DURING_FAULT: u64 = 6_000;

fn checker() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/checker.py")
}

/// A running checker: progress (acknowledged counts) and, at the end, its report.
struct Checker {
    child: std::process::Child,
    progress: mpsc::Receiver<Result<u64, Value>>,
    acked: u64,
}

impl Checker {
    fn start(bootstrap: &str, acks: &str) -> Checker {
        let mut command = Command::new("python3");
        command
            .arg(checker())
            .args([bootstrap, TOPIC])
            .args(["--partitions", &PARTITIONS.to_string()])
            .args(["--seconds", &SECONDS.to_string()])
            .args(["--rate", &RATE.to_string()])
            .args(["--acks", acks])
            .args([
                "--idempotence",
                if acks == "all" { "true" } else { "false" },
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("python3 checker.py");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("progress acked=") {
                    let acked = rest.split(' ').next().and_then(|n| n.parse().ok());
                    if let Some(acked) = acked {
                        let _ = tx.send(Ok(acked));
                    }
                } else if let Ok(report) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(Err(report));
                }
            }
        });
        Checker {
            child,
            progress: rx,
            acked: 0,
        }
    }

    /// Waits until at least `count` records are acknowledged.
    fn wait_acked(&mut self, count: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.acked < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.progress.recv_timeout(left) {
                Ok(Ok(acked)) => self.acked = acked,
                Ok(Err(report)) => panic!("checker ended at {} acknowledged: {report}", self.acked),
                Err(_) => panic!(
                    "only {} records acknowledged within {timeout:?} (wanted {count})",
                    self.acked
                ),
            }
        }
    }

    /// Waits for the final report.
    fn report(mut self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(SECONDS + 180);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.progress.recv_timeout(left) {
                Ok(Ok(_)) => {}
                Ok(Err(report)) => {
                    let _ = self.child.wait();
                    return report;
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("checker gave no report");
                }
            }
        }
    }
}

/// Three nodes, replication factor 3 by default, min.insync.replicas 2, the topic served.
fn replicated_cluster() -> ProcessCluster {
    let cluster = ProcessCluster::start(
        3,
        &[
            "--default-replication-factor",
            "3",
            "--min-insync-replicas",
            "2",
        ],
    );
    cluster.wait_all(STEP, "every member alive", |view| view.count("alive") == 3);
    // Every node registered (as the metadata log sees them) before three replicas can be placed.
    wait_for(
        STEP,
        "the topic created with three replicas",
        || match create_topic(cluster.kafka(0), TOPIC, PARTITIONS, Duration::from_secs(10)) {
            Ok((0 | 36, _)) => true,
            Ok((code, message)) => {
                eprintln!("creating {TOPIC}: {code} {message:?}");
                false
            }
            Err(_) => false,
        },
    );
    for node in 0..3 {
        let addr = cluster.kafka(node);
        wait_for(STEP, "the topic served with every replica in sync", || {
            cluster::topic_metadata(addr, TOPIC).is_ok_and(|m| {
                m.topics.first().is_some_and(|t| {
                    t.partitions.len() == PARTITIONS as usize
                        && t.partitions
                            .iter()
                            .all(|p| p.error_code == 0 && p.isr_nodes.len() == 3)
                })
            })
        });
    }
    cluster
}

fn bootstrap(cluster: &ProcessCluster) -> String {
    (0..3)
        .map(|i| cluster.kafka(i).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The process index of the leader of partition 0.
fn leader_of_partition_zero(cluster: &ProcessCluster) -> usize {
    let leaders = partition_leaders(cluster.kafka(0), TOPIC).unwrap();
    let leader = leaders
        .iter()
        .find(|(p, _, _)| *p == 0)
        .map(|&(_, _, leader)| i64::from(leader))
        .unwrap();
    (0..3)
        .find(|&i| cluster.identity(i).1 == leader)
        .expect("the leader is one of the nodes")
}

fn assert_clean(report: &Value, what: &str) {
    eprintln!("{what}: {report}");
    for key in ["lost", "duplicated", "out_of_order", "vanished"] {
        assert_eq!(report[key], 0, "{what}: {key} in {report}");
    }
    let acked = report["acked"].as_u64().unwrap();
    assert!(
        acked >= 1_000 * SECONDS,
        "{what}: {acked} acknowledged in {SECONDS} s, below 1,000 a second"
    );
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
    let mut checker = Checker::start(&bootstrap(&cluster), "all");
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
    assert_clean(&checker.report(), "SIGKILL of a leader");
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
    let mut checker = Checker::start(&bootstrap(&cluster), "all");
    checker.wait_acked(BEFORE_FAULT, STEP);
    let victim = leader_of_partition_zero(&cluster);
    let (_, victim_id) = cluster.identity(victim);
    let survivor = (0..3).find(|&i| i != victim).unwrap();
    cluster::signal(cluster.node(victim), libc::SIGSTOP);
    // Past the failure detector's timeout the partition has another leader.
    let stopped = Instant::now();
    wait_for(STEP, "another leader for partition 0", || {
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
    assert_clean(&checker.report(), "SIGSTOP of a leader");
    // The continued node follows again and every replica is in sync.
    let addr = cluster.kafka(survivor);
    wait_for(STEP, "the continued node back in every ISR", || {
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
