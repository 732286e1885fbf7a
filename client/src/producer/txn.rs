//! The transactional producer (Kafka's transactions v1, as the Java producer's
//! `TransactionManager` runs them against a broker with KIP-890 part 1).
//!
//! - `init_transactions`: FindCoordinator (key type 1) for the transactional id, then
//!   InitProducerId with it at the coordinator: a producer id and a new epoch, which fences any
//!   older producer with the same id (and makes the coordinator abort what it left open; it
//!   answers CONCURRENT_TRANSACTIONS until then, which is retried).
//! - `begin_transaction` is local. `send` appends as usual; the sender task adds each new
//!   partition to the transaction (AddPartitionsToTxn v0-3, the partitions pending at the time in
//!   one request) before it sends that partition's first batch, and sends transactional batches
//!   (the transactional flag, the producer id and epoch, sequences as for idempotence) with the
//!   transactional id in the Produce request.
//! - `send_offsets_to_transaction`: AddOffsetsToTxn at the transaction coordinator, then
//!   TxnOffsetCommit at the group's coordinator (with the member's generation, so a member that
//!   was rebalanced out cannot commit).
//! - `commit_transaction` flushes, then EndTxn(commit); `abort_transaction` fails what was not
//!   sent yet, waits for what is in flight, then EndTxn(abort). Neither sends EndTxn for a
//!   transaction that added nothing.
//!
//! Errors: retriable answers (NOT_COORDINATOR and COORDINATOR_NOT_AVAILABLE find the
//! coordinator again; COORDINATOR_LOAD_IN_PROGRESS, CONCURRENT_TRANSACTIONS, a broken
//! connection) are retried until `max_block` has passed, then returned: the same call may be
//! made again. A failed record or offset commit makes the transaction *abortable*
//! ([`Error::TransactionAbortable`]): commit refuses it, abort ends it and the producer goes on
//! (with a new epoch from InitProducerId with its current producer id, KIP-360, when a batch
//! with a sequence failed). Fencing (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH:
//! [`Error::ProducerFenced`]) and refusals (TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
//! INVALID_TXN_STATE, ...) are *fatal*: every later call returns the error
//! ([`Error::is_fatal_for_transactions`]).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, GroupId,
    InitProducerIdRequest, ProducerId, TopicName, TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::Notify;
use tracing::debug;

use super::Producer;
use super::sequence::ProducerIdentity;
use crate::cluster::{Client, lock};
use crate::consumer::offsets::{GROUP_KEY, TRANSACTION_KEY, find_coordinator_of};
use crate::error::{Error, Result};
use crate::group::ConsumerGroupMetadata;
use crate::metadata::{NodeId, TopicPartition};

/// The backoff after CONCURRENT_TRANSACTIONS (the previous transaction's markers are being
/// written): shorter than `retry_backoff`, as the Java producer's 20 ms.
const CONCURRENT_BACKOFF: Duration = Duration::from_millis(20);

/// Where the producer's transaction stands.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Phase {
    /// `init_transactions` has not succeeded yet.
    Uninitialized,
    /// No transaction open.
    Ready,
    /// `begin_transaction` was called.
    InTransaction,
    /// `commit_transaction` is under way (or must be retried).
    Committing,
    /// `abort_transaction` is under way (or must be retried).
    Aborting,
    /// The transaction cannot commit; it must be aborted.
    Abortable(Error),
    /// The producer cannot go on.
    Fatal(Error),
}

/// The transaction state shared by the producer handle and its sender task.
#[derive(Debug)]
pub(super) struct TxnState {
    pub phase: Phase,
    pub identity: Option<ProducerIdentity>,
    /// The transaction coordinator, once found (forgotten when it moves).
    pub coordinator: Option<NodeId>,
    /// Counts transactions begun: the sender resets its view of the added partitions when it
    /// changes.
    pub number: u64,
    /// Partitions the coordinator has in the open transaction.
    pub added: HashSet<TopicPartition>,
    /// Partitions records were appended to that are not added yet.
    pub pending: HashSet<TopicPartition>,
    /// An AddPartitionsToTxn is in flight.
    pub adding: bool,
    /// The next AddPartitionsToTxn not before (after a retriable error).
    pub add_retry_at: Option<Instant>,
    /// AddOffsetsToTxn succeeded in this transaction (EndTxn is needed).
    pub offsets_added: bool,
    /// A batch with a sequence failed: the next abort bumps the epoch (KIP-360).
    pub needs_bump: bool,
}

/// A transactional producer's id, settings and state.
#[derive(Debug)]
pub(super) struct Txn {
    pub id: Arc<str>,
    pub timeout_ms: i32,
    pub state: std::sync::Mutex<TxnState>,
    /// Signalled whenever an AddPartitionsToTxn ends.
    pub changed: Notify,
}

impl Txn {
    pub(super) fn new(id: &str, timeout: Duration) -> Txn {
        Txn {
            id: Arc::from(id),
            timeout_ms: i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX),
            state: std::sync::Mutex::new(TxnState {
                phase: Phase::Uninitialized,
                identity: None,
                coordinator: None,
                number: 0,
                added: HashSet::new(),
                pending: HashSet::new(),
                adding: false,
                add_retry_at: None,
                offsets_added: false,
                needs_bump: false,
            }),
            changed: Notify::new(),
        }
    }

    /// Whether `send` may append now (a transaction is open).
    pub(super) fn check_send(&self) -> Result<()> {
        match &lock(&self.state).phase {
            Phase::InTransaction => Ok(()),
            other => Err(phase_error(other, "send")),
        }
    }

    /// A record went to `tp`: the partition joins the transaction before its first batch.
    /// Returns whether the sender has a partition to add.
    pub(super) fn note_partition(&self, tp: &TopicPartition) -> bool {
        let mut st = lock(&self.state);
        if st.added.contains(tp) || st.pending.contains(tp) {
            return false;
        }
        st.pending.insert(tp.clone());
        true
    }

    /// Makes the open transaction abortable with `error` (unless it already ended or failed).
    pub(super) fn set_abortable(&self, error: Error) {
        let mut st = lock(&self.state);
        if matches!(st.phase, Phase::InTransaction | Phase::Committing) {
            debug!(error = %error, "the transaction must be aborted");
            st.phase = Phase::Abortable(error);
        }
    }

    /// The producer cannot go on.
    pub(super) fn set_fatal(&self, error: Error) {
        lock(&self.state).phase = Phase::Fatal(error);
    }

    /// Waits until no AddPartitionsToTxn is in flight.
    async fn adds_settled(&self) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !lock(&self.state).adding {
                return;
            }
            notified.await;
        }
    }
}

/// The error a call in `phase` gets when the phase does not allow it.
fn phase_error(phase: &Phase, call: &str) -> Error {
    match phase {
        Phase::Abortable(e) => Error::TransactionAbortable(Box::new(e.clone())),
        Phase::Fatal(e) => e.clone(),
        Phase::Uninitialized => {
            Error::TransactionState(format!("{call}: call init_transactions first"))
        }
        Phase::Ready => Error::TransactionState(format!(
            "{call}: no transaction is open (call begin_transaction)"
        )),
        Phase::InTransaction => {
            Error::TransactionState(format!("{call}: a transaction is already open"))
        }
        Phase::Committing => Error::TransactionState(format!(
            "{call}: the transaction is being committed (retry commit_transaction)"
        )),
        Phase::Aborting => Error::TransactionState(format!(
            "{call}: the transaction is being aborted (retry abort_transaction)"
        )),
    }
}

/// What to do after a coordinator's answer.
#[derive(Debug, Clone)]
pub(super) enum Next {
    /// Retry after the backoff (`true`: the short one for CONCURRENT_TRANSACTIONS).
    Retry(Error, bool),
    /// Find the coordinator again, then retry.
    Refind(Error),
    /// The transaction must be aborted.
    Abortable(Error),
    /// The producer cannot go on.
    Fatal(Error),
}

impl Next {
    /// The backoff before the next attempt.
    pub(super) fn backoff(&self, retry_backoff: Duration) -> Duration {
        match self {
            Next::Retry(_, true) => CONCURRENT_BACKOFF.min(retry_backoff),
            _ => retry_backoff,
        }
    }
}

/// Classifies an answer's error code (`None`: no error), as the Java producer's handlers do.
pub(super) fn classify(api: &str, id: &str, code: i16, message: Option<&str>) -> Option<Next> {
    let error = ResponseError::try_from_code(code)?;
    let err = Error::Broker {
        context: format!("{api} of transactional id {id}"),
        error,
        message: message.map(str::to_owned),
    };
    Some(match error {
        ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable => Next::Refind(err),
        ResponseError::ConcurrentTransactions => Next::Retry(err, true),
        ResponseError::CoordinatorLoadInProgress
        | ResponseError::UnknownTopicOrPartition
        | ResponseError::OperationNotAttempted
        | ResponseError::RequestTimedOut => Next::Retry(err, false),
        ResponseError::InvalidProducerEpoch | ResponseError::ProducerFenced => Next::Fatal(
            Error::ProducerFenced(format!("transactional id {id}: {api}: {error}")),
        ),
        _ if err.is_fatal_for_transactions() => Next::Fatal(err),
        _ if error.is_retriable() => Next::Retry(err, false),
        _ => Next::Abortable(err),
    })
}

/// Classifies a transport error (no answer).
fn transport(e: Error) -> Next {
    if e.is_connection_error() || matches!(e, Error::Coordinator { .. }) {
        Next::Refind(e)
    } else if e.is_retriable() {
        Next::Retry(e, false)
    } else if e.is_fatal_for_transactions() {
        Next::Fatal(e)
    } else {
        Next::Abortable(e)
    }
}

fn txn_id(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(id.to_owned()))
}

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// One InitProducerId at `node`: with `current` (v3+, KIP-360) the coordinator bumps that
/// producer's epoch instead of fencing it.
async fn init_producer_id(
    client: &Client,
    node: NodeId,
    id: &str,
    timeout_ms: i32,
    current: Option<ProducerIdentity>,
) -> Result<ProducerIdentity, Next> {
    let conn = client.node(node).await.map_err(transport)?;
    let version = conn
        .version::<InitProducerIdRequest>()
        .map_err(Next::Fatal)?;
    let mut request = InitProducerIdRequest::default()
        .with_transactional_id(Some(txn_id(id)))
        .with_transaction_timeout_ms(timeout_ms);
    if let Some(current) = current {
        if version < 3 {
            return Err(Next::Fatal(Error::UnsupportedVersion {
                api: "InitProducerId v3 (bumping the epoch after a failed batch)",
                endpoint: conn.endpoint().to_string(),
            }));
        }
        request.producer_id = ProducerId(current.id);
        request.producer_epoch = current.epoch;
    } else if version >= 3 {
        request.producer_id = ProducerId(-1);
        request.producer_epoch = -1;
    }
    let response = conn.send(version, &request).await.map_err(transport)?;
    if let Some(next) = classify("InitProducerId", id, response.error_code, None) {
        return Err(next);
    }
    Ok(ProducerIdentity {
        id: response.producer_id.0,
        epoch: response.producer_epoch,
    })
}

/// One AddPartitionsToTxn (v0-3, as producers send it) of `partitions` at `node`.
async fn add_partitions(
    client: &Client,
    node: NodeId,
    id: &str,
    identity: ProducerIdentity,
    partitions: &[TopicPartition],
) -> Result<(), Next> {
    let conn = client.node(node).await.map_err(transport)?;
    let version = conn
        .version::<AddPartitionsToTxnRequest>()
        .map_err(Next::Fatal)?
        .min(3);
    let mut topics: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
    for tp in partitions {
        topics.entry(&*tp.topic).or_default().push(tp.partition);
    }
    let mut request = AddPartitionsToTxnRequest::default();
    request.v3_and_below_transactional_id = txn_id(id);
    request.v3_and_below_producer_id = ProducerId(identity.id);
    request.v3_and_below_producer_epoch = identity.epoch;
    request.v3_and_below_topics = topics
        .into_iter()
        .map(|(topic, partitions)| {
            AddPartitionsToTxnTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(partitions)
        })
        .collect();
    let response = conn.send(version, &request).await.map_err(transport)?;
    let mut answered = 0;
    let mut worst: Option<Next> = None;
    for topic in &response.results_by_topic_v3_and_below {
        for p in &topic.results_by_partition {
            answered += 1;
            let Some(next) = classify("AddPartitionsToTxn", id, p.partition_error_code, None)
            else {
                continue;
            };
            // The partition that failed says why; the others are OPERATION_NOT_ATTEMPTED.
            let rank = |n: &Next| match n {
                Next::Fatal(_) => 3,
                Next::Abortable(_) => 2,
                Next::Refind(_) => 1,
                Next::Retry(Error::Broker { error, .. }, _)
                    if *error != ResponseError::OperationNotAttempted =>
                {
                    1
                }
                Next::Retry(..) => 0,
            };
            if worst.as_ref().is_none_or(|w| rank(&next) > rank(w)) {
                worst = Some(next);
            }
        }
    }
    if let Some(next) = worst {
        return Err(next);
    }
    if answered < partitions.len() {
        return Err(Next::Retry(
            Error::protocol("AddPartitionsToTxn answered fewer partitions than asked"),
            false,
        ));
    }
    Ok(())
}

/// The sender's one attempt at adding `partitions` (finding the coordinator first if needed);
/// returns the outcome and the coordinator to use next time.
pub(super) async fn add_partitions_once(
    client: &Client,
    txn: &Txn,
    identity: ProducerIdentity,
    coordinator: Option<NodeId>,
    partitions: &[TopicPartition],
) -> (Result<(), Next>, Option<NodeId>) {
    let node = match coordinator {
        Some(node) => node,
        None => {
            let wait = client.config().connection.request_timeout;
            match find_coordinator_of(client, &txn.id, TRANSACTION_KEY, wait).await {
                Ok(node) => node,
                Err(e) => return (Err(transport(e)), None),
            }
        }
    };
    let result = add_partitions(client, node, &txn.id, identity, partitions).await;
    let keep = match &result {
        Err(Next::Refind(_)) => None,
        _ => Some(node),
    };
    (result, keep)
}

/// One AddOffsetsToTxn for `group` at `node`.
async fn add_offsets(
    client: &Client,
    node: NodeId,
    id: &str,
    identity: ProducerIdentity,
    group: &str,
) -> Result<(), Next> {
    let conn = client.node(node).await.map_err(transport)?;
    let version = conn
        .version::<AddOffsetsToTxnRequest>()
        .map_err(Next::Fatal)?;
    let request = AddOffsetsToTxnRequest::default()
        .with_transactional_id(txn_id(id))
        .with_producer_id(ProducerId(identity.id))
        .with_producer_epoch(identity.epoch)
        .with_group_id(GroupId(s(group)));
    let response = conn.send(version, &request).await.map_err(transport)?;
    match classify("AddOffsetsToTxn", id, response.error_code, None) {
        Some(next) => Err(next),
        None => Ok(()),
    }
}

/// One TxnOffsetCommit at the group's coordinator `node`.
async fn txn_offset_commit(
    client: &Client,
    node: NodeId,
    id: &str,
    identity: ProducerIdentity,
    group: &ConsumerGroupMetadata,
    offsets: &[(TopicPartition, i64)],
) -> Result<(), Next> {
    let conn = client.node(node).await.map_err(transport)?;
    // A broker without TxnOffsetCommit cannot commit offsets in a transaction; the transaction
    // itself may still be aborted.
    let version = conn
        .version::<TxnOffsetCommitRequest>()
        .map_err(Next::Abortable)?;
    let mut topics: std::collections::BTreeMap<&str, Vec<TxnOffsetCommitRequestPartition>> =
        Default::default();
    for (tp, offset) in offsets {
        topics.entry(&*tp.topic).or_default().push(
            TxnOffsetCommitRequestPartition::default()
                .with_partition_index(tp.partition)
                .with_committed_offset(*offset)
                .with_committed_leader_epoch(-1),
        );
    }
    let mut request = TxnOffsetCommitRequest::default()
        .with_transactional_id(txn_id(id))
        .with_group_id(GroupId(s(&group.group_id)))
        .with_producer_id(ProducerId(identity.id))
        .with_producer_epoch(identity.epoch)
        .with_topics(
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    TxnOffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(topic)))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    if version >= 3 {
        request.generation_id = group.generation_id;
        request.member_id = s(&group.member_id);
        request.group_instance_id = group.instance_id.as_deref().map(s);
    }
    let response = conn.send(version, &request).await.map_err(transport)?;
    for topic in &response.topics {
        for p in &topic.partitions {
            if let Some(next) = classify("TxnOffsetCommit", id, p.error_code, None) {
                return Err(next);
            }
        }
    }
    Ok(())
}

/// One EndTxn at `node`.
async fn end_txn(
    client: &Client,
    node: NodeId,
    id: &str,
    identity: ProducerIdentity,
    commit: bool,
) -> Result<(), Next> {
    let conn = client.node(node).await.map_err(transport)?;
    // v5 is transactions v2 (an epoch bump per transaction), which this producer does not do.
    let version = conn.version::<EndTxnRequest>().map_err(Next::Fatal)?.min(4);
    let request = EndTxnRequest::default()
        .with_transactional_id(txn_id(id))
        .with_producer_id(ProducerId(identity.id))
        .with_producer_epoch(identity.epoch)
        .with_committed(commit);
    let response = conn.send(version, &request).await.map_err(transport)?;
    match classify("EndTxn", id, response.error_code, None) {
        Some(next) => Err(next),
        None => Ok(()),
    }
}

/// How a coordinator call ended for good.
enum Failure {
    /// Still failing with a retriable error when `max_block` ran out: the call may be retried.
    TimedOut(Error),
    Abortable(Error),
    Fatal(Error),
}

/// Runs `call` on the coordinator of `key` (`key_type` as FindCoordinator's), finding it when
/// `cached` is `None` or it moved, retrying retriable answers until `deadline`.
async fn on_coordinator<T, F: Future<Output = Result<T, Next>>>(
    client: &Client,
    key: &str,
    key_type: i8,
    cached: &mut Option<NodeId>,
    deadline: Instant,
    mut call: impl FnMut(NodeId) -> F,
) -> Result<T, Failure> {
    let backoff = client.config().retry_backoff;
    loop {
        let next = match *cached {
            Some(node) => match call(node).await {
                Ok(value) => return Ok(value),
                Err(next) => next,
            },
            None => {
                let wait = deadline.saturating_duration_since(Instant::now());
                match find_coordinator_of(client, key, key_type, wait).await {
                    Ok(node) => {
                        *cached = Some(node);
                        continue;
                    }
                    Err(e) => transport(e),
                }
            }
        };
        let error = match &next {
            Next::Abortable(e) => return Err(Failure::Abortable(e.clone())),
            Next::Fatal(e) => return Err(Failure::Fatal(e.clone())),
            Next::Refind(e) => {
                *cached = None;
                e.clone()
            }
            Next::Retry(e, _) => e.clone(),
        };
        let pause = next.backoff(backoff);
        if Instant::now() + pause >= deadline {
            return Err(Failure::TimedOut(error));
        }
        debug!(key, error = %error, "transaction request: retrying");
        tokio::time::sleep(pause).await;
    }
}

impl Producer {
    fn txn(&self) -> Result<&Arc<Txn>> {
        if let Some(e) = self.fatal_error() {
            return Err(e);
        }
        self.shared.txn.as_ref().ok_or_else(|| {
            Error::TransactionState(
                "this producer has no transactional id (ProducerConfig::transactional_id)".into(),
            )
        })
    }

    /// Marks the producer failed for good (every later call returns `error`).
    fn fail(&self, txn: &Txn, error: Error) -> Error {
        txn.set_fatal(error.clone());
        *lock(&self.shared.fatal) = Some(error.clone());
        self.shared
            .failed
            .store(true, std::sync::atomic::Ordering::Release);
        self.shared.wake.notify_one();
        error
    }

    /// Runs `call` on the transaction coordinator until `max_block` has passed.
    async fn on_txn_coordinator<T, F: Future<Output = Result<T, Next>>>(
        &self,
        txn: &Txn,
        call: impl FnMut(NodeId) -> F,
    ) -> Result<T, Failure> {
        let mut cached = lock(&txn.state).coordinator;
        let deadline = Instant::now() + self.config.max_block;
        let result = on_coordinator(
            &self.client,
            &txn.id,
            TRANSACTION_KEY,
            &mut cached,
            deadline,
            call,
        )
        .await;
        lock(&txn.state).coordinator = cached;
        result
    }

    /// Gets the producer id and epoch for the transactional id, fencing every older producer
    /// with the same id (whose open transaction the coordinator aborts). Call once, before the
    /// first transaction; when it times out (the coordinator was not available within
    /// `max_block`) it may be called again.
    pub async fn init_transactions(&self) -> Result<()> {
        let txn = self.txn()?.clone();
        {
            let st = lock(&txn.state);
            if st.phase != Phase::Uninitialized {
                return Err(Error::TransactionState(
                    "init_transactions was called already".into(),
                ));
            }
        }
        let (id, timeout_ms) = (txn.id.clone(), txn.timeout_ms);
        let client = self.client.clone();
        let result = self
            .on_txn_coordinator(&txn, |node| {
                let (client, id) = (client.clone(), id.clone());
                async move { init_producer_id(&client, node, &id, timeout_ms, None).await }
            })
            .await;
        match result {
            Ok(identity) => {
                debug!(transactional_id = %txn.id, producer_id = identity.id, epoch = identity.epoch, "transactions initialized");
                let mut st = lock(&txn.state);
                st.identity = Some(identity);
                st.phase = Phase::Ready;
                drop(st);
                self.shared.wake.notify_one();
                Ok(())
            }
            Err(Failure::TimedOut(e) | Failure::Abortable(e)) => Err(e),
            Err(Failure::Fatal(e)) => Err(self.fail(&txn, e)),
        }
    }

    /// Opens a transaction: what is sent until the commit or abort is in it.
    pub fn begin_transaction(&self) -> Result<()> {
        let txn = self.txn()?;
        let mut st = lock(&txn.state);
        if st.phase != Phase::Ready {
            return Err(phase_error(&st.phase, "begin_transaction"));
        }
        st.phase = Phase::InTransaction;
        st.number += 1;
        st.added.clear();
        st.pending.clear();
        st.add_retry_at = None;
        st.offsets_added = false;
        Ok(())
    }

    /// Commits `offsets` (the next offset to read per partition) for `group` as part of the
    /// transaction: they become the group's committed offsets if and only if the transaction
    /// commits (consume-transform-produce). `group` is the consuming member's
    /// [`crate::GroupConsumer::group_metadata`] (or [`ConsumerGroupMetadata::new`] for a
    /// consumer without membership).
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: &[(TopicPartition, i64)],
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        let txn = self.txn()?.clone();
        let identity = {
            let st = lock(&txn.state);
            if st.phase != Phase::InTransaction {
                return Err(phase_error(&st.phase, "send_offsets_to_transaction"));
            }
            st.identity
                .ok_or_else(|| Error::TransactionState("no producer id".into()))?
        };
        if offsets.is_empty() {
            return Ok(());
        }
        let client = self.client.clone();
        let id = txn.id.clone();
        let group_id: Arc<str> = Arc::from(group.group_id.as_str());
        if !lock(&txn.state).offsets_added {
            let added = self
                .on_txn_coordinator(&txn, |node| {
                    let (client, id, group_id) = (client.clone(), id.clone(), group_id.clone());
                    async move { add_offsets(&client, node, &id, identity, &group_id).await }
                })
                .await;
            self.settle(&txn, added)?;
            lock(&txn.state).offsets_added = true;
        }
        let mut group_coordinator = None;
        let deadline = Instant::now() + self.config.max_block;
        let committed = on_coordinator(
            &self.client,
            &group.group_id,
            GROUP_KEY,
            &mut group_coordinator,
            deadline,
            |node| {
                let (client, id) = (client.clone(), id.clone());
                async move { txn_offset_commit(&client, node, &id, identity, group, offsets).await }
            },
        )
        .await;
        self.settle(&txn, committed)
    }

    /// Turns a coordinator call's failure into the error to return, updating the phase.
    fn settle<T>(&self, txn: &Txn, result: Result<T, Failure>) -> Result<T> {
        match result {
            Ok(value) => Ok(value),
            Err(Failure::TimedOut(e)) => Err(e),
            Err(Failure::Abortable(e)) => {
                txn.set_abortable(e.clone());
                Err(Error::TransactionAbortable(Box::new(e)))
            }
            Err(Failure::Fatal(e)) => Err(self.fail(txn, e)),
        }
    }

    /// Sends what is queued, then commits the transaction. A failed record or offset commit
    /// fails the commit with [`Error::TransactionAbortable`] (abort instead); a timeout (the
    /// coordinator unavailable for `max_block`) leaves the commit to be retried.
    pub async fn commit_transaction(&self) -> Result<()> {
        let txn = self.txn()?.clone();
        {
            let mut st = lock(&txn.state);
            if !matches!(st.phase, Phase::InTransaction | Phase::Committing) {
                return Err(phase_error(&st.phase, "commit_transaction"));
            }
            st.phase = Phase::Committing;
        }
        self.flush().await;
        let (identity, needed) = {
            let st = lock(&txn.state);
            if st.phase != Phase::Committing {
                return Err(phase_error(&st.phase, "commit_transaction"));
            }
            (st.identity, !st.added.is_empty() || st.offsets_added)
        };
        if let Some(e) = self.fatal_error() {
            return Err(e);
        }
        if needed && let Some(identity) = identity {
            self.end(&txn, identity, true).await?;
        }
        self.ready(&txn);
        Ok(())
    }

    /// Aborts the transaction: records not sent yet fail, records in flight are waited for,
    /// and nothing of the transaction reaches read_committed consumers. The producer can begin
    /// another transaction afterwards.
    pub async fn abort_transaction(&self) -> Result<()> {
        let txn = self.txn()?.clone();
        {
            let mut st = lock(&txn.state);
            if !matches!(
                st.phase,
                Phase::InTransaction | Phase::Abortable(_) | Phase::Aborting
            ) {
                return Err(phase_error(&st.phase, "abort_transaction"));
            }
            st.phase = Phase::Aborting;
        }
        // The sender fails the batches not sent yet; the flush waits for those in flight.
        self.shared.wake.notify_one();
        self.flush().await;
        txn.adds_settled().await;
        if let Some(e) = self.fatal_error() {
            return Err(e);
        }
        let (identity, needed, bump) = {
            let st = lock(&txn.state);
            (
                st.identity,
                !st.added.is_empty() || st.offsets_added,
                st.needs_bump,
            )
        };
        let Some(identity) = identity else {
            return Err(Error::TransactionState("no producer id".into()));
        };
        if needed {
            self.end(&txn, identity, false).await?;
        }
        if bump {
            let (client, id, timeout_ms) = (self.client.clone(), txn.id.clone(), txn.timeout_ms);
            let bumped = self
                .on_txn_coordinator(&txn, |node| {
                    let (client, id) = (client.clone(), id.clone());
                    async move {
                        init_producer_id(&client, node, &id, timeout_ms, Some(identity)).await
                    }
                })
                .await;
            let identity = self.settle(&txn, bumped)?;
            debug!(
                producer_id = identity.id,
                epoch = identity.epoch,
                "epoch bumped after an abort"
            );
            let mut st = lock(&txn.state);
            st.identity = Some(identity);
            st.needs_bump = false;
        }
        self.ready(&txn);
        Ok(())
    }

    /// EndTxn until it succeeds, fails for good, or `max_block` passes (the phase is kept so
    /// the same call can be retried).
    async fn end(&self, txn: &Txn, identity: ProducerIdentity, commit: bool) -> Result<()> {
        let (client, id) = (self.client.clone(), txn.id.clone());
        let ended = self
            .on_txn_coordinator(txn, |node| {
                let (client, id) = (client.clone(), id.clone());
                async move { end_txn(&client, node, &id, identity, commit).await }
            })
            .await;
        self.settle(txn, ended)
    }

    /// The transaction ended: ready for the next.
    fn ready(&self, txn: &Txn) {
        let mut st = lock(&txn.state);
        st.phase = Phase::Ready;
        st.added.clear();
        st.pending.clear();
        st.offsets_added = false;
        st.add_retry_at = None;
        drop(st);
        self.shared.wake.notify_one();
    }

    /// The transactional id, for a transactional producer.
    pub fn transactional_id(&self) -> Option<&str> {
        self.shared.txn.as_ref().map(|t| &*t.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_as_the_java_producer_does() {
        let next = |code: ResponseError| classify("EndTxn", "t", code.code(), None);
        assert!(classify("EndTxn", "t", 0, None).is_none());
        assert!(matches!(
            next(ResponseError::NotCoordinator),
            Some(Next::Refind(_))
        ));
        assert!(matches!(
            next(ResponseError::CoordinatorNotAvailable),
            Some(Next::Refind(_))
        ));
        let concurrent = next(ResponseError::ConcurrentTransactions).unwrap();
        assert!(matches!(concurrent, Next::Retry(_, true)));
        assert_eq!(
            concurrent.backoff(Duration::from_millis(100)),
            CONCURRENT_BACKOFF
        );
        assert!(matches!(
            next(ResponseError::CoordinatorLoadInProgress),
            Some(Next::Retry(_, false))
        ));
        for fenced in [
            ResponseError::ProducerFenced,
            ResponseError::InvalidProducerEpoch,
        ] {
            let Some(Next::Fatal(e)) = next(fenced) else {
                panic!("{fenced:?} is fatal")
            };
            assert!(matches!(e, Error::ProducerFenced(_)), "{e}");
            assert!(e.is_fatal_for_transactions());
        }
        for fatal in [
            ResponseError::TransactionalIdAuthorizationFailed,
            ResponseError::InvalidTxnState,
        ] {
            assert!(matches!(next(fatal), Some(Next::Fatal(_))), "{fatal:?}");
        }
        for abortable in [
            ResponseError::TransactionAbortable,
            ResponseError::InvalidProducerIdMapping,
            ResponseError::IllegalGeneration,
            ResponseError::UnknownMemberId,
            ResponseError::GroupAuthorizationFailed,
        ] {
            assert!(
                matches!(next(abortable), Some(Next::Abortable(_))),
                "{abortable:?}"
            );
        }
    }

    use kafka_protocol::messages::ApiKey;

    use crate::testing::FakeBroker;
    use crate::{Bootstrap, ClientConfig, ProducerConfig, ProducerRecord};

    async fn fake_producer(broker: &FakeBroker) -> Producer {
        let config = ClientConfig::new(Bootstrap::parse("localhost:9092").unwrap());
        let client = Client::connect_with(config, broker.dialer()).await.unwrap();
        let config = ProducerConfig {
            transactional_id: Some("t-1".into()),
            retry_backoff: Duration::from_millis(5),
            max_block: Duration::from_secs(5),
            ..ProducerConfig::default()
        };
        Producer::new(client, config).unwrap()
    }

    fn transactional_batches(broker: &FakeBroker, topic: &str, partition: i32) -> Vec<bool> {
        broker
            .batches(topic, partition)
            .iter()
            .map(|b| {
                rafka_format::batch::check_batch(&b.bytes)
                    .unwrap()
                    .is_transactional()
            })
            .collect()
    }

    #[tokio::test]
    async fn batches_wait_for_their_partitions_to_be_added_and_the_commit_ends_the_transaction() {
        let broker = FakeBroker::new();
        broker.create_topic("a", 2);
        // The coordinator is still ending the previous producer's transaction at first.
        broker.fail_txn(ApiKey::InitProducerId, 51);
        broker.fail_txn(ApiKey::InitProducerId, 14);
        let producer = fake_producer(&broker).await;
        producer.init_transactions().await.unwrap();
        producer.begin_transaction().unwrap();
        // The first AddPartitionsToTxn: CONCURRENT_TRANSACTIONS (retried).
        broker.fail_txn(ApiKey::AddPartitionsToTxn, 51);
        let mut deliveries = Vec::new();
        for i in 0..10 {
            let record = ProducerRecord::new("a", format!("v{i}")).with_partition(i % 2);
            deliveries.push(producer.send(record).await.unwrap());
        }
        producer.commit_transaction().await.unwrap();
        for d in deliveries {
            d.await.unwrap();
        }
        let mut added = broker.txn_added();
        added.sort();
        assert!(added.is_empty(), "the end cleared them: {added:?}");
        assert_eq!(broker.txn_ends().len(), 1);
        assert!(broker.txn_ends()[0].2, "committed");
        for p in 0..2 {
            let flags = transactional_batches(&broker, "a", p);
            assert!(!flags.is_empty() && flags.iter().all(|t| *t), "{flags:?}");
        }
        // Every Produce came after the AddPartitionsToTxn that succeeded.
        let order: Vec<i16> = broker
            .requests()
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| *k == ApiKey::AddPartitionsToTxn as i16 || *k == ApiKey::Produce as i16)
            .collect();
        let first_produce = order
            .iter()
            .position(|k| *k == ApiKey::Produce as i16)
            .unwrap();
        assert!(
            first_produce >= 2,
            "one AddPartitionsToTxn refused, one accepted, then Produce: {order:?}"
        );

        // An empty transaction sends nothing; an aborted one ends with EndTxn(abort).
        producer.begin_transaction().unwrap();
        producer.commit_transaction().await.unwrap();
        assert_eq!(broker.txn_ends().len(), 1);
        producer.begin_transaction().unwrap();
        drop(
            producer
                .send(ProducerRecord::new("a", "x").with_partition(0))
                .await
                .unwrap(),
        );
        // Written (so the partition is in the transaction), then aborted.
        producer.flush().await;
        producer.abort_transaction().await.unwrap();
        let ends = broker.txn_ends();
        assert_eq!(ends.len(), 2);
        assert!(!ends[1].2, "aborted");

        // Fenced at the end: fatal, and every later call says so.
        producer.begin_transaction().unwrap();
        drop(
            producer
                .send(ProducerRecord::new("a", "y").with_partition(1))
                .await
                .unwrap(),
        );
        broker.fail_txn(ApiKey::EndTxn, 90);
        let e = producer.commit_transaction().await.unwrap_err();
        assert!(matches!(e, Error::ProducerFenced(_)), "{e:?}");
        assert!(matches!(
            producer.begin_transaction(),
            Err(Error::ProducerFenced(_))
        ));
        assert!(matches!(
            producer.send(ProducerRecord::new("a", "z")).await,
            Err(Error::ProducerFenced(_))
        ));
        producer.close().await;
    }

    #[tokio::test]
    async fn a_refused_partition_makes_the_transaction_abortable_and_the_abort_recovers() {
        let broker = FakeBroker::new();
        broker.create_topic("a", 1);
        let producer = fake_producer(&broker).await;
        producer.init_transactions().await.unwrap();
        producer.begin_transaction().unwrap();
        // TOPIC_AUTHORIZATION_FAILED: the transaction cannot commit.
        broker.fail_txn(ApiKey::AddPartitionsToTxn, 29);
        let delivery = producer
            .send(ProducerRecord::new("a", "lost"))
            .await
            .unwrap();
        let e = producer.commit_transaction().await.unwrap_err();
        assert!(matches!(e, Error::TransactionAbortable(_)), "{e:?}");
        assert!(delivery.await.is_err());
        assert!(matches!(
            producer.send(ProducerRecord::new("a", "no")).await,
            Err(Error::TransactionAbortable(_))
        ));
        producer.abort_transaction().await.unwrap();
        assert!(broker.txn_ends().is_empty(), "nothing was added: no EndTxn");
        producer.begin_transaction().unwrap();
        let delivery = producer
            .send(ProducerRecord::new("a", "kept"))
            .await
            .unwrap();
        producer.commit_transaction().await.unwrap();
        assert_eq!(delivery.await.unwrap().offset, 0);
        assert_eq!(broker.txn_ends().len(), 1);
        producer.close().await;
    }

    #[tokio::test]
    async fn offsets_sent_to_a_transaction_commit_with_it_as_the_member_that_consumed() {
        let broker = FakeBroker::new();
        broker.create_topic("in", 2);
        broker.create_topic("out", 1);
        let producer = fake_producer(&broker).await;
        producer.init_transactions().await.unwrap();
        let member = ConsumerGroupMetadata {
            group_id: "g".into(),
            generation_id: 3,
            member_id: "m-1".into(),
            instance_id: Some("i-1".into()),
        };
        let offsets = [
            (TopicPartition::new("in", 0), 5),
            (TopicPartition::new("in", 1), 9),
        ];
        producer.begin_transaction().unwrap();
        drop(
            producer
                .send(ProducerRecord::new("out", "transformed"))
                .await
                .unwrap(),
        );
        producer
            .send_offsets_to_transaction(&offsets, &member)
            .await
            .unwrap();
        assert_eq!(
            broker.committed("g", "in", 0),
            None,
            "pending until the commit"
        );
        producer.commit_transaction().await.unwrap();
        assert_eq!(broker.committed("g", "in", 0), Some(5));
        assert_eq!(broker.committed("g", "in", 1), Some(9));
        let sent = broker.txn_offset_commits();
        assert_eq!(sent.len(), 1);
        let request = &sent[0];
        assert_eq!(request.transactional_id.as_str(), "t-1");
        assert_eq!(
            (request.generation_id, request.member_id.as_str()),
            (3, "m-1")
        );
        assert_eq!(request.group_instance_id.as_deref(), Some("i-1"));

        // A member rebalanced out: the transaction must be aborted, and its offsets are dropped.
        producer.begin_transaction().unwrap();
        broker.fail_txn(ApiKey::TxnOffsetCommit, 22);
        let later = [(TopicPartition::new("in", 0), 50)];
        let e = producer
            .send_offsets_to_transaction(&later, &member)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::TransactionAbortable(_)), "{e:?}");
        assert!(matches!(
            producer.commit_transaction().await,
            Err(Error::TransactionAbortable(_))
        ));
        producer.abort_transaction().await.unwrap();
        let ends = broker.txn_ends();
        assert_eq!(ends.len(), 2, "the group was added: EndTxn(abort) is sent");
        assert!(!ends[1].2);
        assert_eq!(broker.committed("g", "in", 0), Some(5));
        producer.close().await;
    }

    #[test]
    fn calls_out_of_order_say_what_to_do() {
        let txn = Txn::new("t", Duration::from_secs(60));
        assert!(matches!(
            txn.check_send(),
            Err(Error::TransactionState(m)) if m.contains("init_transactions")
        ));
        lock(&txn.state).phase = Phase::Ready;
        assert!(matches!(
            txn.check_send(),
            Err(Error::TransactionState(m)) if m.contains("begin_transaction")
        ));
        lock(&txn.state).phase = Phase::InTransaction;
        assert!(txn.check_send().is_ok());
        let tp = TopicPartition::new("a", 0);
        assert!(txn.note_partition(&tp));
        assert!(!txn.note_partition(&tp), "pending once");
        txn.set_abortable(Error::Closed);
        assert!(matches!(
            txn.check_send(),
            Err(Error::TransactionAbortable(e)) if *e == Error::Closed
        ));
        txn.set_abortable(Error::DeliveryTimeout(Duration::ZERO));
        assert!(
            matches!(lock(&txn.state).phase, Phase::Abortable(Error::Closed)),
            "the first error is kept"
        );
        txn.set_fatal(Error::ProducerFenced("x".into()));
        assert!(matches!(txn.check_send(), Err(Error::ProducerFenced(_))));
    }
}
