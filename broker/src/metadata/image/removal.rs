//! Removing a node for good, and moving its replicas elsewhere (see
//! [`GatedCommand::RemoveNode`] and [`GatedCommand::ReassignReplicas`]).
//!
//! [`GatedCommand::RemoveNode`]: crate::metadata::GatedCommand::RemoveNode
//! [`GatedCommand::ReassignReplicas`]: crate::metadata::GatedCommand::ReassignReplicas

use std::sync::Arc;

use super::MetadataImage;
use crate::metadata::{MetadataError, NodeId, ReplicaChange};

impl MetadataImage {
    /// Unregisters `node`: out of the registered nodes, of every ISR and of every leadership (the
    /// next in-sync replica leads); its replicas stay listed until they are moved. Refused while
    /// it is the only in-sync replica of a partition, whose data would then be lost.
    pub(super) fn remove_node(&mut self, node: NodeId) -> Result<(), MetadataError> {
        if !self.nodes.contains_key(&node) {
            return Err(MetadataError::UnknownNode(node));
        }
        for topic in self.topics.values() {
            if let Some(p) = topic.partitions.iter().find(|p| p.isr == [node]) {
                return Err(MetadataError::LastInSyncReplica {
                    node,
                    partition: format!("{}-{}", topic.name, p.index),
                });
            }
        }
        self.nodes.remove(&node);
        // Every ISR naming it has another member (checked above): it leaves them all, as a
        // restarted node does.
        self.fence_restarted(node);
        Ok(())
    }

    /// Replica moves that are still current and keep every in-sync replica and the leader; an
    /// invalid or stale one is skipped.
    pub(super) fn reassign_replicas(&mut self, changes: &[ReplicaChange]) {
        for change in changes {
            let Ok((mut topic, index)) =
                self.partition_for_change(change.topic_id, change.partition)
            else {
                continue;
            };
            let Some(p) = topic.partitions.get_mut(index) else {
                continue;
            };
            let mut distinct = change.replicas.clone();
            distinct.sort_unstable();
            distinct.dedup();
            let valid = !change.replicas.is_empty()
                && distinct.len() == change.replicas.len()
                && p.isr.iter().all(|n| change.replicas.contains(n))
                && (p.leader.is_none() || change.replicas.contains(&p.leader))
                && change
                    .replicas
                    .iter()
                    .all(|n| p.replicas.contains(n) || self.nodes.contains_key(n));
            if p.partition_epoch != change.expected_partition_epoch || !valid {
                continue;
            }
            p.replicas.clone_from(&change.replicas);
            p.partition_epoch += 1;
            self.topics.insert(topic.name.clone(), Arc::new(topic));
        }
    }

    /// A formed cluster at the latest feature level with `nodes` registered (peer ids
    /// `peer-0`...): what the removal tests start from.
    #[cfg(test)]
    pub(crate) fn formed_at_latest(nodes: usize) -> MetadataImage {
        use crate::metadata::features::{LATEST, SUPPORTED};
        use crate::metadata::{GatedCommand, MetadataCommand};
        let mut image = MetadataImage::default();
        let form = MetadataCommand::Form {
            cluster_id: "c".into(),
        };
        image.apply(&form).unwrap();
        let finalize = GatedCommand::FinalizeLevel {
            level: LATEST,
            nodes: vec![],
        };
        image.apply(&MetadataCommand::Gated(finalize)).unwrap();
        for i in 0..nodes {
            let register = MetadataCommand::registration(
                format!("peer-{i}"),
                "h".into(),
                1,
                SUPPORTED,
                image.features(),
            );
            image.apply(&register).unwrap();
        }
        image
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use crate::metadata::{
        GatedCommand, MetadataCommand, MetadataError, MetadataImage, NodeId, ReplicaChange,
    };

    fn remove(node: i32) -> MetadataCommand {
        MetadataCommand::Gated(GatedCommand::RemoveNode {
            node_id: NodeId(node),
        })
    }

    #[test]
    fn a_removal_needs_the_node_removal_feature_level() {
        let mut image = MetadataImage::default();
        let form = MetadataCommand::Form {
            cluster_id: "c".into(),
        };
        image.apply(&form).unwrap();
        let register = MetadataCommand::RegisterNode {
            peer_id: "peer-0".into(),
            kafka_host: "h".into(),
            kafka_port: 1,
        };
        image.apply(&register).unwrap();
        let refused = image.apply(&remove(1));
        assert!(
            matches!(
                refused,
                Err(MetadataError::FeatureNotEnabled { needs: 3, .. })
            ),
            "{refused:?}"
        );
        assert!(image.nodes.contains_key(&NodeId(1)));
    }

    /// Nodes 1, 2, 3 (and `extra` more), topic `t` on [1, 2] and topic `u` on [3].
    fn image(extra: usize) -> (MetadataImage, Uuid) {
        let mut image = MetadataImage::formed_at_latest(3 + extra);
        let id = Uuid::new_v4();
        image
            .apply(&MetadataCommand::CreateTopic {
                name: "t".into(),
                topic_id: id,
                assignments: vec![vec![NodeId(1), NodeId(2)]],
                configs: Default::default(),
                internal: false,
            })
            .unwrap();
        image
            .apply(&MetadataCommand::CreateTopic {
                name: "u".into(),
                topic_id: Uuid::new_v4(),
                assignments: vec![vec![NodeId(3)]],
                configs: Default::default(),
                internal: false,
            })
            .unwrap();
        (image, id)
    }

    #[test]
    fn a_removed_node_leaves_isrs_and_leaderships_but_not_yet_the_replicas() {
        let (mut image, _) = image(1);
        image.apply(&remove(1)).unwrap();
        assert!(!image.nodes.contains_key(&NodeId(1)));
        let p = &image.topic("t").unwrap().partitions[0];
        assert_eq!((p.leader, p.isr.clone()), (NodeId(2), vec![NodeId(2)]));
        assert_eq!((p.leader_epoch, p.partition_epoch), (1, 1));
        assert_eq!(p.replicas, vec![NodeId(1), NodeId(2)], "still to be moved");
        assert_eq!(
            image.apply(&remove(1)),
            Err(MetadataError::UnknownNode(NodeId(1)))
        );
    }

    #[test]
    fn the_only_in_sync_replica_is_not_removed() {
        let (mut image, _) = image(0);
        let version = image.version;
        let refused = image.apply(&remove(3));
        assert!(
            matches!(refused, Err(MetadataError::LastInSyncReplica { .. })),
            "{refused:?}"
        );
        assert!(image.nodes.contains_key(&NodeId(3)) && image.version == version);
    }

    #[test]
    fn replicas_move_only_keeping_the_isr_and_to_registered_nodes() {
        let (mut image, id) = image(1);
        image.apply(&remove(1)).unwrap();
        let change = |epoch, replicas: &[i32]| {
            MetadataCommand::Gated(GatedCommand::ReassignReplicas {
                changes: vec![ReplicaChange {
                    topic_id: id,
                    partition: 0,
                    expected_partition_epoch: epoch,
                    replicas: replicas.iter().map(|&n| NodeId(n)).collect(),
                }],
            })
        };
        // Stale; dropping the ISR member 2; adding the unregistered 9; a duplicate: all skipped.
        for bad in [
            change(0, &[1, 2, 4]),
            change(1, &[1, 4]),
            change(1, &[1, 2, 9]),
            change(1, &[2, 2]),
        ] {
            image.apply(&bad).unwrap();
        }
        assert_eq!(image.topic("t").unwrap().partitions[0].partition_epoch, 1);
        // Node 4 added next to the removed 1, then 1 dropped.
        image.apply(&change(1, &[1, 2, 4])).unwrap();
        image.apply(&change(2, &[2, 4])).unwrap();
        let p = &image.topic("t").unwrap().partitions[0];
        assert_eq!(p.replicas, vec![NodeId(2), NodeId(4)]);
        assert_eq!(p.partition_epoch, 3);
    }
}
