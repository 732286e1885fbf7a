//! Admin: create, list, describe and delete topics.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, TopicName, UnregisterBrokerRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::Client;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::metadata::TopicInfo;

/// DescribeConfigs resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Partitions (-1 = the broker's default).
    pub partitions: i32,
    /// Replication factor (-1 = the broker's default).
    pub replication_factor: i16,
    /// Topic configs (`retention.ms`, `cleanup.policy`, ...).
    pub configs: BTreeMap<String, String>,
}

impl NewTopic {
    /// A topic with `partitions` partitions and the default replication factor.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor: -1,
            configs: BTreeMap::new(),
        }
    }
}

/// One config entry of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Name.
    pub name: String,
    /// Value (`None` when sensitive or unset).
    pub value: Option<String>,
    /// Whether it is the broker default rather than set on the topic.
    pub is_default: bool,
}

/// A change to one topic config (IncrementalAlterConfigs' operations, KIP-339).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    /// Set the key to this value.
    Set(String),
    /// Remove the topic's override: the key takes the broker default again.
    Delete,
    /// Add these comma-separated items to a list config (`cleanup.policy`).
    Append(String),
    /// Remove these comma-separated items from a list config.
    Subtract(String),
}

impl ConfigChange {
    fn encode(&self, name: &str) -> AlterableConfig {
        let (op, value) = match self {
            ConfigChange::Set(v) => (0, Some(v)),
            ConfigChange::Delete => (1, None),
            ConfigChange::Append(v) => (2, Some(v)),
            ConfigChange::Subtract(v) => (3, Some(v)),
        };
        AlterableConfig::default()
            .with_name(StrBytes::from_string(name.to_owned()))
            .with_config_operation(op)
            .with_value(value.map(|v| StrBytes::from_string(v.clone())))
    }
}

/// What `describe` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// Partitions, leaders, replicas.
    pub topic: TopicInfo,
    /// Configs (empty if the broker does not implement DescribeConfigs).
    pub configs: Vec<ConfigEntry>,
}

/// Topic administration.
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
    timeout: Duration,
}

impl Admin {
    /// An admin on `client`; operations wait up to the client's request timeout.
    pub fn new(client: Client) -> Admin {
        let timeout = client.config().connection.request_timeout;
        Admin { client, timeout }
    }

    async fn controller(&self) -> Result<std::sync::Arc<Connection>> {
        let meta = self.client.refresh_metadata(Some(&[])).await?;
        match meta.controller {
            Some(node) => self.client.node(node).await,
            None => self.client.any_node().await,
        }
    }

    /// Removes a stopped node from the cluster for good (UnregisterBroker, as
    /// `kafka-cluster.sh unregister`): its replicas move to the other nodes. Sent to each live
    /// broker in turn until one that may decide answers (a cluster below the feature level that
    /// records removals answers NOT_CONTROLLER everywhere but on its metadata leader; a broker
    /// that cannot be reached is skipped).
    pub async fn remove_node(&self, node: i32) -> Result<()> {
        let meta = self.client.refresh_metadata(Some(&[])).await?;
        let mut last = None;
        for &broker in meta.brokers.keys() {
            // The node being removed may still be listed for a few seconds after it stopped.
            let conn = match self.client.node(broker).await {
                Ok(conn) => conn,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let version = conn.version::<UnregisterBrokerRequest>()?;
            let request = UnregisterBrokerRequest::default().with_broker_id(BrokerId(node));
            let response = match conn.send(version, &request).await {
                Ok(response) => response,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let Some(mut e) = Error::from_code(response.error_code, &format!("node {node}"), None)
            else {
                return Ok(());
            };
            if let (Error::Broker { message, .. }, Some(m)) = (&mut e, &response.error_message) {
                *message = Some(m.to_string());
            }
            if response.error_code != ResponseError::NotController.code() {
                return Err(e);
            }
            last = Some(e);
        }
        Err(last.unwrap_or_else(|| Error::protocol("no broker to send UnregisterBroker to")))
    }

    /// Creates a topic and waits until its metadata shows a leader for every partition.
    pub async fn create_topic(&self, topic: NewTopic) -> Result<()> {
        let conn = self.controller().await?;
        let version = conn.version::<CreateTopicsRequest>()?;
        let configs = topic
            .configs
            .iter()
            .map(|(k, v)| {
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_value(Some(StrBytes::from_string(v.clone())))
            })
            .collect();
        // Broker defaults (-1) need CreateTopics v4+ (KIP-464); older brokers get 1.
        let defaults_ok = version >= 4;
        let partitions = if topic.partitions < 0 && !defaults_ok {
            1
        } else {
            topic.partitions
        };
        let rf = if topic.replication_factor < 0 && !defaults_ok {
            1
        } else {
            topic.replication_factor
        };
        let creatable = CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.name.clone())))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)
            .with_configs(configs);
        let timeout_ms = i32::try_from(self.timeout.as_millis()).unwrap_or(i32::MAX);
        let request = CreateTopicsRequest::default()
            .with_topics(vec![creatable])
            .with_timeout_ms(timeout_ms);
        let response = conn.send(version, &request).await?;
        let result = response
            .topics
            .iter()
            .find(|t| t.name.as_str() == topic.name)
            .ok_or_else(|| Error::protocol("CreateTopics: no result for the topic"))?;
        if let Some(mut e) = Error::from_code(result.error_code, &topic.name, None) {
            if let (Error::Broker { message, .. }, Some(m)) = (&mut e, &result.error_message) {
                *message = Some(m.to_string());
            }
            return Err(e);
        }
        self.client
            .wait_for_topic(&topic.name, self.timeout)
            .await
            .map(|_| ())
    }

    /// Every topic name, sorted (internal topics included).
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>> {
        let meta = self.client.refresh_metadata(None).await?;
        let mut topics: Vec<TopicInfo> = meta.topics.values().cloned().collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// Partitions, leaders and configs of `topic`.
    pub async fn describe_topic(&self, topic: &str) -> Result<TopicDescription> {
        let meta = self
            .client
            .refresh_metadata(Some(&[topic.to_owned()]))
            .await?;
        let info = meta.topic(topic)?.clone();
        let configs = match self.describe_configs(topic).await {
            Ok(c) => c,
            Err(Error::UnsupportedVersion { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(TopicDescription {
            topic: info,
            configs,
        })
    }

    async fn describe_configs(&self, topic: &str) -> Result<Vec<ConfigEntry>> {
        let conn = self.client.any_node().await?;
        let version = conn.version::<DescribeConfigsRequest>()?;
        let resource = DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(StrBytes::from_string(topic.to_owned()))
            .with_configuration_keys(None);
        let request = DescribeConfigsRequest::default().with_resources(vec![resource]);
        let response = conn.send(version, &request).await?;
        let result = response
            .results
            .first()
            .ok_or_else(|| Error::protocol("DescribeConfigs: no result"))?;
        if let Some(e) = Error::from_code(result.error_code, topic, None) {
            return Err(e);
        }
        let mut configs: Vec<ConfigEntry> = result
            .configs
            .iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.as_ref().map(|v| v.to_string()),
                // config_source 1 = DYNAMIC_TOPIC_CONFIG; 5 = DEFAULT_CONFIG (v1+).
                is_default: c.config_source == 5,
            })
            .collect();
        configs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(configs)
    }

    /// Changes configs of `topic`, all or none (IncrementalAlterConfigs).
    pub async fn alter_topic_configs(
        &self,
        topic: &str,
        changes: &[(String, ConfigChange)],
    ) -> Result<()> {
        let conn = self.controller().await?;
        let version = conn.version::<IncrementalAlterConfigsRequest>()?;
        let resource = AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(StrBytes::from_string(topic.to_owned()))
            .with_configs(changes.iter().map(|(k, c)| c.encode(k)).collect());
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![resource]);
        let response = conn.send(version, &request).await?;
        let result = response
            .responses
            .first()
            .ok_or_else(|| Error::protocol("IncrementalAlterConfigs: no result"))?;
        if let Some(mut e) = Error::from_code(result.error_code, topic, None) {
            if let (Error::Broker { message, .. }, Some(m)) = (&mut e, &result.error_message) {
                *message = Some(m.to_string());
            }
            return Err(e);
        }
        Ok(())
    }

    /// Deletes a topic.
    pub async fn delete_topic(&self, topic: &str) -> Result<()> {
        let conn = self.controller().await?;
        let version = conn.version::<DeleteTopicsRequest>()?;
        let name = TopicName(StrBytes::from_string(topic.to_owned()));
        let timeout_ms = i32::try_from(self.timeout.as_millis()).unwrap_or(i32::MAX);
        let mut request = DeleteTopicsRequest::default().with_timeout_ms(timeout_ms);
        if version >= 6 {
            request.topics = vec![DeleteTopicState::default().with_name(Some(name))];
        } else {
            request.topic_names = vec![name];
        }
        let response = conn.send(version, &request).await?;
        let result = response
            .responses
            .iter()
            .find(|r| r.name.as_ref().is_some_and(|n| n.as_str() == topic))
            .ok_or_else(|| Error::protocol("DeleteTopics: no result for the topic"))?;
        if let Some(mut e) = Error::from_code(result.error_code, topic, None) {
            if let (Error::Broker { message, .. }, Some(m)) = (&mut e, &result.error_message) {
                *message = Some(m.to_string());
            }
            return Err(e);
        }
        self.client.invalidate(topic);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::ApiKey;

    use super::*;
    use crate::testing::FakeBroker;
    use crate::{Bootstrap, ClientConfig};

    async fn admin(broker: &FakeBroker) -> Admin {
        let cc = ClientConfig::new(Bootstrap::parse("fake:9092").unwrap());
        Admin::new(Client::connect_with(cc, broker.dialer()).await.unwrap())
    }

    #[tokio::test]
    async fn create_list_describe_delete() {
        for cap in [6, 5] {
            let broker = FakeBroker::new();
            broker.cap_version(ApiKey::DeleteTopics, cap);
            let admin = admin(&broker).await;
            let mut topic = NewTopic::new("orders", 3);
            topic.configs.insert("retention.ms".into(), "1000".into());
            admin.create_topic(topic.clone()).await.unwrap();
            let err = admin.create_topic(topic).await.unwrap_err();
            assert!(matches!(err, Error::TopicAlreadyExists { .. }), "{err}");
            let names: Vec<String> = admin
                .list_topics()
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.name)
                .collect();
            assert_eq!(names, vec!["orders"]);
            let d = admin.describe_topic("orders").await.unwrap();
            assert_eq!(d.topic.partitions.len(), 3);
            assert_eq!(d.configs[0].name, "retention.ms");
            assert_eq!(d.configs[0].value.as_deref(), Some("1000"));
            admin.delete_topic("orders").await.unwrap();
            assert!(admin.list_topics().await.unwrap().is_empty());
            let err = admin.delete_topic("orders").await.unwrap_err();
            assert!(
                matches!(err, Error::UnknownTopicOrPartition { .. }),
                "{err}"
            );
        }
    }
}
