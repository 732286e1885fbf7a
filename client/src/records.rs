//! RecordBatch v2: encoding the producer's batches and decoding fetched ones.
//!
//! - [`builder`]: the producer writes each record straight into its batch buffer
//!   ([`BatchBuilder`]); the header and CRC are filled once when the batch is sent.
//! - [`decode_records`]: splits a fetched byte range into whole batches (a fetch may end in a
//!   partial batch, which is not an error), verifies each batch's CRC-32C (as Kafka consumers do
//!   with `check.crcs=true`), decompresses, and walks the records into [`ConsumerRecord`]s whose
//!   keys and values are slices of the fetched buffer (no copy, no allocation per record unless
//!   it has headers). Every length and count is checked against the bytes before use; control
//!   batches and records below the requested offset are skipped.
//!
//! Compression codecs are `kafka-protocol`'s.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::compression::{self as cmpr, Decompressor};
use kafka_protocol::records::Compression;

use crate::error::{Error, Result};

pub mod builder;
mod varint;

pub use builder::{BatchBuilder, RecordParts};

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
        self.parts().estimated_size()
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
    let estimate: usize = records.iter().map(OutgoingRecord::estimated_size).sum();
    let mut batch = BatchBuilder::with_capacity(BATCH_HEADER_BYTES + estimate);
    for r in records {
        batch.append(r.timestamp, &r.parts())?;
    }
    batch.build(identity, compression)
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

/// Fields of a batch header the client looks at, read without trusting the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchHeader {
    base_offset: i64,
    total_len: usize,
    magic: i8,
    crc: u32,
    attributes: i16,
    last_offset_delta: i32,
    first_timestamp: i64,
    max_timestamp: i64,
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
        first_timestamp: i64::from_be_bytes(be(buf, 27)?),
        max_timestamp: i64::from_be_bytes(be(buf, 35)?),
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
            .filter(|h| h.total_len >= BATCH_HEADER_BYTES)
            .ok_or_else(|| corrupt(fetch_offset, "batch length below the header size".into()))?;
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
    batch: Bytes,
    into: &mut Vec<ConsumerRecord>,
) -> std::result::Result<(), String> {
    let count = usize::try_from(header.record_count).map_err(|_| "negative record count")?;
    let mut body = batch.slice(BATCH_HEADER_BYTES.min(batch.len())..);
    let raw = match header.attributes & 0x7 {
        0 => body,
        codec => {
            let compression = match codec {
                1 => Compression::Gzip,
                2 => Compression::Snappy,
                3 => Compression::Lz4,
                4 => Compression::Zstd,
                other => return Err(format!("unknown compression codec {other}")),
            };
            decompress(&mut body, compression).map_err(|e| format!("decompress: {e:#}"))?
        }
    };
    // Counts are checked against the bytes before anything is allocated by them.
    if count.saturating_mul(MIN_RECORD_BYTES) > raw.len() {
        return Err(format!("{count} records cannot fit in {} bytes", raw.len()));
    }
    let batch = BatchContext {
        topic,
        partition,
        header: &header,
        log_append_time: header.attributes & (1 << 3) != 0,
    };
    into.reserve(count);
    let mut at = 0usize;
    for i in 0..count {
        let len = varint::read(&raw, &mut at)
            .and_then(|l| usize::try_from(l).ok())
            .ok_or_else(|| format!("record {i}: bad length"))?;
        let end = at
            .checked_add(len)
            .filter(|&e| e <= raw.len())
            .ok_or_else(|| format!("record {i}: {len} bytes do not fit"))?;
        let record = batch
            .record(&raw, at, end)
            .map_err(|e| format!("record {i}: {e}"))?;
        if record.offset >= fetch_offset {
            into.push(record);
        }
        at = end;
    }
    if at != raw.len() {
        return Err(format!(
            "{} bytes after the {count} declared records",
            raw.len() - at
        ));
    }
    Ok(())
}

/// What every record of a batch shares.
struct BatchContext<'a> {
    topic: &'a Arc<str>,
    partition: i32,
    header: &'a BatchHeader,
    log_append_time: bool,
}

/// Each header needs at least a key length and a value length (one byte each).
const MIN_HEADER_BYTES: usize = 2;

impl BatchContext<'_> {
    /// Decodes the record in `raw[start..end]` (after its length prefix).
    fn record(
        &self,
        raw: &Bytes,
        start: usize,
        end: usize,
    ) -> std::result::Result<ConsumerRecord, &'static str> {
        let buf = raw.get(..end).unwrap_or_default();
        let mut at = start + 1; // attributes: unused in v2 records
        let ts_delta = varint::read(buf, &mut at).ok_or("bad timestamp delta")?;
        let offset_delta = varint::read(buf, &mut at).ok_or("bad offset delta")?;
        let offset_delta = i32::try_from(offset_delta).map_err(|_| "offset delta out of range")?;
        let key = nullable(raw, buf, &mut at).ok_or("bad key length")?;
        let value = nullable(raw, buf, &mut at).ok_or("bad value length")?;
        let count = varint::read(buf, &mut at).ok_or("bad header count")?;
        let count = usize::try_from(count).map_err(|_| "negative header count")?;
        if count.saturating_mul(MIN_HEADER_BYTES) > buf.len().saturating_sub(at) {
            return Err("more headers than bytes");
        }
        let mut headers = Vec::with_capacity(count);
        for _ in 0..count {
            let name = nullable(raw, buf, &mut at)
                .ok_or("bad header key length")?
                .ok_or("null header key")?;
            let name = String::from_utf8(name.to_vec()).map_err(|_| "header key not UTF-8")?;
            let value = nullable(raw, buf, &mut at).ok_or("bad header value length")?;
            headers.push((name, value));
        }
        if at != end {
            return Err("record length does not match its fields");
        }
        let h = self.header;
        Ok(ConsumerRecord {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: h.base_offset.saturating_add(i64::from(offset_delta)),
            timestamp: if self.log_append_time {
                h.max_timestamp
            } else {
                h.first_timestamp.wrapping_add(ts_delta)
            },
            log_append_time: self.log_append_time,
            key,
            value,
            headers,
        })
    }
}

/// A varint-length-prefixed byte field (-1 = null), sliced out of `raw` without copying.
fn nullable(raw: &Bytes, buf: &[u8], at: &mut usize) -> Option<Option<Bytes>> {
    match varint::read(buf, at)? {
        -1 => Some(None),
        n => {
            let n = usize::try_from(n).ok()?;
            let end = at.checked_add(n).filter(|&e| e <= buf.len())?;
            let field = raw.slice(*at..end);
            *at = end;
            Some(Some(field))
        }
    }
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
