//! The one way these tests wait: a condition polled until it holds or a deadline passes. On
//! timeout the test fails saying what it waited for and, when the condition can tell, what was
//! still wrong at the last poll. Never a fixed sleep in place of a condition.
//!
//! [`wait_until`] is for async tests (it yields to the runtime between polls, so an in-process
//! node on the same runtime keeps running); [`wait_until_blocking`] is for plain `#[test]`s that
//! drive processes. Both poll every 10 ms at first, backing off to every 100 ms.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// What one poll of a condition found: done, with a value, or not yet, with what is still wrong
/// (empty when the condition cannot say).
pub trait Check {
    type Value;
    fn check(self) -> Result<Self::Value, String>;
}

impl Check for bool {
    type Value = ();
    fn check(self) -> Result<(), String> {
        if self { Ok(()) } else { Err(String::new()) }
    }
}

impl<T> Check for Option<T> {
    type Value = T;
    fn check(self) -> Result<T, String> {
        self.ok_or_else(String::new)
    }
}

impl<T, E: Display> Check for Result<T, E> {
    type Value = T;
    fn check(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// Polls `condition` until it holds and returns its value; panics with `what` (and the
/// condition's last complaint) once `timeout` has passed.
pub async fn wait_until<C: Check>(
    timeout: Duration,
    what: &str,
    mut condition: impl AsyncFnMut() -> C,
) -> C::Value {
    let mut polls = Polls::new(timeout, what);
    loop {
        match condition().await.check() {
            Ok(value) => return value,
            Err(last) => tokio::time::sleep(polls.next(&last)).await,
        }
    }
}

/// [`wait_until`] for tests that are not async: the thread sleeps between polls.
pub fn wait_until_blocking<C: Check>(
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut() -> C,
) -> C::Value {
    let mut polls = Polls::new(timeout, what);
    loop {
        match condition().check() {
            Ok(value) => return value,
            Err(last) => std::thread::sleep(polls.next(&last)),
        }
    }
}

/// The deadline and the pause before the next poll.
struct Polls<'a> {
    what: &'a str,
    timeout: Duration,
    started: Instant,
    pause: Duration,
}

impl<'a> Polls<'a> {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_millis(100);

    fn new(timeout: Duration, what: &'a str) -> Self {
        Polls {
            what,
            timeout,
            started: Instant::now(),
            pause: Self::FIRST,
        }
    }

    /// The pause before the next poll, after a poll that found `last` still wrong; panics if the
    /// deadline has passed.
    fn next(&mut self, last: &str) -> Duration {
        let (what, timeout) = (self.what, self.timeout);
        assert!(
            self.started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}{}{last}",
            if last.is_empty() { "" } else { "; last: " }
        );
        let pause = self.pause;
        self.pause = (pause * 2).min(Self::MAX);
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_the_condition_holds() {
        let mut polls = 0;
        let value = wait_until_blocking(Duration::from_secs(5), "the third poll", || {
            polls += 1;
            (polls == 3).then_some(polls)
        });
        assert_eq!(value, 3);
    }

    #[test]
    #[should_panic(expected = "waiting for a condition that never holds; last: still 7")]
    fn times_out_saying_what_was_awaited_and_what_was_wrong() {
        wait_until_blocking(
            Duration::from_millis(50),
            "a condition that never holds",
            || Err::<(), _>("still 7"),
        );
    }
}
