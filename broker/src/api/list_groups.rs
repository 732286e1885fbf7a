//! ListGroups v0-5: the groups this node coordinates (clients ask every node), filtered by
//! state from v4 and by type from v5 (every group here is "classic").

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::Broker;
use crate::group::core::GroupState;

/// Answers a ListGroups request.
pub async fn handle(
    broker: Broker,
    ctx: RequestContext,
    request: ListGroupsRequest,
) -> ListGroupsResponse {
    let mut states = Vec::new();
    for name in &request.states_filter {
        match GroupState::parse(name) {
            Some(state) => states.push(state),
            // Kafka answers an unknown state name with INVALID_REQUEST.
            None => {
                return ListGroupsResponse::default()
                    .with_error_code(ResponseError::InvalidRequest.code());
            }
        }
    }
    let classic = request.types_filter.is_empty()
        || request
            .types_filter
            .iter()
            .any(|t| t.eq_ignore_ascii_case("classic"));
    if !classic {
        return ListGroupsResponse::default();
    }
    let groups = broker
        .groups()
        .list(states)
        .await
        .into_iter()
        .map(|g| {
            let listed = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(g.group)))
                .with_protocol_type(StrBytes::from_string(g.protocol_type));
            let listed = if ctx.version >= 4 {
                listed.with_group_state(StrBytes::from_static_str(g.state.name()))
            } else {
                listed
            };
            if ctx.version >= 5 {
                listed.with_group_type(StrBytes::from_static_str("classic"))
            } else {
                listed
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
