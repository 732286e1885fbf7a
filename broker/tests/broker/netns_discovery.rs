//! mDNS discovery between network namespaces (root only; skipped with a message otherwise):
//! nodes on one bridge with no bootstrap address find each other and form one cluster (with a
//! cluster key: the hosts' addresses are not loopback), nodes with another key or none are found
//! but refused, and a second cluster formed later on the same bridge stays apart from the first.

use crate::support::netns;
use crate::support::wait_until_blocking;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::netns::{Net, NetNode};

const READY: Duration = Duration::from_secs(45);
const REQUEST: Duration = Duration::from_secs(10);

/// Checks that `nodes` form one cluster on their own: each sees exactly these peers, all alive,
/// the same cluster id (in `/cluster` and in Metadata), three voters of the metadata log among
/// them and every node in the log. Returns the cluster id.
fn one_cluster(nodes: &[&NetNode]) -> Result<String, String> {
    let peers: BTreeSet<String> = nodes.iter().map(|n| n.peer_id()).collect();
    let mut ids = BTreeSet::new();
    for node in nodes {
        let members = node.members()?;
        let alive: BTreeSet<String> = members
            .iter()
            .filter(|m| m.state == "alive" && peers.contains(&m.peer_id))
            .map(|m| m.peer_id.clone())
            .collect();
        if alive != peers {
            return Err(format!(
                "{} sees {members:?}, wants all of {peers:?} alive",
                node.ip
            ));
        }
        let (voters, learners) = node.metadata_members()?;
        let in_log: BTreeSet<String> = voters.iter().chain(&learners).cloned().collect();
        if in_log != peers || voters.len() != 3.min(peers.len()) {
            return Err(format!(
                "{} has voters {voters:?} and learners {learners:?}, wants {peers:?}",
                node.ip
            ));
        }
        let cluster = node.cluster()?;
        let id = cluster["cluster_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let metadata = node.metadata(REQUEST)?;
        if metadata.cluster_id.as_deref() != Some(id.as_str()) || id.is_empty() {
            return Err(format!(
                "{}: /cluster says cluster {id:?}, Metadata says {:?}",
                node.ip, metadata.cluster_id
            ));
        }
        ids.insert(id);
    }
    if ids.len() != 1 {
        return Err(format!("cluster ids differ: {ids:?}"));
    }
    Ok(ids.into_iter().next().unwrap())
}

/// Waits until every node's Metadata lists `topic`.
fn topic_visible(nodes: &[&NetNode], topic: &str) -> Result<(), String> {
    for node in nodes {
        let metadata = node.metadata(REQUEST)?;
        if !metadata.topics.iter().any(|t| t == topic) {
            return Err(format!("{} lists {:?}", node.ip, metadata.topics));
        }
    }
    Ok(())
}

#[test]
fn process_netns_mdns_nodes_find_each_other_and_form_one_cluster() {
    let test = "process_netns_mdns_nodes_find_each_other_and_form_one_cluster";
    if !netns::available(test) {
        return;
    }
    let started = Instant::now();
    let mut net = Net::new(3);
    // No --bootstrap anywhere: only mDNS on the bridge can bring them together.
    let ids: Vec<usize> = (0..3)
        .map(|h| net.start_node(h, &["--bootstrap-expect", "3"]))
        .collect();
    net.wait_ready(&ids, READY);
    let formed_after = started.elapsed();
    let nodes: Vec<&NetNode> = ids.iter().map(|&i| net.node(i)).collect();
    let waiting = Instant::now();
    let cluster_id = wait_until_blocking(Duration::from_secs(20), "one cluster of 3", || {
        one_cluster(&nodes)
    });
    let took = waiting.elapsed();
    eprintln!("formed in {formed_after:?}; all 3 alive with one cluster id {took:?} later");

    let topic = "mdns-topic";
    nodes[0]
        .create_topic(topic, 3, 3, REQUEST)
        .unwrap_or_else(|e| panic!("creating {topic} through {}: {e:?}", nodes[0].ip));
    let waiting = Instant::now();
    wait_until_blocking(Duration::from_secs(10), "the topic on every node", || {
        topic_visible(&nodes, topic)
    });
    let took = waiting.elapsed();
    eprintln!("{topic} visible through every node after {took:?}");
    let metadata = nodes[1].metadata(REQUEST).unwrap();
    assert_eq!(metadata.cluster_id.as_deref(), Some(cluster_id.as_str()));
    assert_eq!(metadata.brokers.len(), 3, "{metadata:?}");

    // Two intruders on the same bridge, found by mDNS both ways: one with another cluster key,
    // one with none (an open mesh, which a non-loopback address needs said explicitly). Neither
    // gets in, and both sides say why.
    let other_key = net.key_file().with_file_name("other.key");
    rafka_mesh::ClusterKey::generate_file(&other_key).unwrap();
    let other_key = other_key.to_str().unwrap().to_string();
    let wrong = net.add_host();
    let wrong = net.start_node(wrong, &["--cluster-key-file", &other_key]);
    let open = net.add_host();
    let open = net.start_node(open, &["--insecure-open-mesh"]);
    let waiting = Instant::now();
    wait_until_blocking(
        Duration::from_secs(30),
        "refusals logged on both sides",
        || {
            // A keyless side learns it from the peer's first bytes, or from the peer closing
            // on its own first bytes.
            let expect = [
                (wrong, &["refused: wrong cluster key"][..]),
                (
                    open,
                    &[
                        "refused: peer requires a cluster key",
                        "it may require a cluster key",
                    ],
                ),
                (ids[0], &["refused: wrong cluster key"]),
                (ids[0], &["refused: peer has no cluster key"]),
            ];
            for (i, lines) in expect {
                let log = net.node(i).log_text();
                if !lines.iter().any(|line| log.contains(line)) {
                    return Err(format!("node {i} has not logged {lines:?} yet"));
                }
            }
            Ok(())
        },
    );
    let took = waiting.elapsed();
    eprintln!("intruders refused within {took:?}");
    assert!(!net.is_ready(wrong) && !net.is_ready(open));
    let nodes: Vec<&NetNode> = ids.iter().map(|&i| net.node(i)).collect();
    for node in &nodes {
        let members = node.members().unwrap();
        assert_eq!(members.len(), 3, "{} lets in {members:?}", node.ip);
    }
    one_cluster(&nodes).unwrap();
    eprintln!("{test}: {:?}", started.elapsed());
}

/// Whether any node in `nodes` has a peer of `others` in its metadata log; an error names it.
fn log_holds_none_of(nodes: &[&NetNode], others: &BTreeSet<String>) -> Result<(), String> {
    for node in nodes {
        // A node that does not answer (still starting) holds nobody.
        let Ok((voters, learners)) = node.metadata_members() else {
            continue;
        };
        if voters.iter().chain(&learners).any(|p| others.contains(p)) {
            return Err(format!(
                "{} has voters {voters:?} and learners {learners:?}, including peers of the other cluster {others:?}",
                node.ip
            ));
        }
    }
    Ok(())
}

#[test]
fn process_netns_two_clusters_on_one_bridge_stay_separate() {
    let test = "process_netns_two_clusters_on_one_bridge_stay_separate";
    if !netns::available(test) {
        return;
    }
    let started = Instant::now();
    let mut net = Net::new(6);
    let x: Vec<usize> = (0..3)
        .map(|h| net.start_node(h, &["--bootstrap-expect", "3"]))
        .collect();
    net.wait_ready(&x, READY);
    let x_nodes: Vec<&NetNode> = x.iter().map(|&i| net.node(i)).collect();
    let x_id = wait_until_blocking(Duration::from_secs(20), "cluster X of 3", || {
        one_cluster(&x_nodes)
    });
    let x_peers: BTreeSet<String> = x_nodes.iter().map(|n| n.peer_id()).collect();
    eprintln!("cluster X {x_id} formed after {:?}", started.elapsed());

    // Cluster Y starts fresh on the same bridge, where X's nodes answer mDNS and gossip.
    let y: Vec<usize> = (3..6)
        .map(|h| net.start_node(h, &["--bootstrap-expect", "3"]))
        .collect();
    let y_started = Instant::now();
    loop {
        let x_nodes: Vec<&NetNode> = x.iter().map(|&i| net.node(i)).collect();
        let y_nodes: Vec<&NetNode> = y.iter().map(|&i| net.node(i)).collect();
        if let Err(e) = log_holds_none_of(&y_nodes, &x_peers) {
            panic!("while Y forms: {e}");
        }
        // Y's peer ids are known once its nodes are ready; until then X must hold only X.
        let (x_voters, x_learners) = x_nodes[0].metadata_members().unwrap();
        for peer in x_voters.iter().chain(&x_learners) {
            assert!(
                x_peers.contains(peer),
                "while Y forms, X's metadata log took in {peer} (voters {x_voters:?}, learners {x_learners:?})"
            );
        }
        if y.iter().all(|&i| net.is_ready(i)) {
            break;
        }
        assert!(
            y_started.elapsed() < READY,
            "cluster Y did not form within {READY:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let x_nodes: Vec<&NetNode> = x.iter().map(|&i| net.node(i)).collect();
    let y_nodes: Vec<&NetNode> = y.iter().map(|&i| net.node(i)).collect();
    let y_peers: BTreeSet<String> = y_nodes.iter().map(|n| n.peer_id()).collect();
    let y_id = wait_until_blocking(Duration::from_secs(20), "cluster Y of 3", || {
        one_cluster(&y_nodes)
    });
    eprintln!(
        "cluster Y {y_id} formed {:?} after its nodes started",
        y_started.elapsed()
    );
    assert_ne!(x_id, y_id, "Y took X's cluster id");

    x_nodes[0]
        .create_topic("x-topic", 2, 3, REQUEST)
        .unwrap_or_else(|e| panic!("creating x-topic in X: {e:?}"));
    y_nodes[1]
        .create_topic("y-topic", 2, 3, REQUEST)
        .unwrap_or_else(|e| panic!("creating y-topic in Y: {e:?}"));
    wait_until_blocking(Duration::from_secs(10), "x-topic in X", || {
        topic_visible(&x_nodes, "x-topic")
    });
    wait_until_blocking(Duration::from_secs(10), "y-topic in Y", || {
        topic_visible(&y_nodes, "y-topic")
    });

    // For several controller rounds (one a second), each cluster keeps to itself: metadata log,
    // cluster id, topics, and the brokers Metadata lists.
    let x_hosts: BTreeSet<String> = x_nodes.iter().map(|n| n.kafka().to_string()).collect();
    let y_hosts: BTreeSet<String> = y_nodes.iter().map(|n| n.kafka().to_string()).collect();
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(6) {
        log_holds_none_of(&x_nodes, &y_peers).unwrap();
        log_holds_none_of(&y_nodes, &x_peers).unwrap();
        for (nodes, id, topic, hosts) in [
            (&x_nodes, &x_id, "x-topic", &x_hosts),
            (&y_nodes, &y_id, "y-topic", &y_hosts),
        ] {
            for node in nodes {
                let metadata = node.metadata(REQUEST).unwrap();
                assert_eq!(metadata.cluster_id.as_ref(), Some(id), "{}", node.ip);
                assert_eq!(metadata.topics, vec![topic.to_string()], "{}", node.ip);
                let brokers: BTreeSet<String> =
                    metadata.brokers.iter().map(|(_, h)| h.clone()).collect();
                assert_eq!(&brokers, hosts, "brokers listed by {}", node.ip);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // Membership: what each side makes of the other's nodes.
    for node in x_nodes.iter().chain(&y_nodes) {
        let members = node.members().unwrap();
        let summary: Vec<String> = members
            .iter()
            .map(|m| format!("{}:{}", &m.peer_id[m.peer_id.len() - 6..], m.state))
            .collect();
        eprintln!("{} membership: {summary:?}", node.ip);
    }
    eprintln!("{test}: {:?}", started.elapsed());
}
