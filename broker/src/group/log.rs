//! The coordinator's side of an offsets partition's log: records appended as acks=all writes
//! through the partition's [`Leader`](crate::partition::Leader), and the replay that rebuilds
//! a partition's groups when this node starts leading it.
//!
//! Appends are pipelined: [`append`] queues the batch before it returns (the leader keeps call
//! order) and its future waits for the in-sync replicas on its own, so nothing is held across
//! the wait and commits to one partition overlap.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use rafka_format::batch::BatchIdentity;
use rafka_format::builder::{BatchBuilder, RecordParts};
use rafka_store::batch::BatchHeader;
use rafka_store::{PartitionLog, ProducedBatch, StoreError};

use super::OFFSETS_TOPIC;
use super::core::ResponseError;
use super::records::{Format, Record};
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
    let batch = encode_batch(&encoded, now_ms).map_err(|e| {
        tracing::warn!(error = %e, "cannot encode group records");
        ResponseError::UnknownServerError
    })?;
    let batch = ProducedBatch::parse(batch).map_err(|e| {
        tracing::warn!(error = %e, "cannot parse group records");
        ResponseError::UnknownServerError
    })?;
    let appending = leader
        .append(batch, now_ms, Acks::All, COMMIT_TIMEOUT)
        .map_err(|e| replication_error(&e))?;
    Ok(async move {
        match appending.await {
            Ok(appended) => Ok(appended.base_offset),
            Err(AppendError::Replica(e)) => Err(replication_error(&e)),
            Err(AppendError::Store(e)) => {
                tracing::warn!(error = %e, "group records not written");
                Err(ResponseError::CoordinatorNotAvailable)
            }
        }
    })
}

/// The error a coordinator answers for a failed replicated write.
fn replication_error(e: &ReplicaError) -> ResponseError {
    match e {
        ReplicaError::NotLeaderOrFollower => ResponseError::NotCoordinator,
        _ => ResponseError::CoordinatorNotAvailable,
    }
}

fn corrupt(reason: String) -> StoreError {
    StoreError::CorruptValue {
        keyspace: OFFSETS_TOPIC,
        reason,
    }
}

fn encode_batch(records: &[(Bytes, Option<Bytes>)], now_ms: i64) -> Result<Bytes, StoreError> {
    let mut builder = BatchBuilder::with_capacity(0);
    for (key, value) in records {
        let parts = RecordParts {
            key: Some(key),
            value: value.as_deref(),
            headers: &[],
        };
        builder
            .append(now_ms, &parts)
            .map_err(|e| corrupt(format!("cannot encode group records: {e}")))?;
    }
    builder
        .build(BatchIdentity::NONE, Compression::None)
        .map_err(|e| corrupt(format!("cannot encode group records: {e}")))
}

/// Reads one offsets partition from its log start: every record of either format, with its
/// offset, in log order.
pub fn replay(log: &PartitionLog) -> Result<Vec<(i64, Record)>, StoreError> {
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
                        .ok_or_else(|| corrupt(format!("unreadable record batch: {e}")))?;
                    tracing::warn!(offset, error = %e, "skipping undecodable offsets batch");
                    offset = offset.max(last + 1);
                    continue;
                }
            };
            for record in sets.into_iter().flat_map(|set| set.records) {
                offset = offset.max(record.offset + 1);
                let decoded = record
                    .key
                    .as_deref()
                    .and_then(|key| Record::decode(key, record.value.as_deref()));
                match decoded {
                    Some(decoded) => out.push((record.offset, decoded)),
                    None => {
                        tracing::warn!(offset = record.offset, "skipping unreadable offsets record")
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
        let batch = encode_batch(&records, 1_700_000_000_000).unwrap();
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
