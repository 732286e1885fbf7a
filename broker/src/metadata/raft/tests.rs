//! Storage tests: openraft's conformance suite against the fjall store, durability across a
//! reopen, snapshots restoring the image, and corrupt bytes as errors.

#![allow(clippy::unwrap_used, clippy::result_large_err)]

use std::sync::Arc;

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder,
    StorageError, Vote,
};
use tempfile::TempDir;
use tokio::sync::watch;

use super::{Disk, LogStore, RaftNodeId, StateMachine, TypeConfig};
use crate::metadata::features::SUPPORTED;
use crate::metadata::{
    FeatureLevel, GatedCommand, MetadataCommand, MetadataImage, NodeId, NodeSupport,
};

struct Builder;

fn open(dir: &std::path::Path) -> (LogStore, StateMachine, watch::Receiver<Arc<MetadataImage>>) {
    let (disk, _closed) = Disk::open(dir).unwrap();
    let (images, receiver) = watch::channel(Arc::new(MetadataImage::default()));
    let machine = StateMachine::open(disk.clone(), images).unwrap();
    (LogStore::new(disk), machine, receiver)
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<RaftNodeId>> {
        let dir = tempfile::tempdir().unwrap();
        let (log, machine, _) = open(dir.path());
        Ok((dir, log, machine))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).unwrap();
}

fn log_id(term: u64, index: u64) -> LogId<RaftNodeId> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64, command: MetadataCommand) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(command),
    }
}

fn form(id: &str) -> MetadataCommand {
    MetadataCommand::Form {
        cluster_id: id.into(),
    }
}

async fn append(log: &mut LogStore, entries: Vec<Entry<TypeConfig>>) {
    use openraft::storage::RaftLogStorageExt;
    log.blocking_append(entries).await.unwrap();
}

async fn build_snapshot(machine: &mut StateMachine) -> openraft::Snapshot<TypeConfig> {
    machine
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_log_and_vote_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _, _) = open(dir.path());
        append(&mut log, (1..=5).map(|i| entry(1, i, form("c"))).collect()).await;
        log.save_vote(&Vote::new(3, 7)).await.unwrap();
        log.purge(log_id(1, 2)).await.unwrap();
        log.save_committed(Some(log_id(1, 4))).await.unwrap();
    }
    let (mut log, _, _) = open(dir.path());
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 7)));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 4)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 2)));
    assert_eq!(state.last_log_id, Some(log_id(1, 5)));
    let entries = log.try_get_log_entries(0..).await.unwrap();
    let indexes: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
    assert_eq!(indexes, vec![3, 4, 5]);
}

#[tokio::test]
async fn a_snapshot_restores_the_image_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let version = {
        let (_, mut machine, images) = open(dir.path());
        let register = MetadataCommand::RegisterNode {
            peer_id: "p".into(),
            kafka_host: "h".into(),
            kafka_port: 1,
        };
        let results = machine
            .apply(vec![
                entry(
                    1,
                    1,
                    MetadataCommand::DeleteTopic {
                        topic_id: uuid::Uuid::nil(),
                    },
                ),
                entry(1, 2, form("cluster")),
                entry(1, 3, register),
            ])
            .await
            .unwrap();
        assert!(results[0].is_err(), "refused before formation");
        assert!(results[1].is_ok() && results[2].is_ok());
        assert_eq!(images.borrow().cluster_id, "cluster", "published on apply");
        let snapshot = build_snapshot(&mut machine).await;
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 3)));
        images.borrow().version
    };
    let (_, mut machine, images) = open(dir.path());
    assert_eq!(images.borrow().version, version);
    assert_eq!(images.borrow().nodes.len(), 1);
    assert_eq!(machine.applied_state().await.unwrap().0, Some(log_id(1, 3)));
    let current = machine.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta.last_log_id, Some(log_id(1, 3)));
}

#[tokio::test]
async fn corrupt_stored_bytes_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (disk, _closed) = Disk::open(dir.path()).unwrap();
        disk.log
            .insert(super::disk::log_key(1), vec![1, 0xff, 0xff])
            .unwrap();
        disk.log.insert(super::disk::log_key(2), vec![42]).unwrap();
        disk.log.insert(b"short".to_vec(), vec![]).unwrap();
        disk.state.insert(super::disk::VOTE, vec![]).unwrap();
    }
    let (mut log, _, _) = open(dir.path());
    assert!(log.try_get_log_entries(1..2).await.is_err());
    assert!(log.try_get_log_entries(2..3).await.is_err());
    assert!(log.read_vote().await.is_err());
    assert!(
        log.get_log_state().await.is_err(),
        "last key is not an index"
    );

    let dir = tempfile::tempdir().unwrap();
    {
        let (disk, _closed) = Disk::open(dir.path()).unwrap();
        disk.state
            .insert(super::disk::SNAPSHOT, vec![1, 2, 3])
            .unwrap();
    }
    let (disk, _closed) = Disk::open(dir.path()).unwrap();
    let (images, _) = watch::channel(Arc::new(MetadataImage::default()));
    assert!(StateMachine::open(disk, images).is_err());
}

#[tokio::test]
async fn an_entry_under_the_wrong_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = super::codec::encode("entry", &entry(1, 9, form("c"))).unwrap();
    {
        let (disk, _closed) = Disk::open(dir.path()).unwrap();
        disk.log.insert(super::disk::log_key(3), bytes).unwrap();
    }
    let (mut log, _, _) = open(dir.path());
    assert!(log.try_get_log_entries(..).await.is_err());
}

#[test]
fn the_default_config_is_valid_and_bad_ones_are_refused() {
    use super::RaftConfig;
    use std::time::Duration;
    let config = RaftConfig::default();
    config.validate().unwrap();
    let openraft = config.to_openraft().unwrap();
    assert_eq!(openraft.heartbeat_interval, 300);
    assert_eq!(openraft.snapshot_max_chunk_size, 512 * 1024);
    for bad in [
        RaftConfig {
            snapshot_max_chunk_size: 3 << 20,
            ..RaftConfig::default()
        },
        RaftConfig {
            election_timeout_min: Duration::from_millis(200),
            ..RaftConfig::default()
        },
        RaftConfig {
            propose_timeout: Duration::from_secs(1),
            ..RaftConfig::default()
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
}

#[test]
fn raft_node_ids_are_stable_hashes_of_peer_ids() {
    let peer = libp2p::PeerId::random();
    let node = super::RaftNode::new(&peer, vec![]);
    assert_eq!(node.id().unwrap(), super::raft_node_id(&peer));
    assert_eq!(super::raft_node_id(&peer), super::raft_node_id(&peer));
    assert_ne!(
        super::raft_node_id(&peer),
        super::raft_node_id(&libp2p::PeerId::random())
    );
    // Pinned: FNV-1a 64 of a fixed peer id's bytes, so ids stay the same across versions.
    let fixed: libp2p::PeerId = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
        .parse()
        .unwrap();
    assert_eq!(super::raft_node_id(&fixed), PINNED_ID);
    let bad = super::RaftNode {
        peer_id: "not a peer id".into(),
        addrs: vec![],
    };
    assert!(bad.id().is_err());
}

const PINNED_ID: u64 = 11_835_802_463_404_637_888;

#[tokio::test]
async fn above_level_0_snapshots_keep_the_level_on_disk_and_when_installed_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let register = MetadataCommand::RegisterNode {
        peer_id: "p".into(),
        kafka_host: "h".into(),
        kafka_port: 1,
    };
    let finalize = MetadataCommand::Gated(GatedCommand::FinalizeLevel {
        level: FeatureLevel(1),
        nodes: vec![NodeSupport {
            node: NodeId(1),
            broker_epoch: 1,
            supported: SUPPORTED,
        }],
    });
    let (meta, data) = {
        let (_, mut machine, images) = open(dir.path());
        let entries = vec![
            entry(1, 1, form("cluster")),
            entry(1, 2, register),
            entry(1, 3, finalize),
        ];
        let results = machine.apply(entries).await.unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(images.borrow().features().finalized(), FeatureLevel(1));
        let snapshot = build_snapshot(&mut machine).await;
        let data = snapshot.snapshot.into_inner();
        assert_eq!(data.first(), Some(&2), "format 2 from level 1 on");
        (snapshot.meta, data)
    };
    let (_, _, images) = open(dir.path());
    assert_eq!(images.borrow().features().finalized(), FeatureLevel(1));
    assert_eq!(images.borrow().nodes[&NodeId(1)].supported, Some(SUPPORTED));

    let elsewhere = tempfile::tempdir().unwrap();
    let (_, mut machine, images) = open(elsewhere.path());
    machine
        .install_snapshot(&meta, Box::new(std::io::Cursor::new(data)))
        .await
        .unwrap();
    assert_eq!(images.borrow().features().finalized(), FeatureLevel(1));
    assert_eq!(images.borrow().version, 3);
}
