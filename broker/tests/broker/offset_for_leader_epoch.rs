//! OffsetForLeaderEpoch as a partition's leader answers it: from the leader core
//! (`leader_epoch_end_offset`), which counts the leader's own epoch as begun at its log end even
//! before it appends in it.

use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::EpochEndOffset;
use kafka_protocol::messages::{BrokerId, OffsetForLeaderEpochRequest};
use rafka_broker::metadata::{LeaderChange, MetadataCommand};

use crate::support::raw::RawClient;
use crate::support::wait::wait_until;
use crate::support::{TestNode, wire};

/// Asks where `epoch` ends, as a follower would (replica id 2), knowing `current` as the leader
/// epoch.
async fn epoch_end(
    client: &mut RawClient,
    topic: &str,
    current: i32,
    epoch: i32,
) -> EpochEndOffset {
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(2))
        .with_topics(vec![
            OffsetForLeaderTopic::default()
                .with_topic(wire::topic_name(topic))
                .with_partitions(vec![
                    OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(current)
                        .with_leader_epoch(epoch),
                ]),
        ]);
    let response = client.send(&request, 4).await;
    response.topics[0].partitions[0].clone()
}

/// The case where the store's epoch cache and the leader disagree: the log's latest epoch (0) is
/// below the one asked about (1), which is below the leader's (2). The store alone has no entry
/// above 1 to end it and answers UNDEFINED, on which a follower truncates to the leader's log
/// start and fetches everything again; the leader, whose own epoch began at its log end, answers
/// that epoch 0 ends there.
#[tokio::test]
async fn an_epoch_between_the_logs_latest_and_the_leaders_ends_at_the_log_end() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "ofle", 1).await;
    let values: [&[u8]; 3] = [b"a", b"b", b"c"];
    assert_eq!(
        wire::produce_values(&mut client, &topic, 0, &values).await,
        0
    );

    // The partition's only replica is elected again twice (leader epochs 1 and 2) and appends
    // nothing in either.
    let broker = node.node.as_ref().unwrap().broker();
    for expected_leader_epoch in [0, 1] {
        let change = LeaderChange {
            topic_id: topic.id,
            partition: 0,
            leader: broker.local().node_id,
            expected_leader_epoch,
        };
        let command = MetadataCommand::ElectLeaders {
            changes: vec![change],
        };
        broker.metadata().propose(command).await.unwrap();
    }
    let answer = wait_until(
        Duration::from_secs(10),
        "the partition led in leader epoch 2",
        async || {
            let answer = epoch_end(&mut client, &topic.name, 2, 1).await;
            match answer.error_code {
                0 => Ok(answer),
                code => Err(format!("error {code}")),
            }
        },
    )
    .await;
    assert_eq!(
        (answer.leader_epoch, answer.end_offset),
        (0, 3),
        "epoch 1: epoch 0 is the largest at or below it, and the leader's epoch 2 began at 3"
    );

    // The other answers of this log: an epoch it holds, the leader's own, a newer one.
    for (epoch, expected) in [(0, (0, 3)), (2, (2, 3)), (5, (2, 3))] {
        let answer = epoch_end(&mut client, &topic.name, 2, epoch).await;
        assert_eq!(answer.error_code, 0, "epoch {epoch}");
        assert_eq!(
            (answer.leader_epoch, answer.end_offset),
            expected,
            "epoch {epoch}"
        );
    }
    // The request's own view of the leader epoch is checked first.
    let stale = epoch_end(&mut client, &topic.name, 1, 1).await;
    assert_eq!(stale.error_code, ResponseError::FencedLeaderEpoch.code());
    let ahead = epoch_end(&mut client, &topic.name, 3, 1).await;
    assert_eq!(ahead.error_code, ResponseError::UnknownLeaderEpoch.code());
    wire::stop(node).await;
}
