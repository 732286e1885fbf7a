//! LeaveGroup: v0-2 for one member in top-level fields, v3+ for a list of members (KIP-345),
//! each with its own error.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::RequestContext;
use crate::Broker;
use crate::group::core::MemberRef;

/// Answers a LeaveGroup request.
pub async fn handle(
    broker: Broker,
    ctx: RequestContext,
    request: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let group = request.group_id.0.to_string();
    if ctx.version < 3 {
        let member = MemberRef {
            member_id: request.member_id.to_string(),
            instance_id: None,
        };
        let code = match broker.groups().leave(group, vec![member]).await {
            Ok(results) => results.first().copied().flatten().map_or(0, |e| e.code()),
            Err(e) => e.code(),
        };
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let members: Vec<MemberRef> = request
        .members
        .iter()
        .map(|m| MemberRef {
            member_id: m.member_id.to_string(),
            instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
        })
        .collect();
    match broker.groups().leave(group, members).await {
        Ok(results) => {
            let members = request
                .members
                .into_iter()
                .zip(results)
                .map(|(m, error)| {
                    MemberResponse::default()
                        .with_member_id(m.member_id)
                        .with_group_instance_id(m.group_instance_id)
                        .with_error_code(error.map_or(0, |e| e.code()))
                })
                .collect();
            LeaveGroupResponse::default().with_members(members)
        }
        Err(e) => LeaveGroupResponse::default().with_error_code(e.code()),
    }
}
