//! The records of `__transaction_state`, in Kafka's layout (`TransactionLogKey` v0,
//! `TransactionLogValue` v0), so the topic reads like Kafka's to any tool that decodes it.
//!
//! | record | key | value |
//! |---|---|---|
//! | a transactional id's state | `i16` 0, transactional id | `i16` 0, producer id `i64`, producer epoch `i16`, timeout ms `i32`, status `i8`, partitions (nullable `i32` count of (topic, `i32` count of `i32` partition): null for Empty, a list otherwise), last update ms `i64`, transaction start ms `i64` |
//!
//! Strings are `i16` length + UTF-8. A record without a value (a tombstone) forgets the
//! transactional id (expiration). Decoding never panics; anything malformed decodes to `None`.
//! Checked against Kafka's `TransactionLog` and the `TransactionLogKey`/`TransactionLogValue`
//! schemas: Kafka writes value v0 until `transaction.version` 1 is enabled (v1 is flexible,
//! with tagged fields for transactions v2), so v0 is what a v1 transactions coordinator writes;
//! a v1 value is not read here (it decodes to `None`).

use std::collections::BTreeSet;

use bytes::{BufMut, Bytes, BytesMut};

use crate::group::records::{Reader, put_str};

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;

/// A partition taking part in a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`-`partition`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

/// Where a transactional id stands (Kafka's `TransactionState`, with its status codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxnStatus {
    /// No transaction open; the producer id and epoch are assigned.
    Empty,
    /// Partitions were added: a transaction is open.
    Ongoing,
    /// Commit decided; markers being written.
    PrepareCommit,
    /// Abort decided; markers being written.
    PrepareAbort,
    /// The last transaction committed.
    CompleteCommit,
    /// The last transaction aborted.
    CompleteAbort,
    /// Being forgotten (expiration).
    Dead,
    /// Kafka's intermediate state while fencing an open transaction (read, never written here).
    PrepareEpochFence,
}

impl TxnStatus {
    /// The status byte of `TransactionLogValue`.
    pub fn code(self) -> i8 {
        match self {
            TxnStatus::Empty => 0,
            TxnStatus::Ongoing => 1,
            TxnStatus::PrepareCommit => 2,
            TxnStatus::PrepareAbort => 3,
            TxnStatus::CompleteCommit => 4,
            TxnStatus::CompleteAbort => 5,
            TxnStatus::Dead => 6,
            TxnStatus::PrepareEpochFence => 7,
        }
    }

    /// The status of a status byte.
    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            0 => TxnStatus::Empty,
            1 => TxnStatus::Ongoing,
            2 => TxnStatus::PrepareCommit,
            3 => TxnStatus::PrepareAbort,
            4 => TxnStatus::CompleteCommit,
            5 => TxnStatus::CompleteAbort,
            6 => TxnStatus::Dead,
            7 => TxnStatus::PrepareEpochFence,
            _ => return None,
        })
    }

    /// Every status, in code order.
    pub const ALL: [TxnStatus; 8] = [
        TxnStatus::Empty,
        TxnStatus::Ongoing,
        TxnStatus::PrepareCommit,
        TxnStatus::PrepareAbort,
        TxnStatus::CompleteCommit,
        TxnStatus::CompleteAbort,
        TxnStatus::Dead,
        TxnStatus::PrepareEpochFence,
    ];

    /// The status of a name DescribeTransactions and ListTransactions use.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The name DescribeTransactions and ListTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            TxnStatus::Empty => "Empty",
            TxnStatus::Ongoing => "Ongoing",
            TxnStatus::PrepareCommit => "PrepareCommit",
            TxnStatus::PrepareAbort => "PrepareAbort",
            TxnStatus::CompleteCommit => "CompleteCommit",
            TxnStatus::CompleteAbort => "CompleteAbort",
            TxnStatus::Dead => "Dead",
            TxnStatus::PrepareEpochFence => "PrepareEpochFence",
        }
    }
}

/// A transactional id's state as persisted (Kafka's `TransactionLogValue`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnState {
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// The producer's `transaction.timeout.ms`.
    pub timeout_ms: i32,
    /// Status.
    pub status: TxnStatus,
    /// The partitions of the open (or completing) transaction.
    pub partitions: BTreeSet<TopicPartition>,
    /// Last change (ms since the Unix epoch).
    pub last_update_ms: i64,
    /// When the open transaction began (ms since the Unix epoch; -1 when none is open).
    pub start_ms: i64,
}

/// One record of `__transaction_state`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnRecord {
    /// Transactional id.
    pub transactional_id: String,
    /// The state; `None` forgets the id.
    pub state: Option<TxnState>,
}

impl TxnRecord {
    /// Encodes key and value; `None` if a name or a list is too long for the layout.
    pub fn encode(&self) -> Option<(Bytes, Option<Bytes>)> {
        let mut key = BytesMut::new();
        key.put_i16(KEY_VERSION);
        put_str(&mut key, &self.transactional_id)?;
        let value = match &self.state {
            Some(state) => Some(encode_state(state)?),
            None => None,
        };
        Some((key.freeze(), value))
    }

    /// Decodes a record; `None` if malformed or of an unknown version.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Option<TxnRecord> {
        let mut r = Reader(key);
        (r.i16()? == KEY_VERSION).then_some(())?;
        let transactional_id = r.str()?;
        r.0.is_empty().then_some(())?;
        let state = match value {
            Some(v) => Some(decode_state(v)?),
            None => None,
        };
        Some(TxnRecord {
            transactional_id,
            state,
        })
    }
}

fn encode_state(state: &TxnState) -> Option<Bytes> {
    let mut v = BytesMut::new();
    v.put_i16(VALUE_VERSION);
    v.put_i64(state.producer_id);
    v.put_i16(state.producer_epoch);
    v.put_i32(state.timeout_ms);
    v.put_i8(state.status.code());
    // As Kafka writes it: null for Empty, a (possibly empty) list for every other status.
    if state.status == TxnStatus::Empty {
        v.put_i32(-1);
    } else {
        let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
        for tp in &state.partitions {
            match topics.last_mut() {
                Some((topic, partitions)) if *topic == tp.topic => partitions.push(tp.partition),
                _ => topics.push((&tp.topic, vec![tp.partition])),
            }
        }
        v.put_i32(i32::try_from(topics.len()).ok()?);
        for (topic, partitions) in topics {
            put_str(&mut v, topic)?;
            v.put_i32(i32::try_from(partitions.len()).ok()?);
            for p in partitions {
                v.put_i32(p);
            }
        }
    }
    v.put_i64(state.last_update_ms);
    v.put_i64(state.start_ms);
    Some(v.freeze())
}

fn decode_state(bytes: &[u8]) -> Option<TxnState> {
    let mut r = Reader(bytes);
    (r.i16()? == VALUE_VERSION).then_some(())?;
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let status = TxnStatus::from_code(i8::from_be_bytes(r.array()?))?;
    let mut partitions = BTreeSet::new();
    let topics = r.i32()?;
    for _ in 0..topics.max(0) {
        let topic = r.str()?;
        let count = r.i32()?;
        // Each partition takes 4 bytes: a count larger than what is left is malformed.
        (usize::try_from(count).ok()? <= r.0.len() / 4).then_some(())?;
        for _ in 0..count {
            partitions.insert(TopicPartition::new(topic.clone(), r.i32()?));
        }
    }
    let last_update_ms = r.i64()?;
    let start_ms = r.i64()?;
    r.0.is_empty().then_some(TxnState {
        producer_id,
        producer_epoch,
        timeout_ms,
        status,
        partitions,
        last_update_ms,
        start_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn state(status: TxnStatus, partitions: &[(&str, i32)]) -> TxnState {
        TxnState {
            producer_id: 4_000,
            producer_epoch: 7,
            timeout_ms: 60_000,
            status,
            partitions: partitions
                .iter()
                .map(|(t, p)| TopicPartition::new(*t, *p))
                .collect(),
            last_update_ms: 1_700_000_000_123,
            start_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn records_round_trip() {
        for record in [
            TxnRecord {
                transactional_id: "payments-1".into(),
                state: Some(state(
                    TxnStatus::Ongoing,
                    &[("a", 0), ("a", 2), ("b", 1), ("__consumer_offsets", 17)],
                )),
            },
            TxnRecord {
                transactional_id: "t".into(),
                state: Some(state(TxnStatus::CompleteCommit, &[])),
            },
            TxnRecord {
                transactional_id: "gone".into(),
                state: None,
            },
        ] {
            let (key, value) = record.encode().expect("encodable");
            assert_eq!(TxnRecord::decode(&key, value.as_deref()), Some(record));
        }
        for code in 0..=7 {
            let status = TxnStatus::from_code(code).expect("a status");
            assert_eq!(TxnStatus::from_name(status.name()), Some(status));
        }
        assert_eq!(TxnStatus::from_name("Stable"), None);
        for code in -1..=8 {
            let status = TxnStatus::from_code(code);
            assert_eq!(
                status.map(TxnStatus::code),
                (0..=7).contains(&code).then_some(code)
            );
        }
    }

    #[test]
    fn the_layout_is_kafkas() {
        let record = TxnRecord {
            transactional_id: "ab".into(),
            state: Some(state(TxnStatus::PrepareCommit, &[("t", 3)])),
        };
        let (key, value) = record.encode().expect("encodable");
        assert_eq!(&key[..], &[0, 0, 0, 2, b'a', b'b']);
        let mut expected = vec![0, 0];
        expected.extend_from_slice(&4_000i64.to_be_bytes());
        expected.extend_from_slice(&7i16.to_be_bytes());
        expected.extend_from_slice(&60_000i32.to_be_bytes());
        expected.push(2);
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(&[0, 1, b't']);
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(&3i32.to_be_bytes());
        expected.extend_from_slice(&1_700_000_000_123i64.to_be_bytes());
        expected.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        assert_eq!(value.as_deref(), Some(&expected[..]));
    }

    #[test]
    fn partitions_are_null_only_when_empty() {
        // The partitions field follows status (1 byte) after id, epoch and timeout.
        let at = 2 + 8 + 2 + 4 + 1;
        for (status, field) in [
            (TxnStatus::Empty, -1i32),
            (TxnStatus::CompleteCommit, 0),
            (TxnStatus::CompleteAbort, 0),
        ] {
            let record = TxnRecord {
                transactional_id: "t".into(),
                state: Some(state(status, &[])),
            };
            let (key, value) = record.encode().expect("encodable");
            let value = value.expect("a value");
            assert_eq!(value[at..at + 4], field.to_be_bytes(), "{status:?}");
            assert_eq!(TxnRecord::decode(&key, Some(&value)), Some(record));
        }
    }

    #[test]
    fn truncated_records_decode_to_none() {
        let record = TxnRecord {
            transactional_id: "x".into(),
            state: Some(state(TxnStatus::Ongoing, &[("a", 1), ("b", 2)])),
        };
        let (key, value) = record.encode().expect("encodable");
        let value = value.expect("a value");
        for cut in 0..value.len() {
            assert_eq!(
                TxnRecord::decode(&key, Some(&value[..cut])),
                None,
                "cut {cut}"
            );
        }
        for cut in 0..key.len() {
            assert_eq!(TxnRecord::decode(&key[..cut], None), None, "cut {cut}");
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(key in proptest::collection::vec(any::<u8>(), 0..64),
                                    value in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = TxnRecord::decode(&key, Some(&value));
            let _ = TxnRecord::decode(&key, None);
        }
    }
}
