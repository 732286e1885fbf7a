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

use std::collections::{BTreeMap, BTreeSet};

use crate::metadata::{MetadataImage, NodeId, ReplicaChange};

/// The replica changes for partitions that still name removed nodes, given the live registered
/// nodes. At most one change per partition per round.
pub fn replica_changes(image: &MetadataImage, live: &BTreeSet<NodeId>) -> Vec<ReplicaChange> {
    let mut load = replica_counts(image);
    let mut changes = Vec::new();
    for topic in image.topics() {
        let target = usize::try_from(topic.replication_factor).unwrap_or(1);
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
            let candidate = live
                .iter()
                .copied()
                .filter(|n| !p.replicas.contains(n))
                .min_by_key(|n| (load.get(n).copied().unwrap_or(0), *n));
            let replicas = match candidate {
                Some(node) if registered.len() < target => {
                    *load.entry(node).or_default() += 1;
                    let mut replicas = p.replicas.clone();
                    replicas.push(node);
                    replicas
                }
                _ if !registered.is_empty() && registered.iter().all(|n| p.isr.contains(n)) => {
                    registered
                }
                _ => continue,
            };
            changes.push(ReplicaChange {
                topic_id: topic.id,
                partition: p.index,
                expected_partition_epoch: p.partition_epoch,
                replicas,
            });
        }
    }
    changes
}

/// Replicas per registered node.
fn replica_counts(image: &MetadataImage) -> BTreeMap<NodeId, usize> {
    let mut counts = BTreeMap::new();
    for topic in image.topics() {
        for p in &topic.partitions {
            for node in &p.replicas {
                *counts.entry(*node).or_default() += 1;
            }
        }
    }
    counts
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

    fn nodes(ids: &[i32]) -> BTreeSet<NodeId> {
        ids.iter().map(|&n| NodeId(n)).collect()
    }

    fn replicas(change: &ReplicaChange) -> Vec<i32> {
        change.replicas.iter().map(|n| n.0).collect()
    }

    #[test]
    fn nothing_moves_while_every_replica_is_registered() {
        let image = image(3, &[&[1, 2], &[2, 3]]);
        assert!(replica_changes(&image, &nodes(&[1, 2, 3])).is_empty());
    }

    #[test]
    fn a_removed_nodes_replica_gets_a_new_home_then_is_dropped_once_it_is_in_sync() {
        let mut image = image(4, &[&[1, 2], &[2, 3], &[3, 4]]);
        image
            .apply(&MetadataCommand::Gated(GatedCommand::RemoveNode {
                node_id: NodeId(2),
            }))
            .unwrap();
        let live = nodes(&[1, 3, 4]);
        let changes = replica_changes(&image, &live);
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
        assert!(replica_changes(&image, &live).is_empty());
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
        let dropped: Vec<Vec<i32>> = replica_changes(&caught_up, &live)
            .iter()
            .map(replicas)
            .collect();
        assert_eq!(dropped, vec![vec![1, 4], vec![3, 1]]);
    }

    #[test]
    fn without_a_live_node_to_take_it_the_removed_replica_is_dropped_when_the_rest_is_in_sync() {
        let mut image = image(2, &[&[1, 2]]);
        image
            .apply(&MetadataCommand::Gated(GatedCommand::RemoveNode {
                node_id: NodeId(2),
            }))
            .unwrap();
        let changes = replica_changes(&image, &nodes(&[1]));
        assert_eq!(
            changes.iter().map(replicas).collect::<Vec<_>>(),
            vec![vec![1]]
        );
    }
}
