//! CreateTopics.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use super::topics::{self, NewTopic};
use crate::Broker;
use crate::limits::{self, Limit};
use crate::metadata::{MetadataError, NodeId, TopicImage, topic_config};

/// Kafka's config source code for a topic override.
const SOURCE_TOPIC: i8 = 1;
/// Kafka's config source code for a default.
const SOURCE_DEFAULT: i8 = 5;

/// Creates the requested topics, each independently.
pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    if let Some(refused) = too_many_partitions(broker, &request) {
        return refused;
    }
    let duplicates = duplicate_names(&request.topics);
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        if !duplicates.contains(topic.name.0.as_str()) {
            results.push(create_one(broker, ctx, topic, request.validate_only).await);
        }
    }
    // As Kafka: a name given twice gets one INVALID_REQUEST result and is not created.
    for name in duplicates {
        tracing::info!(topic = %name, "CreateTopics refused: duplicate name");
        results.push(
            CreatableTopicResult::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(StrBytes::from_static_str("Duplicate topic name."))),
        );
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// As Kafka since KAFKA-17870: a request creating more than `--max-partitions-per-request`
/// partitions over all its topics fails whole, each topic with POLICY_VIOLATION, before anything
/// else is looked at.
fn too_many_partitions(
    broker: &Broker,
    request: &CreateTopicsRequest,
) -> Option<CreateTopicsResponse> {
    let max = broker.config().max_partitions_per_request;
    let default = broker.config().num_partitions;
    let total: u64 = request
        .topics
        .iter()
        .map(|t| match t.num_partitions {
            -1 if t.assignments.is_empty() => default,
            -1 => i32::try_from(t.assignments.len()).unwrap_or(i32::MAX),
            n => n,
        })
        .map(|n| u64::try_from(n).unwrap_or(0))
        .sum();
    if total <= u64::from(max) {
        return None;
    }
    let message = format!(
        "Excessively large number of partitions per request: {total} over {} topic(s), at most \
         {max} (--max-partitions-per-request)",
        request.topics.len()
    );
    limits::hit(
        Limit::PartitionsPerRequest,
        format_args!("CreateTopics refused: {message}"),
    );
    let results = request
        .topics
        .iter()
        .map(|t| {
            CreatableTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(ResponseError::PolicyViolation.code())
                .with_error_message(Some(StrBytes::from_string(message.clone())))
        })
        .collect();
    Some(CreateTopicsResponse::default().with_topics(results))
}

/// Names that occur more than once in the request.
fn duplicate_names(topics: &[CreatableTopic]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    topics
        .iter()
        .map(|t| t.name.0.to_string())
        .filter(|name| !seen.insert(name.clone()))
        .collect()
}

async fn create_one(
    broker: &Broker,
    ctx: &RequestContext,
    topic: CreatableTopic,
    validate_only: bool,
) -> CreatableTopicResult {
    let name = topic.name.0.to_string();
    let result = CreatableTopicResult::default().with_name(topic.name.clone());
    let fail = |code: i16, message: String| {
        tracing::info!(topic = %name, %message, "CreateTopics refused");
        result
            .clone()
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_string(message)))
    };
    if !topic.assignments.is_empty() {
        let own = broker.local().node_id;
        let only_local = topic
            .assignments
            .iter()
            .all(|a| a.broker_ids.iter().all(|&b| NodeId::from(b) == own));
        if !only_local {
            return fail(
                ResponseError::InvalidReplicaAssignment.code(),
                "replica assignments may only name existing nodes".into(),
            );
        }
    }
    let mut configs = BTreeMap::new();
    for config in &topic.configs {
        match &config.value {
            Some(value) => {
                configs.insert(config.name.to_string(), value.to_string());
            }
            None => {
                return fail(
                    ResponseError::InvalidConfig.code(),
                    format!("config '{}' has no value", config.name.as_str()),
                );
            }
        }
    }
    let partitions = match topic.num_partitions {
        -1 if topic.assignments.is_empty() => None,
        -1 => i32::try_from(topic.assignments.len()).ok(),
        n => Some(n),
    };
    let replication_factor = match topic.replication_factor {
        -1 => None,
        n => Some(n),
    };
    let new = NewTopic {
        name: name.clone(),
        partitions,
        replication_factor,
        configs,
    };
    let created = if validate_only {
        topics::validate(broker, &new).map(|()| None)
    } else {
        topics::create(broker, new).await.map(Some)
    };
    match created {
        Ok(Some(image)) => {
            tracing::info!(topic = %name, partitions = image.partitions.len(), "created topic");
            describe_created(broker, ctx, result, &image)
        }
        Ok(None) => result
            .with_num_partitions(partitions.unwrap_or(broker.config().num_partitions))
            .with_replication_factor(replication_factor.unwrap_or(1)),
        Err(e) => fail(e.kafka_code(), error_message(&e)),
    }
}

fn error_message(error: &MetadataError) -> String {
    error.to_string()
}

fn describe_created(
    broker: &Broker,
    ctx: &RequestContext,
    result: CreatableTopicResult,
    topic: &TopicImage,
) -> CreatableTopicResult {
    let result = result
        .with_topic_id(topic.id)
        .with_num_partitions(i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX))
        .with_replication_factor(topic.replication_factor);
    if ctx.version < 5 {
        return result;
    }
    let defaults = broker.topic_defaults();
    let configs = topic_config::KEYS
        .iter()
        .map(|key| {
            let explicit = topic.configs.get(key.name);
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_static_str(key.name))
                .with_value(
                    topic_config::effective(&topic.configs, defaults, key.name)
                        .map(StrBytes::from_string),
                )
                .with_config_source(if explicit.is_some() {
                    SOURCE_TOPIC
                } else {
                    SOURCE_DEFAULT
                })
        })
        .collect();
    result.with_configs(Some(configs))
}
