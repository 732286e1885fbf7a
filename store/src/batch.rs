//! RecordBatch v2 as the store sees it: the format itself (layout, parsing, checks, rewrites) is
//! `rafka_format::batch`, re-exported here so the store's callers keep one path; this module adds
//! what the leader checks on a produced batch, with the store's errors.

pub use rafka_format::batch::*;

/// What the leader checks on a produced batch: exactly one batch filling `buf`, valid per
/// [`check_batch`], base offset 0, `recordCount == lastOffsetDelta + 1 > 0`, and no larger
/// than `max_message_bytes`.
pub fn validate_produce(buf: &[u8], max_message_bytes: u32) -> crate::Result<BatchHeader> {
    let h = BatchHeader::parse(buf).map_err(crate::StoreError::from_batch);
    validate_parsed_produce(buf, h, max_message_bytes)
}

/// [`validate_produce`] for a batch whose header was already parsed (`header`, or why it could
/// not be), so the produce path reads it once.
pub fn validate_parsed_produce(
    buf: &[u8],
    header: crate::Result<BatchHeader>,
    max_message_bytes: u32,
) -> crate::Result<BatchHeader> {
    if buf.len() > max_message_bytes as usize {
        return Err(crate::StoreError::RecordTooLarge {
            size: buf.len(),
            max: max_message_bytes,
        });
    }
    let h = check_parsed(buf, header?).map_err(crate::StoreError::from_batch)?;
    if h.base_offset != 0 {
        let reason = BatchError::NonZeroBaseOffset {
            base_offset: h.base_offset,
        };
        return Err(crate::StoreError::from_batch(reason));
    }
    if h.record_count < 1 || i64::from(h.record_count) != i64::from(h.last_offset_delta) + 1 {
        return Err(crate::StoreError::from_batch(count_mismatch(&h)));
    }
    Ok(h)
}
