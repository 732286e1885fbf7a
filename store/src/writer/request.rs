//! What callers send the writer, and how it answers.

use crate::batch::BatchHeader;
use crate::config::LogConfig;
use crate::error::{Result, StoreError};
use crate::shared::PartitionShared;
use crate::types::{AppendOptions, Appended, RetentionReport, TopicPartition};
use bytes::{Bytes, BytesMut};
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
