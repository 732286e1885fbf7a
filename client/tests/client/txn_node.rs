//! The transactional producer against a `rafka-node` process, over Kafka TCP and over the
//! mesh: committed transactions are seen by read_committed consumers (plain and group), aborted
//! ones only by read_uncommitted consumers; a second producer with the same transactional id
//! fences the first (its next send or commit fails fatally, and later calls say so); calls out
//! of order fail without harm; `TxnAdmin` lists and describes the ids; offsets sent to the
//! transaction commit with it (TxnOffsetCommit).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rafka_client::admin::Admin;
use rafka_client::transactions::{ListFilter, TxnAdmin};
use rafka_client::{
    Bootstrap, Client, ClientConfig, Consumer, ConsumerConfig, ConsumerGroupMetadata, Error,
    GroupConfig, GroupConsumer, NewTopic, OffsetReset, Producer, ProducerConfig, ProducerRecord,
    SeekTo, TopicPartition,
};

use crate::support::Node;

const PARTITIONS: i32 = 3;
const SETTLE: Duration = Duration::from_secs(60);

/// A node serving transactional producers, once its feature level allows transactional batches.
async fn node() -> Option<Node> {
    let node = Node::start_with(&[
        "--transaction-state-partitions",
        "3",
        "--group-initial-rebalance-delay-ms",
        "0",
    ])?;
    let deadline = Instant::now() + SETTLE;
    loop {
        let level = node
            .http_get("/cluster")
            .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
            .and_then(|doc| doc.pointer("/features/finalized").and_then(|v| v.as_u64()));
        if level.is_some_and(|l| l >= 4) {
            return Some(node);
        }
        assert!(
            Instant::now() < deadline,
            "the transactions feature level was not reached: {level:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn connect(bootstrap: &str) -> Client {
    Client::connect(ClientConfig::new(Bootstrap::parse(bootstrap).unwrap()))
        .await
        .unwrap()
}

fn transactional(client: &Client, id: &str) -> Producer {
    let config = ProducerConfig {
        transactional_id: Some(id.to_owned()),
        max_block: SETTLE,
        ..ProducerConfig::default()
    };
    Producer::new(client.clone(), config).unwrap()
}

/// Sends `values` (keyed by themselves, so they spread over the partitions) in the open
/// transaction.
async fn send_all(producer: &Producer, topic: &str, values: &[String]) {
    for v in values {
        let record = ProducerRecord::new(topic, v.clone()).with_key(v.clone());
        drop(producer.send(record).await.unwrap());
    }
}

fn values(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

/// Every record of `topic` from the beginning, read until `expected` arrived (or `SETTLE`
/// passed), then for another moment (to see what should not be there).
async fn read_all(
    client: &Client,
    topic: &str,
    read_committed: bool,
    expected: usize,
) -> Vec<String> {
    let config = ConsumerConfig {
        read_committed,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(client.clone(), config).unwrap();
    let tps: Vec<_> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    consumer.assign(tps.clone());
    for tp in &tps {
        consumer.seek(tp, SeekTo::Beginning).unwrap();
    }
    let mut out = Vec::new();
    let deadline = Instant::now() + SETTLE;
    while out.len() < expected && Instant::now() < deadline {
        for r in consumer.poll(Duration::from_millis(200)).await.unwrap() {
            out.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
    }
    // Anything more (an aborted record) would arrive with what was read.
    for r in consumer.poll(Duration::from_millis(300)).await.unwrap() {
        out.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
    }
    out
}

fn set(v: &[String]) -> BTreeSet<String> {
    v.iter().cloned().collect()
}

async fn scenario(bootstrap: &str, tag: &str) {
    let client = connect(bootstrap).await;
    let topic = format!("txn-{tag}");
    Admin::new(client.clone())
        .create_topic(NewTopic::new(&topic, PARTITIONS))
        .await
        .unwrap();

    // Calls out of order fail without harm.
    let id = format!("lib-{tag}");
    let producer = transactional(&client, &id);
    assert!(matches!(
        producer.begin_transaction(),
        Err(Error::TransactionState(_))
    ));
    producer.init_transactions().await.unwrap();
    assert!(matches!(
        producer
            .send(ProducerRecord::new(topic.as_str(), "x"))
            .await,
        Err(Error::TransactionState(_))
    ));
    assert!(matches!(
        producer.commit_transaction().await,
        Err(Error::TransactionState(_))
    ));
    let plain = Producer::new(client.clone(), ProducerConfig::default()).unwrap();
    assert!(matches!(
        plain.begin_transaction(),
        Err(Error::TransactionState(_))
    ));
    plain.close().await;

    // Commit, abort, commit; an empty transaction commits too.
    let first = values("commit-a", 30);
    producer.begin_transaction().unwrap();
    send_all(&producer, &topic, &first).await;
    producer.commit_transaction().await.unwrap();
    let aborted = values("abort", 20);
    producer.begin_transaction().unwrap();
    send_all(&producer, &topic, &aborted).await;
    producer.flush().await;
    producer.abort_transaction().await.unwrap();
    let second = values("commit-b", 10);
    producer.begin_transaction().unwrap();
    send_all(&producer, &topic, &second).await;
    producer.commit_transaction().await.unwrap();
    producer.begin_transaction().unwrap();
    producer.commit_transaction().await.unwrap();

    let committed: BTreeSet<String> = set(&first).union(&set(&second)).cloned().collect();
    let seen = read_all(&client, &topic, true, committed.len()).await;
    assert_eq!(seen.len(), committed.len(), "each committed record once");
    assert_eq!(set(&seen), committed, "read_committed");
    let all: BTreeSet<String> = committed.union(&set(&aborted)).cloned().collect();
    let everything = read_all(&client, &topic, false, all.len()).await;
    assert_eq!(set(&everything), all, "read_uncommitted");

    // A group member reading read_committed sees the same.
    let group_seen = {
        let consumer = ConsumerConfig {
            read_committed: true,
            auto_offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        };
        let mut member = GroupConsumer::new(
            client.clone(),
            consumer,
            GroupConfig::new(format!("g-{tag}")),
        )
        .unwrap();
        member.subscribe([topic.as_str()]);
        let mut out = Vec::new();
        let deadline = Instant::now() + SETTLE;
        while out.len() < committed.len() && Instant::now() < deadline {
            for r in member.poll(Duration::from_millis(200)).await.unwrap() {
                out.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
            }
        }
        member.close().await.unwrap();
        out
    };
    assert_eq!(set(&group_seen), committed, "a read_committed group member");

    // The admin sees the id, ended.
    let admin = TxnAdmin::new(client.clone());
    let deadline = Instant::now() + SETTLE;
    let described = loop {
        let d = admin.describe(&id).await.unwrap();
        // EndTxn is answered once the decision is written; the markers follow.
        if d.state == "CompleteCommit" || Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(described.state, "CompleteCommit");
    assert_eq!(described.timeout_ms, 60_000);
    let listed = admin.list(&ListFilter::default()).await.unwrap();
    let mine = listed
        .iter()
        .find(|t| t.transactional_id == id)
        .unwrap_or_else(|| panic!("{id} not in {listed:?}"));
    assert_eq!(mine.producer_id, described.producer_id);

    // A second producer with the same id fences the first: the first one's next transaction
    // fails fatally, and so does every later call.
    producer.begin_transaction().unwrap();
    send_all(&producer, &topic, &values("open", 3)).await;
    let newer = transactional(&client, &id);
    newer.init_transactions().await.unwrap();
    let bumped = admin.describe(&id).await.unwrap();
    assert!(
        (bumped.producer_id, bumped.producer_epoch)
            > (described.producer_id, described.producer_epoch),
        "{described:?} then {bumped:?}"
    );
    let fenced = producer.commit_transaction().await.unwrap_err();
    assert!(
        fenced.is_fatal_for_transactions() && matches!(fenced, Error::ProducerFenced(_)),
        "{fenced:?}"
    );
    assert!(matches!(
        producer.begin_transaction(),
        Err(Error::ProducerFenced(_))
    ));
    assert!(matches!(
        producer
            .send(ProducerRecord::new(topic.as_str(), "late"))
            .await,
        Err(Error::ProducerFenced(_))
    ));
    producer.close().await;
    newer.begin_transaction().unwrap();
    send_all(&newer, &topic, &["newer".to_owned()]).await;
    newer.commit_transaction().await.unwrap();
    let seen = read_all(&client, &topic, true, committed.len() + 1).await;
    assert!(seen.contains(&"newer".to_owned()), "{seen:?}");
    assert!(
        !seen.iter().any(|v| v.starts_with("open-")),
        "the fenced producer's open transaction was aborted: {seen:?}"
    );

    // Offsets sent to a transaction are committed with it.
    let group = ConsumerGroupMetadata::new(format!("offsets-{tag}"));
    let tp = TopicPartition::new(topic.as_str(), 0);
    newer.begin_transaction().unwrap();
    send_all(&newer, &topic, &["with-offsets".to_owned()]).await;
    newer
        .send_offsets_to_transaction(&[(tp.clone(), 7)], &group)
        .await
        .unwrap();
    newer.commit_transaction().await.unwrap();
    // require_stable: UNSTABLE_OFFSET_COMMIT (retried) until the marker on the offsets partition
    // commits them, so this reads the transaction's offset, not an older one.
    let committed = rafka_client::consumer::offsets::committed(
        &client,
        &group.group_id,
        std::slice::from_ref(&tp),
        SETTLE,
    )
    .await
    .unwrap();
    assert_eq!(committed[&tp], Some(7));
    newer.close().await;
    client.shutdown().await;
}

#[tokio::test]
async fn transactions_over_kafka_tcp() {
    let Some(node) = node().await else { return };
    scenario(&node.kafka, "tcp").await;
}

#[cfg(feature = "mesh")]
#[tokio::test]
async fn transactions_over_the_mesh() {
    let Some(node) = node().await else { return };
    scenario(&node.p2p, "mesh").await;
}
