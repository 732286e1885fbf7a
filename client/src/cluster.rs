//! [`Client`]: the shared core under the producer, consumer and admin.
//!
//! It owns the mesh peer (mesh transport), the node → endpoint routes ([`NodeRoutes`]), a pool
//! of negotiated [`Connection`]s and the metadata snapshot. Cheap to clone.
//!
//! Every metadata refresh over the mesh also asks the same node for the cluster's member list
//! (concurrently), so node id → peer id stays as current as the leaders it routes to; the
//! triggers are the ones of metadata (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE,
//! UNKNOWN_TOPIC_OR_PARTITION, NOT_COORDINATOR, failed connections, age). When Metadata names a
//! node id the routes lack, or a request needs one, the other nodes are asked as well.

use std::collections::HashMap;
use std::path::PathBuf;
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
use crate::members::{ClusterView, MemberSource};
use crate::metadata::{self, ClusterMetadata, NodeId, TopicInfo};
pub use crate::routes::{MeshRoute, NodeRoutes};

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
    /// How long [`Bootstrap::Mdns`] waits for mDNS to find a node (default 5 s).
    pub mdns_timeout: Duration,
    /// The mesh's cluster key file (`rafka cluster key generate FILE` makes one): needed to reach
    /// a cluster that uses a key. Kafka TCP does not use it.
    pub cluster_key_file: Option<PathBuf>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap: Bootstrap::default(),
            connection: ConnectionConfig::default(),
            metadata_max_age: Duration::from_secs(300),
            retry_backoff: Duration::from_millis(100),
            allow_auto_topic_creation: false,
            mdns_timeout: Duration::from_secs(5),
            cluster_key_file: None,
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
        if self.mdns_timeout.is_zero() {
            return Err(Error::Config("mdns timeout must be positive".into()));
        }
        Ok(())
    }
}

type Slot = Arc<OnceCell<Arc<Connection>>>;

/// Opens a transport to an endpoint; [`Client::connect_with`] uses it instead of TCP or the
/// mesh (in-memory brokers in tests, custom transports).
pub type Dialer = Arc<dyn Fn(&Endpoint) -> Result<Arc<dyn FrameTransport>> + Send + Sync>;

struct Inner {
    config: ClientConfig,
    mesh: Option<MeshNode>,
    /// Who answers for member lists (the mesh peer, or a stand-in); `None` over Kafka TCP.
    members: Option<Arc<dyn MemberSource>>,
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
    /// Connects: starts the mesh peer and dials the bootstrap address or finds a node by mDNS
    /// (mesh), then loads the broker list (and, over the mesh, the member list).
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        config.validate()?;
        let max_frame = config.connection.max_frame_bytes;
        let timeout = config.connection.request_timeout;
        let (mesh, routes) = match &config.bootstrap {
            Bootstrap::Kafka(hosts) => (
                None,
                NodeRoutes::Kafka {
                    bootstrap: hosts.clone(),
                    nodes: HashMap::new(),
                },
            ),
            Bootstrap::Mesh(addr) => {
                let key = config.cluster_key_file.as_deref();
                let node = MeshNode::start(max_frame, false, key, timeout).await?;
                let peer = node.dial(addr).await?;
                let base = addr.split("/p2p/").next().unwrap_or(addr).to_owned();
                debug!(peer = %peer, addr = %base, "mesh bootstrap dialled");
                (Some(node), NodeRoutes::mesh(peer, Some(base)))
            }
            Bootstrap::Mdns => {
                let key = config.cluster_key_file.as_deref();
                let node = MeshNode::start(max_frame, true, key, timeout).await?;
                let (peer, view) = node.discover(config.mdns_timeout).await?;
                let mut routes = NodeRoutes::mesh(peer, None);
                routes.update_members(&view.members);
                (Some(node), routes)
            }
        };
        let members = mesh.clone().map(|m| Arc::new(m) as Arc<dyn MemberSource>);
        Client::start(config, mesh, members, routes, None).await
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
        Client::start(config, None, None, routes, Some(dialer)).await
    }

    /// Connects as over the mesh, starting from peer `peer`, with stand-ins for the mesh:
    /// `members` answers for member lists and `dialer` opens transports to
    /// [`Endpoint::Mesh`] endpoints (multi-node routing tests without processes).
    pub async fn connect_mesh_with(
        config: ClientConfig,
        peer: &str,
        members: Arc<dyn MemberSource>,
        dialer: Dialer,
    ) -> Result<Client> {
        config.validate()?;
        let routes = NodeRoutes::mesh(peer, None);
        Client::start(config, None, Some(members), routes, Some(dialer)).await
    }

    async fn start(
        config: ClientConfig,
        mesh: Option<MeshNode>,
        members: Option<Arc<dyn MemberSource>>,
        routes: NodeRoutes,
        dialer: Option<Dialer>,
    ) -> Result<Client> {
        let client = Client {
            inner: Arc::new(Inner {
                config,
                mesh,
                members,
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

    /// A connection to node `node`. A node the routes lack (one that joined since the last
    /// refresh, or a coordinator) makes the client learn the routes again first.
    pub async fn node(&self, node: NodeId) -> Result<Arc<Connection>> {
        let known = lock(&self.inner.routes).endpoint(node);
        let endpoint = match known {
            Some(endpoint) => endpoint,
            None => {
                self.learn_routes(node).await;
                let learnt = lock(&self.inner.routes).endpoint(node);
                learnt.ok_or_else(|| Error::Connect {
                    endpoint: format!("node {node}"),
                    reason: "no address known for this node".into(),
                })?
            }
        };
        self.connection(endpoint).await
    }

    /// Learns the routes again because `node` has none: the member list over the mesh, the
    /// broker list over Kafka TCP.
    async fn learn_routes(&self, node: NodeId) {
        if self.inner.members.is_some() {
            self.learn_members(None, |routes| routes.endpoint(node).is_some())
                .await;
        } else if let Err(e) = self.refresh_metadata(Some(&[])).await {
            debug!(node, error = %e, "broker list refresh failed");
        }
    }

    /// Asks nodes for the member list, best first (skipping `skip`), until the routes satisfy
    /// `done` or every node was asked. Returns whether they do.
    async fn learn_members(&self, skip: Option<&str>, done: impl Fn(&NodeRoutes) -> bool) -> bool {
        let Some(source) = &self.inner.members else {
            return false;
        };
        let peers = lock(&self.inner.routes).peers();
        for peer in peers.iter().filter(|p| Some(p.as_str()) != skip) {
            match source.cluster_info(peer).await {
                Ok(view) => {
                    let mut routes = lock(&self.inner.routes);
                    routes.update_members(&view.members);
                    if done(&routes) {
                        return true;
                    }
                }
                Err(e) => debug!(peer = %peer, error = %e, "member list request failed"),
            }
        }
        done(&lock(&self.inner.routes))
    }

    /// Every member the cluster knows, as the first node that answers tells it: peer ids, node
    /// ids, addresses, state and metadata role. Mesh only: membership is gossiped on the mesh.
    pub async fn cluster_members(&self) -> Result<ClusterView> {
        let Some(source) = &self.inner.members else {
            return Err(Error::Config(
                "cluster membership is a mesh notion: connect with a p2p bootstrap address \
                 (a multiaddr such as /ip4/127.0.0.1/tcp/7070, or mdns), not Kafka HOST:PORT"
                    .into(),
            ));
        };
        let peers = lock(&self.inner.routes).peers();
        let mut last = None;
        for peer in peers {
            match source.cluster_info(&peer).await {
                Ok(view) => {
                    lock(&self.inner.routes).update_members(&view.members);
                    return Ok(view);
                }
                Err(e) => {
                    debug!(peer = %peer, error = %e, "member list request failed");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Connect {
            endpoint: "cluster".into(),
            reason: "no node known".into(),
        }))
    }

    /// Sends a push subscriber's poll `frame` to `peer` over the mesh (see
    /// [`crate::subscription`]); fails over Kafka TCP, which has no push.
    pub async fn push_poll(&self, peer: &str, frame: bytes::Bytes) -> Result<bytes::Bytes> {
        match &self.inner.mesh {
            Some(mesh) => mesh.push_poll(peer, frame).await,
            None => Err(Error::Config(
                "push subscription needs the mesh transport (a multiaddr or mdns bootstrap)".into(),
            )),
        }
    }

    /// Opens a push stream to `peer` over the mesh (see [`crate::subscription`]); `None` if
    /// that node serves polls only; fails over Kafka TCP, which has no push.
    pub async fn open_push_stream(
        &self,
        peer: &str,
    ) -> Result<Option<crate::connection::mesh::PushFeed>> {
        match &self.inner.mesh {
            Some(mesh) => mesh.open_push_stream(peer).await,
            None => Err(Error::Config(
                "push subscription needs the mesh transport (a multiaddr or mdns bootstrap)".into(),
            )),
        }
    }

    /// The current routes (no I/O).
    pub fn routes(&self) -> NodeRoutes {
        lock(&self.inner.routes).clone()
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

    /// Asks every node the cluster lists, one at a time, and returns the answers of those that
    /// answered: a node that fails is logged (as `what`) and skipped; its error is returned only
    /// when no node answered (ListGroups and ListTransactions are asked this way).
    pub async fn ask_every_node<T>(
        &self,
        what: &str,
        mut ask: impl AsyncFnMut(NodeId) -> Result<T>,
    ) -> Result<Vec<(NodeId, T)>> {
        let meta = self.refresh_metadata(Some(&[])).await?;
        let mut answers = Vec::new();
        let mut last = None;
        for &node in meta.brokers.keys() {
            match ask(node).await {
                Ok(answer) => answers.push((node, answer)),
                Err(e) => {
                    debug!(node, error = %e, "{what} failed");
                    last = Some(e);
                }
            }
        }
        match (answers.is_empty(), last) {
            (true, Some(e)) => Err(e),
            _ => Ok(answers),
        }
    }

    /// Refreshes metadata for `topics` (`None` = all topics, `Some(&[])` = brokers only), from
    /// the first node that answers. Over the mesh the same node is asked for the member list at
    /// the same time, and the others too if Metadata names a node id it did not.
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
        let candidates = lock(&self.inner.routes).any();
        let mut last = None;
        for endpoint in candidates {
            match self.refresh_from(&endpoint, topics, &current).await {
                Err(e) if e.is_connection_error() => {
                    debug!(endpoint = %endpoint, error = %e, "metadata refresh failed here; trying another node");
                    last = Some(e);
                }
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| Error::Connect {
            endpoint: "cluster".into(),
            reason: "no endpoint".into(),
        }))
    }

    async fn refresh_from(
        &self,
        endpoint: &Endpoint,
        topics: Option<&[String]>,
        current: &ClusterMetadata,
    ) -> Result<Arc<ClusterMetadata>> {
        let peer = match endpoint {
            Endpoint::Mesh { peer, .. } => Some(peer.as_str()),
            Endpoint::Kafka(_) => None,
        };
        let members = async {
            match (&self.inner.members, peer) {
                (Some(source), Some(peer)) => Some(source.cluster_info(peer).await),
                _ => None,
            }
        };
        let metadata = async {
            let conn = self.connection(endpoint.clone()).await?;
            let version = conn.version::<MetadataRequest>()?;
            let auto = self.inner.config.allow_auto_topic_creation;
            let request = metadata::request(version, topics, auto);
            conn.send(version, &request).await
        };
        let (response, members) = futures::join!(metadata, members);
        let response = response?;
        let next = Arc::new(metadata::merge(
            current,
            &response,
            topics.is_none(),
            Instant::now(),
        )?);
        let lacking = {
            let mut routes = lock(&self.inner.routes);
            match members {
                Some(Ok(view)) => routes.update_members(&view.members),
                Some(Err(e)) => {
                    debug!(endpoint = %endpoint, error = %e, "member list request failed")
                }
                None => {}
            }
            routes.update(&next);
            routes.lacks_any(&next)
        };
        if lacking && self.inner.members.is_some() {
            // Gossip of a new node's id may not have reached this node yet: ask the others.
            let found = self.learn_members(peer, |r| !r.lacks_any(&next)).await;
            debug!(found, "metadata named a node the member list lacked");
        }
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
