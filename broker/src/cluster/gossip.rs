//! What this node tells the others about itself: node id, endpoints, metadata role and version,
//! partitions led. Published when it changes (checked every second and on metadata changes).

use std::collections::BTreeMap;
use std::time::Duration;

use rafka_mesh::Mesh;
use tokio_util::sync::CancellationToken;

use super::{HTTP_KEY, KAFKA_KEY, LED_KEY, METADATA_VERSION_KEY, NODE_ID_KEY, ROLE_KEY};
use crate::metadata::{Metadata, MetadataStatus, NodeId, RaftRole, assignment};

/// The metadata role as gossiped: `leader`, `voter`, `learner` or `none`.
pub fn role_name(status: &MetadataStatus) -> &'static str {
    match status.role {
        RaftRole::Leader => "leader",
        _ if status.voters.contains_key(&status.node_id) => "voter",
        _ if status.learners.contains_key(&status.node_id) => "learner",
        _ => "none",
    }
}

/// Keeps this node's gossiped state current until `shutdown`.
pub async fn run(
    mesh: Mesh,
    metadata: Metadata,
    node_id: NodeId,
    endpoints: [(&'static str, String); 2],
    shutdown: CancellationToken,
) {
    let mut published: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut images = metadata.subscribe();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        let status = metadata.status().await;
        let image = metadata.image();
        let led = assignment::leaders_per_node(&image)
            .get(&node_id)
            .copied()
            .unwrap_or(0);
        let mut wanted: BTreeMap<&'static str, String> = endpoints.iter().cloned().collect();
        wanted.insert(NODE_ID_KEY, node_id.to_string());
        wanted.insert(ROLE_KEY, role_name(&status).to_string());
        wanted.insert(METADATA_VERSION_KEY, image.version.to_string());
        wanted.insert(LED_KEY, led.to_string());
        for (key, value) in &wanted {
            if published.get(key) != Some(value) {
                match mesh.set_state(key, Some(value.clone())).await {
                    Ok(()) => {
                        published.insert(key, value.clone());
                    }
                    Err(e) => tracing::debug!(key, error = %e, "cannot gossip own state"),
                }
            }
        }
        tokio::select! {
            _ = ticker.tick() => {}
            _ = images.changed() => {}
            () = shutdown.cancelled() => break,
        }
    }
}

/// The endpoint keys gossiped before the node has an id (so forming peers can check them).
pub fn endpoint_keys(kafka: &str, http: &str) -> [(&'static str, String); 2] {
    [(KAFKA_KEY, kafka.to_string()), (HTTP_KEY, http.to_string())]
}
