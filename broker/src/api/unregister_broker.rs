//! UnregisterBroker (`rafka cluster remove NODE_ID`): removes a stopped node for good. Its
//! replicas then move to live nodes (the controller adds new ones, which catch up before the
//! removed node's are dropped), and it leaves the metadata log. A node that is still alive is
//! refused (stop it first: a clean stop hands its work over), and so is the last in-sync replica
//! of a partition (its data has no other copy), and so is a removal whose replicas would not all
//! fit on live nodes under `--max-partitions-per-node` (POLICY_VIOLATION; nothing changes).
//!
//! Below cluster feature level 3 (`node-removal`: nodes of older levels cannot decode the
//! removal record) the removal is what level 0 can express: the metadata leader takes the node
//! out of the metadata log at once (its seat handed over as for a node gone for good), and the
//! controller moves its leaderships and ISR places as for any dead node; its registration and
//! replica assignments stay until the cluster reaches level 3. The request must then reach the
//! metadata leader (NOT_CONTROLLER elsewhere: the CLI sends it to the controller).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{UnregisterBrokerRequest, UnregisterBrokerResponse};
use kafka_protocol::protocol::StrBytes;
use rafka_mesh::PeerId;

use crate::Broker;
use crate::cluster::reassign;
use crate::ids::NodeId;
use crate::limits::{self, Limit};
use crate::metadata::{
    Feature, GatedCommand, MetadataCommand, MetadataError, MetadataImage, RaftRole,
};

/// Removes the node, or says why not.
pub async fn handle(broker: &Broker, request: UnregisterBrokerRequest) -> UnregisterBrokerResponse {
    let node = NodeId::from(request.broker_id);
    match remove(broker, node).await {
        Ok(()) => {
            tracing::info!(%node, "node removed from the cluster: its replicas move to the other nodes");
            UnregisterBrokerResponse::default()
        }
        Err((code, message)) => {
            tracing::info!(%node, %message, "node removal refused");
            UnregisterBrokerResponse::default()
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(message)))
        }
    }
}

async fn remove(broker: &Broker, node: NodeId) -> Result<(), (i16, String)> {
    let image = broker.image();
    if !image.nodes.contains_key(&node) {
        let e = MetadataError::UnknownNode(node);
        return Err((e.kafka_code(), e.to_string()));
    }
    if broker.cluster().is_node_live(&image, node) {
        return Err((
            ResponseError::InvalidRequest.code(),
            format!(
                "node {node} is alive: stop it first (SIGTERM hands its work over), then remove it"
            ),
        ));
    }
    if !image.features().enabled(Feature::NodeRemoval) {
        return remove_at_level_0(broker, &image, node).await;
    }
    room_for_replicas(broker, &image, node)?;
    let command = MetadataCommand::Gated(GatedCommand::RemoveNode { node_id: node });
    broker
        .metadata()
        .propose(command)
        .await
        .map(|_| ())
        .map_err(|e| (e.kafka_code(), e.to_string()))
}

/// Refuses the removal, before anything changes, when the node's replicas would not all find a
/// live node under `--max-partitions-per-node` (the controller moves them only to such nodes).
fn room_for_replicas(
    broker: &Broker,
    image: &MetadataImage,
    node: NodeId,
) -> Result<(), (i16, String)> {
    let max = broker.config().max_partitions_per_node as usize;
    let live = broker.cluster().live_nodes(image);
    let Err(no_room) = reassign::check_removal(image, node, &live, max) else {
        return Ok(());
    };
    let full: Vec<String> = no_room.full.iter().map(ToString::to_string).collect();
    let message = format!(
        "node {node} was not removed: moving its replica of {} would put node {} over the limit \
         of {max} partition replicas per node (--max-partitions-per-node); nothing changed (raise \
         the limit, add a node or delete topics, then remove it again)",
        no_room.partition,
        full.join(" or ")
    );
    limits::hit(Limit::PartitionsPerNode, format_args!("{message}"));
    Err((ResponseError::PolicyViolation.code(), message))
}

/// The removal a cluster below `node-removal` can make: on the metadata leader, the node's seat
/// in the metadata log is given up at once.
async fn remove_at_level_0(
    broker: &Broker,
    image: &MetadataImage,
    node: NodeId,
) -> Result<(), (i16, String)> {
    if broker.metadata().status().await.role != RaftRole::Leader {
        return Err((
            ResponseError::NotController.code(),
            "below cluster feature level 3 a node is removed by the metadata leader: send the \
             request to the controller"
                .to_string(),
        ));
    }
    let peer = image
        .nodes
        .get(&node)
        .and_then(|n| n.peer_id.parse::<PeerId>().ok())
        .ok_or_else(|| {
            let e = MetadataError::UnknownNode(node);
            (e.kafka_code(), e.to_string())
        })?;
    broker.cluster().mark_removed(peer);
    tracing::info!(%node, finalized = %image.features().finalized(), "node removed from the metadata quorum; its registration and replicas stay until the cluster reaches feature level 3");
    Ok(())
}
