//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4), and by
//! timestamp.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_request::ListOffsetsPartition;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use rafka_store::PartitionLog;

use super::RequestContext;
use crate::Broker;
use crate::broker::Leadership;

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
    // A follower asking (replica id >= 0) gets the log end as "latest", as Kafka answers it.
    let replica = request.replica_id.0 >= 0;
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
                    let Some(resolved) = resolved else {
                        return response
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    match broker.leadership(resolved, p.partition_index) {
                        Leadership::Leader(log, image) => lookup(
                            &log,
                            p,
                            image.leader_epoch,
                            (ctx.version, replica),
                            response,
                        ),
                        Leadership::NotLeader => {
                            response.with_error_code(ResponseError::NotLeaderOrFollower.code())
                        }
                        Leadership::Unknown => {
                            response.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        }
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
    log: &PartitionLog,
    request: &ListOffsetsPartition,
    leader_epoch: i32,
    (version, replica): (i16, bool),
    response: ListOffsetsPartitionResponse,
) -> ListOffsetsPartitionResponse {
    let requested_epoch = request.current_leader_epoch;
    if requested_epoch >= 0 && requested_epoch < leader_epoch {
        return response.with_error_code(ResponseError::FencedLeaderEpoch.code());
    }
    if requested_epoch > leader_epoch {
        return response.with_error_code(ResponseError::UnknownLeaderEpoch.code());
    }
    let found: Result<Option<(i64, i64)>, ResponseError> = match request.timestamp {
        // Latest is the high watermark (the last stable offset: there are no transactions yet).
        LATEST if replica => Ok(Some((-1, log.log_end_offset()))),
        LATEST => Ok(Some((-1, log.high_watermark()))),
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
                response.with_leader_epoch(leader_epoch)
            } else {
                response
            }
        }
        // No record at or after the timestamp: Kafka answers offset -1, timestamp -1.
        Ok(None) => response.with_timestamp(-1).with_offset(-1),
        Err(code) => response.with_error_code(code.code()),
    }
}
