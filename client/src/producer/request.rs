//! The wire side of the sender: InitProducerId, building a Produce request from encoded
//! batches, and indexing a Produce response by partition.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    InitProducerIdRequest, ProduceRequest, ProduceResponse, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::accumulator::TopicPartition;
use super::sequence::ProducerIdentity;
use crate::cluster::Client;
use crate::config::Acks;
use crate::error::{Error, Result};
use crate::metadata::{ClusterMetadata, NodeId};

pub(super) fn topic_id(meta: &ClusterMetadata, tp: &TopicPartition) -> uuid::Uuid {
    meta.topics
        .get(&*tp.topic)
        .map(|t| t.id)
        .unwrap_or_default()
}

pub(super) async fn init_producer_id(client: &Client) -> Result<ProducerIdentity> {
    let conn = client.any_node().await?;
    let version = conn.version::<InitProducerIdRequest>()?;
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = None;
    request.transaction_timeout_ms = i32::MAX;
    let response = conn.send(version, &request).await?;
    if let Some(e) = Error::broker("InitProducerId", response.error_code, None) {
        return Err(e);
    }
    Ok(ProducerIdentity {
        id: response.producer_id.0,
        epoch: response.producer_epoch,
    })
}

/// Builds and sends one Produce request to `node`.
pub(super) async fn produce(
    client: &Client,
    node: NodeId,
    acks: Acks,
    timeout_ms: i32,
    transactional_id: Option<&str>,
    batches: Vec<(TopicPartition, uuid::Uuid, Bytes)>,
) -> Result<Option<ProduceResponse>> {
    let conn = client.node(node).await?;
    let version = conn.version::<ProduceRequest>()?;
    // Produce v13 names topics by id; without ids (an older metadata answer) stay below it.
    let has_ids = batches.iter().all(|(_, id, _)| !id.is_nil());
    let version = if has_ids { version } else { version.min(12) };
    let mut topics: BTreeMap<Arc<str>, TopicProduceData> = BTreeMap::new();
    for (tp, id, records) in batches {
        let topic = topics.entry(tp.topic.clone()).or_insert_with(|| {
            let mut t = TopicProduceData::default();
            if version >= 13 {
                t.topic_id = id;
            } else {
                t.name = TopicName(StrBytes::from_string(tp.topic.to_string()));
            }
            t
        });
        if version >= 13 && id.is_nil() {
            return Err(Error::protocol(format!(
                "no topic id known for {}",
                tp.topic
            )));
        }
        topic.partition_data.push(
            PartitionProduceData::default()
                .with_index(tp.partition)
                .with_records(Some(records)),
        );
    }
    let request = ProduceRequest::default()
        .with_transactional_id(
            transactional_id.map(|id| TransactionalId(StrBytes::from_string(id.to_owned()))),
        )
        .with_acks(acks.as_i16())
        .with_timeout_ms(timeout_ms)
        .with_topic_data(topics.into_values().collect());
    if acks == Acks::None {
        conn.send_no_response(version, &request).await?;
        return Ok(None);
    }
    conn.send(version, &request).await.map(Some)
}

/// The partition answers of a Produce response by (topic name, partition).
pub(super) fn index_response<'a>(
    response: &'a ProduceResponse,
    meta: &ClusterMetadata,
) -> HashMap<(Arc<str>, i32), &'a PartitionProduceResponse> {
    let mut out = HashMap::new();
    for topic in &response.responses {
        let name: Arc<str> = if topic.name.is_empty() {
            match meta.topic_name(topic.topic_id) {
                Some(n) => Arc::from(n),
                None => continue,
            }
        } else {
            Arc::from(topic.name.as_str())
        };
        for p in &topic.partition_responses {
            out.insert((name.clone(), p.index), p);
        }
    }
    out
}
