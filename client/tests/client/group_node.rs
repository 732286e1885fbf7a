//! The group consumer against a `rafka-node` process: members over Kafka TCP and over the mesh
//! in one group split a topic and take over from a leaver; cooperative-sticky members give up
//! only what moves; `rafka consume --group` commits what it printed and the next run resumes
//! after it. (Several `rafka consume --group` processes, a stock client in the same group, and
//! every `rafka group` command: `broker/tests/broker/client_groups.rs`.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rafka_client::admin::Admin;
use rafka_client::group::assignor::Assignor;
use rafka_client::{
    Bootstrap, Client, ClientConfig, ConsumerConfig, GroupConfig, GroupConsumer, NewTopic,
    OffsetReset, Producer, ProducerConfig, ProducerRecord, RebalanceListener, TopicPartition,
};
use tokio::task::JoinHandle;

use crate::node_e2e::rafka;
use crate::support::Node;

const PARTITIONS: i32 = 6;
const SETTLE: Duration = Duration::from_secs(60);

fn node() -> Option<Node> {
    Node::start_with(&[
        "--group-initial-rebalance-delay-ms",
        "0",
        "--group-min-session-timeout-ms",
        "1000",
    ])
}

async fn connect(bootstrap: &str) -> Client {
    Client::connect(ClientConfig::new(Bootstrap::parse(bootstrap).unwrap()))
        .await
        .unwrap()
}

async fn create_and_fill(client: &Client, topic: &str, records: usize) {
    Admin::new(client.clone())
        .create_topic(NewTopic::new(topic, PARTITIONS))
        .await
        .unwrap();
    produce(client, topic, "r", records).await;
}

async fn produce(client: &Client, topic: &str, tag: &str, records: usize) {
    let producer = Producer::new(client.clone(), ProducerConfig::default()).unwrap();
    let mut acks = Vec::new();
    for i in 0..records {
        let record = ProducerRecord::new(topic, format!("{tag}{i}")).with_key(format!("{tag}{i}"));
        acks.push(producer.send(record).await.unwrap());
    }
    for ack in acks {
        ack.await.unwrap();
    }
    producer.close().await;
}

/// Polls `condition` until it holds; fails saying `what` after `timeout`.
async fn wait_for(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> Result<(), String>,
) {
    let deadline = Instant::now() + timeout;
    loop {
        match condition() {
            Ok(()) => return,
            Err(last) if Instant::now() > deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// What a member saw: rebalance callbacks and every record with the generation it came in.
#[derive(Debug, Default)]
struct Seen {
    events: Vec<(&'static str, Vec<TopicPartition>)>,
    /// (generation, partition, offset, value).
    records: Vec<(i32, i32, i64, String)>,
    assignment: Vec<TopicPartition>,
    generation: Option<i32>,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Seen>>);

impl Shared {
    fn with<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.0.lock().unwrap())
    }
}

impl RebalanceListener for Shared {
    fn on_assigned(&mut self, p: &[TopicPartition]) {
        self.0.lock().unwrap().events.push(("assigned", p.to_vec()));
    }
    fn on_revoked(&mut self, p: &[TopicPartition]) {
        self.0.lock().unwrap().events.push(("revoked", p.to_vec()));
    }
    fn on_lost(&mut self, p: &[TopicPartition]) {
        self.0.lock().unwrap().events.push(("lost", p.to_vec()));
    }
}

/// A member polling in its own task until stopped.
struct Running {
    seen: Shared,
    stop: Arc<AtomicBool>,
    task: JoinHandle<GroupConsumer>,
}

impl Running {
    async fn start(bootstrap: &str, group: &str, topic: &str, assignors: &[Assignor]) -> Running {
        let client = connect(bootstrap).await;
        let consumer = ConsumerConfig {
            auto_offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        };
        let mut config = GroupConfig::new(group);
        config.assignors = assignors.to_vec();
        config.session_timeout = Duration::from_secs(10);
        config.heartbeat_interval = Duration::from_millis(300);
        config.auto_commit_interval = Duration::from_millis(200);
        let mut member = GroupConsumer::new(client, consumer, config).unwrap();
        member.subscribe([topic]);
        let seen = Shared::default();
        member.set_listener(seen.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, flag) = (seen.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !flag.load(Ordering::Acquire) {
                let records = member.poll(Duration::from_millis(200)).await.unwrap();
                let generation = member.generation().map(|(g, _)| g);
                let mut seen = s.0.lock().unwrap();
                seen.generation = generation;
                seen.assignment = member.assignment();
                for r in records {
                    let value =
                        String::from_utf8_lossy(r.value.as_deref().unwrap_or(&[])).into_owned();
                    seen.records
                        .push((generation.unwrap_or(-1), r.partition, r.offset, value));
                }
            }
            member
        });
        Running { seen, stop, task }
    }

    async fn stop(self) -> GroupConsumer {
        self.stop.store(true, Ordering::Release);
        self.task.await.unwrap()
    }
}

/// Waits until `members` hold disjoint assignments covering every partition in one generation.
async fn wait_for_split(members: &[&Running], sizes: &[usize]) -> i32 {
    let mut generation = -1;
    wait_for("the members to split the partitions", SETTLE, || {
        let views: Vec<(Option<i32>, Vec<TopicPartition>)> = members
            .iter()
            .map(|m| m.seen.with(|s| (s.generation, s.assignment.clone())))
            .collect();
        let gens: BTreeSet<Option<i32>> = views.iter().map(|v| v.0).collect();
        let all: BTreeSet<&TopicPartition> = views.iter().flat_map(|v| &v.1).collect();
        let mut got: Vec<usize> = views.iter().map(|v| v.1.len()).collect();
        got.sort_unstable();
        let mut want = sizes.to_vec();
        want.sort_unstable();
        if gens.len() == 1 && all.len() == PARTITIONS as usize && got == want {
            generation = views[0].0.unwrap_or(-1);
            Ok(())
        } else {
            Err(format!("{views:?}"))
        }
    })
    .await;
    generation
}

/// Every (partition, offset) consumed at least once, none by two members in one generation.
fn check_consumed(members: &[&Running], expected: usize) -> Result<(), String> {
    let mut by_generation: BTreeMap<(i32, i32, i64), usize> = BTreeMap::new();
    let mut values = BTreeSet::new();
    for (i, m) in members.iter().enumerate() {
        m.seen.with(|s| {
            for (g, p, o, v) in &s.records {
                values.insert(v.clone());
                if let Some(other) = by_generation.insert((*g, *p, *o), i)
                    && other != i
                {
                    panic!("partition {p} offset {o} consumed by two members in generation {g}");
                }
            }
        });
    }
    if values.len() == expected {
        Ok(())
    } else {
        Err(format!("{} of {expected} values consumed", values.len()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_over_tcp_and_the_mesh_split_a_topic_and_take_over_from_a_leaver() {
    let Some(node) = node() else { return };
    let admin_client = connect(&node.kafka).await;
    create_and_fill(&admin_client, "split", 600).await;
    let ranges = [Assignor::Range];
    let a = Running::start(&node.kafka, "g-split", "split", &ranges).await;
    let b = Running::start(&node.p2p, "g-split", "split", &ranges).await;
    let generation = wait_for_split(&[&a, &b], &[3, 3]).await;
    wait_for("every record consumed", SETTLE, || {
        check_consumed(&[&a, &b], 600)
    })
    .await;
    assert!(generation >= 1);

    // A leaves (LeaveGroup): b takes every partition over and reads what comes next, from the
    // offsets a committed.
    a.stop().await.close().await.unwrap();
    wait_for("b to own every partition", SETTLE, || {
        let n = b.seen.with(|s| s.assignment.len());
        (n == PARTITIONS as usize)
            .then_some(())
            .ok_or(format!("{n} owned"))
    })
    .await;
    produce(&admin_client, "split", "s", 60).await;
    wait_for("the records after the leave", SETTLE, || {
        let n = b
            .seen
            .with(|s| s.records.iter().filter(|r| r.3.starts_with('s')).count());
        (n >= 60).then_some(()).ok_or(format!("{n} of 60"))
    })
    .await;
    let events = b.seen.with(|s| s.events.clone());
    assert!(events.iter().all(|(kind, _)| *kind != "lost"), "{events:?}");
    b.stop().await.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_members_give_up_only_what_moves() {
    let Some(node) = node() else { return };
    let admin_client = connect(&node.kafka).await;
    create_and_fill(&admin_client, "coop", 300).await;
    let coop = [Assignor::CooperativeSticky];
    let a = Running::start(&node.p2p, "g-coop", "coop", &coop).await;
    let b = Running::start(&node.kafka, "g-coop", "coop", &coop).await;
    wait_for_split(&[&a, &b], &[3, 3]).await;
    let before: Vec<Vec<TopicPartition>> = [&a, &b]
        .iter()
        .map(|m| m.seen.with(|s| s.assignment.clone()))
        .collect();
    let events_before = [&a, &b].map(|m| m.seen.with(|s| s.events.len()));

    let c = Running::start(&node.p2p, "g-coop", "coop", &coop).await;
    wait_for_split(&[&a, &b, &c], &[2, 2, 2]).await;
    for (i, m) in [&a, &b].iter().enumerate() {
        let after = m.seen.with(|s| s.assignment.clone());
        assert!(
            after.iter().all(|tp| before[i].contains(tp)),
            "kept only what it owned"
        );
        let events = m.seen.with(|s| s.events.clone());
        let revoked: Vec<&TopicPartition> = events[events_before[i]..]
            .iter()
            .filter(|(kind, _)| *kind != "assigned")
            .flat_map(|(_, tps)| tps)
            .collect();
        assert_eq!(
            revoked.len(),
            1,
            "member {i} gave up one partition only: {events:?}"
        );
    }
    wait_for("every record consumed", SETTLE, || {
        check_consumed(&[&a, &b, &c], 300)
    })
    .await;
    for m in [a, b, c] {
        m.stop().await.close().await.unwrap();
    }
}

/// `rafka consume --group` commits what it printed, not what a poll returned past `-n`: the next
/// member resumes right after it, and `rafka group describe --json` shows the commit.
#[test]
fn cli_member_commits_what_it_printed_and_resumes_after_it() {
    let Some(node) = node() else { return };
    let mesh = ["--bootstrap", node.p2p.as_str()];
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    ok(rafka(
        &mesh,
        &["topic", "create", "k", "--partitions", "1"],
        b"",
    ));
    ok(rafka(
        &mesh,
        &["produce", "k", "--key-separator", "\t"],
        b"a\t1\nb\t2\nnokey\n",
    ));
    let first = [
        "consume",
        "k",
        "--group",
        "g-cli",
        "--from-beginning",
        "-n",
        "2",
        "--timeout-ms",
        "30000",
        "--format",
        "%k=%v@%p/%o\\n",
    ];
    assert_eq!(ok(rafka(&mesh, &first, b"")), b"a=1@0/0\nb=2@0/1\n");
    let described = ok(rafka(&mesh, &["group", "describe", "g-cli", "--json"], b""));
    let doc: serde_json::Value = serde_json::from_slice(&described).unwrap();
    assert_eq!(doc["state"], "Empty", "{doc}");
    assert_eq!(doc["members"].as_array().map(Vec::len), Some(0), "{doc}");
    let k0 = &doc["offsets"][0];
    assert_eq!(
        (&k0["topic"], &k0["partition"], &k0["committed"]),
        (
            &serde_json::json!("k"),
            &serde_json::json!(0),
            &serde_json::json!(2)
        ),
        "{doc}"
    );
    assert_eq!(
        (&k0["log_end"], &k0["lag"]),
        (&serde_json::json!(3), &serde_json::json!(1))
    );

    let resume = [
        "consume",
        "k",
        "--group",
        "g-cli",
        "-n",
        "1",
        "--timeout-ms",
        "30000",
    ];
    assert_eq!(ok(rafka(&mesh, &resume, b"")), b"nokey\n");
}
