//! Recovery from the states a crash between two steps of a roll or a deletion leaves behind,
//! made by editing a closed store with fjall directly.

use crate::common::*;
use rafka_store::TopicPartition;
use std::path::Path;

fn segment_name(tp: TopicPartition, base: i64) -> String {
    format!("s.{}.{}.{}", tp.topic_id.simple(), tp.partition, base)
}

fn summary_key(tp: TopicPartition, base: i64) -> Vec<u8> {
    let mut k = vec![b'S'];
    k.extend_from_slice(tp.topic_id.as_bytes());
    k.extend_from_slice(&tp.partition.to_be_bytes());
    k.extend_from_slice(&base.to_be_bytes());
    k
}

/// A partition with 10 batches of 10 records in segments of ~2 batches; returns segment bases.
fn setup(dir: &Path, tp: TopicPartition) -> anyhow::Result<Vec<i64>> {
    let store = open(dir)?;
    let log = store.create_partition(tp, small_segments(2_600))?;
    for i in 0..10 {
        log.append_blocking(simple(10, i), opts())?;
    }
    drop(log);
    drop(store);
    let db = fjall::Database::builder(dir).open()?;
    let prefix = format!("s.{}.{}.", tp.topic_id.simple(), tp.partition);
    let mut bases: Vec<i64> = db
        .list_keyspace_names()
        .iter()
        .filter_map(|n| n.strip_prefix(prefix.as_str()).and_then(|b| b.parse().ok()))
        .collect();
    bases.sort_unstable();
    assert!(bases.len() >= 4, "{bases:?}");
    Ok(bases)
}

fn with_db(
    dir: &Path,
    f: impl FnOnce(&fjall::Database) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let db = fjall::Database::builder(dir).open()?;
    f(&db)?;
    db.persist(fjall::PersistMode::SyncAll)?;
    Ok(())
}

#[test]
fn orphan_segment_from_an_interrupted_roll_is_deleted() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tp = tp(80, 0);
    setup(dir.path(), tp)?;
    // Crash after creating the next segment's keyspace, before the batch that uses it.
    with_db(dir.path(), |db| {
        let ks = db.keyspace(
            &segment_name(tp, 100),
            fjall::KeyspaceCreateOptions::default,
        )?;
        ks.insert([0u8; 28], b"garbage".as_slice())?;
        Ok(())
    })?;
    let store = open(dir.path())?;
    let log = store.partition(tp).expect("partition");
    assert_eq!(log.log_end_offset(), 100);
    assert_eq!(decode(&read_all(&log)?).len(), 100);
    drop((log, store));
    with_db(dir.path(), |db| {
        assert!(
            !db.keyspace_exists(&segment_name(tp, 100)),
            "orphan deleted"
        );
        Ok(())
    })?;
    // The next roll at that base works.
    let store = open(dir.path())?;
    let log = store.partition(tp).expect("partition");
    for i in 0..4 {
        log.append_blocking(simple(10, 50 + i), opts())?;
    }
    assert_eq!(decode(&read_all(&log)?).len(), 140);
    Ok(())
}

#[test]
fn segment_whose_deletion_was_committed_but_not_done_is_deleted() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tp = tp(81, 0);
    let bases = setup(dir.path(), tp)?;
    // Crash after the retention batch (summary removed, log start moved), before delete_keyspace.
    with_db(dir.path(), |db| {
        let meta = db.keyspace("meta", fjall::KeyspaceCreateOptions::default)?;
        meta.remove(summary_key(tp, bases[0]))?;
        Ok(())
    })?;
    let store = open(dir.path())?;
    let log = store.partition(tp).expect("partition");
    assert_eq!(log.log_start_offset(), bases[1]);
    assert_eq!(log.log_end_offset(), 100);
    assert_eq!(decode(&read_all(&log)?).len() as i64, 100 - bases[1]);
    drop((log, store));
    with_db(dir.path(), |db| {
        assert!(!db.keyspace_exists(&segment_name(tp, bases[0])));
        Ok(())
    })
}

#[test]
fn missing_segment_data_truncates_the_log_there() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tp = tp(82, 0);
    let bases = setup(dir.path(), tp)?;
    // Not a state our write order produces: a middle segment's data is gone.
    with_db(dir.path(), |db| {
        let ks = db.keyspace(
            &segment_name(tp, bases[2]),
            fjall::KeyspaceCreateOptions::default,
        )?;
        db.delete_keyspace(ks)?;
        Ok(())
    })?;
    let store = open(dir.path())?;
    let log = store.partition(tp).expect("partition");
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (0, bases[2])
    );
    assert_eq!(decode(&read_all(&log)?).len() as i64, bases[2]);
    assert_eq!(
        log.append_blocking(simple(1, 1), opts())?.base_offset,
        bases[2]
    );
    Ok(())
}
