//! [`ProducedBatch`]: a produced batch whose header has been read, once, for both the broker's
//! checks of a client's batch and the store's validation before it appends.

use bytes::Bytes;

use crate::batch::{BatchError, BatchHeader};

/// One RecordBatch v2 as a producer sent it, its header parsed. Built by
/// [`ProducedBatch::parse`]; appended by [`crate::PartitionLog::append_produced`], which checks
/// the rest (length, CRC, codec, offsets, counts, size) without parsing the header again.
#[derive(Clone, Debug)]
pub struct ProducedBatch {
    bytes: Bytes,
    header: BatchHeader,
}

impl ProducedBatch {
    /// Reads the header at the start of `bytes` (see [`BatchHeader::parse`]: magic and a
    /// length covering a header; nothing else is checked yet).
    pub fn parse(bytes: Bytes) -> Result<Self, BatchError> {
        let header = BatchHeader::parse(&bytes)?;
        Ok(Self { bytes, header })
    }

    /// The parsed header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The batch's bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub(crate) fn into_parts(self) -> (Bytes, BatchHeader) {
        (self.bytes, self.header)
    }
}
