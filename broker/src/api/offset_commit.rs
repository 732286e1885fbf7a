//! OffsetCommit. Group membership is not implemented yet, so only the "simple consumer" commit is
//! accepted: generation -1 and an empty member id (assign + commit, as kcat and `rafka consume
//! --group` do). A commit naming a member or generation gets UNKNOWN_MEMBER_ID, as Kafka answers
//! for an empty group.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::RequestContext;
use super::produce::now_ms;
use crate::Broker;
use crate::group::{CommitError, CommittedOffset};
use crate::partition::core::ReplicaError;

/// Answers an OffsetCommit request.
pub async fn handle(
    broker: &Broker,
    _ctx: &RequestContext,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let group = request.group_id.0.to_string();
    let simple = request.generation_id_or_member_epoch < 0 && request.member_id.is_empty();
    let image = broker.image();
    let now = now_ms();
    let mut entries = Vec::new();
    let mut results: Vec<(usize, i32, i16)> = Vec::new();
    for (t, topic) in request.topics.iter().enumerate() {
        let name = topic.name.0.to_string();
        let known = image.topic(&name);
        for p in &topic.partitions {
            let code = if group.is_empty() {
                ResponseError::InvalidGroupId.code()
            } else if !simple {
                ResponseError::UnknownMemberId.code()
            } else if known.is_none_or(|k| {
                usize::try_from(p.partition_index).map_or(true, |i| i >= k.partitions.len())
            }) {
                ResponseError::UnknownTopicOrPartition.code()
            } else if p
                .committed_metadata
                .as_ref()
                .is_some_and(|m| m.len() > 4096)
            {
                ResponseError::OffsetMetadataTooLarge.code()
            } else {
                let value = CommittedOffset {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    commit_timestamp: now,
                    metadata: p
                        .committed_metadata
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                };
                entries.push((name.clone(), p.partition_index, value));
                -1
            };
            results.push((t, p.partition_index, code));
        }
    }
    let outcome = if entries.is_empty() {
        0
    } else {
        commit(broker, &group, entries, now).await
    };
    let topics = request
        .topics
        .iter()
        .enumerate()
        .map(|(t, topic)| {
            let partitions = results
                .iter()
                .filter(|(rt, _, _)| *rt == t)
                .map(|(_, partition, code)| {
                    let code = if *code < 0 { outcome } else { *code };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(*partition)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// A commit is an acks=all write of the group's offsets partition, through the partition's
/// leader on this node (see `group/offsets.rs`).
async fn commit(
    broker: &Broker,
    group: &str,
    entries: Vec<(String, i32, CommittedOffset)>,
    now: i64,
) -> i16 {
    if broker.image().topic(crate::group::OFFSETS_TOPIC).is_none() {
        return ResponseError::CoordinatorNotAvailable.code();
    }
    let groups = broker.groups();
    if !groups.is_attached(groups.partition_of(group)) {
        return ResponseError::NotCoordinator.code();
    }
    match groups.commit(group, entries, now).await {
        Ok(()) => 0,
        Err(CommitError::MetadataTooLarge(_)) => ResponseError::OffsetMetadataTooLarge.code(),
        Err(CommitError::NotCoordinator) => ResponseError::NotCoordinator.code(),
        Err(CommitError::NameTooLong) => ResponseError::InvalidRequest.code(),
        Err(CommitError::Replication(e)) => replication_code(&e),
        Err(CommitError::Store(e)) => {
            tracing::warn!(group, error = %e, "offset commit failed");
            ResponseError::CoordinatorNotAvailable.code()
        }
    }
}

/// The commit error a replication failure maps to, as Kafka's group coordinator answers: this
/// node no longer leading is NOT_COORDINATOR (the client looks the coordinator up again);
/// too few in-sync replicas or a timeout is COORDINATOR_NOT_AVAILABLE (it retries).
fn replication_code(e: &ReplicaError) -> i16 {
    match e {
        ReplicaError::NotLeaderOrFollower => ResponseError::NotCoordinator.code(),
        _ => ResponseError::CoordinatorNotAvailable.code(),
    }
}
