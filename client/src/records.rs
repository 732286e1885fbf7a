//! RecordBatch v2 for the client: encoding the producer's batches and decoding fetched ones. The
//! format itself (header layout, record encoding, CRC) is `rafka_format`, shared with the broker.
//!
//! - [`BatchBuilder`]: the producer writes each record straight into its batch buffer; the
//!   header and CRC are filled once when the batch is sent.
//! - [`decode_records`]: splits a fetched byte range into whole batches (a fetch may end in a
//!   partial batch, which is not an error), checks each batch's header and CRC-32C (as Kafka
//!   consumers do with `check.crcs=true`), decompresses, and turns the records into
//!   [`ConsumerRecord`]s whose keys and values are slices of the fetched buffer (no copy).
//!   Control batches and records below the requested offset are skipped.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::Compression;
use rafka_format::batch::{BatchHeader, HEADER_LEN, check_batch};
use rafka_format::builder::BuildError;
use rafka_format::records::Records;

use crate::error::{Error, Result};

pub use rafka_format::batch::BatchIdentity;
pub use rafka_format::builder::{self, BatchBuilder, RecordParts};

impl From<BuildError> for Error {
    fn from(e: BuildError) -> Self {
        Error::protocol(e)
    }
}

/// One record to encode into a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutgoingRecord {
    /// Key (`None` = null key).
    pub key: Option<Bytes>,
    /// Value (`None` = tombstone).
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Create time in ms since the epoch.
    pub timestamp: i64,
}

impl OutgoingRecord {
    /// An upper bound of the record's encoded size, used for batch sizing.
    pub fn estimated_size(&self) -> usize {
        self.parts().estimated_size()
    }
}

/// Encodes `records` as one RecordBatch v2 with offsets 0..n (the broker assigns real ones).
pub fn encode_batch(
    records: &[OutgoingRecord],
    identity: BatchIdentity,
    compression: Compression,
) -> Result<Bytes> {
    let estimate: usize = records.iter().map(OutgoingRecord::estimated_size).sum();
    let mut batch = BatchBuilder::with_capacity(HEADER_LEN + estimate);
    for r in records {
        batch.append(r.timestamp, &r.parts())?;
    }
    Ok(batch.build(identity, compression)?)
}

impl OutgoingRecord {
    /// The record's key, value and headers, borrowed for a [`BatchBuilder`].
    pub fn parts(&self) -> RecordParts<'_> {
        RecordParts {
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            headers: &self.headers,
        }
    }
}

/// A record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition index.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Timestamp in ms.
    pub timestamp: i64,
    /// Whether the timestamp is the broker's append time.
    pub log_append_time: bool,
    /// Key (`None` = null).
    pub key: Option<Bytes>,
    /// Value (`None` = tombstone).
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// The records of one fetched partition, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodedRecords {
    /// Data records at or above the requested offset, in offset order.
    pub records: Vec<ConsumerRecord>,
    /// The offset after the last whole batch seen (control batches included), if any.
    pub next_offset: Option<i64>,
}

/// Decodes the batches of one partition's fetched bytes.
///
/// A trailing partial batch is ignored (the broker cuts at `max_bytes`). Records below
/// `fetch_offset` (the head of the first batch) and control batches are skipped.
pub fn decode_records(
    topic: &Arc<str>,
    partition: i32,
    fetch_offset: i64,
    data: Bytes,
) -> Result<DecodedRecords> {
    decode_committed(topic, partition, fetch_offset, data, &[])
}

/// [`decode_records`] for a read_committed fetch: the transactional batches of the aborted
/// transactions the broker listed (producer id, first offset) are skipped too, as Kafka's
/// consumer does: a producer's batches are dropped from its aborted transaction's first offset
/// until its next control batch (the abort marker).
pub fn decode_committed(
    topic: &Arc<str>,
    partition: i32,
    fetch_offset: i64,
    mut data: Bytes,
    aborted: &[(i64, i64)],
) -> Result<DecodedRecords> {
    let mut pending: Vec<(i64, i64)> = aborted.to_vec();
    pending.sort_by_key(|&(_, first)| std::cmp::Reverse(first));
    let mut aborting: Vec<i64> = Vec::new();
    let mut out = DecodedRecords::default();
    while data.len() >= HEADER_LEN {
        let corrupt = |offset: i64, reason: String| Error::CorruptRecord {
            topic: topic.to_string(),
            partition,
            offset,
            reason,
        };
        let len = BatchHeader::parse(&data)
            .map_err(|e| corrupt(fetch_offset, e.to_string()))?
            .total_len()
            .unwrap_or(usize::MAX);
        if len > data.len() {
            break;
        }
        let batch = data.split_to(len);
        let header = check_batch(&batch).map_err(|e| {
            let at = BatchHeader::parse(&batch).map_or(fetch_offset, |h| h.base_offset);
            corrupt(at, e.to_string())
        })?;
        let last = header.last_offset().unwrap_or(i64::MAX);
        out.next_offset = Some(last.saturating_add(1));
        while pending.last().is_some_and(|&(_, first)| first <= last) {
            aborting.extend(pending.pop().map(|(pid, _)| pid));
        }
        let pid = header.producer_id;
        if header.is_control() {
            // The marker ends the producer's transaction.
            aborting.retain(|p| *p != pid);
            continue;
        }
        if last < fetch_offset || (header.is_transactional() && aborting.contains(&pid)) {
            continue; // wholly below the position, or aborted
        }
        let at = header.base_offset;
        let log_append_time = header.is_log_append_time();
        let records = Records::new(&batch, &header).map_err(|e| corrupt(at, e.to_string()))?;
        out.records.reserve(records.size_hint().0);
        for record in records {
            let record = record.map_err(|e| corrupt(at, e.to_string()))?;
            if record.offset >= fetch_offset {
                out.records.push(ConsumerRecord {
                    topic: topic.clone(),
                    partition,
                    offset: record.offset,
                    timestamp: record.timestamp,
                    log_append_time,
                    key: record.key,
                    value: record.value,
                    headers: record.headers,
                });
            }
        }
    }
    Ok(out)
}

/// Parses a compression name as Kafka spells it (`none`, `gzip`, `snappy`, `lz4`, `zstd`).
pub fn parse_compression(name: &str) -> Result<Compression> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => {
            return Err(Error::Config(format!(
                "unknown compression {other:?} (none, gzip, snappy, lz4, zstd)"
            )));
        }
    })
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
