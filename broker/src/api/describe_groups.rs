//! DescribeGroups v0-5: state, protocol and members (with their subscription and assignment
//! bytes when stable). A group unknown to its coordinator is described as Dead.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::Broker;

/// Answers a DescribeGroups request.
pub async fn handle(
    broker: Broker,
    ctx: RequestContext,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let ids: Vec<String> = request.groups.iter().map(|g| g.0.to_string()).collect();
    let described = broker.groups().describe(ids).await;
    let groups = request
        .groups
        .into_iter()
        .zip(described)
        .map(|(id, result)| {
            let group = DescribedGroup::default().with_group_id(id);
            match result {
                Ok(d) => {
                    let members = d
                        .members
                        .into_iter()
                        .map(|m| {
                            let member = DescribedGroupMember::default()
                                .with_member_id(StrBytes::from_string(m.member_id))
                                .with_client_id(StrBytes::from_string(m.client_id))
                                .with_client_host(StrBytes::from_string(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment);
                            if ctx.version >= 4 {
                                member.with_group_instance_id(
                                    m.instance_id.map(StrBytes::from_string),
                                )
                            } else {
                                member
                            }
                        })
                        .collect();
                    group
                        .with_group_state(StrBytes::from_static_str(d.state.name()))
                        .with_protocol_type(StrBytes::from_string(d.protocol_type))
                        .with_protocol_data(StrBytes::from_string(d.protocol))
                        .with_members(members)
                }
                Err(e) => group
                    .with_error_code(e.code())
                    .with_group_state(StrBytes::from_static_str("Dead")),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
