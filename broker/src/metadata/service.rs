//! The metadata service: proposes commands to the Raft-replicated metadata log and publishes
//! each applied image.
//!
//! Proposals go through `Raft::client_write` on the leader; on a follower they are forwarded to
//! the leader over the [`RaftTransport`]. Readers never wait: they take the current
//! `Arc<MetadataImage>` from a watch channel the state machine updates as entries apply.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::{RaftMetrics, ServerState};
use serde::Serialize;
use tokio::sync::watch;

use super::raft::{
    Closed, Disk, LeaderOp, LogStore, Network, Raft, RaftConfig, RaftNode, RaftNodeId, RaftReply,
    RaftRequest, RaftTransport, Router, StateMachine, encode_reply, handle_rpc, raft_node_id,
    wait_metrics,
};
use super::{LevelRange, MetadataCommand, MetadataError, MetadataImage, Outcome};

/// How long `shutdown` waits for the metadata Database to close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handle to the metadata service (cheap to clone).
#[derive(Clone)]
pub struct Metadata {
    inner: Arc<Inner>,
}

struct Inner {
    raft: Raft,
    node: RaftNode,
    id: RaftNodeId,
    router: Router,
    images: watch::Sender<Arc<MetadataImage>>,
    forward_timeout: Duration,
    closed: std::sync::Mutex<Option<Closed>>,
}

impl std::fmt::Debug for Metadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metadata")
            .field("raft_node_id", &self.inner.id)
            .field("version", &self.image().version)
            .finish()
    }
}

/// This node's role in the metadata log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RaftRole {
    /// Leads: proposals are appended here.
    Leader,
    /// Votes and replicates.
    Follower,
    /// Running an election.
    Candidate,
    /// Replicates without voting.
    Learner,
    /// Not a member of any metadata log yet: fresh, waiting to form one or to be added.
    Detached,
    /// Stopped.
    Shutdown,
}

impl From<ServerState> for RaftRole {
    fn from(state: ServerState) -> Self {
        match state {
            ServerState::Leader => Self::Leader,
            ServerState::Follower => Self::Follower,
            ServerState::Candidate => Self::Candidate,
            ServerState::Learner => Self::Learner,
            ServerState::Shutdown => Self::Shutdown,
        }
    }
}

/// Changes of the metadata log's status, for loops that act on them ([`Metadata::status_watch`]).
///
/// openraft republishes its metrics after every call into its core, each time with a fresh
/// `millis_since_quorum_ack`, so a loop that reads [`Metadata::status`] (a call into the core)
/// whenever the raw metrics change wakes itself again at once and spins a core; this wakes only
/// when something else in them changed.
pub struct StatusWatch {
    metrics: watch::Receiver<RaftMetrics<RaftNodeId, RaftNode>>,
    seen: RaftMetrics<RaftNodeId, RaftNode>,
}

impl StatusWatch {
    /// Watches `metrics` from what they say now.
    pub(crate) fn new(mut metrics: watch::Receiver<RaftMetrics<RaftNodeId, RaftNode>>) -> Self {
        let seen = Self::relevant(&metrics.borrow_and_update());
        Self { metrics, seen }
    }

    /// Returns once the status changed since the last return (or since the watch was made);
    /// errs once the metadata log has shut down.
    pub async fn changed(&mut self) -> Result<(), watch::error::RecvError> {
        loop {
            self.metrics.changed().await?;
            let now = Self::relevant(&self.metrics.borrow_and_update());
            if now != self.seen {
                self.seen = now;
                return Ok(());
            }
        }
    }

    /// The metrics without the part that changes on every report.
    fn relevant(metrics: &RaftMetrics<RaftNodeId, RaftNode>) -> RaftMetrics<RaftNodeId, RaftNode> {
        RaftMetrics {
            millis_since_quorum_ack: None,
            ..metrics.clone()
        }
    }
}

/// The metadata log as this node sees it (for `rafka cluster` and `/ready`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetadataStatus {
    /// This node's Raft id.
    pub node_id: RaftNodeId,
    /// This node's role.
    pub role: RaftRole,
    /// The leader this node knows of.
    pub leader: Option<RaftNodeId>,
    /// The leader's peer id.
    pub leader_peer_id: Option<String>,
    /// Current term.
    pub term: u64,
    /// Voters (all configs while a membership change is in progress).
    pub voters: BTreeMap<RaftNodeId, RaftNode>,
    /// Non-voting members.
    pub learners: BTreeMap<RaftNodeId, RaftNode>,
    /// Last index in this node's log.
    pub last_log_index: Option<u64>,
    /// Last index this node knows committed (`None` if the log is stopped).
    pub committed: Option<u64>,
    /// Last index applied to this node's image.
    pub last_applied: Option<u64>,
    /// Last index in this node's snapshot.
    pub snapshot: Option<u64>,
    /// On the leader: the last index each other member is known to have (`None`: nothing yet).
    pub matched: BTreeMap<RaftNodeId, Option<u64>>,
    /// Last index purged from this node's log.
    pub purged: Option<u64>,
    /// While a voter change is half done (a joint configuration), the voters it goes to.
    pub joining_voters: Option<BTreeSet<RaftNodeId>>,
    /// The latest membership change is committed (a new one may be proposed).
    pub membership_committed: bool,
}

fn storage(e: impl std::fmt::Display) -> MetadataError {
    MetadataError::Storage(e.to_string())
}

impl Metadata {
    /// Opens (or creates) the metadata log in `dir` (`<data_dir>/raft`) for the node `node`,
    /// reaching other nodes through `transport`. The image is restored (last snapshot, then the
    /// committed entries after it) before this returns. A fresh node is not a member of anything:
    /// form a cluster with [`Metadata::initialize`] or wait to be added by its leader.
    pub async fn open(
        dir: &Path,
        node: RaftNode,
        transport: Arc<dyn RaftTransport>,
        config: RaftConfig,
    ) -> Result<Self, MetadataError> {
        let id = node.id()?;
        config.validate()?;
        let raft_config = Arc::new(config.to_openraft()?);
        let (images, _) = watch::channel(Arc::new(MetadataImage::default()));
        let dir = dir.to_owned();
        let sm_images = images.clone();
        let (disk, closed, machine) = tokio::task::spawn_blocking(move || {
            let (disk, closed) = Disk::open(&dir).map_err(storage)?;
            let machine = StateMachine::open(disk.clone(), sm_images).map_err(storage)?;
            Ok::<_, MetadataError>((disk, closed, machine))
        })
        .await
        .map_err(storage)??;
        let network = Network::new(id, transport.clone());
        let raft = Raft::new(id, raft_config, network, LogStore::new(disk), machine)
            .await
            .map_err(storage)?;
        let router = Router {
            raft: raft.clone(),
            id,
            transport,
            timeout: config.propose_timeout,
        };
        let metadata = Self {
            inner: Arc::new(Inner {
                raft,
                node,
                id,
                router,
                images,
                forward_timeout: config.propose_timeout,
                closed: std::sync::Mutex::new(Some(closed)),
            }),
        };
        metadata.settle_sole_voter(config.propose_timeout).await;
        tracing::info!(
            raft_node_id = id,
            version = metadata.image().version,
            "metadata log open"
        );
        Ok(metadata)
    }

    /// A sole voter leads again at once on restart and commits its whole log; waits (bounded)
    /// until that is applied, so the image is complete when `open` returns even if the last
    /// committed index was not on disk.
    async fn settle_sole_voter(&self, timeout: Duration) {
        // Answered by the core after its startup, whose metrics are then published.
        let id = self.inner.id;
        let sole = self
            .inner
            .raft
            .with_raft_state(move |state| state.membership_state.effective().voter_ids().eq([id]));
        if !matches!(sole.await, Ok(true)) {
            return;
        }
        let last_log = self.raft_metrics().borrow().last_log_index;
        let deadline = tokio::time::Instant::now() + timeout;
        let applied = wait_metrics(&self.inner.raft, deadline, |m| {
            (m.last_applied.map(|id| id.index) >= last_log).then_some(())
        })
        .await;
        if applied.is_none() {
            tracing::warn!(
                ?last_log,
                "metadata log not applied to its end after {timeout:?}"
            );
        }
    }

    /// The current image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.inner.images.borrow().clone()
    }

    /// Every future image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.inner.images.subscribe()
    }

    /// Appends `command` to the metadata log (on the leader, forwarded there if needed) and
    /// returns what applying it answered, once this node's image includes it.
    ///
    /// Retriable failures: [`MetadataError::NoLeader`] (no leader reachable within the propose
    /// timeout: an election, or a majority down) and [`MetadataError::Timeout`] (not committed
    /// in time; it may still apply).
    ///
    /// A command whose feature the cluster's finalized level does not enable yet is refused here,
    /// before anything is appended: [`MetadataError::FeatureNotEnabled`].
    pub async fn propose(&self, command: MetadataCommand) -> Result<Outcome, MetadataError> {
        if let Some(feature) = command.feature() {
            self.image().features().require(feature)?;
        }
        let (_, result) = self.inner.router.run(LeaderOp::Propose(command)).await?;
        result
    }

    /// This node's Raft id.
    pub fn node_id(&self) -> RaftNodeId {
        self.inner.id
    }

    /// This node as a member of the metadata log.
    pub fn node(&self) -> &RaftNode {
        &self.inner.node
    }

    /// Forms a new metadata log with `voters` (this node among them). Returns `false` when this
    /// node already belongs to a log: a node never re-initialises.
    pub async fn initialize(&self, voters: Vec<RaftNode>) -> Result<bool, MetadataError> {
        let mut members = BTreeMap::new();
        for node in voters {
            let id = node.id()?;
            if let Some(other) = members.insert(id, node.clone())
                && other.peer_id != node.peer_id
            {
                return Err(MetadataError::Membership(format!(
                    "peers {} and {} hash to the same raft id {id}",
                    other.peer_id, node.peer_id
                )));
            }
        }
        match self.inner.raft.initialize(members).await {
            Ok(()) => Ok(true),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(false),
            Err(RaftError::APIError(e)) => Err(MetadataError::Membership(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(storage(e)),
        }
    }

    /// Adds `node` as a learner (it replicates without voting). Returns once the membership
    /// change is committed; the learner catches up in the background (see [`Self::status`]).
    pub async fn add_learner(&self, node: RaftNode) -> Result<(), MetadataError> {
        let id = node.id()?;
        let known = self
            .raft_metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .cloned();
        if let Some(known) = known.filter(|known| known.peer_id != node.peer_id) {
            return Err(MetadataError::Membership(format!(
                "peer {} hashes to raft id {id}, already taken by {}",
                node.peer_id, known.peer_id
            )));
        }
        self.leader_op(LeaderOp::AddLearner(id, node)).await
    }

    /// Makes `voters` (an odd number of members, new ones existing learners) the voting members
    /// in one joint-consensus change. Voters left out stay as learners.
    pub async fn change_membership(
        &self,
        voters: BTreeSet<RaftNodeId>,
    ) -> Result<(), MetadataError> {
        self.leader_op(LeaderOp::ChangeVoters(voters)).await
    }

    /// Removes a member (voter or learner) from the metadata log entirely.
    pub async fn remove_node(&self, id: RaftNodeId) -> Result<(), MetadataError> {
        self.leader_op(LeaderOp::RemoveNode(id)).await
    }

    async fn leader_op(&self, op: LeaderOp) -> Result<(), MetadataError> {
        let (_, result) = self.inner.router.run(op).await?;
        result.map(|_| ())
    }

    /// Leader, term, members and log positions as this node sees them.
    pub async fn status(&self) -> MetadataStatus {
        let metrics = self.raft_metrics().borrow().clone();
        let committed = self
            .inner
            .raft
            .with_raft_state(|state| state.committed.map(|id| id.index))
            .await
            .ok()
            .flatten();
        let membership = metrics.membership_config.membership();
        let voter_ids: BTreeSet<RaftNodeId> = membership.voter_ids().collect();
        let (voters, learners) = membership
            .nodes()
            .map(|(id, node)| (*id, node.clone()))
            .partition(|(id, _)| voter_ids.contains(id));
        let member = membership.get_node(&self.inner.id).is_some();
        let configs = membership.get_joint_config();
        let joining_voters =
            (configs.len() > 1).then(|| configs.last().cloned().unwrap_or_default());
        let membership_index = metrics
            .membership_config
            .log_id()
            .as_ref()
            .map(|id| id.index);
        MetadataStatus {
            node_id: self.inner.id,
            role: if member || metrics.state == ServerState::Shutdown {
                metrics.state.into()
            } else {
                RaftRole::Detached
            },
            leader: metrics.current_leader,
            leader_peer_id: metrics
                .current_leader
                .and_then(|id| membership.get_node(&id))
                .map(|node| node.peer_id.clone()),
            term: metrics.current_term,
            voters,
            learners,
            last_log_index: metrics.last_log_index,
            committed,
            last_applied: metrics.last_applied.map(|id| id.index),
            snapshot: metrics.snapshot.map(|id| id.index),
            matched: metrics
                .replication
                .as_ref()
                .map(|progress| {
                    progress
                        .iter()
                        .map(|(id, matched)| (*id, matched.map(|log_id| log_id.index)))
                        .collect()
                })
                .unwrap_or_default(),
            purged: metrics.purged.map(|id| id.index),
            joining_voters,
            membership_committed: membership_index <= committed,
        }
    }

    /// openraft's metrics of this node, to read (leader, membership, progress). To wait on
    /// changes, use [`Self::status_watch`]: these metrics change on every call into the log.
    pub fn raft_metrics(&self) -> watch::Receiver<RaftMetrics<RaftNodeId, RaftNode>> {
        self.inner.raft.metrics()
    }

    /// Wakes a loop when the log's leader, term, role, membership or positions change.
    pub fn status_watch(&self) -> StatusWatch {
        StatusWatch::new(self.raft_metrics())
    }

    /// Serves one metadata-log RPC the peer `from` sent through its [`RaftTransport`]: the mesh
    /// calls this with the request bytes and sends back the bytes returned. Never fails: errors
    /// travel inside the answer. Only members (see [`Self::admits`]) are served, except for
    /// [`RaftRequest::Join`], which asks to become one.
    pub async fn handle_rpc(&self, from: &str, request: &[u8]) -> Vec<u8> {
        let reply = match RaftRequest::decode(request) {
            Err(e) => {
                tracing::debug!(peer = from, error = %e, "undecodable metadata RPC");
                RaftReply::BadRequest(e.to_string())
            }
            Ok(RaftRequest::Join { node, supported }) => self.join(from, node, supported).await,
            Ok(_) if !self.admits(from) => {
                tracing::debug!(
                    peer = from,
                    "metadata RPC from a peer that is not a member refused"
                );
                RaftReply::Refused(format!(
                    "peer {from} is not a registered node of this cluster (a new node asks to join first)"
                ))
            }
            Ok(request) => handle_rpc(&self.inner.raft, self.inner.forward_timeout, request).await,
        };
        encode_reply(&reply)
    }

    /// Whether `peer` takes part in the metadata log: everyone before this node belongs to a
    /// cluster (it must be reachable to be added), then only members of the log and registered
    /// nodes.
    pub fn admits(&self, peer: &str) -> bool {
        let image = self.image();
        if !image.is_formed() || image.node_by_peer(peer).is_some() {
            return true;
        }
        peer.parse::<libp2p::PeerId>()
            .is_ok_and(|peer| self.is_member(raft_node_id(&peer)))
    }

    /// Whether `id` is a member (voter or learner) of the metadata log, as this node knows it.
    fn is_member(&self, id: RaftNodeId) -> bool {
        self.raft_metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .is_some()
    }

    /// The peers admitted besides those registered: the members of the metadata log.
    pub fn member_peers(&self) -> Vec<String> {
        self.raft_metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .map(|(_, node)| node.peer_id.clone())
            .collect()
    }

    /// A fresh node's request to join: adds it as a learner (through the leader), if it can run
    /// at the cluster's finalized feature level.
    async fn join(&self, from: &str, node: RaftNode, supported: LevelRange) -> RaftReply {
        if node.peer_id != from {
            return RaftReply::Refused(format!(
                "a join must name its sender ({from}), not {}",
                node.peer_id
            ));
        }
        let image = self.image();
        if !image.is_formed() {
            return RaftReply::Refused("this node belongs to no cluster yet".into());
        }
        let finalized = image.features().finalized();
        if !supported.contains(finalized) {
            return RaftReply::Refused(format!(
                "{from} supports cluster feature levels {supported}, but the cluster's finalized feature level is {finalized}"
            ));
        }
        if node.id().is_ok_and(|id| self.is_member(id)) {
            return RaftReply::Joined;
        }
        match self.add_learner(node).await {
            Ok(()) => {
                tracing::info!(peer = from, "node joined the metadata log as a learner");
                RaftReply::Joined
            }
            Err(e) => RaftReply::Refused(format!("cannot add {from}: {e}")),
        }
    }

    /// Asks `target`, a node of a cluster, to add this node (which supports the feature levels
    /// `supported`) to its metadata log.
    pub async fn ask_to_join(
        &self,
        target: &RaftNode,
        supported: LevelRange,
    ) -> Result<(), MetadataError> {
        let request = RaftRequest::Join {
            node: self.inner.node.clone(),
            supported,
        };
        let bytes = request
            .encode()
            .map_err(|e| MetadataError::Storage(e.to_string()))?;
        let answer = self
            .inner
            .router
            .transport
            .call(target, bytes, self.inner.forward_timeout)
            .await
            .map_err(|e| MetadataError::NoLeader(format!("{}: {e}", target.peer_id)))?;
        match RaftReply::decode(&answer) {
            Ok(RaftReply::Joined) => Ok(()),
            Ok(RaftReply::Refused(reason)) => Err(MetadataError::Membership(reason)),
            Ok(other) => Err(MetadataError::NoLeader(format!(
                "{} answered {}",
                target.peer_id,
                other.kind()
            ))),
            Err(e) => Err(MetadataError::NoLeader(format!(
                "undecodable answer from {}: {e}",
                target.peer_id
            ))),
        }
    }

    /// Stops the metadata log and waits (bounded) until its Database is closed, so the data dir
    /// can be opened again. Other handles then fail with [`MetadataError::Storage`].
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "metadata log did not stop cleanly");
        }
        let closed = match self.inner.closed.lock() {
            Ok(mut closed) => closed.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(closed) = closed
            && tokio::time::timeout(CLOSE_TIMEOUT, closed.wait())
                .await
                .is_err()
        {
            tracing::warn!("metadata Database still open {CLOSE_TIMEOUT:?} after shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::raft::NoPeers;

    async fn open_single(dir: &Path, peer: &libp2p::PeerId) -> Metadata {
        let node = RaftNode::new(peer, vec![]);
        Metadata::open(dir, node, Arc::new(NoPeers), RaftConfig::default())
            .await
            .unwrap()
    }

    #[test]
    fn the_status_watch_ignores_reports_that_only_age_the_quorum_ack() {
        use futures::FutureExt;
        let (tx, rx) = watch::channel(RaftMetrics::new_initial(1));
        let mut changes = StatusWatch::new(rx);
        for millis in 1..=50 {
            tx.send_modify(|m| m.millis_since_quorum_ack = Some(millis));
            assert!(
                changes.changed().now_or_never().is_none(),
                "woke on a report that changed only millis_since_quorum_ack ({millis})"
            );
        }
        tx.send_modify(|m| {
            m.millis_since_quorum_ack = Some(51);
            m.current_leader = Some(1);
        });
        assert!(
            matches!(changes.changed().now_or_never(), Some(Ok(()))),
            "a new leader wakes the watch"
        );
        assert!(
            changes.changed().now_or_never().is_none(),
            "one wake per change"
        );
        let applied = openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), 7);
        tx.send_modify(|m| m.last_applied = Some(applied));
        assert!(
            matches!(changes.changed().now_or_never(), Some(Ok(()))),
            "an applied entry wakes the watch"
        );
        drop(tx);
        assert!(
            matches!(changes.changed().now_or_never(), Some(Err(_))),
            "a stopped log ends the watch"
        );
    }

    #[tokio::test]
    async fn gated_commands_wait_for_their_level_and_the_level_survives_reopen() {
        use crate::metadata::features::SUPPORTED;
        use crate::metadata::{FeatureLevel, GatedCommand};
        let dir = tempfile::tempdir().unwrap();
        let peer = libp2p::PeerId::random();
        let register = MetadataCommand::Gated(GatedCommand::RegisterNode {
            peer_id: "p".into(),
            kafka_host: "h".into(),
            kafka_port: 1,
            supported: SUPPORTED,
        });
        {
            let metadata = open_single(dir.path(), &peer).await;
            metadata
                .initialize(vec![metadata.node().clone()])
                .await
                .unwrap();
            metadata
                .propose(MetadataCommand::Form {
                    cluster_id: "abc".into(),
                })
                .await
                .unwrap();
            let last_log = metadata.status().await.last_log_index;
            assert!(matches!(
                metadata.propose(register.clone()).await,
                Err(MetadataError::FeatureNotEnabled { needs: 1, .. })
            ));
            assert_eq!(
                metadata.status().await.last_log_index,
                last_log,
                "refused before anything was appended"
            );
            let finalize = GatedCommand::FinalizeLevel {
                level: FeatureLevel(1),
                nodes: vec![],
            };
            metadata
                .propose(MetadataCommand::Gated(finalize))
                .await
                .unwrap();
            assert!(matches!(
                metadata.propose(register).await,
                Ok(Outcome::Registered {
                    node_id: crate::metadata::NodeId(1),
                    ..
                })
            ));
            metadata.shutdown().await;
        }
        let reopened = open_single(dir.path(), &peer).await;
        let image = reopened.image();
        assert_eq!(image.features().finalized(), FeatureLevel(1));
        assert_eq!(
            image.nodes[&crate::metadata::NodeId(1)].supported,
            Some(SUPPORTED)
        );
        reopened.shutdown().await;
    }

    #[tokio::test]
    async fn the_image_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let peer = libp2p::PeerId::random();
        let topic_id = uuid::Uuid::new_v4();
        {
            let metadata = open_single(dir.path(), &peer).await;
            assert!(
                metadata
                    .initialize(vec![metadata.node().clone()])
                    .await
                    .unwrap()
            );
            let updates = metadata.subscribe();
            metadata
                .propose(MetadataCommand::Form {
                    cluster_id: "abc".into(),
                })
                .await
                .unwrap();
            assert!(updates.has_changed().unwrap());
            metadata
                .propose(MetadataCommand::RegisterNode {
                    peer_id: "p".into(),
                    kafka_host: "h".into(),
                    kafka_port: 1,
                })
                .await
                .unwrap();
            metadata
                .propose(MetadataCommand::CreateTopic {
                    name: "t".into(),
                    topic_id,
                    assignments: vec![vec![crate::ids::NodeId(1)], vec![crate::ids::NodeId(1)]],
                    configs: std::collections::BTreeMap::new(),
                    internal: false,
                })
                .await
                .unwrap();
            assert_eq!(
                metadata
                    .propose(MetadataCommand::DeleteTopic {
                        topic_id: uuid::Uuid::nil()
                    })
                    .await,
                Err(MetadataError::UnknownTopic(uuid::Uuid::nil().to_string()))
            );
            metadata.shutdown().await;
        }
        let reopened = open_single(dir.path(), &peer).await;
        let image = reopened.image();
        assert_eq!(image.cluster_id, "abc");
        assert_eq!(image.version, 3);
        assert_eq!(image.topic_by_id(&topic_id).unwrap().partitions.len(), 2);
        assert!(
            !reopened
                .initialize(vec![reopened.node().clone()])
                .await
                .unwrap()
        );
        let status = reopened.status().await;
        assert_eq!(
            status.role,
            RaftRole::Leader,
            "a single voter leads at once"
        );
        assert_eq!(status.voters.len(), 1);
        reopened.shutdown().await;
    }
}
