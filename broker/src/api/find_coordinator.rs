//! FindCoordinator: v0-3 answer one key in top-level fields, v4+ answer a list (KIP-699).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use std::collections::BTreeMap;

use super::RequestContext;
use super::topics::{self, NewTopic};
use crate::Broker;
use crate::group::OFFSETS_TOPIC;
use crate::metadata::{MetadataError, NodeId};

const KEY_TYPE_GROUP: i8 = 0;

/// Creates `__consumer_offsets` if no node has yet (an ordinary topic in the metadata log, with
/// retention off: superseded records are dropped by the coordinator's snapshots), at its
/// configured replication factor and never smaller (KIP-115): until that many nodes are alive
/// it is not created, and FindCoordinator answers COORDINATOR_NOT_AVAILABLE. A cluster with
/// fewer registered nodes than the factor uses every node it has.
pub async fn ensure_offsets_topic(broker: &Broker) {
    let image = broker.image();
    if image.topic(OFFSETS_TOPIC).is_some() {
        return;
    }
    let factor = offsets_replication_factor(broker);
    let live = broker.cluster().live_nodes(&image).len();
    if live < usize::try_from(factor).unwrap_or(usize::MAX) {
        tracing::info!(
            live,
            replication_factor = factor,
            "not creating the group offsets topic until enough nodes are alive"
        );
        return;
    }
    let topic = NewTopic {
        name: OFFSETS_TOPIC.to_string(),
        partitions: Some(broker.config().offsets_topic_partitions),
        replication_factor: Some(factor),
        configs: BTreeMap::from([("retention.ms".to_string(), "-1".to_string())]),
    };
    match topics::create_internal(broker, topic).await {
        Ok(_) | Err(MetadataError::TopicExists(_)) => {}
        Err(e) => tracing::warn!(error = %e, "cannot create the group offsets topic"),
    }
}

/// The configured factor, at most the nodes registered in the cluster.
fn offsets_replication_factor(broker: &Broker) -> i16 {
    let registered = broker.image().nodes.len();
    let registered = i16::try_from(registered).unwrap_or(i16::MAX).max(1);
    broker
        .config()
        .offsets_topic_replication_factor
        .min(registered)
}

const KEY_TYPE_TRANSACTION: i8 = 1;

/// Where one key's coordinator is: (node id, host, port) or an error and its message.
type Answer = Result<(NodeId, String, i32), (ResponseError, &'static str)>;

/// Answers a FindCoordinator request. The group offsets topic is created on the first group
/// request, as Kafka does, so that its partitions spread over the nodes alive by then.
pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    if request.key_type == KEY_TYPE_GROUP {
        ensure_offsets_topic(broker).await;
    }
    if ctx.version < 4 {
        let answer = find(broker, &request.key, request.key_type);
        let response = FindCoordinatorResponse::default();
        return match answer {
            Ok((node, host, port)) => response
                .with_node_id(node.into())
                .with_host(StrBytes::from_string(host))
                .with_port(port),
            Err((code, message)) => response
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_static_str(message)))
                .with_node_id(BrokerId(-1))
                .with_host(StrBytes::default())
                .with_port(-1),
        };
    }
    let coordinators = request
        .coordinator_keys
        .iter()
        .map(|key| {
            let coordinator = Coordinator::default().with_key(key.clone());
            match find(broker, key, request.key_type) {
                Ok((node, host, port)) => coordinator
                    .with_node_id(node.into())
                    .with_host(StrBytes::from_string(host))
                    .with_port(port),
                Err((code, message)) => coordinator
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_static_str(message)))
                    .with_node_id(BrokerId(-1))
                    .with_port(-1),
            }
        })
        .collect();
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}

fn find(broker: &Broker, key: &StrBytes, key_type: i8) -> Answer {
    match key_type {
        KEY_TYPE_GROUP => {}
        KEY_TYPE_TRANSACTION => {
            return Err((
                ResponseError::CoordinatorNotAvailable,
                "transactions are not supported yet",
            ));
        }
        _ => {
            return Err((
                ResponseError::InvalidRequest,
                "unknown coordinator key type",
            ));
        }
    }
    let image = broker.image();
    let Some(topic) = image.topic(OFFSETS_TOPIC) else {
        return Err((
            ResponseError::CoordinatorNotAvailable,
            "the offsets topic does not exist yet",
        ));
    };
    let partition = broker.groups().partition_of(key.as_str());
    let leader = usize::try_from(partition)
        .ok()
        .and_then(|i| topic.partitions.get(i))
        .map(|p| p.leader);
    let live = leader.filter(|id| broker.cluster().is_node_live(&image, *id));
    match live.and_then(|id| image.nodes.get(&id)) {
        Some(node) => Ok((
            node.node_id,
            node.kafka_host.clone(),
            i32::from(node.kafka_port),
        )),
        None => Err((
            ResponseError::CoordinatorNotAvailable,
            "the group's coordinator is not available",
        )),
    }
}
