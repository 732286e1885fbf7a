//! The records of `__consumer_offsets`, in two formats.
//!
//! **Kafka's layout** (written once the cluster's feature level enables
//! [`crate::metadata::Feature::GroupRecords`]): a key is an `i16` version then a struct, a value
//! an `i16` version then a struct; strings are `i16` length + UTF-8 (-1 for null), bytes `i32`
//! length + bytes; a record without a value deletes what its key names (a tombstone).
//!
//! | record | key | value |
//! |---|---|---|
//! | offset commit | v1: group, topic, partition `i32` | v3: offset `i64`, leader epoch `i32`, metadata, commit timestamp `i64` |
//! | group metadata | v2: group | v3: protocol type, generation `i32`, protocol (nullable), leader (nullable), state timestamp `i64`, members `i32` count of (member id, instance id (nullable), client id, client host, rebalance timeout `i32`, session timeout `i32`, subscription bytes, assignment bytes) |
//!
//! **The legacy layout** (what nodes before group records wrote, and still write until the level
//! allows the new one; offsets only): key `u8 1 | u16 len | group | u16 len | topic | i32
//! partition`, value `u8 1 | i64 offset | i32 leader epoch | i64 commit time | u32 len |
//! metadata`. A legacy key starts with byte 1, a Kafka key with byte 0 (an `i16` version below
//! 256), so replay tells them apart by their first byte.
//!
//! Decoding never panics; anything malformed decodes to `None`.

use bytes::{BufMut, Bytes, BytesMut};

const LEGACY_VERSION: u8 = 1;
const OFFSET_KEY_VERSION: i16 = 1;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_KEY_VERSION: i16 = 2;
const GROUP_VALUE_VERSION: i16 = 3;

/// Which commit a record is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OffsetKey {
    /// Group id.
    pub group: String,
    /// Topic name.
    pub topic: String,
    /// Partition.
    pub partition: i32,
}

/// A committed offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetValue {
    /// Next offset to consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record (-1 unknown).
    pub leader_epoch: i32,
    /// Client metadata string.
    pub metadata: String,
    /// When it was committed (ms since the Unix epoch).
    pub commit_timestamp: i64,
}

/// One member in a group metadata record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberMetadata {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Rebalance timeout (ms).
    pub rebalance_timeout_ms: i32,
    /// Session timeout (ms).
    pub session_timeout_ms: i32,
    /// Subscription bytes for the group's protocol.
    pub subscription: Bytes,
    /// Assignment bytes.
    pub assignment: Bytes,
}

/// A group's generation as the coordinator persists it (Kafka's `GroupMetadataValue`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMetadata {
    /// "consumer" (kept when the group empties, as in Kafka); empty for a group that never had
    /// members.
    pub protocol_type: String,
    /// Generation.
    pub generation: i32,
    /// The chosen assignor.
    pub protocol: Option<String>,
    /// The leader's member id.
    pub leader: Option<String>,
    /// When the group entered its current state (ms since the Unix epoch).
    pub state_timestamp: i64,
    /// The members.
    pub members: Vec<MemberMetadata>,
}

/// One record of `__consumer_offsets`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A commit, or its deletion (`None`).
    Offset {
        /// Which commit.
        key: OffsetKey,
        /// The commit; `None` deletes it.
        value: Option<OffsetValue>,
    },
    /// A group's metadata, or the group's deletion (`None`).
    Group {
        /// Group id.
        group: String,
        /// The metadata; `None` deletes the group.
        metadata: Option<GroupMetadata>,
    },
}

/// How records are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Offsets only, as nodes before group records wrote them.
    Legacy,
    /// Kafka's layout, offsets and group metadata.
    Kafka,
}

impl Record {
    /// Encodes key and value; `None` if a name is too long, or for a group record in the
    /// legacy format (which has none).
    pub fn encode(&self, format: Format) -> Option<(Bytes, Option<Bytes>)> {
        match (self, format) {
            (Record::Offset { key, value }, Format::Legacy) => {
                Some((legacy_key(key)?, value.as_ref().map(legacy_value)))
            }
            (Record::Offset { key, value }, Format::Kafka) => {
                let mut k = BytesMut::new();
                k.put_i16(OFFSET_KEY_VERSION);
                put_str(&mut k, &key.group)?;
                put_str(&mut k, &key.topic)?;
                k.put_i32(key.partition);
                let v = match value {
                    Some(value) => Some(offset_value(value)?),
                    None => None,
                };
                Some((k.freeze(), v))
            }
            (Record::Group { .. }, Format::Legacy) => None,
            (Record::Group { group, metadata }, Format::Kafka) => {
                let mut k = BytesMut::new();
                k.put_i16(GROUP_KEY_VERSION);
                put_str(&mut k, group)?;
                let v = match metadata {
                    Some(metadata) => Some(group_value(metadata)?),
                    None => None,
                };
                Some((k.freeze(), v))
            }
        }
    }

    /// Decodes a record of either format; `None` if malformed or of an unknown kind.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Option<Record> {
        if key.first() == Some(&LEGACY_VERSION) {
            let key = decode_legacy_key(key)?;
            let value = match value {
                Some(v) => Some(decode_legacy_value(v)?),
                None => None,
            };
            return Some(Record::Offset { key, value });
        }
        let mut r = Reader(key);
        match r.i16()? {
            0 | 1 => {
                let key = OffsetKey {
                    group: r.str()?,
                    topic: r.str()?,
                    partition: r.i32()?,
                };
                r.0.is_empty().then_some(())?;
                let value = match value {
                    Some(v) => Some(decode_offset_value(v)?),
                    None => None,
                };
                Some(Record::Offset { key, value })
            }
            2 => {
                let group = r.str()?;
                r.0.is_empty().then_some(())?;
                let metadata = match value {
                    Some(v) => Some(decode_group_value(v)?),
                    None => None,
                };
                Some(Record::Group { group, metadata })
            }
            _ => None,
        }
    }
}

pub(crate) fn put_str(buf: &mut BytesMut, s: &str) -> Option<()> {
    buf.put_i16(i16::try_from(s.len()).ok()?);
    buf.put_slice(s.as_bytes());
    Some(())
}

fn put_opt_str(buf: &mut BytesMut, s: Option<&str>) -> Option<()> {
    match s {
        Some(s) => put_str(buf, s),
        None => {
            buf.put_i16(-1);
            Some(())
        }
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) -> Option<()> {
    buf.put_i32(i32::try_from(b.len()).ok()?);
    buf.put_slice(b);
    Some(())
}

fn offset_value(value: &OffsetValue) -> Option<Bytes> {
    let mut v = BytesMut::new();
    v.put_i16(OFFSET_VALUE_VERSION);
    v.put_i64(value.offset);
    v.put_i32(value.leader_epoch);
    put_str(&mut v, &value.metadata)?;
    v.put_i64(value.commit_timestamp);
    Some(v.freeze())
}

fn group_value(metadata: &GroupMetadata) -> Option<Bytes> {
    let mut v = BytesMut::new();
    v.put_i16(GROUP_VALUE_VERSION);
    put_str(&mut v, &metadata.protocol_type)?;
    v.put_i32(metadata.generation);
    put_opt_str(&mut v, metadata.protocol.as_deref())?;
    put_opt_str(&mut v, metadata.leader.as_deref())?;
    v.put_i64(metadata.state_timestamp);
    v.put_i32(i32::try_from(metadata.members.len()).ok()?);
    for m in &metadata.members {
        put_str(&mut v, &m.member_id)?;
        put_opt_str(&mut v, m.instance_id.as_deref())?;
        put_str(&mut v, &m.client_id)?;
        put_str(&mut v, &m.client_host)?;
        v.put_i32(m.rebalance_timeout_ms);
        v.put_i32(m.session_timeout_ms);
        put_bytes(&mut v, &m.subscription)?;
        put_bytes(&mut v, &m.assignment)?;
    }
    Some(v.freeze())
}

fn decode_offset_value(bytes: &[u8]) -> Option<OffsetValue> {
    let mut r = Reader(bytes);
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return None;
    }
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.str()?;
    let commit_timestamp = r.i64()?;
    if version == 1 {
        r.i64()?; // expire timestamp, ignored (KIP-211)
    }
    Some(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
    })
}

fn decode_group_value(bytes: &[u8]) -> Option<GroupMetadata> {
    let mut r = Reader(bytes);
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return None;
    }
    let protocol_type = r.str()?;
    let generation = r.i32()?;
    let protocol = r.opt_str()?;
    let leader = r.opt_str()?;
    let state_timestamp = if version >= 2 { r.i64()? } else { -1 };
    let count = usize::try_from(r.i32()?).ok()?;
    let mut members = Vec::new();
    for _ in 0..count {
        let member_id = r.str()?;
        let instance_id = if version >= 3 { r.opt_str()? } else { None };
        let client_id = r.str()?;
        let client_host = r.str()?;
        let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
        let session_timeout_ms = r.i32()?;
        let subscription = r.bytes()?;
        let assignment = r.bytes()?;
        let rebalance_timeout_ms = if rebalance_timeout_ms < 0 {
            session_timeout_ms
        } else {
            rebalance_timeout_ms
        };
        members.push(MemberMetadata {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Some(GroupMetadata {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp,
        members,
    })
}

fn put_str16_legacy(buf: &mut BytesMut, s: &str) -> Option<()> {
    buf.put_u16(u16::try_from(s.len()).ok()?);
    buf.put_slice(s.as_bytes());
    Some(())
}

fn legacy_key(key: &OffsetKey) -> Option<Bytes> {
    let mut buf = BytesMut::with_capacity(9 + key.group.len() + key.topic.len());
    buf.put_u8(LEGACY_VERSION);
    put_str16_legacy(&mut buf, &key.group)?;
    put_str16_legacy(&mut buf, &key.topic)?;
    buf.put_i32(key.partition);
    Some(buf.freeze())
}

fn legacy_value(value: &OffsetValue) -> Bytes {
    let mut buf = BytesMut::with_capacity(25 + value.metadata.len());
    buf.put_u8(LEGACY_VERSION);
    buf.put_i64(value.offset);
    buf.put_i32(value.leader_epoch);
    buf.put_i64(value.commit_timestamp);
    // Metadata is at most 4096 bytes (checked before a commit is accepted).
    buf.put_u32(u32::try_from(value.metadata.len()).unwrap_or(0));
    buf.put_slice(value.metadata.as_bytes());
    buf.freeze()
}

fn decode_legacy_key(bytes: &[u8]) -> Option<OffsetKey> {
    let mut r = Reader(bytes);
    (r.u8()? == LEGACY_VERSION).then_some(())?;
    let group = r.str16_legacy()?;
    let topic = r.str16_legacy()?;
    let partition = r.i32()?;
    r.0.is_empty().then_some(OffsetKey {
        group,
        topic,
        partition,
    })
}

fn decode_legacy_value(bytes: &[u8]) -> Option<OffsetValue> {
    let mut r = Reader(bytes);
    (r.u8()? == LEGACY_VERSION).then_some(())?;
    let offset = r.i64()?;
    let leader_epoch = r.i32()?;
    let commit_timestamp = r.i64()?;
    let len = usize::try_from(r.u32()?).ok()?;
    let metadata = String::from_utf8(r.take(len)?.to_vec()).ok()?;
    r.0.is_empty().then_some(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
    })
}

/// A checked big-endian reader over record bytes (shared with `txn::records`).
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }
    pub(crate) fn i16(&mut self) -> Option<i16> {
        self.array().map(i16::from_be_bytes)
    }
    pub(crate) fn i32(&mut self) -> Option<i32> {
        self.array().map(i32::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }
    pub(crate) fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_be_bytes)
    }
    fn opt_str(&mut self) -> Option<Option<String>> {
        let len = self.i16()?;
        if len < 0 {
            return Some(None);
        }
        let len = usize::try_from(len).ok()?;
        Some(Some(String::from_utf8(self.take(len)?.to_vec()).ok()?))
    }
    pub(crate) fn str(&mut self) -> Option<String> {
        self.opt_str()?
    }
    fn bytes(&mut self) -> Option<Bytes> {
        let len = usize::try_from(self.i32()?).ok()?;
        Some(Bytes::copy_from_slice(self.take(len)?))
    }
    fn str16_legacy(&mut self) -> Option<String> {
        let len = usize::from(u16::from_be_bytes(self.array()?));
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn offset(group: &str, value: Option<i64>) -> Record {
        Record::Offset {
            key: OffsetKey {
                group: group.into(),
                topic: "orders".into(),
                partition: 7,
            },
            value: value.map(|offset| OffsetValue {
                offset,
                leader_epoch: 3,
                metadata: "m".into(),
                commit_timestamp: 99,
            }),
        }
    }

    fn group(generation: i32) -> Record {
        Record::Group {
            group: "g".into(),
            metadata: Some(GroupMetadata {
                protocol_type: "consumer".into(),
                generation,
                protocol: Some("range".into()),
                leader: Some("m-1".into()),
                state_timestamp: 1234,
                members: vec![MemberMetadata {
                    member_id: "m-1".into(),
                    instance_id: Some("i".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 300_000,
                    session_timeout_ms: 45_000,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"assign"),
                }],
            }),
        }
    }

    #[test]
    fn records_round_trip_in_both_formats() {
        for record in [offset("g", Some(42)), offset("g", None)] {
            for format in [Format::Legacy, Format::Kafka] {
                let (k, v) = record.encode(format).unwrap();
                assert_eq!(Record::decode(&k, v.as_deref()), Some(record.clone()));
            }
        }
        for record in [
            group(5),
            Record::Group {
                group: "g".into(),
                metadata: None,
            },
        ] {
            let (k, v) = record.encode(Format::Kafka).unwrap();
            assert_eq!(Record::decode(&k, v.as_deref()), Some(record.clone()));
            assert_eq!(record.encode(Format::Legacy), None);
        }
    }

    #[test]
    fn kafka_offset_key_matches_kafkas_bytes() {
        // OffsetCommitKey v1 for ("g", "t", 1): version 1, then three fields big-endian.
        let record = Record::Offset {
            key: OffsetKey {
                group: "g".into(),
                topic: "t".into(),
                partition: 1,
            },
            value: None,
        };
        let (k, v) = record.encode(Format::Kafka).unwrap();
        assert_eq!(&k[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 1]);
        assert_eq!(v, None);
    }

    #[test]
    fn legacy_bytes_written_before_the_upgrade_still_decode() {
        // A key and value exactly as the previous release's codec wrote them.
        let key = [1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 2];
        let mut value = vec![1];
        value.extend_from_slice(&10i64.to_be_bytes());
        value.extend_from_slice(&(-1i32).to_be_bytes());
        value.extend_from_slice(&77i64.to_be_bytes());
        value.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(
            Record::decode(&key, Some(&value)),
            Some(Record::Offset {
                key: OffsetKey {
                    group: "g".into(),
                    topic: "t".into(),
                    partition: 2
                },
                value: Some(OffsetValue {
                    offset: 10,
                    leader_epoch: -1,
                    metadata: String::new(),
                    commit_timestamp: 77
                })
            })
        );
    }

    #[test]
    fn truncated_records_decode_to_none() {
        for record in [offset("g", Some(1)), group(1)] {
            for format in [Format::Legacy, Format::Kafka] {
                let Some((k, v)) = record.encode(format) else {
                    continue;
                };
                for cut in 0..k.len() {
                    assert_eq!(Record::decode(&k[..cut], v.as_deref()), None);
                }
                let v = v.unwrap();
                for cut in 0..v.len() {
                    assert_eq!(
                        Record::decode(&k, Some(&v[..cut])),
                        None,
                        "{format:?} {cut}"
                    );
                }
            }
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(key in proptest::collection::vec(any::<u8>(), 0..64),
                                    value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..128))) {
            let _ = Record::decode(&key, value.as_deref());
        }
    }
}
