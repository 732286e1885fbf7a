//! Start-up and shutdown of a node, in order.
//!
//! Start: data dir → identity → listeners bound → mesh (both planes) → metadata log → form,
//! resume or join a cluster → store → registration → internal topics → group offsets and
//! transaction state → serving, with the controller and gossip publisher running. A new store
//! (first start) opens beside everything up to the cluster's formation, on a blocking thread. Shutdown:
//! announce leaving, stop accepting, drain in-flight requests, flush the store, stop the
//! metadata log, close the mesh.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use rafka_mesh::{ClusterKey, ConnectionLimits, Mesh, MeshConfig, Multiaddr, Role};
use rafka_store::{Store, StoreConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{BrokerParts, LocalNode, topic_defaults};
use crate::cluster::transport::MeshRaftTransport;
use crate::cluster::{self, Cluster, controller, formation, gossip};
use crate::error::NodeError;
use crate::group::{Groups, GroupsEnv, OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
use crate::ids::BrokerEpoch;
use crate::metadata::raft::{RaftConfig, RaftNode};
use crate::metadata::{
    Feature, LevelRange, Metadata, MetadataCommand, MetadataError, NodeId, Outcome,
};
use crate::partition::{MeshLink, NodeEnv, Partitions, ReplicationConfig};
use crate::producer_ids::ProducerIds;
use crate::push::Push;
use crate::transport::budget::RequestBudget;
use crate::txn::Txns;
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
    cluster: Cluster,
    addresses: NodeAddresses,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Node {
    /// Starts a node. Returns once it serves: after forming or joining a cluster (without
    /// `--bootstrap-expect` a fresh node waits to be added; `stop_waiting` ends the wait). The
    /// node's tasks stop in [`Node::shutdown`], not when `stop_waiting` is cancelled: a leaving
    /// voter still answers the metadata log while it hands its seat over.
    pub async fn start(
        config: NodeConfig,
        prometheus: Option<PrometheusHandle>,
        stop_waiting: CancellationToken,
    ) -> Result<Node, NodeError> {
        let shutdown = CancellationToken::new();
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| NodeError::Io {
            what: format!("creating {}", data_dir.display()),
            source,
        })?;
        // The partition store does not depend on the metadata log. A new one (no partitions
        // directory yet) opens on a blocking thread while the listeners bind, the mesh starts and
        // the metadata log opens and forms or joins a cluster: on a fresh data dir both mostly wait
        // on fsyncs of new files. An existing one opens after the metadata log's feature check, as
        // before, which keeps a node below the cluster's level from recovering (and tidying) it.
        // Either way its outcome is awaited, so a failed start leaves nothing open behind it.
        let store_config = store_config(&config, &data_dir);
        let early_store = (!store_config.data_dir.exists()).then(|| {
            let store_config = store_config.clone();
            tokio::task::spawn_blocking(move || Store::open(store_config))
        });
        let joined = join(&config, &data_dir, &shutdown, &stop_waiting).await;
        let early_store = match early_store {
            Some(handle) => Some(store_opened(handle.await)),
            None => None,
        };
        let Joined {
            peer_id,
            kafka_listener,
            kafka_addr,
            http_listener,
            http_addr,
            advertised,
            budget,
            mesh,
            inbound_kafka,
            inbound_push,
            inbound_push_polls,
            supported,
            endpoints,
            cluster,
            tasks,
            metadata,
        } = joined?;
        let store = match early_store {
            Some(store) => store,
            None => {
                store_opened(tokio::task::spawn_blocking(move || Store::open(store_config)).await)
            }
        };
        let store = match store {
            Ok(store) => store,
            Err(e) => {
                shutdown.cancel();
                metadata.shutdown().await;
                mesh.shutdown().await;
                return Err(e);
            }
        };
        let (node_id, broker_epoch) = register(&metadata, &peer_id, &advertised, supported).await?;
        let local = LocalNode {
            node_id,
            broker_epoch,
            endpoint: advertised.clone(),
            peer_id: peer_id.to_string(),
        };
        let link = MeshLink::new(mesh.clone(), metadata.clone(), node_id, broker_epoch);
        let env = NodeEnv::new(
            metadata.clone(),
            link,
            store.clone(),
            topic_defaults(&config),
        );
        let replication = ReplicationConfig {
            replica_lag_time_max: config.replica_lag_time_max(),
            ..ReplicationConfig::default()
        };
        let partitions = Partitions::new(
            env,
            (node_id, broker_epoch),
            replication,
            shutdown.child_token(),
        );
        partitions.reconcile(&metadata.image()).await?;
        let groups = Groups::start(
            config.group_config(),
            config.offsets_topic_partitions,
            format!("{}.{}", node_id.0, broker_epoch.0),
            groups_env(&metadata, &store),
            shutdown.child_token(),
        );
        let (txns, txns_task) = Txns::new(config.txn_config());
        let producer_ids = ProducerIds::new(metadata.clone());
        let parts = BrokerParts {
            metadata: metadata.clone(),
            store,
            partitions,
            groups,
            txns,
            producer_ids,
            cluster: cluster.clone(),
        };
        let broker = Broker::new(config, local, parts, shutdown.clone());
        txns_task.start(broker.clone(), shutdown.child_token());
        attach_offsets(&broker).await;
        let push = Push::new(mesh.clone());
        push.attach(&broker);
        tasks.spawn(push.clone().run(
            broker.clone(),
            inbound_push,
            inbound_push_polls,
            shutdown.clone(),
        ));

        tasks.spawn(transport::kafka_tcp::serve(
            kafka_listener,
            broker.clone(),
            budget,
            shutdown.clone(),
            tasks.clone(),
        ));
        tasks.spawn(transport::mesh::serve(
            inbound_kafka,
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
        tasks.spawn(reconcile_loop(broker.clone(), push, shutdown.clone()));
        tasks.spawn(controller::run(
            metadata.clone(),
            cluster.clone(),
            controller::Settings {
                voters: broker.config().voters,
                replace_after: broker.config().voter_replace_after(),
                rebalance_every: broker.config().leader_rebalance_interval(),
                supported,
                max_partitions_per_node: broker.config().max_partitions_per_node as usize,
            },
            shutdown.clone(),
        ));
        tasks.spawn(gossip::run(
            mesh.clone(),
            metadata.clone(),
            (node_id, broker_epoch),
            endpoints,
            shutdown.clone(),
        ));
        tasks.spawn(readiness(broker.clone(), shutdown.clone()));

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
        Ok(Node {
            broker,
            mesh,
            cluster,
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

    /// Announces the departure (peers see `left` at once), hands its metadata-log seat over if it
    /// votes, stops accepting, drains in-flight requests, flushes the store, stops the metadata
    /// log and leaves the mesh.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        let voter = cluster::handover::is_voter(self.broker.metadata()).await;
        self.cluster.set_leaving();
        self.mesh.leave().await;
        cluster::handover::hand_over_seat(self.broker.metadata(), &self.cluster, voter).await;
        self.shutdown.cancel();
        // Waiting acks=all produces answer NOT_LEADER_OR_FOLLOWER now rather than time out;
        // follower tasks stop.
        self.broker.partitions().shutdown();
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

/// Reads the cluster key, and says how the mesh is protected.
fn load_cluster_key(config: &NodeConfig) -> Result<Option<ClusterKey>, NodeError> {
    let Some(path) = &config.cluster_key_file else {
        if config.insecure_open_mesh {
            tracing::warn!(
                "no cluster key and --insecure-open-mesh: any process that reaches the mesh port can join the cluster"
            );
        } else {
            tracing::info!("no cluster key: the mesh listens on loopback only");
        }
        return Ok(None);
    };
    let key = ClusterKey::load(path)?;
    tracing::info!(path = %path.display(), fingerprint = %key.fingerprint(), "cluster key loaded: only holders of the same key can connect");
    Ok(Some(key))
}

/// The mesh settings a node derives from its configuration.
fn mesh_config(config: &NodeConfig, cluster_key: Option<ClusterKey>) -> MeshConfig {
    let generation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    MeshConfig {
        listen: vec![config.p2p_listen()],
        control_listen: vec![config.control_listen()],
        cluster_key,
        role: Role::Node,
        mdns: config.mdns,
        bootstrap: config.bootstrap.clone(),
        max_frame_bytes: config.max_request_bytes,
        generation,
        seed: generation,
        push: Some(crate::push::mesh_config()),
        connection_limits: ConnectionLimits {
            per_peer: config.p2p_max_connections_per_peer,
            pending_incoming: config.p2p_max_pending_connections,
            established_incoming: config.p2p_max_incoming_connections,
        },
        limit_hits: Some(Arc::new(crate::limits::MeshLimitHits)),
        ..MeshConfig::default()
    }
}

/// Opens the metadata log in `dir`, reaching other nodes over the mesh's control plane.
async fn open_metadata(dir: &Path, mesh: &Mesh) -> Result<Metadata, NodeError> {
    let addrs = mesh
        .control_addrs()
        .await
        .iter()
        .map(ToString::to_string)
        .collect();
    let node = RaftNode::new(&mesh.local_peer_id(), addrs);
    let transport = Arc::new(MeshRaftTransport::new(mesh.clone()));
    Metadata::open(dir, node, transport, RaftConfig::default())
        .await
        .map_err(|e| match e {
            MetadataError::Storage(reason) if reason.contains("ock") => {
                NodeError::DataDirLocked(dir.to_owned())
            }
            other => other.into(),
        })
}

fn store_config(config: &NodeConfig, data_dir: &Path) -> StoreConfig {
    let mut store_config = StoreConfig::new(data_dir.join("partitions"));
    store_config.fsync = config.fsync;
    store_config.cleaner_threads = config.log_cleaner_threads;
    store_config.cleaner_backoff_ms = config.log_cleaner_backoff_ms;
    store_config
}

/// The outcome of opening the partition store on a blocking thread.
fn store_opened(
    outcome: Result<rafka_store::Result<Store>, tokio::task::JoinError>,
) -> Result<Store, NodeError> {
    match outcome {
        Ok(store) => Ok(store?),
        Err(e) => Err(NodeError::Io {
            what: "opening the partition store".into(),
            source: std::io::Error::other(e),
        }),
    }
}

/// What [`join`] leaves for the rest of [`Node::start`].
struct Joined {
    peer_id: rafka_mesh::PeerId,
    kafka_listener: TcpListener,
    kafka_addr: SocketAddr,
    http_listener: TcpListener,
    http_addr: SocketAddr,
    advertised: crate::endpoint::Endpoint,
    budget: RequestBudget,
    mesh: Mesh,
    /// The mesh's inbound queues but the metadata log's, which [`join`] serves.
    inbound_kafka: tokio::sync::mpsc::Receiver<rafka_mesh::InboundKafka>,
    inbound_push: tokio::sync::mpsc::Receiver<rafka_mesh::PushDelivery>,
    inbound_push_polls: tokio::sync::mpsc::Receiver<rafka_mesh::InboundPushPoll>,
    supported: LevelRange,
    endpoints: [(&'static str, String); 3],
    cluster: Cluster,
    tasks: TaskTracker,
    metadata: Metadata,
}

/// The start up to membership: identity, listeners bound, mesh (both planes), metadata log, and
/// forming, resuming or joining a cluster.
async fn join(
    config: &NodeConfig,
    data_dir: &Path,
    shutdown: &CancellationToken,
    stop_waiting: &CancellationToken,
) -> Result<Joined, NodeError> {
    let keypair = rafka_mesh::load_or_create_identity(data_dir)?;
    let peer_id = keypair.public().to_peer_id();
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

    let cluster_key = load_cluster_key(config)?;
    // One budget of request bytes for both listeners.
    let budget = RequestBudget::new(config.queued_max_request_bytes);
    let mesh_config = MeshConfig {
        admission: Some(Arc::new(budget.clone())),
        ..mesh_config(config, cluster_key)
    };
    let (mesh, inbound) = Mesh::start(keypair, mesh_config).await?;
    let supported = config.supported_levels();
    let endpoints =
        gossip::endpoint_keys(&advertised.to_string(), &http_addr.to_string(), supported);
    for (key, value) in &endpoints {
        mesh.set_state(key, Some(value.clone())).await?;
    }
    let cluster = Cluster::new(mesh.clone());
    let tasks = TaskTracker::new();
    let metadata = open_metadata(&data_dir.join("raft"), &mesh).await?;
    // A node below the finalized level it has already seen stops here, before it joins.
    if let Err(e) = metadata
        .image()
        .features()
        .check_supported("this rafka-node", supported)
    {
        metadata.shutdown().await;
        mesh.shutdown().await;
        return Err(e.into());
    }
    let rafka_mesh::Inbound {
        kafka: inbound_kafka,
        raft: inbound_raft,
        push: inbound_push,
        push_polls: inbound_push_polls,
    } = inbound;
    tasks.spawn(cluster::transport::serve(
        inbound_raft,
        metadata.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(cluster::events::run(metadata.clone(), shutdown.clone()));
    tasks.spawn(cluster::admission::run(
        mesh.clone(),
        metadata.clone(),
        shutdown.clone(),
    ));
    let joined = formation::form_or_join(&metadata, &cluster, config, &advertised, stop_waiting);
    if let Err(e) = joined.await {
        shutdown.cancel();
        metadata.shutdown().await;
        mesh.shutdown().await;
        return Err(e);
    }

    Ok(Joined {
        peer_id,
        kafka_listener,
        kafka_addr,
        http_listener,
        http_addr,
        advertised,
        budget,
        mesh,
        inbound_kafka,
        inbound_push,
        inbound_push_polls,
        supported,
        endpoints,
        cluster,
        tasks,
        metadata,
    })
}

/// Registers this node (same peer id, same node id; a new broker epoch every start), with the
/// feature levels it supports once the cluster's finalized level allows saying so.
async fn register(
    metadata: &Metadata,
    peer_id: &rafka_mesh::PeerId,
    advertised: &crate::endpoint::Endpoint,
    supported: LevelRange,
) -> Result<(NodeId, BrokerEpoch), NodeError> {
    loop {
        let features = metadata.image().features();
        let registration = MetadataCommand::registration(
            peer_id.to_string(),
            advertised.host.clone(),
            advertised.port,
            supported,
            features,
        );
        let legacy = registration.feature().is_none();
        match metadata.propose(registration).await {
            Ok(Outcome::Registered {
                node_id,
                broker_epoch,
            }) => {
                tracing::info!(node_id = node_id.0, broker_epoch, peer = %peer_id, "registered");
                return Ok((node_id, BrokerEpoch(broker_epoch)));
            }
            Ok(other) => {
                return Err(
                    MetadataError::Storage(format!("registration answered {other:?}")).into(),
                );
            }
            Err(e) if e.is_retriable() => {
                tracing::info!(error = %e, "registration not possible yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            // Refused as a level-0 registration: the cluster is above level 0 and this node's
            // image had not caught up yet. Register again with levels once it has.
            Err(MetadataError::Membership(reason))
                if legacy && supported.contains(Feature::VersionedMetadata.level()) =>
            {
                tracing::info!(reason, "registering again with feature levels");
                wait_for_level(metadata, Feature::VersionedMetadata).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits (at most the metadata log's propose timeout) until this node's image enables `feature`.
async fn wait_for_level(metadata: &Metadata, feature: Feature) {
    let mut images = metadata.subscribe();
    let enabled = images.wait_for(|image| image.features().enabled(feature));
    let timeout = RaftConfig::default().propose_timeout;
    if tokio::time::timeout(timeout, enabled).await.is_err() {
        tracing::warn!(%feature, "feature not enabled in this node's image yet");
    }
}

/// Marks the node ready once its image has caught up with what was committed when it joined.
async fn readiness(broker: Broker, shutdown: CancellationToken) {
    let metadata = broker.metadata().clone();
    let target = metadata.status().await.committed.unwrap_or(0);
    let mut changes = metadata.status_watch();
    loop {
        let applied = metadata.status().await.last_applied.unwrap_or(0);
        if applied >= target {
            broker.set_ready();
            tracing::info!(applied, "ready");
            return;
        }
        tokio::select! {
            _ = changes.changed() => {}
            () = shutdown.cancelled() => return,
        }
    }
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

/// Serves the groups of the offsets partitions and the transactional ids of the transaction
/// state partitions this node leads (replaying each newly led one, or one led again in a new
/// leader epoch) and stops serving those it no longer leads.
async fn attach_offsets(broker: &Broker) {
    let image = broker.image();
    let led = |name: &str| match image.topic(name) {
        Some(topic) => broker.partitions().leaders(Some(topic.id)),
        None => Vec::new(),
    };
    broker.groups().follow_leadership(led(OFFSETS_TOPIC)).await;
    broker
        .txns()
        .follow_leadership(led(TRANSACTION_STATE_TOPIC))
        .await;
}

/// What the group coordinator reads from the rest of the node.
fn groups_env(metadata: &Metadata, store: &Store) -> GroupsEnv {
    let features = metadata.clone();
    let images = metadata.clone();
    let store = store.clone();
    GroupsEnv {
        group_records: Box::new(move || features.image().features().enabled(Feature::GroupRecords)),
        high_watermark: Box::new(move |topic, partition| {
            let image = images.image();
            let id = image.topic(topic)?.id;
            let tp = rafka_store::TopicPartition {
                topic_id: id,
                partition,
            };
            store.partition(tp).map(|log| log.high_watermark())
        }),
        now_ms: Box::new(crate::api::now_ms),
    }
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
async fn reconcile_loop(broker: Broker, push: Push, shutdown: CancellationToken) {
    let mut images = broker.metadata().subscribe();
    loop {
        tokio::select! {
            changed = images.changed() => if changed.is_err() { break },
            () = shutdown.cancelled() => break,
        }
        let image = images.borrow_and_update().clone();
        if let Err(e) = broker.partitions().reconcile(&image).await {
            tracing::error!(error = %e, "cannot apply metadata to partition logs");
        }
        attach_offsets(&broker).await;
        push.attach(&broker);
    }
}
