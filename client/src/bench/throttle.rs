//! `--throughput`: when the next record may go, so that the rate never exceeds the target
//! (kafka-producer-perf-test's `ThroughputThrottler`, without its busy waits). Pure: the caller
//! sleeps until the instant it gets.

use std::time::{Duration, Instant};

/// Paces records to `per_sec` from `start`.
#[derive(Debug, Clone, Copy)]
pub struct Throttle {
    start: Instant,
    per_sec: f64,
}

impl Throttle {
    /// A throttle for `per_sec` records per second, or `None` for unlimited (any value <= 0,
    /// as Kafka's `-1`).
    pub fn new(per_sec: f64, start: Instant) -> Option<Throttle> {
        (per_sec > 0.0 && per_sec.is_finite()).then_some(Throttle { start, per_sec })
    }

    /// When record number `sent` (counting from 0) is due.
    pub fn due(&self, sent: u64) -> Instant {
        let secs = sent as f64 / self.per_sec;
        self.start + Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX / 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paces_evenly_and_unlimited_is_none() {
        let start = Instant::now();
        let t = Throttle::new(1000.0, start).unwrap();
        assert_eq!(t.due(0), start);
        assert_eq!(t.due(500), start + Duration::from_millis(500));
        assert_eq!(t.due(3000), start + Duration::from_secs(3));
        assert!(Throttle::new(-1.0, start).is_none());
        assert!(Throttle::new(0.0, start).is_none());
    }
}
