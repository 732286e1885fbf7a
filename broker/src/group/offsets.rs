//! Committed group offsets, kept in the internal `__consumer_offsets` partitions so that
//! replication covers them; the in-memory map is rebuilt from those partitions at start-up.
//!
//! Each group maps to one partition (Java's `abs(groupId.hashCode()) % partitions`, as Kafka).
//! A commit is an acks=all append through the partition's [`Leader`] (Kafka's
//! `offsets.commit.required.acks=-1`). Commits to one partition are serialised by that
//! partition's mutex, held across the append and the wait for the in-sync replicas, so the
//! in-memory map always reflects the replicated log in offset order (the leader's appends would
//! allow pipelining them; the consumer-group work replaces this mutex). A node that stops
//! leading a partition, or leads it again in a new leader epoch, detaches it: its groups' offsets
//! are dropped here and replayed from the log when it attaches again. The log would grow with every commit;
//! instead of a key-compacting cleaner, once enough superseded commits pile up the writer appends a
//! snapshot of the live commits and advances the log start past everything older.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rafka_store::batch::BatchHeader;
use rafka_store::{PartitionLog, ProducedBatch, StoreError};
use tokio::sync::Mutex;

use super::codec::{CommitKey, CommitValue};
use crate::ids::LeaderEpoch;
use crate::partition::core::ReplicaError;
use crate::partition::{Acks, AppendError, NodeLeader};

/// Name of the internal topic.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// A committed offset.
pub type CommittedOffset = CommitValue;

/// Records per batch when writing snapshots.
const SNAPSHOT_CHUNK: usize = 1000;
/// Superseded records tolerated before a snapshot.
const SNAPSHOT_MIN_RECORDS: u64 = 10_000;
/// Bytes read per step when replaying a partition.
const REPLAY_READ_BYTES: usize = 4 * 1024 * 1024;
/// How long a commit waits for the offsets partition's in-sync replicas (Kafka's
/// `offsets.commit.timeout.ms` default).
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a commit failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// The metadata string is longer than Kafka's 4096 bytes.
    #[error("offset metadata is {0} bytes; at most 4096 are allowed")]
    MetadataTooLarge(usize),
    /// A name cannot be encoded.
    #[error("group or topic name too long")]
    NameTooLong,
    /// The group's offsets partition is not here.
    #[error("this node is not the coordinator of the group")]
    NotCoordinator,
    /// Writing the commit failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The in-sync replicas did not all get the commit (or this node stopped leading).
    #[error(transparent)]
    Replication(#[from] ReplicaError),
}

/// Java's `String.hashCode` (over UTF-16 code units), as Kafka uses to place groups.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The offsets partition of `group` among `partitions`.
pub fn partition_for_group(group: &str, partitions: i32) -> i32 {
    // Kafka's Utils.abs maps i32::MIN to 0 rather than overflowing.
    let hash = java_string_hash(group);
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partitions.max(1)
}

type GroupMap = HashMap<String, HashMap<(String, i32), CommitValue>>;

struct Writer {
    leader: Arc<NodeLeader>,
    records_since_snapshot: u64,
    /// Set when leadership moved away: a commit that got this writer before must not append.
    detached: bool,
}

type SharedWriter = Arc<Mutex<Writer>>;

/// An attached offsets partition: the leader epoch it is served in, and its writer.
type Slot = (LeaderEpoch, SharedWriter);

/// The committed offsets of the groups whose offsets partitions this node leads (cheap to clone).
#[derive(Clone)]
pub struct GroupOffsets {
    inner: Arc<Inner>,
}

struct Inner {
    partitions: i32,
    offsets: RwLock<GroupMap>,
    writers: std::sync::Mutex<HashMap<i32, Slot>>,
}

impl GroupOffsets {
    /// Offsets spread over `partitions` partitions of the offsets topic; none attached yet.
    pub fn new(partitions: i32) -> Self {
        Self {
            inner: Arc::new(Inner {
                partitions: partitions.max(1),
                offsets: RwLock::new(GroupMap::new()),
                writers: std::sync::Mutex::new(HashMap::new()),
            }),
        }
    }

    fn writers(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Slot>> {
        // Entries are inserted whole; a panic elsewhere cannot leave the map torn.
        self.inner
            .writers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether this node serves the offsets partition `index`.
    pub fn is_attached(&self, index: i32) -> bool {
        self.writers().contains_key(&index)
    }

    /// Starts serving offsets partition `index` (this node leads it through `leader`): replays
    /// its log into the map. Does nothing if already attached.
    pub async fn attach(&self, index: i32, leader: Arc<NodeLeader>) -> Result<(), StoreError> {
        if self.is_attached(index) {
            return Ok(());
        }
        let replay_log = leader.log().clone();
        let (offsets, records) = tokio::task::spawn_blocking(move || replay(&replay_log))
            .await
            .map_err(|e| task_failed("offset replay", &e))??;
        let mut writers = self.writers();
        if writers.contains_key(&index) {
            return Ok(());
        }
        {
            let mut map = self.write();
            for (group, commits) in offsets {
                map.entry(group).or_default().extend(commits);
            }
        }
        let epoch = leader.leader_epoch();
        tracing::info!(
            partition = index,
            leader_epoch = epoch.0,
            records,
            "serving group offsets"
        );
        let writer = Writer {
            leader,
            records_since_snapshot: records,
            detached: false,
        };
        writers.insert(index, (epoch, Arc::new(Mutex::new(writer))));
        Ok(())
    }

    /// Stops serving offsets partition `index` (another node leads it now): waits for a commit
    /// in progress, then drops the partition's writer and its groups' offsets. Attaching it
    /// again replays the log, with whatever the other leader committed meanwhile.
    pub async fn detach(&self, index: i32) {
        let Some((_, writer)) = self.writers().remove(&index) else {
            return;
        };
        writer.lock().await.detached = true;
        let partitions = self.partitions();
        self.write()
            .retain(|group, _| partition_for_group(group, partitions) != index);
        tracing::info!(partition = index, "stopped serving group offsets");
    }

    /// The offsets partitions this node serves, each with the leader epoch it serves it in.
    pub fn attached(&self) -> Vec<(i32, LeaderEpoch)> {
        let mut attached: Vec<(i32, LeaderEpoch)> = self
            .writers()
            .iter()
            .map(|(index, (epoch, _))| (*index, *epoch))
            .collect();
        attached.sort_unstable();
        attached
    }

    /// Number of offsets partitions.
    pub fn partitions(&self) -> i32 {
        self.inner.partitions
    }

    /// The offsets partition of `group`.
    pub fn partition_of(&self, group: &str) -> i32 {
        partition_for_group(group, self.partitions())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, GroupMap> {
        // Writers replace whole entries under the lock; a panic elsewhere cannot leave one torn.
        self.inner
            .offsets
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, GroupMap> {
        self.inner
            .offsets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The committed offset of one partition.
    pub fn fetch(&self, group: &str, topic: &str, partition: i32) -> Option<CommitValue> {
        self.read()
            .get(group)?
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    /// Every committed offset of a group.
    pub fn fetch_group(&self, group: &str) -> Vec<(String, i32, CommitValue)> {
        let map = self.read();
        let mut all: Vec<_> = map
            .get(group)
            .map(|offsets| {
                offsets
                    .iter()
                    .map(|((t, p), v)| (t.clone(), *p, v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        all.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        all
    }

    /// Groups with committed offsets.
    pub fn groups(&self) -> Vec<String> {
        let mut groups: Vec<_> = self.read().keys().cloned().collect();
        groups.sort();
        groups
    }

    /// Records `entries` for `group` as one acks=all append (`now_ms`: the commit time) and
    /// makes them visible once every in-sync replica has it.
    pub async fn commit(
        &self,
        group: &str,
        entries: Vec<(String, i32, CommitValue)>,
        now_ms: i64,
    ) -> Result<(), CommitError> {
        let mut records = Vec::with_capacity(entries.len());
        for (topic, partition, value) in &entries {
            if value.metadata.len() > 4096 {
                return Err(CommitError::MetadataTooLarge(value.metadata.len()));
            }
            let key = CommitKey {
                group: group.to_string(),
                topic: topic.clone(),
                partition: *partition,
            };
            records.push((key.encode(), value.encode()));
        }
        let records: Vec<(Bytes, Option<Bytes>)> = records
            .into_iter()
            .map(|(k, v)| Some((k?, Some(v?))))
            .collect::<Option<_>>()
            .ok_or(CommitError::NameTooLong)?;
        let index = self.partition_of(group);
        let writer = self
            .writers()
            .get(&index)
            .map(|(_, writer)| writer.clone())
            .ok_or(CommitError::NotCoordinator)?;
        let mut writer = writer.lock().await;
        if writer.detached {
            return Err(CommitError::NotCoordinator);
        }
        append_records(&writer.leader, &records, now_ms).await?;
        writer.records_since_snapshot += records.len() as u64;
        {
            let mut map = self.write();
            let group_map = map.entry(group.to_string()).or_default();
            for (topic, partition, value) in entries {
                group_map.insert((topic, partition), value);
            }
        }
        self.maybe_snapshot(index, &mut writer, now_ms).await
    }

    async fn maybe_snapshot(
        &self,
        index: i32,
        writer: &mut Writer,
        now_ms: i64,
    ) -> Result<(), CommitError> {
        let partitions = self.partitions();
        let live: Vec<(Bytes, Option<Bytes>)> = {
            let map = self.read();
            map.iter()
                .filter(|(group, _)| partition_for_group(group, partitions) == index)
                .flat_map(|(group, offsets)| {
                    offsets
                        .iter()
                        .filter_map(move |((topic, partition), value)| {
                            let key = CommitKey {
                                group: group.clone(),
                                topic: topic.clone(),
                                partition: *partition,
                            };
                            Some((key.encode()?, Some(value.encode()?)))
                        })
                })
                .collect()
        };
        let live_count = live.len() as u64;
        if writer.records_since_snapshot < SNAPSHOT_MIN_RECORDS.max(2 * live_count) {
            return Ok(());
        }
        let mut first_offset = None;
        for chunk in live.chunks(SNAPSHOT_CHUNK) {
            let base = append_records(&writer.leader, chunk, now_ms).await?;
            first_offset.get_or_insert(base);
        }
        let log = writer.leader.log().clone();
        let start = first_offset.unwrap_or_else(|| log.log_end_offset());
        tokio::task::spawn_blocking(move || log.delete_records_before(start))
            .await
            .map_err(|e| task_failed("offsets snapshot", &e))??;
        tracing::info!(
            partition = index,
            live = live_count,
            start,
            "compacted group offsets"
        );
        writer.records_since_snapshot = live_count;
        Ok(())
    }
}

fn task_failed(what: &str, error: &tokio::task::JoinError) -> StoreError {
    StoreError::Io(std::io::Error::other(format!(
        "{what} task failed: {error}"
    )))
}

fn corrupt(reason: String) -> StoreError {
    StoreError::CorruptValue {
        keyspace: OFFSETS_TOPIC,
        reason,
    }
}

/// Appends one batch of records as an acks=all write; returns its base offset once every
/// in-sync replica has it.
async fn append_records(
    leader: &Arc<NodeLeader>,
    records: &[(Bytes, Option<Bytes>)],
    now_ms: i64,
) -> Result<i64, CommitError> {
    let batch = encode_batch(records, now_ms)?;
    let batch = ProducedBatch::parse(batch).map_err(|e| corrupt(e.to_string()))?;
    let appending = leader.append(batch, now_ms, Acks::All, COMMIT_TIMEOUT)?;
    match appending.await {
        Ok(appended) => Ok(appended.base_offset),
        Err(AppendError::Store(e)) => Err(e.into()),
        Err(AppendError::Replica(e)) => Err(e.into()),
    }
}

fn encode_batch(records: &[(Bytes, Option<Bytes>)], now_ms: i64) -> Result<Bytes, StoreError> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol starts a new batch wherever `offset - sequence` changes: keep it
            // constant so the records make one batch (base sequence -1, as without a producer id).
            sequence: (i as i32).wrapping_sub(1),
            timestamp: now_ms,
            key: Some(key.clone()),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options)
        .map_err(|e| corrupt(format!("cannot encode offset commit: {e}")))?;
    Ok(buf.freeze())
}

/// Replays one offsets partition: its live commits and how many records it holds.
fn replay(log: &PartitionLog) -> Result<(GroupMap, u64), StoreError> {
    let mut map = GroupMap::new();
    let mut records = 0u64;
    {
        let mut offset = log.log_start_offset();
        let end = log.log_end_offset();
        while offset < end {
            let batches = log.read(offset, REPLAY_READ_BYTES, end)?;
            if batches.is_empty() {
                break;
            }
            for batch in batches {
                let mut buf = batch.clone();
                let sets = match RecordBatchDecoder::decode_all(&mut buf) {
                    Ok(sets) => sets,
                    Err(e) => {
                        // The CRC held (the store checks it on read), so these bytes are what
                        // was written: not ours, and no commit of ours is in them. Skip them
                        // rather than refuse to start.
                        let last = BatchHeader::parse(&batch)
                            .ok()
                            .and_then(|h| h.last_offset())
                            .ok_or_else(|| corrupt(format!("unreadable record batch: {e}")))?;
                        tracing::warn!(offset, error = %e, "skipping undecodable offsets batch");
                        offset = offset.max(last + 1);
                        continue;
                    }
                };
                for record in sets.into_iter().flat_map(|set| set.records) {
                    offset = offset.max(record.offset + 1);
                    records += 1;
                    apply_record(&mut map, &record);
                }
            }
        }
    }
    Ok((map, records))
}

fn apply_record(map: &mut GroupMap, record: &Record) {
    let Some(key) = record.key.as_deref().and_then(CommitKey::decode) else {
        tracing::warn!(
            offset = record.offset,
            "skipping unreadable offsets record key"
        );
        return;
    };
    match record.value.as_deref().map(CommitValue::decode) {
        Some(Some(value)) => {
            map.entry(key.group)
                .or_default()
                .insert((key.topic, key.partition), value);
        }
        Some(None) => tracing::warn!(offset = record.offset, "skipping unreadable offsets record"),
        None => {
            if let Some(group) = map.get_mut(&key.group) {
                group.remove(&(key.topic, key.partition));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_land_where_kafka_puts_them() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("ab"), 97 * 31 + 98);
        // "hello".hashCode() in Java.
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(partition_for_group("hello", 50), 99_162_322 % 50);
        for p in 1..64 {
            let partition = partition_for_group("any-group", p);
            assert!((0..p).contains(&partition));
        }
    }

    #[test]
    fn a_commit_of_many_partitions_is_one_batch() {
        let records: Vec<(Bytes, Option<Bytes>)> = (0..5)
            .map(|i| {
                (
                    Bytes::from(format!("key-{i}")),
                    Some(Bytes::from(format!("value-{i}"))),
                )
            })
            .collect();
        let batch = encode_batch(&records, 1_700_000_000_000).unwrap();
        let header = rafka_store::batch::BatchHeader::parse(&batch).unwrap();
        assert_eq!(header.total_len(), Some(batch.len()));
        assert_eq!(header.base_sequence, -1);
        let mut buf = batch.clone();
        let sets = RecordBatchDecoder::decode_all(&mut buf).unwrap();
        assert_eq!(sets.len(), 1);
        let keys: Vec<_> = sets[0]
            .records
            .iter()
            .map(|r| r.key.clone().unwrap())
            .collect();
        let offsets: Vec<_> = sets[0].records.iter().map(|r| r.offset).collect();
        assert_eq!(
            keys,
            records.iter().map(|r| r.0.clone()).collect::<Vec<_>>()
        );
        assert_eq!(offsets, vec![0, 1, 2, 3, 4]);
    }
}
