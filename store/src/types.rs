//! Plain data types of the public API.

use std::fmt;

/// Kafka topic id (16 bytes). `Uuid::nil()` is never used for a real topic.
pub type TopicId = uuid::Uuid;

/// A partition of a topic, addressed by topic id (so a recreated topic never sees old data).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic's id.
    pub topic_id: TopicId,
    /// Partition index, >= 0.
    pub partition: i32,
}

impl TopicPartition {
    /// Shorthand constructor.
    pub fn new(topic_id: TopicId, partition: i32) -> Self {
        TopicPartition {
            topic_id,
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic_id, self.partition)
    }
}

/// Options of a leader append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendOptions {
    /// Leader epoch stamped into the batch header and recorded in the leader-epoch cache.
    pub leader_epoch: i32,
    /// The leader's clock: LogAppendTime, and `segment_ms` rolls.
    pub now_ms: i64,
}

/// Result of an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// The append time stamped into the batch; -1 unless the topic uses LogAppendTime.
    pub log_append_time_ms: i64,
    /// The log start offset after the append.
    pub log_start_offset: i64,
    /// An idempotent retry of one of the producer's last 5 batches: nothing was written and
    /// the offsets are the original ones.
    pub duplicate: bool,
}

/// A record's timestamp and offset (ListOffsets answers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampOffset {
    /// The record's timestamp.
    pub timestamp: i64,
    /// The record's offset.
    pub offset: i64,
}

/// A partition's offsets, as published on [`crate::PartitionLog::subscribe`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogOffsets {
    /// First offset in the log.
    pub log_start: i64,
    /// Offset the next record will get.
    pub log_end: i64,
    /// Offsets below this are committed (replicated to the ISR); set by the broker.
    pub high_watermark: i64,
}

/// What one retention pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segments deleted.
    pub segments_deleted: usize,
    /// Logical bytes (batch sizes) deleted.
    pub bytes_deleted: u64,
    /// Every partition whose log start advanced, with its new log start.
    pub log_starts: Vec<(TopicPartition, i64)>,
}

/// Counters since the store was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Append requests received (leader and replicated).
    pub append_requests: u64,
    /// Batches written.
    pub appended_batches: u64,
    /// Bytes of batches written.
    pub appended_bytes: u64,
    /// Idempotent retries answered without writing.
    pub duplicates: u64,
    /// fjall write batches committed by the writer (one per group commit or admin operation).
    pub commits: u64,
    /// fsyncs (group commits with SyncData, interval syncs, flushes).
    pub fsyncs: u64,
    /// Most requests served by one commit.
    pub largest_group: u64,
    /// Segments created.
    pub segments_rolled: u64,
    /// Segments deleted (retention, DeleteRecords, truncation, cleaning, partition deletion).
    pub segments_deleted: u64,
    /// Segment keyspaces found at open that no summary named (left by a roll, cut or cleaning
    /// that a crash interrupted), deleted.
    pub orphan_segments: u64,
}

/// What one cleaning of a partition did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanReport {
    /// The dirty part started here.
    pub first_dirty: i64,
    /// Offsets below this were cleaned (where the next cleaning's dirty part starts).
    pub clean_end: i64,
    /// Segments read and (re)written.
    pub segments_read: usize,
    /// Cleaned segments swapped in.
    pub segments_written: usize,
    /// Bytes of batches read from the cleaned segments.
    pub bytes_read: u64,
    /// Bytes of batches the cleaned segments hold now.
    pub bytes_written: u64,
    /// Records read from the cleaned segments.
    pub records_read: u64,
    /// Records removed.
    pub records_removed: u64,
    /// Key index entries written.
    pub keys_indexed: u64,
    /// CPU time the cleaning took on its thread, in nanoseconds.
    pub cpu_ns: u64,
}

/// A compacted partition's cleaning state, for metrics and `rafka topic describe`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CleanerState {
    /// Whether the partition is compacted at all.
    pub compacted: bool,
    /// Dirty bytes over cleanable bytes now (Kafka's dirty ratio).
    pub dirty_ratio: f64,
    /// Dirty bytes that may be cleaned now (the backlog).
    pub cleanable_bytes: u64,
    /// Where the dirty part starts.
    pub first_dirty: i64,
    /// Whether a cleaning is due.
    pub due: bool,
    /// Wall-clock time of the last cleaning (-1 never).
    pub last_clean_ms: i64,
    /// Cleanings since the store opened.
    pub cleanings: u64,
    /// Bytes read by cleanings since the store opened.
    pub bytes_read: u64,
    /// Bytes written by cleanings since the store opened.
    pub bytes_written: u64,
    /// Records removed since the store opened.
    pub records_removed: u64,
    /// Cleaner CPU time since the store opened, in nanoseconds.
    pub cpu_ns: u64,
    /// The cleaner gave up on this partition (a corrupt batch) until the store reopens.
    pub failed: bool,
}
