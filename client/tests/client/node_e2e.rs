//! The library and the CLI against a real `rafka-node` process, over Kafka TCP and the mesh.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::Node;
use rafka_client::admin::Admin;
use rafka_client::{
    Bootstrap, Client, ClientConfig, Consumer, ConsumerConfig, NewTopic, OffsetReset, Producer,
    ProducerConfig, ProducerRecord, TopicPartition,
};

async fn round_trip(bootstrap: Bootstrap) {
    let client = Client::connect(ClientConfig::new(bootstrap))
        .await
        .expect("connect");
    let admin = Admin::new(client.clone());
    admin
        .create_topic(NewTopic::new("e2e", 3))
        .await
        .expect("create");
    assert!(
        admin
            .list_topics()
            .await
            .unwrap()
            .iter()
            .any(|t| t.name == "e2e")
    );
    assert_eq!(
        admin
            .describe_topic("e2e")
            .await
            .unwrap()
            .topic
            .partitions
            .len(),
        3
    );

    let producer = Producer::new(client.clone(), ProducerConfig::default()).unwrap();
    let mut deliveries = Vec::new();
    for i in 0..1000 {
        let record =
            ProducerRecord::new("e2e", format!("value-{i}")).with_key(format!("k{}", i % 17));
        deliveries.push(producer.send(record).await.unwrap());
    }
    let mut per_partition = [0i64; 3];
    for d in deliveries {
        let md = d.await.expect("delivered");
        assert_eq!(
            md.offset, per_partition[md.partition as usize],
            "consecutive offsets"
        );
        per_partition[md.partition as usize] += 1;
    }
    producer.close().await;

    let config = ConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        ..Default::default()
    };
    let mut consumer = Consumer::new(client.clone(), config).unwrap();
    consumer
        .assign_topic("e2e", Duration::from_secs(10))
        .await
        .unwrap();
    let mut values = Vec::new();
    while values.len() < 1000 {
        let records = consumer.poll(Duration::from_secs(10)).await.unwrap();
        assert!(!records.is_empty(), "stalled at {}", values.len());
        values.extend(records.into_iter().map(|r| r.value.unwrap()));
    }
    values.sort();
    let mut expected: Vec<_> = (0..1000)
        .map(|i| bytes::Bytes::from(format!("value-{i}")))
        .collect();
    expected.sort();
    assert_eq!(values, expected);
    let tp = TopicPartition::new("e2e", 0);
    assert_eq!(consumer.position(&tp), Some(per_partition[0]));

    admin.delete_topic("e2e").await.expect("delete");
    client.shutdown().await;
}

/// Simple-consumer commits (generation -1) and the resume from them.
async fn group_offsets(bootstrap: Bootstrap) {
    let client = Client::connect(ClientConfig::new(bootstrap))
        .await
        .expect("connect");
    Admin::new(client.clone())
        .create_topic(NewTopic::new("offsets", 1))
        .await
        .expect("create");
    let producer = Producer::new(client.clone(), ProducerConfig::default()).unwrap();
    for i in 0..10 {
        producer
            .send(ProducerRecord::new("offsets", format!("{i}")))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    producer.close().await;
    let config = ConsumerConfig {
        group_id: Some("g1".into()),
        ..Default::default()
    };
    let mut consumer = Consumer::new(client.clone(), config.clone()).unwrap();
    let tp = TopicPartition::new("offsets", 0);
    consumer.assign([tp.clone()]);
    consumer
        .commit_offsets(&[(tp.clone(), 4)])
        .await
        .expect("commit");
    let committed = consumer.committed(std::slice::from_ref(&tp)).await.unwrap();
    assert_eq!(committed[&tp], Some(4));
    let mut resumed = Consumer::new(client.clone(), config).unwrap();
    resumed.assign([tp.clone()]);
    let records = resumed.poll(Duration::from_secs(10)).await.unwrap();
    assert_eq!(records.first().map(|r| r.offset), Some(4));
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_offsets_over_kafka_tcp() {
    let Some(node) = Node::start() else { return };
    group_offsets(Bootstrap::kafka(&node.kafka).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_offsets_over_the_mesh() {
    let Some(node) = Node::start() else { return };
    group_offsets(Bootstrap::parse(&node.p2p).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_round_trip_over_kafka_tcp() {
    let Some(node) = Node::start() else { return };
    round_trip(Bootstrap::kafka(&node.kafka).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_round_trip_over_the_mesh() {
    let Some(node) = Node::start() else { return };
    round_trip(Bootstrap::parse(&node.p2p).unwrap()).await;
}

pub(crate) fn rafka(bootstrap: &[&str], args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rafka"))
        .args(bootstrap)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rafka");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || input.write_all(&data));
    let out = child.wait_with_output().expect("rafka output");
    writer.join().unwrap().unwrap();
    out
}

fn cli_round_trip(bootstrap: &[&str]) {
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    ok(rafka(
        bootstrap,
        &["topic", "create", "cli", "--partitions", "1"],
        b"",
    ));
    let listed = ok(rafka(bootstrap, &["topic", "list"], b""));
    assert!(String::from_utf8_lossy(&listed).lines().any(|l| l == "cli"));

    // Arbitrary bytes per line: invalid UTF-8, NUL, CR, empty lines.
    let mut input = Vec::new();
    for i in 0..2000u32 {
        let mut line = format!("line {i} ").into_bytes();
        line.extend_from_slice(&[0xff, 0x00, 0xc3, b'\r', (i % 251) as u8 + 1]);
        line.retain(|&b| b != b'\n');
        input.extend_from_slice(&line);
        input.push(b'\n');
        if i % 100 == 0 {
            input.push(b'\n');
        }
    }
    let lines = input.iter().filter(|&&b| b == b'\n').count();
    ok(rafka(
        bootstrap,
        &["produce", "cli", "--compression", "lz4"],
        &input,
    ));
    let n = lines.to_string();
    let out = ok(rafka(
        bootstrap,
        &[
            "consume",
            "cli",
            "--from-beginning",
            "-n",
            &n,
            "--timeout-ms",
            "10000",
        ],
        b"",
    ));
    assert_eq!(out.len(), input.len());
    assert!(out == input, "consumed bytes differ from produced bytes");

    let failed = rafka(bootstrap, &["topic", "describe", "missing-topic"], b"");
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
}

#[test]
fn cli_round_trip_over_kafka_tcp() {
    let Some(node) = Node::start() else { return };
    cli_round_trip(&["--kafka", &node.kafka]);
}

#[test]
fn cli_round_trip_over_the_mesh() {
    let Some(node) = Node::start() else { return };
    cli_round_trip(&["--bootstrap", &node.p2p]);
}

fn kcat(args: &[&str], stdin: &[u8]) -> Option<std::process::Output> {
    let mut child = match Command::new("kcat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(_) => {
            eprintln!("SKIPPED: kcat is not installed");
            return None;
        }
    };
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || input.write_all(&data));
    let out = child.wait_with_output().expect("kcat output");
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "kcat: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(out)
}

/// Records produced by librdkafka (kcat, compressed) are read by the CLI, and the other way.
#[test]
fn interoperates_with_kcat() {
    let Some(node) = Node::start() else { return };
    let boot = ["--kafka", node.kafka.as_str()];
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let input: Vec<u8> = (0..500)
        .flat_map(|i| format!("kcat line {i} \u{e9}\n").into_bytes())
        .collect();
    ok(rafka(
        &boot,
        &["topic", "create", "from-kcat", "--partitions", "1"],
        b"",
    ));
    let b = format!("-b{}", node.kafka);
    if kcat(&[&b, "-P", "-t", "from-kcat", "-z", "snappy"], &input).is_none() {
        return;
    }
    let out = ok(rafka(
        &boot,
        &[
            "consume",
            "from-kcat",
            "--from-beginning",
            "-n",
            "500",
            "--timeout-ms",
            "10000",
        ],
        b"",
    ));
    assert!(
        out == input,
        "records written by kcat read back differently"
    );

    ok(rafka(
        &boot,
        &["topic", "create", "to-kcat", "--partitions", "1"],
        b"",
    ));
    ok(rafka(
        &boot,
        &["produce", "to-kcat", "--compression", "zstd"],
        &input,
    ));
    let out = kcat(
        &[
            &b,
            "-C",
            "-t",
            "to-kcat",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%s\\n",
        ],
        b"",
    )
    .unwrap();
    assert!(
        out.stdout == input,
        "records written by rafka read back differently by kcat"
    );
}
