//! [`Groups`]: the shell of the group coordinator. One task owns the sans-IO
//! [`GroupCoordinator`] and the offsets partitions this node leads; handlers hold a cheap
//! [`Groups`] handle and send it commands with a oneshot reply. The task never waits on I/O:
//! replays run on the blocking pool, appends are queued at once and their acknowledgements
//! awaited in spawned tasks that report back, and a held JoinGroup or SyncGroup is only a
//! oneshot sender parked in a map, so it holds up nothing but its own response.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::OFFSETS_TOPIC;
use super::core::{
    GroupConfig, GroupCoordinator, GroupDescription, GroupState, JoinRequest, JoinResponse,
    ListedGroup, LogEntry, MemberRef, Output, PersistToken, Reply, ResponseError, SyncRequest,
    SyncResponse,
};
use super::log::{self, CHUNK};
use super::metrics as group_metrics;
use super::records::{Format, OffsetValue, Record};
use crate::ids::LeaderEpoch;
use crate::partition::NodeLeader;

/// Superseded records tolerated in a partition before it is rewritten as a snapshot.
const SNAPSHOT_MIN_RECORDS: u64 = 10_000;
/// How often offsets retention is checked (Kafka's `offsets.retention.check.interval.ms`).
const EXPIRY_INTERVAL: Duration = Duration::from_secs(60);
/// How often group gauges and consumer lag are published.
const METRICS_INTERVAL: Duration = Duration::from_secs(5);
const COMMANDS: usize = 1024;

/// Reads the high watermark of a topic partition held here.
pub type HighWatermarkFn = Box<dyn Fn(&str, i32) -> Option<i64> + Send + Sync>;

/// What the coordinator needs from the rest of the node.
pub struct GroupsEnv {
    /// Whether group metadata records (Kafka's layout) may be written: the cluster's feature
    /// level enables them. Until then offsets are written in the legacy format and group
    /// metadata is kept in memory only.
    pub group_records: Box<dyn Fn() -> bool + Send + Sync>,
    /// The high watermark of a topic partition this node holds, for consumer lag.
    pub high_watermark: HighWatermarkFn,
    /// Wall-clock milliseconds (commit timestamps, retention).
    pub now_ms: Box<dyn Fn() -> i64 + Send + Sync>,
}

/// Handle to the coordinator task (cheap to clone).
#[derive(Clone)]
pub struct Groups {
    tx: mpsc::Sender<Command>,
    partitions: i32,
    /// Offsets partitions attached (loading or served), with the leader epoch.
    attached: Arc<Mutex<HashMap<i32, LeaderEpoch>>>,
    /// The consumer lag the task last computed.
    lag: Arc<Mutex<Vec<GroupLag>>>,
}

/// The lag of one group on one partition: (group, topic, partition, high watermark minus the
/// committed offset).
pub type GroupLag = (String, String, i32, i64);

type Tx<T> = oneshot::Sender<T>;

enum Command {
    Join(JoinRequest, Tx<JoinResponse>),
    Sync(SyncRequest, Tx<SyncResponse>),
    Heartbeat(String, i32, MemberRef, Tx<Option<ResponseError>>),
    Leave(String, Vec<MemberRef>, Tx<LeaveResult>),
    Describe(
        Vec<String>,
        Tx<Vec<Result<GroupDescription, ResponseError>>>,
    ),
    List(Vec<GroupState>, Tx<Vec<ListedGroup>>),
    Delete(Vec<String>, Tx<Vec<Option<ResponseError>>>),
    DeleteOffsets(String, Vec<(String, i32)>, Tx<Result<(), ResponseError>>),
    ValidateCommit(
        String,
        i32,
        MemberRef,
        Tx<Result<Arc<NodeLeader>, ResponseError>>,
    ),
    Committed(Committed, Tx<()>),
    ValidateTxnCommit(
        String,
        i32,
        MemberRef,
        Tx<Result<Arc<NodeLeader>, ResponseError>>,
    ),
    TxnCommitted(TxnCommitted, Tx<()>),
    EndTxn(TxnMarker, Tx<()>),
    Fetch(
        String,
        Option<Vec<(String, Vec<i32>)>>,
        bool,
        Tx<FetchResult>,
    ),
    Persisted(PersistToken, i32, Result<(), ResponseError>),
    Written(i32),
    Attach(Arc<NodeLeader>),
    Loaded(i32, LeaderEpoch, Vec<(i64, LogEntry)>),
    Detach(i32),
    Served(Tx<Vec<i32>>),
}

type LeaveResult = Result<Vec<Option<ResponseError>>, ResponseError>;
type FetchResult = Result<Vec<Fetched>, ResponseError>;

/// One partition's answer to OffsetFetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The committed offset, if any.
    pub commit: Option<OffsetValue>,
    /// A transactional commit of it is pending (only asked with `require_stable`):
    /// UNSTABLE_OFFSET_COMMIT.
    pub unstable: bool,
}

struct Committed {
    group: String,
    partition: i32,
    entries: Vec<(String, i32, OffsetValue)>,
    result: Result<i64, ResponseError>,
}

struct TxnCommitted {
    group: String,
    partition: i32,
    producer_id: i64,
    entries: Vec<(String, i32, OffsetValue)>,
    result: Result<i64, ResponseError>,
}

/// A commit or abort marker written to an offsets partition.
struct TxnMarker {
    partition: i32,
    producer_id: i64,
    commit: bool,
    offset: i64,
}

impl Groups {
    /// Starts the coordinator task for `partitions` offsets partitions; it runs until `shutdown`.
    pub fn start(
        config: GroupConfig,
        partitions: i32,
        member_prefix: String,
        env: GroupsEnv,
        shutdown: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel(COMMANDS);
        let core = GroupCoordinator::new(config, partitions, member_prefix);
        let lag = Arc::new(Mutex::new(Vec::new()));
        let task = Task {
            core,
            env: Arc::new(env),
            tx: tx.clone(),
            slots: HashMap::new(),
            joins: HashMap::new(),
            syncs: HashMap::new(),
            next_reply: 0,
            rebalances_reported: 0,
            lag: lag.clone(),
        };
        tokio::spawn(task.run(rx, shutdown));
        Self {
            tx,
            partitions: partitions.max(1),
            attached: Arc::new(Mutex::new(HashMap::new())),
            lag,
        }
    }

    /// Number of offsets partitions.
    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// The offsets partition of `group`.
    pub fn partition_of(&self, group: &str) -> i32 {
        super::partition_for_group(group, self.partitions)
    }

    async fn ask<T>(&self, command: impl FnOnce(Tx<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(command(tx)).await.ok()?;
        rx.await.ok()
    }

    /// JoinGroup: answered when the rebalance gets there.
    pub async fn join(&self, request: JoinRequest) -> JoinResponse {
        let member_id = request.member_id.clone();
        self.ask(|tx| Command::Join(request, tx))
            .await
            .unwrap_or_else(|| JoinResponse {
                error: Some(ResponseError::CoordinatorNotAvailable),
                generation: -1,
                member_id,
                ..JoinResponse::default()
            })
    }

    /// SyncGroup: answered once the leader's assignment is durable.
    pub async fn sync(&self, request: SyncRequest) -> SyncResponse {
        self.ask(|tx| Command::Sync(request, tx))
            .await
            .unwrap_or_else(|| SyncResponse {
                error: Some(ResponseError::CoordinatorNotAvailable),
                ..SyncResponse::default()
            })
    }

    /// Heartbeat: `None` when fine.
    pub async fn heartbeat(
        &self,
        group: String,
        generation: i32,
        member: MemberRef,
    ) -> Option<ResponseError> {
        self.ask(|tx| Command::Heartbeat(group, generation, member, tx))
            .await
            .unwrap_or(Some(ResponseError::CoordinatorNotAvailable))
    }

    /// LeaveGroup: each member's error, or the group's.
    pub async fn leave(&self, group: String, members: Vec<MemberRef>) -> LeaveResult {
        self.ask(|tx| Command::Leave(group, members, tx))
            .await
            .unwrap_or(Err(ResponseError::CoordinatorNotAvailable))
    }

    /// DescribeGroups.
    pub async fn describe(
        &self,
        groups: Vec<String>,
    ) -> Vec<Result<GroupDescription, ResponseError>> {
        let count = groups.len();
        self.ask(|tx| Command::Describe(groups, tx))
            .await
            .unwrap_or_else(|| vec![Err(ResponseError::CoordinatorNotAvailable); count])
    }

    /// ListGroups (every group served here, in the given states or all).
    pub async fn list(&self, states: Vec<GroupState>) -> Vec<ListedGroup> {
        self.ask(|tx| Command::List(states, tx))
            .await
            .unwrap_or_default()
    }

    /// DeleteGroups: each group's error (`None`: deleted, its tombstones replicated).
    pub async fn delete(&self, groups: Vec<String>) -> Vec<Option<ResponseError>> {
        let count = groups.len();
        self.ask(|tx| Command::Delete(groups, tx))
            .await
            .unwrap_or_else(|| vec![Some(ResponseError::CoordinatorNotAvailable); count])
    }

    /// OffsetDelete of the given partitions of `group`.
    pub async fn delete_offsets(
        &self,
        group: String,
        partitions: Vec<(String, i32)>,
    ) -> Result<(), ResponseError> {
        self.ask(|tx| Command::DeleteOffsets(group, partitions, tx))
            .await
            .unwrap_or(Err(ResponseError::CoordinatorNotAvailable))
    }

    /// OffsetCommit: checks the member and generation, appends the commits (acks=all, pipelined
    /// with other commits of the partition) and makes them visible once replicated.
    pub async fn commit(
        &self,
        group: String,
        generation: i32,
        member: MemberRef,
        entries: Vec<(String, i32, OffsetValue)>,
        format: Format,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        let started = Instant::now();
        let leader = self
            .ask(|tx| Command::ValidateCommit(group.clone(), generation, member, tx))
            .await
            .unwrap_or(Err(ResponseError::CoordinatorNotAvailable))?;
        let partition = leader.topic_partition().partition;
        let records = offset_records(&group, &entries);
        let result = match log::append(&leader, &records, format, now_ms) {
            Ok(appending) => appending.await,
            Err(e) => Err(e),
        };
        let outcome = result.map(drop);
        let committed = Committed {
            group,
            partition,
            entries,
            result,
        };
        self.ask(|tx| Command::Committed(committed, tx)).await;
        group_metrics::commit_done(started.elapsed(), outcome.is_ok());
        outcome
    }

    /// OffsetFetch of the wanted partitions (all of them with `None`); with `require_stable`,
    /// partitions with a transactional commit pending are marked unstable.
    pub async fn fetch_offsets(
        &self,
        group: String,
        wanted: Option<Vec<(String, Vec<i32>)>>,
        require_stable: bool,
    ) -> FetchResult {
        self.ask(|tx| Command::Fetch(group, wanted, require_stable, tx))
            .await
            .unwrap_or(Err(ResponseError::CoordinatorNotAvailable))
    }

    /// TxnOffsetCommit: checks the member and generation (as Kafka does for a transactional
    /// commit), runs `verify` (KIP-890: is the offsets partition in the producer's transaction?)
    /// with the partition's leader, appends the commits as one transactional batch of
    /// `producer` (id, epoch; acks=all, pipelined with the partition's other writes), and keeps
    /// them pending until the producer's marker on that partition commits or drops them.
    pub async fn txn_commit<V, F>(
        &self,
        (group, generation, member): (String, i32, MemberRef),
        producer: (i64, i16),
        entries: Vec<(String, i32, OffsetValue)>,
        now_ms: i64,
        verify: V,
    ) -> Result<(), ResponseError>
    where
        V: FnOnce(Arc<NodeLeader>) -> F,
        F: Future<Output = Result<(), ResponseError>>,
    {
        let started = Instant::now();
        let leader = self
            .ask(|tx| Command::ValidateTxnCommit(group.clone(), generation, member, tx))
            .await
            .unwrap_or(Err(ResponseError::CoordinatorNotAvailable))?;
        let partition = leader.topic_partition().partition;
        let records = offset_records(&group, &entries);
        let result = match verify(leader.clone()).await {
            Ok(()) => match log::append_transactional(&leader, &records, producer, now_ms) {
                Ok(appending) => appending.await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let outcome = result.map(drop);
        let committed = TxnCommitted {
            group,
            partition,
            producer_id: producer.0,
            entries,
            result,
        };
        self.ask(|tx| Command::TxnCommitted(committed, tx)).await;
        group_metrics::commit_done(started.elapsed(), outcome.is_ok());
        outcome
    }

    /// A commit (`commit`) or abort marker of `producer_id`'s transaction was written to offsets
    /// partition `partition` at `offset` (the WriteTxnMarkers handler says so once it is
    /// replicated): the producer's pending offsets there are committed or dropped.
    pub async fn end_txn(&self, partition: i32, producer_id: i64, commit: bool, offset: i64) {
        let marker = TxnMarker {
            partition,
            producer_id,
            commit,
            offset,
        };
        self.ask(|tx| Command::EndTxn(marker, tx)).await;
    }

    /// The offsets partitions served (loaded) here.
    pub async fn served(&self) -> Vec<i32> {
        self.ask(Command::Served).await.unwrap_or_default()
    }

    /// The consumer lag of the groups coordinated here, as last computed (every few seconds),
    /// for the partitions this node holds a replica of; `/metrics` renders it.
    pub fn lag(&self) -> Vec<GroupLag> {
        self.lag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The offsets partitions attached here (loading or served), with their leader epochs.
    pub fn attached(&self) -> Vec<(i32, LeaderEpoch)> {
        let mut attached: Vec<_> = self.attached_map().iter().map(|(p, e)| (*p, *e)).collect();
        attached.sort_unstable();
        attached
    }

    fn attached_map(&self) -> std::sync::MutexGuard<'_, HashMap<i32, LeaderEpoch>> {
        // Entries are inserted and removed whole.
        self.attached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Follows this node's leadership of the offsets partitions: `led` is every partition of
    /// the offsets topic this node leads now. A newly led one (or one led in a new leader epoch)
    /// is replayed and then served; one no longer led is dropped at once (NOT_COORDINATOR).
    pub async fn follow_leadership(&self, led: Vec<Arc<NodeLeader>>) {
        let (detach, attach) = (Command::Detach, Command::Attach);
        log::follow_leadership(&self.attached, led, &self.tx, detach, attach).await;
    }
}

/// An offsets partition this node leads.
struct Slot {
    leader: Arc<NodeLeader>,
    /// Writes appended or about to be, not yet applied: a snapshot waits for none.
    in_flight: usize,
    /// Records written since the last snapshot (or in the log when loaded).
    records: u64,
}

struct Task {
    core: GroupCoordinator,
    env: Arc<GroupsEnv>,
    tx: mpsc::Sender<Command>,
    slots: HashMap<i32, Slot>,
    joins: HashMap<Reply, Tx<JoinResponse>>,
    syncs: HashMap<Reply, Tx<SyncResponse>>,
    next_reply: u64,
    rebalances_reported: u64,
    /// Shared with [`Groups::lag`].
    lag: Arc<Mutex<Vec<GroupLag>>>,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        let mut expiry = tokio::time::interval(EXPIRY_INTERVAL);
        let mut metrics = tokio::time::interval(METRICS_INTERVAL);
        loop {
            let deadline = self.core.next_deadline();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = rx.recv() => match command {
                    Some(command) => self.handle(command),
                    None => break,
                },
                () = sleep => {}
                _ = expiry.tick() => self.expire(),
                _ = metrics.tick() => self.publish_metrics(),
                () = shutdown.cancelled() => break,
            }
            let now = self.clock();
            self.core.tick(now);
            self.drain();
        }
    }

    /// Now, with the wall clock's reading given to the core.
    fn clock(&mut self) -> Instant {
        let now = Instant::now();
        self.core.set_wall_clock(now, (self.env.now_ms)());
        now
    }

    fn handle(&mut self, command: Command) {
        let now = self.clock();
        match command {
            Command::Join(request, tx) => {
                let reply = self.reply();
                self.joins.insert(reply, tx);
                self.core.join(now, reply, request);
            }
            Command::Sync(request, tx) => {
                let reply = self.reply();
                self.syncs.insert(reply, tx);
                self.core.sync(now, reply, request);
            }
            Command::Heartbeat(group, generation, member, tx) => {
                let _ = tx.send(self.core.heartbeat(now, &group, generation, &member));
            }
            Command::Leave(group, members, tx) => {
                let _ = tx.send(self.core.leave(now, &group, &members));
            }
            Command::Describe(groups, tx) => {
                let _ = tx.send(groups.iter().map(|g| self.core.describe(g)).collect());
            }
            Command::List(states, tx) => {
                let _ = tx.send(self.core.list(&states));
            }
            Command::Delete(groups, tx) => self.delete_groups(groups, tx),
            Command::DeleteOffsets(group, partitions, tx) => {
                match self.core.delete_offsets(&group, &partitions) {
                    Ok((partition, records)) => self.write_then(partition, records, tx),
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            }
            Command::ValidateCommit(group, generation, member, tx) => {
                let result = self
                    .core
                    .validate_commit(now, &group, generation, &member)
                    .and_then(|partition| self.write_starts(partition));
                let _ = tx.send(result);
            }
            Command::Committed(committed, tx) => {
                self.write_ended(committed.partition, committed.entries.len());
                if let Ok(log_offset) = committed.result {
                    self.core
                        .committed(now, &committed.group, committed.entries, log_offset);
                }
                let _ = tx.send(());
                self.maybe_snapshot(committed.partition);
            }
            Command::ValidateTxnCommit(group, generation, member, tx) => {
                let result = self
                    .core
                    .validate_txn_commit(&group, generation, &member)
                    .and_then(|partition| self.write_starts(partition));
                let _ = tx.send(result);
            }
            Command::TxnCommitted(committed, tx) => {
                self.write_ended(committed.partition, committed.entries.len());
                if let Ok(log_offset) = committed.result {
                    self.core.txn_committed(
                        now,
                        &committed.group,
                        committed.producer_id,
                        committed.entries,
                        log_offset,
                    );
                }
                let _ = tx.send(());
            }
            Command::EndTxn(marker, tx) => {
                self.core.end_txn(
                    now,
                    marker.partition,
                    marker.producer_id,
                    marker.commit,
                    marker.offset,
                );
                if let Some(slot) = self.slots.get_mut(&marker.partition) {
                    slot.records += 1;
                }
                let _ = tx.send(());
                self.maybe_snapshot(marker.partition);
            }
            Command::Fetch(group, wanted, require_stable, tx) => {
                let unstable = if require_stable {
                    self.core.pending_partitions(&group)
                } else {
                    Default::default()
                };
                let fetched = self
                    .core
                    .fetch_offsets(&group, wanted.as_deref())
                    .map(|all| {
                        all.into_iter()
                            .map(|(topic, partition, commit)| {
                                let unstable = unstable.contains(&(topic.clone(), partition));
                                Fetched {
                                    topic,
                                    partition,
                                    commit,
                                    unstable,
                                }
                            })
                            .collect()
                    });
                let _ = tx.send(fetched);
            }
            Command::Persisted(token, partition, result) => {
                self.write_ended(partition, 1);
                self.core.persisted(now, token, result);
            }
            Command::Written(partition) => self.write_ended(partition, 0),
            Command::Attach(leader) => self.attach(leader),
            Command::Loaded(partition, epoch, records) => {
                let current = self
                    .slots
                    .get_mut(&partition)
                    .filter(|s| s.leader.leader_epoch() == epoch);
                if let Some(slot) = current {
                    slot.records = records.len() as u64;
                    tracing::info!(
                        partition,
                        leader_epoch = epoch.0,
                        records = records.len(),
                        "serving groups"
                    );
                    self.core.load_log(partition, records, now);
                }
            }
            Command::Detach(partition) => {
                if self.slots.remove(&partition).is_some() {
                    tracing::info!(partition, "stopped serving groups");
                }
                self.core.unload(partition);
            }
            Command::Served(tx) => {
                let served = self
                    .core
                    .served_partitions()
                    .into_iter()
                    .filter(|p| self.core.is_active(*p))
                    .collect();
                let _ = tx.send(served);
            }
        }
    }

    /// A write to `partition` starts (a snapshot waits for it): the partition's leader to
    /// append to, NOT_COORDINATOR if this node no longer serves it.
    fn write_starts(&mut self, partition: i32) -> Result<Arc<NodeLeader>, ResponseError> {
        let slot = self
            .slots
            .get_mut(&partition)
            .ok_or(ResponseError::NotCoordinator)?;
        slot.in_flight += 1;
        Ok(slot.leader.clone())
    }

    /// A write to `partition` is done, with `records` records (counted toward the next snapshot).
    fn write_ended(&mut self, partition: i32, records: usize) {
        if let Some(slot) = self.slots.get_mut(&partition) {
            slot.in_flight = slot.in_flight.saturating_sub(1);
            slot.records += records as u64;
        }
    }

    fn reply(&mut self) -> Reply {
        self.next_reply += 1;
        Reply(self.next_reply)
    }

    fn format(&self) -> Format {
        if (self.env.group_records)() {
            Format::Kafka
        } else {
            Format::Legacy
        }
    }

    /// Carries out the core's outputs.
    fn drain(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Join { reply, response } => {
                    if let Some(tx) = self.joins.remove(&reply) {
                        let _ = tx.send(response);
                    }
                }
                Output::Sync { reply, response } => {
                    if let Some(tx) = self.syncs.remove(&reply) {
                        let _ = tx.send(response);
                    }
                }
                Output::Persist {
                    token,
                    partition,
                    records,
                } => self.persist(token, partition, &records),
            }
        }
    }

    /// Writes group metadata before a generation completes; with the legacy format (the
    /// cluster not yet at the level that has group records) it is kept in memory only.
    fn persist(&mut self, token: PersistToken, partition: i32, records: &[Record]) {
        let now = Instant::now();
        let format = self.format();
        if format == Format::Legacy {
            self.core.persisted(now, token, Ok(()));
            return;
        }
        let Some(slot) = self.slots.get_mut(&partition) else {
            self.core
                .persisted(now, token, Err(ResponseError::NotCoordinator));
            return;
        };
        match log::append(&slot.leader, records, format, (self.env.now_ms)()) {
            Ok(appending) => {
                slot.in_flight += 1;
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let result = appending.await.map(drop);
                    let _ = tx.send(Command::Persisted(token, partition, result)).await;
                });
            }
            Err(e) => self.core.persisted(now, token, Err(e)),
        }
    }

    /// Appends `records` to `partition` and answers `tx` once they are replicated.
    fn write_then(
        &mut self,
        partition: i32,
        records: Vec<Record>,
        tx: Tx<Result<(), ResponseError>>,
    ) {
        let format = self.format();
        let writable: Vec<Record> = records
            .into_iter()
            .filter(|r| r.encode(format).is_some())
            .collect();
        if writable.is_empty() {
            let _ = tx.send(Ok(()));
            return;
        }
        let Some(slot) = self.slots.get_mut(&partition) else {
            let _ = tx.send(Err(ResponseError::NotCoordinator));
            return;
        };
        let now_ms = (self.env.now_ms)();
        let appends: Result<Vec<_>, ResponseError> = writable
            .chunks(CHUNK)
            .map(|chunk| log::append(&slot.leader, chunk, format, now_ms))
            .collect();
        match appends {
            Ok(appends) => {
                slot.in_flight += 1;
                let back = self.tx.clone();
                tokio::spawn(async move {
                    let mut result = Ok(());
                    for append in appends {
                        if let Err(e) = append.await {
                            result = Err(e);
                        }
                    }
                    let _ = back.send(Command::Written(partition)).await;
                    let _ = tx.send(result);
                });
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
    }

    fn delete_groups(&mut self, groups: Vec<String>, tx: Tx<Vec<Option<ResponseError>>>) {
        let mut results = Vec::with_capacity(groups.len());
        let mut waits = Vec::new();
        for group in &groups {
            match self.core.delete_group(group) {
                Ok((partition, records)) => {
                    let (done, wait) = oneshot::channel();
                    self.write_then(partition, records, done);
                    results.push(None);
                    waits.push((results.len() - 1, wait));
                }
                Err(e) => results.push(Some(e)),
            }
        }
        tokio::spawn(async move {
            for (index, wait) in waits {
                let outcome = wait
                    .await
                    .unwrap_or(Err(ResponseError::CoordinatorNotAvailable));
                if let (Err(e), Some(slot)) = (outcome, results.get_mut(index)) {
                    *slot = Some(e);
                }
            }
            let _ = tx.send(results);
        });
    }

    fn attach(&mut self, leader: Arc<NodeLeader>) {
        let partition = leader.topic_partition().partition;
        self.core.begin_load(partition);
        self.slots.insert(
            partition,
            Slot {
                leader: leader.clone(),
                in_flight: 0,
                records: 0,
            },
        );
        let tx = self.tx.clone();
        log::spawn_replay_by(
            &leader,
            OFFSETS_TOPIC,
            log::replay_offsets,
            tx,
            Command::Loaded,
        );
    }

    /// Instead of a key-compacting cleaner: once superseded records outnumber the live ones
    /// (and at least [`SNAPSHOT_MIN_RECORDS`]), appends the live records again and moves the log
    /// start past everything older. Only with no write in flight, so everything below the
    /// snapshot is already reflected in what it copies; its batches are queued right here, so
    /// any later write lands after them.
    fn maybe_snapshot(&mut self, partition: i32) {
        let Some(slot) = self.slots.get(&partition) else {
            return;
        };
        // Pending transactional offsets live only in the log until their marker: a snapshot
        // (which carries committed state only) must not move the log start past them.
        if slot.in_flight > 0
            || !self.core.is_active(partition)
            || self.core.has_pending_txns(partition)
        {
            return;
        }
        let live = self.core.live_records(partition);
        if slot.records < SNAPSHOT_MIN_RECORDS.max(2 * live.len() as u64) {
            return;
        }
        let format = self.format();
        let live: Vec<Record> = live
            .into_iter()
            .filter(|r| r.encode(format).is_some())
            .collect();
        let now_ms = (self.env.now_ms)();
        let appends: Result<Vec<_>, ResponseError> = live
            .chunks(CHUNK)
            .map(|chunk| log::append(&slot.leader, chunk, format, now_ms))
            .collect();
        let Ok(appends) = appends else {
            return;
        };
        let log = slot.leader.log().clone();
        let count = live.len() as u64;
        if let Some(slot) = self.slots.get_mut(&partition) {
            slot.records = count;
        }
        tokio::spawn(async move {
            let mut first = None;
            for append in appends {
                match append.await {
                    Ok(base) => {
                        first.get_or_insert(base);
                    }
                    Err(e) => {
                        tracing::warn!(partition, error = ?e, "group snapshot not replicated");
                        return;
                    }
                }
            }
            let start = first.unwrap_or_else(|| log.log_end_offset());
            match tokio::task::spawn_blocking(move || log.delete_records_before(start)).await {
                Ok(Ok(_)) => tracing::info!(partition, live = count, start, "compacted groups"),
                Ok(Err(e)) => {
                    tracing::warn!(partition, error = %e, "group snapshot cleanup failed")
                }
                Err(e) => tracing::warn!(partition, error = %e, "group snapshot task failed"),
            }
        });
    }

    fn expire(&mut self) {
        let now_ms = (self.env.now_ms)();
        for (partition, records) in self.core.expire_offsets(now_ms) {
            tracing::info!(partition, records = records.len(), "expiring group offsets");
            let (tx, _rx) = oneshot::channel();
            self.write_then(partition, records, tx);
        }
    }

    fn publish_metrics(&mut self) {
        let stats = self.core.stats();
        group_metrics::groups(&stats);
        group_metrics::rebalances(stats.rebalances.saturating_sub(self.rebalances_reported));
        self.rebalances_reported = stats.rebalances;
        let lag: Vec<GroupLag> = self
            .core
            .all_offsets()
            .into_iter()
            .filter_map(|(group, topic, partition, committed)| {
                let hw = (self.env.high_watermark)(&topic, partition)?;
                Some((group, topic, partition, (hw - committed).max(0)))
            })
            .collect();
        *self
            .lag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = lag;
    }
}

/// The offset records of `entries` (topic, partition, value) committed by `group`.
fn offset_records(group: &str, entries: &[(String, i32, OffsetValue)]) -> Vec<Record> {
    entries
        .iter()
        .map(|(topic, partition, value)| Record::Offset {
            key: super::records::OffsetKey {
                group: group.to_string(),
                topic: topic.clone(),
                partition: *partition,
            },
            value: Some(value.clone()),
        })
        .collect()
}
