//! The sender task: the one owner of the producer's I/O.
//!
//! Each turn it expires batches past `delivery_timeout`, keeps the producer id (InitProducerId,
//! epoch bumps), drains ready batches into at most one Produce request per leader per pass while
//! that leader has fewer than `max_in_flight` requests outstanding, and then waits for a response,
//! a wake-up from `send`/`flush`, or the next linger/backoff deadline. Responses complete batches,
//! or put them back in order for a retry (see [`super::sequence`] for the idempotence rules).
//!
//! A transactional producer's sender takes its producer id and epoch from the transaction state
//! (`init_transactions` gets them; it never bumps the epoch itself), adds each partition to the
//! transaction (AddPartitionsToTxn, one request at a time) before it sends that partition's
//! first batch, fails the batches not sent yet once the transaction must be aborted (or is
//! being aborted), and makes the transaction abortable when a batch fails.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::ProduceResponse;
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use tracing::{debug, warn};

use super::Shared;
use super::accumulator::{Accumulator, BatchAck, ProducerBatch, TopicPartition};
use super::request::{index_response, init_producer_id, produce, topic_id};
use super::sequence::{Idempotence, ProducerIdentity, Verdict};
use super::txn::{Next, Phase, Txn, add_partitions_once};
use crate::cluster::{Client, lock};
use crate::config::ProducerConfig;
use crate::error::{Error, Result};
use crate::metadata::{ClusterMetadata, NodeId};
use crate::records::BatchIdentity;

/// Longest sleep when nothing is scheduled.
const IDLE_TICK: Duration = Duration::from_secs(1);

enum Event {
    Produced {
        node: NodeId,
        batches: Vec<ProducerBatch>,
        result: Result<Option<ProduceResponse>>,
    },
    Metadata,
    Identity(Result<ProducerIdentity>),
    /// An AddPartitionsToTxn ended.
    Added {
        /// The transaction it was for.
        number: u64,
        partitions: Vec<TopicPartition>,
        result: std::result::Result<(), Next>,
        coordinator: Option<NodeId>,
    },
}

pub(super) struct Sender {
    client: Client,
    config: ProducerConfig,
    shared: Arc<Shared>,
    idem: Option<Idempotence>,
    events: FuturesUnordered<BoxFuture<'static, Event>>,
    node_in_flight: HashMap<NodeId, usize>,
    partition_in_flight: HashMap<TopicPartition, usize>,
    refreshing: bool,
    identity_pending: bool,
    identity_retry_at: Option<Instant>,
    /// The transaction state, for a transactional producer.
    txn: Option<Arc<Txn>>,
    /// The transaction `txn_added` belongs to.
    txn_number: u64,
    /// The partitions added to the current transaction (batches of others wait).
    txn_added: HashSet<TopicPartition>,
}

impl Sender {
    pub(super) fn new(client: Client, config: ProducerConfig, shared: Arc<Shared>) -> Sender {
        let idem = config.idempotent().then(Idempotence::default);
        Sender {
            client,
            config,
            idem,
            events: FuturesUnordered::new(),
            node_in_flight: HashMap::new(),
            partition_in_flight: HashMap::new(),
            refreshing: false,
            identity_pending: false,
            identity_retry_at: None,
            txn: shared.txn.clone(),
            txn_number: 0,
            txn_added: HashSet::new(),
            shared,
        }
    }

    pub(super) async fn run(mut self) {
        loop {
            let now = Instant::now();
            self.expire(now);
            self.maintain_identity(now);
            let next_check = self.send_ready(now);
            if self.finished() {
                break;
            }
            let mut wake_at = next_check.unwrap_or(now + IDLE_TICK).min(now + IDLE_TICK);
            if let Some(at) = self.identity_retry_at {
                wake_at = wake_at.min(at);
            }
            if let Some(at) = self.txn.as_ref().and_then(|t| lock(&t.state).add_retry_at) {
                wake_at = wake_at.min(at.max(now));
            }
            tokio::select! {
                Some(event) = self.events.next(), if !self.events.is_empty() => self.handle(event),
                _ = self.shared.wake.notified() => {}
                _ = tokio::time::sleep_until(wake_at.into()) => {}
            }
            while let Some(Some(event)) = self.events.next().now_or_never() {
                self.handle(event);
            }
        }
        debug!("producer sender stopped");
    }

    fn finished(&self) -> bool {
        self.shared.closing.load(Ordering::Acquire)
            && self.events.is_empty()
            && lock(&self.shared.buffers).acc.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        let Some(deadline) = now.checked_sub(self.config.delivery_timeout) else {
            return;
        };
        let expired = lock(&self.shared.buffers).acc.expire(deadline);
        for batch in expired {
            if let (Some(idem), Some(seq)) = (self.idem.as_mut(), batch.sequence) {
                idem.on_abandoned(&batch.tp, seq);
            }
            self.finish(
                batch,
                Err(Error::DeliveryTimeout(self.config.delivery_timeout)),
            );
        }
    }

    fn maintain_identity(&mut self, now: Instant) {
        if self.txn.is_some() {
            return self.sync_transaction(now);
        }
        let Some(idem) = self.idem.as_mut() else {
            return;
        };
        if idem.bump_requested() && !idem.bump_epoch() {
            debug!("producer epoch exhausted: asking for a new producer id");
        }
        let due = self.identity_retry_at.is_none_or(|at| at <= now);
        if idem.identity().is_some() || self.identity_pending || !due {
            return;
        }
        self.identity_pending = true;
        self.identity_retry_at = None;
        let client = self.client.clone();
        self.events
            .push(async move { Event::Identity(init_producer_id(&client).await) }.boxed());
    }

    /// A transactional producer's turn: takes the identity `init_transactions` (or an abort's
    /// epoch bump) got, fails the batches not sent yet when the transaction must be aborted, is
    /// being aborted or the producer failed, and adds pending partitions to the transaction.
    fn sync_transaction(&mut self, now: Instant) {
        let Some(txn) = self.txn.clone() else {
            return;
        };
        let mut fail_queued = None;
        {
            let mut st = lock(&txn.state);
            if let (Some(idem), Some(identity)) = (self.idem.as_mut(), st.identity)
                && idem.identity() != Some(identity)
            {
                idem.set_identity(identity);
            }
            if st.number != self.txn_number {
                self.txn_number = st.number;
                self.txn_added.clear();
            }
            match &st.phase {
                Phase::Abortable(e) => {
                    fail_queued = Some(Error::TransactionAbortable(Box::new(e.clone())));
                }
                Phase::Aborting => {
                    fail_queued = Some(Error::TransactionState(
                        "the transaction was aborted".into(),
                    ));
                }
                Phase::Fatal(e) => fail_queued = Some(e.clone()),
                Phase::InTransaction | Phase::Committing => {}
                Phase::Uninitialized | Phase::Ready => return,
            }
            let due = st.add_retry_at.is_none_or(|at| at <= now);
            if fail_queued.is_none()
                && !st.pending.is_empty()
                && !st.adding
                && due
                && let Some(identity) = st.identity
            {
                let partitions: Vec<TopicPartition> = st.pending.iter().cloned().collect();
                st.adding = true;
                let (client, txn, number, coordinator) =
                    (self.client.clone(), txn.clone(), st.number, st.coordinator);
                self.events.push(
                    async move {
                        let (result, coordinator) =
                            add_partitions_once(&client, &txn, identity, coordinator, &partitions)
                                .await;
                        Event::Added {
                            number,
                            partitions,
                            result,
                            coordinator,
                        }
                    }
                    .boxed(),
                );
            }
        }
        if let Some(error) = fail_queued {
            let queued = lock(&self.shared.buffers).acc.take_all();
            for batch in queued {
                if let (Some(idem), Some(seq)) = (self.idem.as_mut(), batch.sequence) {
                    idem.on_abandoned(&batch.tp, seq);
                }
                self.finish(batch, Err(error.clone()));
            }
        }
    }

    fn on_added(
        &mut self,
        number: u64,
        partitions: Vec<TopicPartition>,
        result: std::result::Result<(), Next>,
        coordinator: Option<NodeId>,
    ) {
        let Some(txn) = self.txn.clone() else {
            return;
        };
        let mut fatal = None;
        {
            let mut st = lock(&txn.state);
            st.adding = false;
            st.coordinator = coordinator;
            if number == st.number {
                match result {
                    Ok(()) => {
                        debug!(
                            partitions = partitions.len(),
                            "partitions added to the transaction"
                        );
                        st.add_retry_at = None;
                        for tp in partitions {
                            st.pending.remove(&tp);
                            st.added.insert(tp.clone());
                            if self.txn_number == number {
                                self.txn_added.insert(tp);
                            }
                        }
                    }
                    Err(next @ (Next::Retry(..) | Next::Refind(_))) => {
                        debug!(error = ?next, "AddPartitionsToTxn: retrying");
                        st.add_retry_at =
                            Some(Instant::now() + next.backoff(self.config.retry_backoff));
                    }
                    Err(Next::Abortable(e)) => {
                        drop(st);
                        txn.set_abortable(e);
                    }
                    Err(Next::Fatal(e)) => fatal = Some(e),
                }
            }
        }
        txn.changed.notify_waiters();
        if let Some(e) = fatal {
            self.fatal(e);
        }
    }

    /// Drains ready batches into requests while leaders have request slots; returns when the
    /// next lingering batch becomes ready.
    fn send_ready(&mut self, now: Instant) -> Option<Instant> {
        loop {
            let meta = self.client.metadata();
            let (requests, next_check, missing_leader) = {
                let shared = self.shared.clone();
                let mut buffers = lock(&shared.buffers);
                let readiness = buffers.acc.ready(now);
                let (requests, missing) = self.collect(&mut buffers.acc, readiness.ready, &meta);
                (requests, readiness.next_check, missing)
            };
            if missing_leader {
                self.refresh_metadata();
            }
            if requests.is_empty() {
                return next_check;
            }
            for (node, batches) in requests {
                self.dispatch(node, batches, &meta);
            }
        }
    }

    fn collect(
        &mut self,
        acc: &mut Accumulator,
        ready: Vec<TopicPartition>,
        meta: &ClusterMetadata,
    ) -> (BTreeMap<NodeId, Vec<ProducerBatch>>, bool) {
        let mut requests: BTreeMap<NodeId, (usize, Vec<ProducerBatch>)> = BTreeMap::new();
        let mut missing_leader = false;
        for tp in ready {
            let Some(leader) = meta.leader(&tp.topic, tp.partition) else {
                missing_leader = true;
                continue;
            };
            if self.node_in_flight.get(&leader).copied().unwrap_or(0) >= self.config.max_in_flight {
                continue;
            }
            let (size, building) = requests.entry(leader).or_default();
            let front_size = acc.front(&tp).map_or(0, |b| b.size);
            if !building.is_empty() && *size + front_size > self.config.max_request_size {
                continue;
            }
            if !self.may_send_front(acc, &tp) {
                continue;
            }
            let Some(mut batch) = acc.drain_front(&tp) else {
                continue;
            };
            match (self.idem.as_mut(), batch.sequence) {
                (Some(idem), None) => batch.sequence = idem.assign(&tp, batch.record_count()),
                (Some(idem), Some(seq)) => idem.on_sent(&tp, seq),
                (None, _) => {}
            }
            *size += batch.size;
            building.push(batch);
        }
        let requests = requests.into_iter().filter(|(_, (_, b))| !b.is_empty());
        (
            requests.map(|(node, (_, b))| (node, b)).collect(),
            missing_leader,
        )
    }

    /// The ordering gates: idempotence rules, or (without idempotence) one retry at a time.
    fn may_send_front(&mut self, acc: &mut Accumulator, tp: &TopicPartition) -> bool {
        let in_flight = self.partition_in_flight.get(tp).copied().unwrap_or(0);
        if self.txn.is_some() && !self.txn_added.contains(tp) {
            return false;
        }
        let Some(idem) = self.idem.as_mut() else {
            return acc
                .front(tp)
                .is_some_and(|b| b.attempts == 0 || in_flight == 0);
        };
        if idem.identity().is_none() {
            return false;
        }
        if idem.is_stale(tp) {
            if in_flight > 0 {
                return false;
            }
            idem.reset_partition(tp);
            for batch in acc.queue_mut(tp).into_iter().flatten() {
                batch.sequence = None;
            }
        }
        acc.front(tp).is_some_and(|b| idem.can_send(tp, b.sequence))
    }

    fn dispatch(&mut self, node: NodeId, mut batches: Vec<ProducerBatch>, meta: &ClusterMetadata) {
        let mut encoded = Vec::with_capacity(batches.len());
        let mut failed = Vec::new();
        for (i, batch) in batches.iter_mut().enumerate() {
            batch.attempts += 1;
            batch.retry_at = None;
            let identity = batch
                .sequence
                .map_or(BatchIdentity::NONE, |(id, epoch, seq)| BatchIdentity {
                    producer_id: id,
                    producer_epoch: epoch,
                    base_sequence: seq,
                });
            match batch.encoded(identity, self.config.compression, self.txn.is_some()) {
                Ok(bytes) => encoded.push((batch.tp.clone(), topic_id(meta, &batch.tp), bytes)),
                Err(e) => failed.push((i, e)),
            }
        }
        for (i, e) in failed.into_iter().rev() {
            let batch = batches.remove(i);
            self.on_batch_error(batch, None, -1, e);
        }
        if batches.is_empty() {
            return;
        }
        *self.node_in_flight.entry(node).or_default() += 1;
        for b in &batches {
            *self.partition_in_flight.entry(b.tp.clone()).or_default() += 1;
        }
        let client = self.client.clone();
        let acks = self.config.acks;
        let timeout_ms = i32::try_from(self.config.request_timeout.as_millis()).unwrap_or(i32::MAX);
        let transactional_id = self.txn.as_ref().map(|t| t.id.clone());
        self.events.push(
            async move {
                let result = produce(
                    &client,
                    node,
                    acks,
                    timeout_ms,
                    transactional_id.as_deref(),
                    encoded,
                )
                .await;
                Event::Produced {
                    node,
                    batches,
                    result,
                }
            }
            .boxed(),
        );
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Metadata => self.refreshing = false,
            Event::Identity(result) => self.on_identity(result),
            Event::Added {
                number,
                partitions,
                result,
                coordinator,
            } => self.on_added(number, partitions, result, coordinator),
            Event::Produced {
                node,
                batches,
                result,
            } => {
                if let Some(n) = self.node_in_flight.get_mut(&node) {
                    *n = n.saturating_sub(1);
                }
                for b in &batches {
                    if let Some(n) = self.partition_in_flight.get_mut(&b.tp) {
                        *n = n.saturating_sub(1);
                    }
                    if let (Some(idem), Some(seq)) = (self.idem.as_mut(), b.sequence) {
                        idem.on_returned(&b.tp, seq);
                    }
                }
                self.on_produced(batches, result);
            }
        }
    }

    fn on_identity(&mut self, result: Result<ProducerIdentity>) {
        self.identity_pending = false;
        match (result, self.idem.as_mut()) {
            (Ok(identity), Some(idem)) => {
                debug!(
                    producer_id = identity.id,
                    epoch = identity.epoch,
                    "producer id assigned"
                );
                idem.set_identity(identity);
            }
            (Err(e), _) if e.is_retriable() => {
                debug!(error = %e, "InitProducerId failed; retrying");
                self.identity_retry_at = Some(Instant::now() + self.config.retry_backoff);
            }
            (Err(e), _) => self.fatal(Error::Config(format!(
                "idempotence needs InitProducerId, which failed: {e} (disable idempotence to \
                 produce without it)"
            ))),
            (Ok(_), None) => {}
        }
    }

    fn on_produced(
        &mut self,
        batches: Vec<ProducerBatch>,
        result: Result<Option<ProduceResponse>>,
    ) {
        let response = match result {
            Ok(Some(response)) => response,
            Ok(None) => {
                for batch in batches {
                    self.finish(
                        batch,
                        Ok(BatchAck {
                            base_offset: -1,
                            log_append_time: -1,
                        }),
                    );
                }
                return;
            }
            Err(e) => {
                debug!(error = %e, batches = batches.len(), "produce request failed");
                for batch in batches {
                    self.on_batch_error(batch, None, -1, e.clone());
                }
                return;
            }
        };
        let meta = self.client.metadata();
        let answers = index_response(&response, &meta);
        for batch in batches {
            match answers.get(&(batch.tp.topic.clone(), batch.tp.partition)) {
                Some(p) if p.error_code == 0 => self.on_success(batch, p),
                Some(p) => {
                    let code = ResponseError::try_from_code(p.error_code);
                    let mut err =
                        Error::from_code(p.error_code, &batch.tp.topic, Some(batch.tp.partition))
                            .unwrap_or(Error::Closed);
                    if let (Error::Broker { message, .. }, Some(m)) = (&mut err, &p.error_message) {
                        *message = Some(m.to_string());
                    }
                    self.on_batch_error(batch, code, p.log_start_offset, err);
                }
                None => {
                    let err = Error::protocol(format!("no produce answer for {}", batch.tp));
                    self.on_batch_error(batch, None, -1, err);
                }
            }
        }
    }

    fn on_success(&mut self, batch: ProducerBatch, p: &PartitionProduceResponse) {
        if let (Some(idem), Some(seq)) = (self.idem.as_mut(), batch.sequence) {
            idem.on_success(&batch.tp, seq, batch.record_count());
        }
        let ack = BatchAck {
            base_offset: p.base_offset,
            log_append_time: p.log_append_time_ms,
        };
        self.finish(batch, Ok(ack));
    }

    fn on_batch_error(
        &mut self,
        batch: ProducerBatch,
        code: Option<ResponseError>,
        log_start_offset: i64,
        err: Error,
    ) {
        if err.needs_metadata_refresh() {
            self.client.invalidate(&batch.tp.topic);
            self.refresh_metadata();
        }
        let txn_error = self.txn.as_ref().map(|_| err.clone());
        let verdict = match (self.idem.as_mut(), batch.sequence, code) {
            (Some(idem), Some(seq), Some(code)) => {
                idem.on_error(&batch.tp, seq, code, log_start_offset, err)
            }
            (idem, seq, _) => {
                if err.is_retriable() {
                    Verdict::Retry
                } else {
                    if let (Some(idem), Some(seq)) = (idem, seq) {
                        idem.on_abandoned(&batch.tp, seq);
                    }
                    Verdict::Fail(err)
                }
            }
        };
        // A transactional producer does not bump its epoch on its own: a sequence gap makes the
        // transaction abortable, and the abort bumps the epoch with the coordinator.
        if let (Some(txn), Some(err)) = (&self.txn, txn_error)
            && self.idem.as_ref().is_some_and(Idempotence::bump_requested)
        {
            lock(&txn.state).needs_bump = true;
            txn.set_abortable(err);
        }
        match verdict {
            Verdict::Retry => self.retry(batch, self.config.retry_backoff),
            Verdict::RetryInOrder => self.retry(batch, Duration::ZERO),
            Verdict::Success => self.finish(
                batch,
                Ok(BatchAck {
                    base_offset: -1,
                    log_append_time: -1,
                }),
            ),
            Verdict::Fail(e) => self.finish(batch, Err(e)),
            Verdict::Fatal(e) => {
                self.finish(batch, Err(e.clone()));
                self.fatal(e);
            }
        }
    }

    fn retry(&mut self, mut batch: ProducerBatch, backoff: Duration) {
        if batch.created.elapsed() >= self.config.delivery_timeout {
            if let (Some(idem), Some(seq)) = (self.idem.as_mut(), batch.sequence) {
                idem.on_abandoned(&batch.tp, seq);
            }
            return self.finish(
                batch,
                Err(Error::DeliveryTimeout(self.config.delivery_timeout)),
            );
        }
        debug!(tp = %batch.tp, attempts = batch.attempts, "retrying batch");
        batch.retry_at = Some(Instant::now() + backoff);
        lock(&self.shared.buffers).acc.reenqueue(batch);
    }

    fn fatal(&mut self, error: Error) {
        warn!(error = %error, "producer failed fatally");
        if let Some(txn) = &self.txn {
            txn.set_fatal(error.clone());
        }
        *lock(&self.shared.fatal) = Some(error.clone());
        self.shared.failed.store(true, Ordering::Release);
        let queued = lock(&self.shared.buffers).acc.take_all();
        for batch in queued {
            self.finish(batch, Err(error.clone()));
        }
    }

    fn finish(&mut self, batch: ProducerBatch, result: Result<BatchAck>) {
        if let (Some(txn), Err(e)) = (&self.txn, &result) {
            // Before the outcome is published: a commit waiting on it must see the phase.
            if batch.sequence.is_some() {
                lock(&txn.state).needs_bump = true;
            }
            txn.set_abortable(e.clone());
        }
        batch.complete(result);
        self.shared.memory.add_permits(batch.reserved);
        lock(&self.shared.incomplete).remove(&batch.id);
        if let Some(buf) = batch.into_buffer() {
            lock(&self.shared.buffers).acc.recycle(buf);
        }
    }

    fn refresh_metadata(&mut self) {
        if self.refreshing {
            return;
        }
        self.refreshing = true;
        let client = self.client.clone();
        let backoff = self.config.retry_backoff;
        self.events.push(
            async move {
                if let Err(e) = client.refresh_metadata(None).await {
                    debug!(error = %e, "metadata refresh failed");
                }
                tokio::time::sleep(backoff).await;
                Event::Metadata
            }
            .boxed(),
        );
    }
}

#[cfg(test)]
#[path = "sender_tests.rs"]
mod tests;
