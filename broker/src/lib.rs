//! The Rafka node.
//!
//! Component map:
//! - [`config`]: [`NodeConfig`], layered flags > `RAFKA_*` env > TOML file > defaults.
//! - [`node`]: start-up and shutdown of everything below, in order.
//! - [`broker`]: [`Broker`], the shared context handlers read (metadata, store, coordinators).
//! - [`metadata`]: the metadata state machine ([`metadata::MetadataImage`]), its Raft log
//!   ([`metadata::raft`]), placement ([`metadata::assignment`]) and the cluster's feature level
//!   ([`metadata::features`]: what nodes may write for each other during upgrades).
//! - [`cluster`]: liveness from gossip, formation, the controller (learners, voters, partition
//!   leaders on the metadata leader) and this node's gossiped state.
//! - [`partition`]: the owner of every partition replica on this node (leading or following):
//!   the replication cores (`partition/core/`, sans-IO) beside their shells, and the
//!   operations handlers call.
//! - [`api`]: one file per Kafka API, and [`api::dispatch`], which decodes a frame, checks the
//!   version and calls the handler. Handlers are transport-agnostic.
//! - [`transport`]: the Kafka TCP listener and the libp2p (`/rafka/kafka/1`) listener: both feed
//!   the same frames to [`api::dispatch`].
//! - [`group`]: committed group offsets, kept in the internal `__consumer_offsets` partitions.
//! - [`txn`]: the transaction coordinator, its state in the internal `__transaction_state`
//!   partitions.
//! - [`peers`]: Kafka requests to another node by node id (over the mesh, or through this
//!   node's own dispatcher when the node is this one).
//! - [`producer_ids`]: producer id blocks for idempotent producers.
//! - [`ids`]: node ids, broker, leader and partition epochs and offsets as types.
//! - [`limits`]: the node's resource limits and the one log line each time one is hit.
//! - [`http`]: `/health`, `/ready`, `/metrics`.
//! - [`metrics`]: metric names.
//! - [`series`]: per-entity series (per partition, per group) rendered at each scrape, capped.
//! - [`alloc`]: the node's allocator, which keeps wire-controlled pre-allocations from aborting it.
//!
//! ```
//! let config = rafka_broker::NodeConfig::default();
//! assert_eq!(config.kafka_addr.port(), 9092);
//! assert!(config.validate().is_ok());
//! ```

pub mod alloc;
pub mod api;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod group;
pub mod http;
pub mod ids;
pub mod limits;
pub mod metadata;
pub mod metrics;
pub mod node;
pub mod partition;
pub mod peers;
pub mod producer_ids;
pub mod push;
pub mod series;
pub mod transport;
pub mod txn;

pub use broker::Broker;
pub use config::{NodeArgs, NodeConfig};
pub use error::NodeError;
pub use node::Node;
