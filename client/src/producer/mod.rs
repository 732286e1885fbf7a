//! The producer: `send` appends to the accumulator; one sender task turns batches into Produce
//! requests, routes them to partition leaders and resolves each record's delivery future.
//!
//! - [`partitioner`]: Kafka's murmur2 partitioner and KIP-480 sticky partitions.
//! - [`accumulator`]: per-partition batches (size, linger, retries in order). Pure.
//! - [`sequence`]: idempotence (producer id, epoch, sequences, error verdicts). Pure.
//! - `sender` (private): the task that owns the I/O; `request` builds its Produce requests.
//! - `txn` (private): transactions (`init_transactions`, `begin_transaction`,
//!   `send_offsets_to_transaction`, `commit_transaction`, `abort_transaction`) with a
//!   `transactional_id` in [`ProducerConfig`].

pub mod accumulator;
mod clock;
mod delivery;
pub mod partitioner;
mod request;
mod sender;
pub mod sequence;
mod txn;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use self::accumulator::FastMap;
use self::clock::WallClock;

use bytes::Bytes;
use tokio::sync::{Notify, Semaphore, TryAcquireError};
use tokio::task::JoinHandle;

use self::accumulator::{Accumulator, Appended, BatchCompletion, TopicPartition};
pub use self::delivery::{BatchAck, DeliveryFuture, RecordMetadata};
use self::partitioner::{StickyPartitions, partition_for_key};
use crate::cluster::{Client, lock};
use crate::config::ProducerConfig;
use crate::error::{Error, Result};
use crate::records::RecordParts;

/// A record to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Topic.
    pub topic: Arc<str>,
    /// Explicit partition (overrides the partitioner).
    pub partition: Option<i32>,
    /// Key (also drives the partition when no partition is given).
    pub key: Option<Bytes>,
    /// Value (`None` = tombstone).
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Create time in ms (default: now).
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record with a value and nothing else.
    pub fn new(topic: impl Into<Arc<str>>, value: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            partition: None,
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets an explicit partition.
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((key.into(), Some(value.into())));
        self
    }
}

/// State shared by the producer handle and its sender task.
struct Shared {
    buffers: std::sync::Mutex<Buffers>,
    wake: Notify,
    memory: Semaphore,
    closing: AtomicBool,
    /// Set with `fatal`, so `send` checks an atomic instead of taking a lock.
    failed: AtomicBool,
    fatal: std::sync::Mutex<Option<Error>>,
    /// Outcomes of batches not yet completed, by batch id (for `flush`).
    incomplete: std::sync::Mutex<HashMap<u64, Arc<BatchCompletion>>>,
    /// A transactional producer's transaction state.
    txn: Option<Arc<txn::Txn>>,
}

/// What `send` needs under one lock: the batches, the partition counts and sticky choices.
struct Buffers {
    acc: Accumulator,
    sticky: StickyPartitions,
    routes: FastMap<Arc<str>, TopicRoute>,
    clock: WallClock,
}

/// When a cached [`TopicRoute`] may be used: derived from the current metadata snapshot and
/// younger than `metadata_max_age`.
#[derive(Debug, Clone, Copy)]
struct RouteValidity {
    generation: u64,
    max_age: std::time::Duration,
}

/// A topic's partitions as of its last metadata lookup, and its sticky partition.
struct TopicRoute {
    partitions: i32,
    available: Vec<i32>,
    looked_up: Instant,
    /// The client's metadata generation it was derived from.
    generation: u64,
    sticky: Option<i32>,
}

/// A Kafka producer. Cheap to share behind an `Arc`; `send` takes `&self`.
///
/// With [`ProducerConfig::transactional_id`] it is transactional: call
/// [`Producer::init_transactions`] once, then for each transaction
/// [`Producer::begin_transaction`], `send` (and [`Producer::send_offsets_to_transaction`]),
/// and [`Producer::commit_transaction`] or [`Producer::abort_transaction`]. Records are sent
/// as they are produced; read_committed consumers see them only once committed. The
/// transaction calls must not overlap each other or a `send`.
pub struct Producer {
    client: Client,
    config: ProducerConfig,
    shared: Arc<Shared>,
    sender: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// Starts a producer (and its sender task) on `client`.
    pub fn new(client: Client, config: ProducerConfig) -> Result<Producer> {
        config.validate()?;
        let seed = config.partitioner_seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
        let shared = Arc::new(Shared {
            buffers: std::sync::Mutex::new(Buffers {
                acc: Accumulator::new(config.batch_size, config.linger),
                sticky: StickyPartitions::new(seed),
                routes: FastMap::default(),
                clock: WallClock::new(Instant::now()),
            }),
            wake: Notify::new(),
            memory: Semaphore::new(config.buffer_memory),
            closing: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            fatal: std::sync::Mutex::new(None),
            incomplete: std::sync::Mutex::new(HashMap::new()),
            txn: config
                .transactional_id
                .as_deref()
                .map(|id| Arc::new(txn::Txn::new(id, config.transaction_timeout))),
        });
        let task = sender::Sender::new(client.clone(), config.clone(), shared.clone());
        let handle = tokio::spawn(task.run());
        Ok(Producer {
            client,
            config,
            shared,
            sender: std::sync::Mutex::new(Some(handle)),
        })
    }

    /// Queues `record`; the returned future resolves to its partition and offset.
    ///
    /// Waits only for topic metadata (up to `max_block`) and for buffer memory when the
    /// producer is saturated. The record is encoded into its batch before this returns.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        // A loop of sends that never waits would otherwise keep the sender task (woken on
        // this worker) from running.
        tokio::task::consume_budget().await;
        let sent_at = Instant::now();
        if self.shared.closing.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if self.shared.failed.load(Ordering::Acquire)
            && let Some(e) = lock(&self.shared.fatal).clone()
        {
            return Err(e);
        }
        if let Some(txn) = &self.shared.txn {
            txn.check_send()?;
        }
        let ProducerRecord {
            topic,
            partition,
            key,
            value,
            headers,
            timestamp,
        } = record;
        let parts = RecordParts {
            key: key.as_deref(),
            value: value.as_deref(),
            headers: &headers,
        };
        let size = parts.estimated_size();
        let max = self.config.max_request_size;
        if size > max {
            return Err(Error::RecordTooLarge { size, max });
        }
        let waited = self.reserve(size).await?;
        let mut tp = TopicPartition {
            topic,
            partition: 0,
        };
        let mut now = if waited { Instant::now() } else { sent_at };
        let (appended, timestamp) = loop {
            let valid = RouteValidity {
                generation: self.client.metadata_generation(),
                max_age: self.client.config().metadata_max_age,
            };
            let attempt = lock(&self.shared.buffers)
                .append(&mut tp, partition, timestamp, &parts, size, now, valid);
            match attempt {
                Ok(Some(done)) => break done,
                Ok(None) => {}
                Err(e) => {
                    self.shared.memory.add_permits(size);
                    return Err(e);
                }
            }
            match self.look_up(&tp.topic).await {
                Ok(mut route) => {
                    let mut buffers = lock(&self.shared.buffers);
                    let n = route.partitions;
                    let old = buffers.routes.get(&tp.topic).and_then(|r| r.sticky);
                    route.sticky = old.filter(|&p| p < n);
                    buffers.routes.insert(tp.topic.clone(), route);
                }
                Err(e) => {
                    self.shared.memory.add_permits(size);
                    return Err(e);
                }
            }
            now = Instant::now();
        };
        if appended.new_batch {
            lock(&self.shared.incomplete).insert(appended.batch_id, appended.completion.clone());
        }
        let new_partition = self
            .shared
            .txn
            .as_ref()
            .is_some_and(|txn| txn.note_partition(&tp));
        if appended.new_batch || appended.batch_full || new_partition {
            self.shared.wake.notify_one();
        }
        Ok(DeliveryFuture {
            batch: appended.completion,
            tp,
            index: appended.index,
            timestamp,
            sent_at,
        })
    }

    /// Takes `size` bytes of buffer memory, waiting while the producer is saturated; says
    /// whether it had to wait.
    async fn reserve(&self, size: usize) -> Result<bool> {
        let permits = u32::try_from(size).unwrap_or(u32::MAX);
        match self.shared.memory.try_acquire_many(permits) {
            Ok(p) => p.forget(),
            Err(TryAcquireError::Closed) => return Err(Error::Closed),
            Err(TryAcquireError::NoPermits) => {
                let p = self.shared.memory.acquire_many(permits).await;
                p.map_err(|_| Error::Closed)?.forget();
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The partitions of `topic` from fresh metadata (waiting up to `max_block` for it).
    async fn look_up(&self, topic: &str) -> Result<TopicRoute> {
        let generation = self.client.metadata_generation();
        let meta = self.client.metadata();
        let fresh = meta
            .refreshed
            .get(topic)
            .is_some_and(|t| t.elapsed() < self.client.config().metadata_max_age);
        let info = match meta.topic(topic) {
            Ok(info) if fresh => info.clone(),
            _ => {
                self.client
                    .wait_for_topic(topic, self.config.max_block)
                    .await?
            }
        };
        Ok(TopicRoute {
            partitions: i32::try_from(info.partitions.len()).unwrap_or(i32::MAX),
            available: info
                .partitions
                .iter()
                .filter(|p| p.leader.is_some())
                .map(|p| p.partition)
                .collect(),
            looked_up: Instant::now(),
            generation,
            sticky: None,
        })
    }

    /// Sends everything queued now and waits until those records are acknowledged or failed.
    pub async fn flush(&self) {
        let pending: Vec<_> = lock(&self.shared.incomplete).values().cloned().collect();
        lock(&self.shared.buffers).acc.flushing += 1;
        self.shared.wake.notify_one();
        for batch in pending {
            batch.wait().await;
        }
        let mut buffers = lock(&self.shared.buffers);
        buffers.acc.flushing = buffers.acc.flushing.saturating_sub(1);
    }

    /// Flushes, then stops the sender task. Later sends fail with [`Error::Closed`].
    pub async fn close(&self) {
        self.flush().await;
        self.shared.closing.store(true, Ordering::Release);
        lock(&self.shared.buffers).acc.flushing += 1;
        self.shared.wake.notify_one();
        let handle = lock(&self.sender).take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }

    /// The fatal error that stopped this producer, if any (e.g. it was fenced).
    pub fn fatal_error(&self) -> Option<Error> {
        lock(&self.shared.fatal).clone()
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // The sender finishes what is queued and stops.
        self.shared.closing.store(true, Ordering::Release);
        lock(&self.shared.buffers).acc.flushing += 1;
        self.shared.wake.notify_one();
    }
}

impl Buffers {
    /// Chooses the partition (explicit, Kafka's murmur2 of the key, else sticky) and appends;
    /// returns where the record went and its timestamp (`timestamp`, else now).
    /// `Ok(None)`: the topic's partitions are unknown or stale; look them up and call again.
    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        tp: &mut TopicPartition,
        partition: Option<i32>,
        timestamp: Option<i64>,
        record: &RecordParts<'_>,
        reserved: usize,
        now: Instant,
        valid: RouteValidity,
    ) -> Result<Option<(Appended, i64)>> {
        let Buffers {
            acc,
            sticky,
            routes,
            clock,
        } = self;
        let Some(route) = routes.get_mut(&tp.topic).filter(|r| {
            r.generation == valid.generation
                && now.saturating_duration_since(r.looked_up) < valid.max_age
        }) else {
            return Ok(None);
        };
        let n = route.partitions;
        let timestamp = timestamp.unwrap_or_else(|| clock.ms(now));
        tp.partition = match (partition, record.key) {
            (Some(p), _) if (0..n).contains(&p) => p,
            (Some(p), _) => {
                return Err(Error::UnknownTopicOrPartition {
                    topic: tp.topic.to_string(),
                    partition: Some(p),
                });
            }
            (None, Some(key)) => partition_for_key(key, n),
            (None, None) => {
                let current = match route.sticky.filter(|&p| p < n) {
                    Some(p) => p,
                    None => sticky.next(None, &route.available, n),
                };
                tp.partition = current;
                // Sticky: stay while the open batch has room; a new batch moves on (KIP-480).
                if let Some(done) = acc.try_append(tp, timestamp, record, reserved)? {
                    route.sticky = Some(current);
                    return Ok(Some((done, timestamp)));
                }
                let next = sticky.next(Some(current), &route.available, n);
                route.sticky = Some(next);
                next
            }
        };
        let appended = acc.append(tp, timestamp, record, reserved, now)?;
        Ok(Some((appended, timestamp)))
    }
}
