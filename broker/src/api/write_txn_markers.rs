//! WriteTxnMarkers (API 27), from a transaction coordinator to the leaders of the partitions of
//! a transaction it ended: each marker is a control batch (`rafka_format::marker`) appended to
//! the local leader acks=all, where the store ends the producer's transaction (its last stable
//! offset moves on; an abort goes into the aborted-transactions index). Every partition is
//! answered on its own, with Kafka's errors (NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION,
//! NOT_ENOUGH_REPLICAS, INVALID_PRODUCER_EPOCH, ...), which the coordinator retries as it sees fit.
//!
//! Only registered nodes may send it, over the mesh (or this node to itself): anyone else gets
//! CLUSTER_AUTHORIZATION_FAILED, as Kafka answers a client. Below the `transactions` feature
//! level markers are refused with UNSUPPORTED_FOR_MESSAGE_FORMAT (what Kafka answers for a log
//! that cannot hold them).
//!
//! Every append is queued before the handler waits for any (in request order), so the markers of
//! one request share group commits; the response future holds up nothing else.
//!
//! A marker written to a `__consumer_offsets` partition is also reported to the group
//! coordinator ([`Groups::end_txn`](crate::group::Groups::end_txn)) before the partition is
//! answered: the producer's pending transactional offsets there become committed offsets or
//! are dropped, so once the transaction coordinator has every answer, OffsetFetch shows the
//! outcome.

use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::write_txn_markers_request::WritableTxnMarker;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use rafka_format::marker::EndTxnMarker;
use rafka_store::{ProducedBatch, TopicPartition};

use super::produce::now_ms;
use super::{RequestContext, from_registered_node};
use crate::Broker;
use crate::group::OFFSETS_TOPIC;
use crate::metadata::{Feature, MetadataImage};
use crate::partition::{Acks, AppendError};

/// How long a marker waits for its partition's in-sync replicas (the coordinator retries).
pub const MARKER_TIMEOUT: Duration = Duration::from_secs(10);

/// A partition's error code, once known (0: written).
type Outcome = BoxFuture<'static, i16>;

/// Answers a WriteTxnMarkers request once every marker is written or refused.
pub async fn handle(
    broker: Broker,
    ctx: RequestContext,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let image = broker.image();
    let refusal = if !from_registered_node(&broker, &ctx) {
        tracing::warn!(connection = %ctx.connection, "WriteTxnMarkers from outside the cluster refused");
        Some(ResponseError::ClusterAuthorizationFailed)
    } else if !image.features().enabled(Feature::Transactions) {
        Some(ResponseError::UnsupportedForMessageFormat)
    } else {
        None
    };
    let now = now_ms();
    let mut started = Vec::with_capacity(request.markers.len());
    for marker in &request.markers {
        let mut topics = Vec::with_capacity(marker.topics.len());
        for topic in &marker.topics {
            let partitions: Vec<(i32, Outcome)> = topic
                .partition_indexes
                .iter()
                .map(|&index| {
                    let outcome = match refusal {
                        Some(code) => ready(code.code()),
                        None => write(&broker, &image, marker, (&topic.name, index), now),
                    };
                    (index, outcome)
                })
                .collect();
            topics.push((topic.name.clone(), partitions));
        }
        started.push((marker.producer_id, topics));
    }
    let mut markers = Vec::with_capacity(started.len());
    for (producer_id, topics) in started {
        let mut results = Vec::with_capacity(topics.len());
        for (name, partitions) in topics {
            let partitions = join_all(partitions.into_iter().map(|(index, outcome)| async move {
                WritableTxnMarkerPartitionResult::default()
                    .with_partition_index(index)
                    .with_error_code(outcome.await)
            }))
            .await;
            results.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(name)
                    .with_partitions(partitions),
            );
        }
        markers.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(producer_id)
                .with_topics(results),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(markers)
}

fn ready(code: i16) -> Outcome {
    Box::pin(std::future::ready(code))
}

/// Queues one partition's marker on its local leader; the future yields its error code.
fn write(
    broker: &Broker,
    image: &MetadataImage,
    marker: &WritableTxnMarker,
    (topic, partition): (&TopicName, i32),
    now: i64,
) -> Outcome {
    let Some(topic) = image.topic(topic.0.as_str()) else {
        return ready(ResponseError::UnknownTopicOrPartition.code());
    };
    if usize::try_from(partition).map_or(true, |i| i >= topic.partitions.len()) {
        return ready(ResponseError::UnknownTopicOrPartition.code());
    }
    let tp = TopicPartition {
        topic_id: topic.id,
        partition,
    };
    let Some(leader) = broker.partitions().leader(&tp) else {
        return ready(ResponseError::NotLeaderOrFollower.code());
    };
    let end = EndTxnMarker {
        commit: marker.transaction_result,
        coordinator_epoch: marker.coordinator_epoch,
    };
    let batch = end
        .batch(marker.producer_id.0, marker.producer_epoch, now)
        .map_err(|e| e.to_string())
        .and_then(|b| ProducedBatch::parse(b).map_err(|e| e.to_string()));
    let batch = match batch {
        Ok(batch) => batch,
        Err(e) => {
            tracing::error!(error = %e, "cannot build a transaction marker");
            return ready(ResponseError::UnknownServerError.code());
        }
    };
    let appending = match leader.append(batch, now, Acks::All, MARKER_TIMEOUT) {
        Ok(appending) => appending,
        Err(e) => return ready(e.kafka_code()),
    };
    let producer_id = marker.producer_id.0;
    let commit = marker.transaction_result;
    // A marker on an offsets partition ends the producer's pending transactional offsets there
    // (the group coordinator's `onTransactionCompleted`).
    let groups = (topic.name == OFFSETS_TOPIC).then(|| broker.groups().clone());
    Box::pin(async move {
        match appending.await {
            Ok(appended) => {
                tracing::debug!(%tp, producer_id, commit, offset = appended.base_offset, "transaction marker written");
                if let Some(groups) = groups {
                    groups
                        .end_txn(partition, producer_id, commit, appended.base_offset)
                        .await;
                }
                0
            }
            Err(AppendError::Store(e)) => {
                tracing::debug!(%tp, producer_id, error = %e, "transaction marker refused");
                e.kafka_code()
            }
            Err(AppendError::Replica(e)) => e.kafka_code(),
        }
    })
}
