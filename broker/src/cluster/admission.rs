//! Who takes part in membership gossip: once this node belongs to a cluster, only the nodes of
//! its metadata log (members of the log and registered nodes) are heard; the mesh drops the rest.
//! A fresh node hears everyone, since it must be reachable to form or join a cluster. The
//! metadata log's own RPCs are gated the same way by `Metadata::handle_rpc`.

use std::collections::HashSet;
use std::time::Duration;

use rafka_mesh::{Mesh, PeerId};
use tokio_util::sync::CancellationToken;

use crate::metadata::Metadata;

/// How often the set is recomputed even without a change signal.
const RECHECK: Duration = Duration::from_secs(1);

/// The peers admitted now (`None`: everyone, before formation).
pub fn admitted(metadata: &Metadata) -> Option<HashSet<PeerId>> {
    let image = metadata.image();
    if !image.is_formed() {
        return None;
    }
    let registered = image.nodes.values().map(|node| node.peer_id.clone());
    Some(
        registered
            .chain(metadata.member_peers())
            .filter_map(|peer| peer.parse().ok())
            .collect(),
    )
}

/// Keeps the mesh's admitted set current until `shutdown`.
pub async fn run(mesh: Mesh, metadata: Metadata, shutdown: CancellationToken) {
    let mut images = metadata.subscribe();
    let mut raft = metadata.status_watch();
    let mut published: Option<Option<HashSet<PeerId>>> = None;
    loop {
        let wanted = admitted(&metadata);
        if published.as_ref() != Some(&wanted) {
            if let Some(peers) = &wanted {
                tracing::debug!(peers = peers.len(), "admitted peers changed");
            }
            mesh.set_admitted(wanted.clone()).await;
            published = Some(wanted);
        }
        tokio::select! {
            _ = images.changed() => {}
            _ = raft.changed() => {}
            () = tokio::time::sleep(RECHECK) => {}
            () = shutdown.cancelled() => break,
        }
    }
}
