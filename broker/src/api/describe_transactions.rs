//! DescribeTransactions v0: each transactional id's state as its coordinator persisted it
//! (status, timeout, start time, producer id and epoch, the partitions of the open
//! transaction), or NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, TRANSACTIONAL_ID_NOT_FOUND.
//! Clients send it to each id's coordinator (FindCoordinator with key type 1).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::Broker;

/// Answers a DescribeTransactions request.
pub async fn handle(
    broker: Broker,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let ids: Vec<String> = request
        .transactional_ids
        .iter()
        .map(|id| id.0.to_string())
        .collect();
    let described = broker.txns().describe(ids).await;
    let states = request
        .transactional_ids
        .iter()
        .zip(described)
        .map(|(id, described)| {
            let state = TransactionState::default().with_transactional_id(id.clone());
            let described = if id.0.as_str().is_empty() {
                Err(ResponseError::InvalidRequest)
            } else {
                described
            };
            match described {
                Ok(d) => {
                    let mut topics: Vec<TopicData> = Vec::new();
                    for tp in &d.state.partitions {
                        match topics.iter_mut().find(|t| t.topic.0.as_str() == tp.topic) {
                            Some(topic) => topic.partitions.push(tp.partition),
                            None => topics.push(
                                TopicData::default()
                                    .with_topic(TopicName(StrBytes::from_string(tp.topic.clone())))
                                    .with_partitions(vec![tp.partition]),
                            ),
                        }
                    }
                    state
                        .with_transaction_state(StrBytes::from_static_str(d.state.status.name()))
                        .with_transaction_timeout_ms(d.state.timeout_ms)
                        .with_transaction_start_time_ms(d.state.start_ms)
                        .with_producer_id(ProducerId(d.state.producer_id))
                        .with_producer_epoch(d.state.producer_epoch)
                        .with_topics(topics)
                }
                Err(error) => state.with_error_code(error.code()),
            }
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
