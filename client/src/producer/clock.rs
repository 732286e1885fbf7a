//! Record timestamps without a wall-clock read per record: the wall time is derived from the
//! monotonic instant `send` already takes, and re-read from the system clock every second (so
//! a clock step shows within a second, and drift between the two clocks stays far below 1 ms).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a wall-clock reading is extrapolated.
const RESYNC_EVERY: Duration = Duration::from_secs(1);

/// Milliseconds since the epoch, derived from `Instant`s.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    base: Instant,
    base_ms: i64,
}

impl WallClock {
    /// A clock synchronised now.
    pub fn new(now: Instant) -> Self {
        WallClock {
            base: now,
            base_ms: system_ms(),
        }
    }

    /// The wall time at `now`, in ms since the epoch.
    pub fn ms(&mut self, now: Instant) -> i64 {
        let since = now.saturating_duration_since(self.base);
        if since >= RESYNC_EVERY || now < self.base {
            *self = WallClock::new(now);
            return self.base_ms;
        }
        self.base_ms + i64::try_from(since.as_millis()).unwrap_or(0)
    }
}

/// The system clock in ms since the epoch.
pub fn system_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_system_clock() {
        let start = Instant::now();
        let mut clock = WallClock::new(start);
        let a = clock.ms(start);
        assert!((a - system_ms()).abs() < 50);
        assert_eq!(clock.ms(start + Duration::from_millis(250)), a + 250);
        // Past the resync interval the system clock is read again.
        let later = clock.ms(start + Duration::from_secs(5));
        assert!((later - system_ms()).abs() < 50, "{later}");
    }
}
