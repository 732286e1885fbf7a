//! Keyspace names and key layouts. Every integer in a key is big-endian, and offsets, partitions
//! and producer ids are never negative in keys, so byte order is numeric order.
//!
//! | keyspace | key | value |
//! |---|---|---|
//! | `s.<topic id hex>.<partition>.<base offset>` (one per log segment) | topic id (16) · partition (4) · last offset of the batch (8) | the RecordBatch, verbatim |
//! | `index` | topic id · partition · last offset | [`crate::codec::IndexEntry`] |
//! | `producers` | topic id · partition · producer id (8) | [`crate::producer_state::ProducerEntry`] |
//! | `meta` | `P` · topic id · partition | [`crate::codec::PartitionRecord`] |
//! | `meta` | `S` · topic id · partition · segment base offset (8) | [`crate::codec::SegmentSummary`] |
//! | `meta` | `E` · topic id · partition · leader epoch (4) | start offset (i64) |
//! | `meta` | `C` · topic id · partition | [`crate::codec::CleanerCheckpoint`] |
//! | `meta` | `T` · topic id · partition · abort marker offset (8) | an aborted transaction ([`crate::txn::encode_aborted`]) |
//! | `meta` | `H` | the store's secret for key hashes ([`crate::codec::encode_hash_key`]) |
//! | `keys` | topic id · partition · generation (4) · key hash (16) · slot (8) | [`crate::codec::KeyEntry`] |
//!
//! A cleaned segment's keyspace is `s.<topic id hex>.<partition>.<base offset>.<generation>`.
//! A key index slot is [`LATEST_SLOT`] (the key's latest record) or a time window's number.
//! Reserved `meta` prefix for later: `L`.

use crate::TopicPartition;

/// Partition data keyspace names start with this.
pub(crate) const SEGMENT_PREFIX: &str = "s.";
/// Partition records, segment summaries, leader-epoch cache.
pub(crate) const KS_META: &str = "meta";
/// Per-batch index.
pub(crate) const KS_INDEX: &str = "index";
/// Producer state.
pub(crate) const KS_PRODUCERS: &str = "producers";
/// The log cleaner's key index.
pub(crate) const KS_KEYS: &str = "keys";

pub(crate) const META_PARTITION: u8 = b'P';
pub(crate) const META_SEGMENT: u8 = b'S';
pub(crate) const META_EPOCH: u8 = b'E';
pub(crate) const META_CLEANER: u8 = b'C';
/// The aborted-transactions index.
pub(crate) const META_TXN: u8 = b'T';
/// The store-wide key hash secret (no partition in the key).
pub(crate) const META_HASH_KEY: &[u8] = b"H";

/// Length of a key index key: topic id · partition · generation · hash · slot.
pub(crate) const KEY_INDEX_KEY_LEN: usize = TP_LEN + 4 + 16 + 8;
/// The key index slot of a key's latest record (window slots are below it).
pub(crate) const LATEST_SLOT: u64 = u64::MAX;

/// Length of topic id + partition.
pub(crate) const TP_LEN: usize = 20;
/// Length of a batch, index or producer key.
pub(crate) const ENTRY_KEY_LEN: usize = TP_LEN + 8;

/// topic id · partition.
pub(crate) fn tp_prefix(tp: TopicPartition) -> [u8; TP_LEN] {
    let mut k = [0u8; TP_LEN];
    let (id, p) = k.split_at_mut(16);
    id.copy_from_slice(tp.topic_id.as_bytes());
    p.copy_from_slice(&tp.partition.to_be_bytes());
    k
}

/// topic id · partition · n (a last offset or a producer id).
pub(crate) fn entry_key(tp: TopicPartition, n: i64) -> [u8; ENTRY_KEY_LEN] {
    let mut k = [0u8; ENTRY_KEY_LEN];
    let (head, tail) = k.split_at_mut(TP_LEN);
    head.copy_from_slice(&tp_prefix(tp));
    tail.copy_from_slice(&n.to_be_bytes());
    k
}

/// Inverse of [`entry_key`]; `None` for a key of another shape.
pub(crate) fn parse_entry_key(key: &[u8]) -> Option<(TopicPartition, i64)> {
    if key.len() != ENTRY_KEY_LEN {
        return None;
    }
    let tp = parse_tp(key.get(..TP_LEN)?)?;
    let n = i64::from_be_bytes(key.get(TP_LEN..)?.try_into().ok()?);
    Some((tp, n))
}

fn parse_tp(bytes: &[u8]) -> Option<TopicPartition> {
    let id: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
    let p = i32::from_be_bytes(bytes.get(16..TP_LEN)?.try_into().ok()?);
    Some(TopicPartition {
        topic_id: uuid::Uuid::from_bytes(id),
        partition: p,
    })
}

/// A `meta` key: tag · topic id · partition · suffix.
pub(crate) fn meta_key(tag: u8, tp: TopicPartition, suffix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + TP_LEN + suffix.len());
    k.push(tag);
    k.extend_from_slice(&tp_prefix(tp));
    k.extend_from_slice(suffix);
    k
}

/// A `meta` key's partition and suffix, if it has the given tag.
pub(crate) fn parse_meta_key(tag: u8, key: &[u8]) -> Option<(TopicPartition, &[u8])> {
    if *key.first()? != tag {
        return None;
    }
    let tp = parse_tp(key.get(1..1 + TP_LEN)?)?;
    Some((tp, key.get(1 + TP_LEN..)?))
}

/// Name of a segment keyspace: `s.<topic id as 32 hex digits>.<partition>.<base offset>`, then
/// `.<generation>` for a segment the log cleaner wrote (generation > 0).
pub(crate) fn segment_name(tp: TopicPartition, base_offset: i64, generation: u32) -> String {
    let id = tp.topic_id.simple();
    match generation {
        0 => format!("{SEGMENT_PREFIX}{id}.{}.{base_offset}", tp.partition),
        g => format!("{SEGMENT_PREFIX}{id}.{}.{base_offset}.{g}", tp.partition),
    }
}

/// Inverse of [`segment_name`]: partition, base offset, generation.
pub(crate) fn parse_segment_name(name: &str) -> Option<(TopicPartition, i64, u32)> {
    let rest = name.strip_prefix(SEGMENT_PREFIX)?;
    let mut parts = rest.split('.');
    let id = uuid::Uuid::try_parse(parts.next()?).ok()?;
    let partition: i32 = parts.next()?.parse().ok()?;
    let base: i64 = parts.next()?.parse().ok()?;
    let generation: u32 = match parts.next() {
        None => 0,
        Some(g) => g.parse().ok().filter(|g| *g > 0)?,
    };
    if parts.next().is_some() || partition < 0 || base < 0 {
        return None;
    }
    let tp = TopicPartition {
        topic_id: id,
        partition,
    };
    Some((tp, base, generation))
}

/// topic id · partition · generation: the prefix of a partition's key index.
pub(crate) fn key_index_prefix(tp: TopicPartition, generation: u32) -> [u8; TP_LEN + 4] {
    let mut k = [0u8; TP_LEN + 4];
    let (head, tail) = k.split_at_mut(TP_LEN);
    head.copy_from_slice(&tp_prefix(tp));
    tail.copy_from_slice(&generation.to_be_bytes());
    k
}

/// A key index key: prefix · key hash · slot.
pub(crate) fn key_index_key(
    tp: TopicPartition,
    generation: u32,
    hash: &[u8; 16],
    slot: u64,
) -> [u8; KEY_INDEX_KEY_LEN] {
    let mut k = [0u8; KEY_INDEX_KEY_LEN];
    let (head, rest) = k.split_at_mut(TP_LEN + 4);
    head.copy_from_slice(&key_index_prefix(tp, generation));
    let (h, s) = rest.split_at_mut(16);
    h.copy_from_slice(hash);
    s.copy_from_slice(&slot.to_be_bytes());
    k
}

/// The partition and generation of a key index key.
pub(crate) fn parse_key_index_key(key: &[u8]) -> Option<(TopicPartition, u32)> {
    if key.len() != KEY_INDEX_KEY_LEN {
        return None;
    }
    let tp = parse_tp(key.get(..TP_LEN)?)?;
    let generation = u32::from_be_bytes(key.get(TP_LEN..TP_LEN + 4)?.try_into().ok()?);
    Some((tp, generation))
}

/// The slot of time window number `window` (order-preserving; never [`LATEST_SLOT`]).
pub(crate) fn window_slot(window: i64) -> u64 {
    (window.min(i64::MAX - 1) as u64) ^ (1 << 63)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_numerically() {
        let tp = TopicPartition::new(uuid::Uuid::from_u128(0xabcdef), 7);
        assert_eq!(parse_entry_key(&entry_key(tp, 42)), Some((tp, 42)));
        assert!(entry_key(tp, 255) < entry_key(tp, 256));
        let name = segment_name(tp, 1234, 0);
        assert_eq!(name, "s.00000000000000000000000000abcdef.7.1234");
        assert_eq!(parse_segment_name(&name), Some((tp, 1234, 0)));
        let cleaned = segment_name(tp, 1234, 3);
        assert_eq!(cleaned, "s.00000000000000000000000000abcdef.7.1234.3");
        assert_eq!(parse_segment_name(&cleaned), Some((tp, 1234, 3)));
        assert_eq!(parse_segment_name("s.xyz.1.2"), None);
        assert_eq!(parse_segment_name(&format!("{name}.0")), None);
        assert_eq!(parse_segment_name(&format!("{name}.1.1")), None);
        let k = key_index_key(tp, 9, &[7; 16], LATEST_SLOT);
        assert_eq!(parse_key_index_key(&k), Some((tp, 9)));
        assert!(k.starts_with(&key_index_prefix(tp, 9)));
        assert!(window_slot(-1) < window_slot(0) && window_slot(i64::MAX) < LATEST_SLOT);
        let mk = meta_key(META_SEGMENT, tp, &9i64.to_be_bytes());
        assert_eq!(
            parse_meta_key(META_SEGMENT, &mk),
            Some((tp, &9i64.to_be_bytes()[..]))
        );
        assert_eq!(parse_meta_key(META_EPOCH, &mk), None);
    }
}
