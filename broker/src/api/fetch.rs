//! Fetch: whole batches up to the high watermark (read_uncommitted), the last stable offset with
//! the aborted transactions of the range (read_committed), or the log end (a follower), within the
//! request's byte limits, with `max_wait_ms` / `min_bytes` long-polling on the partitions' offset
//! watches (no busy polling). Each partition is read through its [`Leader`]; a follower's fetch
//! is recorded there first ([`Leader::replica_fetch`]: the leader's half of replication).
//!
//! [`Leader`]: crate::partition::Leader
//! [`Leader::replica_fetch`]: crate::partition::Leader::replica_fetch
//!
//! Fetch sessions (KIP-227) are not kept: every response carries session id 0, which tells clients
//! to send full requests, as Kafka does when its session cache is full.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::select_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId, TopicName};
use rafka_store::{LogOffsets, StoreError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::RequestContext;
use crate::ids::{BrokerEpoch, LeaderEpoch, NodeId, Offset};
use crate::metadata::{MetadataImage, TopicImage};
use crate::partition::{NodeLeader, Reader};
use crate::{Broker, metrics};

/// One requested partition, resolved.
struct Target {
    topic: usize,
    partition: i32,
    state: TargetState,
}

enum TargetState {
    Failed(ResponseError, Option<(NodeId, i32)>),
    Readable {
        leader: Arc<NodeLeader>,
        fetch_offset: Offset,
        max_bytes: usize,
        /// A follower's fetch reads up to the log end; a consumer's up to the high watermark or,
        /// reading committed records, the last stable offset.
        reader: Reader,
    },
}

/// A follower fetching as a replica: its node id and broker epoch.
#[derive(Clone, Copy)]
struct Replica {
    node: NodeId,
    broker_epoch: BrokerEpoch,
}

fn replica_of(request: &FetchRequest, version: i16) -> Option<Replica> {
    let (node, broker_epoch) = if version >= 15 {
        (
            request.replica_state.replica_id.0,
            request.replica_state.replica_epoch,
        )
    } else {
        (request.replica_id.0, -1)
    };
    (node >= 0).then_some(Replica {
        node: NodeId(node),
        broker_epoch: BrokerEpoch(broker_epoch),
    })
}

/// Answers a Fetch request, waiting up to `max_wait_ms` for `min_bytes`.
pub async fn handle(broker: Broker, ctx: RequestContext, request: FetchRequest) -> FetchResponse {
    if ctx.version >= 7 && request.session_id != 0 {
        return FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code());
    }
    let mut images = broker.metadata().subscribe();
    let image = images.borrow_and_update().clone();
    let topics: Vec<(TopicName, Uuid)> = request
        .topics
        .iter()
        .map(|t| (t.topic.clone(), t.topic_id))
        .collect();
    let mut targets = Arc::new(resolve_all(&broker, &image, &request, ctx.version));
    let max_wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0));
    let deadline = tokio::time::Instant::from_std(ctx.received) + max_wait;
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let max_bytes = usize::try_from(request.max_bytes).unwrap_or(usize::MAX);
    let mut watches = watches(&targets);
    loop {
        let reading = targets.clone();
        let read = tokio::task::spawn_blocking(move || read_all(&reading, max_bytes)).await;
        let (partitions, bytes, has_error) = match read {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(error = %e, "fetch read task failed");
                return FetchResponse::default()
                    .with_error_code(ResponseError::UnknownServerError.code());
            }
        };
        let done = bytes >= min_bytes.max(1)
            || has_error
            || tokio::time::Instant::now() >= deadline
            || broker.shutdown_token().is_cancelled();
        let wake = if done {
            Wake::Respond
        } else {
            wait_for_change(&mut watches, &mut images, deadline, broker.shutdown_token()).await
        };
        match wake {
            Wake::Data => {}
            // A topic deleted or a leader moved: resolve again, so a parked fetch answers with
            // the partition's error now rather than at max_wait (as Kafka completes it).
            Wake::Metadata => {
                let image = images.borrow_and_update().clone();
                targets = Arc::new(resolve_all(&broker, &image, &request, ctx.version));
                watches = self::watches(&targets);
            }
            Wake::Respond => {
                metrics::fetch_bytes(bytes);
                return build(&topics, partitions, ctx.version);
            }
        }
    }
}

/// Every requested partition against `image`, in request order.
fn resolve_all(
    broker: &Broker,
    image: &MetadataImage,
    request: &FetchRequest,
    version: i16,
) -> Vec<Target> {
    let unknown = if version >= 13 {
        ResponseError::UnknownTopicId
    } else {
        ResponseError::UnknownTopicOrPartition
    };
    let replica = replica_of(request, version);
    // Kafka's isolation levels: 0 read_uncommitted, 1 read_committed.
    let consumer = if request.isolation_level == 1 {
        Reader::Consumer
    } else {
        Reader::Uncommitted
    };
    let mut targets = Vec::new();
    for (index, topic) in request.topics.iter().enumerate() {
        let resolved = if version >= 13 {
            image.topic_by_id(&topic.topic_id)
        } else {
            image.topic(topic.topic.0.as_str())
        };
        for partition in &topic.partitions {
            let state = match resolved {
                Some(t) => resolve(broker, t, partition, (replica, consumer)),
                None => TargetState::Failed(unknown, None),
            };
            targets.push(Target {
                topic: index,
                partition: partition.partition,
                state,
            });
        }
    }
    targets
}

fn resolve(
    broker: &Broker,
    topic: &TopicImage,
    partition: &FetchPartition,
    (replica, consumer): (Option<Replica>, Reader),
) -> TargetState {
    let Some(image) = usize::try_from(partition.partition)
        .ok()
        .and_then(|i| topic.partitions.get(i))
    else {
        return TargetState::Failed(ResponseError::UnknownTopicOrPartition, None);
    };
    let current_leader = Some((image.leader, image.leader_epoch));
    let tp = rafka_store::TopicPartition {
        topic_id: topic.id,
        partition: partition.partition,
    };
    let Some(leader) = broker.partitions().leader(&tp) else {
        return TargetState::Failed(ResponseError::NotLeaderOrFollower, current_leader);
    };
    let epoch = LeaderEpoch(partition.current_leader_epoch);
    let fetch_offset = Offset(partition.fetch_offset);
    let (checked, reader, leader_hint) = match replica {
        // The leader's half of replication: the follower's position, the high watermark, the ISR.
        Some(replica) => {
            let recorded =
                leader.replica_fetch(replica.node, replica.broker_epoch, epoch, fetch_offset);
            (recorded, Reader::Replica, current_leader)
        }
        None => (leader.check_epoch(epoch), consumer, None),
    };
    match checked {
        Ok(()) => TargetState::Readable {
            leader,
            fetch_offset,
            max_bytes: usize::try_from(partition.partition_max_bytes).unwrap_or(0),
            reader,
        },
        Err(e) => {
            let code = ResponseError::try_from_code(e.kafka_code())
                .unwrap_or(ResponseError::UnknownServerError);
            TargetState::Failed(code, leader_hint)
        }
    }
}

fn watches(targets: &[Target]) -> Vec<watch::Receiver<LogOffsets>> {
    targets
        .iter()
        .filter_map(|t| match &t.state {
            TargetState::Readable { leader, .. } => {
                let mut rx = leader.log().subscribe();
                rx.borrow_and_update();
                Some(rx)
            }
            TargetState::Failed(..) => None,
        })
        .collect()
}

/// Why a parked fetch woke up.
enum Wake {
    /// A partition's offsets changed: read again.
    Data,
    /// The metadata changed: resolve the partitions again, then read.
    Metadata,
    /// The deadline passed or the node is shutting down: answer with what was read.
    Respond,
}

/// Waits until any partition's offsets or the metadata change, the deadline passes, or the node
/// shuts down (a parked fetch is answered with what it has rather than holding up the shutdown).
async fn wait_for_change(
    watches: &mut [watch::Receiver<LogOffsets>],
    images: &mut watch::Receiver<Arc<MetadataImage>>,
    deadline: tokio::time::Instant,
    shutdown: &CancellationToken,
) -> Wake {
    let data = async {
        if watches.is_empty() {
            return std::future::pending().await;
        }
        let changes = select_all(watches.iter_mut().map(|rx| Box::pin(rx.changed())));
        match changes.await {
            (Ok(()), _, _) => Wake::Data,
            // A partition's log went away: its topic was deleted.
            (Err(_), _, _) => Wake::Metadata,
        }
    };
    tokio::select! {
        wake = data => wake,
        changed = images.changed() => match changed {
            Ok(()) => Wake::Metadata,
            Err(_) => Wake::Respond,
        },
        () = tokio::time::sleep_until(deadline) => Wake::Respond,
        () = shutdown.cancelled() => Wake::Respond,
    }
}

/// Reads every target within the byte limits: (partition responses, bytes, any error).
fn read_all(targets: &[Target], max_bytes: usize) -> (Vec<(usize, PartitionData)>, usize, bool) {
    let mut total = 0usize;
    let mut has_error = false;
    let mut out = Vec::with_capacity(targets.len());
    for target in targets {
        let data = PartitionData::default().with_partition_index(target.partition);
        let data = match &target.state {
            TargetState::Failed(code, leader) => {
                has_error = true;
                failed(data, *code, *leader)
            }
            TargetState::Readable {
                leader,
                fetch_offset,
                max_bytes: partition_max,
                reader,
            } => {
                let budget = (*partition_max).min(max_bytes.saturating_sub(total));
                match read_partition(leader, *fetch_offset, budget, (total == 0, *reader)) {
                    Ok((data, bytes)) => {
                        total += bytes;
                        data.with_partition_index(target.partition)
                    }
                    Err(e) => {
                        has_error = true;
                        let code = ResponseError::try_from_code(e.kafka_code())
                            .unwrap_or(ResponseError::UnknownServerError);
                        failed(data, code, None)
                            .with_high_watermark(leader.high_watermark().0)
                            .with_last_stable_offset(leader.last_stable_offset().0)
                            .with_log_start_offset(leader.log().log_start_offset())
                    }
                }
            }
        };
        out.push((target.topic, data));
    }
    (out, total, has_error)
}

fn failed(
    data: PartitionData,
    code: ResponseError,
    leader: Option<(NodeId, i32)>,
) -> PartitionData {
    let data = data.with_error_code(code.code()).with_high_watermark(-1);
    match leader {
        Some((id, epoch)) => data.with_current_leader(
            LeaderIdAndEpoch::default()
                .with_leader_id(id.into())
                .with_leader_epoch(epoch),
        ),
        None => data,
    }
}

/// One partition: its batches from `offset` up to what the reader may see (the high watermark,
/// the last stable offset with the aborted transactions of the batches read, or the log end).
fn read_partition(
    leader: &NodeLeader,
    offset: Offset,
    budget: usize,
    (first, reader): (bool, Reader),
) -> Result<(PartitionData, usize), StoreError> {
    let read = leader.read(reader, offset, budget)?;
    let aborted = read.aborted.map(|aborted| {
        aborted
            .iter()
            .map(|a| {
                AbortedTransaction::default()
                    .with_producer_id(ProducerId(a.producer_id))
                    .with_first_offset(a.first_offset)
            })
            .collect()
    });
    let data = PartitionData::default()
        .with_high_watermark(read.high_watermark.0)
        .with_last_stable_offset(read.last_stable_offset.0)
        .with_log_start_offset(read.log_start.0)
        .with_aborted_transactions(aborted);
    let size: usize = read.batches.iter().map(Bytes::len).sum();
    // KIP-74: only the first partition with data may exceed the budget (by its first batch).
    if size > budget && !first {
        return Ok((data.with_records(Some(Bytes::new())), 0));
    }
    Ok((data.with_records(Some(concat(read.batches, size))), size))
}

fn concat(mut batches: Vec<Bytes>, size: usize) -> Bytes {
    if batches.len() == 1 {
        return batches.pop().unwrap_or_default();
    }
    let mut buf = BytesMut::with_capacity(size);
    for batch in &batches {
        buf.extend_from_slice(batch);
    }
    buf.freeze()
}

fn build(
    topics: &[(TopicName, Uuid)],
    partitions: Vec<(usize, PartitionData)>,
    version: i16,
) -> FetchResponse {
    let mut responses: Vec<FetchableTopicResponse> = topics
        .iter()
        .map(|(name, id)| {
            FetchableTopicResponse::default()
                .with_topic(name.clone())
                .with_topic_id(*id)
        })
        .collect();
    for (topic, data) in partitions {
        if let Some(response) = responses.get_mut(topic) {
            let data = if version < 12 {
                data.with_current_leader(LeaderIdAndEpoch::default())
            } else {
                data
            };
            response.partitions.push(data);
        }
    }
    FetchResponse::default().with_responses(responses)
}
