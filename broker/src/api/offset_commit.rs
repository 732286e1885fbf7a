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
use crate::metadata::{Feature, MetadataImage, TopicImage};

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

/// An offset commit's partitions checked one by one (OffsetCommit and TxnOffsetCommit).
pub(super) struct CheckedCommit {
    /// What to write: (topic, partition, value).
    pub entries: Vec<(String, i32, OffsetValue)>,
    /// Per topic of the request, in its order: each partition and the error it was refused with
    /// here (`None`: the commit's outcome answers it).
    pub topics: Vec<Vec<(i32, Option<i16>)>>,
}

impl CheckedCommit {
    /// Checks every partition of `topics` (name, partitions) against `image`.
    pub(super) fn of<'a, P>(
        image: &MetadataImage,
        topics: impl IntoIterator<Item = (&'a str, P)>,
        now: i64,
    ) -> Self
    where
        P: IntoIterator<Item = PartitionCommit<'a>>,
    {
        let mut entries = Vec::new();
        let topics = topics
            .into_iter()
            .map(|(name, partitions)| {
                let known = image.topic(name).map(|k| &**k);
                partitions
                    .into_iter()
                    .map(|commit| match commit.checked(known, now) {
                        Ok(value) => {
                            entries.push((name.to_string(), commit.index, value));
                            (commit.index, None)
                        }
                        Err(e) => (commit.index, Some(e.code())),
                    })
                    .collect()
            })
            .collect();
        CheckedCommit { entries, topics }
    }
}

/// Answers an OffsetCommit request.
pub async fn handle(broker: Broker, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let group = request.group_id.0.to_string();
    let image = broker.image();
    let now = now_ms();
    let topics = request.topics.iter().map(|topic| {
        let partitions = topic.partitions.iter().map(|p| PartitionCommit {
            index: p.partition_index,
            offset: p.committed_offset,
            leader_epoch: p.committed_leader_epoch,
            metadata: p.committed_metadata.as_deref(),
        });
        (topic.name.0.as_str(), partitions)
    });
    let CheckedCommit {
        entries,
        topics: checked,
    } = CheckedCommit::of(&image, topics, now);
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
        .zip(checked)
        .map(|(topic, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(partition, code)| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(partition)
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
