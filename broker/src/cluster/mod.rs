//! The cluster layer: what turns single nodes into one cluster. It joins the mesh's gossip
//! membership (who is alive) with the Raft metadata log (who owns what):
//!
//! - [`Cluster`]: liveness of registered nodes, from the membership view;
//! - [`transport`]: the metadata log's RPCs over the mesh's control plane;
//! - [`formation`]: forming a new cluster with `--bootstrap-expect`, or waiting to be added;
//! - [`controller`]: on the metadata leader, adds joining nodes as learners, keeps the configured
//!   number of voters, and moves partition leadership away from dead nodes;
//! - [`gossip`]: what this node tells the others about itself (node id, endpoints, role, load).

pub mod controller;
pub mod formation;
pub mod gossip;
pub mod transport;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rafka_mesh::membership::MemberStatus;
use rafka_mesh::{MembershipView, Mesh, PeerId};
use tokio::sync::watch;

use crate::metadata::{MetadataImage, NodeId};

/// How long a registered node may be silent before Metadata stops listing it as a broker.
pub const UNLISTED_AFTER: Duration = Duration::from_secs(10);
/// Gossip key: the node's Kafka node id.
pub const NODE_ID_KEY: &str = "node_id";
/// Gossip key: advertised Kafka endpoint (`host:port`).
pub const KAFKA_KEY: &str = "kafka";
/// Gossip key: HTTP admin endpoint.
pub const HTTP_KEY: &str = "http";
/// Gossip key: role in the metadata log (`leader`, `voter`, `learner`, `none`).
pub const ROLE_KEY: &str = "metadata_role";
/// Gossip key: metadata version applied.
pub const METADATA_VERSION_KEY: &str = "metadata_version";
/// Gossip key: partitions this node leads.
pub const LED_KEY: &str = "partitions_led";
/// Gossip key of a fresh node that will form a cluster: the `--bootstrap-expect` count.
pub const FORMING_KEY: &str = "forming";

/// Liveness of nodes, as membership sees it (cheap to clone).
#[derive(Clone, Debug)]
pub struct Cluster {
    mesh: Mesh,
    view: watch::Receiver<Arc<MembershipView>>,
}

impl Cluster {
    /// Reads liveness from `mesh`'s membership.
    pub fn new(mesh: Mesh) -> Self {
        let view = mesh.membership();
        Self { mesh, view }
    }

    /// The mesh handle.
    pub fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    /// The current membership view.
    pub fn view(&self) -> Arc<MembershipView> {
        self.view.borrow().clone()
    }

    /// Whether the node with this peer id is alive (or only suspected). This node always is.
    pub fn is_peer_live(&self, peer: &PeerId) -> bool {
        *peer == self.mesh.local_peer_id()
            || self.view.borrow().member(peer).is_some_and(|m| m.is_live())
    }

    /// Whether a registered node is alive.
    pub fn is_node_live(&self, image: &MetadataImage, node: NodeId) -> bool {
        image
            .nodes
            .get(&node)
            .and_then(|n| n.peer_id.parse::<PeerId>().ok())
            .is_some_and(|peer| self.is_peer_live(&peer))
    }

    /// Registered nodes alive now.
    pub fn live_nodes(&self, image: &MetadataImage) -> BTreeSet<NodeId> {
        image
            .nodes
            .keys()
            .copied()
            .filter(|id| self.is_node_live(image, *id))
            .collect()
    }

    /// The registered nodes Metadata lists as brokers: all but those that left and those silent
    /// for more than [`UNLISTED_AFTER`] (as Kafka stops listing a broker whose session timed
    /// out) — and only while this node sees a majority of the registered nodes alive. A node cut
    /// off from the majority cannot tell the others' death from its own isolation, so it lists
    /// them all, as a Kafka broker cut off from its controller answers from its last metadata.
    /// Dropping a broker makes clients abandon the requests in flight to it and send them again
    /// elsewhere: after a split heals a producer without idempotence would write them twice.
    pub fn advertised_nodes(&self, image: &MetadataImage) -> BTreeSet<NodeId> {
        let live = self.live_nodes(image);
        let all = image.nodes.keys().copied();
        if live.len() * 2 <= image.nodes.len() {
            return all.collect();
        }
        let view = self.view();
        all.filter(|id| {
            live.contains(id)
                || image
                    .nodes
                    .get(id)
                    .and_then(|node| node.peer_id.parse::<PeerId>().ok())
                    .and_then(|peer| view.member(&peer))
                    .is_some_and(|m| {
                        m.status != MemberStatus::Left && m.last_heard_ago < UNLISTED_AFTER
                    })
        })
        .collect()
    }
}
