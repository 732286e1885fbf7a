//! The control plane keeps time while the data plane is saturated.
//!
//! Three `rafka-node` processes on loopback with replication factor 3; `rafka bench produce`
//! (unlimited rate, two producers) writes to a topic whose partitions are led by every node, over
//! the libp2p mesh, and each leader's two followers fetch the records from it over the mesh. So
//! each node's data-plane swarm carries produce requests from the client and replication fetches
//! to and from the other nodes, while its control-plane swarm carries membership heartbeats: both
//! swarms are driven by the same event-loop task on the same tokio runtime, and the three nodes,
//! the producer and this test share the machine's cores. That is what could delay heartbeats, so
//! that is what is loaded.
//!
//! The measure is each node's `rafka_mesh_heartbeat_gap_seconds` histogram (see
//! `rafka_mesh::metrics`): for every heartbeat learnt from a peer, how long the node had gone
//! without news of that peer, as seen by the event loop when it hands the message to the
//! membership core: the sender's tick, gossipsub, both event loops and the scheduler all count.
//! Heartbeats go out every second, so a healthy gap is ~1 s; phi-accrual suspicion starts near
//! 2.3 s. Over a 15 s window of load, on every node:
//!
//! - no heartbeat gap above 2 s, and heartbeats kept arriving from both peers;
//! - `/cluster` (polled every 100 ms) never shows a member other than `alive`;
//! - the load was real: every node received produce requests and sent fetch responses over the
//!   mesh during the window, at least 5 MiB each way.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::cluster::{
    ClusterView, ProcessCluster, create_topic, http_get, partition_leaders,
};
use crate::support::mesh_metrics::{GapWindow, MeshSample};
use crate::support::run::{rafka, spawn};
use crate::support::wait_until_blocking;

const NODES: usize = 3;
/// Partitions of the loaded topic: two led by each node.
const PARTITIONS: i32 = 6;
/// How long the load is measured.
const LOAD_WINDOW: Duration = Duration::from_secs(15);
/// No heartbeat gap may exceed this (suspicion starts near 2.3 s).
const MAX_GAP_SECONDS: f64 = 2.0;
/// Bytes each node must receive (produce) and send (replication fetches) over the mesh during the
/// window for the load to count.
const MIN_LOAD_BYTES: f64 = 5.0 * 1024.0 * 1024.0;
/// Bound of the steps that are not measured.
const STEP: Duration = Duration::from_secs(30);

fn sample(cluster: &ProcessCluster, i: usize) -> MeshSample {
    let text = http_get(cluster.node(i).ready.http, "/metrics").expect("node answers /metrics");
    let sample = MeshSample::parse(&text);
    // A histogram not recorded yet is absent; once present it must have the 2 s bucket.
    assert!(
        sample.gaps == 0.0 || sample.has_bucket(MAX_GAP_SECONDS),
        "the heartbeat-gap histogram lacks a {MAX_GAP_SECONDS} s bucket:\n{text}"
    );
    sample
}

fn all_alive(view: &ClusterView) -> bool {
    let ids: BTreeSet<i64> = view.members.iter().filter_map(|m| m.node_id).collect();
    view.members.len() == NODES && view.count("alive") == NODES && ids.len() == NODES
}

#[test]
fn process_heartbeats_stay_on_time_while_mesh_produce_load_saturates_the_data_plane() {
    let cluster = ProcessCluster::start(NODES, &["--default-replication-factor", "3"]);
    cluster.wait_all(STEP, "every member alive with a node id", all_alive);

    // A topic led by every node, so every node's data plane is loaded.
    let (code, message) = create_topic(cluster.kafka(0), "load", PARTITIONS, STEP).unwrap();
    assert_eq!(code, 0, "create topic: {message:?}");
    wait_until_blocking(STEP, "every partition of `load` led", || {
        partition_leaders(cluster.kafka(0), "load").is_ok_and(|p| {
            p.len() == PARTITIONS as usize && p.iter().all(|&(_, e, leader)| e == 0 && leader >= 0)
        })
    });
    let leaders: BTreeSet<i32> = partition_leaders(cluster.kafka(0), "load")
        .unwrap()
        .into_iter()
        .map(|(_, _, leader)| leader)
        .collect();
    assert_eq!(leaders.len(), NODES, "leaders of `load`: {leaders:?}");

    // Saturating produce load over the mesh (it is killed when `load` is dropped).
    let before: Vec<MeshSample> = (0..NODES).map(|i| sample(&cluster, i)).collect();
    let bootstrap = cluster.node(0).ready.p2p.clone();
    let load = spawn(
        rafka(&[
            "--bootstrap",
            &bootstrap,
            "bench",
            "produce",
            "--topic",
            "load",
            "--records",
            "1000000000",
            "--record-size",
            "100",
            "--acks",
            "1",
            "--producers",
            "2",
            "--report-interval",
            "1",
        ]),
        b"",
    );
    wait_until_blocking(
        STEP,
        "produce load reaching every node over the mesh",
        || (0..NODES).all(|i| sample(&cluster, i).p2p_bytes_in > before[i].p2p_bytes_in + 1e6),
    );

    // The measured window: /cluster polled throughout, the histograms compared at both ends.
    let start: Vec<MeshSample> = (0..NODES).map(|i| sample(&cluster, i)).collect();
    let window_start = Instant::now();
    let mut polls = 0;
    let mut max_ms_ago = 0u64;
    while window_start.elapsed() < LOAD_WINDOW {
        for i in 0..NODES {
            let body = http_get(cluster.node(i).ready.http, "/cluster")
                .unwrap_or_else(|| panic!("node {i} stopped answering /cluster under load"));
            let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
            for member in doc["members"].as_array().unwrap() {
                assert_eq!(
                    member["state"].as_str(),
                    Some("alive"),
                    "node {i} sees a member not alive {:?} under load: {member}",
                    window_start.elapsed()
                );
                max_ms_ago = max_ms_ago.max(member["last_heartbeat_ms_ago"].as_u64().unwrap_or(0));
            }
            polls += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = window_start.elapsed();
    let end: Vec<MeshSample> = (0..NODES).map(|i| sample(&cluster, i)).collect();
    drop(load);

    // Each node hears two peers, one heartbeat a second each; allow a few at the window's edges.
    let expected = (NODES as f64 - 1.0) * (elapsed.as_secs_f64() - 3.0);
    for i in 0..NODES {
        let window = GapWindow::new(&start[i], &end[i]);
        let gaps = window.count();
        let late = window.above(MAX_GAP_SECONDS);
        let mib = window.p2p_bytes_in() / (1024.0 * 1024.0);
        let mib_out = window.p2p_bytes_out() / (1024.0 * 1024.0);
        eprintln!(
            "node {i}: {gaps} heartbeat gaps in {elapsed:?} of load (mean {:.3} s, all <= {} s, \
             {late} above {MAX_GAP_SECONDS} s); over the mesh {mib:.1} MiB in ({:.1} MiB/s), \
             {mib_out:.1} MiB out",
            window.mean(),
            window.quantile_bound(1.0),
            mib / elapsed.as_secs_f64()
        );
        assert!(
            gaps >= expected,
            "node {i} recorded {gaps} heartbeats from its peers in {elapsed:?}, expected >= {expected}"
        );
        assert_eq!(
            late, 0.0,
            "node {i}: {late} heartbeat gaps above {MAX_GAP_SECONDS} s under load"
        );
        assert!(
            window.p2p_bytes_in() >= MIN_LOAD_BYTES,
            "node {i} received only {mib:.1} MiB over the mesh: the load did not reach it"
        );
        assert!(
            window.p2p_bytes_out() >= MIN_LOAD_BYTES,
            "node {i} sent only {mib_out:.1} MiB over the mesh: its followers did not replicate"
        );
    }
    eprintln!(
        "{polls} /cluster polls, every member alive throughout; largest last_heartbeat_ms_ago seen: {max_ms_ago} ms"
    );
}
