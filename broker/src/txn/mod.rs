//! Transactions: Kafka's transaction coordinator (transactions v1 with KIP-890 part 1's
//! verification), for the transactional ids whose `__transaction_state` partition this node
//! leads.
//!
//! | file | what | kind |
//! |---|---|---|
//! | `core/` | [`core::TxnCoordinator`]: producer ids and epochs per transactional id, fencing, open transactions and their partitions, the two-phase end (Prepare, markers, Complete), timeouts, expiration, replay | sans-IO core |
//! | [`records.rs`](records) | the records of `__transaction_state`, in Kafka's layout | codec |
//!
//! Not yet wired: the shell (appends, markers over the mesh), the partition side (transactional
//! and control batches, the last stable offset, aborted transactions) and the handlers. Until
//! they are, a transactional InitProducerId keeps its COORDINATOR_NOT_AVAILABLE answer.

pub mod core;
pub mod records;

pub use crate::group::TRANSACTION_STATE_TOPIC;
