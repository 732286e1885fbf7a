//! Transactions in a compacted log, cleaned as Kafka's cleaner does: aborted data goes and never
//! counts as a key's latest record; a marker stays while data of its transaction is left, then
//! gets a delete horizon, and goes once it has passed, its aborted-transactions index entry
//! with it.

use super::*;
use rafka_format::marker::EndTxnMarker;
use rafka_store::{CompactionConfig, Store};

/// Producer `pid`'s batch of `recs` from sequence `seq`, transactional or not.
fn produced(pid: i64, seq: i32, transactional: bool, recs: &[Rec]) -> Bytes {
    let identity = BatchIdentity {
        producer_id: pid,
        producer_epoch: 0,
        base_sequence: seq,
    };
    batch_with(
        recs,
        BatchOptions {
            transactional,
            ..BatchOptions::new(identity, Compression::None)
        },
    )
}

fn marker(pid: i64, commit: bool) -> Bytes {
    EndTxnMarker {
        commit,
        coordinator_epoch: 1,
    }
    .batch(pid, 0, 1_000)
    .expect("marker")
}

/// The control batches of the log: (base offset, delete horizon).
fn markers(log: &PartitionLog) -> anyhow::Result<Vec<(i64, Option<i64>)>> {
    let mut out = Vec::new();
    for batch in read_all(log)? {
        let h = check_batch(&batch)?;
        if h.is_control() {
            out.push((h.base_offset, h.delete_horizon_ms()));
        }
    }
    Ok(out)
}

/// Key and value of every data record below `end`.
fn data_below(log: &PartitionLog, end: i64) -> anyhow::Result<Vec<(i64, String, String)>> {
    let mut out = Vec::new();
    for batch in read_all(log)? {
        let h = check_batch(&batch)?;
        if h.is_control() || h.base_offset >= end {
            continue;
        }
        for r in Records::new(&batch, &h)? {
            let r = r?;
            let text =
                |b: Option<Bytes>| String::from_utf8_lossy(&b.unwrap_or_default()).into_owned();
            out.push((r.offset, text(r.key), text(r.value)));
        }
    }
    Ok(out)
}

#[test]
fn aborted_data_goes_and_markers_go_after_their_transaction_and_horizon() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(config(dir.path()))?;
    let log_config = LogConfig {
        compaction: CompactionConfig {
            delete_retention_ms: 1_000,
            ..CompactionConfig::default()
        },
        ..compacted(1024, CompactionStrategy::KeepLatest)
    };
    let log = store.create_partition(tp(91, 0), log_config)?;
    let at = |key: &str, value: &str| Rec::new(key, Some(value), 1_000);
    let append = |batch: Bytes| log.append_blocking(batch, opts());
    append(plain(&[at("d", "d1")]))?; // 0
    append(produced(7, 0, true, &[at("a", "a1"), at("b", "b1")]))?; // 1..=2
    append(produced(
        8,
        0,
        true,
        &[at("d", "d-aborted"), at("c", "c-aborted")],
    ))?; // 3..=4
    append(marker(7, true))?; // 5: commit
    append(marker(8, false))?; // 6: abort
    append(plain(&[at("a", "a2")]))?; // 7
    append(plain(&[at("b", "b2")]))?; // 8
    // Later batches of both producers, so their transactional ones are not their last.
    append(produced(7, 2, false, &[at("p7", "x")]))?; // 9
    append(produced(8, 2, false, &[at("p8", "y")]))?; // 10
    for i in 0..40 {
        append(plain(&[at(&format!("filler{i}"), "f")]))?;
    }
    log.set_high_watermark(log.log_end_offset())?;
    assert_eq!(log.last_stable_offset(), log.high_watermark());
    let aborted = |log: &PartitionLog| -> anyhow::Result<Vec<(i64, i64)>> {
        Ok(log
            .aborted_transactions(0, log.high_watermark())?
            .iter()
            .map(|a| (a.producer_id, a.last_offset))
            .collect())
    };
    assert_eq!(aborted(&log)?, [(8, 6)]);

    // First cleaning: the aborted batch goes, and its "d" never was d's latest record; the
    // committed batch goes as superseded. Both markers stay: this cleaning met their data.
    let report = log.clean(10_000)?.expect("cleaned");
    assert!(report.clean_end > 10, "{report:?}");
    let data = data_below(&log, 11)?;
    let expected: Vec<(i64, String, String)> = [
        (0, "d", "d1"),
        (7, "a", "a2"),
        (8, "b", "b2"),
        (9, "p7", "x"),
        (10, "p8", "y"),
    ]
    .into_iter()
    .map(|(o, k, v)| (o, k.to_string(), v.to_string()))
    .collect();
    assert_eq!(data, expected);
    assert_eq!(markers(&log)?, [(5, None), (6, None)]);
    assert_eq!(aborted(&log)?, [(8, 6)], "its marker is there");

    // Second cleaning: no data of either transaction is left; the markers get a horizon.
    log.clean(20_000)?.expect("cleaned");
    assert_eq!(markers(&log)?, [(5, Some(21_000)), (6, Some(21_000))]);
    assert_eq!(data_below(&log, 11)?, expected);

    // Once it has passed, they go, and the abort leaves the index.
    assert!(
        log.clean_if_due(20_999)?.is_none(),
        "not due before the horizon"
    );
    log.clean_if_due(21_000)?.expect("due at the horizon");
    assert_eq!(markers(&log)?, []);
    assert_eq!(aborted(&log)?, []);
    assert_eq!(data_below(&log, 11)?, expected);

    // All of it durable.
    drop(log);
    drop(store);
    let store = Store::open(config(dir.path()))?;
    let log = store.partition(tp(91, 0)).expect("reopened");
    assert_eq!(markers(&log)?, []);
    assert_eq!(aborted(&log)?, []);
    assert_eq!(data_below(&log, 11)?, expected);
    Ok(())
}

#[test]
fn an_open_transaction_holds_the_cleaning_back_and_committed_data_is_compacted_once_decided()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(config(dir.path()))?;
    let log = store.create_partition(tp(91, 1), compacted(1024, CompactionStrategy::KeepLatest))?;
    let at = |key: &str, value: &str| Rec::new(key, Some(value), 1_000);
    let append = |batch: Bytes| log.append_blocking(batch, opts());
    for i in 0..20 {
        append(plain(&[at("k", &format!("v{i}"))]))?;
    }
    let first = append(produced(7, 0, true, &[at("k", "in-txn")]))?.base_offset;
    let filler = |from: usize| -> anyhow::Result<()> {
        for i in from..from + 40 {
            append(plain(&[at(&format!("filler{i}"), "f")]))?;
        }
        log.set_high_watermark(log.log_end_offset())?;
        Ok(())
    };
    filler(0)?;
    assert_eq!(log.last_stable_offset(), first, "the open transaction");
    let values_of_k = |log: &PartitionLog| -> anyhow::Result<Vec<(i64, String)>> {
        Ok(records_of(log)?
            .into_iter()
            .filter(|g| g.key.as_deref() == Some(b"k".as_slice()))
            .map(|g| {
                let value = String::from_utf8_lossy(&g.value.unwrap_or_default()).into_owned();
                (g.offset, value)
            })
            .collect())
    };

    // Nothing at or past the transaction's first offset is cleaned while it is open.
    let before = records_of(&log)?;
    let report = log.clean(10_000)?.expect("cleaned");
    assert!(
        report.clean_end > 0 && report.clean_end <= first,
        "{report:?}"
    );
    let after = records_of(&log)?;
    let untouched = |got: &[Got]| -> Vec<Got> {
        got.iter()
            .filter(|g| g.offset >= report.clean_end)
            .cloned()
            .collect()
    };
    assert_eq!(untouched(&after), untouched(&before));
    let below: Vec<(i64, String)> = values_of_k(&log)?
        .into_iter()
        .filter(|(o, _)| *o < report.clean_end)
        .collect();
    let last = report.clean_end - 1;
    assert_eq!(
        below,
        [(last, format!("v{last}"))],
        "k's latest below the end"
    );

    // Committed, its record is k's latest like any other and the older ones go.
    append(marker(7, true))?;
    filler(40)?;
    assert_eq!(log.last_stable_offset(), log.high_watermark());
    let report = log.clean(20_000)?.expect("cleaned");
    assert!(report.clean_end > first, "{report:?}");
    assert_eq!(values_of_k(&log)?, [(first, "in-txn".to_string())]);
    Ok(())
}
