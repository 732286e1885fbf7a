//! What the store's benchmarks share: incompressible values and batches in Kafka's format.

use anyhow::Result;
use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Xorshift state for values that do not compress; the same seed gives the same bytes.
pub struct Values(u64);

impl Values {
    pub fn new() -> Self {
        Values(0x2545_f491_4f6c_dd1d)
    }

    /// The next `len` pseudo-random bytes.
    pub fn next(&mut self, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 as u8
            })
            .collect()
    }
}

/// One uncompressed batch (no producer id) of `(key, value)` records, offset deltas from 0 and
/// timestamps from `first_timestamp` up by one.
pub fn batch(
    first_timestamp: i64,
    records: impl IntoIterator<Item = (Option<Bytes>, Vec<u8>)>,
) -> Result<Bytes> {
    let records: Vec<Record> = records
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol starts a new batch wherever `offset - sequence` changes.
            sequence: i as i32 - 1,
            timestamp: first_timestamp + i as i64,
            key,
            value: Some(value.into()),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &opts)?;
    Ok(buf.freeze())
}
