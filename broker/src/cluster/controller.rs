//! The controller: on the metadata leader only, turns what gossip knows into metadata decisions.
//!
//! Each round makes at most one membership change of the metadata log:
//! 1. a half-done voter change (a joint configuration left by a leader that failed) is finished;
//! 2. the voters become what [`voters::next_voters`] says: an odd set sized to the nodes present
//!    (`--voters` at most), a leaving or long-dead voter's seat handed to a live, caught-up
//!    learner or the set shrunk, each change one joint-consensus step;
//! 3. learners that left or have been dead longer than the replacement time leave the log (they
//!    are added again if they come back);
//! 4. a registered node that is alive but not in the log (it left and came back) is added as a
//!    learner. New nodes ask to join themselves (see `formation`). A removed node (no longer
//!    registered) leaves the voters and the log at once.
//!
//! Then partitions:
//! 0. replicas of removed nodes move: a new replica is added (on a node under
//!    `--max-partitions-per-node`; none fitting, the move waits), the removed one dropped once
//!    the others are in sync ([`reassign`]);
//! 5. dead replicas leave in-sync replica sets (never the last one), partitions whose leader is
//!    dead get a new leader from their live in-sync replicas, or none (-1) until one returns (or
//!    a live out-of-sync replica where the topic enables unclean election); a partition without a
//!    leader gets one as soon as an in-sync replica is alive again;
//! 6. every `--leader-rebalance-interval-ms` (Kafka's auto.leader.rebalance), a partition whose
//!    preferred replica (the first) is alive and in sync but not leading is handed back to it, so
//!    leadership spreads again after a node returns instead of piling up on the survivors;
//! 7. the cluster's finalized feature level rises once every registered node and every member of
//!    the metadata log supports a higher one ([`features::next_finalization`]); a node that
//!    cannot run at the finalized level is refused when it asks to join.
//!
//! Gossip decides nothing by itself: every change goes through the metadata log, and a node that
//! is not the leader never acts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rafka_mesh::PeerId;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Cluster;
use super::formation::raft_node;
use super::gossip::gossiped_features;
use super::reassign;
use super::voters::{self, Seat};
use crate::limits::{self, Limit};
use crate::metadata::raft::{RaftNode, RaftNodeId};
use crate::metadata::{
    Feature, GatedCommand, LevelRange, Metadata, MetadataCommand, MetadataImage, MetadataStatus,
    NodeId, PartitionChange, PartitionImage, RaftRole, ReplicaChange, features, topic_config,
};

/// How often the controller looks even when nothing changed.
const PERIOD: Duration = Duration::from_secs(1);

/// What the controller is configured with.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Voters the metadata log should have at most (`--voters`).
    pub voters: usize,
    /// How long a dead voter keeps its seat.
    pub replace_after: Duration,
    /// How often leadership goes back to preferred replicas (`None`: never).
    pub rebalance_every: Option<Duration>,
    /// The feature levels this node supports.
    pub supported: LevelRange,
    /// Partition replicas a node may hold (`--max-partitions-per-node`): a removed node's
    /// replicas move only to nodes under it.
    pub max_partitions_per_node: usize,
}

/// Runs the controller until `shutdown`.
pub async fn run(
    metadata: Metadata,
    cluster: Cluster,
    settings: Settings,
    shutdown: CancellationToken,
) {
    let mut view = cluster.mesh().membership();
    let mut images = metadata.subscribe();
    let mut ticker = tokio::time::interval(PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When this controller first saw each member of the metadata log: a member it has known for
    // less than the replacement time is down, not gone, while it is missing from the membership
    // view (just added, or this node just took over) or not registered yet (just joined).
    let mut known_since: BTreeMap<RaftNodeId, Instant> = BTreeMap::new();
    // The first rebalance waits a whole interval, as Kafka's does.
    let mut last_rebalance = Instant::now();
    // Registered peers as last seen: one that is no longer registered was removed for good
    // (`rafka cluster remove`), and is gone for its seat at once, not after the joining grace.
    let mut registered = registered_peers(&metadata.image());
    loop {
        tokio::select! {
            _ = view.changed() => {}
            _ = images.changed() => {}
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => break,
        }
        let now_registered = registered_peers(&metadata.image());
        for peer in registered.difference(&now_registered) {
            cluster.mark_removed(*peer);
        }
        for peer in now_registered.difference(&registered) {
            cluster.unmark_removed(peer);
        }
        registered = now_registered;
        let status = metadata.status().await;
        if status.role != RaftRole::Leader {
            continue;
        }
        let rebalance = settings
            .rebalance_every
            .is_some_and(|every| last_rebalance.elapsed() >= every);
        if rebalance {
            last_rebalance = Instant::now();
        }
        let now = Instant::now();
        known_since
            .retain(|id, _| status.voters.contains_key(id) || status.learners.contains_key(id));
        for id in status.voters.keys().chain(status.learners.keys()) {
            known_since.entry(*id).or_insert(now);
        }
        let known_for = known_since
            .iter()
            .map(|(id, since)| (*id, now.duration_since(*since)))
            .collect();
        let round = Round {
            metadata: &metadata,
            cluster: &cluster,
            status: &status,
            settings,
            known_for,
        };
        let result = tokio::select! {
            result = round.step(rebalance) => result,
            () = shutdown.cancelled() => break,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "controller step failed; retrying");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The peer ids of the registered nodes.
fn registered_peers(image: &MetadataImage) -> BTreeSet<PeerId> {
    image
        .nodes
        .values()
        .filter_map(|n| n.peer_id.parse().ok())
        .collect()
}

/// One round of the controller on the leader.
struct Round<'a> {
    metadata: &'a Metadata,
    cluster: &'a Cluster,
    status: &'a MetadataStatus,
    settings: Settings,
    /// How long this controller has known each member of the metadata log.
    known_for: BTreeMap<RaftNodeId, Duration>,
}

enum Change {
    AddLearner(RaftNode),
    SetVoters(BTreeSet<RaftNodeId>, &'static str),
    RemoveLearner(RaftNodeId),
}

fn peer_of(node: &RaftNode) -> Option<PeerId> {
    node.peer_id.parse().ok()
}

impl Round<'_> {
    /// At most one membership change, then partition leadership.
    async fn step(&self, rebalance: bool) -> Result<(), crate::metadata::MetadataError> {
        let image = self.metadata.image();
        if let Some(change) = self.membership_change(&image) {
            match change {
                Change::AddLearner(node) => {
                    tracing::info!(peer = %node.peer_id, node = ?node_id_of(&image, &node.peer_id), "node back: adding it to the metadata log as a learner");
                    self.metadata.add_learner(node).await?;
                }
                Change::SetVoters(set, why) => {
                    let from = self.names(&image, self.status.voters.keys());
                    let to = self.names(&image, set.iter());
                    self.metadata.change_membership(set).await?;
                    tracing::info!(%from, %to, why, "metadata voters changed");
                }
                Change::RemoveLearner(id) => {
                    let name = self.names(&image, [&id].into_iter());
                    self.metadata.remove_node(id).await?;
                    tracing::info!(node = %name, "departed node removed from the metadata log's learners");
                }
            }
            return Ok(());
        }
        let finalize =
            feature_level_change(self.cluster, &image, self.status, self.settings.supported);
        if let Some(finalize) = finalize {
            tracing::info!(?finalize, "raising the cluster's finalized feature level");
            // Refused when a node re-registered meanwhile: judged again next round, and never
            // in the way of the partition changes below.
            let finalize = MetadataCommand::Gated(finalize);
            if let Err(e) = self.metadata.propose(finalize).await {
                tracing::warn!(error = %e, "feature level not raised");
            }
        }
        if image.features().enabled(Feature::NodeRemoval) && self.move_replicas(&image).await? {
            return Ok(());
        }
        let changes = partition_changes(self.cluster, &image, rebalance);
        if !changes.is_empty() {
            self.metadata
                .propose(MetadataCommand::ChangePartitions {
                    changes: changes.clone(),
                })
                .await?;
            for change in &changes {
                log_partition_change(&image, change);
            }
        }
        Ok(())
    }

    /// Moves removed nodes' replicas ([`reassign`]); whether it proposed anything.
    async fn move_replicas(
        &self,
        image: &MetadataImage,
    ) -> Result<bool, crate::metadata::MetadataError> {
        let max = self.settings.max_partitions_per_node;
        let moves = reassign::replica_changes(image, &self.cluster.live_nodes(image), max);
        if let Some(first) = moves.over_limit.first() {
            let more = moves.over_limit.len() - 1;
            limits::hit(
                Limit::PartitionsPerNode,
                format_args!(
                    "a removed node's replica of {first} (and of {more} more partitions) waits: \
                     no live node that could take it holds fewer than {max} partition replicas \
                     (--max-partitions-per-node)"
                ),
            );
        }
        if moves.changes.is_empty() {
            return Ok(false);
        }
        let command = GatedCommand::ReassignReplicas {
            changes: moves.changes.clone(),
        };
        self.metadata
            .propose(MetadataCommand::Gated(command))
            .await?;
        for change in &moves.changes {
            log_replica_move(image, change);
        }
        Ok(true)
    }

    fn membership_change(&self, image: &MetadataImage) -> Option<Change> {
        let status = self.status;
        if !status.membership_committed {
            return None;
        }
        if let Some(target) = &status.joining_voters {
            return Some(Change::SetVoters(
                target.clone(),
                "finishing a voter change left half done",
            ));
        }
        let seats = self.seats(image);
        if let Some(set) = voters::next_voters(&seats, status.node_id, self.settings.voters) {
            return Some(Change::SetVoters(set, why(&seats, status.node_id)));
        }
        if let Some(&id) = voters::departed_learners(&seats).first() {
            return Some(Change::RemoveLearner(id));
        }
        self.returning_node(image).map(Change::AddLearner)
    }

    /// Every member of the metadata log, as the controller sees it.
    fn seats(&self, image: &MetadataImage) -> Vec<Seat> {
        let status = self.status;
        let caught_up = |id: &RaftNodeId| {
            // A learner is promoted only if it has everything committed in this term: gossip may
            // still call a node alive that this leader cannot reach (a split seen late).
            let matched = status.matched.get(id).copied().flatten();
            matched.is_some() && matched >= status.committed
        };
        let voters = status.voters.iter().map(|(id, node)| (id, node, true));
        let learners = status.learners.iter().map(|(id, node)| (id, node, false));
        voters
            .chain(learners)
            .map(|(id, node, voter)| Seat {
                id: *id,
                voter,
                health: self.health(image, *id, node),
                caught_up: *id == status.node_id || caught_up(id),
            })
            .collect()
    }

    /// A member's health. A member known for less than the replacement time is never gone for
    /// being missing from the view or unregistered (it may have just joined); after that, an
    /// unregistered one that is not alive was removed (`rafka cluster remove`) and is gone.
    fn health(&self, image: &MetadataImage, id: RaftNodeId, node: &RaftNode) -> voters::Health {
        let Some(peer) = peer_of(node) else {
            return voters::Health::Gone;
        };
        if self.cluster.is_removed(&peer) {
            // `rafka cluster remove`: gone at once, not after the joining grace.
            return voters::Health::Gone;
        }
        let known_for = self.known_for.get(&id).copied().unwrap_or_default();
        let replace_after = self.settings.replace_after;
        let health = self.cluster.health(&peer, replace_after, known_for);
        let registered = image.node_by_peer(&node.peer_id).is_some();
        match health {
            voters::Health::Alive | voters::Health::Leaving => health,
            _ if !registered && known_for >= replace_after => voters::Health::Gone,
            voters::Health::Gone if !registered => voters::Health::Down,
            _ => health,
        }
    }

    /// A registered node that is alive but no member of the metadata log.
    fn returning_node(&self, image: &MetadataImage) -> Option<RaftNode> {
        let members: BTreeSet<&str> = self
            .status
            .voters
            .values()
            .chain(self.status.learners.values())
            .map(|n| n.peer_id.as_str())
            .collect();
        let view = self.cluster.view();
        view.live()
            .filter(|m| m.peer_id != self.cluster.mesh().local_peer_id())
            .filter(|m| image.node_by_peer(&m.peer_id.to_string()).is_some())
            .filter(|m| !self.cluster.is_removed(&m.peer_id))
            .find(|m| !members.contains(m.peer_id.to_string().as_str()) && can_run_at(m, image))
            .map(raft_node)
    }

    /// Metadata-log members as an operator reads them: `node 3` (or the peer id, unregistered).
    fn names<'a>(
        &self,
        image: &MetadataImage,
        ids: impl Iterator<Item = &'a RaftNodeId>,
    ) -> String {
        let status = self.status;
        let names: Vec<String> = ids
            .map(|id| {
                let peer = status
                    .voters
                    .get(id)
                    .or_else(|| status.learners.get(id))
                    .map(|n| n.peer_id.as_str())
                    .unwrap_or("?");
                node_id_of(image, peer).map_or_else(|| format!("peer {peer}"), |n| n.to_string())
            })
            .collect();
        format!("[{}]", names.join(", "))
    }
}

/// The Kafka node id registered for `peer`.
fn node_id_of(image: &MetadataImage, peer: &str) -> Option<NodeId> {
    image.node_by_peer(peer).map(|n| n.node_id)
}

/// Why the voters change, for the log line.
fn why(seats: &[Seat], leader: RaftNodeId) -> &'static str {
    use voters::Health;
    let voter = |health: Health| seats.iter().any(|s| s.voter && s.health == health);
    if seats
        .iter()
        .any(|s| s.id == leader && s.health == Health::Leaving)
    {
        "this node (the metadata leader) leaves: handing its seat over"
    } else if voter(Health::Leaving) {
        "a voter leaves: handing its seat over"
    } else if voter(Health::Gone) {
        "replacing a voter dead longer than --voter-replace-after-ms"
    } else {
        "sizing the voters to the nodes present"
    }
}

/// One line per replica move.
fn log_replica_move(image: &MetadataImage, change: &ReplicaChange) {
    let Some(topic) = image.topic_by_id(&change.topic_id) else {
        return;
    };
    let Some(before) = usize::try_from(change.partition)
        .ok()
        .and_then(|i| topic.partitions.get(i))
    else {
        return;
    };
    let added: Vec<NodeId> = change
        .replicas
        .iter()
        .copied()
        .filter(|n| !before.replicas.contains(n))
        .collect();
    let dropped: Vec<NodeId> = before
        .replicas
        .iter()
        .copied()
        .filter(|n| !change.replicas.contains(n))
        .collect();
    if dropped.is_empty() {
        tracing::info!(topic = %topic.name, partition = change.partition, added = ?added, replicas = ?change.replicas, "partition replica added in place of a removed node's");
    } else {
        tracing::info!(topic = %topic.name, partition = change.partition, removed = ?dropped, replicas = ?change.replicas, "partition moved off a removed node");
    }
}

/// One line per partition change: new leader and ISR.
fn log_partition_change(image: &MetadataImage, change: &PartitionChange) {
    let topic = image
        .topic_by_id(&change.topic_id)
        .map_or_else(|| change.topic_id.to_string(), |t| t.name.clone());
    let before = image.topic_by_id(&change.topic_id).and_then(|t| {
        usize::try_from(change.partition)
            .ok()
            .and_then(|i| t.partitions.get(i))
    });
    let leader_moved = before.is_none_or(|p| p.leader != change.leader);
    let isr_changed = before.is_none_or(|p| p.isr != change.isr);
    let (old_leader, old_isr) =
        before.map_or((NodeId::NONE, Vec::new()), |p| (p.leader, p.isr.clone()));
    if leader_moved {
        tracing::info!(%topic, partition = change.partition, from = %old_leader, to = %change.leader, isr = ?change.isr, unclean = change.unclean, "partition leader elected");
    } else if isr_changed {
        tracing::info!(%topic, partition = change.partition, leader = %change.leader, from = ?old_isr, to = ?change.isr, "ISR changed");
    }
}

/// Peer ids of the metadata log's voters and learners.
fn member_peers(status: &MetadataStatus) -> BTreeSet<String> {
    status
        .voters
        .values()
        .chain(status.learners.values())
        .map(|n| n.peer_id.clone())
        .collect()
}

/// Whether a returning member can read a metadata log at the cluster's finalized level (a node
/// that cannot would fail on the first entry or snapshot it receives).
fn can_run_at(member: &rafka_mesh::MemberInfo, image: &MetadataImage) -> bool {
    let supported = gossiped_features(member).supported;
    let finalized = image.features().finalized();
    if !supported.contains(finalized) {
        tracing::debug!(peer = %member.peer_id, %supported, %finalized, "not adding a node below the finalized feature level");
    }
    supported.contains(finalized)
}

/// The finalization to propose once every registered node and metadata-log member supports a
/// higher feature level than the finalized one.
fn feature_level_change(
    cluster: &Cluster,
    image: &MetadataImage,
    status: &MetadataStatus,
    supported: LevelRange,
) -> Option<crate::metadata::GatedCommand> {
    let view = cluster.view();
    let members = member_peers(status);
    let local = cluster.mesh().local_peer_id().to_string();
    let gossip = |peer: &str| {
        let peer = peer.parse().ok()?;
        view.member(&peer).map(gossiped_features)
    };
    features::next_finalization(image, &members, (&local, supported), &gossip)
}

/// Partition changes for what gossip says is dead: dead replicas leave ISRs (fencing, as KRaft
/// does for a broker that stopped heartbeating), and partitions whose leader is dead or missing
/// get a live in-sync replica as leader, preferred replica first. The last in-sync replica is
/// never removed: with no live one, the partition has no leader (-1) until it returns, unless the
/// topic allows unclean election, which picks a live replica from outside the ISR.
fn partition_changes(
    cluster: &Cluster,
    image: &MetadataImage,
    rebalance: bool,
) -> Vec<PartitionChange> {
    let live = cluster.live_nodes(image);
    let mut changes = Vec::new();
    for topic in image.topics() {
        let unclean_allowed = topic_config::unclean_leader_election(&topic.configs);
        for p in &topic.partitions {
            if let Some(change) = partition_change(p, &live, unclean_allowed, rebalance) {
                changes.push(PartitionChange {
                    topic_id: topic.id,
                    partition: p.index,
                    expected_partition_epoch: p.partition_epoch,
                    leader: change.0,
                    isr: change.1,
                    unclean: change.2,
                });
            }
        }
    }
    changes
}

/// The (leader, ISR, unclean) one partition should have given the live nodes, if not what it has;
/// with `rebalance`, leadership also goes back to the preferred replica when it can take it.
fn partition_change(
    p: &PartitionImage,
    live: &BTreeSet<NodeId>,
    unclean_allowed: bool,
    rebalance: bool,
) -> Option<(NodeId, Vec<NodeId>, bool)> {
    let live_isr: Vec<NodeId> = p.isr.iter().copied().filter(|n| live.contains(n)).collect();
    // The first live in-sync replica in preferred (replica) order.
    let preferred = p.replicas.iter().copied().find(|n| live_isr.contains(n));
    // Kafka's preferred replica is the first one; only it takes leadership back.
    let first_can_lead = p.replicas.first().is_some_and(|r| live_isr.contains(r));
    let mut isr = if live_isr.is_empty() {
        p.isr.clone()
    } else {
        live_isr
    };
    let leading = p.leader.is_some() && live.contains(&p.leader) && isr.contains(&p.leader);
    let (leader, unclean) = if leading && !(rebalance && first_can_lead) {
        (p.leader, false)
    } else if let Some(first) = preferred {
        (first, false)
    } else if let Some(&replica) = p
        .replicas
        .iter()
        .find(|r| unclean_allowed && live.contains(r))
    {
        isr = vec![replica];
        (replica, true)
    } else {
        (NodeId::NONE, false)
    };
    (leader != p.leader || isr != p.isr).then_some((leader, isr, unclean))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joining_node_is_added_only_if_it_can_run_at_the_finalized_level() {
        use crate::metadata::{FeatureLevel, Features, GatedCommand, MetadataCommand};
        let member = |levels: Option<&str>| rafka_mesh::MemberInfo {
            peer_id: PeerId::random(),
            generation: 1,
            status: rafka_mesh::membership::MemberStatus::Alive,
            heartbeat: 1,
            last_heard_ago: Duration::ZERO,
            keys: levels
                .map(|l| (super::super::FEATURE_LEVELS_KEY.to_string(), l.to_string()))
                .into_iter()
                .collect(),
        };
        let mut image = MetadataImage::default();
        let form = MetadataCommand::Form {
            cluster_id: "c".into(),
        };
        image.apply(&form).unwrap();
        let (old, new) = (member(None), member(Some("0-1")));
        assert!(can_run_at(&old, &image) && can_run_at(&new, &image));
        let finalize = GatedCommand::FinalizeLevel {
            level: FeatureLevel(1),
            nodes: vec![],
        };
        image.apply(&MetadataCommand::Gated(finalize)).unwrap();
        assert_eq!(image.features(), Features::at(FeatureLevel(1)));
        assert!(
            !can_run_at(&old, &image),
            "a node of level 0 added at level 1"
        );
        assert!(can_run_at(&new, &image));
        assert!(!can_run_at(&member(Some("0-0")), &image));
    }

    fn ids(nodes: &[i32]) -> Vec<NodeId> {
        nodes.iter().copied().map(NodeId).collect()
    }

    fn partition(leader: i32, replicas: &[i32], isr: &[i32]) -> PartitionImage {
        PartitionImage {
            index: 0,
            leader: NodeId(leader),
            leader_epoch: 0,
            partition_epoch: 0,
            replicas: ids(replicas),
            isr: ids(isr),
        }
    }

    fn live(nodes: &[i32]) -> BTreeSet<NodeId> {
        ids(nodes).into_iter().collect()
    }

    /// [`super::partition_change`], its answer in plain node numbers.
    fn partition_change(
        p: &PartitionImage,
        live: &BTreeSet<NodeId>,
        unclean_allowed: bool,
        rebalance: bool,
    ) -> Option<(i32, Vec<i32>, bool)> {
        super::partition_change(p, live, unclean_allowed, rebalance)
            .map(|(leader, isr, unclean)| (leader.0, isr.iter().map(|n| n.0).collect(), unclean))
    }

    #[test]
    fn nothing_changes_while_every_replica_lives() {
        let p = partition(1, &[1, 2, 3], &[1, 2, 3]);
        assert_eq!(partition_change(&p, &live(&[1, 2, 3]), false, false), None);
        // A follower outside the ISR is the leader's business (it rejoins by catching up).
        let p = partition(1, &[1, 2, 3], &[1, 3]);
        assert_eq!(partition_change(&p, &live(&[1, 2, 3]), false, false), None);
    }

    #[test]
    fn a_dead_follower_leaves_the_isr_and_a_dead_leader_is_replaced_from_it() {
        let p = partition(1, &[1, 2, 3], &[1, 2, 3]);
        assert_eq!(
            partition_change(&p, &live(&[1, 3]), false, false),
            Some((1, vec![1, 3], false))
        );
        assert_eq!(
            partition_change(&p, &live(&[2, 3]), false, false),
            Some((2, vec![2, 3], false))
        );
        // Preferred order among the live in-sync replicas, not ISR order.
        let p = partition(1, &[1, 2, 3], &[3, 2, 1]);
        assert_eq!(
            partition_change(&p, &live(&[2, 3]), false, false),
            Some((2, vec![3, 2], false))
        );
    }

    #[test]
    fn the_last_in_sync_replica_stays_and_leads_again_when_it_returns() {
        let p = partition(1, &[1, 2, 3], &[1]);
        assert_eq!(
            partition_change(&p, &live(&[2, 3]), false, false),
            Some((-1, vec![1], false))
        );
        let headless = partition(-1, &[1, 2, 3], &[1]);
        assert_eq!(
            partition_change(&headless, &live(&[2, 3]), false, false),
            None
        );
        assert_eq!(
            partition_change(&headless, &live(&[1, 2]), false, false),
            Some((1, vec![1], false))
        );
        // Unclean election when the topic allows it: a live replica, alone in the ISR.
        assert_eq!(
            partition_change(&headless, &live(&[2, 3]), true, false),
            Some((2, vec![2], true))
        );
    }

    #[test]
    fn a_rebalance_hands_leadership_back_to_the_preferred_replica_only() {
        // Node 1 returned and caught up; node 2 kept the leadership it got in the failover.
        let p = partition(2, &[1, 2, 3], &[2, 3, 1]);
        assert_eq!(partition_change(&p, &live(&[1, 2, 3]), false, false), None);
        assert_eq!(
            partition_change(&p, &live(&[1, 2, 3]), false, true),
            Some((1, vec![2, 3, 1], false))
        );
        // Not while the preferred replica is out of sync or dead.
        let behind = partition(2, &[1, 2, 3], &[2, 3]);
        assert_eq!(
            partition_change(&behind, &live(&[1, 2, 3]), false, true),
            None
        );
        assert_eq!(
            partition_change(&p, &live(&[2, 3]), false, true),
            Some((2, vec![2, 3], false))
        );
        // Leadership does not move between non-preferred replicas.
        let third = partition(3, &[1, 2, 3], &[3, 2]);
        assert_eq!(partition_change(&third, &live(&[2, 3]), false, true), None);
        // The preferred leader leading already: nothing to do.
        let home = partition(1, &[1, 2, 3], &[1, 2, 3]);
        assert_eq!(
            partition_change(&home, &live(&[1, 2, 3]), false, true),
            None
        );
    }
}
