//! The producer end to end against the in-memory broker (a fake transport).

use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::records::Compression;

use crate::producer::partitioner::partition_for_key;
use crate::records::decode_records;
use crate::testing::FakeBroker;
use crate::{
    Acks, Bootstrap, Client, ClientConfig, Error, Producer, ProducerConfig, ProducerRecord,
};

async fn producer(broker: &FakeBroker, config: ProducerConfig) -> Producer {
    let mut cc = ClientConfig::new(Bootstrap::parse("fake:9092").unwrap());
    cc.retry_backoff = Duration::from_millis(1);
    let client = Client::connect_with(cc, broker.dialer()).await.unwrap();
    Producer::new(client, config).unwrap()
}

fn fast() -> ProducerConfig {
    ProducerConfig {
        retry_backoff: Duration::from_millis(1),
        ..Default::default()
    }
}

fn values(broker: &FakeBroker, topic: &str, p: i32) -> Vec<String> {
    broker
        .batches(topic, p)
        .into_iter()
        .flat_map(|b| {
            decode_records(&std::sync::Arc::from(topic), p, 0, b.bytes)
                .unwrap()
                .records
        })
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect()
}

#[tokio::test]
async fn keyed_records_land_where_java_puts_them_with_offsets() {
    let broker = FakeBroker::new();
    broker.create_topic("t", 3);
    let p = producer(&broker, fast()).await;
    let mut futures = Vec::new();
    for i in 0..100 {
        let key = format!("key-{}", i % 10);
        futures.push(
            p.send(ProducerRecord::new("t", format!("v{i}")).with_key(key))
                .await
                .unwrap(),
        );
    }
    let mut next = [0i64; 3];
    for (i, f) in futures.into_iter().enumerate() {
        let md = f.await.unwrap();
        let key = format!("key-{}", i % 10);
        assert_eq!(md.partition, partition_for_key(key.as_bytes(), 3));
        let slot = &mut next[md.partition as usize];
        assert_eq!(
            md.offset, *slot,
            "offsets are consecutive per partition in send order"
        );
        *slot += 1;
    }
    assert_eq!(next.iter().sum::<i64>(), 100);
    p.close().await;
}

#[tokio::test]
async fn explicit_partition_and_unknown_partition() {
    let broker = FakeBroker::new();
    broker.create_topic("t", 2);
    let p = producer(&broker, fast()).await;
    let md = p
        .send(ProducerRecord::new("t", "x").with_partition(1))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!((md.partition, md.offset), (1, 0));
    let err = p
        .send(ProducerRecord::new("t", "x").with_partition(2))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::UnknownTopicOrPartition {
            partition: Some(2),
            ..
        }
    ));
}

#[tokio::test]
async fn retries_keep_order_and_sequences() {
    let broker = FakeBroker::new();
    broker.create_topic("t", 1);
    let p = producer(
        &broker,
        ProducerConfig {
            batch_size: 200,
            ..fast()
        },
    )
    .await;
    p.send(ProducerRecord::new("t", "000"))
        .await
        .unwrap()
        .await
        .unwrap();
    // NOT_LEADER_OR_FOLLOWER for the next three attempts; batches pipelined behind them get
    // OUT_OF_ORDER_SEQUENCE_NUMBER from the broker and are retried in order.
    broker.fail_produce("t", 0, 6, 3, false);
    let mut futures = Vec::new();
    for i in 1..50 {
        futures.push(
            p.send(ProducerRecord::new("t", format!("{i:03}")))
                .await
                .unwrap(),
        );
    }
    for (i, f) in futures.into_iter().enumerate() {
        assert_eq!(f.await.unwrap().offset, i as i64 + 1);
    }
    let expected: Vec<String> = (0..50).map(|i| format!("{i:03}")).collect();
    assert_eq!(values(&broker, "t", 0), expected);
    // Sequences are contiguous in the log.
    let mut next_seq = 0;
    for b in broker.batches("t", 0) {
        assert_eq!(b.producer.2, next_seq);
        next_seq += b.count;
    }
}

#[tokio::test]
async fn lost_responses_are_deduplicated_by_sequence() {
    let broker = FakeBroker::new();
    broker.create_topic("t", 1);
    broker.fail_produce("t", 0, 7, 1, true); // written, but the answer is REQUEST_TIMED_OUT
    let p = producer(&broker, fast()).await;
    let md = p
        .send(ProducerRecord::new("t", "once"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(md.offset, 0);
    assert_eq!(values(&broker, "t", 0), vec!["once"]);
    assert!(broker.produce_log().len() >= 2, "it was retried");
}

#[tokio::test]
async fn sequence_gap_on_the_head_bumps_the_epoch() {
    let broker = FakeBroker::new();
    broker.create_topic("t", 1);
    let p = producer(&broker, fast()).await;
    p.send(ProducerRecord::new("t", "a"))
        .await
        .unwrap()
        .await
        .unwrap();
    broker.fail_produce("t", 0, 45, 1, false);
    let md = p
        .send(ProducerRecord::new("t", "b"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(md.offset, 1);
    let log = broker.produce_log();
    let last = log.last().unwrap();
    assert_eq!((last.2).1, 1, "epoch bumped");
    assert_eq!((last.2).2, 0, "sequence restarted");
    assert_eq!(values(&broker, "t", 0), vec!["a", "b"]);
}

#[tokio::test]
async fn fencing_is_fatal() {
    let broker = FakeBroker::new();
    broker.create_topic("t", 1);
    broker.fail_produce("t", 0, 90, 1, false); // PRODUCER_FENCED
    let p = producer(&broker, fast()).await;
    let err = p
        .send(ProducerRecord::new("t", "a"))
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ProducerFenced(_)), "{err}");
    assert!(p.send(ProducerRecord::new("t", "b")).await.is_err());
    assert!(p.fatal_error().is_some());
}

#[tokio::test]
async fn non_retriable_errors_fail_the_batch() {
    let broker = FakeBroker::new();
    broker.create_topic("t", 1);
    broker.fail_produce("t", 0, 87, 1, false); // INVALID_RECORD
    let p = producer(&broker, fast()).await;
    let err = p
        .send(ProducerRecord::new("t", "a"))
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(err.kafka_code(), Some(87));
    // The producer goes on (with a bumped epoch: the failed batch left a sequence gap).
    let md = p
        .send(ProducerRecord::new("t", "b"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(md.offset, 0);
}

#[tokio::test]
async fn acks_zero_reports_no_offsets() {
    let broker = FakeBroker::new();
    broker.create_topic("t", 1);
    let config = ProducerConfig {
        acks: Acks::None,
        ..fast()
    };
    let p = producer(&broker, config).await;
    let md = p
        .send(ProducerRecord::new("t", "a"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(md.offset, -1);
    p.flush().await;
    assert_eq!(broker.log_end("t", 0), 1);
    assert!(
        broker.produce_log().iter().all(|e| (e.2).0 == -1),
        "not idempotent"
    );
}

#[tokio::test]
async fn compressed_batches_and_older_produce_versions() {
    for cap in [13, 12, 3] {
        let broker = FakeBroker::new();
        broker.cap_version(ApiKey::Produce, cap);
        broker.create_topic("t", 1);
        let config = ProducerConfig {
            compression: Compression::Zstd,
            ..fast()
        };
        let p = producer(&broker, config).await;
        let mut futures = Vec::new();
        for i in 0..20 {
            futures.push(
                p.send(ProducerRecord::new("t", format!("z{i}")))
                    .await
                    .unwrap(),
            );
        }
        for f in futures {
            f.await.unwrap();
        }
        assert_eq!(values(&broker, "t", 0).len(), 20);
        assert!(broker.requests().contains(&(0, cap)), "produce v{cap} used");
    }
}

#[tokio::test]
async fn unknown_topic_fails_after_max_block() {
    let broker = FakeBroker::new();
    let config = ProducerConfig {
        max_block: Duration::from_millis(20),
        ..fast()
    };
    let p = producer(&broker, config).await;
    let err = p
        .send(ProducerRecord::new("missing", "a"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::UnknownTopicOrPartition { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn flush_waits_for_lingering_batches() {
    let broker = FakeBroker::new();
    broker.create_topic("t", 1);
    let config = ProducerConfig {
        linger: Duration::from_secs(3600),
        ..fast()
    };
    let p = producer(&broker, config).await;
    let f = p.send(ProducerRecord::new("t", "a")).await.unwrap();
    p.flush().await;
    assert_eq!(broker.log_end("t", 0), 1);
    assert_eq!(f.await.unwrap().offset, 0);
}

#[tokio::test]
async fn null_keys_stick_to_a_partition_per_batch() {
    let broker = FakeBroker::new();
    broker.create_topic("t", 4);
    let config = ProducerConfig {
        partitioner_seed: Some(3),
        linger: Duration::from_secs(3600),
        ..fast()
    };
    let p = producer(&broker, config).await;
    let mut parts = Vec::new();
    for _ in 0..10 {
        parts.push(p.send(ProducerRecord::new("t", "v")).await.unwrap());
    }
    p.flush().await;
    let mut partitions = Vec::new();
    for f in parts {
        partitions.push(f.await.unwrap().partition);
    }
    assert!(
        partitions.windows(2).all(|w| w[0] == w[1]),
        "{partitions:?}"
    );
}

#[tokio::test]
async fn without_topic_ids_produce_and_fetch_stay_below_v13() {
    let broker = FakeBroker::new();
    broker.hide_topic_ids();
    broker.create_topic("t", 1);
    let p = producer(&broker, fast()).await;
    p.send(ProducerRecord::new("t", "a"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(broker.requests().contains(&(0, 12)), "Produce v12");
    let client = {
        let mut cc = ClientConfig::new(Bootstrap::parse("fake:9092").unwrap());
        cc.retry_backoff = Duration::from_millis(1);
        Client::connect_with(cc, broker.dialer()).await.unwrap()
    };
    let mut c = crate::Consumer::new(client, crate::ConsumerConfig::default()).unwrap();
    let tp = crate::TopicPartition::new("t", 0);
    c.assign([tp.clone()]);
    c.seek(&tp, crate::SeekTo::Beginning).unwrap();
    assert_eq!(c.poll(Duration::from_secs(5)).await.unwrap().len(), 1);
    assert!(broker.requests().contains(&(1, 12)), "Fetch v12");
}

/// A transport in front of the fake broker that holds Produce requests until released and
/// counts how many are outstanding at once.
struct Gate {
    broker: FakeBroker,
    open: std::sync::Arc<tokio::sync::Semaphore>,
    in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    most: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl crate::connection::FrameTransport for Gate {
    fn call(
        &self,
        frame: bytes::Bytes,
        expect: bool,
    ) -> futures::future::BoxFuture<'static, crate::Result<Option<bytes::Bytes>>> {
        use std::sync::atomic::Ordering::SeqCst;
        let produce = crate::connection::decode_request(frame.clone())
            .is_ok_and(|(h, _)| h.request_api_key == ApiKey::Produce as i16);
        let (broker, open) = (self.broker.clone(), self.open.clone());
        let (in_flight, most) = (self.in_flight.clone(), self.most.clone());
        Box::pin(async move {
            if produce {
                most.fetch_max(in_flight.fetch_add(1, SeqCst) + 1, SeqCst);
                open.acquire().await.unwrap().forget();
                in_flight.fetch_sub(1, SeqCst);
            }
            crate::connection::FrameTransport::call(&broker, frame, expect).await
        })
    }
    fn is_closed(&self) -> bool {
        false
    }
    fn close(&self) {}
}

/// Up to `max_in_flight` (5) Produce requests are outstanding on a connection, never more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_requests_in_flight_per_connection() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let broker = FakeBroker::new();
    broker.create_topic("t", 1);
    // One permit: the first batch of a producer id goes alone; the rest pile up behind it.
    let open = Arc::new(tokio::sync::Semaphore::new(1));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Gate {
        broker: broker.clone(),
        open: open.clone(),
        in_flight: in_flight.clone(),
        most: most.clone(),
    });
    let dialer: crate::cluster::Dialer = Arc::new(move |_: &crate::connection::Endpoint| {
        Ok(gate.clone() as Arc<dyn crate::connection::FrameTransport>)
    });
    let cc = ClientConfig::new(Bootstrap::parse("fake:9092").unwrap());
    let client = Client::connect_with(cc, dialer).await.unwrap();
    // Batches of one record each.
    let config = ProducerConfig {
        batch_size: 64,
        ..fast()
    };
    let p = Producer::new(client, config).unwrap();
    let mut deliveries = Vec::new();
    for i in 0..30 {
        let value = format!("{i:050}");
        deliveries.push(p.send(ProducerRecord::new("t", value)).await.unwrap());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while in_flight.load(SeqCst) < 5 {
        assert!(std::time::Instant::now() < deadline, "never 5 in flight");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(most.load(SeqCst), 5, "at most 5 requests in flight");
    open.add_permits(1000);
    for (i, d) in deliveries.into_iter().enumerate() {
        assert_eq!(d.await.unwrap().offset, i as i64);
    }
    assert_eq!(most.load(SeqCst), 5);
    p.close().await;
}

/// The producer's cached partition counts follow the client's metadata: a refresh (by anyone)
/// is seen by the next send, without waiting for `metadata_max_age`.
#[tokio::test]
async fn partition_counts_follow_metadata_refreshes() {
    let broker = FakeBroker::new();
    broker.create_topic("t", 1);
    let mut cc = ClientConfig::new(Bootstrap::parse("fake:9092").unwrap());
    cc.retry_backoff = Duration::from_millis(1);
    let client = Client::connect_with(cc, broker.dialer()).await.unwrap();
    let p = Producer::new(client.clone(), fast()).unwrap();
    p.send(ProducerRecord::new("t", "a"))
        .await
        .unwrap()
        .await
        .unwrap();
    let to_one = || ProducerRecord::new("t", "b").with_partition(1);
    assert!(p.send(to_one()).await.is_err(), "one partition so far");
    broker.create_topic("t", 2);
    client.refresh_metadata(None).await.unwrap();
    let md = p.send(to_one()).await.unwrap().await.unwrap();
    assert_eq!((md.partition, md.offset), (1, 0));
    p.close().await;
}
