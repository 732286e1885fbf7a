//! Kafka's compaction (keep-latest) through the store: what survives, what a reader sees, and
//! that it all holds after a reopen.

use super::*;
use rafka_store::{AppendOptions, CleanupPolicy, Store, StoreError};
use std::collections::HashMap;

const KEYS: usize = 10;
const VERSIONS: usize = 30;

/// `KEYS` keys x `VERSIONS` versions, one record per batch, value "k<key>-v<version>".
fn fill(log: &PartitionLog, versions: std::ops::Range<usize>) -> anyhow::Result<()> {
    for v in versions {
        for k in 0..KEYS {
            let rec = Rec::new(
                &format!("k{k}"),
                Some(&format!("k{k}-v{v}")),
                1_000 + v as i64,
            );
            log.append_blocking(plain(&[rec]), opts())?;
        }
    }
    log.set_high_watermark(log.log_end_offset())?;
    Ok(())
}

/// The latest value of each key among records below `end`, from what was written.
fn latest_below(end: i64) -> HashMap<String, (i64, String)> {
    let mut out = HashMap::new();
    for v in 0..VERSIONS {
        for k in 0..KEYS {
            let offset = (v * KEYS + k) as i64;
            if offset < end {
                out.insert(format!("k{k}"), (offset, format!("k{k}-v{v}")));
            }
        }
    }
    out
}

/// `n` records of keys that appear nowhere else, then the high watermark at the end.
fn filler(log: &PartitionLog, n: usize) -> anyhow::Result<()> {
    for i in 0..n {
        log.append_blocking(
            plain(&[Rec::new(&format!("filler{i}"), Some("f"), 3_000)]),
            opts(),
        )?;
    }
    log.set_high_watermark(log.log_end_offset())?;
    Ok(())
}

fn key_str(g: &Got) -> String {
    String::from_utf8_lossy(g.key.as_deref().unwrap_or_default()).into_owned()
}

#[test]
fn only_each_keys_latest_record_survives_below_the_active_segment() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let log = store.create_partition(tp(80, 0), compacted(1024, CompactionStrategy::KeepLatest))?;
    fill(&log, 0..VERSIONS)?;
    let end = log.log_end_offset();
    let size_before = log.size_bytes();
    let report = log.clean(10_000)?.expect("something to clean");
    assert!(report.clean_end > 0 && report.clean_end < end, "{report:?}");
    assert!(log.size_bytes() < size_before);
    let check = |log: &PartitionLog| -> anyhow::Result<()> {
        let got = records_of(log)?;
        assert_increasing(&got);
        let expected = latest_below(report.clean_end);
        let cleaned: Vec<&Got> = got.iter().filter(|g| g.offset < report.clean_end).collect();
        assert_eq!(
            cleaned.len(),
            KEYS,
            "one record per key below the cleaned end"
        );
        for g in cleaned {
            let (offset, value) = &expected[&key_str(g)];
            assert_eq!(
                (g.offset, g.value.as_deref()),
                (*offset, Some(value.as_bytes()))
            );
        }
        // Everything from the cleaned end on is untouched.
        let rest: Vec<i64> = got
            .iter()
            .map(|g| g.offset)
            .filter(|o| *o >= report.clean_end)
            .collect();
        assert_eq!(rest, (report.clean_end..end).collect::<Vec<_>>());
        Ok(())
    };
    check(&log)?;
    // A fetch at an offset that was compacted away gets the next batch that survives.
    let gone = (0..report.clean_end)
        .find(|o| !latest_below(report.clean_end).values().any(|(x, _)| x == o))
        .expect("a removed offset");
    let batches = log.read(gone, 1 << 20, i64::MAX)?;
    let first = check_batch(&batches[0])?;
    assert!(first.base_offset > gone, "the batch after the gap");
    // A second cleaning with nothing new dirty changes nothing.
    let again = log.clean(10_000)?;
    assert!(
        again.as_ref().is_none_or(|r| r.records_removed == 0),
        "{again:?}"
    );
    // All of it after a reopen (the cleaned segments are found by their generations).
    drop(log);
    drop(store);
    let store = open(dir.path())?;
    let log = store.partition(tp(80, 0)).expect("partition");
    assert_eq!(log.log_end_offset(), end);
    check(&log)?;
    Ok(())
}

#[test]
fn nothing_at_or_above_the_high_watermark_is_cleaned() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let log = store.create_partition(tp(80, 1), compacted(1024, CompactionStrategy::KeepLatest))?;
    fill(&log, 0..VERSIONS)?;
    log.set_high_watermark(100)?;
    let report = log.clean(10_000)?.expect("cleaned");
    assert!(report.clean_end <= 100, "{report:?}");
    let got = records_of(&log)?;
    let kept_from = got.iter().filter(|g| g.offset >= 100).count();
    assert_eq!(kept_from as i64, log.log_end_offset() - 100);
    // With the high watermark at the start of the log nothing is cleanable.
    let other =
        store.create_partition(tp(80, 2), compacted(1024, CompactionStrategy::KeepLatest))?;
    fill(&other, 0..5)?;
    other.set_high_watermark(0)?;
    assert_eq!(other.clean(10_000)?, None);
    Ok(())
}

#[test]
fn a_tombstone_goes_two_cleanings_after_its_delete_horizon() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let mut cfg = compacted(1024, CompactionStrategy::KeepLatest);
    cfg.compaction.delete_retention_ms = 5_000;
    let log = store.create_partition(tp(81, 0), cfg)?;
    fill(&log, 0..5)?;
    log.append_blocking(plain(&[Rec::new("k3", None, 2_000)]), opts())?;
    filler(&log, 50)?; // other keys after the tombstone, so it lies in a sealed segment
    let tomb = 50;
    let report = log.clean(10_000)?.expect("cleaned");
    assert!(report.clean_end > tomb);
    let has = |log: &PartitionLog, key: &str| -> anyhow::Result<Vec<Got>> {
        Ok(records_of(log)?
            .into_iter()
            .filter(|g| g.offset < report.clean_end && key_str(g) == key)
            .collect())
    };
    let k3 = has(&log, "k3")?;
    assert_eq!(k3.len(), 1);
    assert_eq!(
        (k3[0].offset, k3[0].value.clone()),
        (tomb, None),
        "the tombstone stays"
    );
    // Its batch now carries the delete horizon (first cleaning + delete.retention.ms).
    let batch = log.read(tomb, 1, i64::MAX)?;
    assert_eq!(check_batch(&batch[0])?.delete_horizon_ms(), Some(15_000));
    // Before the horizon a cleaning keeps it; at the horizon it goes, and k3 is gone.
    log.clean(14_999)?;
    assert_eq!(has(&log, "k3")?.len(), 1);
    log.clean(15_000)?;
    assert!(has(&log, "k3")?.is_empty(), "the tombstone went");
    assert_eq!(has(&log, "k4")?.len(), 1);
    Ok(())
}

#[test]
fn keys_are_required_and_keyless_records_go_when_a_topic_turns_compacted() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let log = store.create_partition(tp(82, 0), small_segments(1024))?;
    let keyless = Rec {
        key: None,
        value: Some(b"no key".to_vec()),
        ts: 1_000,
    };
    for i in 0..40 {
        log.append_blocking(
            plain(&[keyless.clone(), Rec::new("k", Some(&i.to_string()), 1_000)]),
            opts(),
        )?;
    }
    log.set_high_watermark(log.log_end_offset())?;
    store.set_log_config(tp(82, 0), compacted(1024, CompactionStrategy::KeepLatest))?;
    // New keyless records are refused (INVALID_RECORD), as Kafka refuses them.
    let err = log
        .append_blocking(plain(std::slice::from_ref(&keyless)), opts())
        .expect_err("keyless record on a compacted topic");
    assert!(matches!(err, StoreError::InvalidRecord { .. }), "{err}");
    assert_eq!(err.kafka_code(), 87);
    let compressed = keyed_batch(
        &[Rec::new("a", Some("x"), 1), keyless],
        BatchIdentity::NONE,
        Compression::Zstd,
    );
    assert_eq!(
        log.append_blocking(compressed, opts())
            .expect_err("compressed too")
            .kafka_code(),
        87
    );
    // The old ones stay readable until the cleaner reaches them, then go (Kafka's cleaner
    // drops records without a key).
    assert_eq!(
        records_of(&log)?.iter().filter(|g| g.key.is_none()).count(),
        40
    );
    let report = log.clean(10_000)?.expect("cleaned");
    let got = records_of(&log)?;
    assert!(
        got.iter()
            .all(|g| g.key.is_some() || g.offset >= report.clean_end)
    );
    assert_eq!(
        got.iter().filter(|g| g.offset < report.clean_end).count(),
        1
    );
    // Back to delete: nothing is cleaned any more.
    store.set_log_config(
        tp(82, 0),
        LogConfig {
            cleanup: CleanupPolicy::DELETE,
            ..small_segments(1024)
        },
    )?;
    assert_eq!(log.clean(10_000)?, None);
    Ok(())
}

#[test]
fn a_producers_last_batch_stays_and_its_retries_are_still_duplicates() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let log = store.create_partition(tp(83, 0), compacted(1024, CompactionStrategy::KeepLatest))?;
    let idem = |seq: i32, key: &str| {
        let identity = BatchIdentity {
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: seq,
        };
        keyed_batch(
            &[Rec::new(key, Some("v"), 1_000)],
            identity,
            Compression::None,
        )
    };
    for seq in 0..20 {
        log.append_blocking(idem(seq, "same"), opts())?;
    }
    let last = log.append_blocking(idem(20, "same"), opts())?;
    // Another producer's records after it, so the idempotent ones are all in sealed segments.
    for i in 0..40 {
        log.append_blocking(
            plain(&[Rec::new("same", Some(&i.to_string()), 2_000)]),
            opts(),
        )?;
    }
    log.set_high_watermark(log.log_end_offset())?;
    let report = log.clean(10_000)?.expect("cleaned");
    assert!(report.clean_end > last.last_offset, "{report:?}");
    // The producer's last batch is still there, without records, with its sequences.
    let kept = log.read(last.base_offset, 1, i64::MAX)?;
    let h = check_batch(&kept[0])?;
    assert_eq!(
        (
            h.base_offset,
            h.record_count,
            h.producer_id,
            h.base_sequence
        ),
        (20, 0, 7, 20)
    );
    // A retry of it is still answered as a duplicate with its original offsets.
    let retry = log.append_blocking(idem(20, "same"), opts())?;
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, last.base_offset);
    assert!(log.append_blocking(idem(21, "other"), opts()).is_ok());
    Ok(())
}

#[test]
fn a_follower_replicates_across_the_gaps_of_a_cleaned_leader() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let leader =
        store.create_partition(tp(84, 0), compacted(1024, CompactionStrategy::KeepLatest))?;
    fill(&leader, 0..VERSIONS)?;
    leader.clean(10_000)?.expect("cleaned");
    let follower =
        store.create_partition(tp(84, 1), compacted(1024, CompactionStrategy::KeepLatest))?;
    while follower.log_end_offset() < leader.log_end_offset() {
        let fetched = leader
            .read(follower.log_end_offset(), 4096, i64::MAX)?
            .concat();
        follower.append_replicated_blocking(fetched.into())?;
    }
    assert_eq!(records_of(&follower)?, records_of(&leader)?);
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    // Going back is still refused.
    let again = leader.read(0, 4096, i64::MAX)?.concat();
    assert_eq!(
        follower
            .append_replicated_blocking(again.into())
            .expect_err("back")
            .kafka_code(),
        87
    );
    Ok(())
}

#[test]
fn a_truncation_below_what_was_cleaned_starts_the_key_index_over() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let log = store.create_partition(tp(85, 0), compacted(1024, CompactionStrategy::KeepLatest))?;
    fill(&log, 0..VERSIONS)?;
    let first = log.clean(10_000)?.expect("cleaned");
    // Cut below the cleaned end: the index knew records that are gone now.
    let cut = first.clean_end - 25;
    let end = log.truncate_to(cut)?;
    // New values for a few keys, then more filler to seal them.
    for i in 0..3 {
        log.append_blocking(
            plain(&[Rec::new(&format!("k{i}"), Some("after"), 5_000)]),
            AppendOptions {
                leader_epoch: 1,
                now_ms: 1,
            },
        )?;
    }
    filler(&log, 30)?;
    let before = records_of(&log)?;
    let second = log.clean(20_000)?.expect("cleaned again");
    assert_eq!(second.first_dirty, log.log_start_offset(), "from scratch");
    // Below the cleaned end, exactly each key's latest record of the log as it was.
    let mut want: HashMap<String, Got> = HashMap::new();
    for g in before.iter().filter(|g| g.offset < second.clean_end) {
        want.insert(key_str(g), g.clone());
    }
    let mut want: Vec<Got> = want.into_values().collect();
    want.sort_by_key(|g| g.offset);
    let got: Vec<Got> = records_of(&log)?
        .into_iter()
        .filter(|g| g.offset < second.clean_end)
        .collect();
    assert_eq!(got, want);
    assert!(
        got.iter()
            .any(|g| g.offset >= end && g.value.as_deref() == Some(b"after"))
    );
    Ok(())
}

#[test]
fn cleaner_threads_clean_a_dirty_log_by_themselves() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(rafka_store::StoreConfig {
        cleaner_threads: 1,
        cleaner_backoff_ms: 20,
        ..config(dir.path())
    })?;
    let mut cfg = compacted(1024, CompactionStrategy::KeepLatest);
    cfg.compaction.min_cleanable_dirty_ratio = 0.1;
    let log = store.create_partition(tp(86, 0), cfg)?;
    fill(&log, 0..VERSIONS)?;
    let cleaned = wait_until(std::time::Duration::from_secs(30), || {
        log.cleaner_state(rafka_store_now()).cleanings > 0
    });
    assert!(
        cleaned,
        "no cleaning: {:?}",
        log.cleaner_state(rafka_store_now())
    );
    let state = log.cleaner_state(rafka_store_now());
    assert!(
        state.records_removed > 0 && state.last_clean_ms > 0,
        "{state:?}"
    );
    assert!(state.dirty_ratio < 0.1, "{state:?}");
    Ok(())
}

fn rafka_store_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
