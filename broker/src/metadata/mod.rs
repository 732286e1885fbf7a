//! Cluster metadata: who exists, which topics exist, who leads what.
//!
//! [`MetadataImage`] is a pure state machine: [`MetadataCommand`]s go in through
//! [`MetadataImage::apply`], and the image is what every handler reads. [`Metadata`] is the service
//! that orders commands through a Raft-replicated log ([`raft`], openraft on fjall), applies them
//! on every replica and publishes each new image on a `watch` channel. [`features`] is the
//! cluster's feature level: what nodes may write for each other while a cluster is upgraded.

pub mod assignment;
mod command;
pub mod features;
mod image;
pub mod raft;
mod service;
pub mod topic_config;

pub use command::{
    GatedCommand, IsrMember, LeaderChange, MetadataCommand, NodeSupport, Outcome, PartitionChange,
    ReplicaChange,
};
pub use features::{Feature, FeatureLevel, Features, LevelRange};
pub use image::{MetadataImage, NodeImage, PartitionImage, TopicImage};
pub use service::{Metadata, MetadataStatus, RaftRole, StatusWatch};
pub use topic_config::{TopicConfigError, TopicDefaults};

pub use crate::ids::NodeId;

/// Errors of the metadata layer. Serialisable: a command refused by the state machine on the
/// leader travels back to a follower that forwarded it.
#[derive(Clone, Debug, PartialEq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum MetadataError {
    /// A topic with this name exists.
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    /// No such topic.
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    /// The topic name is not valid.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The partition count is not valid.
    #[error("invalid partition count {0}: must be between 1 and 100000")]
    InvalidPartitions(i32),
    /// The replication factor cannot be met.
    #[error("replication factor {requested} is larger than the {available} available node(s)")]
    InvalidReplicationFactor {
        /// Requested factor.
        requested: i32,
        /// Nodes available.
        available: usize,
    },
    /// A topic config is wrong.
    #[error(transparent)]
    Config(#[from] TopicConfigError),
    /// Internal topics cannot be changed this way.
    #[error(
        "topic '{0}' is internal: only the broker creates, deletes or changes the internal \
         topics (__consumer_offsets, __transaction_state), with its configured replication"
    )]
    InternalTopic(String),
    /// The cluster has not been formed yet.
    #[error("the cluster has not been formed")]
    NotFormed,
    /// Persistence failed.
    #[error("metadata storage: {0}")]
    Storage(String),
    /// No leader of the metadata log could be reached in time: an election is running, or a
    /// majority of the voters is down or cut off. Retriable.
    #[error("no metadata leader available: {0}")]
    NoLeader(String),
    /// The proposal was not committed in time. It may still commit later. Retriable (commands
    /// are safe to repeat: a repeated creation answers "exists").
    #[error("metadata change not committed within {0} ms (it may still apply)")]
    Timeout(u64),
    /// A membership change was refused (not one voter at a time, unknown node, one in progress).
    #[error("metadata membership change refused: {0}")]
    Membership(String),
    /// A partition change was based on a leader or partition epoch that is no longer current.
    #[error("stale partition change: {0}")]
    StalePartition(String),
    /// A proposed in-sync replica is not eligible (not a replica, or restarted since it was seen).
    #[error("ineligible replica: {0}")]
    IneligibleReplica(String),
    /// The metadata log's configuration is inconsistent (timeouts, sizes).
    #[error("invalid metadata log config: {0}")]
    RaftConfig(String),
    // ---- Nodes of feature level 0 know the variants above: append only, below. ----
    /// A command needs a feature the cluster's finalized level does not enable yet.
    #[error(
        "{feature} needs cluster feature level {needs}, and the finalized level is {finalized} (it \
         rises once every registered node supports it)"
    )]
    FeatureNotEnabled {
        /// The feature.
        feature: String,
        /// The level that enables it.
        needs: u16,
        /// The cluster's finalized level.
        finalized: u16,
    },
    /// A node does not support the cluster's finalized feature level, or a finalization is not
    /// supported by every node. A cluster never goes back below its finalized level.
    #[error("{0}")]
    UnsupportedLevel(String),
    /// A node's own limit refused the change before anything was proposed (a topic placing
    /// more replicas on a node than `--max-partitions-per-node`). Never forwarded.
    #[error("{0}")]
    PolicyViolation(String),
    /// No node is registered with this id.
    #[error("node {0} is not registered")]
    UnknownNode(NodeId),
    /// Removing this node would lose data: it is the only in-sync replica of a partition.
    #[error(
        "node {node} is the only in-sync replica of {partition}: removing it would lose that partition's data (bring the node back until another replica is in sync, or delete the topic)"
    )]
    LastInSyncReplica {
        /// The node.
        node: NodeId,
        /// The partition, as `topic-index`.
        partition: String,
    },
}

impl MetadataError {
    /// The Kafka error code for this error.
    pub fn kafka_code(&self) -> i16 {
        use kafka_protocol::ResponseError as E;
        let error = match self {
            Self::TopicExists(_) => E::TopicAlreadyExists,
            Self::UnknownTopic(_) => E::UnknownTopicOrPartition,
            Self::InvalidTopicName { .. } => E::InvalidTopicException,
            Self::InvalidPartitions(_) => E::InvalidPartitions,
            Self::InvalidReplicationFactor { .. } => E::InvalidReplicationFactor,
            Self::Config(_) => E::InvalidConfig,
            Self::InternalTopic(_) => E::InvalidRequest,
            Self::NotFormed => E::CoordinatorNotAvailable,
            Self::Storage(_) => E::KafkaStorageError,
            Self::NoLeader(_) => E::NotController,
            Self::Timeout(_) => E::RequestTimedOut,
            Self::Membership(_) => E::InvalidRequest,
            Self::RaftConfig(_) => E::InvalidConfig,
            Self::StalePartition(_) => E::InvalidUpdateVersion,
            Self::IneligibleReplica(_) => E::IneligibleReplica,
            Self::FeatureNotEnabled { .. } => E::UnsupportedVersion,
            Self::UnsupportedLevel(_) => E::FeatureUpdateFailed,
            Self::PolicyViolation(_) => E::PolicyViolation,
            Self::UnknownNode(_) => E::BrokerIdNotRegistered,
            Self::LastInSyncReplica { .. } => E::InvalidRequest,
        };
        error.code()
    }

    /// True when the same request may succeed later (no leader yet, a timeout).
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::NotFormed | Self::NoLeader(_) | Self::Timeout(_))
    }
}

/// Kafka's topic name rules: 1-249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), MetadataError> {
    let invalid = |reason: &str| MetadataError::InvalidTopicName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    if name == "." || name == ".." {
        return Err(invalid("'.' and '..' are reserved"));
    }
    if name.len() > 249 {
        return Err(invalid("longer than 249 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(invalid(
            "only ASCII letters, digits, '.', '_' and '-' are allowed",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_eu-west").is_ok());
        for bad in ["", ".", "..", "has space", "ünïcode", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
