//! Property tests: whatever is built reads back the same (through our reader and through the
//! kafka-protocol crate's decoder), and no bytes make a reader panic.

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use proptest::prelude::*;

use crate::batch::{self, BatchIdentity, BatchIter, check_batch};
use crate::builder::{BatchBuilder, BatchOptions, RecordParts};
use crate::records::{Record, Records};

/// A record as the tests generate it.
#[derive(Debug, Clone)]
struct Input {
    gap: i32,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Bytes>)>,
}

fn input() -> impl Strategy<Value = Input> {
    let bytes = || proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40));
    let header = ("[a-z]{0,6}", bytes().prop_map(|v| v.map(Bytes::from)));
    (
        0..3i32,
        1_600_000_000_000..1_700_000_000_000i64,
        bytes(),
        bytes(),
        proptest::collection::vec(header, 0..3),
    )
        .prop_map(|(gap, timestamp, key, value, headers)| Input {
            gap,
            timestamp,
            key,
            value,
            headers,
        })
}

fn compression() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::None),
        Just(Compression::Gzip),
        Just(Compression::Snappy),
        Just(Compression::Lz4),
        Just(Compression::Zstd),
    ]
}

fn options() -> impl Strategy<Value = BatchOptions> {
    (
        compression(),
        any::<bool>(),
        any::<bool>(),
        0..1_000_000i64,
        -1..10i32,
        (-1..1_000i64, -1..5i16, -1..1_000i32),
    )
        .prop_map(
            |(compression, transactional, control, base_offset, epoch, (id, ep, seq))| {
                BatchOptions {
                    transactional,
                    control,
                    base_offset,
                    partition_leader_epoch: epoch,
                    ..BatchOptions::new(
                        BatchIdentity {
                            producer_id: id,
                            producer_epoch: ep,
                            base_sequence: seq,
                        },
                        compression,
                    )
                }
            },
        )
}

/// Builds a batch of `inputs`, each record `gap` offsets after the previous one.
fn build(inputs: &[Input], options: BatchOptions) -> (Bytes, Vec<i32>) {
    let mut builder = BatchBuilder::with_capacity(64);
    let mut deltas = Vec::new();
    let mut delta = -1i32;
    for r in inputs {
        delta += 1 + r.gap;
        let parts = RecordParts {
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: &r.headers,
        };
        let before = builder.size();
        let size = builder.size_of(r.timestamp, &parts);
        builder.append_at(delta, r.timestamp, &parts).unwrap();
        if r.gap == 0 {
            assert_eq!(builder.size() - before, size, "size_of is exact");
        }
        deltas.push(delta);
    }
    (builder.finish(options).unwrap(), deltas)
}

fn read(batch: &Bytes) -> Vec<Record> {
    let header = check_batch(batch).unwrap();
    Records::new(batch, &header)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn built_batches_read_back_the_same(
        inputs in proptest::collection::vec(input(), 1..20),
        options in options(),
    ) {
        let (built, deltas) = build(&inputs, options);
        let header = check_batch(&built).unwrap();
        prop_assert_eq!(header.base_offset, options.base_offset);
        prop_assert_eq!(header.partition_leader_epoch, options.partition_leader_epoch);
        prop_assert_eq!(header.identity(), options.identity);
        prop_assert_eq!(header.is_transactional(), options.transactional);
        prop_assert_eq!(header.is_control(), options.control);
        prop_assert_eq!(header.compression(), options.compression as u8);
        prop_assert_eq!(header.record_count as usize, inputs.len());
        prop_assert_eq!(Some(&header.last_offset_delta), deltas.last());
        prop_assert_eq!(header.base_timestamp, inputs[0].timestamp);
        let max = inputs.iter().map(|r| r.timestamp).max().unwrap();
        prop_assert_eq!(header.max_timestamp, max);

        let records = read(&built);
        prop_assert_eq!(records.len(), inputs.len());
        for ((record, input), delta) in records.iter().zip(&inputs).zip(&deltas) {
            prop_assert_eq!(record.offset_delta, *delta);
            prop_assert_eq!(record.offset, options.base_offset + i64::from(*delta));
            prop_assert_eq!(record.timestamp, input.timestamp);
            prop_assert_eq!(record.key.as_deref(), input.key.as_deref());
            prop_assert_eq!(record.value.as_deref(), input.value.as_deref());
            prop_assert_eq!(&record.headers, &input.headers);
        }

        // The kafka-protocol crate's decoder (written from Kafka's spec, not by us) agrees.
        let mut buf = built.clone();
        let decoded = RecordBatchDecoder::decode(&mut buf).unwrap();
        prop_assert_eq!(decoded.records.len(), inputs.len());
        for (theirs, ours) in decoded.records.iter().zip(&records) {
            prop_assert_eq!(theirs.offset, ours.offset);
            prop_assert_eq!(theirs.timestamp, ours.timestamp);
            prop_assert_eq!(&theirs.key, &ours.key);
            prop_assert_eq!(&theirs.value, &ours.value);
            prop_assert_eq!(theirs.transactional, options.transactional);
            prop_assert_eq!(theirs.control, options.control);
            prop_assert_eq!(theirs.producer_id, options.identity.producer_id);
            if options.identity.base_sequence >= 0 {
                let sequence = options.identity.base_sequence + ours.offset_delta;
                prop_assert_eq!(theirs.sequence, sequence);
            }
        }
    }

    #[test]
    fn a_rewrite_keeps_offsets_identity_and_a_valid_crc(
        inputs in proptest::collection::vec(input(), 2..10),
        options in options(),
        keep in proptest::collection::vec(any::<bool>(), 10),
        horizon in proptest::option::of(1_600_000_000_000..1_800_000_000_000i64),
    ) {
        // As the log cleaner does: read a batch, keep some records at their offsets, rebuild,
        // possibly stamping a delete horizon (KIP-534) as the base timestamp.
        let (built, _) = build(&inputs, options);
        let original = check_batch(&built).unwrap();
        let mut builder = BatchBuilder::with_capacity(64);
        if let Some(h) = horizon {
            builder.set_delete_horizon(h).unwrap();
        }
        let mut kept = Vec::new();
        for (record, keep) in read(&built).into_iter().zip(&keep) {
            if *keep {
                let parts = RecordParts {
                    key: record.key.as_deref(),
                    value: record.value.as_deref(),
                    headers: &record.headers,
                };
                builder.append_at(record.offset_delta, record.timestamp, &parts).unwrap();
                kept.push(record);
            }
        }
        let rewritten = builder
            .finish(BatchOptions {
                last_offset_delta: Some(original.last_offset_delta),
                ..options
            })
            .unwrap();
        let header = check_batch(&rewritten).unwrap();
        prop_assert_eq!(header.base_offset, original.base_offset);
        prop_assert_eq!(header.last_offset_delta, original.last_offset_delta);
        prop_assert_eq!(header.identity(), original.identity());
        prop_assert_eq!(header.delete_horizon_ms(), horizon);
        let attributes = header.attributes & !batch::DELETE_HORIZON_BIT;
        prop_assert_eq!(attributes, original.attributes);
        prop_assert_eq!(read(&rewritten), kept.clone());
        // kafka-protocol's decoder reads the same timestamps relative to the horizon.
        let mut buf = rewritten.clone();
        let decoded = RecordBatchDecoder::decode(&mut buf).unwrap();
        let times: Vec<i64> = decoded.records.iter().map(|r| r.timestamp).collect();
        prop_assert_eq!(times, kept.iter().map(|r| r.timestamp).collect::<Vec<_>>());
        prop_assert!(decoded.records.iter().all(|r| r.delete_horizon == horizon.is_some()));
    }

    #[test]
    fn a_rewrite_of_a_log_append_time_batch_keeps_its_time(
        inputs in proptest::collection::vec(input(), 1..6),
        time in 1_600_000_000_000..1_700_000_000_000i64,
    ) {
        let options = BatchOptions {
            log_append_time: Some(time),
            ..BatchOptions::new(BatchIdentity::NONE, Compression::None)
        };
        let (built, _) = build(&inputs, options);
        let header = check_batch(&built).unwrap();
        prop_assert!(header.is_log_append_time());
        prop_assert_eq!(header.max_timestamp, time);
        prop_assert!(read(&built).iter().all(|r| r.timestamp == time));
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        read_everything(Bytes::from(bytes));
    }

    #[test]
    fn mutated_batches_never_panic(
        inputs in proptest::collection::vec(input(), 1..6),
        options in options(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        fix_crc in any::<bool>(),
    ) {
        let (built, _) = build(&inputs, options);
        let mut buf = BytesMut::from(&built[..]);
        for (at, byte) in flips {
            let i = at.index(buf.len());
            buf[i] ^= byte;
        }
        if fix_crc {
            batch::stamp_crc(&mut buf);
        }
        read_everything(buf.freeze());
    }
}

/// Every reader over `bytes`: results are ignored, only a panic fails.
fn read_everything(bytes: Bytes) {
    for item in BatchIter::new(&bytes) {
        let Ok((header, range)) = item else { break };
        if let Ok(records) = Records::new(&bytes.slice(range), &header) {
            records.for_each(drop);
        }
    }
    if let Ok(header) = batch::BatchHeader::parse(&bytes)
        && let Ok(records) = Records::new(&bytes, &header)
    {
        records.for_each(drop);
    }
}

#[test]
fn the_delete_horizon_goes_before_any_record() {
    let mut builder = BatchBuilder::with_capacity(64);
    let parts = RecordParts {
        key: Some(b"k"),
        value: None,
        headers: &[],
    };
    builder.append(5, &parts).unwrap();
    assert_eq!(
        builder.set_delete_horizon(10),
        Err(crate::builder::BuildError::HorizonAfterRecords)
    );
}

#[test]
fn offset_deltas_must_increase() {
    let mut builder = BatchBuilder::with_capacity(64);
    let parts = RecordParts {
        key: None,
        value: Some(b"v"),
        headers: &[],
    };
    builder.append_at(3, 0, &parts).unwrap();
    assert!(builder.append_at(3, 0, &parts).is_err());
    builder.append(0, &parts).unwrap();
    let built = builder
        .build(BatchIdentity::NONE, Compression::None)
        .unwrap();
    let deltas: Vec<i32> = read(&built).iter().map(|r| r.offset_delta).collect();
    assert_eq!(deltas, [3, 4]);
}
