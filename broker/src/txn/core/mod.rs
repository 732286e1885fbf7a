//! The transaction coordinator's sans-IO core: each transactional id's producer id and epoch,
//! its open transaction (the partitions added to it), and the two-phase end of a transaction
//! (Prepare, markers to every partition, Complete), for the ids whose `__transaction_state`
//! partition this node leads. No I/O, no clock, no tasks: requests and `now` (milliseconds since
//! the Unix epoch, as Kafka's timeouts use) go in, [`Output`]s come out, and a shell carries them
//! out.
//!
//! # What goes in
//!
//! - Partition life: [`TxnCoordinator::begin_load`] when this node gains leadership of a
//!   `__transaction_state` partition (its ids answer COORDINATOR_LOAD_IN_PROGRESS),
//!   [`TxnCoordinator::load`] with the partition's records once replayed (any transaction whose
//!   end was decided gets its markers again), [`TxnCoordinator::unload`] when leadership is lost
//!   (NOT_COORDINATOR from then on; held answers get it).
//! - Requests, each answered through [`Output::Answer`] (at once, or once its record is
//!   persisted): [`TxnCoordinator::init_producer_id`], [`TxnCoordinator::add_partitions`],
//!   [`TxnCoordinator::add_offsets`], [`TxnCoordinator::end_txn`]. Queries answered directly:
//!   [`TxnCoordinator::verify`] (KIP-890 part 1: is this partition in this producer's open
//!   transaction?), [`TxnCoordinator::describe`], [`TxnCoordinator::list`].
//! - Writes and markers finished: [`TxnCoordinator::persisted`] for each [`Output::Persist`],
//!   [`TxnCoordinator::marker_written`] for each partition of each [`Output::WriteMarkers`].
//! - Producer ids: [`TxnCoordinator::add_producer_ids`] after [`Output::NeedProducerIds`].
//! - Time: [`TxnCoordinator::tick`] at [`TxnCoordinator::next_deadline`] at the latest (aborts
//!   transactions open past their timeout, forgets ids idle past the expiration, resends markers).
//!
//! # What comes out
//!
//! [`Output`]s, drained with [`TxnCoordinator::poll_output`] after every call: answers, records
//! to append (acks=all) to a `__transaction_state` partition, and the markers to write.
//!
//! # Rules (Kafka's `TransactionCoordinator`, transactions v1)
//!
//! A state change is decided, written, and only applied (and answered) once its record is
//! persisted; while a write is pending, other requests for the id get CONCURRENT_TRANSACTIONS.
//! InitProducerId bumps the epoch (fencing the previous producer); with a transaction open, it
//! first aborts that transaction under the bumped epoch and answers CONCURRENT_TRANSACTIONS
//! (the client retries until the abort completes). EndTxn answers once Prepare is persisted; the
//! markers follow, then Complete. A retried EndTxn with the outcome already decided succeeds; the
//! opposite outcome gets INVALID_TXN_STATE.

mod requests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

pub use kafka_protocol::ResponseError;

pub use super::records::{TopicPartition, TxnRecord, TxnState, TxnStatus};

/// The coordinator's settings (Kafka's `transaction.*` broker configs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`: larger client timeouts get INVALID_TRANSACTION_TIMEOUT.
    pub max_timeout: Duration,
    /// `transactional.id.expiration.ms`: how long an id without an open transaction is kept.
    pub id_expiration: Duration,
    /// How long before a marker that failed is sent again.
    pub marker_retry: Duration,
    /// How long an AddPartitionsToTxn or AddOffsetsToTxn that arrives while the producer's
    /// previous transaction is still ending (markers and Complete being written) is held before
    /// it gets CONCURRENT_TRANSACTIONS. Clients send the next transaction's first add right
    /// after EndTxn's answer; holding it until the end is complete spares them a retry backoff.
    pub add_wait: Duration,
    /// Partitions of `__transaction_state` (`transaction.state.log.num.partitions`).
    pub state_partitions: i32,
    /// Partitions of `__consumer_offsets` (where AddOffsetsToTxn's group lives).
    pub offsets_partitions: i32,
}

impl Default for TxnConfig {
    fn default() -> Self {
        Self {
            max_timeout: Duration::from_millis(900_000),
            id_expiration: Duration::from_millis(604_800_000),
            marker_retry: Duration::from_millis(100),
            add_wait: Duration::from_millis(500),
            state_partitions: 50,
            offsets_partitions: 50,
        }
    }
}

/// Identifies a request, chosen by the shell; its answer comes back with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reply(pub u64);

/// Identifies a write of a `__transaction_state` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PersistToken(pub u64);

/// A producer id and epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProducerIdEpoch {
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub epoch: i16,
}

/// The answer to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// InitProducerId's producer id and epoch.
    Init(Result<ProducerIdEpoch, ResponseError>),
    /// AddPartitionsToTxn (the same for every partition of the request), AddOffsetsToTxn, EndTxn.
    Done(Result<(), ResponseError>),
}

/// The markers that end one transaction on some of its partitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Markers {
    /// Transactional id (the shell reports back with it).
    pub transactional_id: String,
    /// The producer whose transaction ends.
    pub producer_id: i64,
    /// Its epoch (a bumped one when the coordinator fenced the producer).
    pub producer_epoch: i16,
    /// Commit (true) or abort.
    pub commit: bool,
    /// The leader epoch of the `__transaction_state` partition (partitions reject older ones).
    pub coordinator_epoch: i32,
    /// Where to write them.
    pub partitions: Vec<TopicPartition>,
}

/// What the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Answer a request.
    Answer {
        /// The request.
        reply: Reply,
        /// Its answer.
        answer: Answer,
    },
    /// Append `record` (acks=all) to `partition` of `__transaction_state`, then call
    /// [`TxnCoordinator::persisted`].
    Persist {
        /// Reported back.
        token: PersistToken,
        /// The `__transaction_state` partition.
        partition: i32,
        /// The record.
        record: TxnRecord,
    },
    /// Write commit or abort markers, then call [`TxnCoordinator::marker_written`] per partition.
    WriteMarkers(Markers),
    /// InitProducerId waits for producer ids: call [`TxnCoordinator::add_producer_ids`].
    NeedProducerIds,
}

/// How writing one marker went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerOutcome {
    /// Written.
    Written,
    /// Not written (no leader, timeout): send it again later.
    Retry,
    /// The partition no longer exists: nothing to write.
    Gone,
}

/// A transactional id as DescribeTransactions and ListTransactions show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnDescription {
    /// Transactional id.
    pub transactional_id: String,
    /// Its persisted state.
    pub state: TxnState,
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxnStats {
    /// Transactions committed.
    pub commits: u64,
    /// Transactions aborted (by the producer, by a fence or by a timeout).
    pub aborts: u64,
    /// Transactions aborted because they outlived their timeout.
    pub timeouts: u64,
    /// Producers fenced by a newer InitProducerId.
    pub fenced: u64,
}

/// What happens once a pending record is persisted.
#[derive(Clone, Debug)]
enum Then {
    /// Answer with this.
    Answer(Reply, Answer),
    /// The end of a transaction is decided: answer (if a request decided it), then send markers.
    Markers(Option<Reply>),
    /// The transaction is complete.
    Completed,
    /// The id is forgotten.
    Forget,
}

#[derive(Clone, Debug)]
struct Pending {
    token: PersistToken,
    next: TxnState,
    then: Then,
}

/// An AddPartitionsToTxn (or AddOffsetsToTxn) held until the previous transaction has ended.
#[derive(Clone, Debug)]
struct HeldAdd {
    reply: Reply,
    producer: ProducerIdEpoch,
    partitions: BTreeSet<TopicPartition>,
    /// When it gets CONCURRENT_TRANSACTIONS if still held.
    until: i64,
}

#[derive(Clone, Debug)]
struct Txn {
    /// Its `__transaction_state` partition.
    partition: i32,
    state: TxnState,
    /// The producer id and epoch before InitProducerId last bumped them (a retried
    /// InitProducerId carrying them gets the current ones again). In memory only.
    previous: Option<ProducerIdEpoch>,
    pending: Option<Pending>,
    /// While Prepare*: partitions whose marker is not written yet.
    markers_left: BTreeSet<TopicPartition>,
    /// Partitions whose marker failed, and when to send it again.
    retry_at: Option<i64>,
    retry: BTreeSet<TopicPartition>,
    /// False until the id's first record is persisted (a failed first write forgets it).
    known: bool,
    /// After a failed write: no timer fires for the id before this (a write that keeps failing
    /// at once, say while leadership moves, is tried again every `marker_retry`, not in a loop).
    backoff_until: Option<i64>,
    /// Adds of the current producer held while its transaction ends (see `TxnConfig::add_wait`).
    held: Vec<HeldAdd>,
}

impl Txn {
    fn id_epoch(&self) -> ProducerIdEpoch {
        ProducerIdEpoch {
            producer_id: self.state.producer_id,
            epoch: self.state.producer_epoch,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ownership {
    Loading,
    Loaded { coordinator_epoch: i32 },
}

/// An InitProducerId request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitRequest {
    /// Transactional id.
    pub transactional_id: String,
    /// `transaction.timeout.ms`.
    pub timeout_ms: i32,
    /// v3+: the producer id and epoch the client has (`None` for -1/-1).
    pub current: Option<ProducerIdEpoch>,
}

/// The transaction coordinator of the `__transaction_state` partitions this node leads.
#[derive(Debug)]
pub struct TxnCoordinator {
    config: TxnConfig,
    owned: HashMap<i32, Ownership>,
    txns: BTreeMap<String, Txn>,
    tokens: HashMap<PersistToken, String>,
    next_token: u64,
    producer_ids: VecDeque<i64>,
    waiting_for_ids: VecDeque<(Reply, InitRequest, i64)>,
    asked_for_ids: bool,
    outputs: VecDeque<Output>,
    stats: TxnStats,
}

impl TxnCoordinator {
    /// A coordinator owning no partition yet.
    pub fn new(config: TxnConfig) -> Self {
        Self {
            config,
            owned: HashMap::new(),
            txns: BTreeMap::new(),
            tokens: HashMap::new(),
            next_token: 0,
            producer_ids: VecDeque::new(),
            waiting_for_ids: VecDeque::new(),
            asked_for_ids: false,
            outputs: VecDeque::new(),
            stats: TxnStats::default(),
        }
    }

    /// The next output to carry out.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Counters for metrics.
    pub fn stats(&self) -> TxnStats {
        self.stats
    }

    /// Open transactions (Ongoing or ending).
    pub fn open_transactions(&self) -> usize {
        self.txns
            .values()
            .filter(|t| {
                matches!(
                    t.state.status,
                    TxnStatus::Ongoing | TxnStatus::PrepareCommit | TxnStatus::PrepareAbort
                )
            })
            .count()
    }

    /// The `__transaction_state` partition of `transactional_id`.
    pub fn partition_for(&self, transactional_id: &str) -> i32 {
        crate::group::partition_for_group(transactional_id, self.config.state_partitions)
    }

    /// This node now leads `partition`: its ids answer COORDINATOR_LOAD_IN_PROGRESS until
    /// [`TxnCoordinator::load`].
    pub fn begin_load(&mut self, partition: i32) {
        self.owned.insert(partition, Ownership::Loading);
    }

    /// The records of `partition`, in log order, read at `coordinator_epoch` (its leader
    /// epoch). Ends to decided transactions are resumed: their markers are sent again.
    pub fn load(
        &mut self,
        partition: i32,
        coordinator_epoch: i32,
        records: impl IntoIterator<Item = TxnRecord>,
    ) {
        self.drop_partition(partition);
        self.owned
            .insert(partition, Ownership::Loaded { coordinator_epoch });
        let mut states: BTreeMap<String, TxnState> = BTreeMap::new();
        for record in records {
            match record.state {
                Some(state) if state.status != TxnStatus::Dead => {
                    states.insert(record.transactional_id, state);
                }
                _ => {
                    states.remove(&record.transactional_id);
                }
            }
        }
        for (id, state) in states {
            let ending = matches!(
                state.status,
                TxnStatus::PrepareCommit | TxnStatus::PrepareAbort
            );
            let txn = Txn {
                partition,
                markers_left: if ending {
                    state.partitions.clone()
                } else {
                    BTreeSet::new()
                },
                state,
                previous: None,
                pending: None,
                retry_at: None,
                retry: BTreeSet::new(),
                known: true,
                backoff_until: None,
                held: Vec::new(),
            };
            self.txns.insert(id.clone(), txn);
            if ending {
                self.send_markers(&id);
            }
        }
    }

    /// This node no longer leads `partition`: its ids are forgotten here and held answers get
    /// NOT_COORDINATOR.
    pub fn unload(&mut self, partition: i32) {
        self.drop_partition(partition);
        self.owned.remove(&partition);
    }

    fn drop_partition(&mut self, partition: i32) {
        let ids: Vec<String> = self
            .txns
            .iter()
            .filter(|(_, t)| t.partition == partition)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let Some(txn) = self.txns.remove(&id) else {
                continue;
            };
            for held in txn.held {
                self.answer(held.reply, Answer::Done(Err(ResponseError::NotCoordinator)));
            }
            if let Some(pending) = txn.pending {
                self.tokens.remove(&pending.token);
                self.answer_failed(pending.then, ResponseError::NotCoordinator);
            }
        }
        let waiting = std::mem::take(&mut self.waiting_for_ids);
        for (reply, request, now) in waiting {
            if self.partition_for(&request.transactional_id) == partition {
                self.answer(reply, Answer::Init(Err(ResponseError::NotCoordinator)));
            } else {
                self.waiting_for_ids.push_back((reply, request, now));
            }
        }
    }

    /// Whether some `__transaction_state` partition is still loading here (ListTransactions
    /// answers COORDINATOR_LOAD_IN_PROGRESS meanwhile, as Kafka does).
    pub fn loading(&self) -> bool {
        self.owned.values().any(|o| *o == Ownership::Loading)
    }

    /// Whether `transactional_id` is served here: NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS
    /// if not.
    fn check_owned(&self, transactional_id: &str) -> Result<i32, ResponseError> {
        let partition = self.partition_for(transactional_id);
        match self.owned.get(&partition) {
            Some(Ownership::Loaded { .. }) => Ok(partition),
            Some(Ownership::Loading) => Err(ResponseError::CoordinatorLoadInProgress),
            None => Err(ResponseError::NotCoordinator),
        }
    }

    /// Producer ids never handed out before (from the cluster's allocator).
    pub fn add_producer_ids(&mut self, ids: impl IntoIterator<Item = i64>) {
        self.producer_ids.extend(ids);
        self.asked_for_ids = false;
        let waiting = std::mem::take(&mut self.waiting_for_ids);
        for (reply, request, now) in waiting {
            self.init_producer_id(now, reply, request);
        }
    }

    /// KIP-890 part 1: may `producer` write transactional data to `partition` now? Only if the
    /// partition was added to its open transaction. As Kafka's coordinator answers a
    /// verification: INVALID_PRODUCER_ID_MAPPING for an unknown id or another producer,
    /// PRODUCER_FENCED for another epoch, CONCURRENT_TRANSACTIONS while the transaction ends,
    /// TRANSACTION_ABORTABLE for a partition not in it (the partition leader answers
    /// INVALID_TXN_STATE instead to clients that do not know TRANSACTION_ABORTABLE).
    pub fn verify(
        &self,
        transactional_id: &str,
        producer: ProducerIdEpoch,
        partition: &TopicPartition,
    ) -> Result<(), ResponseError> {
        self.check_owned(transactional_id)?;
        let txn = self.txn_of(transactional_id, producer)?;
        match txn.state.status {
            TxnStatus::PrepareCommit | TxnStatus::PrepareAbort => {
                Err(ResponseError::ConcurrentTransactions)
            }
            TxnStatus::Ongoing if txn.state.partitions.contains(partition) => Ok(()),
            _ => Err(ResponseError::TransactionAbortable),
        }
    }

    /// Partitions whose marker is still to be written, over every ending transaction.
    pub fn markers_pending(&self) -> usize {
        self.txns.values().map(|t| t.markers_left.len()).sum()
    }

    /// How many transactional ids served here are in each status (only statuses in use).
    pub fn count_by_status(&self) -> Vec<(TxnStatus, usize)> {
        let mut counts: Vec<(TxnStatus, usize)> = Vec::new();
        for txn in self.txns.values().filter(|t| t.known) {
            match counts.iter_mut().find(|(s, _)| *s == txn.state.status) {
                Some((_, n)) => *n += 1,
                None => counts.push((txn.state.status, 1)),
            }
        }
        counts
    }

    /// The id's transaction as persisted (DescribeTransactions).
    pub fn describe(&self, transactional_id: &str) -> Result<TxnDescription, ResponseError> {
        self.check_owned(transactional_id)?;
        let txn = self
            .txns
            .get(transactional_id)
            .filter(|t| t.known)
            .ok_or(ResponseError::TransactionalIdNotFound)?;
        Ok(TxnDescription {
            transactional_id: transactional_id.to_string(),
            state: txn.state.clone(),
        })
    }

    /// Every id served here, filtered by status and producer id when the filters are not empty
    /// (ListTransactions).
    pub fn list(&self, statuses: &[TxnStatus], producer_ids: &[i64]) -> Vec<TxnDescription> {
        self.txns
            .iter()
            .filter(|(_, t)| t.known)
            .filter(|(_, t)| statuses.is_empty() || statuses.contains(&t.state.status))
            .filter(|(_, t)| producer_ids.is_empty() || producer_ids.contains(&t.state.producer_id))
            .map(|(id, t)| TxnDescription {
                transactional_id: id.clone(),
                state: t.state.clone(),
            })
            .collect()
    }

    /// The id's entry, if `producer` is its producer at its current epoch.
    fn txn_of(&self, id: &str, producer: ProducerIdEpoch) -> Result<&Txn, ResponseError> {
        let txn = self
            .txns
            .get(id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        if txn.state.producer_id != producer.producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if txn.state.producer_epoch != producer.epoch {
            return Err(ResponseError::ProducerFenced);
        }
        Ok(txn)
    }

    fn answer(&mut self, reply: Reply, answer: Answer) {
        self.outputs.push_back(Output::Answer { reply, answer });
    }

    fn answer_failed(&mut self, then: Then, error: ResponseError) {
        match then {
            Then::Answer(reply, Answer::Init(_)) => self.answer(reply, Answer::Init(Err(error))),
            Then::Answer(reply, Answer::Done(_)) | Then::Markers(Some(reply)) => {
                self.answer(reply, Answer::Done(Err(error)))
            }
            Then::Markers(None) | Then::Completed | Then::Forget => {}
        }
    }

    /// Decide `next` for `id`: write it, and do `then` once it is persisted.
    fn write(&mut self, id: &str, next: TxnState, then: Then) {
        let token = PersistToken(self.next_token);
        self.next_token += 1;
        let Some(txn) = self.txns.get_mut(id) else {
            return;
        };
        let record = TxnRecord {
            transactional_id: id.to_string(),
            state: (next.status != TxnStatus::Dead).then(|| next.clone()),
        };
        self.outputs.push_back(Output::Persist {
            token,
            partition: txn.partition,
            record,
        });
        txn.pending = Some(Pending { token, next, then });
        self.tokens.insert(token, id.to_string());
    }

    /// A write finished: `Ok` once the record is replicated, else the error for the request
    /// that waits on it (NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE).
    pub fn persisted(&mut self, now: i64, token: PersistToken, result: Result<(), ResponseError>) {
        let Some(id) = self.tokens.remove(&token) else {
            return;
        };
        let Some(txn) = self.txns.get_mut(&id) else {
            return;
        };
        let Some(pending) = txn.pending.take_if(|p| p.token == token) else {
            return;
        };
        let held = std::mem::take(&mut txn.held);
        self.persisted_as(now, &id, pending, result);
        // The id's state moved on: held adds are tried again (held anew while it still ends).
        for add in held {
            self.retry_held(now, &id, add);
        }
    }

    fn persisted_as(
        &mut self,
        now: i64,
        id: &str,
        pending: Pending,
        result: Result<(), ResponseError>,
    ) {
        let Some(txn) = self.txns.get_mut(id) else {
            return;
        };
        if let Err(error) = result {
            let retry = i64::try_from(self.config.marker_retry.as_millis()).unwrap_or(i64::MAX);
            txn.backoff_until = Some(now.saturating_add(retry));
            if !txn.known {
                self.txns.remove(id);
            }
            self.answer_failed(pending.then, error);
            return;
        }
        txn.known = true;
        txn.state = pending.next;
        match pending.then {
            Then::Answer(reply, answer) => self.answer(reply, answer),
            Then::Markers(reply) => {
                txn.markers_left = txn.state.partitions.clone();
                if let Some(reply) = reply {
                    self.answer(reply, Answer::Done(Ok(())));
                }
                self.send_markers(id);
                self.complete_if_done(now, id);
            }
            Then::Completed => {
                if txn.state.status == TxnStatus::CompleteCommit {
                    self.stats.commits += 1;
                } else {
                    self.stats.aborts += 1;
                }
            }
            Then::Forget => {
                self.txns.remove(id);
            }
        }
    }

    fn send_markers(&mut self, id: &str) {
        if let Some(markers) = self.markers_of(id).filter(|m| !m.partitions.is_empty()) {
            self.outputs.push_back(Output::WriteMarkers(markers));
        }
    }

    /// How writing the marker of `producer`'s transaction to `partition` went. Reports about
    /// another producer or epoch (an earlier transaction) are ignored.
    pub fn marker_written(
        &mut self,
        now: i64,
        transactional_id: &str,
        producer: ProducerIdEpoch,
        partition: &TopicPartition,
        outcome: MarkerOutcome,
    ) {
        let retry_after = self.config.marker_retry.as_millis();
        let Some(txn) = self.txns.get_mut(transactional_id) else {
            return;
        };
        if txn.id_epoch() != producer || !txn.markers_left.contains(partition) {
            return;
        }
        match outcome {
            MarkerOutcome::Written | MarkerOutcome::Gone => {
                txn.markers_left.remove(partition);
                txn.retry.remove(partition);
                self.complete_if_done(now, transactional_id);
            }
            MarkerOutcome::Retry => {
                txn.retry.insert(partition.clone());
                let at = now.saturating_add(i64::try_from(retry_after).unwrap_or(i64::MAX));
                txn.retry_at = Some(txn.retry_at.map_or(at, |t| t.min(at)));
            }
        }
    }

    /// Every marker of a decided transaction is written: write Complete.
    fn complete_if_done(&mut self, now: i64, id: &str) {
        let Some(txn) = self.txns.get(id) else {
            return;
        };
        let status = match txn.state.status {
            TxnStatus::PrepareCommit => TxnStatus::CompleteCommit,
            TxnStatus::PrepareAbort => TxnStatus::CompleteAbort,
            _ => return,
        };
        if !txn.markers_left.is_empty() || txn.pending.is_some() {
            return;
        }
        // Kafka keeps the transaction's start time in Complete* (DescribeTransactions shows it).
        let next = TxnState {
            status,
            partitions: BTreeSet::new(),
            last_update_ms: now,
            ..txn.state.clone()
        };
        self.write(id, next, Then::Completed);
    }

    /// The next time [`TxnCoordinator::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<i64> {
        let held = self.txns.values().flat_map(|t| &t.held).map(|h| h.until);
        self.txns
            .values()
            .filter_map(|t| self.deadline_of(t))
            .chain(held)
            .min()
    }

    fn deadline_of(&self, txn: &Txn) -> Option<i64> {
        let backoff = txn.backoff_until.unwrap_or(i64::MIN);
        self.timer_of(txn).map(|at| at.max(backoff))
    }

    fn timer_of(&self, txn: &Txn) -> Option<i64> {
        if txn.pending.is_some() {
            return None;
        }
        let expiry = i64::try_from(self.config.id_expiration.as_millis()).unwrap_or(i64::MAX);
        match txn.state.status {
            TxnStatus::Ongoing => Some(
                txn.state
                    .start_ms
                    .saturating_add(i64::from(txn.state.timeout_ms)),
            ),
            TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort => {
                Some(txn.state.last_update_ms.saturating_add(expiry))
            }
            TxnStatus::PrepareCommit | TxnStatus::PrepareAbort if txn.markers_left.is_empty() => {
                Some(i64::MIN)
            }
            TxnStatus::PrepareCommit | TxnStatus::PrepareAbort => txn.retry_at,
            TxnStatus::Dead | TxnStatus::PrepareEpochFence => None,
        }
    }

    /// Time passed: abort transactions open past their timeout (fencing their producer), forget
    /// ids idle past the expiration, resend failed markers, finish ends whose Complete write
    /// failed.
    pub fn tick(&mut self, now: i64) {
        let mut expired = Vec::new();
        for txn in self.txns.values_mut() {
            let (over, kept) = std::mem::take(&mut txn.held)
                .into_iter()
                .partition(|h| h.until <= now);
            txn.held = kept;
            expired.extend(over);
        }
        for held in expired {
            let answer = Answer::Done(Err(ResponseError::ConcurrentTransactions));
            self.answer(held.reply, answer);
        }
        let due: Vec<String> = self
            .txns
            .iter()
            .filter(|(_, t)| self.deadline_of(t).is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(txn) = self.txns.get_mut(&id) else {
                continue;
            };
            match txn.state.status {
                TxnStatus::Ongoing => {
                    self.stats.timeouts += 1;
                    self.fence_and_abort(now, &id, None);
                }
                TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort => {
                    let next = TxnState {
                        status: TxnStatus::Dead,
                        last_update_ms: now,
                        ..txn.state.clone()
                    };
                    self.write(&id, next, Then::Forget);
                }
                _ if txn.markers_left.is_empty() => self.complete_if_done(now, &id),
                _ => {
                    txn.retry_at = None;
                    let retry = std::mem::take(&mut txn.retry);
                    if let Some(mut markers) = self.markers_of(&id) {
                        markers.partitions.retain(|p| retry.contains(p));
                        self.outputs.push_back(Output::WriteMarkers(markers));
                    }
                }
            }
        }
    }

    fn markers_of(&self, id: &str) -> Option<Markers> {
        let txn = self.txns.get(id)?;
        let Some(Ownership::Loaded { coordinator_epoch }) = self.owned.get(&txn.partition) else {
            return None;
        };
        Some(Markers {
            transactional_id: id.to_string(),
            producer_id: txn.state.producer_id,
            producer_epoch: txn.state.producer_epoch,
            commit: txn.state.status == TxnStatus::PrepareCommit,
            coordinator_epoch: *coordinator_epoch,
            partitions: txn.markers_left.iter().cloned().collect(),
        })
    }

    /// Abort `id`'s open transaction under a bumped epoch, so its producer is fenced; `reply`
    /// (a fencing InitProducerId) gets CONCURRENT_TRANSACTIONS at once.
    fn fence_and_abort(&mut self, now: i64, id: &str, reply: Option<Reply>) {
        let Some(txn) = self.txns.get(id) else {
            return;
        };
        let epoch = if txn.state.producer_epoch < i16::MAX - 1 {
            txn.state.producer_epoch + 1
        } else {
            txn.state.producer_epoch
        };
        let next = TxnState {
            producer_epoch: epoch,
            status: TxnStatus::PrepareAbort,
            last_update_ms: now,
            ..txn.state.clone()
        };
        self.write(id, next, Then::Markers(None));
        if let Some(reply) = reply {
            self.stats.fenced += 1;
            self.answer(
                reply,
                Answer::Init(Err(ResponseError::ConcurrentTransactions)),
            );
        }
    }
}
