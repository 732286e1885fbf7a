//! [`NodeEnv`]: the partition shells' environment on a running node: the store's logs, tokio's
//! clock and tasks, Kafka requests to leaders over the mesh ([`MeshLink`]) and ISR proposals to
//! the Raft metadata log.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rafka_store::{PartitionLog, Store, TopicPartition};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::core::{AlterPartition, AlterPartitionRefusal, EpochEndOffset, LeaderOffsets};
use super::env::{Env, Fetched, LinkError, ProposalError};
use super::mesh_link::MeshLink;
use crate::ids::{LeaderEpoch, NodeId, Offset};
use crate::metadata::{IsrMember, Metadata, MetadataCommand, MetadataError, TopicDefaults};

/// The production [`Env`] (cheap to clone).
#[derive(Clone)]
pub struct NodeEnv {
    inner: Arc<Inner>,
}

struct Inner {
    started: Instant,
    metadata: Metadata,
    link: MeshLink,
    store: Store,
    defaults: TopicDefaults,
    /// The version of the last metadata image applied to the partitions.
    pub(super) applied: Mutex<u64>,
    /// Partition logs no longer assigned here, deleted in the background.
    doomed: Mutex<BTreeSet<TopicPartition>>,
    /// Whether a task is deleting the doomed logs.
    deleting: AtomicBool,
}

/// Doomed partition logs deleted by the background task before it lets an image be applied.
const DELETE_BATCH: usize = 32;

impl NodeEnv {
    /// The environment of a node with `store`, proposing to `metadata` and reaching leaders
    /// through `link`; `defaults` are the node's topic defaults.
    pub fn new(metadata: Metadata, link: MeshLink, store: Store, defaults: TopicDefaults) -> Self {
        Self {
            inner: Arc::new(Inner {
                started: Instant::now(),
                metadata,
                link,
                store,
                defaults,
                applied: Mutex::new(0),
                doomed: Mutex::new(BTreeSet::new()),
                deleting: AtomicBool::new(false),
            }),
        }
    }

    /// The partition store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The node's topic defaults.
    pub fn defaults(&self) -> &TopicDefaults {
        &self.inner.defaults
    }

    /// The last applied metadata version, locked while an image is applied.
    pub(super) fn applied(&self) -> &Mutex<u64> {
        &self.inner.applied
    }

    /// The partition logs waiting to be deleted, locked while an image is applied to the store
    /// and while the background task deletes a batch of them.
    pub(super) fn doomed(&self) -> &Mutex<BTreeSet<TopicPartition>> {
        &self.inner.doomed
    }

    /// Deletes the doomed partition logs on a background task, a batch at a time, unless one is
    /// already doing so: a large deleted topic frees its logs without holding up the images
    /// applied meanwhile (each waits for one batch at most) or the requests that wait for them.
    /// Ends after the batch in hand once `stop` is cancelled; logs still on disk then are doomed
    /// again by the first image the node applies when it starts again.
    pub(super) fn delete_in_background(&self, stop: CancellationToken) {
        if self.inner.deleting.swap(true, Ordering::AcqRel) {
            return;
        }
        let env = self.clone();
        tokio::spawn(async move { env.delete_doomed(stop).await });
    }

    async fn delete_doomed(self, stop: CancellationToken) {
        loop {
            let mut doomed = self.inner.doomed.lock().await;
            if stop.is_cancelled() {
                return;
            }
            crate::metrics::partition_logs_doomed(doomed.len());
            let batch: Vec<TopicPartition> = doomed.iter().take(DELETE_BATCH).copied().collect();
            if batch.is_empty() {
                // Still under the lock: an image dooming more logs after this starts a new task.
                self.inner.deleting.store(false, Ordering::Release);
                return;
            }
            for tp in &batch {
                doomed.remove(tp);
            }
            let store = self.inner.store.clone();
            let deleted = tokio::task::spawn_blocking(move || {
                for tp in batch {
                    tracing::debug!(topic_id = %tp.topic_id, partition = tp.partition, "deleting partition log");
                    store.delete_partition(tp)?;
                }
                Ok::<_, rafka_store::StoreError>(())
            })
            .await;
            match deleted {
                Ok(Ok(())) => {}
                // A log left behind is doomed again by the next image applied.
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot delete a partition log"),
                Err(e) => tracing::warn!(error = %e, "partition log deletion task failed"),
            }
            drop(doomed);
            tokio::task::yield_now().await;
        }
    }
}

impl Env for NodeEnv {
    type Log = PartitionLog;

    fn now(&self) -> Duration {
        self.inner.started.elapsed()
    }

    fn sleep_until(&self, deadline: Duration) -> impl Future<Output = ()> + Send + 'static {
        let at = tokio::time::Instant::from_std(self.inner.started + deadline);
        tokio::time::sleep_until(at)
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(task);
    }

    fn propose(
        &self,
        tp: TopicPartition,
        proposal: AlterPartition,
    ) -> impl Future<Output = Result<(), ProposalError>> + Send + 'static {
        let metadata = self.inner.metadata.clone();
        let command = MetadataCommand::AlterPartition {
            topic_id: tp.topic_id,
            partition: tp.partition,
            leader: proposal.leader,
            leader_epoch: proposal.leader_epoch.0,
            partition_epoch: proposal.partition_epoch.0,
            isr: proposal
                .isr
                .iter()
                .map(|e| IsrMember {
                    node: e.node,
                    broker_epoch: e.broker_epoch.0,
                })
                .collect(),
        };
        async move {
            match metadata.propose(command).await {
                Ok(_) => Ok(()),
                Err(MetadataError::StalePartition(_)) => {
                    Err(ProposalError::Refused(AlterPartitionRefusal::StaleEpoch))
                }
                Err(MetadataError::IneligibleReplica(_)) => {
                    Err(ProposalError::Refused(AlterPartitionRefusal::Ineligible))
                }
                Err(e) => Err(ProposalError::NotCommitted(e.to_string())),
            }
        }
    }

    fn epoch_end(
        &self,
        leader: NodeId,
        tp: TopicPartition,
        current: LeaderEpoch,
        epoch: LeaderEpoch,
    ) -> impl Future<Output = Result<Option<EpochEndOffset>, LinkError>> + Send + 'static {
        let link = self.inner.link.clone();
        async move { link.epoch_end(leader, tp, current, epoch).await }
    }

    fn leader_offsets(
        &self,
        leader: NodeId,
        tp: TopicPartition,
        current: LeaderEpoch,
    ) -> impl Future<Output = Result<LeaderOffsets, LinkError>> + Send + 'static {
        let link = self.inner.link.clone();
        async move { link.leader_offsets(leader, tp, current).await }
    }

    fn fetch(
        &self,
        leader: NodeId,
        tp: TopicPartition,
        current: LeaderEpoch,
        offset: Offset,
    ) -> impl Future<Output = Result<Fetched<Bytes>, LinkError>> + Send + 'static {
        let link = self.inner.link.clone();
        async move { link.fetch(leader, tp, current, offset).await }
    }
}
