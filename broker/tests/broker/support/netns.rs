//! Network namespaces for mesh tests (root only).
//!
//! A [`Net`] is a hub namespace holding two bridges, `br0` (the network) and `br1` (the far side
//! of a split), and one namespace per host, joined to `br0` by a veth pair (`eth0` in the host,
//! `h<i>` on the hub) with the address 10.77.<n>.<i+1>/24. The bridges have multicast snooping
//! off, so mDNS floods to every port. Nodes are `rafka-node` processes started in a host with
//! `ip netns exec`, listening on the host's address (never loopback, so mDNS announces them).
//!
//! The test process stays in the root namespace and adds nothing to it: it reaches a host by
//! running a short-lived thread that entered the host's namespace (`setns(2)`), so a host cut off
//! by a split can still be asked about its view. Names carry the test process's PID and a counter
//! (`rnt<pid>-<k>-...`), so parallel runs never clash; each network has its own namespaces, so
//! equal subnets of two runs could not meet anyway.
//!
//! Splits move hosts' ports to `br1` ([`Net::split`]) and back ([`Net::heal`]). Dropping the [`Net`] (also when a panic
//! unwinds) kills its nodes by PID, then deletes its namespaces (which removes the veths and
//! bridges) and data dirs; on a panic it first prints the tail of every node's log.
#![allow(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, MetadataRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

use crate::support::process::workspace_binary;
use crate::support::wait_until_blocking;

/// Prefix of every namespace this harness creates.
const PREFIX: &str = "rnt";
/// Ports every node uses inside its own namespace.
pub const KAFKA_PORT: u16 = 9092;
pub const HTTP_PORT: u16 = 9644;
pub const P2P_PORT: u16 = 7070;

static NEXT_NET: AtomicU32 = AtomicU32::new(0);

/// Whether network namespaces can be used here. If not, prints `SKIPPED: <test>: <why>` and
/// returns false, unless `RAFKA_REQUIRE_NETNS=1`, which turns the skip into a failure.
pub fn available(test: &str) -> bool {
    let Some(reason) = unavailable() else {
        return true;
    };
    let required = std::env::var("RAFKA_REQUIRE_NETNS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{test}: network namespaces are required (RAFKA_REQUIRE_NETNS=1) but {reason}"
    );
    eprintln!("SKIPPED: {test}: {reason}");
    false
}

fn unavailable() -> Option<String> {
    // SAFETY: geteuid(2) has no preconditions and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Some(
            "this test needs root (it creates network namespaces, veth pairs and a bridge); \
             run it as root, as CI does"
                .into(),
        );
    }
    let ip_works = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ip_works {
        return Some("`ip` (iproute2) is not installed".into());
    }
    // Root without the capability (some containers) cannot create namespaces.
    let probe = format!("{PREFIX}{}-probe", std::process::id());
    let created = Command::new("ip")
        .args(["netns", "add", &probe])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match created {
        Ok(out) if out.status.success() => {
            let _ = ip_quiet(&["netns", "del", &probe]);
            None
        }
        Ok(out) => Some(format!(
            "`ip netns add` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run `ip netns add`: {e}")),
    }
}

/// Runs `ip args...`; panics with its stderr if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip {}`: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Runs `ip args...`, ignoring failure (cleanup).
fn ip_quiet(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Deletes namespaces left by earlier runs of this harness whose process is gone (a test killed
/// with SIGKILL cannot clean up). Only names with this harness's prefix and a dead PID.
fn remove_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            ip_quiet(&["netns", "del", name]);
        }
    }
}

/// Runs `f` on a thread that has entered network namespace `ns`: sockets it opens live there.
pub fn in_namespace<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    let thread = std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
        // SAFETY: setns(2) with a valid namespace fd that outlives the call; it changes only this
        // thread's network namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
        f()
    });
    match thread.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// One host: a namespace with `eth0` on the hub's bridge.
#[derive(Clone, Debug)]
pub struct Host {
    pub ns: String,
    pub ip: Ipv4Addr,
    /// The host's port on the hub (`h<i>`).
    port: String,
}

/// A `rafka-node` process inside a host.
pub struct NetNode {
    pub host: usize,
    pub ns: String,
    pub ip: Ipv4Addr,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Child,
    ready: mpsc::Receiver<String>,
    /// The ready line, once seen.
    pub ready_line: Option<String>,
}

impl NetNode {
    pub fn kafka(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.ip, KAFKA_PORT))
    }

    pub fn http(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.ip, HTTP_PORT))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The node's log so far (stderr).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The body of `GET path` on the node's HTTP endpoint, from inside its namespace.
    pub fn http_get(&self, path: &str) -> std::io::Result<String> {
        http_get(&self.ns, self.http(), path)
    }

    /// `GET /cluster` as JSON.
    pub fn cluster(&self) -> Result<serde_json::Value, String> {
        let body = self.http_get("/cluster").map_err(|e| e.to_string())?;
        serde_json::from_str(&body).map_err(|e| format!("bad /cluster JSON ({e}): {body}"))
    }

    /// `GET /ready` as JSON (`ready`, `node_id`, `metadata_version`).
    pub fn ready_json(&self) -> Result<serde_json::Value, String> {
        let body = self.http_get("/ready").map_err(|e| e.to_string())?;
        serde_json::from_str(&body).map_err(|e| format!("bad /ready JSON ({e}): {body}"))
    }

    /// One Kafka request to this node, from inside its namespace; `Err` on a connection error or
    /// no answer within `timeout`.
    pub fn kafka_call<R: Request>(
        &self,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response, String> {
        kafka_call(&self.ns, self.kafka(), request, version, timeout)
    }

    /// The node's libp2p peer id (from its ready line; panics before it is ready).
    pub fn peer_id(&self) -> String {
        let line = self.ready_line.as_deref().expect("node not ready yet");
        line.split_whitespace()
            .find_map(|field| field.strip_prefix("p2p="))
            .and_then(|p2p| p2p.split(',').next())
            .and_then(|addr| addr.rsplit_once("/p2p/"))
            .map(|(_, peer)| peer.to_string())
            .expect("no p2p address on the ready line")
    }

    /// Every member of this node's membership view, from `/cluster`.
    pub fn members(&self) -> Result<Vec<Member>, String> {
        let cluster = self.cluster()?;
        let members = cluster["members"]
            .as_array()
            .ok_or_else(|| format!("no members in {cluster}"))?;
        Ok(members.iter().map(Member::from_json).collect())
    }

    /// Peer ids of the metadata log's voters and learners as this node sees them.
    pub fn metadata_members(&self) -> Result<(Vec<String>, Vec<String>), String> {
        let cluster = self.cluster()?;
        let peers = |key: &str| -> Vec<String> {
            cluster["metadata"][key]
                .as_object()
                .map(|nodes| {
                    nodes
                        .values()
                        .filter_map(|n| n["peer_id"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok((peers("voters"), peers("learners")))
    }

    /// The metadata version of this node's image (`/ready`).
    pub fn metadata_version(&self) -> Result<u64, String> {
        let ready = self.ready_json()?;
        ready["metadata_version"]
            .as_u64()
            .ok_or_else(|| format!("no metadata_version in {ready}"))
    }

    /// A Metadata request (v12, all topics) to this node.
    pub fn metadata(&self, timeout: Duration) -> Result<ClusterMetadata, String> {
        let request = MetadataRequest::default().with_topics(None);
        let response = self.kafka_call(&request, 12, timeout)?;
        let mut topics: Vec<String> = response
            .topics
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
            .collect();
        topics.sort();
        let mut brokers: Vec<(i32, String)> = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        brokers.sort();
        Ok(ClusterMetadata {
            cluster_id: response.cluster_id.map(|id| id.to_string()),
            controller: response.controller_id.0,
            topics,
            brokers,
        })
    }

    /// Each partition of `topic` as this node's Metadata (v12) answer shows it, by index.
    pub fn partitions(&self, topic: &str, timeout: Duration) -> Result<Vec<PartitionView>, String> {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                TopicName(StrBytes::from_string(topic.to_string())),
            ))]));
        let response = self.kafka_call(&request, 12, timeout)?;
        let found = response
            .topics
            .first()
            .ok_or_else(|| format!("no topic in the Metadata answer for {topic}"))?;
        if found.error_code != 0 {
            return Err(format!("{topic}: error {}", found.error_code));
        }
        let mut partitions: Vec<PartitionView> = found
            .partitions
            .iter()
            .map(|p| PartitionView {
                partition: p.partition_index,
                error: p.error_code,
                leader: p.leader_id.0,
                leader_epoch: p.leader_epoch,
                isr: p.isr_nodes.iter().map(|n| n.0).collect(),
            })
            .collect();
        partitions.sort_by_key(|p| p.partition);
        Ok(partitions)
    }

    /// A per-partition gauge of this node's `/metrics` (`rafka_partition_log_end_offset`,
    /// `rafka_partition_high_watermark`, ...) for `topic`'s partition `partition`.
    pub fn partition_gauge(&self, name: &str, topic: &str, partition: i32) -> Result<i64, String> {
        let text = self.http_get("/metrics").map_err(|e| e.to_string())?;
        let topic_label = format!("topic=\"{topic}\"");
        let partition_label = format!("partition=\"{partition}\"");
        text.lines()
            .filter(|line| line.starts_with(name) && line[name.len()..].starts_with('{'))
            .filter(|line| line.contains(&topic_label) && line.contains(&partition_label))
            .find_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|value| value as i64)
            .ok_or_else(|| format!("no {name} for {topic}/{partition} in /metrics"))
    }

    /// The node id this node reports on `/ready`.
    pub fn node_id(&self) -> Result<i32, String> {
        let ready = self.ready_json()?;
        ready["node_id"]
            .as_i64()
            .and_then(|id| i32::try_from(id).ok())
            .ok_or_else(|| format!("no node_id in {ready}"))
    }

    /// CreateTopics (v7) of one topic through this node: `Ok(topic id)`, or `Err` with the error
    /// code and message (code -1: no answer or a broken connection, with the reason).
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication: i16,
        timeout: Duration,
    ) -> Result<uuid::Uuid, (i16, String)> {
        let request = CreateTopicsRequest::default()
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name.to_string())))
                    .with_num_partitions(partitions)
                    .with_replication_factor(replication),
            ])
            .with_timeout_ms(i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX));
        // The broker answers within the request's timeout; the socket waits a little longer.
        let response = self
            .kafka_call(&request, 7, timeout + Duration::from_secs(5))
            .map_err(|e| (-1, e))?;
        let result = response
            .topics
            .first()
            .ok_or_else(|| (-1, "no topic in the CreateTopics response".to_string()))?;
        if result.error_code == 0 {
            Ok(result.topic_id)
        } else {
            Err((
                result.error_code,
                result
                    .error_message
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            ))
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, ...) to the node's process by its PID.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid fits pid_t");
        // SAFETY: kill(2) on our own child, not yet reaped; no memory is touched.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
    }

    /// Whether the process has exited (reaping it if so).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

/// One partition in a Metadata answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionView {
    pub partition: i32,
    pub error: i16,
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
}

/// A member as `/cluster` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub peer_id: String,
    pub node_id: Option<i64>,
    /// `alive`, `suspect`, `dead` or `left`.
    pub state: String,
    /// `leader`, `voter`, `learner` or `none` (as gossiped).
    pub metadata_role: Option<String>,
    pub metadata_version: Option<String>,
}

impl Member {
    fn from_json(m: &serde_json::Value) -> Member {
        let text = |key: &str| m[key].as_str().map(str::to_string);
        Member {
            peer_id: text("peer_id").unwrap_or_default(),
            node_id: m["node_id"].as_i64(),
            state: text("state").unwrap_or_default(),
            metadata_role: text("metadata_role"),
            metadata_version: text("metadata_version"),
        }
    }
}

/// What a Metadata response says about the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterMetadata {
    pub cluster_id: Option<String>,
    pub controller: i32,
    /// Topic names, sorted.
    pub topics: Vec<String>,
    /// (node id, host:port), sorted.
    pub brokers: Vec<(i32, String)>,
}

/// The body of `GET path` at `addr`, connecting from inside namespace `ns`.
pub fn http_get(ns: &str, addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let path = path.to_string();
    in_namespace(ns, move || {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (_, body) = response.split_once("\r\n\r\n").unwrap_or_default();
        Ok(body.to_string())
    })
}

/// One Kafka request/response at `addr`, connecting from inside namespace `ns`.
pub fn kafka_call<R: Request>(
    ns: &str,
    addr: SocketAddr,
    request: &R,
    version: i16,
    timeout: Duration,
) -> Result<R::Response, String> {
    let api_key = ApiKey::try_from(R::KEY).map_err(|()| format!("unknown API key {}", R::KEY))?;
    let correlation_id = 7;
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("netns-test")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, api_key.request_header_version(version))
        .map_err(|e| e.to_string())?;
    request
        .encode(&mut body, version)
        .map_err(|e| e.to_string())?;
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_u32(u32::try_from(body.len()).map_err(|e| e.to_string())?);
    frame.put_slice(&body);
    let frame = frame.to_vec();
    let answer = in_namespace(ns, move || -> std::io::Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut stream = TcpStream::connect_timeout(&addr, timeout.min(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.write_all(&frame)?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        stream.set_read_timeout(Some(remaining.max(Duration::from_millis(1))))?;
        let mut len = [0u8; 4];
        stream.read_exact(&mut len)?;
        let mut response = vec![0u8; u32::from_be_bytes(len) as usize];
        stream.read_exact(&mut response)?;
        Ok(response)
    })
    .map_err(|e| format!("{api_key:?} to {addr}: {e}"))?;
    let mut response = bytes::Bytes::from(answer);
    let header = ResponseHeader::decode(&mut response, api_key.response_header_version(version))
        .map_err(|e| e.to_string())?;
    if header.correlation_id != correlation_id {
        return Err(format!("correlation id {}", header.correlation_id));
    }
    let decoded = R::Response::decode(&mut response, version).map_err(|e| e.to_string())?;
    if response.remaining() != 0 {
        return Err(format!("trailing bytes in the {api_key:?} response"));
    }
    Ok(decoded)
}

/// A network of hosts on a bridge, and the nodes running on them.
pub struct Net {
    /// Prefix of this network's namespace names (`rnt<pid>-<k>`).
    pub name: String,
    /// Third octet of the subnet: hosts are 10.77.<subnet>.<i+1>/24.
    pub subnet: u8,
    hub: String,
    hosts: Vec<Host>,
    nodes: Vec<NetNode>,
    namespaces: Vec<String>,
    dir: tempfile::TempDir,
    /// The cluster key every node gets (the hosts' addresses are not loopback, so a node needs a
    /// key or `--insecure-open-mesh`).
    key_file: PathBuf,
}

impl Net {
    /// A hub namespace with its two bridges and `hosts` hosts on `br0`.
    pub fn new(hosts: usize) -> Net {
        remove_stale_namespaces();
        let k = NEXT_NET.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("{PREFIX}{pid}-{k}");
        let subnet = u8::try_from((pid.wrapping_mul(31).wrapping_add(k)) % 250).unwrap() + 1;
        let hub = format!("{name}-hub");
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("cluster.key");
        rafka_mesh::ClusterKey::generate_file(&key_file).unwrap();
        let mut net = Net {
            name,
            subnet,
            hub: hub.clone(),
            hosts: Vec::new(),
            nodes: Vec::new(),
            namespaces: Vec::new(),
            dir,
            key_file,
        };
        ip(&["netns", "add", &hub]);
        net.namespaces.push(hub.clone());
        ip(&["-n", &hub, "link", "set", "lo", "up"]);
        for bridge in ["br0", "br1"] {
            ip(&[
                "-n",
                &hub,
                "link",
                "add",
                bridge,
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ]);
            ip(&["-n", &hub, "link", "set", bridge, "up"]);
        }
        for _ in 0..hosts {
            net.add_host();
        }
        net
    }

    /// Adds a host on `br0`; returns its index.
    pub fn add_host(&mut self) -> usize {
        let i = self.hosts.len();
        let ns = format!("{}-{i}", self.name);
        let port = format!("h{i}");
        let ip_addr = Ipv4Addr::new(10, 77, self.subnet, u8::try_from(i + 1).unwrap());
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ip(&[
            "-n", &self.hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ]);
        ip(&["-n", &self.hub, "link", "set", &port, "master", "br0"]);
        ip(&["-n", &self.hub, "link", "set", &port, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ip_addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        self.hosts.push(Host {
            ns,
            ip: ip_addr,
            port,
        });
        i
    }

    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// The network's cluster key file.
    pub fn key_file(&self) -> &std::path::Path {
        &self.key_file
    }

    /// Starts `rafka-node` on host `host` (fresh data dir, listening on the host's address, mDNS
    /// on unless `extra` says `--no-mdns`, the network's cluster key unless `extra` gives another
    /// or `--insecure-open-mesh`) with `extra` flags; does not wait for it. Returns the node's
    /// index.
    pub fn start_node(&mut self, host: usize, extra: &[&str]) -> usize {
        let index = self.nodes.len();
        let data_dir = self.dir.path().join(format!("node{index}"));
        let log = self.dir.path().join(format!("node{index}.log"));
        let node = self.spawn_node(host, data_dir, log, extra);
        self.nodes.push(node);
        index
    }

    /// Starts node `i` again (after [`NetNode::kill`]) on its host and data dir with `extra`
    /// flags, its log appended to; does not wait for it.
    pub fn restart_node(&mut self, i: usize, extra: &[&str]) {
        let old = &mut self.nodes[i];
        assert!(old.has_exited(), "node {i} is still running");
        let (host, data_dir, log) = (old.host, old.data_dir.clone(), old.log.clone());
        self.nodes[i] = self.spawn_node(host, data_dir, log, extra);
    }

    fn spawn_node(&self, host: usize, data_dir: PathBuf, log: PathBuf, extra: &[&str]) -> NetNode {
        let h = self.hosts[host].clone();
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let ip = h.ip;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &h.ns])
            .arg(workspace_binary("rafka-node"))
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--kafka-addr", &format!("{ip}:{KAFKA_PORT}")])
            .args(["--http-addr", &format!("{ip}:{HTTP_PORT}")])
            .args(["--p2p-addr", &format!("/ip4/{ip}/tcp/{P2P_PORT}")])
            .args(["--control-addr", &format!("/ip4/{ip}/tcp/0")]);
        if !extra.contains(&"--cluster-key-file") && !extra.contains(&"--insecure-open-mesh") {
            command.arg("--cluster-key-file").arg(&self.key_file);
        }
        command
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        // The test's own RAFKA_* settings are not the nodes'.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("RAFKA_") {
                command.env_remove(key);
            }
        }
        let mut child = command
            .spawn()
            .expect("cannot start ip netns exec rafka-node");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("rafka-node ready ") {
                    let _ = tx.send(line);
                }
            }
        });
        NetNode {
            host,
            ns: h.ns,
            ip,
            data_dir,
            log,
            child,
            ready: rx,
            ready_line: None,
        }
    }

    /// Waits until every node in `nodes` printed its ready line (all within `timeout`).
    pub fn wait_ready(&mut self, nodes: &[usize], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for &i in nodes {
            if self.nodes[i].ready_line.is_some() {
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.nodes[i].ready.recv_timeout(left) {
                Ok(line) => self.nodes[i].ready_line = Some(line),
                Err(_) => panic!(
                    "node {i} (host {}) did not become ready within {timeout:?}",
                    self.nodes[i].host
                ),
            }
        }
    }

    /// Whether node `i` has printed its ready line (does not wait).
    pub fn is_ready(&mut self, i: usize) -> bool {
        let node = &mut self.nodes[i];
        if node.ready_line.is_none()
            && let Ok(line) = node.ready.try_recv()
        {
            node.ready_line = Some(line);
        }
        node.ready_line.is_some()
    }

    pub fn node(&self, i: usize) -> &NetNode {
        &self.nodes[i]
    }

    pub fn node_mut(&mut self, i: usize) -> &mut NetNode {
        &mut self.nodes[i]
    }

    /// Splits the network: the hosts in `side` move to `br1`, the others stay on `br0`.
    /// Connections across the split stall (nothing is refused or reset: packets are lost).
    pub fn split(&self, side: &[usize]) {
        for &i in side {
            ip(&[
                "-n",
                &self.hub,
                "link",
                "set",
                &self.hosts[i].port,
                "master",
                "br1",
            ]);
        }
    }

    /// Heals every split: all hosts back on `br0`.
    pub fn heal(&self) {
        for host in &self.hosts {
            ip(&["-n", &self.hub, "link", "set", &host.port, "master", "br0"]);
        }
    }

    /// The last `lines` lines of every node's log, for failure messages.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let text = node.log_text();
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            out.push_str(&format!(
                "---- node {i} (host {}, {}, pid {}) log tail ----\n",
                node.host,
                node.ip,
                node.pid()
            ));
            for line in &all[start..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails(40));
        }
        for node in &mut self.nodes {
            node.kill();
        }
        // RAFKA_NETNS_LOGS=DIR keeps every node's log (DIR/<net>-node<i>.log) for a look later.
        if let Some(keep) = std::env::var_os("RAFKA_NETNS_LOGS") {
            let keep = PathBuf::from(keep);
            let _ = std::fs::create_dir_all(&keep);
            for (i, node) in self.nodes.iter().enumerate() {
                let _ = std::fs::copy(&node.log, keep.join(format!("{}-node{i}.log", self.name)));
            }
        }
        for ns in self.namespaces.iter().rev() {
            ip_quiet(&["netns", "del", ns]);
        }
    }
}

/// Flags of the nodes of [`replicated_three`].
pub const REPLICATED_FLAGS: [&str; 4] = [
    "--default-replication-factor",
    "3",
    "--min-insync-replicas",
    "2",
];

/// Three nodes on hosts 0-2 (node `i` on host `i`, replication factor 3, min.insync.replicas 2)
/// formed over mDNS, `topic` created with `partitions` partitions and served with every replica
/// in sync on every node; host 3 has no node (for a client). Returns the nodes' ids by index.
pub fn replicated_three(topic: &str, partitions: i32) -> (Net, Vec<i32>) {
    const STEP: Duration = Duration::from_secs(30);
    const REQUEST: Duration = Duration::from_secs(5);
    let mut net = Net::new(4);
    let mut flags = vec!["--bootstrap-expect", "3"];
    flags.extend(REPLICATED_FLAGS);
    let nodes: Vec<usize> = (0..3).map(|host| net.start_node(host, &flags)).collect();
    net.wait_ready(&nodes, Duration::from_secs(45));
    let ids: Vec<i32> = nodes
        .iter()
        .map(|&i| net.node(i).node_id().unwrap())
        .collect();
    wait_until_blocking(STEP, "the topic created", || {
        match net.node(0).create_topic(topic, partitions, 3, REQUEST) {
            Ok(_) | Err((36, _)) => Ok(()),
            Err((code, message)) => Err(format!("{code} {message}")),
        }
    });
    wait_until_blocking(STEP, "every replica in sync on every node", || {
        all_in_sync(&net, topic, partitions)
    });
    (net, ids)
}

/// Every node of the first three answers and shows each of `topic`'s `partitions` partitions
/// with a leader and three in-sync replicas.
pub fn all_in_sync(net: &Net, topic: &str, partitions: i32) -> Result<(), String> {
    for i in 0..3 {
        let seen = net.node(i).partitions(topic, Duration::from_secs(5))?;
        let ok = seen.len() == usize::try_from(partitions).unwrap_or(0)
            && seen
                .iter()
                .all(|p| p.error == 0 && p.leader >= 0 && p.isr.len() == 3);
        if !ok {
            return Err(format!("node {i}: {seen:?}"));
        }
    }
    Ok(())
}
