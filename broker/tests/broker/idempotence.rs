//! InitProducerId v0-5 and idempotent produce through the wire: retries deduplicated with their
//! original offsets, sequence gaps, fenced epochs, KIP-360 epoch bumps, and pipelined requests on
//! one connection appended and answered in request order.

use crate::support::TestNode;
use crate::support::raw::RawClient;
use crate::support::wire;
use crate::support::wire::Topic;
use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, TransactionalId};

const T: i64 = 1_700_000_000_000;

async fn produce_idempotent(
    client: &mut RawClient,
    topic: &Topic,
    producer: (i64, i16),
    sequence: i32,
    values: &[&[u8]],
) -> (i16, i64) {
    let batch = wire::batch(values, Some((producer.0, producer.1, sequence)), T);
    let response = wire::produce_at(client, topic, 0, batch, wire::PRODUCE).await;
    (response.error_code, response.base_offset)
}

#[tokio::test]
async fn init_producer_id_at_every_version_hands_out_fresh_ids() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let mut seen = std::collections::HashSet::new();
    for version in 0..=5 {
        for _ in 0..3 {
            let request = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(i32::MAX);
            let response = client.send(&request, version).await;
            assert_eq!(response.error_code, 0, "v{version}");
            assert_eq!(response.producer_epoch, 0, "v{version}");
            assert!(response.producer_id.0 >= 0, "v{version}");
            assert!(
                seen.insert(response.producer_id.0),
                "v{version}: id {} handed out twice",
                response.producer_id.0
            );
        }
        if version >= 3 {
            // An existing idempotent producer asking again (librdkafka's drain-and-bump): Kafka
            // answers a non-transactional request with a usable id either way.
            let request = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(7.into())
                .with_producer_epoch(0);
            let response = client.send(&request, version).await;
            assert_eq!(response.error_code, 0, "v{version}");
            assert!(response.producer_id.0 >= 0);
        }
    }
    // Ids stay fresh across a restart (blocks are reserved in the metadata log).
    let mut node = node;
    node.restart().await;
    let mut client = node.connect().await;
    let (id, _) = wire::init_producer_id(&mut client).await;
    assert!(!seen.contains(&id), "id {id} reused after a restart");
    wire::stop(node).await;
}

#[tokio::test]
async fn transactional_ids_are_refused_clearly() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    for version in 0..=5 {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(wire::str("txn-1"))))
            .with_transaction_timeout_ms(60_000);
        let response = client.send(&request, version).await;
        assert_ne!(response.error_code, 0, "v{version}");
        assert_eq!(response.producer_id.0, -1, "v{version}");
        assert_eq!(response.producer_epoch, -1, "v{version}");
    }
    // A transactional batch whose transaction no coordinator knows is refused per partition
    // (KIP-890 verification), and writes nothing.
    let topic = wire::create_topic(&mut client, "txn-refused", 1).await;
    let request = wire::produce_request(
        &topic,
        0,
        Some(crate::support::batches::transactional(
            &[b"t"],
            (1, 0, 0),
            T,
        )),
        -1,
        wire::PRODUCE,
    )
    .with_transactional_id(Some(TransactionalId(wire::str("txn-1"))));
    let response = client.send(&request, wire::PRODUCE).await;
    let partition = &response.responses[0].partition_responses[0];
    assert_ne!(partition.error_code, 0);
    assert_eq!(wire::log_end(&mut client, &topic, 0).await, 0);
    wire::stop(node).await;
}

#[tokio::test]
async fn a_retried_batch_gets_its_original_offset_and_is_not_written_twice() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "idem-retry", 1).await;
    let producer = wire::init_producer_id(&mut client).await;

    // Six batches of two records: sequences 0, 2, ..., 10 at offsets 0, 2, ..., 10.
    let mut offsets = Vec::new();
    for i in 0..6 {
        let values = wire::values(&format!("b{i}"), 2);
        let (code, offset) =
            produce_idempotent(&mut client, &topic, producer, i * 2, &wire::refs(&values)).await;
        assert_eq!(code, 0, "batch {i}");
        offsets.push(offset);
    }
    assert_eq!(offsets, [0, 2, 4, 6, 8, 10]);
    let before = wire::read_all(&mut client, &topic, 0, 0).await;
    assert_eq!(before.len(), 12);

    // Retries of each of the last five batches: success, the original offset, nothing appended.
    for i in 1..6 {
        let values = wire::values(&format!("b{i}"), 2);
        let (code, offset) =
            produce_idempotent(&mut client, &topic, producer, i * 2, &wire::refs(&values)).await;
        assert_eq!(code, 0, "retry of batch {i}");
        assert_eq!(offset, offsets[i as usize], "retry of batch {i}");
    }
    assert_eq!(wire::log_end(&mut client, &topic, 0).await, 12);
    assert_eq!(wire::read_all(&mut client, &topic, 0, 0).await, before);

    // The next sequence still follows the last batch.
    let (code, offset) = produce_idempotent(&mut client, &topic, producer, 12, &[b"next"]).await;
    assert_eq!((code, offset), (0, 12));
    wire::stop(node).await;
}

#[tokio::test]
async fn a_sequence_gap_is_out_of_order() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "idem-gap", 1).await;
    let producer = wire::init_producer_id(&mut client).await;
    assert_eq!(
        produce_idempotent(&mut client, &topic, producer, 0, &[b"a", b"b"]).await,
        (0, 0)
    );
    for sequence in [3, 5, 100] {
        let (code, _) =
            produce_idempotent(&mut client, &topic, producer, sequence, &[b"gap"]).await;
        assert_eq!(
            code,
            ResponseError::OutOfOrderSequenceNumber.code(),
            "sequence {sequence}"
        );
    }
    // Overlapping but not a retry of a cached batch.
    let (code, _) = produce_idempotent(&mut client, &topic, producer, 1, &[b"b", b"c"]).await;
    assert_eq!(code, ResponseError::OutOfOrderSequenceNumber.code());
    assert_eq!(wire::log_end(&mut client, &topic, 0).await, 2);
    assert_eq!(
        produce_idempotent(&mut client, &topic, producer, 2, &[b"c"]).await,
        (0, 2)
    );
    wire::stop(node).await;
}

#[tokio::test]
async fn epochs_fence_old_producers_and_a_bump_restarts_at_sequence_zero() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "idem-epoch", 1).await;
    let (id, epoch) = wire::init_producer_id(&mut client).await;
    assert_eq!(
        produce_idempotent(&mut client, &topic, (id, epoch), 0, &[b"e0-0", b"e0-1"]).await,
        (0, 0)
    );

    // KIP-360 bump: epoch + 1 must start at sequence 0.
    let (code, _) =
        produce_idempotent(&mut client, &topic, (id, epoch + 1), 2, &[b"bad bump"]).await;
    assert_eq!(code, ResponseError::OutOfOrderSequenceNumber.code());
    assert_eq!(
        produce_idempotent(&mut client, &topic, (id, epoch + 1), 0, &[b"e1-0"]).await,
        (0, 2)
    );

    // The old epoch is fenced now, whatever its sequence.
    for sequence in [0, 2] {
        let (code, _) =
            produce_idempotent(&mut client, &topic, (id, epoch), sequence, &[b"zombie"]).await;
        assert_eq!(
            code,
            ResponseError::InvalidProducerEpoch.code(),
            "sequence {sequence}"
        );
    }
    assert_eq!(
        produce_idempotent(&mut client, &topic, (id, epoch + 1), 1, &[b"e1-1"]).await,
        (0, 3)
    );
    let values: Vec<Bytes> = wire::read_all(&mut client, &topic, 0, 0)
        .await
        .into_iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(
        values,
        ["e0-0", "e0-1", "e1-0", "e1-1"].map(|v| Bytes::from_static(v.as_bytes()))
    );
    wire::stop(node).await;
}

#[tokio::test]
async fn pipelined_produce_requests_append_and_answer_in_request_order() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "idem-pipeline", 1).await;
    let producer = wire::init_producer_id(&mut client).await;
    let mut correlation_ids = Vec::new();
    let mut frames = Vec::new();
    for i in 0..20 {
        // Two records per request; a wrong order would be an out-of-order sequence.
        let values = wire::values(&format!("r{i}"), 2);
        let batch = wire::batch(
            &wire::refs(&values),
            Some((producer.0, producer.1, i * 2)),
            T,
        );
        let request = wire::produce_request(&topic, 0, Some(batch), -1, wire::PRODUCE);
        let (correlation_id, frame) = client.encode(&request, wire::PRODUCE);
        correlation_ids.push(correlation_id);
        frames.push(frame);
    }
    for frame in &frames {
        client.send_frame(frame).await.unwrap();
    }
    for (i, correlation_id) in correlation_ids.iter().enumerate() {
        let frame = client.read_frame().await.expect("a response per request");
        let response = wire::decode::<ProduceRequest>(frame, wire::PRODUCE, *correlation_id);
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(
            partition.error_code, 0,
            "request {i}: {:?}",
            partition.error_message
        );
        assert_eq!(partition.base_offset, i as i64 * 2, "request {i}");
    }
    let values: Vec<Bytes> = wire::read_all(&mut client, &topic, 0, 0)
        .await
        .into_iter()
        .map(|r| r.1)
        .collect();
    let expected: Vec<Bytes> = (0..20)
        .flat_map(|i| wire::values(&format!("r{i}"), 2))
        .map(Bytes::from)
        .collect();
    assert_eq!(values, expected);
    wire::stop(node).await;
}

#[tokio::test]
async fn pipelined_plain_produce_requests_keep_their_order_too() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "plain-pipeline", 1).await;
    // One write: all 20 requests arrive before the broker answers any.
    let mut all = Vec::new();
    for i in 0..20 {
        let value = format!("p{i}");
        let batch = wire::batch(&[value.as_bytes()], None, T);
        all.extend_from_slice(&wire::frame(
            &wire::produce_request(&topic, 0, Some(batch), 1, 3),
            3,
            1000 + i,
        ));
    }
    let mut socket = wire::Socket::connect(node.kafka_addr()).await;
    socket.write(&all).await.unwrap();
    for i in 0..20 {
        let frame = socket.read_frame().await.expect("a response per request");
        let response = wire::decode::<ProduceRequest>(frame, 3, 1000 + i);
        assert_eq!(
            response.responses[0].partition_responses[0].base_offset,
            i64::from(i)
        );
    }
    let values: Vec<Bytes> = wire::read_all(&mut client, &topic, 0, 0)
        .await
        .into_iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(
        values,
        (0..20)
            .map(|i| Bytes::from(format!("p{i}")))
            .collect::<Vec<_>>()
    );
    wire::stop(node).await;
}

#[tokio::test]
async fn sequences_wrap_from_i32_max_to_zero() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "idem-wrap", 1).await;
    let producer = wire::init_producer_id(&mut client).await;
    // No state yet: any sequence is accepted; this batch holds i32::MAX - 1 and i32::MAX.
    assert_eq!(
        produce_idempotent(&mut client, &topic, producer, i32::MAX - 1, &[b"y", b"z"]).await,
        (0, 0)
    );
    assert_eq!(
        produce_idempotent(&mut client, &topic, producer, 0, &[b"wrapped"]).await,
        (0, 2)
    );
    assert_eq!(
        produce_idempotent(&mut client, &topic, producer, 1, &[b"next"]).await,
        (0, 3)
    );
    // The batch before the wrap is still a recognised duplicate.
    assert_eq!(
        produce_idempotent(&mut client, &topic, producer, i32::MAX - 1, &[b"y", b"z"]).await,
        (0, 0)
    );
    assert_eq!(wire::log_end(&mut client, &topic, 0).await, 4);
    wire::stop(node).await;
}

#[tokio::test]
async fn producer_state_is_per_partition() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "idem-partitions", 2).await;
    let producer = wire::init_producer_id(&mut client).await;
    for partition in 0..2 {
        let batch = wire::batch(&[b"first"], Some((producer.0, producer.1, 0)), T);
        let response = wire::produce_at(&mut client, &topic, partition, batch, wire::PRODUCE).await;
        assert_eq!(
            (response.error_code, response.base_offset),
            (0, 0),
            "partition {partition}"
        );
    }
    let batch = wire::batch(&[b"second"], Some((producer.0, producer.1, 1)), T);
    let response = wire::produce_at(&mut client, &topic, 1, batch, wire::PRODUCE).await;
    assert_eq!((response.error_code, response.base_offset), (0, 1));
    wire::stop(node).await;
}

#[tokio::test]
async fn producer_ids_stay_unique_across_block_refills() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let mut seen = std::collections::HashSet::new();
    // Ids are reserved 1000 at a time in the metadata log: cross a refill.
    for _ in 0..1050 {
        let (id, epoch) = wire::init_producer_id(&mut client).await;
        assert_eq!(epoch, 0);
        assert!(seen.insert(id), "producer id {id} handed out twice");
    }
    wire::stop(node).await;
}
