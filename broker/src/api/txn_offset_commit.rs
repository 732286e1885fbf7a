//! TxnOffsetCommit v0-4: a transactional producer commits a consumer group's offsets inside its
//! transaction (`send_offsets_to_transaction`, after AddOffsetsToTxn). At the group's
//! coordinator, as Kafka's: the member is checked as for a transactional commit (v3+ carry
//! member id, generation and instance id: UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION,
//! FENCED_INSTANCE_ID; generation -1 without a member is accepted), the offsets partition must be
//! in the producer's transaction (KIP-890 part 1, asked of the transaction coordinator unless the
//! producer's transaction is already open on that partition: TRANSACTION_ABORTABLE for v4+,
//! INVALID_TXN_STATE before), and the offsets are written as one transactional batch of the
//! producer (acks=all). They stay pending, invisible to OffsetFetch, until the transaction's
//! marker on that partition commits or drops them.
//!
//! Per partition: UNKNOWN_TOPIC_OR_PARTITION for a partition that does not exist,
//! OFFSET_METADATA_TOO_LARGE; every other partition gets the commit's outcome. v0-1 clients get
//! COORDINATOR_NOT_AVAILABLE for COORDINATOR_LOAD_IN_PROGRESS, as Kafka answers them. v5
//! (transactions v2, which adds the partition to the transaction implicitly) is not served.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::RequestContext;
use super::offset_commit::{CheckedCommit, PartitionCommit};
use super::produce::{now_ms, verify_in_transaction};
use crate::Broker;
use crate::group::OFFSETS_TOPIC;
use crate::group::core::MemberRef;
use crate::group::records::OffsetValue;
use crate::metadata::Feature;

/// Answers a TxnOffsetCommit request.
pub async fn handle(
    broker: Broker,
    ctx: RequestContext,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let group = request.group_id.0.to_string();
    let image = broker.image();
    let now = now_ms();
    let topics = request.topics.iter().map(|topic| {
        let partitions = topic.partitions.iter().map(|p| PartitionCommit {
            index: p.partition_index,
            offset: p.committed_offset,
            leader_epoch: p.committed_leader_epoch,
            metadata: p.committed_metadata.as_deref(),
        });
        (topic.name.0.as_str(), partitions)
    });
    let CheckedCommit {
        entries,
        topics: checked,
    } = CheckedCommit::of(&image, topics, now);
    let outcome = if group.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else if !image.features().enabled(Feature::Transactions) {
        // As a transactional Produce: nothing transactional is written below the level.
        Err(ResponseError::TransactionalIdAuthorizationFailed)
    } else if entries.is_empty() {
        Ok(())
    } else {
        commit(&broker, &request, ctx.version, group, entries, now).await
    };
    let outcome = match outcome {
        Ok(()) => 0,
        Err(ResponseError::CoordinatorLoadInProgress) if ctx.version < 2 => {
            ResponseError::CoordinatorNotAvailable.code()
        }
        Err(e) => e.code(),
    };
    let topics = request
        .topics
        .iter()
        .zip(checked)
        .map(|(topic, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(partition, code)| {
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(partition)
                        .with_error_code(code.unwrap_or(outcome))
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

/// Validates, verifies and writes the commit; pending until the transaction ends.
async fn commit(
    broker: &Broker,
    request: &TxnOffsetCommitRequest,
    version: i16,
    group: String,
    entries: Vec<(String, i32, OffsetValue)>,
    now: i64,
) -> Result<(), ResponseError> {
    let member = MemberRef {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|i| i.to_string()),
    };
    let producer = (request.producer_id.0, request.producer_epoch);
    let transactional_id = request.transactional_id.0.to_string();
    let verify = |leader: std::sync::Arc<crate::partition::NodeLeader>| {
        let broker = broker.clone();
        async move {
            // The producer's transaction is open on the partition: it was verified then.
            if leader.log().open_transaction(producer.0).is_some() {
                return Ok(());
            }
            let partition = leader.topic_partition().partition;
            let target = (OFFSETS_TOPIC.to_string(), partition);
            let code = verify_in_transaction(&broker, transactional_id, producer, target)
                .await
                .unwrap_or_else(|reason| {
                    tracing::debug!(%reason, "TxnOffsetCommit verification failed");
                    ResponseError::NetworkException.code()
                });
            verification_result(code, version)
        }
    };
    let generation = request.generation_id;
    broker
        .groups()
        .txn_commit((group, generation, member), producer, entries, now, verify)
        .await
}

/// What a TxnOffsetCommit of `version` is told for the transaction coordinator's verification
/// `code` (Kafka's `AddPartitionsToTxnManager`, then the group coordinator's
/// `maybeConvertOffsetCommitError`): not in the transaction is TRANSACTION_ABORTABLE from v4 and
/// INVALID_TXN_STATE before; a fenced producer INVALID_PRODUCER_EPOCH; a coordinator that cannot
/// answer now COORDINATOR_NOT_AVAILABLE (retriable).
fn verification_result(code: i16, version: i16) -> Result<(), ResponseError> {
    let Some(error) = ResponseError::try_from_code(code) else {
        return Ok(());
    };
    Err(match error {
        ResponseError::ProducerFenced => ResponseError::InvalidProducerEpoch,
        ResponseError::TransactionAbortable | ResponseError::InvalidTxnState => {
            if version >= 4 {
                ResponseError::TransactionAbortable
            } else {
                ResponseError::InvalidTxnState
            }
        }
        ResponseError::ConcurrentTransactions
        | ResponseError::NetworkException
        | ResponseError::CoordinatorLoadInProgress
        | ResponseError::CoordinatorNotAvailable
        | ResponseError::NotCoordinator
        | ResponseError::NotEnoughReplicas => ResponseError::CoordinatorNotAvailable,
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_errors_are_what_each_version_understands() {
        assert_eq!(verification_result(0, 3), Ok(()));
        let abortable = ResponseError::TransactionAbortable.code();
        assert_eq!(
            verification_result(abortable, 4),
            Err(ResponseError::TransactionAbortable)
        );
        assert_eq!(
            verification_result(abortable, 3),
            Err(ResponseError::InvalidTxnState)
        );
        assert_eq!(
            verification_result(ResponseError::ProducerFenced.code(), 0),
            Err(ResponseError::InvalidProducerEpoch)
        );
        for retriable in [
            ResponseError::ConcurrentTransactions,
            ResponseError::NetworkException,
            ResponseError::NotCoordinator,
        ] {
            assert_eq!(
                verification_result(retriable.code(), 4),
                Err(ResponseError::CoordinatorNotAvailable)
            );
        }
    }
}
