//! Transactions: Kafka's transaction coordinator (transactions v1 with KIP-890 part 1's
//! verification), for the transactional ids whose `__transaction_state` partition this node
//! leads.
//!
//! | file | what | kind |
//! |---|---|---|
//! | `core/` | [`core::TxnCoordinator`]: producer ids and epochs per transactional id, fencing, open transactions and their partitions, the two-phase end (Prepare, markers, Complete), timeouts, expiration, replay | sans-IO core |
//! | [`service.rs`](Txns) | the task that owns the core and the `__transaction_state` partitions this node leads (appends acks=all, replay on leadership, producer ids, WriteTxnMarkers to partition leaders); the handle handlers call | shell |
//! | [`records.rs`](records) | the records of `__transaction_state`, in Kafka's layout | codec |
//! | `metrics.rs` | transactional ids by status, open transactions, pending markers, ends, timeouts, fenced producers, EndTxn latency | metrics |
//!
//! Transactional producers are served once the cluster's feature level has transactions
//! ([`served`]); below it they are refused, so clients fail cleanly rather than half-work.

pub mod core;
mod metrics;
pub mod records;
mod service;

pub use service::{Txns, TxnsTask};

pub use crate::group::TRANSACTION_STATE_TOPIC;

use crate::Broker;
use crate::ids::NodeId;

/// Whether this node serves transactional producers (FindCoordinator for transactional ids,
/// transactional InitProducerId): once the cluster's feature level has transactions, so every
/// node can take transactional batches and write markers (during a rolling upgrade from an older
/// release they are refused, and clients fail cleanly).
pub fn served(broker: &Broker) -> bool {
    broker
        .image()
        .features()
        .enabled(crate::metadata::Feature::Transactions)
}

/// The node coordinating `transactional_id`: the live leader of its `__transaction_state`
/// partition (`None` while that topic does not exist or its leader is not alive). Where a
/// partition leader sends AddPartitionsToTxn to verify a transactional write (KIP-890 part 1).
pub fn coordinator_node(broker: &Broker, transactional_id: &str) -> Option<NodeId> {
    let partition = broker.txns().partition_of(transactional_id);
    broker.live_leader(TRANSACTION_STATE_TOPIC, partition)
}
