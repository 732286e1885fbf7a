//! The coordinator's side of an offsets partition's log: records appended as acks=all writes
//! through the partition's [`Leader`](crate::partition::Leader), and the replay that rebuilds
//! a partition's groups when this node starts leading it. The transaction coordinator uses the
//! same pieces for `__transaction_state` ([`append_encoded`], [`follow_leadership`],
//! [`spawn_replay`]).
//!
//! Appends are pipelined: [`append`] queues the batch before it returns (the leader keeps call
//! order) and its future waits for the in-sync replicas on its own, so nothing is held across
//! the wait and commits to one partition overlap.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use rafka_format::batch::BatchIdentity;
use rafka_format::builder::{BatchBuilder, BatchOptions, RecordParts};
use rafka_format::marker::{ControlType, control_type};
use rafka_store::batch::BatchHeader;
use rafka_store::{PartitionLog, ProducedBatch, StoreError};
use tokio::sync::mpsc;

use super::OFFSETS_TOPIC;
use super::core::{LogEntry, ResponseError};
use super::records::{Format, Record};
use crate::ids::LeaderEpoch;
use crate::partition::core::ReplicaError;
use crate::partition::{Acks, AppendError, NodeLeader};

/// How long a write waits for the offsets partition's in-sync replicas (Kafka's
/// `offsets.commit.timeout.ms` default).
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Records per batch when writing many (snapshots, tombstones).
pub const CHUNK: usize = 1000;
/// Bytes read per step when replaying a partition.
const REPLAY_READ_BYTES: usize = 4 * 1024 * 1024;

/// Queues `records` as one acks=all batch of the partition `leader` leads; the future yields
/// the batch's base offset once every in-sync replica has it, or the Kafka error a coordinator
/// answers (NOT_COORDINATOR once this node stops leading, COORDINATOR_NOT_AVAILABLE for too few
/// in-sync replicas or a timeout, as Kafka's coordinator maps them).
pub fn append(
    leader: &Arc<NodeLeader>,
    records: &[Record],
    format: Format,
    now_ms: i64,
) -> Result<impl Future<Output = Result<i64, ResponseError>> + Send + 'static, ResponseError> {
    let encoded: Vec<(Bytes, Option<Bytes>)> =
        records.iter().filter_map(|r| r.encode(format)).collect();
    append_encoded(leader, &encoded, now_ms)
}

/// [`append`] of records already encoded as (key, value): any coordinator's records (the
/// transaction coordinator writes `__transaction_state` through it), with the same errors.
pub fn append_encoded<'a>(
    leader: &'a Arc<NodeLeader>,
    encoded: &[(Bytes, Option<Bytes>)],
    now_ms: i64,
) -> Result<
    impl Future<Output = Result<i64, ResponseError>> + Send + 'static + use<'a>,
    ResponseError,
> {
    append_batch(leader, encoded, None, now_ms)
}

/// [`append`] of a TxnOffsetCommit: the records as one transactional batch of `producer` (id,
/// epoch), base sequence -1 as Kafka's coordinator writes it (the store checks the epoch and
/// skips sequence checks for such a batch, which no client may send). The partition's store
/// opens the producer's transaction with it; its marker ends it.
pub fn append_transactional(
    leader: &Arc<NodeLeader>,
    records: &[Record],
    producer: (i64, i16),
    now_ms: i64,
) -> Result<impl Future<Output = Result<i64, ResponseError>> + Send + 'static, ResponseError> {
    let encoded: Vec<(Bytes, Option<Bytes>)> = records
        .iter()
        .filter_map(|r| r.encode(Format::Kafka))
        .collect();
    append_batch(leader, &encoded, Some(producer), now_ms)
}

fn append_batch<'a>(
    leader: &'a Arc<NodeLeader>,
    encoded: &[(Bytes, Option<Bytes>)],
    producer: Option<(i64, i16)>,
    now_ms: i64,
) -> Result<
    impl Future<Output = Result<i64, ResponseError>> + Send + 'static + use<'a>,
    ResponseError,
> {
    let tp = leader.topic_partition();
    let batch = encode_batch(encoded, producer, now_ms).map_err(|e| {
        tracing::warn!(?tp, error = %e, "cannot encode coordinator records");
        ResponseError::UnknownServerError
    })?;
    let batch = ProducedBatch::parse(batch).map_err(|e| {
        tracing::warn!(?tp, error = %e, "cannot parse coordinator records");
        ResponseError::UnknownServerError
    })?;
    let appending = leader
        .append(batch, now_ms, Acks::All, COMMIT_TIMEOUT)
        .map_err(|e| replication_error(&e))?;
    Ok(async move {
        match appending.await {
            Ok(appended) => Ok(appended.base_offset),
            Err(AppendError::Replica(e)) => Err(replication_error(&e)),
            // A transactional write of a fenced producer (or one whose transaction state the
            // partition refuses) is answered as Kafka's coordinator passes it on.
            Err(AppendError::Store(e @ StoreError::InvalidProducerEpoch { .. })) => {
                tracing::debug!(?tp, error = %e, "coordinator records refused");
                Err(ResponseError::InvalidProducerEpoch)
            }
            Err(AppendError::Store(e @ StoreError::InvalidTxnState { .. })) => {
                tracing::debug!(?tp, error = %e, "coordinator records refused");
                Err(ResponseError::InvalidTxnState)
            }
            Err(AppendError::Store(e)) => {
                tracing::warn!(?tp, error = %e, "coordinator records not written");
                Err(ResponseError::CoordinatorNotAvailable)
            }
        }
    })
}

/// The partitions a coordinator attached (served or loading), with their leader epochs.
pub type Attached = Mutex<HashMap<i32, LeaderEpoch>>;

/// Follows this node's leadership of a coordinator's partitions: `led` is every partition of its
/// topic this node leads now. Tells the coordinator's task (`tx`) to stop serving each partition
/// no longer led (or led in another epoch) with `detach`, and to start serving each newly led one
/// (or one led in a new epoch) with `attach`; `attached` records what was told.
pub async fn follow_leadership<C>(
    attached: &Attached,
    led: Vec<Arc<NodeLeader>>,
    tx: &mpsc::Sender<C>,
    detach: fn(i32) -> C,
    attach: fn(Arc<NodeLeader>) -> C,
) {
    let (dropped, added) = leadership_changes(attached, led);
    for partition in dropped {
        let _ = tx.send(detach(partition)).await;
    }
    for leader in added {
        let _ = tx.send(attach(leader)).await;
    }
}

/// Replays the partition `leader` leads on the blocking pool ([`replay_with`]) and sends the
/// records to the coordinator's task as `loaded(partition, leader epoch, records)`.
pub fn spawn_replay<T: Send + 'static, C: Send + 'static>(
    leader: &NodeLeader,
    topic: &'static str,
    decode: fn(&[u8], Option<&[u8]>) -> Option<T>,
    tx: mpsc::Sender<C>,
    loaded: fn(i32, LeaderEpoch, Vec<(i64, T)>) -> C,
) {
    let replay = move |log: &PartitionLog| replay_with(log, topic, decode);
    spawn_replay_by(leader, topic, replay, tx, loaded);
}

/// [`spawn_replay`] with the partition read by `replay` (the offsets partitions' replay, which
/// also reads transactions: [`replay_offsets`]).
pub fn spawn_replay_by<T: Send + 'static, C: Send + 'static>(
    leader: &NodeLeader,
    topic: &'static str,
    replay: impl FnOnce(&PartitionLog) -> Result<Vec<(i64, T)>, StoreError> + Send + 'static,
    tx: mpsc::Sender<C>,
    loaded: fn(i32, LeaderEpoch, Vec<(i64, T)>) -> C,
) {
    let partition = leader.topic_partition().partition;
    let epoch = leader.leader_epoch();
    let log = leader.log().clone();
    tokio::spawn(async move {
        let replayed = tokio::task::spawn_blocking(move || replay(&log)).await;
        match replayed {
            Ok(Ok(records)) => {
                let _ = tx.send(loaded(partition, epoch, records)).await;
            }
            Ok(Err(e)) => tracing::error!(topic, partition, error = %e, "cannot replay"),
            Err(e) => tracing::error!(topic, partition, error = %e, "replay task failed"),
        }
    });
}

/// The partitions to stop serving (no longer led, or led in another epoch) and the leaders to
/// start serving (newly led, or led in a new epoch); the change is recorded in `attached`.
fn leadership_changes(
    attached: &Attached,
    led: Vec<Arc<NodeLeader>>,
) -> (Vec<i32>, Vec<Arc<NodeLeader>>) {
    // Entries are inserted and removed whole: a poisoned lock still holds a consistent map.
    let mut attached = attached
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut dropped: Vec<i32> = attached
        .iter()
        .filter(|(partition, epoch)| {
            !led.iter().any(|l| {
                l.topic_partition().partition == **partition && l.leader_epoch() == **epoch
            })
        })
        .map(|(partition, _)| *partition)
        .collect();
    dropped.sort_unstable();
    for partition in &dropped {
        attached.remove(partition);
    }
    let mut added = Vec::new();
    for leader in led {
        let partition = leader.topic_partition().partition;
        let epoch = leader.leader_epoch();
        if attached.get(&partition) != Some(&epoch) {
            attached.insert(partition, epoch);
            added.push(leader);
        }
    }
    (dropped, added)
}

/// The error a coordinator answers for a failed replicated write.
fn replication_error(e: &ReplicaError) -> ResponseError {
    match e {
        ReplicaError::NotLeaderOrFollower => ResponseError::NotCoordinator,
        _ => ResponseError::CoordinatorNotAvailable,
    }
}

fn corrupt(keyspace: &'static str, reason: String) -> StoreError {
    StoreError::CorruptValue { keyspace, reason }
}

/// One batch of `records`; with `producer` (id, epoch), a transactional batch of it.
fn encode_batch(
    records: &[(Bytes, Option<Bytes>)],
    producer: Option<(i64, i16)>,
    now_ms: i64,
) -> Result<Bytes, StoreError> {
    let mut builder = BatchBuilder::with_capacity(0);
    for (key, value) in records {
        let parts = RecordParts {
            key: Some(key),
            value: value.as_deref(),
            headers: &[],
        };
        builder
            .append(now_ms, &parts)
            .map_err(|e| corrupt(OFFSETS_TOPIC, format!("cannot encode records: {e}")))?;
    }
    let options = match producer {
        None => BatchOptions::new(BatchIdentity::NONE, Compression::None),
        Some((producer_id, producer_epoch)) => {
            let identity = BatchIdentity {
                producer_id,
                producer_epoch,
                base_sequence: -1,
            };
            let mut options = BatchOptions::new(identity, Compression::None);
            options.transactional = true;
            options
        }
    };
    builder
        .finish(options)
        .map_err(|e| corrupt(OFFSETS_TOPIC, format!("cannot encode records: {e}")))
}

/// Reads a coordinator's partition of `topic` from its log start (an offsets partition: every
/// record of either format): every record `decode` reads (from its key and value), with its
/// offset, in log order; the others are skipped (logged). Transaction markers (control
/// records) are not a coordinator's records and are skipped silently.
pub fn replay_with<T>(
    log: &PartitionLog,
    topic: &'static str,
    decode: impl Fn(&[u8], Option<&[u8]>) -> Option<T>,
) -> Result<Vec<(i64, T)>, StoreError> {
    replay_records(log, topic, |record| {
        if record.control {
            return Read::Skip;
        }
        record
            .key
            .as_deref()
            .and_then(|key| decode(key, record.value.as_deref()))
            .map_or(Read::Unreadable, Read::Keep)
    })
}

/// Reads an offsets partition from its log start as [`LogEntry`]s: the records of plain
/// batches, those of transactional batches (TxnOffsetCommit) with their producer, and the
/// commit and abort markers that end the producers' transactions (control records of another
/// type are skipped, as Kafka does).
pub fn replay_offsets(log: &PartitionLog) -> Result<Vec<(i64, LogEntry)>, StoreError> {
    replay_records(log, OFFSETS_TOPIC, |r| {
        if r.control {
            return match r.key.as_deref().and_then(control_type) {
                Some(ControlType::Commit) => Read::Keep(LogEntry::Marker {
                    producer_id: r.producer_id,
                    commit: true,
                }),
                Some(ControlType::Abort) => Read::Keep(LogEntry::Marker {
                    producer_id: r.producer_id,
                    commit: false,
                }),
                Some(ControlType::Unknown(_)) => Read::Skip,
                None => Read::Unreadable,
            };
        }
        let Some(record) = r
            .key
            .as_deref()
            .and_then(|key| Record::decode(key, r.value.as_deref()))
        else {
            return Read::Unreadable;
        };
        Read::Keep(if r.transactional && r.producer_id >= 0 {
            LogEntry::Txn {
                producer_id: r.producer_id,
                record,
            }
        } else {
            LogEntry::Record(record)
        })
    })
}

/// What replay makes of one record.
enum Read<T> {
    Keep(T),
    /// Not a record of the coordinator's (a marker): skipped silently.
    Skip,
    /// Skipped with a warning.
    Unreadable,
}

fn replay_records<T>(
    log: &PartitionLog,
    topic: &'static str,
    read: impl Fn(&kafka_protocol::records::Record) -> Read<T>,
) -> Result<Vec<(i64, T)>, StoreError> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let batches = log.read(offset, REPLAY_READ_BYTES, end)?;
        if batches.is_empty() {
            break;
        }
        for batch in batches {
            let mut buf = batch.clone();
            let sets = match RecordBatchDecoder::decode_all(&mut buf) {
                Ok(sets) => sets,
                Err(e) => {
                    // The CRC held (the store checks it on read), so these bytes are what was
                    // written: not ours. Skip them rather than refuse to serve the partition.
                    let last = BatchHeader::parse(&batch)
                        .ok()
                        .and_then(|h| h.last_offset())
                        .ok_or_else(|| corrupt(topic, format!("unreadable record batch: {e}")))?;
                    tracing::warn!(topic, offset, error = %e, "skipping undecodable batch");
                    offset = offset.max(last + 1);
                    continue;
                }
            };
            for record in sets.into_iter().flat_map(|set| set.records) {
                offset = offset.max(record.offset + 1);
                match read(&record) {
                    Read::Keep(decoded) => out.push((record.offset, decoded)),
                    Read::Skip => {}
                    Read::Unreadable => {
                        tracing::warn!(topic, offset = record.offset, "skipping unreadable record")
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_of_many_records_is_one_batch() {
        let records: Vec<(Bytes, Option<Bytes>)> = (0..5)
            .map(|i| {
                (
                    Bytes::from(format!("key-{i}")),
                    Some(Bytes::from(format!("value-{i}"))),
                )
            })
            .collect();
        let batch = encode_batch(&records, None, 1_700_000_000_000).unwrap();
        let header = BatchHeader::parse(&batch).unwrap();
        assert_eq!(header.total_len(), Some(batch.len()));
        assert_eq!(header.base_sequence, -1);
        let mut buf = batch.clone();
        let sets = RecordBatchDecoder::decode_all(&mut buf).unwrap();
        assert_eq!(sets.len(), 1);
        let offsets: Vec<_> = sets[0].records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![0, 1, 2, 3, 4]);
    }
}
