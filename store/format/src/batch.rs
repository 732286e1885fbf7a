//! RecordBatch v2 (magic 2): the header layout, parsing, the checks every stored batch passes,
//! and the header rewrites (base offset, leader epoch, append time, producer identity).
//!
//! Nothing here indexes a slice or panics, whatever the input: every read goes through
//! `get()` and checked arithmetic (a proptest feeds it random bytes). Records inside a batch are
//! written by `crate::builder` and read by `crate::records` (feature `records`).
//!
//! Layout of the 61-byte header (big-endian):
//!
//! | at | field | | at | field |
//! |---|---|---|---|---|
//! | 0 | baseOffset i64 | | 27 | baseTimestamp i64 |
//! | 8 | batchLength i32 (bytes after this field) | | 35 | maxTimestamp i64 |
//! | 12 | partitionLeaderEpoch i32 | | 43 | producerId i64 |
//! | 16 | magic i8 (= 2) | | 51 | producerEpoch i16 |
//! | 17 | crc u32 (CRC-32C of bytes 21..end) | | 53 | baseSequence i32 |
//! | 21 | attributes i16 | | 57 | recordCount i32 |
//! | 23 | lastOffsetDelta i32 | | 61 | records |

use std::ops::Range;

/// Size of a RecordBatch v2 header.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength` counts: baseOffset and batchLength themselves.
pub const LOG_OVERHEAD: usize = 12;
/// The only supported magic byte.
pub const MAGIC_V2: i8 = 2;

/// Where each header field starts (see the table above).
pub mod at {
    /// baseOffset i64.
    pub const BASE_OFFSET: usize = 0;
    /// batchLength i32.
    pub const BATCH_LENGTH: usize = 8;
    /// partitionLeaderEpoch i32.
    pub const LEADER_EPOCH: usize = 12;
    /// magic i8.
    pub const MAGIC: usize = 16;
    /// crc u32: CRC-32C of every byte from [`ATTRIBUTES`] to the end of the batch.
    pub const CRC: usize = 17;
    /// attributes i16; the CRC'd range starts here.
    pub const ATTRIBUTES: usize = 21;
    /// lastOffsetDelta i32.
    pub const LAST_OFFSET_DELTA: usize = 23;
    /// baseTimestamp i64.
    pub const BASE_TIMESTAMP: usize = 27;
    /// maxTimestamp i64.
    pub const MAX_TIMESTAMP: usize = 35;
    /// producerId i64.
    pub const PRODUCER_ID: usize = 43;
    /// producerEpoch i16.
    pub const PRODUCER_EPOCH: usize = 51;
    /// baseSequence i32.
    pub const BASE_SEQUENCE: usize = 53;
    /// recordCount i32.
    pub const RECORD_COUNT: usize = 57;
}
use at::{ATTRIBUTES as ATTRIBUTES_AT, CRC as CRC_AT};

/// Smallest possible encoded record: length, attributes, timestamp delta, offset delta,
/// key length, value length, header count, one byte each.
pub const MIN_RECORD_LEN: usize = 7;

/// Attributes bits 0-2: the compression codec.
pub const COMPRESSION_MASK: i16 = 0x7;
/// Attributes bit 3: the timestamps are the log append time.
pub const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
/// Attributes bit 4: the batch belongs to a transaction.
pub const TRANSACTIONAL_BIT: i16 = 1 << 4;
/// Attributes bit 5: a control batch (transaction markers).
pub const CONTROL_BIT: i16 = 1 << 5;
/// Attributes bit 6: the base timestamp is the batch's delete horizon (KIP-534): the log
/// cleaner set it when it first kept a tombstone of the batch, and removes the batch's tombstones
/// once that time has passed. Record timestamps stay `baseTimestamp + delta`.
pub const DELETE_HORIZON_BIT: i16 = 1 << 6;

/// Why a batch was refused. [`BatchError::is_corruption`] separates damaged bytes (Kafka's
/// CORRUPT_MESSAGE) from well-formed batches that break a rule (INVALID_RECORD).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than a header.
    #[error("{len} bytes is shorter than a batch header ({HEADER_LEN})")]
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// `batchLength` disagrees with the bytes available.
    #[error("batch declares {declared} bytes but {available} are available")]
    LengthMismatch {
        /// Total size the header declares (batchLength + 12).
        declared: i64,
        /// Bytes actually there.
        available: usize,
    },
    /// Not magic 2.
    #[error("unsupported magic {magic} (only RecordBatch v2 is supported)")]
    UnsupportedMagic {
        /// The magic byte found.
        magic: i8,
    },
    /// The stored CRC does not match the bytes.
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// A produced batch must carry base offset 0; the leader assigns offsets.
    #[error("produced batch has base offset {base_offset}, expected 0")]
    NonZeroBaseOffset {
        /// The base offset found.
        base_offset: i64,
    },
    /// `recordCount` must be `lastOffsetDelta + 1` and positive.
    #[error("record count {record_count} does not match last offset delta {last_offset_delta}")]
    RecordCountMismatch {
        /// recordCount.
        record_count: i32,
        /// lastOffsetDelta.
        last_offset_delta: i32,
    },
    /// An uncompressed batch claims more records than its bytes can hold.
    #[error("{record_count} records cannot fit in {payload_len} uncompressed bytes")]
    TooManyRecords {
        /// recordCount.
        record_count: i32,
        /// Bytes after the header.
        payload_len: usize,
    },
    /// Compression codec 5, 6 or 7.
    #[error("unknown compression codec {codec}")]
    UnknownCompression {
        /// The codec bits.
        codec: u8,
    },
    /// baseOffset + lastOffsetDelta overflows, or an offset is negative.
    #[error("offsets out of range: base {base_offset}, last delta {last_offset_delta}")]
    BadOffsets {
        /// baseOffset.
        base_offset: i64,
        /// lastOffsetDelta.
        last_offset_delta: i32,
    },
    /// Replicated batches must follow each other and the log end.
    #[error("batch base offset {found} does not follow offset {expected}")]
    NotContiguous {
        /// The offset expected.
        expected: i64,
        /// The base offset found.
        found: i64,
    },
    /// The records inside a batch do not decode (only checked when reading records).
    #[error("records do not decode: {0}")]
    BadRecords(String),
    /// A record without a key, produced to a compacted topic (Kafka's INVALID_RECORD).
    #[error("compacted topic cannot accept a record without a key (offset delta {offset_delta})")]
    KeyRequired {
        /// The record's offset delta in its batch.
        offset_delta: i32,
    },
}

impl BatchError {
    /// True for damaged bytes (CRC, framing), false for rule violations.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            BatchError::TooShort { .. }
                | BatchError::LengthMismatch { .. }
                | BatchError::CrcMismatch { .. }
                | BatchError::BadRecords(_)
        )
    }
}

/// The decoded 61-byte RecordBatch v2 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the batchLength field.
    pub batch_length: i32,
    /// Leader epoch stamped by the leader that appended the batch.
    pub partition_leader_epoch: i32,
    /// Always 2 once parsed.
    pub magic: i8,
    /// CRC-32C of bytes 21..end.
    pub crc: u32,
    /// Compression (bits 0-2), timestamp type (3), transactional (4), control (5).
    pub attributes: i16,
    /// Last record's offset minus base offset.
    pub last_offset_delta: i32,
    /// First record's timestamp.
    pub base_timestamp: i64,
    /// Largest timestamp (or the log append time).
    pub max_timestamp: i64,
    /// Producer id, -1 when not idempotent.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// First record's sequence, -1 when not idempotent.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

fn read<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn write(buf: &mut [u8], at: usize, bytes: &[u8]) -> bool {
    let Some(end) = at.checked_add(bytes.len()) else {
        return false;
    };
    match buf.get_mut(at..end) {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

impl BatchHeader {
    /// Parses the header at the start of `buf` (which may hold more batches after it). Checks
    /// the magic byte and that `batchLength` covers at least a header; not the CRC.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        let too_short = BatchError::TooShort { len: buf.len() };
        let head: [u8; HEADER_LEN] = read(buf, 0).ok_or(too_short)?;
        let h = &head[..];
        let i64_at = |at| read::<8>(h, at).map(i64::from_be_bytes).unwrap_or_default();
        let i32_at = |at| read::<4>(h, at).map(i32::from_be_bytes).unwrap_or_default();
        let i16_at = |at| read::<2>(h, at).map(i16::from_be_bytes).unwrap_or_default();
        let magic = read::<1>(h, at::MAGIC)
            .map(i8::from_be_bytes)
            .unwrap_or_default();
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic { magic });
        }
        let header = BatchHeader {
            base_offset: i64_at(at::BASE_OFFSET),
            batch_length: i32_at(at::BATCH_LENGTH),
            partition_leader_epoch: i32_at(at::LEADER_EPOCH),
            magic,
            crc: read::<4>(h, CRC_AT)
                .map(u32::from_be_bytes)
                .unwrap_or_default(),
            attributes: i16_at(ATTRIBUTES_AT),
            last_offset_delta: i32_at(at::LAST_OFFSET_DELTA),
            base_timestamp: i64_at(at::BASE_TIMESTAMP),
            max_timestamp: i64_at(at::MAX_TIMESTAMP),
            producer_id: i64_at(at::PRODUCER_ID),
            producer_epoch: i16_at(at::PRODUCER_EPOCH),
            base_sequence: i32_at(at::BASE_SEQUENCE),
            record_count: i32_at(at::RECORD_COUNT),
        };
        if header.total_len().is_none_or(|n| n < HEADER_LEN) {
            return Err(BatchError::LengthMismatch {
                declared: i64::from(header.batch_length) + LOG_OVERHEAD as i64,
                available: buf.len(),
            });
        }
        Ok(header)
    }

    /// Total size of the batch in bytes (batchLength + 12), `None` when batchLength < 0.
    pub fn total_len(&self) -> Option<usize> {
        usize::try_from(self.batch_length)
            .ok()?
            .checked_add(LOG_OVERHEAD)
    }

    /// Offset of the last record, `None` on overflow.
    pub fn last_offset(&self) -> Option<i64> {
        self.base_offset
            .checked_add(i64::from(self.last_offset_delta))
    }

    /// Compression codec bits (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> u8 {
        (self.attributes & COMPRESSION_MASK) as u8
    }

    /// True when the batch carries the log append time.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    /// Transactional flag.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// Control batch flag (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// The delete horizon the log cleaner stamped on the batch (KIP-534), if any.
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes & DELETE_HORIZON_BIT != 0).then_some(self.base_timestamp)
    }

    /// Sequence of the last record, wrapping at `i32::MAX` to 0 as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// `seq + n` wrapping at `i32::MAX` to 0 (Kafka's `DefaultRecordBatch.incrementSequence`).
pub fn increment_sequence(seq: i32, n: i32) -> i32 {
    let sum = i64::from(seq) + i64::from(n);
    let wrapped = sum.rem_euclid(i64::from(i32::MAX) + 1);
    i32::try_from(wrapped).unwrap_or(0)
}

/// CRC-32C of a whole batch's checked range (attributes to the end).
pub fn compute_crc(batch: &[u8]) -> Option<u32> {
    batch.get(ATTRIBUTES_AT..).map(crc32c::crc32c)
}

/// Checks one complete batch occupying exactly `batch`: header, length, CRC, codec and offset
/// rules that hold for every stored batch (the leader path adds [`validate_produce`]).
pub fn check_batch(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(batch)?;
    check_parsed(batch, h)
}

/// [`check_batch`] for a batch whose header `h` was already parsed from `batch` (the produce
/// path reads it once, for the broker's checks and the store's).
pub fn check_parsed(batch: &[u8], h: BatchHeader) -> Result<BatchHeader, BatchError> {
    if h.total_len() != Some(batch.len()) {
        return Err(BatchError::LengthMismatch {
            declared: i64::from(h.batch_length) + LOG_OVERHEAD as i64,
            available: batch.len(),
        });
    }
    let computed = compute_crc(batch).ok_or(BatchError::TooShort { len: batch.len() })?;
    if computed != h.crc {
        return Err(BatchError::CrcMismatch {
            stored: h.crc,
            computed,
        });
    }
    if h.compression() > 4 {
        return Err(BatchError::UnknownCompression {
            codec: h.compression(),
        });
    }
    if h.base_offset < 0 || h.last_offset_delta < 0 || h.last_offset().is_none() {
        return Err(BatchError::BadOffsets {
            base_offset: h.base_offset,
            last_offset_delta: h.last_offset_delta,
        });
    }
    if h.record_count < 0 || i64::from(h.record_count) > i64::from(h.last_offset_delta) + 1 {
        return Err(count_mismatch(&h));
    }
    let payload_len = batch.len().saturating_sub(HEADER_LEN);
    let count = usize::try_from(h.record_count).unwrap_or(usize::MAX);
    if h.compression() == 0 && count.saturating_mul(MIN_RECORD_LEN) > payload_len {
        return Err(BatchError::TooManyRecords {
            record_count: h.record_count,
            payload_len,
        });
    }
    Ok(h)
}

/// The [`BatchError::RecordCountMismatch`] of `h`.
pub fn count_mismatch(h: &BatchHeader) -> BatchError {
    BatchError::RecordCountMismatch {
        record_count: h.record_count,
        last_offset_delta: h.last_offset_delta,
    }
}

/// Rewrites the base offset (outside the CRC'd range).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) -> bool {
    write(batch, at::BASE_OFFSET, &base_offset.to_be_bytes())
}

/// Rewrites the partition leader epoch (outside the CRC'd range).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) -> bool {
    write(batch, at::LEADER_EPOCH, &epoch.to_be_bytes())
}

/// Stamps LogAppendTime: sets the timestamp-type bit and the max timestamp, then recomputes
/// the CRC (both fields are inside the CRC'd range).
pub fn set_log_append_time(batch: &mut [u8], timestamp: i64) -> bool {
    let Some(attrs) = read::<2>(batch, ATTRIBUTES_AT).map(i16::from_be_bytes) else {
        return false;
    };
    let ok = write(
        batch,
        ATTRIBUTES_AT,
        &(attrs | TIMESTAMP_TYPE_BIT).to_be_bytes(),
    ) && write(batch, at::MAX_TIMESTAMP, &timestamp.to_be_bytes());
    ok && stamp_crc(batch)
}

/// Rewrites the producer id, epoch and base sequence (a producer's retry after an epoch bump or
/// a sequence reset) and recomputes the CRC; the records are kept as they are.
pub fn set_producer_identity(batch: &mut [u8], identity: BatchIdentity) -> bool {
    write(batch, at::PRODUCER_ID, &identity.producer_id.to_be_bytes())
        && write(
            batch,
            at::PRODUCER_EPOCH,
            &identity.producer_epoch.to_be_bytes(),
        )
        && write(
            batch,
            at::BASE_SEQUENCE,
            &identity.base_sequence.to_be_bytes(),
        )
        && stamp_crc(batch)
}

/// Recomputes the CRC-32C of a whole batch and writes it into its header.
pub fn stamp_crc(batch: &mut [u8]) -> bool {
    match compute_crc(batch) {
        Some(crc) => write(batch, CRC_AT, &crc.to_be_bytes()),
        None => false,
    }
}

/// The header-only batch the log cleaner keeps in place of a batch all of whose records it
/// removed, when the batch must stay (Kafka's `writeEmptyHeader`): the last batch of a producer
/// still active keeps its producer id, epoch and sequences in the log. Same base offset, last
/// offset delta, leader epoch, producer identity, timestamp type and transactional and control
/// flags; no records, no compression, base timestamp -1, max timestamp kept; a fresh CRC.
pub fn empty_batch(h: &BatchHeader) -> [u8; HEADER_LEN] {
    let keep = TIMESTAMP_TYPE_BIT | TRANSACTIONAL_BIT | CONTROL_BIT;
    let mut b = [0u8; HEADER_LEN];
    let fields: [(usize, &[u8]); 12] = [
        (at::BASE_OFFSET, &h.base_offset.to_be_bytes()),
        (
            at::BATCH_LENGTH,
            &((HEADER_LEN - LOG_OVERHEAD) as i32).to_be_bytes(),
        ),
        (at::LEADER_EPOCH, &h.partition_leader_epoch.to_be_bytes()),
        (at::MAGIC, &MAGIC_V2.to_be_bytes()),
        (ATTRIBUTES_AT, &(h.attributes & keep).to_be_bytes()),
        (at::LAST_OFFSET_DELTA, &h.last_offset_delta.to_be_bytes()),
        (at::BASE_TIMESTAMP, &(-1i64).to_be_bytes()),
        (at::MAX_TIMESTAMP, &h.max_timestamp.to_be_bytes()),
        (at::PRODUCER_ID, &h.producer_id.to_be_bytes()),
        (at::PRODUCER_EPOCH, &h.producer_epoch.to_be_bytes()),
        (at::BASE_SEQUENCE, &h.base_sequence.to_be_bytes()),
        (at::RECORD_COUNT, &0i32.to_be_bytes()),
    ];
    for (at, bytes) in fields {
        write(&mut b, at, bytes);
    }
    stamp_crc(&mut b);
    b
}

/// A batch's producer identity (`-1`s when not idempotent).
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

impl BatchHeader {
    /// The producer identity in the header.
    pub fn identity(&self) -> BatchIdentity {
        BatchIdentity {
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
        }
    }
}

/// Walks concatenated batches (a follower fetch response, a log read). Yields each batch's
/// header (checked per [`check_batch`]) and its byte range; stops after the first error.
#[derive(Debug)]
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> BatchIter<'a> {
    /// Iterates the batches in `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        BatchIter {
            buf,
            pos: 0,
            failed: false,
        }
    }
}

impl Iterator for BatchIter<'_> {
    type Item = Result<(BatchHeader, Range<usize>), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let rest = self.buf.get(self.pos..)?;
        let result = BatchHeader::parse(rest).and_then(|h| {
            let len = h.total_len().unwrap_or(usize::MAX);
            let one = rest.get(..len).ok_or(BatchError::LengthMismatch {
                declared: i64::from(h.batch_length) + LOG_OVERHEAD as i64,
                available: rest.len(),
            })?;
            let h = check_batch(one)?;
            let range = self.pos..self.pos + len;
            Ok((h, range))
        });
        match &result {
            Ok((_, range)) => self.pos = range.end,
            Err(_) => self.failed = true,
        }
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_wraps_like_kafka() {
        assert_eq!(increment_sequence(5, 3), 8);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
    }

    #[test]
    fn short_and_empty_inputs_are_errors() {
        assert_eq!(
            BatchHeader::parse(&[]),
            Err(BatchError::TooShort { len: 0 })
        );
        assert!(check_batch(&[0u8; 60]).is_err());
        assert!(
            BatchIter::new(&[1, 2, 3])
                .next()
                .is_some_and(|r| r.is_err())
        );
    }

    #[test]
    fn an_empty_batch_keeps_the_span_and_producer_identity() {
        let h = BatchHeader {
            base_offset: 40,
            batch_length: 0,
            partition_leader_epoch: 3,
            magic: MAGIC_V2,
            crc: 0,
            attributes: 4 | TIMESTAMP_TYPE_BIT | TRANSACTIONAL_BIT | DELETE_HORIZON_BIT,
            last_offset_delta: 9,
            base_timestamp: 100,
            max_timestamp: 200,
            producer_id: 7,
            producer_epoch: 2,
            base_sequence: 30,
            record_count: 10,
        };
        let empty = empty_batch(&h);
        let got = check_batch(&empty).expect("valid batch");
        assert_eq!((got.base_offset, got.last_offset()), (40, Some(49)));
        assert_eq!((got.record_count, got.compression()), (0, 0));
        assert_eq!(got.identity(), h.identity());
        assert_eq!(got.last_sequence(), h.last_sequence());
        assert!(got.is_log_append_time() && got.is_transactional() && !got.is_control());
        assert_eq!(got.delete_horizon_ms(), None);
        assert_eq!((got.max_timestamp, got.partition_leader_epoch), (200, 3));
    }
}
