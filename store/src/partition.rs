//! [`PartitionLog`]: the cheap, cloneable handle to one partition's log.
//!
//! Writes are validated on the caller's thread (header, length, CRC: this parallelises), then
//! queued to the writer thread; the async variants await a oneshot, the `_blocking` ones wait
//! on a std channel. Reads (see `read.rs`) run on the caller's thread against fjall.

use crate::batch::{self, BatchError, BatchHeader, BatchIter};
use crate::compaction;
use crate::config::{LogConfig, TimestampType};
use crate::error::{Result, StoreError};
use crate::produced::ProducedBatch;
use crate::shared::PartitionShared;
use crate::store::StoreInner;
use crate::types::{
    AppendOptions, Appended, CleanReport, CleanerState, LogOffsets, TopicPartition,
};
use crate::writer::request::{self, LeaderAppend, ReplicaAppend, Reply, Request};
use bytes::{Bytes, BytesMut};
use rafka_format::records::Records;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::{oneshot, watch};

/// Handle to one partition's log. Clone is cheap; it keeps the store open.
#[derive(Clone)]
pub struct PartitionLog {
    pub(crate) inner: Arc<StoreInner>,
    pub(crate) shared: Arc<PartitionShared>,
}

/// `batch` with its header, or with why the header is unreadable.
fn parse(batch: Bytes) -> std::result::Result<(Bytes, BatchHeader), (Bytes, BatchError)> {
    match BatchHeader::parse(&batch) {
        Ok(header) => Ok((batch, header)),
        Err(e) => Err((batch, e)),
    }
}

impl std::fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionLog")
            .field("tp", &self.shared.tp)
            .field("offsets", &self.offsets())
            .finish()
    }
}

impl PartitionLog {
    /// The partition.
    pub fn topic_partition(&self) -> TopicPartition {
        self.shared.tp
    }

    /// Its current log config.
    pub fn config(&self) -> LogConfig {
        self.shared.config()
    }

    /// Leader append of exactly ONE RecordBatch v2 (the produce path): validates it, answers
    /// idempotent retries, assigns offsets, makes it durable per the fsync policy, resolves.
    ///
    /// The batch is validated and queued to the writer when `append` is CALLED, not when the
    /// future is first polled: appends from one caller land in call order (the broker relies
    /// on it for pipelined produce requests). While the writer's queue is full the call
    /// blocks (backpressure).
    pub fn append(
        &self,
        batch: Bytes,
        opts: AppendOptions,
    ) -> impl Future<Output = Result<Appended>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let queued = self
            .leader_request(parse(batch), opts, Reply::Async(tx))
            .and_then(|req| self.inner.send(req));
        async move {
            queued?;
            rx.await.unwrap_or(Err(StoreError::Closed))
        }
    }

    /// [`PartitionLog::append`] of a batch whose header the caller has already read (the
    /// broker checks a client's batch on it first): the header is not parsed again.
    pub fn append_produced(
        &self,
        batch: ProducedBatch,
        opts: AppendOptions,
    ) -> impl Future<Output = Result<Appended>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let queued = self
            .leader_request(Ok(batch.into_parts()), opts, Reply::Async(tx))
            .and_then(|req| self.inner.send(req));
        async move {
            queued?;
            rx.await.unwrap_or(Err(StoreError::Closed))
        }
    }

    /// [`PartitionLog::append`] for threads outside an async runtime.
    pub fn append_blocking(&self, batch: Bytes, opts: AppendOptions) -> Result<Appended> {
        let (reply, rx) = request::blocking();
        self.inner
            .send(self.leader_request(parse(batch), opts, reply)?)?;
        request::wait(rx)
    }

    /// Follower append: one or more batches that already carry their offsets (and leader
    /// epochs). Base offsets must not go back (below the log end, or below the end of the
    /// batch before); they may skip ahead, over what a compacted leader removed.
    /// Queued when called, like [`PartitionLog::append`].
    pub fn append_replicated(
        &self,
        batches: Bytes,
    ) -> impl Future<Output = Result<Appended>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let queued = self
            .replica_request(batches, Reply::Async(tx))
            .and_then(|req| self.inner.send(req));
        async move {
            queued?;
            rx.await.unwrap_or(Err(StoreError::Closed))
        }
    }

    /// [`PartitionLog::append_replicated`] for threads outside an async runtime.
    pub fn append_replicated_blocking(&self, batches: Bytes) -> Result<Appended> {
        let (reply, rx) = request::blocking();
        self.inner.send(self.replica_request(batches, reply)?)?;
        request::wait(rx)
    }

    fn check_live(&self) -> Result<()> {
        if self.shared.is_deleted() {
            return Err(StoreError::UnknownPartition {
                partition: self.shared.tp,
            });
        }
        Ok(())
    }

    /// `parsed`: the batch and its header, or the batch and why its header is unreadable.
    fn leader_request(
        &self,
        parsed: std::result::Result<(Bytes, BatchHeader), (Bytes, BatchError)>,
        opts: AppendOptions,
        reply: Reply<Appended>,
    ) -> Result<Request> {
        self.check_live()?;
        let cfg = self.shared.config();
        let (batch, header) = match parsed {
            Ok((batch, header)) => (batch, Ok(header)),
            Err((batch, e)) => (batch, Err(StoreError::from_batch(e))),
        };
        let mut header = batch::validate_parsed_produce(&batch, header, cfg.max_message_bytes)
            .map_err(|e| e.with_partition(self.shared.tp))?;
        if cfg.cleanup.compact {
            require_keys(&batch, &header).map_err(|e| e.with_partition(self.shared.tp))?;
        }
        let mut buf = BytesMut::from(batch);
        let log_append_time = cfg.timestamp_type == TimestampType::LogAppendTime;
        if log_append_time {
            batch::set_log_append_time(&mut buf, opts.now_ms);
            header = batch::BatchHeader::parse(&buf).map_err(StoreError::from_batch)?;
        }
        Ok(Request::Leader(LeaderAppend {
            part: self.shared.clone(),
            batch: buf,
            header,
            opts,
            log_append_time,
            reply,
        }))
    }

    fn replica_request(&self, batches: Bytes, reply: Reply<Appended>) -> Result<Request> {
        self.check_live()?;
        let mut out = Vec::new();
        for item in BatchIter::new(&batches) {
            let (h, range) =
                item.map_err(|e| StoreError::from_batch(e).with_partition(self.shared.tp))?;
            out.push((h, batches.slice(range)));
        }
        if out.is_empty() {
            return Err(StoreError::InvalidRequest {
                reason: "no record batches".into(),
            });
        }
        Ok(Request::Replica(ReplicaAppend {
            part: self.shared.clone(),
            batches: out,
            reply,
        }))
    }

    /// First offset in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.shared.offsets().log_start
    }

    /// Offset the next record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.shared.offsets().log_end
    }

    /// The high watermark the broker last set (checkpointed periodically and on shutdown).
    pub fn high_watermark(&self) -> i64 {
        self.shared.offsets().high_watermark
    }

    /// All three offsets at once, consistently.
    pub fn offsets(&self) -> LogOffsets {
        self.shared.offsets()
    }

    /// Sets the high watermark, clamped to `[log_start, log_end]`. No I/O: the writer
    /// checkpoints it every `hw_checkpoint_interval_ms`, on `flush` and on shutdown.
    pub fn set_high_watermark(&self, hw: i64) -> Result<()> {
        self.check_live()?;
        self.shared.offsets.send_if_modified(|o| {
            let new = hw.clamp(o.log_start, o.log_end);
            let changed = new != o.high_watermark;
            o.high_watermark = new;
            changed
        });
        self.shared.hw_dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Moves the high watermark forward to `hw` (clamped to the log end); never moves it back.
    /// Leaders call it as acknowledged appends complete, in whatever order they complete.
    pub fn advance_high_watermark(&self, hw: i64) -> Result<()> {
        self.check_live()?;
        let advanced = self.shared.offsets.send_if_modified(|o| {
            let new = hw.min(o.log_end);
            let changed = new > o.high_watermark;
            if changed {
                o.high_watermark = new;
            }
            changed
        });
        if advanced {
            self.shared.hw_dirty.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Truncates the log to the start of the batch holding `offset` (whole batches go) and
    /// returns the new log end. At or beyond the log end it does nothing; below the log start
    /// it empties the log and restarts it at `offset` (as [`PartitionLog::reset_to`]).
    pub fn truncate_to(&self, offset: i64) -> Result<i64> {
        let tp = self.shared.tp;
        self.inner
            .call(|reply| Request::Truncate { tp, offset, reply })
    }

    /// Empties the log and restarts it at `offset` (log start = log end = offset). For a
    /// follower whose log is behind the leader's log start.
    pub fn reset_to(&self, offset: i64) -> Result<()> {
        let tp = self.shared.tp;
        self.inner
            .call(|reply| Request::ResetTo { tp, offset, reply })
    }

    /// DeleteRecords: advances the log start to `offset` (at most the log end; the broker
    /// checks the high watermark) and deletes sealed segments wholly below it. Returns the
    /// new log start.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64> {
        let tp = self.shared.tp;
        self.inner
            .call(|reply| Request::DeleteRecords { tp, offset, reply })
    }

    /// Leader-epoch cache lookup (OffsetsForLeaderEpoch, KIP-101): the largest epoch <=
    /// `leader_epoch` and its end offset; `None` when undefined.
    pub fn end_offset_for_epoch(&self, leader_epoch: i32) -> Option<(i32, i64)> {
        self.shared
            .epochs()
            .end_offset_for(leader_epoch, self.log_end_offset())
    }

    /// The latest leader epoch in the log, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.shared.epochs().latest_epoch()
    }

    /// Changes of (log start, log end, high watermark).
    pub fn subscribe(&self) -> watch::Receiver<LogOffsets> {
        self.shared.offsets.subscribe()
    }

    /// Bytes of batches in the log.
    pub fn size_bytes(&self) -> u64 {
        self.shared.size_bytes.load(Ordering::Acquire)
    }

    /// The last stable offset: the high watermark, or the first offset of the oldest
    /// transaction not yet decided on every in-sync replica if that is lower (an open one, or
    /// one whose marker is at or above the high watermark). read_committed consumers read up
    /// to it; the log cleaner never cleans at or above it.
    pub fn last_stable_offset(&self) -> i64 {
        self.shared.last_stable_offset()
    }

    /// Cleans this compacted partition now, whatever its dirty ratio, if any sealed segment
    /// lies below min(last stable offset, high watermark). Blocking (reads and writes the
    /// log); `None` when there was nothing to clean, the partition is not compacted, or a
    /// cleaner thread is cleaning it right now.
    pub fn clean(&self, now_ms: i64) -> Result<Option<CleanReport>> {
        compaction::clean(&self.inner.cleaner, &self.shared, now_ms, true)
    }

    /// Cleans this compacted partition if a cleaning is due (what the cleaner threads do).
    pub fn clean_if_due(&self, now_ms: i64) -> Result<Option<CleanReport>> {
        compaction::clean(&self.inner.cleaner, &self.shared, now_ms, false)
    }

    /// The cleaner's view of this partition at `now_ms` (dirty ratio, backlog, counters).
    pub fn cleaner_state(&self, now_ms: i64) -> CleanerState {
        let (_, _, plan) = compaction::plan_for(&self.shared, now_ms);
        let c = &self.shared.cleaner_counters;
        let (cleanings, bytes_read, bytes_written, records_removed, cpu_ns, _) = c.snapshot();
        CleanerState {
            compacted: self.shared.config().cleanup.compact,
            dirty_ratio: plan.dirty_ratio(),
            cleanable_bytes: plan.dirty_bytes,
            first_dirty: plan.first_dirty,
            due: plan.due.is_some(),
            last_clean_ms: self.shared.cleaner().last_clean_ms,
            cleanings,
            bytes_read,
            bytes_written,
            records_removed,
            cpu_ns,
            failed: c.failed(),
        }
    }
}

/// Every record of a batch produced to a compacted topic must have a key (Kafka's
/// `LogValidator`); this decodes (and decompresses) the batch, on the producer's thread.
fn require_keys(batch: &Bytes, header: &batch::BatchHeader) -> Result<()> {
    let records = Records::new(batch, header).map_err(StoreError::from_batch)?;
    for record in records {
        let record = record.map_err(StoreError::from_batch)?;
        if record.key.is_none() {
            let reason = batch::BatchError::KeyRequired {
                offset_delta: record.offset_delta,
            };
            return Err(StoreError::InvalidRecord { reason });
        }
    }
    Ok(())
}
