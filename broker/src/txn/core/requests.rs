//! The requests of a transactional producer: InitProducerId, AddPartitionsToTxn,
//! AddOffsetsToTxn, EndTxn.

use std::collections::BTreeSet;

use super::{
    Answer, HeldAdd, InitRequest, Output, ProducerIdEpoch, Reply, ResponseError, Then,
    TopicPartition, Txn, TxnCoordinator, TxnState, TxnStatus,
};
use crate::group::OFFSETS_TOPIC;

impl TxnCoordinator {
    /// InitProducerId with a transactional id: a new id gets a producer id at epoch 0; a known
    /// one gets its epoch bumped (a new producer id when the epoch is exhausted), which fences
    /// the previous producer; an open transaction is first aborted (CONCURRENT_TRANSACTIONS
    /// until that is done).
    pub fn init_producer_id(&mut self, now: i64, reply: Reply, request: InitRequest) {
        match self.try_init(now, reply, request) {
            Ok(()) => {}
            Err(error) => self.answer(reply, Answer::Init(Err(error))),
        }
    }

    fn try_init(
        &mut self,
        now: i64,
        reply: Reply,
        request: InitRequest,
    ) -> Result<(), ResponseError> {
        let max = i64::try_from(self.config.max_timeout.as_millis()).unwrap_or(i64::MAX);
        if request.timeout_ms <= 0 || i64::from(request.timeout_ms) > max {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        let partition = self.check_owned(&request.transactional_id)?;
        let id = request.transactional_id.clone();
        let Some(txn) = self.txns.get(&id) else {
            let Some(producer_id) = self.take_producer_id(now, reply, &request) else {
                return Ok(());
            };
            let state = TxnState {
                producer_id,
                producer_epoch: 0,
                timeout_ms: request.timeout_ms,
                status: TxnStatus::Empty,
                partitions: BTreeSet::new(),
                last_update_ms: now,
                start_ms: -1,
            };
            self.txns
                .insert(id.clone(), new_entry(partition, state.clone()));
            let answer = Answer::Init(Ok(ProducerIdEpoch {
                producer_id,
                epoch: 0,
            }));
            self.write(&id, state, Then::Answer(reply, answer));
            return Ok(());
        };
        if txn.pending.is_some() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        if let Some(current) = request.current {
            if txn.previous == Some(current) && txn.state.status == TxnStatus::Empty {
                // A retry of the InitProducerId that bumped: the same answer again.
                let answer = Answer::Init(Ok(txn.id_epoch()));
                self.answer(reply, answer);
                return Ok(());
            }
            if current != txn.id_epoch() {
                return Err(ResponseError::ProducerFenced);
            }
        }
        match txn.state.status {
            TxnStatus::PrepareCommit | TxnStatus::PrepareAbort => {
                Err(ResponseError::ConcurrentTransactions)
            }
            TxnStatus::Ongoing | TxnStatus::PrepareEpochFence => {
                self.fence_and_abort(now, &id, Some(reply));
                Ok(())
            }
            TxnStatus::Dead => Err(ResponseError::ConcurrentTransactions),
            TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort => {
                let previous = txn.id_epoch();
                let mut next = TxnState {
                    producer_epoch: previous.epoch.saturating_add(1),
                    timeout_ms: request.timeout_ms,
                    status: TxnStatus::Empty,
                    partitions: BTreeSet::new(),
                    last_update_ms: now,
                    start_ms: -1,
                    ..txn.state.clone()
                };
                if previous.epoch >= i16::MAX - 1 {
                    let Some(producer_id) = self.take_producer_id(now, reply, &request) else {
                        return Ok(());
                    };
                    next.producer_id = producer_id;
                    next.producer_epoch = 0;
                }
                let answer = Answer::Init(Ok(ProducerIdEpoch {
                    producer_id: next.producer_id,
                    epoch: next.producer_epoch,
                }));
                if let Some(txn) = self.txns.get_mut(&id) {
                    txn.previous = Some(previous);
                }
                self.write(&id, next, Then::Answer(reply, answer));
                Ok(())
            }
        }
    }

    /// A fresh producer id, or `None` after parking the request until ids arrive.
    fn take_producer_id(&mut self, now: i64, reply: Reply, request: &InitRequest) -> Option<i64> {
        if let Some(id) = self.producer_ids.pop_front() {
            return Some(id);
        }
        self.waiting_for_ids
            .push_back((reply, request.clone(), now));
        if !self.asked_for_ids {
            self.asked_for_ids = true;
            self.outputs.push_back(Output::NeedProducerIds);
        }
        None
    }

    /// AddPartitionsToTxn (client versions): the partitions join the producer's transaction,
    /// which opens if none is.
    pub fn add_partitions(
        &mut self,
        now: i64,
        reply: Reply,
        transactional_id: &str,
        producer: ProducerIdEpoch,
        partitions: impl IntoIterator<Item = TopicPartition>,
    ) {
        let wait = i64::try_from(self.config.add_wait.as_millis()).unwrap_or(i64::MAX);
        let held = HeldAdd {
            reply,
            producer,
            partitions: partitions.into_iter().collect(),
            until: now.saturating_add(wait),
        };
        self.retry_held(now, transactional_id, held);
    }

    /// Tries an add; one that finds the producer's previous transaction still ending is held
    /// (until `held.until`) instead of answered CONCURRENT_TRANSACTIONS.
    pub(super) fn retry_held(&mut self, now: i64, id: &str, held: HeldAdd) {
        match self.try_add(now, held.reply, id, held.producer, held.partitions.clone()) {
            Ok(()) => {}
            Err(ResponseError::ConcurrentTransactions) if held.until > now => {
                if let Some(txn) = self.txns.get_mut(id) {
                    txn.held.push(held);
                }
            }
            Err(error) => self.answer(held.reply, Answer::Done(Err(error))),
        }
    }

    /// AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the transaction (its
    /// TxnOffsetCommit then goes to that group's coordinator).
    pub fn add_offsets(
        &mut self,
        now: i64,
        reply: Reply,
        transactional_id: &str,
        producer: ProducerIdEpoch,
        group: &str,
    ) {
        let partition = crate::group::partition_for_group(group, self.config.offsets_partitions);
        let offsets = TopicPartition::new(OFFSETS_TOPIC, partition);
        self.add_partitions(now, reply, transactional_id, producer, [offsets]);
    }

    fn try_add(
        &mut self,
        now: i64,
        reply: Reply,
        id: &str,
        producer: ProducerIdEpoch,
        partitions: BTreeSet<TopicPartition>,
    ) -> Result<(), ResponseError> {
        self.check_owned(id)?;
        let txn = self.txn_of(id, producer)?;
        if txn.pending.is_some() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        let start_ms = match txn.state.status {
            TxnStatus::Ongoing if partitions.is_subset(&txn.state.partitions) => {
                self.answer(reply, Answer::Done(Ok(())));
                return Ok(());
            }
            TxnStatus::Ongoing => txn.state.start_ms,
            TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort => now,
            TxnStatus::PrepareCommit
            | TxnStatus::PrepareAbort
            | TxnStatus::PrepareEpochFence
            | TxnStatus::Dead => return Err(ResponseError::ConcurrentTransactions),
        };
        let next = TxnState {
            status: TxnStatus::Ongoing,
            partitions: txn.state.partitions.union(&partitions).cloned().collect(),
            last_update_ms: now,
            start_ms,
            ..txn.state.clone()
        };
        self.write(id, next, Then::Answer(reply, Answer::Done(Ok(()))));
        Ok(())
    }

    /// EndTxn: commit (true) or abort the producer's open transaction. Answered once the
    /// decision is persisted; its markers follow.
    pub fn end_txn(
        &mut self,
        now: i64,
        reply: Reply,
        transactional_id: &str,
        producer: ProducerIdEpoch,
        commit: bool,
    ) {
        if let Err(error) = self.try_end(now, reply, transactional_id, producer, commit) {
            self.answer(reply, Answer::Done(Err(error)));
        }
    }

    fn try_end(
        &mut self,
        now: i64,
        reply: Reply,
        id: &str,
        producer: ProducerIdEpoch,
        commit: bool,
    ) -> Result<(), ResponseError> {
        self.check_owned(id)?;
        let txn = self.txn_of(id, producer)?;
        if txn.pending.is_some() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        let same = |committed: bool| {
            if committed == commit {
                Ok(())
            } else {
                Err(ResponseError::InvalidTxnState)
            }
        };
        match txn.state.status {
            TxnStatus::Ongoing => {
                let next = TxnState {
                    status: if commit {
                        TxnStatus::PrepareCommit
                    } else {
                        TxnStatus::PrepareAbort
                    },
                    last_update_ms: now,
                    ..txn.state.clone()
                };
                self.write(id, next, Then::Markers(Some(reply)));
                Ok(())
            }
            TxnStatus::PrepareCommit => {
                same(true)?;
                Err(ResponseError::ConcurrentTransactions)
            }
            TxnStatus::PrepareAbort => {
                same(false)?;
                Err(ResponseError::ConcurrentTransactions)
            }
            TxnStatus::CompleteCommit | TxnStatus::CompleteAbort => {
                same(txn.state.status == TxnStatus::CompleteCommit)?;
                self.answer(reply, Answer::Done(Ok(())));
                Ok(())
            }
            TxnStatus::Empty | TxnStatus::Dead | TxnStatus::PrepareEpochFence => {
                Err(ResponseError::InvalidTxnState)
            }
        }
    }
}

fn new_entry(partition: i32, state: TxnState) -> Txn {
    Txn {
        partition,
        state,
        previous: None,
        pending: None,
        markers_left: BTreeSet::new(),
        retry_at: None,
        retry: BTreeSet::new(),
        known: false,
        backoff_until: None,
        held: Vec::new(),
    }
}
