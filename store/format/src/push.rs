//! Push subscription's wire contracts: what a partition leader announces on the data plane's
//! gossip (a [`Notice`] per move of the high watermark, a [`Summary`] of its high watermarks every
//! so often), and the long-poll a subscriber sends its home broker ([`PollRequest`]) to receive
//! them ([`PollResponse`]).
//!
//! Every encoding starts with a format byte ([`FORMAT`]) and a kind byte; integers are
//! big-endian. Decoders check every length and never panic; anything malformed is a
//! [`PushError`].
//!
//! ```text
//! Notice   : FORMAT, 1, topic id (16), partition i32, leader epoch i32, base offset i64,
//!            end offset i64, batch bytes u32, inline u8 (0/1), [batches: the rest]
//! Summary  : FORMAT, 2, count u32, count x (topic id (16), partition i32, leader epoch i32,
//!            high watermark i64)
//! Poll     : FORMAT, 3, session u64, max wait ms u32, max bytes u32, count u32, count x topic id
//! Response : FORMAT, 4, error u16, fresh u8, dropped u32, count u32, count x (len u32, message)
//! ```
//!
//! A notice's first [`NOTICE_KEY_LEN`] bytes (format, kind, topic id, partition, leader epoch,
//! base offset) are its key: the gossip message id, so a notice published twice is delivered
//! once, and a new leader's notice at the same offset (after a truncation) is another message.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

/// The format byte every push encoding starts with.
pub const FORMAT: u8 = 1;
const KIND_NOTICE: u8 = 1;
const KIND_SUMMARY: u8 = 2;
const KIND_POLL: u8 = 3;
const KIND_RESPONSE: u8 = 4;

/// Bytes of a notice's key (its gossip message id): format, kind, topic id, partition, leader
/// epoch, base offset.
pub const NOTICE_KEY_LEN: usize = 1 + 1 + 16 + 4 + 4 + 8;
const NOTICE_HEADER_LEN: usize = NOTICE_KEY_LEN + 8 + 4 + 1;
const SUMMARY_ENTRY_LEN: usize = 16 + 4 + 4 + 8;

/// Number of gossip topics the partitions of every Kafka topic are spread over.
pub const GOSSIP_TOPICS: u32 = 64;

/// The gossip topic carrying the notices and summaries of the Kafka topic with id `topic_id`:
/// one of [`GOSSIP_TOPICS`] (a bounded set: gossipsub keeps a mesh per topic and by default
/// accepts 100 subscriptions per peer).
pub fn gossip_topic(topic_id: [u8; 16]) -> String {
    // FNV-1a: stable across releases and machines (the std hasher is not).
    let hash = topic_id.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    });
    format!("rafka/push/1/{}", hash % GOSSIP_TOPICS)
}

/// Why push bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// Fewer bytes than the layout needs.
    #[error("push message truncated: {what} needs {needed} bytes, {available} left")]
    Truncated {
        /// The part being read.
        what: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes there were.
        available: usize,
    },
    /// A format or kind byte this release does not know.
    #[error("unknown push message (format {format}, kind {kind})")]
    Unknown {
        /// The format byte.
        format: u8,
        /// The kind byte.
        kind: u8,
    },
    /// A value out of its range (an end before the base, an inline flag other than 0 or 1).
    #[error("invalid push message: {0}")]
    Invalid(&'static str),
}

/// A checked reader over push bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, what: &'static str, n: usize) -> Result<&'a [u8], PushError> {
        let slice = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
            .ok_or(PushError::Truncated {
                what,
                needed: n,
                available: self.buf.len().saturating_sub(self.pos),
            })?;
        self.pos += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], PushError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(what, N)?);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, PushError> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, PushError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, PushError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, PushError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, PushError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, PushError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// The format and kind bytes, checked against `kind`.
    fn header(&mut self, kind: u8) -> Result<(), PushError> {
        let format = self.u8("format")?;
        let found = self.u8("kind")?;
        if format != FORMAT || found != kind {
            return Err(PushError::Unknown {
                format,
                kind: found,
            });
        }
        Ok(())
    }

    /// A count of items of at least `item_len` bytes each, checked against what is left (so a
    /// forged count cannot make the caller reserve memory the bytes do not back).
    fn count(&mut self, what: &'static str, item_len: usize) -> Result<usize, PushError> {
        let count = self.u32(what)? as usize;
        let needed = count.saturating_mul(item_len.max(1));
        let available = self.buf.len().saturating_sub(self.pos);
        if needed > available {
            return Err(PushError::Truncated {
                what,
                needed,
                available,
            });
        }
        Ok(count)
    }
}

/// A partition's position in a notice or a summary.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    /// The Kafka topic id (a UUID's bytes).
    pub topic_id: [u8; 16],
    /// The partition index.
    pub partition: i32,
}

impl fmt::Debug for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:032x}-{}",
            u128::from_be_bytes(self.topic_id),
            self.partition
        )
    }
}

/// What a partition leader announces when its high watermark moves from `base_offset` to
/// `end_offset`: the records committed in between, inline when they are small enough, otherwise
/// only their extent (subscribers fetch them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The partition.
    pub partition: PartitionKey,
    /// The leader epoch the records were committed under (the publisher's leadership).
    pub leader_epoch: i32,
    /// The first offset announced (the high watermark before the move).
    pub base_offset: i64,
    /// One past the last offset announced: the high watermark after the move.
    pub end_offset: i64,
    /// Bytes of the record batches covering `[base_offset, end_offset)`.
    pub batch_bytes: u32,
    /// Those batches as stored (RecordBatch v2, each with its CRC-32C), or `None`: fetch them.
    pub batches: Option<Bytes>,
}

impl Notice {
    /// The encoding.
    pub fn encode(&self) -> Bytes {
        let inline = self.batches.as_ref().map_or(0, Bytes::len);
        let mut buf = BytesMut::with_capacity(NOTICE_HEADER_LEN + inline);
        buf.put_u8(FORMAT);
        buf.put_u8(KIND_NOTICE);
        buf.put_slice(&self.partition.topic_id);
        buf.put_i32(self.partition.partition);
        buf.put_i32(self.leader_epoch);
        buf.put_i64(self.base_offset);
        buf.put_i64(self.end_offset);
        buf.put_u32(self.batch_bytes);
        buf.put_u8(u8::from(self.batches.is_some()));
        if let Some(batches) = &self.batches {
            buf.put_slice(batches);
        }
        buf.freeze()
    }

    /// Reads a notice; the inline batches are a slice of `bytes` (no copy). The batches are not
    /// checked here: their readers verify each CRC.
    pub fn decode(bytes: &Bytes) -> Result<Notice, PushError> {
        let mut r = Reader::new(bytes);
        r.header(KIND_NOTICE)?;
        let partition = PartitionKey {
            topic_id: r.array("topic id")?,
            partition: r.i32("partition")?,
        };
        let leader_epoch = r.i32("leader epoch")?;
        let base_offset = r.i64("base offset")?;
        let end_offset = r.i64("end offset")?;
        let batch_bytes = r.u32("batch bytes")?;
        let batches = match r.u8("inline")? {
            0 if r.rest().is_empty() => None,
            1 => Some(bytes.slice(r.pos..)),
            _ => return Err(PushError::Invalid("inline flag or trailing bytes")),
        };
        if base_offset < 0 || end_offset <= base_offset {
            return Err(PushError::Invalid(
                "a notice's offsets must be 0 <= base < end",
            ));
        }
        Ok(Notice {
            partition,
            leader_epoch,
            base_offset,
            end_offset,
            batch_bytes,
            batches,
        })
    }

    /// The key of an encoded notice (its gossip message id), if `encoded` starts like one.
    pub fn key(encoded: &[u8]) -> Option<&[u8]> {
        let key = encoded.get(..NOTICE_KEY_LEN)?;
        (key.first() == Some(&FORMAT) && key.get(1) == Some(&KIND_NOTICE)).then_some(key)
    }
}

/// One partition's high watermark as its leader states it in a [`Summary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SummaryEntry {
    /// The partition.
    pub partition: PartitionKey,
    /// The leadership stating it.
    pub leader_epoch: i32,
    /// Every offset below is committed.
    pub high_watermark: i64,
}

/// A leader's high watermarks, sent every so often so that a subscriber that lost the last
/// notice of a partition learns it is behind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// One entry per partition.
    pub entries: Vec<SummaryEntry>,
}

impl Summary {
    /// The encoding.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(6 + self.entries.len() * SUMMARY_ENTRY_LEN);
        buf.put_u8(FORMAT);
        buf.put_u8(KIND_SUMMARY);
        buf.put_u32(u32::try_from(self.entries.len()).unwrap_or(u32::MAX));
        for e in self.entries.iter().take(u32::MAX as usize) {
            buf.put_slice(&e.partition.topic_id);
            buf.put_i32(e.partition.partition);
            buf.put_i32(e.leader_epoch);
            buf.put_i64(e.high_watermark);
        }
        buf.freeze()
    }

    /// Reads a summary.
    pub fn decode(bytes: &[u8]) -> Result<Summary, PushError> {
        let mut r = Reader::new(bytes);
        r.header(KIND_SUMMARY)?;
        let count = r.count("summary entries", SUMMARY_ENTRY_LEN)?;
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            entries.push(SummaryEntry {
                partition: PartitionKey {
                    topic_id: r.array("topic id")?,
                    partition: r.i32("partition")?,
                },
                leader_epoch: r.i32("leader epoch")?,
                high_watermark: r.i64("high watermark")?,
            });
        }
        if !r.rest().is_empty() {
            return Err(PushError::Invalid("trailing bytes after a summary"));
        }
        Ok(Summary { entries })
    }
}

/// A push message: what leaders publish and home brokers hand to subscribers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushMessage {
    /// Records committed.
    Notice(Notice),
    /// High watermarks.
    Summary(Summary),
}

impl PushMessage {
    /// Reads either kind.
    pub fn decode(bytes: &Bytes) -> Result<PushMessage, PushError> {
        match (bytes.first(), bytes.get(1)) {
            (Some(&FORMAT), Some(&KIND_NOTICE)) => Notice::decode(bytes).map(PushMessage::Notice),
            (Some(&FORMAT), Some(&KIND_SUMMARY)) => {
                Summary::decode(bytes).map(PushMessage::Summary)
            }
            (Some(&format), Some(&kind)) => Err(PushError::Unknown { format, kind }),
            _ => Err(PushError::Truncated {
                what: "format and kind",
                needed: 2,
                available: bytes.len(),
            }),
        }
    }

    /// The encoding.
    pub fn encode(&self) -> Bytes {
        match self {
            PushMessage::Notice(n) => n.encode(),
            PushMessage::Summary(s) => s.encode(),
        }
    }

    /// The topic ids a message speaks of (a notice's one, every summary entry's), read without
    /// decoding the rest: what a home broker matches against its subscribers' topics.
    pub fn topic_ids(bytes: &[u8]) -> Result<Vec<[u8; 16]>, PushError> {
        let mut r = Reader::new(bytes);
        let format = r.u8("format")?;
        let kind = r.u8("kind")?;
        match (format, kind) {
            (FORMAT, KIND_NOTICE) => Ok(vec![r.array("topic id")?]),
            (FORMAT, KIND_SUMMARY) => {
                let count = r.count("summary entries", SUMMARY_ENTRY_LEN)?;
                let mut ids: Vec<[u8; 16]> = Vec::with_capacity(count.min(64));
                for _ in 0..count {
                    let id: [u8; 16] = r.array("topic id")?;
                    r.take("summary entry", SUMMARY_ENTRY_LEN - 16)?;
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                Ok(ids)
            }
            _ => Err(PushError::Unknown { format, kind }),
        }
    }
}

/// A subscriber's long-poll to its home broker: "hand me what you have for these topics, or wait
/// up to `max_wait_ms` for some".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollRequest {
    /// The subscriber's session (chosen by the subscriber; a new one after it lost track).
    pub session: u64,
    /// How long the home broker may hold the request when it has nothing.
    pub max_wait_ms: u32,
    /// About how many bytes of messages one answer may carry (at least one message is sent).
    pub max_bytes: u32,
    /// The Kafka topics (ids) the subscriber wants.
    pub topics: Vec<[u8; 16]>,
}

impl PollRequest {
    /// The encoding.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(22 + 16 * self.topics.len());
        buf.put_u8(FORMAT);
        buf.put_u8(KIND_POLL);
        buf.put_u64(self.session);
        buf.put_u32(self.max_wait_ms);
        buf.put_u32(self.max_bytes);
        buf.put_u32(u32::try_from(self.topics.len()).unwrap_or(u32::MAX));
        for id in self.topics.iter().take(u32::MAX as usize) {
            buf.put_slice(id);
        }
        buf.freeze()
    }

    /// Reads a poll.
    pub fn decode(bytes: &[u8]) -> Result<PollRequest, PushError> {
        let mut r = Reader::new(bytes);
        r.header(KIND_POLL)?;
        let session = r.u64("session")?;
        let max_wait_ms = r.u32("max wait")?;
        let max_bytes = r.u32("max bytes")?;
        let count = r.count("topics", 16)?;
        let topics = (0..count)
            .map(|_| r.array("topic id"))
            .collect::<Result<_, _>>()?;
        if !r.rest().is_empty() {
            return Err(PushError::Invalid("trailing bytes after a poll"));
        }
        Ok(PollRequest {
            session,
            max_wait_ms,
            max_bytes,
            topics,
        })
    }
}

/// Error codes of a [`PollResponse`].
pub mod poll_error {
    /// Answered.
    pub const NONE: u16 = 0;
    /// The request could not be read.
    pub const INVALID_REQUEST: u16 = 1;
    /// The home broker serves as many sessions as it may; try another node.
    pub const TOO_MANY_SESSIONS: u16 = 2;
    /// The home broker is shutting down; try another node.
    pub const SHUTTING_DOWN: u16 = 3;
}

/// The home broker's answer to a [`PollRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PollResponse {
    /// [`poll_error`]; messages are empty unless [`poll_error::NONE`].
    pub error: u16,
    /// The session was created by this poll (the home broker did not know it: it restarted, or
    /// dropped it as idle), so anything published before may be missing.
    pub fresh: bool,
    /// Messages the home broker dropped for this session since its last answer (its queue was
    /// full): the subscriber has gaps to fetch.
    pub dropped: u32,
    /// Encoded [`PushMessage`]s, in the order the home broker received them.
    pub messages: Vec<Bytes>,
}

impl PollResponse {
    /// The encoding.
    pub fn encode(&self) -> Bytes {
        let body: usize = self.messages.iter().map(|m| 4 + m.len()).sum();
        let mut buf = BytesMut::with_capacity(13 + body);
        buf.put_u8(FORMAT);
        buf.put_u8(KIND_RESPONSE);
        buf.put_u16(self.error);
        buf.put_u8(u8::from(self.fresh));
        buf.put_u32(self.dropped);
        let fits = |m: &&Bytes| u32::try_from(m.len()).is_ok();
        let messages: Vec<&Bytes> = self.messages.iter().filter(fits).collect();
        buf.put_u32(u32::try_from(messages.len()).unwrap_or(u32::MAX));
        for m in messages.iter().take(u32::MAX as usize) {
            buf.put_u32(u32::try_from(m.len()).unwrap_or(u32::MAX));
            buf.put_slice(m);
        }
        buf.freeze()
    }

    /// Reads an answer; the messages are slices of `bytes` (no copy).
    pub fn decode(bytes: &Bytes) -> Result<PollResponse, PushError> {
        let mut r = Reader::new(bytes);
        r.header(KIND_RESPONSE)?;
        let error = r.u16("error")?;
        let fresh = match r.u8("fresh")? {
            0 => false,
            1 => true,
            _ => return Err(PushError::Invalid("fresh flag")),
        };
        let dropped = r.u32("dropped")?;
        let count = r.count("messages", 4)?;
        let mut messages = Vec::with_capacity(count);
        for _ in 0..count {
            let len = r.u32("message length")? as usize;
            let start = r.pos;
            r.take("message", len)?;
            messages.push(bytes.slice(start..start + len));
        }
        if !r.rest().is_empty() {
            return Err(PushError::Invalid("trailing bytes after a poll answer"));
        }
        Ok(PollResponse {
            error,
            fresh,
            dropped,
            messages,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key() -> impl Strategy<Value = PartitionKey> {
        (any::<[u8; 16]>(), any::<i32>()).prop_map(|(topic_id, partition)| PartitionKey {
            topic_id,
            partition,
        })
    }

    fn notice() -> impl Strategy<Value = Notice> {
        (
            key(),
            any::<i32>(),
            0..i64::MAX / 2,
            1..1_000_000i64,
            any::<u32>(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
        )
            .prop_map(
                |(partition, leader_epoch, base, len, batch_bytes, batches)| Notice {
                    partition,
                    leader_epoch,
                    base_offset: base,
                    end_offset: base + len,
                    batch_bytes,
                    batches: batches.map(Bytes::from),
                },
            )
    }

    fn summary() -> impl Strategy<Value = Summary> {
        let entry =
            (key(), any::<i32>(), any::<i64>()).prop_map(|(partition, e, hw)| SummaryEntry {
                partition,
                leader_epoch: e,
                high_watermark: hw,
            });
        proptest::collection::vec(entry, 0..20).prop_map(|entries| Summary { entries })
    }

    proptest! {
        #[test]
        fn notices_round_trip(n in notice()) {
            let bytes = n.encode();
            prop_assert_eq!(Notice::decode(&bytes)?, n.clone());
            prop_assert_eq!(PushMessage::decode(&bytes)?, PushMessage::Notice(n.clone()));
            prop_assert_eq!(PushMessage::topic_ids(&bytes)?, vec![n.partition.topic_id]);
            let key = Notice::key(&bytes).unwrap();
            prop_assert_eq!(key.len(), NOTICE_KEY_LEN);
            // The key is what tells notices apart: partition, epoch and base offset.
            let mut other = n.clone();
            other.leader_epoch = other.leader_epoch.wrapping_add(1);
            let other = other.encode();
            prop_assert_ne!(Notice::key(&other).unwrap(), key);
        }

        #[test]
        fn summaries_round_trip(s in summary()) {
            let bytes = s.encode();
            prop_assert_eq!(Summary::decode(&bytes)?, s.clone());
            prop_assert_eq!(PushMessage::decode(&bytes)?, PushMessage::Summary(s.clone()));
            let ids = PushMessage::topic_ids(&bytes)?;
            for e in &s.entries {
                prop_assert!(ids.contains(&e.partition.topic_id));
            }
            prop_assert!(Notice::key(&bytes).is_none());
        }

        #[test]
        fn polls_round_trip(
            session in any::<u64>(),
            wait in any::<u32>(),
            max in any::<u32>(),
            topics in proptest::collection::vec(any::<[u8; 16]>(), 0..10),
            messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 0..10),
            error in any::<u16>(), fresh in any::<bool>(), dropped in any::<u32>(),
        ) {
            let poll = PollRequest { session, max_wait_ms: wait, max_bytes: max, topics };
            prop_assert_eq!(PollRequest::decode(&poll.encode())?, poll);
            let answer = PollResponse {
                error, fresh, dropped,
                messages: messages.into_iter().map(Bytes::from).collect(),
            };
            prop_assert_eq!(PollResponse::decode(&answer.encode())?, answer);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let bytes = Bytes::from(bytes);
            let _ = PushMessage::decode(&bytes);
            let _ = PushMessage::topic_ids(&bytes);
            let _ = PollRequest::decode(&bytes);
            let _ = PollResponse::decode(&bytes);
        }

        #[test]
        fn mutated_encodings_never_panic(
            n in notice(), s in summary(), at in any::<usize>(), byte in any::<u8>(), cut in any::<usize>(),
        ) {
            for encoded in [n.encode(), s.encode()] {
                let mut bytes = encoded.to_vec();
                let len = bytes.len();
                if let Some(b) = bytes.get_mut(at % len) {
                    *b = byte;
                }
                bytes.truncate(cut % (len + 1));
                let bytes = Bytes::from(bytes);
                let _ = PushMessage::decode(&bytes);
                let _ = PushMessage::topic_ids(&bytes);
                let _ = PollResponse::decode(&bytes);
            }
        }
    }

    #[test]
    fn forged_counts_are_refused_before_allocating() {
        let mut bytes = vec![FORMAT, KIND_SUMMARY];
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Summary::decode(&bytes),
            Err(PushError::Truncated { .. })
        ));
        let mut bytes = vec![FORMAT, KIND_RESPONSE, 0, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(PollResponse::decode(&Bytes::from(bytes)).is_err());
    }

    #[test]
    fn notices_with_inverted_offsets_are_invalid() {
        let n = Notice {
            partition: PartitionKey {
                topic_id: [7; 16],
                partition: 0,
            },
            leader_epoch: 1,
            base_offset: 10,
            end_offset: 10,
            batch_bytes: 0,
            batches: None,
        };
        assert_eq!(
            Notice::decode(&n.encode()),
            Err(PushError::Invalid(
                "a notice's offsets must be 0 <= base < end"
            ))
        );
    }

    #[test]
    fn gossip_topics_are_a_bounded_stable_set() {
        assert_eq!(gossip_topic([0; 16]), gossip_topic([0; 16]));
        let topics: std::collections::HashSet<String> = (0..10_000u128)
            .map(|i| gossip_topic(i.to_be_bytes()))
            .collect();
        assert_eq!(topics.len(), GOSSIP_TOPICS as usize);
        // Pinned: every release must map a topic to the same gossip topic.
        // FNV-1a of sixteen zero bytes, mod 64, is 5 (computed independently).
        assert_eq!(gossip_topic([0; 16]), "rafka/push/1/5");
    }
}
