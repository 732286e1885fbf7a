//! The metadata quorum never strands itself (real `rafka-node` processes on loopback):
//!
//! - the story: a one-node cluster, a second node joins and leaves cleanly; topics can
//!   still be created and the first node's SIGTERM is quick;
//! - at the default log level each of those events is one line, without Raft state dumps;
//! - nodes added one at a time from 1 to 5 (`--voters 5`) and taken away one at a time back to 1
//!   with SIGTERM, the metadata leader among them: at every step the voters are the largest odd
//!   number not above the nodes present, a leaving voter handed its seat over before it exited,
//!   and a topic creation (a metadata write) succeeds;
//! - a voter dead (SIGKILL) longer than `--voter-replace-after-ms` gives its seat to the
//!   caught-up learner in one change, and metadata stays writable.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::cluster::{
    self, ClusterView, ProcessCluster, cluster_view, create_topic, spawn, wait_exit,
};
use crate::support::process::{NodeProcess, workspace_binary};
use crate::support::wait_until_blocking;

/// A node may take this long to print its ready line.
const READY: Duration = Duration::from_secs(60);
/// Bound for a membership change to show everywhere.
const SETTLE: Duration = Duration::from_secs(30);
/// A metadata write: the propose timeout is 10 s; a leader change may come first.
const WRITE: Duration = Duration::from_secs(25);
/// A clean shutdown of a node whose peers are alive (handover included).
const QUICK_EXIT: Duration = Duration::from_secs(10);

/// Nodes started one by one, each with its own data dir.
struct Nodes {
    root: tempfile::TempDir,
    binary: PathBuf,
    nodes: Vec<Option<NodeProcess>>,
    extra: Vec<String>,
}

impl Nodes {
    fn new(extra: &[&str]) -> Nodes {
        Nodes {
            root: tempfile::tempdir().unwrap(),
            binary: workspace_binary("rafka-node"),
            nodes: Vec::new(),
            extra: extra.iter().map(ToString::to_string).collect(),
        }
    }

    /// Starts one more node: the first forms the cluster, the others join through a live node.
    fn add(&mut self) -> usize {
        let i = self.nodes.len();
        let dir = self.root.path().join(format!("node{i}"));
        let mut args: Vec<String> = self.extra.clone();
        match self.running().first() {
            None => args.extend(["--bootstrap-expect".into(), "1".into()]),
            Some(&j) => args.extend(["--bootstrap".into(), self.node(j).ready.p2p.clone()]),
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let node = spawn(&self.binary, &dir, &args).wait_ready(READY);
        self.nodes.push(Some(node));
        i
    }

    fn node(&self, i: usize) -> &NodeProcess {
        self.nodes[i].as_ref().expect("node is down")
    }

    fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_some())
            .collect()
    }

    fn view(&self, i: usize) -> Option<ClusterView> {
        cluster_view(self.node(i).ready.http)
    }

    /// SIGTERM to node `i`; returns how long it took to exit (cleanly, or the test fails) and
    /// its log.
    fn stop(&mut self, i: usize) -> (Duration, String) {
        let mut node = self.nodes[i].take().expect("node is down");
        let started = Instant::now();
        cluster::signal(&node, libc::SIGTERM);
        let clean = wait_exit(&mut node);
        let took = started.elapsed();
        let log = node.log_text();
        assert!(clean, "node {i} did not exit cleanly:\n{log}");
        eprintln!("node {i} stopped in {took:?}");
        (took, log)
    }

    /// Every node's log (the last 60 lines each), for failure messages.
    fn logs(&self) -> String {
        let mut out = String::new();
        for i in 0..self.nodes.len() {
            let path = self.root.path().join(format!("node{i}.log"));
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- node {i} ---\n"));
            for line in &lines[lines.len().saturating_sub(400)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Index of the running node leading the metadata log.
    fn leader(&self) -> Option<usize> {
        self.running().into_iter().find(|&i| {
            self.view(i).is_some_and(|v| {
                v.metadata.get("role").and_then(serde_json::Value::as_str) == Some("leader")
            })
        })
    }

    /// Waits until every running node sees `voters` voters, one leader among the running nodes,
    /// and every running node as a member of the metadata log.
    fn wait_voters(&self, voters: usize) {
        let running = self.running();
        wait_until_blocking(SETTLE, &format!("{voters} voters on {running:?}"), || {
            let views: Vec<Option<ClusterView>> = running.iter().map(|&i| self.view(i)).collect();
            let settled = views.iter().all(|v| {
                v.as_ref().is_some_and(|v| {
                    v.voters() == voters
                        && v.voters() + v.learners() >= running.len()
                        && v.metadata
                            .get("joining_voters")
                            .is_none_or(serde_json::Value::is_null)
                })
            });
            if settled && self.leader().is_some() {
                Ok(())
            } else {
                Err(format!("{views:#?}"))
            }
        });
    }

    /// Creates topic `name` through node `i`; the metadata write must succeed.
    fn write(&self, i: usize, name: &str) {
        let started = Instant::now();
        let (code, message) = create_topic(self.node(i).ready.kafka, name, 1, WRITE).unwrap();
        assert_eq!(code, 0, "creating {name} through node {i}: {message:?}");
        eprintln!("created {name} through node {i} in {:?}", started.elapsed());
    }
}

#[test]
fn process_a_node_that_joins_and_leaves_a_one_node_cluster_strands_nothing() {
    let mut nodes = Nodes::new(&[]);
    let first = nodes.add();
    let second = nodes.add();
    // Two nodes: one voter; the second is a learner.
    nodes.wait_voters(1);
    let view = nodes.view(first).unwrap();
    assert_eq!(view.learners(), 1, "{view:#?}");
    nodes.write(first, "before-leave");

    let (took, _) = nodes.stop(second);
    assert!(took < QUICK_EXIT, "the learner took {took:?} to stop");
    nodes.write(first, "after-leave");

    let (took, _) = nodes.stop(first);
    assert!(
        took < QUICK_EXIT,
        "the remaining node took {took:?} to stop"
    );
}

#[test]
fn process_default_logs_say_each_event_once_without_state_dumps() {
    let root = tempfile::tempdir().unwrap();
    let binary = workspace_binary("rafka-node");
    let first = cluster::spawn_logging(
        &binary,
        &root.path().join("first"),
        &["--bootstrap-expect", "1"],
        None,
    )
    .wait_ready(READY);
    let mut second = cluster::spawn_logging(
        &binary,
        &root.path().join("second"),
        &["--bootstrap", &first.ready.p2p],
        None,
    )
    .wait_ready(READY);
    let (code, message) = create_topic(first.ready.kafka, "logged", 1, WRITE).unwrap();
    assert_eq!(code, 0, "{message:?}");
    // Ready means registered in the metadata log; the membership gossip may see the newcomer a
    // moment later. Its leave is only an event once its join was one.
    wait_until_blocking(SETTLE, "the join in the first node's log", || {
        first.log_text().contains("member joined")
    });
    cluster::signal(&second, libc::SIGTERM);
    assert!(wait_exit(&mut second), "{}", second.log_text());
    wait_until_blocking(SETTLE, "the departure in the first node's log", || {
        first.log_text().contains("member left")
    });
    let log = first.log_text();
    for event in [
        "formed a new cluster",
        "metadata leader elected",
        "member joined",
        "member left",
    ] {
        let lines = log.lines().filter(|l| l.contains(event)).count();
        assert!(lines >= 1, "no {event:?} line at the default level:\n{log}");
    }
    // One line per event: no Raft state dumps (openraft's INFO lines print whole metrics and
    // memberships), no library chatter, nothing kilobytes long.
    for line in log.lines() {
        assert!(
            !line.contains("openraft") && line.len() < 1000,
            "a library line or a dump at the default level: {line}"
        );
    }
    let second_log = second.log_text();
    assert!(
        second_log.contains("asked to join the cluster") && second_log.contains("stopped"),
        "{second_log}"
    );
}

#[test]
fn process_one_to_five_nodes_and_back_keeps_metadata_writable() {
    let mut nodes = Nodes::new(&["--voters", "5"]);
    let first = nodes.add();
    nodes.wait_voters(1);
    nodes.write(first, "grow-1");
    for n in 2..=5 {
        let added = nodes.add();
        nodes.wait_voters(odd(n));
        nodes.write(added, &format!("grow-{n}"));
    }
    let mut leader_left = false;
    for n in (1..5).rev() {
        // One step takes the metadata leader away (from 4 nodes to 3: three voters and a
        // learner, so its seat goes to the learner); the others a non-leader, preferring voters.
        let leader = nodes.leader().expect("a metadata leader");
        let victim = if n == 3 {
            leader_left = true;
            leader
        } else {
            voter_other_than(&nodes, leader)
        };
        let was_voter = is_voter(&nodes, victim);
        let (took, log) = nodes.stop(victim);
        assert!(
            took < QUICK_EXIT,
            "node {victim} took {took:?} to stop:\n{}",
            nodes.logs()
        );
        if was_voter {
            assert!(
                log.contains("metadata seat handed over"),
                "voter {victim} exited without handing its seat over:\n{log}"
            );
        }
        nodes.wait_voters(odd(n));
        let survivor = nodes.running()[0];
        nodes.write(survivor, &format!("shrink-{n}"));
    }
    assert!(leader_left);
    let last = nodes.running()[0];
    let (took, _) = nodes.stop(last);
    assert!(took < QUICK_EXIT, "the last node took {took:?} to stop");
}

#[test]
fn process_a_voter_dead_longer_than_the_replacement_time_gives_its_seat_to_a_learner() {
    const REPLACE_AFTER: Duration = Duration::from_secs(3);
    let replace_after = REPLACE_AFTER.as_millis().to_string();
    let mut cluster = ProcessCluster::start(4, &["--voter-replace-after-ms", &replace_after]);
    cluster.wait_all(SETTLE, "three voters and a learner", |v| {
        v.voters() == 3 && v.learners() == 1
    });
    let leader = cluster.metadata_leader().expect("a metadata leader");
    let peers: Vec<String> = (0..4).map(|i| cluster.identity(i).0).collect();
    let seated = |view: &ClusterView, peer: &str| {
        view.metadata
            .get("voters")
            .is_some_and(|v| v.to_string().contains(peer))
    };
    let view = cluster.view(leader).expect("the leader's view");
    let victim = (0..4)
        .find(|&i| i != leader && seated(&view, &peers[i]))
        .expect("a voter that does not lead");
    let learner = (0..4)
        .find(|&i| !seated(&view, &peers[i]))
        .expect("the learner");

    // (That it keeps its seat while dead for less is the unit tests' `voters::tests`.)
    cluster.kill(victim);
    cluster.wait_all(
        SETTLE + REPLACE_AFTER,
        "the learner in the dead voter's seat",
        |v| v.voters() == 3 && seated(v, &peers[learner]) && !seated(v, &peers[victim]),
    );
    let (code, message) = create_topic(cluster.kafka(learner), "after-replacement", 1, WRITE)
        .expect("CreateTopics answered");
    assert_eq!(code, 0, "{message:?}");
}

/// The largest odd number not above `n`.
fn odd(n: usize) -> usize {
    if n.is_multiple_of(2) { n - 1 } else { n }
}

fn is_voter(nodes: &Nodes, i: usize) -> bool {
    nodes.view(i).is_some_and(|v| {
        matches!(
            v.metadata.get("role").and_then(serde_json::Value::as_str),
            Some("leader" | "follower")
        )
    })
}

/// A running voter that is not `leader` (or any other running node).
fn voter_other_than(nodes: &Nodes, leader: usize) -> usize {
    let others: Vec<usize> = nodes
        .running()
        .into_iter()
        .filter(|&i| i != leader)
        .collect();
    others
        .iter()
        .copied()
        .find(|&i| is_voter(nodes, i))
        .unwrap_or(others[0])
}
