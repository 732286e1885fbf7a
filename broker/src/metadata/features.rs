//! Cluster feature levels, as KRaft's `metadata.version`: what nodes may write for each other.
//!
//! A [`FeatureLevel`] only grows. Each node supports a [`LevelRange`] (this build's
//! [`SUPPORTED`], or less with `--max-feature-level`) and says so when it registers in the
//! metadata log (and in gossip: nodes of level 0 cannot decode a registration that carries it, so
//! the first step up is decided from gossip). The metadata log holds the *finalized* level
//! ([`Features`], in the image); the controller raises it once every registered node and every
//! member of the metadata log supports a higher one ([`next_finalization`]), and never lowers it.
//!
//! Anything a node of an older level could not decode — a metadata command, a field of the
//! snapshot image, a record type in an internal topic, a Kafka request version — is written only
//! once the finalized level enables its [`Feature`]: `image.features().enabled(Feature::X)`. Every
//! node decodes whatever any older level wrote.
//!
//! Declaring a new level (see docs/architecture.md, "Feature levels"):
//! 1. add a [`Feature`] variant, give it the next level in [`Feature::level`], list it in
//!    [`Feature::ALL`], and raise [`LATEST`] to that level;
//! 2. gate what it writes on `features().enabled(Feature::X)`; a new metadata command is a new
//!    [`GatedCommand`] variant whose [`GatedCommand::feature`] is `Some(Feature::X)`.
//!
//! Level 0 is what nodes from before feature levels (the upgrade baseline) write; those bytes are
//! pinned by `raft/fixtures`.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{GatedCommand, MetadataError, MetadataImage, NodeSupport};

/// A cluster feature level: 0 for nodes from before levels existed.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct FeatureLevel(pub u16);

impl fmt::Display for FeatureLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The highest level this build supports (and decodes).
pub const LATEST: FeatureLevel = FeatureLevel(4);

/// The levels this build can run at.
pub const SUPPORTED: LevelRange = LevelRange {
    min: FeatureLevel(0),
    max: LATEST,
};

/// Something that changes what nodes write for each other, enabled from its level on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Feature {
    /// Level 1: the feature level itself. Registrations carry the levels a node supports,
    /// commands added since level 0 travel as [`GatedCommand`]s, and snapshots of the image use
    /// format 2 (stamped with the finalized level, fields by name).
    VersionedMetadata,
    /// Level 2: `__consumer_offsets` holds Kafka's record layout (offset commit keys v1 and
    /// values v3, group metadata keys v2 and values v3), so group membership fails over with
    /// the partition. Before it, offsets are written in the legacy layout and group metadata is
    /// not written at all.
    GroupRecords,
    /// Level 3: `rafka cluster remove` records the removal in the metadata log
    /// ([`GatedCommand::RemoveNode`]) and the controller moves the removed node's replicas
    /// ([`GatedCommand::ReassignReplicas`]). Below it, a removal only takes the node out of the
    /// metadata quorum (on the metadata leader, until it changes).
    NodeRemoval,
    /// Level 4: transactions. Partition logs take transactional batches and transaction
    /// markers, and the store records open transactions in producer entries of a newer layout
    /// (and an aborted-transactions index) that older releases cannot read. Below it,
    /// transactional produce and WriteTxnMarkers are refused.
    Transactions,
}

impl Feature {
    /// Every feature, in level order.
    pub const ALL: &'static [Feature] = &[
        Feature::VersionedMetadata,
        Feature::GroupRecords,
        Feature::NodeRemoval,
        Feature::Transactions,
    ];

    /// The level from which the feature is enabled.
    pub const fn level(self) -> FeatureLevel {
        match self {
            Self::VersionedMetadata => FeatureLevel(1),
            Self::GroupRecords => FeatureLevel(2),
            Self::NodeRemoval => FeatureLevel(3),
            Self::Transactions => FeatureLevel(4),
        }
    }

    /// The name used in messages and docs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::VersionedMetadata => "versioned-metadata",
            Self::GroupRecords => "group-records",
            Self::NodeRemoval => "node-removal",
            Self::Transactions => "transactions",
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The levels a node supports, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelRange {
    /// Lowest level.
    pub min: FeatureLevel,
    /// Highest level.
    pub max: FeatureLevel,
}

impl LevelRange {
    /// What a node that registered without a range supports: level 0 only.
    pub const LEGACY: LevelRange = LevelRange {
        min: FeatureLevel(0),
        max: FeatureLevel(0),
    };

    /// Whether `level` is in the range.
    pub fn contains(&self, level: FeatureLevel) -> bool {
        self.min <= level && level <= self.max
    }

    /// This range with its top lowered to `max` (if that is lower).
    pub fn capped(self, max: FeatureLevel) -> LevelRange {
        LevelRange {
            min: self.min,
            max: self.max.min(max).max(self.min),
        }
    }
}

impl fmt::Display for LevelRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

impl FromStr for LevelRange {
    type Err = String;

    /// Parses `MIN-MAX`, as [`fmt::Display`] writes it (the gossiped form).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parse = |n: &str| n.trim().parse::<u16>().map(FeatureLevel);
        let bad = || format!("feature level range {s:?} is not MIN-MAX");
        let (min, max) = s.split_once('-').ok_or_else(bad)?;
        let range = LevelRange {
            min: parse(min).map_err(|_| bad())?,
            max: parse(max).map_err(|_| bad())?,
        };
        (range.min <= range.max).then_some(range).ok_or_else(bad)
    }
}

/// The cluster's finalized feature level, as the metadata log decided it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Features {
    finalized: FeatureLevel,
}

impl Features {
    /// Features finalized at `level`.
    pub fn at(level: FeatureLevel) -> Features {
        Features { finalized: level }
    }

    /// The finalized level: every registered node supports it, and it never goes down.
    pub fn finalized(&self) -> FeatureLevel {
        self.finalized
    }

    /// Whether the cluster may use `feature`.
    pub fn enabled(&self, feature: Feature) -> bool {
        self.finalized >= feature.level()
    }

    /// `Ok` if `feature` is enabled, else the error to answer.
    pub fn require(&self, feature: Feature) -> Result<(), MetadataError> {
        if self.enabled(feature) {
            return Ok(());
        }
        Err(MetadataError::FeatureNotEnabled {
            feature: feature.name().to_string(),
            needs: feature.level().0,
            finalized: self.finalized.0,
        })
    }

    /// `Ok` if a node supporting `supported` can run in a cluster at this level: the message
    /// operators see when they try to run a node below the finalized level.
    pub fn check_supported(&self, who: &str, supported: LevelRange) -> Result<(), MetadataError> {
        if supported.contains(self.finalized) {
            return Ok(());
        }
        Err(MetadataError::UnsupportedLevel(unsupported_message(
            who,
            supported,
            self.finalized,
        )))
    }
}

/// Why a node supporting `supported` cannot run at `finalized`, for operators.
pub(crate) fn unsupported_message(
    who: &str,
    supported: LevelRange,
    finalized: FeatureLevel,
) -> String {
    format!(
        "{who} supports cluster feature levels {supported}, but the cluster's finalized feature \
         level is {finalized}. A cluster never goes back below its finalized level, so a node \
         cannot be downgraded below it: run a rafka-node that supports level {finalized} (and no \
         --max-feature-level below it)"
    )
}

/// What the controller learnt about a node from gossip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gossiped {
    /// The levels it says it supports.
    pub supported: LevelRange,
    /// The broker epoch of the registration it gossips from (`None` before it registered).
    pub broker_epoch: Option<i64>,
}

/// The finalization the controller should propose, if any: the highest level that every
/// registered node and every member of the metadata log supports, when it is above the finalized
/// one. A registered node's support is, in order: what its registration recorded in the image
/// (as the state machine will judge it); `local`'s range for this node; what it gossips from its
/// current registration (same broker epoch); otherwise level 0 only. `members` are the peer ids
/// of the metadata log's voters and learners.
pub fn next_finalization(
    image: &MetadataImage,
    members: &BTreeSet<String>,
    local: (&str, LevelRange),
    gossip: &dyn Fn(&str) -> Option<Gossiped>,
) -> Option<GatedCommand> {
    let (local_peer, local_range) = local;
    let mut ranges = Vec::new();
    let mut nodes = Vec::new();
    for node in image.nodes.values() {
        let range = if let Some(recorded) = node.supported {
            recorded
        } else if node.peer_id == local_peer {
            local_range
        } else {
            gossip(&node.peer_id)
                .filter(|g| g.broker_epoch == Some(node.broker_epoch))
                .map_or(LevelRange::LEGACY, |g| g.supported)
        };
        if node.supported.is_none() {
            nodes.push(NodeSupport {
                node: node.node_id,
                broker_epoch: node.broker_epoch,
                supported: range,
            });
        }
        ranges.push(range);
    }
    for peer in members {
        if image.node_by_peer(peer).is_some() {
            continue;
        }
        ranges.push(if peer == local_peer {
            local_range
        } else {
            gossip(peer).map_or(LevelRange::LEGACY, |g| g.supported)
        });
    }
    let level = ranges.iter().map(|r| r.max).min()?;
    let finalized = image.features().finalized();
    (level > finalized && ranges.iter().all(|r| r.contains(level)))
        .then_some(GatedCommand::FinalizeLevel { level, nodes })
}

impl MetadataImage {
    /// Applies a finalization: every registered node must support `level` (as its registration
    /// recorded, or else as `reported` for its current broker epoch); nodes without a recorded
    /// range get the reported one.
    pub(super) fn finalize_level(
        &mut self,
        level: FeatureLevel,
        reported: &[NodeSupport],
    ) -> Result<(), MetadataError> {
        let finalized = self.features().finalized();
        if level <= finalized {
            return Err(MetadataError::UnsupportedLevel(format!(
                "cannot finalize feature level {level}: the finalized level is {finalized} \
                 already, and it never goes down"
            )));
        }
        let mut recorded = Vec::new();
        for node in self.nodes.values() {
            let report = reported
                .iter()
                .find(|r| r.node == node.node_id && r.broker_epoch == node.broker_epoch);
            let range = node
                .supported
                .or(report.map(|r| r.supported))
                .unwrap_or(LevelRange::LEGACY);
            if !range.contains(level) {
                return Err(MetadataError::UnsupportedLevel(format!(
                    "cannot finalize feature level {level}: node {} (broker epoch {}) supports \
                     levels {range}",
                    node.node_id, node.broker_epoch
                )));
            }
            if node.supported.is_none() {
                recorded.push((node.node_id, range));
            }
        }
        for (id, range) in recorded {
            if let Some(node) = self.nodes.get_mut(&id) {
                node.supported = Some(range);
            }
        }
        self.set_features(Features::at(level));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_declared_in_order_without_gaps_up_to_latest() {
        let levels: Vec<u16> = Feature::ALL.iter().map(|f| f.level().0).collect();
        assert!(levels.windows(2).all(|w| w[0] <= w[1]), "{levels:?}");
        for level in 1..=LATEST.0 {
            assert!(levels.contains(&level), "no feature at level {level}");
        }
        assert_eq!(levels.last().copied(), Some(LATEST.0));
        assert_eq!(SUPPORTED.max, LATEST);
    }

    #[test]
    fn a_feature_is_enabled_from_its_level_on() {
        let feature = Feature::VersionedMetadata;
        assert!(!Features::default().enabled(feature));
        assert!(matches!(
            Features::default().require(feature),
            Err(MetadataError::FeatureNotEnabled {
                needs: 1,
                finalized: 0,
                ..
            })
        ));
        assert!(Features::at(FeatureLevel(1)).enabled(feature));
        assert!(Features::at(FeatureLevel(2)).require(feature).is_ok());
    }

    #[test]
    fn ranges_parse_as_they_print_and_cap() {
        let printed = format!("0-{}", LATEST.0);
        let range: LevelRange = printed.parse().unwrap();
        assert_eq!(range, SUPPORTED);
        assert_eq!(range.to_string(), printed);
        for bad in ["", "1", "2-1", "a-b", "0-70000"] {
            assert!(bad.parse::<LevelRange>().is_err(), "{bad:?}");
        }
        assert_eq!(SUPPORTED.capped(FeatureLevel(0)), LevelRange::LEGACY);
        assert_eq!(SUPPORTED.capped(FeatureLevel(9)), SUPPORTED);
    }

    fn register(peer: &str) -> MetadataCommand {
        MetadataCommand::RegisterNode {
            peer_id: peer.into(),
            kafka_host: "h".into(),
            kafka_port: 1,
        }
    }

    fn register_with(peer: &str, supported: LevelRange) -> MetadataCommand {
        MetadataCommand::Gated(GatedCommand::RegisterNode {
            peer_id: peer.into(),
            kafka_host: "h".into(),
            kafka_port: 1,
            supported,
        })
    }

    /// A cluster of nodes 1-3 (peers a, b, c), registered as nodes of level 0 do.
    fn three_nodes() -> MetadataImage {
        let mut image = MetadataImage::default();
        let form = MetadataCommand::Form {
            cluster_id: "c".into(),
        };
        image.apply(&form).unwrap();
        for peer in ["a", "b", "c"] {
            image.apply(&register(peer)).unwrap();
        }
        image
    }

    fn finalize(level: u16, nodes: &[(i32, i64, LevelRange)]) -> MetadataCommand {
        let nodes = nodes
            .iter()
            .map(|&(node, broker_epoch, supported)| NodeSupport {
                node: NodeId(node),
                broker_epoch,
                supported,
            })
            .collect();
        MetadataCommand::Gated(GatedCommand::FinalizeLevel {
            level: FeatureLevel(level),
            nodes,
        })
    }

    use super::super::{MetadataCommand, NodeId};

    #[test]
    fn a_finalization_needs_every_registered_node_at_its_current_broker_epoch() {
        let mut image = three_nodes();
        let version = image.version;
        for partial in [
            finalize(1, &[(1, 1, SUPPORTED), (2, 1, SUPPORTED)]),
            finalize(
                1,
                &[(1, 1, SUPPORTED), (2, 1, SUPPORTED), (3, 0, SUPPORTED)],
            ),
            finalize(
                1,
                &[
                    (1, 1, SUPPORTED),
                    (2, 1, SUPPORTED),
                    (3, 1, LevelRange::LEGACY),
                ],
            ),
        ] {
            let Err(MetadataError::UnsupportedLevel(why)) = image.apply(&partial) else {
                panic!("{partial:?} applied");
            };
            assert!(why.contains("node 3"), "{why}");
        }
        assert_eq!(
            (image.features(), image.version),
            (Features::default(), version)
        );

        let all = finalize(
            1,
            &[(1, 1, SUPPORTED), (2, 1, SUPPORTED), (3, 1, SUPPORTED)],
        );
        image.apply(&all).unwrap();
        assert_eq!(image.features().finalized(), FeatureLevel(1));
        assert!(image.nodes.values().all(|n| n.supported == Some(SUPPORTED)));
        assert!(
            matches!(image.apply(&all), Err(MetadataError::UnsupportedLevel(_))),
            "the same level again"
        );
    }

    #[test]
    fn above_level_0_registrations_carry_levels_and_level_0_ones_are_refused() {
        let mut image = three_nodes();
        let before = register_with("a", SUPPORTED);
        assert!(matches!(
            image.apply(&before),
            Err(MetadataError::FeatureNotEnabled {
                needs: 1,
                finalized: 0,
                ..
            })
        ));
        let all = finalize(
            1,
            &[(1, 1, SUPPORTED), (2, 1, SUPPORTED), (3, 1, SUPPORTED)],
        );
        image.apply(&all).unwrap();
        // What a node of level 0 sends: refused with an error it decodes, naming the levels.
        let Err(MetadataError::Membership(why)) = image.apply(&register("a")) else {
            panic!("a level-0 registration accepted at level 1");
        };
        assert!(why.contains("finalized feature level is 1"), "{why}");
        assert!(matches!(
            image.apply(&register_with("a", LevelRange::LEGACY)),
            Err(MetadataError::UnsupportedLevel(_))
        ));
        let capped_to_one = LevelRange {
            min: FeatureLevel(0),
            max: FeatureLevel(1),
        };
        assert_eq!(
            image.apply(&register_with("a", capped_to_one)).unwrap(),
            super::super::Outcome::Registered {
                node_id: NodeId(1),
                broker_epoch: 2
            }
        );
        assert_eq!(image.nodes[&NodeId(1)].supported, Some(capped_to_one));
    }

    #[test]
    fn the_controller_finalizes_once_every_node_and_member_supports_the_level() {
        let image = three_nodes();
        let gossip = |entries: Vec<(&'static str, Option<i64>)>| {
            move |peer: &str| {
                entries
                    .iter()
                    .find(|(p, _)| *p == peer)
                    .map(|&(_, broker_epoch)| Gossiped {
                        supported: SUPPORTED,
                        broker_epoch,
                    })
            }
        };
        let next = |members: &[&str], gossiped: &dyn Fn(&str) -> Option<Gossiped>| {
            let members: BTreeSet<String> = members.iter().map(|m| m.to_string()).collect();
            next_finalization(&image, &members, ("a", SUPPORTED), gossiped)
        };
        // Node c gossips nothing (a node of level 0), or from an older registration.
        assert_eq!(next(&[], &gossip(vec![("b", Some(1))])), None);
        assert_eq!(
            next(&[], &gossip(vec![("b", Some(1)), ("c", Some(0))])),
            None
        );
        let everyone = gossip(vec![("b", Some(1)), ("c", Some(1)), ("d", None)]);
        let Some(command) = next(&["a", "b"], &everyone) else {
            panic!("every node supports this build's levels");
        };
        let GatedCommand::FinalizeLevel { level, nodes } = &command else {
            panic!("{command:?}");
        };
        assert_eq!((*level, nodes.len()), (LATEST, 3));
        // A metadata-log member that has not registered counts too.
        assert_eq!(next(&["e"], &everyone), None);
        assert!(next(&["d"], &everyone).is_some());
        // Once applied, nothing higher is supported: nothing more to do.
        let mut finalized = image.clone();
        finalized.apply(&MetadataCommand::Gated(command)).unwrap();
        let members = BTreeSet::new();
        assert_eq!(
            next_finalization(&finalized, &members, ("a", SUPPORTED), &everyone),
            None
        );
    }

    #[test]
    fn a_node_below_the_finalized_level_is_refused_with_the_levels_named() {
        let at_one = Features::at(FeatureLevel(1));
        assert!(at_one.check_supported("node 3", SUPPORTED).is_ok());
        let Err(MetadataError::UnsupportedLevel(message)) =
            at_one.check_supported("node 3", LevelRange::LEGACY)
        else {
            panic!("a level-0 node accepted at level 1");
        };
        assert!(
            message.contains("supports cluster feature levels 0-0")
                && message.contains("finalized feature level is 1"),
            "{message}"
        );
    }
}
