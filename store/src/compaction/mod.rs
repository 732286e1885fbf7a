//! Log compaction: Kafka's log cleaner, through the LSM.
//!
//! | module | what it does |
//! |---|---|
//! | `plan.rs` | which segments a cleaning covers and whether it is due (dirty ratio, compaction lags, tombstone and history horizons); pure |
//! | `strategy.rs` | keep-latest, time-window and hybrid as verdicts over (key, timestamp, offset); pure |
//! | `key_index.rs` | the key index in fjall (128-bit keyed hashes), merged from the dirty part of the log |
//! | `txn.rs` | aborted transactions' data and markers whose transaction is gone, as the cleaner walks the log; pure |
//! | `rewrite.rs` | each batch judged and, where some records go, rewritten in Kafka's format |
//! | `clean.rs` | one cleaning of one partition: merge, judge, write new segments, swap them in |
//! | `threads.rs` | the cleaner threads: the dirtiest due partition first, a backoff when idle |
//!
//! The cleaner reads the log and writes only what nothing reads yet (its key index, new
//! segment keyspaces); the writer thread makes a cleaned segment visible in one atomic swap
//! (`writer/swap.rs`). `docs/storage.md` says how cleaner and compaction filters divide the
//! work and why a crash at any moment loses nothing.

mod clean;
mod key_index;
mod plan;
mod rewrite;
mod strategy;
mod threads;
mod txn;

pub(crate) use clean::{clean, plan_for};
pub(crate) use key_index::new_secret;
pub(crate) use threads::spawn_threads;

use crate::error::{Result, StoreError};
use crate::shared::{Engine, Registry};
use crate::types::TopicPartition;
use crate::writer::request::{self, Reply, Request};
use key_index::KeyHasher;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// What the cleaner threads (and explicit cleanings) share.
pub(crate) struct CleanerShared {
    pub engine: Engine,
    pub registry: Arc<Registry>,
    /// The writer's queue; taken away when the store closes.
    tx: Mutex<Option<SyncSender<Request>>>,
    pub buffer_keys: usize,
    pub backoff: Duration,
    stop: AtomicBool,
    wake: Condvar,
    /// Partitions being cleaned right now (one cleaning per partition at a time).
    busy: Mutex<HashSet<TopicPartition>>,
    hasher: OnceLock<KeyHasher>,
}

impl CleanerShared {
    pub(crate) fn new(
        engine: Engine,
        registry: Arc<Registry>,
        tx: SyncSender<Request>,
        buffer_keys: usize,
        backoff: Duration,
    ) -> Self {
        CleanerShared {
            engine,
            registry,
            tx: Mutex::new(Some(tx)),
            buffer_keys,
            backoff,
            stop: AtomicBool::new(false),
            wake: Condvar::new(),
            busy: Mutex::new(HashSet::new()),
            hasher: OnceLock::new(),
        }
    }

    /// A blocking round trip to the writer.
    pub(crate) fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T> {
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(StoreError::Closed)?;
        let (reply, rx) = request::blocking();
        tx.send(make(reply)).map_err(|_| StoreError::Closed)?;
        request::wait(rx)
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Stops the threads (they finish or abandon their cleaning) and lets go of the writer.
    pub(crate) fn close(&self) {
        self.stop.store(true, Ordering::Release);
        let _busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        self.wake.notify_all();
    }

    pub(crate) fn release_writer(&self) {
        self.tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    fn hasher(&self) -> Result<KeyHasher> {
        if let Some(h) = self.hasher.get() {
            return Ok(*h);
        }
        let secret = self.call(|reply| Request::HashKey { reply })?;
        Ok(*self.hasher.get_or_init(|| KeyHasher::new(secret)))
    }

    fn is_busy(&self, tp: &TopicPartition) -> bool {
        self.busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(tp)
    }

    /// Marks a partition as being cleaned; `None` if it already is.
    fn claim(&self, tp: TopicPartition) -> Option<Claim<'_>> {
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        busy.insert(tp).then_some(Claim { shared: self, tp })
    }

    /// Sleeps up to the backoff, or until the store closes.
    fn idle(&self) {
        let busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.stopping() {
            let _ = self.wake.wait_timeout(busy, self.backoff);
        }
    }
}

/// A claimed partition; released on drop.
struct Claim<'a> {
    shared: &'a CleanerShared,
    tp: TopicPartition,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut busy = self
            .shared
            .busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        busy.remove(&self.tp);
    }
}

/// What the cleaner did to one partition since the store opened (for metrics).
#[derive(Debug)]
pub(crate) struct CleanerCounters {
    cleanings: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    records_removed: AtomicU64,
    cpu_ns: AtomicU64,
    last_clean_ms: AtomicI64,
    failed: AtomicBool,
}

impl Default for CleanerCounters {
    fn default() -> Self {
        CleanerCounters {
            cleanings: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            records_removed: AtomicU64::new(0),
            cpu_ns: AtomicU64::new(0),
            last_clean_ms: AtomicI64::new(-1),
            failed: AtomicBool::new(false),
        }
    }
}

impl CleanerCounters {
    fn record(&self, r: &crate::types::CleanReport, now_ms: i64) {
        let add = |c: &AtomicU64, n| c.fetch_add(n, Ordering::Relaxed);
        add(&self.cleanings, 1);
        add(&self.bytes_read, r.bytes_read);
        add(&self.bytes_written, r.bytes_written);
        add(&self.records_removed, r.records_removed);
        add(&self.cpu_ns, r.cpu_ns);
        self.last_clean_ms.store(now_ms, Ordering::Relaxed);
    }

    /// The cleaner gave up on the partition (a corrupt batch): it is skipped until restart.
    fn mark_failed(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    pub(crate) fn snapshot(&self) -> (u64, u64, u64, u64, u64, i64) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (
            get(&self.cleanings),
            get(&self.bytes_read),
            get(&self.bytes_written),
            get(&self.records_removed),
            get(&self.cpu_ns),
            self.last_clean_ms.load(Ordering::Relaxed),
        )
    }
}

/// CPU time of the calling thread, in nanoseconds (0 where unknown).
fn thread_cpu_ns() -> u64 {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        if rc == 0 {
            let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
            let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
            return secs.saturating_mul(1_000_000_000).saturating_add(nanos);
        }
        0
    }
    #[cfg(not(unix))]
    {
        0
    }
}
