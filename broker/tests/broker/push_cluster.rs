//! Push subscription on three `rafka-node` processes (replication factor 3, a 6-partition
//! topic): five `rafka subscribe` processes, homed on different nodes, while 20,000 records are
//! produced with acks=all. Midway the leader of one partition is SIGKILLed and one subscriber is
//! SIGSTOPped for 5 s and continued. Every subscriber must print every committed offset exactly
//! once, in offset order within each partition, the same set a Fetch consumer reads afterwards
//! (checked by partition and offset: a producer's retry may store a payload twice at new offsets).
//!
//! Uses the `rafka` and `rafka-node` binaries of the workspace: `cargo build --workspace --bins`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::support::cluster::{
    ClusterView, ProcessCluster, partition_leaders, signal_pid as signal,
};
use crate::support::run::{rafka, run, spawn};
use crate::support::wait_until_blocking;

const TOPIC: &str = "pushed";
const PARTITIONS: usize = 6;
const RECORDS: usize = 20_000;
const SUBSCRIBERS: usize = 5;
const STEP: Duration = Duration::from_secs(60);
/// A subscriber exits once nothing arrived for this long (covers a leader failover).
const IDLE_MS: &str = "25000";

fn all_alive(n: usize) -> impl Fn(&ClusterView) -> bool {
    move |view| {
        let ids: BTreeSet<i64> = view.members.iter().filter_map(|m| m.node_id).collect();
        view.members.len() == n && view.count("alive") == n && ids.len() == n
    }
}

fn cli(bootstrap: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut all = vec!["--bootstrap", bootstrap];
    all.extend_from_slice(args);
    run(rafka(&all), stdin, STEP * 2).ok()
}

fn input(from: usize, to: usize) -> Vec<u8> {
    (from..to)
        .flat_map(|i| format!("k{}:v{i}\n", i % 120).into_bytes())
        .collect()
}

/// Offsets per partition in printed order, from `%p %o ...` lines.
fn offsets(output: &[u8]) -> BTreeMap<i32, Vec<i64>> {
    let mut out: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for line in std::str::from_utf8(output).unwrap().lines() {
        let mut fields = line.split(' ');
        let (Some(p), Some(o)) = (fields.next(), fields.next()) else {
            panic!("unexpected line {line:?}")
        };
        out.entry(p.parse().unwrap())
            .or_default()
            .push(o.parse().unwrap());
    }
    out
}

#[test]
fn process_subscribers_print_every_committed_offset_once_through_a_leader_kill_and_a_stop() {
    let started = Instant::now();
    let mut cluster = ProcessCluster::start(3, &[]);
    cluster.wait_all(STEP, "every member alive with a node id", all_alive(3));
    let p2p: Vec<String> = (0..3).map(|i| cluster.node(i).ready.p2p.clone()).collect();
    cli(
        &p2p[0],
        &[
            "topic",
            "create",
            TOPIC,
            "--partitions",
            "6",
            "--replication-factor",
            "3",
        ],
        b"",
    );
    let kafka = cluster.kafka(0);
    wait_until_blocking(STEP, "every partition led", || {
        partition_leaders(kafka, TOPIC)
            .is_ok_and(|p| p.len() == PARTITIONS && p.iter().all(|&(_, _, leader)| leader >= 0))
    });
    // The partition whose leader is killed: one not led by node 0 (the producers' node).
    let leaders = partition_leaders(kafka, TOPIC).unwrap();
    let node_ids: Vec<i64> = (0..3).map(|i| cluster.identity(i).1).collect();
    let (victim_partition, victim_leader) = leaders
        .iter()
        .find(|&&(_, _, leader)| i64::from(leader) != node_ids[0])
        .map(|&(p, _, leader)| (p, leader))
        .expect("a partition led by node 1 or 2");
    let victim = node_ids
        .iter()
        .position(|&id| id == i64::from(victim_leader))
        .unwrap();
    eprintln!(
        "cluster ready after {:?}; will kill node {victim} (leader of partition {victim_partition})",
        started.elapsed()
    );

    // Five subscribers, homed on the surviving nodes and the victim alike.
    let subscribers: Vec<_> = (0..SUBSCRIBERS)
        .map(|i| {
            let home = &p2p[i % 3];
            spawn(
                rafka(&[
                    "--bootstrap",
                    home,
                    "subscribe",
                    TOPIC,
                    "--from-beginning",
                    "--format",
                    "%p %o %v\\n",
                    "--timeout-ms",
                    IDLE_MS,
                    "--stats",
                ]),
                b"",
            )
        })
        .collect();

    let half = RECORDS / 2;
    cli(
        &p2p[0],
        &["produce", TOPIC, "--key-separator", ":"],
        &input(0, half),
    );
    // One subscriber stops for 5 s while the leader dies and the rest is produced.
    let stopped = subscribers[1].pid();
    signal(stopped, libc::SIGSTOP);
    cluster.kill(victim);
    let producer = spawn(
        rafka(&[
            "--bootstrap",
            &p2p[0],
            "produce",
            TOPIC,
            "--key-separator",
            ":",
        ]),
        &input(half, RECORDS),
    );
    std::thread::sleep(Duration::from_secs(5)); // the SIGSTOP's length, not a synchronisation
    signal(stopped, libc::SIGCONT);
    producer.wait(STEP * 2).ok();
    eprintln!("produced after {:?}", started.elapsed());

    // What a Fetch consumer reads: the committed offsets.
    let reference = offsets(&cli(
        &p2p[0],
        &[
            "consume",
            TOPIC,
            "--from-beginning",
            "--format",
            "%p %o\\n",
            "--timeout-ms",
            "5000",
        ],
        b"",
    ));
    let total: usize = reference.values().map(Vec::len).sum();
    assert!(total >= RECORDS, "the consumer read {total} records");
    for (p, offs) in &reference {
        let expected: Vec<i64> = (0..offs.len() as i64).collect();
        assert_eq!(offs, &expected, "partition {p} as consumed");
    }

    for (i, subscriber) in subscribers.into_iter().enumerate() {
        let out = subscriber.wait(STEP * 5);
        let stats = out.stderr_text();
        let got = offsets(&out.ok());
        for (p, want) in &reference {
            let have = got.get(p).cloned().unwrap_or_default();
            assert!(
                have == *want,
                "subscriber {i} (homed on node {}), partition {p}: {} offsets printed, {} committed; first difference at {:?}\nstderr: {stats}",
                i % 3,
                have.len(),
                want.len(),
                have.iter().zip(want).position(|(a, b)| a != b)
            );
        }
        eprintln!("subscriber {i}: {stats}");
    }
}
