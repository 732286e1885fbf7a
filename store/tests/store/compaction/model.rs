//! Property test: after every cleaning the log holds exactly the records a simple model of the
//! strategy says, over random keys, values, tombstones, timestamps, batch shapes and codecs,
//! across three cleanings (the second after more appends, the third past every delete
//! horizon).
//!
//! The model, written from the definitions (docs/storage.md) and nothing of the cleaner: for
//! a cleaning at `now` of the offsets below `clean_end`, let W be every record ever appended
//! below `clean_end` (removed or not). A key's latest record is its highest offset in W; its
//! latest in a window is its highest offset in W among records whose `floor(ts / window)` is
//! the same. A present record below `clean_end` survives unless its key is deleted (its latest
//! record is a tombstone whose batch got a delete horizon in an earlier cleaning, and `now` has
//! reached it) or the strategy drops it: keep-latest keeps a key's latest record, time-window
//! its latest per window, hybrid decides records older than `now - history` as keep-latest and
//! newer ones as time-window. After the cleaning, every batch that still holds a tombstone
//! below `clean_end` and has no delete horizon gets `now + delete.retention.ms`.

use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};

#[derive(Clone, Debug)]
struct In {
    key: u8,
    tombstone: bool,
    ts: i64,
}

#[derive(Clone, Debug)]
struct Case {
    strategy: CompactionStrategy,
    first: Vec<Vec<In>>,
    second: Vec<Vec<In>>,
    now: i64,
    later: i64,
    retention: i64,
    compression: Compression,
}

fn strategy() -> impl Strategy<Value = CompactionStrategy> {
    prop_oneof![
        Just(CompactionStrategy::KeepLatest),
        (50..3_000i64).prop_map(|window_ms| CompactionStrategy::TimeWindow { window_ms }),
        (50..3_000i64, 0..10_000i64).prop_map(|(window_ms, history_ms)| {
            CompactionStrategy::Hybrid {
                window_ms,
                history_ms,
            }
        }),
    ]
}

fn batches() -> impl Strategy<Value = Vec<Vec<In>>> {
    let record = (0..6u8, prop::bool::weighted(0.15), 0..10_000i64)
        .prop_map(|(key, tombstone, ts)| In { key, tombstone, ts });
    prop::collection::vec(prop::collection::vec(record, 1..6), 1..60)
}

fn case() -> impl Strategy<Value = Case> {
    let codec = prop_oneof![
        Just(Compression::None),
        Just(Compression::Lz4),
        Just(Compression::Zstd)
    ];
    (
        strategy(),
        batches(),
        batches(),
        2_000..15_000i64,
        0..8_000i64,
        0..5_000i64,
        codec,
    )
        .prop_map(
            |(strategy, first, second, now, later, retention, compression)| Case {
                strategy,
                first,
                second,
                now,
                later,
                retention,
                compression,
            },
        )
}

/// A record as compared: offset, key, value, timestamp.
type Row = (i64, Vec<u8>, Option<Vec<u8>>, i64);

#[derive(Clone, Debug)]
struct MRec {
    batch: usize,
    key: u8,
    value: Option<String>,
    ts: i64,
}

#[derive(Default)]
struct Model {
    /// Every record ever appended, by offset.
    all: BTreeMap<i64, MRec>,
    present: BTreeMap<i64, ()>,
    horizon: HashMap<usize, i64>,
    batches: usize,
}

impl Model {
    fn append(&mut self, base: i64, batch: &[In]) {
        let id = self.batches;
        self.batches += 1;
        for (i, r) in batch.iter().enumerate() {
            let offset = base + i as i64;
            let value = (!r.tombstone).then(|| format!("v{offset}"));
            self.all.insert(
                offset,
                MRec {
                    batch: id,
                    key: r.key,
                    value,
                    ts: r.ts,
                },
            );
            self.present.insert(offset, ());
        }
    }

    fn clean(&mut self, s: &CompactionStrategy, now: i64, retention: i64, clean_end: i64) {
        let window = |ts: i64| s.window_ms().map(|w| ts.div_euclid(w));
        let mut latest: HashMap<u8, i64> = HashMap::new();
        let mut in_window: HashMap<(u8, Option<i64>), i64> = HashMap::new();
        for (offset, r) in self.all.range(..clean_end) {
            latest.insert(r.key, *offset);
            in_window.insert((r.key, window(r.ts)), *offset);
        }
        let cleanable: Vec<i64> = self.present.range(..clean_end).map(|(o, _)| *o).collect();
        for offset in cleanable {
            let r = &self.all[&offset];
            let l = &self.all[&latest[&r.key]];
            let deleted =
                l.value.is_none() && self.horizon.get(&l.batch).is_some_and(|h| now >= *h);
            let keep_latest = latest[&r.key] == offset;
            let keep_window = in_window[&(r.key, window(r.ts))] == offset;
            let keep = !deleted
                && match *s {
                    CompactionStrategy::KeepLatest => keep_latest,
                    CompactionStrategy::TimeWindow { .. } => keep_window,
                    CompactionStrategy::Hybrid { history_ms, .. } => {
                        if r.ts < now - history_ms {
                            keep_latest
                        } else {
                            keep_window
                        }
                    }
                };
            if !keep {
                self.present.remove(&offset);
            }
        }
        for (offset, _) in self.present.range(..clean_end) {
            let r = &self.all[offset];
            if r.value.is_none() {
                self.horizon.entry(r.batch).or_insert(now + retention);
            }
        }
    }

    fn expected(&self) -> Vec<Row> {
        self.present
            .keys()
            .map(|o| {
                let r = &self.all[o];
                let key = format!("key{}", r.key).into_bytes();
                (*o, key, r.value.clone().map(String::into_bytes), r.ts)
            })
            .collect()
    }
}

fn append_all(
    log: &PartitionLog,
    model: &mut Model,
    batches: &[Vec<In>],
    codec: Compression,
) -> anyhow::Result<()> {
    for b in batches {
        let base = log.log_end_offset();
        let recs: Vec<Rec> = b
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let value = (!r.tombstone).then(|| format!("v{}", base + i as i64));
                Rec::new(&format!("key{}", r.key), value.as_deref(), r.ts)
            })
            .collect();
        log.append_blocking(keyed_batch(&recs, BatchIdentity::NONE, codec), opts())?;
        model.append(base, b);
    }
    log.set_high_watermark(log.log_end_offset())?;
    Ok(())
}

fn got(log: &PartitionLog) -> anyhow::Result<Vec<Row>> {
    Ok(records_of(log)?
        .into_iter()
        .map(|g| {
            (
                g.offset,
                g.key.unwrap_or_default().to_vec(),
                g.value.map(|v| v.to_vec()),
                g.ts,
            )
        })
        .collect())
}

/// One store for every case (opening one costs more than a case), a partition per case.
fn store() -> &'static (tempfile::TempDir, rafka_store::Store) {
    static STORE: std::sync::OnceLock<(tempfile::TempDir, rafka_store::Store)> =
        std::sync::OnceLock::new();
    STORE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(dir.path()).expect("store");
        (dir, store)
    })
}

fn run(c: &Case) -> anyhow::Result<()> {
    static CASE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
    let (_, store) = store();
    let mut cfg = compacted(4096, c.strategy);
    cfg.compaction.delete_retention_ms = c.retention;
    let n = CASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log = store.create_partition(tp(90, n), cfg)?;
    let mut model = Model::default();
    let nows = [c.now, c.now + c.later, c.now + c.later + c.retention];
    for (round, now) in nows.into_iter().enumerate() {
        match round {
            0 => append_all(&log, &mut model, &c.first, c.compression)?,
            1 => append_all(&log, &mut model, &c.second, c.compression)?,
            _ => {}
        }
        if let Some(report) = log.clean(now)? {
            model.clean(&c.strategy, now, c.retention, report.clean_end);
        }
        let got = got(&log)?;
        let want = model.expected();
        if got != want {
            anyhow::bail!("after cleaning {round} at {now}:\n got {got:?}\nwant {want:?}");
        }
    }
    store.delete_partition(log.topic_partition())?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn cleanings_keep_exactly_what_each_strategy_defines(c in case()) {
        if let Err(e) = run(&c) {
            prop_assert!(false, "{e:#}");
        }
    }
}
