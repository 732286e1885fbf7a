//! Fetch semantics: long polling (woken by a produce, or empty at max_wait), min_bytes, byte limits
//! with KIP-74, whole batches from the middle, the high watermark, offsets out of range, leader
//! epochs, and responses in request order behind a long poll.

use crate::support::wire;
use std::time::{Duration, Instant};

use crate::support::TestNode;
use crate::support::batches;
use crate::support::raw::RawClient;
use crate::support::wire::Topic;
use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, MetadataRequest};
use rafka_store::TopicPartition;

fn long_poll(topic: &Topic, offset: i64, max_wait_ms: i32, min_bytes: i32) -> FetchRequest {
    wire::fetch_request(topic, 0, offset, wire::FETCH)
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
}

/// Sends `request` and returns its correlation id, without reading the answer.
async fn send_only(client: &mut RawClient, request: &FetchRequest) -> i32 {
    let (correlation_id, frame) = client.encode(request, wire::FETCH);
    client.send_frame(&frame).await.unwrap();
    correlation_id
}

/// Asserts that no response arrives for a while: the request is parked, not answered.
async fn assert_parked(client: &mut RawClient, what: &str) {
    let early = tokio::time::timeout(Duration::from_millis(300), client.read_frame()).await;
    assert!(
        early.is_err(),
        "{what}: answered before anything was produced"
    );
}

fn value_of(size: usize, fill: u8) -> Vec<u8> {
    vec![fill; size]
}

#[tokio::test]
async fn a_produce_wakes_a_long_poll_well_before_max_wait() {
    let node = TestNode::start().await;
    let mut consumer = node.connect().await;
    let mut producer = node.connect().await;
    let topic = wire::create_topic(&mut producer, "lp-wake", 1).await;
    wire::produce_values(&mut producer, &topic, 0, &[b"before"]).await;

    let max_wait = Duration::from_secs(10);
    let correlation_id = send_only(
        &mut consumer,
        &long_poll(&topic, 1, max_wait.as_millis() as i32, 1),
    )
    .await;
    assert_parked(&mut consumer, "fetch at the high watermark").await;
    let produced = Instant::now();
    wire::produce_values(&mut producer, &topic, 0, &[b"after"]).await;
    let frame = consumer.read_frame().await.expect("a response");
    let elapsed = produced.elapsed();
    assert!(
        elapsed < max_wait / 4,
        "woken after {elapsed:?}, max_wait {max_wait:?}"
    );
    let response = wire::decode::<FetchRequest>(frame, wire::FETCH, correlation_id);
    let data = wire::only_partition(&response);
    assert_eq!(data.error_code, 0);
    assert_eq!(
        batches::decode(&data.records.unwrap()),
        [(1, Bytes::from_static(b"after"))]
    );
    wire::stop(node).await;
}

#[tokio::test]
async fn a_long_poll_with_nothing_to_read_returns_empty_after_max_wait() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "lp-empty", 1).await;
    wire::produce_values(&mut client, &topic, 0, &[b"x"]).await;
    for (offset, max_wait) in [(1, 400u64), (1, 0)] {
        let started = Instant::now();
        let response = client
            .send(&long_poll(&topic, offset, max_wait as i32, 1), wire::FETCH)
            .await;
        let elapsed = started.elapsed();
        let data = wire::only_partition(&response);
        assert_eq!(data.error_code, 0);
        assert_eq!(data.high_watermark, 1);
        assert!(data.records.unwrap_or_default().is_empty());
        assert!(
            elapsed >= Duration::from_millis(max_wait.saturating_sub(10)),
            "returned after {elapsed:?}"
        );
        assert!(
            elapsed < Duration::from_millis(max_wait) + Duration::from_secs(3),
            "returned after {elapsed:?}"
        );
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn min_bytes_waits_for_enough_data_or_max_wait() {
    let node = TestNode::start().await;
    let mut consumer = node.connect().await;
    let mut producer = node.connect().await;
    let topic = wire::create_topic(&mut producer, "lp-min-bytes", 1).await;
    wire::produce_values(&mut producer, &topic, 0, &[b"small"]).await;

    // Not enough and nothing more comes: what there is, at max_wait.
    let started = Instant::now();
    let response = consumer
        .send(&long_poll(&topic, 0, 500, 100_000), wire::FETCH)
        .await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(490),
        "min_bytes ignored: {elapsed:?}"
    );
    let data = wire::only_partition(&response);
    assert_eq!(batches::decode(&data.records.unwrap()).len(), 1);

    // Enough arrives while waiting: answered then, with both batches.
    let correlation_id = send_only(&mut consumer, &long_poll(&topic, 0, 10_000, 50_000)).await;
    assert_parked(&mut consumer, "fetch below min_bytes").await;
    let big = value_of(60_000, b'b');
    let produced = Instant::now();
    wire::produce_values(&mut producer, &topic, 0, &[&big]).await;
    let frame = consumer.read_frame().await.unwrap();
    assert!(
        produced.elapsed() < Duration::from_secs(3),
        "woken after {:?}",
        produced.elapsed()
    );
    let data = wire::only_partition(&wire::decode::<FetchRequest>(
        frame,
        wire::FETCH,
        correlation_id,
    ));
    let records = batches::decode(&data.records.unwrap());
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].1.len(), 60_000);
    wire::stop(node).await;
}

#[tokio::test]
async fn partition_max_bytes_limits_whole_batches_and_kip74_returns_an_oversized_first_batch() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "fe-limits", 1).await;
    let kilobyte = value_of(1000, b'k');
    for _ in 0..3 {
        wire::produce_values(&mut client, &topic, 0, &[&kilobyte]).await;
    }
    let huge = value_of(10_000, b'h');
    wire::produce_values(&mut client, &topic, 0, &[&huge]).await;

    let fetch = |offset: i64, partition_max: i32, max_bytes: i32| {
        wire::fetch_request_with(
            &topic,
            FetchPartition::default()
                .with_fetch_offset(offset)
                .with_partition_max_bytes(partition_max),
            wire::FETCH,
        )
        .with_max_bytes(max_bytes)
    };
    for (offset, partition_max, max_bytes, expected) in [
        (0, 1500, 1 << 20, vec![0]),
        (0, 2500, 1 << 20, vec![0, 1]),
        (0, 1 << 20, 2500, vec![0, 1]),
        (0, 1 << 20, 1 << 20, vec![0, 1, 2, 3]),
        // KIP-74: the first batch comes whole even when it alone exceeds both limits.
        (3, 100, 1 << 20, vec![3]),
        (3, 1 << 20, 100, vec![3]),
        (3, 1, 1, vec![3]),
    ] {
        let response = client
            .send(&fetch(offset, partition_max, max_bytes), wire::FETCH)
            .await;
        let data = wire::only_partition(&response);
        assert_eq!(data.error_code, 0);
        let offsets: Vec<i64> = batches::decode(&data.records.unwrap())
            .iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(
            offsets, expected,
            "offset {offset} partition_max {partition_max} max_bytes {max_bytes}"
        );
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn max_bytes_spans_partitions_and_only_the_first_may_exceed_it() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "fe-max-bytes", 2).await;
    let kilobyte = value_of(1000, b'k');
    wire::produce_values(&mut client, &topic, 0, &[&kilobyte]).await;
    wire::produce_values(&mut client, &topic, 1, &[&kilobyte]).await;

    let both = |max_bytes: i32| {
        let partitions = (0..2)
            .map(|p| {
                FetchPartition::default()
                    .with_partition(p)
                    .with_partition_max_bytes(1 << 20)
            })
            .collect();
        FetchRequest::default()
            .with_max_bytes(max_bytes)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(wire::topic_name(&topic.name))
                    .with_partitions(partitions),
            ])
    };
    for (max_bytes, expected) in [(1 << 20, [1, 1]), (1500, [1, 0]), (10, [1, 0])] {
        let response = client.send(&both(max_bytes), wire::FETCH).await;
        let counts: Vec<usize> = response.responses[0]
            .partitions
            .iter()
            .map(|p| {
                assert_eq!(p.error_code, 0);
                assert_eq!(p.high_watermark, 1);
                batches::decode(&p.records.clone().unwrap_or_default()).len()
            })
            .collect();
        assert_eq!(counts, expected, "max_bytes {max_bytes}");
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn fetching_from_the_middle_of_a_batch_returns_the_whole_batch() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "fe-middle", 1).await;
    let values = wire::values("m", 5);
    wire::produce_values(&mut client, &topic, 0, &wire::refs(&values)).await;
    wire::produce_values(&mut client, &topic, 0, &[b"next"]).await;
    let data = wire::fetch_at(&mut client, &topic, 0, 3, wire::FETCH).await;
    let offsets: Vec<i64> = batches::decode(&data.records.unwrap())
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(
        offsets,
        [0, 1, 2, 3, 4, 5],
        "the batch holding offset 3 starts at 0"
    );
    wire::stop(node).await;
}

#[tokio::test]
async fn at_the_high_watermark_is_empty_and_beyond_the_log_is_out_of_range() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "fe-range", 1).await;
    for v in [b"a", b"b", b"c"] {
        wire::produce_values(&mut client, &topic, 0, &[v]).await;
    }
    for version in [4, 11, 12, 13, 18] {
        let data = wire::fetch_at(&mut client, &topic, 0, 3, version).await;
        assert_eq!(data.error_code, 0, "v{version}");
        assert_eq!(data.high_watermark, 3);
        assert!(data.records.unwrap_or_default().is_empty(), "v{version}");

        for offset in [4, i64::MAX, -1, -5] {
            let data = wire::fetch_at(&mut client, &topic, 0, offset, version).await;
            assert_eq!(
                data.error_code,
                ResponseError::OffsetOutOfRange.code(),
                "v{version} offset {offset}"
            );
            assert_eq!(data.high_watermark, 3, "v{version}: hw with the error");
            if version >= 5 {
                assert_eq!(
                    data.log_start_offset, 0,
                    "v{version}: log start with the error"
                );
            }
        }
    }

    // Move the log start past the first two records (as retention would).
    let broker = node.node.as_ref().unwrap().broker();
    let tp = TopicPartition {
        topic_id: topic.id,
        partition: 0,
    };
    let log = broker.store().partition(tp).unwrap();
    assert_eq!(log.delete_records_before(2).unwrap(), 2);
    // A log handle held past shutdown would keep the store open (and stall the runtime's exit).
    drop(log);
    for version in [5, 12, 13, 18] {
        let data = wire::fetch_at(&mut client, &topic, 0, 1, version).await;
        assert_eq!(
            data.error_code,
            ResponseError::OffsetOutOfRange.code(),
            "v{version} below log start"
        );
        assert_eq!(data.log_start_offset, 2, "v{version}");
        assert_eq!(data.high_watermark, 3, "v{version}");
        let data = wire::fetch_at(&mut client, &topic, 0, 2, version).await;
        assert_eq!(data.error_code, 0);
        assert_eq!(
            batches::decode(&data.records.unwrap()),
            [(2, Bytes::from_static(b"c"))]
        );
    }
    let earliest = wire::list_offset(&mut client, &topic, 0, -2, wire::LIST_OFFSETS).await;
    assert_eq!(earliest.offset, 2);
    wire::stop(node).await;
}

#[tokio::test]
async fn leader_epochs_are_checked() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "fe-epochs", 1).await;
    wire::produce_values(&mut client, &topic, 0, &[b"e"]).await;
    let metadata = client
        .send(&MetadataRequest::default().with_topics(None), 12)
        .await;
    let epoch = metadata
        .topics
        .iter()
        .find(|t| t.topic_id == topic.id)
        .unwrap()
        .partitions[0]
        .leader_epoch;
    // current_leader_epoch is on the wire from v9.
    for version in [9, 12, 13, 18] {
        for (current, expected) in [
            (-1, 0),
            (epoch, 0),
            (epoch + 1, ResponseError::UnknownLeaderEpoch.code()),
        ] {
            let request = wire::fetch_request_with(
                &topic,
                FetchPartition::default()
                    .with_fetch_offset(0)
                    .with_current_leader_epoch(current),
                version,
            );
            let data = wire::only_partition(&client.send(&request, version).await);
            assert_eq!(
                data.error_code, expected,
                "v{version} current_leader_epoch {current} (leader {epoch})"
            );
        }
        if epoch > 0 {
            let request = wire::fetch_request_with(
                &topic,
                FetchPartition::default()
                    .with_fetch_offset(0)
                    .with_current_leader_epoch(epoch - 1),
                version,
            );
            let data = wire::only_partition(&client.send(&request, version).await);
            assert_eq!(
                data.error_code,
                ResponseError::FencedLeaderEpoch.code(),
                "v{version}"
            );
        }
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn responses_keep_request_order_behind_a_long_poll() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "fe-order", 1).await;
    let max_wait = Duration::from_millis(800);
    let started = Instant::now();
    let fetch_id = send_only(
        &mut client,
        &long_poll(&topic, 0, max_wait.as_millis() as i32, 1),
    )
    .await;
    let (metadata_id, frame) = client.encode(&MetadataRequest::default().with_topics(None), 12);
    client.send_frame(&frame).await.unwrap();

    let first = client.read_frame().await.unwrap();
    let first_at = started.elapsed();
    let second = client.read_frame().await.unwrap();
    assert_eq!(
        wire::correlation_id(&first),
        fetch_id,
        "the long-polling fetch answers first"
    );
    assert_eq!(wire::correlation_id(&second), metadata_id);
    assert!(
        first_at >= max_wait - Duration::from_millis(10),
        "the fetch did not wait: {first_at:?}"
    );
    let fetch = wire::decode::<FetchRequest>(first, wire::FETCH, fetch_id);
    assert!(
        wire::only_partition(&fetch)
            .records
            .unwrap_or_default()
            .is_empty()
    );
    let metadata = wire::decode::<MetadataRequest>(second, 12, metadata_id);
    assert!(metadata.topics.iter().any(|t| t.topic_id == topic.id));
    wire::stop(node).await;
}
