//! The keys a node gossips about itself in the mesh's membership, and so the keys every reader
//! of the membership (the broker's Metadata and `/cluster`, the client's `rafka cluster` and its
//! routing over the mesh) looks up. The mesh itself writes [`DATA_ADDRS_KEY`] and
//! [`CONTROL_ADDRS_KEY`]; the broker writes the others (`broker/src/cluster/gossip.rs`).

/// The node's Kafka node id.
pub const NODE_ID_KEY: &str = "node_id";
/// The node's advertised Kafka endpoint (`host:port`).
pub const KAFKA_KEY: &str = "kafka";
/// The node's HTTP admin endpoint.
pub const HTTP_KEY: &str = "http";
/// The node's role in the metadata log (`leader`, `voter`, `learner`, `none`).
pub const ROLE_KEY: &str = "metadata_role";
/// The metadata version the node has applied.
pub const METADATA_VERSION_KEY: &str = "metadata_version";
/// How many partitions the node leads.
pub const LED_KEY: &str = "partitions_led";
/// Set by a fresh node that will form a cluster: its `--bootstrap-expect` count.
pub const FORMING_KEY: &str = "forming";
/// The cluster feature levels the node supports (`MIN-MAX`); absent on nodes from before feature
/// levels (level 0 only).
pub const FEATURE_LEVELS_KEY: &str = "feature_levels";
/// The broker epoch of the node's current registration.
pub const BROKER_EPOCH_KEY: &str = "broker_epoch";
/// The node's data-plane (p2p) addresses, comma separated.
pub const DATA_ADDRS_KEY: &str = "data_addrs";
/// The node's control-plane addresses, comma separated.
pub const CONTROL_ADDRS_KEY: &str = "control_addrs";
