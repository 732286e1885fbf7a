//! Produce v3-13 (acks 0/1/-1, invalid acks, topic ids at v13), Fetch v4-18 (exact round trip,
//! topic ids at v13+) and ListOffsets v1-10 at every served version.

use crate::support::TestNode;
use crate::support::batches;
use crate::support::wire;
use crate::support::wire::Topic;
use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    CreateTopicsRequest, FetchRequest, GroupId, OffsetCommitRequest, OffsetFetchRequest,
    ProduceRequest,
};
use uuid::Uuid;

/// Batch header layout: the leader rewrites base offset (0..8) and partition leader epoch (12..16);
/// everything from the attributes (21..) is under the CRC and must come back byte for byte.
const CRC_START: usize = 21;

#[tokio::test]
async fn produce_at_every_version_with_every_acks() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    for version in 3..=13 {
        let topic = wire::create_topic(&mut client, &format!("pr-v{version}"), 1).await;
        let mut expected: Vec<(i64, Bytes)> = Vec::new();
        let mut next = 0;
        for acks in [-1i16, 1] {
            let values = wire::values(&format!("v{version}-acks{acks}"), 3);
            let batch = wire::batch(&wire::refs(&values), None, 1_700_000_000_000);
            let response = wire::produce_at(&mut client, &topic, 0, batch, version).await;
            assert_eq!(
                response.error_code, 0,
                "v{version} acks={acks}: {:?}",
                response.error_message
            );
            assert_eq!(response.index, 0);
            assert_eq!(response.base_offset, next, "v{version} acks={acks}");
            assert_eq!(response.log_append_time_ms, -1, "CreateTime topic");
            if version >= 5 {
                assert_eq!(response.log_start_offset, 0, "v{version}");
            }
            expected.extend(
                values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (next + i as i64, Bytes::from(v.clone()))),
            );
            next += 3;
        }

        // acks=0: no response at all; the next request's response is the next frame.
        let values = wire::values(&format!("v{version}-acks0"), 2);
        let batch = wire::batch(&wire::refs(&values), None, 1_700_000_000_000);
        let (_, frame) = client.encode(
            &wire::produce_request(&topic, 0, Some(batch), 0, version),
            version,
        );
        client.send_frame(&frame).await.unwrap();
        expected.extend(
            values
                .iter()
                .enumerate()
                .map(|(i, v)| (next + i as i64, Bytes::from(v.clone()))),
        );
        // `send` checks the correlation id of the answer: it is the ListOffsets', not the Produce's.
        // As on Kafka, a request after a produce on the same connection starts only once that
        // produce's append is done, so it sees the records at once.
        assert_eq!(
            wire::log_end(&mut client, &topic, 0).await,
            next + 2,
            "v{version}"
        );

        // Invalid acks: refused per partition, nothing written.
        let batch = wire::batch(&[b"never"], None, 1_700_000_000_000);
        let response = client
            .send(
                &wire::produce_request(&topic, 0, Some(batch), 2, version),
                version,
            )
            .await;
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(
            partition.error_code,
            ResponseError::InvalidRequiredAcks.code(),
            "v{version}"
        );
        assert_eq!(
            wire::read_all(&mut client, &topic, 0, 0).await,
            expected,
            "v{version}"
        );
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn produce_v13_addresses_topics_by_id() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "pr-by-id", 1).await;
    let response =
        wire::produce_at(&mut client, &topic, 0, wire::batch(&[b"x"], None, 0), 13).await;
    assert_eq!(response.error_code, 0);
    // The name is not on the wire at v13: a topic known by name only is not found.
    let unknown = Topic {
        name: "pr-by-id".into(),
        id: Uuid::new_v4(),
    };
    let response =
        wire::produce_at(&mut client, &unknown, 0, wire::batch(&[b"y"], None, 0), 13).await;
    assert_eq!(response.error_code, ResponseError::UnknownTopicId.code());
    assert_eq!(wire::log_end(&mut client, &topic, 0).await, 1);
    wire::stop(node).await;
}

#[tokio::test]
async fn fetch_at_every_version_returns_the_exact_batches() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "fe-versions", 1).await;
    let first = wire::batch(&[b"one", b"two", b"three"], None, 1_700_000_000_000);
    let second = wire::batch_with(
        &[b"four", b"five"],
        None,
        1_700_000_000_001,
        kafka_protocol::records::Compression::Gzip,
    );
    assert_eq!(
        wire::produce(&mut client, &topic, 0, first.clone()).await,
        0
    );
    assert_eq!(
        wire::produce(&mut client, &topic, 0, second.clone()).await,
        3
    );
    let mut produced = first.to_vec();
    produced.extend_from_slice(&second);

    for version in 4..=18 {
        let response = client
            .send(&wire::fetch_request(&topic, 0, 0, version), version)
            .await;
        if version >= 7 {
            assert_eq!(response.session_id, 0, "no fetch sessions");
        }
        if version >= 13 {
            assert_eq!(response.responses[0].topic_id, topic.id, "v{version}");
        } else {
            assert_eq!(
                response.responses[0].topic.0.as_str(),
                topic.name,
                "v{version}"
            );
        }
        let data = wire::only_partition(&response);
        assert_eq!(data.error_code, 0, "v{version}");
        assert_eq!(data.high_watermark, 5, "v{version}");
        assert_eq!(
            data.last_stable_offset, 5,
            "v{version}: LSO == HW without transactions"
        );
        if version >= 5 {
            assert_eq!(data.log_start_offset, 0, "v{version}");
        }
        assert!(data.aborted_transactions.as_ref().is_none_or(Vec::is_empty));
        let records = data.records.unwrap();
        assert_eq!(
            records.len(),
            produced.len(),
            "v{version}: both batches, whole"
        );
        // Byte for byte under the CRC; the offsets the leader assigned in the header.
        assert_eq!(
            records[CRC_START..first.len()],
            produced[CRC_START..first.len()],
            "v{version}"
        );
        assert_eq!(
            records[first.len() + CRC_START..],
            produced[first.len() + CRC_START..],
            "v{version}"
        );
        assert_eq!(records[..8], 0i64.to_be_bytes());
        assert_eq!(records[first.len()..first.len() + 8], 3i64.to_be_bytes());
        let decoded = batches::decode(&records);
        let values: Vec<_> = decoded.iter().map(|(o, v)| (*o, v.as_ref())).collect();
        assert_eq!(
            values,
            [
                (0, &b"one"[..]),
                (1, b"two"),
                (2, b"three"),
                (3, b"four"),
                (4, b"five")
            ],
            "v{version}"
        );
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn fetch_errors_per_version() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "fe-errors", 1).await;
    for version in 4..=18 {
        let unknown = Topic {
            name: format!("fe-unknown-{version}"),
            id: Uuid::new_v4(),
        };
        let data = wire::fetch_at(&mut client, &unknown, 0, 0, version).await;
        let expected = if version >= 13 {
            ResponseError::UnknownTopicId
        } else {
            ResponseError::UnknownTopicOrPartition
        };
        assert_eq!(data.error_code, expected.code(), "v{version}");

        let data = wire::fetch_at(&mut client, &topic, 7, 0, version).await;
        assert_eq!(
            data.error_code,
            ResponseError::UnknownTopicOrPartition.code(),
            "v{version} partition 7"
        );
        assert_eq!(data.partition_index, 7);
    }
    // A fetch session the broker never handed out.
    let request: FetchRequest = wire::fetch_request(&topic, 0, 0, 12)
        .with_session_id(42)
        .with_session_epoch(1);
    let response = client.send(&request, 12).await;
    assert_eq!(
        response.error_code,
        ResponseError::FetchSessionIdNotFound.code()
    );
    wire::stop(node).await;
}

#[tokio::test]
async fn list_offsets_at_every_version() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "lo-versions", 1).await;
    // Offsets 0-1 at t=1000, 2 at t=3000, 3-5 at t=2000: the max timestamp is not the last batch.
    wire::produce(
        &mut client,
        &topic,
        0,
        wire::batch(&[b"a", b"b"], None, 1000),
    )
    .await;
    wire::produce(&mut client, &topic, 0, wire::batch(&[b"c"], None, 3000)).await;
    wire::produce(
        &mut client,
        &topic,
        0,
        wire::batch(&[b"d", b"e", b"f"], None, 2000),
    )
    .await;
    for version in 1..=10 {
        let check =
            |what: &str,
             r: &kafka_protocol::messages::list_offsets_response::ListOffsetsPartitionResponse,
             offset: i64,
             timestamp: Option<i64>| {
                assert_eq!(r.error_code, 0, "v{version} {what}");
                assert_eq!(r.offset, offset, "v{version} {what}");
                if let Some(timestamp) = timestamp {
                    assert_eq!(r.timestamp, timestamp, "v{version} {what}");
                }
                if version >= 4 && offset >= 0 {
                    assert!(r.leader_epoch >= 0, "v{version} {what}: leader epoch");
                }
            };
        check(
            "earliest",
            &wire::list_offset(&mut client, &topic, 0, -2, version).await,
            0,
            None,
        );
        check(
            "latest",
            &wire::list_offset(&mut client, &topic, 0, -1, version).await,
            6,
            None,
        );
        check(
            "t=0",
            &wire::list_offset(&mut client, &topic, 0, 0, version).await,
            0,
            Some(1000),
        );
        check(
            "t=1500",
            &wire::list_offset(&mut client, &topic, 0, 1500, version).await,
            2,
            Some(3000),
        );
        check(
            "t=3000",
            &wire::list_offset(&mut client, &topic, 0, 3000, version).await,
            2,
            Some(3000),
        );
        // Past every record: offset -1 and timestamp -1, no error.
        check(
            "t=3001",
            &wire::list_offset(&mut client, &topic, 0, 3001, version).await,
            -1,
            Some(-1),
        );
        if version >= 7 {
            check(
                "max timestamp",
                &wire::list_offset(&mut client, &topic, 0, -3, version).await,
                2,
                Some(3000),
            );
        }
        let unknown = Topic {
            name: "lo-unknown".into(),
            id: Uuid::nil(),
        };
        let r = wire::list_offset(&mut client, &unknown, 0, -1, version).await;
        assert_eq!(
            r.error_code,
            ResponseError::UnknownTopicOrPartition.code(),
            "v{version}"
        );
        let r = wire::list_offset(&mut client, &topic, 3, -1, version).await;
        assert_eq!(
            r.error_code,
            ResponseError::UnknownTopicOrPartition.code(),
            "v{version}"
        );
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn produce_to_many_partitions_in_one_request() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "pr-multi", 3).await;
    let mut request = wire::produce_request(&topic, 0, Some(wire::batch(&[b"p0"], None, 0)), -1, 9);
    for p in [1, 2, 5] {
        let data = kafka_protocol::messages::produce_request::PartitionProduceData::default()
            .with_index(p)
            .with_records(Some(wire::batch(&[format!("p{p}").as_bytes()], None, 0)));
        request.topic_data[0].partition_data.push(data);
    }
    let response = client.send::<ProduceRequest>(&request, 9).await;
    let partitions = &response.responses[0].partition_responses;
    let codes: Vec<_> = partitions.iter().map(|p| (p.index, p.error_code)).collect();
    assert_eq!(
        codes,
        [
            (0, 0),
            (1, 0),
            (2, 0),
            (5, ResponseError::UnknownTopicOrPartition.code())
        ]
    );
    for p in 0..3 {
        let records = wire::read_all(&mut client, &topic, p, 0).await;
        assert_eq!(records, [(0, Bytes::from(format!("p{p}")))]);
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn acks_all_needs_min_insync_replicas() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic_with(
        &mut client,
        "pr-min-isr",
        1,
        &[("min.insync.replicas", "2")],
    )
    .await;
    let response = client
        .send(
            &wire::produce_request(&topic, 0, Some(wire::batch(&[b"x"], None, 0)), -1, 9),
            9,
        )
        .await;
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(
        partition.error_code,
        ResponseError::NotEnoughReplicas.code()
    );
    assert_eq!(
        wire::log_end(&mut client, &topic, 0).await,
        0,
        "nothing written"
    );
    let response = client
        .send(
            &wire::produce_request(&topic, 0, Some(wire::batch(&[b"y"], None, 0)), 1, 9),
            9,
        )
        .await;
    assert_eq!(
        response.responses[0].partition_responses[0].error_code, 0,
        "acks=1 needs only the leader"
    );
    wire::stop(node).await;
}

#[tokio::test]
async fn log_append_time_topics_stamp_the_broker_time() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic_with(
        &mut client,
        "pr-append-time",
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    )
    .await;
    let before = rafka_broker::api::now_ms();
    let response = wire::produce_at(
        &mut client,
        &topic,
        0,
        wire::batch(&[b"a", b"b"], None, 1000),
        9,
    )
    .await;
    let after = rafka_broker::api::now_ms();
    assert_eq!(response.error_code, 0);
    let stamped = response.log_append_time_ms;
    assert!(
        (before..=after).contains(&stamped),
        "log_append_time_ms {stamped} not in [{before}, {after}]"
    );
    let data = wire::fetch_at(&mut client, &topic, 0, 0, wire::FETCH).await;
    let records = data.records.unwrap();
    // Header: attributes at 21 (bit 3: LogAppendTime), max timestamp at 35 (the append time,
    // which consumers report for every record of such a batch).
    let attributes = i16::from_be_bytes(records[21..23].try_into().unwrap());
    assert_ne!(attributes & 0b1000, 0, "timestamp type bit");
    let max_timestamp = i64::from_be_bytes(records[35..43].try_into().unwrap());
    assert_eq!(max_timestamp, stamped);
    // ListOffsets by time sees the append time, not the producer's.
    let found = wire::list_offset(&mut client, &topic, 0, 2000, wire::LIST_OFFSETS).await;
    assert_eq!((found.offset, found.timestamp), (0, stamped));
    wire::stop(node).await;
}

#[tokio::test]
async fn read_committed_sees_the_same_as_read_uncommitted_without_transactions() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "fe-isolation", 1).await;
    wire::produce_values(&mut client, &topic, 0, &[b"a", b"b"]).await;
    for version in [4, 11, 12, 15, 18] {
        let request = wire::fetch_request(&topic, 0, 0, version).with_isolation_level(1);
        let data = wire::only_partition(&client.send(&request, version).await);
        assert_eq!(data.error_code, 0);
        assert_eq!(
            (data.high_watermark, data.last_stable_offset),
            (2, 2),
            "v{version}"
        );
        assert_eq!(
            batches::decode(&data.records.unwrap()).len(),
            2,
            "v{version}"
        );
    }
    for version in [2, 7, 10] {
        let request = wire::list_offsets_request(&topic, 0, -1).with_isolation_level(1);
        let response = client.send(&request, version).await;
        assert_eq!(
            response.topics[0].partitions[0].offset, 2,
            "v{version}: latest stable offset"
        );
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn a_fetch_pipelined_behind_a_produce_sees_its_records() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "pr-pipelined-fetch", 1).await;
    let mut socket = wire::Socket::connect(node.kafka_addr()).await;
    for round in 0..20i64 {
        let batch = wire::batch(&[b"pipelined"], None, 1_700_000_000_000);
        let produce = wire::frame(&wire::produce_request(&topic, 0, Some(batch), 1, 9), 9, 1);
        let fetch = wire::frame(&wire::fetch_request(&topic, 0, round, 11), 11, 2);
        // Both requests in one write: the broker must finish the produce before starting the fetch.
        socket.write(&[produce, fetch].concat()).await.unwrap();
        let produced = wire::decode::<ProduceRequest>(socket.read_frame().await.unwrap(), 9, 1);
        assert_eq!(
            produced.responses[0].partition_responses[0].base_offset,
            round
        );
        let fetched = wire::decode::<FetchRequest>(socket.read_frame().await.unwrap(), 11, 2);
        let partition = wire::only_partition(&fetched);
        assert_eq!(partition.high_watermark, round + 1, "round {round}");
        let records = batches::decode(partition.records.as_ref().unwrap());
        assert_eq!(
            records.last().map(|(offset, _)| *offset),
            Some(round),
            "round {round}"
        );
    }
    wire::stop(node).await;
}

/// Kafka handles one request of a connection at a time; Rafka starts requests without waiting,
/// so a request with effects (a topic created, an offset committed) must still be answered
/// before the requests pipelined behind it on the same connection start.
#[tokio::test]
async fn requests_pipelined_behind_a_create_topics_or_a_commit_see_its_effect() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    wire::find_coordinator(&mut client, "pipelined").await;
    let mut socket = wire::Socket::connect(node.kafka_addr()).await;
    for round in 0..5i64 {
        let name = format!("pr-pipelined-create-{round}");
        let create = CreateTopicsRequest::default()
            .with_topics(vec![wire::creatable(&name, 1, 1, &[])])
            .with_timeout_ms(10_000);
        let topic = Topic {
            name: name.clone(),
            id: Uuid::nil(),
        };
        let batch = wire::batch(&[b"after create"], None, 1_700_000_000_000);
        let produce = wire::produce_request(&topic, 0, Some(batch), 1, 9);
        let commit = wire::simple_commit("pipelined", &name, round + 1);
        let committed = OffsetFetchRequest::default()
            .with_group_id(GroupId(wire::str("pipelined")))
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(wire::topic_name(&name))
                    .with_partition_indexes(vec![0]),
            ]));
        // All four in one write: each must see what the ones before it did.
        let frames = [
            wire::frame(&create, wire::CREATE_TOPICS, 1),
            wire::frame(&produce, 9, 2),
            wire::frame(&commit, 8, 3),
            wire::frame(&committed, 7, 4),
        ];
        socket.write(&frames.concat()).await.unwrap();
        let created = wire::decode::<CreateTopicsRequest>(
            socket.read_frame().await.unwrap(),
            wire::CREATE_TOPICS,
            1,
        );
        assert_eq!(created.topics[0].error_code, 0, "round {round}");
        let produced = wire::decode::<ProduceRequest>(socket.read_frame().await.unwrap(), 9, 2);
        assert_eq!(
            produced.responses[0].partition_responses[0].error_code, 0,
            "a produce pipelined behind the CreateTopics of its topic, round {round}"
        );
        let commit = wire::decode::<OffsetCommitRequest>(socket.read_frame().await.unwrap(), 8, 3);
        assert_eq!(
            commit.topics[0].partitions[0].error_code, 0,
            "round {round}"
        );
        let fetched = wire::decode::<OffsetFetchRequest>(socket.read_frame().await.unwrap(), 7, 4);
        assert_eq!(
            fetched.topics[0].partitions[0].committed_offset,
            round + 1,
            "an OffsetFetch pipelined behind the commit, round {round}"
        );
    }
    wire::stop(node).await;
}
