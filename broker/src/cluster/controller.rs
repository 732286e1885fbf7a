//! The controller: on the metadata leader only, turns what gossip knows into metadata decisions.
//!
//! Each round makes at most one membership change of the metadata log, so voters are replaced
//! one change at a time:
//! 1. a live node of this cluster (or a fresh one that is not forming its own) that is not in the
//!    metadata log is added as a learner;
//! 2. while there are fewer voters than configured, a live learner is promoted;
//! 3. a dead voter is replaced: first a live learner is promoted, then the dead voter removed;
//! 4. dead replicas leave in-sync replica sets (never the last one), partitions whose leader is
//!    dead get a new leader from their live in-sync replicas, or none (-1) until one returns (or
//!    a live out-of-sync replica where the topic enables unclean election); a partition without a
//!    leader gets one as soon as an in-sync replica is alive again;
//! 5. every `--leader-rebalance-interval-ms` (Kafka's auto.leader.rebalance), a partition whose
//!    preferred replica (the first) is alive and in sync but not leading is handed back to it, so
//!    leadership spreads again after a node returns instead of piling up on the survivors;
//! 6. the cluster's finalized feature level rises once every registered node and every member of
//!    the metadata log supports a higher one ([`features::next_finalization`]); a joining node
//!    that cannot run at the finalized level is not added to the metadata log.
//!
//! Gossip decides nothing by itself: every change goes through the metadata log, and a node that
//! is not the leader never acts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rafka_mesh::PeerId;
use rafka_mesh::membership::CLUSTER_ID_KEY;
use rafka_mesh::view::CONTROL_ADDRS_KEY;
use tokio_util::sync::CancellationToken;

use super::formation::raft_node;
use super::gossip::gossiped_features;
use super::{Cluster, FORMING_KEY};
use crate::metadata::raft::{RaftNode, RaftNodeId};
use crate::metadata::{
    LevelRange, Metadata, MetadataCommand, MetadataImage, MetadataStatus, NodeId, PartitionChange,
    PartitionImage, RaftRole, features, topic_config,
};

/// How often the controller looks even when nothing changed.
const PERIOD: Duration = Duration::from_secs(1);

/// What the controller is configured with.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Voters the metadata log should have.
    pub voters: usize,
    /// How often leadership goes back to preferred replicas (`None`: never).
    pub rebalance_every: Option<Duration>,
    /// The feature levels this node supports.
    pub supported: LevelRange,
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
    // The first rebalance waits a whole interval, as Kafka's does.
    let mut last_rebalance = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = view.changed() => {}
            _ = images.changed() => {}
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => break,
        }
        let status = metadata.status().await;
        if status.role != RaftRole::Leader {
            continue;
        }
        let rebalance = settings
            .rebalance_every
            .is_some_and(|every| last_rebalance.elapsed() >= every);
        if rebalance {
            last_rebalance = tokio::time::Instant::now();
        }
        if let Err(e) = step(&metadata, &cluster, &status, settings, rebalance).await {
            tracing::warn!(error = %e, "controller step failed; retrying");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// One round: at most one membership change, then partition leadership.
async fn step(
    metadata: &Metadata,
    cluster: &Cluster,
    status: &MetadataStatus,
    settings: Settings,
    rebalance: bool,
) -> Result<(), crate::metadata::MetadataError> {
    let image = metadata.image();
    if let Some(change) = membership_change(cluster, &image, status, settings.voters) {
        match change {
            Change::AddLearner(node) => {
                tracing::info!(peer = %node.peer_id, "adding a node to the metadata log as a learner");
                metadata.add_learner(node).await?;
            }
            Change::SetVoters(set, why) => {
                tracing::info!(voters = ?set, why, "changing the metadata log's voters");
                metadata.change_membership(set).await?;
            }
        }
        return Ok(());
    }
    if let Some(finalize) = feature_level_change(cluster, &image, status, settings.supported) {
        tracing::info!(?finalize, "raising the cluster's finalized feature level");
        // Refused when a node re-registered meanwhile: judged again next round, and never in
        // the way of the partition changes below.
        if let Err(e) = metadata.propose(MetadataCommand::Gated(finalize)).await {
            tracing::warn!(error = %e, "feature level not raised");
        }
    }
    let changes = partition_changes(cluster, &image, rebalance);
    if !changes.is_empty() {
        for change in &changes {
            tracing::info!(topic_id = %change.topic_id, partition = change.partition, leader = change.leader.0, isr = ?change.isr, unclean = change.unclean, "changing a partition's leader or ISR");
        }
        metadata
            .propose(MetadataCommand::ChangePartitions { changes })
            .await?;
    }
    Ok(())
}

enum Change {
    AddLearner(RaftNode),
    SetVoters(BTreeSet<RaftNodeId>, &'static str),
}

fn peer_of(node: &RaftNode) -> Option<PeerId> {
    node.peer_id.parse().ok()
}

fn membership_change(
    cluster: &Cluster,
    image: &MetadataImage,
    status: &MetadataStatus,
    voters: usize,
) -> Option<Change> {
    let live = |nodes: &BTreeMap<RaftNodeId, RaftNode>| -> Vec<RaftNodeId> {
        nodes
            .iter()
            .filter(|(_, n)| peer_of(n).is_some_and(|p| cluster.is_peer_live(&p)))
            .map(|(id, _)| *id)
            .collect()
    };
    let known = member_peers(status);
    let view = cluster.view();
    let joining = view.live().find(|m| {
        m.peer_id != cluster.mesh().local_peer_id()
            && !known.contains(&m.peer_id.to_string())
            && m.keys.contains_key(CONTROL_ADDRS_KEY)
            && !m.keys.contains_key(FORMING_KEY)
            && m.keys
                .get(CLUSTER_ID_KEY)
                .is_none_or(|id| *id == image.cluster_id)
            && can_run_at(m, image)
    });
    if let Some(member) = joining {
        return Some(Change::AddLearner(raft_node(member)));
    }
    let voter_ids: BTreeSet<RaftNodeId> = status.voters.keys().copied().collect();
    let live_voters = live(&status.voters);
    // A learner is promoted only if it has everything committed in this term: gossip may still
    // call a node alive that this leader cannot reach (a split seen late), and a joint config
    // naming an unreachable voter can never commit, which would stop the metadata log for good.
    let caught_up = |id: &RaftNodeId| {
        let matched = status.matched.get(id).copied().flatten();
        matched.is_some() && matched >= status.committed
    };
    let live_learners: Vec<RaftNodeId> = live(&status.learners)
        .into_iter()
        .filter(|id| !voter_ids.contains(id) && caught_up(id))
        .collect();
    let dead_voter = voter_ids
        .iter()
        .copied()
        .find(|id| !live_voters.contains(id));
    if let Some(&learner) = live_learners.first()
        && (voter_ids.len() < voters || dead_voter.is_some())
    {
        let mut set = voter_ids.clone();
        set.insert(learner);
        let why = if dead_voter.is_some() {
            "replacing a dead voter"
        } else {
            "growing to the configured voters"
        };
        return Some(Change::SetVoters(set, why));
    }
    if let Some(dead) = dead_voter
        && voter_ids.len() > voters
    {
        let mut set = voter_ids;
        set.remove(&dead);
        return Some(Change::SetVoters(set, "removing a dead voter"));
    }
    None
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

/// Whether a joining member can read a metadata log at the cluster's finalized level (a node
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
