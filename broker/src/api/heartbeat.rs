//! Heartbeat v0-4: keeps a member's session; REBALANCE_IN_PROGRESS tells it to rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::Broker;
use crate::group::core::MemberRef;

/// Answers a Heartbeat request.
pub async fn handle(broker: Broker, request: HeartbeatRequest) -> HeartbeatResponse {
    let member = MemberRef {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|i| i.to_string()),
    };
    let error = broker
        .groups()
        .heartbeat(
            request.group_id.0.to_string(),
            request.generation_id,
            member,
        )
        .await;
    HeartbeatResponse::default().with_error_code(error.map_or(0, |e| e.code()))
}
