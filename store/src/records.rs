//! Record-level reading inside a stored batch: only what ListOffsets needs (each record's
//! offset and timestamp), read with `rafka_format::records`.

use crate::batch::{BatchError, BatchHeader};
use bytes::Bytes;
use rafka_format::records::Records;

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
    for record in Records::new(batch, header)? {
        let record = record?;
        let rt = RecordTime {
            offset: record.offset,
            timestamp: record.timestamp,
        };
        if pred(rt) {
            return Ok(Some(rt));
        }
    }
    Ok(None)
}
