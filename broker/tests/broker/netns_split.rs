//! Network splits of a 5-node mesh with 3 metadata voters, each node in its own network
//! namespace (root only; skipped with a message otherwise). Only the side holding a voter quorum
//! can change metadata, also when it is the smaller side; membership sees the other side dead
//! during the split and alive after; once the split heals every node agrees on one metadata
//! version, with the quorum side's topics and nothing of what the other side was asked to do.

use crate::support::netns;
use crate::support::wait_until_blocking;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::support::netns::Net;

const READY: Duration = Duration::from_secs(45);
const REQUEST: Duration = Duration::from_secs(10);
/// Failure detection declares a silent node dead within ~4 s; leave room on a loaded machine.
const DETECT: Duration = Duration::from_secs(15);

/// Kafka error codes a CreateTopics may fail with while no quorum is reachable.
const NOT_CONTROLLER: i16 = 41;
const REQUEST_TIMED_OUT: i16 = 7;

/// A formed 5-node cluster: node `i` runs on host `i`.
struct Five {
    net: Net,
    peers: Vec<String>,
    voters: Vec<usize>,
    learners: Vec<usize>,
    leader: usize,
}

impl Five {
    fn index_of(&self, peer: &str) -> Option<usize> {
        self.peers.iter().position(|p| p == peer)
    }

    /// Each node in `side` sees exactly `side` alive and every other node of the five dead.
    fn sees(&self, side: &[usize]) -> Result<(), String> {
        for &i in side {
            let members = self.net.node(i).members()?;
            let states: BTreeMap<usize, String> = members
                .iter()
                .filter_map(|m| self.index_of(&m.peer_id).map(|j| (j, m.state.clone())))
                .collect();
            for j in 0..self.peers.len() {
                if j == i {
                    continue;
                }
                let want = if side.contains(&j) { "alive" } else { "dead" };
                if states.get(&j).map(String::as_str) != Some(want) {
                    return Err(format!("node {i} sees {states:?}; wants node {j} {want}"));
                }
            }
        }
        Ok(())
    }

    /// Every node's image is at one metadata version and lists `present` and none of `absent`.
    fn converged(&self, present: &[&str], absent: &[&str]) -> Result<u64, String> {
        let mut versions = BTreeMap::new();
        for i in 0..self.peers.len() {
            let node = self.net.node(i);
            versions.insert(i, node.metadata_version()?);
            let topics = node.metadata(REQUEST)?.topics;
            for topic in present {
                if !topics.iter().any(|t| t == topic) {
                    return Err(format!("node {i} lists {topics:?}, without {topic}"));
                }
            }
            for topic in absent {
                assert!(
                    !topics.iter().any(|t| t == topic),
                    "node {i} lists {topic}, which was asked for where no quorum was: {topics:?}"
                );
            }
        }
        let distinct: BTreeSet<u64> = versions.values().copied().collect();
        if distinct.len() == 1 {
            Ok(*distinct.first().unwrap())
        } else {
            Err(format!("metadata versions differ: {versions:?}"))
        }
    }
}

/// Five nodes, all started at once with `--bootstrap-expect 5` and mDNS (no bootstrap address),
/// waited for until every node sees all five alive, in one metadata log of 3 voters and 2
/// learners, with a leader.
fn form_five() -> Five {
    let started = Instant::now();
    let mut net = Net::new(5);
    let ids: Vec<usize> = (0..5)
        .map(|h| net.start_node(h, &["--bootstrap-expect", "5"]))
        .collect();
    net.wait_ready(&ids, READY);
    let peers: Vec<String> = ids.iter().map(|&i| net.node(i).peer_id()).collect();
    let all: BTreeSet<String> = peers.iter().cloned().collect();
    let waiting = Instant::now();
    let leader_peer = wait_until_blocking(
        Duration::from_secs(30),
        "5 alive members, 3 voters and 2 learners on every node",
        || {
            let mut leaders = BTreeSet::new();
            for &i in &ids {
                let node = net.node(i);
                let alive: BTreeSet<String> = node
                    .members()?
                    .into_iter()
                    .filter(|m| m.state == "alive")
                    .map(|m| m.peer_id)
                    .collect();
                let others: BTreeSet<String> =
                    all.iter().filter(|p| **p != peers[i]).cloned().collect();
                if !others.is_subset(&alive) {
                    return Err(format!("node {i} sees alive {alive:?}"));
                }
                let (voters, learners) = node.metadata_members()?;
                let in_log: BTreeSet<String> = voters.iter().chain(&learners).cloned().collect();
                if voters.len() != 3 || in_log != all {
                    return Err(format!(
                        "node {i}: voters {voters:?}, learners {learners:?}"
                    ));
                }
                let cluster = node.cluster()?;
                let leader = cluster["metadata"]["leader_peer_id"]
                    .as_str()
                    .ok_or_else(|| format!("node {i} knows no leader"))?
                    .to_string();
                leaders.insert(leader);
            }
            if leaders.len() == 1 {
                Ok(leaders.into_iter().next().unwrap())
            } else {
                Err(format!("leaders differ: {leaders:?}"))
            }
        },
    );
    let took = waiting.elapsed();
    let (voter_peers, _) = net.node(0).metadata_members().unwrap();
    let voters: Vec<usize> = (0..5)
        .filter(|&i| voter_peers.contains(&peers[i]))
        .collect();
    let learners: Vec<usize> = (0..5).filter(|i| !voters.contains(i)).collect();
    let leader = peers.iter().position(|p| *p == leader_peer).unwrap();
    eprintln!(
        "formed 5 nodes in {:?} (settled {took:?} after ready): voters {voters:?}, learners {learners:?}, leader {leader}",
        started.elapsed()
    );
    Five {
        net,
        peers,
        voters,
        learners,
        leader,
    }
}

/// Creates `topic` through node `i`, retrying retriable errors (a new leader being elected)
/// until `timeout`.
fn create_on_quorum_side(five: &Five, i: usize, topic: &str, timeout: Duration) -> Duration {
    let waiting = Instant::now();
    wait_until_blocking(
        timeout,
        &format!("creating {topic} through node {i}"),
        || match five.net.node(i).create_topic(topic, 2, 2, REQUEST) {
            Ok(_) => Ok(()),
            Err((code, message)) if matches!(code, NOT_CONTROLLER | REQUEST_TIMED_OUT | -1) => {
                Err(format!("error {code}: {message}"))
            }
            Err((code, message)) => panic!("creating {topic} through node {i}: {code} {message}"),
        },
    );
    waiting.elapsed()
}

/// CreateTopics through node `i` must fail with a retriable error, or get no answer.
fn creation_refused(five: &Five, i: usize, topic: &str) -> String {
    let started = Instant::now();
    let outcome = five.net.node(i).create_topic(topic, 2, 2, REQUEST);
    match outcome {
        Ok(id) => panic!("node {i} created {topic} ({id}) without a voter quorum"),
        Err((code, message)) => {
            assert!(
                matches!(code, NOT_CONTROLLER | REQUEST_TIMED_OUT | -1),
                "creating {topic} through node {i} failed with {code} ({message}); wants NOT_CONTROLLER, REQUEST_TIMED_OUT or no answer"
            );
            format!("error {code} after {:?}", started.elapsed())
        }
    }
}

/// The split, the checks on both sides, the heal and the convergence, for a split into
/// `quorum_side` (holding 2 or 3 voters) and `other_side`.
fn split_and_heal(five: &Five, quorum_side: &[usize], other_side: &[usize], tag: &str) {
    let before = five.net.node(quorum_side[0]).metadata_version().unwrap();
    five.net.split(other_side);
    let split_at = Instant::now();
    let waiting = Instant::now();
    wait_until_blocking(DETECT, "each side to see the other dead", || {
        five.sees(quorum_side)?;
        five.sees(other_side)
    });
    let took = waiting.elapsed();
    eprintln!("{tag}: each side sees the other dead {took:?} after the split");

    let quorum_topic = format!("{tag}-quorum-side");
    let other_topic = format!("{tag}-other-side");
    let took = create_on_quorum_side(five, quorum_side[0], &quorum_topic, Duration::from_secs(30));
    eprintln!(
        "{tag}: {quorum_topic} created through node {} {took:?} after the first try ({:?} after the split)",
        quorum_side[0],
        split_at.elapsed()
    );
    for &i in other_side {
        let refused = creation_refused(five, i, &format!("{other_topic}-{i}"));
        eprintln!("{tag}: node {i} (no quorum) refused a creation: {refused}");
    }
    // The other side's images stay where they were when the split began.
    for &i in other_side {
        let topics = five.net.node(i).metadata(REQUEST).unwrap().topics;
        assert!(
            !topics.contains(&quorum_topic),
            "node {i} across the split lists {quorum_topic}"
        );
    }
    let during = five.net.node(quorum_side[0]).metadata_version().unwrap();
    assert!(
        during > before,
        "the quorum side's metadata did not move: {before} -> {during}"
    );
    five.sees(quorum_side).unwrap();
    five.sees(other_side).unwrap();

    five.net.heal();
    let healed_at = Instant::now();
    let all: Vec<usize> = (0..5).collect();
    let waiting = Instant::now();
    wait_until_blocking(DETECT, "every node to see all alive after the heal", || {
        five.sees(&all)
    });
    let took = waiting.elapsed();
    eprintln!("{tag}: all alive again {took:?} after the heal");
    let absent: Vec<String> = other_side
        .iter()
        .map(|i| format!("{other_topic}-{i}"))
        .collect();
    let absent: Vec<&str> = absent.iter().map(String::as_str).collect();
    let waiting = Instant::now();
    let version = wait_until_blocking(
        Duration::from_secs(30),
        "one metadata version on every node after the heal",
        || five.converged(&[&quorum_topic], &absent),
    );
    let took = waiting.elapsed();
    eprintln!(
        "{tag}: every node at metadata version {version} {took:?} after the heal ({:?} in all)",
        healed_at.elapsed()
    );
    // Metadata still changes, through a node that was cut off.
    let after = format!("{tag}-after-heal");
    create_on_quorum_side(five, other_side[0], &after, Duration::from_secs(30));
    wait_until_blocking(
        Duration::from_secs(15),
        "the post-heal topic everywhere",
        || five.converged(&[&quorum_topic, &after], &absent),
    );
}

#[test]
fn process_netns_split_three_voters_against_two_learners() {
    let test = "process_netns_split_three_voters_against_two_learners";
    if !netns::available(test) {
        return;
    }
    let started = Instant::now();
    let five = form_five();
    // 3/2: the majority side holds every voter.
    let quorum_side = five.voters.clone();
    let other_side = five.learners.clone();
    split_and_heal(&five, &quorum_side, &other_side, "majority");
    eprintln!("{test}: {:?}", started.elapsed());
}

#[test]
fn process_netns_split_where_the_smaller_side_holds_the_voter_quorum() {
    let test = "process_netns_split_where_the_smaller_side_holds_the_voter_quorum";
    if !netns::available(test) {
        return;
    }
    let started = Instant::now();
    let five = form_five();
    // 2/3: two voters alone against the third voter and both learners. The leader goes to the
    // larger side, so the smaller one must elect a new leader before it can change anything.
    let quorum_side: Vec<usize> = five
        .voters
        .iter()
        .copied()
        .filter(|&v| v != five.leader)
        .collect();
    let mut other_side = five.learners.clone();
    other_side.push(five.leader);
    other_side.sort_unstable();
    assert_eq!((quorum_side.len(), other_side.len()), (2, 3));
    split_and_heal(&five, &quorum_side, &other_side, "minority");
    eprintln!("{test}: {:?}", started.elapsed());
}
