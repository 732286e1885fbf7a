//! Clusters of `rafka-node` processes for the multi-node tests and the mesh benchmarks: formed
//! with `--bootstrap-expect N` through one bootstrap address, observed through each node's
//! `GET /cluster`, and spoken to with blocking Kafka requests (kafka-protocol encoded).
//!
//! Used by the multi-process tests (`cluster_processes` and others) and included with `#[path]` by
//! `examples/mesh_bench.rs`. Every process it starts is a [`NodeProcess`], killed by its PID when
//! dropped.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, MetadataRequest, MetadataResponse, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Request, StrBytes};
use serde_json::Value;

use crate::support::process::{NodeProcess, Ready, parse_ready, workspace_binary};
use crate::support::wait_until_blocking;
use crate::support::wire;

/// How long a node may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often `/cluster` is polled while waiting for a condition.
pub const POLL: Duration = Duration::from_millis(50);

/// A `rafka-node` started but not yet ready: a node forming a cluster prints its ready line only
/// once the cluster has formed, so the first node's data address is read from its log.
pub struct Spawned {
    child: Option<Child>,
    ready: mpsc::Receiver<Ready>,
    data_dir: PathBuf,
    log: PathBuf,
    log_offset: u64,
    started: Instant,
}

/// Starts `rafka-node` on `data_dir` on loopback with OS-assigned ports (unless `args` gives a
/// listener address), no mDNS, and `args` (`--bootstrap-expect N`, `--bootstrap ADDR`, ...),
/// without waiting for it.
pub fn spawn(binary: &Path, data_dir: &Path, args: &[&str]) -> Spawned {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    spawn_logging(binary, data_dir, args, Some(&filter))
}

/// As [`spawn`], with `RUST_LOG` set to `log`, or unset (the node's default logging) for `None`.
pub fn spawn_logging(
    binary: &Path,
    data_dir: &Path,
    args: &[&str],
    rust_log: Option<&str>,
) -> Spawned {
    let log = data_dir.with_extension("log");
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let log_offset = stderr.metadata().map(|m| m.len()).unwrap_or(0);
    let mut command = Command::new(binary);
    command.args(["--data-dir", data_dir.to_str().unwrap()]);
    for (flag, any_port) in [
        ("--kafka-addr", "127.0.0.1:0"),
        ("--http-addr", "127.0.0.1:0"),
        ("--p2p-addr", "/ip4/127.0.0.1/tcp/0"),
        ("--control-addr", "/ip4/127.0.0.1/tcp/0"),
    ] {
        if !args.contains(&flag) {
            command.args([flag, any_port]);
        }
    }
    match rust_log {
        Some(filter) => command.env("RUST_LOG", filter),
        None => command.env_remove("RUST_LOG"),
    };
    let mut child = command
        .arg("--no-mdns")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, ready) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(parsed) = parse_ready(&line) {
                let _ = tx.send(parsed);
            }
        }
    });
    Spawned {
        child: Some(child),
        ready,
        data_dir: data_dir.to_path_buf(),
        log,
        log_offset,
        started: Instant::now(),
    }
}

impl Spawned {
    /// This start's log (stderr) so far.
    pub fn log_text(&self) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let from = usize::try_from(self.log_offset)
            .unwrap_or(0)
            .min(text.len());
        String::from_utf8_lossy(&text[from..]).into_owned()
    }

    /// The data-plane (p2p) address the node listens on, from its log line
    /// `mesh data plane listening address=...` (it is printed long before the node is ready).
    pub fn data_addr(&self, timeout: Duration) -> String {
        wait_until_blocking(timeout, "the data-plane address in the log", || {
            let log = self.log_text();
            let found = log.lines().find_map(|line| {
                let (_, rest) = line.split_once("mesh data plane listening address=")?;
                rest.split_whitespace().next().map(str::to_string)
            });
            found.ok_or(format!("log:\n{log}"))
        })
    }

    /// Waits for the ready line.
    pub fn wait_ready(mut self, timeout: Duration) -> NodeProcess {
        let remaining = timeout.saturating_sub(self.started.elapsed());
        match self.ready.recv_timeout(remaining) {
            Ok(ready) => NodeProcess {
                child: self.child.take().unwrap(),
                ready,
                log: self.log.clone(),
            },
            Err(_) => panic!(
                "rafka-node on {} not ready within {timeout:?}; log:\n{}",
                self.data_dir.display(),
                self.log_text()
            ),
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends `signal` to a node process (by its PID; it is reaped by `NodeProcess::kill`/drop).
pub fn signal(node: &NodeProcess, signal: libc::c_int) {
    let pid = node.child.id() as libc::pid_t;
    // SAFETY: kill(2) on our own, not yet reaped child's pid; no memory is touched.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
}

/// Sends `signal` to another child of this test (a CLI process) by its PID.
pub fn signal_pid(pid: u32, signal: libc::c_int) {
    let pid = pid as libc::pid_t;
    // SAFETY: kill(2) on our own, not yet reaped child's pid; no memory is touched.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
}

/// Waits (up to 30 s) for a node that was signalled to exit; returns whether it exited cleanly.
pub fn wait_exit(node: &mut NodeProcess) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            return status.success();
        }
        if Instant::now() > deadline {
            node.kill();
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Nodes of one cluster, each on its own data dir under one temporary directory.
pub struct ProcessCluster {
    /// `None` while a node is down.
    pub nodes: Vec<Option<NodeProcess>>,
    pub dirs: Vec<PathBuf>,
    pub binary: PathBuf,
    /// Holds the data dirs; removed when the cluster is dropped.
    pub _root: tempfile::TempDir,
}

impl ProcessCluster {
    /// Starts `n` fresh nodes with `--bootstrap-expect n` (all but the first with `--bootstrap`
    /// the first's address) and waits until each printed its ready line (the cluster formed and
    /// the node registered).
    pub fn start(n: usize, extra: &[&str]) -> ProcessCluster {
        Self::start_with(&workspace_binary("rafka-node"), n, extra)
    }

    /// As [`ProcessCluster::start`], with a given `rafka-node` binary.
    pub fn start_with(binary: &Path, n: usize, extra: &[&str]) -> ProcessCluster {
        let spawned = Self::spawn_all(binary, n, extra);
        let root = spawned.root;
        let nodes = spawned
            .nodes
            .into_iter()
            .map(|s| Some(s.wait_ready(READY_TIMEOUT)))
            .collect();
        ProcessCluster {
            nodes,
            dirs: spawned.dirs,
            binary: binary.to_path_buf(),
            _root: root,
        }
    }

    /// Spawns `n` fresh forming nodes without waiting for them to be ready.
    pub fn spawn_all(binary: &Path, n: usize, extra: &[&str]) -> SpawnedCluster {
        let root = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = (0..n)
            .map(|i| root.path().join(format!("node{i}")))
            .collect();
        let expect = n.to_string();
        let mut first_args = vec!["--bootstrap-expect", expect.as_str()];
        first_args.extend_from_slice(extra);
        let first = spawn(binary, &dirs[0], &first_args);
        let bootstrap = first.data_addr(Duration::from_secs(30));
        let mut nodes = vec![first];
        for dir in &dirs[1..] {
            let mut args = vec!["--bootstrap-expect", expect.as_str(), "--bootstrap"];
            args.push(bootstrap.as_str());
            args.extend_from_slice(extra);
            nodes.push(spawn(binary, dir, &args));
        }
        SpawnedCluster { nodes, dirs, root }
    }

    /// Three nodes with replication factor 3 by default and min.insync.replicas 2 (and
    /// `extra`), every member alive, and `topic` created with `partitions` partitions and
    /// served by every node with every replica in sync.
    pub fn replicated(topic: &str, partitions: i32, extra: &[&str]) -> ProcessCluster {
        const STEP: Duration = Duration::from_secs(60);
        let mut args = vec![
            "--default-replication-factor",
            "3",
            "--min-insync-replicas",
            "2",
        ];
        args.extend_from_slice(extra);
        let cluster = ProcessCluster::start(3, &args);
        cluster.create_topic_on_all(STEP, topic, partitions);
        if !extra.contains(&"--max-feature-level") {
            cluster.wait_latest_feature_level(STEP);
        }
        for node in 0..3 {
            let addr = cluster.kafka(node);
            wait_until_blocking(STEP, "the topic served with every replica in sync", || {
                topic_metadata(addr, topic).is_ok_and(|m| {
                    m.topics.first().is_some_and(|t| {
                        t.partitions.len() == partitions as usize
                            && t.partitions
                                .iter()
                                .all(|p| p.error_code == 0 && p.isr_nodes.len() == 3)
                    })
                })
            });
        }
        cluster
    }

    /// The process index and node id of the leader of `topic`-`partition`, as node 0 says.
    pub fn leader_of(&self, topic: &str, partition: i32) -> (usize, i64) {
        let leaders = partition_leaders(self.kafka(0), topic).unwrap();
        let leader = leaders
            .iter()
            .find(|(p, _, _)| *p == partition)
            .map(|&(_, _, leader)| i64::from(leader))
            .unwrap();
        let index = (0..self.nodes.len())
            .find(|&i| self.identity(i).1 == leader)
            .expect("the leader is one of the nodes");
        (index, leader)
    }

    /// A running node.
    pub fn node(&self, i: usize) -> &NodeProcess {
        self.nodes[i].as_ref().expect("node is down")
    }

    /// Indexes of the running nodes.
    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some())
            .collect()
    }

    /// SIGKILLs node `i` (reaped at once); returns when the signal was sent.
    pub fn kill(&mut self, i: usize) -> Instant {
        let mut node = self.nodes[i].take().expect("node is down");
        let at = Instant::now();
        node.kill();
        at
    }

    /// Restarts node `i` on its data dir, joining through `bootstrap` (no `--bootstrap-expect`:
    /// it resumes its cluster), and waits for its ready line.
    pub fn restart(&mut self, i: usize, bootstrap: &str, extra: &[&str]) {
        assert!(self.nodes[i].is_none(), "node {i} is running");
        let mut args = vec!["--bootstrap", bootstrap];
        args.extend_from_slice(extra);
        let node = spawn(&self.binary, &self.dirs[i], &args).wait_ready(READY_TIMEOUT);
        self.nodes[i] = Some(node);
    }

    /// Restarts every node in `down` on its data dir and on the Kafka, HTTP and p2p addresses it
    /// had (`was[i]`, as printed on its last ready line), each bootstrapping through the others'
    /// p2p addresses, and waits for all ready lines: clients that knew the cluster before find
    /// it again, as after a power cut.
    pub fn restart_in_place(&mut self, down: &[usize], was: &[Ready]) {
        let spawned: Vec<(usize, Spawned)> = down
            .iter()
            .map(|&i| {
                assert!(self.nodes[i].is_none(), "node {i} is running");
                let others: Vec<&str> = (0..was.len())
                    .filter(|&j| j != i)
                    .map(|j| was[j].p2p.as_str())
                    .collect();
                let kafka = was[i].kafka.to_string();
                let http = was[i].http.to_string();
                let port = was[i].p2p.split('/').nth(4).expect("/ip4/<ip>/tcp/<port>");
                let p2p = format!("/ip4/127.0.0.1/tcp/{port}");
                let bootstrap = others.join(",");
                let args = [
                    "--kafka-addr",
                    &kafka,
                    "--http-addr",
                    &http,
                    "--p2p-addr",
                    &p2p,
                    "--bootstrap",
                    &bootstrap,
                ];
                (i, spawn(&self.binary, &self.dirs[i], &args))
            })
            .collect();
        for (i, node) in spawned {
            self.nodes[i] = Some(node.wait_ready(READY_TIMEOUT));
        }
    }

    /// `/cluster` of node `i`, if it answers.
    pub fn view(&self, i: usize) -> Option<ClusterView> {
        cluster_view(self.node(i).ready.http)
    }

    /// Polls every running node's `/cluster` until `condition` holds for each; returns how long
    /// that took, per node index. Panics after `timeout` with the views seen last.
    pub fn wait_all(
        &self,
        timeout: Duration,
        what: &str,
        condition: impl Fn(&ClusterView) -> bool,
    ) -> BTreeMap<usize, Duration> {
        let started = Instant::now();
        let observers = self.running();
        let mut done = BTreeMap::new();
        let mut last = BTreeMap::new();
        loop {
            for &i in &observers {
                if done.contains_key(&i) {
                    continue;
                }
                if let Some(view) = self.view(i) {
                    if condition(&view) {
                        done.insert(i, started.elapsed());
                    }
                    last.insert(i, view);
                }
            }
            if done.len() == observers.len() {
                return done;
            }
            assert!(
                started.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}; done: {done:?}; last views: {last:#?}"
            );
            std::thread::sleep(POLL);
        }
    }

    /// Peer id and node id of node `i`, as node `i` itself reports them.
    pub fn identity(&self, i: usize) -> (String, i64) {
        let view = self.view(i).expect("node answers /cluster");
        let me = view
            .members
            .iter()
            .find(|m| m.node_id == Some(view.node_id))
            .expect("a node lists itself");
        (me.peer_id.clone(), view.node_id)
    }

    /// Index of the running node whose own `/cluster` says it leads the metadata log.
    pub fn metadata_leader(&self) -> Option<usize> {
        self.running().into_iter().find(|&i| {
            self.view(i)
                .is_some_and(|v| v.metadata.get("role").and_then(Value::as_str) == Some("leader"))
        })
    }

    /// Waits until every running node sees every member alive and registered (with a node id):
    /// until then CreateTopics refuses a replication factor above the nodes registered.
    pub fn wait_registered(&self, timeout: Duration) {
        let n = self.running().len();
        self.wait_all(timeout, "every member alive and registered", |view| {
            view.members.len() == n
                && view.count("alive") == n
                && view.members.iter().all(|m| m.node_id.is_some())
        });
    }

    /// Waits until every running node knows this build's feature level as finalized. A new
    /// cluster starts at level 0 and climbs once every node has gossiped what it supports; until
    /// then group metadata is not written to `__consumer_offsets` (it would not fail over) and
    /// transactions are refused, so tests of those start from here.
    pub fn wait_latest_feature_level(&self, timeout: Duration) {
        let latest = u64::from(rafka_broker::metadata::features::LATEST.0);
        self.wait_all(timeout, "this build's feature level finalized", |view| {
            view.finalized_level == Some(latest)
        });
    }

    /// Kafka address of a running node.
    pub fn kafka(&self, i: usize) -> SocketAddr {
        self.node(i).ready.kafka
    }

    /// Creates `topic` (default replication) through node 0 once every node is alive and
    /// registered as the metadata log sees it: until then CreateTopics refuses a replication
    /// factor above the nodes available. Panics after `timeout`.
    pub fn create_topic_on_all(&self, timeout: Duration, topic: &str, partitions: i32) {
        let n = self.running().len();
        self.wait_all(timeout, "every member alive", |view| {
            view.count("alive") == n
        });
        wait_until_blocking(timeout, &format!("{topic} created"), || match create_topic(
            self.kafka(0),
            topic,
            partitions,
            Duration::from_secs(10),
        ) {
            Ok((0 | 36, _)) => true,
            Ok((code, message)) => {
                eprintln!("creating {topic}: {code} {message:?}");
                false
            }
            Err(_) => false,
        });
    }
}

/// Nodes spawned but not waited for (see [`ProcessCluster::spawn_all`]).
pub struct SpawnedCluster {
    pub nodes: Vec<Spawned>,
    pub dirs: Vec<PathBuf>,
    pub root: tempfile::TempDir,
}

/// One member in a node's `/cluster` document.
#[derive(Clone, Debug)]
pub struct MemberView {
    pub peer_id: String,
    pub node_id: Option<i64>,
    pub state: String,
    pub generation: u64,
    /// Its heartbeat counter (one a second since it started).
    pub heartbeat: u64,
    pub metadata_role: Option<String>,
}

/// A node's `/cluster` document.
#[derive(Clone, Debug)]
pub struct ClusterView {
    pub cluster_id: String,
    pub node_id: i64,
    pub members: Vec<MemberView>,
    /// The metadata log as seen from the node (`role`, `leader_peer_id`, `voters`, ...).
    pub metadata: Value,
    /// The cluster's finalized feature level as the node knows it.
    pub finalized_level: Option<u64>,
}

impl ClusterView {
    /// A member by peer id.
    pub fn member(&self, peer_id: &str) -> Option<&MemberView> {
        self.members.iter().find(|m| m.peer_id == peer_id)
    }

    /// The state of `peer_id` (`alive`, `suspect`, `dead`, `left`), if listed.
    pub fn state_of(&self, peer_id: &str) -> Option<&str> {
        self.member(peer_id).map(|m| m.state.as_str())
    }

    /// Members in state `state`.
    pub fn count(&self, state: &str) -> usize {
        self.members.iter().filter(|m| m.state == state).count()
    }

    /// Number of voters in the metadata log as this node sees it.
    pub fn voters(&self) -> usize {
        self.metadata
            .get("voters")
            .and_then(Value::as_object)
            .map_or(0, |v| v.len())
    }

    /// Number of learners in the metadata log as this node sees it.
    pub fn learners(&self) -> usize {
        self.metadata
            .get("learners")
            .and_then(Value::as_object)
            .map_or(0, |v| v.len())
    }

    /// The peer id this node believes leads the metadata log.
    pub fn leader_peer_id(&self) -> Option<&str> {
        self.metadata.get("leader_peer_id").and_then(Value::as_str)
    }
}

fn parse_view(body: &str) -> Option<ClusterView> {
    let doc: Value = serde_json::from_str(body).ok()?;
    let members = doc
        .get("members")?
        .as_array()?
        .iter()
        .map(|m| MemberView {
            peer_id: m["peer_id"].as_str().unwrap_or_default().to_string(),
            node_id: m["node_id"].as_i64(),
            state: m["state"].as_str().unwrap_or_default().to_string(),
            generation: m["generation"].as_u64().unwrap_or(0),
            heartbeat: m["heartbeat"].as_u64().unwrap_or(0),
            metadata_role: m["metadata_role"].as_str().map(str::to_string),
        })
        .collect();
    Some(ClusterView {
        cluster_id: doc["cluster_id"].as_str().unwrap_or_default().to_string(),
        node_id: doc["node_id"].as_i64().unwrap_or(-1),
        members,
        metadata: doc.get("metadata").cloned().unwrap_or(Value::Null),
        finalized_level: doc.pointer("/features/finalized").and_then(Value::as_u64),
    })
}

/// `GET path` on an HTTP endpoint, with short timeouts (a dead node answers nothing).
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// A node's `/cluster`, if it answers.
pub fn cluster_view(http: SocketAddr) -> Option<ClusterView> {
    parse_view(&http_get(http, "/cluster")?)
}

// -------------------------------------------------------------------------------------------------
// Blocking Kafka requests

/// Sends one request at `version` on a fresh connection and decodes the response.
pub fn kafka_call<R: Request>(
    addr: SocketAddr,
    request: &R,
    version: i16,
    timeout: Duration,
) -> std::io::Result<R::Response> {
    let api_key = ApiKey::try_from(R::KEY).unwrap();
    let body = wire::request_body(request, version, 1, "cluster-test");
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_u32(u32::try_from(body.len()).unwrap());
    frame.put_slice(&body);

    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(&frame)?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let mut response = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut response)?;
    let mut response = bytes::Bytes::from(response);
    let bad = |e: anyhow::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let header = ResponseHeader::decode(&mut response, api_key.response_header_version(version))
        .map_err(bad)?;
    assert_eq!(header.correlation_id, 1);
    let decoded = R::Response::decode(&mut response, version).map_err(bad)?;
    assert_eq!(response.remaining(), 0, "trailing bytes in {api_key:?}");
    Ok(decoded)
}

/// CreateTopics (v7) of one topic with `partitions` partitions (default replication); returns
/// the topic's error code and message.
pub fn create_topic(
    addr: SocketAddr,
    name: &str,
    partitions: i32,
    timeout: Duration,
) -> std::io::Result<(i16, Option<String>)> {
    let topic = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.to_string())))
        .with_num_partitions(partitions)
        .with_replication_factor(-1);
    let request = CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX));
    let response = kafka_call(addr, &request, 7, timeout + Duration::from_secs(5))?;
    let result = response.topics.first().expect("one topic result");
    Ok((
        result.error_code,
        result.error_message.as_ref().map(|m| m.to_string()),
    ))
}

/// Metadata (v12) of `topic` without auto-creation.
pub fn topic_metadata(addr: SocketAddr, topic: &str) -> std::io::Result<MetadataResponse> {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
            TopicName(StrBytes::from_string(topic.to_string())),
        ))]))
        .with_allow_auto_topic_creation(false);
    kafka_call(addr, &request, 12, Duration::from_secs(10))
}

/// (partition, error code, leader) of `topic` as `addr` describes it, in partition order.
pub fn partition_leaders(addr: SocketAddr, topic: &str) -> std::io::Result<Vec<(i32, i16, i32)>> {
    let response = topic_metadata(addr, topic)?;
    let mut out: Vec<(i32, i16, i32)> = response
        .topics
        .iter()
        .filter(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .flat_map(|t| t.partitions.iter())
        .map(|p| (p.partition_index, p.error_code, p.leader_id.0))
        .collect();
    out.sort_unstable();
    Ok(out)
}
