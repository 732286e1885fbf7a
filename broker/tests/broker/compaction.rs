//! Compacted topics (`cleanup.policy=compact`) against `rafka-node` processes, through clients no
//! one here wrote: confluent-kafka's admin client creates and alters them
//! (IncrementalAlterConfigs, DescribeConfigs), its producer writes keyed updates and tombstones,
//! its consumer reads back; the `rafka` CLI does the same over the mesh. The log cleaner runs in
//! the node with a short backoff, so the tests wait (with a deadline) for what cleaning must
//! lead to: only the latest record per key outside the active segment, at the offset it was
//! written at, tombstones gone after `delete.retention.ms`, and on a three-node cluster the same
//! latest value per key on every replica; and 110 MiB of superseded values cleaned away give the
//! node's data directory back, measured on disk.
//!
//! Each test skips with a message when confluent-kafka is missing, and fails instead when
//! `RAFKA_REQUIRE_EXTERNAL_CLIENTS=1` (CI).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::cluster::ProcessCluster;
use crate::support::process::NodeProcess;
use crate::support::run::{confluent_kafka_available, rafka, run};
use crate::support::wait_until_blocking;

const TIMEOUT: Duration = Duration::from_secs(300);
/// How long cleaning may take to show, under the load of a shared CI machine.
const CLEANED: Duration = Duration::from_secs(120);
/// The cleaner looks for dirty logs this often when idle (Kafka waits 15 s).
const CLEANER_FLAGS: &[&str] = &["--log-cleaner-backoff-ms", "100"];

const KEYS: usize = 100;
const VERSIONS: usize = 200;
const TOMBSTONED: usize = 10;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/compaction.py")
}

/// Runs compaction.py; its stdout is one JSON object.
fn python(args: &[&str]) -> Value {
    let mut command = Command::new("python3");
    command.arg(script()).args(args);
    let out = run(command, b"", TIMEOUT);
    let stdout = out.ok();
    serde_json::from_slice(&stdout).unwrap_or_else(|e| panic!("compaction.py {args:?}: {e}"))
}

/// The topic configs of a small compacted log that is cleaned as soon as it can be.
fn compacted_configs(delete_retention_ms: u64) -> Vec<String> {
    vec![
        "cleanup.policy=compact".into(),
        "segment.bytes=16384".into(),
        "min.cleanable.dirty.ratio=0.01".into(),
        format!("delete.retention.ms={delete_retention_ms}"),
    ]
}

fn create(bootstrap: &str, topic: &str, configs: &[String], replication_factor: i32) {
    let rf = replication_factor.to_string();
    let mut args = vec!["create", bootstrap, topic];
    args.extend(configs.iter().map(String::as_str));
    args.extend(["--replication-factor", &rf]);
    let created = python(&args);
    assert_eq!(created["error"], Value::Null, "create {topic}");
}

/// A record as delivered or read: key, value (`None`: a tombstone), offset.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rec {
    key: Option<String>,
    value: Option<String>,
    offset: i64,
}

fn recs(rows: &Value) -> Vec<Rec> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| Rec {
            key: r[0].as_str().map(str::to_string),
            value: r[1].as_str().map(str::to_string),
            offset: r[2].as_i64().unwrap(),
        })
        .collect()
}

/// Produces `versions` rounds over `keys` keys named `<prefix>-<k>`, then tombstones for the
/// first `tombstones`; returns the deliveries (all must succeed).
fn produce(
    bootstrap: &str,
    topic: &str,
    prefix: &str,
    keys: usize,
    versions: usize,
    tombstones: usize,
) -> Vec<Rec> {
    let report = python(&[
        "produce",
        bootstrap,
        topic,
        "--prefix",
        prefix,
        "--keys",
        &keys.to_string(),
        "--versions",
        &versions.to_string(),
        "--tombstones",
        &tombstones.to_string(),
    ]);
    assert_eq!(report["errors"], Value::Array(vec![]), "produce to {topic}");
    let delivered = recs(&report["delivered"]);
    assert_eq!(delivered.len(), keys * versions + tombstones);
    delivered
}

/// Partition 0 read by the stock consumer from `from` (the beginning if `None`) up to the high
/// watermark, as `[offset, key, value]` rows.
fn read(bootstrap: &str, topic: &str, from: Option<i64>) -> Vec<Rec> {
    read_as(bootstrap, topic, from, "read_committed")
}

/// [`read`] with the consumer's `isolation.level`.
fn read_as(bootstrap: &str, topic: &str, from: Option<i64>, isolation: &str) -> Vec<Rec> {
    let from = from.map(|o| o.to_string());
    let mut args = vec!["read", bootstrap, topic, "--isolation", isolation];
    if let Some(from) = &from {
        args.extend(["--from", from]);
    }
    let report = python(&args);
    assert_eq!(report["errors"], Value::Array(vec![]), "read {topic}");
    report["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Rec {
            offset: r[0].as_i64().unwrap(),
            key: r[1].as_str().map(str::to_string),
            value: r[2].as_str().map(str::to_string),
        })
        .collect()
}

/// The latest delivery per key.
fn latest(delivered: &[Rec]) -> BTreeMap<String, Rec> {
    let mut latest = BTreeMap::new();
    for r in delivered {
        latest.insert(r.key.clone().unwrap(), r.clone());
    }
    latest
}

/// What a read shows of cleaning: `Err` says what is not cleaned yet. `below` is the first
/// offset that may still be in the active segment; `tombstones_gone` whether tombstoned keys
/// must have gone entirely.
fn cleaned(
    got: &[Rec],
    delivered: &[Rec],
    below: i64,
    tombstones_gone: bool,
) -> Result<(), String> {
    // Offsets strictly increase, and every record is the one delivered at its offset.
    let by_offset: BTreeMap<i64, &Rec> = delivered.iter().map(|r| (r.offset, r)).collect();
    for w in got.windows(2) {
        assert!(
            w[0].offset < w[1].offset,
            "offsets {} then {}",
            w[0].offset,
            w[1].offset
        );
    }
    for r in got {
        assert_eq!(by_offset.get(&r.offset), Some(&r), "record at {}", r.offset);
    }
    // Each key's latest record is there (a tombstone may go).
    let latest = latest(delivered);
    for (key, last) in &latest {
        if last.value.is_some() {
            assert!(
                got.contains(last),
                "{key}'s latest record {last:?} is missing"
            );
        }
    }
    let old: Vec<&Rec> = got
        .iter()
        .filter(|r| r.offset < below && latest[r.key.as_ref().unwrap()].offset != r.offset)
        .collect();
    if !old.is_empty() {
        return Err(format!(
            "{} superseded records below offset {below} (first at {})",
            old.len(),
            old[0].offset
        ));
    }
    if tombstones_gone {
        let left: Vec<&Rec> = got.iter().filter(|r| r.value.is_none()).collect();
        if !left.is_empty() {
            return Err(format!("{} tombstones still there", left.len()));
        }
    }
    Ok(())
}

/// The offsets of `delivered` that a read no longer shows: compacted away.
fn removed_offsets(got: &[Rec], delivered: &[Rec]) -> Vec<i64> {
    let present: BTreeSet<i64> = got.iter().map(|r| r.offset).collect();
    delivered
        .iter()
        .map(|r| r.offset)
        .filter(|o| !present.contains(o))
        .collect()
}

#[test]
fn stock_clients_read_a_compacted_topic_with_only_the_latest_value_per_key() {
    if !confluent_kafka_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&dir.path().join("node"), CLEANER_FLAGS);
    let bootstrap = node.ready.kafka.to_string();
    let topic = "changelog";
    create(&bootstrap, topic, &compacted_configs(10_000), 1);
    let mut delivered = produce(&bootstrap, topic, "key", KEYS, VERSIONS, TOMBSTONED);
    // More updates of other keys push the tombstones out of the active segment.
    let fillers = produce(&bootstrap, topic, "filler", 20, 100, 0);
    let below = fillers[0].offset;
    delivered.extend(fillers);

    // First cleanings: one record per key below the fillers, tombstones kept (KIP-534: they
    // stay delete.retention.ms after the first cleaning that saw them).
    let got = wait_until_blocking(CLEANED, "the first cleaning of the changelog", || {
        let got = read(&bootstrap, topic, None);
        cleaned(&got, &delivered, below, false).map(|()| got)
    });
    let tombstones = got.iter().filter(|r| r.value.is_none()).count();
    eprintln!(
        "cleaned: {} of {} records left, {tombstones} tombstones",
        got.len(),
        delivered.len()
    );
    assert!(
        got.len() < delivered.len() / 4,
        "cleaning removed most records"
    );

    // A fetch at an offset that was compacted away returns the next record there is. Cleaning
    // may go on meanwhile (tombstones reach their horizon), removing records and never adding
    // any: the read from the gap lies between full reads taken just before and just after it.
    let removed = removed_offsets(&got, &delivered);
    assert!(!removed.is_empty());
    let offsets_after = |recs: Vec<Rec>, gap: i64| -> BTreeSet<i64> {
        recs.iter().map(|r| r.offset).filter(|o| *o > gap).collect()
    };
    for gap in [removed[removed.len() / 2], removed[removed.len() - 1]] {
        let before = offsets_after(read(&bootstrap, topic, None), gap);
        let from_gap = read(&bootstrap, topic, Some(gap));
        let after = offsets_after(read(&bootstrap, topic, None), gap);
        let first = from_gap.first().map(|r| r.offset);
        assert!(
            first.is_some_and(|f| f > gap),
            "fetch from compacted-away offset {gap} starts at {first:?}"
        );
        let read_from_gap = offsets_after(from_gap, gap);
        assert!(
            after.is_subset(&read_from_gap) && read_from_gap.is_subset(&before),
            "fetch from compacted-away offset {gap}: {} records, {} before, {} after",
            read_from_gap.len(),
            before.len(),
            after.len()
        );
    }

    // delete.retention.ms later, a second cleaning removes the tombstones.
    wait_until_blocking(CLEANED, "the tombstones to go", || {
        cleaned(&read(&bootstrap, topic, None), &delivered, below, true)
    });
    let metrics = node.http_get("/metrics").unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("rafka_log_cleaner_cleanings{")
                && l.contains("topic=\"changelog\"")
                && !l.ends_with(" 0")),
        "cleaner metrics: {metrics}"
    );
}

#[test]
fn the_admin_client_alters_a_topic_to_compact_and_keyless_records_are_refused() {
    if !confluent_kafka_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&dir.path().join("node"), CLEANER_FLAGS);
    let bootstrap = node.ready.kafka.to_string();
    let topic = "events";
    create(&bootstrap, topic, &["segment.bytes=16384".to_string()], 1);

    // A bad value is refused with INVALID_CONFIG, and nothing changes.
    let refused = python(&[
        "alter",
        &bootstrap,
        topic,
        "set:min.cleanable.dirty.ratio=2",
    ]);
    let error = refused["error"].as_str().unwrap_or_default();
    assert!(error.contains("INVALID_CONFIG"), "{refused}");
    assert_eq!(refused["configs"]["cleanup.policy"][0], "delete");

    // APPEND turns delete into delete,compact; DescribeConfigs shows the override.
    let altered = python(&[
        "alter",
        &bootstrap,
        topic,
        "append:cleanup.policy=compact",
        "set:min.cleanable.dirty.ratio=0.01",
    ]);
    assert_eq!(altered["error"], Value::Null, "{altered}");
    assert_eq!(altered["configs"]["cleanup.policy"][0], "delete,compact");
    assert_eq!(
        altered["configs"]["cleanup.policy"][1], false,
        "not a default"
    );
    assert_eq!(altered["configs"]["min.cleanable.dirty.ratio"][0], "0.01");

    // Records without a key are refused (INVALID_RECORD), as Kafka refuses them.
    let keyless = python(&[
        "produce",
        &bootstrap,
        topic,
        "--keys",
        "0",
        "--versions",
        "0",
        "--keyless",
        "1",
    ]);
    let errors = keyless["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{keyless}");
    assert!(
        errors[0].as_str().unwrap().contains("INVALID_RECORD"),
        "{keyless}"
    );

    let mut delivered = produce(&bootstrap, topic, "key", 20, 50, 0);
    let fillers = produce(&bootstrap, topic, "filler", 10, 200, 0);
    let below = fillers[0].offset;
    delivered.extend(fillers);
    wait_until_blocking(CLEANED, "the altered topic to be cleaned", || {
        cleaned(&read(&bootstrap, topic, None), &delivered, below, false)
    });

    // SUBTRACT back to compact only; DELETE the ratio override: its default shows again.
    let altered = python(&[
        "alter",
        &bootstrap,
        topic,
        "subtract:cleanup.policy=delete",
        "delete:min.cleanable.dirty.ratio",
    ]);
    assert_eq!(altered["error"], Value::Null, "{altered}");
    assert_eq!(altered["configs"]["cleanup.policy"][0], "compact");
    assert_eq!(altered["configs"]["min.cleanable.dirty.ratio"][1], true);

    // AlterConfigs replaces the whole set: segment.bytes, not named, is back to its default.
    let replaced = python(&[
        "replace",
        &bootstrap,
        topic,
        "cleanup.policy=compact,delete",
    ]);
    assert_eq!(replaced["error"], Value::Null, "{replaced}");
    assert_eq!(replaced["configs"]["cleanup.policy"][0], "compact,delete");
    assert_eq!(replaced["configs"]["segment.bytes"][1], true, "{replaced}");
}

/// A transactional producer (confluent-kafka) on a compacted topic: transaction A writes every
/// key and commits, B overwrites every key and aborts, C overwrites half of them and commits.
/// Kafka's cleaner removes aborted data (it never enters the key index, so B does not shadow A)
/// and compacts committed data like any other, so once cleaned both read_committed and
/// read_uncommitted consumers see exactly one record per key, C's or else A's, at the offset it
/// was written at, and nothing of B.
#[test]
fn a_transactional_producer_on_a_compacted_topic_leaves_the_latest_committed_value_per_key() {
    if !confluent_kafka_available() {
        return;
    }
    const TXN_KEYS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let mut flags = CLEANER_FLAGS.to_vec();
    flags.extend([
        "--transaction-state-partitions",
        "4",
        "--offsets-topic-partitions",
        "4",
    ]);
    let node = NodeProcess::start(&dir.path().join("node"), &flags);
    let bootstrap = node.ready.kafka.to_string();
    let topic = "txn-changelog";
    create(&bootstrap, topic, &compacted_configs(1_000), 1);

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/txn.py");
    let mut command = Command::new("python3");
    let keys = TXN_KEYS.to_string();
    command
        .arg(script)
        .args([bootstrap.as_str(), "compacted", topic, keys.as_str()]);
    let stdout = run(command, b"", TIMEOUT).ok();
    let report: Value =
        serde_json::from_slice(&stdout).unwrap_or_else(|e| panic!("txn.py: not JSON ({e})"));
    assert_eq!(report["errors"], Value::Array(vec![]), "{report}");
    let rows = report["delivered"].as_array().unwrap();
    let outcome = |r: &Value| r[3].as_str().unwrap().to_string();
    let delivered: Vec<(Rec, String)> = rows
        .iter()
        .map(|r| {
            let rec = Rec {
                key: r[0].as_str().map(str::to_string),
                value: r[1].as_str().map(str::to_string),
                offset: r[2].as_i64().unwrap(),
            };
            (rec, outcome(r))
        })
        .collect();
    let count = |o: &str| delivered.iter().filter(|(_, x)| x == o).count();
    assert_eq!(count("committed"), TXN_KEYS + TXN_KEYS / 2);
    assert_eq!(count("aborted"), TXN_KEYS);
    assert_eq!(count("plain"), 20 * 50);

    // What Kafka's cleaner leaves of the transactions: each key's latest committed record.
    let mut expected: BTreeMap<String, Rec> = BTreeMap::new();
    for (rec, o) in &delivered {
        if o == "committed" {
            expected.insert(rec.key.clone().unwrap(), rec.clone());
        }
    }
    for i in 0..TXN_KEYS {
        let want = if i < TXN_KEYS / 2 { "C" } else { "A" };
        assert_eq!(
            expected[&format!("k-{i}")].value.as_deref(),
            Some(format!("{want}-{i}").as_str())
        );
    }
    let by_offset: BTreeMap<i64, &(Rec, String)> =
        delivered.iter().map(|d| (d.0.offset, d)).collect();
    let plain: Vec<Rec> = delivered
        .iter()
        .filter(|(_, o)| o == "plain")
        .map(|(r, _)| r.clone())
        .collect();
    let latest_plain = latest(&plain);
    for isolation in ["read_committed", "read_uncommitted"] {
        let got = wait_until_blocking(
            CLEANED,
            &format!("{isolation} to see the cleaned log"),
            || {
                let got = read_as(&bootstrap, topic, None, isolation);
                // Whatever is read is what was delivered at that offset, in offset order, and
                // never aborted data for read_committed.
                for w in got.windows(2) {
                    assert!(w[0].offset < w[1].offset, "{isolation}: offsets {w:?}");
                }
                for r in &got {
                    let (rec, o) = by_offset
                        .get(&r.offset)
                        .unwrap_or_else(|| panic!("{isolation}: {r:?} was never delivered"));
                    assert_eq!(rec, r, "{isolation}: record at {}", r.offset);
                    assert!(
                        o != "aborted" || isolation == "read_uncommitted",
                        "read_committed sees aborted {r:?}"
                    );
                }
                for last in latest_plain.values() {
                    assert!(got.contains(last), "{isolation}: {last:?} missing");
                }
                let txn: BTreeMap<String, Rec> = got
                    .iter()
                    .filter(|r| r.key.as_deref().is_some_and(|k| k.starts_with("k-")))
                    .map(|r| (r.key.clone().unwrap(), r.clone()))
                    .collect();
                let per_key = got
                    .iter()
                    .filter(|r| r.key.as_deref().is_some_and(|k| k.starts_with("k-")))
                    .count();
                if txn == expected && per_key == TXN_KEYS {
                    Ok(got)
                } else {
                    Err(format!(
                        "{per_key} transactional records for {} keys, {} as expected",
                        txn.len(),
                        txn.iter()
                            .filter(|(k, r)| expected.get(*k) == Some(*r))
                            .count()
                    ))
                }
            },
        );
        eprintln!(
            "{isolation}: {} records left of {}",
            got.len(),
            delivered.len()
        );
    }
}

/// The `rafka` CLI over the mesh.
fn cli(node: &NodeProcess, args: &[&str]) -> String {
    let mut all = vec!["--bootstrap", &node.ready.p2p];
    all.extend_from_slice(args);
    String::from_utf8(run(rafka(&all), b"", TIMEOUT).ok()).unwrap()
}

#[test]
fn the_cli_creates_alters_and_describes_compacted_topics_over_the_mesh() {
    if !confluent_kafka_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&dir.path().join("node"), CLEANER_FLAGS);
    let bootstrap = node.ready.kafka.to_string();
    let topic = "state";
    cli(
        &node,
        &[
            "topic",
            "create",
            topic,
            "--partitions",
            "1",
            "--config",
            "cleanup.policy=compact",
            "--config",
            "segment.bytes=16384",
        ],
    );
    let described = cli(&node, &["topic", "describe", topic]);
    assert!(described.contains("cleanup.policy=compact"), "{described}");
    assert!(
        !described.contains("min.cleanable.dirty.ratio"),
        "{described}"
    );
    let altered = cli(
        &node,
        &[
            "topic",
            "alter-config",
            topic,
            "--set",
            "min.cleanable.dirty.ratio=0.01",
        ],
    );
    assert!(altered.contains("Altered"), "{altered}");
    let described = cli(&node, &["topic", "describe", topic]);
    assert!(
        described.contains("min.cleanable.dirty.ratio=0.01"),
        "{described}"
    );
    // A refused change fails the command and names the reason.
    let mut all = vec!["--bootstrap", node.ready.p2p.as_str()];
    all.extend([
        "topic",
        "alter-config",
        topic,
        "--set",
        "rafka.compaction.strategy=newest",
    ]);
    let refused = run(rafka(&all), b"", TIMEOUT);
    assert!(!refused.status.success());
    assert!(
        refused
            .stderr_text()
            .contains("keep-latest, time-window or hybrid"),
        "{}",
        refused.stderr_text()
    );

    // Written and read back by the CLI too: keyed lines, one partition, so the i-th line gets
    // offset i; updates of 20 keys, then other keys to fill the active segment.
    let mut delivered: Vec<Rec> = Vec::new();
    let mut lines = String::new();
    for (prefix, keys, versions) in [("key", 20, 50), ("filler", 10, 200)] {
        for version in 0..versions {
            for k in 0..keys {
                let key = format!("{prefix}-{k}");
                let value = format!("{key}@{version}");
                lines.push_str(&format!("{key}:{value}\n"));
                let offset = i64::try_from(delivered.len()).unwrap();
                delivered.push(Rec {
                    key: Some(key),
                    value: Some(value),
                    offset,
                });
            }
        }
    }
    let below = 20 * 50;
    let mut all = vec!["--bootstrap", node.ready.p2p.as_str()];
    all.extend(["produce", topic, "--key-separator", ":"]);
    run(rafka(&all), lines.as_bytes(), TIMEOUT).ok();
    let read_cli = || {
        let out = cli(
            &node,
            &[
                "consume",
                topic,
                "--from-beginning",
                "--format",
                "%o %k %v\\n",
                "--timeout-ms",
                "3000",
            ],
        );
        out.lines()
            .map(|l| {
                let mut f = l.splitn(3, ' ');
                let offset = f.next().unwrap().parse().unwrap();
                let key = f.next().map(str::to_string);
                let value = f.next().map(str::to_string);
                Rec { key, value, offset }
            })
            .collect::<Vec<_>>()
    };
    wait_until_blocking(CLEANED, "the CLI's topic to be cleaned", || {
        cleaned(&read_cli(), &delivered, below, false)
    });
    // The stock consumer sees the same cleaned part (the rest may still be cleaned meanwhile).
    let cleaned_part =
        |recs: Vec<Rec>| -> Vec<Rec> { recs.into_iter().filter(|r| r.offset < below).collect() };
    assert_eq!(
        cleaned_part(read(&bootstrap, topic, None)),
        cleaned_part(read_cli())
    );
}

/// Every record of the partition log holding `prefix` keys in the store at `data_dir`, read
/// with the node stopped: `(offset, key, value)`.
fn replica_records(data_dir: &Path) -> Vec<Rec> {
    let mut config = rafka_store::StoreConfig::new(data_dir.join("partitions"));
    config.cleaner_threads = 0;
    let store = rafka_store::Store::open(config).unwrap();
    let mut found = Vec::new();
    for log in store.partitions() {
        let mut records = Vec::new();
        let mut next = log.log_start_offset();
        while next < log.log_end_offset() {
            let batches = log.read(next, 1 << 20, i64::MAX).unwrap();
            let Some(last) = batches.last() else { break };
            next = rafka_format::batch::BatchHeader::parse(last)
                .unwrap()
                .last_offset()
                .unwrap()
                + 1;
            for batch in &batches {
                let header = rafka_format::batch::BatchHeader::parse(batch).unwrap();
                for r in rafka_format::records::Records::new(batch, &header).unwrap() {
                    let r = r.unwrap();
                    let text =
                        |b: Option<bytes::Bytes>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
                    records.push(Rec {
                        key: text(r.key),
                        value: text(r.value),
                        offset: r.offset,
                    });
                }
            }
        }
        if records
            .iter()
            .any(|r| r.key.as_deref().is_some_and(|k| k.starts_with("key-")))
        {
            found.push(records);
        }
    }
    assert_eq!(
        found.len(),
        1,
        "one replica of the topic in {}",
        data_dir.display()
    );
    found.pop().unwrap()
}

#[test]
fn replicas_of_a_compacted_topic_clean_independently_and_agree_on_the_latest_values() {
    if !confluent_kafka_available() {
        return;
    }
    let mut cluster = ProcessCluster::start(3, CLEANER_FLAGS);
    cluster.wait_registered(Duration::from_secs(60));
    let bootstrap = cluster.node(0).ready.kafka.to_string();
    let topic = "replicated-changelog";
    create(&bootstrap, topic, &compacted_configs(1_000), 3);
    let mut delivered = produce(&bootstrap, topic, "key", KEYS, 100, TOMBSTONED);
    let fillers = produce(&bootstrap, topic, "filler", 20, 100, 0);
    delivered.extend(fillers);
    let end = delivered.iter().map(|r| r.offset).max().unwrap() + 1;

    // Every replica's own cleaner runs: each node's metrics show cleanings of the partition.
    for i in 0..3 {
        wait_until_blocking(CLEANED, &format!("node {i} to clean its replica"), || {
            let metrics = cluster.node(i).http_get("/metrics").unwrap_or_default();
            metrics.lines().any(|l| {
                l.starts_with("rafka_log_cleaner_cleanings{")
                    && l.contains(topic)
                    && !l.ends_with(" 0")
            })
        });
    }
    // Killed, not stopped: what each replica holds durably is what is compared.
    for i in 0..3 {
        cluster.kill(i);
    }
    let expected = latest(&delivered);
    for (i, dir) in cluster.dirs.iter().enumerate() {
        let records = replica_records(dir);
        for w in records.windows(2) {
            assert!(
                w[0].offset < w[1].offset,
                "node {i}: offsets {} then {}",
                w[0].offset,
                w[1].offset
            );
        }
        assert!(
            records.len() < delivered.len(),
            "node {i} cleaned its replica"
        );
        // The latest value per key below the common offset `end` (a tombstone and a key that is
        // gone both mean deleted).
        let below: Vec<Rec> = records.iter().filter(|r| r.offset < end).cloned().collect();
        let mut view: BTreeMap<String, Option<String>> = BTreeMap::new();
        for r in &below {
            view.insert(r.key.clone().unwrap(), r.value.clone());
        }
        for (key, last) in &expected {
            let got = view.get(key).cloned().flatten();
            assert_eq!(got, last.value, "node {i}: latest value of {key}");
        }
        assert!(
            view.keys().all(|k| expected.contains_key(k)),
            "node {i}: no unknown keys"
        );
    }
}

/// Bytes of the files under `path`.
fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

const MIB: u64 = 1024 * 1024;

#[test]
fn superseded_values_cleaned_away_give_the_data_directory_back() {
    if !confluent_kafka_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let node = NodeProcess::start(&data, CLEANER_FLAGS);
    let bootstrap = node.ready.kafka.to_string();
    let topic = "snapshots";
    let configs = [
        "cleanup.policy=compact".to_string(),
        format!("segment.bytes={}", 4 * MIB),
        "min.cleanable.dirty.ratio=0.5".to_string(),
    ];
    create(&bootstrap, topic, &configs, 1);
    let empty = dir_bytes(&data);
    // 110 MiB of incompressible 100 KiB values over 10 keys: all but the last of each key
    // superseded.
    let report = python(&[
        "fill",
        &bootstrap,
        topic,
        "--keys",
        "10",
        "--mib",
        "110",
        "--value-bytes",
        "102400",
    ]);
    assert_eq!(report["errors"], Value::Array(vec![]), "fill {topic}");
    let written = report["bytes"].as_u64().unwrap();
    assert!(written >= 110 * MIB, "{report}");
    let filled = dir_bytes(&data);
    eprintln!(
        "data directory: {} MiB empty, {} MiB after {} MiB of values",
        empty / MIB,
        filled / MIB,
        written / MIB
    );
    // What must remain: each key's latest value and the active segment (4 MiB), plus the
    // metadata and journal tails. Everything superseded gives its space back, measured on
    // disk, without restarting the node.
    let bound = empty + 24 * MIB;
    let after = wait_until_blocking(CLEANED, "the data directory to shrink", || {
        let now = dir_bytes(&data);
        if now < bound {
            Ok(now)
        } else {
            Err(format!("{} MiB on disk", now / MIB))
        }
    });
    eprintln!("data directory after cleaning: {} MiB", after / MIB);
    // Every key's latest value is still there.
    let latest: BTreeMap<String, i64> = serde_json::from_value(report["latest"].clone()).unwrap();
    assert_eq!(latest.len(), 10);
    let got = read(&bootstrap, topic, None);
    for (key, offset) in &latest {
        assert!(
            got.iter()
                .any(|r| r.offset == *offset && r.key.as_deref() == Some(key.as_str())),
            "{key}'s latest record at {offset} is missing"
        );
    }
}
