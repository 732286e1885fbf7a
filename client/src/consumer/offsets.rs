//! Offsets: ListOffsets (earliest, latest, by timestamp) and committed offsets of a group
//! (FindCoordinator + OffsetCommit / OffsetFetch), either as a "simple consumer" (generation -1,
//! empty member id: accepted while the group has no members) or as a member of a generation
//! ([`Generation`], fenced by the coordinator).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, GroupId, ListOffsetsRequest, OffsetCommitRequest,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use crate::cluster::Client;
use crate::error::{Error, Result};
use crate::metadata::{NodeId, TopicPartition};

/// ListOffsets timestamp meaning "the log start".
pub const EARLIEST: i64 = -2;
/// ListOffsets timestamp meaning "the log end".
pub const LATEST: i64 = -1;

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

/// Resolves each partition's offset for its timestamp (`EARLIEST`, `LATEST`, or ms: the first
/// offset with a timestamp at or after it; the log end when there is none).
pub async fn list_offsets(
    client: &Client,
    wanted: &[(TopicPartition, i64)],
    read_committed: bool,
) -> Result<HashMap<TopicPartition, i64>> {
    let meta = client.metadata();
    let mut by_leader: BTreeMap<NodeId, Vec<(TopicPartition, i64)>> = BTreeMap::new();
    for (tp, ts) in wanted {
        let leader =
            meta.leader(&tp.topic, tp.partition)
                .ok_or_else(|| Error::LeaderNotAvailable {
                    topic: tp.topic.to_string(),
                })?;
        by_leader.entry(leader).or_default().push((tp.clone(), *ts));
    }
    let mut out = HashMap::new();
    for (node, parts) in by_leader {
        out.extend(list_offsets_on(client, node, parts, read_committed).await?);
    }
    Ok(out)
}

async fn list_offsets_on(
    client: &Client,
    node: NodeId,
    parts: Vec<(TopicPartition, i64)>,
    read_committed: bool,
) -> Result<HashMap<TopicPartition, i64>> {
    let conn = client.node(node).await?;
    let version = conn.version::<ListOffsetsRequest>()?;
    let mut topics: BTreeMap<Arc<str>, ListOffsetsTopic> = BTreeMap::new();
    for (tp, ts) in &parts {
        let t = topics
            .entry(tp.topic.clone())
            .or_insert_with(|| ListOffsetsTopic::default().with_name(topic_name(&tp.topic)));
        t.partitions.push(
            ListOffsetsPartition::default()
                .with_partition_index(tp.partition)
                .with_timestamp(*ts),
        );
    }
    let mut request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(topics.into_values().collect());
    if version >= 2 {
        request.isolation_level = i8::from(read_committed);
    }
    let response = conn.send(version, &request).await?;
    let mut out = HashMap::new();
    for topic in &response.topics {
        for p in &topic.partitions {
            let tp = TopicPartition::new(topic.name.as_str(), p.partition_index);
            if let Some(e) = Error::from_code(p.error_code, &tp.topic, Some(tp.partition)) {
                return Err(e);
            }
            out.insert(tp, p.offset);
        }
    }
    for (tp, _) in parts {
        if !out.contains_key(&tp) {
            return Err(Error::protocol(format!(
                "ListOffsets gave no answer for {tp}"
            )));
        }
    }
    Ok(out)
}

/// FindCoordinator key type of a consumer group.
pub const GROUP_KEY: i8 = 0;
/// FindCoordinator key type of a transactional id.
pub const TRANSACTION_KEY: i8 = 1;

/// The coordinator node of `group`, retrying "not ready" answers until `wait` has passed.
pub async fn find_coordinator(client: &Client, group: &str, wait: Duration) -> Result<NodeId> {
    find_coordinator_of(client, group, GROUP_KEY, wait).await
}

/// The coordinator node of `key` (a group, or a transactional id with [`TRANSACTION_KEY`]),
/// retrying "not ready" answers until `wait` has passed.
pub async fn find_coordinator_of(
    client: &Client,
    key: &str,
    key_type: i8,
    wait: Duration,
) -> Result<NodeId> {
    let deadline = Instant::now() + wait;
    loop {
        match find_coordinator_once(client, key, key_type).await {
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                debug!(key, key_type, error = %e, "coordinator not ready");
                tokio::time::sleep(client.config().retry_backoff).await;
            }
            other => return other,
        }
    }
}

async fn find_coordinator_once(client: &Client, group: &str, key_type: i8) -> Result<NodeId> {
    let conn = client.any_node().await?;
    let version = conn.version::<FindCoordinatorRequest>()?;
    if key_type != GROUP_KEY && version < 1 {
        return Err(Error::UnsupportedVersion {
            api: "FindCoordinator (transaction coordinator)",
            endpoint: conn.endpoint().to_string(),
        });
    }
    let key = StrBytes::from_string(group.to_owned());
    let mut request = FindCoordinatorRequest::default();
    if version >= 1 {
        request.key_type = key_type;
    }
    if version >= 4 {
        request.coordinator_keys = vec![key];
    } else {
        request.key = key;
    }
    let response = conn.send(version, &request).await?;
    let (code, message, node, host, port) = if version >= 4 {
        let c = response
            .coordinators
            .first()
            .ok_or_else(|| Error::protocol("FindCoordinator returned no coordinator"))?;
        (
            c.error_code,
            c.error_message.clone(),
            c.node_id.0,
            c.host.to_string(),
            c.port,
        )
    } else {
        let r = &response;
        (
            r.error_code,
            r.error_message.clone(),
            r.node_id.0,
            r.host.to_string(),
            r.port,
        )
    };
    if let Some(e) = coordinator_error(group, code, message.as_deref()) {
        return Err(e);
    }
    client.learn_node(node, &host, port);
    Ok(node)
}

fn coordinator_error(group: &str, code: i16, message: Option<&str>) -> Option<Error> {
    let error = ResponseError::try_from_code(code)?;
    Some(match error {
        ResponseError::CoordinatorLoadInProgress
        | ResponseError::CoordinatorNotAvailable
        | ResponseError::NotCoordinator => Error::Coordinator {
            group: group.to_owned(),
            error,
        },
        _ => Error::broker(format!("group {group}"), code, message)?,
    })
}

/// The member a commit is made as: its generation, member id and group instance id.
#[derive(Debug, Clone, Copy)]
pub struct Generation<'a> {
    /// Generation id.
    pub id: i32,
    /// Member id.
    pub member_id: &'a str,
    /// Group instance id (static members).
    pub instance_id: Option<&'a str>,
}

impl Generation<'_> {
    /// A commit outside any generation ("simple consumer", admin tools).
    pub const NONE: Generation<'static> = Generation {
        id: -1,
        member_id: "",
        instance_id: None,
    };
}

/// Commits `offsets` (the next offset to read, per partition) for `group` as `generation`,
/// finding the coordinator again while it moves (until `wait` has passed). Fencing errors
/// (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS, ...) are the caller's.
pub async fn commit(
    client: &Client,
    group: &str,
    generation: Generation<'_>,
    offsets: &[(TopicPartition, i64)],
    wait: Duration,
) -> Result<()> {
    on_coordinator(client, group, wait, |node| {
        commit_once(client, node, group, generation, offsets)
    })
    .await
}

/// Runs `call` on the coordinator of `group`, finding it again and retrying retriable errors
/// (the coordinator moved, is loading, or its connection broke) until `wait` has passed.
async fn on_coordinator<T, F: Future<Output = Result<T>>>(
    client: &Client,
    group: &str,
    wait: Duration,
    call: impl Fn(NodeId) -> F,
) -> Result<T> {
    let deadline = Instant::now() + wait;
    loop {
        let result = match find_coordinator(client, group, wait).await {
            Ok(node) => call(node).await,
            Err(e) => Err(e),
        };
        match result {
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                tokio::time::sleep(client.config().retry_backoff).await;
            }
            other => return other,
        }
    }
}

async fn commit_once(
    client: &Client,
    node: NodeId,
    group: &str,
    generation: Generation<'_>,
    offsets: &[(TopicPartition, i64)],
) -> Result<()> {
    let conn = client.node(node).await?;
    let version = conn.version::<OffsetCommitRequest>()?;
    let mut topics: BTreeMap<Arc<str>, OffsetCommitRequestTopic> = BTreeMap::new();
    for (tp, offset) in offsets {
        let t = topics.entry(tp.topic.clone()).or_insert_with(|| {
            OffsetCommitRequestTopic::default().with_name(topic_name(&tp.topic))
        });
        t.partitions.push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(tp.partition)
                .with_committed_offset(*offset),
        );
    }
    let mut request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_generation_id_or_member_epoch(generation.id)
        .with_member_id(StrBytes::from_string(generation.member_id.to_owned()))
        .with_topics(topics.into_values().collect());
    if version >= 7 {
        request.group_instance_id = generation
            .instance_id
            .map(|i| StrBytes::from_string(i.to_owned()));
    }
    let response = conn.send(version, &request).await?;
    for topic in &response.topics {
        for p in &topic.partitions {
            if let Some(e) = coordinator_error(group, p.error_code, None) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// The committed offsets of `group` for `partitions` (`None` where nothing is committed).
pub async fn committed(
    client: &Client,
    group: &str,
    partitions: &[TopicPartition],
    wait: Duration,
) -> Result<HashMap<TopicPartition, Option<i64>>> {
    on_coordinator(client, group, wait, |node| {
        committed_once(client, node, group, partitions)
    })
    .await
}

async fn committed_once(
    client: &Client,
    node: NodeId,
    group: &str,
    partitions: &[TopicPartition],
) -> Result<HashMap<TopicPartition, Option<i64>>> {
    // As the Java consumer (KIP-447): offsets a transaction has committed but not yet ended are
    // answered UNSTABLE_OFFSET_COMMIT (retriable) rather than as the previous offset, so a
    // consume-transform-produce loop does not start from a stale offset.
    let rows = fetch_committed(client, node, group, Some(partitions), true).await?;
    let mut out: HashMap<TopicPartition, Option<i64>> =
        partitions.iter().map(|tp| (tp.clone(), None)).collect();
    for (tp, offset) in rows {
        out.insert(tp, (offset >= 0).then_some(offset));
    }
    Ok(out)
}

/// Every offset `group` has committed (OffsetFetch with no topics: all of them).
pub async fn committed_all(
    client: &Client,
    group: &str,
    wait: Duration,
) -> Result<BTreeMap<TopicPartition, i64>> {
    let rows = on_coordinator(client, group, wait, |node| {
        fetch_committed(client, node, group, None, false)
    })
    .await?;
    Ok(rows.into_iter().filter(|(_, o)| *o >= 0).collect())
}

/// OffsetFetch of `partitions` (`None`: every committed partition) on `node`.
async fn fetch_committed(
    client: &Client,
    node: NodeId,
    group: &str,
    partitions: Option<&[TopicPartition]>,
    require_stable: bool,
) -> Result<Vec<(TopicPartition, i64)>> {
    let conn = client.node(node).await?;
    let version = conn.version::<OffsetFetchRequest>()?;
    if partitions.is_none() && version < 2 {
        return Err(Error::UnsupportedVersion {
            api: "OffsetFetch (every partition)",
            endpoint: conn.endpoint().to_string(),
        });
    }
    let mut request = offset_fetch_request(version, group, partitions);
    if version >= 7 {
        request.require_stable = require_stable;
    }
    let response = conn.send(version, &request).await?;
    let (top_code, rows) = offset_fetch_rows(version, &response)?;
    if let Some(e) = coordinator_error(group, top_code, None) {
        return Err(e);
    }
    let mut out = Vec::with_capacity(rows.len());
    for (tp, offset, code) in rows {
        if let Some(e) = coordinator_error(group, code, None) {
            return Err(e);
        }
        out.push((tp, offset));
    }
    Ok(out)
}

/// OffsetFetch for one group (`None`: every partition): v8+ nests the group in `groups[]`.
fn offset_fetch_request(
    version: i16,
    group: &str,
    partitions: Option<&[TopicPartition]>,
) -> OffsetFetchRequest {
    let mut by_topic: BTreeMap<Arc<str>, Vec<i32>> = BTreeMap::new();
    for tp in partitions.unwrap_or_default() {
        by_topic
            .entry(tp.topic.clone())
            .or_default()
            .push(tp.partition);
    }
    let group_id = GroupId(StrBytes::from_string(group.to_owned()));
    let mut request = OffsetFetchRequest::default();
    if version >= 8 {
        let topics = by_topic.iter().map(|(t, ps)| {
            OffsetFetchRequestTopics::default()
                .with_name(topic_name(t))
                .with_partition_indexes(ps.clone())
        });
        request.groups = vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(group_id)
                .with_topics(partitions.map(|_| topics.collect())),
        ];
    } else {
        let topics = by_topic.iter().map(|(t, ps)| {
            OffsetFetchRequestTopic::default()
                .with_name(topic_name(t))
                .with_partition_indexes(ps.clone())
        });
        request.group_id = group_id;
        request.topics = partitions.map(|_| topics.collect());
    }
    request
}

/// The group error code and (partition, committed offset, error code) rows of a response.
type OffsetRows = (i16, Vec<(TopicPartition, i64, i16)>);

fn offset_fetch_rows(version: i16, response: &OffsetFetchResponse) -> Result<OffsetRows> {
    let mut rows = Vec::new();
    if version >= 8 {
        let g = response
            .groups
            .first()
            .ok_or_else(|| Error::protocol("OffsetFetch: no group"))?;
        for t in &g.topics {
            for p in &t.partitions {
                let tp = TopicPartition::new(t.name.as_str(), p.partition_index);
                rows.push((tp, p.committed_offset, p.error_code));
            }
        }
        return Ok((g.error_code, rows));
    }
    for t in &response.topics {
        for p in &t.partitions {
            let tp = TopicPartition::new(t.name.as_str(), p.partition_index);
            rows.push((tp, p.committed_offset, p.error_code));
        }
    }
    Ok((response.error_code, rows))
}
