//! Record-level reading inside a stored batch: only what ListOffsets needs (each record's
//! offset and timestamp). Decompression uses kafka-protocol's codecs; the record framing is
//! parsed here without panics or allocations sized by untrusted counts.

use crate::batch::{BatchError, BatchHeader, HEADER_LEN};
use bytes::Bytes;
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};

/// One record's position and time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordTime {
    pub offset: i64,
    pub timestamp: i64,
}

/// Returns the first record of `batch` (offset order) for which `pred` holds.
pub(crate) fn find_record(
    batch: &Bytes,
    header: &BatchHeader,
    mut pred: impl FnMut(RecordTime) -> bool,
) -> Result<Option<RecordTime>, BatchError> {
    if header.is_log_append_time() {
        // Every record carries the batch's append time.
        for delta in 0..=header.last_offset_delta.max(0) {
            let rt = RecordTime {
                offset: header.base_offset.saturating_add(i64::from(delta)),
                timestamp: header.max_timestamp,
            };
            if pred(rt) {
                return Ok(Some(rt));
            }
        }
        return Ok(None);
    }
    let payload = batch.slice(HEADER_LEN.min(batch.len())..);
    let records = decompress(payload, header.compression())?;
    let mut cursor = Cursor {
        buf: &records,
        pos: 0,
    };
    for _ in 0..header.record_count.max(0) {
        let rt = cursor.record(header)?;
        if pred(rt) {
            return Ok(Some(rt));
        }
    }
    Ok(None)
}

fn decompress(mut payload: Bytes, codec: u8) -> Result<Bytes, BatchError> {
    let keep = |b: &mut Bytes| Ok(b.clone());
    let out = match codec {
        0 => Ok(payload),
        1 => Gzip::decompress(&mut payload, keep),
        2 => Snappy::decompress(&mut payload, keep),
        3 => Lz4::decompress(&mut payload, keep),
        4 => Zstd::decompress(&mut payload, keep),
        other => return Err(BatchError::UnknownCompression { codec: other }),
    };
    out.map_err(|e| BatchError::BadRecords(format!("decompression failed: {e:#}")))
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Result<u8, BatchError> {
        let b = self
            .buf
            .get(self.pos)
            .copied()
            .ok_or_else(|| truncated(self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    /// Zigzag varlong (at most 10 bytes).
    fn varlong(&mut self) -> Result<i64, BatchError> {
        let mut raw: u64 = 0;
        for i in 0..10u32 {
            let b = self.byte()?;
            raw |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
        }
        Err(BatchError::BadRecords(format!(
            "varint too long at {}",
            self.pos
        )))
    }

    fn record(&mut self, header: &BatchHeader) -> Result<RecordTime, BatchError> {
        let len = self.varlong()?;
        let len = usize::try_from(len).map_err(|_| bad_len(len))?;
        let start = self.pos;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= self.buf.len())
            .ok_or(bad_len(len as i64))?;
        let _attributes = self.byte()?;
        let ts_delta = self.varlong()?;
        let offset_delta = self.varlong()?;
        if self.pos > end {
            return Err(bad_len(len as i64));
        }
        self.pos = end;
        Ok(RecordTime {
            offset: header.base_offset.saturating_add(offset_delta),
            timestamp: header.base_timestamp.saturating_add(ts_delta),
        })
    }
}

fn truncated(at: usize) -> BatchError {
    BatchError::BadRecords(format!("records end early at byte {at}"))
}

fn bad_len(len: i64) -> BatchError {
    BatchError::BadRecords(format!("bad record length {len}"))
}
