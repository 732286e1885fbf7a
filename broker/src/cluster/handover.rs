//! A voter that leaves cleanly hands its seat over before it exits: once it announced that it
//! leaves, the metadata leader's controller (its own, if it leads) promotes a caught-up learner in
//! its place or shrinks the voters to the next odd size; the node waits, bounded, until a
//! committed membership no longer counts it, so the log never loses its majority to a clean
//! shutdown.

use std::time::Duration;

use tokio::time::Instant;

use super::Cluster;
use crate::metadata::Metadata;

/// How long a leaving voter waits for its seat to be handed over.
pub const HANDOVER_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether this node votes in the metadata log now.
pub async fn is_voter(metadata: &Metadata) -> bool {
    let status = metadata.status().await;
    status.voters.contains_key(&status.node_id)
}

/// Waits until this node no longer votes (or there is nobody to hand over to, or the timeout);
/// `was_voter`: it voted when it announced that it leaves.
pub async fn hand_over_seat(metadata: &Metadata, cluster: &Cluster, was_voter: bool) {
    let started = Instant::now();
    let deadline = started + HANDOVER_TIMEOUT;
    let mut changes = metadata.status_watch();
    let mut was_voter = was_voter;
    loop {
        let status = metadata.status().await;
        let me = status.node_id;
        let voter = status.voters.contains_key(&me);
        if !voter && (!was_voter || status.membership_committed) {
            if was_voter {
                tracing::info!(
                    waited_ms = started.elapsed().as_millis(),
                    "metadata seat handed over"
                );
            }
            return;
        }
        was_voter |= voter;
        let settled = status.membership_committed && status.joining_voters.is_none();
        let successor = status
            .voters
            .iter()
            .chain(status.learners.iter())
            .filter(|(id, _)| **id != me)
            .filter_map(|(_, node)| node.peer_id.parse().ok())
            .any(|peer| cluster.is_peer_live(&peer));
        if settled && !successor {
            tracing::info!("last live node of the metadata log: no seat to hand over");
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                "could not hand the metadata seat over within {HANDOVER_TIMEOUT:?}: the voters keep this node until it returns or is replaced"
            );
            return;
        }
        tokio::select! {
            _ = changes.changed() => {}
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}
