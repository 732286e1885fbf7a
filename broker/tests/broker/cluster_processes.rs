//! The multi-node acceptance tests, with every node a separate `rafka-node` process on loopback
//! (OS-assigned ports, no mDNS, joined through one bootstrap address):
//!
//! - three nodes form a cluster; a topic created through one node is served by every node, and
//!   kcat producing through each node in turn reaches every partition;
//! - a node killed with SIGKILL is `dead` on every other node within 5 s, its partitions report
//!   LEADER_NOT_AVAILABLE, and it comes back `alive` with its old node id and its partitions;
//! - a node stopped with SIGTERM is `left` on every other node within 1 s;
//! - killing the metadata leader elects another, and topic creation works again within 10 s.
//!
//! Times are measured from the signal to the first `/cluster` poll (every 50 ms) that shows the
//! state, so they include up to one poll period. The kcat parts skip with a message when kcat is
//! missing, and fail instead when `RAFKA_REQUIRE_EXTERNAL_CLIENTS=1`.

use crate::support::cluster;
use crate::support::wait_until_blocking;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::cluster::{ClusterView, ProcessCluster, create_topic, partition_leaders};
use crate::support::run::{kcat_available, run};
use kafka_protocol::ResponseError;

/// SIGKILL → `dead` on every other node (the bound at the default settings).
const DEAD_WITHIN: Duration = Duration::from_secs(5);
/// SIGTERM → `left` on every other node.
const LEFT_WITHIN: Duration = Duration::from_secs(1);
/// Metadata leader killed → a topic creation through a survivor succeeds.
const FAILOVER_WITHIN: Duration = Duration::from_secs(10);
/// Heartbeats (one a second) a peer has sent before the detection bound is checked.
const WARM_HEARTBEATS: u64 = 10;
/// Generous bound for the steps that are not measured.
const STEP: Duration = Duration::from_secs(20);

/// Every node's `/cluster` lists `n` members, all alive, each with its own node id.
fn all_alive(n: usize) -> impl Fn(&ClusterView) -> bool {
    move |view| {
        let ids: BTreeSet<i64> = view.members.iter().filter_map(|m| m.node_id).collect();
        view.members.len() == n && view.count("alive") == n && ids.len() == n
    }
}

/// Starts `n` nodes and waits until every node sees all of them alive with distinct node ids.
fn start_cluster(n: usize) -> ProcessCluster {
    let started = Instant::now();
    let cluster = ProcessCluster::start(n, &[]);
    let ready = started.elapsed();
    cluster.wait_all(STEP, "every member alive with a node id", all_alive(n));
    eprintln!(
        "{n} nodes ready in {ready:?}, all alive everywhere after {:?}",
        started.elapsed()
    );
    cluster
}

/// Waits until `topic` has `partitions` partitions, each with a live leader, through `node`.
fn wait_topic_served(cluster: &ProcessCluster, node: usize, topic: &str, partitions: usize) {
    let addr = cluster.kafka(node);
    wait_until_blocking(STEP, &format!("{topic} served by node {node}"), || {
        partition_leaders(addr, topic).is_ok_and(|p| {
            p.len() == partitions
                && p.iter()
                    .all(|&(_, error, leader)| error == 0 && leader >= 0)
        })
    });
}

fn create_or_panic(cluster: &ProcessCluster, node: usize, topic: &str, partitions: i32) {
    let (code, message) = create_topic(
        cluster.kafka(node),
        topic,
        partitions,
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(code, 0, "creating {topic} through node {node}: {message:?}");
}

/// Polls `/cluster` of every node in `observers` until `peer` is in `state` there; returns the
/// time from `since` to the poll that showed it, per observer. Panics after `timeout`.
fn time_until_state(
    cluster: &ProcessCluster,
    observers: &[usize],
    peer: &str,
    state: &str,
    since: Instant,
    timeout: Duration,
) -> BTreeMap<usize, Duration> {
    let mut seen = BTreeMap::new();
    let mut last = BTreeMap::new();
    while seen.len() < observers.len() {
        for &i in observers {
            if seen.contains_key(&i) {
                continue;
            }
            if let Some(view) = cluster.view(i) {
                let now = since.elapsed();
                if view.state_of(peer) == Some(state) {
                    seen.insert(i, now);
                }
                last.insert(i, view.state_of(peer).map(str::to_string));
            }
        }
        assert!(
            since.elapsed() < timeout,
            "{peer} not {state} on every node within {timeout:?}: seen {seen:?}, last states {last:?}"
        );
        std::thread::sleep(cluster::POLL);
    }
    seen
}

#[test]
fn process_cluster_three_nodes_join_and_serve_a_topic_through_any_node() {
    let cluster = start_cluster(3);
    // Every node lists the same peers under the same node ids, and one metadata leader.
    let views: Vec<ClusterView> = (0..3).map(|i| cluster.view(i).unwrap()).collect();
    let ids = |v: &ClusterView| -> BTreeMap<String, Option<i64>> {
        v.members
            .iter()
            .map(|m| (m.peer_id.clone(), m.node_id))
            .collect()
    };
    for view in &views[1..] {
        assert_eq!(ids(view), ids(&views[0]), "nodes disagree on node ids");
        assert_eq!(view.cluster_id, views[0].cluster_id);
    }
    let own_ids: BTreeSet<i64> = views.iter().map(|v| v.node_id).collect();
    assert_eq!(own_ids.len(), 3, "node ids are not distinct: {own_ids:?}");
    assert!(cluster.metadata_leader().is_some(), "no metadata leader");

    // A topic created through node A is served, with every partition led, by node C.
    create_or_panic(&cluster, 0, "orders", 6);
    wait_topic_served(&cluster, 2, "orders", 6);
    let leaders: BTreeSet<i32> = partition_leaders(cluster.kafka(2), "orders")
        .unwrap()
        .iter()
        .map(|&(_, _, leader)| leader)
        .collect();
    assert_eq!(
        leaders,
        own_ids
            .iter()
            .map(|&id| i32::try_from(id).unwrap())
            .collect(),
        "the 6 partitions' leaders should spread over the 3 nodes"
    );

    if !kcat_available() {
        return;
    }
    // kcat producing keyed records through each node in turn: each round reaches every partition
    // (kcat sends each record to its partition's leader, wherever that is).
    const KEYS: usize = 60;
    for round in 0..3 {
        let input: String = (0..KEYS)
            .map(|k| format!("r{round}-key{k}:value {round} {k}\n"))
            .collect();
        let mut kcat = Command::new("kcat");
        kcat.args(["-b", &cluster.kafka(round).to_string()])
            .args(["-P", "-t", "orders", "-K", ":"])
            .args(["-X", "topic.request.required.acks=all"]);
        let out = run(kcat, input.as_bytes(), STEP);
        let stderr = out.stderr_text();
        out.ok();
        assert!(!stderr.contains("ERROR"), "kcat via node {round}: {stderr}");
    }
    let mut kcat = Command::new("kcat");
    kcat.args(["-b", &cluster.kafka(2).to_string()])
        .args(["-C", "-t", "orders", "-o", "beginning", "-e", "-q"])
        .args(["-f", "%p %k\\n"]);
    let consumed = String::from_utf8(run(kcat, b"", STEP).ok()).unwrap();
    let mut partitions_per_round: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    let mut records = 0;
    for line in consumed.lines() {
        let (partition, key) = line.split_once(' ').unwrap();
        let round = key.split('-').next().unwrap().to_string();
        partitions_per_round
            .entry(round)
            .or_default()
            .insert(partition.parse().unwrap());
        records += 1;
    }
    assert_eq!(records, 3 * KEYS, "records read back through node C");
    for (round, partitions) in &partitions_per_round {
        assert_eq!(
            partitions.len(),
            6,
            "records produced in {round} reached only partitions {partitions:?}"
        );
    }
    assert_eq!(partitions_per_round.len(), 3);
}

#[test]
fn process_cluster_sigkilled_node_is_dead_everywhere_and_returns_with_its_node_id() {
    let mut cluster = start_cluster(3);
    create_or_panic(&cluster, 0, "events", 6);
    for node in 0..3 {
        wait_topic_served(&cluster, node, "events", 6);
    }
    // The victim is not the metadata leader: losing that is the failover test's business.
    let leader = cluster.metadata_leader().expect("a metadata leader");
    let victim = (0..3).find(|&i| i != leader).unwrap();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    let (peer, node_id) = cluster.identity(victim);
    let generation = cluster
        .view(survivors[0])
        .unwrap()
        .member(&peer)
        .unwrap()
        .generation;
    let node_id32 = i32::try_from(node_id).unwrap();
    let led: Vec<i32> = partition_leaders(cluster.kafka(leader), "events")
        .unwrap()
        .iter()
        .filter(|&&(_, _, l)| l == node_id32)
        .map(|&(p, _, _)| p)
        .collect();
    assert!(
        !led.is_empty(),
        "node {node_id} leads no partition of events"
    );

    // The bound holds once the failure detectors have sampled the victim's heartbeat rhythm: a
    // peer first heard of starts with a wide window (σ = 500 ms, so a newcomer is not suspected
    // before it heartbeats), and a kill in its first seconds is detected up to ~5.2 s later.
    // Wait (by condition) until every survivor has seen its counter reach WARM_HEARTBEATS.
    cluster.wait_all(STEP, "the victim's heartbeat rhythm learnt", |view| {
        view.member(&peer)
            .is_some_and(|m| m.heartbeat >= WARM_HEARTBEATS)
    });
    let killed = cluster.kill(victim);
    let seen = time_until_state(&cluster, &survivors, &peer, "dead", killed, DEAD_WITHIN * 3);
    let slowest = seen.values().max().copied().unwrap();
    eprintln!("SIGKILL → dead: per observer {seen:?}, everywhere after {slowest:?}");
    assert!(
        slowest < DEAD_WITHIN,
        "dead everywhere only after {slowest:?} (bound {DEAD_WITHIN:?})"
    );

    // Its partitions have no leader (one replica), the others still do; soon it is not listed
    // as a broker any more.
    for &observer in &survivors {
        let addr = cluster.kafka(observer);
        wait_until_blocking(STEP, "the dead node's partitions without a leader", || {
            partition_leaders(addr, "events").is_ok_and(|p| {
                p.iter().all(|&(partition, error, _)| {
                    let expected = if led.contains(&partition) {
                        ResponseError::LeaderNotAvailable.code()
                    } else {
                        0
                    };
                    error == expected
                })
            })
        });
        // Silent for longer than UNLISTED_AFTER (10 s), it is no longer listed as a broker.
        wait_until_blocking(STEP, "the dead node no longer listed as a broker", || {
            cluster::topic_metadata(addr, "events")
                .is_ok_and(|m| m.brokers.iter().all(|b| b.node_id.0 != node_id32))
        });
    }

    // Restarted on its data dir, joining through a survivor: alive everywhere again, with the
    // same node id (a new generation), and leading its partitions again.
    let restarted = Instant::now();
    let bootstrap = cluster.node(survivors[0]).ready.p2p.clone();
    cluster.restart(victim, &bootstrap, &[]);
    let back = cluster.wait_all(STEP, "the restarted node alive with its node id", |view| {
        view.member(&peer).is_some_and(|m| {
            m.state == "alive" && m.node_id == Some(node_id) && m.generation > generation
        }) && view.count("alive") == 3
    });
    eprintln!(
        "restart → alive everywhere: {:?}",
        back.values().max().unwrap()
    );
    assert_eq!(cluster.identity(victim), (peer.clone(), node_id));
    for node in 0..3 {
        wait_topic_served(&cluster, node, "events", 6);
    }
    let leaders = partition_leaders(cluster.kafka(victim), "events").unwrap();
    for partition in &led {
        assert!(
            leaders.contains(&(*partition, 0, node_id32)),
            "partition {partition} not led by node {node_id} again: {leaders:?}"
        );
    }
    eprintln!(
        "restart → partitions led again after {:?}",
        restarted.elapsed()
    );
}

#[test]
fn process_cluster_sigtermed_node_is_left_everywhere_within_a_second() {
    let mut cluster = start_cluster(3);
    let leader = cluster.metadata_leader().expect("a metadata leader");
    let victim = (0..3).rev().find(|&i| i != leader).unwrap();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    let (peer, _) = cluster.identity(victim);

    let node = cluster.nodes[victim].as_ref().unwrap();
    let signalled = Instant::now();
    cluster::signal(node, libc::SIGTERM);
    let seen = time_until_state(
        &cluster,
        &survivors,
        &peer,
        "left",
        signalled,
        LEFT_WITHIN * 10,
    );
    let slowest = seen.values().max().copied().unwrap();
    eprintln!("SIGTERM → left: per observer {seen:?}, everywhere after {slowest:?}");
    let mut node = cluster.nodes[victim].take().unwrap();
    assert!(cluster::wait_exit(&mut node), "SIGTERM: unclean exit");
    assert!(
        slowest < LEFT_WITHIN,
        "left everywhere only after {slowest:?} (bound {LEFT_WITHIN:?})"
    );
    // It stays left (not dead: it said goodbye), while the others stay alive.
    let views: Vec<ClusterView> = survivors
        .iter()
        .map(|&i| cluster.view(i).unwrap())
        .collect();
    for view in views {
        assert_eq!(view.state_of(&peer), Some("left"));
        assert_eq!(view.count("alive"), 2);
    }
}

#[test]
fn process_cluster_killing_the_metadata_leader_elects_another_and_topics_can_be_created() {
    let mut cluster = start_cluster(3);
    create_or_panic(&cluster, 0, "before", 3);
    let leader = cluster.metadata_leader().expect("a metadata leader");
    let (leader_peer, _) = cluster.identity(leader);
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let target = cluster.kafka(survivors[0]);

    // A new creation attempt through a survivor every 200 ms, each on its own connection (an
    // attempt caught in the election may wait up to the propose timeout); the first success ends
    // the measurement.
    let killed = cluster.kill(leader);
    let (tx, rx) = mpsc::channel();
    let mut attempts = 0;
    let created = loop {
        if let Ok((name, elapsed)) = rx.try_recv() {
            break (name, elapsed);
        }
        assert!(
            killed.elapsed() < FAILOVER_WITHIN * 3,
            "no topic created within {:?} of killing the metadata leader",
            FAILOVER_WITHIN * 3
        );
        if Instant::now() >= killed + Duration::from_millis(200) * attempts {
            let name = format!("after-{attempts}");
            let tx = tx.clone();
            std::thread::spawn(move || {
                match create_topic(target, &name, 3, Duration::from_secs(15)) {
                    Ok((0, _)) => {
                        let _ = tx.send((name, killed.elapsed()));
                    }
                    Ok((code, message)) => {
                        eprintln!("{name}: error {code} {message:?} at {:?}", killed.elapsed());
                    }
                    Err(e) => eprintln!("{name}: {e} at {:?}", killed.elapsed()),
                }
            });
            attempts += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (name, elapsed) = created;
    eprintln!("metadata leader SIGKILL → {name} created after {elapsed:?} ({attempts} attempts)");
    assert!(
        elapsed < FAILOVER_WITHIN,
        "topic creation worked again only after {elapsed:?} (bound {FAILOVER_WITHIN:?})"
    );

    // The new leader is a survivor, agreed on by both and gossiped as such.
    let views = cluster.wait_all(STEP, "a new metadata leader gossiped", |view| {
        let leader_peer_id = view.leader_peer_id();
        let gossiped: Vec<&str> = view
            .members
            .iter()
            .filter(|m| m.state == "alive" && m.metadata_role.as_deref() == Some("leader"))
            .map(|m| m.peer_id.as_str())
            .collect();
        leader_peer_id.is_some_and(|l| l != leader_peer) && gossiped == [leader_peer_id.unwrap()]
    });
    eprintln!(
        "new leader gossiped everywhere after {:?}",
        views.values().max().unwrap()
    );
    let new_leader = cluster.metadata_leader().expect("a new metadata leader");
    assert!(survivors.contains(&new_leader));
    // The new topic is known everywhere (its partitions may have gone to the old leader while
    // membership still had it alive: those wait for it, as any partition with one replica does).
    for &node in &survivors {
        let addr = cluster.kafka(node);
        wait_until_blocking(STEP, &format!("{name} known to node {node}"), || {
            partition_leaders(addr, &name).is_ok_and(|p| p.len() == 3)
        });
    }
}
