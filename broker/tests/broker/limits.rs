//! Bounded resources (issue 12 point 3): each limit refuses or delays with a clear answer, and
//! the node stays within it.
//!
//! - CreateTopics: at most `--max-partitions-per-request` partitions over one request
//!   (POLICY_VIOLATION at once, as Kafka since KAFKA-17870) and `--max-partitions-per-node`
//!   replicas on any node;
//! - `--max-connections-per-ip`: a connection over the limit is closed at once;
//! - the p2p listeners (`--p2p-max-connections-per-peer`, `--p2p-max-incoming-connections`,
//!   `--p2p-max-pending-connections`): connections over a limit are closed and counted, and a
//!   client still gets its request answered over the mesh;
//! - DeleteTopics of a large topic is answered once the topic is gone from the metadata; its logs
//!   are deleted in the background while other requests are answered;
//! - `--max-metric-series`: /metrics stays small with many partitions, and says what it left out,
//!   per-group series included;
//! - `--queued-max-request-bytes`: eight clients each sending 90 MB of a declared 100 MiB frame
//!   keep the node's RSS under its idle RSS plus the budget plus [`RSS_MARGIN`], and the node
//!   keeps answering small requests meanwhile.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreateTopicsRequest, DeleteTopicsRequest, FindCoordinatorRequest,
    MetadataRequest,
};

use crate::support::process::NodeProcess;
use crate::support::raw::RawClient;
use crate::support::{TestNode, cluster, wait_until, wait_until_blocking, wire};

const POLICY_VIOLATION: i16 = ResponseError::PolicyViolation.code();

/// A CreateTopics (v7) of `topics` (name, partitions), replication factor 1.
fn create_request(topics: &[(&str, i32)]) -> CreateTopicsRequest {
    CreateTopicsRequest::default()
        .with_topics(
            topics
                .iter()
                .map(|(name, partitions)| wire::creatable(name, *partitions, 1, &[]))
                .collect(),
        )
        .with_timeout_ms(30_000)
}

/// Whether the node's metadata knows `topic`.
async fn exists(client: &mut RawClient, topic: &str) -> bool {
    let response = client.send(&MetadataRequest::default(), 12).await;
    response
        .topics
        .iter()
        .any(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
}

#[tokio::test]
async fn a_create_topics_over_the_partition_limit_is_refused_at_once_with_policy_violation() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;

    // The request: 100,000 partitions in one topic.
    let started = Instant::now();
    let response = client
        .send(&create_request(&[("huge", 100_000)]), wire::CREATE_TOPICS)
        .await;
    let took = started.elapsed();
    let result = &response.topics[0];
    assert_eq!(
        result.error_code, POLICY_VIOLATION,
        "{:?}",
        result.error_message
    );
    let message = result.error_message.as_ref().unwrap().to_string();
    assert!(
        message.contains("100000") && message.contains("--max-partitions-per-request"),
        "{message}"
    );
    assert!(took < Duration::from_secs(1), "refused after {took:?}");

    // The limit counts the whole request: two topics of 6,000 fail together, and neither exists.
    let response = client
        .send(
            &create_request(&[("half-a", 6_000), ("half-b", 6_000)]),
            wire::CREATE_TOPICS,
        )
        .await;
    let codes: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, [POLICY_VIOLATION, POLICY_VIOLATION]);
    assert!(!exists(&mut client, "huge").await);
    assert!(!exists(&mut client, "half-a").await);

    // Within the limit, topics are created as before.
    let response = client
        .send(&create_request(&[("fits", 4)]), wire::CREATE_TOPICS)
        .await;
    assert_eq!(response.topics[0].error_code, 0);
    wire::stop(node).await;
}

#[tokio::test]
async fn a_topic_that_would_put_more_replicas_on_a_node_than_its_limit_is_refused() {
    // The group offsets topic of the test node takes 2 of the 12.
    let node = TestNode::start_with(|c| c.max_partitions_per_node = 12).await;
    let mut client = node.connect().await;
    wire::find_coordinator(&mut client, "limits").await;
    let created = client
        .send(&create_request(&[("first", 8)]), wire::CREATE_TOPICS)
        .await;
    assert_eq!(created.topics[0].error_code, 0);

    let refused = client
        .send(&create_request(&[("second", 3)]), wire::CREATE_TOPICS)
        .await;
    let result = &refused.topics[0];
    assert_eq!(
        result.error_code, POLICY_VIOLATION,
        "{:?}",
        result.error_message
    );
    let message = result.error_message.as_ref().unwrap().to_string();
    assert!(message.contains("--max-partitions-per-node"), "{message}");
    assert!(!exists(&mut client, "second").await);

    let fits = client
        .send(&create_request(&[("second", 2)]), wire::CREATE_TOPICS)
        .await;
    assert_eq!(
        fits.topics[0].error_code, 0,
        "{:?}",
        fits.topics[0].error_message
    );
    wire::stop(node).await;
}

#[tokio::test]
async fn connections_over_the_per_address_limit_are_closed_and_a_closed_one_frees_its_place() {
    let node = TestNode::start_with(|c| c.max_connections_per_ip = 3).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut client = node.connect().await;
        let versions = client.send(&ApiVersionsRequest::default(), 3).await;
        assert_eq!(versions.error_code, 0);
        open.push(client);
    }
    let mut fourth = wire::Socket::connect(node.kafka_addr()).await;
    assert!(
        fourth.is_closed().await,
        "a fourth connection from 127.0.0.1"
    );

    drop(open.pop());
    // The node counts the closed connection out once its task has ended.
    wait_until(
        wire::DEADLINE,
        "a place freed by a closed connection",
        async || {
            let mut socket = wire::Socket::connect(node.kafka_addr()).await;
            let frame = wire::frame(&ApiVersionsRequest::default(), 3, 1);
            socket.write(&frame).await.ok()?;
            socket.read_frame().await
        },
    )
    .await;
    wire::stop(node).await;
}

#[tokio::test]
async fn p2p_connections_over_the_pending_limit_are_closed_and_a_closed_one_frees_its_place() {
    let node = TestNode::start_with(|c| c.p2p_max_pending_connections = 1).await;
    let p2p = &node.node.as_ref().unwrap().addresses().p2p[0];
    let port = p2p
        .iter()
        .find_map(|p| match p {
            rafka_mesh::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    // A connection that never starts its handshake holds the one pending place...
    let stalled = wire::Socket::connect(addr).await;
    // ...so the next is closed as it is accepted (the node accepts them in order).
    let mut second = wire::Socket::connect(addr).await;
    assert!(
        second.is_closed().await,
        "a second p2p connection in its handshake"
    );
    drop(stalled);
    // The stalled connection closed: the place is free again, and a connection that starts the
    // handshake (libp2p's multistream-select header) is answered in kind.
    wait_until(wire::DEADLINE, "the pending place freed", async || {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = tokio::net::TcpStream::connect(addr).await.ok()?;
        socket.write_all(b"\x13/multistream/1.0.0\n").await.ok()?;
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), socket.read(&mut byte)).await;
        matches!(read, Ok(Ok(1))).then_some(())
    })
    .await;
    wire::stop(node).await;
}

/// A peer that opens `connections` connections to the p2p address `addr` (`/p2p/<id>` included)
/// under one identity of its own, as plain libp2p (tcp, noise, yamux) with no protocol, and keeps
/// every connection the node lets it keep. The watch says how many are open and how many ended
/// (refused by the node, or never established); dropping the returned handle closes them all.
/// Runs on the runtime it is called in.
fn p2p_flood(
    addr: &rafka_mesh::Multiaddr,
    connections: usize,
) -> (
    tokio::sync::watch::Receiver<(usize, usize)>,
    tokio_util::task::AbortOnDropHandle<()>,
) {
    use futures::StreamExt;
    use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
    use libp2p::swarm::{SwarmEvent, dummy};

    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| dummy::Behaviour)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    let Some(rafka_mesh::Protocol::P2p(node)) = addr.iter().last() else {
        panic!("{addr} names no peer");
    };
    for _ in 0..connections {
        let opts = DialOpts::peer_id(node)
            .condition(PeerCondition::Always)
            .addresses(vec![addr.clone()])
            .build();
        swarm.dial(opts).unwrap();
    }
    let (tx, rx) = tokio::sync::watch::channel((0, 0));
    let task = tokio::spawn(async move {
        let (mut open, mut ended) = (0, 0);
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => open += 1,
                SwarmEvent::ConnectionClosed { .. } => {
                    open -= 1;
                    ended += 1;
                }
                SwarmEvent::OutgoingConnectionError { .. } => ended += 1,
                _ => continue,
            }
            tx.send_replace((open, ended));
        }
    });
    (rx, tokio_util::task::AbortOnDropHandle::new(task))
}

/// The node's `rafka_limit_hits_total` for `flag`, 0 before its first hit.
fn limit_hits(node: &NodeProcess, flag: &str) -> Option<f64> {
    let text = node.http_get("/metrics").ok()?;
    let label = format!("limit=\"{flag}\"");
    Some(
        crate::support::mesh_metrics::metric(&text, "rafka_limit_hits_total", Some(&label))
            .unwrap_or(0.0),
    )
}

#[test]
fn process_the_p2p_limit_flags_bound_the_nodes_listener_and_a_client_still_gets_in() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(
        &dir.path().join("n"),
        &[
            "--p2p-max-connections-per-peer",
            "2",
            "--p2p-max-incoming-connections",
            "3",
        ],
    );
    let addr: rafka_mesh::Multiaddr = node.ready.p2p.parse().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _entered = runtime.enter();
    let settled = |flood: &tokio::sync::watch::Receiver<(usize, usize)>, open, ended| {
        wait_until_blocking(wire::DEADLINE, "the flood settled", || {
            let now = *flood.borrow();
            if now == (open, ended) {
                Ok(())
            } else {
                Err(format!("(open, ended) = {now:?}, not {:?}", (open, ended)))
            }
        });
    };
    let hits = |flag: &str, n: f64| {
        wait_until_blocking(wire::DEADLINE, &format!("{n} hits of {flag}"), || {
            limit_hits(&node, flag).is_some_and(|hits| hits == n)
        });
    };

    // One peer opens four connections: two are its own, two are refused per peer.
    let (one, _one) = p2p_flood(&addr, 4);
    settled(&one, 2, 2);
    hits("--p2p-max-connections-per-peer", 2.0);
    // Another peer opens four: one takes the last incoming place, three are refused.
    let (other, other_task) = p2p_flood(&addr, 4);
    settled(&other, 1, 3);
    hits("--p2p-max-incoming-connections", 3.0);
    assert_eq!(
        limit_hits(&node, "--p2p-max-connections-per-peer"),
        Some(2.0)
    );
    let log = node.log_text();
    for flag in [
        "--p2p-max-connections-per-peer",
        "--p2p-max-incoming-connections",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("limit hit") && l.contains(flag) && l.contains("data plane")),
            "no limit line for {flag}:\n{log}"
        );
    }

    // The second peer leaves: a client gets its place and its request is answered over the mesh,
    // while the first peer keeps its two connections.
    drop(other_task);
    wait_until_blocking(wire::DEADLINE, "a CLI request over the mesh", || {
        let out = crate::support::run::run(
            crate::support::run::rafka(&[
                "--bootstrap",
                &node.ready.p2p,
                "topic",
                "create",
                "past-the-flood",
            ]),
            b"",
            wire::DEADLINE,
        );
        if out.status.success() {
            Ok(())
        } else {
            Err(out.stderr_text())
        }
    });
    assert_eq!(one.borrow().0, 2);
}

/// Partitions of the large topic deleted in the background: deleting their logs inline held up
/// the DeleteTopics and every topic change after it for seconds.
const LARGE_TOPIC: i32 = 2_000;

#[tokio::test]
async fn a_large_topic_is_deleted_in_the_background_while_other_requests_are_answered() {
    let node = TestNode::start().await;
    let broker = node.node.as_ref().unwrap().broker().clone();
    let mut client = node.connect().await;
    let small = wire::create_topic(&mut client, "small", 1).await;
    let logs = || broker.store().partitions().len();
    let before = logs();
    let started = Instant::now();
    let created = client
        .send(
            &create_request(&[("large", LARGE_TOPIC)]).with_timeout_ms(600_000),
            wire::CREATE_TOPICS,
        )
        .await;
    assert_eq!(
        created.topics[0].error_code, 0,
        "{:?}",
        created.topics[0].error_message
    );
    let create_took = started.elapsed();
    assert_eq!(logs(), before + LARGE_TOPIC as usize);

    let started = Instant::now();
    let deleted = client
        .send(
            &DeleteTopicsRequest::default()
                .with_topics(vec![
                    DeleteTopicState::default().with_name(Some(wire::topic_name("large"))),
                ])
                .with_timeout_ms(30_000),
            6,
        )
        .await;
    assert_eq!(
        deleted.responses[0].error_code, 0,
        "{:?}",
        deleted.responses[0].error_message
    );
    let delete_took = started.elapsed();
    // Meanwhile: a produce (the store's writer is shared with the deletion), a topic change
    // (applying its image waits for one batch of deletions at most) and a metadata request.
    let meanwhile = Instant::now();
    wire::produce_values(&mut client, &small, 0, &[b"during the deletion"]).await;
    wire::create_topic(&mut client, "another", 1).await;
    assert!(!exists(&mut client, "large").await);
    let meanwhile_took = meanwhile.elapsed();
    // The logs still to delete once those were answered (the new topic's log is one more).
    let left = logs().saturating_sub(before + 1);
    wait_until(
        Duration::from_secs(600),
        "the large topic's logs deleted",
        async || (logs() == before + 1).then_some(()),
    )
    .await;
    let freed = started.elapsed();
    eprintln!(
        "{LARGE_TOPIC} partitions: created in {create_took:?}; DeleteTopics answered in \
         {delete_took:?}; a produce, a CreateTopics and a Metadata after it in {meanwhile_took:?} \
         with {left} logs still to delete; all deleted {freed:?} after the DeleteTopics"
    );
    assert!(
        left > 0,
        "every log was deleted before the requests after the DeleteTopics were answered"
    );
    assert!(delete_took < Duration::from_secs(10), "{delete_took:?}");
    assert!(
        meanwhile_took < Duration::from_secs(10),
        "{meanwhile_took:?}"
    );
    wire::stop(node).await;
}

/// Samples of `family` in a /metrics text.
fn samples(text: &str, family: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .count()
}

#[test]
fn process_metric_series_are_capped_and_say_what_they_left_out() {
    let dir = tempfile::tempdir().unwrap();
    // Four per-partition families: room for 10 partitions.
    let mut node = NodeProcess::start(&dir.path().join("n"), &["--max-metric-series", "40"]);
    let (code, message) =
        cluster::create_topic(node.ready.kafka, "wide", 50, wire::DEADLINE).unwrap();
    assert_eq!(code, 0, "{message:?}");
    let text = wait_until_blocking(wire::DEADLINE, "the topic's partitions in /metrics", || {
        let text = node.http_get("/metrics").ok()?;
        (samples(&text, "rafka_partition_log_end_offset") > 0).then_some(text)
    });
    for family in [
        "rafka_partition_log_end_offset",
        "rafka_partition_log_start_offset",
        "rafka_partition_high_watermark",
        "rafka_partition_last_stable_offset_lag",
    ] {
        assert_eq!(samples(&text, family), 10, "{family} in:\n{text}");
        assert!(
            text.contains(&format!(
                "rafka_metric_series_dropped{{family=\"{family}\"}} 40\n"
            )),
            "{text}"
        );
    }
    // The hit is counted as that scrape is written: the next scrape shows it.
    let next = node.http_get("/metrics").unwrap();
    assert!(
        next.contains("rafka_limit_hits_total{limit=\"--max-metric-series\"}"),
        "{next}"
    );
    assert!(
        node.log_text().contains("limit hit") && node.log_text().contains("--max-metric-series"),
        "one log line for the limit"
    );

    // A group's lag series share the cap: the partitions took all of it, so the group's series
    // is left out, and counted.
    let find = FindCoordinatorRequest::default().with_key(wire::str("capped"));
    let commit = wire::simple_commit("capped", "wide", 0);
    wait_until_blocking(
        wire::DEADLINE,
        "an offset committed by group capped",
        || {
            cluster::kafka_call(node.ready.kafka, &find, 3, wire::DEADLINE).ok()?;
            let response =
                cluster::kafka_call(node.ready.kafka, &commit, 8, wire::DEADLINE).ok()?;
            (response.topics[0].partitions[0].error_code == 0).then_some(())
        },
    );
    let text = wait_until_blocking(
        wire::DEADLINE,
        "the group's lag counted in /metrics",
        || {
            let text = node.http_get("/metrics").ok()?;
            text.contains("rafka_metric_series_dropped{family=\"rafka_group_lag\"} 1\n")
                .then_some(text)
        },
    );
    assert_eq!(samples(&text, "rafka_group_lag"), 0, "{text}");
    node.kill();
}

/// The resident set of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

/// The node's `rafka_request_bytes_in_flight{kind="large"}`.
fn large_in_flight(node: &NodeProcess) -> Option<f64> {
    let text = node.http_get("/metrics").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("rafka_request_bytes_in_flight{kind=\"large\"} "))
        .and_then(|v| v.parse().ok())
}

const MIB: u64 = 1024 * 1024;
/// The request-bytes budget of the test (the default is 256 MiB).
const BUDGET: u64 = 256 * MIB;
/// What the node may use beyond its idle RSS and the budget: the tokio and socket buffers of
/// nine connections, the allocator's slack, the metrics text.
const RSS_MARGIN: u64 = 64 * MIB;
const CLIENTS: usize = 8;
const DECLARED: usize = 100 * 1024 * 1024;
const SENT: usize = 90 * 1000 * 1000;

#[test]
fn process_eight_clients_sending_90_mb_frames_keep_the_node_within_its_request_budget() {
    let dir = tempfile::tempdir().unwrap();
    let budget = BUDGET.to_string();
    let mut node = NodeProcess::start(
        &dir.path().join("n"),
        &["--queued-max-request-bytes", &budget],
    );
    let pid = node.child.id();
    // Idle: ready, and one small request answered.
    cluster::kafka_call(
        node.ready.kafka,
        &ApiVersionsRequest::default(),
        3,
        wire::DEADLINE,
    )
    .unwrap();
    let idle = rss(pid);

    // A Produce header, then 90 MB of a declared 100 MiB frame, then silence.
    let mut head = (DECLARED as u32).to_be_bytes().to_vec();
    head.extend_from_slice(&(ApiKey::Produce as i16).to_be_bytes());
    head.extend_from_slice(&9i16.to_be_bytes());
    let body = Arc::new(vec![0u8; SENT]);
    let mut senders = Vec::new();
    for _ in 0..CLIENTS {
        let (head, body) = (head.clone(), body.clone());
        let addr = node.ready.kafka;
        senders.push(std::thread::spawn(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            // The node stops reading the frames it has no budget for: the write then blocks
            // until the node is killed, which ends it with an error.
            let _ = stream
                .write_all(&head)
                .and_then(|()| stream.write_all(&body));
            stream
        }));
    }

    // The budget fills (two frames of 100 MiB fit in 256 MiB); the other six wait unread.
    wait_until_blocking(Duration::from_secs(60), "the request budget in use", || {
        large_in_flight(&node).is_some_and(|bytes| bytes >= 2.0 * DECLARED as f64)
    });
    let bound = idle + BUDGET + RSS_MARGIN;
    let mut peak = 0;
    let watched = Instant::now();
    // Watch for a while as the admitted frames' bodies arrive; meanwhile small requests are
    // answered.
    while watched.elapsed() < Duration::from_secs(5) {
        peak = peak.max(rss(pid));
        let answered = cluster::kafka_call(
            node.ready.kafka,
            &ApiVersionsRequest::default(),
            3,
            wire::DEADLINE,
        );
        assert!(
            answered.is_ok(),
            "a small request while the budget is full: {answered:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let in_flight = large_in_flight(&node).unwrap();
    eprintln!(
        "idle RSS {} MiB, peak {} MiB with {CLIENTS} clients sending 90 MB frames (bound {} MiB: \
         idle + {} MiB budget + {} MiB margin); {} MiB admitted",
        idle / MIB,
        peak / MIB,
        bound / MIB,
        BUDGET / MIB,
        RSS_MARGIN / MIB,
        in_flight as u64 / MIB
    );
    assert!(in_flight <= BUDGET as f64, "admitted {in_flight} bytes");
    assert!(
        peak < bound,
        "RSS reached {} MiB, over idle {} MiB + budget + margin",
        peak / MIB,
        idle / MIB
    );
    assert!(node.log_text().contains("--queued-max-request-bytes"));
    node.kill();
    for sender in senders {
        drop(sender.join().unwrap());
    }
}
