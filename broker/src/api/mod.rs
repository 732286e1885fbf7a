//! The Kafka API: one file per request type, and the dispatcher that routes frames to them.
//!
//! Handlers are transport-agnostic: they see a decoded request and a [`RequestContext`], and return
//! a response (or a future of one). [`dispatch::handle_frame`] does the decoding, version checks and
//! encoding, for both the TCP and the libp2p listener.

mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod alter_configs;
mod api_versions;
mod create_topics;
pub mod deadline;
mod delete_groups;
mod delete_topics;
mod describe_configs;
mod describe_groups;
mod describe_transactions;
pub mod dispatch;
mod end_txn;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod list_transactions;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
mod sync_group;
pub mod topics;
mod txn_offset_commit;
mod unregister_broker;
pub mod versions;
mod write_txn_markers;

pub use dispatch::{ConnectionInfo, Handled, RequestContext, Started, handle_frame};
pub use produce::now_ms;

/// The client id a request carries (empty if none).
pub(crate) fn client_id(ctx: &RequestContext) -> String {
    ctx.header
        .client_id
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_default()
}

/// Where a request came from, as Kafka shows a member's host (`/127.0.0.1`).
pub(crate) fn client_host(ctx: &RequestContext) -> String {
    match &ctx.connection {
        ConnectionInfo::Tcp(addr) => format!("/{}", addr.ip()),
        ConnectionInfo::Mesh(peer) => format!("p2p:{peer}"),
    }
}

/// Whether a request came over the mesh from a node registered in the cluster: what Kafka's
/// broker-to-broker requests require (WriteTxnMarkers, AddPartitionsToTxn v4+); anything else
/// gets CLUSTER_AUTHORIZATION_FAILED. A request this node sends itself through
/// [`crate::peers::request_node`] passes (it is registered too).
pub(crate) fn from_registered_node(broker: &crate::Broker, ctx: &RequestContext) -> bool {
    let ConnectionInfo::Mesh(peer) = &ctx.connection else {
        return false;
    };
    let peer = peer.to_string();
    broker.image().nodes.values().any(|n| n.peer_id == peer)
}
