//! One conformance suite for the client's in-memory test broker (`rafka_client::testing`, the
//! `testing` feature): the same client calls run against the real broker (a `rafka_broker::Node`
//! in this process, on loopback) and against the test broker served over TCP, and every answer
//! the client sees must be the same. The client's unit tests rely on the test broker; this is
//! what keeps it true to the broker it stands in for.

use std::collections::BTreeMap;
use std::time::Duration;

use rafka_broker::{Node, NodeConfig};
use rafka_client::testing::FakeBroker;
use rafka_client::{
    Admin, Bootstrap, Client, ClientConfig, Consumer, ConsumerConfig, NewTopic, OffsetReset,
    Producer, ProducerConfig, ProducerRecord, SeekTo, TopicPartition,
};
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "conformance";
const RECORDS: usize = 40;

/// What the client saw, one line per step, for comparing two brokers.
async fn transcript(kafka: &str) -> Vec<String> {
    let bootstrap = Bootstrap::kafka(kafka).unwrap();
    let client = Client::connect(ClientConfig::new(bootstrap)).await.unwrap();
    let admin = Admin::new(client.clone());
    let mut seen = Vec::new();
    let code = |r: rafka_client::Result<()>| r.map_err(|e| e.kafka_code());

    let mut topic = NewTopic::new(TOPIC, 3);
    topic
        .configs
        .insert("retention.ms".into(), "3600000".into());
    seen.push(format!(
        "create: {:?}",
        code(admin.create_topic(topic).await)
    ));
    let again = admin.create_topic(NewTopic::new(TOPIC, 3)).await;
    seen.push(format!("create again: {:?}", code(again)));
    seen.push(format!("topics: {:?}", user_topics(&admin).await));
    let described = admin.describe_topic(TOPIC).await.unwrap();
    let partitions: Vec<i32> = described
        .topic
        .partitions
        .iter()
        .map(|p| p.partition)
        .collect();
    seen.push(format!("partitions: {partitions:?}"));
    // The configs set on the topic (the test broker does not list the broker's defaults).
    let mut configs: Vec<_> = described
        .configs
        .iter()
        .filter(|c| !c.is_default)
        .map(|c| format!("{c:?}"))
        .collect();
    configs.sort();
    seen.push(format!("configs set: {configs:?}"));

    // An idempotent producer's keyed records: where each one landed.
    let producer = Producer::new(client.clone(), ProducerConfig::default()).unwrap();
    let mut deliveries = Vec::new();
    for i in 0..RECORDS {
        let mut record =
            ProducerRecord::new(TOPIC, format!("value-{i}")).with_key(format!("k{}", i % 7));
        if i % 3 == 0 {
            record = record.with_header("n", format!("{i}"));
        }
        deliveries.push(producer.send(record).await.unwrap());
    }
    let mut landed = Vec::new();
    for delivery in deliveries {
        let md = delivery.await.unwrap();
        landed.push((md.partition, md.offset));
    }
    producer.close().await;
    seen.push(format!("landed: {landed:?}"));

    // Everything read back from the start, per partition in offset order.
    let earliest = ConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        ..Default::default()
    };
    let mut consumer = Consumer::new(client.clone(), earliest).unwrap();
    consumer
        .assign_topic(TOPIC, Duration::from_secs(10))
        .await
        .unwrap();
    let mut read: BTreeMap<i32, Vec<(i64, String, String, usize)>> = BTreeMap::new();
    let mut count = 0;
    while count < RECORDS {
        let records = consumer.poll(Duration::from_secs(10)).await.unwrap();
        assert!(!records.is_empty(), "stalled after {count} records");
        count += records.len();
        for r in records {
            let text = |b: Option<bytes::Bytes>| String::from_utf8(b.unwrap().to_vec()).unwrap();
            let entry = (r.offset, text(r.key), text(r.value), r.headers.len());
            read.entry(r.partition).or_default().push(entry);
        }
    }
    seen.push(format!("read: {read:?}"));
    let ends: Vec<_> = (0..3)
        .map(|p| consumer.high_watermark(&TopicPartition::new(TOPIC, p)))
        .collect();
    seen.push(format!("high watermarks: {ends:?}"));

    // A position past the log end, with no reset policy.
    let strict = ConsumerConfig {
        auto_offset_reset: OffsetReset::None,
        ..Default::default()
    };
    let tp0 = TopicPartition::new(TOPIC, 0);
    let mut strict = Consumer::new(client.clone(), strict).unwrap();
    strict.assign([tp0.clone()]);
    strict.seek(&tp0, SeekTo::Offset(1_000)).unwrap();
    let past_end = strict.poll(Duration::from_secs(5)).await.map(|r| r.len());
    seen.push(format!(
        "past the end: {:?}",
        past_end.map_err(|e| e.kafka_code())
    ));

    // Simple-consumer commits (generation -1) and what a group reads back.
    let grouped = ConsumerConfig {
        group_id: Some("conformance-group".into()),
        ..Default::default()
    };
    let mut member = Consumer::new(client.clone(), grouped).unwrap();
    member.assign([tp0.clone()]);
    member.commit_offsets(&[(tp0.clone(), 2)]).await.unwrap();
    let tp1 = TopicPartition::new(TOPIC, 1);
    let committed = member.committed(&[tp0.clone(), tp1]).await.unwrap();
    let committed: BTreeMap<_, _> = committed
        .into_iter()
        .map(|(tp, o)| (tp.partition, o))
        .collect();
    seen.push(format!("committed: {committed:?}"));

    seen.push(format!(
        "delete: {:?}",
        code(admin.delete_topic(TOPIC).await)
    ));
    seen.push(format!(
        "topics after delete: {:?}",
        user_topics(&admin).await
    ));
    client.shutdown().await;
    seen
}

async fn user_topics(admin: &Admin) -> Vec<String> {
    let mut names: Vec<String> = admin
        .list_topics()
        .await
        .unwrap()
        .into_iter()
        .filter(|t| !t.internal)
        .map(|t| t.name)
        .collect();
    names.sort();
    names
}

/// A one-node cluster in this process: loopback, OS-assigned ports, a temporary data dir.
async fn real_broker(dir: &std::path::Path) -> Node {
    let config = NodeConfig {
        offsets_topic_partitions: 1,
        ..NodeConfig::single_on_loopback(dir)
    };
    Node::start(config, None, CancellationToken::new())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_broker_answers_the_client_as_the_real_broker_does() {
    let dir = tempfile::tempdir().unwrap();
    let node = real_broker(dir.path()).await;
    let real = transcript(&node.addresses().kafka.to_string()).await;
    node.shutdown().await;

    let fake = FakeBroker::new();
    let addr = fake.serve_tcp("127.0.0.1:0").await.unwrap();
    let test = transcript(&addr.to_string()).await;

    for (i, (real, test)) in real.iter().zip(&test).enumerate() {
        assert_eq!(
            test, real,
            "step {i}: the test broker (left) differs from the broker (right)"
        );
    }
    assert_eq!(test.len(), real.len());
}
