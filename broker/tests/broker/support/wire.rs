//! Requests the conformance tests send again and again, built with the kafka-protocol crate, and
//! one-call round trips over a [`RawClient`]. Each builder fills only what the asked version carries.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::list_offsets_response::ListOffsetsPartitionResponse;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::messages::{
    CreateTopicsRequest, FetchRequest, FetchResponse, GroupId, InitProducerIdRequest,
    ListOffsetsRequest, OffsetCommitRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

use crate::support::batches::{self, Idempotence};
use crate::support::raw::RawClient;
use crate::support::{TestNode, wait_until};

/// Finds the coordinator of `group`, as clients do before their first commit; the first such
/// request creates the group offsets topic. Waits (with a deadline) until the coordinator serves.
pub async fn find_coordinator(client: &mut RawClient, group: &str) {
    let request = kafka_protocol::messages::FindCoordinatorRequest::default().with_key(str(group));
    let what = format!("a coordinator for {group}");
    wait_until(Duration::from_secs(10), &what, async || {
        let response = client.send(&request, 3).await;
        ResponseError::try_from_code(response.error_code).map_or(Ok(()), Err)
    })
    .await;
}

/// Newest version of each API the tests use for setup steps.
pub const CREATE_TOPICS: i16 = 7;
pub const PRODUCE: i16 = 9;
pub const FETCH: i16 = 12;
pub const LIST_OFFSETS: i16 = 7;

/// A topic as the tests address it: by name, or by id (Produce v13, Fetch v13+).
#[derive(Clone, Debug)]
pub struct Topic {
    pub name: String,
    pub id: Uuid,
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A CreateTopics entry; `configs` are (key, value) overrides.
pub fn creatable(
    name: &str,
    partitions: i32,
    replication: i16,
    configs: &[(&str, &str)],
) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(replication)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(str(k))
                        .with_value(Some(str(v)))
                })
                .collect(),
        )
}

/// Creates a topic (CreateTopics v7) and returns it with its id.
pub async fn create_topic(client: &mut RawClient, name: &str, partitions: i32) -> Topic {
    create_topic_with(client, name, partitions, &[]).await
}

/// Creates a topic with config overrides.
pub async fn create_topic_with(
    client: &mut RawClient,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Topic {
    let request = CreateTopicsRequest::default()
        .with_topics(vec![creatable(name, partitions, 1, configs)])
        .with_timeout_ms(10_000);
    let response = client.send(&request, CREATE_TOPICS).await;
    let result = &response.topics[0];
    assert_eq!(
        result.error_code, 0,
        "creating {name}: {:?}",
        result.error_message
    );
    assert!(!result.topic_id.is_nil());
    Topic {
        name: name.to_string(),
        id: result.topic_id,
    }
}

/// A Produce request of one partition's records; addressed by id at v13, by name below.
pub fn produce_request(
    topic: &Topic,
    partition: i32,
    records: Option<Bytes>,
    acks: i16,
    version: i16,
) -> ProduceRequest {
    let data = TopicProduceData::default().with_partition_data(vec![
        PartitionProduceData::default()
            .with_index(partition)
            .with_records(records),
    ]);
    let data = if version >= 13 {
        data.with_topic_id(topic.id)
    } else {
        data.with_name(topic_name(&topic.name))
    };
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![data])
}

/// Produces `records` (acks=-1) and returns the partition's answer.
pub async fn produce_at(
    client: &mut RawClient,
    topic: &Topic,
    partition: i32,
    records: Bytes,
    version: i16,
) -> PartitionProduceResponse {
    let response = client
        .send(
            &produce_request(topic, partition, Some(records), -1, version),
            version,
        )
        .await;
    assert_eq!(response.responses.len(), 1);
    let topic_response = &response.responses[0];
    if version >= 13 {
        assert_eq!(topic_response.topic_id, topic.id);
    } else {
        assert_eq!(topic_response.name.0.as_str(), topic.name);
    }
    assert_eq!(topic_response.partition_responses.len(), 1);
    topic_response.partition_responses[0].clone()
}

/// Produces and asserts success; returns the base offset.
pub async fn produce(client: &mut RawClient, topic: &Topic, partition: i32, records: Bytes) -> i64 {
    let response = produce_at(client, topic, partition, records, PRODUCE).await;
    assert_eq!(
        response.error_code, 0,
        "produce failed: {:?}",
        response.error_message
    );
    response.base_offset
}

/// Produces one plain batch of `values` and returns its base offset.
pub async fn produce_values(
    client: &mut RawClient,
    topic: &Topic,
    partition: i32,
    values: &[&[u8]],
) -> i64 {
    produce(
        client,
        topic,
        partition,
        batch(values, None, 1_700_000_000_000),
    )
    .await
}

/// A Fetch request of one partition (no waiting unless the caller changes it).
pub fn fetch_request(topic: &Topic, partition: i32, offset: i64, version: i16) -> FetchRequest {
    fetch_request_with(
        topic,
        FetchPartition::default()
            .with_partition(partition)
            .with_fetch_offset(offset),
        version,
    )
}

/// A Fetch request of one partition, given in full.
pub fn fetch_request_with(topic: &Topic, partition: FetchPartition, version: i16) -> FetchRequest {
    let partition = if partition.partition_max_bytes == 0 {
        partition.with_partition_max_bytes(1 << 20)
    } else {
        partition
    };
    let fetch_topic = FetchTopic::default().with_partitions(vec![partition]);
    let fetch_topic = if version >= 13 {
        fetch_topic.with_topic_id(topic.id)
    } else {
        fetch_topic.with_topic(topic_name(&topic.name))
    };
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(50 << 20)
        .with_topics(vec![fetch_topic])
}

/// The single partition of a one-partition Fetch response.
pub fn only_partition(response: &FetchResponse) -> PartitionData {
    assert_eq!(response.error_code, 0, "fetch failed at the top level");
    assert_eq!(response.responses.len(), 1);
    assert_eq!(response.responses[0].partitions.len(), 1);
    response.responses[0].partitions[0].clone()
}

/// Fetches from `offset` (no wait) and returns the partition's answer.
pub async fn fetch_at(
    client: &mut RawClient,
    topic: &Topic,
    partition: i32,
    offset: i64,
    version: i16,
) -> PartitionData {
    let response = client
        .send(&fetch_request(topic, partition, offset, version), version)
        .await;
    only_partition(&response)
}

/// Every (offset, value) from `offset` to the high watermark, fetching until done.
pub async fn read_all(
    client: &mut RawClient,
    topic: &Topic,
    partition: i32,
    offset: i64,
) -> Vec<(i64, Bytes)> {
    let mut out = Vec::new();
    let mut next = offset;
    loop {
        let data = fetch_at(client, topic, partition, next, FETCH).await;
        assert_eq!(data.error_code, 0, "fetch at {next}");
        let records = batches::decode(&data.records.unwrap_or_default());
        let fresh: Vec<_> = records.into_iter().filter(|(o, _)| *o >= next).collect();
        match fresh.last() {
            Some((last, _)) => next = last + 1,
            None => return out,
        }
        out.extend(fresh);
        if next >= data.high_watermark {
            return out;
        }
    }
}

/// ListOffsets of one partition at `timestamp` (-1 latest, -2 earliest, -3 max timestamp).
pub fn list_offsets_request(topic: &Topic, partition: i32, timestamp: i64) -> ListOffsetsRequest {
    ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(topic_name(&topic.name))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(partition)
                        .with_timestamp(timestamp),
                ]),
        ])
}

/// ListOffsets round trip of one partition.
pub async fn list_offset(
    client: &mut RawClient,
    topic: &Topic,
    partition: i32,
    timestamp: i64,
    version: i16,
) -> ListOffsetsPartitionResponse {
    let response = client
        .send(&list_offsets_request(topic, partition, timestamp), version)
        .await;
    assert_eq!(response.topics.len(), 1);
    assert_eq!(response.topics[0].name.0.as_str(), topic.name);
    assert_eq!(response.topics[0].partitions.len(), 1);
    response.topics[0].partitions[0].clone()
}

/// The log end (latest offset) of a partition.
pub async fn log_end(client: &mut RawClient, topic: &Topic, partition: i32) -> i64 {
    let response = list_offset(client, topic, partition, -1, LIST_OFFSETS).await;
    assert_eq!(response.error_code, 0);
    response.offset
}

/// A fresh idempotent producer id and epoch (InitProducerId v4).
pub async fn init_producer_id(client: &mut RawClient) -> (i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let response = client.send(&request, 4).await;
    assert_eq!(response.error_code, 0);
    (response.producer_id.0, response.producer_epoch)
}

/// One record batch of `values` (no keys), every record at `timestamp`; idempotent when
/// `idempotence` is (producer id, epoch, base sequence).
pub fn batch(values: &[&[u8]], idempotence: Idempotence, timestamp: i64) -> Bytes {
    batch_with(values, idempotence, timestamp, Compression::None)
}

/// One record batch, compressed as asked.
///
/// The crate's encoder starts a new batch wherever `offset - sequence` changes, so a plain batch
/// numbers its records' sequences -1, 0, 1, ... (the batch header then says -1, as Kafka's does);
/// `support::batches` gives them all -1 and so encodes one batch per record.
pub fn batch_with(
    values: &[&[u8]],
    idempotence: Idempotence,
    timestamp: i64,
    compression: Compression,
) -> Bytes {
    let (producer_id, producer_epoch, base_sequence) = idempotence.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, value)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: base_sequence.wrapping_add(i as i32),
            timestamp,
            key: None,
            value: Some(Bytes::copy_from_slice(value)),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    let batch = buf.freeze();
    let total = 12 + i32::from_be_bytes(batch[8..12].try_into().unwrap()) as usize;
    assert_eq!(total, batch.len(), "encoded as more than one batch");
    batch
}

/// `n` distinct values `prefix-0`, `prefix-1`, ...
pub fn values(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{prefix}-{i}").into_bytes())
        .collect()
}

/// Borrowed views of owned values, for [`batch`].
pub fn refs(values: &[Vec<u8>]) -> Vec<&[u8]> {
    values.iter().map(Vec::as_slice).collect()
}

/// Decodes a response frame read by hand (after pipelining), checking its correlation id and
/// that nothing trails it.
pub fn decode<R: Request>(mut frame: Bytes, version: i16, correlation_id: i32) -> R::Response {
    let api_key = ApiKey::try_from(R::KEY).unwrap();
    let header =
        ResponseHeader::decode(&mut frame, api_key.response_header_version(version)).unwrap();
    assert_eq!(
        header.correlation_id, correlation_id,
        "responses out of order"
    );
    let response = R::Response::decode(&mut frame, version).unwrap();
    assert_eq!(
        frame.remaining(),
        0,
        "trailing bytes in {api_key:?} v{version} response"
    );
    response
}

/// The correlation id of a response frame.
pub fn correlation_id(frame: &Bytes) -> i32 {
    i32::from_be_bytes(frame[..4].try_into().unwrap())
}

/// A simple-consumer commit (generation -1, no member) of `offset` for partition 0 of `topic`.
pub fn simple_commit(group: &str, topic: &str, offset: i64) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset),
                ]),
        ])
}

/// Encodes `request` at `version` with its header (no size prefix), as sent by `client_id`.
pub fn request_body<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &'static str,
) -> Bytes {
    let api_key = ApiKey::try_from(R::KEY).unwrap();
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(client_id)));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, api_key.request_header_version(version))
        .unwrap();
    request.encode(&mut body, version).unwrap();
    body.freeze()
}

/// Encodes `request` at `version` as a whole frame, size prefix included.
pub fn frame<R: Request>(request: &R, version: i16, correlation_id: i32) -> Bytes {
    let body = request_body(request, version, correlation_id, "wire-test");
    let mut out = BytesMut::with_capacity(body.len() + 4);
    out.put_u32(body.len() as u32);
    out.put_slice(&body);
    out.freeze()
}

/// A bare TCP connection for bytes no well-behaved client sends (no size prefix, lying
/// prefixes, several frames in one write).
pub struct Socket {
    stream: TcpStream,
}

impl Socket {
    pub async fn connect(addr: SocketAddr) -> Socket {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Socket { stream }
    }

    /// Writes `bytes` as they are; an error means the broker already closed the connection.
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Reads one response frame (without its size prefix); `None` once the broker closed.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let read = async {
            let mut len = [0u8; 4];
            self.stream.read_exact(&mut len).await.ok()?;
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            self.stream.read_exact(&mut body).await.ok()?;
            Some(Bytes::from(body))
        };
        tokio::time::timeout(DEADLINE, read)
            .await
            .expect("neither a response nor a close")
    }

    /// True once the broker closed the connection without answering (EOF or reset).
    pub async fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(DEADLINE, self.stream.read(&mut byte)).await;
        matches!(
            read.expect("the broker neither answered nor closed"),
            Ok(0) | Err(_)
        )
    }
}

/// Shuts the node down cleanly. (Dropping a running node instead stalls the test's runtime for
/// ~10 s while the store waits for memtable flushes that never come.)
pub async fn stop(mut node: TestNode) {
    if let Some(node) = node.node.take() {
        node.shutdown().await;
    }
}

/// Generous deadline for conditions in these tests.
pub const DEADLINE: Duration = Duration::from_secs(20);
