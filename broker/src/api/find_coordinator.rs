//! FindCoordinator: v0-3 answer one key in top-level fields, v4+ answer a list (KIP-699).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use std::collections::BTreeMap;

use super::RequestContext;
use super::topics::{self, NewTopic};
use crate::Broker;
use crate::group::{OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
use crate::metadata::{MetadataError, NodeId};

const KEY_TYPE_GROUP: i8 = 0;

/// Creates `__consumer_offsets` if no node has yet: [`ensure_internal_topic`].
pub async fn ensure_offsets_topic(broker: &Broker) {
    ensure_internal_topic(broker, OFFSETS_TOPIC).await;
}

/// Creates a coordinator's internal topic (`__consumer_offsets`, `__transaction_state`) if no
/// node has yet: an ordinary topic in the metadata log, with retention off (superseded records
/// are dropped by the coordinator's snapshots), at its configured partition count and
/// replication factor, the factor never smaller (KIP-115): until that many nodes are alive it is
/// not created, and FindCoordinator answers COORDINATOR_NOT_AVAILABLE. A cluster with fewer
/// registered nodes than the factor uses every node it has. Any other name is ignored.
pub async fn ensure_internal_topic(broker: &Broker, name: &str) {
    let config = broker.config();
    let (partitions, configured) = match name {
        OFFSETS_TOPIC => (
            config.offsets_topic_partitions,
            config.offsets_topic_replication_factor,
        ),
        TRANSACTION_STATE_TOPIC => (
            config.transaction_state_partitions,
            config.transaction_state_replication_factor,
        ),
        _ => return,
    };
    let image = broker.image();
    if image.topic(name).is_some() {
        return;
    }
    let registered = i16::try_from(image.nodes.len()).unwrap_or(i16::MAX).max(1);
    let factor = configured.min(registered);
    let live = broker.cluster().live_nodes(&image).len();
    if live < usize::try_from(factor).unwrap_or(usize::MAX) {
        tracing::info!(
            topic = name,
            live,
            replication_factor = factor,
            "not creating an internal topic until enough nodes are alive"
        );
        return;
    }
    let topic = NewTopic {
        name: name.to_string(),
        partitions: Some(partitions),
        replication_factor: Some(factor),
        configs: BTreeMap::from([("retention.ms".to_string(), "-1".to_string())]),
    };
    match topics::create_internal(broker, topic).await {
        Ok(_) | Err(MetadataError::TopicExists(_)) => {}
        Err(e) => tracing::warn!(topic = name, error = %e, "cannot create an internal topic"),
    }
}

const KEY_TYPE_TRANSACTION: i8 = 1;

/// Where one key's coordinator is: (node id, host, port) or an error and its message.
type Answer = Result<(NodeId, String, i32), (ResponseError, &'static str)>;

/// Answers a FindCoordinator request. A coordinator's internal topic is created on the first
/// request for one of its keys, as Kafka does, so that its partitions spread over the nodes
/// alive by then.
pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    match request.key_type {
        KEY_TYPE_GROUP => ensure_offsets_topic(broker).await,
        KEY_TYPE_TRANSACTION if crate::txn::served(broker) => {
            ensure_internal_topic(broker, TRANSACTION_STATE_TOPIC).await
        }
        _ => {}
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
    let (topic, partition, missing, down) = match key_type {
        KEY_TYPE_GROUP => (
            OFFSETS_TOPIC,
            broker.groups().partition_of(key.as_str()),
            "the offsets topic does not exist yet",
            "the group's coordinator is not available",
        ),
        KEY_TYPE_TRANSACTION if crate::txn::served(broker) => (
            TRANSACTION_STATE_TOPIC,
            broker.txns().partition_of(key.as_str()),
            "the transaction state topic does not exist yet",
            "the transaction coordinator is not available",
        ),
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
    };
    let image = broker.image();
    if image.topic(topic).is_none() {
        return Err((ResponseError::CoordinatorNotAvailable, missing));
    }
    match broker
        .live_leader(topic, partition)
        .and_then(|id| image.nodes.get(&id))
    {
        Some(node) => Ok((
            node.node_id,
            node.kafka_host.clone(),
            i32::from(node.kafka_port),
        )),
        None => Err((ResponseError::CoordinatorNotAvailable, down)),
    }
}
