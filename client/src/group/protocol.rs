//! Kafka's ConsumerProtocol: the Subscription a member puts in its JoinGroup protocols and the
//! Assignment the leader hands out through SyncGroup, each an `int16` version followed by the
//! struct (kafka-protocol's `ConsumerProtocolSubscription` / `ConsumerProtocolAssignment`).
//! The broker never reads these bytes; sharing them with stock clients is what lets our members
//! and theirs be in one group.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::error::{Error, Result};
use crate::metadata::TopicPartition;

/// The Subscription version we write (v3: owned partitions, generation and rack).
pub const SUBSCRIPTION_VERSION: i16 = 3;
/// The Assignment version we write.
pub const ASSIGNMENT_VERSION: i16 = 3;
/// The highest version of either struct we can decode; newer ones only append fields, so they
/// are read as this one (as Kafka's ConsumerProtocol does).
const MAX_VERSION: i16 = 3;

/// What a member subscribes to, as its JoinGroup metadata says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    /// Subscribed topics.
    pub topics: Vec<String>,
    /// Assignor-specific bytes.
    pub user_data: Option<Bytes>,
    /// Partitions the member owns now (cooperative rebalancing, v1+).
    pub owned: Vec<TopicPartition>,
    /// The generation its owned partitions come from (v2+, -1 when unknown).
    pub generation: i32,
    /// Its rack (v3+).
    pub rack: Option<String>,
}

/// What the leader assigned to a member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    /// The assigned partitions.
    pub partitions: Vec<TopicPartition>,
    /// Assignor-specific bytes.
    pub user_data: Option<Bytes>,
}

/// `partitions` grouped by topic, one `make(topic, partitions)` per topic: the owned partitions
/// of a Subscription and the assigned ones of an Assignment are two structs of this one shape.
fn by_topic<T>(partitions: &[TopicPartition], make: impl Fn(TopicName, Vec<i32>) -> T) -> Vec<T> {
    let mut grouped: BTreeMap<Arc<str>, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        grouped
            .entry(tp.topic.clone())
            .or_default()
            .push(tp.partition);
    }
    grouped
        .into_iter()
        .map(|(topic, partitions)| {
            make(
                TopicName(StrBytes::from_string(topic.to_string())),
                partitions,
            )
        })
        .collect()
}

/// The partitions of `(topic, partitions)` pairs, one by one (the reverse of [`by_topic`]).
fn flatten<'a>(
    topics: impl IntoIterator<Item = (&'a TopicName, &'a [i32])>,
) -> Vec<TopicPartition> {
    topics
        .into_iter()
        .flat_map(|(topic, partitions)| {
            partitions
                .iter()
                .map(|p| TopicPartition::new(topic.as_str(), *p))
        })
        .collect()
}

fn encode(version: i16, body: &impl Encodable) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    body.encode(&mut buf, version)
        .map_err(|e| Error::protocol(format!("consumer protocol v{version}: {e}")))?;
    Ok(buf.freeze())
}

/// The version prefix, and the version to decode the rest at.
fn version(bytes: &mut Bytes, what: &str) -> Result<i16> {
    if bytes.remaining() < 2 {
        return Err(Error::protocol(format!("{what}: no version")));
    }
    let version = bytes.get_i16();
    if version < 0 {
        return Err(Error::protocol(format!("{what}: version {version}")));
    }
    Ok(version.min(MAX_VERSION))
}

fn decode<T: Decodable>(mut bytes: Bytes, what: &str) -> Result<T> {
    let version = version(&mut bytes, what)?;
    // Decoders return errors on bad bytes; catch_unwind also turns a decoder panic into one.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        T::decode(&mut bytes, version)
    }));
    match decoded {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Error::protocol(format!("{what} v{version}: {e}"))),
        Err(_) => Err(Error::protocol(format!(
            "{what} v{version}: decoder panicked"
        ))),
    }
}

impl Subscription {
    /// The JoinGroup protocol metadata bytes.
    pub fn encode(&self) -> Result<Bytes> {
        let owned = by_topic(&self.owned, |topic, partitions| {
            OwnedTopic::default()
                .with_topic(topic)
                .with_partitions(partitions)
        });
        let body = ConsumerProtocolSubscription::default()
            .with_topics(
                self.topics
                    .iter()
                    .map(|t| StrBytes::from_string(t.clone()))
                    .collect(),
            )
            .with_user_data(self.user_data.clone())
            .with_owned_partitions(owned)
            .with_generation_id(self.generation)
            .with_rack_id(self.rack.clone().map(StrBytes::from_string));
        encode(SUBSCRIPTION_VERSION, &body)
    }

    /// Reads a member's metadata as the leader gets it in the JoinGroup answer.
    pub fn decode(bytes: Bytes) -> Result<Subscription> {
        let body: ConsumerProtocolSubscription = decode(bytes, "subscription")?;
        Ok(Subscription {
            topics: body.topics.iter().map(|t| t.to_string()).collect(),
            user_data: body.user_data,
            owned: flatten(
                body.owned_partitions
                    .iter()
                    .map(|t| (&t.topic, &t.partitions[..])),
            ),
            generation: body.generation_id,
            rack: body.rack_id.map(|r| r.to_string()),
        })
    }
}

impl Assignment {
    /// The SyncGroup assignment bytes.
    pub fn encode(&self) -> Result<Bytes> {
        let assigned = by_topic(&self.partitions, |topic, partitions| {
            AssignedTopic::default()
                .with_topic(topic)
                .with_partitions(partitions)
        });
        let body = ConsumerProtocolAssignment::default()
            .with_assigned_partitions(assigned)
            .with_user_data(self.user_data.clone());
        encode(ASSIGNMENT_VERSION, &body)
    }

    /// Reads the assignment SyncGroup returned; empty bytes are an empty assignment (what the
    /// broker hands a member the leader left out).
    pub fn decode(bytes: Bytes) -> Result<Assignment> {
        if bytes.is_empty() {
            return Ok(Assignment::default());
        }
        let body: ConsumerProtocolAssignment = decode(bytes, "assignment")?;
        Ok(Assignment {
            partitions: flatten(
                body.assigned_partitions
                    .iter()
                    .map(|t| (&t.topic, &t.partitions[..])),
            ),
            user_data: body.user_data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> TopicPartition {
        TopicPartition::new(t, p)
    }

    #[test]
    fn subscriptions_and_assignments_round_trip() {
        let s = Subscription {
            topics: vec!["a".into(), "b".into()],
            user_data: Some(Bytes::from_static(b"\x00\x00\x00\x07")),
            owned: vec![tp("a", 0), tp("a", 2), tp("b", 1)],
            generation: 7,
            rack: Some("r1".into()),
        };
        assert_eq!(Subscription::decode(s.encode().unwrap()).unwrap(), s);
        let a = Assignment {
            partitions: vec![tp("a", 1), tp("b", 0)],
            user_data: None,
        };
        assert_eq!(Assignment::decode(a.encode().unwrap()).unwrap(), a);
        assert_eq!(
            Assignment::decode(Bytes::new()).unwrap(),
            Assignment::default()
        );
    }

    #[test]
    fn older_and_newer_versions_decode() {
        // v0 as librdkafka's range assignor writes it: topics and user data only.
        let v0 = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("t")])
            .with_generation_id(-1);
        let s = Subscription::decode(encode(0, &v0).unwrap()).unwrap();
        assert_eq!(
            (s.topics, s.owned.len(), s.generation),
            (vec!["t".to_owned()], 0, -1)
        );
        // A newer version that appended a field: read as v3, the extra bytes ignored.
        let mut newer = BytesMut::new();
        newer.put_i16(4);
        v0.encode(&mut newer, 3).unwrap();
        newer.put_u32(0xdead_beef);
        assert!(Subscription::decode(newer.freeze()).is_ok());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"\x00",
            b"\xff\xff",
            b"\x00\x00\xff\xff\xff\x7f",
            b"\x00\x03\x00",
        ] {
            assert!(Subscription::decode(Bytes::copy_from_slice(bytes)).is_err());
        }
        assert!(Assignment::decode(Bytes::from_static(b"\x00\x00\x00\x00\x00\x09")).is_err());
    }
}
