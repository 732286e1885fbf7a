//! The Raft-replicated metadata log across nodes on the in-memory transport: formation,
//! proposals on the leader and through followers, failover, restart and catch-up, loss of the
//! majority, snapshots and log purging, five voters, learners and membership changes.
//! Every wait is on a condition with a deadline.

use crate::support::wait_until;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rafka_broker::metadata::raft::memory::MemoryNetwork;
use rafka_broker::metadata::raft::{RaftConfig, RaftNode, RaftNodeId};
use rafka_broker::metadata::{Metadata, MetadataCommand, MetadataError, NodeId, Outcome, RaftRole};

/// Fast timings for tests on an in-memory network.
fn fast() -> RaftConfig {
    RaftConfig {
        heartbeat_interval: Duration::from_millis(100),
        election_timeout_min: Duration::from_millis(500),
        election_timeout_max: Duration::from_millis(1000),
        propose_timeout: Duration::from_secs(3),
        ..RaftConfig::default()
    }
}

struct Member {
    peer: libp2p::PeerId,
    dir: tempfile::TempDir,
    metadata: Option<Metadata>,
}

struct Cluster {
    net: MemoryNetwork,
    config: RaftConfig,
    members: Vec<Member>,
}

impl Cluster {
    /// Opens `n` fresh nodes on one in-memory network (not formed yet).
    async fn open(n: usize, config: RaftConfig) -> Cluster {
        let mut cluster = Cluster {
            net: MemoryNetwork::new(),
            config,
            members: Vec::new(),
        };
        for _ in 0..n {
            cluster.add_member().await;
        }
        cluster
    }

    /// Opens one more fresh node; returns its position.
    async fn add_member(&mut self) -> usize {
        self.members.push(Member {
            peer: libp2p::PeerId::random(),
            dir: tempfile::tempdir().unwrap(),
            metadata: None,
        });
        let i = self.members.len() - 1;
        self.start(i).await;
        i
    }

    /// Opens `n` nodes and forms a cluster of all of them as voters.
    async fn formed(n: usize, config: RaftConfig) -> Cluster {
        let cluster = Cluster::open(n, config).await;
        let voters = (0..n).map(|i| cluster.node(i).node().clone()).collect();
        assert!(cluster.node(0).initialize(voters).await.unwrap());
        cluster
            .leader(&cluster.all(), Duration::from_secs(10))
            .await;
        cluster
    }

    fn raft_node(&self, i: usize) -> RaftNode {
        RaftNode::new(&self.members[i].peer, vec![format!("/memory/{i}")])
    }

    async fn start(&mut self, i: usize) {
        let node = self.raft_node(i);
        let member = &self.members[i];
        let transport = self.net.transport(&node.peer_id);
        let metadata = Metadata::open(member.dir.path(), node, transport, self.config.clone())
            .await
            .unwrap();
        self.net.register(&metadata);
        self.members[i].metadata = Some(metadata);
    }

    /// Stops node `i` (unreachable, log closed; its data dir stays).
    async fn stop(&mut self, i: usize) {
        let metadata = self.members[i].metadata.take().expect("running");
        self.net.unregister(&metadata.node().peer_id);
        metadata.shutdown().await;
    }

    fn node(&self, i: usize) -> &Metadata {
        self.members[i].metadata.as_ref().expect("running")
    }

    fn peer(&self, i: usize) -> String {
        self.members[i].peer.to_string()
    }

    fn all(&self) -> Vec<usize> {
        (0..self.members.len()).collect()
    }

    fn running(&self) -> Vec<usize> {
        self.all()
            .into_iter()
            .filter(|i| self.members[*i].metadata.is_some())
            .collect()
    }

    fn position(&self, id: RaftNodeId) -> usize {
        self.all()
            .into_iter()
            .find(|i| self.raft_node(*i).id().unwrap() == id)
            .expect("a member")
    }

    /// Waits until every node of `among` names the same leader, itself one of `among`.
    async fn leader(&self, among: &[usize], timeout: Duration) -> usize {
        let mut found = None;
        wait_until(timeout, "one leader agreed on", || {
            let mut leaders = BTreeSet::new();
            for i in among {
                let metrics = self.node(*i).raft_metrics();
                let leader = metrics.borrow().current_leader;
                leaders.insert(leader);
            }
            found = match leaders.into_iter().collect::<Vec<_>>().as_slice() {
                [Some(id)] => Some(self.position(*id)).filter(|i| among.contains(i)),
                _ => None,
            };
            let done = found.is_some();
            async move { done }
        })
        .await;
        found.expect("leader")
    }

    /// Waits until the images of `among` are identical, at `version` or later.
    async fn converged(&self, among: &[usize], version: u64, timeout: Duration) {
        wait_until(timeout, "identical images", || {
            let images: BTreeSet<String> = among
                .iter()
                .map(|i| serde_json::to_string(&*self.node(*i).image()).unwrap())
                .collect();
            let at_version = among
                .iter()
                .all(|i| self.node(*i).image().version >= version);
            async move { images.len() == 1 && at_version }
        })
        .await;
    }
}

fn register(peer: &str) -> MetadataCommand {
    MetadataCommand::RegisterNode {
        peer_id: peer.into(),
        kafka_host: "127.0.0.1".into(),
        kafka_port: 9092,
    }
}

fn allocate() -> MetadataCommand {
    MetadataCommand::AllocateProducerIds { count: 10 }
}

fn form() -> MetadataCommand {
    MetadataCommand::Form {
        cluster_id: "raft-test".into(),
    }
}

fn others(of: usize, among: &[usize]) -> Vec<usize> {
    among.iter().copied().filter(|i| *i != of).collect()
}

#[tokio::test]
async fn three_nodes_agree_on_proposals_from_the_leader_and_through_followers() {
    let started = Instant::now();
    let cluster = Cluster::formed(3, fast()).await;
    let all = cluster.all();
    let leader = cluster.leader(&all, Duration::from_secs(5)).await;
    let followers = others(leader, &all);

    assert_eq!(
        cluster.node(leader).propose(form()).await.unwrap(),
        Outcome::Done
    );
    // Through a follower: forwarded to the leader, and visible here once it returns.
    let follower = cluster.node(followers[0]);
    let outcome = follower.propose(register("peer-a")).await.unwrap();
    assert_eq!(
        outcome,
        Outcome::Registered {
            node_id: NodeId(1),
            broker_epoch: 1
        }
    );
    assert!(
        follower.image().node_by_peer("peer-a").is_some(),
        "read your writes"
    );
    // A refusal travels back as the state machine's error.
    let refused = cluster
        .node(followers[1])
        .propose(MetadataCommand::DeleteTopic {
            topic_id: uuid::Uuid::nil(),
        })
        .await;
    assert!(matches!(refused, Err(MetadataError::UnknownTopic(_))));
    cluster.converged(&all, 2, Duration::from_secs(5)).await;

    let leader_id = cluster.node(leader).node_id();
    for i in &all {
        let status = cluster.node(*i).status().await;
        assert_eq!(status.leader, Some(leader_id));
        assert_eq!(status.voters.len(), 3);
        assert!(status.learners.is_empty());
        assert_eq!(
            status.role,
            if *i == leader {
                RaftRole::Leader
            } else {
                RaftRole::Follower
            }
        );
    }
    wait_until(
        Duration::from_secs(5),
        "everyone applied everything",
        || {
            let done = all.iter().all(|i| {
                let metrics = cluster.node(*i).raft_metrics();
                let m = metrics.borrow();
                m.last_applied.map(|id| id.index) == m.last_log_index
            });
            async move { done }
        },
    )
    .await;
    eprintln!("three nodes: {:?}", started.elapsed());
}

#[tokio::test]
async fn a_new_leader_takes_over_and_a_restarted_node_catches_up() {
    // Mesh timings (300 ms heartbeats, 1.5-3 s elections). openraft 0.9 waits out the leader
    // lease (= election_timeout_max) before the randomised election timeout once a leader was
    // seen, so a failover takes 4.5-6 s plus a tick.
    let mut cluster = Cluster::formed(3, RaftConfig::default()).await;
    let all = cluster.all();
    let old = cluster.leader(&all, Duration::from_secs(10)).await;
    cluster.node(old).propose(form()).await.unwrap();
    cluster.node(old).propose(register("a")).await.unwrap();
    cluster.converged(&all, 2, Duration::from_secs(5)).await;

    let stopped_at = Instant::now();
    cluster.stop(old).await;
    let survivors = cluster.running();
    let new = cluster.leader(&survivors, Duration::from_secs(10)).await;
    let failover = stopped_at.elapsed();
    assert_ne!(new, old);
    assert!(
        failover < Duration::from_secs(8),
        "failover took {failover:?}"
    );
    let follower = others(new, &survivors)[0];
    cluster.node(follower).propose(register("b")).await.unwrap();
    cluster.node(new).propose(allocate()).await.unwrap();
    cluster
        .converged(&survivors, 4, Duration::from_secs(5))
        .await;

    // The old leader comes back from its data dir and catches up as a follower.
    cluster.start(old).await;
    assert!(
        cluster.node(old).image().version >= 2,
        "restored before catching up"
    );
    cluster.converged(&all, 4, Duration::from_secs(10)).await;
    assert_eq!(cluster.leader(&all, Duration::from_secs(10)).await, new);
    assert_eq!(cluster.node(old).status().await.role, RaftRole::Follower);
    cluster.node(old).propose(register("c")).await.unwrap();
    cluster.converged(&all, 5, Duration::from_secs(5)).await;
    eprintln!("failover: {failover:?}");
}

#[tokio::test]
async fn without_a_majority_proposals_fail_retriably_then_succeed_after_healing() {
    let config = fast();
    let timeout = config.propose_timeout;
    let cluster = Cluster::formed(3, config).await;
    let all = cluster.all();
    let leader = cluster.leader(&all, Duration::from_secs(5)).await;
    cluster.node(leader).propose(form()).await.unwrap();
    let followers = others(leader, &all);
    for f in &followers {
        cluster.net.isolate(&cluster.peer(*f));
    }

    for i in [leader, followers[0]] {
        let started = Instant::now();
        let error = cluster.node(i).propose(register("lost")).await.unwrap_err();
        let took = started.elapsed();
        assert!(error.is_retriable(), "{error}");
        assert!(
            matches!(
                error,
                MetadataError::Timeout(_) | MetadataError::NoLeader(_)
            ),
            "{error:?}"
        );
        assert!(took < timeout + Duration::from_secs(1), "took {took:?}");
        eprintln!("node {i} without a majority: {error} after {took:?}");
    }

    cluster.net.heal();
    let leader = cluster.leader(&all, Duration::from_secs(10)).await;
    let outcome = cluster
        .node(leader)
        .propose(register("back"))
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Registered { .. }));
    cluster
        .node(others(leader, &all)[0])
        .propose(allocate())
        .await
        .unwrap();
    cluster.converged(&all, 3, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn snapshots_bound_the_log_and_bring_a_lagging_node_up_to_date() {
    let config = RaftConfig {
        snapshot_after_entries: 20,
        keep_entries_after_snapshot: 0,
        ..fast()
    };
    let cluster = Cluster::formed(3, config).await;
    let all = cluster.all();
    let leader = cluster.leader(&all, Duration::from_secs(5)).await;
    let lagging = others(leader, &all)[0];
    cluster.node(leader).propose(form()).await.unwrap();
    cluster.converged(&all, 1, Duration::from_secs(5)).await;

    cluster.net.isolate(&cluster.peer(lagging));
    let behind = cluster.node(lagging).status().await.last_applied.unwrap();
    for _ in 0..70 {
        cluster.node(leader).propose(allocate()).await.unwrap();
    }
    let leader_node = cluster.node(leader).clone();
    wait_until(
        Duration::from_secs(5),
        "the leader purges past the lagging node",
        || {
            let node = leader_node.clone();
            async move { node.status().await.purged > Some(behind) }
        },
    )
    .await;
    let status = cluster.node(leader).status().await;
    let purged = status.purged.expect("the leader purged its log");
    assert!(
        purged > behind,
        "purged {purged} <= lagging node's {behind}"
    );
    let kept = status.last_log_index.unwrap() - purged;
    assert!(kept <= 21, "{kept} entries kept after the snapshot");

    cluster.net.heal();
    cluster.converged(&all, 71, Duration::from_secs(10)).await;
    let caught_up = cluster.node(lagging).status().await;
    let snapshot = caught_up.snapshot.expect("installed a snapshot");
    assert!(
        snapshot >= purged,
        "snapshot at {snapshot}, leader purged to {purged}"
    );
    let first = cluster.node(leader).image().next_producer_id;
    assert_eq!(first, 1000 + 70 * 10);
    assert_eq!(cluster.node(lagging).image().next_producer_id, first);
}

#[tokio::test]
async fn five_voters_survive_two_failures() {
    let mut cluster = Cluster::formed(5, fast()).await;
    let all = cluster.all();
    let leader = cluster.leader(&all, Duration::from_secs(5)).await;
    cluster.node(leader).propose(form()).await.unwrap();
    let follower = others(leader, &all)[0];
    cluster.stop(leader).await;
    cluster.stop(follower).await;
    let running = cluster.running();
    let leader = cluster.leader(&running, Duration::from_secs(10)).await;
    assert_eq!(cluster.node(leader).status().await.voters.len(), 5);
    cluster
        .node(others(leader, &running)[0])
        .propose(register("x"))
        .await
        .unwrap();
    cluster.converged(&running, 2, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_learner_joins_catches_up_and_takes_a_seat_in_one_joint_change() {
    let mut cluster = Cluster::formed(3, fast()).await;
    let voters = cluster.all();
    let leader = cluster.leader(&voters, Duration::from_secs(5)).await;
    cluster.node(leader).propose(form()).await.unwrap();
    for i in 0..5 {
        cluster
            .node(leader)
            .propose(register(&format!("p{i}")))
            .await
            .unwrap();
    }

    let learner = cluster.add_member().await;
    let learner_node = cluster.node(learner).node().clone();
    let learner_id = learner_node.id().unwrap();
    assert_eq!(
        cluster.node(learner).status().await.role,
        RaftRole::Detached
    );
    // Added through a follower: forwarded to the leader.
    let follower = others(leader, &voters)[0];
    cluster
        .node(follower)
        .add_learner(learner_node)
        .await
        .unwrap();
    let all = cluster.all();
    cluster.converged(&all, 6, Duration::from_secs(5)).await;
    let status = cluster.node(leader).status().await;
    assert_eq!(
        status.learners.keys().copied().collect::<Vec<_>>(),
        vec![learner_id]
    );
    assert_eq!(status.voters.len(), 3);

    let mut ids: BTreeSet<RaftNodeId> = status.voters.keys().copied().collect();
    // An even number of voters is refused.
    let mut four = ids.clone();
    four.insert(learner_id);
    let refused = cluster
        .node(leader)
        .change_membership(four)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, MetadataError::Membership(_)),
        "{refused:?}"
    );

    // The learner takes the follower's seat in one joint-consensus change, asked through the
    // follower itself (forwarded to the leader): out of the voters it stays a learner.
    let retired = cluster.node(follower).node_id();
    ids.insert(learner_id);
    ids.remove(&retired);
    cluster
        .node(follower)
        .change_membership(ids.clone())
        .await
        .unwrap();
    wait_until(Duration::from_secs(5), "the learner votes", || {
        let node = cluster.node(learner).clone();
        async move { node.status().await.role == RaftRole::Follower }
    })
    .await;
    let leader = cluster
        .leader(&others(follower, &all), Duration::from_secs(10))
        .await;
    let status = cluster.node(leader).status().await;
    assert_eq!(status.voters.keys().copied().collect::<BTreeSet<_>>(), ids);
    assert!(status.learners.contains_key(&retired));
    assert!(status.joining_voters.is_none() && status.membership_committed);
    cluster.node(learner).remove_node(retired).await.unwrap();
    let status = cluster.node(leader).status().await;
    assert!(!status.learners.contains_key(&retired) && !status.voters.contains_key(&retired));
    cluster.stop(follower).await;
    let remaining = cluster.running();
    cluster
        .node(learner)
        .propose(register("after"))
        .await
        .unwrap();
    cluster
        .converged(&remaining, 7, Duration::from_secs(5))
        .await;
}
