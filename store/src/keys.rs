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
//!
//! Reserved `meta` prefixes for later: `T` (aborted transactions index), `L` (last stable offset).

use crate::TopicPartition;

/// Partition data keyspace names start with this.
pub(crate) const SEGMENT_PREFIX: &str = "s.";
/// Partition records, segment summaries, leader-epoch cache.
pub(crate) const KS_META: &str = "meta";
/// Per-batch index.
pub(crate) const KS_INDEX: &str = "index";
/// Producer state.
pub(crate) const KS_PRODUCERS: &str = "producers";

pub(crate) const META_PARTITION: u8 = b'P';
pub(crate) const META_SEGMENT: u8 = b'S';
pub(crate) const META_EPOCH: u8 = b'E';

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

/// Name of a segment keyspace: `s.<topic id as 32 hex digits>.<partition>.<base offset>`.
pub(crate) fn segment_name(tp: TopicPartition, base_offset: i64) -> String {
    format!(
        "{SEGMENT_PREFIX}{}.{}.{}",
        tp.topic_id.simple(),
        tp.partition,
        base_offset
    )
}

/// Inverse of [`segment_name`].
pub(crate) fn parse_segment_name(name: &str) -> Option<(TopicPartition, i64)> {
    let rest = name.strip_prefix(SEGMENT_PREFIX)?;
    let mut parts = rest.split('.');
    let id = uuid::Uuid::try_parse(parts.next()?).ok()?;
    let partition: i32 = parts.next()?.parse().ok()?;
    let base: i64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || partition < 0 || base < 0 {
        return None;
    }
    Some((
        TopicPartition {
            topic_id: id,
            partition,
        },
        base,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_numerically() {
        let tp = TopicPartition::new(uuid::Uuid::from_u128(0xabcdef), 7);
        assert_eq!(parse_entry_key(&entry_key(tp, 42)), Some((tp, 42)));
        assert!(entry_key(tp, 255) < entry_key(tp, 256));
        let name = segment_name(tp, 1234);
        assert_eq!(name, "s.00000000000000000000000000abcdef.7.1234");
        assert_eq!(parse_segment_name(&name), Some((tp, 1234)));
        assert_eq!(parse_segment_name("s.xyz.1.2"), None);
        let mk = meta_key(META_SEGMENT, tp, &9i64.to_be_bytes());
        assert_eq!(
            parse_meta_key(META_SEGMENT, &mk),
            Some((tp, &9i64.to_be_bytes()[..]))
        );
        assert_eq!(parse_meta_key(META_EPOCH, &mk), None);
    }
}
