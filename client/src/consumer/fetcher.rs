//! Fetch: one long-poll request per leader, its response decoded into records per partition.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tracing::trace;

use crate::cluster::Client;
use crate::config::ConsumerConfig;
use crate::error::{Error, Result};
use crate::metadata::{ClusterMetadata, NodeId};
use crate::producer::accumulator::TopicPartition;
use crate::records::{DecodedRecords, decode_committed};

/// What one partition of a Fetch response said.
#[derive(Debug)]
pub struct PartitionFetch {
    /// The partition.
    pub tp: TopicPartition,
    /// The offset the request asked for.
    pub fetch_offset: i64,
    /// Partition error, if any.
    pub error: Option<Error>,
    /// High watermark.
    pub high_watermark: i64,
    /// Decoded records (empty on error).
    pub records: DecodedRecords,
}

/// Builds a Fetch request for `partitions` (with their fetch offsets) at `version`.
pub fn request(
    version: i16,
    config: &ConsumerConfig,
    partitions: &[(TopicPartition, i64)],
    meta: &ClusterMetadata,
) -> Result<FetchRequest> {
    let mut topics: BTreeMap<Arc<str>, FetchTopic> = BTreeMap::new();
    for (tp, offset) in partitions {
        let topic = topics.entry(tp.topic.clone()).or_default();
        if version >= 13 {
            let info = meta.topic(&tp.topic)?;
            if info.id.is_nil() {
                return Err(Error::protocol(format!(
                    "no topic id known for {}",
                    tp.topic
                )));
            }
            topic.topic_id = info.id;
        } else {
            topic.topic = TopicName(StrBytes::from_string(tp.topic.to_string()));
        }
        // v9+: the leader epoch the metadata names, so a deposed leader fences the fetch
        // (FENCED_LEADER_EPOCH) and a leader behind the metadata says so (UNKNOWN_LEADER_EPOCH).
        let epoch = match version {
            9.. => meta
                .topics
                .get(&*tp.topic)
                .and_then(|t| t.partition(tp.partition))
                .map_or(-1, |p| p.leader_epoch),
            _ => -1,
        };
        topic.partitions.push(
            FetchPartition::default()
                .with_partition(tp.partition)
                .with_current_leader_epoch(epoch)
                .with_fetch_offset(*offset)
                .with_partition_max_bytes(config.max_partition_fetch_bytes),
        );
    }
    let max_wait = i32::try_from(config.fetch_max_wait.as_millis()).unwrap_or(i32::MAX);
    Ok(FetchRequest::default()
        .with_max_wait_ms(max_wait)
        .with_min_bytes(config.fetch_min_bytes)
        .with_max_bytes(config.fetch_max_bytes)
        .with_isolation_level(i8::from(config.read_committed))
        .with_topics(topics.into_values().collect()))
}

/// Sends one Fetch to `node` and decodes the answer (runs as its own task).
pub async fn fetch(
    client: Client,
    node: NodeId,
    config: ConsumerConfig,
    partitions: Vec<(TopicPartition, i64)>,
) -> Result<Vec<PartitionFetch>> {
    let conn = client.node(node).await?;
    let meta = client.metadata();
    // Fetch v13+ names topics by id; without ids (an older metadata answer) stay below it.
    let has_ids = partitions
        .iter()
        .all(|(tp, _)| meta.topic(&tp.topic).is_ok_and(|t| !t.id.is_nil()));
    let version = conn.version::<FetchRequest>()?;
    let version = if has_ids { version } else { version.min(12) };
    let req = request(version, &config, &partitions, &meta)?;
    let response = conn.send(version, &req).await?;
    if let Some(e) = Error::broker("Fetch", response.error_code, None) {
        return Err(e);
    }
    Ok(parse(response, &partitions, &meta))
}

/// Matches the response to the requested partitions and decodes the records.
pub fn parse(
    response: FetchResponse,
    requested: &[(TopicPartition, i64)],
    meta: &ClusterMetadata,
) -> Vec<PartitionFetch> {
    let mut out = Vec::new();
    for topic in response.responses {
        let name: Arc<str> = if topic.topic.is_empty() {
            match meta.topic_name(topic.topic_id) {
                Some(n) => Arc::from(n),
                None => continue,
            }
        } else {
            Arc::from(topic.topic.as_str())
        };
        for p in topic.partitions {
            let Some((tp, offset)) = requested
                .iter()
                .find(|(tp, _)| *tp.topic == *name && tp.partition == p.partition_index)
            else {
                continue;
            };
            let mut error = Error::from_code(p.error_code, &tp.topic, Some(tp.partition));
            if let Some(Error::Broker {
                error: kafka_protocol::ResponseError::OffsetOutOfRange,
                ..
            }) = error
            {
                error = Some(Error::OffsetOutOfRange {
                    topic: tp.topic.to_string(),
                    partition: tp.partition,
                    offset: *offset,
                });
            }
            let aborted: Vec<(i64, i64)> = p
                .aborted_transactions
                .iter()
                .flatten()
                .map(|a| (a.producer_id.0, a.first_offset))
                .collect();
            let records = match (&error, p.records) {
                (None, Some(bytes)) => {
                    match decode_committed(&tp.topic, tp.partition, *offset, bytes, &aborted) {
                        Ok(records) => records,
                        Err(e) => {
                            error = Some(e);
                            DecodedRecords::default()
                        }
                    }
                }
                _ => DecodedRecords::default(),
            };
            trace!(tp = %tp, offset, records = records.records.len(), "fetched");
            out.push(PartitionFetch {
                tp: tp.clone(),
                fetch_offset: *offset,
                error,
                high_watermark: p.high_watermark,
                records,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use kafka_protocol::protocol::Encodable;

    use super::*;

    #[test]
    fn requests_encode_at_every_version() {
        let mut meta = ClusterMetadata::default();
        meta.topics.insert(
            "t".into(),
            crate::metadata::TopicInfo {
                name: "t".into(),
                id: uuid::Uuid::from_u128(5),
                internal: false,
                partitions: vec![],
            },
        );
        let tp = TopicPartition {
            topic: Arc::from("t"),
            partition: 0,
        };
        for v in 4..=18 {
            let req = request(v, &ConsumerConfig::default(), &[(tp.clone(), 7)], &meta).unwrap();
            let mut buf = bytes::BytesMut::new();
            req.encode(&mut buf, v).unwrap();
            assert_eq!(req.max_wait_ms, 500);
        }
    }
}
