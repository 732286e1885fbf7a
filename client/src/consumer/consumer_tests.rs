//! The consumer against the in-memory broker.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::records::Compression;

use super::*;
use crate::records::{BatchIdentity, OutgoingRecord, encode_batch};
use crate::testing::FakeBroker;
use crate::{Bootstrap, ClientConfig};

async fn client(broker: &FakeBroker) -> Client {
    let mut cc = ClientConfig::new(Bootstrap::parse("fake:9092").unwrap());
    cc.retry_backoff = Duration::from_millis(1);
    Client::connect_with(cc, broker.dialer()).await.unwrap()
}

fn fill(broker: &FakeBroker, topic: &str, p: i32, values: &[&str], compression: Compression) {
    let records: Vec<OutgoingRecord> = values
        .iter()
        .map(|v| OutgoingRecord {
            value: Some(Bytes::from(v.to_string())),
            ..Default::default()
        })
        .collect();
    let batch = encode_batch(&records, BatchIdentity::NONE, compression).unwrap();
    broker.append_raw(topic, p, batch).unwrap();
}

fn values(records: &[ConsumerRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect()
}

async fn drain(c: &mut Consumer, n: usize) -> Vec<ConsumerRecord> {
    let mut out = Vec::new();
    while out.len() < n {
        let got = c.poll(Duration::from_secs(5)).await.unwrap();
        assert!(!got.is_empty(), "timed out with {} of {n}", out.len());
        out.extend(got);
    }
    out
}

#[tokio::test]
async fn reads_from_the_beginning_across_batches_and_codecs() {
    let broker = FakeBroker::new();
    broker.create_topic("t", 1);
    fill(&broker, "t", 0, &["a", "b"], Compression::None);
    fill(&broker, "t", 0, &["c", "d", "e"], Compression::Gzip);
    let config = ConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        ..Default::default()
    };
    let mut c = Consumer::new(client(&broker).await, config).unwrap();
    c.assign_topic("t", Duration::from_secs(1)).await.unwrap();
    let got = drain(&mut c, 5).await;
    assert_eq!(values(&got), vec!["a", "b", "c", "d", "e"]);
    assert_eq!(
        got.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    let tp = TopicPartition::new("t", 0);
    assert_eq!(c.position(&tp), Some(5));
    assert_eq!(c.high_watermark(&tp), Some(5));
}

#[tokio::test]
async fn seek_to_an_offset_inside_a_batch_skips_its_head() {
    let broker = FakeBroker::new();
    broker.create_topic("t", 1);
    fill(&broker, "t", 0, &["a", "b", "c", "d"], Compression::Lz4);
    let mut c = Consumer::new(client(&broker).await, ConsumerConfig::default()).unwrap();
    let tp = TopicPartition::new("t", 0);
    c.assign([tp.clone()]);
    c.seek(&tp, SeekTo::Offset(2)).unwrap();
    assert_eq!(values(&drain(&mut c, 2).await), vec!["c", "d"]);
}

#[tokio::test]
async fn latest_by_default_then_new_records() {
    let broker = FakeBroker::new();
    broker.create_topic("t", 1);
    fill(&broker, "t", 0, &["old"], Compression::None);
    let mut c = Consumer::new(client(&broker).await, ConsumerConfig::default()).unwrap();
    let tp = TopicPartition::new("t", 0);
    c.assign([tp.clone()]);
    assert!(c.poll(Duration::from_millis(10)).await.unwrap().is_empty());
    assert_eq!(c.position(&tp), Some(1));
    fill(&broker, "t", 0, &["new"], Compression::None);
    assert_eq!(values(&drain(&mut c, 1).await), vec!["new"]);
}

#[tokio::test]
async fn out_of_range_resets_per_policy() {
    let broker = FakeBroker::new();
    broker.create_topic("t", 1);
    fill(&broker, "t", 0, &["a"], Compression::None);
    let tp = TopicPartition::new("t", 0);
    let config = ConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        ..Default::default()
    };
    let mut c = Consumer::new(client(&broker).await, config).unwrap();
    c.assign([tp.clone()]);
    c.seek(&tp, SeekTo::Offset(99)).unwrap();
    assert_eq!(values(&drain(&mut c, 1).await), vec!["a"]);

    let config = ConsumerConfig {
        auto_offset_reset: OffsetReset::None,
        ..Default::default()
    };
    let mut c = Consumer::new(client(&broker).await, config).unwrap();
    c.assign([tp.clone()]);
    c.seek(&tp, SeekTo::Offset(99)).unwrap();
    let mut result = Ok(Vec::new());
    for _ in 0..10 {
        result = c.poll(Duration::from_secs(1)).await;
        if result.is_err() {
            break;
        }
    }
    assert!(
        matches!(result, Err(Error::OffsetOutOfRange { offset: 99, .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn group_offsets_are_committed_and_resumed() {
    for cap in [9, 7, 3] {
        let broker = FakeBroker::new();
        broker.cap_version(ApiKey::OffsetFetch, cap);
        broker.cap_version(ApiKey::FindCoordinator, cap.min(6));
        broker.create_topic("t", 2);
        fill(&broker, "t", 0, &["a", "b", "c"], Compression::None);
        fill(&broker, "t", 1, &["x"], Compression::None);
        let config = ConsumerConfig {
            group_id: Some("g".into()),
            auto_offset_reset: OffsetReset::Earliest,
            ..Default::default()
        };
        let mut c = Consumer::new(client(&broker).await, config.clone()).unwrap();
        let tp0 = TopicPartition::new("t", 0);
        c.assign([tp0.clone()]);
        drain(&mut c, 3).await;
        c.commit_offsets(&[(tp0.clone(), 2)]).await.unwrap();
        assert_eq!(
            c.committed(std::slice::from_ref(&tp0)).await.unwrap()[&tp0],
            Some(2)
        );

        let mut again = Consumer::new(client(&broker).await, config).unwrap();
        again
            .assign_topic("t", Duration::from_secs(1))
            .await
            .unwrap();
        let mut got = values(&drain(&mut again, 2).await);
        got.sort();
        assert_eq!(
            got,
            vec!["c", "x"],
            "partition 0 resumes at 2, partition 1 from the start"
        );
    }
}

#[tokio::test]
async fn older_fetch_versions_work() {
    for cap in [18, 12, 4] {
        let broker = FakeBroker::new();
        broker.cap_version(ApiKey::Fetch, cap);
        broker.create_topic("t", 1);
        fill(&broker, "t", 0, &["a", "b"], Compression::Snappy);
        let mut c = Consumer::new(client(&broker).await, ConsumerConfig::default()).unwrap();
        let tp = TopicPartition::new("t", 0);
        c.assign([tp.clone()]);
        c.seek(&tp, SeekTo::Beginning).unwrap();
        assert_eq!(values(&drain(&mut c, 2).await), vec!["a", "b"]);
        assert!(broker.requests().contains(&(1, cap)));
    }
}

#[tokio::test]
async fn fetch_errors_are_retried_after_a_metadata_refresh() {
    let broker = FakeBroker::new();
    broker.create_topic("t", 1);
    fill(&broker, "t", 0, &["a", "b"], Compression::None);
    broker.fail_fetch("t", 0, 6, 2); // NOT_LEADER_OR_FOLLOWER twice
    broker.fail_fetch("t", 0, 2, 1); // CORRUPT_MESSAGE once
    let config = ConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        ..Default::default()
    };
    let mut c = Consumer::new(client(&broker).await, config).unwrap();
    c.assign_topic("t", Duration::from_secs(1)).await.unwrap();
    let metadata_before = broker.requests().iter().filter(|r| r.0 == 3).count();
    assert_eq!(values(&drain(&mut c, 2).await), vec!["a", "b"]);
    let metadata_after = broker.requests().iter().filter(|r| r.0 == 3).count();
    assert!(
        metadata_after > metadata_before,
        "NOT_LEADER triggers a metadata refresh"
    );
}

#[tokio::test]
async fn fatal_fetch_errors_reach_the_caller() {
    let broker = FakeBroker::new();
    broker.create_topic("t", 1);
    broker.fail_fetch("t", 0, 29, 1); // TOPIC_AUTHORIZATION_FAILED
    let mut c = Consumer::new(client(&broker).await, ConsumerConfig::default()).unwrap();
    c.assign_topic("t", Duration::from_secs(1)).await.unwrap();
    let mut result = Ok(Vec::new());
    for _ in 0..10 {
        result = c.poll(Duration::from_secs(1)).await;
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result.unwrap_err().kafka_code(), Some(29));
}

#[tokio::test]
async fn seek_by_timestamp() {
    let broker = FakeBroker::new();
    broker.create_topic("t", 1);
    for (ts, v) in [(1_000, "early"), (2_000, "late")] {
        let r = OutgoingRecord {
            value: Some(Bytes::from(v)),
            timestamp: ts,
            ..Default::default()
        };
        let batch = encode_batch(&[r], BatchIdentity::NONE, Compression::None).unwrap();
        broker.append_raw("t", 0, batch).unwrap();
    }
    let mut c = Consumer::new(client(&broker).await, ConsumerConfig::default()).unwrap();
    let tp = TopicPartition::new("t", 0);
    c.assign([tp.clone()]);
    c.seek(&tp, SeekTo::Timestamp(1_500)).unwrap();
    assert_eq!(values(&drain(&mut c, 1).await), vec!["late"]);
    // Past every record: the position is the log end.
    c.seek(&tp, SeekTo::Timestamp(9_000)).unwrap();
    assert!(c.poll(Duration::from_millis(20)).await.unwrap().is_empty());
    assert_eq!(c.position(&tp), Some(2));
}

#[tokio::test]
async fn a_partition_resumes_on_its_new_leader_after_an_election() {
    let broker = FakeBroker::cluster(2);
    broker.create_topic("t", 2);
    fill(&broker, "t", 0, &["a", "b"], Compression::None);
    let config = ConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        ..Default::default()
    };
    let mut c = Consumer::new(client(&broker).await, config).unwrap();
    c.assign_topic("t", Duration::from_secs(1)).await.unwrap();
    assert_eq!(values(&drain(&mut c, 2).await), vec!["a", "b"]);

    // Node 1 dies: its partition has no leader while the election runs, and the consumer's
    // refreshed metadata says so.
    broker.set_live(1, false);
    broker.set_leader("t", 0, None);
    fill(&broker, "t", 0, &["c"], Compression::None);
    assert!(c.poll(Duration::from_millis(50)).await.unwrap().is_empty());
    // Node 2 is elected: the consumer finds it without any error to tell it so.
    broker.set_leader("t", 0, Some(2));
    assert_eq!(values(&drain(&mut c, 1).await), vec!["c"]);
    let tp = TopicPartition::new("t", 0);
    assert_eq!(c.position(&tp), Some(3), "resumed from its position");
    // Node 1 returns and leads again: NOT_LEADER from node 2 sends the consumer back.
    broker.set_live(1, true);
    broker.set_leader("t", 0, Some(1));
    fill(&broker, "t", 0, &["d"], Compression::None);
    assert_eq!(values(&drain(&mut c, 1).await), vec!["d"]);
}
