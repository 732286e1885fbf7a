//! Partition placement: which nodes hold the replicas of a new topic's partitions, and which of
//! them leads. Pure: the proposer computes it from the nodes it sees alive and the current load,
//! and the chosen assignment goes into the metadata log, so every replica applies the same thing.

use std::collections::BTreeMap;

use super::{MetadataError, MetadataImage, NodeId};

/// Replicas per partition (preferred leader first) for `partitions` partitions of `factor`
/// replicas over `live` nodes. Leaders go round-robin starting with the least-loaded node (fewest
/// partitions led in `image`), so they spread evenly across nodes and across topics; followers are
/// the next nodes in order.
pub fn assign(
    image: &MetadataImage,
    live: &[NodeId],
    partitions: i32,
    factor: i16,
) -> Result<Vec<Vec<NodeId>>, MetadataError> {
    if !(1..=100_000).contains(&partitions) {
        return Err(MetadataError::InvalidPartitions(partitions));
    }
    let mut nodes: Vec<NodeId> = live.to_vec();
    nodes.sort_unstable();
    nodes.dedup();
    let replicas = usize::try_from(factor).unwrap_or(0);
    if replicas == 0 || replicas > nodes.len() {
        return Err(MetadataError::InvalidReplicationFactor {
            requested: i32::from(factor),
            available: nodes.len(),
        });
    }
    let led = leaders_per_node(image);
    // Start with the least-loaded node so successive topics do not all begin on the same one.
    let start = nodes
        .iter()
        .enumerate()
        .min_by_key(|(i, node)| (led.get(node).copied().unwrap_or(0), *i))
        .map_or(0, |(i, _)| i);
    let n = nodes.len();
    Ok((0..usize::try_from(partitions).unwrap_or(0))
        .map(|p| {
            (0..replicas)
                .filter_map(|r| nodes.get((start + p + r) % n).copied())
                .collect()
        })
        .collect())
}

/// How many partition replicas each node holds.
pub fn replicas_per_node(image: &MetadataImage) -> BTreeMap<NodeId, usize> {
    let mut held = BTreeMap::new();
    for topic in image.topics() {
        for partition in &topic.partitions {
            for &node in &partition.replicas {
                *held.entry(node).or_insert(0) += 1;
            }
        }
    }
    held
}

/// The first node that would hold more than `max` replicas once `assignments` are added to
/// `image`, with how many it would hold.
pub fn over_capacity(
    image: &MetadataImage,
    assignments: &[Vec<NodeId>],
    max: usize,
) -> Option<(NodeId, usize)> {
    let mut held = replicas_per_node(image);
    for node in assignments.iter().flatten() {
        *held.entry(*node).or_insert(0) += 1;
    }
    held.into_iter().find(|(_, count)| *count > max)
}

/// How many partitions each node leads.
pub fn leaders_per_node(image: &MetadataImage) -> BTreeMap<NodeId, usize> {
    let mut led = BTreeMap::new();
    for topic in image.topics() {
        for partition in &topic.partitions {
            if partition.leader.is_some() {
                *led.entry(partition.leader).or_insert(0) += 1;
            }
        }
    }
    led
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{MetadataCommand, Outcome};

    fn image_with_nodes(n: i32) -> MetadataImage {
        let mut image = MetadataImage::default();
        image
            .apply(&MetadataCommand::Form {
                cluster_id: "c".into(),
            })
            .unwrap();
        for i in 0..n {
            let register = MetadataCommand::RegisterNode {
                peer_id: format!("peer-{i}"),
                kafka_host: "h".into(),
                kafka_port: 1,
            };
            assert!(matches!(
                image.apply(&register).unwrap(),
                Outcome::Registered { .. }
            ));
        }
        image
    }

    #[test]
    fn leaders_spread_evenly_within_and_across_topics() {
        let mut image = image_with_nodes(3);
        let live = [NodeId(1), NodeId(2), NodeId(3)];
        let first = assign(&image, &live, 6, 2).unwrap();
        let leaders: Vec<_> = first.iter().map(|r| r[0].0).collect();
        assert_eq!(leaders, vec![1, 2, 3, 1, 2, 3]);
        assert!(first.iter().all(|r| r.len() == 2 && r[0] != r[1]));
        let create = MetadataCommand::CreateTopic {
            name: "a".into(),
            topic_id: uuid::Uuid::new_v4(),
            assignments: vec![vec![NodeId(1)], vec![NodeId(1)]],
            configs: Default::default(),
            internal: false,
        };
        image.apply(&create).unwrap();
        // Node 1 now leads two partitions: the next topic starts elsewhere.
        let next = assign(&image, &live, 2, 1).unwrap();
        assert_eq!(next, vec![vec![NodeId(2)], vec![NodeId(3)]]);
    }

    #[test]
    fn capacity_counts_every_replica_already_held_and_about_to_be() {
        let mut image = image_with_nodes(2);
        let create = MetadataCommand::CreateTopic {
            name: "a".into(),
            topic_id: uuid::Uuid::new_v4(),
            assignments: vec![vec![NodeId(1), NodeId(2)], vec![NodeId(2), NodeId(1)]],
            configs: Default::default(),
            internal: false,
        };
        image.apply(&create).unwrap();
        let held = replicas_per_node(&image);
        assert_eq!(held.get(&NodeId(1)), Some(&2));
        let one_more = [vec![NodeId(2)]];
        assert_eq!(over_capacity(&image, &one_more, 3), None);
        assert_eq!(over_capacity(&image, &one_more, 2), Some((NodeId(2), 3)));
    }

    #[test]
    fn impossible_placements_are_refused() {
        let image = image_with_nodes(2);
        assert!(matches!(
            assign(&image, &[NodeId(1), NodeId(2)], 3, 3),
            Err(MetadataError::InvalidReplicationFactor {
                requested: 3,
                available: 2
            })
        ));
        assert!(matches!(
            assign(&image, &[NodeId(1)], 0, 1),
            Err(MetadataError::InvalidPartitions(0))
        ));
        assert!(assign(&image, &[], 1, 1).is_err());
    }
}
