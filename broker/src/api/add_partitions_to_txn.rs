//! AddPartitionsToTxn. v0-3 come from transactional producers: one transaction, whose partitions
//! join it (answered once that is replicated). v4+ come from other nodes only (over the mesh,
//! from a registered node; CLUSTER_AUTHORIZATION_FAILED otherwise) and batch transactions; with
//! `verify_only` they ask whether partitions are in a producer's open transaction, which is what
//! a partition leader asks before a producer's first transactional write to a partition (KIP-890
//! part 1): NONE or TRANSACTION_ABORTABLE per partition, or the transaction's error
//! (INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED, CONCURRENT_TRANSACTIONS, NOT_COORDINATOR, ...)
//! for all of them, as Kafka's coordinator answers.
//!
//! As Kafka: a partition that does not exist fails the whole transaction's request
//! (UNKNOWN_TOPIC_OR_PARTITION for it, OPERATION_NOT_ATTEMPTED for the others), and v0-1 get
//! INVALID_PRODUCER_EPOCH instead of PRODUCER_FENCED, which they do not know.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};

use super::end_txn::txn_error_code;
use super::{RequestContext, from_registered_node};
use crate::Broker;
use crate::txn::core::{ProducerIdEpoch, TopicPartition};

/// Answers an AddPartitionsToTxn request.
pub async fn handle(
    broker: Broker,
    ctx: RequestContext,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let version = ctx.version;
    if version < 4 {
        let producer = ProducerIdEpoch {
            producer_id: request.v3_and_below_producer_id.0,
            epoch: request.v3_and_below_producer_epoch,
        };
        let id = request.v3_and_below_transactional_id.0.to_string();
        let topics = transaction(
            &broker,
            version,
            id,
            producer,
            false,
            &request.v3_and_below_topics,
        )
        .await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics);
    }
    if !from_registered_node(&broker, &ctx) {
        tracing::warn!(connection = %ctx.connection, "AddPartitionsToTxn v{version} from a client refused");
        return AddPartitionsToTxnResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let results = request.transactions.iter().map(|t| {
        let broker = &broker;
        async move {
            let producer = ProducerIdEpoch {
                producer_id: t.producer_id.0,
                epoch: t.producer_epoch,
            };
            let id = t.transactional_id.0.to_string();
            let topics = transaction(broker, version, id, producer, t.verify_only, &t.topics).await;
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(topics)
        }
    });
    let results = futures::future::join_all(results).await;
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}

/// One transaction's partitions, added or verified: each partition's error code, in the
/// request's shape.
async fn transaction(
    broker: &Broker,
    version: i16,
    transactional_id: String,
    producer: ProducerIdEpoch,
    verify_only: bool,
    topics: &[AddPartitionsToTxnTopic],
) -> Vec<AddPartitionsToTxnTopicResult> {
    let requested: Vec<TopicPartition> = topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(t.name.0.to_string(), *p))
        })
        .collect();
    let image = broker.image();
    let unknown: Vec<bool> = requested
        .iter()
        .map(|tp| {
            image.topic(&tp.topic).is_none_or(|t| {
                usize::try_from(tp.partition).map_or(true, |i| i >= t.partitions.len())
            })
        })
        .collect();
    let codes: Vec<i16> = if unknown.iter().any(|u| *u) {
        unknown
            .iter()
            .map(|u| {
                if *u {
                    ResponseError::UnknownTopicOrPartition.code()
                } else {
                    ResponseError::OperationNotAttempted.code()
                }
            })
            .collect()
    } else if transactional_id.is_empty() {
        vec![ResponseError::InvalidRequest.code(); requested.len()]
    } else if verify_only {
        broker
            .txns()
            .verify(transactional_id, producer, requested.clone())
            .await
            .into_iter()
            .map(|r| txn_error_code(r, version >= 2))
            .collect()
    } else {
        let added = broker
            .txns()
            .add_partitions(transactional_id, producer, requested.clone())
            .await;
        vec![txn_error_code(added, version >= 2); requested.len()]
    };
    let mut codes = codes.into_iter();
    topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(*p)
                        .with_partition_error_code(codes.next().unwrap_or_default())
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(partitions)
        })
        .collect()
}
