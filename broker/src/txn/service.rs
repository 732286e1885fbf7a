//! [`Txns`]: the shell of the transaction coordinator. One task owns the sans-IO
//! [`TxnCoordinator`] and the `__transaction_state` partitions this node leads; handlers hold a
//! cheap [`Txns`] handle and send it commands with a oneshot reply. The task never waits on I/O:
//! replays run on the blocking pool, appends are queued at once and their acknowledgements
//! awaited in spawned tasks that report back, and so are producer-id allocations and markers
//! (WriteTxnMarkers to each partition's leader, one request per leader, over the mesh or through
//! this node's own dispatcher). A request waiting for its record to be replicated is only a
//! oneshot sender parked in a map, so it holds up nothing but its own response.
//!
//! The partitions come and go with leadership, as the group coordinator's do
//! ([`Txns::follow_leadership`], called on every metadata image): a newly led partition is
//! replayed (its ids answer COORDINATOR_LOAD_IN_PROGRESS meanwhile) and then served, and the
//! markers of every transaction whose end was decided there are sent again; a partition no
//! longer led is dropped at once (NOT_COORDINATOR).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ApiKey, ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::TRANSACTION_STATE_TOPIC;
use super::core::{
    Answer, InitRequest, MarkerOutcome, Markers, Output, PersistToken, ProducerIdEpoch, Reply,
    ResponseError, TopicPartition, TxnConfig, TxnCoordinator, TxnDescription, TxnRecord, TxnStats,
    TxnStatus,
};
use super::metrics as txn_metrics;
use crate::Broker;
use crate::api::now_ms;
use crate::group::log::{self, Attached};
use crate::ids::{LeaderEpoch, NodeId};
use crate::partition::NodeLeader;
use crate::peers::request_node;

const COMMANDS: usize = 1024;
/// How often the gauges are published.
const METRICS_INTERVAL: Duration = Duration::from_secs(5);
/// How long one WriteTxnMarkers may take (the leader appends the markers acks=all).
const MARKER_TIMEOUT: Duration = Duration::from_secs(10);
/// The WriteTxnMarkers version sent (the only one Kafka defines).
const MARKERS_VERSION: i16 = 1;
/// Producer ids taken from the cluster's allocator each time the core runs out.
const PRODUCER_IDS: usize = 16;
/// Before asking the allocator again after it failed.
const PRODUCER_IDS_RETRY: Duration = Duration::from_millis(500);

type Tx<T> = oneshot::Sender<T>;

enum Command {
    Init(InitRequest, Tx<Answer>),
    Add(String, ProducerIdEpoch, Vec<TopicPartition>, Tx<Answer>),
    AddOffsets(String, ProducerIdEpoch, String, Tx<Answer>),
    End(String, ProducerIdEpoch, bool, Tx<Answer>),
    Verify(
        String,
        ProducerIdEpoch,
        Vec<TopicPartition>,
        Tx<Vec<Result<(), ResponseError>>>,
    ),
    Describe(Vec<String>, Tx<Vec<Result<TxnDescription, ResponseError>>>),
    List(
        Vec<TxnStatus>,
        Vec<i64>,
        Tx<Result<Vec<TxnDescription>, ResponseError>>,
    ),
    Persisted(PersistToken, Result<(), ResponseError>),
    MarkersWritten(Markers, Vec<(TopicPartition, MarkerOutcome)>),
    ProducerIds(Vec<i64>),
    Attach(Arc<NodeLeader>),
    Loaded(i32, LeaderEpoch, Vec<(i64, TxnRecord)>),
    Detach(i32),
}

/// Handle to the coordinator task (cheap to clone).
#[derive(Clone)]
pub struct Txns {
    tx: mpsc::Sender<Command>,
    partitions: i32,
    /// `__transaction_state` partitions attached (loading or served), with the leader epoch.
    attached: Arc<Attached>,
}

/// The coordinator task before it runs: [`TxnsTask::start`] once the node's [`Broker`] exists
/// (the task sends markers and takes producer ids through it).
pub struct TxnsTask {
    core: TxnCoordinator,
    tx: mpsc::Sender<Command>,
    rx: mpsc::Receiver<Command>,
}

impl Txns {
    /// A handle and its task, for `config.state_partitions` partitions of `__transaction_state`.
    pub fn new(config: TxnConfig) -> (Txns, TxnsTask) {
        let (tx, rx) = mpsc::channel(COMMANDS);
        let partitions = config.state_partitions.max(1);
        let task = TxnsTask {
            core: TxnCoordinator::new(config),
            tx: tx.clone(),
            rx,
        };
        let txns = Txns {
            tx,
            partitions,
            attached: Arc::new(Attached::default()),
        };
        (txns, task)
    }

    /// Number of `__transaction_state` partitions.
    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// The `__transaction_state` partition of `transactional_id` (Kafka's placement).
    pub fn partition_of(&self, transactional_id: &str) -> i32 {
        crate::group::partition_for_group(transactional_id, self.partitions)
    }

    async fn ask<T>(&self, command: impl FnOnce(Tx<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(command(tx)).await.ok()?;
        rx.await.ok()
    }

    async fn done(&self, command: impl FnOnce(Tx<Answer>) -> Command) -> Result<(), ResponseError> {
        match self.ask(command).await {
            Some(Answer::Done(result)) => result,
            Some(Answer::Init(_)) => Err(ResponseError::UnknownServerError),
            None => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// InitProducerId with a transactional id: answered once the new producer id and epoch are
    /// replicated (CONCURRENT_TRANSACTIONS while an open transaction is being aborted).
    pub async fn init_producer_id(
        &self,
        request: InitRequest,
    ) -> Result<ProducerIdEpoch, ResponseError> {
        match self.ask(|tx| Command::Init(request, tx)).await {
            Some(Answer::Init(result)) => result,
            Some(Answer::Done(_)) => Err(ResponseError::UnknownServerError),
            None => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// AddPartitionsToTxn (one transaction): answered once the partitions are in it, replicated.
    pub async fn add_partitions(
        &self,
        transactional_id: String,
        producer: ProducerIdEpoch,
        partitions: Vec<TopicPartition>,
    ) -> Result<(), ResponseError> {
        self.done(|tx| Command::Add(transactional_id, producer, partitions, tx))
            .await
    }

    /// AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the transaction.
    pub async fn add_offsets(
        &self,
        transactional_id: String,
        producer: ProducerIdEpoch,
        group: String,
    ) -> Result<(), ResponseError> {
        self.done(|tx| Command::AddOffsets(transactional_id, producer, group, tx))
            .await
    }

    /// EndTxn: answered once the decision (PrepareCommit or PrepareAbort) is replicated; the
    /// markers follow.
    pub async fn end_txn(
        &self,
        transactional_id: String,
        producer: ProducerIdEpoch,
        commit: bool,
    ) -> Result<(), ResponseError> {
        let started = Instant::now();
        let result = self
            .done(|tx| Command::End(transactional_id, producer, commit, tx))
            .await;
        txn_metrics::end_done(started.elapsed(), result.is_ok());
        result
    }

    /// KIP-890 part 1: whether each partition is in the producer's open transaction
    /// ([`TxnCoordinator::verify`]), in the order asked.
    pub async fn verify(
        &self,
        transactional_id: String,
        producer: ProducerIdEpoch,
        partitions: Vec<TopicPartition>,
    ) -> Vec<Result<(), ResponseError>> {
        let count = partitions.len();
        self.ask(|tx| Command::Verify(transactional_id, producer, partitions, tx))
            .await
            .unwrap_or_else(|| vec![Err(ResponseError::CoordinatorNotAvailable); count])
    }

    /// DescribeTransactions: each id's persisted state, or its error.
    pub async fn describe(&self, ids: Vec<String>) -> Vec<Result<TxnDescription, ResponseError>> {
        let count = ids.len();
        self.ask(|tx| Command::Describe(ids, tx))
            .await
            .unwrap_or_else(|| vec![Err(ResponseError::CoordinatorNotAvailable); count])
    }

    /// ListTransactions: every transactional id coordinated here in one of `statuses` and of
    /// one of `producer_ids` (an empty filter lets all through); COORDINATOR_LOAD_IN_PROGRESS
    /// while a partition loads.
    pub async fn list(
        &self,
        statuses: Vec<TxnStatus>,
        producer_ids: Vec<i64>,
    ) -> Result<Vec<TxnDescription>, ResponseError> {
        self.ask(|tx| Command::List(statuses, producer_ids, tx))
            .await
            .unwrap_or(Err(ResponseError::CoordinatorNotAvailable))
    }

    /// Follows this node's leadership of the `__transaction_state` partitions: `led` is every
    /// partition of the topic this node leads now. A newly led one (or one led in a new leader
    /// epoch) is replayed and then served; one no longer led is dropped at once.
    pub async fn follow_leadership(&self, led: Vec<Arc<NodeLeader>>) {
        let (detach, attach) = (Command::Detach, Command::Attach);
        log::follow_leadership(&self.attached, led, &self.tx, detach, attach).await;
    }
}

impl TxnsTask {
    /// Runs the coordinator task for `broker` until `shutdown`.
    pub fn start(self, broker: Broker, shutdown: CancellationToken) {
        let task = Task {
            core: self.core,
            broker,
            tx: self.tx,
            leaders: HashMap::new(),
            replies: HashMap::new(),
            next_reply: 0,
            reported: TxnStats::default(),
        };
        tokio::spawn(task.run(self.rx, shutdown));
    }
}

struct Task {
    core: TxnCoordinator,
    broker: Broker,
    tx: mpsc::Sender<Command>,
    /// The `__transaction_state` partitions this node leads (loading or served).
    leaders: HashMap<i32, Arc<NodeLeader>>,
    replies: HashMap<Reply, Tx<Answer>>,
    next_reply: u64,
    /// The counters as last published.
    reported: TxnStats,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        let mut metrics = tokio::time::interval(METRICS_INTERVAL);
        loop {
            let wait = self.core.next_deadline().map(|at| {
                Duration::from_millis(u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0))
            });
            let sleep = async {
                match wait {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = rx.recv() => match command {
                    Some(command) => self.handle(command),
                    None => break,
                },
                () = sleep => {}
                _ = metrics.tick() => txn_metrics::publish(&self.core, &mut self.reported),
                () = shutdown.cancelled() => break,
            }
            self.core.tick(now_ms());
            self.drain();
        }
    }

    fn reply(&mut self, tx: Tx<Answer>) -> Reply {
        self.next_reply += 1;
        let reply = Reply(self.next_reply);
        self.replies.insert(reply, tx);
        reply
    }

    fn handle(&mut self, command: Command) {
        let now = now_ms();
        match command {
            Command::Init(request, tx) => {
                let reply = self.reply(tx);
                self.core.init_producer_id(now, reply, request);
            }
            Command::Add(id, producer, partitions, tx) => {
                let reply = self.reply(tx);
                self.core
                    .add_partitions(now, reply, &id, producer, partitions);
            }
            Command::AddOffsets(id, producer, group, tx) => {
                let reply = self.reply(tx);
                self.core.add_offsets(now, reply, &id, producer, &group);
            }
            Command::End(id, producer, commit, tx) => {
                let reply = self.reply(tx);
                self.core.end_txn(now, reply, &id, producer, commit);
            }
            Command::Verify(id, producer, partitions, tx) => {
                let results = partitions
                    .iter()
                    .map(|p| self.core.verify(&id, producer, p))
                    .collect();
                let _ = tx.send(results);
            }
            Command::Describe(ids, tx) => {
                let _ = tx.send(ids.iter().map(|id| self.core.describe(id)).collect());
            }
            Command::List(statuses, producer_ids, tx) => {
                let listed = if self.core.loading() {
                    Err(ResponseError::CoordinatorLoadInProgress)
                } else {
                    Ok(self.core.list(&statuses, &producer_ids))
                };
                let _ = tx.send(listed);
            }
            Command::Persisted(token, result) => self.core.persisted(now, token, result),
            Command::MarkersWritten(markers, results) => {
                let producer = ProducerIdEpoch {
                    producer_id: markers.producer_id,
                    epoch: markers.producer_epoch,
                };
                for (partition, outcome) in results {
                    self.core.marker_written(
                        now,
                        &markers.transactional_id,
                        producer,
                        &partition,
                        outcome,
                    );
                }
            }
            Command::ProducerIds(ids) => self.core.add_producer_ids(ids),
            Command::Attach(leader) => self.attach(leader),
            Command::Loaded(partition, epoch, records) => {
                let current = self
                    .leaders
                    .get(&partition)
                    .is_some_and(|l| l.leader_epoch() == epoch);
                if current {
                    tracing::info!(
                        partition,
                        leader_epoch = epoch.0,
                        records = records.len(),
                        "serving transactions"
                    );
                    let records = records.into_iter().map(|(_, record)| record);
                    self.core.load(partition, epoch.0, records);
                }
            }
            Command::Detach(partition) => {
                if self.leaders.remove(&partition).is_some() {
                    tracing::info!(partition, "stopped serving transactions");
                }
                self.core.unload(partition);
            }
        }
    }

    /// Carries out the core's outputs.
    fn drain(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Answer { reply, answer } => {
                    if let Some(tx) = self.replies.remove(&reply) {
                        let _ = tx.send(answer);
                    }
                }
                Output::Persist {
                    token,
                    partition,
                    record,
                } => self.persist(token, partition, &record),
                Output::WriteMarkers(markers) => {
                    tokio::spawn(write_markers(self.broker.clone(), self.tx.clone(), markers));
                }
                Output::NeedProducerIds => {
                    tokio::spawn(take_producer_ids(self.broker.clone(), self.tx.clone()));
                }
            }
        }
    }

    /// Appends `record` acks=all to `partition`; the core hears back once it is replicated.
    fn persist(&mut self, token: PersistToken, partition: i32, record: &TxnRecord) {
        let now = now_ms();
        let Some(leader) = self.leaders.get(&partition) else {
            self.core
                .persisted(now, token, Err(ResponseError::NotCoordinator));
            return;
        };
        let Some(encoded) = record.encode() else {
            tracing::warn!(
                transactional_id = record.transactional_id,
                "transaction state record too large to encode"
            );
            self.core
                .persisted(now, token, Err(ResponseError::UnknownServerError));
            return;
        };
        match log::append_encoded(leader, &[encoded], now) {
            Ok(appending) => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let result = appending.await.map(drop);
                    let _ = tx.send(Command::Persisted(token, result)).await;
                });
            }
            Err(e) => self.core.persisted(now, token, Err(e)),
        }
    }

    fn attach(&mut self, leader: Arc<NodeLeader>) {
        let partition = leader.topic_partition().partition;
        self.core.begin_load(partition);
        self.leaders.insert(partition, leader.clone());
        let (tx, decode) = (self.tx.clone(), TxnRecord::decode);
        log::spawn_replay(
            &leader,
            TRANSACTION_STATE_TOPIC,
            decode,
            tx,
            Command::Loaded,
        );
    }
}

/// Takes producer ids from the cluster's allocator for the core (retrying while the metadata
/// log cannot allocate, until shutdown).
async fn take_producer_ids(broker: Broker, back: mpsc::Sender<Command>) {
    let mut ids = Vec::with_capacity(PRODUCER_IDS);
    while ids.len() < PRODUCER_IDS {
        match broker.producer_ids().next().await {
            Ok(id) => ids.push(id),
            Err(_) if !ids.is_empty() => break,
            Err(e) => {
                tracing::warn!(error = %e, "no producer ids for transactional producers yet");
                tokio::select! {
                    () = tokio::time::sleep(PRODUCER_IDS_RETRY) => {}
                    () = broker.shutdown_token().cancelled() => return,
                }
            }
        }
    }
    let _ = back.send(Command::ProducerIds(ids)).await;
}

/// Writes one transaction's markers: one WriteTxnMarkers per partition leader, all at once, and
/// reports each partition's outcome to the core. A partition whose topic is gone needs no
/// marker; one without a live leader, or whose leader failed or did not answer, is retried
/// (after the core's retry delay, to whichever node leads it then), as Kafka's marker channel
/// does.
async fn write_markers(broker: Broker, back: mpsc::Sender<Command>, markers: Markers) {
    let image = broker.image();
    let mut results = Vec::with_capacity(markers.partitions.len());
    let mut by_leader: BTreeMap<NodeId, Vec<TopicPartition>> = BTreeMap::new();
    for tp in &markers.partitions {
        let exists = image
            .topic(&tp.topic)
            .is_some_and(|t| usize::try_from(tp.partition).is_ok_and(|i| i < t.partitions.len()));
        if !exists {
            results.push((tp.clone(), MarkerOutcome::Gone));
            continue;
        }
        match broker.live_leader(&tp.topic, tp.partition) {
            Some(node) => by_leader.entry(node).or_default().push(tp.clone()),
            None => results.push((tp.clone(), MarkerOutcome::Retry)),
        }
    }
    let sends = by_leader
        .into_iter()
        .map(|(node, partitions)| send_markers(&broker, node, &markers, partitions));
    for outcomes in futures::future::join_all(sends).await {
        results.extend(outcomes);
    }
    let _ = back.send(Command::MarkersWritten(markers, results)).await;
}

/// One WriteTxnMarkers to `node` for `partitions` (which it leads); each partition's outcome.
async fn send_markers(
    broker: &Broker,
    node: NodeId,
    markers: &Markers,
    partitions: Vec<TopicPartition>,
) -> Vec<(TopicPartition, MarkerOutcome)> {
    let request = marker_request(markers, &partitions);
    let key = (ApiKey::WriteTxnMarkers, MARKERS_VERSION);
    let answer: Result<WriteTxnMarkersResponse, _> =
        request_node(broker, node, key, &request, MARKER_TIMEOUT).await;
    let response = match answer {
        Ok(response) => response,
        Err(e) => {
            tracing::debug!(%node, error = %e, "WriteTxnMarkers failed; will retry");
            return partitions
                .into_iter()
                .map(|tp| (tp, MarkerOutcome::Retry))
                .collect();
        }
    };
    let codes: HashMap<(String, i32), i16> = response
        .markers
        .iter()
        .filter(|m| m.producer_id.0 == markers.producer_id)
        .flat_map(|m| &m.topics)
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| ((t.name.0.to_string(), p.partition_index), p.error_code))
        })
        .collect();
    partitions
        .into_iter()
        .map(|tp| {
            let outcome = codes
                .get(&(tp.topic.clone(), tp.partition))
                .map_or(MarkerOutcome::Retry, |code| marker_outcome(*code));
            (tp, outcome)
        })
        .collect()
}

/// The WriteTxnMarkers request for one transaction's `partitions`.
fn marker_request(markers: &Markers, partitions: &[TopicPartition]) -> WriteTxnMarkersRequest {
    let mut topics: Vec<WritableTxnMarkerTopic> = Vec::new();
    for tp in partitions {
        match topics.iter_mut().find(|t| t.name.0.as_str() == tp.topic) {
            Some(topic) => topic.partition_indexes.push(tp.partition),
            None => topics.push(
                WritableTxnMarkerTopic::default()
                    .with_name(TopicName(StrBytes::from_string(tp.topic.clone())))
                    .with_partition_indexes(vec![tp.partition]),
            ),
        }
    }
    WriteTxnMarkersRequest::default().with_markers(vec![
        WritableTxnMarker::default()
            .with_producer_id(ProducerId(markers.producer_id))
            .with_producer_epoch(markers.producer_epoch)
            .with_transaction_result(markers.commit)
            .with_topics(topics)
            .with_coordinator_epoch(markers.coordinator_epoch),
    ])
}

/// What a partition leader's answer means for the marker, as Kafka's marker channel reads it:
/// written; not needed (the partition cannot hold the producer's data); or to be sent again
/// (not the leader, too few in-sync replicas, a timeout, anything unexpected).
fn marker_outcome(code: i16) -> MarkerOutcome {
    match ResponseError::try_from_code(code) {
        None => MarkerOutcome::Written,
        Some(ResponseError::UnsupportedForMessageFormat | ResponseError::UnsupportedVersion) => {
            MarkerOutcome::Gone
        }
        Some(error) => {
            tracing::debug!(?error, "a transaction marker was not written; will retry");
            MarkerOutcome::Retry
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_grouped_by_topic_in_one_request() {
        let markers = Markers {
            transactional_id: "t".into(),
            producer_id: 42,
            producer_epoch: 3,
            commit: true,
            coordinator_epoch: 7,
            partitions: Vec::new(),
        };
        let partitions = [
            TopicPartition::new("a", 0),
            TopicPartition::new("b", 1),
            TopicPartition::new("a", 2),
        ];
        let request = marker_request(&markers, &partitions);
        assert_eq!(request.markers.len(), 1);
        let marker = &request.markers[0];
        assert_eq!(marker.producer_id.0, 42);
        assert_eq!(marker.producer_epoch, 3);
        assert!(marker.transaction_result);
        assert_eq!(marker.coordinator_epoch, 7);
        let topics: Vec<(&str, &[i32])> = marker
            .topics
            .iter()
            .map(|t| (t.name.0.as_str(), t.partition_indexes.as_slice()))
            .collect();
        assert_eq!(topics, vec![("a", &[0, 2][..]), ("b", &[1][..])]);
    }

    #[test]
    fn marker_errors_are_read_as_kafkas_marker_channel_reads_them() {
        assert_eq!(marker_outcome(0), MarkerOutcome::Written);
        for retried in [
            ResponseError::NotLeaderOrFollower,
            ResponseError::NotEnoughReplicas,
            ResponseError::NotEnoughReplicasAfterAppend,
            ResponseError::RequestTimedOut,
            ResponseError::UnknownTopicOrPartition,
            ResponseError::KafkaStorageError,
        ] {
            assert_eq!(
                marker_outcome(retried.code()),
                MarkerOutcome::Retry,
                "{retried:?}"
            );
        }
        assert_eq!(
            marker_outcome(ResponseError::UnsupportedForMessageFormat.code()),
            MarkerOutcome::Gone
        );
    }
}
