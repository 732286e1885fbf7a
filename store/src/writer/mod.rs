//! The one thread that writes.
//!
//! It owns every change to the store: appends, segment rolls, truncation, retention, partition
//! creation and deletion. Appends are group-committed: the writer drains every queued request,
//! builds ONE fjall write batch (log values, index entries, segment summaries, producer state,
//! all atomic), commits it once with the strongest durability any request in the group needs
//! (`Always` → `PersistMode::SyncData`; `Interval` and `Never` → `PersistMode::Buffer`, which
//! hands the bytes to the OS), then publishes the new offsets and answers every request.
//! A timer fsyncs (`SyncData`) within the interval of any `Interval` append, and checkpoints
//! high watermarks. Administrative requests are committed on their own, in queue order.

mod admin;
mod append;
mod log_ops;
pub(crate) mod request;
pub(crate) mod state;
mod swap;

pub(crate) use append::wall_clock_ms;
pub(crate) use log_ops::recompute_summary;

use crate::config::FsyncPolicy;
use crate::error::StoreError;
use crate::keys;
use crate::shared::{Engine, Registry};
use crate::stats::Counters;
use crate::types::{Appended, TopicPartition};
use fjall::{Keyspace, OwnedWriteBatch, PersistMode};
use request::{Reply, Request};
use state::PartitionState;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// At most this many requests per group commit.
const MAX_GROUP_REQUESTS: usize = 2_048;
/// Appended bytes after which `meta`, `index` and `producers` are flushed (fjall rotates its
/// journal at 64 MB; a journal can only be deleted once every keyspace in it is flushed).
const SMALL_FLUSH_BYTES: u64 = 64 * 1024 * 1024;
/// At most this many bytes of batches per group commit.
const MAX_GROUP_BYTES: usize = 64 * 1024 * 1024;

pub(crate) struct Writer {
    pub engine: Engine,
    pub parts: HashMap<TopicPartition, PartitionState>,
    pub registry: Arc<Registry>,
    pub stats: Arc<Counters>,
    pub default_fsync: FsyncPolicy,
    pub hw_interval: Duration,
    next_hw_check: Instant,
    sync_deadline: Option<Instant>,
    failed: Option<String>,
    /// Bytes committed since `meta`, `index` and `producers` were last flushed.
    unflushed_small: u64,
}

/// One group commit in the making.
pub(crate) struct Group {
    pub wb: OwnedWriteBatch,
    pub sync: bool,
    pub interval: Option<Duration>,
    pub replies: Vec<(Reply<Appended>, Appended)>,
    pub touched: BTreeSet<TopicPartition>,
    pub structural: HashSet<TopicPartition>,
    pub epochs: HashSet<TopicPartition>,
    pub producers: HashSet<(TopicPartition, i64)>,
    pub sealed: Vec<Keyspace>,
    pub requests: u64,
    pub bytes: u64,
}

impl Group {
    fn new(engine: &Engine) -> Self {
        Group {
            wb: engine.db.batch(),
            sync: false,
            interval: None,
            replies: Vec::new(),
            touched: BTreeSet::new(),
            structural: HashSet::new(),
            epochs: HashSet::new(),
            producers: HashSet::new(),
            sealed: Vec::new(),
            requests: 0,
            bytes: 0,
        }
    }

    /// Raises the group's durability to what `policy` needs.
    pub(crate) fn need(&mut self, policy: FsyncPolicy) {
        match policy {
            FsyncPolicy::Always => self.sync = true,
            FsyncPolicy::Interval(d) => {
                self.interval = Some(self.interval.map_or(d, |cur| cur.min(d)));
            }
            FsyncPolicy::Never => {}
        }
    }
}

impl Writer {
    pub(crate) fn new(
        engine: Engine,
        parts: HashMap<TopicPartition, PartitionState>,
        registry: Arc<Registry>,
        stats: Arc<Counters>,
        default_fsync: FsyncPolicy,
        hw_interval: Duration,
    ) -> Self {
        Writer {
            engine,
            parts,
            registry,
            stats,
            default_fsync,
            hw_interval,
            next_hw_check: Instant::now() + hw_interval,
            sync_deadline: None,
            failed: None,
            unflushed_small: 0,
        }
    }

    /// The thread body: serve requests until every sender is gone, then persist and exit.
    pub(crate) fn run(mut self, rx: Receiver<Request>) {
        tracing::debug!(partitions = self.parts.len(), "store writer started");
        loop {
            let deadline = self
                .sync_deadline
                .map_or(self.next_hw_check, |d| d.min(self.next_hw_check));
            let first = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(req) => req,
                Err(RecvTimeoutError::Timeout) => {
                    self.on_timer();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut bytes = first.size_hint();
            let mut reqs = vec![first];
            while reqs.len() < MAX_GROUP_REQUESTS && bytes < MAX_GROUP_BYTES {
                match rx.try_recv() {
                    Ok(req) => {
                        bytes += req.size_hint();
                        reqs.push(req);
                    }
                    Err(_) => break,
                }
            }
            self.process(reqs);
            self.on_timer();
        }
        self.shutdown();
    }

    fn process(&mut self, reqs: Vec<Request>) {
        let mut group = Group::new(&self.engine);
        for req in reqs {
            if req.is_append() {
                group.requests += 1;
                Counters::add(&self.stats.append_requests, 1);
                self.append(&mut group, req);
            } else {
                let done = std::mem::replace(&mut group, Group::new(&self.engine));
                self.commit_group(done);
                self.admin(req);
            }
        }
        self.commit_group(group);
    }

    fn commit_group(&mut self, mut g: Group) {
        if g.requests == 0 {
            return;
        }
        self.stats
            .largest_group
            .fetch_max(g.requests, std::sync::atomic::Ordering::Relaxed);
        for tp in &g.touched {
            if let Some(st) = self.parts.get(tp)
                && let Some(active) = st.segments.last()
            {
                st.put_summary(&self.engine, &mut g.wb, &active.summary);
            }
        }
        for (tp, pid) in &g.producers {
            if let Some(entry) = self.parts.get(tp).and_then(|st| st.producers.get(pid)) {
                let key = keys::entry_key(*tp, *pid);
                g.wb.insert(
                    &self.engine.producers,
                    key,
                    crate::codec::encode_producer(entry),
                );
            }
        }
        let written = !g.wb.is_empty();
        let mode = if g.sync {
            PersistMode::SyncData
        } else {
            PersistMode::Buffer
        };
        let result = std::mem::replace(&mut g.wb, self.engine.db.batch())
            .durability(Some(mode))
            .commit();
        if written {
            Counters::add(&self.stats.commits, 1);
            if g.sync {
                Counters::add(&self.stats.fsyncs, 1);
            }
        }
        match result {
            Ok(()) => self.after_commit(g),
            Err(e) => {
                let err = self.fail(e.into());
                for (reply, _) in g.replies {
                    reply.send(Err(StoreError::Failed {
                        reason: err.clone(),
                    }));
                }
            }
        }
    }

    fn after_commit(&mut self, mut g: Group) {
        for tp in &g.touched {
            if let Some(st) = self.parts.get(tp) {
                if g.structural.contains(tp) {
                    st.publish_segments();
                }
                if g.epochs.contains(tp) {
                    st.publish_epochs();
                }
                st.publish_offsets();
            }
        }
        if g.sync {
            self.sync_deadline = None;
        } else if let Some(d) = g.interval {
            let at = Instant::now() + d;
            self.sync_deadline = Some(self.sync_deadline.map_or(at, |cur| cur.min(at)));
        }
        for (reply, appended) in g.replies {
            reply.send(Ok(appended));
        }
        // A sealed segment takes no more writes: flush its memtable now rather than holding
        // it in memory (and its journal) until journal pressure forces it. The small
        // keyspaces written with every batch never fill a memtable: flush them after each
        // roll and every 64 MiB of appends (fjall's journal size), or every journal behind them would stay
        // (and be replayed at open) until journal-size pressure forces a flush.
        self.unflushed_small += g.bytes;
        if !g.sealed.is_empty() || self.unflushed_small >= SMALL_FLUSH_BYTES {
            self.unflushed_small = 0;
            g.sealed.extend(self.engine.small_keyspaces());
            self.check_journals();
        }
        rotate(&g.sealed);
        // fjall never rotates a memtable itself (shared::FJALL_MEMTABLE_LIMIT): the active
        // segments that reached `memtable_bytes` are rotated here.
        let active: Vec<Keyspace> = g
            .touched
            .iter()
            .filter_map(|tp| self.parts.get(tp)?.segments.last())
            .map(|s| s.keyspace.clone())
            .collect();
        Engine::rotate_full(&active, self.engine.memtable_bytes);
    }

    /// fjall does not evict journals itself either (its eviction queues rotations from its
    /// worker; `open_database` gives it no limit): when the journals reach `max_journal_bytes`,
    /// every memtable is rotated, so that after the flushes the old journals can be deleted.
    fn check_journals(&self) {
        let used = match self.engine.db.journal_disk_space() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the journals' size");
                return;
            }
        };
        if used < self.engine.max_journal_bytes {
            return;
        }
        tracing::debug!(
            bytes = used,
            "journals at their limit: rotating every memtable"
        );
        let mut all: Vec<Keyspace> = self.engine.small_keyspaces().to_vec();
        let segments = self.parts.values().filter_map(|st| st.segments.last());
        all.extend(segments.map(|s| s.keyspace.clone()));
        rotate(&all);
    }

    /// Flushes every memtable and waits (up to `timeout`) until fjall has written them and
    /// deleted the journals they made obsolete, so the next open replays almost nothing.
    fn flush_memtables(&self, timeout: Duration) {
        let mut all: Vec<Keyspace> = self.engine.small_keyspaces().to_vec();
        let segments = self.parts.values().flat_map(|st| st.segments.iter());
        all.extend(segments.map(|s| s.keyspace.clone()));
        rotate(&all);
        let deadline = Instant::now() + timeout;
        let db = &self.engine.db;
        while Instant::now() < deadline
            && !(db.journal_count() == 1 && all.iter().all(|k| k.sealed_memtable_count() == 0))
        {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Records the first write failure; every later write is refused with it.
    pub(crate) fn fail(&mut self, e: StoreError) -> String {
        let reason = e.to_string();
        tracing::error!(error = %reason, "store write failed; refusing writes until reopened");
        self.failed.get_or_insert(reason).clone()
    }

    pub(crate) fn check_failed(&self) -> Result<(), StoreError> {
        match &self.failed {
            Some(reason) => Err(StoreError::Failed {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        if self.sync_deadline.is_some_and(|d| d <= now) {
            self.sync_deadline = None;
            match self.engine.db.persist(PersistMode::SyncData) {
                Ok(()) => Counters::add(&self.stats.fsyncs, 1),
                Err(e) => {
                    self.fail(e.into());
                }
            }
        }
        // The cleaner writes the key index (and swaps write the small keyspaces) besides appends.
        self.engine.rotate_full_small();
        if self.next_hw_check <= now {
            self.next_hw_check = now + self.hw_interval;
            self.check_journals();
            if let Err(e) = self.checkpoint_high_watermarks() {
                tracing::warn!(error = %e, "high watermark checkpoint failed");
            }
        }
    }

    fn shutdown(&mut self) {
        if let Err(e) = self.checkpoint_high_watermarks() {
            tracing::warn!(error = %e, "final high watermark checkpoint failed");
        }
        if self.failed.is_none() {
            self.flush_memtables(Duration::from_secs(10));
        }
        match self.engine.db.persist(PersistMode::SyncAll) {
            Ok(()) => Counters::add(&self.stats.fsyncs, 1),
            Err(e) => tracing::warn!(error = %e, "final fsync failed"),
        }
        tracing::debug!("store writer stopped");
    }
}

fn rotate(keyspaces: &[Keyspace]) {
    keyspaces.iter().for_each(crate::shared::rotate);
}
