//! [`Broker`]: the context every handler reads. Each part synchronises itself; nothing here is a
//! lock around the whole.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rafka_store::Store;
use tokio_util::sync::CancellationToken;

use crate::NodeConfig;
use crate::cluster::Cluster;
use crate::endpoint::Endpoint;
use crate::group::Groups;
use crate::ids::BrokerEpoch;
use crate::metadata::{Metadata, MetadataImage, NodeId, TopicDefaults};
use crate::partition::NodePartitions;
use crate::producer_ids::ProducerIds;
use crate::txn::Txns;

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
    /// Every partition replica on this node, leading or following.
    pub partitions: NodePartitions,
    /// The group coordinator.
    pub groups: Groups,
    /// The transaction coordinator.
    pub txns: Txns,
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

    /// Every partition replica on this node: the one place to ask whether this node leads a
    /// partition, and the operations on the partitions it leads.
    pub fn partitions(&self) -> &NodePartitions {
        &self.inner.parts.partitions
    }

    /// The group coordinator (groups and committed offsets of the offsets partitions led here).
    pub fn groups(&self) -> &Groups {
        &self.inner.parts.groups
    }

    /// The transaction coordinator (transactional ids of the `__transaction_state` partitions
    /// led here).
    pub fn txns(&self) -> &Txns {
        &self.inner.parts.txns
    }

    /// Producer id allocation.
    pub fn producer_ids(&self) -> &ProducerIds {
        &self.inner.parts.producer_ids
    }

    /// Liveness of nodes (gossip membership).
    pub fn cluster(&self) -> &Cluster {
        &self.inner.parts.cluster
    }

    /// The leader of `topic`'s `partition` if it is alive (where a coordinator of that
    /// partition's keys is).
    pub fn live_leader(&self, topic: &str, partition: i32) -> Option<NodeId> {
        let image = self.image();
        let leader = usize::try_from(partition)
            .ok()
            .and_then(|i| image.topic(topic)?.partitions.get(i))
            .map(|p| p.leader)?;
        self.cluster()
            .is_node_live(&image, leader)
            .then_some(leader)
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
