//! Metadata: brokers, topics (with ids), partitions and their leaders; auto-creates topics.

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use super::topics::{self, NewTopic, is_internal};
use crate::Broker;
use crate::metadata::{MetadataError, MetadataImage, NodeId, TopicImage, validate_topic_name};

/// Answers a Metadata request.
pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: MetadataRequest,
) -> MetadataResponse {
    let image = broker.image();
    let live = broker.cluster().live_nodes(&image);
    let topics = match &request.topics {
        // v0: an empty list means all topics; v1+: null means all, empty means none.
        None => all_topics(&image, &live),
        Some(list) if list.is_empty() && ctx.version == 0 => all_topics(&image, &live),
        Some(list) => {
            let allow_auto_create = ctx.version < 4 || request.allow_auto_topic_creation;
            let mut out = Vec::with_capacity(list.len());
            for requested in list {
                out.push(
                    requested_topic(broker, &image, &live, requested, allow_auto_create).await,
                );
            }
            out
        }
    };
    // Auto-creation may have moved the image on. A departed node, or one silent for a while,
    // drops out even while the metadata log cannot change (see `advertised_nodes`).
    let image = broker.image();
    let listed = broker.cluster().advertised_nodes(&image);
    let brokers = image
        .nodes
        .values()
        .filter(|node| listed.contains(&node.node_id))
        .map(|node| {
            MetadataResponseBroker::default()
                .with_node_id(node.node_id.into())
                .with_host(StrBytes::from_string(node.kafka_host.clone()))
                .with_port(i32::from(node.kafka_port))
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(image.cluster_id.clone())))
        .with_controller_id(broker.local().node_id.into())
        .with_topics(topics)
}

fn all_topics(image: &MetadataImage, live: &BTreeSet<NodeId>) -> Vec<MetadataResponseTopic> {
    image.topics().map(|t| describe(t, live)).collect()
}

async fn requested_topic(
    broker: &Broker,
    image: &MetadataImage,
    live: &BTreeSet<NodeId>,
    requested: &kafka_protocol::messages::metadata_request::MetadataRequestTopic,
    allow_auto_create: bool,
) -> MetadataResponseTopic {
    // v10+ may name a topic by id only.
    let Some(name) = requested.name.as_ref().map(|n| n.0.to_string()) else {
        return match image.topic_by_id(&requested.topic_id) {
            Some(topic) => describe(topic, live),
            None => MetadataResponseTopic::default()
                .with_topic_id(requested.topic_id)
                .with_error_code(ResponseError::UnknownTopicId.code()),
        };
    };
    if let Some(topic) = image.topic(&name) {
        return describe(topic, live);
    }
    let error = |e: MetadataError| {
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
            .with_error_code(e.kafka_code())
    };
    if is_internal(&name) && allow_auto_create {
        // As Kafka: a Metadata request may create an internal topic (the offsets topic, the
        // transaction state topic), but the broker's way (its partition count, replication
        // factor and retention), never with a client's defaults; until enough nodes are alive
        // for its replication factor, COORDINATOR_NOT_AVAILABLE.
        super::find_coordinator::ensure_internal_topic(broker, &name).await;
        return match broker.image().topic(&name) {
            Some(topic) => describe(topic, live),
            None => MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
                .with_is_internal(true)
                .with_error_code(ResponseError::CoordinatorNotAvailable.code()),
        };
    }
    if !(allow_auto_create && broker.config().auto_create_topics) {
        // Kafka names an invalid name as such whether or not it would have created the topic.
        return error(
            validate_topic_name(&name)
                .err()
                .unwrap_or(MetadataError::UnknownTopic(name.clone())),
        );
    }
    let new = NewTopic {
        name: name.clone(),
        partitions: None,
        replication_factor: None,
        configs: Default::default(),
    };
    match topics::create(broker, new).await {
        Ok(topic) => {
            tracing::info!(topic = %name, "auto-created topic");
            describe(&topic, live)
        }
        // Lost a race with another creator: the topic exists now.
        Err(MetadataError::TopicExists(_)) => match broker.image().topic(&name) {
            Some(topic) => describe(topic, live),
            None => error(MetadataError::UnknownTopic(name.clone())),
        },
        Err(e) => error(e),
    }
}

/// A topic as Metadata describes it. A partition whose leader is not among `live` (alive as
/// membership sees it, even before the metadata log moves leadership) reports
/// LEADER_NOT_AVAILABLE.
pub fn describe(topic: &Arc<TopicImage>, live: &BTreeSet<NodeId>) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|p| {
            let leader = if live.contains(&p.leader) {
                p.leader
            } else {
                NodeId::NONE
            };
            let error = if leader.is_none() {
                ResponseError::LeaderNotAvailable.code()
            } else {
                0
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(p.index)
                .with_leader_id(leader.into())
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas.iter().map(|&n| n.into()).collect())
                .with_isr_nodes(p.isr.iter().map(|&n| n.into()).collect())
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.internal)
        .with_partitions(partitions)
}
