//! Record batches for tests, encoded with the kafka-protocol crate.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Producer identity of an idempotent batch: (producer id, epoch, base sequence).
pub type Idempotence = Option<(i64, i16, i32)>;

/// One batch of `values` (keys absent), with timestamps `timestamp`.
pub fn batch(values: &[&[u8]], idempotence: Idempotence, timestamp: i64) -> Bytes {
    batch_with(values, idempotence, timestamp, Compression::None)
}

/// One batch, compressed as asked.
pub fn batch_with(
    values: &[&[u8]],
    idempotence: Idempotence,
    timestamp: i64,
    compression: Compression,
) -> Bytes {
    encode(values, (idempotence, false), timestamp, compression)
}

/// One transactional batch of producer (id, epoch, base sequence), as a transactional
/// producer sends it.
pub fn transactional(values: &[&[u8]], producer: (i64, i16, i32), timestamp: i64) -> Bytes {
    encode(values, (Some(producer), true), timestamp, Compression::None)
}

fn encode(
    values: &[&[u8]],
    (idempotence, transactional): (Idempotence, bool),
    timestamp: i64,
    compression: Compression,
) -> Bytes {
    let (producer_id, producer_epoch, base_sequence) = idempotence.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, value)| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever offset - sequence changes, so a batch
            // without a producer keeps that difference constant while its base sequence stays -1.
            sequence: if base_sequence < 0 {
                i as i32 - 1
            } else {
                base_sequence + i as i32
            },
            timestamp,
            key: None,
            value: Some(Bytes::copy_from_slice(value)),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

/// Every (offset, value) in a Fetch response's records.
pub fn decode(records: &Bytes) -> Vec<(i64, Bytes)> {
    let mut buf = records.clone();
    RecordBatchDecoder::decode_all(&mut buf)
        .unwrap()
        .into_iter()
        .flat_map(|set| set.records)
        .map(|r| (r.offset, r.value.unwrap_or_default()))
        .collect()
}
