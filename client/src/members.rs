//! Cluster membership as the mesh reports it: every member a node knows, with its peer id, the
//! Kafka node id it was given, its addresses, its state and its role in the metadata log.
//!
//! The mesh transport routes by it (node id → peer, see [`crate::routes`]) and `rafka cluster`
//! prints it. A node answers with what its gossip membership knows (`Mesh::cluster_info`); the
//! keys are the ones the broker gossips about itself (`rafka_format::gossip`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::error::Result;
use crate::metadata::NodeId;

/// The gossip keys a node writes about itself (defined once in `rafka_format::gossip`, shared
/// with the broker and the mesh).
pub use rafka_format::gossip::{
    CONTROL_ADDRS_KEY, DATA_ADDRS_KEY, HTTP_KEY, KAFKA_KEY, LED_KEY, METADATA_VERSION_KEY,
    NODE_ID_KEY, ROLE_KEY,
};

/// A member's state as the answering node observes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberState {
    /// Heartbeats arrive.
    Alive,
    /// Heartbeats are late; not yet presumed dead.
    Suspect,
    /// No heartbeat for long: presumed crashed or cut off.
    Dead,
    /// It announced that it left (a clean shutdown).
    Left,
}

impl MemberState {
    /// Alive or suspect: worth talking to.
    pub fn is_live(self) -> bool {
        matches!(self, MemberState::Alive | MemberState::Suspect)
    }

    /// `alive`, `suspect`, `dead` or `left`.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Dead => "dead",
            MemberState::Left => "left",
        }
    }
}

impl fmt::Display for MemberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMember {
    /// Its libp2p peer id (base58).
    pub peer_id: String,
    /// Its state.
    pub state: MemberState,
    /// How long ago its heartbeat last advanced (zero for the answering node itself).
    pub last_heard_ago: Duration,
    /// Its incarnation (grows across restarts).
    pub generation: u64,
    /// Everything it gossips about itself (see the `*_KEY` constants).
    pub keys: BTreeMap<String, String>,
}

impl ClusterMember {
    /// The Kafka node id the metadata log gave it (`None` before it registered).
    pub fn node_id(&self) -> Option<NodeId> {
        self.keys.get(NODE_ID_KEY)?.trim().parse().ok()
    }

    /// Its advertised Kafka endpoint.
    pub fn kafka(&self) -> Option<&str> {
        self.keys.get(KAFKA_KEY).map(String::as_str)
    }

    /// Its HTTP admin endpoint.
    pub fn http(&self) -> Option<&str> {
        self.keys.get(HTTP_KEY).map(String::as_str)
    }

    /// Its data-plane (p2p) addresses.
    pub fn data_addrs(&self) -> Vec<String> {
        self.addrs(DATA_ADDRS_KEY)
    }

    /// Its control-plane addresses.
    pub fn control_addrs(&self) -> Vec<String> {
        self.addrs(CONTROL_ADDRS_KEY)
    }

    fn addrs(&self, key: &str) -> Vec<String> {
        self.keys
            .get(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Its role in the metadata log: `leader`, `voter`, `learner` or `none`.
    pub fn metadata_role(&self) -> Option<&str> {
        self.keys.get(ROLE_KEY).map(String::as_str)
    }

    /// How many partitions it leads.
    pub fn partitions_led(&self) -> Option<u64> {
        self.keys.get(LED_KEY)?.trim().parse().ok()
    }

    /// The metadata version it has applied.
    pub fn metadata_version(&self) -> Option<u64> {
        self.keys.get(METADATA_VERSION_KEY)?.trim().parse().ok()
    }

    /// Whether it is alive or suspect.
    pub fn is_live(&self) -> bool {
        self.state.is_live()
    }
}

/// What one node said about the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// The node that answered (its peer id), if it said.
    pub responder: Option<String>,
    /// Every member it knows, itself included.
    pub members: Vec<ClusterMember>,
}

impl ClusterView {
    /// Members sorted for display: by node id (members without one last), then peer id.
    pub fn sorted(mut self) -> ClusterView {
        self.members.sort_by(|a, b| {
            let key = |m: &ClusterMember| (m.node_id().is_none(), m.node_id(), m.peer_id.clone());
            key(a).cmp(&key(b))
        });
        self
    }
}

/// Asks a peer which members it knows: the mesh's `cluster_info`, or a stand-in in tests.
pub trait MemberSource: Send + Sync + 'static {
    /// The members `peer` (base58 peer id) knows. Asking also makes their data addresses
    /// dialable, on the mesh.
    fn cluster_info(&self, peer: &str) -> BoxFuture<'static, Result<ClusterView>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(keys: &[(&str, &str)]) -> ClusterMember {
        ClusterMember {
            peer_id: "p".into(),
            state: MemberState::Alive,
            last_heard_ago: Duration::ZERO,
            generation: 1,
            keys: keys
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn keys_are_parsed_and_bad_values_ignored() {
        let m = member(&[
            (NODE_ID_KEY, "3"),
            (DATA_ADDRS_KEY, "/ip4/127.0.0.1/tcp/1, /ip4/10.0.0.1/tcp/1"),
            (ROLE_KEY, "voter"),
            (LED_KEY, "2"),
            (METADATA_VERSION_KEY, "x"),
        ]);
        assert_eq!(m.node_id(), Some(3));
        assert_eq!(m.data_addrs().len(), 2);
        assert_eq!(m.metadata_role(), Some("voter"));
        assert_eq!(m.partitions_led(), Some(2));
        assert_eq!(m.metadata_version(), None);
        assert!(m.control_addrs().is_empty());
        assert_eq!(member(&[(NODE_ID_KEY, "-")]).node_id(), None);
    }

    #[test]
    fn views_sort_by_node_id_then_peer() {
        let mut a = member(&[(NODE_ID_KEY, "2")]);
        a.peer_id = "a".into();
        let mut b = member(&[(NODE_ID_KEY, "1")]);
        b.peer_id = "b".into();
        let mut c = member(&[]);
        c.peer_id = "c".into();
        let view = ClusterView {
            responder: None,
            members: vec![c, a, b],
        }
        .sorted();
        let order: Vec<_> = view.members.iter().map(|m| m.peer_id.as_str()).collect();
        assert_eq!(order, ["b", "a", "c"]);
    }

    #[cfg(feature = "mesh")]
    #[test]
    fn address_keys_match_the_mesh() {
        assert_eq!(DATA_ADDRS_KEY, rafka_mesh::view::DATA_ADDRS_KEY);
        assert_eq!(CONTROL_ADDRS_KEY, rafka_mesh::view::CONTROL_ADDRS_KEY);
    }
}
