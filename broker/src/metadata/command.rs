//! Commands of the metadata log.
//!
//! Every node decodes every command it meets in the log, in AppendEntries and in forwarded
//! proposals, with bincode (not self-describing: variant index, then the fields in order). So:
//! - the variants up to `AllocateProducerIds` are what nodes of feature level 0 know; their order
//!   and fields are frozen (pinned by `raft/fixtures`);
//! - a command added since is a [`GatedCommand`] variant, carried by [`MetadataCommand::Gated`]
//!   with the level a node needs to decode it, proposed only once the cluster's finalized level
//!   enables its [`Feature`] (checked by `Metadata::propose` and again when applied);
//! - a changed command is a new `GatedCommand` variant at a new level: never a new field in an
//!   existing one, never a reordering. Variants are only appended.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::NodeId;
use super::features::{Feature, FeatureLevel, Features, LevelRange};

/// A change to the cluster metadata. Commands are deterministic: everything random (ids) is chosen
/// before the command is proposed, so every replica of the log applies the same thing.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum MetadataCommand {
    /// Forms the cluster (first command of the log).
    Form {
        /// Cluster id, Kafka style (22 characters of URL-safe base64 of a UUID).
        cluster_id: String,
    },
    /// A node (re)joins: same peer id keeps its node id; the broker epoch grows.
    RegisterNode {
        /// libp2p peer id (string form).
        peer_id: String,
        /// Advertised Kafka endpoint.
        kafka_host: String,
        /// Advertised Kafka port.
        kafka_port: u16,
    },
    /// Creates a topic.
    CreateTopic {
        /// Name.
        name: String,
        /// Topic id, chosen by the proposer.
        topic_id: Uuid,
        /// Replicas of each partition, preferred leader first, chosen by the proposer from the
        /// nodes it saw alive (see [`super::assignment`]). Their count is the partition count.
        assignments: Vec<Vec<NodeId>>,
        /// Explicit config overrides (already validated).
        configs: BTreeMap<String, String>,
        /// Internal topic (`__consumer_offsets`).
        internal: bool,
    },
    /// Moves partition leadership (the controller's decision when a leader dies or returns).
    /// Each change bumps the partition's leader epoch and partition epoch.
    ElectLeaders {
        /// The changes.
        changes: Vec<LeaderChange>,
    },
    /// A partition leader changes its in-sync replica set (KRaft's AlterPartition). Applied only
    /// against the leader epoch and partition epoch it was based on, with every member's current
    /// broker epoch (KIP-903: a replica that restarted since it was judged in sync is refused);
    /// bumps the partition epoch.
    AlterPartition {
        /// Topic id.
        topic_id: Uuid,
        /// Partition.
        partition: i32,
        /// The proposing leader.
        leader: NodeId,
        /// The leader epoch the proposal is based on.
        leader_epoch: i32,
        /// The partition epoch the proposal is based on.
        partition_epoch: i32,
        /// The new ISR: each member with the broker epoch the leader saw it fetch with.
        isr: Vec<IsrMember>,
    },
    /// The controller's changes to partitions: leaders moved off dead nodes, dead replicas
    /// removed from ISRs (fencing), unclean elections where a topic allows them. Each change is
    /// applied only against the partition epoch it was based on.
    ChangePartitions {
        /// The changes.
        changes: Vec<PartitionChange>,
    },
    /// Deletes a topic.
    DeleteTopic {
        /// Topic id.
        topic_id: Uuid,
    },
    /// Replaces a topic's config overrides.
    SetTopicConfig {
        /// Topic id.
        topic_id: Uuid,
        /// The new overrides.
        configs: BTreeMap<String, String>,
    },
    /// Reserves a block of producer ids.
    AllocateProducerIds {
        /// How many.
        count: i64,
    },
    // ---- Level 0 ends here: append nothing above this line. ----
    /// A command added since level 0. On the wire: the level a node needs to decode it, then the
    /// command's bincode, so a node of a lower level refuses it with a clear error.
    Gated(#[serde(with = "gated_wire")] GatedCommand),
}

impl MetadataCommand {
    /// This node's registration in the form the cluster's `features` allow: with the levels it
    /// supports once the finalized level has them, else as nodes of level 0 register.
    pub fn registration(
        peer_id: String,
        kafka_host: String,
        kafka_port: u16,
        supported: LevelRange,
        features: Features,
    ) -> MetadataCommand {
        if features.enabled(Feature::VersionedMetadata) {
            MetadataCommand::Gated(GatedCommand::RegisterNode {
                peer_id,
                kafka_host,
                kafka_port,
                supported,
            })
        } else {
            MetadataCommand::RegisterNode {
                peer_id,
                kafka_host,
                kafka_port,
            }
        }
    }

    /// The feature the cluster must have enabled before this command is proposed (`None`: a
    /// level-0 command, or a finalization, which the controller proposes once every node
    /// supports its level).
    pub fn feature(&self) -> Option<Feature> {
        match self {
            MetadataCommand::Gated(gated) => gated.feature(),
            _ => None,
        }
    }
}

/// Commands added since level 0. Append new variants at the end; never change one.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum GatedCommand {
    /// Raises the cluster's finalized feature level to `level`. Applied only if every registered
    /// node supports it: as its registration recorded, or else as `nodes` reports for its current
    /// broker epoch (what it gossiped; nodes of level 0 cannot register with a range).
    FinalizeLevel {
        /// The new finalized level.
        level: FeatureLevel,
        /// The supported levels of registered nodes without a recorded range.
        nodes: Vec<NodeSupport>,
    },
    /// A node (re)joins, saying which levels it supports (refused below the finalized level).
    RegisterNode {
        /// libp2p peer id (string form).
        peer_id: String,
        /// Advertised Kafka endpoint.
        kafka_host: String,
        /// Advertised Kafka port.
        kafka_port: u16,
        /// The feature levels it supports.
        supported: LevelRange,
    },
    /// Removes a node for good (`rafka cluster remove`, Kafka's UnregisterBroker): it leaves the
    /// registered nodes, every ISR and every leadership at once; the partitions that name it
    /// keep it among their replicas until the controller has moved them elsewhere
    /// ([`GatedCommand::ReassignReplicas`]). Refused while it is the only in-sync replica of
    /// a partition (its data has no other copy).
    RemoveNode {
        /// The node.
        node_id: NodeId,
    },
    /// The controller's replica moves (a new replica added where a removed node's was, the
    /// removed node's dropped once the others are in sync). Each change is applied only against
    /// the partition epoch it was based on.
    ReassignReplicas {
        /// The changes.
        changes: Vec<ReplicaChange>,
    },
}

impl GatedCommand {
    /// The level a node must support to decode this command: its feature's, or for a
    /// finalization the level it finalizes.
    pub fn level(&self) -> FeatureLevel {
        match self {
            GatedCommand::FinalizeLevel { level, .. } => *level,
            GatedCommand::RegisterNode { .. } => Feature::VersionedMetadata.level(),
            GatedCommand::RemoveNode { .. } | GatedCommand::ReassignReplicas { .. } => {
                Feature::NodeRemoval.level()
            }
        }
    }

    /// The feature that must be enabled before it is proposed (`None` for a finalization).
    pub fn feature(&self) -> Option<Feature> {
        match self {
            GatedCommand::FinalizeLevel { .. } => None,
            GatedCommand::RegisterNode { .. } => Some(Feature::VersionedMetadata),
            GatedCommand::RemoveNode { .. } | GatedCommand::ReassignReplicas { .. } => {
                Some(Feature::NodeRemoval)
            }
        }
    }
}

/// A partition's new replica set.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplicaChange {
    /// Topic id.
    pub topic_id: Uuid,
    /// Partition.
    pub partition: i32,
    /// The partition epoch the change is based on; a change against another is stale and skipped.
    pub expected_partition_epoch: i32,
    /// The new replicas: every in-sync replica and the leader stay; an added replica must be a
    /// registered node.
    pub replicas: Vec<NodeId>,
}

/// A registered node's supported levels, as the controller saw them for one broker epoch.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeSupport {
    /// Node id.
    pub node: NodeId,
    /// The broker epoch of the registration the report is about.
    pub broker_epoch: i64,
    /// The levels it supports.
    pub supported: LevelRange,
}

/// `MetadataCommand::Gated` on the wire: `(level, bincode of the command)`. A node refuses a
/// command of a level above its own with a message saying so, instead of a bincode error.
mod gated_wire {
    use serde::de::Error as _;
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::GatedCommand;
    use crate::metadata::features::{FeatureLevel, LATEST};
    use crate::metadata::raft::codec;

    pub(super) fn serialize<S: Serializer>(
        command: &GatedCommand,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let body = codec::encode_body(command).map_err(S::Error::custom)?;
        (command.level(), body).serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<GatedCommand, D::Error> {
        let (level, body): (FeatureLevel, Vec<u8>) = Deserialize::deserialize(deserializer)?;
        if level > LATEST {
            return Err(D::Error::custom(format!(
                "a metadata command of cluster feature level {level}, and this rafka-node \
                 supports levels up to {LATEST}: it cannot run below the cluster's finalized \
                 level (run a release that supports level {level})"
            )));
        }
        codec::decode_body("gated metadata command", &body).map_err(D::Error::custom)
    }
}

/// One partition's new leader (-1: none available).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaderChange {
    /// Topic id.
    pub topic_id: Uuid,
    /// Partition.
    pub partition: i32,
    /// The new leader; it must be one of the partition's in-sync replicas, or -1.
    pub leader: NodeId,
    /// The leader epoch the proposer saw; a change against another epoch is stale and skipped.
    pub expected_leader_epoch: i32,
}

/// An in-sync replica with the broker epoch it was seen with.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct IsrMember {
    /// Node id.
    pub node: NodeId,
    /// Its broker epoch when the leader last saw it fetch.
    pub broker_epoch: i64,
}

/// A controller change to one partition.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionChange {
    /// Topic id.
    pub topic_id: Uuid,
    /// Partition.
    pub partition: i32,
    /// The partition epoch the change is based on; a change against another is stale and skipped.
    pub expected_partition_epoch: i32,
    /// The leader (-1: none). A new leader must be in the current ISR, unless `unclean`.
    pub leader: NodeId,
    /// The new ISR: a subset of the current ISR plus, for an unclean election, the new leader.
    pub isr: Vec<NodeId>,
    /// An unclean election (the topic allows it): the leader may come from outside the ISR.
    pub unclean: bool,
}

/// What applying a command produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// Nothing beyond the new image.
    Done,
    /// The node id (and broker epoch) of a registered node.
    Registered {
        /// Node id.
        node_id: NodeId,
        /// Broker epoch.
        broker_epoch: i64,
    },
    /// The first id of an allocated block.
    ProducerIds {
        /// First id of the block.
        first: i64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::features::{LATEST, SUPPORTED};
    use crate::metadata::raft::codec;

    #[test]
    fn gated_commands_round_trip_and_one_of_a_higher_level_is_refused_by_name() {
        let command = MetadataCommand::Gated(GatedCommand::RegisterNode {
            peer_id: "p".into(),
            kafka_host: "h".into(),
            kafka_port: 9092,
            supported: SUPPORTED,
        });
        let bytes = codec::encode("command", &command).unwrap();
        // Format, variant 9 (the first after level 0's), level 1, then the command's bytes.
        assert_eq!(bytes.get(..3), Some(&[codec::FORMAT, 9, 1][..]));
        let decoded: MetadataCommand = codec::decode("command", &bytes).unwrap();
        assert_eq!(decoded, command);

        let too_new = [codec::FORMAT, 9, u8::try_from(LATEST.0 + 1).unwrap(), 0];
        let error = codec::decode::<MetadataCommand>("command", &too_new).unwrap_err();
        assert!(
            error.to_string().contains(&format!(
                "a metadata command of cluster feature level {}",
                LATEST.0 + 1
            )),
            "{error}"
        );
    }

    #[test]
    fn registrations_take_the_form_the_finalized_level_allows() {
        let at = |level| {
            MetadataCommand::registration(
                "p".into(),
                "h".into(),
                1,
                SUPPORTED,
                Features::at(FeatureLevel(level)),
            )
        };
        assert!(matches!(at(0), MetadataCommand::RegisterNode { .. }));
        assert!(matches!(
            at(1),
            MetadataCommand::Gated(GatedCommand::RegisterNode { .. })
        ));
        assert_eq!(at(0).feature(), None);
        assert_eq!(at(1).feature(), Some(Feature::VersionedMetadata));
    }
}
