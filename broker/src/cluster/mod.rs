//! The cluster layer: what turns single nodes into one cluster. It joins the mesh's gossip
//! membership (who is alive) with the Raft metadata log (who owns what):
//!
//! - [`Cluster`]: liveness of registered nodes, from the membership view;
//! - [`transport`]: the metadata log's RPCs over the mesh's control plane;
//! - [`formation`]: forming a new cluster with `--bootstrap-expect`, or waiting to be added;
//! - [`controller`]: on the metadata leader, adds joining nodes as learners, keeps the configured
//!   number of voters, and moves partition leadership away from dead nodes;
//! - [`gossip`]: what this node tells the others about itself (node id, endpoints, role, load);
//! - [`admission`]: whose membership gossip is heard (the nodes of the metadata log);
//! - [`handover`]: a voter shutting down waits until its seat is handed over;
//! - [`events`]: log lines for metadata leader elections and this node's seat;
//! - [`voters`]: the pure rules for who votes in the metadata log;
//! - [`reassign`]: the pure rules for moving a removed node's replicas.

pub mod admission;
pub mod controller;
pub mod events;
pub mod formation;
pub mod gossip;
pub mod handover;
pub mod reassign;
pub mod transport;
pub mod voters;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rafka_mesh::membership::MemberStatus;
use rafka_mesh::{MembershipView, Mesh, PeerId};
use tokio::sync::watch;

use crate::metadata::{MetadataImage, NodeId};
use voters::Health;

/// How long a registered node may be silent before Metadata stops listing it as a broker.
pub const UNLISTED_AFTER: Duration = Duration::from_secs(10);
/// The gossip keys this node writes about itself (defined once, shared with the client).
pub use rafka_format::gossip::{
    BROKER_EPOCH_KEY, FEATURE_LEVELS_KEY, FORMING_KEY, HTTP_KEY, KAFKA_KEY, LED_KEY,
    METADATA_VERSION_KEY, NODE_ID_KEY, ROLE_KEY,
};

/// A member that announced it leaves counts as still answering (handing its seat over) this long.
pub const LEAVING_GRACE: Duration = Duration::from_secs(15);

/// Liveness of nodes, as membership sees it (cheap to clone).
#[derive(Clone, Debug)]
pub struct Cluster {
    mesh: Mesh,
    view: watch::Receiver<Arc<MembershipView>>,
    leaving: Arc<AtomicBool>,
    /// Nodes `rafka cluster remove` removed while the cluster's feature level could not record
    /// it (below `Feature::NodeRemoval`): this controller treats them as gone. Lost when the
    /// metadata leadership moves; a removed node is still dead, so it is then gone after the
    /// replacement time.
    removed: Arc<Mutex<BTreeSet<PeerId>>>,
}

impl Cluster {
    /// Reads liveness from `mesh`'s membership.
    pub fn new(mesh: Mesh) -> Self {
        let view = mesh.membership();
        Self {
            mesh,
            view,
            leaving: Arc::new(AtomicBool::new(false)),
            removed: Arc::default(),
        }
    }

    /// Treats `peer` as removed for good on this node's controller (the removal of a cluster
    /// whose feature level cannot record it in the metadata log).
    pub fn mark_removed(&self, peer: PeerId) {
        self.removed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(peer);
    }

    /// `peer` registered again (a removed node that came back as a new node).
    pub fn unmark_removed(&self, peer: &PeerId) {
        self.removed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(peer);
    }

    /// Whether `peer` was removed on this node with [`Self::mark_removed`].
    pub fn is_removed(&self, peer: &PeerId) -> bool {
        self.removed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(peer)
    }

    /// This node is leaving (shutting down): from now on its controller (if it leads the metadata
    /// log) hands its seat over.
    pub fn set_leaving(&self) {
        self.leaving.store(true, Ordering::Release);
    }

    /// Whether this node is leaving.
    pub fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::Acquire)
    }

    /// How the controller sees `peer` for its metadata seat: a member dead for less than
    /// `replace_after` (or missing from the view while it has been known for less than that,
    /// `known_for`) is down, not gone.
    pub fn health(&self, peer: &PeerId, replace_after: Duration, known_for: Duration) -> Health {
        if *peer == self.mesh.local_peer_id() {
            return if self.is_leaving() {
                Health::Leaving
            } else {
                Health::Alive
            };
        }
        if self.is_removed(peer) {
            return Health::Gone;
        }
        let view = self.view.borrow();
        let Some(member) = view.member(peer) else {
            return if known_for >= replace_after {
                Health::Gone
            } else {
                Health::Down
            };
        };
        match member.status {
            MemberStatus::Alive | MemberStatus::Suspect => Health::Alive,
            MemberStatus::Left if member.last_heard_ago < LEAVING_GRACE => Health::Leaving,
            MemberStatus::Left => Health::Gone,
            MemberStatus::Dead if member.last_heard_ago < replace_after => Health::Down,
            MemberStatus::Dead => Health::Gone,
        }
    }

    /// The mesh handle.
    pub fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    /// The current membership view.
    pub fn view(&self) -> Arc<MembershipView> {
        self.view.borrow().clone()
    }

    /// Whether the node with this peer id is alive (or only suspected). This node always is (even
    /// while leaving: the others move its partitions once they see it gone, and where it is the
    /// only in-sync replica it keeps leading for when it returns).
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

    /// The registered nodes Metadata lists as brokers: not those that left (or that membership
    /// has never heard of), and not those silent for more than [`UNLISTED_AFTER`] (as Kafka stops
    /// listing a broker whose session timed out) — but the silent ones only while this node sees
    /// a majority of the others alive. A node cut off from the majority cannot tell their death
    /// from its own isolation, so it lists them, as a Kafka broker cut off from its controller
    /// answers from its last metadata. Dropping a broker makes clients abandon the requests in
    /// flight to it and send them again elsewhere: after a split heals a producer without
    /// idempotence would write them twice.
    pub fn advertised_nodes(&self, image: &MetadataImage) -> BTreeSet<NodeId> {
        advertised(image, &self.view(), &self.mesh.local_peer_id())
    }
}

/// [`Cluster::advertised_nodes`] for one view, held by `local`.
fn advertised(image: &MetadataImage, view: &MembershipView, local: &PeerId) -> BTreeSet<NodeId> {
    // (node, whether alive, how long silent) for every node that has not left.
    let staying: Vec<(NodeId, bool, Duration)> = image
        .nodes
        .values()
        .filter_map(|node| {
            let peer = node.peer_id.parse::<PeerId>().ok()?;
            if peer == *local {
                return Some((node.node_id, true, Duration::ZERO));
            }
            let member = view.member(&peer)?;
            (member.status != MemberStatus::Left).then_some((
                node.node_id,
                member.is_live(),
                member.last_heard_ago,
            ))
        })
        .collect();
    let alive = staying.iter().filter(|(_, live, _)| *live).count();
    let majority = alive * 2 > staying.len();
    staying
        .into_iter()
        .filter(|(_, live, silent)| *live || !majority || *silent < UNLISTED_AFTER)
        .map(|(id, _, _)| id)
        .collect()
}

#[cfg(test)]
mod tests {
    use rafka_mesh::MemberInfo;

    use super::*;
    use crate::metadata::NodeImage;

    /// An image of nodes 1..=n and a view held by node 1 with the others in `states`
    /// (status, seconds silent).
    fn cluster(states: &[(MemberStatus, u64)]) -> (MetadataImage, MembershipView, PeerId) {
        let peers: Vec<PeerId> = (0..=states.len()).map(|_| PeerId::random()).collect();
        let mut image = MetadataImage::default();
        for (i, peer) in peers.iter().enumerate() {
            let id = NodeId(i32::try_from(i + 1).unwrap());
            image.nodes.insert(
                id,
                NodeImage {
                    node_id: id,
                    peer_id: peer.to_string(),
                    broker_epoch: 1,
                    kafka_host: "127.0.0.1".into(),
                    kafka_port: 9092,
                    supported: None,
                },
            );
        }
        let members = peers[1..]
            .iter()
            .zip(states)
            .map(|(peer, &(status, silent))| MemberInfo {
                peer_id: *peer,
                generation: 1,
                status,
                heartbeat: 1,
                last_heard_ago: Duration::from_secs(silent),
                keys: Default::default(),
            })
            .collect();
        let view = MembershipView {
            local: Some(peers[0]),
            members,
        };
        (image, view, peers[0])
    }

    fn listed(states: &[(MemberStatus, u64)]) -> Vec<i32> {
        let (image, view, local) = cluster(states);
        advertised(&image, &view, &local)
            .into_iter()
            .map(|node| node.0)
            .collect()
    }

    #[test]
    fn with_a_majority_a_node_silent_too_long_or_gone_is_not_listed() {
        use MemberStatus::{Alive, Dead, Left, Suspect};
        assert_eq!(listed(&[(Alive, 0), (Suspect, 3)]), [1, 2, 3]);
        // Dead but only just: still listed (a client keeps its requests to it in flight).
        assert_eq!(listed(&[(Alive, 0), (Dead, 5)]), [1, 2, 3]);
        assert_eq!(listed(&[(Alive, 0), (Dead, 11)]), [1, 2]);
        assert_eq!(listed(&[(Alive, 0), (Left, 0)]), [1, 2]);
    }

    #[test]
    fn cut_off_from_the_majority_a_node_lists_every_node_that_did_not_leave() {
        use MemberStatus::{Alive, Dead, Left};
        assert_eq!(listed(&[(Dead, 60), (Dead, 60)]), [1, 2, 3]);
        // Half is not a majority.
        assert_eq!(listed(&[(Alive, 0), (Dead, 60), (Dead, 60)]), [1, 2, 3, 4]);
        // Nodes that left do not count: of the two staying, both are alive.
        assert_eq!(listed(&[(Alive, 0), (Left, 0), (Left, 0)]), [1, 2]);
    }
}
