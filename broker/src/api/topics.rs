//! Topic creation and deletion shared by CreateTopics, DeleteTopics and Metadata's auto-creation.

use std::collections::BTreeMap;
use std::sync::Arc;

use rafka_store::StoreError;

use crate::Broker;
use crate::group::{OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
use crate::limits::{self, Limit};
use crate::metadata::{
    MetadataCommand, MetadataError, NodeId, TopicConfigError, TopicImage, assignment, topic_config,
    validate_topic_name,
};

/// Kafka's internal topics: written only by the broker, never deleted by clients. Other names
/// starting with `__` are ordinary topics, as in Kafka.
pub const INTERNAL_TOPICS: &[&str] = &[OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC];

/// Whether `name` is one of the broker's internal topics.
pub fn is_internal(name: &str) -> bool {
    INTERNAL_TOPICS.contains(&name)
}

/// A topic to create.
#[derive(Debug)]
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Partitions; `None` takes the node default.
    pub partitions: Option<i32>,
    /// Replication factor; `None` takes the default (1 until replication lands).
    pub replication_factor: Option<i16>,
    /// Config overrides.
    pub configs: BTreeMap<String, String>,
}

/// Validates a client's topic without creating it (CreateTopics' `validate_only`): clients
/// cannot create the internal topics.
pub fn validate(broker: &Broker, topic: &NewTopic) -> Result<(), MetadataError> {
    if is_internal(&topic.name) {
        return Err(MetadataError::InternalTopic(topic.name.clone()));
    }
    place(broker, topic).map(drop)
}

/// Checks a topic and places its partitions on the nodes alive now: the replicas of each
/// partition, preferred leader first.
fn place(broker: &Broker, topic: &NewTopic) -> Result<Vec<Vec<NodeId>>, MetadataError> {
    validate_topic_name(&topic.name)?;
    topic_config::validate(&topic.configs)?;
    validate_log_config(broker, &topic.configs)?;
    let image = broker.image();
    if image.topic(&topic.name).is_some() {
        return Err(MetadataError::TopicExists(topic.name.clone()));
    }
    let partitions = topic.partitions.unwrap_or(broker.config().num_partitions);
    if !(1..=100_000).contains(&partitions) {
        return Err(MetadataError::InvalidPartitions(partitions));
    }
    let factor = topic
        .replication_factor
        .unwrap_or(broker.config().default_replication_factor);
    let live: Vec<NodeId> = broker.cluster().live_nodes(&image).into_iter().collect();
    if factor < 1 || usize::try_from(factor).unwrap_or(usize::MAX) > live.len() {
        return Err(MetadataError::InvalidReplicationFactor {
            requested: i32::from(factor),
            available: live.len(),
        });
    }
    let assignments = assignment::assign(&image, &live, partitions, factor)?;
    let max = broker.config().max_partitions_per_node;
    if let Some((node, held)) = assignment::over_capacity(&image, &assignments, max as usize) {
        let message = format!(
            "topic '{}' would place {held} partition replicas on node {node}, over the limit of \
             {max} per node (--max-partitions-per-node)",
            topic.name
        );
        limits::hit(Limit::PartitionsPerNode, format_args!("{message}"));
        return Err(MetadataError::PolicyViolation(message));
    }
    Ok(assignments)
}

/// Refuses overrides the store would refuse when creating the partition logs. Past this check the
/// topic is in the metadata log, and a log config the store refuses would fail every later
/// reconciliation (and the node's next start).
fn validate_log_config(
    broker: &Broker,
    configs: &BTreeMap<String, String>,
) -> Result<(), MetadataError> {
    let log_config = topic_config::log_config(configs, broker.topic_defaults());
    match log_config.validate() {
        Ok(()) => Ok(()),
        Err(StoreError::InvalidConfig { field, reason }) => {
            let key = match field {
                "fsync" => "rafka.fsync".to_string(),
                other => other.replace('_', "."),
            };
            let value = configs.get(&key).cloned().unwrap_or_default();
            Err(TopicConfigError::Invalid { key, value, reason }.into())
        }
        Err(e) => Err(MetadataError::Storage(e.to_string())),
    }
}

/// Creates a client's topic and its local partition logs; returns the new topic. Internal
/// topics are refused ([`create_internal`] is the broker's way).
pub async fn create(broker: &Broker, topic: NewTopic) -> Result<Arc<TopicImage>, MetadataError> {
    if is_internal(&topic.name) {
        return Err(MetadataError::InternalTopic(topic.name.clone()));
    }
    create_placed(broker, topic).await
}

/// Creates one of the broker's internal topics.
pub async fn create_internal(
    broker: &Broker,
    topic: NewTopic,
) -> Result<Arc<TopicImage>, MetadataError> {
    create_placed(broker, topic).await
}

async fn create_placed(broker: &Broker, topic: NewTopic) -> Result<Arc<TopicImage>, MetadataError> {
    let assignments = place(broker, &topic)?;
    let command = MetadataCommand::CreateTopic {
        name: topic.name.clone(),
        topic_id: uuid::Uuid::new_v4(),
        assignments,
        configs: topic.configs,
        internal: is_internal(&topic.name),
    };
    broker.metadata().propose(command).await?;
    reconcile(broker).await?;
    let image = broker.image();
    image
        .topic(&topic.name)
        .cloned()
        .ok_or(MetadataError::UnknownTopic(topic.name))
}

/// Replaces a topic's config overrides (validated as at creation) and applies them to the local
/// partition logs; with `validate_only`, only checks them.
pub async fn alter_configs(
    broker: &Broker,
    topic: &TopicImage,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), MetadataError> {
    topic_config::validate(&configs)?;
    validate_log_config(broker, &configs)?;
    if topic.internal {
        return Err(MetadataError::InternalTopic(topic.name.clone()));
    }
    if validate_only || configs == topic.configs {
        return Ok(());
    }
    broker
        .metadata()
        .propose(MetadataCommand::SetTopicConfig {
            topic_id: topic.id,
            configs,
        })
        .await?;
    reconcile(broker).await
}

/// Deletes a topic and its local partition logs.
pub async fn delete(broker: &Broker, topic: &TopicImage) -> Result<(), MetadataError> {
    if topic.internal {
        return Err(MetadataError::InternalTopic(topic.name.clone()));
    }
    broker
        .metadata()
        .propose(MetadataCommand::DeleteTopic { topic_id: topic.id })
        .await?;
    reconcile(broker).await
}

/// Brings local partition logs in line with the current image.
pub async fn reconcile(broker: &Broker) -> Result<(), MetadataError> {
    let image = broker.image();
    broker
        .partitions()
        .reconcile(&image)
        .await
        .map(drop)
        .map_err(|e| MetadataError::Storage(e.to_string()))
}
