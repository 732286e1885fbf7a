//! The controller: on the metadata leader only, turns what gossip knows into metadata decisions.
//!
//! Each round makes at most one membership change of the metadata log, so voters are replaced
//! one change at a time:
//! 1. a live node of this cluster (or a fresh one that is not forming its own) that is not in the
//!    metadata log is added as a learner;
//! 2. while there are fewer voters than configured, a live learner is promoted;
//! 3. a dead voter is replaced: first a live learner is promoted, then the dead voter removed;
//! 4. partitions whose leader is dead get a new leader from their live in-sync replicas, or none
//!    (-1) until one returns; a partition without a leader gets one as soon as an in-sync replica
//!    is alive again.
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
use super::{Cluster, FORMING_KEY};
use crate::metadata::raft::{RaftNode, RaftNodeId};
use crate::metadata::{
    LeaderChange, Metadata, MetadataCommand, MetadataImage, MetadataStatus, RaftRole,
};

/// How often the controller looks even when nothing changed.
const PERIOD: Duration = Duration::from_secs(1);

/// Runs the controller until `shutdown`.
pub async fn run(metadata: Metadata, cluster: Cluster, voters: usize, shutdown: CancellationToken) {
    let mut view = cluster.mesh().membership();
    let mut images = metadata.subscribe();
    let mut ticker = tokio::time::interval(PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
        if let Err(e) = step(&metadata, &cluster, &status, voters).await {
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
    voters: usize,
) -> Result<(), crate::metadata::MetadataError> {
    let image = metadata.image();
    if let Some(change) = membership_change(cluster, &image, status, voters) {
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
    let changes = leader_changes(cluster, &image);
    if !changes.is_empty() {
        for change in &changes {
            tracing::info!(topic_id = %change.topic_id, partition = change.partition, leader = change.leader, "electing a partition leader");
        }
        metadata
            .propose(MetadataCommand::ElectLeaders { changes })
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
    let known: BTreeSet<String> = status
        .voters
        .values()
        .chain(status.learners.values())
        .map(|n| n.peer_id.clone())
        .collect();
    let view = cluster.view();
    let joining = view.live().find(|m| {
        m.peer_id != cluster.mesh().local_peer_id()
            && !known.contains(&m.peer_id.to_string())
            && m.keys.contains_key(CONTROL_ADDRS_KEY)
            && !m.keys.contains_key(FORMING_KEY)
            && m.keys
                .get(CLUSTER_ID_KEY)
                .is_none_or(|id| *id == image.cluster_id)
    });
    if let Some(member) = joining {
        return Some(Change::AddLearner(raft_node(member)));
    }
    let voter_ids: BTreeSet<RaftNodeId> = status.voters.keys().copied().collect();
    let live_voters = live(&status.voters);
    let live_learners: Vec<RaftNodeId> = live(&status.learners)
        .into_iter()
        .filter(|id| !voter_ids.contains(id))
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

/// Leadership moves for partitions whose leader is dead or missing.
fn leader_changes(cluster: &Cluster, image: &MetadataImage) -> Vec<LeaderChange> {
    let live = cluster.live_nodes(image);
    let mut changes = Vec::new();
    for topic in image.topics() {
        for p in &topic.partitions {
            let leader_ok = p.leader >= 0 && live.contains(&p.leader);
            if leader_ok {
                continue;
            }
            let candidate = p
                .isr
                .iter()
                .copied()
                .find(|n| live.contains(n))
                .unwrap_or(-1);
            if candidate != p.leader {
                changes.push(LeaderChange {
                    topic_id: topic.id,
                    partition: p.index,
                    leader: candidate,
                    expected_leader_epoch: p.leader_epoch,
                });
            }
        }
    }
    changes
}
