//! Start-up and shutdown of a node, in order.
//!
//! Start: data dir → identity → metadata (form or wait) → store → listeners bound → mesh →
//! registration → internal topics → group offsets → serving. Shutdown: stop accepting, drain
//! in-flight requests, flush the store, leave the mesh.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use rafka_mesh::{Mesh, MeshConfig, Multiaddr, Role};
use rafka_store::{PartitionLog, Store, StoreConfig, TopicPartition};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{LocalNode, topic_defaults};
use crate::error::NodeError;
use crate::group::{GroupOffsets, OFFSETS_TOPIC};
use crate::metadata::{Metadata, MetadataCommand, MetadataError, Outcome};
use crate::producer_ids::ProducerIds;
use crate::replica::Replicas;
use crate::{Broker, NodeConfig, endpoint, http, transport};

/// Addresses a started node listens on (ports resolved).
#[derive(Clone, Debug)]
pub struct NodeAddresses {
    /// Kafka TCP listener.
    pub kafka: SocketAddr,
    /// What Kafka clients are told.
    pub advertised_kafka: String,
    /// Mesh addresses, each ending in `/p2p/<peer id>`.
    pub p2p: Vec<Multiaddr>,
    /// HTTP admin endpoint.
    pub http: SocketAddr,
}

/// A running node.
pub struct Node {
    broker: Broker,
    mesh: Mesh,
    addresses: NodeAddresses,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Node {
    /// Starts a node. Returns once it serves (or waits, without `--bootstrap-expect`, until a
    /// cluster exists; `shutdown` ends the wait).
    pub async fn start(
        config: NodeConfig,
        prometheus: Option<PrometheusHandle>,
        shutdown: CancellationToken,
    ) -> Result<Node, NodeError> {
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| NodeError::Io {
            what: format!("creating {}", data_dir.display()),
            source,
        })?;
        let keypair = rafka_mesh::load_or_create_identity(&data_dir)?;
        let peer_id = keypair.public().to_peer_id();
        let metadata = open_metadata(&data_dir.join("raft"), &peer_id).await?;
        form_or_wait(&metadata, &config, &shutdown).await?;

        let store = open_store(&config, &data_dir)?;
        let kafka_listener = bind(config.kafka_addr, "Kafka").await?;
        let kafka_addr = local_addr(&kafka_listener, config.kafka_addr, "Kafka")?;
        let http_listener = bind(config.http_addr, "HTTP").await?;
        let http_addr = local_addr(&http_listener, config.http_addr, "HTTP")?;
        let advertised = endpoint::advertised(config.advertised_kafka_addr.as_deref(), kafka_addr)
            .map_err(|reason| {
                NodeError::Config(crate::error::ConfigError::Invalid {
                    key: "advertised_kafka_addr".into(),
                    reason,
                })
            })?;

        let mesh_config = MeshConfig {
            listen: vec![config.p2p_addr.clone()],
            role: Role::Node,
            max_frame_bytes: config.max_request_bytes,
            // Discovery joins with the multi-node work; a single node needs none.
            mdns: false,
            ..MeshConfig::default()
        };
        let (mesh, inbound) = Mesh::start(keypair, mesh_config).await?;

        let registration = MetadataCommand::RegisterNode {
            peer_id: peer_id.to_string(),
            kafka_host: advertised.host.clone(),
            kafka_port: advertised.port,
        };
        let Outcome::Registered {
            node_id,
            broker_epoch,
        } = metadata.propose(registration).await?
        else {
            return Err(MetadataError::Storage("registration returned no node id".into()).into());
        };
        let local = LocalNode {
            node_id,
            broker_epoch,
            endpoint: advertised.clone(),
            peer_id: peer_id.to_string(),
        };
        tracing::info!(node_id, broker_epoch, peer = %peer_id, "registered");

        let replicas = Replicas::new(store.clone(), node_id, topic_defaults(&config));
        replicas.reconcile(&metadata.image()).await?;
        let offsets_logs = ensure_offsets_topic(&metadata, &replicas, &store, &config).await?;
        let groups = GroupOffsets::load(offsets_logs).await?;
        let producer_ids = ProducerIds::new(metadata.clone());
        let broker = Broker::new(
            config,
            local,
            metadata,
            store,
            replicas,
            groups,
            producer_ids,
            shutdown.clone(),
        );

        let tasks = TaskTracker::new();
        tasks.spawn(transport::kafka_tcp::serve(
            kafka_listener,
            broker.clone(),
            shutdown.clone(),
            tasks.clone(),
        ));
        tasks.spawn(transport::mesh::serve(
            inbound.kafka,
            broker.clone(),
            shutdown.clone(),
            tasks.clone(),
        ));
        tasks.spawn(http::serve(
            http_listener,
            broker.clone(),
            prometheus,
            shutdown.clone(),
        ));
        tasks.spawn(retention_loop(broker.clone(), shutdown.clone()));
        tasks.spawn(reconcile_loop(broker.clone(), shutdown.clone()));

        let p2p = mesh
            .listen_addrs()
            .await
            .into_iter()
            .map(|addr| addr.with(rafka_mesh::Protocol::P2p(peer_id)))
            .collect();
        let addresses = NodeAddresses {
            kafka: kafka_addr,
            advertised_kafka: advertised.to_string(),
            p2p,
            http: http_addr,
        };
        broker.set_ready();
        Ok(Node {
            broker,
            mesh,
            addresses,
            shutdown,
            tasks,
        })
    }

    /// The node's addresses.
    pub fn addresses(&self) -> &NodeAddresses {
        &self.addresses
    }

    /// The handler context (for in-process tests and tools).
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Stops accepting, drains in-flight requests, flushes the store and leaves the mesh.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(30), self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some requests did not finish within 30 s of shutdown");
        }
        let store = self.broker.store().clone();
        match tokio::task::spawn_blocking(move || store.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "final store flush failed"),
            Err(e) => tracing::error!(error = %e, "final store flush task failed"),
        }
        self.broker.metadata().shutdown().await;
        self.mesh.shutdown().await;
        tracing::info!("stopped");
    }
}

/// Opens the metadata log in `dir`. Single-node stage: no transport reaches other nodes yet.
async fn open_metadata(dir: &Path, peer_id: &rafka_mesh::PeerId) -> Result<Metadata, NodeError> {
    let node = crate::metadata::raft::RaftNode::new(peer_id, Vec::new());
    let transport = std::sync::Arc::new(crate::metadata::raft::NoPeers);
    let config = crate::metadata::raft::RaftConfig::default();
    Metadata::open(dir, node, transport, config)
        .await
        .map_err(|e| match e {
            MetadataError::Storage(reason) if reason.contains("ock") => {
                NodeError::DataDirLocked(dir.to_owned())
            }
            other => other.into(),
        })
}

fn open_store(config: &NodeConfig, data_dir: &Path) -> Result<Store, NodeError> {
    let mut store_config = StoreConfig::new(data_dir.join("partitions"));
    store_config.fsync = config.fsync;
    Ok(Store::open(store_config)?)
}

/// Forms a new cluster with `--bootstrap-expect 1`, or waits to be joined.
async fn form_or_wait(
    metadata: &Metadata,
    config: &NodeConfig,
    shutdown: &CancellationToken,
) -> Result<(), NodeError> {
    if metadata.image().is_formed() {
        tracing::info!(cluster_id = %metadata.image().cluster_id, "resuming cluster");
        return Ok(());
    }
    match config.bootstrap_expect {
        Some(1) => {
            let cluster_id = new_cluster_id();
            tracing::info!(%cluster_id, "forming a new single-node cluster");
            metadata.initialize(vec![metadata.node().clone()]).await?;
            metadata
                .propose(MetadataCommand::Form { cluster_id })
                .await?;
            Ok(())
        }
        Some(n) => Err(NodeError::Config(crate::error::ConfigError::Invalid {
            key: "bootstrap_expect".into(),
            reason: format!(
                "{n}: forming a multi-node cluster needs the mesh membership layer, which this build does not have yet; use 1"
            ),
        })),
        None => {
            tracing::warn!(
                data_dir = %config.data_dir.display(),
                "this node has no cluster and waits to join one; to form a new cluster, start it with --bootstrap-expect 1"
            );
            shutdown.cancelled().await;
            Err(NodeError::Config(crate::error::ConfigError::Invalid {
                key: "bootstrap_expect".into(),
                reason: "stopped while waiting to join a cluster".into(),
            }))
        }
    }
}

/// A Kafka-style cluster id: a random UUID in URL-safe base64 without padding (22 characters).
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let value = u128::from_be_bytes(*uuid::Uuid::new_v4().as_bytes());
    (0..22)
        .map(|i| {
            let shift = 128u32.saturating_sub(6 * (i + 1));
            let index = ((value >> shift) & 0x3f) as usize;
            char::from(ALPHABET.get(index).copied().unwrap_or(b'A'))
        })
        .collect()
}

async fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr).await.map_err(|e| NodeError::Bind {
        what,
        addr,
        reason: e.to_string(),
    })
}

fn local_addr(
    listener: &TcpListener,
    addr: SocketAddr,
    what: &'static str,
) -> Result<SocketAddr, NodeError> {
    listener.local_addr().map_err(|e| NodeError::Bind {
        what,
        addr,
        reason: e.to_string(),
    })
}

/// Creates `__consumer_offsets` on first start and returns its local partition logs, in order.
async fn ensure_offsets_topic(
    metadata: &Metadata,
    replicas: &Replicas,
    store: &Store,
    config: &NodeConfig,
) -> Result<Vec<PartitionLog>, NodeError> {
    if metadata.image().topic(OFFSETS_TOPIC).is_none() {
        let configs = BTreeMap::from([("retention.ms".to_string(), "-1".to_string())]);
        let command = MetadataCommand::CreateTopic {
            name: OFFSETS_TOPIC.to_string(),
            topic_id: uuid::Uuid::new_v4(),
            partitions: config.offsets_topic_partitions,
            replication_factor: 1,
            configs,
            internal: true,
        };
        metadata.propose(command).await?;
        replicas.reconcile(&metadata.image()).await?;
    }
    let image = metadata.image();
    let topic = image
        .topic(OFFSETS_TOPIC)
        .ok_or(MetadataError::UnknownTopic(OFFSETS_TOPIC.into()))?;
    topic
        .partitions
        .iter()
        .map(|p| {
            store
                .partition(TopicPartition {
                    topic_id: topic.id,
                    partition: p.index,
                })
                .ok_or_else(|| {
                    MetadataError::Storage(format!("offsets partition {} has no log", p.index))
                        .into()
                })
        })
        .collect()
}

async fn retention_loop(broker: Broker, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(broker.config().retention_check_interval());
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = shutdown.cancelled() => break,
        }
        let store = broker.store().clone();
        let now = crate::api::now_ms();
        match tokio::task::spawn_blocking(move || store.enforce_retention(now)).await {
            Ok(Ok(report)) => tracing::debug!(?report, "retention enforced"),
            Ok(Err(e)) => tracing::warn!(error = %e, "retention failed"),
            Err(e) => tracing::warn!(error = %e, "retention task failed"),
        }
    }
}

/// Applies every new metadata image to the local partition logs.
async fn reconcile_loop(broker: Broker, shutdown: CancellationToken) {
    let mut images = broker.metadata().subscribe();
    loop {
        tokio::select! {
            changed = images.changed() => if changed.is_err() { break },
            () = shutdown.cancelled() => break,
        }
        let image = images.borrow_and_update().clone();
        if let Err(e) = broker.replicas().reconcile(&image).await {
            tracing::error!(error = %e, "cannot apply metadata to partition logs");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_look_like_kafkas() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(id, new_cluster_id());
    }
}
