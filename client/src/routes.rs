//! [`NodeRoutes`]: where each node id is reached.
//!
//! Kafka TCP uses the `host:port` each broker advertises in Metadata. The mesh routes by peer id:
//! each member gossips the node id the metadata log gave it (`node_id`), and a node's
//! `cluster_info` answer lists them, so node id → peer id comes from there (the mesh makes the
//! members' data addresses dialable when it receives the answer). [`crate::Client`] learns the
//! member list again with every metadata refresh, and when a request needs a node id it lacks.

use std::collections::{BTreeMap, HashMap};

use crate::connection::Endpoint;
use crate::members::ClusterMember;
use crate::metadata::{ClusterMetadata, NodeId};

/// A node reached over the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshRoute {
    /// Its peer id (base58).
    pub peer: String,
    /// One of its data-plane addresses, for messages (the mesh itself knows them all).
    pub addr: Option<String>,
    /// Whether the last member list said it was alive (or suspect).
    pub live: bool,
}

impl MeshRoute {
    /// The endpoint of this peer.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::Mesh {
            peer: self.peer.clone(),
            addr: self.addr.clone(),
        }
    }
}

/// How node ids map to endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRoutes {
    /// Kafka TCP: node id → `host:port`, plus the bootstrap addresses.
    Kafka {
        bootstrap: Vec<String>,
        nodes: HashMap<NodeId, String>,
    },
    /// Mesh: node id → peer, from the members' `node_id` key, plus the peer first reached.
    ///
    /// Until a member list names any node id (a node that does not gossip one), every node id
    /// maps to the bootstrap peer: one node answers for the cluster.
    Mesh {
        bootstrap: MeshRoute,
        nodes: BTreeMap<NodeId, MeshRoute>,
    },
}

impl NodeRoutes {
    /// Mesh routes that start from `peer`, reached at `addr`.
    pub fn mesh(peer: impl Into<String>, addr: Option<String>) -> NodeRoutes {
        NodeRoutes::Mesh {
            bootstrap: MeshRoute {
                peer: peer.into(),
                addr,
                live: true,
            },
            nodes: BTreeMap::new(),
        }
    }

    /// The endpoint for `node`; `None` when no route is known (learn the members again).
    pub fn endpoint(&self, node: NodeId) -> Option<Endpoint> {
        match self {
            NodeRoutes::Kafka { nodes, .. } => nodes.get(&node).cloned().map(Endpoint::Kafka),
            NodeRoutes::Mesh { bootstrap, nodes } if nodes.is_empty() => Some(bootstrap.endpoint()),
            NodeRoutes::Mesh { nodes, .. } => nodes.get(&node).map(MeshRoute::endpoint),
        }
    }

    /// Endpoints to try when any node will do, best first.
    ///
    /// Kafka: known nodes, then the bootstrap list. Mesh: the bootstrap peer if it is not known
    /// to be down, the other live nodes by node id, then the ones last seen down (a restarted
    /// node may be back).
    pub fn any(&self) -> Vec<Endpoint> {
        match self {
            NodeRoutes::Kafka { bootstrap, nodes } => {
                let mut all: Vec<String> = nodes.values().cloned().collect();
                all.sort();
                all.extend(
                    bootstrap
                        .iter()
                        .filter(|b| !nodes.values().any(|n| n == *b))
                        .cloned(),
                );
                all.into_iter().map(Endpoint::Kafka).collect()
            }
            NodeRoutes::Mesh { bootstrap, nodes } => {
                let known = nodes.values().find(|r| r.peer == bootstrap.peer);
                let mut order: Vec<&MeshRoute> = Vec::with_capacity(nodes.len() + 1);
                if known.is_none_or(|r| r.live) {
                    order.push(known.unwrap_or(bootstrap));
                }
                order.extend(nodes.values().filter(|r| r.live));
                order.extend(nodes.values().filter(|r| !r.live));
                let mut seen = std::collections::HashSet::new();
                order
                    .into_iter()
                    .filter(|r| seen.insert(r.peer.as_str()))
                    .map(MeshRoute::endpoint)
                    .collect()
            }
        }
    }

    /// Peers to ask for the member list, best first (mesh only).
    pub fn peers(&self) -> Vec<String> {
        self.any()
            .into_iter()
            .filter_map(|e| match e {
                Endpoint::Mesh { peer, .. } => Some(peer),
                Endpoint::Kafka(_) => None,
            })
            .collect()
    }

    /// Adds a node learnt outside Metadata (a FindCoordinator answer; Kafka TCP only: on the
    /// mesh node ids come from the member list).
    pub fn learn(&mut self, node: NodeId, host: &str, port: i32) {
        if let NodeRoutes::Kafka { nodes, .. } = self {
            nodes
                .entry(node)
                .or_insert_with(|| format_host_port(host, port));
        }
    }

    /// Takes the brokers of a metadata snapshot into account (Kafka TCP).
    pub fn update(&mut self, meta: &ClusterMetadata) {
        if let NodeRoutes::Kafka { nodes, .. } = self {
            *nodes = meta
                .brokers
                .values()
                .map(|b| (b.node_id, format_host_port(&b.host, b.port)))
                .collect();
        }
    }

    /// Takes a member list into account (mesh): node id → peer for every member that gossips a
    /// node id. A list naming no node id at all leaves the routes as they were. When two members
    /// claim one node id (a node restarted with a new identity), the live one wins.
    pub fn update_members(&mut self, members: &[ClusterMember]) {
        let NodeRoutes::Mesh { bootstrap, nodes } = self else {
            return;
        };
        let mut next: BTreeMap<NodeId, MeshRoute> = BTreeMap::new();
        for m in members {
            let Some(node) = m.node_id() else { continue };
            let route = MeshRoute {
                peer: m.peer_id.clone(),
                addr: m.data_addrs().into_iter().next(),
                live: m.is_live(),
            };
            match next.get(&node) {
                Some(existing) if existing.live || !route.live => {}
                _ => {
                    next.insert(node, route);
                }
            }
        }
        if next.is_empty() {
            return;
        }
        if let Some(r) = next.values().find(|r| r.peer == bootstrap.peer) {
            bootstrap.live = r.live;
            if r.addr.is_some() && bootstrap.addr.is_none() {
                bootstrap.addr.clone_from(&r.addr);
            }
        }
        *nodes = next;
    }

    /// Whether `meta` names a node (a broker or a partition leader) these routes cannot reach.
    pub fn lacks_any(&self, meta: &ClusterMetadata) -> bool {
        let leaders = meta
            .topics
            .values()
            .flat_map(|t| t.partitions.iter().filter_map(|p| p.leader));
        meta.brokers
            .keys()
            .copied()
            .chain(leaders)
            .chain(meta.controller)
            .any(|node| self.endpoint(node).is_none())
    }
}

fn format_host_port(host: &str, port: i32) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::members::{DATA_ADDRS_KEY, MemberState, NODE_ID_KEY};
    use crate::metadata::{BrokerInfo, PartitionInfo, TopicInfo};

    fn member(peer: &str, node: Option<i32>, state: MemberState) -> ClusterMember {
        let mut keys = BTreeMap::new();
        if let Some(n) = node {
            keys.insert(NODE_ID_KEY.to_owned(), n.to_string());
        }
        keys.insert(
            DATA_ADDRS_KEY.to_owned(),
            format!("/ip4/127.0.0.1/tcp/{peer}"),
        );
        ClusterMember {
            peer_id: peer.to_owned(),
            state,
            last_heard_ago: Duration::ZERO,
            generation: 1,
            keys,
        }
    }

    fn peer_of(e: Option<Endpoint>) -> Option<String> {
        match e? {
            Endpoint::Mesh { peer, .. } => Some(peer),
            Endpoint::Kafka(_) => None,
        }
    }

    #[test]
    fn mesh_routes_start_with_the_bootstrap_peer_for_every_node() {
        let routes = NodeRoutes::mesh("boot", Some("/ip4/1.2.3.4/tcp/1".into()));
        assert_eq!(routes.endpoint(5), routes.endpoint(9));
        assert_eq!(peer_of(routes.endpoint(5)).as_deref(), Some("boot"));
        assert_eq!(routes.any().len(), 1);
    }

    #[test]
    fn mesh_routes_follow_the_member_list() {
        let mut routes = NodeRoutes::mesh("11", None);
        routes.update_members(&[
            member("11", Some(1), MemberState::Alive),
            member("12", Some(2), MemberState::Alive),
            member("13", Some(3), MemberState::Suspect),
            member("14", None, MemberState::Alive),
        ]);
        assert_eq!(peer_of(routes.endpoint(1)).as_deref(), Some("11"));
        assert_eq!(peer_of(routes.endpoint(2)).as_deref(), Some("12"));
        assert_eq!(peer_of(routes.endpoint(3)).as_deref(), Some("13"));
        assert_eq!(
            routes.endpoint(4),
            None,
            "no fallback once node ids are known"
        );
        assert_eq!(
            routes.endpoint(2),
            Some(Endpoint::Mesh {
                peer: "12".into(),
                addr: Some("/ip4/127.0.0.1/tcp/12".into())
            })
        );
        assert_eq!(routes.peers(), ["11", "12", "13"]);

        // A list without node ids (a node that knows nothing yet) keeps what was learnt.
        routes.update_members(&[member("99", None, MemberState::Alive)]);
        assert_eq!(peer_of(routes.endpoint(2)).as_deref(), Some("12"));
    }

    #[test]
    fn down_members_are_tried_last_and_the_bootstrap_first() {
        let mut routes = NodeRoutes::mesh("12", None);
        routes.update_members(&[
            member("11", Some(1), MemberState::Left),
            member("12", Some(2), MemberState::Alive),
            member("13", Some(3), MemberState::Alive),
        ]);
        assert_eq!(routes.peers(), ["12", "13", "11"]);
        // The bootstrap node went down: the others first.
        routes.update_members(&[
            member("11", Some(1), MemberState::Alive),
            member("12", Some(2), MemberState::Dead),
            member("13", Some(3), MemberState::Alive),
        ]);
        assert_eq!(routes.peers(), ["11", "13", "12"]);
        // Down nodes keep their route: their partitions are unavailable, not elsewhere.
        assert_eq!(peer_of(routes.endpoint(2)).as_deref(), Some("12"));
    }

    #[test]
    fn a_node_id_claimed_twice_goes_to_the_live_member() {
        let mut routes = NodeRoutes::mesh("11", None);
        routes.update_members(&[
            member("old", Some(1), MemberState::Dead),
            member("new", Some(1), MemberState::Alive),
            member("gone", Some(2), MemberState::Left),
        ]);
        assert_eq!(peer_of(routes.endpoint(1)).as_deref(), Some("new"));
        routes.update_members(&[
            member("new", Some(1), MemberState::Alive),
            member("old", Some(1), MemberState::Dead),
        ]);
        assert_eq!(peer_of(routes.endpoint(1)).as_deref(), Some("new"));
        assert_eq!(routes.endpoint(2), None, "routes follow the latest list");
    }

    #[test]
    fn metadata_naming_an_unknown_node_is_detected() {
        let mut routes = NodeRoutes::mesh("11", None);
        let mut meta = ClusterMetadata::default();
        meta.brokers.insert(
            1,
            BrokerInfo {
                node_id: 1,
                host: "h".into(),
                port: 1,
                rack: None,
            },
        );
        meta.topics.insert(
            "t".into(),
            TopicInfo {
                name: "t".into(),
                id: uuid::Uuid::nil(),
                internal: false,
                partitions: vec![PartitionInfo {
                    partition: 0,
                    leader: Some(3),
                    leader_epoch: 0,
                    replicas: vec![3],
                    isr: vec![3],
                    error_code: 0,
                }],
            },
        );
        assert!(
            !routes.lacks_any(&meta),
            "the bootstrap peer answers for all"
        );
        routes.update_members(&[member("11", Some(1), MemberState::Alive)]);
        assert!(routes.lacks_any(&meta), "leader 3 has no route");
        routes.update_members(&[
            member("11", Some(1), MemberState::Alive),
            member("13", Some(3), MemberState::Alive),
        ]);
        assert!(!routes.lacks_any(&meta));
    }

    #[test]
    fn kafka_routes_follow_metadata() {
        let mut routes = NodeRoutes::Kafka {
            bootstrap: vec!["b:1".into()],
            nodes: HashMap::new(),
        };
        assert_eq!(routes.endpoint(1), None);
        let mut meta = ClusterMetadata::default();
        meta.brokers.insert(
            1,
            BrokerInfo {
                node_id: 1,
                host: "::1".into(),
                port: 9092,
                rack: None,
            },
        );
        routes.update(&meta);
        assert_eq!(
            routes.endpoint(1),
            Some(Endpoint::Kafka("[::1]:9092".into()))
        );
        assert_eq!(routes.any().len(), 2);
        assert!(!routes.lacks_any(&meta));
        routes.update_members(&[]);
        assert!(routes.peers().is_empty());
    }
}
