//! OffsetFetch: v1-7 for one group in top-level fields, v8+ for a list of groups. A partition
//! without a commit answers offset -1 and no error; `topics = null` asks for every commit.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::Broker;
use crate::group::CommittedOffset;

/// One partition's answer: (partition, commit if any).
type Answer = (i32, Option<CommittedOffset>);

/// Answers an OffsetFetch request.
pub fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    if ctx.version < 8 {
        let wanted = request.topics.map(|topics| {
            topics
                .into_iter()
                .map(|t| (t.name, t.partition_indexes))
                .collect()
        });
        let topics = lookup(broker, request.group_id.0.as_str(), wanted)
            .into_iter()
            .map(|(name, answers)| {
                let partitions = answers
                    .into_iter()
                    .map(|(p, c)| legacy_partition(p, c))
                    .collect();
                OffsetFetchResponseTopic::default()
                    .with_name(name)
                    .with_partitions(partitions)
            })
            .collect();
        return OffsetFetchResponse::default()
            .with_topics(topics)
            .with_error_code(group_error(broker, &request.group_id));
    }
    let groups = request
        .groups
        .into_iter()
        .map(|group| {
            let wanted = group.topics.map(|topics| {
                topics
                    .into_iter()
                    .map(|t| (t.name, t.partition_indexes))
                    .collect()
            });
            let topics = lookup(broker, group.group_id.0.as_str(), wanted)
                .into_iter()
                .map(|(name, answers)| {
                    let partitions = answers.into_iter().map(|(p, c)| partition(p, c)).collect();
                    OffsetFetchResponseTopics::default()
                        .with_name(name)
                        .with_partitions(partitions)
                })
                .collect();
            let error_code = group_error(broker, &group.group_id);
            OffsetFetchResponseGroup::default()
                .with_group_id(group.group_id)
                .with_topics(topics)
                .with_error_code(error_code)
        })
        .collect();
    OffsetFetchResponse::default().with_groups(groups)
}

fn group_error(broker: &Broker, group: &GroupId) -> i16 {
    let offsets = broker.groups();
    if group.0.is_empty() {
        ResponseError::InvalidGroupId.code()
    } else if !offsets.is_attached(offsets.partition_of(group.0.as_str())) {
        // Another node leads this group's offsets partition (FindCoordinator says which).
        ResponseError::NotCoordinator.code()
    } else {
        0
    }
}

/// Commits of `group` for the wanted partitions, or all of them.
fn lookup(
    broker: &Broker,
    group: &str,
    wanted: Option<Vec<(TopicName, Vec<i32>)>>,
) -> Vec<(TopicName, Vec<Answer>)> {
    let offsets = broker.groups();
    match wanted {
        Some(topics) => topics
            .into_iter()
            .map(|(name, partitions)| {
                let answers = partitions
                    .into_iter()
                    .map(|p| (p, offsets.fetch(group, name.0.as_str(), p)))
                    .collect();
                (name, answers)
            })
            .collect(),
        None => {
            let mut out: Vec<(TopicName, Vec<Answer>)> = Vec::new();
            for (topic, partition, commit) in offsets.fetch_group(group) {
                match out.last_mut() {
                    Some((name, answers)) if name.0.as_str() == topic => {
                        answers.push((partition, Some(commit)))
                    }
                    _ => out.push((
                        TopicName(StrBytes::from_string(topic)),
                        vec![(partition, Some(commit))],
                    )),
                }
            }
            out
        }
    }
}

fn fields(commit: Option<CommittedOffset>) -> (i64, i32, StrBytes) {
    match commit {
        Some(c) => (c.offset, c.leader_epoch, StrBytes::from_string(c.metadata)),
        None => (-1, -1, StrBytes::default()),
    }
}

fn legacy_partition(index: i32, commit: Option<CommittedOffset>) -> OffsetFetchResponsePartition {
    let (offset, epoch, metadata) = fields(commit);
    OffsetFetchResponsePartition::default()
        .with_partition_index(index)
        .with_committed_offset(offset)
        .with_committed_leader_epoch(epoch)
        .with_metadata(Some(metadata))
}

fn partition(index: i32, commit: Option<CommittedOffset>) -> OffsetFetchResponsePartitions {
    let (offset, epoch, metadata) = fields(commit);
    OffsetFetchResponsePartitions::default()
        .with_partition_index(index)
        .with_committed_offset(offset)
        .with_committed_leader_epoch(epoch)
        .with_metadata(Some(metadata))
}
