//! Transaction markers: the control batches that end a transaction on a partition, as Kafka
//! writes them (`EndTransactionMarker`, `ControlRecordType`).
//!
//! A marker batch has the transactional and control attributes set, the producer's id and epoch,
//! base sequence -1, and one record: key `i16` version 0, `i16` type (0 abort, 1 commit); value
//! `i16` version 0, `i32` coordinator epoch. Consumers never deliver control records; the
//! partition uses them to close the producer's open transaction.
//!
//! Decoding never panics: malformed keys or values decode to `None`.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::Compression;

use crate::batch::BatchIdentity;
use crate::builder::{BatchBuilder, BatchOptions, BuildError, RecordParts};

const CONTROL_KEY_VERSION: i16 = 0;
const MARKER_VALUE_VERSION: i16 = 0;
const ABORT: i16 = 0;
const COMMIT: i16 = 1;

/// The end of a transaction on one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndTxnMarker {
    /// Commit (true) or abort.
    pub commit: bool,
    /// The transaction coordinator's epoch (its `__transaction_state` partition's leader epoch).
    pub coordinator_epoch: i32,
}

/// What a control record is, from its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlType {
    /// An abort marker.
    Abort,
    /// A commit marker.
    Commit,
    /// A type this build does not know (Kafka skips those).
    Unknown(i16),
}

impl EndTxnMarker {
    /// The control record's key.
    pub fn key(&self) -> [u8; 4] {
        let kind = if self.commit { COMMIT } else { ABORT };
        let mut key = [0u8; 4];
        let mut buf = &mut key[..];
        buf.put_i16(CONTROL_KEY_VERSION);
        buf.put_i16(kind);
        key
    }

    /// The control record's value.
    pub fn value(&self) -> [u8; 6] {
        let mut value = [0u8; 6];
        let mut buf = &mut value[..];
        buf.put_i16(MARKER_VALUE_VERSION);
        buf.put_i32(self.coordinator_epoch);
        value
    }

    /// The marker batch of `producer_id`/`producer_epoch`'s transaction, at `timestamp` (base
    /// offset 0 and no leader epoch: the leader assigns both when it appends).
    pub fn batch(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        timestamp: i64,
    ) -> Result<Bytes, BuildError> {
        let key = self.key();
        let value = self.value();
        let mut builder = BatchBuilder::with_buffer(BytesMut::with_capacity(96));
        let record = RecordParts {
            key: Some(&key),
            value: Some(&value),
            headers: &[],
        };
        builder.append(timestamp, &record)?;
        let identity = BatchIdentity {
            producer_id,
            producer_epoch,
            base_sequence: -1,
        };
        let mut options = BatchOptions::new(identity, Compression::None);
        options.transactional = true;
        options.control = true;
        builder.finish(options)
    }

    /// The marker a control record holds: `None` if the key is not a commit or abort marker's
    /// or either part is malformed.
    pub fn decode(key: &[u8], value: &[u8]) -> Option<EndTxnMarker> {
        let commit = match control_type(key)? {
            ControlType::Commit => true,
            ControlType::Abort => false,
            ControlType::Unknown(_) => return None,
        };
        // Newer value versions append fields: the version and coordinator epoch lead.
        let (version, rest) = value.split_first_chunk::<2>()?;
        (i16::from_be_bytes(*version) >= 0).then_some(())?;
        let (epoch, _) = rest.split_first_chunk::<4>()?;
        Some(EndTxnMarker {
            commit,
            coordinator_epoch: i32::from_be_bytes(*epoch),
        })
    }
}

/// The type of a control record from its key (`None` if shorter than a version and a type).
pub fn control_type(key: &[u8]) -> Option<ControlType> {
    let (version, rest) = key.split_first_chunk::<2>()?;
    (i16::from_be_bytes(*version) >= 0).then_some(())?;
    let (kind, _) = rest.split_first_chunk::<2>()?;
    Some(match i16::from_be_bytes(*kind) {
        ABORT => ControlType::Abort,
        COMMIT => ControlType::Commit,
        other => ControlType::Unknown(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::check_batch;
    use crate::records::Records;
    use proptest::prelude::*;

    #[test]
    fn a_marker_batch_is_what_kafka_writes() {
        for commit in [true, false] {
            let marker = EndTxnMarker {
                commit,
                coordinator_epoch: 12,
            };
            let batch = marker.batch(4_242, 3, 1_700_000_000_000).expect("built");
            let header = check_batch(&batch).expect("a valid batch");
            assert!(header.is_control() && header.is_transactional());
            assert_eq!((header.producer_id, header.producer_epoch), (4_242, 3));
            assert_eq!((header.base_sequence, header.record_count), (-1, 1));
            let records: Vec<_> = Records::new(&batch, &header)
                .expect("records")
                .collect::<Result<_, _>>()
                .expect("decoded");
            let [record] = &records[..] else {
                panic!("one record: {records:?}");
            };
            let key = record.key.as_deref().expect("a key");
            assert_eq!(key, &[0, 0, 0, u8::from(commit)]);
            let value = record.value.as_deref().expect("a value");
            assert_eq!(value, &[0, 0, 0, 0, 0, 12]);
            assert_eq!(EndTxnMarker::decode(key, value), Some(marker));
        }
    }

    #[test]
    fn other_control_types_and_short_parts_are_not_markers() {
        assert_eq!(control_type(&[0, 0, 0, 5]), Some(ControlType::Unknown(5)));
        assert_eq!(
            EndTxnMarker::decode(&[0, 0, 0, 5], &[0, 0, 0, 0, 0, 1]),
            None
        );
        assert_eq!(control_type(&[0, 0, 0]), None);
        assert_eq!(EndTxnMarker::decode(&[0, 0, 0, 1], &[0, 0, 0, 0, 0]), None);
        // A newer value version with more fields still names its coordinator epoch.
        let marker = EndTxnMarker::decode(&[0, 0, 0, 1], &[0, 1, 0, 0, 0, 9, 0xff]);
        assert_eq!(
            marker,
            Some(EndTxnMarker {
                commit: true,
                coordinator_epoch: 9
            })
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(key in proptest::collection::vec(any::<u8>(), 0..8),
                                    value in proptest::collection::vec(any::<u8>(), 0..10)) {
            let _ = control_type(&key);
            let _ = EndTxnMarker::decode(&key, &value);
        }
    }
}
