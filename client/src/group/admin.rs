//! Group administration, as Kafka's AdminClient and `kafka-consumer-groups.sh` do it: list the
//! groups (ListGroups on every node: each lists the groups it coordinates), describe one
//! (DescribeGroups on its coordinator, the members' assignments decoded, committed offsets with
//! the log end and lag), delete one (DeleteGroups), and reset its committed offsets (an
//! OffsetCommit outside any generation, which the coordinator accepts only while the group has
//! no members).

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, GroupId, ListGroupsRequest,
};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;
use tracing::debug;

use super::coordinator::{PROTOCOL_TYPE, check};
use super::protocol::{Assignment, Subscription};
use crate::cluster::Client;
use crate::consumer::offsets::{self, EARLIEST, Generation, LATEST};
use crate::error::{Error, ResponseError, Result};
use crate::metadata::TopicPartition;

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListedGroup {
    /// Group id.
    pub group: String,
    /// Protocol type (`consumer` for consumer groups, empty for offsets-only groups).
    pub protocol_type: String,
    /// State (`Empty`, `Stable`, ...; empty if the node did not say).
    pub state: String,
}

/// One member of a described group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupMember {
    /// Member id.
    pub member_id: String,
    /// Group instance id (static members).
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Subscribed topics (consumer groups).
    pub topics: Vec<String>,
    /// Assigned partitions (consumer groups).
    pub assignment: Vec<String>,
}

/// One partition's committed offset, log end and lag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Committed offset (`None`: nothing committed).
    pub committed: Option<i64>,
    /// Log end offset (high watermark; `None` when it could not be read).
    pub log_end: Option<i64>,
    /// `log_end - committed` when both are known.
    pub lag: Option<i64>,
    /// The member it is assigned to, if any.
    pub member_id: Option<String>,
}

/// What `describe` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupDescription {
    /// Group id.
    pub group: String,
    /// State (`Dead` for a group that does not exist).
    pub state: String,
    /// Protocol type.
    pub protocol_type: String,
    /// The chosen assignor.
    pub protocol: String,
    /// The coordinator's node id.
    pub coordinator: i32,
    /// Members.
    pub members: Vec<GroupMember>,
    /// Per partition with a commit or an assignment: offsets and lag.
    pub offsets: Vec<PartitionLag>,
}

/// Where `reset_offsets` moves a topic's committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The log start.
    Earliest,
    /// The log end.
    Latest,
    /// An offset (clamped into the log, as kafka-consumer-groups does).
    Offset(i64),
    /// The first record at or after a timestamp (ms); the log end if there is none.
    Timestamp(i64),
}

/// Group administration over a [`Client`].
#[derive(Debug, Clone)]
pub struct GroupAdmin {
    client: Client,
}

fn gid(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_owned()))
}

impl GroupAdmin {
    /// Group administration through `client`.
    pub fn new(client: Client) -> Self {
        GroupAdmin { client }
    }

    fn wait(&self) -> Duration {
        self.client.config().connection.request_timeout
    }

    /// Every group of the cluster: ListGroups on each node, merged, sorted by id.
    pub async fn list(&self) -> Result<Vec<ListedGroup>> {
        let answers = self
            .client
            .ask_every_node("ListGroups", async |node| {
                let conn = self.client.node(node).await?;
                let version = conn.version::<ListGroupsRequest>()?;
                let response = conn.send(version, &ListGroupsRequest::default()).await?;
                check("*", "ListGroups", response.error_code)?;
                Ok(response.groups)
            })
            .await?;
        let mut out = BTreeMap::new();
        for g in answers.into_iter().flat_map(|(_, groups)| groups) {
            out.insert(
                g.group_id.to_string(),
                ListedGroup {
                    group: g.group_id.to_string(),
                    protocol_type: g.protocol_type.to_string(),
                    state: g.group_state.to_string(),
                },
            );
        }
        Ok(out.into_values().collect())
    }

    /// A group's state, members (with their assignments), and per partition its committed
    /// offset, log end offset and lag.
    pub async fn describe(&self, group: &str) -> Result<GroupDescription> {
        let wait = self.wait();
        let coordinator = offsets::find_coordinator(&self.client, group, wait).await?;
        let conn = self.client.node(coordinator).await?;
        let version = conn.version::<DescribeGroupsRequest>()?;
        let request = DescribeGroupsRequest::default().with_groups(vec![gid(group)]);
        let response = conn.send(version, &request).await?;
        let described = response
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| Error::protocol("DescribeGroups: no group in the answer"))?;
        check(group, "DescribeGroups", described.error_code)?;
        let consumer = described.protocol_type.as_str() == PROTOCOL_TYPE;
        let mut owners: BTreeMap<TopicPartition, String> = BTreeMap::new();
        let mut members = Vec::new();
        for m in described.members {
            let (topics, assignment) = if consumer {
                let topics = Subscription::decode(m.member_metadata.clone())
                    .map(|s| s.topics)
                    .unwrap_or_default();
                let assigned = Assignment::decode(m.member_assignment.clone())
                    .map(|a| a.partitions)
                    .unwrap_or_default();
                (topics, assigned)
            } else {
                (Vec::new(), Vec::new())
            };
            for tp in &assignment {
                owners.insert(tp.clone(), m.member_id.to_string());
            }
            members.push(GroupMember {
                member_id: m.member_id.to_string(),
                instance_id: m.group_instance_id.map(|i| i.to_string()),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                topics,
                assignment: assignment.iter().map(ToString::to_string).collect(),
            });
        }
        let committed = offsets::committed_all(&self.client, group, wait).await?;
        let offsets = self.lag(&committed, &owners).await;
        Ok(GroupDescription {
            group: described.group_id.to_string(),
            state: described.group_state.to_string(),
            protocol_type: described.protocol_type.to_string(),
            protocol: described.protocol_data.to_string(),
            coordinator,
            members,
            offsets,
        })
    }

    /// Committed offsets and assignments joined with each partition's log end.
    async fn lag(
        &self,
        committed: &BTreeMap<TopicPartition, i64>,
        owners: &BTreeMap<TopicPartition, String>,
    ) -> Vec<PartitionLag> {
        let mut partitions: Vec<TopicPartition> =
            committed.keys().chain(owners.keys()).cloned().collect();
        partitions.sort();
        partitions.dedup();
        let ends = self.log_ends(&partitions, LATEST).await;
        partitions
            .into_iter()
            .map(|tp| {
                let c = committed.get(&tp).copied();
                let end = ends.get(&tp).copied();
                PartitionLag {
                    topic: tp.topic.to_string(),
                    partition: tp.partition,
                    committed: c,
                    log_end: end,
                    lag: c.zip(end).map(|(c, e)| (e - c).max(0)),
                    member_id: owners.get(&tp).cloned(),
                }
            })
            .collect()
    }

    /// ListOffsets of `partitions` at `timestamp`; partitions whose topic or leader is unknown
    /// are left out.
    async fn log_ends(
        &self,
        partitions: &[TopicPartition],
        timestamp: i64,
    ) -> BTreeMap<TopicPartition, i64> {
        let mut out = BTreeMap::new();
        let mut topics: Vec<&str> = partitions.iter().map(|tp| &*tp.topic).collect();
        topics.dedup();
        for topic in topics {
            if let Err(e) = self.client.topic(topic).await {
                debug!(topic, error = %e, "no metadata: log ends left out");
                continue;
            }
            let wanted: Vec<(TopicPartition, i64)> = partitions
                .iter()
                .filter(|tp| &*tp.topic == topic)
                .map(|tp| (tp.clone(), timestamp))
                .collect();
            match offsets::list_offsets(&self.client, &wanted, false).await {
                Ok(found) => out.extend(found),
                Err(e) => debug!(topic, error = %e, "ListOffsets failed: log ends left out"),
            }
        }
        out
    }

    /// Deletes a group with no members, and its committed offsets (NON_EMPTY_GROUP otherwise).
    pub async fn delete(&self, group: &str) -> Result<()> {
        let node = offsets::find_coordinator(&self.client, group, self.wait()).await?;
        let conn = self.client.node(node).await?;
        let version = conn.version::<DeleteGroupsRequest>()?;
        let request = DeleteGroupsRequest::default().with_groups_names(vec![gid(group)]);
        let response = conn.send(version, &request).await?;
        for r in &response.results {
            if r.error_code == ResponseError::NonEmptyGroup.code() {
                return Err(Error::Broker {
                    context: format!("DeleteGroups of group {group}"),
                    error: ResponseError::NonEmptyGroup,
                    message: Some("the group has members: stop its consumers first".to_owned()),
                });
            }
            check(group, "DeleteGroups", r.error_code)?;
        }
        Ok(())
    }

    /// The offsets a reset of `topic` to `to` would commit, per partition; with `execute`, also
    /// commits them. Refused while the group has members (they would overwrite the reset, and
    /// the coordinator only accepts commits outside a generation from an empty group).
    pub async fn reset_offsets(
        &self,
        group: &str,
        topic: &str,
        to: ResetTo,
        execute: bool,
    ) -> Result<Vec<(TopicPartition, i64)>> {
        let described = self.describe(group).await?;
        if !described.members.is_empty() {
            // The refusal DeleteGroups gives a group with members, decided here: a reset from
            // outside the generation would be refused or overwritten.
            return Err(Error::Broker {
                context: format!(
                    "group {group} has {} member(s) (state {})",
                    described.members.len(),
                    described.state
                ),
                error: ResponseError::NonEmptyGroup,
                message: Some("stop its consumers before resetting its offsets".to_owned()),
            });
        }
        let info = self.client.topic(topic).await?;
        let partitions: Vec<TopicPartition> = info
            .partitions
            .iter()
            .map(|p| TopicPartition::new(topic, p.partition))
            .collect();
        let starts = self.exact_offsets(&partitions, EARLIEST).await?;
        let ends = self.exact_offsets(&partitions, LATEST).await?;
        let target = match to {
            ResetTo::Earliest => starts.clone(),
            ResetTo::Latest => ends.clone(),
            ResetTo::Offset(o) => partitions.iter().map(|tp| (tp.clone(), o)).collect(),
            ResetTo::Timestamp(ts) => self.exact_offsets(&partitions, ts).await?,
        };
        let mut plan = Vec::new();
        for tp in partitions {
            let (Some(lo), Some(hi), Some(t)) = (starts.get(&tp), ends.get(&tp), target.get(&tp))
            else {
                continue;
            };
            // ListOffsets by time answers -1 when no record is that recent: the log end.
            let t = if *t < 0 { *hi } else { *t };
            plan.push((tp, t.clamp(*lo, *hi)));
        }
        if execute {
            offsets::commit(&self.client, group, Generation::NONE, &plan, self.wait()).await?;
        }
        Ok(plan)
    }

    async fn exact_offsets(
        &self,
        partitions: &[TopicPartition],
        timestamp: i64,
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        let wanted: Vec<(TopicPartition, i64)> = partitions
            .iter()
            .map(|tp| (tp.clone(), timestamp))
            .collect();
        Ok(offsets::list_offsets(&self.client, &wanted, false)
            .await?
            .into_iter()
            .collect())
    }
}
