//! Consumer groups with stock clients no one here wrote: confluent-kafka (librdkafka),
//! kafka-python and kcat `-G` subscribe with a `group.id` against `rafka-node` processes.
//!
//! - members of both Python clients split a 6-partition topic (two, then three), never owning a
//!   partition twice at once; a member that closes (LeaveGroup) or is SIGKILLed (after its
//!   session timeout) has its partitions taken over; per record, tagged with the member's
//!   generation, no partition is consumed by two members (nor a record twice) in one generation;
//! - a static member (`group.instance.id`) restarted within its session timeout gets its
//!   partitions back without a rebalance;
//! - librdkafka's cooperative-sticky assignor moves only what must move (incremental);
//! - `kcat -G` consumes as a group, and its committed offsets survive a node restart;
//! - three nodes, replication factor 3: SIGKILL of the group's coordinator while two members
//!   consume and commit; both go on, every record is consumed at least once, and no committed
//!   offset goes backwards (watched through OffsetFetch all along);
//! - three nodes, replication factor 3: a group emptied by LeaveGroup (raw requests) looks the
//!   same on the new coordinator after a SIGKILL, and its record says when it emptied.
//!
//! Members are `tests/python/group_member.py` processes printing one JSON event per line.
//! Each test skips with a message when its client is missing, and fails instead when
//! `RAFKA_REQUIRE_EXTERNAL_CLIENTS=1` (CI).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::{FindCoordinatorRequest, OffsetFetchRequest};
use kafka_protocol::protocol::StrBytes;
use serde_json::Value;

use crate::support::cluster::{ProcessCluster, create_topic, kafka_call};
use crate::support::process::NodeProcess;
use crate::support::run::{confluent_kafka_available, external_client, kcat_available, probe, run};
use crate::support::{wait_until, wait_until_blocking};

const PARTITIONS: i32 = 6;
/// Long enough for a rebalance with librdkafka's backoffs on a loaded 2-core machine.
const SETTLE: Duration = Duration::from_secs(60);
const SESSION_MS: &str = "6000";

pub(crate) fn kafka_python_available() -> bool {
    external_client(
        "python3 with kafka-python",
        probe("python3", &["-c", "import kafka"]),
    )
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/group_member.py")
}

/// One `group_member.py` process and the events it printed (with when they arrived).
pub(crate) struct Member {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    events: Arc<Mutex<Vec<(Instant, Value)>>>,
}

impl Member {
    pub(crate) fn start(
        name: &str,
        bootstrap: &str,
        group: &str,
        topic: &str,
        extra: &[&str],
    ) -> Member {
        let mut child = Command::new("python3")
            .arg(script())
            .args(["--bootstrap", bootstrap, "--group", group, "--topic", topic])
            .args(["--session-ms", SESSION_MS])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let label = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(event) = serde_json::from_str::<Value>(&line) else {
                    eprintln!("{label}: not JSON: {line}");
                    continue;
                };
                if event["event"] != "record" && event["event"] != "watched" {
                    eprintln!("{label}: {line}");
                }
                sink.lock().unwrap().push((Instant::now(), event));
            }
        });
        let stdin = child.stdin.take();
        Member {
            name: name.to_string(),
            child,
            stdin,
            events,
        }
    }

    fn events(&self) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }

    fn of_kind(&self, kind: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == kind)
            .collect()
    }

    /// The partitions its last assignment event left it with.
    pub(crate) fn assignment(&self) -> Vec<i32> {
        self.of_kind("assignment")
            .last()
            .map(|e| partitions(&e["partitions"]))
            .unwrap_or_default()
    }

    /// Every (partition, offset) it consumed.
    pub(crate) fn consumed(&self) -> BTreeSet<(i32, i64)> {
        self.of_kind("record")
            .iter()
            .map(|e| (as_i32(&e["partition"]), e["offset"].as_i64().unwrap()))
            .collect()
    }

    /// What it consumed, readable after it closed or was killed.
    fn consumption(&self) -> Consumption {
        Consumption {
            name: self.name.clone(),
            events: self.events.clone(),
        }
    }

    pub(crate) fn errors(&self) -> Vec<Value> {
        self.of_kind("error")
    }

    /// Asks it to close (a dynamic member sends LeaveGroup) and waits for it to exit.
    pub(crate) fn close(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"close\n");
        }
        let what = format!("{} to close", self.name);
        wait_until_blocking(SETTLE, &what, || self.child.try_wait().unwrap().is_some());
    }

    /// SIGKILL: no LeaveGroup, no last commit.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The records one member consumed (its events outlive the process).
struct Consumption {
    name: String,
    events: Arc<Mutex<Vec<(Instant, Value)>>>,
}

impl Consumption {
    /// Every record consumed, as (generation, partition, offset), in the order consumed.
    fn records(&self) -> Vec<(i64, i32, i64)> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| e)
            .filter(|e| e["event"] == "record")
            .map(|e| {
                (
                    e["generation"].as_i64().unwrap(),
                    as_i32(&e["partition"]),
                    e["offset"].as_i64().unwrap(),
                )
            })
            .collect()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn as_i32(v: &Value) -> i32 {
    i32::try_from(v.as_i64().unwrap()).unwrap()
}

fn partitions(v: &Value) -> Vec<i32> {
    v.as_array().unwrap().iter().map(as_i32).collect()
}

/// Waits until `members` own every partition exactly once between them, each at least one.
fn wait_for_split(members: &[&Member], what: &str) -> Vec<Vec<i32>> {
    wait_until_blocking(SETTLE, what, || {
        let owned: Vec<Vec<i32>> = members.iter().map(|m| m.assignment()).collect();
        let mut all: Vec<i32> = owned.iter().flatten().copied().collect();
        all.sort_unstable();
        let whole: Vec<i32> = (0..PARTITIONS).collect();
        if all == whole && owned.iter().all(|o| !o.is_empty()) {
            Ok(owned)
        } else {
            Err(format!("assignments {owned:?}"))
        }
    })
}

/// Per record, as the members reported them: no partition consumed by two members in one
/// generation, and no record consumed twice in one generation (redelivery comes only with a new
/// generation: what a member consumed but had not committed when it lost the partition). Every
/// record consumed by a member of the group (generation 1 or later). Returns how many
/// (generation, partition) pairs were seen.
fn assert_no_partition_consumed_twice_in_a_generation(members: &[Consumption]) -> usize {
    let mut consumers: BTreeMap<(i64, i32), BTreeSet<&str>> = BTreeMap::new();
    let mut seen: BTreeMap<(i64, i32, i64), &str> = BTreeMap::new();
    for m in members {
        for (generation, partition, offset) in m.records() {
            assert!(
                generation >= 1,
                "{} consumed {partition}@{offset} outside a generation ({generation})",
                m.name
            );
            consumers
                .entry((generation, partition))
                .or_default()
                .insert(&m.name);
            if let Some(first) = seen.insert((generation, partition, offset), &m.name) {
                panic!(
                    "{partition}@{offset} consumed twice in generation {generation}: by {first} and {}",
                    m.name
                );
            }
        }
    }
    let shared: Vec<_> = consumers.iter().filter(|(_, who)| who.len() > 1).collect();
    assert!(
        shared.is_empty(),
        "(generation, partition) consumed by two members: {shared:?}"
    );
    consumers.len()
}

/// Produces `count` records `tag-i` with kcat (keys spread them over the partitions).
fn produce(bootstrap: &str, topic: &str, tag: &str, count: usize) {
    let input: String = (0..count).map(|i| format!("{tag}{i}:v{i}\n")).collect();
    let mut command = Command::new("kcat");
    command.args(["-b", bootstrap, "-P", "-t", topic, "-K:", "-X", "acks=all"]);
    run(command, input.as_bytes(), SETTLE).ok();
}

fn wait_consumed(members: &[&Member], expected: &BTreeSet<(i32, i64)>, what: &str) {
    wait_until_blocking(SETTLE, what, || {
        let seen: BTreeSet<(i32, i64)> = members.iter().flat_map(|m| m.consumed()).collect();
        let missing = expected.difference(&seen).count();
        if missing == 0 {
            Ok(())
        } else {
            Err(format!("{missing} of {} not consumed yet", expected.len()))
        }
    });
}

/// Every offset below each partition's end, as `(partition, offset)`.
fn all_offsets(ends: &BTreeMap<i32, i64>) -> BTreeSet<(i32, i64)> {
    ends.iter()
        .flat_map(|(p, end)| (0..*end).map(move |o| (*p, o)))
        .collect()
}

/// Each partition's high watermark (ListOffsets "latest"), asked of every address given and
/// taken from the partition's leader; waits until every partition has one.
fn log_ends(addrs: &[std::net::SocketAddr], topic: &str) -> BTreeMap<i32, i64> {
    use kafka_protocol::messages::ListOffsetsRequest;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let request = ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(kafka_protocol::messages::TopicName(StrBytes::from_string(
                    topic.to_string(),
                )))
                .with_partitions(
                    (0..PARTITIONS)
                        .map(|p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(p)
                                .with_timestamp(-1)
                        })
                        .collect(),
                ),
        ]);
    wait_until_blocking(SETTLE, "every partition's log end", || {
        let mut ends = BTreeMap::new();
        for addr in addrs {
            let Ok(response) = kafka_call(*addr, &request, 7, Duration::from_secs(10)) else {
                continue;
            };
            for p in &response.topics[0].partitions {
                if p.error_code == 0 {
                    ends.insert(p.partition_index, p.offset);
                }
            }
        }
        if ends.len() == PARTITIONS as usize {
            Ok(ends)
        } else {
            Err(format!("ends of {ends:?} only"))
        }
    })
}

fn create(addr: std::net::SocketAddr, topic: &str) {
    let (code, message) = create_topic(addr, topic, PARTITIONS, Duration::from_secs(20)).unwrap();
    assert_eq!(code, 0, "create {topic}: {message:?}");
}

fn start_node(dir: &std::path::Path) -> NodeProcess {
    NodeProcess::start(dir, &["--group-initial-rebalance-delay-ms", "500"])
}

#[test]
fn process_stock_clients_split_a_topic_and_take_over_from_leavers() {
    if !confluent_kafka_available() || !kafka_python_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(&dir.path().join("node"));
    let bootstrap = node.ready.kafka.to_string();
    create(node.ready.kafka, "g-split");
    produce(&bootstrap, "g-split", "a", 300);

    let a = Member::start("a (confluent)", &bootstrap, "g-split", "g-split", &[]);
    wait_for_split(&[&a], "a alone owns every partition");
    let b = Member::start(
        "b (kafka-python)",
        &bootstrap,
        "g-split",
        "g-split",
        &["--client", "kafka-python"],
    );
    wait_for_split(&[&a, &b], "a and b split the partitions");
    let c = Member::start("c (confluent)", &bootstrap, "g-split", "g-split", &[]);
    let three = wait_for_split(&[&a, &b, &c], "a, b and c split the partitions");
    assert!(
        three.iter().all(|o| o.len() == 2),
        "range splits 6 as 2+2+2: {three:?}"
    );
    produce(&bootstrap, "g-split", "b", 300);
    let expected = all_offsets(&log_ends(&[node.ready.kafka], "g-split"));
    wait_consumed(&[&a, &b, &c], &expected, "every record consumed");

    let c_consumed = c.consumption();
    c.close();
    wait_for_split(&[&a, &b], "c left: a and b take its partitions");
    let killed = Instant::now();
    let b_consumed = b.consumption();
    b.kill();
    wait_for_split(
        &[&a],
        "b died: a takes everything after b's session timeout",
    );
    assert!(
        killed.elapsed() >= Duration::from_millis(5_000),
        "taken over after the 6 s session timeout, not before ({:?})",
        killed.elapsed()
    );
    produce(&bootstrap, "g-split", "c", 300);
    wait_until_blocking(
        SETTLE,
        "a consumes the new records of every partition",
        || {
            let seen = a.consumed();
            let ends = log_ends(&[node.ready.kafka], "g-split");
            let lacking: Vec<i32> = ends
                .iter()
                .filter(|(p, end)| !seen.contains(&(**p, **end - 1)))
                .map(|(p, _)| *p)
                .collect();
            if lacking.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "partitions without their last record at a: {lacking:?}"
                ))
            }
        },
    );
    assert!(a.errors().is_empty(), "a: {:?}", a.errors());
    let consumed = [a.consumption(), b_consumed, c_consumed];
    let generations: BTreeSet<i64> = consumed
        .iter()
        .flat_map(|m| m.records())
        .map(|r| r.0)
        .collect();
    assert!(
        generations.len() >= 3,
        "records consumed in generations {generations:?} only: the check below is to span the \
         joins, the leave and the takeover"
    );
    let pairs = assert_no_partition_consumed_twice_in_a_generation(&consumed);
    eprintln!(
        "per record: generations {generations:?}, {pairs} (generation, partition) pairs, each \
         consumed by one member"
    );
    a.close();
}

#[test]
fn process_static_member_restart_within_its_session_causes_no_rebalance() {
    if !confluent_kafka_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(&dir.path().join("node"));
    let bootstrap = node.ready.kafka.to_string();
    create(node.ready.kafka, "g-static");
    let session = ["--session-ms", "30000"];
    let static_member = |name: &str, instance: &str| {
        let mut args = vec!["--instance-id", instance];
        args.extend_from_slice(&session);
        Member::start(name, &bootstrap, "g-static", "g-static", &args)
    };
    let a = static_member("a (static)", "instance-a");
    let b = static_member("b (static)", "instance-b");
    let split = wait_for_split(&[&a, &b], "two static members split the partitions");
    let a_events = a.of_kind("assignment").len();

    b.kill();
    let b = static_member("b again", "instance-b");
    let back = wait_until_blocking(SETTLE, "b's restart gets its partitions back", || {
        let owned = b.assignment();
        if owned.is_empty() {
            Err("nothing assigned yet".to_string())
        } else {
            Ok(owned)
        }
    });
    assert_eq!(
        back, split[1],
        "the restarted static member gets its old partitions"
    );
    produce(&bootstrap, "g-static", "s", 200);
    let expected = all_offsets(&log_ends(&[node.ready.kafka], "g-static"));
    wait_consumed(&[&a, &b], &expected, "both consume the new records");
    assert_eq!(
        a.of_kind("assignment").len(),
        a_events,
        "a saw no rebalance: {:?}",
        a.of_kind("assignment")
    );
    assert_eq!(a.assignment(), split[0]);
    a.close();
    b.close();
}

#[test]
fn process_librdkafka_cooperative_sticky_rebalances_incrementally() {
    if !confluent_kafka_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(&dir.path().join("node"));
    let bootstrap = node.ready.kafka.to_string();
    create(node.ready.kafka, "g-coop");
    let coop = ["--assignor", "cooperative-sticky"];
    let a = Member::start("a (cooperative)", &bootstrap, "g-coop", "g-coop", &coop);
    wait_for_split(&[&a], "a owns every partition");
    let b = Member::start("b (cooperative)", &bootstrap, "g-coop", "g-coop", &coop);
    let split = wait_for_split(&[&a, &b], "a and b split the partitions");
    assert_eq!(split[0].len() + split[1].len(), 6);
    // a gave up only what moved to b, and never everything at once.
    let a_moves = a.of_kind("assignment");
    let revokes: Vec<&Value> = a_moves.iter().filter(|e| e["kind"] == "revoke").collect();
    assert!(!revokes.is_empty(), "a gave partitions up: {a_moves:?}");
    for revoke in &revokes {
        assert!(
            !partitions(&revoke["partitions"]).is_empty(),
            "an incremental revoke leaves a partitions: {a_moves:?}"
        );
    }
    let revoked: BTreeSet<i32> = revokes
        .iter()
        .flat_map(|e| partitions(&e["changed"]))
        .collect();
    let b_owns: BTreeSet<i32> = split[1].iter().copied().collect();
    assert_eq!(revoked, b_owns, "a revoked exactly what b got");
    produce(&bootstrap, "g-coop", "k", 200);
    let expected = all_offsets(&log_ends(&[node.ready.kafka], "g-coop"));
    wait_consumed(&[&a, &b], &expected, "both consume");
    a.close();
    b.close();
}

/// The committed offset of each partition of `topic` for `group`, from its coordinator.
fn committed(addr: std::net::SocketAddr, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    let request = OffsetFetchRequest::default()
        .with_group_id(kafka_protocol::messages::GroupId(StrBytes::from_string(
            group.to_string(),
        )))
        .with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(kafka_protocol::messages::TopicName(StrBytes::from_string(
                    topic.to_string(),
                )))
                .with_partition_indexes((0..PARTITIONS).collect()),
        ]));
    // Retriable while a coordinator loads its partition or moves.
    let response = wait_until_blocking(SETTLE, "the group's committed offsets", || {
        let coordinator = find_coordinator(addr, group);
        let response = kafka_call(coordinator, &request, 7, Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        match response.error_code {
            0 => Ok(response),
            code => Err(format!("OffsetFetch error {code}")),
        }
    });
    response.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect()
}

/// The Kafka address of `group`'s coordinator, as `addr` answers FindCoordinator.
fn find_coordinator(addr: std::net::SocketAddr, group: &str) -> std::net::SocketAddr {
    wait_until_blocking(SETTLE, "a coordinator for the group", || {
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(group.to_string()))
            .with_key_type(0);
        let response =
            kafka_call(addr, &request, 2, Duration::from_secs(10)).map_err(|e| e.to_string())?;
        if response.error_code != 0 {
            return Err(format!("error {}", response.error_code));
        }
        format!("{}:{}", response.host.as_str(), response.port)
            .parse::<std::net::SocketAddr>()
            .map_err(|e| e.to_string())
    })
}

#[test]
fn process_kcat_consumes_as_a_group_and_commits_survive_a_restart() {
    if !kcat_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let mut node = start_node(&data);
    let bootstrap = node.ready.kafka.to_string();
    create(node.ready.kafka, "g-kcat");
    produce(&bootstrap, "g-kcat", "k", 120);
    let kcat_group = |bootstrap: &str| {
        let mut command = Command::new("kcat");
        command
            .args(["-b", bootstrap, "-G", "g-kcat", "g-kcat", "-e", "-q"])
            .args(["-X", "auto.offset.reset=earliest", "-f", "%p %o\n"]);
        run(command, b"", SETTLE).ok()
    };
    let first = String::from_utf8(kcat_group(&bootstrap)).unwrap();
    let consumed: BTreeSet<(i32, i64)> = first
        .lines()
        .map(|l| {
            let (p, o) = l.split_once(' ').unwrap();
            (p.parse().unwrap(), o.parse().unwrap())
        })
        .collect();
    let ends = log_ends(&[node.ready.kafka], "g-kcat");
    assert_eq!(consumed, all_offsets(&ends), "kcat -G read everything once");
    let before = committed(node.ready.kafka, "g-kcat", "g-kcat");
    assert_eq!(before, ends, "kcat committed what it read");

    drop(node);
    node = NodeProcess::start_on(
        &data,
        &bootstrap,
        &["--group-initial-rebalance-delay-ms", "500"],
    );
    assert_eq!(
        committed(node.ready.kafka, "g-kcat", "g-kcat"),
        before,
        "commits survive the restart"
    );
    produce(&bootstrap, "g-kcat", "n", 12);
    let second = String::from_utf8(kcat_group(&bootstrap)).unwrap();
    assert_eq!(
        second.lines().count(),
        12,
        "only the new records, from the committed offsets: {second}"
    );
}

#[test]
fn process_three_nodes_coordinator_sigkill_members_go_on_and_commits_never_go_back() {
    if !confluent_kafka_available() || !kcat_available() {
        return;
    }
    let mut cluster = ProcessCluster::start(
        3,
        &[
            "--default-replication-factor",
            "3",
            "--min-insync-replicas",
            "2",
            "--group-initial-rebalance-delay-ms",
            "500",
        ],
    );
    let addrs: Vec<std::net::SocketAddr> = (0..3).map(|i| cluster.kafka(i)).collect();
    let bootstrap = addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    cluster.create_topic_on_all(SETTLE, "g-failover", PARTITIONS);
    cluster.wait_latest_feature_level(SETTLE);
    produce(&bootstrap, "g-failover", "x", 600);
    let fast_commits = ["--commit-interval-ms", "200"];
    let a = Member::start("a", &bootstrap, "g-failover", "g-failover", &fast_commits);
    let b = Member::start("b", &bootstrap, "g-failover", "g-failover", &fast_commits);
    wait_for_split(&[&a, &b], "a and b split the partitions");
    let watch = Member::start(
        "watcher",
        &bootstrap,
        "g-failover",
        "g-failover",
        &["--watch", "6"],
    );
    let expected = all_offsets(&log_ends(&addrs, "g-failover"));
    wait_consumed(&[&a, &b], &expected, "the first records consumed");
    wait_until_blocking(SETTLE, "the watcher sees commits", || {
        if watch
            .of_kind("watched")
            .iter()
            .any(|e| e["offsets"].as_object().is_some_and(|o| o.len() == 6))
        {
            Ok(())
        } else {
            Err("no full commit seen".to_string())
        }
    });

    let coordinator = find_coordinator(addrs[0], "g-failover");
    let victim = addrs.iter().position(|a| *a == coordinator).unwrap();
    eprintln!("killing node {victim}, the coordinator at {coordinator}");
    cluster.kill(victim);
    let survivors: Vec<std::net::SocketAddr> =
        (0..3).filter(|i| *i != victim).map(|i| addrs[i]).collect();
    let live = survivors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    produce(&live, "g-failover", "y", 600);
    let ends = log_ends(&survivors, "g-failover");
    let expected = all_offsets(&ends);
    wait_consumed(&[&a, &b], &expected, "every record consumed at least once");
    let moved = find_coordinator(survivors[0], "g-failover");
    assert_ne!(moved, coordinator, "a new coordinator");
    wait_until_blocking(
        SETTLE,
        "both members own partitions after the failover",
        || {
            let (x, y) = (a.assignment(), b.assignment());
            if !x.is_empty() && !y.is_empty() {
                Ok(())
            } else {
                Err(format!("a {x:?} b {y:?}"))
            }
        },
    );
    wait_until_blocking(SETTLE, "the commits reach the log ends", || {
        let now = committed(survivors[0], "g-failover", "g-failover");
        if now == ends {
            Ok(())
        } else {
            Err(format!("committed {now:?}, ends {ends:?}"))
        }
    });
    // No committed offset ever went backwards, as the watcher saw them all along.
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for event in watch.of_kind("watched") {
        for (p, offset) in event["offsets"].as_object().unwrap() {
            let offset = offset.as_i64().unwrap();
            let previous = last.insert(p.clone(), offset).unwrap_or(-1);
            assert!(
                offset >= previous,
                "partition {p}: committed offset went back from {previous} to {offset}"
            );
        }
    }
    watch.close();
    a.close();
    b.close();
}

/// A JoinGroup (v7) of `member` (empty for a first join) of a group with one "range" member.
fn member_join(group: &str, member: &str) -> kafka_protocol::messages::JoinGroupRequest {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::{GroupId, JoinGroupRequest};
    JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(StrBytes::from_string(member.to_string()))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(bytes::Bytes::from_static(b"subscription")),
        ])
}

/// DescribeGroups (v5) of `group` at `addr` once its coordinator has it loaded: (state,
/// protocol type, protocol, members).
fn described(addr: std::net::SocketAddr, group: &str) -> (String, String, String, usize) {
    use kafka_protocol::messages::{DescribeGroupsRequest, GroupId};
    let request = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]);
    wait_until_blocking(SETTLE, "the group described", || {
        let response = kafka_call(addr, &request, 5, SETTLE).map_err(|e| e.to_string())?;
        let g = &response.groups[0];
        match g.error_code {
            0 => Ok((
                g.group_state.to_string(),
                g.protocol_type.to_string(),
                g.protocol_data.to_string(),
                g.members.len(),
            )),
            code => Err(format!("error {code}")),
        }
    })
}

/// The last group metadata record of `group` in its `__consumer_offsets` partition, read from
/// that partition's leader at `addr` (up to its high watermark); `None` before it has one.
fn last_group_record(
    addr: std::net::SocketAddr,
    group: &str,
) -> Option<rafka_broker::group::records::GroupMetadata> {
    use kafka_protocol::records::RecordBatchDecoder;
    use rafka_broker::group::records::Record;
    let topic = crate::support::wire::Topic {
        name: rafka_broker::group::OFFSETS_TOPIC.to_string(),
        id: Default::default(),
    };
    let partition = rafka_broker::group::partition_for_group(group, 8);
    let mut last = None;
    let mut offset = 0;
    loop {
        let request = crate::support::wire::fetch_request(&topic, partition, offset, 12);
        let response = kafka_call(addr, &request, 12, SETTLE).unwrap();
        let data = crate::support::wire::only_partition(&response);
        assert_eq!(data.error_code, 0, "fetch of the offsets partition");
        let mut records = data.records.clone().unwrap_or_default();
        if records.is_empty() {
            break;
        }
        for record in RecordBatchDecoder::decode_all(&mut records)
            .unwrap()
            .into_iter()
            .flat_map(|set| set.records)
        {
            offset = record.offset + 1;
            let decoded = record
                .key
                .as_deref()
                .and_then(|key| Record::decode(key, record.value.as_deref()));
            if let Some(Record::Group { group: g, metadata }) = decoded
                && g == group
            {
                last = metadata;
            }
        }
        if offset >= data.high_watermark {
            break;
        }
    }
    last
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

/// Three nodes, replication factor 3: a group emptied by its last member's LeaveGroup, then its
/// coordinator SIGKILLed. The new coordinator describes the group as the old one did (Empty,
/// protocol type "consumer") with its committed offset, and the group record it replayed carries
/// when the group emptied: offsets retention counts from then on any coordinator (the core's
/// `an_empty_group_is_persisted_with_when_it_emptied_and_a_new_coordinator_counts_from_then`).
#[test]
fn process_three_nodes_an_empty_group_is_the_same_on_the_new_coordinator() {
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::{
        GroupId, LeaveGroupRequest, OffsetCommitRequest, SyncGroupRequest, TopicName,
    };
    const GROUP: &str = "g-emptied";
    const TOPIC: &str = "g-emptied";
    let mut cluster =
        ProcessCluster::replicated(TOPIC, 1, &["--group-initial-rebalance-delay-ms", "0"]);
    let addrs: Vec<std::net::SocketAddr> = (0..3).map(|i| cluster.kafka(i)).collect();
    let coordinator = find_coordinator(addrs[0], GROUP);
    let group_id = GroupId(StrBytes::from_static_str(GROUP));

    // One member joins (KIP-394's round trip), syncs, commits and leaves: the group is empty.
    let member_id = wait_until_blocking(SETTLE, "a member id", || {
        let response = kafka_call(coordinator, &member_join(GROUP, ""), 7, SETTLE)
            .map_err(|e| e.to_string())?;
        match response.error_code {
            79 => Ok(response.member_id),
            code => Err(format!("error {code}")),
        }
    });
    let joined = kafka_call(coordinator, &member_join(GROUP, &member_id), 7, SETTLE).unwrap();
    assert_eq!(joined.error_code, 0, "join");
    let sync = SyncGroupRequest::default()
        .with_group_id(group_id.clone())
        .with_generation_id(joined.generation_id)
        .with_member_id(member_id.clone())
        .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
        .with_protocol_name(joined.protocol_name.clone())
        .with_assignments(vec![
            SyncGroupRequestAssignment::default()
                .with_member_id(member_id.clone())
                .with_assignment(bytes::Bytes::from_static(b"assignment")),
        ]);
    assert_eq!(
        kafka_call(coordinator, &sync, 5, SETTLE)
            .unwrap()
            .error_code,
        0,
        "sync"
    );
    let commit = OffsetCommitRequest::default()
        .with_group_id(group_id.clone())
        .with_generation_id_or_member_epoch(joined.generation_id)
        .with_member_id(member_id.clone())
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(7),
                ]),
        ]);
    let committed_answer = kafka_call(coordinator, &commit, 8, SETTLE).unwrap();
    assert_eq!(
        committed_answer.topics[0].partitions[0].error_code, 0,
        "commit"
    );
    let leave = LeaveGroupRequest::default()
        .with_group_id(group_id)
        .with_members(vec![MemberIdentity::default().with_member_id(member_id)]);
    let left_from = now_ms();
    let left = kafka_call(coordinator, &leave, 3, SETTLE).unwrap();
    let left_by = now_ms();
    assert_eq!(left.error_code, 0, "leave");
    let before = described(coordinator, GROUP);
    assert_eq!(
        before,
        (
            "Empty".to_string(),
            "consumer".to_string(),
            String::new(),
            0
        )
    );
    // The LeaveGroup is answered at once and the empty group's record written after it, as in
    // Kafka: a failover before every replica has it would bring back the last generation.
    let emptied = joined.generation_id + 1;
    let emptied_record = |addr| {
        wait_until_blocking(SETTLE, "the empty group's record replicated", || {
            match last_group_record(addr, GROUP) {
                Some(record) if record.generation == emptied => Ok(record),
                other => Err(format!("last record {other:?}")),
            }
        })
    };
    emptied_record(coordinator);

    // The coordinator dies; another node takes the offsets partition over and replays it.
    let victim = addrs.iter().position(|a| *a == coordinator).unwrap();
    cluster.kill(victim);
    let survivor = addrs[(victim + 1) % 3];
    let moved = wait_until_blocking(SETTLE, "a new coordinator", || {
        let now = find_coordinator(survivor, GROUP);
        (now != coordinator).then_some(now)
    });
    assert_eq!(
        described(moved, GROUP),
        before,
        "the same group after the failover"
    );
    assert_eq!(
        committed(moved, GROUP, TOPIC).get(&0),
        Some(&7),
        "its offset"
    );
    // Readable there once the new leader's high watermark covers it again.
    let record = emptied_record(moved);
    assert!(record.members.is_empty(), "{record:?}");
    assert_eq!(record.protocol_type, "consumer");
    assert!(
        (left_from..=left_by).contains(&record.state_timestamp),
        "the record says when the group emptied ({} not within {left_from}..={left_by})",
        record.state_timestamp
    );
}

// ---------------------------------------------------------------------------------------------
// Benchmark (ignored; docs/benchmarks.md has the command): 1,000 groups of one member each.

/// (resident bytes, CPU seconds) of a process, from /proc.
fn usage(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which ends with ')'): utime and stime are the 12th and 13th.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (rss_kb * 1024, ticks / per_second)
}

/// A first JoinGroup of a member of `group` (no member id yet); its session lasts 5 minutes so
/// that on a loaded machine the members joined first do not expire before the last has joined.
fn bench_join(group: &str, member: StrBytes) -> kafka_protocol::messages::JoinGroupRequest {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::{GroupId, JoinGroupRequest};
    JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_session_timeout_ms(300_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(member)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(bytes::Bytes::from_static(b"subscription")),
        ])
}

/// Waits until every offsets partition (the default 8) is created and loaded: a first JoinGroup
/// of a group on each is retried, as clients do, while it answers COORDINATOR_LOAD_IN_PROGRESS,
/// COORDINATOR_NOT_AVAILABLE or NOT_COORDINATOR.
async fn wait_offsets_partitions_loaded(client: &mut crate::support::raw::RawClient) {
    const OFFSETS_PARTITIONS: i32 = 8;
    for partition in 0..OFFSETS_PARTITIONS {
        let group = (0..)
            .map(|i| format!("bench-{}-warmup-{i}", std::process::id()))
            .find(|g| rafka_broker::group::partition_for_group(g, OFFSETS_PARTITIONS) == partition)
            .unwrap();
        wait_until(SETTLE, "the offsets partitions loaded", async || {
            let response = client
                .send(&bench_join(&group, StrBytes::default()), 7)
                .await;
            match response.error_code {
                14..=16 => Err(format!("{group}: error {}", response.error_code)),
                _ => Ok(()),
            }
        })
        .await;
    }
}

/// One member of group `group` through JoinGroup (twice: KIP-394) and SyncGroup, over `client`;
/// returns its member id and generation.
async fn join_alone(client: &mut crate::support::raw::RawClient, group: &str) -> (String, i32) {
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::{GroupId, SyncGroupRequest};
    let group_id = GroupId(StrBytes::from_string(group.to_string()));
    let first = client
        .send(&bench_join(group, StrBytes::default()), 7)
        .await;
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    let joined = client
        .send(&bench_join(group, first.member_id.clone()), 7)
        .await;
    assert_eq!(joined.error_code, 0);
    let sync = SyncGroupRequest::default()
        .with_group_id(group_id)
        .with_generation_id(joined.generation_id)
        .with_member_id(joined.member_id.clone())
        .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
        .with_protocol_name(joined.protocol_name.clone())
        .with_assignments(vec![
            SyncGroupRequestAssignment::default()
                .with_member_id(joined.member_id.clone())
                .with_assignment(bytes::Bytes::from_static(b"assignment")),
        ]);
    let synced = client.send(&sync, 5).await;
    assert_eq!(synced.error_code, 0);
    (joined.member_id.to_string(), joined.generation_id)
}

#[test]
#[ignore = "benchmark: run by hand (docs/benchmarks.md)"]
fn bench_thousand_single_member_groups() {
    use kafka_protocol::messages::{GroupId, HeartbeatRequest};
    const GROUPS: usize = 1000;
    const CONNECTIONS: usize = 50;
    // The node measured: RAFKA_BENCH_KAFKA (its Kafka address) and RAFKA_BENCH_PID name a
    // running one (a release build, started with --group-initial-rebalance-delay-ms 0);
    // otherwise this build's rafka-node, started here.
    let dir = tempfile::tempdir().unwrap();
    let given = std::env::var("RAFKA_BENCH_KAFKA")
        .ok()
        .zip(std::env::var("RAFKA_BENCH_PID").ok());
    let mut own = None;
    let (addr, pid): (std::net::SocketAddr, u32) = match given {
        Some((kafka, pid)) => (kafka.parse().unwrap(), pid.parse().unwrap()),
        None => {
            let node = own.insert(NodeProcess::start(
                &dir.path().join("node"),
                &["--group-initial-rebalance-delay-ms", "0"],
            ));
            (node.ready.kafka, node.child.id())
        }
    };
    // The broker creates the offsets topic on the first FindCoordinator, as Kafka does.
    find_coordinator(addr, "bench-warmup");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // The offsets topic is loaded before anything is measured.
        let mut client = crate::support::raw::RawClient::connect(addr).await;
        wait_offsets_partitions_loaded(&mut client).await;
        let (rss_before, cpu_before) = usage(pid);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..CONNECTIONS {
            tasks.push(tokio::spawn(async move {
                let mut client = crate::support::raw::RawClient::connect(addr).await;
                let mut members = Vec::new();
                for g in (c..GROUPS).step_by(CONNECTIONS) {
                    // Names of this run only: the node may have served an earlier one.
                    let group = format!("bench-{}-group-{g}", std::process::id());
                    let (member, generation) = join_alone(&mut client, &group).await;
                    members.push((group, member, generation));
                }
                (client, members)
            }));
        }
        let mut joined = Vec::new();
        for task in tasks {
            joined.push(task.await.unwrap());
        }
        let join_time = started.elapsed();
        let (rss_joined, cpu_joined) = usage(pid);
        eprintln!(
            "BENCH {GROUPS} groups joined and synced in {join_time:?} over {CONNECTIONS} connections: \
             node CPU {:.2} s, RSS {:.1} MiB -> {:.1} MiB (+{:.1} KiB per group)",
            cpu_joined - cpu_before,
            rss_before as f64 / 1048576.0,
            rss_joined as f64 / 1048576.0,
            (rss_joined.saturating_sub(rss_before)) as f64 / 1024.0 / GROUPS as f64
        );
        // Steady state: every member heartbeats every 3 s (Kafka's default interval) for 30 s.
        let steady = Duration::from_secs(30);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (mut client, members) in joined {
            tasks.push(tokio::spawn(async move {
                let mut beats = 0u64;
                while started.elapsed() < steady {
                    let round = Instant::now();
                    for (group, member, generation) in &members {
                        let request = HeartbeatRequest::default()
                            .with_group_id(GroupId(StrBytes::from_string(group.clone())))
                            .with_generation_id(*generation)
                            .with_member_id(StrBytes::from_string(member.clone()));
                        let response = client.send(&request, 4).await;
                        assert_eq!(response.error_code, 0, "{group}");
                        beats += 1;
                    }
                    tokio::time::sleep(Duration::from_secs(3).saturating_sub(round.elapsed()))
                        .await;
                }
                beats
            }));
        }
        let mut beats = 0;
        for task in tasks {
            beats += task.await.unwrap();
        }
        let (rss_after, cpu_after) = usage(pid);
        eprintln!(
            "BENCH steady {steady:?}: {beats} heartbeats ({:.0}/s), node CPU {:.2} s ({:.1}% of one core), RSS {:.1} MiB",
            beats as f64 / started.elapsed().as_secs_f64(),
            cpu_after - cpu_joined,
            100.0 * (cpu_after - cpu_joined) / started.elapsed().as_secs_f64(),
            rss_after as f64 / 1048576.0
        );
    });
}
