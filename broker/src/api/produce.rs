//! Produce: checks each partition's batch, hands it to the partition's [`Leader`] (which queues
//! the append and answers per `acks`), and answers once every append is acknowledged (acks=1/all)
//! or not at all (acks=0).
//!
//! The appends are queued before this function returns ([`Leader::append`] enqueues when it is
//! called), so pipelined requests on one connection append in order and share group commits.
//!
//! [`Leader`]: crate::partition::Leader
//! [`Leader::append`]: crate::partition::Leader::append

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::{BoxFuture, join_all};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use rafka_store::{Appended, ProducedBatch, StoreError, TopicPartition};

use super::dispatch::{Handled, RequestContext, respond_later};
use crate::ids::NodeId;
use crate::metadata::TopicImage;
use crate::partition::core::ReplicaError;
use crate::partition::{Acks, AppendError};
use crate::{Broker, metrics};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The outcome of one partition, possibly still in flight.
enum Pending {
    Failed(Failure),
    Appending(BoxFuture<'static, Result<Appended, Failure>>),
}

/// A failed partition: the error, a message, and the current leader (id, epoch) if known.
struct Failure(ResponseError, Option<String>, Option<(NodeId, i32)>);

fn fail(code: ResponseError, message: Option<String>) -> Pending {
    Pending::Failed(Failure(code, message, None))
}

/// Handles a Produce request.
pub fn handle(broker: &Broker, ctx: RequestContext, request: ProduceRequest) -> Handled {
    let acks = request.acks;
    let ack_timeout = Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0).max(1));
    let image = broker.image();
    let now = now_ms();
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for topic_data in request.topic_data {
        let topic = if ctx.version >= 13 {
            image.topic_by_id(&topic_data.topic_id).cloned()
        } else {
            image.topic(topic_data.name.0.as_str()).cloned()
        };
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for data in topic_data.partition_data {
            let pending = match (Acks::from_kafka(acks), topic.as_deref()) {
                (None, _) => fail(ResponseError::InvalidRequiredAcks, None),
                _ if request.transactional_id.is_some() => {
                    let message = "transactions are not supported yet".to_string();
                    fail(
                        ResponseError::TransactionalIdAuthorizationFailed,
                        Some(message),
                    )
                }
                // v13 names topics by id only (KIP-516): an unknown id is UNKNOWN_TOPIC_ID.
                (Some(_), None) if ctx.version >= 13 => fail(ResponseError::UnknownTopicId, None),
                (Some(_), None) => fail(ResponseError::UnknownTopicOrPartition, None),
                (Some(acks), Some(topic)) => {
                    let ack = (acks, ack_timeout);
                    start_append(broker, topic, data.index, data.records, ack, now)
                }
            };
            partitions.push((data.index, pending));
        }
        topics.push((topic_data.name, topic_data.topic_id, partitions));
    }
    if acks == 0 {
        return Handled::Silent(Box::pin(async move {
            for (_, _, partitions) in topics {
                for (index, pending) in partitions {
                    if let Err(Failure(code, message, _)) = finish(pending).await {
                        let message = message.unwrap_or_default();
                        return Err(format!(
                            "acks=0 produce to partition {index} failed: {code:?} {message}"
                        ));
                    }
                }
            }
            Ok(())
        }));
    }
    let version = ctx.version;
    respond_later(ctx, async move {
        let mut responses = Vec::with_capacity(topics.len());
        for (name, topic_id, partitions) in topics {
            let results = join_all(partitions.into_iter().map(|(index, pending)| async move {
                partition_response(index, finish(pending).await, version)
            }))
            .await;
            responses.push(
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_topic_id(topic_id)
                    .with_partition_responses(results),
            );
        }
        ProduceResponse::default().with_responses(responses)
    })
}

fn start_append(
    broker: &Broker,
    topic: &TopicImage,
    partition: i32,
    records: Option<Bytes>,
    (acks, ack_timeout): (Acks, Duration),
    now: i64,
) -> Pending {
    if topic.internal {
        // As Kafka: only the broker writes its internal topics (what a client wrote there would be
        // replayed as group state at the next start).
        let message = format!("cannot append to internal topic {}", topic.name);
        return fail(ResponseError::InvalidTopicException, Some(message));
    }
    let Some(image) = usize::try_from(partition)
        .ok()
        .and_then(|i| topic.partitions.get(i))
    else {
        return fail(ResponseError::UnknownTopicOrPartition, None);
    };
    let tp = TopicPartition {
        topic_id: topic.id,
        partition,
    };
    let Some(leader) = broker.partitions().leader(&tp) else {
        let current = Some((image.leader, image.leader_epoch));
        return Pending::Failed(Failure(ResponseError::NotLeaderOrFollower, None, current));
    };
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return fail(ResponseError::InvalidRecord, Some("no record batch".into()));
    };
    let batch = match check_client_batch(records) {
        Ok(batch) => batch,
        Err(refused) => return refused,
    };
    let size = batch.bytes().len();
    let appending = match leader.append(batch, now, acks, ack_timeout) {
        Ok(appending) => appending,
        Err(e) => return fail(replica_code(&e), Some(e.to_string())),
    };
    metrics::produce_bytes(size);
    Pending::Appending(Box::pin(async move {
        appending.await.map_err(|e| match e {
            AppendError::Store(e) => store_failure(e),
            AppendError::Replica(e) => Failure(replica_code(&e), Some(e.to_string()), None),
        })
    }))
}

/// Kafka's checks of a client's batch before the store sees it: one whole v2 batch, no control
/// records, a sequence with a producer id, and no transaction (Rafka has none yet). The header
/// is read here once; the store checks the rest on the same parse.
fn check_client_batch(records: Bytes) -> Result<ProducedBatch, Pending> {
    let refuse = |code, message: String| Err(fail(code, Some(message)));
    let len = records.len();
    let batch = match ProducedBatch::parse(records) {
        Ok(batch) => batch,
        // As Kafka: damaged bytes are CORRUPT_MESSAGE; a readable header breaking the rules
        // (magic other than 2) is INVALID_RECORD.
        Err(e) if e.is_corruption() => {
            return refuse(
                ResponseError::CorruptMessage,
                format!("unreadable record batch: {e}"),
            );
        }
        Err(e) => return refuse(ResponseError::InvalidRecord, e.to_string()),
    };
    let header = batch.header();
    match header.total_len() {
        Some(total) if total == len => {}
        Some(total) if total < len => {
            let message = "exactly one record batch per partition is allowed".to_string();
            return refuse(ResponseError::InvalidRecord, message);
        }
        _ => {
            let message = "record batch shorter than its declared length".to_string();
            return refuse(ResponseError::CorruptMessage, message);
        }
    }
    if header.is_control() {
        let message = "clients are not allowed to write control records".to_string();
        return refuse(ResponseError::InvalidRecord, message);
    }
    if header.producer_id >= 0 && header.base_sequence < 0 {
        let message = format!(
            "invalid sequence number {} in record batch with producer id {}",
            header.base_sequence, header.producer_id
        );
        return refuse(ResponseError::InvalidRecord, message);
    }
    if header.is_transactional() {
        let message =
            "transactional batches need a transaction; transactions are not supported yet";
        return refuse(
            ResponseError::TransactionalIdAuthorizationFailed,
            message.to_string(),
        );
    }
    Ok(batch)
}

async fn finish(pending: Pending) -> Result<Appended, Failure> {
    match pending {
        Pending::Failed(failure) => Err(failure),
        Pending::Appending(future) => future.await,
    }
}

fn store_failure(e: StoreError) -> Failure {
    let code =
        ResponseError::try_from_code(e.kafka_code()).unwrap_or(ResponseError::UnknownServerError);
    tracing::debug!(error = %e, "append refused");
    Failure(code, Some(e.to_string()), None)
}

fn replica_code(e: &ReplicaError) -> ResponseError {
    ResponseError::try_from_code(e.kafka_code()).unwrap_or(ResponseError::UnknownServerError)
}

fn partition_response(
    index: i32,
    result: Result<Appended, Failure>,
    version: i16,
) -> PartitionProduceResponse {
    let response = PartitionProduceResponse::default().with_index(index);
    match result {
        Ok(appended) => response
            .with_base_offset(appended.base_offset)
            .with_log_append_time_ms(appended.log_append_time_ms)
            .with_log_start_offset(appended.log_start_offset),
        Err(Failure(code, message, leader)) => {
            let response = response
                .with_error_code(code.code())
                .with_base_offset(-1)
                .with_error_message(message.map(StrBytes::from_string));
            match leader {
                Some((id, epoch)) if version >= 10 && id.is_some() => response.with_current_leader(
                    LeaderIdAndEpoch::default()
                        .with_leader_id(id.into())
                        .with_leader_epoch(epoch),
                ),
                _ => response,
            }
        }
    }
}
