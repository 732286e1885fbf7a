//! The producer: `send` appends to the accumulator; one sender task turns batches into Produce
//! requests, routes them to partition leaders and resolves each record's delivery future.
//!
//! - [`partitioner`]: Kafka's murmur2 partitioner and KIP-480 sticky partitions.
//! - [`accumulator`]: per-partition batches (size, linger, retries in order). Pure.
//! - [`sequence`]: idempotence (producer id, epoch, sequences, error verdicts). Pure.
//! - `sender` (private): the task that owns the I/O; `request` builds its Produce requests.

pub mod accumulator;
pub mod partitioner;
mod request;
mod sender;
pub mod sequence;

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinHandle;

use self::accumulator::{Accumulator, BatchOutcome, TopicPartition};
use self::partitioner::{StickyPartitions, partition_for_key};
use crate::cluster::{Client, lock};
use crate::config::ProducerConfig;
use crate::error::{Error, Result};
use crate::records::OutgoingRecord;

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

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset (base offset of the batch + index in it); -1 with acks=0.
    pub offset: i64,
    /// Create time, or the broker's append time for LogAppendTime topics.
    pub timestamp: i64,
}

/// Resolves once the record's batch is acknowledged (or has failed). `.await` it directly.
#[derive(Debug)]
#[must_use = "a delivery future reports whether the record was written"]
pub struct DeliveryFuture {
    outcome: watch::Receiver<BatchOutcome>,
    tp: TopicPartition,
    index: usize,
    timestamp: i64,
}

impl DeliveryFuture {
    /// Waits for the outcome.
    pub async fn wait(mut self) -> Result<RecordMetadata> {
        let outcome = self
            .outcome
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Error::Closed)?;
        match outcome.as_ref() {
            Some(Ok(ack)) => {
                let index = i64::try_from(self.index).unwrap_or(i64::MAX);
                Ok(RecordMetadata {
                    topic: self.tp.topic.clone(),
                    partition: self.tp.partition,
                    offset: if ack.base_offset >= 0 {
                        ack.base_offset + index
                    } else {
                        -1
                    },
                    timestamp: if ack.log_append_time >= 0 {
                        ack.log_append_time
                    } else {
                        self.timestamp
                    },
                })
            }
            Some(Err(e)) => Err(e.clone()),
            None => Err(Error::Closed),
        }
    }
}

impl IntoFuture for DeliveryFuture {
    type Output = Result<RecordMetadata>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.wait())
    }
}

/// State shared by the producer handle and its sender task.
struct Shared {
    buffers: std::sync::Mutex<Buffers>,
    wake: Notify,
    memory: Semaphore,
    closing: AtomicBool,
    fatal: std::sync::Mutex<Option<Error>>,
    /// Outcome channels of batches not yet completed, by batch id (for `flush`).
    incomplete: std::sync::Mutex<HashMap<u64, watch::Receiver<BatchOutcome>>>,
}

struct Buffers {
    acc: Accumulator,
    sticky: StickyPartitions,
}

/// A Kafka producer. Cheap to share behind an `Arc`; `send` takes `&self`.
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
            }),
            wake: Notify::new(),
            memory: Semaphore::new(config.buffer_memory),
            closing: AtomicBool::new(false),
            fatal: std::sync::Mutex::new(None),
            incomplete: std::sync::Mutex::new(HashMap::new()),
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
    /// producer is saturated.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        if self.shared.closing.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if let Some(e) = lock(&self.shared.fatal).clone() {
            return Err(e);
        }
        let (num_partitions, available) = self.partitions_of(&record.topic).await?;
        if let Some(p) = record
            .partition
            .filter(|p| !(0..num_partitions).contains(p))
        {
            let topic = record.topic.to_string();
            return Err(Error::UnknownTopicOrPartition {
                topic,
                partition: Some(p),
            });
        }
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let outgoing = OutgoingRecord {
            key: record.key,
            value: record.value,
            headers: record.headers,
            timestamp,
        };
        let size = outgoing.estimated_size();
        let max = self.config.max_request_size;
        if size > max {
            return Err(Error::RecordTooLarge { size, max });
        }
        let permits = u32::try_from(size).unwrap_or(u32::MAX);
        let memory = self.shared.memory.acquire_many(permits).await;
        memory.map_err(|_| Error::Closed)?.forget();
        let (tp, appended) = {
            let mut buffers = lock(&self.shared.buffers);
            let partition = match record.partition {
                Some(p) => p,
                None => {
                    let key = outgoing.key.as_deref();
                    buffers.choose(&record.topic, key, size, &available, num_partitions)
                }
            };
            let tp = TopicPartition {
                topic: record.topic,
                partition,
            };
            let appended = buffers
                .acc
                .append(tp.clone(), outgoing, size, Instant::now());
            (tp, appended)
        };
        if appended.new_batch {
            lock(&self.shared.incomplete).insert(appended.batch_id, appended.outcome.clone());
        }
        if appended.new_batch || appended.batch_full {
            self.shared.wake.notify_one();
        }
        let index = appended.index;
        Ok(DeliveryFuture {
            outcome: appended.outcome,
            tp,
            index,
            timestamp,
        })
    }

    async fn partitions_of(&self, topic: &str) -> Result<(i32, Vec<i32>)> {
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
        let n = i32::try_from(info.partitions.len()).unwrap_or(i32::MAX);
        let available = info
            .partitions
            .iter()
            .filter(|p| p.leader.is_some())
            .map(|p| p.partition);
        Ok((n, available.collect()))
    }

    /// Sends everything queued now and waits until those records are acknowledged or failed.
    pub async fn flush(&self) {
        let pending: Vec<_> = lock(&self.shared.incomplete).values().cloned().collect();
        lock(&self.shared.buffers).acc.flushing += 1;
        self.shared.wake.notify_one();
        for mut rx in pending {
            let _ = rx.wait_for(Option::is_some).await;
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
    /// Kafka's default partitioner: murmur2 of the key, else the sticky partition.
    fn choose(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        size: usize,
        available: &[i32],
        num_partitions: i32,
    ) -> i32 {
        if let Some(key) = key {
            return partition_for_key(key, num_partitions);
        }
        let current = self.sticky.partition(topic, available, num_partitions);
        let tp = TopicPartition {
            topic: Arc::from(topic),
            partition: current,
        };
        if self.acc.would_open_batch(&tp, size) {
            self.sticky
                .next(topic, Some(current), available, num_partitions)
        } else {
            current
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
