//! Encoding of committed offsets as records of the internal `__consumer_offsets` topic.
//!
//! Key:   `u8 version=1 | u16 len | group | u16 len | topic | i32 partition`
//! Value: `u8 version=1 | i64 offset | i32 leader epoch | i64 commit time | u32 len | metadata`
//! A record without a value deletes the commit. All integers big-endian. Decoding never panics.

use bytes::{BufMut, Bytes, BytesMut};

const VERSION: u8 = 1;

/// Which commit a record is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CommitKey {
    /// Group id.
    pub group: String,
    /// Topic name.
    pub topic: String,
    /// Partition.
    pub partition: i32,
}

/// A committed offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitValue {
    /// Next offset to consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record (-1 unknown).
    pub leader_epoch: i32,
    /// When it was committed (ms).
    pub commit_timestamp: i64,
    /// Client metadata string.
    pub metadata: String,
}

fn put_str16(buf: &mut BytesMut, s: &str) -> Option<()> {
    let len = u16::try_from(s.len()).ok()?;
    buf.put_u16(len);
    buf.put_slice(s.as_bytes());
    Some(())
}

impl CommitKey {
    /// Encodes the key; `None` if a name is longer than 65535 bytes.
    pub fn encode(&self) -> Option<Bytes> {
        let mut buf = BytesMut::with_capacity(9 + self.group.len() + self.topic.len());
        buf.put_u8(VERSION);
        put_str16(&mut buf, &self.group)?;
        put_str16(&mut buf, &self.topic)?;
        buf.put_i32(self.partition);
        Some(buf.freeze())
    }

    /// Decodes a key; `None` if malformed.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        (r.u8()? == VERSION).then_some(())?;
        let group = r.str16()?;
        let topic = r.str16()?;
        let partition = r.i32()?;
        r.0.is_empty().then_some(Self {
            group,
            topic,
            partition,
        })
    }
}

impl CommitValue {
    /// Encodes the value.
    pub fn encode(&self) -> Option<Bytes> {
        let mut buf = BytesMut::with_capacity(25 + self.metadata.len());
        buf.put_u8(VERSION);
        buf.put_i64(self.offset);
        buf.put_i32(self.leader_epoch);
        buf.put_i64(self.commit_timestamp);
        buf.put_u32(u32::try_from(self.metadata.len()).ok()?);
        buf.put_slice(self.metadata.as_bytes());
        Some(buf.freeze())
    }

    /// Decodes a value; `None` if malformed.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        (r.u8()? == VERSION).then_some(())?;
        let offset = r.i64()?;
        let leader_epoch = r.i32()?;
        let commit_timestamp = r.i64()?;
        let len = usize::try_from(r.u32()?).ok()?;
        let metadata = String::from_utf8(r.take(len)?.to_vec()).ok()?;
        r.0.is_empty().then_some(Self {
            offset,
            leader_epoch,
            commit_timestamp,
            metadata,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }
    fn i32(&mut self) -> Option<i32> {
        self.array().map(i32::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_be_bytes)
    }
    fn str16(&mut self) -> Option<String> {
        let len = usize::from(u16::from_be_bytes(self.array()?));
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let key = CommitKey {
            group: "g".into(),
            topic: "orders".into(),
            partition: 7,
        };
        assert_eq!(CommitKey::decode(&key.encode().unwrap()), Some(key));
        let value = CommitValue {
            offset: 42,
            leader_epoch: 3,
            commit_timestamp: 99,
            metadata: "m".into(),
        };
        assert_eq!(CommitValue::decode(&value.encode().unwrap()), Some(value));
    }

    #[test]
    fn garbage_decodes_to_none() {
        let key = CommitKey {
            group: "g".into(),
            topic: "t".into(),
            partition: 1,
        }
        .encode()
        .unwrap();
        for cut in 0..key.len() {
            assert_eq!(CommitKey::decode(&key[..cut]), None);
        }
        assert_eq!(CommitValue::decode(&[1, 0xff, 0xff]), None);
        assert_eq!(CommitValue::decode(&[]), None);
        let mut trailing = key.to_vec();
        trailing.push(0);
        assert_eq!(CommitKey::decode(&trailing), None);
    }
}
