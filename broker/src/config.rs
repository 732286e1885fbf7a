//! Node configuration: flags over `RAFKA_*` environment variables over a TOML file over defaults.
//!
//! clap resolves flag-over-environment; [`NodeConfig::load`] lays the result over the optional file
//! and the defaults, and keeps the cause when a value is wrong.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use rafka_mesh::{Multiaddr, Protocol};
use rafka_store::FsyncPolicy;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::metadata::features::{self, FeatureLevel, LevelRange};

/// Command-line flags of `rafka-node`. Every flag can also be set with the `RAFKA_*` variable named
/// in its help, or in the TOML file given by `--config` (keys as the flag names, with `_`).
#[derive(Debug, Default, Parser)]
#[command(
    name = "rafka-node",
    version,
    about = "A Rafka broker node: Kafka's model, no setup."
)]
pub struct NodeArgs {
    /// TOML configuration file; flags and RAFKA_* variables override its values.
    #[arg(long, env = "RAFKA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the node keeps its data (partition logs, metadata, node key). [default: ./rafka-data]
    #[arg(long, env = "RAFKA_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Kafka protocol listener (TCP). Port 0 lets the OS choose. [default: 127.0.0.1:9092]
    #[arg(long, env = "RAFKA_KAFKA_ADDR", value_name = "HOST:PORT")]
    pub kafka_addr: Option<SocketAddr>,
    /// Address Kafka clients are told to connect to. [default: derived from --kafka-addr]
    #[arg(long, env = "RAFKA_ADVERTISED_KAFKA_ADDR", value_name = "HOST:PORT")]
    pub advertised_kafka_addr: Option<String>,
    /// libp2p listen address of the mesh. Without a cluster key the mesh listens on loopback only.
    /// [default: /ip4/127.0.0.1/tcp/7070, or /ip4/0.0.0.0/tcp/7070 with --cluster-key-file]
    #[arg(long, env = "RAFKA_P2P_ADDR", value_name = "MULTIADDR")]
    pub p2p_addr: Option<Multiaddr>,
    /// The cluster key (made with `rafka cluster key generate FILE`): only nodes and clients with the
    /// same key can connect to the mesh. Required for mesh addresses other machines can reach.
    #[arg(long, env = "RAFKA_CLUSTER_KEY_FILE", value_name = "FILE")]
    pub cluster_key_file: Option<PathBuf>,
    /// Run the mesh without a cluster key on addresses other machines can reach: any process that
    /// reaches the p2p port can join the cluster, vote and change metadata. Not recommended.
    #[arg(long, env = "RAFKA_INSECURE_OPEN_MESH")]
    pub insecure_open_mesh: bool,
    /// HTTP admin endpoint: /health, /ready, /metrics. [default: 127.0.0.1:9644]
    #[arg(long, env = "RAFKA_HTTP_ADDR", value_name = "HOST:PORT")]
    pub http_addr: Option<SocketAddr>,
    /// Default fsync policy of partition logs: always | never | interval:MS. [default: always]
    #[arg(long, env = "RAFKA_FSYNC", value_name = "POLICY")]
    pub fsync: Option<FsyncPolicy>,
    /// Create topics on first produce or metadata request, as Kafka does. [default: true]
    #[arg(long, env = "RAFKA_AUTO_CREATE_TOPICS", value_name = "BOOL")]
    pub auto_create_topics: Option<bool>,
    /// Form a new cluster once this many fresh nodes see each other (1 for a single node). A node
    /// restarted on an existing data dir resumes its cluster with or without it; a fresh node
    /// without it waits to be added to an existing cluster.
    #[arg(long, env = "RAFKA_BOOTSTRAP_EXPECT", value_name = "N")]
    pub bootstrap_expect: Option<u32>,
    /// A node to join through: its p2p multiaddr, the /p2p/<peer id> part optional. Repeatable
    /// (comma separated in RAFKA_BOOTSTRAP); Kademlia and gossip find the rest of the mesh.
    #[arg(
        long,
        env = "RAFKA_BOOTSTRAP",
        value_name = "MULTIADDR",
        value_delimiter = ','
    )]
    pub bootstrap: Vec<Multiaddr>,
    /// Do not discover nodes on the LAN with mDNS (it is on by default).
    #[arg(long, env = "RAFKA_NO_MDNS")]
    pub no_mdns: bool,
    /// Listen address of the control plane (membership gossip and the metadata log), separate from
    /// --p2p-addr so bulk data never delays heartbeats. Peers learn it. [default: --p2p-addr's IP, port 0]
    #[arg(long, env = "RAFKA_CONTROL_ADDR", value_name = "MULTIADDR")]
    pub control_addr: Option<Multiaddr>,
    /// Voters of the metadata log wanted (3 or 5). The voters are the largest odd number of nodes not
    /// above this and not above the live nodes (1 for 1-2 nodes, 3 for 3-4); every other node
    /// follows as a learner. [default: 3]
    #[arg(long, env = "RAFKA_VOTERS", value_name = "N")]
    pub voters: Option<usize>,
    /// A voter dead (or unreachable) this long is replaced by a live, caught-up node while a
    /// majority of the voters remains. A voter that leaves cleanly hands its seat over at once. [default: 30000]
    #[arg(long, env = "RAFKA_VOTER_REPLACE_AFTER_MS", value_name = "MS")]
    pub voter_replace_after_ms: Option<u64>,
    /// Partitions of auto-created topics and of CreateTopics requests that leave it to the broker. [default: 1]
    #[arg(long, env = "RAFKA_NUM_PARTITIONS", value_name = "N")]
    pub num_partitions: Option<i32>,
    /// Replicas of topics created without a replication factor (Kafka's default.replication.factor). [default: 1]
    #[arg(long, env = "RAFKA_DEFAULT_REPLICATION_FACTOR", value_name = "N")]
    pub default_replication_factor: Option<i16>,
    /// In-sync replicas an acks=all write needs, for topics without their own min.insync.replicas. [default: 1]
    #[arg(long, env = "RAFKA_MIN_INSYNC_REPLICAS", value_name = "N")]
    pub min_insync_replicas: Option<i32>,
    /// A follower that has not caught up for this long leaves the in-sync replicas (Kafka's replica.lag.time.max.ms). [default: 30000]
    #[arg(long, env = "RAFKA_REPLICA_LAG_TIME_MAX_MS", value_name = "MS")]
    pub replica_lag_time_max_ms: Option<u64>,
    /// How often leadership moves back to each partition's preferred (first) replica when it is alive and in sync, as Kafka's auto.leader.rebalance does every leader.imbalance.check.interval; 0 turns it off. [default: 300000]
    #[arg(long, env = "RAFKA_LEADER_REBALANCE_INTERVAL_MS", value_name = "MS")]
    pub leader_rebalance_interval_ms: Option<u64>,
    /// Largest request accepted, in bytes (Kafka's socket.request.max.bytes); a larger one closes the connection. [default: 104857600]
    #[arg(long, env = "RAFKA_MAX_REQUEST_BYTES", value_name = "BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Bytes of large requests (over 64 KiB) being read or handled at once, node-wide, on both listeners (Kafka's queued.max.request.bytes); more wait before they are read. At least --max-request-bytes. [default: 268435456]
    #[arg(long, env = "RAFKA_QUEUED_MAX_REQUEST_BYTES", value_name = "BYTES")]
    pub queued_max_request_bytes: Option<usize>,
    /// Kafka connections open at once from one client IP address (Kafka's max.connections.per.ip); more are closed at once. [default: 1000]
    #[arg(long, env = "RAFKA_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Connections one peer may have established with this node on each p2p plane (data and control, each its own); more are closed once their handshake is done. [default: 8]
    #[arg(long, env = "RAFKA_P2P_MAX_CONNECTIONS_PER_PEER", value_name = "N")]
    pub p2p_max_connections_per_peer: Option<u32>,
    /// Inbound p2p connections still in their handshake (key check, noise, yamux) at once, per plane; more are closed as they are accepted. [default: 256]
    #[arg(long, env = "RAFKA_P2P_MAX_PENDING_CONNECTIONS", value_name = "N")]
    pub p2p_max_pending_connections: Option<u32>,
    /// Inbound p2p connections established at once (clients and other nodes), per plane; more are closed once their handshake is done. [default: 4096]
    #[arg(long, env = "RAFKA_P2P_MAX_INCOMING_CONNECTIONS", value_name = "N")]
    pub p2p_max_incoming_connections: Option<u32>,
    /// Partitions one CreateTopics request may create, over all its topics; more fail the whole request with POLICY_VIOLATION (as Kafka since KAFKA-17870). [default: 10000]
    #[arg(long, env = "RAFKA_MAX_PARTITIONS_PER_REQUEST", value_name = "N")]
    pub max_partitions_per_request: Option<u32>,
    /// Partition replicas one node may host; a topic that would place more on some node is refused with POLICY_VIOLATION. [default: 20000]
    #[arg(long, env = "RAFKA_MAX_PARTITIONS_PER_NODE", value_name = "N")]
    pub max_partitions_per_node: Option<u32>,
    /// Per-partition and per-group series one /metrics scrape exports; beyond it those series are left out (rafka_metric_series_dropped says how many). [default: 10000]
    #[arg(long, env = "RAFKA_MAX_METRIC_SERIES", value_name = "N")]
    pub max_metric_series: Option<usize>,
    /// Default retention time of topics in ms; -1 keeps data forever. [default: 604800000]
    #[arg(long, env = "RAFKA_RETENTION_MS", value_name = "MS")]
    pub retention_ms: Option<i64>,
    /// Default retention size per partition in bytes; -1 means unlimited. [default: -1]
    #[arg(long, env = "RAFKA_RETENTION_BYTES", value_name = "BYTES")]
    pub retention_bytes: Option<i64>,
    /// Default segment size in bytes: retention drops whole segments. [default: 1073741824]
    #[arg(long, env = "RAFKA_SEGMENT_BYTES", value_name = "BYTES")]
    pub segment_bytes: Option<u64>,
    /// How often retention is enforced, in ms. [default: 30000]
    #[arg(long, env = "RAFKA_RETENTION_CHECK_INTERVAL_MS", value_name = "MS")]
    pub retention_check_interval_ms: Option<u64>,
    /// Log cleaner threads compacting topics with cleanup.policy=compact (Kafka's log.cleaner.threads); 0 runs none. [default: 1]
    #[arg(long, env = "RAFKA_LOG_CLEANER_THREADS", value_name = "N")]
    pub log_cleaner_threads: Option<usize>,
    /// How long an idle log cleaner thread waits before looking for dirty logs again, in ms (Kafka's log.cleaner.backoff.ms). [default: 15000]
    #[arg(long, env = "RAFKA_LOG_CLEANER_BACKOFF_MS", value_name = "MS")]
    pub log_cleaner_backoff_ms: Option<u64>,
    /// Partitions of the internal group-offsets topic (fixed once created). [default: 8]
    #[arg(long, env = "RAFKA_OFFSETS_TOPIC_PARTITIONS", value_name = "N")]
    pub offsets_topic_partitions: Option<i32>,
    /// Replicas of the internal group-offsets topic (at most the nodes registered in the cluster); it is created only once that many nodes are alive (KIP-115). [default: 3]
    #[arg(long, env = "RAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", value_name = "N")]
    pub offsets_topic_replication_factor: Option<i16>,
    /// How long a new or empty group waits for more members before its first rebalance
    /// completes (Kafka's group.initial.rebalance.delay.ms). [default: 3000]
    #[arg(
        long,
        env = "RAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS",
        value_name = "MS"
    )]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// Smallest session timeout a group member may ask for. [default: 6000]
    #[arg(long, env = "RAFKA_GROUP_MIN_SESSION_TIMEOUT_MS", value_name = "MS")]
    pub group_min_session_timeout_ms: Option<u64>,
    /// Largest session timeout a group member may ask for. [default: 1800000]
    #[arg(long, env = "RAFKA_GROUP_MAX_SESSION_TIMEOUT_MS", value_name = "MS")]
    pub group_max_session_timeout_ms: Option<u64>,
    /// Members of one group at most (GROUP_MAX_SIZE_REACHED beyond). [default: 2147483647]
    #[arg(long, env = "RAFKA_GROUP_MAX_SIZE", value_name = "N")]
    pub group_max_size: Option<u32>,
    /// How long committed offsets are kept once their group is empty (or, for groups that never
    /// had members, after their commit), in minutes. [default: 10080]
    #[arg(long, env = "RAFKA_OFFSETS_RETENTION_MINUTES", value_name = "MINUTES")]
    pub offsets_retention_minutes: Option<u64>,
    /// Partitions of the internal transaction-state topic `__transaction_state` (Kafka's transaction.state.log.num.partitions; fixed once created). [default: 50]
    #[arg(long, env = "RAFKA_TRANSACTION_STATE_PARTITIONS", value_name = "N")]
    pub transaction_state_partitions: Option<i32>,
    /// Replicas of `__transaction_state` (Kafka's transaction.state.log.replication.factor; at most the nodes registered in the cluster); it is created only once that many nodes are alive (KIP-115). [default: 3]
    #[arg(
        long,
        env = "RAFKA_TRANSACTION_STATE_REPLICATION_FACTOR",
        value_name = "N"
    )]
    pub transaction_state_replication_factor: Option<i16>,
    /// Largest transaction.timeout.ms a transactional producer may ask for (INVALID_TRANSACTION_TIMEOUT above; Kafka's transaction.max.timeout.ms). [default: 900000]
    #[arg(long, env = "RAFKA_TRANSACTION_MAX_TIMEOUT_MS", value_name = "MS")]
    pub transaction_max_timeout_ms: Option<u64>,
    /// How long a transactional id with no open transaction is kept after its last use (Kafka's transactional.id.expiration.ms). [default: 604800000]
    #[arg(long, env = "RAFKA_TRANSACTIONAL_ID_EXPIRATION_MS", value_name = "MS")]
    pub transactional_id_expiration_ms: Option<u64>,
    /// Highest cluster feature level this node says it supports (at most this release's). The
    /// cluster's level rises only to what every node supports, so during a rolling upgrade this
    /// keeps the level, and with it the way back to the previous release, until it is removed.
    /// [default: the highest this release supports]
    #[arg(long, env = "RAFKA_MAX_FEATURE_LEVEL", value_name = "LEVEL")]
    pub max_feature_level: Option<u16>,
}

/// The mesh port when `--p2p-addr` is not given.
pub const DEFAULT_P2P_PORT: u16 = 7070;

/// The largest odd number not above `n` (at least 1).
pub fn odd_floor(n: usize) -> usize {
    if n <= 1 {
        1
    } else if !n.is_multiple_of(2) {
        n
    } else {
        n - 1
    }
}

/// Whether `addr` only reaches this machine: a loopback IP, or the name `localhost`.
pub fn is_loopback(addr: &Multiaddr) -> bool {
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => ip.is_loopback(),
        Some(Protocol::Ip6(ip)) => ip.is_loopback(),
        Some(Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h)) => h == "localhost",
        _ => false,
    }
}

/// The node's resolved configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Kafka TCP listener.
    pub kafka_addr: SocketAddr,
    /// Advertised Kafka address (`host:port`), if not derived.
    pub advertised_kafka_addr: Option<String>,
    /// Mesh listen address (`None`: loopback without a key, every interface with one).
    pub p2p_addr: Option<Multiaddr>,
    /// The cluster key file.
    pub cluster_key_file: Option<PathBuf>,
    /// Allow a mesh reachable from other machines without a key.
    pub insecure_open_mesh: bool,
    /// HTTP admin listener.
    pub http_addr: SocketAddr,
    /// Default fsync policy.
    pub fsync: FsyncPolicy,
    /// Auto-create topics.
    pub auto_create_topics: bool,
    /// Nodes expected to form a new cluster.
    pub bootstrap_expect: Option<u32>,
    /// Nodes to join through (p2p multiaddrs).
    pub bootstrap: Vec<Multiaddr>,
    /// mDNS discovery.
    pub mdns: bool,
    /// Control-plane listen address (`None`: the p2p address's IP, an OS-assigned port).
    pub control_addr: Option<Multiaddr>,
    /// Voters of the metadata log wanted (the actual number is odd, see [`NodeConfig::voters`]).
    pub voters: usize,
    /// How long a voter may be dead before it is replaced (ms).
    pub voter_replace_after_ms: u64,
    /// Default partition count.
    pub num_partitions: i32,
    /// Default replication factor.
    pub default_replication_factor: i16,
    /// Default `min.insync.replicas`.
    pub min_insync_replicas: i32,
    /// How long a follower may lag before it leaves the ISR (ms).
    pub replica_lag_time_max_ms: u64,
    /// How often preferred replicas get their leadership back (ms, 0 = never).
    pub leader_rebalance_interval_ms: u64,
    /// Request size limit.
    pub max_request_bytes: usize,
    /// Node-wide budget of large request bytes being read or handled.
    pub queued_max_request_bytes: usize,
    /// Kafka connections per client IP address.
    pub max_connections_per_ip: usize,
    /// p2p connections one peer may have established, per plane.
    pub p2p_max_connections_per_peer: u32,
    /// Inbound p2p connections in their handshake at once, per plane.
    pub p2p_max_pending_connections: u32,
    /// Inbound p2p connections established at once, per plane.
    pub p2p_max_incoming_connections: u32,
    /// Partitions one CreateTopics may create.
    pub max_partitions_per_request: u32,
    /// Partition replicas one node may host.
    pub max_partitions_per_node: u32,
    /// Per-partition and per-group metric series per scrape.
    pub max_metric_series: usize,
    /// Default retention time (ms, -1 = forever).
    pub retention_ms: i64,
    /// Default retention bytes (-1 = unlimited).
    pub retention_bytes: i64,
    /// Default segment size.
    pub segment_bytes: u64,
    /// Retention enforcement period (ms).
    pub retention_check_interval_ms: u64,
    /// Log cleaner threads.
    pub log_cleaner_threads: usize,
    /// Idle log cleaner backoff (ms).
    pub log_cleaner_backoff_ms: u64,
    /// Partitions of `__consumer_offsets`.
    pub offsets_topic_partitions: i32,
    /// Replicas of `__consumer_offsets` (at most the registered nodes).
    pub offsets_topic_replication_factor: i16,
    /// `group.initial.rebalance.delay.ms`.
    pub group_initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms`.
    pub group_min_session_timeout_ms: u64,
    /// `group.max.session.timeout.ms`.
    pub group_max_session_timeout_ms: u64,
    /// `group.max.size`.
    pub group_max_size: u32,
    /// `offsets.retention.minutes`.
    pub offsets_retention_minutes: u64,
    /// Partitions of `__transaction_state`.
    pub transaction_state_partitions: i32,
    /// Replicas of `__transaction_state` (at most the registered nodes).
    pub transaction_state_replication_factor: i16,
    /// `transaction.max.timeout.ms`.
    pub transaction_max_timeout_ms: u64,
    /// `transactional.id.expiration.ms`.
    pub transactional_id_expiration_ms: u64,
    /// Highest feature level this node supports (`None`: the release's highest).
    pub max_feature_level: Option<u16>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./rafka-data"),
            kafka_addr: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised_kafka_addr: None,
            p2p_addr: None,
            cluster_key_file: None,
            insecure_open_mesh: false,
            http_addr: SocketAddr::from(([127, 0, 0, 1], 9644)),
            fsync: FsyncPolicy::Always,
            auto_create_topics: true,
            bootstrap_expect: None,
            bootstrap: Vec::new(),
            mdns: true,
            control_addr: None,
            voters: 3,
            voter_replace_after_ms: 30_000,
            num_partitions: 1,
            default_replication_factor: 1,
            min_insync_replicas: 1,
            replica_lag_time_max_ms: 30_000,
            leader_rebalance_interval_ms: 300_000,
            max_request_bytes: 100 * 1024 * 1024,
            queued_max_request_bytes: 256 * 1024 * 1024,
            max_connections_per_ip: 1000,
            p2p_max_connections_per_peer: 8,
            p2p_max_pending_connections: 256,
            p2p_max_incoming_connections: 4096,
            max_partitions_per_request: 10_000,
            max_partitions_per_node: 20_000,
            max_metric_series: 10_000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            segment_bytes: 1 << 30,
            retention_check_interval_ms: 30_000,
            log_cleaner_threads: 1,
            log_cleaner_backoff_ms: 15_000,
            offsets_topic_partitions: 8,
            offsets_topic_replication_factor: 3,
            group_initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: i32::MAX as u32,
            offsets_retention_minutes: 7 * 24 * 60,
            transaction_state_partitions: 50,
            transaction_state_replication_factor: 3,
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 7 * 24 * 3600 * 1000,
            max_feature_level: None,
        }
    }
}

macro_rules! overlay {
    ($config:ident, $args:ident, $($field:ident),* $(,)?) => {
        $( if let Some(value) = $args.$field { $config.$field = value; } )*
    };
}

impl NodeConfig {
    /// Defaults, then the file named by `--config` (if any), then flags and environment.
    pub fn load(args: NodeArgs) -> Result<Self, ConfigError> {
        let mut config = match &args.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        if let Some(addr) = args.advertised_kafka_addr {
            config.advertised_kafka_addr = Some(addr);
        }
        if let Some(n) = args.bootstrap_expect {
            config.bootstrap_expect = Some(n);
        }
        if !args.bootstrap.is_empty() {
            config.bootstrap = args.bootstrap;
        }
        if args.no_mdns {
            config.mdns = false;
        }
        if let Some(level) = args.max_feature_level {
            config.max_feature_level = Some(level);
        }
        if args.insecure_open_mesh {
            config.insecure_open_mesh = true;
        }
        for (field, value) in [
            (&mut config.p2p_addr, args.p2p_addr),
            (&mut config.control_addr, args.control_addr),
        ] {
            if value.is_some() {
                *field = value;
            }
        }
        if args.cluster_key_file.is_some() {
            config.cluster_key_file = args.cluster_key_file;
        }
        overlay!(
            config,
            args,
            data_dir,
            kafka_addr,
            http_addr,
            voters,
            voter_replace_after_ms,
            fsync,
            auto_create_topics,
            num_partitions,
            default_replication_factor,
            min_insync_replicas,
            replica_lag_time_max_ms,
            leader_rebalance_interval_ms,
            max_request_bytes,
            queued_max_request_bytes,
            max_connections_per_ip,
            p2p_max_connections_per_peer,
            p2p_max_pending_connections,
            p2p_max_incoming_connections,
            max_partitions_per_request,
            max_partitions_per_node,
            max_metric_series,
            retention_ms,
            retention_bytes,
            segment_bytes,
            retention_check_interval_ms,
            log_cleaner_threads,
            log_cleaner_backoff_ms,
            offsets_topic_partitions,
            offsets_topic_replication_factor,
            group_initial_rebalance_delay_ms,
            group_min_session_timeout_ms,
            group_max_session_timeout_ms,
            group_max_size,
            offsets_retention_minutes,
            transaction_state_partitions,
            transaction_state_replication_factor,
            transaction_max_timeout_ms,
            transactional_id_expiration_ms,
        );
        config.validate()?;
        Ok(config)
    }

    /// Reads a TOML file; unknown keys are errors (a typo must not be silently ignored).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Checks values and their combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            key: key.into(),
            reason,
        };
        if self.num_partitions < 1 {
            return Err(invalid(
                "num_partitions",
                format!("{} is below 1", self.num_partitions),
            ));
        }
        if self.offsets_topic_partitions < 1 {
            return Err(invalid(
                "offsets_topic_partitions",
                "must be at least 1".into(),
            ));
        }
        if self.transaction_state_partitions < 1 {
            return Err(invalid(
                "transaction_state_partitions",
                "must be at least 1".into(),
            ));
        }
        if self.transaction_max_timeout_ms < 1 || self.transactional_id_expiration_ms < 1 {
            return Err(invalid(
                "transaction_max_timeout_ms",
                "transaction_max_timeout_ms and transactional_id_expiration_ms must be at least 1"
                    .into(),
            ));
        }
        for (key, value) in [
            (
                "default_replication_factor",
                i32::from(self.default_replication_factor),
            ),
            ("min_insync_replicas", self.min_insync_replicas),
            (
                "offsets_topic_replication_factor",
                i32::from(self.offsets_topic_replication_factor),
            ),
            (
                "transaction_state_replication_factor",
                i32::from(self.transaction_state_replication_factor),
            ),
        ] {
            if value < 1 {
                return Err(invalid(key, format!("{value} is below 1")));
            }
        }
        if self.group_min_session_timeout_ms > self.group_max_session_timeout_ms {
            return Err(invalid(
                "group_min_session_timeout_ms",
                "must not exceed group_max_session_timeout_ms".into(),
            ));
        }
        if self.group_max_size < 1 || self.offsets_retention_minutes < 1 {
            return Err(invalid(
                "group_max_size",
                "group_max_size and offsets_retention_minutes must be at least 1".into(),
            ));
        }
        if self.replica_lag_time_max_ms < 100 {
            return Err(invalid(
                "replica_lag_time_max_ms",
                "must be at least 100".into(),
            ));
        }
        if self.max_request_bytes < 1024 {
            return Err(invalid("max_request_bytes", "must be at least 1024".into()));
        }
        if self.queued_max_request_bytes < self.max_request_bytes {
            return Err(invalid(
                "queued_max_request_bytes",
                format!(
                    "{} is below max_request_bytes ({}): a request that large could never be read",
                    self.queued_max_request_bytes, self.max_request_bytes
                ),
            ));
        }
        for (key, value) in [
            ("max_connections_per_ip", self.max_connections_per_ip),
            (
                "p2p_max_connections_per_peer",
                self.p2p_max_connections_per_peer as usize,
            ),
            (
                "p2p_max_pending_connections",
                self.p2p_max_pending_connections as usize,
            ),
            (
                "p2p_max_incoming_connections",
                self.p2p_max_incoming_connections as usize,
            ),
            (
                "max_partitions_per_request",
                self.max_partitions_per_request as usize,
            ),
            (
                "max_partitions_per_node",
                self.max_partitions_per_node as usize,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        if self.retention_ms < -1 || self.retention_ms == 0 {
            return Err(invalid(
                "retention_ms",
                format!("{} (use -1 or a positive value)", self.retention_ms),
            ));
        }
        if self.retention_bytes < -1 || self.retention_bytes == 0 {
            return Err(invalid(
                "retention_bytes",
                format!("{} (use -1 or a positive value)", self.retention_bytes),
            ));
        }
        if self.segment_bytes < 1024 * 1024 {
            return Err(invalid("segment_bytes", "must be at least 1 MiB".into()));
        }
        if self.log_cleaner_backoff_ms == 0 {
            return Err(invalid("log_cleaner_backoff_ms", "must be positive".into()));
        }
        if self.retention_check_interval_ms == 0 {
            return Err(invalid(
                "retention_check_interval_ms",
                "must be positive".into(),
            ));
        }
        if !(1..=9).contains(&self.voters) {
            return Err(invalid(
                "voters",
                format!("{} (use 3 or 5; 1 for a single voter)", self.voters),
            ));
        }
        if self.voter_replace_after_ms < 1000 {
            return Err(invalid(
                "voter_replace_after_ms",
                "must be at least 1000".into(),
            ));
        }
        self.check_mesh_exposure()?;
        if let Some(0) = self.bootstrap_expect {
            return Err(invalid("bootstrap_expect", "must be at least 1".into()));
        }
        if let Some(level) = self.max_feature_level
            && FeatureLevel(level) > features::LATEST
        {
            return Err(invalid(
                "max_feature_level",
                format!(
                    "{level} is above {}, the highest level this release supports",
                    features::LATEST
                ),
            ));
        }
        if let Some(addr) = &self.advertised_kafka_addr {
            crate::endpoint::parse_host_port(addr)
                .map_err(|reason| invalid("advertised_kafka_addr", reason))?;
        }
        Ok(())
    }

    /// The feature levels this node supports: the release's, capped by `max_feature_level`.
    pub fn supported_levels(&self) -> LevelRange {
        self.max_feature_level.map_or(features::SUPPORTED, |max| {
            features::SUPPORTED.capped(FeatureLevel(max))
        })
    }

    /// The mesh's data-plane listen address: `--p2p-addr`, or port 7070 on loopback (no key) or
    /// on every interface (with a key).
    pub fn p2p_listen(&self) -> Multiaddr {
        self.p2p_addr.clone().unwrap_or_else(|| {
            let ip = if self.cluster_key_file.is_some() {
                Ipv4Addr::UNSPECIFIED
            } else {
                Ipv4Addr::LOCALHOST
            };
            Multiaddr::from(ip).with(Protocol::Tcp(DEFAULT_P2P_PORT))
        })
    }

    /// The control plane's listen address: `--control-addr`, or the p2p address's IP with an
    /// OS-assigned port.
    pub fn control_listen(&self) -> Multiaddr {
        self.control_addr.clone().unwrap_or_else(|| {
            let mut addr: Multiaddr = self
                .p2p_listen()
                .iter()
                .take_while(|p| !matches!(p, Protocol::Tcp(_)))
                .collect();
            addr.push(Protocol::Tcp(0));
            addr
        })
    }

    /// The actual number of voters for `nodes` live nodes: the largest odd number not above
    /// `--voters` nor `nodes` (at least 1).
    pub fn voters_for(&self, nodes: usize) -> usize {
        odd_floor(self.voters.min(nodes))
    }

    /// How long a dead voter keeps its seat.
    pub fn voter_replace_after(&self) -> Duration {
        Duration::from_millis(self.voter_replace_after_ms)
    }

    /// Without a cluster key, every mesh address (listen and bootstrap) must be loopback, unless
    /// the operator explicitly opens the mesh.
    fn check_mesh_exposure(&self) -> Result<(), ConfigError> {
        if self.cluster_key_file.is_some() || self.insecure_open_mesh {
            return Ok(());
        }
        let listen = [
            ("p2p_addr", self.p2p_listen()),
            ("control_addr", self.control_listen()),
        ];
        let bootstrap = self.bootstrap.iter().map(|a| ("bootstrap", a.clone()));
        for (key, addr) in listen.into_iter().chain(bootstrap) {
            if !is_loopback(&addr) {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    reason: format!(
                        "{addr} reaches beyond this machine, and this node has no cluster key: anyone who \
                         can reach the mesh could join the cluster. Create a key once with `rafka cluster key \
                         generate cluster.key`, copy the file to every node and client, and start each with \
                         --cluster-key-file cluster.key (or RAFKA_CLUSTER_KEY_FILE); or, to run an open mesh \
                         anyway, pass --insecure-open-mesh"
                    ),
                });
            }
        }
        Ok(())
    }

    /// How often preferred replicas get their leadership back, if at all.
    pub fn leader_rebalance_interval(&self) -> Option<Duration> {
        (self.leader_rebalance_interval_ms > 0)
            .then(|| Duration::from_millis(self.leader_rebalance_interval_ms))
    }

    /// How long a follower may lag before it leaves the ISR.
    pub fn replica_lag_time_max(&self) -> Duration {
        Duration::from_millis(self.replica_lag_time_max_ms)
    }

    /// The group coordinator's settings.
    pub fn group_config(&self) -> crate::group::core::GroupConfig {
        crate::group::core::GroupConfig {
            min_session_timeout: Duration::from_millis(self.group_min_session_timeout_ms),
            max_session_timeout: Duration::from_millis(self.group_max_session_timeout_ms),
            initial_rebalance_delay: Duration::from_millis(self.group_initial_rebalance_delay_ms),
            max_group_size: usize::try_from(self.group_max_size).unwrap_or(usize::MAX),
            offsets_retention: Duration::from_secs(
                self.offsets_retention_minutes.saturating_mul(60),
            ),
        }
    }

    /// The transaction coordinator's settings.
    pub fn txn_config(&self) -> crate::txn::core::TxnConfig {
        crate::txn::core::TxnConfig {
            max_timeout: Duration::from_millis(self.transaction_max_timeout_ms),
            id_expiration: Duration::from_millis(self.transactional_id_expiration_ms),
            state_partitions: self.transaction_state_partitions,
            offsets_partitions: self.offsets_topic_partitions,
            ..crate::txn::core::TxnConfig::default()
        }
    }

    /// The retention check period.
    pub fn retention_check_interval(&self) -> Duration {
        Duration::from_millis(self.retention_check_interval_ms)
    }

    /// A node that forms a cluster of one on loopback, every port OS-assigned, no mDNS, its data
    /// in `data_dir`: what a test runs in its own process (`Node::start`).
    pub fn single_on_loopback(data_dir: &Path) -> NodeConfig {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let any_port = || {
            Multiaddr::empty()
                .with(Protocol::Ip4([127, 0, 0, 1].into()))
                .with(Protocol::Tcp(0))
        };
        NodeConfig {
            data_dir: data_dir.to_path_buf(),
            kafka_addr: loopback,
            http_addr: loopback,
            p2p_addr: Some(any_port()),
            control_addr: Some(any_port()),
            mdns: false,
            bootstrap_expect: Some(1),
            ..NodeConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(
            &file,
            "num_partitions = 3\nfsync = \"never\"\nkafka_addr = \"127.0.0.1:19092\"\n",
        )
        .unwrap();
        let args = NodeArgs {
            config: Some(file),
            num_partitions: Some(5),
            ..NodeArgs::default()
        };
        let config = NodeConfig::load(args).unwrap();
        assert_eq!(config.num_partitions, 5, "flag wins over file");
        assert_eq!(config.fsync, FsyncPolicy::Never, "file wins over default");
        assert_eq!(config.kafka_addr.port(), 19092);
        assert_eq!(
            config.http_addr,
            NodeConfig::default().http_addr,
            "default kept"
        );
    }

    #[test]
    fn unknown_file_keys_and_bad_values_name_their_cause() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(&file, "num_partitons = 3\n").unwrap();
        let err = NodeConfig::from_file(&file).unwrap_err().to_string();
        assert!(err.contains("num_partitons"), "{err}");

        let args = NodeArgs {
            num_partitions: Some(0),
            ..NodeArgs::default()
        };
        let err = NodeConfig::load(args).unwrap_err().to_string();
        assert!(err.contains("num_partitions"), "{err}");
    }

    #[test]
    fn help_documents_every_flag() {
        use clap::CommandFactory;
        let help = NodeArgs::command().render_long_help().to_string();
        for flag in [
            "--data-dir",
            "--kafka-addr",
            "--advertised-kafka-addr",
            "--p2p-addr",
            "--http-addr",
            "--fsync",
            "--auto-create-topics",
            "--config",
            "--bootstrap-expect",
            "--max-feature-level",
            "--max-request-bytes",
            "--queued-max-request-bytes",
            "--max-connections-per-ip",
            "--p2p-max-connections-per-peer",
            "--p2p-max-pending-connections",
            "--p2p-max-incoming-connections",
            "--max-partitions-per-request",
            "--max-partitions-per-node",
            "--max-metric-series",
            "--transaction-state-partitions",
            "--transaction-state-replication-factor",
            "--transaction-max-timeout-ms",
            "--transactional-id-expiration-ms",
            "RAFKA_FSYNC",
        ] {
            assert!(help.contains(flag), "--help lacks {flag}");
        }
    }

    #[test]
    fn limits_are_finite_and_the_request_budget_holds_the_largest_request() {
        let config = NodeConfig::default();
        assert!(config.validate().is_ok());
        assert!(config.queued_max_request_bytes >= config.max_request_bytes);
        let small_budget = NodeConfig {
            queued_max_request_bytes: config.max_request_bytes - 1,
            ..NodeConfig::default()
        };
        let err = small_budget.validate().unwrap_err().to_string();
        assert!(err.contains("queued_max_request_bytes"), "{err}");
        let no_connections = NodeConfig {
            max_connections_per_ip: 0,
            ..NodeConfig::default()
        };
        let err = no_connections.validate().unwrap_err().to_string();
        assert!(err.contains("max_connections_per_ip"), "{err}");
    }

    #[test]
    fn the_p2p_connection_limits_come_from_their_flags_and_must_be_positive() {
        use clap::Parser;
        let args = NodeArgs::try_parse_from([
            "rafka-node",
            "--p2p-max-connections-per-peer",
            "3",
            "--p2p-max-pending-connections",
            "4",
            "--p2p-max-incoming-connections",
            "5",
        ])
        .unwrap();
        let config = NodeConfig::load(args).unwrap();
        assert_eq!(
            (
                config.p2p_max_connections_per_peer,
                config.p2p_max_pending_connections,
                config.p2p_max_incoming_connections
            ),
            (3, 4, 5)
        );
        for flag in [
            "--p2p-max-connections-per-peer",
            "--p2p-max-pending-connections",
            "--p2p-max-incoming-connections",
        ] {
            let args = NodeArgs::try_parse_from(["rafka-node", flag, "0"]).unwrap();
            let err = NodeConfig::load(args).unwrap_err().to_string();
            let field = flag.trim_start_matches("--").replace('-', "_");
            assert!(err.contains(&field), "{flag} 0: {err}");
        }
    }

    #[test]
    fn the_supported_feature_levels_are_capped_by_the_flag_but_not_above_the_release() {
        assert_eq!(
            NodeConfig::default().supported_levels(),
            features::SUPPORTED
        );
        let capped = NodeConfig {
            max_feature_level: Some(0),
            ..NodeConfig::default()
        };
        assert_eq!(capped.supported_levels(), LevelRange::LEGACY);
        let above = NodeConfig {
            max_feature_level: Some(features::LATEST.0 + 1),
            ..NodeConfig::default()
        };
        let err = above.validate().unwrap_err().to_string();
        assert!(err.contains("max_feature_level"), "{err}");
    }
}
