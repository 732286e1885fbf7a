//! The follower side of replication on this node: one task per partition it follows, driving a
//! [`FollowerState`] with requests to the leader over the mesh (OffsetForLeaderEpoch, ListOffsets,
//! Fetch as a replica with this node's broker epoch) and appends, truncations and high watermarks
//! on the local log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use rafka_store::{PartitionLog, TopicPartition};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::peer::Peers;
use crate::ids::{BrokerEpoch, LeaderEpoch, NodeId, Offset};
use crate::metadata::{Metadata, MetadataImage};
use crate::replication::{
    EpochEndOffset, FetchError, FollowerAction, FollowerConfig, FollowerState, LeaderOffsets,
};

/// Fetch version followers send (v15: the replica state with the broker epoch).
const FETCH_VERSION: i16 = 15;
/// How long a follower's fetch may wait at the leader for new records.
const FETCH_MAX_WAIT_MS: i32 = 500;
/// Bytes per partition per fetch (Kafka's replica.fetch.max.bytes).
const FETCH_PARTITION_MAX_BYTES: i32 = 1 << 20;
/// Requests other than the long-polling fetch.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The partitions this node follows (cheap to clone).
#[derive(Clone)]
pub struct Followers {
    inner: Arc<Inner>,
}

struct Inner {
    local: NodeId,
    broker_epoch: BrokerEpoch,
    peers: Peers,
    metadata: Metadata,
    tasks: Mutex<HashMap<TopicPartition, Task>>,
    shutdown: CancellationToken,
}

struct Task {
    leader: watch::Sender<(NodeId, LeaderEpoch)>,
    stop: CancellationToken,
}

impl Followers {
    /// No partitions followed yet.
    pub fn new(
        local: NodeId,
        broker_epoch: BrokerEpoch,
        peers: Peers,
        metadata: Metadata,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                local,
                broker_epoch,
                peers,
                metadata,
                tasks: Mutex::new(HashMap::new()),
                shutdown,
            }),
        }
    }

    /// Starts, retargets and stops follower tasks to match `image`.
    pub fn sync(
        &self,
        image: &MetadataImage,
        logs: impl Fn(TopicPartition) -> Option<PartitionLog>,
    ) {
        let mut wanted = HashMap::new();
        for topic in image.topics() {
            for p in &topic.partitions {
                let follows = p.leader.is_some()
                    && p.leader != self.inner.local
                    && p.replicas.contains(&self.inner.local);
                if follows {
                    let tp = TopicPartition {
                        topic_id: topic.id,
                        partition: p.index,
                    };
                    wanted.insert(tp, (p.leader, LeaderEpoch(p.leader_epoch)));
                }
            }
        }
        let mut tasks = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tasks.retain(|tp, task| {
            let keep = wanted.contains_key(tp) && !task.stop.is_cancelled();
            if !keep {
                task.stop.cancel();
            }
            keep
        });
        for (tp, leader) in wanted {
            if let Some(task) = tasks.get(&tp) {
                task.leader.send_if_modified(|current| {
                    let newer = *current != leader;
                    *current = leader;
                    newer
                });
                continue;
            }
            let Some(log) = logs(tp) else { continue };
            let (tx, rx) = watch::channel(leader);
            let stop = self.inner.shutdown.child_token();
            tracing::info!(topic_id = %tp.topic_id, partition = tp.partition, leader = leader.0.0, leader_epoch = leader.1.0, "following partition");
            tokio::spawn(follow(self.inner.clone(), tp, log, rx, stop.clone()));
            tasks.insert(tp, Task { leader: tx, stop });
        }
    }
}

/// Drives one partition's follower core until `stop`.
async fn follow(
    inner: Arc<Inner>,
    tp: TopicPartition,
    log: PartitionLog,
    mut leaders: watch::Receiver<(NodeId, LeaderEpoch)>,
    stop: CancellationToken,
) {
    let started = Instant::now();
    let now = || started.elapsed();
    let (leader, epoch) = *leaders.borrow_and_update();
    let mut state = FollowerState::new(leader, epoch, FollowerConfig::default(), &log);
    let ctx = Ctx { inner: &inner, tp };
    loop {
        // Compared with what the core follows (not `has_changed`: a wait below may have seen the
        // change already).
        let (leader, epoch) = *leaders.borrow_and_update();
        if (leader, epoch) != (state.leader(), state.leader_epoch()) {
            state.on_metadata(leader, epoch, &log);
        }
        let Some(action) = state.poll_action() else {
            // Fenced: nothing to do until newer metadata.
            tokio::select! {
                changed = leaders.changed() => if changed.is_err() { return },
                () = stop.cancelled() => return,
            }
            continue;
        };
        if stop.is_cancelled() {
            return;
        }
        match action {
            FollowerAction::SendOffsetForLeaderEpoch {
                request,
                leader,
                leader_epoch,
                epoch,
            } => {
                let reply = ctx.epoch_end(leader, leader_epoch, epoch).await;
                state.on_epoch_end_offset(request, reply, &log, now());
            }
            FollowerAction::ListLeaderOffsets {
                request,
                leader,
                leader_epoch,
            } => {
                let reply = ctx.leader_offsets(leader, leader_epoch).await;
                state.on_leader_offsets(request, reply, &log, now());
            }
            FollowerAction::Truncate { request, to } => {
                let log2 = log.clone();
                match tokio::task::spawn_blocking(move || log2.truncate_to(to.0)).await {
                    Ok(Ok(end)) => {
                        tracing::info!(topic_id = %tp.topic_id, partition = tp.partition, to = to.0, end, "truncated to the leader's log");
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "truncation failed"),
                    Err(e) => tracing::warn!(error = %e, "truncation task failed"),
                }
                state.on_truncated(request, &log);
            }
            FollowerAction::Reset { request, offset } => {
                let log2 = log.clone();
                match tokio::task::spawn_blocking(move || log2.reset_to(offset.0)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "log reset failed"),
                    Err(e) => tracing::warn!(error = %e, "log reset task failed"),
                }
                state.on_truncated(request, &log);
            }
            FollowerAction::Fetch {
                request,
                leader,
                leader_epoch,
                offset,
            } => {
                // A new leader ends a fetch to the old one at once (it may be dead).
                let fetched = tokio::select! {
                    fetched = ctx.fetch(leader, leader_epoch, offset) => fetched,
                    _ = leaders.changed() => {
                        let (leader, epoch) = *leaders.borrow_and_update();
                        state.on_metadata(leader, epoch, &log);
                        continue;
                    }
                    () = stop.cancelled() => return,
                };
                let reply = match fetched {
                    Ok((hw, records)) if !records.is_empty() => {
                        if state.accepts_records(request, &log) {
                            match log.append_replicated(records).await {
                                Ok(_) => Ok(hw),
                                Err(e) => {
                                    tracing::warn!(topic_id = %tp.topic_id, partition = tp.partition, error = %e, "refused fetched records");
                                    Err(FetchError::CorruptBatch { offset })
                                }
                            }
                        } else {
                            Ok(hw)
                        }
                    }
                    other => other.map(|(hw, _)| hw),
                };
                state.on_fetch(request, reply, &log, now());
            }
            FollowerAction::SetHighWatermark(hw) => {
                if let Err(e) = log.advance_high_watermark(hw.0) {
                    tracing::debug!(error = %e, "cannot advance the follower's high watermark");
                }
            }
            FollowerAction::Backoff { until } => {
                let wait = until.saturating_sub(now());
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = leaders.changed() => {}
                    () = stop.cancelled() => return,
                }
                state.tick(now(), &log);
            }
        }
    }
}

struct Ctx<'a> {
    inner: &'a Inner,
    tp: TopicPartition,
}

impl Ctx<'_> {
    /// One request to the leader over the mesh; a failure to get an answer is transient.
    async fn ask<Req, Resp>(
        &self,
        image: &MetadataImage,
        leader: NodeId,
        key: ApiKey,
        version: i16,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, FetchError>
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        self.inner
            .peers
            .call(image, leader, key, version, request, timeout)
            .await
            .map_err(|error| {
                tracing::debug!(%error, "{key:?} to the leader failed");
                FetchError::Transient
            })
    }

    fn topic_name(&self, image: &MetadataImage) -> Result<TopicName, FetchError> {
        image
            .topic_by_id(&self.tp.topic_id)
            .map(|t| TopicName(StrBytes::from_string(t.name.clone())))
            .ok_or(FetchError::Transient)
    }

    async fn epoch_end(
        &self,
        leader: NodeId,
        leader_epoch: LeaderEpoch,
        epoch: LeaderEpoch,
    ) -> Result<Option<EpochEndOffset>, FetchError> {
        let image = self.inner.metadata.image();
        let request = OffsetForLeaderEpochRequest::default()
            .with_replica_id(self.inner.local.into())
            .with_topics(vec![
                OffsetForLeaderTopic::default()
                    .with_topic(self.topic_name(&image)?)
                    .with_partitions(vec![
                        OffsetForLeaderPartition::default()
                            .with_partition(self.tp.partition)
                            .with_current_leader_epoch(leader_epoch.0)
                            .with_leader_epoch(epoch.0),
                    ]),
            ]);
        let response: OffsetForLeaderEpochResponse = self
            .ask(
                &image,
                leader,
                ApiKey::OffsetForLeaderEpoch,
                4,
                &request,
                REQUEST_TIMEOUT,
            )
            .await?;
        let answer = response
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or(FetchError::Transient)?;
        leader_answer(answer.error_code)?;
        Ok(
            (answer.leader_epoch >= 0 && answer.end_offset >= 0).then_some(EpochEndOffset {
                epoch: LeaderEpoch(answer.leader_epoch),
                end_offset: Offset(answer.end_offset),
            }),
        )
    }

    async fn leader_offsets(
        &self,
        leader: NodeId,
        leader_epoch: LeaderEpoch,
    ) -> Result<LeaderOffsets, FetchError> {
        let mut offsets = [0i64; 2];
        for (slot, timestamp) in offsets.iter_mut().zip([-2i64, -1]) {
            let image = self.inner.metadata.image();
            let request = ListOffsetsRequest::default()
                .with_replica_id(self.inner.local.into())
                .with_topics(vec![
                    ListOffsetsTopic::default()
                        .with_name(self.topic_name(&image)?)
                        .with_partitions(vec![
                            ListOffsetsPartition::default()
                                .with_partition_index(self.tp.partition)
                                .with_current_leader_epoch(leader_epoch.0)
                                .with_timestamp(timestamp),
                        ]),
                ]);
            let response: ListOffsetsResponse = self
                .ask(
                    &image,
                    leader,
                    ApiKey::ListOffsets,
                    7,
                    &request,
                    REQUEST_TIMEOUT,
                )
                .await?;
            let answer = response
                .topics
                .first()
                .and_then(|t| t.partitions.first())
                .ok_or(FetchError::Transient)?;
            leader_answer(answer.error_code)?;
            *slot = answer.offset;
        }
        Ok(LeaderOffsets {
            log_start: Offset(offsets[0]),
            log_end: Offset(offsets[1]),
        })
    }

    /// One fetch as a replica: the leader's high watermark and the records.
    async fn fetch(
        &self,
        leader: NodeId,
        leader_epoch: LeaderEpoch,
        offset: Offset,
    ) -> Result<(Offset, Bytes), FetchError> {
        let image = self.inner.metadata.image();
        let request = FetchRequest::default()
            .with_replica_state(
                ReplicaState::default()
                    .with_replica_id(self.inner.local.into())
                    .with_replica_epoch(self.inner.broker_epoch.0),
            )
            .with_max_wait_ms(FETCH_MAX_WAIT_MS)
            .with_min_bytes(1)
            .with_max_bytes(FETCH_PARTITION_MAX_BYTES * 8)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic_id(self.tp.topic_id)
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(self.tp.partition)
                            .with_current_leader_epoch(leader_epoch.0)
                            .with_fetch_offset(offset.0)
                            .with_last_fetched_epoch(-1)
                            .with_log_start_offset(-1)
                            .with_partition_max_bytes(FETCH_PARTITION_MAX_BYTES),
                    ]),
            ]);
        let timeout = REQUEST_TIMEOUT + Duration::from_millis(FETCH_MAX_WAIT_MS as u64);
        let response: FetchResponse = self
            .ask(
                &image,
                leader,
                ApiKey::Fetch,
                FETCH_VERSION,
                &request,
                timeout,
            )
            .await?;
        leader_answer(response.error_code)?;
        let partition = response
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or(FetchError::Transient)?;
        leader_answer(partition.error_code)?;
        Ok((
            Offset(partition.high_watermark),
            partition.records.clone().unwrap_or_default(),
        ))
    }
}

/// The leader's error code as the core sees it. NOT_LEADER_OR_FOLLOWER and UNKNOWN_LEADER_EPOCH
/// while this node's metadata names that leader at that epoch mean the leader has not applied it
/// yet (or restarted): retry after the backoff, as Kafka's fetcher does, rather than wait for
/// metadata that may never change again. FENCED_LEADER_EPOCH (ours is older) waits for it.
/// An error code in the leader's answer as what the follower does about it (a leader that no
/// longer leads, or leads in an epoch this node does not know yet, is retried like a timeout).
fn leader_answer(code: i16) -> Result<(), FetchError> {
    match FetchError::from_kafka_code(code) {
        None => Ok(()),
        Some(FetchError::NotLeaderOrFollower | FetchError::UnknownLeaderEpoch) => {
            Err(FetchError::Transient)
        }
        Some(other) => Err(other),
    }
}
