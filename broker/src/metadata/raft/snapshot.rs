//! The metadata image as bytes: the data of a snapshot, stored on disk and sent to lagging nodes.
//!
//! - Format 1, written while the finalized feature level is 0: bincode of the image exactly as
//!   nodes of level 0 lay it out (the `Legacy*` structs below, frozen; pinned by
//!   `raft/fixtures`). Nothing added since level 0 is in it, and nothing needs to be: at level 0
//!   no command that records anything new is applied.
//! - Format 2, from level 1 on: `2 | finalized level (u16, big-endian) | JSON of the image`. A
//!   node refuses an image of a level above its own before reading further; fields are by name,
//!   so a field added at a new level needs only `#[serde(default)]` to read older images.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::codec::{self, CodecError};
use crate::metadata::features::{FeatureLevel, LATEST};
use crate::metadata::{MetadataImage, NodeId, NodeImage, PartitionImage, TopicImage};

/// The format byte of images of level 1 and above.
const FORMAT_2: u8 = 2;

const WHAT: &str = "metadata image";

/// Encodes `image` in the format its finalized level calls for.
pub(crate) fn encode_image(image: &MetadataImage) -> Result<Vec<u8>, CodecError> {
    let level = image.features().finalized();
    if level == FeatureLevel(0) {
        return codec::encode(WHAT, &LegacyImage::from(image));
    }
    let mut out = vec![FORMAT_2];
    out.extend_from_slice(&level.0.to_be_bytes());
    serde_json::to_writer(&mut out, image).map_err(|e| CodecError::Encode {
        what: WHAT,
        reason: e.to_string(),
    })?;
    Ok(out)
}

/// Decodes an image of any format this build knows and rebuilds its derived indexes.
pub(crate) fn decode_image(bytes: &[u8]) -> Result<MetadataImage, CodecError> {
    let mut image = match bytes.split_first() {
        Some((&FORMAT_2, rest)) => decode_format_2(rest)?,
        _ => codec::decode::<LegacyImage>(WHAT, bytes)?.into(),
    };
    image.rebuild_indexes();
    Ok(image)
}

fn decode_format_2(bytes: &[u8]) -> Result<MetadataImage, CodecError> {
    let corrupt = |reason: String| CodecError::Corrupt { what: WHAT, reason };
    let (level, json) = bytes
        .split_first_chunk::<2>()
        .ok_or_else(|| corrupt("no feature level".into()))?;
    let level = FeatureLevel(u16::from_be_bytes(*level));
    if level == FeatureLevel(0) {
        return Err(corrupt("format 2 starts at feature level 1".into()));
    }
    if level > LATEST {
        return Err(CodecError::TooNew {
            what: WHAT,
            level,
            supported: LATEST,
        });
    }
    let image: MetadataImage = serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))?;
    let finalized = image.features().finalized();
    if finalized != level {
        return Err(corrupt(format!(
            "stamped with level {level}, finalized at {finalized}"
        )));
    }
    Ok(image)
}

/// The image as nodes of level 0 encode it. Frozen: never change these structs.
#[derive(Serialize, Deserialize)]
struct LegacyImage {
    cluster_id: String,
    version: u64,
    nodes: BTreeMap<NodeId, LegacyNode>,
    topics: BTreeMap<String, LegacyTopic>,
    next_producer_id: i64,
}

#[derive(Serialize, Deserialize)]
struct LegacyNode {
    node_id: NodeId,
    peer_id: String,
    broker_epoch: i64,
    kafka_host: String,
    kafka_port: u16,
}

#[derive(Serialize, Deserialize)]
struct LegacyTopic {
    name: String,
    id: Uuid,
    partitions: Vec<LegacyPartition>,
    replication_factor: i16,
    configs: BTreeMap<String, String>,
    internal: bool,
}

#[derive(Serialize, Deserialize)]
struct LegacyPartition {
    index: i32,
    leader: NodeId,
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<NodeId>,
    isr: Vec<NodeId>,
}

impl From<&MetadataImage> for LegacyImage {
    fn from(image: &MetadataImage) -> Self {
        let node = |n: &NodeImage| LegacyNode {
            node_id: n.node_id,
            peer_id: n.peer_id.clone(),
            broker_epoch: n.broker_epoch,
            kafka_host: n.kafka_host.clone(),
            kafka_port: n.kafka_port,
        };
        let partition = |p: &PartitionImage| LegacyPartition {
            index: p.index,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            replicas: p.replicas.clone(),
            isr: p.isr.clone(),
        };
        let topic = |t: &TopicImage| LegacyTopic {
            name: t.name.clone(),
            id: t.id,
            partitions: t.partitions.iter().map(partition).collect(),
            replication_factor: t.replication_factor,
            configs: t.configs.clone(),
            internal: t.internal,
        };
        LegacyImage {
            cluster_id: image.cluster_id.clone(),
            version: image.version,
            nodes: image.nodes.iter().map(|(id, n)| (*id, node(n))).collect(),
            topics: image.topics().map(|t| (t.name.clone(), topic(t))).collect(),
            next_producer_id: image.next_producer_id,
        }
    }
}

impl From<LegacyImage> for MetadataImage {
    fn from(legacy: LegacyImage) -> Self {
        let nodes = legacy
            .nodes
            .into_iter()
            .map(|(id, n)| {
                let node = NodeImage {
                    node_id: n.node_id,
                    peer_id: n.peer_id,
                    broker_epoch: n.broker_epoch,
                    kafka_host: n.kafka_host,
                    kafka_port: n.kafka_port,
                    supported: None,
                };
                (id, node)
            })
            .collect();
        let topics = legacy.topics.into_values().map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| PartitionImage {
                    index: p.index,
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    replicas: p.replicas,
                    isr: p.isr,
                })
                .collect();
            Arc::new(TopicImage {
                name: t.name,
                id: t.id,
                partitions,
                replication_factor: t.replication_factor,
                configs: t.configs,
                internal: t.internal,
            })
        });
        MetadataImage::from_parts(
            legacy.cluster_id,
            legacy.version,
            nodes,
            topics,
            legacy.next_producer_id,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::features::Features;
    use crate::metadata::{GatedCommand, MetadataCommand};

    fn formed() -> MetadataImage {
        let mut image = MetadataImage::default();
        let commands = [
            MetadataCommand::Form {
                cluster_id: "c".into(),
            },
            MetadataCommand::RegisterNode {
                peer_id: "p".into(),
                kafka_host: "h".into(),
                kafka_port: 1,
            },
            MetadataCommand::CreateTopic {
                name: "t".into(),
                topic_id: Uuid::from_u128(5),
                assignments: vec![vec![NodeId(1)], vec![NodeId(1)]],
                configs: BTreeMap::from([("retention.ms".into(), "10".into())]),
                internal: false,
            },
        ];
        for command in &commands {
            image.apply(command).unwrap();
        }
        image
    }

    fn same(a: &MetadataImage, b: &MetadataImage) {
        assert_eq!(
            (&a.cluster_id, a.version, &a.nodes, a.next_producer_id),
            (&b.cluster_id, b.version, &b.nodes, b.next_producer_id)
        );
        assert_eq!(a.features(), b.features());
        let topics = |i: &MetadataImage| i.topics().cloned().collect::<Vec<_>>();
        assert_eq!(topics(a), topics(b));
        let id = Uuid::from_u128(5);
        assert_eq!(b.topic_by_id(&id).map(|t| t.name.as_str()), Some("t"));
    }

    #[test]
    fn level_0_images_use_the_legacy_format_and_level_1_images_format_2() {
        let image = formed();
        let bytes = encode_image(&image).unwrap();
        assert_eq!(bytes.first(), Some(&codec::FORMAT));
        same(&image, &decode_image(&bytes).unwrap());

        let mut finalized = image.clone();
        finalized
            .apply(&MetadataCommand::Gated(GatedCommand::FinalizeLevel {
                level: FeatureLevel(1),
                nodes: vec![crate::metadata::NodeSupport {
                    node: NodeId(1),
                    broker_epoch: 1,
                    supported: crate::metadata::features::SUPPORTED,
                }],
            }))
            .unwrap();
        assert_eq!(finalized.features(), Features::at(FeatureLevel(1)));
        let bytes = encode_image(&finalized).unwrap();
        assert_eq!(bytes.get(..3), Some(&[FORMAT_2, 0, 1][..]));
        let decoded = decode_image(&bytes).unwrap();
        same(&finalized, &decoded);
        assert_eq!(
            decoded.nodes.get(&NodeId(1)).and_then(|n| n.supported),
            Some(crate::metadata::features::SUPPORTED)
        );
    }

    #[test]
    fn an_image_of_a_higher_level_is_refused_by_name() {
        let mut bytes = vec![FORMAT_2];
        bytes.extend_from_slice(&(LATEST.0 + 1).to_be_bytes());
        bytes.extend_from_slice(b"{}");
        let error = decode_image(&bytes).unwrap_err();
        assert!(matches!(error, CodecError::TooNew { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .contains("cannot run below its cluster's finalized feature level"),
            "{error}"
        );
    }

    #[test]
    fn garbage_in_either_format_is_an_error_not_a_panic() {
        for bad in [
            &[][..],
            &[FORMAT_2],
            &[FORMAT_2, 0],
            &[FORMAT_2, 0, 1, b'{'],
            &[FORMAT_2, 0, 1, b'[', b']'],
            &[FORMAT_2, 0, 0, b'{', b'}'], // stamped 0, finalized 0: format 2 is level 1 up
            &[codec::FORMAT, 0xff, 0xff],
            &[9, 9, 9],
        ] {
            assert!(decode_image(bad).is_err(), "{bad:?} decoded");
        }
    }
}
