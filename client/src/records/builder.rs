//! Building a RecordBatch v2 in place: each record is encoded straight into the batch buffer
//! when it is appended, behind 61 bytes left for the header; [`BatchBuilder::build`] fills the
//! header (producer identity, counts, timestamps, CRC-32C) and, with compression, compresses
//! the record bytes once.
//!
//! Offsets are 0..n (the broker assigns real ones); timestamp deltas are relative to the first
//! record's timestamp, as Kafka's `MemoryRecordsBuilder` writes them.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{self as cmpr, Compressor};
use kafka_protocol::records::Compression;

use super::varint::{self, MAX_VARLONG_BYTES};
use super::{BATCH_HEADER_BYTES, BatchIdentity};
use crate::error::{Error, Result};

/// Offset of the CRC in the batch header; the CRC covers everything after it.
const CRC_AT: usize = 17;
const CRC_COVERS_FROM: usize = 21;
/// Offset of producer id, epoch and base sequence in the header.
const IDENTITY_AT: usize = 43;

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
    first_timestamp: i64,
    max_timestamp: i64,
}

impl BatchBuilder {
    /// An empty batch whose buffer holds `capacity` bytes (header included) before growing.
    pub fn with_capacity(capacity: usize) -> Self {
        BatchBuilder::with_buffer(BytesMut::with_capacity(capacity.max(BATCH_HEADER_BYTES)))
    }

    /// An empty batch in a recycled buffer (its contents are discarded).
    pub fn with_buffer(mut buf: BytesMut) -> Self {
        buf.clear();
        buf.put_bytes(0, BATCH_HEADER_BYTES);
        BatchBuilder {
            buf,
            count: 0,
            first_timestamp: 0,
            max_timestamp: i64::MIN,
        }
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
        let ts_delta = if self.count == 0 {
            0
        } else {
            timestamp.wrapping_sub(self.first_timestamp)
        };
        let body = record.body_len(ts_delta, i64::from(self.count));
        varint::len(body as i64) + body
    }

    /// Encodes `record` at the end of the batch.
    pub fn append(&mut self, timestamp: i64, record: &RecordParts<'_>) -> Result<()> {
        self.try_append(timestamp, record, usize::MAX).map(|_| ())
    }

    /// Encodes `record` at the end of the batch if the batch stays within `limit` bytes (a
    /// first record always goes in); says whether it did. The size is computed once.
    pub fn try_append(
        &mut self,
        timestamp: i64,
        record: &RecordParts<'_>,
        limit: usize,
    ) -> Result<bool> {
        if self.count == i32::MAX {
            return Err(Error::protocol("too many records for one batch"));
        }
        let first_timestamp = if self.count == 0 {
            timestamp
        } else {
            self.first_timestamp
        };
        let ts_delta = timestamp.wrapping_sub(first_timestamp);
        let offset_delta = i64::from(self.count);
        let body = record.body_len(ts_delta, offset_delta);
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
        head.varint(offset_delta);
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
        Ok(true)
    }

    /// The buffer, for reuse by another batch.
    pub fn into_buffer(self) -> BytesMut {
        self.buf
    }

    /// Fills the header and returns the finished batch (compressed if asked).
    pub fn build(self, identity: BatchIdentity, compression: Compression) -> Result<Bytes> {
        let BatchBuilder {
            mut buf,
            count,
            first_timestamp,
            max_timestamp,
        } = self;
        if compression != Compression::None {
            buf = compress(&buf, compression)?;
        }
        let max_timestamp = if count == 0 {
            first_timestamp
        } else {
            max_timestamp
        };
        let length =
            i32::try_from(buf.len() - 12).map_err(|_| Error::protocol("record batch too large"))?;
        let mut header = BytesMut::with_capacity(BATCH_HEADER_BYTES);
        header.put_i64(0); // base offset
        header.put_i32(length);
        header.put_i32(-1); // partition leader epoch
        header.put_i8(2); // magic
        header.put_u32(0); // CRC, below
        header.put_i16(compression as i16);
        header.put_i32((count - 1).max(0)); // last offset delta
        header.put_i64(first_timestamp);
        header.put_i64(max_timestamp);
        header.put_i64(identity.producer_id);
        header.put_i16(identity.producer_epoch);
        header.put_i32(identity.base_sequence);
        header.put_i32(count);
        if let Some(dst) = buf.get_mut(..BATCH_HEADER_BYTES) {
            dst.copy_from_slice(&header);
        }
        stamp_crc(&mut buf);
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
fn compress(buf: &BytesMut, compression: Compression) -> Result<BytesMut> {
    let records = buf.get(BATCH_HEADER_BYTES..).unwrap_or_default();
    let mut out = BytesMut::with_capacity(BATCH_HEADER_BYTES + records.len() / 2);
    out.put_bytes(0, BATCH_HEADER_BYTES);
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
    .map_err(|e| Error::protocol(format!("compress record batch: {e}")))?;
    Ok(out)
}

fn stamp_crc(buf: &mut BytesMut) {
    let crc = crc32c::crc32c(buf.get(CRC_COVERS_FROM..).unwrap_or_default());
    if let Some(dst) = buf.get_mut(CRC_AT..CRC_COVERS_FROM) {
        dst.copy_from_slice(&crc.to_be_bytes());
    }
}

/// A copy of a built batch with another producer identity (a retry after an epoch bump or a
/// sequence reset); the records (compressed or not) are kept as they are.
pub fn restamp(batch: &Bytes, identity: BatchIdentity) -> Bytes {
    let mut buf = BytesMut::from(&batch[..]);
    let mut fields = [0u8; 14];
    fields
        .iter_mut()
        .zip(
            identity
                .producer_id
                .to_be_bytes()
                .into_iter()
                .chain(identity.producer_epoch.to_be_bytes())
                .chain(identity.base_sequence.to_be_bytes()),
        )
        .for_each(|(dst, src)| *dst = src);
    if let Some(dst) = buf.get_mut(IDENTITY_AT..IDENTITY_AT + fields.len()) {
        dst.copy_from_slice(&fields);
    }
    stamp_crc(&mut buf);
    buf.freeze()
}
