//! Bad input: each case gets its typed error or a closed connection, and afterwards the node still
//! serves other clients (one connected before, one fresh) and has lost nothing already stored.

use crate::support::TestNode;
use crate::support::process::NodeProcess;
use crate::support::wait::wait_until;
use crate::support::wire::{Socket, Topic};
use crate::support::{self, wire};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest, ProduceRequest};
use kafka_protocol::records::Compression;
use std::time::Duration;

const MAX_REQUEST_BYTES: usize = 64 * 1024;
const MAX_MESSAGE_BYTES: usize = 2000;
const T: i64 = 1_700_000_000_000;

/// A node with a small request limit, a topic with a small batch limit, and records stored.
struct Fixture {
    node: TestNode,
    topic: Topic,
    stored: Vec<(i64, Bytes)>,
    /// A connection opened before any bad input, kept across the cases.
    bystander: support::raw::RawClient,
}

impl Fixture {
    async fn start() -> Fixture {
        let node = TestNode::start_with(|c| c.max_request_bytes = MAX_REQUEST_BYTES).await;
        let mut client = node.connect().await;
        let topic = wire::create_topic_with(
            &mut client,
            "bad-input",
            2,
            &[("max.message.bytes", "2000")],
        )
        .await;
        wire::produce_values(&mut client, &topic, 0, &[b"kept-0", b"kept-1"]).await;
        wire::produce_values(&mut client, &topic, 0, &[b"kept-2"]).await;
        let stored = wire::read_all(&mut client, &topic, 0, 0).await;
        assert_eq!(stored.len(), 3);
        let bystander = node.connect().await;
        Fixture {
            node,
            topic,
            stored,
            bystander,
        }
    }

    /// The node still answers the connection opened before and a fresh one, and has every record.
    async fn assert_intact(&mut self, case: &str) {
        let versions = self.bystander.send(&ApiVersionsRequest::default(), 3).await;
        assert_eq!(versions.error_code, 0, "{case}: the earlier connection");
        let mut fresh = self.node.connect().await;
        let records = wire::read_all(&mut fresh, &self.topic, 0, 0).await;
        assert_eq!(records, self.stored, "{case}: stored records changed");
        let empty = wire::read_all(&mut fresh, &self.topic, 1, 0).await;
        assert!(empty.is_empty(), "{case}: partition 1 gained records");
    }

    async fn stop(self) {
        wire::stop(self.node).await;
    }

    async fn socket(&self) -> Socket {
        Socket::connect(self.node.kafka_addr()).await
    }

    /// Sends `bytes` on a new connection and asserts the broker closes it without answering.
    async fn assert_closes(&mut self, case: &str, bytes: &[u8]) {
        let mut socket = self.socket().await;
        // The broker may close while we are still writing: that is a close too.
        let _ = socket.write(bytes).await;
        assert!(socket.is_closed().await, "{case}: connection left open");
        self.assert_intact(case).await;
    }

    /// Produces `records` to `partition` on the bystander connection and returns the error code
    /// (the connection stays usable: these are per-partition errors).
    async fn produce_error(&mut self, partition: i32, records: Option<Bytes>) -> i16 {
        let request = wire::produce_request(&self.topic, partition, records, -1, wire::PRODUCE);
        let response = self.bystander.send(&request, wire::PRODUCE).await;
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(partition.base_offset, -1);
        partition.error_code
    }
}

/// A frame with a v1 request header (api key, version, correlation id, null client id) and `body`,
/// size prefix included.
fn raw_frame(api_key: i16, version: i16, body: &[u8]) -> Bytes {
    let mut frame = BytesMut::new();
    frame.put_u32((10 + body.len()) as u32);
    frame.put_i16(api_key);
    frame.put_i16(version);
    frame.put_i32(99);
    frame.put_i16(-1);
    frame.put_slice(body);
    frame.freeze()
}

fn prefixed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn one_record() -> Bytes {
    wire::batch(&[b"payload"], None, T)
}

#[tokio::test]
async fn frames_shorter_than_a_header_close_the_connection() {
    let mut f = Fixture::start().await;
    for len in [0usize, 1, 3, 7] {
        let body = vec![0u8; len];
        f.assert_closes(&format!("{len}-byte frame"), &prefixed(&body))
            .await;
    }
    // A size prefix cut short, then the client goes away.
    let mut socket = f.socket().await;
    socket.write(&[0, 0]).await.unwrap();
    drop(socket);
    f.assert_intact("half a size prefix").await;
    f.stop().await;
}

#[tokio::test]
async fn garbage_closes_the_connection() {
    let mut f = Fixture::start().await;
    // An HTTP request: its first four bytes read as a ~1.2 GB size prefix.
    f.assert_closes("HTTP request", b"GET / HTTP/1.1\r\nHost: rafka\r\n\r\n")
        .await;
    // A TLS ClientHello start.
    f.assert_closes(
        "TLS hello",
        &[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ],
    )
    .await;
    // Deterministic noise in a well-sized frame.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..512)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    f.assert_closes("noise", &prefixed(&noise)).await;
    // A valid Metadata header followed by junk where the topic array should be.
    f.assert_closes(
        "junk body",
        &raw_frame(3, 1, &[0x00, 0x00, 0x00, 0x05, 0xff, 0xfe, 0x01]),
    )
    .await;
    f.stop().await;
}

#[tokio::test]
async fn unknown_api_keys_close_the_connection() {
    let mut f = Fixture::start().await;
    for key in [
        -1i16,
        999,
        i16::MAX,
        17, /* SaslHandshake: known to Kafka, not served */
        24,
    ] {
        f.assert_closes(&format!("api key {key}"), &raw_frame(key, 0, &[]))
            .await;
    }
    f.stop().await;
}

#[tokio::test]
async fn unsupported_versions_of_served_apis_close_the_connection() {
    let mut f = Fixture::start().await;
    for (key, version) in [
        (3i16, 14i16),
        (3, -1),
        (0, 2),
        (0, 14),
        (1, 3),
        (1, 19),
        (2, 0),
        (8, 1),
        (9, 0),
        (10, 6),
        (19, 1),
    ] {
        f.assert_closes(
            &format!("api {key} v{version}"),
            &raw_frame(key, version, &[0; 16]),
        )
        .await;
    }
    f.stop().await;
}

#[tokio::test]
async fn truncated_bodies_close_the_connection() {
    let mut f = Fixture::start().await;
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(wire::topic_name("bad-input"))),
    ]));
    let frame = wire::frame(&metadata, 9, 1);
    let body = &frame[4..];
    for cut in [1, 3, body.len() - 12] {
        f.assert_closes(
            &format!("metadata v9 cut by {cut}"),
            &prefixed(&body[..body.len() - cut]),
        )
        .await;
    }
    let produce = wire::produce_request(&f.topic, 0, Some(one_record()), -1, wire::PRODUCE);
    let frame = wire::frame::<ProduceRequest>(&produce, wire::PRODUCE, 2);
    let body = &frame[4..];
    f.assert_closes("produce cut mid-batch", &prefixed(&body[..body.len() - 20]))
        .await;
    // A header whose client id claims more bytes than the frame has.
    let mut header = BytesMut::new();
    header.put_i16(3);
    header.put_i16(1);
    header.put_i32(5);
    header.put_i16(200);
    header.put_slice(b"short");
    f.assert_closes("client id overrun", &prefixed(&header))
        .await;
    f.stop().await;
}

#[tokio::test]
async fn oversized_size_prefixes_close_the_connection() {
    let mut f = Fixture::start().await;
    for size in [MAX_REQUEST_BYTES as u32 + 1, 0x7fff_ffff, u32::MAX] {
        // Only the prefix: the broker must not wait for (or allocate) the announced body.
        f.assert_closes(&format!("prefix {size:#x}"), &size.to_be_bytes())
            .await;
    }
    // A real request just over the limit.
    let values = wire::values("big", 70);
    let padded: Vec<Vec<u8>> = values
        .iter()
        .map(|v| [v.as_slice(), &[b'.'; 1000]].concat())
        .collect();
    let batch = wire::batch(&wire::refs(&padded), None, T);
    let produce = wire::produce_request(&f.topic, 0, Some(batch), -1, wire::PRODUCE);
    let frame = wire::frame::<ProduceRequest>(&produce, wire::PRODUCE, 3);
    assert!(frame.len() > MAX_REQUEST_BYTES);
    f.assert_closes("produce over --max-request-bytes", &frame)
        .await;
    f.stop().await;
}

#[tokio::test]
async fn bad_batches_get_typed_errors_and_write_nothing() {
    let mut f = Fixture::start().await;
    let good = one_record();

    let mut corrupt = good.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert_eq!(
        f.produce_error(0, Some(corrupt.into())).await,
        ResponseError::CorruptMessage.code(),
        "bad CRC"
    );

    let mut magic = good.to_vec();
    magic[16] = 1;
    assert_eq!(
        f.produce_error(0, Some(magic.into())).await,
        ResponseError::InvalidRecord.code(),
        "magic 1"
    );

    let mut two = good.to_vec();
    two.extend_from_slice(&good);
    assert_eq!(
        f.produce_error(0, Some(two.into())).await,
        ResponseError::InvalidRecord.code(),
        "two batches"
    );

    let truncated = good.slice(..good.len() - 5);
    assert_eq!(
        f.produce_error(0, Some(truncated)).await,
        ResponseError::CorruptMessage.code(),
        "truncated batch"
    );

    let header_only = good.slice(..30);
    assert_eq!(
        f.produce_error(0, Some(header_only)).await,
        ResponseError::CorruptMessage.code(),
        "half a header"
    );

    let big = vec![b'x'; MAX_MESSAGE_BYTES];
    let too_large = wire::batch(&[&big], None, T);
    assert_eq!(
        f.produce_error(0, Some(too_large)).await,
        ResponseError::MessageTooLarge.code(),
        "max.message.bytes"
    );

    assert_eq!(
        f.produce_error(0, None).await,
        ResponseError::InvalidRecord.code(),
        "records null"
    );
    assert_eq!(
        f.produce_error(0, Some(Bytes::new())).await,
        ResponseError::InvalidRecord.code(),
        "records empty"
    );

    for partition in [2, -1, i32::MAX] {
        let code = f.produce_error(partition, Some(good.clone())).await;
        assert_eq!(
            code,
            ResponseError::UnknownTopicOrPartition.code(),
            "partition {partition}"
        );
    }
    let unknown = Topic {
        name: "bad-input-unknown".into(),
        id: uuid::Uuid::new_v4(),
    };
    let request = wire::produce_request(&unknown, 0, Some(good.clone()), -1, wire::PRODUCE);
    let response = f.bystander.send(&request, wire::PRODUCE).await;
    assert_eq!(
        response.responses[0].partition_responses[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    f.assert_intact("bad batches").await;
    f.stop().await;
}

#[tokio::test]
async fn a_bad_batch_with_acks_zero_closes_the_connection() {
    let mut f = Fixture::start().await;
    let mut corrupt = one_record().to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let request = wire::produce_request(&f.topic, 0, Some(corrupt.into()), 0, wire::PRODUCE);
    // acks=0 has no response to carry the error: Kafka closes the connection instead.
    f.assert_closes(
        "acks=0 corrupt batch",
        &wire::frame::<ProduceRequest>(&request, wire::PRODUCE, 4),
    )
    .await;
    f.stop().await;
}

/// A request header (v1) of `api_key`/`version` followed by an array length of `count` where the
/// request's first array is: the kafka-protocol crate reserves `count` elements up front.
fn huge_array_frame(api_key: i16, version: i16, prefix: &[u8], count: &[u8]) -> Bytes {
    let body: Vec<u8> = [prefix, count].concat();
    raw_frame(api_key, version, &body)
}

/// kafka-protocol 0.18 calls `Vec::with_capacity(n)` with array lengths read off the wire
/// (upstream PRs #152/#161/#200), so a 14-byte request can ask for ~150 GiB. Run against a
/// `rafka-node` process so an abort shows as the node dying instead of killing the test.
#[test]
fn huge_array_lengths_do_not_take_the_node_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(&dir.path().join("node"), &[]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = support::raw::RawClient::connect(node.ready.kafka).await;
        let topic = wire::create_topic(&mut client, "hazard", 1).await;
        wire::produce_values(&mut client, &topic, 0, &[b"survives"]).await;

        let cases: [(&str, Bytes); 5] = [
            // Metadata v0: topics array (int32 length).
            (
                "metadata v0",
                huge_array_frame(3, 0, &[], &0x7fff_ffffu32.to_be_bytes()),
            ),
            // Metadata v9 (flexible): empty tagged fields of the header, then a compact array
            // whose varint length is 0x7fffffff + 1.
            (
                "metadata v9",
                huge_array_frame(3, 9, &[0], &[0x80, 0x80, 0x80, 0x80, 0x08]),
            ),
            // Produce v3: null transactional id, acks, timeout, then the topic array.
            (
                "produce v3",
                huge_array_frame(
                    0,
                    3,
                    &[0xff, 0xff, 0xff, 0xff, 0, 0, 0x27, 0x10],
                    &0x7fff_ffffu32.to_be_bytes(),
                ),
            ),
            // CreateTopics v2: topics array.
            (
                "create topics v2",
                huge_array_frame(19, 2, &[], &0x7fff_ffffu32.to_be_bytes()),
            ),
            // OffsetCommit v2: group "g", generation, member "", retention, then topics.
            (
                "offset commit v2",
                huge_array_frame(
                    8,
                    2,
                    &[
                        0, 1, b'g', 0xff, 0xff, 0xff, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff,
                        0xff, 0xff, 0xff,
                    ],
                    &0x7fff_ffffu32.to_be_bytes(),
                ),
            ),
        ];
        for (case, frame) in cases {
            let mut socket = Socket::connect(node.ready.kafka).await;
            let _ = socket.write(&frame).await;
            let closed = socket.is_closed().await;
            if tokio::net::TcpStream::connect(node.ready.kafka)
                .await
                .is_err()
            {
                let status = node.child.wait().unwrap();
                panic!(
                    "{case}: rafka-node died ({status}); log:\n{}",
                    node.log_text()
                );
            }
            assert!(closed, "{case}: connection left open");
            assert!(
                node.child.try_wait().unwrap().is_none(),
                "{case}: rafka-node exited"
            );
            let mut fresh = support::raw::RawClient::connect(node.ready.kafka).await;
            let records = wire::read_all(&mut fresh, &topic, 0, 0).await;
            assert_eq!(records, [(0, Bytes::from_static(b"survives"))], "{case}");
        }
    });
    assert!(
        node.terminate(),
        "rafka-node did not stop cleanly; log:\n{}",
        node.log_text()
    );
}

/// A gzip batch of two records whose compressed payload is noise, with the CRC recomputed.
fn bad_gzip_batch() -> Bytes {
    let good = wire::batch_with(&[b"key", b"value"], None, T, Compression::Gzip);
    let mut bad = good.to_vec();
    for byte in bad.iter_mut().skip(61) {
        *byte = 0xa5;
    }
    let crc = rafka_store::batch::compute_crc(&bad).unwrap();
    bad[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(bad)
}

#[tokio::test]
async fn clients_cannot_write_into_the_offsets_topic() {
    let mut node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "bi-offsets", 1).await;
    wire::find_coordinator(&mut client, "bi-group").await;
    let commit = kafka_protocol::messages::OffsetCommitRequest::default()
        .with_group_id(kafka_protocol::messages::GroupId(wire::str("bi-group")))
        .with_topics(vec![
            kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(wire::topic_name(&topic.name))
                .with_partitions(vec![
                    kafka_protocol::messages::offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_committed_offset(17),
                ]),
        ]);
    assert_eq!(
        client.send(&commit, 8).await.topics[0].partitions[0].error_code,
        0
    );

    // Garbage keys and values, as a confused or hostile client would send them.
    let metadata = client
        .send(
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default()
                    .with_name(Some(wire::topic_name("__consumer_offsets"))),
            ])),
            12,
        )
        .await;
    let internal = Topic {
        name: "__consumer_offsets".into(),
        id: metadata.topics[0].topic_id,
    };
    for partition in 0..2 {
        let garbage = wire::batch(&[b"\x00\x01garbage", b"\xff\xff\xff"], None, T);
        // A gzip batch whose compressed bytes are noise under a correct CRC: the store would take
        // it (batches are never decompressed on the produce path), but nothing could replay it.
        for (what, batch) in [("garbage", garbage), ("bad gzip", bad_gzip_batch())] {
            let response =
                wire::produce_at(&mut client, &internal, partition, batch, wire::PRODUCE).await;
            assert_eq!(
                response.error_code,
                ResponseError::InvalidTopicException.code(),
                "{what} to partition {partition}"
            );
        }
    }
    drop(client);
    node.restart().await;
    let mut client = node.connect().await;
    let fetch = kafka_protocol::messages::OffsetFetchRequest::default()
        .with_group_id(kafka_protocol::messages::GroupId(wire::str("bi-group")))
        .with_topics(None);
    // The restarted coordinator replays the offsets partition first (COORDINATOR_LOAD_IN_PROGRESS
    // meanwhile, which clients retry); the garbage must not stop that replay.
    let committed = wait_until(
        Duration::from_secs(20),
        "the restarted coordinator serving the group's commit",
        async || {
            let response = client.send(&fetch, 7).await;
            match response.topics.first().and_then(|t| t.partitions.first()) {
                Some(partition) if response.error_code == 0 => Ok(partition.committed_offset),
                _ => Err(format!(
                    "error {}, {:?}",
                    response.error_code, response.topics
                )),
            }
        },
    )
    .await;
    assert_eq!(committed, 17);
    wire::stop(node).await;
}

/// `batch` with `set` OR-ed into its attributes and the CRC recomputed.
fn with_attributes(batch: &Bytes, set: i16) -> Bytes {
    let mut bytes = batch.to_vec();
    let attributes = i16::from_be_bytes(bytes[21..23].try_into().unwrap()) | set;
    bytes[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = rafka_store::batch::compute_crc(&bytes).unwrap();
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(bytes)
}

#[tokio::test]
async fn batches_only_the_broker_may_write_are_refused() {
    let mut f = Fixture::start().await;
    // Control batches (transaction markers) come from the broker only.
    let control = with_attributes(&one_record(), 0b10_0000);
    assert_eq!(
        f.produce_error(0, Some(control)).await,
        ResponseError::InvalidRecord.code(),
        "control batch"
    );
    // Transactional batches need a transaction, which Rafka does not have yet.
    let transactional = with_attributes(&wire::batch(&[b"t"], Some((1, 0, 0)), T), 0b1_0000);
    let code = f.produce_error(0, Some(transactional)).await;
    assert_eq!(
        code,
        ResponseError::TransactionalIdAuthorizationFailed.code(),
        "transactional batch"
    );
    // A producer id needs a sequence.
    let mut unsequenced = wire::batch(&[b"s"], None, T).to_vec();
    unsequenced[43..51].copy_from_slice(&5i64.to_be_bytes());
    unsequenced[51..53].copy_from_slice(&0i16.to_be_bytes());
    let crc = rafka_store::batch::compute_crc(&unsequenced).unwrap();
    unsequenced[17..21].copy_from_slice(&crc.to_be_bytes());
    let code = f.produce_error(0, Some(Bytes::from(unsequenced))).await;
    assert_eq!(
        code,
        ResponseError::InvalidRecord.code(),
        "producer id without a sequence"
    );
    f.assert_intact("batches only the broker may write").await;
    f.stop().await;
}

#[tokio::test]
async fn a_request_of_exactly_max_request_bytes_is_served() {
    let mut f = Fixture::start().await;
    // Grow one value until the whole frame body is exactly the limit.
    let mut size = MAX_REQUEST_BYTES - 200;
    let frame = loop {
        let value = vec![b'x'; size];
        let batch = wire::batch(&[&value], None, T);
        let request = wire::produce_request(&f.topic, 0, Some(batch), -1, wire::PRODUCE);
        let frame = wire::frame::<ProduceRequest>(&request, wire::PRODUCE, 77);
        let body = frame.len() - 4;
        if body == MAX_REQUEST_BYTES {
            break frame;
        }
        assert!(body < MAX_REQUEST_BYTES, "overshot: {body}");
        size += MAX_REQUEST_BYTES - body;
    };
    let mut socket = f.socket().await;
    socket.write(&frame).await.unwrap();
    let answer = socket
        .read_frame()
        .await
        .expect("a request at the limit is answered");
    let response = wire::decode::<ProduceRequest>(answer, wire::PRODUCE, 77);
    // Over the topic's max.message.bytes, but read and answered.
    let code = response.responses[0].partition_responses[0].error_code;
    assert_eq!(code, ResponseError::MessageTooLarge.code());
    f.assert_intact("a request at the limit").await;
    f.stop().await;
}

#[tokio::test]
async fn an_acks_zero_produce_to_an_unknown_topic_closes_the_connection() {
    let mut f = Fixture::start().await;
    let unknown = Topic {
        name: "bad-input-nowhere".into(),
        id: uuid::Uuid::new_v4(),
    };
    let request = wire::produce_request(&unknown, 0, Some(one_record()), 0, wire::PRODUCE);
    let frame = wire::frame::<ProduceRequest>(&request, wire::PRODUCE, 5);
    f.assert_closes("acks=0 to an unknown topic", &frame).await;
    f.stop().await;
}
