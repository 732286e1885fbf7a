//! Reading the records inside one RecordBatch v2: the batch's record bytes decompressed once,
//! then each record's offset, timestamp, key, value and headers, the byte fields sliced out of
//! the (decompressed) batch without copying.
//!
//! Record layout (Kafka's `DefaultRecord`): length varint, attributes i8 (unused), timestamp
//! delta varlong, offset delta varint, key (varint length, -1 = null), value (likewise), header
//! count varint, then per header a key (varint length, UTF-8) and a value (varint length, -1 =
//! null). Every length and count is checked against the bytes before it is used: a lying batch
//! is an error, never a panic or an allocation sized by the batch.

use bytes::Bytes;
use kafka_protocol::compression::{self as cmpr, Decompressor};

use crate::batch::{BatchError, BatchHeader, HEADER_LEN, MIN_RECORD_LEN};
use crate::varint;

/// One record of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Offset (the batch's base offset plus the record's delta).
    pub offset: i64,
    /// Offset delta within the batch.
    pub offset_delta: i32,
    /// Create time, or the batch's append time when the batch carries LogAppendTime.
    pub timestamp: i64,
    /// Key (`None` = null).
    pub key: Option<Bytes>,
    /// Value (`None` = null, a tombstone).
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// The records of one batch, in order. Ends with an error, once, at the first record that does
/// not decode, or when bytes are left after the declared record count.
#[derive(Debug)]
pub struct Records {
    header: BatchHeader,
    raw: Bytes,
    at: usize,
    left: usize,
    done: bool,
}

/// Each header needs at least a key length and a value length (one byte each).
const MIN_HEADER_LEN: usize = 2;

impl Records {
    /// The records of `batch` (one whole batch whose header is `header`, as [`BatchHeader::parse`]
    /// or [`crate::batch::check_batch`] returned it): decompresses the record bytes and checks
    /// the record count against them.
    pub fn new(batch: &Bytes, header: &BatchHeader) -> Result<Records, BatchError> {
        let count = usize::try_from(header.record_count).map_err(|_| {
            BatchError::BadRecords(format!("negative record count {}", header.record_count))
        })?;
        let body = batch.slice(HEADER_LEN.min(batch.len())..);
        let raw = decompress(body, header.compression())?;
        if count.saturating_mul(MIN_RECORD_LEN) > raw.len() {
            return Err(BatchError::BadRecords(format!(
                "{count} records cannot fit in {} bytes",
                raw.len()
            )));
        }
        Ok(Records {
            header: *header,
            raw,
            at: 0,
            left: count,
            done: false,
        })
    }

    fn record(&mut self) -> Result<Record, String> {
        let len = varint::read(&self.raw, &mut self.at)
            .and_then(|l| usize::try_from(l).ok())
            .ok_or("bad length")?;
        let start = self.at;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= self.raw.len())
            .ok_or_else(|| format!("{len} bytes do not fit"))?;
        self.at = end;
        let raw = &self.raw;
        let buf = raw.get(..end).unwrap_or_default();
        let mut at = start + 1; // attributes: unused in v2 records
        let ts_delta = varint::read(buf, &mut at).ok_or("bad timestamp delta")?;
        let offset_delta = varint::read(buf, &mut at).ok_or("bad offset delta")?;
        let offset_delta = i32::try_from(offset_delta).map_err(|_| "offset delta out of range")?;
        let key = nullable(raw, buf, &mut at).ok_or("bad key length")?;
        let value = nullable(raw, buf, &mut at).ok_or("bad value length")?;
        let count = varint::read(buf, &mut at).ok_or("bad header count")?;
        let count = usize::try_from(count).map_err(|_| "negative header count")?;
        if count.saturating_mul(MIN_HEADER_LEN) > buf.len().saturating_sub(at) {
            return Err("more headers than bytes".into());
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
            return Err("record length does not match its fields".into());
        }
        let h = &self.header;
        Ok(Record {
            offset: h.base_offset.saturating_add(i64::from(offset_delta)),
            offset_delta,
            timestamp: if h.is_log_append_time() {
                h.max_timestamp
            } else {
                h.base_timestamp.wrapping_add(ts_delta)
            },
            key,
            value,
            headers,
        })
    }
}

impl Iterator for Records {
    type Item = Result<Record, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.left == 0 {
            self.done = true;
            let extra = self.raw.len().saturating_sub(self.at);
            return (extra > 0).then(|| {
                Err(BatchError::BadRecords(format!(
                    "{extra} bytes after the {} declared records",
                    self.header.record_count
                )))
            });
        }
        let index = self.header.record_count.saturating_sub(self.left as i32);
        self.left -= 1;
        let record = self.record().map_err(|e| {
            self.done = true;
            BatchError::BadRecords(format!("record {index}: {e}"))
        });
        Some(record)
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

/// The record bytes of a batch body compressed with `codec` (the attributes' bits 0-2).
pub fn decompress(mut body: Bytes, codec: u8) -> Result<Bytes, BatchError> {
    let take = |b: &mut Bytes| Ok(b.split_off(0));
    let out = match codec {
        0 => return Ok(body),
        1 => cmpr::Gzip::decompress(&mut body, take),
        2 => cmpr::Snappy::decompress(&mut body, take),
        3 => cmpr::Lz4::decompress(&mut body, take),
        4 => cmpr::Zstd::decompress(&mut body, take),
        codec => return Err(BatchError::UnknownCompression { codec }),
    };
    out.map_err(|e| BatchError::BadRecords(format!("decompress: {e:#}")))
}
