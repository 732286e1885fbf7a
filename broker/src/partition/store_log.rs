//! The store's [`PartitionLog`] as the cores read it ([`LocalLog`]: in-memory offsets and the
//! leader-epoch cache) and as the shells write it ([`ReplicaLog`]; truncations run on the
//! blocking pool, as every fjall call that may wait).

use std::future::Future;

use bytes::Bytes;
use rafka_store::{AppendOptions, Appended, PartitionLog, ProducedBatch, StoreError};

use super::core::LocalLog;
use super::env::{Refused, ReplicaLog};
use crate::ids::{LeaderEpoch, Offset};

impl LocalLog for PartitionLog {
    fn log_start_offset(&self) -> Offset {
        Offset(PartitionLog::log_start_offset(self))
    }

    fn log_end_offset(&self) -> Offset {
        Offset(PartitionLog::log_end_offset(self))
    }

    fn high_watermark(&self) -> Offset {
        Offset(PartitionLog::high_watermark(self))
    }

    fn last_stable_offset(&self) -> Offset {
        Offset(PartitionLog::last_stable_offset(self))
    }

    fn latest_epoch(&self) -> Option<LeaderEpoch> {
        PartitionLog::latest_epoch(self).map(LeaderEpoch)
    }

    fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        PartitionLog::end_offset_for_epoch(self, epoch.0)
            .map(|(epoch, end)| (LeaderEpoch(epoch), Offset(end)))
    }
}

impl ReplicaLog for PartitionLog {
    type Batch = ProducedBatch;
    type Records = Bytes;

    fn append(
        &self,
        batch: ProducedBatch,
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send + 'static {
        let options = AppendOptions {
            leader_epoch: leader_epoch.0,
            now_ms,
        };
        self.append_produced(batch, options)
    }

    fn append_replicated(
        &self,
        records: Bytes,
    ) -> impl Future<Output = Result<(), Refused>> + Send + 'static {
        let appending = PartitionLog::append_replicated(self, records);
        async move {
            // The store verifies every batch before it appends any: nothing was appended.
            appending.await.map(drop).map_err(|e| Refused {
                at: None,
                reason: e.to_string(),
            })
        }
    }

    fn is_empty(records: &Bytes) -> bool {
        records.is_empty()
    }

    fn truncate_to(
        &self,
        offset: Offset,
    ) -> impl Future<Output = Result<Offset, StoreError>> + Send + 'static {
        let log = self.clone();
        blocking(move || log.truncate_to(offset.0).map(Offset))
    }

    fn reset_to(
        &self,
        offset: Offset,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let log = self.clone();
        blocking(move || log.reset_to(offset.0))
    }

    fn advance_high_watermark(&self, offset: Offset) -> Result<(), StoreError> {
        PartitionLog::advance_high_watermark(self, offset.0)
    }
}

/// Runs a store call that may wait for the writer thread on the blocking pool.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|e| Err(StoreError::Io(std::io::Error::other(format!("{e}")))))
}
