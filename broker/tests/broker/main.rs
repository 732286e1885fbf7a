//! Integration tests of rafka-broker, in one binary (one link; nextest still runs each test in its
//! own process). Each module is one area, named as the test file it used to be, so a test is
//! `<area>::<name>` (`cargo nextest run -p rafka-broker -E 'test(/^fetch::/)'`). Shared harnesses
//! are under `support`: an in-process node, `rafka-node` processes, network namespaces, raw Kafka
//! requests, the confluent-kafka checker, and the one wait helper (`support::wait`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod api_versions;
mod bad_input;
mod client_groups;
mod cluster_client;
mod cluster_key;
mod cluster_processes;
mod compaction;
mod consumer_failover;
mod e2e_cli;
mod fetch;
mod groups;
mod heartbeat_under_load;
mod idempotence;
mod idempotence_failover;
mod kafka_clients;
mod limits;
mod mesh_requests;
mod metadata;
mod metadata_raft;
mod netns_chaos;
mod netns_discovery;
mod netns_idempotence;
mod netns_replication;
mod netns_split;
mod offset_for_leader_epoch;
mod offsets;
mod produce_fetch;
mod push_cluster;
mod quorum;
mod removal;
mod replication_faults;
mod restart;
mod topics;
mod transactions;
mod transactions_clients;
mod transactions_eos;
mod txn_client;
mod txn_metrics;
mod txn_offsets;
mod txn_partition;
mod upgrade;
