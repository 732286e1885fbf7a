//! Delivery reports: one [`BatchCompletion`] per batch, shared by the [`DeliveryFuture`]s of its
//! records (an `Arc` clone per record, no channel per record).

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio::sync::Notify;

use super::accumulator::TopicPartition;
use crate::error::{Error, Result};

/// Where a batch landed: base offset (-1 when unknown, e.g. acks=0) and append time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchAck {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Broker append time (LogAppendTime topics), else -1.
    pub log_append_time: i64,
}

#[derive(Debug)]
struct Completed {
    result: Result<BatchAck>,
    at: Instant,
}

/// The outcome of one batch, set once by the sender and read by every record's future.
#[derive(Debug, Default)]
pub struct BatchCompletion {
    outcome: OnceLock<Completed>,
    notify: Notify,
}

impl BatchCompletion {
    /// Publishes the outcome (the first one wins) and wakes every waiter.
    pub fn complete(&self, result: Result<BatchAck>) {
        let _ = self.outcome.set(Completed {
            result,
            at: Instant::now(),
        });
        self.notify.notify_waiters();
    }

    /// The outcome, if the batch is done.
    pub fn get(&self) -> Option<&Result<BatchAck>> {
        self.outcome.get().map(|c| &c.result)
    }

    /// When the outcome was published.
    pub fn completed_at(&self) -> Option<Instant> {
        self.outcome.get().map(|c| c.at)
    }

    /// Waits for the outcome.
    pub async fn wait(&self) -> &Result<BatchAck> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(done) = self.outcome.get() {
                return &done.result;
            }
            notified.await;
        }
    }
}

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset (base offset of the batch + index in it); -1 with acks=0.
    pub offset: i64,
    /// Create time, or the broker's append time for LogAppendTime topics.
    pub timestamp: i64,
}

/// Resolves once the record's batch is acknowledged (or has failed). `.await` it directly, or
/// check it without waiting ([`DeliveryFuture::try_result`]).
#[derive(Debug)]
#[must_use = "a delivery future reports whether the record was written"]
pub struct DeliveryFuture {
    pub(super) batch: Arc<BatchCompletion>,
    pub(super) tp: TopicPartition,
    pub(super) index: usize,
    pub(super) timestamp: i64,
    pub(super) sent_at: Instant,
}

impl DeliveryFuture {
    /// Waits for the outcome.
    pub async fn wait(self) -> Result<RecordMetadata> {
        let result = self.batch.wait().await;
        self.metadata(result)
    }

    /// Waits until the outcome is known, keeping the future (see [`DeliveryFuture::try_result`]).
    pub async fn ready(&self) {
        self.batch.wait().await;
    }

    /// Whether the outcome is known.
    pub fn is_done(&self) -> bool {
        self.batch.get().is_some()
    }

    /// The outcome if it is known, without waiting.
    pub fn try_result(&self) -> Option<Result<RecordMetadata>> {
        self.batch.get().map(|r| self.metadata(r))
    }

    /// When `send` was called for this record (before any wait for buffer memory).
    pub fn sent_at(&self) -> Instant {
        self.sent_at
    }

    /// The error, if the record failed (`None` while pending and after success).
    pub fn error(&self) -> Option<&Error> {
        self.batch.get()?.as_ref().err()
    }

    /// When the producer learnt the outcome (the response was handled): the moment a Java
    /// producer would run the record's callback. `None` until then.
    pub fn completed_at(&self) -> Option<Instant> {
        self.batch.completed_at()
    }

    fn metadata(&self, result: &Result<BatchAck>) -> Result<RecordMetadata> {
        let ack = result.as_ref().map_err(Error::clone)?;
        let index = i64::try_from(self.index).unwrap_or(i64::MAX);
        Ok(RecordMetadata {
            topic: self.tp.topic.clone(),
            partition: self.tp.partition,
            offset: if ack.base_offset >= 0 {
                ack.base_offset + index
            } else {
                -1
            },
            timestamp: if ack.log_append_time >= 0 {
                ack.log_append_time
            } else {
                self.timestamp
            },
        })
    }
}

impl IntoFuture for DeliveryFuture {
    type Output = Result<RecordMetadata>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.wait())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_waiter_sees_the_first_outcome() {
        let batch = Arc::new(BatchCompletion::default());
        let future = |index| DeliveryFuture {
            batch: batch.clone(),
            tp: TopicPartition::new("t", 2),
            index,
            timestamp: 5,
            sent_at: Instant::now(),
        };
        let (a, b) = (future(0), future(3));
        assert!(!a.is_done() && a.try_result().is_none() && a.completed_at().is_none());
        let waiting = tokio::spawn(b.wait());
        tokio::task::yield_now().await;
        batch.complete(Ok(BatchAck {
            base_offset: 10,
            log_append_time: -1,
        }));
        batch.complete(Err(Error::Closed));
        let b = waiting.await.unwrap().unwrap();
        assert_eq!((b.partition, b.offset, b.timestamp), (2, 13, 5));
        assert_eq!(a.try_result().unwrap().unwrap().offset, 10);
        assert!(a.completed_at().is_some());
    }
}
