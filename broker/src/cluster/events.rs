//! One log line per change of the metadata log an operator cares about, as this node sees it: a
//! new metadata leader, and this node's own seat (voter, learner).

use tokio_util::sync::CancellationToken;

use crate::metadata::{Metadata, MetadataStatus};

/// Logs metadata leader and seat changes until `shutdown`.
pub async fn run(metadata: Metadata, shutdown: CancellationToken) {
    let mut changes = metadata.status_watch();
    let mut last: Option<(Option<u64>, &'static str)> = None;
    loop {
        let status = metadata.status().await;
        let seat = seat(&status);
        let now = (status.leader, seat);
        if last != Some(now) {
            let image = metadata.image();
            let name = |id: u64| {
                status
                    .voters
                    .get(&id)
                    .or_else(|| status.learners.get(&id))
                    .and_then(|node| image.node_by_peer(&node.peer_id))
                    .map_or_else(
                        || format!("raft node {id}"),
                        |n| format!("node {}", n.node_id),
                    )
            };
            if last.map(|(leader, _)| leader) != Some(status.leader)
                && let Some(leader) = status.leader
            {
                tracing::info!(leader = %name(leader), term = status.term, "metadata leader elected");
            }
            if last.map(|(_, seat)| seat) != Some(seat) && image.is_formed() {
                tracing::info!(
                    seat,
                    voters = status.voters.len(),
                    "this node's metadata seat"
                );
            }
            last = Some(now);
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            () = shutdown.cancelled() => break,
        }
    }
}

fn seat(status: &MetadataStatus) -> &'static str {
    if status.voters.contains_key(&status.node_id) {
        "voter"
    } else if status.learners.contains_key(&status.node_id) {
        "learner"
    } else {
        "none"
    }
}
