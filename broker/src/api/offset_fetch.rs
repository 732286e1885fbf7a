//! OffsetFetch: v1-7 for one group in top-level fields, v8+ for a list of groups. A partition
//! without a commit answers offset -1 and no error; `topics = null` asks for every commit.
//! v1 has no group-level error code, so a group's error goes on each partition there.
//! Offsets a transaction committed are returned only once its commit marker is written; with
//! `require_stable` (v7+, librdkafka sets it) a partition with such a pending commit answers
//! UNSTABLE_OFFSET_COMMIT (offset -1), which clients retry, as Kafka does.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::Broker;
use crate::group::records::OffsetValue;

/// One partition's answer: (partition, commit if any, error code).
type Answer = (i32, Option<OffsetValue>, i16);
type Wanted = Option<Vec<(String, Vec<i32>)>>;

/// Answers an OffsetFetch request.
pub async fn handle(
    broker: Broker,
    ctx: RequestContext,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    if ctx.version < 8 {
        let wanted = request.topics.map(|topics| {
            topics
                .into_iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes))
                .collect()
        });
        let stable = ctx.version >= 7 && request.require_stable;
        let group = request.group_id.0.to_string();
        let (topics, code) = lookup(&broker, group, wanted, stable).await;
        let per_partition = if ctx.version < 2 { code } else { 0 };
        let topics = topics
            .into_iter()
            .map(|(name, answers)| {
                let partitions = answers
                    .into_iter()
                    .map(|(p, c, error)| {
                        let error = if error != 0 { error } else { per_partition };
                        legacy_partition(p, c, ctx.version).with_error_code(error)
                    })
                    .collect();
                OffsetFetchResponseTopic::default()
                    .with_name(name)
                    .with_partitions(partitions)
            })
            .collect();
        let response = OffsetFetchResponse::default().with_topics(topics);
        return if ctx.version >= 2 {
            response.with_error_code(code)
        } else {
            response
        };
    }
    let mut groups = Vec::with_capacity(request.groups.len());
    for group in request.groups {
        let wanted = group.topics.map(|topics| {
            topics
                .into_iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes))
                .collect()
        });
        let stable = request.require_stable;
        let (topics, code) = lookup(&broker, group.group_id.0.to_string(), wanted, stable).await;
        let topics = topics
            .into_iter()
            .map(|(name, answers)| {
                let partitions = answers
                    .into_iter()
                    .map(|(p, c, error)| partition(p, c).with_error_code(error))
                    .collect();
                OffsetFetchResponseTopics::default()
                    .with_name(name)
                    .with_partitions(partitions)
            })
            .collect();
        groups.push(
            OffsetFetchResponseGroup::default()
                .with_group_id(group.group_id)
                .with_topics(topics)
                .with_error_code(code),
        );
    }
    OffsetFetchResponse::default().with_groups(groups)
}

/// Commits of `group` for the wanted partitions, or all of them, and the group's error code.
async fn lookup(
    broker: &Broker,
    group: String,
    wanted: Wanted,
    require_stable: bool,
) -> (Vec<(TopicName, Vec<Answer>)>, i16) {
    let fetched = broker
        .groups()
        .fetch_offsets(group, wanted.clone(), require_stable)
        .await;
    let fetched = match fetched {
        Ok(fetched) => fetched,
        Err(e) => {
            // The wanted partitions, each without a commit, beside the group's error.
            let topics = wanted
                .unwrap_or_default()
                .into_iter()
                .map(|(name, partitions)| {
                    (
                        TopicName(StrBytes::from_string(name)),
                        partitions.into_iter().map(|p| (p, None, 0)).collect(),
                    )
                })
                .collect();
            return (topics, e.code());
        }
    };
    let mut out: Vec<(TopicName, Vec<Answer>)> = Vec::new();
    for f in fetched {
        let answer = if f.unstable {
            (
                f.partition,
                None,
                ResponseError::UnstableOffsetCommit.code(),
            )
        } else {
            (f.partition, f.commit, 0)
        };
        match out.last_mut() {
            Some((name, answers)) if name.0.as_str() == f.topic => answers.push(answer),
            _ => out.push((TopicName(StrBytes::from_string(f.topic)), vec![answer])),
        }
    }
    (out, 0)
}

fn fields(commit: Option<OffsetValue>) -> (i64, i32, StrBytes) {
    match commit {
        Some(c) => (c.offset, c.leader_epoch, StrBytes::from_string(c.metadata)),
        None => (-1, -1, StrBytes::default()),
    }
}

fn legacy_partition(
    index: i32,
    commit: Option<OffsetValue>,
    version: i16,
) -> OffsetFetchResponsePartition {
    let (offset, epoch, metadata) = fields(commit);
    let partition = OffsetFetchResponsePartition::default()
        .with_partition_index(index)
        .with_committed_offset(offset)
        .with_metadata(Some(metadata));
    // The leader epoch is in the response from v5.
    if version >= 5 {
        partition.with_committed_leader_epoch(epoch)
    } else {
        partition
    }
}

fn partition(index: i32, commit: Option<OffsetValue>) -> OffsetFetchResponsePartitions {
    let (offset, epoch, metadata) = fields(commit);
    OffsetFetchResponsePartitions::default()
        .with_partition_index(index)
        .with_committed_offset(offset)
        .with_committed_leader_epoch(epoch)
        .with_metadata(Some(metadata))
}
