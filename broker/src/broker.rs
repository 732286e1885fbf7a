//! [`Broker`]: the context every handler reads. Each part synchronises itself; nothing here is a
//! lock around the whole.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rafka_store::{PartitionLog, Store, TopicPartition};
use tokio_util::sync::CancellationToken;

use crate::NodeConfig;
use crate::cluster::Cluster;
use crate::endpoint::Endpoint;
use crate::group::GroupOffsets;
use crate::ids::BrokerEpoch;
use crate::metadata::{Metadata, MetadataImage, NodeId, PartitionImage, TopicDefaults, TopicImage};
use crate::producer_ids::ProducerIds;
use crate::replica::Replicas;

/// This node, as registered in the metadata.
#[derive(Clone, Debug)]
pub struct LocalNode {
    /// Node id allocated by the metadata log.
    pub node_id: NodeId,
    /// Grows on every start.
    pub broker_epoch: BrokerEpoch,
    /// What Kafka clients are told to connect to.
    pub endpoint: Endpoint,
    /// libp2p peer id.
    pub peer_id: String,
}

/// Shared context of the request handlers (cheap to clone).
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    config: NodeConfig,
    local: LocalNode,
    parts: BrokerParts,
    defaults: TopicDefaults,
    shutdown: CancellationToken,
    ready: AtomicBool,
}

/// The services a broker is assembled from.
#[derive(Clone)]
pub struct BrokerParts {
    /// The metadata log.
    pub metadata: Metadata,
    /// The partition store.
    pub store: Store,
    /// Reconciles local partition logs with the metadata.
    pub replicas: Replicas,
    /// Committed group offsets.
    pub groups: GroupOffsets,
    /// Producer id allocation.
    pub producer_ids: ProducerIds,
    /// Liveness of nodes.
    pub cluster: Cluster,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("node", &self.inner.local)
            .finish()
    }
}

/// Where a partition stands from this node's point of view.
pub enum Leadership {
    /// This node leads it: the log and the partition's metadata.
    Leader(PartitionLog, PartitionImage),
    /// Another node (or nobody) leads it.
    NotLeader,
    /// The topic or partition does not exist.
    Unknown,
}

impl Broker {
    /// Assembles the context.
    pub fn new(
        config: NodeConfig,
        local: LocalNode,
        parts: BrokerParts,
        shutdown: CancellationToken,
    ) -> Self {
        let defaults = topic_defaults(&config);
        Self {
            inner: Arc::new(Inner {
                config,
                local,
                parts,
                defaults,
                shutdown,
                ready: AtomicBool::new(false),
            }),
        }
    }

    /// Node configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// This node.
    pub fn local(&self) -> &LocalNode {
        &self.inner.local
    }

    /// The metadata service.
    pub fn metadata(&self) -> &Metadata {
        &self.inner.parts.metadata
    }

    /// The current metadata image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.inner.parts.metadata.image()
    }

    /// The partition store.
    pub fn store(&self) -> &Store {
        &self.inner.parts.store
    }

    /// Partition replicas of this node.
    pub fn replicas(&self) -> &Replicas {
        &self.inner.parts.replicas
    }

    /// Committed group offsets.
    pub fn groups(&self) -> &GroupOffsets {
        &self.inner.parts.groups
    }

    /// Producer id allocation.
    pub fn producer_ids(&self) -> &ProducerIds {
        &self.inner.parts.producer_ids
    }

    /// Liveness of nodes (gossip membership).
    pub fn cluster(&self) -> &Cluster {
        &self.inner.parts.cluster
    }

    /// Node-level topic defaults.
    pub fn topic_defaults(&self) -> &TopicDefaults {
        &self.inner.defaults
    }

    /// Cancelled when the node shuts down.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// True once start-up finished (and until shutdown starts).
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire) && !self.inner.shutdown.is_cancelled()
    }

    /// Marks start-up as finished.
    pub fn set_ready(&self) {
        self.inner.ready.store(true, Ordering::Release);
    }

    /// Whether this node leads `partition` of `topic`, with its log if so.
    pub fn leadership(&self, topic: &TopicImage, partition: i32) -> Leadership {
        let Some(image) = usize::try_from(partition)
            .ok()
            .and_then(|i| topic.partitions.get(i))
        else {
            return Leadership::Unknown;
        };
        if image.leader != self.inner.local.node_id {
            return Leadership::NotLeader;
        }
        let tp = TopicPartition {
            topic_id: topic.id,
            partition,
        };
        match self.inner.parts.store.partition(tp) {
            Some(log) => Leadership::Leader(log, image.clone()),
            None => Leadership::NotLeader,
        }
    }
}

/// Node-level defaults for topic configs.
pub fn topic_defaults(config: &NodeConfig) -> TopicDefaults {
    TopicDefaults {
        fsync: config.fsync,
        retention_ms: config.retention_ms,
        retention_bytes: config.retention_bytes,
        segment_bytes: config.segment_bytes,
        min_insync_replicas: config.min_insync_replicas,
    }
}
