//! The end-to-end latency benchmark (`rafka bench e2e`, after Kafka's `EndToEndLatency`).
//!
//! One record at a time: produce it (acks=all by default) and wait for the acknowledgement,
//! then receive it on a consumer that is already positioned at the end of the partition with a
//! long-poll fetch parked at the broker (`max_wait` >= 100 ms, `min_bytes` 1). The latency is
//! from just before `send` until the consumer has the record; N round trips go into an HDR
//! histogram. Nothing busy-polls: the consumer waits on its fetch, the producer on its answer.
//!
//! With `push`, the receiver is a push [`Subscription`] (from the end of the partition) instead
//! of a Fetch consumer: the latency is then from `send` until the record arrived by push.
//!
//! Producer and consumer have separate clients (separate connections), as in Kafka's tool: a
//! Kafka broker serves one request per connection at a time, so a produce behind a parked
//! fetch on one connection would wait for the fetch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::cpu::CpuMeter;
use super::fsync::fsync_mode;
use super::payload::PayloadPool;
use super::stats::{Latencies, LiveCounts, Window};
use super::{OnProgress, Report, drive, ensure_topic};
use crate::cluster::Client;
use crate::config::{Acks, ConsumerConfig, OffsetReset, ProducerConfig};
use crate::consumer::{Consumer, SeekTo};
use crate::error::{Error, Result};
use crate::metadata::TopicPartition;
use crate::producer::{Producer, ProducerRecord};
use crate::records::ConsumerRecord;
use crate::subscription::{StartAt, Subscription, SubscriptionConfig};

/// The shortest long-poll wait allowed: anything shorter approaches busy polling.
pub const MIN_MAX_WAIT: Duration = Duration::from_millis(100);

/// Settings of an end-to-end latency benchmark.
#[derive(Debug, Clone)]
pub struct E2eBench {
    /// Topic (created with one partition if missing; partition 0 is used).
    pub topic: String,
    /// Round trips measured.
    pub records: u64,
    /// Bytes of each value.
    pub record_size: usize,
    /// The producer's settings (acks=all, idempotent, linger 0 by default).
    pub producer: ProducerConfig,
    /// The consumer's long-poll wait (`fetch.max.wait.ms`, at least 100 ms).
    pub max_wait: Duration,
    /// A round trip taking longer than this fails the run.
    pub timeout: Duration,
    /// Round trips before the measured ones (connections, producer id).
    pub warmup: u64,
    /// Progress interval.
    pub report_every: Duration,
    /// A broker process on this machine whose CPU time is measured.
    pub broker_pid: Option<u32>,
    /// Seed of the payloads.
    pub seed: u64,
    /// Receive by push subscription instead of Fetch.
    pub push: bool,
}

impl Default for E2eBench {
    fn default() -> Self {
        E2eBench {
            topic: "rafka-bench-e2e".into(),
            records: 10_000,
            record_size: 100,
            producer: ProducerConfig::default(),
            max_wait: Duration::from_millis(500),
            timeout: Duration::from_secs(10),
            warmup: 10,
            report_every: Duration::from_secs(5),
            broker_pid: None,
            seed: 0xe2e,
            push: false,
        }
    }
}

impl E2eBench {
    /// Runs the benchmark: `producer` and `consumer` are two clients of the same cluster.
    pub async fn run(
        &self,
        producer: &Client,
        consumer: &Client,
        on_progress: OnProgress<'_>,
    ) -> Result<Report> {
        if self.max_wait < MIN_MAX_WAIT {
            return Err(Error::Config(format!(
                "the long-poll wait must be at least {} ms",
                MIN_MAX_WAIT.as_millis()
            )));
        }
        self.producer.validate()?;
        let note = ensure_topic(producer, &self.topic, 1).await?;
        let fsync = fsync_mode(producer, &self.topic).await;
        let tp = TopicPartition::new(self.topic.as_str(), 0);
        let config = ConsumerConfig {
            auto_offset_reset: OffsetReset::Latest,
            fetch_max_wait: self.max_wait,
            fetch_min_bytes: 1,
            ..ConsumerConfig::default()
        };
        let receiver = if self.push {
            let config = SubscriptionConfig {
                poll_wait: self.max_wait,
                ..SubscriptionConfig::default()
            };
            let subscription =
                Subscription::new(consumer.clone(), &[&self.topic], StartAt::End, config).await?;
            Receiver::Push(subscription)
        } else {
            let mut consumer = Consumer::new(consumer.clone(), config)?;
            consumer.assign([tp.clone()]);
            consumer.seek(&tp, SeekTo::End)?;
            Receiver::Fetch(consumer)
        };
        let mut trips = RoundTrips {
            producer: Producer::new(producer.clone(), self.producer.clone())?,
            receiver,
            tp: tp.clone(),
            values: PayloadPool::new(self.record_size, self.seed),
            timeout: self.timeout,
        };
        trips.position().await?;
        for _ in 0..self.warmup {
            trips.once().await?;
        }
        let live = Arc::new(LiveCounts::default());
        let cpu = CpuMeter::start(self.broker_pid);
        let start = Instant::now();
        let task = tokio::spawn(trips.measure(self.records, live.clone()));
        let mut results = drive(
            vec![task],
            &live,
            self.report_every,
            ("round trips", true),
            on_progress,
        )
        .await?;
        let elapsed = start.elapsed();
        let (latencies, counts) = results
            .pop()
            .ok_or_else(|| Error::protocol("no e2e result"))?;
        let cpu = cpu.stop(counts.records);
        let p = &self.producer;
        Ok(Report::new(
            "e2e",
            producer,
            &self.topic,
            counts,
            None,
            elapsed,
            latencies.summary(),
            fsync,
            cpu,
            json!({
                "records": self.records,
                "record_size": self.record_size,
                "acks": match p.acks { Acks::None => "0", Acks::Leader => "1", Acks::All => "all" },
                "idempotence": p.idempotent(),
                "fetch_max_wait_ms": self.max_wait.as_millis() as u64,
                "fetch_min_bytes": 1,
                "warmup": self.warmup,
                "receiver": if self.push { "push" } else { "fetch" },
            }),
            note.into_iter().collect(),
        ))
    }
}

/// What receives the records: a Fetch consumer or a push subscription.
enum Receiver {
    Fetch(Consumer),
    Push(Subscription),
}

impl Receiver {
    async fn poll(&mut self, wait: Duration) -> Result<Vec<ConsumerRecord>> {
        match self {
            Receiver::Fetch(consumer) => consumer.poll(wait).await,
            Receiver::Push(subscription) => subscription.poll(wait).await,
        }
    }

    fn position(&self, tp: &TopicPartition) -> Option<i64> {
        match self {
            Receiver::Fetch(consumer) => consumer.position(tp),
            Receiver::Push(subscription) => subscription.position(tp),
        }
    }
}

/// The producer and the positioned receiver of a run.
struct RoundTrips {
    producer: Producer,
    receiver: Receiver,
    tp: TopicPartition,
    values: PayloadPool,
    timeout: Duration,
}

impl RoundTrips {
    /// Polls until the consumer knows its position (the end of the partition); its long-poll
    /// fetch is then parked at the broker.
    async fn position(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.timeout;
        while self.receiver.position(&self.tp).is_none() {
            if Instant::now() >= deadline {
                return Err(Error::Config(format!(
                    "no position for {} within {:?}",
                    self.tp, self.timeout
                )));
            }
            let records = self.receiver.poll(Duration::from_millis(20)).await?;
            if !records.is_empty() {
                return Err(Error::Config(format!(
                    "{} received records before any was produced: is something else writing \
                     to it?",
                    self.tp
                )));
            }
        }
        Ok(())
    }

    /// One round trip; returns its latency.
    async fn once(&mut self) -> Result<Duration> {
        let value = self.values.next_payload();
        let record = ProducerRecord::new(self.tp.topic.clone(), value.clone())
            .with_partition(self.tp.partition);
        let start = Instant::now();
        let written = self.producer.send(record).await?.await?;
        let deadline = start + self.timeout;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                return Err(Error::Config(format!(
                    "record {} of {} not consumed within {:?}",
                    written.offset, self.tp, self.timeout
                )));
            }
            let records = self.receiver.poll(wait).await?;
            // With acks=0 the offset is unknown (-1): the next record is the one.
            let wanted = |offset: i64| written.offset < 0 || offset == written.offset;
            if let Some(r) = records.iter().find(|r| wanted(r.offset)) {
                let latency = start.elapsed();
                if r.value.as_ref() != Some(&value) {
                    return Err(Error::Config(format!(
                        "record {} of {} came back with another value",
                        r.offset, self.tp
                    )));
                }
                return Ok(latency);
            }
            if records.iter().any(|r| r.offset > written.offset) {
                return Err(Error::Config(format!(
                    "record {} of {} was skipped by the consumer",
                    written.offset, self.tp
                )));
            }
        }
    }

    async fn measure(mut self, n: u64, live: Arc<LiveCounts>) -> Result<(Latencies, Window)> {
        let mut latencies = Latencies::default();
        let mut totals = Window::default();
        let bytes = self.values.size() as u64;
        for _ in 0..n {
            let latency = self.once().await?;
            latencies.record(latency);
            let mut one = Window::default();
            one.record(bytes, Some(latency));
            live.add(&one);
            totals.add(&one);
        }
        self.producer.close().await;
        Ok((latencies, totals))
    }
}
