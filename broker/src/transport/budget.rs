//! The node's budget of request bytes (Kafka's `queued.max.request.bytes`, `--queued-max-request-bytes`):
//! a large request waits, before its body is read and its memory allocated, until the bytes of
//! the large requests being read or handled leave room for it. Both listeners ask it: the TCP
//! listener before it reads a frame's body, the mesh through [`RequestAdmission`] before the
//! request-response codec does. A [`Reservation`] is held until the request has been answered
//! (its frame stays referenced by the decoded request until then).
//!
//! Small requests never wait: a request of at most [`SMALL_REQUEST`] bytes, or a Fetch of at most
//! [`SMALL_FETCH`] (a follower's fetch of thousands of partitions), is counted but admitted at
//! once. So fetches, commits, heartbeats and metadata requests never queue behind large produce
//! requests, and a follower's fetch that an acks=all produce waits for can never be held up by
//! the budget that produce holds. What they use is bounded by the connections and the requests
//! in flight per connection, not by this budget.
//!
//! Waiting requests are admitted in arrival order (a fair semaphore).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::FutureExt;
use futures::future::BoxFuture;
use kafka_protocol::messages::ApiKey;
use rafka_mesh::{Admitted, RequestAdmission};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::limits::{self, Limit};
use crate::metrics;

/// Requests up to this size are admitted without waiting.
pub const SMALL_REQUEST: usize = 64 * 1024;
/// Fetch requests up to this size are admitted without waiting.
pub const SMALL_FETCH: usize = 1024 * 1024;

/// The node-wide budget of request bytes; cheap to clone.
#[derive(Clone, Debug)]
pub struct RequestBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limit: usize,
    large: Arc<Semaphore>,
    small_bytes: AtomicUsize,
}

/// Bytes of one admitted request, given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    bytes: usize,
    large: Option<OwnedSemaphorePermit>,
    small: Option<Arc<Inner>>,
}

impl Reservation {
    fn large(bytes: usize, permit: Option<OwnedSemaphorePermit>) -> Self {
        metrics::request_bytes_in_flight("large", bytes as f64);
        Self {
            bytes,
            large: permit,
            small: None,
        }
    }

    fn small(bytes: usize, inner: &Arc<Inner>) -> Self {
        inner.small_bytes.fetch_add(bytes, Ordering::Relaxed);
        metrics::request_bytes_in_flight("small", bytes as f64);
        Self {
            bytes,
            large: None,
            small: Some(inner.clone()),
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let kind = if let Some(inner) = self.small.take() {
            inner.small_bytes.fetch_sub(self.bytes, Ordering::Relaxed);
            "small"
        } else {
            "large"
        };
        metrics::request_bytes_in_flight(kind, -(self.bytes as f64));
        // A large reservation's permit goes back to the semaphore as it drops.
        self.large.take();
    }
}

impl RequestBudget {
    /// A budget of `limit` bytes (at least the largest request accepted, or that one would wait
    /// forever: the node's configuration checks it).
    pub fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            inner: Arc::new(Inner {
                limit,
                large: Arc::new(Semaphore::new(limit)),
                small_bytes: AtomicUsize::new(0),
            }),
        }
    }

    /// The budget, in bytes.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes of large requests admitted and not yet answered.
    pub fn large_in_use(&self) -> usize {
        self.inner.limit - self.inner.large.available_permits()
    }

    /// Bytes of small requests admitted and not yet answered (outside the budget).
    pub fn small_in_use(&self) -> usize {
        self.inner.small_bytes.load(Ordering::Relaxed)
    }

    /// Whether a request of `len` bytes starting with `head` is admitted without waiting.
    pub fn is_small(len: usize, head: &[u8]) -> bool {
        let fetch = matches!(head.get(..2), Some(&[a, b])
            if ApiKey::try_from(i16::from_be_bytes([a, b])) == Ok(ApiKey::Fetch));
        len <= SMALL_REQUEST || (fetch && len <= SMALL_FETCH)
    }

    /// Admits a request of `len` bytes whose first bytes are `head`: at once if it is small or
    /// the budget has room, otherwise once enough earlier requests have been answered.
    pub fn admit(&self, len: usize, head: &[u8]) -> BoxFuture<'static, Reservation> {
        if Self::is_small(len, head) {
            return std::future::ready(Reservation::small(len, &self.inner)).boxed();
        }
        // A frame never exceeds the budget (the configuration checks it); if it did, it would
        // wait for the whole budget rather than forever.
        let bytes = len.min(self.inner.limit);
        let permits = u32::try_from(bytes).unwrap_or(u32::MAX);
        // Acquired in arrival order: a request that would fit still waits behind an earlier one.
        let mut acquire = self.inner.large.clone().acquire_many_owned(permits).boxed();
        if let Some(permit) = (&mut acquire).now_or_never() {
            // The semaphore is never closed.
            return std::future::ready(Reservation::large(bytes, permit.ok())).boxed();
        }
        limits::hit(
            Limit::RequestBudget,
            format_args!(
                "a request of {len} bytes waits: {} of {} budgeted bytes in use",
                self.large_in_use(),
                self.inner.limit
            ),
        );
        async move { Reservation::large(bytes, acquire.await.ok()) }.boxed()
    }
}

impl RequestAdmission for RequestBudget {
    fn admit(&self, len: usize, head: &[u8]) -> BoxFuture<'static, Admitted> {
        RequestBudget::admit(self, len, head)
            .map(|reservation| Box::new(reservation) as Admitted)
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const PRODUCE: [u8; 2] = [0, 0];
    const FETCH: [u8; 2] = [0, 1];

    fn pending(future: &mut BoxFuture<'static, Reservation>) -> bool {
        future.now_or_never().is_none()
    }

    #[tokio::test]
    async fn large_requests_wait_for_room_and_are_admitted_in_order() {
        let budget = RequestBudget::new(1000 * 1024);
        let first = budget.admit(600 * 1024, &PRODUCE).await;
        assert_eq!(budget.large_in_use(), 600 * 1024);
        let mut second = budget.admit(500 * 1024, &PRODUCE);
        let mut third = budget.admit(300 * 1024, &PRODUCE);
        // 600 + 500 > 1000: the second waits, and the third waits behind it although it would fit.
        assert!(pending(&mut second));
        assert!(pending(&mut third));
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("admitted once the first was answered");
        let third = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("500 + 300 fit");
        assert_eq!(budget.large_in_use(), 800 * 1024);
        drop((second, third));
        assert_eq!(budget.large_in_use(), 0);
    }

    #[tokio::test]
    async fn small_requests_and_fetches_never_wait_and_are_counted_apart() {
        let budget = RequestBudget::new(200 * 1024);
        let _full = budget.admit(200 * 1024, &PRODUCE).await;
        let mut produce = budget.admit(SMALL_REQUEST + 1, &PRODUCE);
        assert!(pending(&mut produce), "a large produce waits");
        let small = budget.admit(SMALL_REQUEST, &PRODUCE).now_or_never();
        let fetch = budget.admit(SMALL_FETCH, &FETCH).now_or_never();
        assert!(small.is_some() && fetch.is_some(), "admitted at once");
        assert_eq!(budget.small_in_use(), SMALL_REQUEST + SMALL_FETCH);
        let mut huge_fetch = budget.admit(SMALL_FETCH + 1, &FETCH);
        assert!(
            pending(&mut huge_fetch),
            "a fetch over the small size waits"
        );
        drop((small, fetch));
        assert_eq!(budget.small_in_use(), 0);
        assert_eq!(budget.large_in_use(), 200 * 1024);
    }

    #[test]
    fn a_request_is_small_by_its_size_or_by_being_a_fetch() {
        assert!(RequestBudget::is_small(10, &[]));
        assert!(RequestBudget::is_small(SMALL_FETCH, &FETCH));
        assert!(!RequestBudget::is_small(SMALL_FETCH, &PRODUCE));
        assert!(!RequestBudget::is_small(SMALL_FETCH, &[0]));
    }
}
