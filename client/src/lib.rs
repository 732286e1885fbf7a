//! The Rafka client library: producer, consumer and admin over the Kafka protocol, carried by
//! plain Kafka TCP or the libp2p mesh.
//!
//! Component map:
//! - [`bootstrap`]: parse the bootstrap address (a multiaddr selects the mesh, `HOST:PORT` TCP).
//! - [`connection`]: one negotiated connection per broker ([`connection::Connection`]) over a
//!   [`connection::FrameTransport`]: [`connection::tcp`] (Kafka framing, pipelined) or
//!   [`connection::mesh`] (`rafka_mesh::Mesh::kafka_request`); ApiVersions negotiation in
//!   [`connection::versions`].
//! - [`cluster`]: [`Client`], the shared core: node → endpoint routes ([`routes`]: host:port
//!   over TCP, peer ids from the member list over the mesh), the connection pool and the
//!   metadata snapshot ([`metadata`]).
//! - [`members`]: the cluster's members as the mesh reports them (`rafka cluster`, routing).
//! - [`records`]: RecordBatch v2 encoding for the producer and decoding for the consumer.
//! - [`producer`]: [`Producer`] — partitioner (Kafka's murmur2, sticky), accumulator, sequence
//!   numbers for idempotence, the sender task, and transactions (init, begin, send,
//!   send_offsets_to_transaction, commit, abort).
//! - [`consumer`]: [`Consumer`] — assignment, seek, long-poll fetch, following leaders,
//!   committed offsets.
//! - [`group`]: [`GroupConsumer`] — `subscribe` in a consumer group: join, sync, heartbeat,
//!   the range / roundrobin / cooperative-sticky assignors, commits fenced by generation.
//! - [`subscription`]: [`Subscription`] — push: committed records from the partition leaders
//!   through the home node, gaps and history backfilled by Fetch (`docs/push.md`).
//! - [`admin`]: [`Admin`] — create, list, describe and delete topics.
//! - [`transactions`]: [`transactions::TxnAdmin`] — list and describe transactional ids (the
//!   transactional producer itself is [`Producer`] with a transactional id).
//! - [`bench`]: the `rafka bench` runners (producer, consumer and end-to-end latency).
//! - [`config`]: [`ProducerConfig`] and [`ConsumerConfig`] with Kafka's defaults.
//! - [`error`]: [`Error`], with Kafka error codes mapped to typed variants.
//! - `testing` (feature `testing`, on in the client's own tests): an in-memory broker (also
//!   servable over TCP) with fault injection, checked against the real broker by
//!   `tests/conformance.rs`.
//!
//! ```
//! # use std::time::Duration;
//! use rafka_client::testing::FakeBroker;
//! use rafka_client::{
//!     Bootstrap, Client, ClientConfig, Consumer, ConsumerConfig, Producer, ProducerConfig,
//!     ProducerRecord, SeekTo, TopicPartition, producer::partitioner::murmur2,
//! };
//!
//! // A multiaddr (or `mdns`) selects the mesh transport, HOST:PORT selects Kafka over TCP.
//! assert!(matches!(Bootstrap::parse("/ip4/127.0.0.1/tcp/7070"), Ok(Bootstrap::Mesh(_))));
//! assert_eq!(Bootstrap::parse("mdns").unwrap(), Bootstrap::Mdns);
//! // Keys land on the same partitions as with the Java client.
//! assert_eq!(murmur2(b"21"), -973932308);
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // An in-memory broker stands in for a node here; `Client::connect` reaches a real one.
//! let broker = FakeBroker::new();
//! broker.create_topic("greetings", 1);
//! let config = ClientConfig::new(Bootstrap::parse("localhost:9092")?);
//! let client = Client::connect_with(config, broker.dialer()).await?;
//!
//! let producer = Producer::new(client.clone(), ProducerConfig::default())?;
//! let delivery = producer.send(ProducerRecord::new("greetings", "hello").with_key("k")).await?;
//! assert_eq!(delivery.await?.offset, 0);
//! producer.close().await;
//!
//! let mut consumer = Consumer::new(client, ConsumerConfig::default())?;
//! let tp = TopicPartition::new("greetings", 0);
//! consumer.assign([tp.clone()]);
//! consumer.seek(&tp, SeekTo::Beginning)?;
//! let records = consumer.poll(Duration::from_secs(5)).await?;
//! assert_eq!(records[0].value.as_deref(), Some(&b"hello"[..]));
//! # Ok::<(), rafka_client::Error>(()) }).unwrap();
//! ```
#![deny(clippy::indexing_slicing)]

pub mod admin;
pub mod bench;
pub mod bootstrap;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod group;
pub mod members;
pub mod metadata;
pub mod producer;
pub mod records;
pub mod routes;
pub mod subscription;
pub mod transactions;

pub use admin::{Admin, NewTopic};
pub use bootstrap::Bootstrap;
pub use cluster::{Client, ClientConfig};
pub use config::{Acks, ConsumerConfig, OffsetReset, ProducerConfig};
pub use consumer::{Consumer, SeekTo};
pub use error::{Error, Result};
pub use group::{ConsumerGroupMetadata, GroupConfig, GroupConsumer, RebalanceListener};
pub use metadata::TopicPartition;
pub use producer::{DeliveryFuture, Producer, ProducerRecord, RecordMetadata};
pub use records::ConsumerRecord;
pub use subscription::{StartAt, Subscription, SubscriptionConfig};
#[cfg(any(test, feature = "testing"))]
pub mod testing;
