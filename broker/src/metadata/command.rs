//! Commands of the metadata log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::NodeId;

/// A change to the cluster metadata. Commands are deterministic: everything random (ids) is chosen
/// before the command is proposed, so every replica of the log applies the same thing.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum MetadataCommand {
    /// Forms the cluster (first command of the log).
    Form {
        /// Cluster id, Kafka style (22 characters of URL-safe base64 of a UUID).
        cluster_id: String,
    },
    /// A node (re)joins: same peer id keeps its node id; the broker epoch grows.
    RegisterNode {
        /// libp2p peer id (string form).
        peer_id: String,
        /// Advertised Kafka endpoint.
        kafka_host: String,
        /// Advertised Kafka port.
        kafka_port: u16,
    },
    /// Creates a topic.
    CreateTopic {
        /// Name.
        name: String,
        /// Topic id, chosen by the proposer.
        topic_id: Uuid,
        /// Replicas of each partition, preferred leader first, chosen by the proposer from the
        /// nodes it saw alive (see [`super::assignment`]). Their count is the partition count.
        assignments: Vec<Vec<NodeId>>,
        /// Explicit config overrides (already validated).
        configs: BTreeMap<String, String>,
        /// Internal topic (`__consumer_offsets`).
        internal: bool,
    },
    /// Moves partition leadership (the controller's decision when a leader dies or returns).
    /// Each change bumps the partition's leader epoch and partition epoch.
    ElectLeaders {
        /// The changes.
        changes: Vec<LeaderChange>,
    },
    /// A partition leader changes its in-sync replica set (KRaft's AlterPartition). Applied only
    /// against the leader epoch and partition epoch it was based on, with every member's current
    /// broker epoch (KIP-903: a replica that restarted since it was judged in sync is refused);
    /// bumps the partition epoch.
    AlterPartition {
        /// Topic id.
        topic_id: Uuid,
        /// Partition.
        partition: i32,
        /// The proposing leader.
        leader: NodeId,
        /// The leader epoch the proposal is based on.
        leader_epoch: i32,
        /// The partition epoch the proposal is based on.
        partition_epoch: i32,
        /// The new ISR: each member with the broker epoch the leader saw it fetch with.
        isr: Vec<IsrMember>,
    },
    /// The controller's changes to partitions: leaders moved off dead nodes, dead replicas
    /// removed from ISRs (fencing), unclean elections where a topic allows them. Each change is
    /// applied only against the partition epoch it was based on.
    ChangePartitions {
        /// The changes.
        changes: Vec<PartitionChange>,
    },
    /// Deletes a topic.
    DeleteTopic {
        /// Topic id.
        topic_id: Uuid,
    },
    /// Replaces a topic's config overrides.
    SetTopicConfig {
        /// Topic id.
        topic_id: Uuid,
        /// The new overrides.
        configs: BTreeMap<String, String>,
    },
    /// Reserves a block of producer ids.
    AllocateProducerIds {
        /// How many.
        count: i64,
    },
}

/// One partition's new leader (-1: none available).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaderChange {
    /// Topic id.
    pub topic_id: Uuid,
    /// Partition.
    pub partition: i32,
    /// The new leader; it must be one of the partition's in-sync replicas, or -1.
    pub leader: NodeId,
    /// The leader epoch the proposer saw; a change against another epoch is stale and skipped.
    pub expected_leader_epoch: i32,
}

/// An in-sync replica with the broker epoch it was seen with.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct IsrMember {
    /// Node id.
    pub node: NodeId,
    /// Its broker epoch when the leader last saw it fetch.
    pub broker_epoch: i64,
}

/// A controller change to one partition.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionChange {
    /// Topic id.
    pub topic_id: Uuid,
    /// Partition.
    pub partition: i32,
    /// The partition epoch the change is based on; a change against another is stale and skipped.
    pub expected_partition_epoch: i32,
    /// The leader (-1: none). A new leader must be in the current ISR, unless `unclean`.
    pub leader: NodeId,
    /// The new ISR: a subset of the current ISR plus, for an unclean election, the new leader.
    pub isr: Vec<NodeId>,
    /// An unclean election (the topic allows it): the leader may come from outside the ISR.
    pub unclean: bool,
}

/// What applying a command produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// Nothing beyond the new image.
    Done,
    /// The node id (and broker epoch) of a registered node.
    Registered {
        /// Node id.
        node_id: NodeId,
        /// Broker epoch.
        broker_epoch: i64,
    },
    /// The first id of an allocated block.
    ProducerIds {
        /// First id of the block.
        first: i64,
    },
}
