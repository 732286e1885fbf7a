//! Forming a cluster, or waiting to join one.
//!
//! A node whose metadata log is already formed resumes it. A fresh node started with
//! `--bootstrap-expect N` gossips that it is forming, and once N fresh forming nodes see each
//! other alive, the one with the lowest peer id initialises the metadata log with them as voters
//! (up to the configured number; the rest are added as learners by the controller) and writes the
//! cluster id; the others receive the log. A fresh node without `--bootstrap-expect` waits for an
//! existing cluster's leader to add it. Once formed, the cluster id goes into the node's gossip,
//! and nodes of other clusters are ignored from then on.

use std::time::Duration;

use rafka_mesh::MemberInfo;
use rafka_mesh::view::CONTROL_ADDRS_KEY;
use tokio_util::sync::CancellationToken;

use super::{Cluster, FORMING_KEY, KAFKA_KEY, ROLE_KEY};
use crate::NodeConfig;
use crate::endpoint::Endpoint;
use crate::error::{ConfigError, NodeError};
use crate::metadata::raft::RaftNode;
use crate::metadata::{LevelRange, Metadata, MetadataCommand};

/// How often a waiting node re-checks and how often it says it is waiting.
const RECHECK: Duration = Duration::from_millis(200);
const REMIND: Duration = Duration::from_secs(15);
/// How often a fresh node asks a cluster it knows of to add it.
const JOIN_EVERY: Duration = Duration::from_secs(2);
/// How long a fresh node waits for a node to tell it who is in its cluster.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// Forms, resumes or joins a cluster; returns once this node's metadata image is formed.
pub async fn form_or_join(
    metadata: &Metadata,
    cluster: &Cluster,
    config: &NodeConfig,
    advertised: &Endpoint,
    shutdown: &CancellationToken,
) -> Result<(), NodeError> {
    let mesh = cluster.mesh();
    if !metadata.image().is_formed() {
        match config.bootstrap_expect {
            Some(n) => {
                mesh.set_state(FORMING_KEY, Some(n.to_string())).await?;
                tracing::info!(
                    expect = n,
                    "forming a new cluster once {n} fresh nodes see each other"
                );
            }
            None => tracing::warn!(
                "this node belongs to no cluster and waits to be added to one (give --bootstrap ADDR, or rely on mDNS); \
                 to form a new cluster, start the first nodes with --bootstrap-expect N"
            ),
        }
        wait_until_formed(metadata, cluster, config, advertised, shutdown).await?;
        mesh.set_state(FORMING_KEY, None).await?;
    }
    let cluster_id = metadata.image().cluster_id.clone();
    mesh.set_cluster_id(&cluster_id).await?;
    tracing::info!(%cluster_id, "member of cluster");
    Ok(())
}

async fn wait_until_formed(
    metadata: &Metadata,
    cluster: &Cluster,
    config: &NodeConfig,
    advertised: &Endpoint,
    shutdown: &CancellationToken,
) -> Result<(), NodeError> {
    let mut images = metadata.subscribe();
    let mut last_reminder = tokio::time::Instant::now();
    let mut last_join: Option<tokio::time::Instant> = None;
    while !metadata.image().is_formed() {
        let view = cluster.view();
        check_advertised(advertised, view.live())?;
        match config.bootstrap_expect {
            Some(n) => try_form(metadata, cluster, n, config.voters_for(n as usize)).await?,
            None if last_join.is_none_or(|at| at.elapsed() >= JOIN_EVERY) => {
                last_join = Some(tokio::time::Instant::now());
                try_join(metadata, cluster, config.supported_levels()).await;
            }
            None => {}
        }
        if last_reminder.elapsed() >= REMIND {
            last_reminder = tokio::time::Instant::now();
            let fresh = fresh_forming(cluster, config.bootstrap_expect).len();
            tracing::info!(
                live = view.live().count(),
                fresh,
                "still waiting for a cluster"
            );
        }
        tokio::select! {
            _ = images.changed() => {}
            () = tokio::time::sleep(RECHECK) => {}
            () = shutdown.cancelled() => {
                return Err(NodeError::Config(ConfigError::Invalid {
                    key: "bootstrap_expect".into(),
                    reason: "stopped while waiting for a cluster".into(),
                }));
            }
        }
    }
    Ok(())
}

/// A fresh node's attempt to join: asks each node it reached on the data plane (bootstrap
/// addresses, mDNS) for its members, and asks a live member of a formed cluster, the metadata
/// leader first, to add it. Membership gossip from a node outside the metadata log is not heard,
/// so this request is how a new node gets in.
async fn try_join(metadata: &Metadata, cluster: &Cluster, supported: LevelRange) {
    let mesh = cluster.mesh();
    for peer in mesh.known_peers().await {
        let info = tokio::time::timeout(ASK_TIMEOUT, mesh.cluster_info(peer)).await;
        let Ok(Ok(info)) = info else {
            continue;
        };
        let mut formed: Vec<&MemberInfo> = info
            .live()
            .filter(|m| m.keys.contains_key(rafka_mesh::membership::CLUSTER_ID_KEY))
            .filter(|m| m.keys.contains_key(CONTROL_ADDRS_KEY))
            .collect();
        formed.sort_by_key(|m| m.keys.get(ROLE_KEY).map(String::as_str) != Some("leader"));
        for member in formed {
            match metadata.ask_to_join(&raft_node(member), supported).await {
                Ok(()) => {
                    tracing::info!(through = %member.peer_id, "asked to join the cluster: added as a learner");
                    return;
                }
                Err(e) => {
                    tracing::debug!(through = %member.peer_id, error = %e, "cannot join through this node")
                }
            }
        }
    }
}

/// Live members (this node included) that are fresh and forming a cluster of `n`.
fn fresh_forming(cluster: &Cluster, n: Option<u32>) -> Vec<MemberInfo> {
    let Some(n) = n else { return Vec::new() };
    let expect = n.to_string();
    let mut fresh: Vec<MemberInfo> = cluster
        .view()
        .live()
        .filter(|m| m.keys.get(FORMING_KEY) == Some(&expect))
        .filter(|m| !m.keys.contains_key(rafka_mesh::membership::CLUSTER_ID_KEY))
        .cloned()
        .collect();
    fresh.sort_by_key(|m| m.peer_id);
    fresh
}

/// Initialises the metadata log if this node is the lowest of the first `n` fresh forming nodes.
async fn try_form(
    metadata: &Metadata,
    cluster: &Cluster,
    n: u32,
    voters: usize,
) -> Result<(), NodeError> {
    let local = cluster.mesh().local_peer_id();
    let members: Vec<MemberInfo> = if n == 1 {
        Vec::new()
    } else {
        let fresh = fresh_forming(cluster, Some(n));
        if fresh.len() < n as usize {
            return Ok(());
        }
        fresh.into_iter().take(n as usize).collect()
    };
    let initiator = members.first().map_or(local, |m| m.peer_id);
    if initiator != local {
        return Ok(());
    }
    let mut nodes: Vec<RaftNode> = members.iter().take(voters).map(raft_node).collect();
    if nodes.is_empty() {
        nodes.push(metadata.node().clone());
    }
    if metadata.initialize(nodes.clone()).await? {
        let peers: Vec<&str> = nodes.iter().map(|n| n.peer_id.as_str()).collect();
        tracing::info!(voters = ?peers, "initialised the metadata log");
    }
    let cluster_id = new_cluster_id();
    match metadata
        .propose(MetadataCommand::Form {
            cluster_id: cluster_id.clone(),
        })
        .await
    {
        Ok(_) => {
            tracing::info!(%cluster_id, "formed a new cluster");
            // The formation members beyond the voters still gossip `forming`, and the controller
            // adopts no forming node (it may be forming another cluster): add them here.
            for member in members.iter().skip(voters) {
                add_formation_learner(metadata, raft_node(member)).await;
            }
            Ok(())
        }
        // The first voters are still electing a leader: the next round proposes again.
        Err(e) if e.is_retriable() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Adds a formation member that is not a voter as a learner, retrying while the new log settles.
async fn add_formation_learner(metadata: &Metadata, node: RaftNode) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match metadata.add_learner(node.clone()).await {
            Ok(()) => {
                tracing::info!(peer = %node.peer_id, "added a formation member as a learner");
                return;
            }
            Err(e) if e.is_retriable() && tokio::time::Instant::now() < deadline => {
                tracing::debug!(peer = %node.peer_id, error = %e, "cannot add a formation member yet; retrying");
                tokio::time::sleep(RECHECK).await;
            }
            Err(e) => {
                tracing::warn!(peer = %node.peer_id, error = %e, "cannot add a formation member as a learner");
                return;
            }
        }
    }
}

/// A member as a metadata-log node.
pub fn raft_node(member: &MemberInfo) -> RaftNode {
    let addrs = member
        .addrs(CONTROL_ADDRS_KEY)
        .iter()
        .map(ToString::to_string)
        .collect();
    RaftNode {
        peer_id: member.peer_id.to_string(),
        addrs,
    }
}

/// Refuses to advertise a loopback Kafka address into a mesh whose nodes are elsewhere: clients
/// told `127.0.0.1` by this node would connect to themselves.
fn check_advertised<'a>(
    advertised: &Endpoint,
    live: impl Iterator<Item = &'a MemberInfo>,
) -> Result<(), NodeError> {
    if !is_loopback_host(&advertised.host) {
        return Ok(());
    }
    for member in live {
        let remote = member
            .keys
            .get(KAFKA_KEY)
            .and_then(|kafka| crate::endpoint::parse_host_port(kafka).ok())
            .is_some_and(|endpoint| !is_loopback_host(&endpoint.host));
        if remote {
            return Err(NodeError::Config(ConfigError::Invalid {
                key: "advertised_kafka_addr".into(),
                reason: format!(
                    "this node would tell Kafka clients to connect to {advertised} (loopback), but node {} is \
                     reachable at {}: set --advertised-kafka-addr to an address clients can reach, or --kafka-addr to a \
                     non-loopback interface",
                    member.peer_id,
                    member
                        .keys
                        .get(KAFKA_KEY)
                        .map(String::as_str)
                        .unwrap_or("?"),
                ),
            }));
        }
    }
    Ok(())
}

/// Whether `host` is a loopback name or address.
pub fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A Kafka-style cluster id: a random UUID in URL-safe base64 without padding (22 characters).
pub fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let value = u128::from_be_bytes(*uuid::Uuid::new_v4().as_bytes());
    (0..22)
        .map(|i| {
            let shift = 128u32.saturating_sub(6 * (i + 1));
            let index = ((value >> shift) & 0x3f) as usize;
            char::from(ALPHABET.get(index).copied().unwrap_or(b'A'))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rafka_mesh::PeerId;
    use std::collections::BTreeMap;

    fn member(kafka: &str) -> MemberInfo {
        MemberInfo {
            peer_id: PeerId::random(),
            generation: 1,
            status: rafka_mesh::membership::MemberStatus::Alive,
            heartbeat: 1,
            last_heard_ago: Duration::ZERO,
            keys: BTreeMap::from([(KAFKA_KEY.to_string(), kafka.to_string())]),
        }
    }

    #[test]
    fn loopback_is_refused_only_among_remote_peers() {
        let loopback = Endpoint {
            host: "127.0.0.1".into(),
            port: 9092,
        };
        let local_peer = member("127.0.0.1:9093");
        let remote_peer = member("10.0.0.2:9092");
        assert!(check_advertised(&loopback, [&local_peer].into_iter()).is_ok());
        let err = check_advertised(&loopback, [&local_peer, &remote_peer].into_iter()).unwrap_err();
        assert!(err.to_string().contains("--advertised-kafka-addr"), "{err}");
        let routable = Endpoint {
            host: "10.0.0.1".into(),
            port: 9092,
        };
        assert!(check_advertised(&routable, [&remote_peer].into_iter()).is_ok());
        assert!(
            is_loopback_host("localhost")
                && is_loopback_host("::1")
                && !is_loopback_host("example")
        );
    }

    #[test]
    fn cluster_ids_look_like_kafkas() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(id, new_cluster_id());
    }
}
