//! OffsetForLeaderEpoch (KIP-101, KIP-279, KIP-320): the end offset of a leader epoch, from the
//! leader's epoch cache. Followers ask it after a leader change to find where their log diverged;
//! clients ask it to detect a log truncated under them.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderPartition;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::Broker;
use crate::broker::Leadership;
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
    let Some(topic) = topic else {
        return fail(ResponseError::UnknownTopicOrPartition);
    };
    let (log, partition) = match broker.leadership(topic, request.partition) {
        Leadership::Leader(log, partition) => (log, partition),
        Leadership::NotLeader => return fail(ResponseError::NotLeaderOrFollower),
        Leadership::Unknown => return fail(ResponseError::UnknownTopicOrPartition),
    };
    let current = request.current_leader_epoch;
    if current >= 0 && current < partition.leader_epoch {
        return fail(ResponseError::FencedLeaderEpoch);
    }
    if current > partition.leader_epoch {
        return fail(ResponseError::UnknownLeaderEpoch);
    }
    // The leader's own current epoch ends at its log end even before it has written in it.
    let found = if request.leader_epoch >= partition.leader_epoch {
        Some((partition.leader_epoch, log.log_end_offset()))
    } else {
        log.end_offset_for_epoch(request.leader_epoch)
    };
    match found {
        Some((epoch, end_offset)) => response
            .with_leader_epoch(epoch)
            .with_end_offset(end_offset),
        None => response,
    }
}
