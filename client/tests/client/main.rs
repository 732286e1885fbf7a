//! Integration tests of rafka-client, in one binary (one link; nextest still runs each test in
//! its own process). Each module is one area, named as the test file it used to be:
//!
//! - `conformance`: the in-memory test broker (`rafka_client::testing`) against the real broker;
//! - `cli_fake_tcp`: the `rafka` binary against the test broker over TCP;
//! - `mesh_fake`: the client over the mesh transport against the test broker;
//! - `push_node`: push subscription (library and `rafka subscribe`) against a `rafka-node`;
//! - `node_e2e`, `bench_node`: the library, the CLI and `rafka bench` against a `rafka-node`
//!   process (`support`);
//! - `group_node`: the group consumer (over TCP and the mesh, in one group) and `rafka group`
//!   against a `rafka-node` process.
//! - `txn_node`: the transactional producer (over TCP and the mesh), read_committed consumers
//!   and the transaction admin against a `rafka-node` process.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod bench_node;
mod cli_fake_tcp;
mod conformance;
mod group_node;
#[cfg(feature = "mesh")]
mod mesh_fake;
mod node_e2e;
#[cfg(feature = "mesh")]
mod push_node;
mod support;
mod txn_node;
