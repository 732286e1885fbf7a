//! Counting what a benchmark did: an HDR latency histogram per task, progress windows shared
//! with the reporter, and the figures and lines they turn into.
//!
//! Latencies are recorded in microseconds (three significant digits, up to an hour) and shown
//! in milliseconds. MB means 2^20 bytes, as Kafka's perf tools count it.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cluster::lock;

/// Highest latency the histogram holds (larger values are recorded as this).
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Bytes per MB in rates (Kafka's perf tools divide by 1024 * 1024).
pub const MB: f64 = 1024.0 * 1024.0;

/// A latency histogram in microseconds.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        let hist = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
            .expect("constant histogram bounds are valid");
        Latencies(hist)
    }
}

impl Latencies {
    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(us.max(1));
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides: addition cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// Number of recorded latencies.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// avg / p50 / p95 / p99 / p99.9 / max, or `None` when nothing was recorded.
    pub fn summary(&self) -> Option<LatencySummary> {
        if self.0.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        let q = |quantile: f64| ms(self.0.value_at_quantile(quantile));
        Some(LatencySummary {
            count: self.0.len(),
            avg: self.0.mean() / 1000.0,
            p50: q(0.50),
            p95: q(0.95),
            p99: q(0.99),
            p999: q(0.999),
            max: ms(self.0.max()),
        })
    }
}

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Latencies recorded.
    pub count: u64,
    /// Mean.
    pub avg: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl fmt::Display for LatencySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.3} ms avg latency, {:.3} ms max latency, {:.3} ms 50th, {:.3} ms 95th, \
             {:.3} ms 99th, {:.3} ms 99.9th",
            self.avg, self.max, self.p50, self.p95, self.p99, self.p999
        )
    }
}

/// Counts since the last progress report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// Records completed.
    pub records: u64,
    /// Their bytes (key + value).
    pub bytes: u64,
    /// Records that failed.
    pub errors: u64,
    /// Sum of their latencies in microseconds (0 when latency is not measured).
    pub latency_sum_us: u64,
    /// Largest latency in microseconds.
    pub latency_max_us: u64,
}

impl Window {
    /// Counts one completed record.
    pub fn record(&mut self, bytes: u64, latency: Option<Duration>) {
        self.records += 1;
        self.bytes += bytes;
        if let Some(l) = latency {
            let us = u64::try_from(l.as_micros()).unwrap_or(u64::MAX);
            self.latency_sum_us = self.latency_sum_us.saturating_add(us);
            self.latency_max_us = self.latency_max_us.max(us);
        }
    }

    /// Adds `other` into this window.
    pub fn add(&mut self, other: &Window) {
        self.records += other.records;
        self.bytes += other.bytes;
        self.errors += other.errors;
        self.latency_sum_us = self.latency_sum_us.saturating_add(other.latency_sum_us);
        self.latency_max_us = self.latency_max_us.max(other.latency_max_us);
    }
}

/// The window every task adds to and the reporter empties.
#[derive(Debug, Default)]
pub struct LiveCounts {
    window: Mutex<Window>,
}

impl LiveCounts {
    /// Adds a task's counts.
    pub fn add(&self, w: &Window) {
        lock(&self.window).add(w);
    }

    /// Takes the counts gathered since the last call.
    pub fn take(&self) -> Window {
        std::mem::take(&mut *lock(&self.window))
    }
}

/// What the benchmark reports while it runs (kafka-producer-perf-test's periodic line).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// What is counted: "records sent", "records consumed", "round trips".
    pub what: &'static str,
    /// The window's counts.
    pub window: Window,
    /// The window's length.
    pub elapsed: Duration,
    /// Whether latencies are measured.
    pub with_latency: bool,
}

impl Progress {
    /// Records per second in the window.
    pub fn records_per_sec(&self) -> f64 {
        rate(self.window.records, self.elapsed)
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = &self.window;
        write!(
            f,
            "{} {}, {:.1} records/sec ({:.2} MB/sec)",
            w.records,
            self.what,
            self.records_per_sec(),
            rate(w.bytes, self.elapsed) / MB
        )?;
        if self.with_latency {
            let avg = if w.records == 0 {
                0.0
            } else {
                w.latency_sum_us as f64 / w.records as f64 / 1000.0
            };
            write!(
                f,
                ", {avg:.3} ms avg latency, {:.3} ms max latency",
                w.latency_max_us as f64 / 1000.0
            )?;
        }
        if w.errors > 0 {
            write!(f, ", {} errors", w.errors)?;
        }
        f.write_str(".")
    }
}

/// `count` per second over `elapsed` (0 for an empty interval).
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_percentiles_and_line() {
        let mut h = Latencies::default();
        assert!(h.summary().is_none());
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let mut other = Latencies::default();
        other.record(Duration::from_millis(250));
        h.merge(&other);
        let s = h.summary().unwrap();
        assert_eq!(s.count, 1001);
        assert!((s.p50 - 0.5).abs() < 0.002, "{s:?}");
        assert!((s.p95 - 0.95).abs() < 0.002, "{s:?}");
        assert!((s.p99 - 0.99).abs() < 0.002, "{s:?}");
        assert!((s.p999 - 1.0).abs() < 0.002, "{s:?}");
        assert!((s.max - 250.0).abs() < 0.2, "{s:?}");
        let line = s.to_string();
        assert!(
            line.starts_with(&format!("{:.3} ms avg latency", s.avg)),
            "{line}"
        );
        assert!(line.ends_with("ms 99.9th"), "{line}");
    }

    #[test]
    fn progress_line_like_kafka_producer_perf_test() {
        let mut w = Window::default();
        for _ in 0..5000 {
            w.record(100, Some(Duration::from_micros(1500)));
        }
        w.record(100, Some(Duration::from_millis(12)));
        let p = Progress {
            what: "records sent",
            window: w,
            elapsed: Duration::from_secs(5),
            with_latency: true,
        };
        assert_eq!(
            p.to_string(),
            "5001 records sent, 1000.2 records/sec (0.10 MB/sec), 1.502 ms avg latency, \
             12.000 ms max latency."
        );
        let quiet = Progress {
            what: "records consumed",
            window: Window::default(),
            elapsed: Duration::ZERO,
            with_latency: false,
        };
        assert_eq!(
            quiet.to_string(),
            "0 records consumed, 0.0 records/sec (0.00 MB/sec)."
        );
    }

    #[test]
    fn live_counts_are_taken_once() {
        let live = LiveCounts::default();
        let mut w = Window::default();
        w.record(10, None);
        w.errors = 2;
        live.add(&w);
        live.add(&w);
        let taken = live.take();
        assert_eq!((taken.records, taken.bytes, taken.errors), (2, 20, 4));
        assert_eq!(live.take(), Window::default());
    }
}
