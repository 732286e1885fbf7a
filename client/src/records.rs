//! RecordBatch v2: encoding the producer's batches and decoding fetched ones.
//!
//! Encoding and decoding are `kafka-protocol`'s ([`RecordBatchEncoder`], [`RecordBatchDecoder`]).
//! This module adds what a client needs around them: splitting a fetched byte range into whole
//! batches (a fetch may end in a partial batch, which is not an error), verifying each batch's
//! CRC-32C with a typed error, refusing record counts the bytes cannot hold (the decoder
//! pre-allocates by count), skipping control batches, and dropping records below the requested
//! offset.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{self as cmpr, Decompressor};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::error::{Error, Result};

mod guard;

/// Size of the RecordBatch v2 header.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Smallest possible encoded record (length, attributes, deltas, key, value, header count).
const MIN_RECORD_BYTES: usize = 7;

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
        let len = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + len(v) + 10)
            .sum();
        len(&self.key) + len(&self.value) + headers + 5 + 1 + 10 + 5 + 5 + 5 + 5
    }
}

/// Producer identity stamped on a batch (`-1`s when not idempotent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchIdentity {
    /// Producer id or -1.
    pub producer_id: i64,
    /// Producer epoch or -1.
    pub producer_epoch: i16,
    /// Base sequence or -1.
    pub base_sequence: i32,
}

impl BatchIdentity {
    /// No producer id: not idempotent.
    pub const NONE: BatchIdentity = BatchIdentity {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };
}

/// Encodes `records` as one RecordBatch v2 with offsets 0..n (the broker assigns real ones).
pub fn encode_batch(
    records: &[OutgoingRecord],
    identity: BatchIdentity,
    compression: Compression,
) -> Result<Bytes> {
    let wire: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let i = i32::try_from(i).unwrap_or(i32::MAX);
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: identity.producer_id,
                producer_epoch: identity.producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i64::from(i),
                // The encoder keeps (offset - sequence) constant within a batch and derives the
                // base sequence from the first record; the broker wraps sequences itself.
                sequence: identity.base_sequence.wrapping_add(i),
                timestamp: r.timestamp,
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r
                    .headers
                    .iter()
                    .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                    .collect::<IndexMap<_, _>>(),
            }
        })
        .collect();
    let estimate: usize = records.iter().map(OutgoingRecord::estimated_size).sum();
    let mut buf = BytesMut::with_capacity(BATCH_HEADER_BYTES + estimate);
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &wire, &options)
        .map_err(|e| Error::protocol(format!("encode record batch: {e}")))?;
    Ok(buf.freeze())
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

/// Fields of a batch header the client looks at, read without trusting the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchHeader {
    base_offset: i64,
    total_len: usize,
    magic: i8,
    crc: u32,
    attributes: i16,
    last_offset_delta: i32,
    record_count: i32,
}

fn be<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at + N)?.try_into().ok()
}

fn read_header(buf: &[u8]) -> Option<BatchHeader> {
    let len = i32::from_be_bytes(be(buf, 8)?);
    Some(BatchHeader {
        base_offset: i64::from_be_bytes(be(buf, 0)?),
        total_len: 12 + usize::try_from(len).ok()?,
        magic: i8::from_be_bytes(be(buf, 16)?),
        crc: u32::from_be_bytes(be(buf, 17)?),
        attributes: i16::from_be_bytes(be(buf, 21)?),
        last_offset_delta: i32::from_be_bytes(be(buf, 23)?),
        record_count: i32::from_be_bytes(be(buf, 57)?),
    })
}

/// Decodes the batches of one partition's fetched bytes.
///
/// A trailing partial batch is ignored (the broker cuts at `max_bytes`). Records below
/// `fetch_offset` (the head of the first batch) and control batches are skipped.
pub fn decode_records(
    topic: &Arc<str>,
    partition: i32,
    fetch_offset: i64,
    mut data: Bytes,
) -> Result<DecodedRecords> {
    let mut out = DecodedRecords::default();
    while data.len() >= BATCH_HEADER_BYTES {
        let corrupt = |offset: i64, reason: String| Error::CorruptRecord {
            topic: topic.to_string(),
            partition,
            offset,
            reason,
        };
        let header = read_header(&data)
            .ok_or_else(|| corrupt(fetch_offset, "negative batch length".into()))?;
        if header.total_len > data.len() {
            break;
        }
        let batch = data.split_to(header.total_len);
        let at = header.base_offset;
        if header.magic != 2 {
            return Err(corrupt(
                at,
                format!("unsupported message format v{}", header.magic),
            ));
        }
        let covered = batch.get(21..).unwrap_or_default();
        if crc32c::crc32c(covered) != header.crc {
            return Err(corrupt(at, "CRC-32C mismatch".into()));
        }
        let last = at.saturating_add(i64::from(header.last_offset_delta));
        out.next_offset = Some(last.saturating_add(1));
        if header.attributes & (1 << 5) != 0 || last < fetch_offset {
            continue; // control batch (transaction marker), or wholly below the position
        }
        decode_batch(
            topic,
            partition,
            fetch_offset,
            header,
            batch,
            &mut out.records,
        )
        .map_err(|reason| corrupt(at, reason))?;
    }
    Ok(out)
}

fn decode_batch(
    topic: &Arc<str>,
    partition: i32,
    fetch_offset: i64,
    header: BatchHeader,
    mut batch: Bytes,
    into: &mut Vec<ConsumerRecord>,
) -> std::result::Result<(), String> {
    let count = usize::try_from(header.record_count).map_err(|_| "negative record count")?;
    let body_len = header.total_len.saturating_sub(BATCH_HEADER_BYTES);
    let compressed = header.attributes & 0x7 != 0;
    if !compressed && count.saturating_mul(MIN_RECORD_BYTES) > body_len {
        return Err(format!("{count} records cannot fit in {body_len} bytes"));
    }
    let decompress = move |buf: &mut Bytes, c: Compression| -> anyhow::Result<Bytes> {
        let raw = decompress(buf, c)?;
        guard::check_records(&raw, count).map_err(anyhow::Error::msg)?;
        Ok(raw)
    };
    // The guard bounds every count the decoder allocates by; catch_unwind turns any remaining
    // decoder panic into an error instead of taking the consumer down.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        RecordBatchDecoder::decode_with_custom_compression(&mut batch, Some(decompress))
    }));
    let set = decoded
        .map_err(|_| "the record decoder panicked".to_owned())?
        .map_err(|e| e.to_string())?;
    into.reserve(set.records.len());
    for r in set.records {
        if r.offset < fetch_offset {
            continue;
        }
        into.push(ConsumerRecord {
            topic: topic.clone(),
            partition,
            offset: r.offset,
            timestamp: r.timestamp,
            log_append_time: r.timestamp_type == TimestampType::LogAppend,
            key: r.key,
            value: r.value,
            headers: r
                .headers
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        });
    }
    Ok(())
}

fn decompress(buf: &mut Bytes, compression: Compression) -> anyhow::Result<Bytes> {
    let take = |b: &mut Bytes| Ok(b.split_off(0));
    match compression {
        Compression::None => Ok(buf.split_off(0)),
        Compression::Gzip => cmpr::Gzip::decompress(buf, take),
        Compression::Snappy => cmpr::Snappy::decompress(buf, take),
        Compression::Lz4 => cmpr::Lz4::decompress(buf, take),
        Compression::Zstd => cmpr::Zstd::decompress(buf, take),
    }
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
