//! [`NodeEnv`]: the partition shells' environment on a running node: the store's logs, tokio's
//! clock and tasks, Kafka requests to leaders over the mesh ([`MeshLink`]) and ISR proposals to
//! the Raft metadata log.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rafka_store::{PartitionLog, Store, TopicPartition};
use tokio::sync::Mutex;

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
}

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
