//! Cluster metadata: who exists, which topics exist, who leads what.
//!
//! [`MetadataImage`] is a pure state machine: [`MetadataCommand`]s go in through
//! [`MetadataImage::apply`], and the image is what every handler reads. [`Metadata`] is the service
//! that orders commands, persists them and publishes each new image on a `watch` channel. At this
//! stage the log is local to the node (one voter); the mesh issue replaces the persistence with a
//! Raft log while the state machine stays as it is.

mod command;
mod image;
mod service;
pub mod topic_config;

pub use command::{MetadataCommand, Outcome};
pub use image::{MetadataImage, NodeImage, PartitionImage, TopicImage};
pub use service::Metadata;
pub use topic_config::{TopicConfigError, TopicDefaults};

/// Kafka node id (int32), allocated by the metadata log.
pub type NodeId = i32;

/// Errors of the metadata layer.
#[derive(Debug, thiserror::Error)]
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
    #[error("topic '{0}' is internal")]
    InternalTopic(String),
    /// The cluster has not been formed yet.
    #[error("the cluster has not been formed")]
    NotFormed,
    /// Persistence failed.
    #[error("metadata storage: {0}")]
    Storage(String),
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
        };
        error.code()
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
