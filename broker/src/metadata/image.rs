//! The metadata image: a pure state machine over [`MetadataCommand`]s.
//!
//! Its serde form is snapshot format 2 (`raft/snapshot`), by field name: a field added at a new
//! feature level gets `#[serde(default)]` so images of older levels still read. Level-0 images
//! use a frozen copy of the layout of that time instead.

mod removal;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::command::{GatedCommand, IsrMember, LeaderChange, PartitionChange};
use super::features::{Feature, Features, LevelRange};
use super::topic_config;
use super::{MetadataCommand, MetadataError, NodeId, Outcome, validate_topic_name};

/// A registered node.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeImage {
    /// Node id.
    pub node_id: NodeId,
    /// libp2p peer id.
    pub peer_id: String,
    /// Grows every time the node registers (restarts).
    pub broker_epoch: i64,
    /// Advertised Kafka host.
    pub kafka_host: String,
    /// Advertised Kafka port.
    pub kafka_port: u16,
    /// The feature levels it supports, as its registration (or the finalization that found it
    /// supporting a level) recorded them; `None`: registered as nodes of level 0 do, so level 0
    /// only as far as the image knows (gossip may tell the controller more).
    #[serde(default)]
    pub supported: Option<LevelRange>,
}

/// One partition's placement.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PartitionImage {
    /// Partition index.
    pub index: i32,
    /// Current leader (-1: none).
    pub leader: NodeId,
    /// Grows with every leader change.
    pub leader_epoch: i32,
    /// Grows with every change of this partition.
    pub partition_epoch: i32,
    /// Assigned replicas.
    pub replicas: Vec<NodeId>,
    /// In-sync replicas.
    pub isr: Vec<NodeId>,
}

/// One topic.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TopicImage {
    /// Name.
    pub name: String,
    /// Topic id.
    pub id: Uuid,
    /// Partitions, indexed by partition number.
    pub partitions: Vec<PartitionImage>,
    /// Replication factor.
    pub replication_factor: i16,
    /// Explicit config overrides.
    pub configs: BTreeMap<String, String>,
    /// Internal topic.
    pub internal: bool,
}

/// Everything the metadata log decides, as of one applied index.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetadataImage {
    /// Cluster id; empty until formed.
    pub cluster_id: String,
    /// Number of commands applied.
    pub version: u64,
    /// Nodes by id.
    pub nodes: BTreeMap<NodeId, NodeImage>,
    topics: BTreeMap<String, Arc<TopicImage>>,
    #[serde(skip)]
    topic_names_by_id: HashMap<Uuid, String>,
    /// Next producer id not yet handed out.
    pub next_producer_id: i64,
    /// The finalized feature level.
    features: Features,
}

impl MetadataImage {
    /// An image of level 0 from its parts (as decoded from a level-0 snapshot).
    pub(crate) fn from_parts(
        cluster_id: String,
        version: u64,
        nodes: BTreeMap<NodeId, NodeImage>,
        topics: impl IntoIterator<Item = Arc<TopicImage>>,
        next_producer_id: i64,
    ) -> MetadataImage {
        let mut image = MetadataImage {
            cluster_id,
            version,
            nodes,
            topics: topics.into_iter().map(|t| (t.name.clone(), t)).collect(),
            topic_names_by_id: HashMap::new(),
            next_producer_id,
            features: Features::default(),
        };
        image.rebuild_indexes();
        image
    }

    /// The cluster's finalized feature level: what nodes may write for each other
    /// (`image.features().enabled(Feature::X)`).
    pub fn features(&self) -> Features {
        self.features
    }

    pub(super) fn set_features(&mut self, features: Features) {
        self.features = features;
    }

    /// True once a `Form` command has been applied.
    pub fn is_formed(&self) -> bool {
        !self.cluster_id.is_empty()
    }

    /// Topics, by name.
    pub fn topics(&self) -> impl Iterator<Item = &Arc<TopicImage>> {
        self.topics.values()
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topics.get(name)
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Arc<TopicImage>> {
        self.topic_names_by_id
            .get(id)
            .and_then(|name| self.topics.get(name))
    }

    /// The node registered with this peer id.
    pub fn node_by_peer(&self, peer_id: &str) -> Option<&NodeImage> {
        self.nodes.values().find(|node| node.peer_id == peer_id)
    }

    /// Rebuilds derived indexes after deserialisation.
    pub fn rebuild_indexes(&mut self) {
        self.topic_names_by_id = self
            .topics
            .values()
            .map(|topic| (topic.id, topic.name.clone()))
            .collect();
    }

    /// Applies one command. On error the image is unchanged.
    pub fn apply(&mut self, command: &MetadataCommand) -> Result<Outcome, MetadataError> {
        if !self.is_formed() && !matches!(command, MetadataCommand::Form { .. }) {
            return Err(MetadataError::NotFormed);
        }
        let outcome = match command {
            MetadataCommand::Form { cluster_id } => {
                if !self.is_formed() {
                    self.cluster_id.clone_from(cluster_id);
                    self.next_producer_id = 1000;
                }
                Outcome::Done
            }
            MetadataCommand::RegisterNode {
                peer_id,
                kafka_host,
                kafka_port,
            } => {
                self.check_legacy_registration(peer_id)?;
                self.register_node(peer_id, kafka_host, *kafka_port, None)
            }
            MetadataCommand::CreateTopic {
                name,
                topic_id,
                assignments,
                configs,
                internal,
            } => self.create_topic(name, *topic_id, assignments, configs, *internal)?,
            MetadataCommand::ElectLeaders { changes } => {
                self.elect_leaders(changes);
                Outcome::Done
            }
            MetadataCommand::AlterPartition {
                topic_id,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                isr,
            } => {
                let based_on = (*leader, *leader_epoch, *partition_epoch);
                self.alter_partition(*topic_id, *partition, based_on, isr)?;
                Outcome::Done
            }
            MetadataCommand::ChangePartitions { changes } => {
                self.change_partitions(changes);
                Outcome::Done
            }
            MetadataCommand::DeleteTopic { topic_id } => {
                let name = self
                    .topic_names_by_id
                    .remove(topic_id)
                    .ok_or_else(|| MetadataError::UnknownTopic(topic_id.to_string()))?;
                self.topics.remove(&name);
                Outcome::Done
            }
            MetadataCommand::SetTopicConfig { topic_id, configs } => {
                let topic = self
                    .topic_by_id(topic_id)
                    .ok_or_else(|| MetadataError::UnknownTopic(topic_id.to_string()))?;
                let mut updated = TopicImage::clone(topic);
                updated.configs.clone_from(configs);
                self.topics.insert(updated.name.clone(), Arc::new(updated));
                Outcome::Done
            }
            MetadataCommand::AllocateProducerIds { count } => {
                let first = self.next_producer_id;
                self.next_producer_id = first.saturating_add((*count).max(1));
                Outcome::ProducerIds { first }
            }
            MetadataCommand::Gated(gated) => self.apply_gated(gated)?,
        };
        self.version += 1;
        Ok(outcome)
    }

    fn apply_gated(&mut self, command: &GatedCommand) -> Result<Outcome, MetadataError> {
        if let Some(feature) = command.feature() {
            self.features.require(feature)?;
        }
        match command {
            GatedCommand::FinalizeLevel { level, nodes } => {
                self.finalize_level(*level, nodes)?;
                Ok(Outcome::Done)
            }
            GatedCommand::RegisterNode {
                peer_id,
                kafka_host,
                kafka_port,
                supported,
            } => {
                self.features
                    .check_supported(&format!("node {peer_id}"), *supported)?;
                Ok(self.register_node(peer_id, kafka_host, *kafka_port, Some(*supported)))
            }
            GatedCommand::RemoveNode { node_id } => {
                self.remove_node(*node_id)?;
                Ok(Outcome::Done)
            }
            GatedCommand::ReassignReplicas { changes } => {
                self.reassign_replicas(changes);
                Ok(Outcome::Done)
            }
        }
    }

    /// A registration without a supported range is what nodes of level 0 send: refused once the
    /// cluster is above level 0, with an error those nodes decode (and print).
    fn check_legacy_registration(&self, peer_id: &str) -> Result<(), MetadataError> {
        if !self.features.enabled(Feature::VersionedMetadata) {
            return Ok(());
        }
        let who = format!("node {peer_id}, registering without feature levels,");
        Err(MetadataError::Membership(
            super::features::unsupported_message(
                &who,
                LevelRange::LEGACY,
                self.features.finalized(),
            ),
        ))
    }

    fn register_node(
        &mut self,
        peer_id: &str,
        host: &str,
        port: u16,
        supported: Option<LevelRange>,
    ) -> Outcome {
        let existing = self.nodes.values_mut().find(|node| node.peer_id == peer_id);
        let node = match existing {
            Some(node) => {
                node.broker_epoch += 1;
                node.kafka_host = host.to_string();
                node.kafka_port = port;
                node.supported = supported;
                let node = node.clone();
                self.fence_restarted(node.node_id);
                node
            }
            None => {
                let node_id = self
                    .nodes
                    .keys()
                    .next_back()
                    .map_or(NodeId(1), |last| NodeId(last.0 + 1));
                let node = NodeImage {
                    node_id,
                    peer_id: peer_id.to_string(),
                    broker_epoch: 1,
                    kafka_host: host.to_string(),
                    kafka_port: port,
                    supported,
                };
                self.nodes.insert(node_id, node.clone());
                node
            }
        };
        Outcome::Registered {
            node_id: node.node_id,
            broker_epoch: node.broker_epoch,
        }
    }

    fn create_topic(
        &mut self,
        name: &str,
        topic_id: Uuid,
        assignments: &[Vec<NodeId>],
        configs: &BTreeMap<String, String>,
        internal: bool,
    ) -> Result<Outcome, MetadataError> {
        validate_topic_name(name)?;
        if self.topics.contains_key(name) {
            return Err(MetadataError::TopicExists(name.to_string()));
        }
        let count = i32::try_from(assignments.len()).unwrap_or(i32::MAX);
        if !(1..=100_000).contains(&count) {
            return Err(MetadataError::InvalidPartitions(count));
        }
        let factor = assignments.first().map_or(0, Vec::len);
        let valid = assignments.iter().all(|replicas| {
            let mut distinct = replicas.clone();
            distinct.sort_unstable();
            distinct.dedup();
            replicas.len() == factor
                && distinct.len() == factor
                && replicas.iter().all(|node| self.nodes.contains_key(node))
        });
        if factor == 0 || !valid {
            return Err(MetadataError::InvalidReplicationFactor {
                requested: i32::try_from(factor).unwrap_or(i32::MAX),
                available: self.nodes.len(),
            });
        }
        let partitions = assignments
            .iter()
            .zip(0..)
            .map(|(replicas, index)| PartitionImage {
                index,
                leader: replicas.first().copied().unwrap_or(NodeId::NONE),
                leader_epoch: 0,
                partition_epoch: 0,
                isr: replicas.clone(),
                replicas: replicas.clone(),
            })
            .collect();
        let topic = TopicImage {
            name: name.to_string(),
            id: topic_id,
            partitions,
            replication_factor: i16::try_from(factor).unwrap_or(i16::MAX),
            configs: configs.clone(),
            internal,
        };
        self.topic_names_by_id.insert(topic_id, name.to_string());
        self.topics.insert(name.to_string(), Arc::new(topic));
        Ok(Outcome::Done)
    }

    /// A node registered again (it restarted, KIP-903): it may have lost an unsynced tail, so it
    /// leaves every ISR that has other members and must catch up to rejoin; where it led, the
    /// next ISR member leads (the controller moves leadership again if that one is dead). Where
    /// it is the only in-sync replica it stays: no other replica has what it had.
    fn fence_restarted(&mut self, node: NodeId) {
        let names: Vec<String> = self
            .topics
            .values()
            .filter(|t| {
                t.partitions
                    .iter()
                    .any(|p| p.isr.len() > 1 && p.isr.contains(&node))
            })
            .map(|t| t.name.clone())
            .collect();
        for name in names {
            let Some(topic) = self.topics.get(&name) else {
                continue;
            };
            let mut updated = TopicImage::clone(topic);
            for p in &mut updated.partitions {
                if p.isr.len() <= 1 || !p.isr.contains(&node) {
                    continue;
                }
                p.isr.retain(|&n| n != node);
                if p.leader == node {
                    p.leader = p.isr.first().copied().unwrap_or(NodeId::NONE);
                    p.leader_epoch += 1;
                }
                p.partition_epoch += 1;
            }
            self.topics.insert(name, Arc::new(updated));
        }
    }

    /// The partition `partition` of topic `topic_id`, for a change: the topic's name and a copy.
    fn partition_for_change(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<(TopicImage, usize), MetadataError> {
        let topic = self
            .topic_by_id(&topic_id)
            .ok_or_else(|| MetadataError::UnknownTopic(topic_id.to_string()))?;
        let index = usize::try_from(partition)
            .ok()
            .filter(|&i| i < topic.partitions.len())
            .ok_or_else(|| MetadataError::UnknownTopic(format!("{}-{partition}", topic.name)))?;
        Ok((TopicImage::clone(topic), index))
    }

    /// A leader's ISR change, checked against the epochs it was based on and the members'
    /// broker epochs.
    fn alter_partition(
        &mut self,
        topic_id: Uuid,
        partition: i32,
        (leader, leader_epoch, partition_epoch): (NodeId, i32, i32),
        isr: &[IsrMember],
    ) -> Result<(), MetadataError> {
        let (mut topic, index) = self.partition_for_change(topic_id, partition)?;
        let p = &mut topic.partitions[index];
        let what = || format!("{}-{partition}", topic_id);
        if p.leader != leader || p.leader_epoch != leader_epoch {
            return Err(MetadataError::StalePartition(format!(
                "{}: node {leader} at leader epoch {leader_epoch} is not the leader (node {} at {})",
                what(),
                p.leader,
                p.leader_epoch
            )));
        }
        if p.partition_epoch != partition_epoch {
            return Err(MetadataError::StalePartition(format!(
                "{}: partition epoch {partition_epoch}, current {}",
                what(),
                p.partition_epoch
            )));
        }
        let mut members: Vec<NodeId> = Vec::with_capacity(isr.len());
        for member in isr {
            let current = self.nodes.get(&member.node).map(|n| n.broker_epoch);
            if !p.replicas.contains(&member.node) || current != Some(member.broker_epoch) {
                return Err(MetadataError::IneligibleReplica(format!(
                    "{}: node {} (broker epoch {}, current {current:?}) in replicas {:?}",
                    what(),
                    member.node,
                    member.broker_epoch,
                    p.replicas
                )));
            }
            if !members.contains(&member.node) {
                members.push(member.node);
            }
        }
        if !members.contains(&leader) {
            return Err(MetadataError::IneligibleReplica(format!(
                "{}: the ISR {members:?} must contain the leader {leader}",
                what()
            )));
        }
        // Keep the replica order (preferred leader first) for a stable display.
        members.sort_by_key(|n| p.replicas.iter().position(|r| r == n));
        p.isr = members;
        p.partition_epoch += 1;
        self.topics.insert(topic.name.clone(), Arc::new(topic));
        Ok(())
    }

    /// Controller changes that are still current; a stale or invalid one is skipped.
    fn change_partitions(&mut self, changes: &[PartitionChange]) {
        for change in changes {
            let Ok((mut topic, index)) =
                self.partition_for_change(change.topic_id, change.partition)
            else {
                continue;
            };
            let unclean_allowed = topic_config::unclean_leader_election(&topic.configs);
            let p = &mut topic.partitions[index];
            let leader_ok = change.leader.is_none()
                || p.isr.contains(&change.leader)
                || (change.unclean && unclean_allowed && p.replicas.contains(&change.leader));
            let isr_ok = !change.isr.is_empty()
                && change
                    .isr
                    .iter()
                    .all(|n| p.isr.contains(n) || (change.unclean && *n == change.leader))
                && (change.leader.is_none() || change.isr.contains(&change.leader));
            if p.partition_epoch != change.expected_partition_epoch || !leader_ok || !isr_ok {
                continue;
            }
            if p.leader != change.leader {
                p.leader = change.leader;
                p.leader_epoch += 1;
            }
            p.isr.clone_from(&change.isr);
            p.partition_epoch += 1;
            self.topics.insert(topic.name.clone(), Arc::new(topic));
        }
    }

    /// Applies leader changes that are still current; a stale one (another epoch, or a leader
    /// outside the in-sync replicas) is skipped.
    fn elect_leaders(&mut self, changes: &[LeaderChange]) {
        for change in changes {
            let Some(name) = self.topic_names_by_id.get(&change.topic_id).cloned() else {
                continue;
            };
            let Some(topic) = self.topics.get(&name) else {
                continue;
            };
            let mut updated = TopicImage::clone(topic);
            let Some(partition) = usize::try_from(change.partition)
                .ok()
                .and_then(|i| updated.partitions.get_mut(i))
            else {
                continue;
            };
            let eligible = change.leader.is_none() || partition.isr.contains(&change.leader);
            if partition.leader_epoch != change.expected_leader_epoch || !eligible {
                continue;
            }
            partition.leader = change.leader;
            partition.leader_epoch += 1;
            partition.partition_epoch += 1;
            self.topics.insert(name, Arc::new(updated));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(nodes: &[i32]) -> Vec<NodeId> {
        nodes.iter().copied().map(NodeId).collect()
    }

    /// Node ids as plain numbers, to compare with literals.
    fn nums(nodes: &[NodeId]) -> Vec<i32> {
        nodes.iter().map(|n| n.0).collect()
    }

    fn formed() -> MetadataImage {
        let mut image = MetadataImage::default();
        image
            .apply(&MetadataCommand::Form {
                cluster_id: "c1".into(),
            })
            .unwrap();
        image
            .apply(&MetadataCommand::RegisterNode {
                peer_id: "peer-a".into(),
                kafka_host: "h".into(),
                kafka_port: 9092,
            })
            .unwrap();
        image
    }

    fn create_on(name: &str, assignments: Vec<Vec<i32>>) -> MetadataCommand {
        MetadataCommand::CreateTopic {
            name: name.into(),
            topic_id: Uuid::new_v4(),
            assignments: assignments.iter().map(|a| ids(a)).collect(),
            configs: BTreeMap::new(),
            internal: false,
        }
    }

    fn create(name: &str, partitions: usize) -> MetadataCommand {
        create_on(name, vec![vec![1]; partitions])
    }

    #[test]
    fn nothing_applies_before_formation() {
        let mut image = MetadataImage::default();
        assert!(matches!(
            image.apply(&create("t", 1)),
            Err(MetadataError::NotFormed)
        ));
    }

    #[test]
    fn nodes_keep_their_id_and_bump_their_epoch() {
        let mut image = formed();
        let register = MetadataCommand::RegisterNode {
            peer_id: "peer-a".into(),
            kafka_host: "h2".into(),
            kafka_port: 1,
        };
        assert_eq!(
            image.apply(&register).unwrap(),
            Outcome::Registered {
                node_id: NodeId(1),
                broker_epoch: 2
            }
        );
        let other = MetadataCommand::RegisterNode {
            peer_id: "peer-b".into(),
            kafka_host: "h".into(),
            kafka_port: 1,
        };
        assert_eq!(
            image.apply(&other).unwrap(),
            Outcome::Registered {
                node_id: NodeId(2),
                broker_epoch: 1
            }
        );
    }

    #[test]
    fn topics_are_created_once_and_deleted_by_id() {
        let mut image = formed();
        image.apply(&create("orders", 3)).unwrap();
        let topic = image.topic("orders").unwrap().clone();
        assert_eq!(topic.partitions.len(), 3);
        assert!(
            topic
                .partitions
                .iter()
                .all(|p| p.leader == NodeId(1) && nums(&p.isr) == [1])
        );
        assert_eq!(image.topic_by_id(&topic.id).unwrap().name, "orders");
        assert!(matches!(
            image.apply(&create("orders", 1)),
            Err(MetadataError::TopicExists(_))
        ));
        image
            .apply(&MetadataCommand::DeleteTopic { topic_id: topic.id })
            .unwrap();
        assert!(image.topic("orders").is_none() && image.topic_by_id(&topic.id).is_none());
    }

    #[test]
    fn invalid_topics_are_refused_without_changing_the_image() {
        let mut image = formed();
        let version = image.version;
        assert!(image.apply(&create("bad name", 1)).is_err());
        assert!(image.apply(&create("t", 0)).is_err());
        // Replicas on an unknown node, twice on one node, or of uneven counts.
        for bad in [vec![vec![1, 2]], vec![vec![1, 1]], vec![vec![1], vec![]]] {
            assert!(matches!(
                image.apply(&create_on("t", bad)),
                Err(MetadataError::InvalidReplicationFactor { .. })
            ));
        }
        assert_eq!(image.version, version);
    }

    #[test]
    fn producer_id_blocks_do_not_overlap() {
        let mut image = formed();
        let a = image
            .apply(&MetadataCommand::AllocateProducerIds { count: 100 })
            .unwrap();
        let b = image
            .apply(&MetadataCommand::AllocateProducerIds { count: 100 })
            .unwrap();
        assert_eq!(a, Outcome::ProducerIds { first: 1000 });
        assert_eq!(b, Outcome::ProducerIds { first: 1100 });
    }

    #[test]
    fn leaders_move_only_within_the_isr_and_against_the_current_epoch() {
        let mut image = formed();
        for peer in ["peer-b", "peer-c"] {
            let register = MetadataCommand::RegisterNode {
                peer_id: peer.into(),
                kafka_host: "h".into(),
                kafka_port: 1,
            };
            image.apply(&register).unwrap();
        }
        image.apply(&create_on("t", vec![vec![1, 2]])).unwrap();
        let id = image.topic("t").unwrap().id;
        let change = |leader, expected_leader_epoch| MetadataCommand::ElectLeaders {
            changes: vec![LeaderChange {
                topic_id: id,
                partition: 0,
                leader: NodeId(leader),
                expected_leader_epoch,
            }],
        };
        image.apply(&change(2, 0)).unwrap();
        let p = image.topic("t").unwrap().partitions[0].clone();
        assert_eq!((p.leader.0, p.leader_epoch, p.partition_epoch), (2, 1, 1));
        // Stale epoch, and a node outside the ISR: both skipped.
        image.apply(&change(1, 0)).unwrap();
        image.apply(&change(3, 1)).unwrap();
        assert_eq!(image.topic("t").unwrap().partitions[0].leader, NodeId(2));
        // No leader available, then one returns.
        image.apply(&change(-1, 1)).unwrap();
        image.apply(&change(1, 2)).unwrap();
        let p = &image.topic("t").unwrap().partitions[0];
        assert_eq!((p.leader.0, p.leader_epoch), (1, 3));
    }

    /// Three nodes and topic `t` with one partition on replicas 1, 2, 3 (leader 1).
    fn three_replicas() -> (MetadataImage, Uuid) {
        let mut image = formed();
        for peer in ["peer-b", "peer-c"] {
            let register = MetadataCommand::RegisterNode {
                peer_id: peer.into(),
                kafka_host: "h".into(),
                kafka_port: 1,
            };
            image.apply(&register).unwrap();
        }
        image.apply(&create_on("t", vec![vec![1, 2, 3]])).unwrap();
        let id = image.topic("t").unwrap().id;
        (image, id)
    }

    fn partition(image: &MetadataImage) -> PartitionImage {
        image.topic("t").unwrap().partitions[0].clone()
    }

    fn alter(
        id: Uuid,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: &[(i32, i64)],
    ) -> MetadataCommand {
        MetadataCommand::AlterPartition {
            topic_id: id,
            partition: 0,
            leader: NodeId(1),
            leader_epoch,
            partition_epoch,
            isr: isr
                .iter()
                .map(|&(node, broker_epoch)| IsrMember {
                    node: NodeId(node),
                    broker_epoch,
                })
                .collect(),
        }
    }

    #[test]
    fn alter_partition_applies_only_against_current_epochs_and_broker_epochs() {
        let (mut image, id) = three_replicas();
        image.apply(&alter(id, 0, 0, &[(1, 1), (3, 1)])).unwrap();
        let p = partition(&image);
        assert_eq!(
            (nums(&p.isr), p.partition_epoch, p.leader_epoch),
            (vec![1, 3], 1, 0)
        );
        // Stale partition epoch, stale leader epoch.
        assert!(matches!(
            image.apply(&alter(id, 0, 0, &[(1, 1)])),
            Err(MetadataError::StalePartition(_))
        ));
        assert!(matches!(
            image.apply(&alter(id, 1, 1, &[(1, 1)])),
            Err(MetadataError::StalePartition(_))
        ));
        // A member with an old broker epoch, one not a replica, and an ISR without the leader.
        for isr in [&[(1, 1), (2, 0)][..], &[(1, 1), (4, 1)], &[(2, 1), (3, 1)]] {
            assert!(matches!(
                image.apply(&alter(id, 0, 1, isr)),
                Err(MetadataError::IneligibleReplica(_))
            ));
        }
        // Order follows the replicas whatever the proposal's order.
        image
            .apply(&alter(id, 0, 1, &[(3, 1), (1, 1), (2, 1)]))
            .unwrap();
        assert_eq!(nums(&partition(&image).isr), [1, 2, 3]);
    }

    #[test]
    fn a_restarted_node_leaves_every_shared_isr_and_its_leadership() {
        let (mut image, _) = three_replicas();
        image.apply(&create_on("solo", vec![vec![1]])).unwrap();
        let register = MetadataCommand::RegisterNode {
            peer_id: "peer-a".into(),
            kafka_host: "h".into(),
            kafka_port: 1,
        };
        image.apply(&register).unwrap();
        let p = partition(&image);
        assert_eq!((p.leader.0, p.leader_epoch, p.partition_epoch), (2, 1, 1));
        assert_eq!(nums(&p.isr), [2, 3]);
        // Sole in-sync replica: kept, still the leader.
        let solo = image.topic("solo").unwrap().partitions[0].clone();
        assert_eq!(
            (solo.leader.0, nums(&solo.isr), solo.leader_epoch),
            (1, vec![1], 0)
        );
    }

    #[test]
    fn controller_changes_are_clean_unless_the_topic_allows_otherwise() {
        let (mut image, id) = three_replicas();
        let change = |epoch, leader, isr: Vec<i32>, unclean| MetadataCommand::ChangePartitions {
            changes: vec![PartitionChange {
                topic_id: id,
                partition: 0,
                expected_partition_epoch: epoch,
                leader: NodeId(leader),
                isr: ids(&isr),
                unclean,
            }],
        };
        // Node 1 died: 2 leads, 1 leaves the ISR.
        image.apply(&change(0, 2, vec![2, 3], false)).unwrap();
        let p = partition(&image);
        assert_eq!(
            (p.leader.0, p.leader_epoch, p.partition_epoch, nums(&p.isr)),
            (2, 1, 1, vec![2, 3])
        );
        // Stale; a leader outside the ISR; an ISR that grows: all skipped.
        image.apply(&change(0, 3, vec![3], false)).unwrap();
        image.apply(&change(1, 1, vec![1], false)).unwrap();
        image.apply(&change(1, 2, vec![1, 2, 3], false)).unwrap();
        assert_eq!(partition(&image).partition_epoch, 1);
        // The ISR down to 3 with no leader, then an unclean election of 1: refused by default,
        // applied once the topic allows it.
        image.apply(&change(1, -1, vec![3], false)).unwrap();
        image.apply(&change(2, 1, vec![1], true)).unwrap();
        assert_eq!(partition(&image).leader, NodeId::NONE);
        let configs = BTreeMap::from([(
            "unclean.leader.election.enable".to_string(),
            "true".to_string(),
        )]);
        image
            .apply(&MetadataCommand::SetTopicConfig {
                topic_id: id,
                configs,
            })
            .unwrap();
        image.apply(&change(2, 1, vec![1], true)).unwrap();
        let p = partition(&image);
        assert_eq!(
            (p.leader.0, nums(&p.isr), p.partition_epoch),
            (1, vec![1], 3)
        );
    }
}
