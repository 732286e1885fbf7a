//! OffsetForLeaderEpoch (KIP-101, KIP-279, KIP-320): where a leader epoch ends in the leader's
//! log, as the partition's leader core answers it ([`Leader::epoch_end_offset`]). Followers ask
//! it after a leader change to find where their log diverged; clients ask it to detect a log
//! truncated under them.
//!
//! [`Leader::epoch_end_offset`]: crate::partition::Leader::epoch_end_offset

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderPartition;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use rafka_store::TopicPartition;

use crate::Broker;
use crate::ids::LeaderEpoch;
use crate::metadata::TopicImage;

/// Undefined epoch or offset in an answer.
const UNDEFINED: i64 = -1;

/// Answers an OffsetForLeaderEpoch request.
pub fn handle(
    broker: &Broker,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let image = broker.image();
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let resolved = image.topic(topic.topic.0.as_str());
            let partitions = topic
                .partitions
                .iter()
                .map(|p| answer(broker, resolved.map(AsRef::as_ref), p))
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

fn answer(
    broker: &Broker,
    topic: Option<&TopicImage>,
    request: &OffsetForLeaderPartition,
) -> EpochEndOffset {
    let response = EpochEndOffset::default()
        .with_partition(request.partition)
        .with_leader_epoch(-1)
        .with_end_offset(UNDEFINED);
    let fail = |code: ResponseError| response.clone().with_error_code(code.code());
    let known =
        topic.filter(|t| usize::try_from(request.partition).is_ok_and(|i| i < t.partitions.len()));
    let Some(topic) = known else {
        return fail(ResponseError::UnknownTopicOrPartition);
    };
    let tp = TopicPartition {
        topic_id: topic.id,
        partition: request.partition,
    };
    let Some(leader) = broker.partitions().leader(&tp) else {
        return fail(ResponseError::NotLeaderOrFollower);
    };
    let current = LeaderEpoch(request.current_leader_epoch);
    match leader.epoch_end_offset(current, LeaderEpoch(request.leader_epoch)) {
        Ok(Some(end)) => response
            .with_leader_epoch(end.epoch.0)
            .with_end_offset(end.end_offset.0),
        Ok(None) => response,
        Err(e) => fail(
            ResponseError::try_from_code(e.kafka_code())
                .unwrap_or(ResponseError::UnknownServerError),
        ),
    }
}
