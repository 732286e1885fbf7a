//! Metric names the mesh records, and the helpers that record them. Only the binary installs a
//! recorder (`rafka-node` exports them on `/metrics`); without one these calls cost next to nothing.

use std::time::Duration;

/// For each heartbeat learnt from a peer (broadcast or anti-entropy): how long this node had gone
/// without news of that peer, i.e. the time from when the peer sent its previous heartbeat (as
/// best known) to the arrival of the new one, measured by the event loop as it hands the message
/// to the membership core. It is what the phi-accrual detector judges: about the heartbeat
/// interval (1 s) when the control plane keeps up; a peer is suspected near 2.3 s. A histogram,
/// with [`HEARTBEAT_GAP_BUCKETS`].
pub const HEARTBEAT_GAP_SECONDS: &str = "rafka_mesh_heartbeat_gap_seconds";

/// Buckets of [`HEARTBEAT_GAP_SECONDS`], in seconds: fine around the 1 s interval, then up to
/// and past the suspicion point.
pub const HEARTBEAT_GAP_BUCKETS: &[f64] = &[
    0.5, 0.9, 0.95, 1.0, 1.02, 1.05, 1.1, 1.15, 1.2, 1.3, 1.4, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0,
    10.0,
];

/// Records one heartbeat gap.
pub fn heartbeat_gap(gap: Duration) {
    metrics::histogram!(HEARTBEAT_GAP_SECONDS).record(gap.as_secs_f64());
}

/// Push gossip messages received, by the broker's verdict (`accept`, `reject`, `ignore`).
pub const PUSH_GOSSIP_RECEIVED: &str = "rafka_push_gossip_received_total";
/// Accepted push gossip messages not handed to the broker because its queue was full.
pub const PUSH_DELIVERIES_DROPPED: &str = "rafka_push_deliveries_dropped_total";

/// Records a received push gossip message and its verdict.
pub fn push_gossip_received(verdict: crate::push::Verdict) {
    let verdict = match verdict {
        crate::push::Verdict::Accept => "accept",
        crate::push::Verdict::Reject => "reject",
        crate::push::Verdict::Ignore => "ignore",
    };
    metrics::counter!(PUSH_GOSSIP_RECEIVED, "verdict" => verdict).increment(1);
}

/// Records an accepted message dropped before the broker saw it.
pub fn push_delivery_dropped() {
    metrics::counter!(PUSH_DELIVERIES_DROPPED).increment(1);
}

/// Connections refused at the gate (see [`crate::gate`]), by `reason`: `wrong_key`,
/// `peer_has_no_key`, `peer_needs_key`, `peer_closed`, `peer_closed_unanswered`. A counter.
pub const CONNECTIONS_REFUSED_TOTAL: &str = "rafka_mesh_connections_refused_total";

/// Membership messages dropped because their sender is not a node registered in the metadata log.
/// A counter.
pub const UNADMITTED_MESSAGES_TOTAL: &str = "rafka_mesh_unadmitted_messages_total";

/// Counts one refused connection.
pub fn connection_refused(reason: &'static str) {
    metrics::counter!(CONNECTIONS_REFUSED_TOTAL, "reason" => reason).increment(1);
}

/// Counts one membership message from a peer that is not admitted.
pub fn unadmitted_message() {
    metrics::counter!(UNADMITTED_MESSAGES_TOTAL).increment(1);
}
