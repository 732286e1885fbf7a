//! Transaction administration, as Kafka's AdminClient and `kafka-transactions.sh` do it: list
//! the transactional ids (ListTransactions on every node: each lists the ids it coordinates) and
//! describe one (DescribeTransactions at its coordinator, found with FindCoordinator key type 1).

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    DescribeTransactionsRequest, ListTransactionsRequest, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;
use tracing::debug;

use crate::cluster::Client;
use crate::consumer::offsets::{TRANSACTION_KEY, find_coordinator_of};
use crate::error::{Error, Result};

/// A transactional id as ListTransactions reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListedTransaction {
    /// The transactional id.
    pub transactional_id: String,
    /// Its current producer id.
    pub producer_id: i64,
    /// Its state (`Empty`, `Ongoing`, `PrepareCommit`, `CompleteCommit`, ...).
    pub state: String,
    /// The node that coordinates it.
    pub coordinator: i32,
}

/// What `describe` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransactionDescription {
    /// The transactional id.
    pub transactional_id: String,
    /// The coordinator's node id.
    pub coordinator: i32,
    /// State (`Empty`, `Ongoing`, `PrepareCommit`, `CompleteCommit`, `PrepareAbort`,
    /// `CompleteAbort`, `PrepareEpochFence`, `Dead`).
    pub state: String,
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// `transaction.timeout.ms`.
    pub timeout_ms: i32,
    /// When the open transaction started (ms since the epoch; `None` with none open).
    pub start_time_ms: Option<i64>,
    /// The partitions in the transaction, as `topic-partition`.
    pub partitions: Vec<String>,
}

/// Filters of `list` (all empty: every transactional id).
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only these states.
    pub states: Vec<String>,
    /// Only these producer ids.
    pub producer_ids: Vec<i64>,
    /// Only transactions open for at least this long (ms; ListTransactions v1+).
    pub min_duration_ms: Option<i64>,
}

/// Transaction administration over a [`Client`].
#[derive(Debug, Clone)]
pub struct TxnAdmin {
    client: Client,
}

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

impl TxnAdmin {
    /// Transaction administration through `client`.
    pub fn new(client: Client) -> Self {
        TxnAdmin { client }
    }

    /// The cluster's transactional ids matching `filter`: ListTransactions on each node,
    /// merged, sorted by id.
    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<ListedTransaction>> {
        let answers = self
            .client
            .ask_every_node("ListTransactions", async |node| {
                let conn = self.client.node(node).await?;
                let version = conn.version::<ListTransactionsRequest>()?;
                let mut request = ListTransactionsRequest::default()
                    .with_state_filters(filter.states.iter().map(|st| s(st)).collect())
                    .with_producer_id_filters(
                        filter.producer_ids.iter().map(|&p| ProducerId(p)).collect(),
                    );
                if let Some(ms) = filter.min_duration_ms {
                    if version < 1 {
                        return Err(Error::UnsupportedVersion {
                            api: "ListTransactions v1 (duration filter)",
                            endpoint: conn.endpoint().to_string(),
                        });
                    }
                    request.duration_filter = ms;
                } else if version >= 1 {
                    request.duration_filter = -1;
                }
                let response = conn.send(version, &request).await?;
                if let Some(e) = Error::broker("ListTransactions", response.error_code, None) {
                    return Err(e);
                }
                Ok(response.transaction_states)
            })
            .await?;
        let mut out = BTreeMap::new();
        for (node, states) in answers {
            for t in states {
                out.insert(
                    t.transactional_id.to_string(),
                    ListedTransaction {
                        transactional_id: t.transactional_id.to_string(),
                        producer_id: t.producer_id.0,
                        state: t.transaction_state.to_string(),
                        coordinator: node,
                    },
                );
            }
        }
        Ok(out.into_values().collect())
    }

    /// The state of `transactional_id` at its coordinator: producer, timeout, and the open
    /// transaction's start and partitions.
    pub async fn describe(&self, transactional_id: &str) -> Result<TransactionDescription> {
        let wait = self.client.config().connection.request_timeout;
        let deadline = std::time::Instant::now() + wait;
        loop {
            match self.describe_once(transactional_id).await {
                Err(e) if e.is_retriable() && std::time::Instant::now() < deadline => {
                    debug!(transactional_id, error = %e, "DescribeTransactions: retrying");
                    tokio::time::sleep(self.client.config().retry_backoff).await;
                }
                other => return other,
            }
        }
    }

    async fn describe_once(&self, transactional_id: &str) -> Result<TransactionDescription> {
        let wait = self.client.config().connection.request_timeout;
        let coordinator =
            find_coordinator_of(&self.client, transactional_id, TRANSACTION_KEY, wait).await?;
        let conn = self.client.node(coordinator).await?;
        let version = conn.version::<DescribeTransactionsRequest>()?;
        let request = DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(s(transactional_id))]);
        let response = conn.send(version, &request).await?;
        let t = response
            .transaction_states
            .into_iter()
            .next()
            .ok_or_else(|| Error::protocol("DescribeTransactions: no transaction in the answer"))?;
        if let Some(error) = ResponseError::try_from_code(t.error_code) {
            return Err(Error::Broker {
                context: format!("transactional id {transactional_id}"),
                error,
                message: None,
            });
        }
        let mut partitions: Vec<String> = t
            .topics
            .iter()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(move |p| format!("{}-{p}", topic.topic.as_str()))
            })
            .collect();
        partitions.sort();
        Ok(TransactionDescription {
            transactional_id: t.transactional_id.to_string(),
            coordinator,
            state: t.transaction_state.to_string(),
            producer_id: t.producer_id.0,
            producer_epoch: t.producer_epoch,
            timeout_ms: t.transaction_timeout_ms,
            start_time_ms: (t.transaction_start_time_ms >= 0)
                .then_some(t.transaction_start_time_ms),
            partitions,
        })
    }
}
