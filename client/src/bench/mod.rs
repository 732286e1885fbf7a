//! Benchmarks in the spirit of Kafka's `kafka-producer-perf-test`, `kafka-consumer-perf-test`
//! and `EndToEndLatency`, run by `rafka bench`. They use the client library and standard Kafka
//! requests only, so they measure any Kafka-protocol broker over TCP as well as Rafka over
//! either transport.
//!
//! - [`produce`]: K producers send N records of B bytes; latency is the time from `send` to
//!   the delivery report.
//! - [`consume`]: K consumers read N records (assigned partitions, every batch CRC checked and
//!   every record decoded).
//! - [`e2e`]: one record produced, then fetched by an already positioned long-polling
//!   consumer; N round trips, one at a time.
//! - [`stats`]: HDR latency histograms, progress windows and the lines they print as.
//! - [`payload`], [`throttle`]: pre-generated incompressible values; `--throughput` pacing.
//! - [`cpu`], [`fsync`]: CPU seconds of this process and of the broker, and the broker's
//!   fsync mode (asked with DescribeConfigs), reported with every result.
//!
//! Runners return a [`Report`] and call a progress callback every `report_every`; printing is
//! the caller's.

pub mod consume;
pub mod cpu;
pub mod e2e;
pub mod fsync;
pub mod payload;
pub mod produce;
pub mod stats;
pub mod throttle;

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use self::cpu::CpuReport;
use self::fsync::FsyncMode;
use self::stats::{LatencySummary, MB, Progress, rate};
use crate::admin::{Admin, NewTopic};
use crate::bootstrap::Bootstrap;
use crate::cluster::Client;
use crate::error::{Error, Result};

/// Called with each progress window while a benchmark runs.
pub type OnProgress<'a> = &'a (dyn Fn(&Progress) + Send + Sync);

/// The outcome of one benchmark run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `produce`, `consume` or `e2e`.
    pub mode: &'static str,
    /// `kafka-tcp` or `mesh`.
    pub transport: &'static str,
    /// The topic.
    pub topic: String,
    /// Records completed (acknowledged, consumed, or round trips).
    pub records: u64,
    /// Their bytes (keys + values).
    pub bytes: u64,
    /// Records that failed.
    pub errors: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Wall-clock seconds of the measured part.
    pub elapsed_s: f64,
    /// Records per second.
    pub records_per_sec: f64,
    /// MB (2^20 bytes) per second.
    pub mb_per_sec: f64,
    /// Latency figures in ms (`None` for consume).
    pub latency_ms: Option<LatencySummary>,
    /// The broker's fsync mode.
    pub fsync: FsyncMode,
    /// CPU seconds of this process and the broker.
    pub cpu: CpuReport,
    /// The settings of the run.
    pub config: serde_json::Value,
    /// Things worth knowing about the run (e.g. the topic had another partition count).
    pub notes: Vec<String>,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    fn new(
        mode: &'static str,
        client: &Client,
        topic: &str,
        counts: stats::Window,
        first_error: Option<String>,
        elapsed: Duration,
        latency: Option<LatencySummary>,
        fsync: FsyncMode,
        cpu: CpuReport,
        config: serde_json::Value,
        notes: Vec<String>,
    ) -> Report {
        Report {
            mode,
            transport: transport(client),
            topic: topic.to_owned(),
            records: counts.records,
            bytes: counts.bytes,
            errors: counts.errors,
            first_error,
            elapsed_s: elapsed.as_secs_f64(),
            records_per_sec: rate(counts.records, elapsed),
            mb_per_sec: rate(counts.bytes, elapsed) / MB,
            latency_ms: latency,
            fsync,
            cpu,
            config,
            notes,
        }
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

impl fmt::Display for Report {
    /// The final lines: kafka-producer-perf-test's summary, then fsync and CPU.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.mode {
            "produce" => "records sent",
            "consume" => "records consumed",
            _ => "round trips",
        };
        write!(
            f,
            "{} {what}, {:.1} records/sec ({:.2} MB/sec) in {:.3} s",
            self.records, self.records_per_sec, self.mb_per_sec, self.elapsed_s
        )?;
        if let Some(l) = &self.latency_ms {
            write!(f, ", {l}")?;
        }
        writeln!(f, ".")?;
        if self.errors > 0 {
            let first = self.first_error.as_deref().unwrap_or("?");
            writeln!(f, "errors: {} (first: {first})", self.errors)?;
        }
        writeln!(f, "transport: {}, fsync: {}", self.transport, self.fsync)?;
        let cpu = |s: Option<f64>, per_m: Option<f64>| match (s, per_m) {
            (Some(s), Some(m)) => format!("{s:.2} s ({m:.3} s per million records)"),
            (Some(s), None) => format!("{s:.2} s"),
            _ => "unknown".to_owned(),
        };
        write!(
            f,
            "cpu: client {}",
            cpu(self.cpu.client_s, self.cpu.client_s_per_million)
        )?;
        if self.cpu.broker_s.is_some() {
            write!(
                f,
                ", broker {}",
                cpu(self.cpu.broker_s, self.cpu.broker_s_per_million)
            )?;
        }
        for note in &self.notes {
            write!(f, "\nnote: {note}")?;
        }
        Ok(())
    }
}

/// `kafka-tcp` or `mesh`.
pub fn transport(client: &Client) -> &'static str {
    match client.config().bootstrap {
        Bootstrap::Kafka(_) => "kafka-tcp",
        Bootstrap::Mesh(_) | Bootstrap::Mdns => "mesh",
    }
}

/// Creates `topic` with `partitions` if it does not exist; returns a note when it exists with
/// another partition count.
async fn ensure_topic(client: &Client, topic: &str, partitions: i32) -> Result<Option<String>> {
    let admin = Admin::new(client.clone());
    let wait = client.config().connection.request_timeout;
    match admin.create_topic(NewTopic::new(topic, partitions)).await {
        Ok(()) => return Ok(None),
        Err(Error::TopicAlreadyExists { .. }) => {}
        Err(e) => return Err(e),
    }
    let info = client.wait_for_topic(topic, wait).await?;
    let found = info.partitions.len();
    Ok((i32::try_from(found).ok() != Some(partitions)).then(|| {
        format!("topic {topic} exists with {found} partitions, not {partitions}; it was used as is")
    }))
}

/// Waits for every task of a run while calling `on_progress` every `every` with what `live`
/// gathered. Returns the tasks' results in order.
async fn drive<T>(
    tasks: Vec<tokio::task::JoinHandle<Result<T>>>,
    live: &stats::LiveCounts,
    every: Duration,
    progress: (&'static str, bool),
    on_progress: OnProgress<'_>,
) -> Result<Vec<T>> {
    let mut all = futures::future::join_all(tasks);
    let mut ticker = tokio::time::interval(every.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut window_start = tokio::time::Instant::now();
    let joined = loop {
        tokio::select! {
            joined = &mut all => break joined,
            _ = ticker.tick() => {
                let now = tokio::time::Instant::now();
                on_progress(&Progress {
                    what: progress.0,
                    window: live.take(),
                    elapsed: now - window_start,
                    with_latency: progress.1,
                });
                window_start = now;
            }
        }
    };
    joined
        .into_iter()
        .map(|j| j.map_err(|e| Error::protocol(format!("benchmark task: {e}")))?)
        .collect()
}

#[cfg(test)]
#[path = "bench_tests.rs"]
mod tests;
