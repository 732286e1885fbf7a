//! The `rafka` binary over real Kafka TCP framing, against the in-memory broker served on a
//! loopback port (no rafka-node needed).

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use rafka_client::testing::FakeBroker;

struct Served {
    broker: FakeBroker,
    addr: String,
    _runtime: tokio::runtime::Runtime,
}

fn serve() -> Served {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let broker = FakeBroker::new();
    let addr = runtime
        .block_on(broker.serve_tcp("127.0.0.1:0"))
        .unwrap()
        .to_string();
    Served {
        broker,
        addr,
        _runtime: runtime,
    }
}

fn rafka(addr: &str, args: &[&str], stdin: Vec<u8>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rafka"))
        .args(["--kafka", addr])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || input.write_all(&stdin));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out
}

fn ok(out: Output) -> Vec<u8> {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn binary_lines(n: u32) -> Vec<u8> {
    let mut input = Vec::new();
    for i in 0..n {
        let mut line = format!("{i}:").into_bytes();
        line.extend_from_slice(&[0xff, 0x00, b'\r', (i % 256) as u8, 0xc3]);
        line.retain(|&b| b != b'\n');
        input.extend_from_slice(&line);
        input.push(b'\n');
        if i % 97 == 0 {
            input.push(b'\n'); // empty records too
        }
    }
    input
}

#[test]
fn produce_then_consume_is_byte_identical() {
    let s = serve();
    ok(rafka(
        &s.addr,
        &["topic", "create", "t", "--partitions", "3"],
        vec![],
    ));
    let input = binary_lines(20_000);
    let lines = input.iter().filter(|&&b| b == b'\n').count().to_string();
    ok(rafka(
        &s.addr,
        &["produce", "t", "--partition", "1", "--compression", "gzip"],
        input.clone(),
    ));
    assert_eq!(s.broker.log_end("t", 1).to_string(), lines);
    let out = ok(rafka(
        &s.addr,
        &[
            "consume",
            "t",
            "--partition",
            "1",
            "--from-beginning",
            "-n",
            &lines,
            "--timeout-ms",
            "5000",
        ],
        vec![],
    ));
    assert!(
        out == input,
        "consumed {} bytes, produced {}",
        out.len(),
        input.len()
    );
}

/// Keys, formats and a start offset. (Resuming from a group's commits is tested against a real
/// node, `group_node::cli_member_commits_what_it_printed_and_resumes_after_it`: this broker has
/// no group coordinator.)
#[test]
fn keys_formats_and_offsets() {
    let s = serve();
    s.broker.create_topic("k", 1);
    ok(rafka(
        &s.addr,
        &["produce", "k", "--key-separator", "\t"],
        b"a\t1\nb\t2\nnokey\n".to_vec(),
    ));
    let args = [
        "consume",
        "k",
        "--from-beginning",
        "-n",
        "2",
        "--timeout-ms",
        "5000",
        "--format",
        "%k=%v@%p/%o\\n",
    ];
    assert_eq!(ok(rafka(&s.addr, &args, vec![])), b"a=1@0/0\nb=2@0/1\n");
    let from = [
        "consume",
        "k",
        "--offset",
        "2",
        "-n",
        "1",
        "--timeout-ms",
        "5000",
    ];
    assert_eq!(ok(rafka(&s.addr, &from, vec![])), b"nokey\n");
}

#[test]
fn errors_are_one_line_and_nonzero() {
    let s = serve();
    let out = rafka(
        &s.addr,
        &["produce", "missing", "--max-block-ms", "200"],
        b"x\n".to_vec(),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("missing"), "{stderr}");
    let out = rafka("127.0.0.1:1", &["topic", "list"], vec![]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

/// Throughput of `rafka produce` (run with `--ignored --nocapture`, ideally in release).
#[test]
#[ignore]
fn produce_a_million_lines() {
    let s = serve();
    s.broker.create_topic("perf", 1);
    let input: Vec<u8> = (0..1_000_000u32)
        .flat_map(|i| format!("record number {i:08}\n").into_bytes())
        .collect();
    let started = Instant::now();
    ok(rafka(&s.addr, &["produce", "perf"], input));
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(s.broker.log_end("perf", 0), 1_000_000);
    println!(
        "produce: 1,000,000 records in {secs:.2} s: {:.0} records/s",
        1e6 / secs
    );
    let started = Instant::now();
    let args = ["consume", "perf", "--from-beginning", "-n", "1000000"];
    let out = ok(rafka(&s.addr, &args, vec![]));
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1_000_000);
    println!(
        "consume: 1,000,000 records in {secs:.2} s: {:.0} records/s",
        1e6 / secs
    );
}

/// Answers lost with the connection: the producer reconnects and retries with the same
/// sequence numbers, and the broker's de-duplication keeps every record exactly once.
#[test]
fn lost_answers_over_tcp_are_retried_exactly_once() {
    let s = serve();
    s.broker.create_topic("lost", 1);
    let input: Vec<u8> = (0..5000)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    // Drop the connection right after a produce request was applied, twice.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let broker = s.broker.clone();
    let addr = s.addr.clone();
    let delivered = runtime.block_on(async move {
        use rafka_client::{
            Bootstrap, Client, ClientConfig, Producer, ProducerConfig, ProducerRecord,
        };
        let client = Client::connect(ClientConfig::new(Bootstrap::kafka(&addr).unwrap()))
            .await
            .unwrap();
        let config = ProducerConfig {
            retry_backoff: std::time::Duration::from_millis(5),
            ..Default::default()
        };
        let producer = Producer::new(client, config).unwrap();
        producer
            .send(ProducerRecord::new("lost", "first"))
            .await
            .unwrap()
            .await
            .unwrap();
        broker.drop_answers(2);
        let mut deliveries = Vec::new();
        for line in input.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            deliveries.push(
                producer
                    .send(ProducerRecord::new("lost", line.to_vec()))
                    .await
                    .unwrap(),
            );
        }
        let mut offsets = Vec::new();
        for d in deliveries {
            offsets.push(d.await.unwrap().offset);
        }
        producer.close().await;
        offsets
    });
    assert_eq!(delivered, (1..=5000).collect::<Vec<i64>>());
    assert_eq!(s.broker.log_end("lost", 0), 5001, "no duplicates");
    let attempts = s.broker.produce_log().len();
    let stored = s.broker.batches("lost", 0).len();
    assert!(
        attempts > stored,
        "requests were retried ({attempts} attempts, {stored} batches)"
    );
}
