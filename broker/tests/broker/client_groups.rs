//! Our client in consumer groups, against `rafka-node` processes:
//!
//! - `rafka consume --group` and a confluent-kafka member share one group and split a topic;
//! - three nodes, replication factor 3: two `rafka consume --group` processes over the mesh split
//!   a 6-partition topic and print every record once; `rafka group describe --json` shows their
//!   assignment, then their commits (lag 0 once they stopped); `reset-offsets` (dry run, to an
//!   offset, refused while a member is in the group), `list --json` and `delete`;
//! - Kafka's AdminClient group calls: confluent-kafka lists, describes and deletes groups, lists
//!   and alters committed offsets, kafka-python deletes some (OffsetDelete);
//! - a group whose last member left is still listed and described as a "consumer" group.
//!
//! The tests needing Python clients skip with a message without them, unless
//! `RAFKA_REQUIRE_EXTERNAL_CLIENTS=1` (CI).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::groups::{Member, kafka_python_available};
use crate::support::cluster::{ProcessCluster, create_topic, signal_pid};
use crate::support::process::NodeProcess;
use crate::support::run::{Running, confluent_kafka_available, rafka, run, spawn_to_file};
use crate::support::wait_until_blocking;

const PARTITIONS: i32 = 6;
const SETTLE: Duration = Duration::from_secs(60);
const FORMAT: &str = "%p %o %v\\n";

/// A `rafka consume --group` process (default session timeout) writing `partition offset value`
/// lines to a file.
struct CliMember {
    out: PathBuf,
    running: Option<Running>,
}

impl CliMember {
    fn start(dir: &Path, name: &str, bootstrap: &[&str], group: &str, topic: &str) -> CliMember {
        let out = dir.join(format!("{name}.out"));
        let mut args = bootstrap.to_vec();
        args.extend([
            "consume",
            topic,
            "--group",
            group,
            "--from-beginning",
            "--format",
            FORMAT,
        ]);
        let file = std::fs::File::create(&out).unwrap();
        CliMember {
            out,
            running: Some(spawn_to_file(rafka(&args), b"", file)),
        }
    }

    /// (partition, offset, value) of every complete line printed so far.
    fn printed(&self) -> Vec<(i32, i64, String)> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .filter_map(|l| {
                let mut f = l.trim_end().splitn(3, ' ');
                Some((
                    f.next()?.parse().ok()?,
                    f.next()?.parse().ok()?,
                    f.next()?.to_string(),
                ))
            })
            .collect()
    }

    /// SIGINT: the member commits what it printed, leaves the group and exits 0.
    fn stop(mut self) {
        let running = self.running.take().unwrap();
        signal_pid(running.pid(), libc::SIGINT);
        let output = running.wait(SETTLE * 2);
        assert!(
            output.status.success(),
            "consume failed: {}",
            output.stderr_text()
        );
    }
}

/// `rafka group ...` through `bootstrap`; its stdout, or its stderr as the error.
fn group_cli(bootstrap: &[&str], args: &[&str]) -> Result<String, String> {
    let all: Vec<&str> = bootstrap
        .iter()
        .copied()
        .chain(["group"])
        .chain(args.iter().copied())
        .collect();
    let out = run(rafka(&all), b"", SETTLE);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(out.stderr_text())
    }
}

/// `rafka group describe GROUP --json`, parsed.
fn try_describe(bootstrap: &[&str], group: &str) -> Result<Value, String> {
    let text = group_cli(bootstrap, &["describe", group, "--json"])?;
    serde_json::from_str(&text).map_err(|e| format!("describe --json: {e}: {text}"))
}

fn describe(bootstrap: &[&str], group: &str) -> Value {
    try_describe(bootstrap, group).unwrap()
}

/// The members' assignments (partition numbers) in a `describe --json` document.
fn assignments(doc: &Value) -> Vec<Vec<i32>> {
    doc["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let mut ps: Vec<i32> = m["assignment"]
                .as_array()
                .unwrap()
                .iter()
                .map(|tp| {
                    tp.as_str()
                        .unwrap()
                        .rsplit('-')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap()
                })
                .collect();
            ps.sort_unstable();
            ps
        })
        .collect()
}

/// Per partition (committed, log end, lag) in a `describe --json` document.
fn offsets(doc: &Value) -> BTreeMap<i64, (Value, Value, Value)> {
    doc["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["partition"].as_i64().unwrap(),
                (
                    p["committed"].clone(),
                    p["log_end"].clone(),
                    p["lag"].clone(),
                ),
            )
        })
        .collect()
}

fn produce_cli(bootstrap: &[&str], topic: &str, tag: &str, count: usize) {
    let input: String = (0..count).map(|i| format!("{tag}{i}:{tag}{i}\n")).collect();
    let mut args = bootstrap.to_vec();
    args.extend(["produce", topic, "--key-separator", ":"]);
    run(rafka(&args), input.as_bytes(), SETTLE).ok();
}

#[test]
fn process_cli_members_split_a_topic_over_the_mesh_and_the_group_commands_see_them() {
    let topic = "cli-split";
    let cluster = ProcessCluster::replicated(
        topic,
        PARTITIONS,
        &["--group-initial-rebalance-delay-ms", "0"],
    );
    let tmp = tempfile::tempdir().unwrap();
    let p2p: Vec<String> = (0..3).map(|i| cluster.node(i).ready.p2p.clone()).collect();
    let via = ["--bootstrap", p2p[2].as_str()];
    let a = CliMember::start(tmp.path(), "a", &["--bootstrap", &p2p[0]], "cli-g", topic);
    let b = CliMember::start(tmp.path(), "b", &["--bootstrap", &p2p[1]], "cli-g", topic);
    let split = wait_until_blocking(SETTLE, "a and b to split the partitions 3 and 3", || {
        let doc = try_describe(&via, "cli-g")?;
        let owned = assignments(&doc);
        let all: BTreeSet<i32> = owned.iter().flatten().copied().collect();
        if doc["state"] == "Stable"
            && owned.len() == 2
            && all.len() == 6
            && owned.iter().all(|o| o.len() == 3)
        {
            Ok(owned)
        } else {
            Err(format!("{doc}"))
        }
    });

    const RECORDS: usize = 3_000;
    produce_cli(&via, topic, "r", RECORDS);
    wait_until_blocking(SETTLE, "every record printed", || {
        let n: BTreeSet<String> = a
            .printed()
            .into_iter()
            .chain(b.printed())
            .map(|r| r.2)
            .collect();
        if n.len() == RECORDS {
            Ok(())
        } else {
            Err(format!("{} of {RECORDS}", n.len()))
        }
    });
    // One generation: each record printed once, each member only from its own partitions.
    let (pa, pb) = (a.printed(), b.printed());
    assert_eq!(pa.len() + pb.len(), RECORDS, "a record was printed twice");
    let parts = |p: &[(i32, i64, String)]| p.iter().map(|r| r.0).collect::<BTreeSet<i32>>();
    assert!(
        parts(&pa).is_disjoint(&parts(&pb)),
        "{:?} and {:?}",
        parts(&pa),
        parts(&pb)
    );
    assert!(
        split
            .iter()
            .any(|s| parts(&pa).iter().all(|p| s.contains(p)))
    );

    // Stopped, the members have committed everything they printed.
    a.stop();
    b.stop();
    let doc = describe(&via, "cli-g");
    assert_eq!(doc["state"], "Empty", "{doc}");
    let committed = offsets(&doc);
    assert_eq!(committed.len(), PARTITIONS as usize, "{doc}");
    for (p, (c, end, lag)) in &committed {
        assert_eq!((c, lag), (end, &Value::from(0)), "partition {p}: {doc}");
    }

    // Reset: a dry run commits nothing; to an offset commits it (clamped into each log).
    let dry = group_cli(
        &via,
        &[
            "reset-offsets",
            "cli-g",
            "--topic",
            topic,
            "--to-earliest",
            "--dry-run",
        ],
    )
    .unwrap();
    assert!(dry.contains("dry run"), "{dry}");
    assert_eq!(
        offsets(&describe(&via, "cli-g")),
        committed,
        "a dry run changes nothing"
    );
    group_cli(
        &via,
        &[
            "reset-offsets",
            "cli-g",
            "--topic",
            topic,
            "--to-offset",
            "5",
        ],
    )
    .unwrap();
    for (p, (c, end, lag)) in offsets(&describe(&via, "cli-g")) {
        let end = end.as_i64().unwrap();
        assert_eq!(c.as_i64(), Some(5.min(end)), "partition {p}");
        assert_eq!(lag.as_i64(), Some(end - 5.min(end)), "partition {p}");
    }
    let later = group_cli(
        &via,
        &[
            "reset-offsets",
            "cli-g",
            "--topic",
            topic,
            "--to-datetime",
            "2100-01-01T00:00:00Z",
            "--dry-run",
        ],
    )
    .unwrap();
    for (p, (_, end, _)) in &committed {
        assert!(
            later
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()
                    == [topic, &p.to_string(), &end.to_string()]),
            "{later}"
        );
    }
    // Not while a member is in the group: it would overwrite the reset.
    let c = CliMember::start(tmp.path(), "c", &["--bootstrap", &p2p[0]], "cli-g", topic);
    wait_until_blocking(SETTLE, "c to join", || {
        let doc = try_describe(&via, "cli-g")?;
        if doc["state"] == "Stable" && assignments(&doc) == [(0..PARTITIONS).collect::<Vec<_>>()] {
            Ok(())
        } else {
            Err(format!("{doc}"))
        }
    });
    let refused = group_cli(
        &via,
        &["reset-offsets", "cli-g", "--topic", topic, "--to-latest"],
    )
    .unwrap_err();
    assert!(refused.contains("member"), "{refused}");
    let listed = listed(&via, "cli-g");
    assert_eq!(
        (&listed["state"], &listed["protocol_type"]),
        (&Value::from("Stable"), &Value::from("consumer")),
        "{listed}"
    );
    c.stop();

    group_cli(&via, &["delete", "cli-g"]).unwrap();
    let list = group_cli(&via, &["list", "--json"]).unwrap();
    assert!(!list.contains("\"cli-g\""), "{list}");
}

/// `group`'s entry in `rafka group list --json` (exactly one).
fn listed(bootstrap: &[&str], group: &str) -> Value {
    let list: Value =
        serde_json::from_str(&group_cli(bootstrap, &["list", "--json"]).unwrap()).unwrap();
    let found: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["group"] == group)
        .collect();
    assert_eq!(found.len(), 1, "{list}");
    found[0].clone()
}

/// Kafka keeps the protocol type of a group whose last member left: ListGroups and DescribeGroups
/// still answer "consumer" for it (and Kafka's offsets retention of empty groups goes by it).
#[test]
fn process_an_emptied_consumer_group_keeps_its_protocol_type() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(&dir.path().join("node"));
    let kafka = node.ready.kafka.to_string();
    let (code, message) =
        create_topic(node.ready.kafka, "emptied", 1, Duration::from_secs(20)).unwrap();
    assert_eq!(code, 0, "{message:?}");
    let via = ["--kafka", kafka.as_str()];
    produce_cli(&via, "emptied", "e", 3);
    let consume = [
        "--kafka",
        &kafka,
        "consume",
        "emptied",
        "--group",
        "emptied-g",
        "--from-beginning",
        "-n",
        "3",
    ];
    run(rafka(&consume), b"", SETTLE).ok();
    let doc = describe(&via, "emptied-g");
    assert_eq!(
        (&doc["state"], &doc["protocol_type"]),
        (&Value::from("Empty"), &Value::from("consumer")),
        "{doc}"
    );
    assert_eq!(listed(&via, "emptied-g")["protocol_type"], "consumer");
}

fn start_node(dir: &Path) -> NodeProcess {
    NodeProcess::start(dir, &["--group-initial-rebalance-delay-ms", "500"])
}

#[test]
fn process_cli_member_and_confluent_kafka_share_a_group() {
    if !confluent_kafka_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(&dir.path().join("node"));
    let kafka = node.ready.kafka.to_string();
    let topic = "mixed";
    let (code, message) =
        create_topic(node.ready.kafka, topic, PARTITIONS, Duration::from_secs(20)).unwrap();
    assert_eq!(code, 0, "{message:?}");
    let py = Member::start(
        "confluent",
        &kafka,
        "mixed-g",
        topic,
        &["--assignor", "range"],
    );
    let ours = CliMember::start(
        dir.path(),
        "rafka",
        &["--bootstrap", &node.ready.p2p],
        "mixed-g",
        topic,
    );
    let via = ["--kafka", kafka.as_str()];
    wait_until_blocking(SETTLE, "the two members to split the partitions", || {
        let doc = try_describe(&via, "mixed-g")?;
        let owned = assignments(&doc);
        let theirs: BTreeSet<i32> = py.assignment().into_iter().collect();
        if doc["state"] == "Stable"
            && owned.len() == 2
            && owned.iter().all(|o| o.len() == 3)
            && theirs.len() == 3
        {
            Ok(())
        } else {
            Err(format!("{doc}; confluent holds {theirs:?}"))
        }
    });
    produce_cli(&via, topic, "m", 600);
    wait_until_blocking(SETTLE, "every record consumed by one of them", || {
        let n = ours.printed().len() + py.consumed().len();
        if n >= 600 {
            Ok(())
        } else {
            Err(format!("{n} of 600"))
        }
    });
    let printed = ours.printed();
    let mine: BTreeSet<(i32, i64)> = printed.iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(
        mine.len(),
        printed.len(),
        "our member printed a record twice"
    );
    let theirs = py.consumed();
    assert_eq!(
        mine.len() + theirs.len(),
        600,
        "a record was consumed twice"
    );
    assert!(mine.is_disjoint(&theirs));
    let my_parts: BTreeSet<i32> = mine.iter().map(|r| r.0).collect();
    let their_parts: BTreeSet<i32> = theirs.iter().map(|r| r.0).collect();
    assert!(
        my_parts.is_disjoint(&their_parts),
        "{my_parts:?} {their_parts:?}"
    );
    assert!(py.errors().is_empty(), "{:?}", py.errors());
    ours.stop();
    py.close();
}

fn admin_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/admin_groups.py")
}

#[test]
fn process_kafka_admin_clients_manage_groups_and_their_offsets() {
    if !confluent_kafka_available() || !kafka_python_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(&dir.path().join("node"));
    let kafka = node.ready.kafka.to_string();
    let (topic, group) = ("adm", "adm-g");
    let (code, message) =
        create_topic(node.ready.kafka, topic, 3, Duration::from_secs(20)).unwrap();
    assert_eq!(code, 0, "{message:?}");
    let via = ["--kafka", kafka.as_str()];
    produce_cli(&via, topic, "x", 90);
    // A consumer group with commits: our CLI reads everything and exits.
    let args = [
        "--kafka",
        &kafka,
        "consume",
        topic,
        "--group",
        group,
        "--from-beginning",
        "-n",
        "90",
    ];
    run(rafka(&args), b"", SETTLE).ok();
    let ends: BTreeMap<i64, Value> = offsets(&describe(&via, group))
        .into_iter()
        .map(|(p, (_, end, _))| (p, end))
        .collect();

    let steps = [
        "list",
        "describe",
        "offsets",
        "alter:0=1",
        "offsets",
        "delete-offsets:1",
        "offsets",
        "delete",
        "list",
    ];
    let mut command = Command::new("python3");
    command
        .arg(admin_script())
        .args([
            "--bootstrap",
            &kafka,
            "--group",
            group,
            "--topic",
            topic,
            "--partitions",
            "3",
        ])
        .args(steps);
    let out = String::from_utf8(run(command, b"", SETTLE).ok()).unwrap();
    let results: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), steps.len(), "{out}");
    for r in &results {
        assert!(r.get("error").is_none(), "{r}");
    }
    assert_eq!(results[0]["groups"][group], "EMPTY", "{}", results[0]);
    assert_eq!(
        (&results[1]["state"], &results[1]["members"]),
        (&Value::from("EMPTY"), &Value::from(0))
    );
    let at = |i: usize, p: i64| results[i]["offsets"][p.to_string()].clone();
    for p in 0..3 {
        assert_eq!(at(2, p), ends[&p], "committed = log end for partition {p}");
    }
    assert_eq!(at(4, 0), Value::from(1), "altered");
    assert_eq!(at(4, 1), ends[&1]);
    assert_eq!(
        at(6, 1),
        Value::from(-1001),
        "deleted (librdkafka's OFFSET_INVALID)"
    );
    assert_eq!(at(6, 2), ends[&2]);
    assert!(
        results[8]["groups"].get(group).is_none(),
        "deleted: {}",
        results[8]
    );
}
