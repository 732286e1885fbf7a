//! State shared between the writer thread and readers on any thread.
//!
//! The writer owns everything it changes; after each commit it publishes to
//! [`PartitionShared`]: offsets on a `watch` channel, and small snapshots (`Arc`s) behind std
//! locks held only to clone or swap a pointer, never across I/O.

use crate::codec::{CleanerCheckpoint, SegmentSummary};
use crate::compaction::CleanerCounters;
use crate::config::LogConfig;
use crate::leader_epoch::LeaderEpochCache;
use crate::txn::TxnState;
use crate::types::{LogOffsets, TopicPartition};
use fjall::config::{BlockSizePolicy, CompressionPolicy, FilterPolicy};
use fjall::{AbstractTree, Database, Keyspace, KeyspaceCreateOptions};

/// Data block size of segment keyspaces.
const SEGMENT_BLOCK_BYTES: u32 = 64 * 1024;
/// Memtable size at which the small keyspaces are rotated (fjall's default memtable size).
pub(crate) const SMALL_MEMTABLE_BYTES: u64 = 64 * 1024 * 1024;
/// What every keyspace tells fjall its memtable may hold: more than it ever will, so fjall never
/// queues a rotation itself. fjall 3.1 queues rotations, flushes and compactions on one bounded
/// queue (1,000 messages) that only its workers drain; a worker that rotates a memtable sends the
/// flush with a blocking send into that queue, so once writers had filled it with rotation
/// requests (one per write to an oversized memtable) the worker blocked on a queue only it
/// drains, and every writer behind it. The store's own threads rotate instead
/// ([`Engine::rotate_full`]): they may wait for the worker, the worker never waits for anyone.
const FJALL_MEMTABLE_LIMIT: u64 = u64::MAX;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use tokio::sync::watch;

/// The fjall handles every component uses.
#[derive(Clone)]
pub(crate) struct Engine {
    pub db: Database,
    pub meta: Keyspace,
    pub index: Keyspace,
    pub producers: Keyspace,
    /// The log cleaner's key index.
    pub keys: Keyspace,
    pub memtable_bytes: u64,
    /// Journal bytes at which the writer rotates every memtable (fjall's own limit is off).
    pub max_journal_bytes: u64,
    /// Next generation for a cleaned segment's keyspace name (above every name on disk).
    pub next_generation: Arc<AtomicU32>,
}

impl Engine {
    /// `meta`, `index`, `producers` and `keys`: written in small entries, flushed periodically
    /// so that journals behind them can go.
    pub(crate) fn small_keyspaces(&self) -> [Keyspace; 4] {
        [
            self.meta.clone(),
            self.index.clone(),
            self.producers.clone(),
            self.keys.clone(),
        ]
    }

    /// Options of a small keyspace (`meta`, `index`, `producers`, `keys`).
    pub(crate) fn small_options() -> KeyspaceCreateOptions {
        KeyspaceCreateOptions::default().max_memtable_size(FJALL_MEMTABLE_LIMIT)
    }

    /// Rotates the memtable of each keyspace that holds at least `limit` bytes (fjall then
    /// flushes it to a table). Called by the store's threads after they write, never by fjall's.
    /// While a keyspace still has a sealed memtable waiting for the worker, its active one may
    /// grow to four times `limit` first (as it did when fjall's worker rotated it when it got
    /// to the request): rotating at once would stack sealed memtables, and fjall halts writes
    /// for 100 ms at a time once a keyspace has four.
    pub(crate) fn rotate_full(keyspaces: &[Keyspace], limit: u64) {
        for ks in keyspaces {
            let size = ks.tree.active_memtable().size();
            if size >= limit && (ks.sealed_memtable_count() == 0 || size >= limit.saturating_mul(4))
            {
                rotate(ks);
            }
        }
    }

    /// Rotates the small keyspaces whose memtables hold [`SMALL_MEMTABLE_BYTES`].
    pub(crate) fn rotate_full_small(&self) {
        Engine::rotate_full(&self.small_keyspaces(), SMALL_MEMTABLE_BYTES);
    }

    /// Records a segment generation found on disk.
    pub(crate) fn see_generation(&self, generation: u32) {
        self.next_generation
            .fetch_max(generation.saturating_add(1), Ordering::AcqRel);
    }

    /// A generation no keyspace name has used.
    pub(crate) fn new_generation(&self) -> u32 {
        self.next_generation.fetch_add(1, Ordering::AcqRel).max(1)
    }

    /// A segment keyspace. Values are whole record batches, stored verbatim: producers compress
    /// them already (or chose not to), so block compression would spend the flush thread's CPU for
    /// nothing; reads are range seeks, never point lookups, so no bloom filters; blocks are large
    /// because batches are.
    /// Its memtable is rotated at `memtable_bytes` by the writer (fjall is told no limit, see
    /// [`FJALL_MEMTABLE_LIMIT`]).
    pub(crate) fn open_keyspace(&self, name: &str) -> fjall::Result<Keyspace> {
        self.db.keyspace(name, || {
            KeyspaceCreateOptions::default()
                .max_memtable_size(FJALL_MEMTABLE_LIMIT)
                .data_block_compression_policy(CompressionPolicy::disabled())
                .filter_policy(FilterPolicy::disabled())
                .data_block_size_policy(BlockSizePolicy::all(SEGMENT_BLOCK_BYTES))
        })
    }
}

/// Rotates one memtable (an empty one is left alone); fjall flushes it on its worker.
pub(crate) fn rotate(ks: &Keyspace) {
    if let Err(e) = ks.rotate_memtable() {
        tracing::warn!(keyspace = %ks.name(), error = %e, "could not rotate a memtable");
    }
}

/// A segment as readers see it.
#[derive(Clone)]
pub(crate) struct SegmentView {
    pub base_offset: i64,
    pub keyspace: Keyspace,
    /// The final summary of a sealed segment; `None` for the active (last) one, whose
    /// summary lives in [`PartitionShared::active`].
    pub sealed: Option<SegmentSummary>,
}

/// One partition's published state.
pub(crate) struct PartitionShared {
    pub tp: TopicPartition,
    pub offsets: watch::Sender<LogOffsets>,
    pub segments: RwLock<Arc<Vec<SegmentView>>>,
    pub active: Mutex<Option<SegmentSummary>>,
    pub config: RwLock<LogConfig>,
    pub epochs: RwLock<Arc<LeaderEpochCache>>,
    pub size_bytes: AtomicU64,
    pub deleted: AtomicBool,
    /// Set by `set_high_watermark`, cleared by the writer's checkpoint.
    pub hw_dirty: AtomicBool,
    /// The log cleaner's checkpoint as last committed.
    pub cleaner: Mutex<CleanerCheckpoint>,
    /// What the log cleaner did to this partition since the store opened.
    pub cleaner_counters: CleanerCounters,
    /// The transactions as of the last commit.
    pub txns: RwLock<Arc<TxnState>>,
}

impl PartitionShared {
    pub(crate) fn new(tp: TopicPartition, offsets: LogOffsets, config: LogConfig) -> Self {
        PartitionShared {
            tp,
            offsets: watch::Sender::new(offsets),
            segments: RwLock::new(Arc::new(Vec::new())),
            active: Mutex::new(None),
            config: RwLock::new(config),
            epochs: RwLock::new(Arc::new(LeaderEpochCache::default())),
            size_bytes: AtomicU64::new(0),
            deleted: AtomicBool::new(false),
            hw_dirty: AtomicBool::new(false),
            cleaner: Mutex::new(CleanerCheckpoint::default()),
            cleaner_counters: CleanerCounters::default(),
            txns: RwLock::new(Arc::new(TxnState::default())),
        }
    }

    pub(crate) fn cleaner(&self) -> CleanerCheckpoint {
        *self.cleaner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_cleaner(&self, c: CleanerCheckpoint) {
        *self.cleaner.lock().unwrap_or_else(PoisonError::into_inner) = c;
    }

    pub(crate) fn offsets(&self) -> LogOffsets {
        *self.offsets.borrow()
    }

    pub(crate) fn segments(&self) -> Arc<Vec<SegmentView>> {
        self.segments
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_segments(&self, views: Vec<SegmentView>) {
        *self
            .segments
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(views);
    }

    pub(crate) fn active(&self) -> Option<SegmentSummary> {
        *self.active.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_active(&self, s: Option<SegmentSummary>) {
        *self.active.lock().unwrap_or_else(PoisonError::into_inner) = s;
    }

    pub(crate) fn config(&self) -> LogConfig {
        self.config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_config(&self, c: LogConfig) {
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = c;
    }

    pub(crate) fn epochs(&self) -> Arc<LeaderEpochCache> {
        self.epochs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_epochs(&self, c: LeaderEpochCache) {
        *self.epochs.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(c);
    }

    /// The last stable offset: the high watermark, lowered to the first offset of the oldest
    /// transaction not decided on every in-sync replica (`txn.rs`). Everything that must stay
    /// below it (the cleaner, read_committed fetches) takes it from here.
    pub(crate) fn last_stable_offset(&self) -> i64 {
        self.txns()
            .last_stable_offset(self.offsets().high_watermark)
    }

    pub(crate) fn txns(&self) -> Arc<TxnState> {
        self.txns
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_txns(&self, t: TxnState) {
        *self.txns.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(t);
    }

    /// Nothing at or above min(last stable offset, high watermark) is cleaned.
    pub(crate) fn cleanable_bound(&self) -> i64 {
        self.last_stable_offset().min(self.offsets().high_watermark)
    }

    pub(crate) fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Summary of a segment: the sealed one, or the active one's latest.
    pub(crate) fn summary_of(&self, view: &SegmentView) -> Option<SegmentSummary> {
        view.sealed.or_else(|| self.active())
    }
}

/// Every live partition, for the store handle, the writer and the compaction filters.
#[derive(Default)]
pub(crate) struct Registry {
    map: RwLock<HashMap<TopicPartition, Arc<PartitionShared>>>,
    /// False until recovery registered every partition: filters keep everything before.
    ready: AtomicBool,
}

impl Registry {
    pub(crate) fn get(&self, tp: &TopicPartition) -> Option<Arc<PartitionShared>> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tp)
            .cloned()
    }

    pub(crate) fn all(&self) -> Vec<Arc<PartitionShared>> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<_> = map.values().cloned().collect();
        v.sort_by_key(|p| p.tp);
        v
    }

    pub(crate) fn insert(&self, p: Arc<PartitionShared>) {
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(p.tp, p);
    }

    pub(crate) fn remove(&self, tp: &TopicPartition) {
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(tp);
    }

    pub(crate) fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Log start and key index generation of a live partition.
    pub(crate) fn key_index_state(&self, tp: &TopicPartition) -> Option<(i64, u32)> {
        self.get(tp)
            .map(|p| (p.offsets().log_start, p.cleaner().generation))
    }
}
