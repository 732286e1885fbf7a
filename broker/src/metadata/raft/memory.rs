//! An in-memory [`RaftTransport`] for tests: nodes registered on one [`MemoryNetwork`] call each
//! other's `Metadata::handle_rpc` directly; links can be cut one way or both, and nodes isolated.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;

use super::RaftNode;
use super::network::{RaftTransport, TransportError};
use crate::metadata::Metadata;

/// The network: who is registered and which links are cut.
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    nodes: HashMap<String, Metadata>,
    /// Cut links, (from, to) by peer id.
    cut: BTreeSet<(String, String)>,
    /// Peers cut off from everyone.
    isolated: BTreeSet<String>,
}

impl std::fmt::Debug for MemoryNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryNetwork")
            .field("nodes", &state.nodes.len())
            .field("cut", &state.cut)
            .field("isolated", &state.isolated)
            .finish()
    }
}

impl MemoryNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The transport the node `peer_id` sends through.
    pub fn transport(&self, peer_id: &str) -> Arc<dyn RaftTransport> {
        Arc::new(MemoryTransport {
            from: peer_id.to_string(),
            network: self.clone(),
        })
    }

    /// Makes `metadata` reachable under its peer id.
    pub fn register(&self, metadata: &Metadata) {
        self.lock()
            .nodes
            .insert(metadata.node().peer_id.clone(), metadata.clone());
    }

    /// Makes `peer_id` unreachable (a stopped node); returns its handle, if registered.
    pub fn unregister(&self, peer_id: &str) -> Option<Metadata> {
        self.lock().nodes.remove(peer_id)
    }

    /// Cuts the link from `from` to `to` (one way).
    pub fn cut(&self, from: &str, to: &str) {
        self.lock().cut.insert((from.to_string(), to.to_string()));
    }

    /// Cuts `peer_id` off from every other node, both ways.
    pub fn isolate(&self, peer_id: &str) {
        self.lock().isolated.insert(peer_id.to_string());
    }

    /// Restores every link.
    pub fn heal(&self) {
        let mut state = self.lock();
        state.cut.clear();
        state.isolated.clear();
    }

    fn route(&self, from: &str, to: &str) -> Result<Metadata, TransportError> {
        let state = self.lock();
        let blocked = state.isolated.contains(from)
            || state.isolated.contains(to)
            || state.cut.contains(&(from.to_string(), to.to_string()));
        if blocked {
            return Err(TransportError::Unreachable(format!(
                "link {from} -> {to} is cut"
            )));
        }
        state
            .nodes
            .get(to)
            .cloned()
            .ok_or_else(|| TransportError::Unreachable(format!("{to} is not running")))
    }
}

struct MemoryTransport {
    from: String,
    network: MemoryNetwork,
}

impl RaftTransport for MemoryTransport {
    fn call(
        &self,
        target: &RaftNode,
        request: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        let network = self.network.clone();
        let from = self.from.clone();
        let to = target.peer_id.clone();
        Box::pin(async move {
            let node = network.route(&from, &to)?;
            let answer = tokio::time::timeout(timeout, node.handle_rpc(&from, &request))
                .await
                .map_err(|_| TransportError::Timeout(timeout))?;
            // A link cut while the request was in flight loses the answer.
            network.route(&to, &from)?;
            Ok(answer)
        })
    }
}
