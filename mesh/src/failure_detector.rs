//! Phi-accrual failure detection (Hayashibara et al. 2004, as in Akka and Cassandra), pure: the
//! caller passes `now` in every call, so nothing here reads a clock.
//!
//! Per peer, an [`ArrivalWindow`] keeps the last `window_size` intervals between heartbeats (a
//! heartbeat is a *counter increase*, however it reached us, dated from when the peer sent it as
//! best known: on arrival when it came from the peer itself, earlier by the age the relaying peer
//! reports when it came through anti-entropy). `phi(now)` says how unlikely it is, under a normal
//! distribution fitted to those intervals, that the next heartbeat is merely late:
//! `phi = -log10(P(interval > elapsed))`. A [`PeerDetector`] turns phi into [`Liveness`]:
//! `Alive` → `Suspect` once phi reaches `phi_suspect`, → `Dead` after `dead_after` of
//! uninterrupted suspicion; a heartbeat recent enough brings it back to `Alive`. Since phi only
//! grows between heartbeats, the moment it will cross the threshold is computed when a heartbeat
//! arrives ([`FailureDetectorConfig::suspect_sigmas`]), and checking a peer is a comparison.
//!
//! # Detection time at the defaults
//!
//! Heartbeats every 1 s give intervals of ~1 s with a small spread, so the standard deviation is
//! floored by `min_std_dev` (250 ms). phi reaches 8 when `P(interval > t) = 1e-8`, i.e. when
//! `t = mean + 5.23 σ` (5.23 solves the logistic approximation below for phi = 8), so a peer is
//! suspected 1 s + 5.23 × 0.25 s ≈ **2.3 s** after it sent its last heartbeat, and declared dead
//! `dead_after` (1.5 s) later: **≈ 3.8 s**. A crashed node sent its last heartbeat 0-1 s before
//! crashing, so every peer declares it dead **2.8-3.8 s after the crash**, plus up to one tick of
//! the caller (100 ms) and a network hop. Relayed heartbeats are dated from when they were sent,
//! so a peer that missed the last broadcast and got it later through anti-entropy is not late.
//! The margin to 5 s (~1.1 s) absorbs a window whose spread grew with loss: at 10 % loss the
//! mean is ~1.1 s and σ ~0.3 s, giving 2.7 s + 1.5 s = 4.2 s after the last heartbeat.
//!
//! The other way round, a live peer is declared dead only after ~3.8 s with no heartbeat by any
//! path: two lost broadcasts in a row and no anti-entropy news make it suspect (the membership
//! core then probes it directly), and staying suspect for 1.5 s more takes several more losses on
//! every path at once.
//!
//! # Flaws of the reference avoided
//!
//! chitchat's detector reads `Instant::now()` itself and models intervals as exponential
//! (`phi = elapsed / mean`), which with a 1 s heartbeat and phi 8 takes 8 s to suspect; here time
//! is an argument and the normal approximation with a floor on σ makes the bound explicit.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::MeshError;

/// Tuning of the phi-accrual detector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailureDetectorConfig {
    /// phi at or above which a peer becomes suspect (Akka and chitchat use 8).
    pub phi_suspect: f64,
    /// How long a peer stays suspect, with no heartbeat, before it is declared dead.
    pub dead_after_ms: u64,
    /// Heartbeat intervals kept per peer.
    pub window_size: usize,
    /// Floor of the standard deviation of intervals, so a perfectly regular peer is not
    /// suspected the moment one heartbeat is a little late.
    pub min_std_dev_ms: u64,
    /// The interval assumed for a peer never heard twice: the window starts with two samples at
    /// 0.5× and 1.5× this value (mean = this value, σ = half of it), so a new peer is not
    /// suspected before it has had a chance to heartbeat.
    pub initial_interval_ms: u64,
    /// Intervals longer than this are not sampled (a peer back from a partition would otherwise
    /// skew the mean for a whole window).
    pub max_interval_ms: u64,
}

impl Default for FailureDetectorConfig {
    fn default() -> Self {
        Self {
            phi_suspect: 8.0,
            dead_after_ms: 1_500,
            window_size: 100,
            min_std_dev_ms: 250,
            initial_interval_ms: 1_000,
            max_interval_ms: 10_000,
        }
    }
}

impl FailureDetectorConfig {
    /// Checks the values make sense.
    pub fn validate(&self) -> Result<(), MeshError> {
        let bad = |m: String| Err(MeshError::Config(format!("failure detector: {m}")));
        if !self.phi_suspect.is_finite() || !(1.0..=30.0).contains(&self.phi_suspect) {
            return bad(format!(
                "phi_suspect {} is outside 1..=30",
                self.phi_suspect
            ));
        }
        if self.window_size < 2 {
            return bad(format!("window_size {} is below 2", self.window_size));
        }
        if self.min_std_dev_ms == 0 || self.initial_interval_ms == 0 {
            return bad("min_std_dev_ms and initial_interval_ms must be positive".into());
        }
        if self.max_interval_ms <= self.initial_interval_ms {
            return bad("max_interval_ms must exceed initial_interval_ms".into());
        }
        Ok(())
    }

    /// [`Self::dead_after_ms`] as a `Duration`.
    pub fn dead_after(&self) -> Duration {
        Duration::from_millis(self.dead_after_ms)
    }

    /// How many standard deviations above the mean interval phi reaches `phi_suspect` (5.23 for
    /// 8): the real root of the cubic `0.070566 y³ + 1.5976 y + ln(P / (1 - P)) = 0`, with
    /// `P = 10^-phi`, by Cardano's formula. With it, the time a peer becomes suspect is known
    /// when its heartbeat arrives, instead of computing phi for every peer at every tick.
    pub fn suspect_sigmas(&self) -> f64 {
        let p_late = 10f64.powf(-self.phi_suspect);
        let log_odds = p_late.ln() - (-p_late).ln_1p();
        let (a, b) = (1.5976, 0.070566);
        let (p, q) = (a / b, log_odds / b);
        let root = (q * q / 4.0 + p * p * p / 27.0).sqrt();
        (-q / 2.0 + root).cbrt() + (-q / 2.0 - root).cbrt()
    }
}

/// Intervals between heartbeat arrivals of one peer, and when the last one arrived.
#[derive(Clone, Debug)]
pub struct ArrivalWindow {
    intervals: VecDeque<f64>,
    capacity: usize,
    sum: f64,
    sum_of_squares: f64,
    /// Pushes since the sums were last recomputed from scratch (bounding float drift).
    pushes: usize,
    mean: f64,
    std_dev: f64,
    last_arrival: Duration,
}

impl ArrivalWindow {
    /// A window for a peer first heard of at `now`, bootstrapped from `initial_interval_ms`.
    pub fn new(now: Duration, config: &FailureDetectorConfig) -> Self {
        let initial = config.initial_interval_ms as f64;
        let mut window = Self {
            intervals: VecDeque::with_capacity(config.window_size.min(1024)),
            capacity: config.window_size.max(2),
            sum: 0.0,
            sum_of_squares: 0.0,
            pushes: 0,
            mean: 0.0,
            std_dev: 0.0,
            last_arrival: now,
        };
        window.push(initial * 0.5);
        window.push(initial * 1.5);
        window
    }

    /// Records a heartbeat sent (as best known) at `sent`. One dated no later than the previous
    /// one (an estimate off by a hop's latency) moves nothing and is not sampled.
    pub fn heartbeat(&mut self, sent: Duration, config: &FailureDetectorConfig) {
        if sent <= self.last_arrival {
            return;
        }
        let interval = (sent - self.last_arrival).as_secs_f64() * 1000.0;
        if interval <= config.max_interval_ms as f64 {
            self.push(interval);
        }
        self.last_arrival = sent;
    }

    /// When the last heartbeat arrived.
    pub fn last_arrival(&self) -> Duration {
        self.last_arrival
    }

    /// Mean and standard deviation of the sampled intervals, in milliseconds.
    pub fn stats(&self) -> (f64, f64) {
        (self.mean, self.std_dev)
    }

    /// phi at `now`: 0 right after a heartbeat, growing while none arrives.
    pub fn phi(&self, now: Duration, config: &FailureDetectorConfig) -> f64 {
        let elapsed = now.saturating_sub(self.last_arrival).as_secs_f64() * 1000.0;
        phi(
            elapsed,
            self.mean,
            self.std_dev.max(config.min_std_dev_ms as f64),
        )
    }

    /// When phi reaches `phi_suspect` if no heartbeat arrives before.
    pub fn suspect_at(&self, config: &FailureDetectorConfig) -> Duration {
        let std_dev = self.std_dev.max(config.min_std_dev_ms as f64);
        let after_ms = self.mean + config.suspect_sigmas() * std_dev;
        self.last_arrival + Duration::from_secs_f64(after_ms.max(0.0) / 1000.0)
    }

    fn push(&mut self, interval: f64) {
        if self.intervals.len() >= self.capacity
            && let Some(old) = self.intervals.pop_front()
        {
            self.sum -= old;
            self.sum_of_squares -= old * old;
        }
        self.intervals.push_back(interval);
        self.sum += interval;
        self.sum_of_squares += interval * interval;
        self.pushes += 1;
        if self.pushes >= self.capacity {
            self.pushes = 0;
            self.sum = self.intervals.iter().sum();
            self.sum_of_squares = self.intervals.iter().map(|i| i * i).sum();
        }
        let n = self.intervals.len() as f64;
        self.mean = self.sum / n;
        self.std_dev = (self.sum_of_squares / n - self.mean * self.mean)
            .max(0.0)
            .sqrt();
    }
}

/// phi for `elapsed` given the interval distribution, by the logistic approximation of the normal
/// CDF that Akka uses (error below 1.4e-4): `P(X > t) ≈ e / (1 + e)`,
/// `e = exp(-y (1.5976 + 0.070566 y²))`, `y = (t - mean) / σ`.
pub fn phi(elapsed: f64, mean: f64, std_dev: f64) -> f64 {
    if std_dev <= 0.0 || !std_dev.is_finite() {
        return 0.0;
    }
    let y = (elapsed - mean) / std_dev;
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    let value = if elapsed > mean {
        -(e / (1.0 + e)).log10()
    } else {
        -(1.0 - 1.0 / (1.0 + e)).log10()
    };
    // NaN (never expected) counts as "no evidence of failure"; +inf stays +inf.
    value.max(0.0)
}

/// What the detector concludes about a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Liveness {
    /// Heartbeats arrive as expected.
    Alive,
    /// phi crossed the threshold; not yet for long.
    Suspect,
    /// Suspect for `dead_after` with no heartbeat.
    Dead,
}

/// The detector of one peer: its arrival window and its current [`Liveness`].
#[derive(Clone, Debug)]
pub struct PeerDetector {
    window: ArrivalWindow,
    liveness: Liveness,
    since: Duration,
    /// When phi reaches the threshold, absent a heartbeat (computed at each arrival).
    suspect_at: Duration,
}

impl PeerDetector {
    /// A detector for a peer first heard of at `now`, alive.
    pub fn new(now: Duration, config: &FailureDetectorConfig) -> Self {
        let window = ArrivalWindow::new(now, config);
        Self {
            suspect_at: window.suspect_at(config),
            window,
            liveness: Liveness::Alive,
            since: now,
        }
    }

    /// Current liveness.
    pub fn liveness(&self) -> Liveness {
        self.liveness
    }

    /// When the current liveness began.
    pub fn since(&self) -> Duration {
        self.since
    }

    /// The arrival window.
    pub fn window(&self) -> &ArrivalWindow {
        &self.window
    }

    /// Records, at `now`, a heartbeat sent at `sent` (as best known: `now` when it came straight
    /// from the peer, earlier when relayed). Returns the old liveness if it changed: a suspect or
    /// dead peer is alive again, unless the news is already too old to keep it from suspicion.
    /// A dead peer's window starts afresh: the silence that killed it says nothing about its
    /// heartbeat rhythm.
    pub fn heartbeat(
        &mut self,
        sent: Duration,
        now: Duration,
        config: &FailureDetectorConfig,
    ) -> Option<Liveness> {
        match self.liveness {
            Liveness::Dead => self.window = ArrivalWindow::new(sent, config),
            Liveness::Alive | Liveness::Suspect => self.window.heartbeat(sent, config),
        }
        self.suspect_at = self.window.suspect_at(config);
        if now < self.suspect_at {
            self.set(Liveness::Alive, now)
        } else {
            None
        }
    }

    /// Shifts the detector's clock by `by`: this node itself stopped (a stall of its event loop,
    /// a paused process), so the silence it saw says nothing about the peer.
    pub fn pause(&mut self, by: Duration) {
        self.window.last_arrival += by;
        self.suspect_at += by;
        self.since += by;
    }

    /// Re-evaluates at `now` (cheap: a comparison while alive). Returns the old liveness if it
    /// changed.
    pub fn check(&mut self, now: Duration, config: &FailureDetectorConfig) -> Option<Liveness> {
        match self.liveness {
            Liveness::Alive if now >= self.suspect_at => self.set(Liveness::Suspect, now),
            Liveness::Suspect if now.saturating_sub(self.since) >= config.dead_after() => {
                self.set(Liveness::Dead, now)
            }
            _ => None,
        }
    }

    fn set(&mut self, liveness: Liveness, now: Duration) -> Option<Liveness> {
        let old = self.liveness;
        if old == liveness {
            return None;
        }
        self.liveness = liveness;
        self.since = now;
        Some(old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// Feeds heartbeats every `interval` ms from 0 to `until` ms; returns the detector.
    fn regular(interval: u64, until: u64, config: &FailureDetectorConfig) -> PeerDetector {
        let mut d = PeerDetector::new(ms(0), config);
        let mut t = interval;
        while t <= until {
            d.heartbeat(ms(t), ms(t), config);
            t += interval;
        }
        d
    }

    /// First time (ms, 10 ms steps after `from`) the detector reaches `target`.
    fn first_time(
        d: &mut PeerDetector,
        from: u64,
        target: Liveness,
        c: &FailureDetectorConfig,
    ) -> u64 {
        let mut t = from;
        while d.liveness() != target {
            t += 10;
            d.check(ms(t), c);
            assert!(t < from + 60_000, "never reached {target:?}");
        }
        t - from
    }

    #[test]
    fn phi_is_zero_at_the_mean_side_and_grows() {
        assert!(phi(0.0, 1000.0, 250.0) < 0.01);
        let at_mean = phi(1000.0, 1000.0, 250.0);
        assert!((at_mean - 0.301).abs() < 0.01, "{at_mean}");
        let mut last = 0.0;
        for t in (1000..4000).step_by(100) {
            let p = phi(t as f64, 1000.0, 250.0);
            assert!(p >= last);
            last = p;
        }
        // 5.23 σ above the mean is phi 8 (the arithmetic in the module doc).
        let p = phi(1000.0 + 5.23 * 250.0, 1000.0, 250.0);
        assert!((p - 8.0).abs() < 0.1, "{p}");
        assert!(phi(1e9, 1000.0, 250.0).is_infinite());
        assert_eq!(phi(10.0, 1000.0, 0.0), 0.0);
        assert_eq!(phi(f64::NAN, 1000.0, 250.0), 0.0);
    }

    #[test]
    fn the_suspect_deadline_is_where_phi_crosses_the_threshold() {
        for phi_suspect in [1.0, 3.0, 8.0, 12.0, 16.0] {
            let c = FailureDetectorConfig {
                phi_suspect,
                ..FailureDetectorConfig::default()
            };
            let y = c.suspect_sigmas();
            let p = phi(1000.0 + y * 250.0, 1000.0, 250.0);
            assert!(
                (p - phi_suspect).abs() < 1e-6,
                "{phi_suspect}: y {y}, phi {p}"
            );
            let mut d = regular(1000, 30_000, &c);
            let at = d.window().suspect_at(&c);
            assert!(d.window().phi(at - ms(2), &c) < phi_suspect);
            assert!(d.window().phi(at + ms(2), &c) >= phi_suspect);
            assert_eq!(d.check(at - ms(1), &c), None);
            assert_eq!(d.check(at, &c), Some(Liveness::Alive));
        }
        let y = FailureDetectorConfig::default().suspect_sigmas();
        assert!((y - 5.23).abs() < 0.01, "{y}");
    }

    #[test]
    fn running_sums_match_a_recomputation() {
        let c = FailureDetectorConfig {
            window_size: 7,
            ..FailureDetectorConfig::default()
        };
        let mut w = ArrivalWindow::new(ms(0), &c);
        let mut t = 0;
        for i in 0..1_000u64 {
            t += 500 + (i * 7919) % 1000;
            w.heartbeat(ms(t), &c);
            let n = w.intervals.len() as f64;
            let mean = w.intervals.iter().sum::<f64>() / n;
            let var = w.intervals.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
            assert!((w.stats().0 - mean).abs() < 1e-6);
            assert!((w.stats().1 - var.sqrt()).abs() < 1e-3);
        }
    }

    #[test]
    fn regular_heartbeats_stay_alive() {
        let c = FailureDetectorConfig::default();
        let mut d = regular(1000, 60_000, &c);
        for t in (60_000..61_900).step_by(50) {
            assert_eq!(d.check(ms(t), &c), None, "at {t}");
        }
        assert_eq!(d.liveness(), Liveness::Alive);
    }

    #[test]
    fn a_silent_peer_is_suspect_then_dead_within_the_documented_bounds() {
        let c = FailureDetectorConfig::default();
        let mut d = regular(1000, 60_000, &c);
        let suspect = first_time(&mut d, 60_000, Liveness::Suspect, &c);
        assert!(
            (2_200..=2_500).contains(&suspect),
            "suspect after {suspect} ms"
        );
        let dead = first_time(&mut d, 60_000, Liveness::Dead, &c);
        assert!((3_700..=4_000).contains(&dead), "dead after {dead} ms");
    }

    #[test]
    fn a_new_peer_is_not_suspected_before_twice_the_initial_interval() {
        let c = FailureDetectorConfig::default();
        let mut d = PeerDetector::new(ms(0), &c);
        let suspect = first_time(&mut d, 0, Liveness::Suspect, &c);
        assert!(suspect > 3_000, "suspect after {suspect} ms");
    }

    #[test]
    fn heartbeat_revives_and_dead_resets_the_window() {
        let c = FailureDetectorConfig::default();
        let mut d = regular(1000, 10_000, &c);
        first_time(&mut d, 10_000, Liveness::Dead, &c);
        assert_eq!(
            d.heartbeat(ms(30_000), ms(30_000), &c),
            Some(Liveness::Dead)
        );
        assert_eq!(d.liveness(), Liveness::Alive);
        assert_eq!(d.since(), ms(30_000));
        // A fresh window: the 20 s silence was not sampled.
        let (mean, _) = d.window().stats();
        assert!((mean - 1000.0).abs() < 1e-9, "{mean}");
        // Suspect → Alive too.
        let mut d = regular(1000, 10_000, &c);
        first_time(&mut d, 10_000, Liveness::Suspect, &c);
        assert_eq!(
            d.heartbeat(ms(12_600), ms(12_600), &c),
            Some(Liveness::Suspect)
        );
        assert_eq!(d.heartbeat(ms(13_600), ms(13_600), &c), None);
    }

    #[test]
    fn old_news_does_not_revive_and_relayed_heartbeats_count_from_when_they_were_sent() {
        let c = FailureDetectorConfig::default();
        let mut d = regular(1000, 10_000, &c);
        first_time(&mut d, 10_000, Liveness::Dead, &c);
        // Sent at 10.2 s, learnt at 14 s: the news is older than a fresh window tolerates.
        assert_eq!(d.heartbeat(ms(10_200), ms(14_000), &c), None);
        assert_eq!(d.liveness(), Liveness::Dead);
        // Sent at 12.5 s, relayed to arrive at 12.9 s: alive, the clock running from 12.5 s.
        let mut d = regular(1000, 10_000, &c);
        first_time(&mut d, 10_000, Liveness::Suspect, &c);
        assert_eq!(
            d.heartbeat(ms(12_500), ms(12_900), &c),
            Some(Liveness::Suspect)
        );
        assert_eq!(d.window().last_arrival(), ms(12_500));
        let at = d.window().suspect_at(&c);
        assert_eq!(d.check(at - ms(1), &c), None);
        assert_eq!(d.check(at, &c), Some(Liveness::Alive));
    }

    #[test]
    fn a_pause_of_the_observer_is_not_blamed_on_the_peer() {
        let c = FailureDetectorConfig::default();
        let mut d = regular(1000, 10_000, &c);
        d.pause(ms(5_000));
        assert_eq!(d.check(ms(15_000), &c), None);
        assert_eq!(d.check(ms(17_400), &c), Some(Liveness::Alive));
    }

    #[test]
    fn long_intervals_are_not_sampled_and_the_window_is_bounded() {
        let c = FailureDetectorConfig {
            window_size: 10,
            ..FailureDetectorConfig::default()
        };
        let mut w = ArrivalWindow::new(ms(0), &c);
        w.heartbeat(ms(50_000), &c);
        assert!((w.stats().0 - 1000.0).abs() < 1e-9);
        for i in 1..=100 {
            w.heartbeat(ms(50_000 + i * 500), &c);
        }
        let (mean, std_dev) = w.stats();
        assert!((mean - 500.0).abs() < 1e-9 && std_dev < 1e-9);
        assert_eq!(w.last_arrival(), ms(100_000));
        // Time going backwards is harmless.
        w.heartbeat(ms(10), &c);
        assert_eq!(w.last_arrival(), ms(100_000));
    }

    #[test]
    fn jittery_heartbeats_adapt_the_threshold() {
        let c = FailureDetectorConfig::default();
        let mut d = PeerDetector::new(ms(0), &c);
        let mut t = 0;
        for i in 0..100u64 {
            t += if i % 2 == 0 { 600 } else { 1400 };
            d.heartbeat(ms(t), ms(t), &c);
        }
        let (_, std_dev) = d.window().stats();
        assert!(std_dev > 350.0, "{std_dev}");
        // A 2.3 s gap, which suspects a regular peer, does not suspect this one.
        assert_eq!(d.check(ms(t + 2_300), &c), None);
    }

    #[test]
    fn config_validation() {
        assert!(FailureDetectorConfig::default().validate().is_ok());
        for bad in [
            FailureDetectorConfig {
                phi_suspect: 0.5,
                ..Default::default()
            },
            FailureDetectorConfig {
                phi_suspect: f64::NAN,
                ..Default::default()
            },
            FailureDetectorConfig {
                window_size: 1,
                ..Default::default()
            },
            FailureDetectorConfig {
                min_std_dev_ms: 0,
                ..Default::default()
            },
            FailureDetectorConfig {
                max_interval_ms: 1_000,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
