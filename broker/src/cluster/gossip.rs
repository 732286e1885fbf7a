//! What this node tells the others about itself: node id, broker epoch, endpoints, supported
//! feature levels, metadata role and version, partitions led. Published when it changes (checked
//! every second and on metadata changes).

use std::collections::BTreeMap;
use std::time::Duration;

use rafka_mesh::{MemberInfo, Mesh};
use tokio_util::sync::CancellationToken;

use super::{
    BROKER_EPOCH_KEY, FEATURE_LEVELS_KEY, HTTP_KEY, KAFKA_KEY, LED_KEY, METADATA_VERSION_KEY,
    NODE_ID_KEY, ROLE_KEY,
};
use crate::ids::BrokerEpoch;
use crate::metadata::features::Gossiped;
use crate::metadata::{LevelRange, Metadata, MetadataStatus, NodeId, RaftRole, assignment};

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
    (node_id, broker_epoch): (NodeId, BrokerEpoch),
    endpoints: [(&'static str, String); 3],
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
        wanted.insert(BROKER_EPOCH_KEY, broker_epoch.to_string());
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

/// The keys gossiped before the node has an id: its endpoints (so forming peers can check them)
/// and the feature levels it supports (so the controller adds it to the metadata log only if it
/// can read it).
pub fn endpoint_keys(
    kafka: &str,
    http: &str,
    supported: LevelRange,
) -> [(&'static str, String); 3] {
    [
        (KAFKA_KEY, kafka.to_string()),
        (HTTP_KEY, http.to_string()),
        (FEATURE_LEVELS_KEY, supported.to_string()),
    ]
}

/// The feature levels a member gossips, with the broker epoch it gossips them from. A member
/// that gossips none (a node from before feature levels) supports level 0 only.
pub fn gossiped_features(member: &MemberInfo) -> Gossiped {
    let supported = member
        .keys
        .get(FEATURE_LEVELS_KEY)
        .and_then(|v| v.parse().ok())
        .unwrap_or(LevelRange::LEGACY);
    let broker_epoch = member
        .keys
        .get(BROKER_EPOCH_KEY)
        .and_then(|v| v.parse().ok());
    Gossiped {
        supported,
        broker_epoch,
    }
}
