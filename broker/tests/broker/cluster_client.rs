//! The `rafka` CLI against a cluster of three `rafka-node` processes, reached through one node's
//! p2p address only (a mesh bootstrap):
//!
//! - keyed records produced to every partition of a 6-partition topic whose leaders are spread
//!   over the three nodes (so each request must go to its partition's leader over the mesh, by
//!   node id) and consumed back, every record checked;
//! - `rafka cluster` and `rafka cluster --json` list the three members with their node ids,
//!   alive, exactly one metadata leader and fresh heartbeats; over a Kafka bootstrap the brokers
//!   from Metadata are listed with a note;
//! - a node killed with SIGKILL shows up `dead` in `rafka cluster --json`.
//!
//! Uses the `rafka` binary of the workspace: `cargo build --workspace --bins` first.

use crate::support::wait_until_blocking;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::support::cluster::{ClusterView, ProcessCluster, partition_leaders};
use crate::support::run::{rafka, run};
use serde_json::Value;

const TOPIC: &str = "routed";
const PARTITIONS: usize = 6;
const RECORDS: usize = 3000;
/// Distinct keys: enough that murmur2 puts some on every partition.
const KEYS: usize = 120;
/// Generous bound for each step and each CLI run.
const STEP: Duration = Duration::from_secs(30);
/// A member that heartbeats every second was heard from within this.
const FRESH_HEARTBEAT_MS: u64 = 3000;
/// SIGKILL → `dead` in `rafka cluster` (the detector's bound is 5 s).
const DEAD_WITHIN: Duration = Duration::from_secs(15);

/// Runs `rafka --bootstrap <bootstrap> args...` and returns its stdout (it must succeed).
fn cli(bootstrap: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut all = vec!["--bootstrap", bootstrap];
    all.extend_from_slice(args);
    run(rafka(&all), stdin, STEP).ok()
}

/// `rafka cluster --json` through `bootstrap`, parsed.
fn cluster_json(bootstrap: &str) -> Value {
    let out = cli(bootstrap, &["cluster", "--json"], b"");
    serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "rafka cluster --json printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out)
        )
    })
}

fn members(doc: &Value) -> &[Value] {
    doc["members"].as_array().map_or(&[], Vec::as_slice)
}

/// The member with `peer_id` in a `rafka cluster --json` document.
fn member<'a>(doc: &'a Value, peer_id: &str) -> Option<&'a Value> {
    members(doc).iter().find(|m| m["peer_id"] == peer_id)
}

/// Every node alive in every node's `/cluster`, each with its own node id.
fn all_alive(n: usize) -> impl Fn(&ClusterView) -> bool {
    move |view| {
        let ids: BTreeSet<i64> = view.members.iter().filter_map(|m| m.node_id).collect();
        view.members.len() == n && view.count("alive") == n && ids.len() == n
    }
}

/// The records fed to `rafka produce --key-separator :`: key `k<i % KEYS>`, value `v<i>`.
fn input() -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..RECORDS {
        out.extend_from_slice(format!("k{}:v{i}\n", i % KEYS).as_bytes());
    }
    out
}

/// Checks what `consume --format '%p %o %k %v\n'` printed: every record exactly once, offsets
/// 0.. without gaps per partition, every key on one partition, and each partition in send
/// order. Returns the records per partition.
fn verify(output: &[u8]) -> BTreeMap<i32, usize> {
    let text = std::str::from_utf8(output).unwrap();
    let mut per_partition: BTreeMap<i32, Vec<(i64, usize)>> = BTreeMap::new();
    let mut key_partition: BTreeMap<String, i32> = BTreeMap::new();
    let mut seen = vec![false; RECORDS];
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let [p, o, k, v] = fields[..] else {
            panic!("unexpected line {line:?}")
        };
        let (p, o): (i32, i64) = (p.parse().unwrap(), o.parse().unwrap());
        let i: usize = v.strip_prefix('v').unwrap().parse().unwrap();
        assert!(i < RECORDS, "unknown record {line:?}");
        assert!(!seen[i], "record {i} read twice");
        seen[i] = true;
        assert_eq!(k, format!("k{}", i % KEYS), "key of record {i}");
        let first = *key_partition.entry(k.to_string()).or_insert(p);
        assert_eq!(first, p, "key {k} on partitions {first} and {p}");
        per_partition.entry(p).or_default().push((o, i));
    }
    let missing: Vec<usize> = (0..RECORDS).filter(|i| !seen[*i]).collect();
    assert!(missing.is_empty(), "records never read: {missing:?}");
    for (p, records) in &mut per_partition {
        records.sort_unstable();
        for (expected, (offset, _)) in records.iter().enumerate() {
            assert_eq!(
                *offset, expected as i64,
                "partition {p}: offsets have a gap"
            );
        }
        assert!(
            records.windows(2).all(|w| w[0].1 < w[1].1),
            "partition {p}: records out of send order"
        );
    }
    per_partition
        .into_iter()
        .map(|(p, r)| (p, r.len()))
        .collect()
}

/// Node ids by peer id, from the nodes' own `/cluster`.
fn identities(cluster: &ProcessCluster) -> BTreeMap<String, i64> {
    (0..3).map(|i| cluster.identity(i)).collect()
}

/// Waits until `rafka cluster --json` through `bootstrap` satisfies `check` (which says what is
/// still wrong, or `None`); returns that document.
fn wait_cluster_json(
    bootstrap: &str,
    timeout: Duration,
    check: impl Fn(&Value) -> Option<String>,
) -> Value {
    wait_until_blocking(timeout, "the expected rafka cluster --json", || {
        let doc = cluster_json(bootstrap);
        match check(&doc) {
            None => Ok(doc),
            Some(wrong) => Err(format!("{wrong}\n{doc:#}")),
        }
    })
}

/// What is wrong with a listing of three live members with the expected node ids, fresh
/// heartbeats, and exactly one metadata leader (named at the top too); `None` if nothing.
fn healthy(doc: &Value, ids: &BTreeMap<String, i64>) -> Option<String> {
    if doc["source"] != "mesh" || members(doc).len() != ids.len() {
        return Some("not the three members over the mesh".into());
    }
    for (peer, node) in ids {
        let Some(m) = member(doc, peer) else {
            return Some(format!("node {node} ({peer}) not listed"));
        };
        if m["node_id"].as_i64() != Some(*node) {
            return Some(format!("{peer} has node id {} not {node}", m["node_id"]));
        }
        if m["state"] != "alive" {
            return Some(format!("node {node} is {}", m["state"]));
        }
        let ago = m["last_heartbeat_ms_ago"].as_u64().unwrap_or(u64::MAX);
        if ago >= FRESH_HEARTBEAT_MS {
            return Some(format!("node {node} last heard {ago} ms ago"));
        }
    }
    let leaders: Vec<i64> = members(doc)
        .iter()
        .filter(|m| m["metadata_role"] == "leader")
        .filter_map(|m| m["node_id"].as_i64())
        .collect();
    if leaders.len() != 1 || doc["metadata_leader"].as_i64() != leaders.first().copied() {
        return Some(format!(
            "metadata leaders {leaders:?}, metadata_leader {}",
            doc["metadata_leader"]
        ));
    }
    None
}

#[test]
fn process_cli_over_the_mesh_routes_by_node_id_and_lists_members() {
    let started = Instant::now();
    let mut cluster = ProcessCluster::start(3, &[]);
    cluster.wait_all(STEP, "every member alive with a node id", all_alive(3));
    eprintln!("3 nodes alive everywhere after {:?}", started.elapsed());
    let ids = identities(&cluster);
    // The client reaches the cluster through node 1 only; node 2 is the one killed later.
    let bootstrap = cluster.node(1).ready.p2p.clone();

    // A 6-partition topic with its leaders on all three nodes.
    cli(
        &bootstrap,
        &["topic", "create", TOPIC, "--partitions", "6"],
        b"",
    );
    let kafka = cluster.kafka(0);
    wait_until_blocking(STEP, "every partition led", || {
        partition_leaders(kafka, TOPIC).is_ok_and(|p| {
            p.len() == PARTITIONS && p.iter().all(|&(_, e, leader)| e == 0 && leader >= 0)
        })
    });
    let leaders = partition_leaders(kafka, TOPIC).unwrap();
    let leader_nodes: BTreeSet<i32> = leaders.iter().map(|&(_, _, l)| l).collect();
    assert_eq!(leader_nodes.len(), 3, "leaders not spread: {leaders:?}");

    // Keyed records to every partition, through one node's mesh address, and back.
    let produced = Instant::now();
    cli(
        &bootstrap,
        &["produce", TOPIC, "--key-separator", ":"],
        &input(),
    );
    eprintln!("produced {RECORDS} records in {:?}", produced.elapsed());
    let n = RECORDS.to_string();
    let output = cli(
        &bootstrap,
        &[
            "consume",
            TOPIC,
            "--from-beginning",
            "-n",
            &n,
            "--timeout-ms",
            "20000",
            "--format",
            "%p %o %k %v\\n",
        ],
        b"",
    );
    let counts = verify(&output);
    assert_eq!(
        counts.len(),
        PARTITIONS,
        "partitions with records: {counts:?}"
    );
    eprintln!("read back {RECORDS} records: {counts:?}");

    // rafka cluster --json: three members, alive, fresh heartbeats, one metadata leader; each
    // member's endpoints are the ones it listens on and it leads at least its topic partitions.
    let doc = wait_cluster_json(&bootstrap, STEP, |doc| {
        healthy(doc, &ids).or_else(|| {
            members(doc).iter().find_map(|m| {
                let node = m["node_id"].as_i64()?;
                let led = leaders.iter().filter(|l| i64::from(l.2) == node).count();
                (m["partitions_led"].as_u64() < Some(led as u64))
                    .then(|| format!("node {node} leads {led}: {}", m["partitions_led"]))
            })
        })
    });
    assert_eq!(doc["responder"], cluster.identity(1).0);
    for i in 0..3 {
        let (peer, _) = cluster.identity(i);
        let m = member(&doc, &peer).unwrap();
        let ready = &cluster.node(i).ready;
        assert_eq!(m["kafka"], ready.kafka.to_string());
        let p2p = ready.p2p.split("/p2p/").next().unwrap();
        let data: Vec<&str> = m["data_addrs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(data.contains(&p2p), "{p2p} not in {data:?}");
        assert!(!m["control_addrs"].as_array().unwrap().is_empty());
    }

    // The table: a header, one row per member, a summary.
    let table = String::from_utf8(cli(&bootstrap, &["cluster"], b"")).unwrap();
    eprintln!("rafka cluster:\n{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NODE  STATE"), "{table}");
    let heartbeat = lines[0].find("HEARTBEAT").unwrap();
    for row in &lines[1..4] {
        assert!(row.contains(" alive "), "{table}");
        // Every row's heartbeat cell starts under the HEARTBEAT header.
        let cell = row.get(heartbeat..).unwrap_or_default();
        let aligned = row.get(heartbeat - 1..heartbeat) == Some(" ")
            && (cell.starts_with("self") || cell.starts_with(|c: char| c.is_ascii_digit()));
        assert!(aligned, "column not aligned: {table}");
    }
    assert!(
        table.contains("3 members (3 alive); metadata leader: node "),
        "{table}"
    );

    // Over Kafka TCP: the brokers from Metadata, with a note saying where the rest is.
    let mut command = rafka(&["--kafka", &kafka.to_string(), "cluster", "--json"]);
    command.env("RUST_LOG", "off");
    let out = run(command, b"", STEP);
    assert!(
        out.stderr_text().contains("--bootstrap"),
        "{}",
        out.stderr_text()
    );
    let doc: Value = serde_json::from_slice(&out.ok()).unwrap();
    assert_eq!(doc["source"], "kafka");
    assert!(doc["metadata_leader"].is_null(), "{doc:#}");
    let brokers: BTreeSet<i64> = members(&doc)
        .iter()
        .filter_map(|m| m["node_id"].as_i64())
        .collect();
    assert_eq!(brokers, ids.values().copied().collect());

    // SIGKILL node 2: rafka cluster shows it dead, the others still alive.
    let (killed, killed_id) = cluster.identity(2);
    let at = cluster.kill(2);
    let doc = wait_cluster_json(&bootstrap, DEAD_WITHIN, |doc| {
        let state = member(doc, &killed).map(|m| m["state"].clone());
        (state != Some(Value::from("dead"))).then(|| format!("node {killed_id} is {state:?}"))
    });
    eprintln!(
        "node {killed_id} dead in rafka cluster {:?} after SIGKILL",
        at.elapsed()
    );
    let alive = members(&doc)
        .iter()
        .filter(|m| m["state"] == "alive")
        .count();
    assert_eq!(alive, 2, "{doc:#}");
    let table = String::from_utf8(cli(&bootstrap, &["cluster"], b"")).unwrap();
    eprintln!("rafka cluster:\n{table}");
    assert!(table.contains("3 members (2 alive, 1 dead)"), "{table}");
}
