//! Byte fixtures of the level-0 encodings: what nodes that predate feature levels write and read
//! (log entries, the RPCs of the metadata log, snapshots). This build must write exactly these
//! bytes while the finalized level is 0 (a level-0 node may be registered), and read them as
//! long as the upgrade baseline is a level-0 release.
//!
//! `fixtures/level0.hex` was written by `write_level0_fixtures` (ignored test) run on the upgrade
//! baseline (the commit `scripts/baseline.sh` names): one line per value, `name hex`. Never
//! regenerate it from newer code: that would pin whatever the new code writes. When the baseline
//! moves, run the writer on a checkout of the new baseline (`cargo test -p rafka-broker --lib
//! write_level0_fixtures -- --ignored`) and bring its file here.

use std::collections::{BTreeMap, BTreeSet};

use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership};
use uuid::Uuid;

use super::leader::{ForwardReply, LeaderOp};
use super::rpc::{RaftReply, RaftRequest};
use super::{RaftNode, RaftNodeId, TypeConfig};
use super::{codec, snapshot};
use crate::metadata::{
    IsrMember, LeaderChange, MetadataCommand, MetadataError, MetadataImage, NodeId, Outcome,
    PartitionChange,
};

type Entry = openraft::Entry<TypeConfig>;

const FIXTURES: &str = include_str!("fixtures/level0.hex");

fn topic_id() -> Uuid {
    Uuid::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210)
}

fn ids(replicas: &[&[i32]]) -> Vec<Vec<NodeId>> {
    replicas
        .iter()
        .map(|r| r.iter().copied().map(NodeId).collect())
        .collect()
}

fn register(peer: &str, host: &str, port: u16) -> MetadataCommand {
    MetadataCommand::RegisterNode {
        peer_id: peer.into(),
        kafka_host: host.into(),
        kafka_port: port,
    }
}

fn create_orders() -> MetadataCommand {
    MetadataCommand::CreateTopic {
        name: "orders".into(),
        topic_id: topic_id(),
        assignments: ids(&[&[1, 2, 3], &[2, 3, 1]]),
        configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
        internal: false,
    }
}

/// One command of each kind nodes of level 0 know.
fn commands() -> Vec<(&'static str, MetadataCommand)> {
    let id = topic_id();
    vec![
        (
            "form",
            MetadataCommand::Form {
                cluster_id: "MkU3OEVBNTcwNTJENDM2Qk".into(),
            },
        ),
        ("register", register("12D3KooWPeerA", "10.0.0.7", 9092)),
        ("create_topic", create_orders()),
        (
            "elect_leaders",
            MetadataCommand::ElectLeaders {
                changes: vec![LeaderChange {
                    topic_id: id,
                    partition: 1,
                    leader: NodeId(3),
                    expected_leader_epoch: 4,
                }],
            },
        ),
        (
            "alter_partition",
            MetadataCommand::AlterPartition {
                topic_id: id,
                partition: 0,
                leader: NodeId(1),
                leader_epoch: 2,
                partition_epoch: 5,
                isr: vec![
                    IsrMember {
                        node: NodeId(1),
                        broker_epoch: 3,
                    },
                    IsrMember {
                        node: NodeId(2),
                        broker_epoch: 7,
                    },
                ],
            },
        ),
        (
            "change_partitions",
            MetadataCommand::ChangePartitions {
                changes: vec![
                    PartitionChange {
                        topic_id: id,
                        partition: 1,
                        expected_partition_epoch: 6,
                        leader: NodeId(2),
                        isr: vec![NodeId(2), NodeId(3)],
                        unclean: false,
                    },
                    PartitionChange {
                        topic_id: id,
                        partition: 0,
                        expected_partition_epoch: 9,
                        leader: NodeId::NONE,
                        isr: vec![NodeId(3)],
                        unclean: true,
                    },
                ],
            },
        ),
        (
            "delete_topic",
            MetadataCommand::DeleteTopic { topic_id: id },
        ),
        (
            "set_topic_config",
            MetadataCommand::SetTopicConfig {
                topic_id: id,
                configs: BTreeMap::from([("cleanup.policy".into(), "delete".into())]),
            },
        ),
        (
            "allocate_producer_ids",
            MetadataCommand::AllocateProducerIds { count: 1000 },
        ),
    ]
}

fn log_id(index: u64) -> LogId<RaftNodeId> {
    LogId::new(CommittedLeaderId::new(3, 42), index)
}

fn membership() -> Membership<RaftNodeId, RaftNode> {
    let node = |peer: &str, port: u16| RaftNode {
        peer_id: peer.into(),
        addrs: vec![format!("/ip4/127.0.0.1/tcp/{port}")],
    };
    Membership::new(
        vec![BTreeSet::from([1, 2])],
        BTreeMap::from([
            (1, node("12D3KooWPeerA", 7001)),
            (2, node("12D3KooWPeerB", 7002)),
            (3, node("12D3KooWPeerC", 7003)),
        ]),
    )
}

fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry {
    Entry {
        log_id: log_id(index),
        payload,
    }
}

/// An image built by commands of every kind that leave something in it.
fn image() -> MetadataImage {
    let mut image = MetadataImage::default();
    let steps = [
        MetadataCommand::Form {
            cluster_id: "MkU3OEVBNTcwNTJENDM2Qk".into(),
        },
        register("12D3KooWPeerA", "10.0.0.7", 9092),
        register("12D3KooWPeerB", "10.0.0.8", 9093),
        register("12D3KooWPeerC", "10.0.0.9", 9094),
        register("12D3KooWPeerA", "10.0.0.17", 9095),
        create_orders(),
        MetadataCommand::CreateTopic {
            name: "__consumer_offsets".into(),
            topic_id: Uuid::from_u128(7),
            assignments: ids(&[&[3]]),
            configs: BTreeMap::new(),
            internal: true,
        },
        MetadataCommand::AllocateProducerIds { count: 1000 },
    ];
    for step in &steps {
        image.apply(step).expect("fixture commands apply");
    }
    image
}

/// Every level-0 fixture, as this build encodes it.
fn level0_values() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut push = |name: String, bytes: Result<Vec<u8>, codec::CodecError>| {
        out.push((name, bytes.expect("fixture encodes")));
    };
    for (i, (name, command)) in (10..).zip(commands()) {
        let normal = entry(i, EntryPayload::Normal(command.clone()));
        push(format!("entry.{name}"), codec::encode("log entry", &normal));
        let forward = RaftRequest::Forward {
            op: LeaderOp::Propose(command),
            expires_unix_ms: 1_700_000_000_000,
        };
        push(format!("forward.{name}"), forward.encode());
    }
    push(
        "entry.blank".into(),
        codec::encode("log entry", &entry(1, EntryPayload::Blank)),
    );
    push(
        "entry.membership".into(),
        codec::encode(
            "log entry",
            &entry(2, EntryPayload::Membership(membership())),
        ),
    );
    let replies = [
        (
            "reply.registered",
            ForwardReply::Done {
                log_index: 18,
                result: Ok(Outcome::Registered {
                    node_id: NodeId(3),
                    broker_epoch: 2,
                }),
            },
        ),
        (
            "reply.producer_ids",
            ForwardReply::Done {
                log_index: 19,
                result: Ok(Outcome::ProducerIds { first: 2000 }),
            },
        ),
        (
            "reply.topic_exists",
            ForwardReply::Done {
                log_index: 20,
                result: Err(MetadataError::TopicExists("orders".into())),
            },
        ),
        (
            "reply.membership_refused",
            ForwardReply::Failed(MetadataError::Membership("refused".into())),
        ),
        (
            "reply.not_leader",
            ForwardReply::NotLeader { leader: Some(7) },
        ),
    ];
    for (name, reply) in replies {
        push(name.into(), RaftReply::Forwarded(reply).encode());
    }
    push("image".into(), snapshot::encode_image(&image()));
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
#[ignore = "writes the fixture file; run only on the baseline commit"]
fn write_level0_fixtures() {
    let text: String = level0_values()
        .into_iter()
        .map(|(name, bytes)| format!("{name} {}\n", hex(&bytes)))
        .collect();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/metadata/raft/fixtures/level0.hex"
    );
    std::fs::write(path, text).expect("fixture file written");
}

#[test]
fn level0_encodings_are_unchanged() {
    let pinned: BTreeMap<&str, &str> = FIXTURES
        .lines()
        .filter_map(|line| line.split_once(' '))
        .collect();
    let values = level0_values();
    assert_eq!(pinned.len(), values.len(), "one fixture per value");
    for (name, bytes) in values {
        assert_eq!(
            pinned.get(name.as_str()).copied(),
            Some(hex(&bytes).as_str()),
            "{name} is no longer encoded as nodes of level 0 encode it"
        );
    }
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("fixture is hex"))
        .collect()
}

/// Decodes `bytes` as `T` and encodes it again.
fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(bytes: &[u8]) -> Vec<u8> {
    let value: T = codec::decode("fixture", bytes).expect("fixture decodes");
    codec::encode("fixture", &value).expect("fixture encodes")
}

#[test]
fn level0_bytes_still_decode_to_the_same_values() {
    for line in FIXTURES.lines() {
        let (name, text) = line.split_once(' ').expect("name hex");
        let bytes = unhex(text);
        let again = match name.split('.').next() {
            Some("entry") => round_trip::<Entry>(&bytes),
            Some("forward") => round_trip::<RaftRequest>(&bytes),
            Some("reply") => round_trip::<RaftReply>(&bytes),
            _ => {
                let image = snapshot::decode_image(&bytes).expect("level-0 image decodes");
                assert_eq!(
                    image.features().finalized(),
                    crate::metadata::FeatureLevel(0)
                );
                assert_eq!(image.nodes.len(), 3);
                let a = &image.nodes[&NodeId(1)];
                assert_eq!((a.broker_epoch, a.kafka_host.as_str()), (2, "10.0.0.17"));
                let orders = image.topic_by_id(&topic_id()).expect("topic by id");
                assert_eq!(orders.partitions[1].replicas, ids(&[&[2, 3, 1]])[0]);
                assert!(
                    image
                        .topic("__consumer_offsets")
                        .is_some_and(|t| t.internal)
                );
                assert_eq!(image.next_producer_id, 2000);
                snapshot::encode_image(&image).expect("image encodes")
            }
        };
        assert_eq!(hex(&again), text, "{name} decodes to something else");
    }
}
