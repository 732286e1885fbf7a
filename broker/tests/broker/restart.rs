//! What a clean restart keeps and changes, seen through the wire: records and high watermarks,
//! producer state (a retry after the restart is still a duplicate), the advertised address, and
//! shutdown not waiting out a parked long poll.

use crate::support::wire;
use std::time::{Duration, Instant};

use crate::support::TestNode;
use kafka_protocol::messages::{FetchRequest, FindCoordinatorRequest, MetadataRequest};

#[tokio::test]
async fn records_and_producer_state_survive_a_restart() {
    let mut node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "rs-data", 1).await;
    let producer = wire::init_producer_id(&mut client).await;
    let first = wire::batch(&[b"a", b"b"], Some((producer.0, producer.1, 0)), 1000);
    let second = wire::batch(&[b"c"], Some((producer.0, producer.1, 2)), 2000);
    assert_eq!(
        wire::produce(&mut client, &topic, 0, first.clone()).await,
        0
    );
    assert_eq!(
        wire::produce(&mut client, &topic, 0, second.clone()).await,
        2
    );
    let before = wire::read_all(&mut client, &topic, 0, 0).await;
    drop(client);

    node.restart().await;
    let mut client = node.connect().await;
    assert_eq!(wire::read_all(&mut client, &topic, 0, 0).await, before);
    let data = wire::fetch_at(&mut client, &topic, 0, 0, wire::FETCH).await;
    assert_eq!(data.high_watermark, 3, "high watermark after the restart");
    // A producer retrying across the restart: still recognised as duplicates.
    assert_eq!(wire::produce(&mut client, &topic, 0, second).await, 2);
    assert_eq!(wire::produce(&mut client, &topic, 0, first).await, 0);
    assert_eq!(wire::log_end(&mut client, &topic, 0).await, 3);
    let next = wire::batch(&[b"d"], Some((producer.0, producer.1, 3)), 3000);
    assert_eq!(wire::produce(&mut client, &topic, 0, next).await, 3);
    let gap = wire::batch(&[b"e"], Some((producer.0, producer.1, 9)), 3000);
    let response = wire::produce_at(&mut client, &topic, 0, gap, wire::PRODUCE).await;
    assert_eq!(
        response.error_code,
        kafka_protocol::ResponseError::OutOfOrderSequenceNumber.code()
    );
    wire::stop(node).await;
}

#[tokio::test]
async fn metadata_advertises_the_new_address_after_a_restart() {
    let mut node = TestNode::start().await;
    let before = node.kafka_addr();
    node.restart().await;
    let after = node.kafka_addr();
    assert_ne!(
        before.port(),
        after.port(),
        "the test node picks a new port on restart"
    );
    let mut client = node.connect().await;
    let metadata = client
        .send(&MetadataRequest::default().with_topics(None), 12)
        .await;
    assert_eq!(metadata.brokers.len(), 1, "one node, registered once");
    assert_eq!(metadata.brokers[0].port, i32::from(after.port()));
    let coordinator = client
        .send(
            &FindCoordinatorRequest::default().with_key(wire::str("g")),
            2,
        )
        .await;
    assert_eq!(coordinator.port, i32::from(after.port()));
    wire::stop(node).await;
}

#[tokio::test]
async fn shutdown_answers_a_parked_long_poll_instead_of_waiting_it_out() {
    let mut node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "rs-parked", 1).await;
    let request = wire::fetch_request(&topic, 0, 0, wire::FETCH)
        .with_max_wait_ms(25_000)
        .with_min_bytes(1);
    let (correlation_id, frame) = client.encode(&request, wire::FETCH);
    client.send_frame(&frame).await.unwrap();
    // Parked: nothing to read.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), client.read_frame())
            .await
            .is_err()
    );
    let started = Instant::now();
    node.node.take().unwrap().shutdown().await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "shutdown waited {took:?} for a parked fetch"
    );
    // The client got its (empty) answer before the connection closed.
    let frame = client
        .read_frame()
        .await
        .expect("an answer to the parked fetch");
    let response = wire::decode::<FetchRequest>(frame, wire::FETCH, correlation_id);
    assert!(
        wire::only_partition(&response)
            .records
            .unwrap_or_default()
            .is_empty()
    );
    assert!(client.is_closed().await);
}
