//! [`Store`]: opening the database, recovering partitions, starting the writer thread.

use crate::LogConfig;
use crate::compaction::{self, CleanerShared};
use crate::config::StoreConfig;
use crate::error::{Result, StoreError};
use crate::filter;
use crate::keys;
use crate::partition::PartitionLog;
use crate::recovery;
use crate::shared::{Engine, Registry};
use crate::stats::Counters;
use crate::types::{RetentionReport, StoreStats, TopicPartition};
use crate::writer::Writer;
use crate::writer::request::{self, Reply, Request};
use fjall::{CompressionType, Database};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What every handle shares. Dropping the last one closes the writer's queue, waits for it to
/// drain and persist, then closes the database.
pub(crate) struct StoreInner {
    pub engine: Engine,
    pub registry: Arc<Registry>,
    pub stats: Arc<Counters>,
    pub config: StoreConfig,
    pub cleaner: Arc<CleanerShared>,
    cleaner_threads: Vec<JoinHandle<()>>,
    tx: Option<SyncSender<Request>>,
    writer: Option<JoinHandle<()>>,
}

impl StoreInner {
    /// Queues a request; blocks while the queue is full (backpressure).
    pub(crate) fn send(&self, req: Request) -> Result<()> {
        let tx = self.tx.as_ref().ok_or(StoreError::Closed)?;
        match tx.try_send(req) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(req)) => tx.send(req).map_err(|_| StoreError::Closed),
            Err(TrySendError::Disconnected(_)) => Err(StoreError::Closed),
        }
    }

    /// A blocking round trip to the writer.
    pub(crate) fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T> {
        let (reply, rx) = request::blocking();
        self.send(make(reply))?;
        request::wait(rx)
    }
}

impl Drop for StoreInner {
    fn drop(&mut self) {
        // Cleaner threads first: they talk to the writer.
        self.cleaner.close();
        for handle in self.cleaner_threads.drain(..) {
            if handle.join().is_err() {
                tracing::error!("log cleaner thread panicked");
            }
        }
        self.cleaner.release_writer();
        self.tx.take();
        if let Some(handle) = self.writer.take()
            && handle.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
    }
}

/// The partition data store: ONE fjall Database holding every partition's log, indexes and
/// state. Clone is cheap (`Arc` inside).
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("data_dir", &self.inner.config.data_dir)
            .finish()
    }
}

/// The journals' limit without `max_journal_bytes` (fjall's default).
const DEFAULT_MAX_JOURNAL_BYTES: u64 = 512 * 1024 * 1024;

fn open_database(config: &StoreConfig, registry: &Arc<Registry>) -> Result<Database> {
    std::fs::create_dir_all(&config.data_dir)?;
    let mut builder = Database::builder(&config.data_dir)
        .cache_size(config.cache_bytes)
        // fjall's worker 0 hands compactions to the other workers by re-queueing them, which
        // spins while they are busy: one worker does flushes and compactions without that.
        // That worker must never wait on fjall's bounded queue: it only does so when it rotates
        // a memtable, and fjall only asks it to when a memtable outgrows its keyspace's limit or
        // the journals outgrow theirs. Both limits are off; the store's threads rotate instead
        // (shared::FJALL_MEMTABLE_LIMIT, the writer's check_journals).
        .worker_threads(1)
        .max_journaling_size(u64::MAX)
        // Batches are often compressed by producers already; keep the writer's CPU for CRCs.
        .journal_compression(CompressionType::None)
        .with_compaction_filter_factories(filter::assigner(registry));
    if let Some(bytes) = config.max_write_buffer_bytes {
        #[allow(deprecated)]
        {
            builder = builder.max_write_buffer_size(Some(bytes));
        }
    }
    Ok(builder.open()?)
}

impl Store {
    /// Opens (or creates) the store in `config.data_dir` and recovers every partition.
    pub fn open(config: StoreConfig) -> Result<Store> {
        config.validate()?;
        let started = Instant::now();
        let registry = Arc::new(Registry::default());
        let db = open_database(&config, &registry)?;
        let engine = Engine {
            meta: db.keyspace(keys::KS_META, Engine::small_options)?,
            index: db.keyspace(keys::KS_INDEX, Engine::small_options)?,
            producers: db.keyspace(keys::KS_PRODUCERS, Engine::small_options)?,
            keys: db.keyspace(keys::KS_KEYS, Engine::small_options)?,
            db,
            memtable_bytes: config.memtable_bytes,
            max_journal_bytes: config
                .max_journal_bytes
                .unwrap_or(DEFAULT_MAX_JOURNAL_BYTES),
            next_generation: Arc::new(AtomicU32::new(1)),
        };
        let recovered = recovery::recover(&engine)?;
        for st in recovered.parts.values() {
            registry.insert(st.shared.clone());
        }
        registry.set_ready();
        let stats = Arc::new(Counters::default());
        Counters::add(&stats.orphan_segments, recovered.orphans);
        let partitions = recovered.parts.len();
        let writer = Writer::new(
            engine.clone(),
            recovered.parts,
            registry.clone(),
            stats.clone(),
            config.fsync,
            Duration::from_millis(config.hw_checkpoint_interval_ms),
        );
        let (tx, rx) = std::sync::mpsc::sync_channel(config.writer_queue);
        let handle = std::thread::Builder::new()
            .name("rafka-store-writer".into())
            .spawn(move || writer.run(rx))?;
        let cleaner = Arc::new(CleanerShared::new(
            engine.clone(),
            registry.clone(),
            tx.clone(),
            config.cleaner_buffer_keys,
            Duration::from_millis(config.cleaner_backoff_ms),
        ));
        let mut inner = StoreInner {
            engine,
            registry,
            stats,
            cleaner_threads: Vec::new(),
            cleaner: cleaner.clone(),
            config,
            tx: Some(tx),
            writer: Some(handle),
        };
        inner.cleaner_threads = compaction::spawn_threads(&cleaner, inner.config.cleaner_threads)?;
        let store = Store {
            inner: Arc::new(inner),
        };
        for (tp, offset) in recovered.truncations {
            store
                .inner
                .call(|reply| Request::Truncate { tp, offset, reply })?;
        }
        let elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::info!(partitions, elapsed_ms, dir = %store.inner.config.data_dir.display(), "store opened");
        Ok(store)
    }

    fn handle(&self, shared: Arc<crate::shared::PartitionShared>) -> PartitionLog {
        PartitionLog {
            inner: self.inner.clone(),
            shared,
        }
    }

    /// Creates a partition with an empty log starting at offset 0. Idempotent: an existing
    /// partition is returned as it is (its config unchanged).
    pub fn create_partition(&self, tp: TopicPartition, config: LogConfig) -> Result<PartitionLog> {
        if let Some(p) = self.partition(tp) {
            return Ok(p);
        }
        let shared = self
            .inner
            .call(|reply| Request::Create { tp, config, reply })?;
        Ok(self.handle(shared))
    }

    /// A handle to an existing partition.
    pub fn partition(&self, tp: TopicPartition) -> Option<PartitionLog> {
        self.inner.registry.get(&tp).map(|s| self.handle(s))
    }

    /// Every partition, sorted.
    pub fn partitions(&self) -> Vec<PartitionLog> {
        self.inner
            .registry
            .all()
            .into_iter()
            .map(|s| self.handle(s))
            .collect()
    }

    /// Deletes a partition: its keys in one atomic batch, then its segment keyspaces (disk is
    /// reclaimed once fjall drops its last handle to them). Unknown partitions are a no-op.
    pub fn delete_partition(&self, tp: TopicPartition) -> Result<()> {
        self.inner.call(|reply| Request::Delete { tp, reply })
    }

    /// Replaces a partition's log config (takes effect for the next append / retention pass).
    pub fn set_log_config(&self, tp: TopicPartition, config: LogConfig) -> Result<()> {
        self.inner
            .call(|reply| Request::SetConfig { tp, config, reply })
    }

    /// One retention pass over every partition (the broker calls it periodically).
    pub fn enforce_retention(&self, now_ms: i64) -> Result<RetentionReport> {
        self.inner
            .call(|reply| Request::Retention { now_ms, reply })
    }

    /// Bytes fjall reports on disk (tables and journals).
    pub fn disk_space(&self) -> u64 {
        self.inner.engine.db.disk_space().unwrap_or(0)
    }

    /// Checkpoints high watermarks and fsyncs everything (shutdown, tests).
    pub fn flush(&self) -> Result<()> {
        self.inner.call(|reply| Request::Flush { reply })
    }

    /// Counters since open (commits, fsyncs, group sizes, rolls...).
    pub fn stats(&self) -> StoreStats {
        self.inner.stats.snapshot()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.config.data_dir
    }
}
