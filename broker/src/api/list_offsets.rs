//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4), and by
//! timestamp.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_request::ListOffsetsPartition;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use rafka_store::TopicPartition;

use super::RequestContext;
use crate::Broker;
use crate::ids::LeaderEpoch;
use crate::partition::{NodeLeader, Reader};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

/// Answers a ListOffsets request.
pub fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let image = broker.image();
    // A follower asking (replica id >= 0) gets the log end as "latest", as Kafka answers it; a
    // read_committed consumer (isolation level 1, v2+) the last stable offset; others the high
    // watermark.
    let reader = if request.replica_id.0 >= 0 {
        Reader::Replica
    } else if request.isolation_level == 1 {
        Reader::Consumer
    } else {
        Reader::Uncommitted
    };
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let resolved = image.topic(topic.name.0.as_str());
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let known = resolved.filter(|t| {
                        usize::try_from(p.partition_index).is_ok_and(|i| i < t.partitions.len())
                    });
                    let Some(topic) = known else {
                        return response
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let tp = TopicPartition {
                        topic_id: topic.id,
                        partition: p.partition_index,
                    };
                    match broker.partitions().leader(&tp) {
                        Some(leader) => lookup(&leader, p, (ctx.version, reader), response),
                        None => response.with_error_code(ResponseError::NotLeaderOrFollower.code()),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

fn lookup(
    leader: &NodeLeader,
    request: &ListOffsetsPartition,
    (version, reader): (i16, Reader),
    response: ListOffsetsPartitionResponse,
) -> ListOffsetsPartitionResponse {
    if let Err(e) = leader.check_epoch(LeaderEpoch(request.current_leader_epoch)) {
        return response.with_error_code(e.kafka_code());
    }
    let log = leader.log();
    let found: Result<Option<(i64, i64)>, ResponseError> = match request.timestamp {
        // The high watermark or last stable offset for a consumer, the log end for a follower.
        LATEST => Ok(Some((-1, leader.visible_end(reader).0))),
        EARLIEST | EARLIEST_LOCAL => Ok(Some((-1, log.log_start_offset()))),
        MAX_TIMESTAMP => log
            .max_timestamp()
            .map(|found| found.map(|t| (t.timestamp, t.offset)))
            .map_err(|e| {
                ResponseError::try_from_code(e.kafka_code())
                    .unwrap_or(ResponseError::UnknownServerError)
            }),
        ts if ts >= 0 => log
            .offset_for_timestamp(ts)
            .map(|found| found.map(|t| (t.timestamp, t.offset)))
            .map_err(|e| {
                ResponseError::try_from_code(e.kafka_code())
                    .unwrap_or(ResponseError::UnknownServerError)
            }),
        _ => Err(ResponseError::InvalidRequest),
    };
    match found {
        Ok(Some((timestamp, offset))) => {
            let response = response.with_timestamp(timestamp).with_offset(offset);
            if version >= 4 {
                response.with_leader_epoch(leader.leader_epoch().0)
            } else {
                response
            }
        }
        // No record at or after the timestamp: Kafka answers offset -1, timestamp -1.
        Ok(None) => response.with_timestamp(-1).with_offset(-1),
        Err(code) => response.with_error_code(code.code()),
    }
}
