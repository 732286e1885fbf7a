//! Produce: checks each partition's batch, hands it to the partition's [`Leader`] (which queues
//! the append and answers per `acks`), and answers once every append is acknowledged (acks=1/all)
//! or not at all (acks=0).
//!
//! The appends are queued before this function returns ([`Leader::append`] enqueues when it is
//! called), so pipelined requests on one connection append in order and share group commits.
//!
//! Transactional batches (from the `transactions` feature level on): the first batch of a
//! producer's transaction on a partition is appended only once the transaction coordinator
//! confirms that the partition is in the producer's open transaction (KIP-890 part 1:
//! AddPartitionsToTxn v4 with `verify_only`, to the leader of the transactional id's
//! `__transaction_state` partition, over the mesh or locally), so a stray or late write cannot
//! open a transaction the coordinator knows nothing about and pin the last stable offset. Until
//! the answer, that producer's later batches to the partition wait behind it, in order
//! ([`Leader::txn_turn`]: turns are taken as requests start, so the order holds even when their
//! futures run on different tasks, as the mesh listener's do); if it is refused, the batches
//! behind it are refused too rather than leave a gap in the producer's sequence. Errors as
//! Kafka's `ReplicaManager` translates them: not in the transaction is TRANSACTION_ABORTABLE for
//! Produce v11+ and INVALID_TXN_STATE before; a fenced producer INVALID_PRODUCER_EPOCH; a
//! coordinator that cannot answer now NOT_ENOUGH_REPLICAS (retriable without a metadata refresh).
//!
//! [`Leader`]: crate::partition::Leader
//! [`Leader::append`]: crate::partition::Leader::append
//! [`Leader::txn_turn`]: crate::partition::Leader::txn_turn

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::{BoxFuture, join_all};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, ProduceRequest, ProduceResponse,
    ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use rafka_store::{Appended, ProducedBatch, StoreError, TopicPartition};

use super::dispatch::{Handled, RequestContext, respond_later};
use crate::ids::NodeId;
use crate::metadata::{Feature, TopicImage};
use crate::partition::core::ReplicaError;
use crate::partition::{Acks, AppendError, NodeLeader, PreviousTurn};
use crate::peers::request_node;
use crate::{Broker, metrics};

/// The AddPartitionsToTxn version a partition leader verifies with (v4: batched, broker to
/// broker, `verify_only`).
const VERIFY_VERSION: i16 = 4;
/// How long a verification may take before the produce is answered NOT_ENOUGH_REPLICAS.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(5);

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
    let transactions = image.features().enabled(Feature::Transactions);
    let txn = Txn {
        id: request.transactional_id.as_ref().map(|id| id.0.to_string()),
        version: ctx.version,
    };
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
                _ if request.transactional_id.is_some() && !transactions => {
                    let message = "transactions are not enabled yet (cluster feature level \
                                   below `transactions`)"
                        .to_string();
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
                    let txn = &txn;
                    start_append(broker, (topic, data.index, txn), data.records, ack, now)
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

/// The request's transactional id and version.
struct Txn {
    id: Option<String>,
    version: i16,
}

fn start_append(
    broker: &Broker,
    (topic, partition, txn): (&TopicImage, i32, &Txn),
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
    let batch = match check_client_batch(records, txn.id.is_some()) {
        Ok(batch) => batch,
        Err(refused) => return refused,
    };
    let size = batch.bytes().len();
    let header = *batch.header();
    if header.is_transactional() {
        let (Some(id), pid) = (txn.id.clone(), header.producer_id) else {
            return fail(ResponseError::InvalidRecord, None);
        };
        metrics::produce_bytes(size);
        let mut turn = leader.txn_turn(pid);
        // No earlier append of the producer waits here and its transaction is open here: at once.
        if turn.first() && leader.log().open_transaction(pid).is_some() {
            let pending = append_now(&leader, batch, now, (acks, ack_timeout));
            turn.end(0);
            return pending;
        }
        let verify = Verify {
            broker: broker.clone(),
            transactional_id: id,
            producer: (pid, header.producer_epoch),
            topic: topic.name.clone(),
            partition,
            version: txn.version,
        };
        return Pending::Appending(Box::pin(async move {
            // Behind the producer's earlier appends here that are being verified, in order.
            let refused = match turn.previous().await {
                PreviousTurn::Done => None,
                // Appending this one would leave a gap in the producer's sequence: it is
                // refused too, and the producer sends both again.
                PreviousTurn::Refused(code) => Some(Failure(
                    ResponseError::try_from_code(code).unwrap_or(ResponseError::NotEnoughReplicas),
                    Some("an earlier batch of this producer was refused".to_string()),
                    None,
                )),
                PreviousTurn::Abandoned => Some(Failure(
                    ResponseError::NotEnoughReplicas,
                    Some("an earlier batch of this producer was not appended".to_string()),
                    None,
                )),
            };
            let verified = match refused {
                Some(failure) => Err(failure),
                None if leader.log().open_transaction(pid).is_some() => Ok(()),
                None => verify.run().await,
            };
            if let Err(failure) = verified {
                turn.end(failure.0.code());
                return Err(failure);
            }
            let pending = append_now(&leader, batch, now_ms(), (acks, ack_timeout));
            turn.end(0);
            finish(pending).await
        }));
    }
    metrics::produce_bytes(size);
    append_now(&leader, batch, now, (acks, ack_timeout))
}

/// Queues the append on the leader; the outcome once acknowledged as `acks` says.
fn append_now(
    leader: &std::sync::Arc<NodeLeader>,
    batch: ProducedBatch,
    now: i64,
    (acks, ack_timeout): (Acks, Duration),
) -> Pending {
    let appending = match leader.append(batch, now, acks, ack_timeout) {
        Ok(appending) => appending,
        Err(e) => return fail(replica_code(&e), Some(e.to_string())),
    };
    Pending::Appending(Box::pin(async move {
        appending.await.map_err(|e| match e {
            AppendError::Store(e) => store_failure(e),
            AppendError::Replica(e) => Failure(replica_code(&e), Some(e.to_string()), None),
        })
    }))
}

/// One KIP-890 verification: is the partition in the producer's open transaction?
struct Verify {
    broker: Broker,
    transactional_id: String,
    producer: (i64, i16),
    topic: String,
    partition: i32,
    /// The Produce version, which decides the error a client understands.
    version: i16,
}

impl Verify {
    async fn run(self) -> Result<(), Failure> {
        let code = self.ask().await.unwrap_or_else(|reason| {
            tracing::debug!(transactional_id = %self.transactional_id, %reason, "transaction verification failed");
            ResponseError::NetworkException.code()
        });
        verification_failure(code, self.version).map_or(Ok(()), Err)
    }

    /// The coordinator's answer for this partition (an error code; 0: in the transaction).
    async fn ask(&self) -> Result<i16, String> {
        let image = self.broker.image();
        let state = image
            .topic(crate::txn::TRANSACTION_STATE_TOPIC)
            .filter(|t| !t.partitions.is_empty())
            .ok_or("no transaction state topic yet")?;
        let partitions = i32::try_from(state.partitions.len()).unwrap_or(i32::MAX);
        let index = crate::group::partition_for_group(&self.transactional_id, partitions);
        let coordinator = usize::try_from(index)
            .ok()
            .and_then(|i| state.partitions.get(i))
            .map(|p| p.leader)
            .filter(|leader| leader.is_some())
            .ok_or("the transaction coordinator's partition has no leader")?;
        let (pid, epoch) = self.producer;
        let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
            AddPartitionsToTxnTransaction::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(
                    self.transactional_id.clone(),
                )))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_verify_only(true)
                .with_topics(vec![
                    AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(StrBytes::from_string(self.topic.clone())))
                        .with_partitions(vec![self.partition]),
                ]),
        ]);
        let key = (ApiKey::AddPartitionsToTxn, VERIFY_VERSION);
        let response: AddPartitionsToTxnResponse =
            request_node(&self.broker, coordinator, key, &request, VERIFY_TIMEOUT)
                .await
                .map_err(|e| e.to_string())?;
        if response.error_code != 0 {
            // As Kafka: the client must not see CLUSTER_AUTHORIZATION_FAILED.
            return Ok(
                if response.error_code == ResponseError::ClusterAuthorizationFailed.code() {
                    ResponseError::InvalidTxnState.code()
                } else {
                    response.error_code
                },
            );
        }
        let code = response
            .results_by_transaction
            .iter()
            .flat_map(|t| &t.topic_results)
            .filter(|t| t.name.0.as_str() == self.topic)
            .flat_map(|t| &t.results_by_partition)
            .find(|p| p.partition_index == self.partition)
            .map(|p| p.partition_error_code)
            .ok_or("the coordinator's answer lacks the partition")?;
        tracing::debug!(transactional_id = %self.transactional_id, coordinator = ?coordinator, topic = %self.topic, partition = self.partition, code, "transaction verification answered");
        Ok(code)
    }
}

/// KIP-890 part 1 for another writer of transactional batches (the group coordinator's
/// TxnOffsetCommit): the coordinator's answer whether `topic`/`partition` is in the producer's
/// open transaction (an error code; 0: it is), or why there is none.
pub(crate) async fn verify_in_transaction(
    broker: &Broker,
    transactional_id: String,
    producer: (i64, i16),
    (topic, partition): (String, i32),
) -> Result<i16, String> {
    let verify = Verify {
        broker: broker.clone(),
        transactional_id,
        producer,
        topic,
        partition,
        version: 0,
    };
    verify.ask().await
}

/// What a producer of Produce `version` is told for the coordinator's verification `code`
/// (Kafka's `AddPartitionsToTxnManager` and `ReplicaManager`); `None` when verified.
fn verification_failure(code: i16, version: i16) -> Option<Failure> {
    let error = ResponseError::try_from_code(code)?;
    let (answer, message) = match error {
        ResponseError::ProducerFenced => (ResponseError::InvalidProducerEpoch, None),
        ResponseError::TransactionAbortable | ResponseError::InvalidTxnState => {
            let answer = if version >= 11 {
                ResponseError::TransactionAbortable
            } else {
                ResponseError::InvalidTxnState
            };
            (answer, Some("Partition was not added to the transaction"))
        }
        ResponseError::ConcurrentTransactions
        | ResponseError::NetworkException
        | ResponseError::CoordinatorLoadInProgress
        | ResponseError::CoordinatorNotAvailable
        | ResponseError::NotCoordinator => (
            ResponseError::NotEnoughReplicas,
            Some("Unable to verify the partition has been added to the transaction"),
        ),
        other => (other, None),
    };
    Some(Failure(answer, message.map(str::to_string), None))
}

/// Kafka's checks of a client's batch before the store sees it: one whole v2 batch, no control
/// records, a sequence with a producer id, and a transactional batch only in a request with a
/// transactional id (`transactional`) and a producer id. The header is read here once; the
/// store checks the rest on the same parse.
fn check_client_batch(records: Bytes, transactional: bool) -> Result<ProducedBatch, Pending> {
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
    if header.is_transactional() && !transactional {
        let message = "a transactional batch in a request without a transactional id";
        return refuse(
            ResponseError::TransactionalIdAuthorizationFailed,
            message.to_string(),
        );
    }
    if header.is_transactional() && header.producer_id < 0 {
        let message = "a transactional batch without a producer id".to_string();
        return refuse(ResponseError::InvalidRecord, message);
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
