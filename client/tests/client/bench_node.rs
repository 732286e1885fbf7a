//! `rafka bench` against a `rafka-node` process, over Kafka TCP and over the mesh: a short run
//! of each benchmark (produce, consume, e2e), with its JSON report and progress lines checked.

use std::process::Command;

use crate::support::Node;
use serde_json::Value;

/// Runs `rafka <bootstrap> bench <args> --json`; returns the report and the progress lines.
fn bench(bootstrap: &[&str], args: &[&str]) -> (Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rafka"))
        .args(bootstrap)
        .arg("bench")
        .args(args)
        .args(["--json", "--report-interval", "0.05"])
        .output()
        .expect("run rafka bench");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "rafka bench {args:?}: {stderr}");
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (report, stderr)
}

fn check_common(report: &Value, mode: &str, records: u64, transport: &str) {
    assert_eq!(report["mode"], mode, "{report}");
    assert_eq!(report["records"], records, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["transport"], transport, "{report}");
    // A Rafka node answers DescribeConfigs with its fsync policy (the default: always).
    assert_eq!(report["fsync"]["kind"], "rafka", "{report}");
    assert_eq!(report["fsync"]["broker"], "always", "{report}");
    assert!(report["records_per_sec"].as_f64().unwrap() > 0.0);
    assert!(report["cpu"]["client_s"].is_number(), "{report}");
    assert!(report["cpu"]["broker_s"].is_number(), "{report}");
}

fn all_three(bootstrap: &[&str], node: &Node, transport: &str) {
    let pid = node.pid().to_string();
    let (produced, progress) = bench(
        bootstrap,
        &[
            "produce",
            "--topic",
            "bench",
            "--records",
            "30000",
            "--record-size",
            "100",
            "--partitions",
            "3",
            "--broker-pid",
            &pid,
        ],
    );
    check_common(&produced, "produce", 30000, transport);
    assert_eq!(produced["bytes"], 3_000_000);
    assert_eq!(produced["config"]["partitions"], 3);
    assert_eq!(produced["config"]["acks"], "all");
    let latency = &produced["latency_ms"];
    assert_eq!(latency["count"], 30000);
    assert!(latency["p50"].as_f64().unwrap() <= latency["p99"].as_f64().unwrap());
    if !progress.is_empty() {
        assert!(
            progress.lines().all(|l| l.contains(" records sent, ")),
            "{progress}"
        );
    }

    let (consumed, _) = bench(
        bootstrap,
        &[
            "consume",
            "--topic",
            "bench",
            "--records",
            "30000",
            "--consumers",
            "2",
            "--broker-pid",
            &pid,
        ],
    );
    check_common(&consumed, "consume", 30000, transport);
    assert_eq!(consumed["bytes"], 3_000_000);
    assert!(consumed["latency_ms"].is_null());

    let (e2e, _) = bench(
        bootstrap,
        &[
            "e2e",
            "--records",
            "200",
            "--record-size",
            "50",
            "--max-wait-ms",
            "100",
            "--warmup",
            "5",
            "--broker-pid",
            &pid,
        ],
    );
    check_common(&e2e, "e2e", 200, transport);
    assert_eq!(e2e["latency_ms"]["count"], 200);
    assert!(e2e["latency_ms"]["max"].as_f64().unwrap() < 10_000.0);
}

#[test]
fn bench_over_kafka_tcp() {
    let Some(node) = Node::start() else { return };
    all_three(&["--kafka", &node.kafka], &node, "kafka-tcp");
}

#[test]
fn bench_over_the_mesh() {
    let Some(node) = Node::start() else { return };
    all_three(&["--bootstrap", &node.p2p], &node, "mesh");
}
