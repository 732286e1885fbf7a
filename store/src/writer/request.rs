//! What callers send the writer, and how it answers.

use crate::batch::BatchHeader;
use crate::codec::{CleanerCheckpoint, IndexEntry, SegmentSummary};
use crate::config::LogConfig;
use crate::error::{Result, StoreError};
use crate::shared::PartitionShared;
use crate::types::{AppendOptions, Appended, RetentionReport, TopicPartition};
use bytes::{Bytes, BytesMut};
use fjall::Keyspace;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Where the answer goes: a tokio oneshot for async callers, a std channel for blocking ones
/// (so a blocking call never panics inside a runtime).
pub(crate) enum Reply<T> {
    Async(oneshot::Sender<Result<T>>),
    Blocking(std::sync::mpsc::SyncSender<Result<T>>),
}

impl<T> Reply<T> {
    pub(crate) fn send(self, value: Result<T>) {
        // The caller may have gone away (cancelled future); nothing to do then.
        match self {
            Reply::Async(tx) => drop(tx.send(value)),
            Reply::Blocking(tx) => drop(tx.send(value)),
        }
    }
}

/// A blocking call: builds the request with a reply channel and returns the receiver.
pub(crate) fn blocking<T>() -> (Reply<T>, std::sync::mpsc::Receiver<Result<T>>) {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    (Reply::Blocking(tx), rx)
}

pub(crate) fn wait<T>(rx: std::sync::mpsc::Receiver<Result<T>>) -> Result<T> {
    rx.recv().unwrap_or(Err(StoreError::Closed))
}

/// A validated leader append.
pub(crate) struct LeaderAppend {
    pub part: Arc<PartitionShared>,
    pub batch: BytesMut,
    pub header: BatchHeader,
    pub opts: AppendOptions,
    pub log_append_time: bool,
    pub reply: Reply<Appended>,
}

/// Validated follower batches.
pub(crate) struct ReplicaAppend {
    pub part: Arc<PartitionShared>,
    pub batches: Vec<(BatchHeader, Bytes)>,
    pub reply: Reply<Appended>,
}

pub(crate) enum Request {
    Leader(LeaderAppend),
    Replica(ReplicaAppend),
    Create {
        tp: TopicPartition,
        config: LogConfig,
        reply: Reply<Arc<PartitionShared>>,
    },
    Delete {
        tp: TopicPartition,
        reply: Reply<()>,
    },
    SetConfig {
        tp: TopicPartition,
        config: LogConfig,
        reply: Reply<()>,
    },
    Truncate {
        tp: TopicPartition,
        offset: i64,
        reply: Reply<i64>,
    },
    ResetTo {
        tp: TopicPartition,
        offset: i64,
        reply: Reply<()>,
    },
    DeleteRecords {
        tp: TopicPartition,
        offset: i64,
        reply: Reply<i64>,
    },
    Retention {
        now_ms: i64,
        reply: Reply<RetentionReport>,
    },
    Flush {
        reply: Reply<()>,
    },
    /// The log cleaner swaps cleaned segments in (see `writer/swap.rs`).
    Swap {
        swap: Box<Swap>,
        reply: Reply<()>,
    },
    /// The log cleaner finished a cleaning: advance its checkpoint.
    CleanDone {
        part: Arc<PartitionShared>,
        generation: u32,
        checkpoint: CleanerCheckpoint,
        reply: Reply<()>,
    },
    /// Start the partition's key index afresh (a new generation, cleaning from the log start).
    ResetKeyIndex {
        part: Arc<PartitionShared>,
        reply: Reply<()>,
    },
    /// The store's key hash secret, created on first use.
    HashKey {
        reply: Reply<[u64; 2]>,
    },
}

/// Cleaned segment(s) to swap in: one new segment keyspace (already written and durable)
/// replacing consecutive sealed segments, with the index and key index changes that go with
/// it, all committed in one atomic batch.
pub(crate) struct Swap {
    pub part: Arc<PartitionShared>,
    /// The key index generation the cleaning ran under; another one means a truncation or a
    /// config change happened meanwhile, and the swap is refused.
    pub generation: u32,
    /// The segments replaced: (base offset, keyspace generation), consecutive, oldest first.
    pub old: Vec<(i64, u32)>,
    pub keyspace: Keyspace,
    pub summary: SegmentSummary,
    /// Index entries of rewritten batches (by last offset).
    pub index_puts: Vec<(i64, IndexEntry)>,
    /// Index entries of removed batches.
    pub index_removes: Vec<i64>,
    /// Offsets of removed markers: their aborted-transactions index entries go.
    pub txn_removes: Vec<i64>,
    /// Key index entries to write (tombstones that got their delete horizon).
    pub key_puts: Vec<(Vec<u8>, Vec<u8>)>,
    /// Key index entries of deleted keys.
    pub key_removes: Vec<Vec<u8>>,
}

impl Request {
    pub(crate) fn is_append(&self) -> bool {
        matches!(self, Request::Leader(_) | Request::Replica(_))
    }

    pub(crate) fn size_hint(&self) -> usize {
        match self {
            Request::Leader(a) => a.batch.len(),
            Request::Replica(r) => r.batches.iter().map(|b| b.1.len()).sum(),
            _ => 0,
        }
    }
}
