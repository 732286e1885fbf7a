//! The producer benchmark (`rafka bench produce`, after kafka-producer-perf-test).
//!
//! K producers, each with its own [`Client`] (its own connections), send their share of N
//! records of B random bytes (null keys unless a key size is given, so Kafka's sticky
//! partitioning applies). Each record's latency is from the `send` call
//! ([`DeliveryFuture::sent_at`], as kafka-producer-perf-test starts its clock just before
//! `send`) to the moment its batch's response was handled ([`DeliveryFuture::completed_at`]),
//! recorded in an HDR histogram. Delivery reports are collected in send order without waiting:
//! the loop only checks the oldest outstanding ones after each send.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::cpu::CpuMeter;
use super::fsync::fsync_mode;
use super::payload::PayloadPool;
use super::stats::{Latencies, LiveCounts, Window};
use super::throttle::Throttle;
use super::{OnProgress, Report, drive, ensure_topic};
use crate::cluster::Client;
use crate::config::{Acks, ProducerConfig};
use crate::error::{Error, Result};
use crate::producer::{DeliveryFuture, Producer, ProducerRecord};

/// Sends between looks at the clock for handing counts to the reporter.
const CLOCK_EVERY: u64 = 1024;
/// Counts are handed to the reporter this often.
const HAND_OVER_AFTER: Duration = Duration::from_millis(100);

/// Settings of a producer benchmark.
#[derive(Debug, Clone)]
pub struct ProduceBench {
    /// Topic (created with `partitions` if missing).
    pub topic: String,
    /// Records to send, over all producers.
    pub records: u64,
    /// Bytes of each value.
    pub record_size: usize,
    /// Bytes of each key (`None`: null keys, sticky partitioning).
    pub key_size: Option<usize>,
    /// Partitions of a created topic.
    pub partitions: i32,
    /// Producers, each with its own client.
    pub producers: usize,
    /// Records per second over all producers (`<= 0`: unlimited).
    pub throughput: f64,
    /// The producers' settings.
    pub producer: ProducerConfig,
    /// Progress interval.
    pub report_every: Duration,
    /// A broker process on this machine whose CPU time is measured.
    pub broker_pid: Option<u32>,
    /// Seed of the payloads.
    pub seed: u64,
}

impl Default for ProduceBench {
    /// Kafka 3.8's producer defaults, one producer, 100-byte values.
    fn default() -> Self {
        ProduceBench {
            topic: "rafka-bench".into(),
            records: 1_000_000,
            record_size: 100,
            key_size: None,
            partitions: 1,
            producers: 1,
            throughput: -1.0,
            producer: ProducerConfig::default(),
            report_every: Duration::from_secs(5),
            broker_pid: None,
            seed: 0x5eed,
        }
    }
}

/// What one producer task did.
struct Share {
    latencies: Latencies,
    counts: Window,
    first_error: Option<String>,
}

impl ProduceBench {
    /// Runs the benchmark with one client per producer (`clients.len()` must equal
    /// `producers`); the first client also creates the topic and asks for the fsync mode.
    pub async fn run(&self, clients: &[Client], on_progress: OnProgress<'_>) -> Result<Report> {
        self.producer.validate()?;
        let first = match clients {
            [first, ..] if clients.len() == self.producers => first,
            _ => {
                return Err(Error::Config(format!(
                    "{} producers need as many clients, not {}",
                    self.producers,
                    clients.len()
                )));
            }
        };
        let note = ensure_topic(first, &self.topic, self.partitions).await?;
        let fsync = fsync_mode(first, &self.topic).await;
        let values = PayloadPool::new(self.record_size, self.seed);
        let keys = self
            .key_size
            .map(|size| PayloadPool::new(size, self.seed.rotate_left(17)));
        let live = Arc::new(LiveCounts::default());
        let topic: Arc<str> = Arc::from(self.topic.as_str());
        let cpu = CpuMeter::start(self.broker_pid);
        let start = Instant::now();
        let k = self.producers as u64;
        let mut tasks = Vec::with_capacity(self.producers);
        for (i, client) in clients.iter().enumerate() {
            let i = i as u64;
            let task = ProducerTask {
                producer: Producer::new(client.clone(), self.producer.clone())?,
                topic: topic.clone(),
                records: self.records / k + u64::from(i < self.records % k),
                values: values.starting_at(i as usize * 7919),
                keys: keys.as_ref().map(|p| p.starting_at(i as usize * 7919)),
                throttle: Throttle::new(self.throughput / k as f64, start),
                live: live.clone(),
            };
            tasks.push(tokio::spawn(task.run()));
        }
        let shares = drive(
            tasks,
            &live,
            self.report_every,
            ("records sent", true),
            on_progress,
        )
        .await?;
        let elapsed = start.elapsed();
        let mut latencies = Latencies::default();
        let mut counts = Window::default();
        let mut first_error = None;
        for share in shares {
            latencies.merge(&share.latencies);
            counts.add(&share.counts);
            first_error = first_error.or(share.first_error);
        }
        let cpu = cpu.stop(counts.records);
        Ok(Report::new(
            "produce",
            first,
            &self.topic,
            counts,
            first_error,
            elapsed,
            latencies.summary(),
            fsync,
            cpu,
            self.config_json(),
            note.into_iter().collect(),
        ))
    }

    fn config_json(&self) -> serde_json::Value {
        let p = &self.producer;
        json!({
            "records": self.records,
            "record_size": self.record_size,
            "key_size": self.key_size,
            "partitions": self.partitions,
            "producers": self.producers,
            "throughput": self.throughput,
            "acks": match p.acks { Acks::None => "0", Acks::Leader => "1", Acks::All => "all" },
            "idempotence": p.idempotent(),
            "batch_size": p.batch_size,
            "linger_ms": p.linger.as_millis() as u64,
            "max_in_flight": p.max_in_flight,
            "compression": format!("{:?}", p.compression).to_lowercase(),
            "buffer_memory": p.buffer_memory,
        })
    }
}

/// One producer's loop.
struct ProducerTask {
    producer: Producer,
    topic: Arc<str>,
    records: u64,
    values: PayloadPool,
    keys: Option<PayloadPool>,
    throttle: Option<Throttle>,
    live: Arc<LiveCounts>,
}

/// Delivery reports not yet seen, with their send times, in send order.
#[derive(Default)]
struct Outstanding {
    queue: VecDeque<DeliveryFuture>,
    latencies: Latencies,
    window: Window,
    totals: Window,
    first_error: Option<String>,
    handed_over: Option<Instant>,
}

impl Outstanding {
    /// Counts every report at the front that is already known.
    fn collect_done(&mut self, bytes: u64) {
        while self.queue.front().is_some_and(DeliveryFuture::is_done) {
            if let Some(delivery) = self.queue.pop_front() {
                self.count(&delivery, bytes);
            }
        }
    }

    fn count(&mut self, delivery: &DeliveryFuture, bytes: u64) {
        let Some(done) = delivery.completed_at() else {
            return;
        };
        match delivery.error() {
            None => {
                let latency = done.saturating_duration_since(delivery.sent_at());
                self.latencies.record(latency);
                self.window.record(bytes, Some(latency));
            }
            Some(e) => {
                self.window.errors += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }

    /// Hands the window to the reporter when it is old enough (or `force`).
    fn hand_over(&mut self, live: &LiveCounts, now: Instant, force: bool) {
        let last = *self.handed_over.get_or_insert(now);
        if force || now.saturating_duration_since(last) >= HAND_OVER_AFTER {
            live.add(&self.window);
            self.totals.add(&self.window);
            self.window = Window::default();
            self.handed_over = Some(now);
        }
    }
}

impl ProducerTask {
    async fn run(mut self) -> Result<Share> {
        let bytes = (self.values.size() + self.keys.as_ref().map_or(0, PayloadPool::size)) as u64;
        let mut out = Outstanding::default();
        let mut failure = None;
        for i in 0..self.records {
            if let Some(t) = &self.throttle {
                let due = t.due(i);
                if due > Instant::now() {
                    tokio::time::sleep_until(due.into()).await;
                }
            }
            let record = ProducerRecord {
                topic: self.topic.clone(),
                partition: None,
                key: self.keys.as_mut().map(PayloadPool::next_payload),
                value: Some(self.values.next_payload()),
                headers: Vec::new(),
                timestamp: None,
            };
            match self.producer.send(record).await {
                Ok(delivery) => out.queue.push_back(delivery),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            out.collect_done(bytes);
            if i % CLOCK_EVERY == 0 || self.throttle.is_some() {
                out.hand_over(&self.live, Instant::now(), false);
            }
        }
        self.producer.flush().await;
        while let Some(delivery) = out.queue.pop_front() {
            // Flushed: every report is known, except when the sender stopped.
            if !delivery.is_done() {
                let _ = tokio::time::timeout(Duration::from_secs(1), delivery.ready()).await;
            }
            out.count(&delivery, bytes);
        }
        out.hand_over(&self.live, Instant::now(), true);
        self.producer.close().await;
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(Share {
            latencies: out.latencies,
            counts: out.totals,
            first_error: out.first_error,
        })
    }
}
