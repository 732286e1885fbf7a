//! Batch validation: a good batch, every kind of corruption, header rewrites, random bytes.

use crate::common::*;
use proptest::prelude::*;
use rafka_store::StoreError;
use rafka_store::batch::{self, BatchError, BatchHeader, BatchIter, HEADER_LEN};

fn recrc(buf: &mut [u8]) {
    let crc = batch::compute_crc(buf).expect("crc");
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
}

fn produce_err(buf: &[u8], max: u32) -> StoreError {
    batch::validate_produce(buf, max).expect_err("should be refused")
}

#[test]
fn good_batch_parses() {
    let b = batch(&Spec {
        records: 3,
        base_ts: 500,
        ts_step: 10,
        ..Spec::default()
    });
    let h = batch::validate_produce(&b, 1 << 20).expect("valid");
    assert_eq!(h.base_offset, 0);
    assert_eq!(h.record_count, 3);
    assert_eq!(h.last_offset_delta, 2);
    assert_eq!(h.base_timestamp, 500);
    assert_eq!(h.max_timestamp, 520);
    assert_eq!(h.producer_id, -1);
    assert_eq!(h.total_len(), Some(b.len()));
    assert_eq!(BatchHeader::parse(&b).expect("parse"), h);
}

#[test]
fn every_corruption_maps_to_its_error() {
    let good = simple(3, 1).to_vec();
    // Too short.
    let e = produce_err(&good[..HEADER_LEN - 1], 1 << 20);
    assert!(matches!(
        e,
        StoreError::CorruptRecord {
            reason: BatchError::TooShort { .. },
            ..
        }
    ));
    assert_eq!(e.kafka_code(), 2);
    // Declared length longer / shorter than the buffer.
    let e = produce_err(&good[..good.len() - 1], 1 << 20);
    assert!(matches!(
        e,
        StoreError::CorruptRecord {
            reason: BatchError::LengthMismatch { .. },
            ..
        }
    ));
    let mut longer = good.clone();
    longer.push(0);
    let e = produce_err(&longer, 1 << 20);
    assert!(matches!(
        e,
        StoreError::CorruptRecord {
            reason: BatchError::LengthMismatch { .. },
            ..
        }
    ));
    // Negative batch length.
    let mut neg = good.clone();
    neg[8..12].copy_from_slice(&(-5i32).to_be_bytes());
    assert!(matches!(
        produce_err(&neg, 1 << 20),
        StoreError::CorruptRecord { .. }
    ));
    // Magic.
    let mut magic = good.clone();
    magic[16] = 1;
    let e = produce_err(&magic, 1 << 20);
    assert!(matches!(
        e,
        StoreError::InvalidRecord {
            reason: BatchError::UnsupportedMagic { magic: 1 }
        }
    ));
    assert_eq!(e.kafka_code(), 87);
    // CRC: flip a payload byte.
    let mut crc = good.clone();
    let last = crc.len() - 1;
    crc[last] ^= 0x40;
    let e = produce_err(&crc, 1 << 20);
    assert!(matches!(
        e,
        StoreError::CorruptRecord {
            reason: BatchError::CrcMismatch { .. },
            ..
        }
    ));
    // Base offset must be 0 on the leader path (outside the CRC, so the CRC still holds).
    let mut base = good.clone();
    assert!(batch::set_base_offset(&mut base, 7));
    assert!(batch::check_batch(&base).is_ok());
    let e = produce_err(&base, 1 << 20);
    assert!(matches!(
        e,
        StoreError::InvalidRecord {
            reason: BatchError::NonZeroBaseOffset { base_offset: 7 }
        }
    ));
    // Record count != lastOffsetDelta + 1, and zero records.
    let mut count = good.clone();
    count[57..61].copy_from_slice(&2i32.to_be_bytes());
    recrc(&mut count);
    let e = produce_err(&count, 1 << 20);
    assert!(matches!(
        e,
        StoreError::InvalidRecord {
            reason: BatchError::RecordCountMismatch { .. }
        }
    ));
    let mut zero = good.clone();
    zero[57..61].copy_from_slice(&0i32.to_be_bytes());
    recrc(&mut zero);
    assert!(matches!(
        produce_err(&zero, 1 << 20),
        StoreError::InvalidRecord { .. }
    ));
    // More records claimed than an uncompressed payload can hold.
    let mut many = good.clone();
    many[23..27].copy_from_slice(&999_999i32.to_be_bytes());
    many[57..61].copy_from_slice(&1_000_000i32.to_be_bytes());
    recrc(&mut many);
    let e = produce_err(&many, 1 << 20);
    assert!(matches!(
        e,
        StoreError::InvalidRecord {
            reason: BatchError::TooManyRecords { .. }
        }
    ));
    // Unknown compression codec.
    let mut codec = good.clone();
    codec[21..23].copy_from_slice(&6i16.to_be_bytes());
    recrc(&mut codec);
    let e = produce_err(&codec, 1 << 20);
    assert!(matches!(
        e,
        StoreError::InvalidRecord {
            reason: BatchError::UnknownCompression { codec: 6 }
        }
    ));
    // Too large.
    let e = produce_err(&good, 64);
    assert!(matches!(e, StoreError::RecordTooLarge { max: 64, .. }));
    assert_eq!(e.kafka_code(), 10);
}

#[test]
fn log_append_time_rewrite_keeps_the_crc_valid() {
    let mut b = simple(2, 3).to_vec();
    assert!(batch::set_log_append_time(&mut b, 123_456));
    let h = batch::check_batch(&b).expect("valid after rewrite");
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, 123_456);
    assert!(batch::set_partition_leader_epoch(&mut b, 9));
    assert_eq!(
        batch::check_batch(&b)
            .expect("valid")
            .partition_leader_epoch,
        9
    );
}

#[test]
fn batch_iter_walks_concatenated_batches() {
    let mut all = Vec::new();
    let mut a = simple(2, 1).to_vec();
    batch::set_base_offset(&mut a, 10);
    let mut b = simple(3, 2).to_vec();
    batch::set_base_offset(&mut b, 12);
    all.extend_from_slice(&a);
    all.extend_from_slice(&b);
    let got: Vec<_> = BatchIter::new(&all)
        .map(|r| r.expect("ok").0.base_offset)
        .collect();
    assert_eq!(got, vec![10, 12]);
    all.truncate(all.len() - 3);
    let results: Vec<_> = BatchIter::new(&all).collect();
    assert_eq!(results.len(), 2);
    assert!(results[1].is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = BatchHeader::parse(&bytes);
        let _ = batch::check_batch(&bytes);
        let _ = batch::validate_produce(&bytes, 1 << 20);
        let _ = BatchIter::new(&bytes).count();
        let mut copy = bytes.clone();
        let _ = batch::set_log_append_time(&mut copy, 1);
        let _ = batch::set_base_offset(&mut copy, 1);
    }

    #[test]
    fn mutated_batches_never_panic(at in 0usize..400, byte in any::<u8>(), cut in 0usize..400) {
        let mut b = batch(&Spec { records: 3, value_len: 50, ..Spec::default() }).to_vec();
        let len = b.len();
        b[at % len] = byte;
        b.truncate(cut.max(1).min(len));
        let _ = batch::check_batch(&b);
        let _ = batch::validate_produce(&b, 1 << 20);
        let _ = BatchIter::new(&b).count();
    }
}
