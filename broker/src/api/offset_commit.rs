//! OffsetCommit v2-9: fenced by generation and member (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID,
//! FENCED_INSTANCE_ID, REBALANCE_IN_PROGRESS while the group waits for its assignment);
//! generation -1 without a member is the simple consumer's commit, accepted while the group has
//! no members. The commit is an acks=all write of the group's offsets partition, pipelined with
//! the partition's other writes, and answered once replicated.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::produce::now_ms;
use crate::Broker;
use crate::group::core::MemberRef;
use crate::group::records::{Format, OffsetValue};
use crate::metadata::Feature;
use crate::metadata::TopicImage;

/// The longest metadata string a commit may carry (Kafka's `offset.metadata.max.bytes`).
const MAX_METADATA_BYTES: usize = 4096;

/// One partition of an offset commit, as OffsetCommit and TxnOffsetCommit both carry it.
pub(super) struct PartitionCommit<'a> {
    pub index: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<&'a str>,
}

impl PartitionCommit<'_> {
    /// The value to write for this partition of `topic` (`None`: unknown), or the error it is
    /// answered with before anything is written.
    pub(super) fn checked(
        &self,
        topic: Option<&TopicImage>,
        now: i64,
    ) -> Result<OffsetValue, ResponseError> {
        let known = topic
            .is_some_and(|k| usize::try_from(self.index).is_ok_and(|i| i < k.partitions.len()));
        if !known {
            return Err(ResponseError::UnknownTopicOrPartition);
        }
        if self.metadata.is_some_and(|m| m.len() > MAX_METADATA_BYTES) {
            return Err(ResponseError::OffsetMetadataTooLarge);
        }
        Ok(OffsetValue {
            offset: self.offset,
            leader_epoch: self.leader_epoch,
            metadata: self.metadata.unwrap_or_default().to_string(),
            commit_timestamp: now,
        })
    }
}

/// Answers an OffsetCommit request.
pub async fn handle(broker: Broker, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let group = request.group_id.0.to_string();
    let image = broker.image();
    let now = now_ms();
    let mut entries = Vec::new();
    // Per partition: Some(code) decided here, None for "the commit's outcome".
    let mut results: Vec<(usize, i32, Option<i16>)> = Vec::new();
    for (t, topic) in request.topics.iter().enumerate() {
        let name = topic.name.0.to_string();
        let known = image.topic(&name);
        for p in &topic.partitions {
            let commit = PartitionCommit {
                index: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_deref(),
            };
            let code = match commit.checked(known.map(|k| &**k), now) {
                Ok(value) => {
                    entries.push((name.clone(), p.partition_index, value));
                    None
                }
                Err(e) => Some(e.code()),
            };
            results.push((t, p.partition_index, code));
        }
    }
    let member = MemberRef {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|i| i.to_string()),
    };
    let format = if image.features().enabled(Feature::GroupRecords) {
        Format::Kafka
    } else {
        Format::Legacy
    };
    let outcome = if group.is_empty() {
        ResponseError::InvalidGroupId.code()
    } else if entries.is_empty() {
        0
    } else {
        let generation = request.generation_id_or_member_epoch;
        let committed = broker
            .groups()
            .commit(group, generation, member, entries, format, now)
            .await;
        committed.err().map_or(0, |e| e.code())
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
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(*partition)
                        .with_error_code(code.unwrap_or(outcome))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
