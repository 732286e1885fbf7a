//! ListTransactions v0-1: the transactional ids this node coordinates, filtered by status names
//! (unknown names are echoed in `unknown_state_filters` and match nothing), producer ids and,
//! from v1, by running longer than `duration_filter` ms. Clients send it to every node and merge
//! the answers. v2's id pattern (a Java regular expression) is not served.

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse, ProducerId};
use kafka_protocol::protocol::StrBytes;

use super::now_ms;
use crate::Broker;
use crate::txn::core::TxnStatus;

/// Answers a ListTransactions request.
pub async fn handle(broker: Broker, request: ListTransactionsRequest) -> ListTransactionsResponse {
    let response = ListTransactionsResponse::default();
    let mut statuses = Vec::new();
    let mut unknown = Vec::new();
    for name in &request.state_filters {
        match TxnStatus::from_name(name.as_str()) {
            Some(status) => statuses.push(status),
            None => unknown.push(name.clone()),
        }
    }
    let response = response.with_unknown_state_filters(unknown);
    if !request.state_filters.is_empty() && statuses.is_empty() {
        return response;
    }
    let producer_ids = request.producer_id_filters.iter().map(|p| p.0).collect();
    let listed = match broker.txns().list(statuses, producer_ids).await {
        Ok(listed) => listed,
        Err(error) => return response.with_error_code(error.code()),
    };
    let now = now_ms();
    let states = listed
        .into_iter()
        .filter(|d| {
            request.duration_filter < 0
                || now.saturating_sub(d.state.start_ms) > request.duration_filter
        })
        .map(|d| {
            TransactionState::default()
                .with_transactional_id(StrBytes::from_string(d.transactional_id).into())
                .with_producer_id(ProducerId(d.state.producer_id))
                .with_transaction_state(StrBytes::from_static_str(d.state.status.name()))
        })
        .collect();
    response.with_transaction_states(states)
}
