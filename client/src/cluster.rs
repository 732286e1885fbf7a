//! [`Client`]: the shared core under the producer, consumer and admin.
//!
//! It owns the mesh peer (mesh transport), the node → endpoint routes, a pool of negotiated
//! [`Connection`]s and the metadata snapshot. Cheap to clone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::MetadataRequest;
use tokio::sync::OnceCell;
use tracing::{debug, warn};

use crate::bootstrap::Bootstrap;
use crate::connection::mesh::MeshNode;
use crate::connection::{Connection, ConnectionConfig, Endpoint, FrameTransport};
use crate::error::{Error, Result};
use crate::metadata::{self, ClusterMetadata, NodeId, TopicInfo};

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// How to reach the cluster.
    pub bootstrap: Bootstrap,
    /// Connection settings (client id, request timeout, frame limit).
    pub connection: ConnectionConfig,
    /// Metadata older than this is refreshed before use (`metadata.max.age.ms`, 5 min).
    pub metadata_max_age: Duration,
    /// Pause between retries (`retry.backoff.ms`, 100 ms).
    pub retry_backoff: Duration,
    /// Whether Metadata requests may create topics (`allow.auto.create.topics`, default false).
    pub allow_auto_topic_creation: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap: Bootstrap::default(),
            connection: ConnectionConfig::default(),
            metadata_max_age: Duration::from_secs(300),
            retry_backoff: Duration::from_millis(100),
            allow_auto_topic_creation: false,
        }
    }
}

impl ClientConfig {
    /// A config for `bootstrap` with every other value at its default.
    pub fn new(bootstrap: Bootstrap) -> Self {
        ClientConfig {
            bootstrap,
            ..Default::default()
        }
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        if self.connection.request_timeout.is_zero() {
            return Err(Error::Config("request timeout must be positive".into()));
        }
        if self.connection.max_frame_bytes < 1024 {
            return Err(Error::Config(
                "max frame bytes must be at least 1 KiB".into(),
            ));
        }
        Ok(())
    }
}

/// How node ids map to endpoints.
///
/// Kafka TCP uses the host:port each node advertises in Metadata. The mesh (single-node stage)
/// maps every node id to the one peer the client dialled; routing by peer id per node comes with
/// multi-node meshes and belongs here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRoutes {
    /// Kafka TCP: node id → `host:port`, plus the bootstrap addresses.
    Kafka {
        bootstrap: Vec<String>,
        nodes: HashMap<NodeId, String>,
    },
    /// Mesh: every node is the dialled peer.
    Mesh { peer: String, addr: String },
}

impl NodeRoutes {
    /// The endpoint for `node`.
    pub fn endpoint(&self, node: NodeId) -> Option<Endpoint> {
        match self {
            NodeRoutes::Kafka { nodes, .. } => nodes.get(&node).cloned().map(Endpoint::Kafka),
            NodeRoutes::Mesh { peer, addr } => Some(Endpoint::Mesh {
                peer: peer.clone(),
                addr: Some(addr.clone()),
            }),
        }
    }

    /// Endpoints to try when any node will do: known nodes first, then the bootstrap list.
    pub fn any(&self) -> Vec<Endpoint> {
        match self {
            NodeRoutes::Kafka { bootstrap, nodes } => {
                let mut all: Vec<String> = nodes.values().cloned().collect();
                all.sort();
                all.extend(
                    bootstrap
                        .iter()
                        .filter(|b| !nodes.values().any(|n| n == *b))
                        .cloned(),
                );
                all.into_iter().map(Endpoint::Kafka).collect()
            }
            NodeRoutes::Mesh { .. } => self.endpoint(0).into_iter().collect(),
        }
    }

    /// Adds a node learnt outside Metadata (a FindCoordinator answer).
    pub fn learn(&mut self, node: NodeId, host: &str, port: i32) {
        if let NodeRoutes::Kafka { nodes, .. } = self {
            nodes
                .entry(node)
                .or_insert_with(|| format_host_port(host, port));
        }
    }

    /// Takes the brokers of a metadata snapshot into account.
    pub fn update(&mut self, meta: &ClusterMetadata) {
        if let NodeRoutes::Kafka { nodes, .. } = self {
            *nodes = meta
                .brokers
                .values()
                .map(|b| (b.node_id, format_host_port(&b.host, b.port)))
                .collect();
        }
    }
}

fn format_host_port(host: &str, port: i32) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

type Slot = Arc<OnceCell<Arc<Connection>>>;

/// Opens a transport to an endpoint; [`Client::connect_with`] uses it instead of TCP or the
/// mesh (in-memory brokers in tests, custom transports).
pub type Dialer = Arc<dyn Fn(&Endpoint) -> Result<Arc<dyn FrameTransport>> + Send + Sync>;

struct Inner {
    config: ClientConfig,
    mesh: Option<MeshNode>,
    dialer: Option<Dialer>,
    routes: Mutex<NodeRoutes>,
    pool: Mutex<HashMap<Endpoint, Slot>>,
    metadata: Mutex<Arc<ClusterMetadata>>,
    /// Bumped whenever `metadata` is replaced: a cheap "has anything changed" for caches.
    metadata_generation: AtomicU64,
    refresh_lock: tokio::sync::Mutex<()>,
}

/// The shared client core. Clone it freely.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap", &self.inner.config.bootstrap)
            .finish()
    }
}

impl Client {
    /// Connects: starts the mesh peer and dials (mesh), then loads the broker list.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        config.validate()?;
        let (mesh, routes) = match &config.bootstrap {
            Bootstrap::Kafka(hosts) => (
                None,
                NodeRoutes::Kafka {
                    bootstrap: hosts.clone(),
                    nodes: HashMap::new(),
                },
            ),
            Bootstrap::Mesh(addr) => {
                let node = MeshNode::start(config.connection.max_frame_bytes).await?;
                let peer = node.dial(addr).await?;
                let base = addr.split("/p2p/").next().unwrap_or(addr).to_owned();
                debug!(peer = %peer, addr = %base, "mesh bootstrap dialled");
                (Some(node), NodeRoutes::Mesh { peer, addr: base })
            }
        };
        Client::start(config, mesh, routes, None).await
    }

    /// Connects through `dialer` instead of TCP or the mesh. The bootstrap must be `HOST:PORT`
    /// style; the dialer decides what the addresses mean.
    pub async fn connect_with(config: ClientConfig, dialer: Dialer) -> Result<Client> {
        config.validate()?;
        let Bootstrap::Kafka(hosts) = &config.bootstrap else {
            return Err(Error::Config(
                "connect_with needs a HOST:PORT bootstrap".into(),
            ));
        };
        let routes = NodeRoutes::Kafka {
            bootstrap: hosts.clone(),
            nodes: HashMap::new(),
        };
        Client::start(config, None, routes, Some(dialer)).await
    }

    async fn start(
        config: ClientConfig,
        mesh: Option<MeshNode>,
        routes: NodeRoutes,
        dialer: Option<Dialer>,
    ) -> Result<Client> {
        let client = Client {
            inner: Arc::new(Inner {
                config,
                mesh,
                dialer,
                routes: Mutex::new(routes),
                pool: Mutex::new(HashMap::new()),
                metadata: Mutex::new(Arc::new(ClusterMetadata::default())),
                metadata_generation: AtomicU64::new(0),
                refresh_lock: tokio::sync::Mutex::new(()),
            }),
        };
        client.refresh_metadata(Some(&[])).await?;
        Ok(client)
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Changes whenever the metadata snapshot is replaced (refreshed or invalidated).
    pub fn metadata_generation(&self) -> u64 {
        self.inner.metadata_generation.load(Ordering::Acquire)
    }

    /// The current metadata snapshot (no I/O).
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        lock(&self.inner.metadata).clone()
    }

    /// A connection to node `node`.
    pub async fn node(&self, node: NodeId) -> Result<Arc<Connection>> {
        let endpoint = lock(&self.inner.routes).endpoint(node);
        let endpoint = endpoint.ok_or_else(|| Error::Connect {
            endpoint: format!("node {node}"),
            reason: "no address known for this node".into(),
        })?;
        self.connection(endpoint).await
    }

    /// Records the address of a node learnt outside Metadata (FindCoordinator).
    pub fn learn_node(&self, node: NodeId, host: &str, port: i32) {
        lock(&self.inner.routes).learn(node, host, port);
    }

    /// A connection to any reachable node (known nodes first, then the bootstrap addresses).
    pub async fn any_node(&self) -> Result<Arc<Connection>> {
        let candidates = lock(&self.inner.routes).any();
        let mut last = Error::Connect {
            endpoint: "cluster".into(),
            reason: "no endpoint".into(),
        };
        for endpoint in candidates {
            match self.connection(endpoint).await {
                Ok(conn) => return Ok(conn),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// A negotiated connection to `endpoint`, opened on first use and reopened once closed.
    pub async fn connection(&self, endpoint: Endpoint) -> Result<Arc<Connection>> {
        let slot = {
            let mut pool = lock(&self.inner.pool);
            let slot = pool.entry(endpoint.clone()).or_default().clone();
            if slot.get().is_some_and(|c| c.is_closed()) {
                let fresh = Slot::default();
                pool.insert(endpoint.clone(), fresh.clone());
                fresh
            } else {
                slot
            }
        };
        let config = &self.inner.config.connection;
        let conn = slot
            .get_or_try_init(|| async {
                let conn = match &self.inner.dialer {
                    Some(dial) => {
                        Connection::negotiate(dial(&endpoint)?, endpoint.clone(), config).await
                    }
                    None => {
                        Connection::open(endpoint.clone(), config, self.inner.mesh.as_ref()).await
                    }
                };
                conn.map(Arc::new)
            })
            .await?;
        Ok(conn.clone())
    }

    /// Refreshes metadata for `topics` (`None` = all topics, `Some(&[])` = brokers only).
    pub async fn refresh_metadata(
        &self,
        topics: Option<&[String]>,
    ) -> Result<Arc<ClusterMetadata>> {
        let started = Instant::now();
        let _guard = self.inner.refresh_lock.lock().await;
        // Someone refreshed these topics while we waited: reuse their answer.
        let current = self.metadata();
        if let Some(names) = topics.filter(|n| !n.is_empty())
            && names
                .iter()
                .all(|n| current.refreshed.get(n).is_some_and(|t| *t >= started))
        {
            return Ok(current);
        }
        let conn = self.any_node().await?;
        let version = conn.version::<MetadataRequest>()?;
        let auto = self.inner.config.allow_auto_topic_creation;
        let request = metadata::request(version, topics, auto);
        let response = conn.send(version, &request).await?;
        let next = Arc::new(metadata::merge(
            &current,
            &response,
            topics.is_none(),
            Instant::now(),
        )?);
        lock(&self.inner.routes).update(&next);
        *lock(&self.inner.metadata) = next.clone();
        self.inner
            .metadata_generation
            .fetch_add(1, Ordering::Release);
        Ok(next)
    }

    /// Metadata for `topic`, refreshed if missing or older than `metadata_max_age`.
    pub async fn topic(&self, topic: &str) -> Result<TopicInfo> {
        let meta = self.metadata();
        let fresh = meta
            .refreshed
            .get(topic)
            .is_some_and(|t| t.elapsed() < self.inner.config.metadata_max_age);
        if fresh && let Ok(t) = meta.topic(topic) {
            return Ok(t.clone());
        }
        let meta = self.refresh_metadata(Some(&[topic.to_owned()])).await?;
        meta.topic(topic).cloned()
    }

    /// Metadata for `topic`, retrying retriable errors (unknown topic, no leader) with backoff
    /// until `wait` has passed.
    pub async fn wait_for_topic(&self, topic: &str, wait: Duration) -> Result<TopicInfo> {
        let deadline = Instant::now() + wait;
        loop {
            let err = match self.topic(topic).await {
                Ok(t) if t.partitions.iter().all(|p| p.leader.is_some()) => return Ok(t),
                Ok(_) => Error::LeaderNotAvailable {
                    topic: topic.to_owned(),
                },
                Err(e) => e,
            };
            if !err.is_retriable() || Instant::now() + self.inner.config.retry_backoff > deadline {
                return Err(err);
            }
            debug!(topic, error = %err, "waiting for topic metadata");
            tokio::time::sleep(self.inner.config.retry_backoff).await;
            self.invalidate(topic);
        }
    }

    /// Forgets the cached metadata age of `topic` so the next lookup refreshes it.
    pub fn invalidate(&self, topic: &str) {
        let mut meta = lock(&self.inner.metadata);
        if meta.refreshed.contains_key(topic) {
            let mut next = (**meta).clone();
            next.refreshed.remove(topic);
            *meta = Arc::new(next);
            self.inner
                .metadata_generation
                .fetch_add(1, Ordering::Release);
        }
    }

    /// Closes every connection and stops the mesh peer.
    pub async fn shutdown(&self) {
        let slots: Vec<Slot> = lock(&self.inner.pool).drain().map(|(_, s)| s).collect();
        for slot in slots {
            if let Some(conn) = slot.get() {
                conn.close();
            }
        }
        if let Some(mesh) = &self.inner.mesh {
            mesh.shutdown().await;
        }
    }
}

/// Locks a std mutex, recovering from poisoning (state here stays consistent between lines).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| {
        warn!("recovering a poisoned lock");
        poisoned.into_inner()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_routes_map_every_node_to_the_peer() {
        let routes = NodeRoutes::Mesh {
            peer: "12D3Koo".into(),
            addr: "/ip4/1.2.3.4/tcp/1".into(),
        };
        assert_eq!(routes.endpoint(5), routes.endpoint(9));
        assert_eq!(routes.any().len(), 1);
    }

    #[test]
    fn kafka_routes_follow_metadata() {
        let mut routes = NodeRoutes::Kafka {
            bootstrap: vec!["b:1".into()],
            nodes: HashMap::new(),
        };
        assert_eq!(routes.endpoint(1), None);
        let mut meta = ClusterMetadata::default();
        meta.brokers.insert(
            1,
            metadata::BrokerInfo {
                node_id: 1,
                host: "::1".into(),
                port: 9092,
                rack: None,
            },
        );
        routes.update(&meta);
        assert_eq!(
            routes.endpoint(1),
            Some(Endpoint::Kafka("[::1]:9092".into()))
        );
        assert_eq!(routes.any().len(), 2);
    }
}
