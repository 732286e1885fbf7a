//! DeleteGroups v0-2: an empty group and its offsets go (tombstones in its offsets partition);
//! a group with members gets NON_EMPTY_GROUP.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::Broker;

/// Answers a DeleteGroups request.
pub async fn handle(broker: Broker, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let ids: Vec<String> = request
        .groups_names
        .iter()
        .map(|g| g.0.to_string())
        .collect();
    let results = broker.groups().delete(ids).await;
    let results = request
        .groups_names
        .into_iter()
        .zip(results)
        .map(|(id, error)| {
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(error.map_or(0, |e| e.code()))
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
