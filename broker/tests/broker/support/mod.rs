//! Test support shared by the broker's integration tests: an in-process node (here), `rafka-node`
//! processes and clusters of them, network namespaces, a raw Kafka client and request builders on
//! the kafka-protocol crate, record batches, external programs, the confluent-kafka checker, and
//! the one wait helper.

pub mod batches;
pub mod checker;
pub mod cluster;
pub mod mesh_client;
pub mod mesh_metrics;
pub mod netns;
pub mod process;
pub mod raw;
pub mod run;
pub mod wait;
pub mod wire;

pub use wait::{wait_until, wait_until_blocking};

use rafka_broker::{Node, NodeConfig};
use tokio_util::sync::CancellationToken;

/// A node running inside the test process, on OS-assigned ports and a temporary data dir.
pub struct TestNode {
    pub node: Option<Node>,
    /// Removed (with the node's data) when the test node is dropped.
    pub _dir: tempfile::TempDir,
    pub config: NodeConfig,
}

/// Configuration for a test node in `dir`: loopback, OS-assigned ports, formed as one node.
pub fn test_config(dir: &std::path::Path) -> NodeConfig {
    NodeConfig {
        offsets_topic_partitions: 2,
        transaction_state_partitions: 2,
        ..NodeConfig::single_on_loopback(dir)
    }
}

impl TestNode {
    /// Starts a fresh node.
    pub async fn start() -> TestNode {
        Self::start_with(|_| {}).await
    }

    /// Starts a fresh node after `adjust` changed its configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut NodeConfig)) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let node = Node::start(config.clone(), None, CancellationToken::new())
            .await
            .unwrap();
        TestNode {
            node: Some(node),
            _dir: dir,
            config,
        }
    }

    /// The Kafka listener.
    pub fn kafka_addr(&self) -> std::net::SocketAddr {
        self.node.as_ref().unwrap().addresses().kafka
    }

    /// A raw Kafka connection to this node.
    pub async fn connect(&self) -> raw::RawClient {
        raw::RawClient::connect(self.kafka_addr()).await
    }

    /// Shuts the node down cleanly and starts it again on the same data dir (new ports).
    pub async fn restart(&mut self) {
        self.node.take().unwrap().shutdown().await;
        let mut config = self.config.clone();
        config.bootstrap_expect = None;
        self.node = Some(
            Node::start(config, None, CancellationToken::new())
                .await
                .unwrap(),
        );
    }
}
