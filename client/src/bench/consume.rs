//! The consumer benchmark (`rafka bench consume`, after kafka-consumer-perf-test).
//!
//! K consumers, each with its own [`Client`], are assigned a share of the topic's partitions
//! (round robin, no group) and read from the beginning (or the end) until N records have been
//! read in all. Every batch's CRC-32C is verified and every record decoded by the client's
//! fetch path, as a Kafka consumer does with its defaults. The clock runs from the first poll
//! to the N-th record.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::watch;

use super::cpu::CpuMeter;
use super::fsync::fsync_mode;
use super::stats::{LiveCounts, Window};
use super::{OnProgress, Report, drive};
use crate::cluster::{Client, lock};
use crate::config::ConsumerConfig;
use crate::consumer::{Consumer, SeekTo};
use crate::error::{Error, Result};
use crate::metadata::TopicPartition;

/// Where consumers start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The log start of each partition.
    Earliest,
    /// The log end (records produced after the start).
    Latest,
}

/// Settings of a consumer benchmark.
#[derive(Debug, Clone)]
pub struct ConsumeBench {
    /// Topic (must exist).
    pub topic: String,
    /// Records to read, over all consumers.
    pub records: u64,
    /// Consumers, each with its own client.
    pub consumers: usize,
    /// Where to start.
    pub start_at: StartAt,
    /// The consumers' settings.
    pub consumer: ConsumerConfig,
    /// Give up when no record arrives for this long.
    pub timeout: Duration,
    /// Progress interval.
    pub report_every: Duration,
    /// A broker process on this machine whose CPU time is measured.
    pub broker_pid: Option<u32>,
}

impl Default for ConsumeBench {
    fn default() -> Self {
        ConsumeBench {
            topic: "rafka-bench".into(),
            records: 1_000_000,
            consumers: 1,
            start_at: StartAt::Earliest,
            consumer: ConsumerConfig::default(),
            timeout: Duration::from_secs(10),
            report_every: Duration::from_secs(5),
            broker_pid: None,
        }
    }
}

/// State every consumer task shares.
struct Run {
    remaining: AtomicU64,
    reached: std::sync::Mutex<Option<Instant>>,
    done: watch::Sender<bool>,
    live: LiveCounts,
}

impl Run {
    /// Claims up to `n` of the records still wanted; the claim that takes the last one marks
    /// the end of the run.
    fn claim(&self, n: u64) -> u64 {
        let before = self
            .remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
                Some(r.saturating_sub(n))
            })
            .unwrap_or(0);
        let claimed = before.min(n);
        if claimed > 0 && claimed == before {
            lock(&self.reached).get_or_insert_with(Instant::now);
            self.done.send_replace(true);
        }
        claimed
    }
}

/// What one consumer task did.
#[derive(Default)]
struct Share {
    counts: Window,
    error: Option<String>,
}

impl ConsumeBench {
    /// Runs the benchmark with one client per consumer (`clients.len()` must equal
    /// `consumers`).
    pub async fn run(&self, clients: &[Client], on_progress: OnProgress<'_>) -> Result<Report> {
        self.consumer.validate()?;
        let first = match clients {
            [first, ..] if clients.len() == self.consumers => first,
            _ => {
                return Err(Error::Config(format!(
                    "{} consumers need as many clients, not {}",
                    self.consumers,
                    clients.len()
                )));
            }
        };
        let wait = first.config().connection.request_timeout;
        let info = first.wait_for_topic(&self.topic, wait).await?;
        let fsync = fsync_mode(first, &self.topic).await;
        let mut partitions: Vec<i32> = info.partitions.iter().map(|p| p.partition).collect();
        partitions.sort_unstable();
        let mut notes = Vec::new();
        if self.consumers > partitions.len() {
            notes.push(format!(
                "{} consumers for {} partitions: {} stay idle",
                self.consumers,
                partitions.len(),
                self.consumers - partitions.len()
            ));
        }
        let (done, _) = watch::channel(self.records == 0);
        let run = Arc::new(Run {
            remaining: AtomicU64::new(self.records),
            reached: std::sync::Mutex::new(None),
            done,
            live: LiveCounts::default(),
        });
        let topic: Arc<str> = Arc::from(self.topic.as_str());
        let cpu = CpuMeter::start(self.broker_pid);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for (k, client) in clients.iter().enumerate() {
            let mine: Vec<TopicPartition> = partitions
                .iter()
                .skip(k)
                .step_by(self.consumers)
                .map(|&p| TopicPartition::new(topic.clone(), p))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let mut consumer = Consumer::new(client.clone(), self.consumer.clone())?;
            consumer.assign(mine.iter().cloned());
            for tp in &mine {
                let to = match self.start_at {
                    StartAt::Earliest => SeekTo::Beginning,
                    StartAt::Latest => SeekTo::End,
                };
                consumer.seek(tp, to)?;
            }
            tasks.push(tokio::spawn(consume_share(
                consumer,
                run.clone(),
                self.timeout,
            )));
        }
        let shares = drive(
            tasks,
            &run.live,
            self.report_every,
            ("records consumed", false),
            on_progress,
        )
        .await?;
        let end = (*lock(&run.reached)).unwrap_or_else(Instant::now);
        let mut counts = Window::default();
        let mut first_error = None;
        for share in shares {
            counts.add(&share.counts);
            first_error = first_error.or(share.error);
        }
        if counts.records < self.records {
            notes.push(format!(
                "only {} of {} records were read",
                counts.records, self.records
            ));
        }
        let cpu = cpu.stop(counts.records);
        Ok(Report::new(
            "consume",
            first,
            &self.topic,
            counts,
            first_error,
            end.saturating_duration_since(start),
            None,
            fsync,
            cpu,
            json!({
                "records": self.records,
                "consumers": self.consumers,
                "partitions": partitions.len(),
                "from": match self.start_at { StartAt::Earliest => "earliest", StartAt::Latest => "latest" },
                "fetch_max_wait_ms": self.consumer.fetch_max_wait.as_millis() as u64,
                "fetch_min_bytes": self.consumer.fetch_min_bytes,
                "fetch_max_bytes": self.consumer.fetch_max_bytes,
                "max_partition_fetch_bytes": self.consumer.max_partition_fetch_bytes,
            }),
            notes,
        ))
    }
}

async fn consume_share(mut consumer: Consumer, run: Arc<Run>, timeout: Duration) -> Result<Share> {
    let mut share = Share::default();
    let mut done = run.done.subscribe();
    let mut last_record = Instant::now();
    while !*done.borrow() {
        let budget = timeout.saturating_sub(last_record.elapsed());
        if budget.is_zero() {
            share.error = Some(format!("no record for {} ms", timeout.as_millis()));
            break;
        }
        let records = tokio::select! {
            r = consumer.poll(budget) => r?,
            _ = done.wait_for(|d| *d) => break,
        };
        if records.is_empty() {
            continue;
        }
        last_record = Instant::now();
        let claimed = run.claim(records.len() as u64);
        let mut window = Window::default();
        for r in records
            .iter()
            .take(usize::try_from(claimed).unwrap_or(usize::MAX))
        {
            let bytes =
                r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len());
            window.record(bytes as u64, None);
        }
        run.live.add(&window);
        share.counts.add(&window);
    }
    Ok(share)
}
