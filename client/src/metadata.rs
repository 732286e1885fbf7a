//! The metadata cache: brokers, topics (with ids), partitions and their leaders.
//!
//! Pure data and the two translations to and from the wire (a Metadata request for some topics,
//! and merging a Metadata response into a new snapshot). [`crate::Client`] owns the I/O: it
//! refreshes on NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION (with
//! backoff), on a broken connection and when a snapshot is older than `metadata_max_age`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponsePartition;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::error::{Error, Result};

/// A topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition index.
    pub partition: i32,
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

impl TopicPartition {
    /// `topic`-`partition`.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

/// A node id as Kafka numbers brokers.
pub type NodeId = i32;

/// One broker as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Node id.
    pub node_id: NodeId,
    /// Advertised Kafka host.
    pub host: String,
    /// Advertised Kafka port.
    pub port: i32,
    /// Rack, if any.
    pub rack: Option<String>,
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// Leader node, `None` while there is none.
    pub leader: Option<NodeId>,
    /// Leader epoch (-1 when unknown).
    pub leader_epoch: i32,
    /// Replica nodes.
    pub replicas: Vec<NodeId>,
    /// In-sync replicas.
    pub isr: Vec<NodeId>,
    /// Partition-level error code (0 = none).
    pub error_code: i16,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Topic id (nil if the broker predates topic ids).
    pub id: Uuid,
    /// Whether it is internal (`__consumer_offsets`, ...).
    pub internal: bool,
    /// Partitions, sorted by index.
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    /// The partition with index `p`.
    pub fn partition(&self, p: i32) -> Option<&PartitionInfo> {
        self.partitions.iter().find(|x| x.partition == p)
    }
}

/// An immutable snapshot of what the client knows about the cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterMetadata {
    /// Cluster id, if the broker gave one.
    pub cluster_id: Option<String>,
    /// Controller node, if known.
    pub controller: Option<NodeId>,
    /// Brokers by node id.
    pub brokers: BTreeMap<NodeId, BrokerInfo>,
    /// Known topics by name.
    pub topics: HashMap<String, TopicInfo>,
    /// Topic-level errors of the last refresh (e.g. UNKNOWN_TOPIC_OR_PARTITION), by name.
    pub topic_errors: HashMap<String, i16>,
    /// When each topic was last refreshed.
    pub refreshed: HashMap<String, Instant>,
}

impl ClusterMetadata {
    /// The topic named `name`, or the error the broker gave for it.
    pub fn topic(&self, name: &str) -> Result<&TopicInfo> {
        if let Some(t) = self.topics.get(name) {
            return Ok(t);
        }
        let code = self.topic_errors.get(name).copied().unwrap_or(3);
        Err(
            Error::from_code(code, name, None).unwrap_or_else(|| Error::UnknownTopicOrPartition {
                topic: name.into(),
                partition: None,
            }),
        )
    }

    /// The name of the topic with id `id`.
    pub fn topic_name(&self, id: Uuid) -> Option<&str> {
        self.topics
            .values()
            .find(|t| t.id == id)
            .map(|t| t.name.as_str())
    }

    /// The leader of `topic`-`partition`, if known.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<NodeId> {
        self.topics.get(topic)?.partition(partition)?.leader
    }
}

fn partition_info(p: &MetadataResponsePartition) -> PartitionInfo {
    PartitionInfo {
        partition: p.partition_index,
        leader: (p.leader_id.0 >= 0).then_some(p.leader_id.0),
        leader_epoch: p.leader_epoch,
        replicas: p.replica_nodes.iter().map(|n| n.0).collect(),
        isr: p.isr_nodes.iter().map(|n| n.0).collect(),
        error_code: p.error_code,
    }
}

/// Builds a Metadata request for `topics` (`None` = every topic) at `version`.
pub fn request(version: i16, topics: Option<&[String]>, auto_create: bool) -> MetadataRequest {
    let mut req = MetadataRequest::default();
    req.topics = topics.map(|names| {
        names
            .iter()
            .map(|n| {
                MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(n.clone()))))
            })
            .collect()
    });
    if version >= 4 {
        req.allow_auto_topic_creation = auto_create;
    }
    req
}

/// Merges a Metadata response into `base`, returning the new snapshot.
///
/// With `all_topics`, topics missing from the response are dropped (they were deleted).
pub fn merge(
    base: &ClusterMetadata,
    response: &MetadataResponse,
    all_topics: bool,
    now: Instant,
) -> Result<ClusterMetadata> {
    if let Some(e) = Error::broker("Metadata", response.error_code, None) {
        return Err(e);
    }
    let mut next = base.clone();
    next.brokers = response
        .brokers
        .iter()
        .map(|b| {
            let info = BrokerInfo {
                node_id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(|r| r.to_string()),
            };
            (b.node_id.0, info)
        })
        .collect();
    next.controller = (response.controller_id.0 >= 0).then_some(response.controller_id.0);
    next.cluster_id = response.cluster_id.as_ref().map(|c| c.to_string());
    if all_topics {
        next.topics.clear();
        next.topic_errors.clear();
    }
    for topic in &response.topics {
        let Some(name) = topic.name.as_ref().map(|n| n.to_string()) else {
            continue;
        };
        next.refreshed.insert(name.clone(), now);
        if topic.error_code != 0 {
            next.topics.remove(&name);
            next.topic_errors.insert(name, topic.error_code);
            continue;
        }
        next.topic_errors.remove(&name);
        let mut partitions: Vec<PartitionInfo> =
            topic.partitions.iter().map(partition_info).collect();
        partitions.sort_by_key(|p| p.partition);
        let info = TopicInfo {
            name: name.clone(),
            id: topic.topic_id,
            internal: topic.is_internal,
            partitions,
        };
        next.topics.insert(name, info);
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::BrokerId;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };

    use super::*;

    pub(crate) fn response(topic: &str, partitions: i32, leader: i32) -> MetadataResponse {
        let parts = (0..partitions)
            .map(|p| {
                MetadataResponsePartition::default()
                    .with_partition_index(p)
                    .with_leader_id(BrokerId(leader))
                    .with_replica_nodes(vec![BrokerId(leader)])
                    .with_isr_nodes(vec![BrokerId(leader)])
            })
            .collect();
        MetadataResponse::default()
            .with_brokers(vec![
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(leader))
                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                    .with_port(9092),
            ])
            .with_controller_id(BrokerId(leader))
            .with_topics(vec![
                MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(topic.into()))))
                    .with_topic_id(Uuid::from_u128(7))
                    .with_partitions(parts),
            ])
    }

    #[test]
    fn merge_builds_topics_and_brokers() {
        let now = Instant::now();
        let m = merge(
            &ClusterMetadata::default(),
            &response("t", 3, 1),
            false,
            now,
        )
        .unwrap();
        let t = m.topic("t").unwrap();
        assert_eq!(t.partitions.len(), 3);
        assert_eq!(m.leader("t", 2), Some(1));
        assert_eq!(m.topic_name(Uuid::from_u128(7)), Some("t"));
        assert_eq!(m.brokers[&1].port, 9092);
        assert!(matches!(
            m.topic("u"),
            Err(Error::UnknownTopicOrPartition { .. })
        ));
    }

    #[test]
    fn topic_errors_replace_known_topics() {
        let now = Instant::now();
        let m = merge(
            &ClusterMetadata::default(),
            &response("t", 1, 1),
            false,
            now,
        )
        .unwrap();
        let mut gone = response("t", 0, 1);
        gone.topics[0].error_code = 3;
        let m = merge(&m, &gone, false, now).unwrap();
        assert!(matches!(
            m.topic("t"),
            Err(Error::UnknownTopicOrPartition { .. })
        ));
    }

    #[test]
    fn request_respects_version_fields() {
        use kafka_protocol::protocol::Encodable;
        let topics = vec!["a".to_owned()];
        for v in 1..=13 {
            let r = request(v, Some(&topics), false);
            let mut buf = bytes::BytesMut::new();
            r.encode(&mut buf, v).unwrap();
        }
    }
}
