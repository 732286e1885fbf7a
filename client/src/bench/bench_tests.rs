//! The runners against the in-memory broker: counts, the report's figures and JSON shape, and
//! the fsync probe's two answers.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::consume::ConsumeBench;
use super::e2e::E2eBench;
use super::fsync::FsyncMode;
use super::produce::ProduceBench;
use super::stats::Progress;
use super::*;
use crate::admin::{Admin, NewTopic};
use crate::config::{Acks, ProducerConfig};
use crate::testing::FakeBroker;
use crate::{Bootstrap, ClientConfig};

async fn clients(broker: &FakeBroker, n: usize) -> Vec<Client> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut cc = ClientConfig::new(Bootstrap::parse("fake:9092").unwrap());
        cc.retry_backoff = Duration::from_millis(5);
        out.push(Client::connect_with(cc, broker.dialer()).await.unwrap());
    }
    out
}

fn quiet() -> impl Fn(&Progress) + Send + Sync {
    |_: &Progress| {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_then_consume_counts_every_record() {
    let broker = FakeBroker::new();
    let producers = clients(&broker, 2).await;
    let bench = ProduceBench {
        topic: "b".into(),
        records: 3001,
        record_size: 100,
        partitions: 3,
        producers: 2,
        report_every: Duration::from_millis(20),
        ..ProduceBench::default()
    };
    let seen = Mutex::new(0u64);
    let progress = |p: &Progress| *seen.lock().unwrap() += p.window.records;
    let report = bench.run(&producers, &progress).await.unwrap();
    assert_eq!((report.records, report.errors), (3001, 0));
    assert_eq!(report.bytes, 300_100);
    assert_eq!(report.mode, "produce");
    assert_eq!(report.transport, "kafka-tcp");
    assert_eq!(
        report.fsync,
        FsyncMode::Unknown,
        "the fake broker is not Rafka"
    );
    let latency = report.latency_ms.unwrap();
    assert_eq!(latency.count, 3001);
    assert!(latency.p50 <= latency.p99 && latency.p99 <= latency.max);
    assert!(*seen.lock().unwrap() <= 3001);
    let stored: i64 = (0..3).map(|p| broker.log_end("b", p)).sum();
    assert_eq!(stored, 3001);

    let consumers = clients(&broker, 2).await;
    let bench = ConsumeBench {
        topic: "b".into(),
        records: 3001,
        consumers: 2,
        ..ConsumeBench::default()
    };
    let report = bench.run(&consumers, &quiet()).await.unwrap();
    assert_eq!((report.records, report.bytes), (3001, 300_100));
    assert!(report.latency_ms.is_none());
    assert!(report.notes.is_empty(), "{:?}", report.notes);

    // Asking for more than there is ends at the timeout, with what was read.
    let bench = ConsumeBench {
        topic: "b".into(),
        records: 5000,
        consumers: 4,
        timeout: Duration::from_millis(300),
        ..ConsumeBench::default()
    };
    let report = bench
        .run(&clients(&broker, 4).await, &quiet())
        .await
        .unwrap();
    assert_eq!(report.records, 3001);
    assert!(report.first_error.is_some());
    assert_eq!(report.notes.len(), 2, "{:?}", report.notes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_throughput_cap_and_an_existing_topic() {
    let broker = FakeBroker::new();
    broker.create_topic("k", 2);
    let bench = ProduceBench {
        topic: "k".into(),
        records: 200,
        record_size: 10,
        key_size: Some(8),
        partitions: 4,
        throughput: 1000.0,
        producer: ProducerConfig {
            acks: Acks::Leader,
            ..ProducerConfig::default()
        },
        ..ProduceBench::default()
    };
    let report = bench
        .run(&clients(&broker, 1).await, &quiet())
        .await
        .unwrap();
    assert_eq!((report.records, report.bytes), (200, 200 * 18));
    // 200 records at 1000/s take about 0.2 s, never much less.
    assert!(report.elapsed_s >= 0.19, "{}", report.elapsed_s);
    assert!(
        report.records_per_sec <= 1050.0,
        "{}",
        report.records_per_sec
    );
    assert_eq!(report.notes.len(), 1, "{:?}", report.notes);
    assert!(report.notes[0].contains("2 partitions, not 4"));
    assert!(
        broker.log_end("k", 0) > 0 && broker.log_end("k", 1) > 0,
        "keys spread"
    );
    assert_eq!(report.config["acks"], "1");
    assert_eq!(report.config["idempotence"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_round_trips_and_the_fsync_config() {
    let broker = FakeBroker::new();
    let clients = clients(&broker, 2).await;
    let mut topic = NewTopic::new("e", 1);
    topic.configs = BTreeMap::from([("rafka.fsync".to_owned(), "never".to_owned())]);
    Admin::new(clients[0].clone())
        .create_topic(topic)
        .await
        .unwrap();
    let bench = E2eBench {
        topic: "e".into(),
        records: 20,
        warmup: 2,
        ..E2eBench::default()
    };
    let report = bench.run(&clients[0], &clients[1], &quiet()).await.unwrap();
    assert_eq!(report.records, 20);
    assert_eq!(report.latency_ms.unwrap().count, 20);
    assert_eq!(broker.log_end("e", 0), 22, "warm-up and measured records");
    assert_eq!(
        report.fsync,
        FsyncMode::Rafka {
            topic: Some("never".into()),
            broker: None
        }
    );
    // acks=0: no offset comes back; the next record is matched by value.
    let fire_and_forget = E2eBench {
        records: 5,
        producer: ProducerConfig {
            acks: Acks::None,
            ..ProducerConfig::default()
        },
        ..bench.clone()
    };
    let report = fire_and_forget
        .run(&clients[0], &clients[1], &quiet())
        .await
        .unwrap();
    assert_eq!(report.records, 5);
    assert_eq!(report.config["acks"], "0");
    let short = E2eBench {
        max_wait: Duration::from_millis(50),
        ..bench
    };
    assert!(short.run(&clients[0], &clients[1], &quiet()).await.is_err());
}

#[tokio::test]
async fn clients_must_match_the_task_count() {
    let broker = FakeBroker::new();
    let one = clients(&broker, 1).await;
    let produce = ProduceBench {
        producers: 2,
        ..ProduceBench::default()
    };
    assert!(matches!(
        produce.run(&one, &quiet()).await,
        Err(Error::Config(_))
    ));
    let consume = ConsumeBench {
        consumers: 3,
        ..ConsumeBench::default()
    };
    assert!(matches!(
        consume.run(&one, &quiet()).await,
        Err(Error::Config(_))
    ));
}

#[test]
fn report_lines_and_json_shape() {
    let mut counts = stats::Window::default();
    for _ in 0..1000 {
        counts.record(100, Some(Duration::from_micros(800)));
    }
    let mut latencies = stats::Latencies::default();
    latencies.record(Duration::from_micros(800));
    let report = Report {
        mode: "produce",
        transport: "kafka-tcp",
        topic: "t".into(),
        records: counts.records,
        bytes: counts.bytes,
        errors: 0,
        first_error: None,
        elapsed_s: 0.5,
        records_per_sec: 2000.0,
        mb_per_sec: 200_000.0 / stats::MB,
        latency_ms: latencies.summary(),
        fsync: FsyncMode::Rafka {
            topic: Some("never".into()),
            broker: Some("always".into()),
        },
        cpu: cpu::CpuReport {
            client_s: Some(0.25),
            client_s_per_million: Some(250.0),
            broker_s: None,
            broker_s_per_million: None,
        },
        config: serde_json::json!({"acks": "all"}),
        notes: vec!["a note".into()],
    };
    let text = report.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("1000 records sent, 2000.0 records/sec (0.19 MB/sec) in 0.500 s, "),
        "{text}"
    );
    assert!(lines[0].ends_with("ms 99.9th."), "{text}");
    assert_eq!(
        lines[1],
        "transport: kafka-tcp, fsync: never (topic), always (broker)"
    );
    assert_eq!(
        lines[2],
        "cpu: client 0.25 s (250.000 s per million records)"
    );
    assert_eq!(lines[3], "note: a note");

    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    for key in [
        "mode",
        "transport",
        "topic",
        "records",
        "bytes",
        "errors",
        "first_error",
        "elapsed_s",
        "records_per_sec",
        "mb_per_sec",
        "latency_ms",
        "fsync",
        "cpu",
        "config",
        "notes",
    ] {
        assert!(keys.contains(&key), "{key} missing from {json}");
    }
    for key in ["count", "avg", "p50", "p95", "p99", "p999", "max"] {
        assert!(json["latency_ms"][key].is_number(), "latency_ms.{key}");
    }
    assert_eq!(json["latency_ms"]["p50"], 0.8);
    assert_eq!(json["fsync"]["kind"], "rafka");
    assert_eq!(json["cpu"]["broker_s"], serde_json::Value::Null);
    assert_eq!(json["records"], 1000);
}
