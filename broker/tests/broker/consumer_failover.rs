//! Our consumer follows partition leaders: three `rafka-node` processes, replication factor 3, a
//! 6-partition topic, and `rafka consume` processes (over the mesh with and without `--group`, and
//! over Kafka TCP) reading along while the leader of their partitions is SIGKILLed, replaced, and
//! restarted to take its leadership back (preferred replica, a rebalance a second). Every record
//! produced before, during and after the outage must be printed exactly once.
//!
//! The failure this guards against: consumers over the mesh stalled for good, without an error, on
//! the partitions whose leader had been SIGKILLed and restarted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::cluster::{ProcessCluster, partition_leaders};
use crate::support::run::{Running, rafka, run, spawn_to_file};
use crate::support::wait_until_blocking;

const TOPIC: &str = "followed";
const PARTITIONS: i32 = 6;
/// Records produced before the SIGKILL, while the node is down, and after its restart.
const BEFORE: usize = 3_000;
const DURING: usize = 2_000;
const AFTER: usize = 2_000;
const TOTAL: usize = BEFORE + DURING + AFTER;
const STEP: Duration = Duration::from_secs(60);
const FORMAT: &str = "%p %o %v\\n";

/// Waits until every running node says `leads(leader of partition 0)`.
fn wait_partition_zero(cluster: &ProcessCluster, what: &str, leads: impl Fn(i64) -> bool) {
    wait_until_blocking(STEP, what, || {
        let views: Vec<Option<i64>> = cluster
            .running()
            .into_iter()
            .map(|i| {
                let leaders = partition_leaders(cluster.kafka(i), TOPIC).ok()?;
                leaders.first().map(|&(_, _, l)| i64::from(l))
            })
            .collect();
        if views.iter().all(|l| l.is_some_and(&leads)) {
            Ok(())
        } else {
            Err(format!(
                "leaders of partition 0 as each node says: {views:?}"
            ))
        }
    });
}

/// The process index of the node leading partition 0, its node id, and the partitions it leads.
fn leader_of_partition_zero(cluster: &ProcessCluster) -> (usize, i64, Vec<i32>) {
    let (index, leader) = cluster.leader_of(TOPIC, 0);
    let led = partition_leaders(cluster.kafka(0), TOPIC)
        .unwrap()
        .iter()
        .filter(|(_, _, l)| i64::from(*l) == leader)
        .map(|(p, _, _)| *p)
        .collect();
    (index, leader, led)
}

/// Produces `count` keyed records `{tag}{i}` (keys spread them over the partitions) with
/// acks=all over Kafka TCP through the running nodes.
fn produce(cluster: &ProcessCluster, tag: &str, count: usize) {
    let kafka: Vec<String> = cluster
        .running()
        .into_iter()
        .map(|i| cluster.kafka(i).to_string())
        .collect();
    let input: String = (0..count).map(|i| format!("{tag}{i}:{tag}{i}\n")).collect();
    let args = [
        "--kafka",
        &kafka.join(","),
        "produce",
        TOPIC,
        "--key-separator",
        ":",
        "--acks",
        "all",
    ];
    run(rafka(&args), input.as_bytes(), STEP).ok();
}

/// A `rafka consume` process writing to a file, so its progress can be watched.
struct Consumer {
    name: &'static str,
    out: PathBuf,
    running: Option<Running>,
}

impl Consumer {
    fn start(dir: &Path, name: &'static str, bootstrap: &[&str], extra: &[&str]) -> Consumer {
        let out = dir.join(format!("{name}.out"));
        let total = TOTAL.to_string();
        let mut args = bootstrap.to_vec();
        args.extend([
            "consume",
            TOPIC,
            "--from-beginning",
            "-n",
            &total,
            "--format",
            FORMAT,
        ]);
        args.extend_from_slice(extra);
        let file = std::fs::File::create(&out).unwrap();
        Consumer {
            name,
            out,
            running: Some(spawn_to_file(rafka(&args), b"", file)),
        }
    }

    /// The (partition, value) of each record printed so far (complete lines only).
    fn printed(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .filter_map(|l| {
                let mut fields = l.trim_end().splitn(3, ' ');
                let partition = fields.next()?.to_string();
                Some((partition, fields.nth(1)?.to_string()))
            })
            .collect()
    }

    /// The values printed so far.
    fn values(&self) -> Vec<String> {
        self.printed().into_iter().map(|(_, v)| v).collect()
    }

    fn wait_for(&self, count: usize, what: &str) {
        let what = format!("{} to print {count} records {what}", self.name);
        wait_until_blocking(STEP, &what, || {
            let printed = self.printed();
            if printed.len() >= count {
                return Ok(());
            }
            // Which partitions are behind tells a stalled partition from a slow consumer.
            let mut by_partition: BTreeMap<String, usize> = BTreeMap::new();
            for (partition, _) in &printed {
                *by_partition.entry(partition.clone()).or_default() += 1;
            }
            Err(format!(
                "{} printed; by partition: {by_partition:?}",
                printed.len()
            ))
        });
    }

    /// Waits for the process to exit after printing every record; checks each was printed once.
    fn finish(mut self, expected: &BTreeSet<String>) {
        let output = self.running.take().unwrap().wait(STEP * 2);
        let stderr = output.stderr_text();
        assert!(output.status.success(), "{} failed: {stderr}", self.name);
        let values = self.values();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for v in &values {
            *counts.entry(v.as_str()).or_default() += 1;
        }
        let missing: Vec<&String> = expected
            .iter()
            .filter(|v| !counts.contains_key(v.as_str()))
            .collect();
        let twice: Vec<(&&str, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            missing.is_empty() && twice.is_empty() && values.len() == TOTAL,
            "{}: {} printed, {} missing (first {:?}), {} twice (first {:?}); stderr: {stderr}",
            self.name,
            values.len(),
            missing.len(),
            missing.first(),
            twice.len(),
            twice.first()
        );
    }
}

#[test]
fn process_consumers_follow_a_sigkilled_and_restarted_leader() {
    let started = Instant::now();
    // Leadership returns to the preferred replica within a second of it being back in sync.
    let rebalance = ["--leader-rebalance-interval-ms", "1000"];
    let mut cluster = ProcessCluster::replicated(TOPIC, PARTITIONS, &rebalance);
    let (victim, victim_id, led) = leader_of_partition_zero(&cluster);
    let survivor = (0..3).find(|&i| i != victim).unwrap();
    eprintln!(
        "node {victim} leads partitions {led:?}; cluster ready in {:?}",
        started.elapsed()
    );
    produce(&cluster, "a", BEFORE);

    let tmp = tempfile::tempdir().unwrap();
    let mesh = cluster.node(survivor).ready.p2p.clone();
    let kafka: Vec<String> = (0..3).map(|i| cluster.kafka(i).to_string()).collect();
    let kafka = kafka.join(",");
    let consumers = [
        Consumer::start(tmp.path(), "mesh", &["--bootstrap", &mesh], &[]),
        Consumer::start(
            tmp.path(),
            "mesh --group",
            &["--bootstrap", &mesh],
            &["--group", "followers"],
        ),
        Consumer::start(tmp.path(), "kafka", &["--kafka", &kafka], &[]),
    ];
    for c in &consumers {
        c.wait_for(BEFORE, "before the SIGKILL");
    }

    // The consumers now long-poll every leader, the victim among them.
    let killed = cluster.kill(victim);
    wait_partition_zero(&cluster, "a new leader for partition 0", |l| {
        l >= 0 && l != victim_id
    });
    produce(&cluster, "b", DURING);
    for c in &consumers {
        c.wait_for(BEFORE + DURING, "while the leader is down");
    }
    eprintln!(
        "records produced during the outage consumed {:?} after the SIGKILL",
        killed.elapsed()
    );

    let bootstrap = cluster.node(survivor).ready.p2p.clone();
    cluster.restart(victim, &bootstrap, &[]);
    let restarted = Instant::now();
    // Back in sync, the preferred replica takes partition 0 back: the consumers follow again.
    wait_partition_zero(&cluster, "partition 0 led by the restarted node", |l| {
        l == victim_id
    });
    produce(&cluster, "c", AFTER);
    let expected: BTreeSet<String> = [("a", BEFORE), ("b", DURING), ("c", AFTER)]
        .iter()
        .flat_map(|(tag, n)| (0..*n).map(move |i| format!("{tag}{i}")))
        .collect();
    for c in consumers {
        c.finish(&expected);
    }
    eprintln!(
        "every record consumed {:?} after the restart; test took {:?}",
        restarted.elapsed(),
        started.elapsed()
    );
}
