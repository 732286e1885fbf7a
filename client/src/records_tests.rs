use bytes::BytesMut;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::builder::restamp;
use super::*;

fn rec(i: usize) -> OutgoingRecord {
    OutgoingRecord {
        key: i.is_multiple_of(2).then(|| Bytes::from(format!("k{i}"))),
        value: Some(Bytes::from(format!("value-{i}-\u{0}\u{ff}").into_bytes())),
        headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
        timestamp: 1_700_000_000_000 + i as i64,
    }
}

/// Rewrites the base offset (as a broker does; outside the CRC).
fn at_offset(batch: &Bytes, base: i64) -> Bytes {
    let mut b = BytesMut::from(&batch[..]);
    b[0..8].copy_from_slice(&base.to_be_bytes());
    b.freeze()
}

fn topic() -> Arc<str> {
    Arc::from("t")
}

#[test]
fn round_trips_every_compression() {
    let records: Vec<_> = (0..50).map(rec).collect();
    for c in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let batch = at_offset(
            &encode_batch(&records, BatchIdentity::NONE, c).unwrap(),
            100,
        );
        let out = decode_records(&topic(), 3, 100, batch).unwrap();
        assert_eq!(out.records.len(), 50, "{c:?}");
        assert_eq!(out.next_offset, Some(150));
        for (i, r) in out.records.iter().enumerate() {
            assert_eq!(r.offset, 100 + i as i64);
            assert_eq!(r.partition, 3);
            assert_eq!(r.key, records[i].key);
            assert_eq!(r.value, records[i].value);
            assert_eq!(r.timestamp, records[i].timestamp);
            assert_eq!(r.headers, records[i].headers);
        }
    }
}

#[test]
fn header_carries_producer_identity() {
    let id = BatchIdentity {
        producer_id: 42,
        producer_epoch: 3,
        base_sequence: 17,
    };
    let batch = encode_batch(&[rec(0), rec(1)], id, Compression::None).unwrap();
    let h = BatchHeader::parse(&batch).unwrap();
    assert_eq!(h.record_count, 2);
    assert_eq!(h.last_offset_delta, 1);
    assert_eq!(i64::from_be_bytes(batch[43..51].try_into().unwrap()), 42);
    assert_eq!(i16::from_be_bytes(batch[51..53].try_into().unwrap()), 3);
    assert_eq!(i32::from_be_bytes(batch[53..57].try_into().unwrap()), 17);
    // Not idempotent: one batch (not one per record) with base sequence -1.
    let plain = encode_batch(
        &[rec(0), rec(1), rec(2)],
        BatchIdentity::NONE,
        Compression::None,
    )
    .unwrap();
    let h = BatchHeader::parse(&plain).unwrap();
    assert_eq!((h.record_count, h.total_len()), (3, Some(plain.len())));
    assert_eq!(i32::from_be_bytes(plain[53..57].try_into().unwrap()), -1);
}

#[test]
fn skips_records_below_the_fetch_offset_and_ignores_partial_tail() {
    let b1 = at_offset(
        &encode_batch(
            &[rec(0), rec(1), rec(2)],
            BatchIdentity::NONE,
            Compression::Lz4,
        )
        .unwrap(),
        10,
    );
    let b2 = at_offset(
        &encode_batch(&[rec(3), rec(4)], BatchIdentity::NONE, Compression::None).unwrap(),
        13,
    );
    let mut data = BytesMut::new();
    data.extend_from_slice(&b1);
    data.extend_from_slice(&b2);
    data.extend_from_slice(&b2[..b2.len() - 5]); // a cut-off third batch
    let out = decode_records(&topic(), 0, 12, data.freeze()).unwrap();
    let offsets: Vec<i64> = out.records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![12, 13, 14]);
    assert_eq!(out.next_offset, Some(15));
}

#[test]
fn control_batches_are_skipped_but_advance_the_position() {
    let marker = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: 5,
        producer_epoch: 0,
        timestamp_type: TimestampType::Creation,
        offset: 20,
        sequence: -1,
        timestamp: 0,
        key: Some(Bytes::from_static(&[0, 0, 0, 1])),
        value: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
        headers: IndexMap::new(),
    };
    let mut buf = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, [&marker], &opts).unwrap();
    let data = at_offset(
        &encode_batch(&[rec(0)], BatchIdentity::NONE, Compression::None).unwrap(),
        19,
    );
    let mut all = BytesMut::from(&data[..]);
    all.extend_from_slice(&buf);
    let out = decode_records(&topic(), 0, 19, all.freeze()).unwrap();
    assert_eq!(out.records.len(), 1);
    assert_eq!(out.next_offset, Some(21));
}

/// One batch of `count` records of producer `pid` at `offset`; a control batch holds an abort
/// marker.
fn txn_batch(pid: i64, offset: i64, count: usize, control: bool) -> BytesMut {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: true,
            control,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: pid,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: offset + i as i64,
            sequence: if control { -1 } else { i as i32 },
            timestamp: 0,
            key: Some(Bytes::from_static(&[0, 0, 0, 0])),
            value: Some(Bytes::from(format!("{pid}@{}", offset + i as i64))),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &opts).unwrap();
    buf
}

#[test]
fn read_committed_skips_aborted_transactions_up_to_their_marker() {
    let mut all = BytesMut::new();
    all.extend_from_slice(&txn_batch(5, 10, 2, false)); // aborted below
    all.extend_from_slice(&txn_batch(6, 12, 1, false)); // committed
    all.extend_from_slice(&txn_batch(5, 13, 1, true)); // producer 5's abort marker
    all.extend_from_slice(&txn_batch(5, 14, 2, false)); // its next transaction
    let data = all.freeze();
    let out = decode_committed(&topic(), 0, 10, data.clone(), &[(5, 10)]).unwrap();
    let offsets: Vec<i64> = out.records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![12, 14, 15]);
    assert_eq!(out.next_offset, Some(16));
    // Without the aborted list (read_uncommitted) every data record is delivered.
    let out = decode_records(&topic(), 0, 10, data).unwrap();
    assert_eq!(out.records.len(), 5);
}

#[test]
fn bad_crc_is_a_typed_error() {
    let batch = encode_batch(&[rec(0)], BatchIdentity::NONE, Compression::None).unwrap();
    let mut bad = BytesMut::from(&batch[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let err = decode_records(&topic(), 1, 0, bad.freeze()).unwrap_err();
    assert!(
        matches!(err, Error::CorruptRecord { partition: 1, .. }),
        "{err}"
    );
}

#[test]
fn lying_record_count_is_refused_without_allocating() {
    let batch = encode_batch(&[rec(0)], BatchIdentity::NONE, Compression::None).unwrap();
    let mut bad = BytesMut::from(&batch[..]);
    // A count that agrees with the last offset delta, so only the bytes can refute it.
    bad[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
    bad[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    let crc = crc32c::crc32c(&bad[21..]);
    bad[17..21].copy_from_slice(&crc.to_be_bytes());
    let err = decode_records(&topic(), 0, 0, bad.freeze()).unwrap_err();
    assert!(err.to_string().contains("cannot fit"), "{err}");
}

#[test]
fn garbage_never_panics() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for len in 0..400usize {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let _ = decode_records(&topic(), 0, 0, Bytes::from(bytes));
    }
}

#[test]
fn compression_names() {
    assert_eq!(parse_compression("ZSTD").unwrap(), Compression::Zstd);
    assert!(parse_compression("brotli").is_err());
}

#[test]
fn header_counts_beyond_the_bytes_are_refused_before_decoding() {
    let plain = OutgoingRecord {
        value: Some(Bytes::from_static(b"v")),
        ..Default::default()
    };
    let batch = encode_batch(&[plain], BatchIdentity::NONE, Compression::None).unwrap();
    let mut bad = BytesMut::from(&batch[..]);
    let last = bad.len() - 1;
    assert_eq!(bad[last], 0, "the record ends with its header count");
    bad[last] = 126; // zigzag(63): 63 headers in 0 bytes
    let crc = crc32c::crc32c(&bad[21..]);
    bad[17..21].copy_from_slice(&crc.to_be_bytes());
    let err = decode_records(&topic(), 0, 0, bad.freeze()).unwrap_err();
    assert!(err.to_string().contains("more headers than bytes"), "{err}");
}

#[test]
fn mutated_batches_never_panic() {
    let records: Vec<_> = (0..5).map(rec).collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for c in [Compression::None, Compression::Gzip, Compression::Lz4] {
        let batch = encode_batch(&records, BatchIdentity::NONE, c).unwrap();
        for _ in 0..2000 {
            let mut bad = BytesMut::from(&batch[..]);
            for _ in 0..1 + next() % 4 {
                let at = 21 + (next() as usize) % (bad.len() - 21);
                bad[at] = next() as u8;
            }
            let crc = crc32c::crc32c(&bad[21..]);
            bad[17..21].copy_from_slice(&crc.to_be_bytes());
            let _ = decode_records(&topic(), 0, 0, bad.freeze());
        }
    }
}

/// The in-place builder agrees with `kafka-protocol`'s independent decoder (CRC, deltas,
/// identity, headers), for every codec.
#[test]
fn built_batches_decode_with_kafka_protocol() {
    let records: Vec<_> = (0..20).map(rec).collect();
    let id = BatchIdentity {
        producer_id: 9,
        producer_epoch: 1,
        base_sequence: 100,
    };
    for c in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let batch = encode_batch(&records, id, c).unwrap();
        let set = RecordBatchDecoder::decode(&mut batch.clone()).unwrap();
        assert_eq!(set.records.len(), 20, "{c:?}");
        for (i, r) in set.records.iter().enumerate() {
            assert_eq!(r.offset, i as i64);
            assert_eq!(r.sequence, 100 + i as i32);
            assert_eq!((r.producer_id, r.producer_epoch), (9, 1));
            assert_eq!(r.timestamp, records[i].timestamp);
            assert_eq!(r.key, records[i].key);
            assert_eq!(r.value, records[i].value);
            assert_eq!(r.headers.len(), 1);
        }
    }
}

#[test]
fn restamping_changes_identity_and_keeps_the_crc_valid() {
    let batch = encode_batch(&[rec(0), rec(1)], BatchIdentity::NONE, Compression::Lz4).unwrap();
    let id = BatchIdentity {
        producer_id: 77,
        producer_epoch: 4,
        base_sequence: 12,
    };
    let again = restamp(&batch, id);
    assert_eq!(again.len(), batch.len());
    let set = RecordBatchDecoder::decode(&mut again.clone()).unwrap();
    assert_eq!(set.records[1].sequence, 13);
    assert_eq!(set.records[0].producer_id, 77);
    let out = decode_records(&topic(), 0, 0, again).unwrap();
    assert_eq!(out.records.len(), 2);
}

#[test]
fn builder_sizes_are_exact_and_timestamps_relative_to_the_first() {
    let mut b = BatchBuilder::with_capacity(16);
    assert!(b.is_empty());
    let mut expected = HEADER_LEN;
    for (i, ts) in [1_000i64, 900, 5_000_000, 1_000].into_iter().enumerate() {
        let r = rec(i);
        let size = b.size_of(ts, &r.parts());
        b.append(ts, &r.parts()).unwrap();
        expected += size;
        assert_eq!(b.size(), expected);
    }
    let batch = b.build(BatchIdentity::NONE, Compression::None).unwrap();
    let h = BatchHeader::parse(&batch).unwrap();
    assert_eq!((h.base_timestamp, h.max_timestamp), (1_000, 5_000_000));
    let out = decode_records(&topic(), 0, 0, batch).unwrap();
    let ts: Vec<i64> = out.records.iter().map(|r| r.timestamp).collect();
    assert_eq!(ts, vec![1_000, 900, 5_000_000, 1_000]);
}

#[test]
fn log_append_time_batches_report_the_batch_time() {
    let batch = encode_batch(&[rec(0), rec(1)], BatchIdentity::NONE, Compression::None).unwrap();
    let mut b = BytesMut::from(&batch[..]);
    b[21..23].copy_from_slice(&(1i16 << 3).to_be_bytes());
    b[35..43].copy_from_slice(&42i64.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    let out = decode_records(&topic(), 0, 0, b.freeze()).unwrap();
    assert!(
        out.records
            .iter()
            .all(|r| r.log_append_time && r.timestamp == 42)
    );
}

#[test]
fn trailing_bytes_after_the_records_are_corrupt() {
    let batch = encode_batch(&[rec(0)], BatchIdentity::NONE, Compression::None).unwrap();
    let mut b = BytesMut::from(&batch[..]);
    b.extend_from_slice(&[0, 0]);
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    let err = decode_records(&topic(), 0, 0, b.freeze()).unwrap_err();
    assert!(err.to_string().contains("after the 1 declared"), "{err}");
}

#[test]
fn keys_and_values_share_the_fetched_buffer() {
    let batch = encode_batch(&[rec(0), rec(1)], BatchIdentity::NONE, Compression::None).unwrap();
    let range = batch.as_ptr() as usize..batch.as_ptr() as usize + batch.len();
    let out = decode_records(&topic(), 0, 0, batch.clone()).unwrap();
    for r in &out.records {
        let v = r.value.as_ref().unwrap();
        assert!(range.contains(&(v.as_ptr() as usize)), "value was copied");
    }
}

/// The batch checksum is CRC-32C (Castagnoli), not the CRC-32 of older message formats.
#[test]
fn the_checksum_is_crc32c() {
    assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    let batch = encode_batch(&[rec(0)], BatchIdentity::NONE, Compression::None).unwrap();
    let stored = u32::from_be_bytes(batch[17..21].try_into().unwrap());
    assert_eq!(stored, crc32c::crc32c(&batch[21..]));
}
