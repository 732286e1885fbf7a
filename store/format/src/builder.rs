//! Building a RecordBatch v2 in place: each record is encoded straight into the batch buffer
//! when it is appended, behind 61 bytes left for the header; [`BatchBuilder::build`] fills the
//! header (producer identity, counts, timestamps, CRC-32C) and, with compression, compresses
//! the record bytes once.
//!
//! A producer appends records with offset deltas 0..n (the leader assigns real offsets); a
//! rewrite of a stored batch (the log cleaner) gives each kept record its own delta with
//! [`BatchBuilder::append_at`] and keeps base offset, producer identity, flags, the span
//! (`last_offset_delta`) and a LogAppendTime through [`BatchOptions`]. Timestamp deltas are
//! relative to the first record's timestamp, as Kafka's `MemoryRecordsBuilder` writes them, or to
//! a delete horizon the cleaner stamps ([`BatchBuilder::set_delete_horizon`], KIP-534).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{self as cmpr, Compressor};
use kafka_protocol::records::Compression;

use crate::batch::{self, BatchIdentity, CONTROL_BIT, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2};
use crate::varint::{self, MAX_VARLONG_BYTES};

/// Why a batch could not be built.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// More records than a batch counts (`i32`).
    #[error("too many records for one batch")]
    TooManyRecords,
    /// A delete horizon set after records were appended.
    #[error("the delete horizon must be set before the first record")]
    HorizonAfterRecords,
    /// An offset delta not above the previous record's.
    #[error("offset delta {delta} does not follow {previous}")]
    OffsetDeltaNotIncreasing {
        /// The delta asked for.
        delta: i32,
        /// The previous record's delta.
        previous: i32,
    },
    /// More bytes than `batchLength` (`i32`) can say.
    #[error("record batch too large")]
    TooLarge,
    /// The codec failed.
    #[error("compress record batch: {0}")]
    Compression(String),
}

/// What goes into a finished batch's header besides what its records say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Producer id, epoch and base sequence.
    pub identity: BatchIdentity,
    /// How the records are compressed.
    pub compression: Compression,
    /// The transactional flag.
    pub transactional: bool,
    /// The control flag (a batch of transaction markers).
    pub control: bool,
    /// Base offset (0 for a produced batch; kept by a rewrite).
    pub base_offset: i64,
    /// Partition leader epoch (-1 for a produced batch; the leader stamps it).
    pub partition_leader_epoch: i32,
    /// A last offset delta beyond the last record's (a rewrite that dropped the last records
    /// keeps the batch's original span, as Kafka's cleaner does); `None`: the last record's.
    pub last_offset_delta: Option<i32>,
    /// The batch carries this log append time (timestamp type bit set, max timestamp = it):
    /// a rewrite of a LogAppendTime batch keeps its time. `None`: create time.
    pub log_append_time: Option<i64>,
}

impl BatchOptions {
    /// A produced batch: base offset 0, no leader epoch, neither transactional nor control.
    pub fn new(identity: BatchIdentity, compression: Compression) -> Self {
        BatchOptions {
            identity,
            compression,
            transactional: false,
            control: false,
            base_offset: 0,
            partition_leader_epoch: -1,
            last_offset_delta: None,
            log_append_time: None,
        }
    }

    fn attributes(&self) -> i16 {
        let mut attributes = self.compression as i16;
        if self.log_append_time.is_some() {
            attributes |= batch::TIMESTAMP_TYPE_BIT;
        }
        if self.transactional {
            attributes |= batch::TRANSACTIONAL_BIT;
        }
        if self.control {
            attributes |= CONTROL_BIT;
        }
        attributes
    }
}

/// Key, value and headers of one record, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct RecordParts<'a> {
    /// Key (`None` = null).
    pub key: Option<&'a [u8]>,
    /// Value (`None` = tombstone).
    pub value: Option<&'a [u8]>,
    /// Headers in order.
    pub headers: &'a [(String, Option<Bytes>)],
}

impl RecordParts<'_> {
    /// An upper bound of the encoded size (every varint at its longest), known before the
    /// record's place in a batch is: buffer memory and the request size limit count this.
    pub fn estimated_size(&self) -> usize {
        let len = |b: Option<&[u8]>| b.map_or(0, <[u8]>::len);
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + len(v.as_deref()) + 10)
            .sum();
        len(self.key) + len(self.value) + headers + 5 + 1 + 10 + 5 + 5 + 5 + 5
    }

    fn body_len(&self, timestamp_delta: i64, offset_delta: i64) -> usize {
        let nullable = |b: Option<&[u8]>| match b {
            Some(b) => varint::len(b.len() as i64) + b.len(),
            None => 1,
        };
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| {
                varint::len(k.len() as i64) + k.len() + nullable(v.as_ref().map(|v| &v[..]))
            })
            .sum();
        1 + varint::len(timestamp_delta)
            + varint::len(offset_delta)
            + nullable(self.key)
            + nullable(self.value)
            + varint::len(self.headers.len() as i64)
            + headers
    }
}

/// One RecordBatch v2 under construction.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    count: i32,
    /// The last record's offset delta (-1 before the first).
    last_delta: i32,
    first_timestamp: i64,
    max_timestamp: i64,
    /// The base timestamp is this delete horizon (KIP-534) rather than the first record's.
    delete_horizon: Option<i64>,
}

impl BatchBuilder {
    /// An empty batch whose buffer holds `capacity` bytes (header included) before growing.
    pub fn with_capacity(capacity: usize) -> Self {
        BatchBuilder::with_buffer(BytesMut::with_capacity(capacity.max(HEADER_LEN)))
    }

    /// An empty batch in a recycled buffer (its contents are discarded).
    pub fn with_buffer(mut buf: BytesMut) -> Self {
        buf.clear();
        buf.put_bytes(0, HEADER_LEN);
        BatchBuilder {
            buf,
            count: 0,
            last_delta: -1,
            first_timestamp: 0,
            max_timestamp: i64::MIN,
            delete_horizon: None,
        }
    }

    /// Makes the batch carry a delete horizon (KIP-534, what the log cleaner stamps on a batch
    /// whose tombstones it keeps for now): the base timestamp becomes `horizon_ms`, the record
    /// timestamps are written relative to it, and the attributes say so. Before any record.
    pub fn set_delete_horizon(&mut self, horizon_ms: i64) -> Result<(), BuildError> {
        if self.count > 0 {
            return Err(BuildError::HorizonAfterRecords);
        }
        self.delete_horizon = Some(horizon_ms);
        self.first_timestamp = horizon_ms;
        Ok(())
    }

    /// Bytes so far, header included (the uncompressed batch size).
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// Records so far.
    pub fn record_count(&self) -> i32 {
        self.count
    }

    /// Whether no record was appended yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Exact encoded size of `record` (length prefix included) if appended next.
    pub fn size_of(&self, timestamp: i64, record: &RecordParts<'_>) -> usize {
        let ts_delta = if self.count == 0 && self.delete_horizon.is_none() {
            0
        } else {
            timestamp.wrapping_sub(self.first_timestamp)
        };
        let next_delta = i64::from(self.last_delta) + 1;
        let body = record.body_len(ts_delta, next_delta);
        varint::len(body as i64) + body
    }

    /// Encodes `record` at the end of the batch, at the offset delta after the last record's.
    pub fn append(&mut self, timestamp: i64, record: &RecordParts<'_>) -> Result<(), BuildError> {
        self.try_append(timestamp, record, usize::MAX).map(|_| ())
    }

    /// Encodes `record` at the end of the batch at `offset_delta` (above the last record's: a
    /// rewrite keeps each record's offset).
    pub fn append_at(
        &mut self,
        offset_delta: i32,
        timestamp: i64,
        record: &RecordParts<'_>,
    ) -> Result<(), BuildError> {
        self.try_append_at(offset_delta, timestamp, record, usize::MAX)
            .map(|_| ())
    }

    /// Encodes `record` at the end of the batch if the batch stays within `limit` bytes (a
    /// first record always goes in); says whether it did. The size is computed once.
    pub fn try_append(
        &mut self,
        timestamp: i64,
        record: &RecordParts<'_>,
        limit: usize,
    ) -> Result<bool, BuildError> {
        let delta = self
            .last_delta
            .checked_add(1)
            .ok_or(BuildError::TooManyRecords)?;
        self.try_append_at(delta, timestamp, record, limit)
    }

    fn try_append_at(
        &mut self,
        offset_delta: i32,
        timestamp: i64,
        record: &RecordParts<'_>,
        limit: usize,
    ) -> Result<bool, BuildError> {
        if self.count == i32::MAX {
            return Err(BuildError::TooManyRecords);
        }
        if offset_delta <= self.last_delta {
            return Err(BuildError::OffsetDeltaNotIncreasing {
                delta: offset_delta,
                previous: self.last_delta,
            });
        }
        let first_timestamp = if self.count == 0 && self.delete_horizon.is_none() {
            timestamp
        } else {
            self.first_timestamp
        };
        let ts_delta = timestamp.wrapping_sub(first_timestamp);
        let body = record.body_len(ts_delta, i64::from(offset_delta));
        let total = varint::len(body as i64) + body;
        if self.count > 0 && self.buf.len().saturating_add(total) > limit {
            return Ok(false);
        }
        self.first_timestamp = first_timestamp;
        self.max_timestamp = self.max_timestamp.max(timestamp);
        self.buf.reserve(total);
        // Length, attributes (always 0 on a record), timestamp and offset deltas: one copy.
        let mut head = Scratch::default();
        head.varint(body as i64);
        head.byte(0);
        head.varint(ts_delta);
        head.varint(i64::from(offset_delta));
        self.buf.put_slice(head.as_slice());
        put_nullable(&mut self.buf, record.key);
        put_nullable(&mut self.buf, record.value);
        varint::put(&mut self.buf, record.headers.len() as i64);
        for (k, v) in record.headers {
            varint::put(&mut self.buf, k.len() as i64);
            self.buf.put_slice(k.as_bytes());
            put_nullable(&mut self.buf, v.as_ref().map(|v| &v[..]));
        }
        self.count += 1;
        self.last_delta = offset_delta;
        Ok(true)
    }

    /// The buffer, for reuse by another batch.
    pub fn into_buffer(self) -> BytesMut {
        self.buf
    }

    /// Fills the header of a produced batch and returns it (compressed if asked).
    pub fn build(
        self,
        identity: BatchIdentity,
        compression: Compression,
    ) -> Result<Bytes, BuildError> {
        self.finish(BatchOptions::new(identity, compression))
    }

    /// Fills the header as `options` say and returns the finished batch.
    pub fn finish(self, options: BatchOptions) -> Result<Bytes, BuildError> {
        let BatchBuilder {
            mut buf,
            count,
            last_delta,
            first_timestamp,
            max_timestamp,
            delete_horizon,
        } = self;
        if options.compression != Compression::None {
            buf = compress(&buf, options.compression)?;
        }
        let max_timestamp = match options.log_append_time {
            Some(time) => time,
            None if count == 0 => first_timestamp,
            None => max_timestamp,
        };
        let mut attributes = options.attributes();
        if delete_horizon.is_some() {
            attributes |= batch::DELETE_HORIZON_BIT;
        }
        let length = buf
            .len()
            .checked_sub(LOG_OVERHEAD)
            .and_then(|n| i32::try_from(n).ok())
            .ok_or(BuildError::TooLarge)?;
        let last_offset_delta = options
            .last_offset_delta
            .unwrap_or(0)
            .max(last_delta)
            .max(0);
        let identity = options.identity;
        let mut header = BytesMut::with_capacity(HEADER_LEN);
        header.put_i64(options.base_offset);
        header.put_i32(length);
        header.put_i32(options.partition_leader_epoch);
        header.put_i8(MAGIC_V2);
        header.put_u32(0); // CRC, below
        header.put_i16(attributes);
        header.put_i32(last_offset_delta);
        header.put_i64(first_timestamp);
        header.put_i64(max_timestamp);
        header.put_i64(identity.producer_id);
        header.put_i16(identity.producer_epoch);
        header.put_i32(identity.base_sequence);
        header.put_i32(count);
        if let Some(dst) = buf.get_mut(..HEADER_LEN) {
            dst.copy_from_slice(&header);
        }
        batch::stamp_crc(&mut buf);
        Ok(buf.freeze())
    }
}

/// A few varints assembled on the stack before one copy into the batch.
#[derive(Default)]
struct Scratch {
    bytes: [u8; 32],
    len: usize,
}

impl Scratch {
    fn varint(&mut self, v: i64) {
        let mut tmp = [0u8; MAX_VARLONG_BYTES];
        let n = varint::write(&mut tmp, v);
        if let (Some(dst), Some(src)) = (self.bytes.get_mut(self.len..self.len + n), tmp.get(..n)) {
            dst.copy_from_slice(src);
            self.len += n;
        }
    }

    fn byte(&mut self, b: u8) {
        if let Some(dst) = self.bytes.get_mut(self.len) {
            *dst = b;
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

fn put_nullable(buf: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            varint::put(buf, b.len() as i64);
            buf.put_slice(b);
        }
        None => varint::put(buf, -1),
    }
}

/// A copy of `buf` with the records (after the header) compressed and room for the header.
fn compress(buf: &BytesMut, compression: Compression) -> Result<BytesMut, BuildError> {
    let records = buf.get(HEADER_LEN..).unwrap_or_default();
    let mut out = BytesMut::with_capacity(HEADER_LEN + records.len() / 2);
    out.put_bytes(0, HEADER_LEN);
    let fill = |tmp: &mut BytesMut| {
        tmp.extend_from_slice(records);
        Ok(())
    };
    match compression {
        Compression::None => fill(&mut out),
        Compression::Gzip => cmpr::Gzip::compress(&mut out, fill),
        Compression::Snappy => cmpr::Snappy::compress(&mut out, fill),
        Compression::Lz4 => cmpr::Lz4::compress(&mut out, fill),
        Compression::Zstd => cmpr::Zstd::compress(&mut out, fill),
    }
    .map_err(|e| BuildError::Compression(format!("{e:#}")))?;
    Ok(out)
}

/// A copy of a built batch with another producer identity (a retry after an epoch bump or a
/// sequence reset); the records (compressed or not) are kept as they are.
pub fn restamp(built: &Bytes, identity: BatchIdentity) -> Bytes {
    let mut buf = BytesMut::from(&built[..]);
    batch::set_producer_identity(&mut buf, identity);
    buf.freeze()
}
