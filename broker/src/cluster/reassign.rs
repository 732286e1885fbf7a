//! Moving replicas off removed nodes: a pure decision over the image, so every rule is a unit
//! test. A node removed with `rafka cluster remove` (Kafka's UnregisterBroker) leaves the
//! registered nodes at once, but the partitions that had a replica on it keep naming it until
//! the data has a new home:
//!
//! 1. while a partition has fewer registered replicas than its topic's replication factor, a live
//!    registered node that holds none of it (the least loaded) is added as a replica: the leader
//!    gets a new follower, which catches up and joins the ISR the usual way;
//! 2. once every registered replica is in the ISR, the removed node's replica is dropped.
//!
//! With no live node left to take a replica, the removed one is still dropped once the others
//! are in sync: the partition keeps fewer replicas than its topic asked for.
//!
//! A new replica goes only to a node holding fewer than `--max-partitions-per-node` replicas. A
//! removal whose replicas would not all fit is refused before anything changes
//! ([`check_removal`]); a move that stopped fitting since (topics created meanwhile) waits, the
//! removed replica kept, until there is room ([`Moves::over_limit`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::metadata::assignment::replicas_per_node;
use crate::metadata::{MetadataImage, NodeId, PartitionImage, ReplicaChange, TopicImage};

/// What the controller does next for partitions that still name removed nodes.
#[derive(Debug, Default)]
pub struct Moves {
    /// At most one change per partition.
    pub changes: Vec<ReplicaChange>,
    /// Partitions (`topic-index`) whose new replica fits on no live node under the limit: they
    /// wait, keeping the removed node's replica listed.
    pub over_limit: Vec<String>,
}

/// A removal refused because a replica of the removed node fits nowhere under the limit.
#[derive(Debug, PartialEq, Eq)]
pub struct NoRoom {
    /// The partition, as `topic-index`.
    pub partition: String,
    /// The live nodes that could take it but hold `max` replicas already.
    pub full: Vec<NodeId>,
}

/// Where a new replica of a partition can go.
enum Home {
    /// The least-loaded live node under the limit that holds none of the partition.
    Fits(NodeId),
    /// Live nodes hold none of it, but every one of them is at the limit.
    Full(Vec<NodeId>),
    /// Every live node holds it already.
    Nowhere,
}

fn new_home(
    live: &BTreeSet<NodeId>,
    holders: &[NodeId],
    load: &BTreeMap<NodeId, usize>,
    max: usize,
) -> Home {
    let held = |n: &NodeId| load.get(n).copied().unwrap_or(0);
    let candidates: Vec<NodeId> = live
        .iter()
        .copied()
        .filter(|n| !holders.contains(n))
        .collect();
    if candidates.is_empty() {
        return Home::Nowhere;
    }
    candidates
        .iter()
        .copied()
        .filter(|n| held(n) < max)
        .min_by_key(|n| (held(n), *n))
        .map_or(Home::Full(candidates), Home::Fits)
}

fn target(topic: &TopicImage) -> usize {
    usize::try_from(topic.replication_factor).unwrap_or(1)
}

fn name(topic: &TopicImage, p: &PartitionImage) -> String {
    format!("{}-{}", topic.name, p.index)
}

/// The replica changes for partitions that still name removed nodes, given the live registered
/// nodes and the most replicas a node may hold (`--max-partitions-per-node`).
pub fn replica_changes(image: &MetadataImage, live: &BTreeSet<NodeId>, max: usize) -> Moves {
    let mut load = replicas_per_node(image);
    let mut moves = Moves::default();
    for topic in image.topics() {
        for p in &topic.partitions {
            let registered: Vec<NodeId> = p
                .replicas
                .iter()
                .copied()
                .filter(|n| image.nodes.contains_key(n))
                .collect();
            if registered.len() == p.replicas.len() {
                continue;
            }
            let short = registered.len() < target(topic);
            let replicas = match new_home(live, &p.replicas, &load, max) {
                Home::Fits(node) if short => {
                    *load.entry(node).or_default() += 1;
                    let mut replicas = p.replicas.clone();
                    replicas.push(node);
                    replicas
                }
                Home::Full(_) if short => {
                    moves.over_limit.push(name(topic, p));
                    continue;
                }
                _ if !registered.is_empty() && registered.iter().all(|n| p.isr.contains(n)) => {
                    registered
                }
                _ => continue,
            };
            moves.changes.push(ReplicaChange {
                topic_id: topic.id,
                partition: p.index,
                expected_partition_epoch: p.partition_epoch,
                replicas,
            });
        }
    }
    moves
}

/// Whether every replica of `removed` would find a new home under `max` replicas per node if it
/// were removed now: the moves [`replica_changes`] would make, all at once. A partition no other
/// live node can take (every one holds it already) keeps fewer replicas, as after any removal.
pub fn check_removal(
    image: &MetadataImage,
    removed: NodeId,
    live: &BTreeSet<NodeId>,
    max: usize,
) -> Result<(), NoRoom> {
    let mut load = replicas_per_node(image);
    for topic in image.topics() {
        for p in partitions_on(topic, removed) {
            let mut holders = p.replicas.clone();
            let mut kept = p
                .replicas
                .iter()
                .filter(|n| **n != removed && image.nodes.contains_key(n))
                .count();
            while kept < target(topic) {
                match new_home(live, &holders, &load, max) {
                    Home::Fits(node) => {
                        *load.entry(node).or_default() += 1;
                        holders.push(node);
                        kept += 1;
                    }
                    Home::Full(full) => {
                        return Err(NoRoom {
                            partition: name(topic, p),
                            full,
                        });
                    }
                    Home::Nowhere => break,
                }
            }
        }
    }
    Ok(())
}

/// The partitions of `topic` with a replica on `node`.
fn partitions_on(topic: &TopicImage, node: NodeId) -> impl Iterator<Item = &PartitionImage> {
    topic
        .partitions
        .iter()
        .filter(move |p| p.replicas.contains(&node))
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::metadata::{GatedCommand, MetadataCommand};

    /// Nodes 1..=n registered and topic `t` of replication factor 2 with `assignments`.
    fn image(n: i32, assignments: &[&[i32]]) -> MetadataImage {
        let mut image = MetadataImage::formed_at_latest(usize::try_from(n).unwrap());
        image
            .apply(&MetadataCommand::CreateTopic {
                name: "t".into(),
                topic_id: Uuid::new_v4(),
                assignments: assignments
                    .iter()
                    .map(|r| r.iter().map(|&n| NodeId(n)).collect())
                    .collect(),
                configs: Default::default(),
                internal: false,
            })
            .unwrap();
        image
    }

    /// A limit no test reaches.
    const NO_LIMIT: usize = 1_000;

    fn nodes(ids: &[i32]) -> BTreeSet<NodeId> {
        ids.iter().map(|&n| NodeId(n)).collect()
    }

    fn replicas(change: &ReplicaChange) -> Vec<i32> {
        change.replicas.iter().map(|n| n.0).collect()
    }

    #[test]
    fn nothing_moves_while_every_replica_is_registered() {
        let image = image(3, &[&[1, 2], &[2, 3]]);
        let moves = replica_changes(&image, &nodes(&[1, 2, 3]), NO_LIMIT);
        assert!(moves.changes.is_empty() && moves.over_limit.is_empty());
    }

    #[test]
    fn a_removed_nodes_replica_gets_a_new_home_then_is_dropped_once_it_is_in_sync() {
        let mut image = image(4, &[&[1, 2], &[2, 3], &[3, 4]]);
        remove(&mut image, 2);
        let live = nodes(&[1, 3, 4]);
        let changes = replica_changes(&image, &live, NO_LIMIT).changes;
        // Partition 0 [1, 2]: of 3 and 4, node 4 holds fewer replicas. Partition 1 [2, 3]: of 1
        // and 4, node 1 does now.
        let added: Vec<Vec<i32>> = changes.iter().map(replicas).collect();
        assert_eq!(added, vec![vec![1, 2, 4], vec![2, 3, 1]]);
        image
            .apply(&MetadataCommand::Gated(GatedCommand::ReassignReplicas {
                changes: changes.clone(),
            }))
            .unwrap();
        // The new replicas are not in sync yet: nothing is dropped.
        assert!(replica_changes(&image, &live, NO_LIMIT).changes.is_empty());
        // In sync (as AlterPartition would make them): node 2 is dropped.
        let mut caught_up = image.clone();
        for change in &changes {
            let topic = caught_up.topic_by_id(&change.topic_id).unwrap().clone();
            let p = &topic.partitions[usize::try_from(change.partition).unwrap()];
            let leader = p.leader;
            let isr: Vec<_> = change
                .replicas
                .iter()
                .filter(|n| n.0 != 2)
                .map(|&node| crate::metadata::IsrMember {
                    node,
                    broker_epoch: 1,
                })
                .collect();
            caught_up
                .apply(&MetadataCommand::AlterPartition {
                    topic_id: change.topic_id,
                    partition: change.partition,
                    leader,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    isr,
                })
                .unwrap();
        }
        let dropped: Vec<Vec<i32>> = replica_changes(&caught_up, &live, NO_LIMIT)
            .changes
            .iter()
            .map(replicas)
            .collect();
        assert_eq!(dropped, vec![vec![1, 4], vec![3, 1]]);
    }

    #[test]
    fn without_a_live_node_to_take_it_the_removed_replica_is_dropped_when_the_rest_is_in_sync() {
        let mut image = image(2, &[&[1, 2]]);
        // Not a limit matter (no node could take it at any limit): the removal is not refused.
        assert_eq!(check_removal(&image, NodeId(2), &nodes(&[1]), 1), Ok(()));
        remove(&mut image, 2);
        let moves = replica_changes(&image, &nodes(&[1]), 1);
        assert_eq!(
            moves.changes.iter().map(replicas).collect::<Vec<_>>(),
            vec![vec![1]]
        );
        assert!(moves.over_limit.is_empty());
    }

    /// Removes `node` from `image`.
    fn remove(image: &mut MetadataImage, node: i32) {
        image
            .apply(&MetadataCommand::Gated(GatedCommand::RemoveNode {
                node_id: NodeId(node),
            }))
            .unwrap();
    }

    #[test]
    fn a_new_replica_goes_only_to_a_node_under_the_limit_and_otherwise_waits() {
        // Replicas held: node 1: 2, node 2: 1, node 3: 3, node 4: 2.
        let mut image = image(4, &[&[1, 2], &[3, 4], &[3, 4], &[1, 3]]);
        let live = nodes(&[1, 3, 4]);
        // Node 2's replica of t-0 can go to 3 or 4; 4 holds fewer.
        assert_eq!(check_removal(&image, NodeId(2), &live, 3), Ok(()));
        // With at most 2 per node, both are full: the removal is refused, naming them.
        assert_eq!(
            check_removal(&image, NodeId(2), &live, 2),
            Err(NoRoom {
                partition: "t-0".into(),
                full: vec![NodeId(3), NodeId(4)],
            })
        );
        remove(&mut image, 2);
        let fits = replica_changes(&image, &live, 3);
        assert_eq!(
            fits.changes.iter().map(replicas).collect::<Vec<_>>(),
            vec![vec![1, 2, 4]]
        );
        assert!(fits.over_limit.is_empty());
        // Full since (the limit as if topics had been created meanwhile): the move waits, and
        // the removed node's replica is not dropped although the rest of the ISR is in sync.
        let full = replica_changes(&image, &live, 2);
        assert!(full.changes.is_empty(), "{:?}", full.changes);
        assert_eq!(full.over_limit, vec!["t-0".to_string()]);
    }

    #[test]
    fn a_removal_counts_every_replica_it_would_move_against_the_limit() {
        // Node 2's replicas of t-0 and t-1 can both only go to node 3 (node 1 holds them),
        // which holds one replica now.
        let image = image(3, &[&[1, 2], &[2, 1], &[3, 1]]);
        let live = nodes(&[1, 3]);
        assert_eq!(check_removal(&image, NodeId(2), &live, 3), Ok(()));
        assert_eq!(
            check_removal(&image, NodeId(2), &live, 2),
            Err(NoRoom {
                partition: "t-1".into(),
                full: vec![NodeId(3)],
            })
        );
    }
}
