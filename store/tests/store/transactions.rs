//! Transactions on a partition: open transactions hold the last stable offset back, markers end
//! them, aborts go into the aborted-transactions index; all of it survives a reopen and follows
//! truncation, on a leader's log and on a replica's.

use crate::common::*;
use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{RecordBatchEncoder, RecordEncodeOptions};
use rafka_format::marker::EndTxnMarker;
use rafka_store::{AbortedTxn, LogConfig, PartitionLog, StoreError};

/// A transactional batch of `records` records of producer `pid` (epoch 0) from sequence `seq`.
fn txn_batch(pid: i64, seq: i32, records: usize) -> Bytes {
    let mut recs = crate::common::records(&Spec {
        records,
        producer: Some((pid, 0, seq)),
        ..Spec::default()
    });
    for r in &mut recs {
        r.transactional = true;
    }
    let mut buf = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression: kafka_protocol::records::Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, recs.iter(), &opts).expect("encode");
    buf.freeze()
}

fn marker(pid: i64, epoch: i16, commit: bool) -> Bytes {
    EndTxnMarker {
        commit,
        coordinator_epoch: 1,
    }
    .batch(pid, epoch, 1_000)
    .expect("marker")
}

/// Appends and moves the high watermark to the log end (a single-replica leader).
fn append(log: &PartitionLog, batch: Bytes) -> anyhow::Result<rafka_store::Appended> {
    let a = log.append_blocking(batch, opts())?;
    log.set_high_watermark(log.log_end_offset())?;
    Ok(a)
}

#[test]
fn open_transactions_hold_the_lso_and_aborts_are_indexed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let log = store.create_partition(tp(40, 0), LogConfig::default())?;
    append(&log, simple(3, 1))?; // 0..=2
    assert_eq!(log.last_stable_offset(), 3, "no transaction: the HW");
    let a = append(&log, txn_batch(7, 0, 2))?; // 3..=4, producer 7 opens at 3
    assert_eq!(a.base_offset, 3);
    assert_eq!(log.open_transaction(7), Some(3));
    append(&log, txn_batch(8, 0, 2))?; // 5..=6, producer 8 opens at 5
    append(&log, simple(1, 2))?; // 7
    append(&log, txn_batch(7, 2, 1))?; // 8, still producer 7's transaction
    assert_eq!(log.high_watermark(), 9);
    assert_eq!(log.last_stable_offset(), 3, "producer 7's open transaction");
    // A non-transactional batch of a producer with a transaction open is refused.
    let err = log
        .append_blocking(idem(7, 0, 3, 1), opts())
        .expect_err("not transactional");
    assert!(matches!(err, StoreError::InvalidTxnState { .. }), "{err}");
    assert_eq!(err.kafka_code(), 48);

    let m = append(&log, marker(7, 0, false))?; // 9: abort
    assert_eq!(m.base_offset, 9);
    assert_eq!(log.open_transaction(7), None);
    assert_eq!(
        log.last_stable_offset(),
        5,
        "producer 8's transaction remains"
    );
    let aborted = AbortedTxn {
        producer_id: 7,
        first_offset: 3,
        last_offset: 9,
        last_stable_offset: 5,
    };
    assert_eq!(log.aborted_transactions(0, 10)?, vec![aborted]);
    assert_eq!(log.aborted_transactions(9, 10)?, vec![aborted]);
    assert_eq!(log.aborted_transactions(10, 20)?, vec![], "ends before");
    assert_eq!(log.aborted_transactions(0, 3)?, vec![], "begins after");
    append(&log, marker(8, 0, true))?; // 10: commit
    assert_eq!(log.last_stable_offset(), 11, "nothing open: the HW");
    assert_eq!(
        log.aborted_transactions(0, 11)?,
        vec![aborted],
        "commits are not indexed"
    );
    // The high watermark below a marker keeps its transaction unstable.
    append(&log, txn_batch(9, 0, 1))?; // 11
    log.append_blocking(marker(9, 0, false), opts())?; // 12, HW still 12
    assert_eq!(log.high_watermark(), 12);
    assert_eq!(
        log.last_stable_offset(),
        11,
        "the marker is not replicated yet"
    );
    log.set_high_watermark(13)?;
    assert_eq!(log.last_stable_offset(), 13);
    let both = log.aborted_transactions(0, 13)?;
    assert_eq!(both.len(), 2);
    assert_eq!((both[1].producer_id, both[1].first_offset), (9, 11));
    // A marker with a bumped epoch (the coordinator fenced the producer) ends it too; an older
    // epoch than the producer's is fenced.
    append(&log, txn_batch(7, 3, 1))?; // 13
    assert_eq!(log.open_transaction(7), Some(13));
    // A marker of a producer with no open transaction is written, and ends nothing.
    append(&log, marker(10, 0, false))?; // 14
    assert_eq!(log.aborted_transactions(14, 15)?, vec![]);
    append(&log, marker(7, 1, false))?; // 15
    assert_eq!(log.open_transaction(7), None);
    assert_eq!(log.producer(7)?.map(|p| p.epoch), Some(1));
    assert_eq!(log.open_transaction(7), None);
    let err = log
        .append_blocking(marker(7, 0, true), opts())
        .expect_err("fenced");
    assert_eq!(err.kafka_code(), 47);
    Ok(())
}

#[test]
fn transactions_survive_a_reopen() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let t = tp(41, 0);
    {
        let store = open(dir.path())?;
        let log = store.create_partition(t, LogConfig::default())?;
        append(&log, txn_batch(1, 0, 2))?; // 0..=1
        append(&log, txn_batch(2, 0, 2))?; // 2..=3
        append(&log, marker(1, 0, false))?; // 4
        append(&log, txn_batch(3, 0, 1))?; // 5
        append(&log, marker(3, 0, true))?; // 6
        assert_eq!(log.last_stable_offset(), 2);
        store.flush()?;
    }
    let store = open(dir.path())?;
    let log = store.partition(t).expect("partition");
    assert_eq!(log.open_transaction(2), Some(2));
    assert_eq!(log.open_transaction(1), None);
    assert_eq!(log.last_stable_offset(), 2);
    assert_eq!(log.aborted_transactions(0, 7)?.len(), 1);
    // Producer 2's transaction still ends normally.
    append(&log, marker(2, 0, false))?; // 7
    assert_eq!(log.last_stable_offset(), 8);
    let aborted = log.aborted_transactions(0, 8)?;
    assert_eq!(
        aborted.iter().map(|a| a.producer_id).collect::<Vec<_>>(),
        vec![1, 2]
    );
    Ok(())
}

#[test]
fn truncation_reopens_a_cut_marker_and_forgets_a_cut_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let log = store.create_partition(tp(42, 0), LogConfig::default())?;
    // A follower's log: appended as replicated batches, high watermark behind.
    let leader = store.create_partition(tp(42, 1), LogConfig::default())?;
    for b in [
        txn_batch(1, 0, 2), // 0..=1
        simple(1, 3),       // 2
        marker(1, 0, false),
        txn_batch(2, 0, 1), // 4
    ] {
        leader.append_blocking(b, opts())?;
    }
    let all: Vec<Bytes> = leader.read(0, usize::MAX, i64::MAX)?;
    for b in all {
        log.append_replicated_blocking(b)?;
    }
    log.set_high_watermark(2)?;
    assert_eq!(log.open_transaction(2), Some(4));
    assert_eq!(
        log.last_stable_offset(),
        0,
        "producer 1's marker is above the HW"
    );
    assert_eq!(log.aborted_transactions(0, 5)?.len(), 1);
    // The new leader never had the marker nor producer 2's batch.
    assert_eq!(log.truncate_to(3)?, 3);
    assert_eq!(log.open_transaction(2), None, "its first batch is gone");
    assert_eq!(
        log.open_transaction(1),
        Some(0),
        "its marker is gone: open again"
    );
    assert_eq!(log.aborted_transactions(0, 5)?, vec![]);
    assert_eq!(log.producer(1)?.and_then(|p| p.ongoing_txn), Some(0));
    // And it stays so across a reopen.
    drop((log, leader));
    store.flush()?;
    drop(store);
    let store = open(dir.path())?;
    let log = store.partition(tp(42, 0)).expect("partition");
    assert_eq!(log.open_transaction(1), Some(0));
    assert_eq!(log.open_transaction(2), None);
    Ok(())
}
