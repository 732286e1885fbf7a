//! A seeded simulation of one partition on three replicas, driven through the cores as the shell
//! would drive them: a controller standing for the metadata log (AlterPartition checked against
//! the leader, partition and broker epochs; dead or isolated nodes fenced out of the ISR and
//! leaders moved off them; restarted nodes re-registered with a new broker epoch and out of the
//! ISR), metadata reaching each node late, a network with delays, losses and corrupted fetch
//! responses, producers with acks=all and acks=1, and faults: crashes that lose the unsynced
//! tail, restarts, isolation of a node (its clients still reach it), healing, and leader moves.
//!
//! Checked, with the seed printed on failure:
//! - a leader's high watermark never passes what a member of its maximal ISR has (unless that
//!   member crashed since);
//! - two commits never disagree (the committed log only grows), and every alive member of the
//!   metadata's ISR holds the whole committed log;
//! - no replica ever truncates a committed record;
//! - every acks=all wait completes exactly once, and only committed records are acknowledged;
//! - after the faults stop, every replica converges on the leader's log, all three are in the
//!   ISR, and every acknowledged record is in every log.
//!
//! Runs: clean elections (every check above); unclean elections allowed, where a replica
//! outside the ISR leads when no in-sync one is alive, so logs diverge as in KIP-101 and KIP-279
//! and committed records may be lost (only convergence and exactly-once completion are
//! checked); and both again with leaders moving every few dozen steps and metadata arriving
//! late, so followers meet leaders that have not yet heard of their own election and logs
//! diverge over several epochs (KIP-279's races).
//!
//! Layout: this file holds the model and the runs; `network` the links, `shells` what a node's
//! partition task does with the cores, `controller` the metadata log's decisions and the faults,
//! `invariants` the checks.

use std::collections::BTreeMap;
use std::time::Duration;

use super::MemLog;
use crate::ids::{BrokerEpoch, LeaderEpoch, NodeId, Offset, PartitionEpoch};
use crate::partition::core::*;

mod controller;
mod invariants;
mod network;
mod shells;

const NODES: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];
const CONTROLLER: NodeId = NodeId(0);
const LAG: Duration = Duration::from_millis(300);
const REQUEST_TIMEOUT: Duration = Duration::from_millis(50);
const ACK_TIMEOUT: Duration = Duration::from_millis(1_000);

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// SplitMix64: every choice of a run comes from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// True with probability `per_mille` / 1000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1_000) < per_mille
    }

    fn pick(&mut self, items: &[NodeId]) -> Option<NodeId> {
        let index = usize::try_from(self.below(items.len() as u64)).ok()?;
        items.get(index).copied()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Clean,
    Unclean,
}

/// The metadata log's view of the partition.
#[derive(Clone, Debug)]
struct Image {
    version: u64,
    leader: NodeId,
    leader_epoch: LeaderEpoch,
    partition_epoch: PartitionEpoch,
    isr: Vec<NodeId>,
    broker_epochs: BTreeMap<NodeId, BrokerEpoch>,
}

impl Image {
    fn metadata(&self) -> PartitionMetadata {
        PartitionMetadata {
            leader: self.leader,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            replicas: NODES.to_vec(),
            isr: self.isr.clone(),
            broker_epochs: self.broker_epochs.iter().map(|(n, e)| (*n, *e)).collect(),
        }
    }
}

#[derive(Clone, Debug)]
struct FetchData {
    records: Vec<(i64, i32)>,
    high_watermark: i64,
    /// Records from this index on arrive corrupt.
    corrupt_at: Option<usize>,
}

#[derive(Clone, Debug)]
enum Body {
    EpochRequest {
        leader_epoch: LeaderEpoch,
        epoch: LeaderEpoch,
    },
    EpochReply(Result<Option<EpochEndOffset>, FetchError>),
    OffsetsRequest {
        leader_epoch: LeaderEpoch,
    },
    OffsetsReply(Result<LeaderOffsets, FetchError>),
    FetchRequest {
        leader_epoch: LeaderEpoch,
        broker_epoch: BrokerEpoch,
        offset: Offset,
    },
    FetchReply(Result<FetchData, FetchError>),
    Alter(AlterPartition),
    AlterRejected(AlterPartition, AlterPartitionRefusal),
}

impl Body {
    fn is_request(&self) -> bool {
        matches!(
            self,
            Self::EpochRequest { .. } | Self::OffsetsRequest { .. } | Self::FetchRequest { .. }
        )
    }

    /// The reply a requester's transport makes up when the request or its answer is lost.
    fn transport_failure(&self) -> Option<Body> {
        let e = FetchError::Transient;
        match self {
            Self::EpochRequest { .. } | Self::EpochReply(_) => Some(Self::EpochReply(Err(e))),
            Self::OffsetsRequest { .. } | Self::OffsetsReply(_) => Some(Self::OffsetsReply(Err(e))),
            Self::FetchRequest { .. } | Self::FetchReply(_) => Some(Self::FetchReply(Err(e))),
            Self::Alter(_) | Self::AlterRejected(..) => None,
        }
    }
}

#[derive(Clone, Debug)]
struct Msg {
    at: Duration,
    from: NodeId,
    to: NodeId,
    /// The follower instance a request came from (its replies go to that instance only).
    incarnation: u64,
    request: RequestId,
    body: Body,
    /// A failure made up by the requester's own transport: delivered even to an isolated node.
    local: bool,
}

#[derive(Debug)]
struct Node {
    id: NodeId,
    alive: bool,
    isolated: bool,
    broker_epoch: BrokerEpoch,
    log: MemLog,
    /// Records durable on disk: a crash keeps only these.
    synced: usize,
    image: Option<Image>,
    leader: Option<LeaderState>,
    follower: Option<FollowerState>,
    incarnation: u64,
    crashes: u32,
    /// Every node's crash count when this node's leadership began.
    crashes_at_leadership: BTreeMap<NodeId, u32>,
}

impl Node {
    fn reachable(&self) -> bool {
        self.alive && !self.isolated
    }
}

#[derive(Debug, Default)]
struct Stats {
    commits: u64,
    acked: u64,
    ack_errors: u64,
    truncations: u64,
    elections: u64,
    crashes: u64,
    isolations: u64,
    isr_changes: u64,
}

struct Sim {
    seed: u64,
    mode: Mode,
    /// Leader moves every few dozen steps, metadata slower to arrive (KIP-279's races).
    fast_leader_changes: bool,
    rng: Rng,
    now: Duration,
    chaos: bool,
    nodes: Vec<Node>,
    image: Image,
    net: Vec<Msg>,
    /// The committed log: the epoch of each committed offset.
    committed: Vec<i32>,
    /// acks=all waits: the record each waits for.
    produced: BTreeMap<u64, (i64, i32)>,
    completions: BTreeMap<u64, u32>,
    acknowledged: Vec<u64>,
    next_waiter: u64,
    error: Option<String>,
    trace: Vec<String>,
    stats: Stats,
}

fn leader_config() -> LeaderConfig {
    LeaderConfig {
        min_insync_replicas: 2,
        replica_lag_time_max: LAG,
        alter_partition_retry: ms(200),
    }
}

fn follower_config() -> FollowerConfig {
    FollowerConfig {
        retry_backoff: ms(50),
    }
}

fn fetch_error(error: &ReplicaError) -> FetchError {
    FetchError::from_kafka_code(error.kafka_code()).unwrap_or(FetchError::Transient)
}

impl Sim {
    fn new(seed: u64, mode: Mode, fast_leader_changes: bool) -> Self {
        let image = Image {
            version: 1,
            leader: NodeId(1),
            leader_epoch: LeaderEpoch(0),
            partition_epoch: PartitionEpoch(0),
            isr: NODES.to_vec(),
            broker_epochs: NODES.iter().map(|n| (*n, BrokerEpoch(1))).collect(),
        };
        let nodes = NODES
            .iter()
            .map(|&id| Node {
                id,
                alive: true,
                isolated: false,
                broker_epoch: BrokerEpoch(1),
                log: MemLog::default(),
                synced: 0,
                image: None,
                leader: None,
                follower: None,
                incarnation: 0,
                crashes: 0,
                crashes_at_leadership: BTreeMap::new(),
            })
            .collect();
        let mut sim = Self {
            seed,
            mode,
            fast_leader_changes,
            rng: Rng(seed),
            now: Duration::ZERO,
            chaos: true,
            nodes,
            image,
            net: Vec::new(),
            committed: Vec::new(),
            produced: BTreeMap::new(),
            completions: BTreeMap::new(),
            acknowledged: Vec::new(),
            next_waiter: 0,
            error: None,
            trace: Vec::new(),
            stats: Stats::default(),
        };
        for id in NODES {
            sim.deliver_image(id);
        }
        sim
    }

    fn node(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[usize::try_from(id.0 - 1).unwrap()]
    }

    fn node_ref(&self, id: NodeId) -> &Node {
        &self.nodes[usize::try_from(id.0 - 1).unwrap()]
    }

    fn fail(&mut self, what: String) {
        if self.error.is_none() {
            self.error = Some(what);
        }
    }

    fn note(&mut self, what: String) {
        if self.trace.len() >= 60 {
            self.trace.remove(0);
        }
        self.trace
            .push(format!("{:>6} ms  {what}", self.now.as_millis()));
    }

    /// Runs `chaos_steps` with faults, then lets everything heal; returns an error with the
    /// seed and the last events if an invariant broke or nothing converged.
    fn run(&mut self, chaos_steps: u32, settle_steps: u32) -> Result<(), String> {
        for _ in 0..chaos_steps {
            self.step();
            self.check()?;
        }
        self.chaos = false;
        for id in NODES {
            if !self.node_ref(id).alive {
                self.restart(id);
            }
            if self.node_ref(id).isolated {
                self.heal(id);
            }
        }
        for _ in 0..settle_steps {
            self.step();
            self.check()?;
            if self.converged() {
                return self.check_final();
            }
        }
        Err(self.report("no convergence"))
    }

    fn report(&self, what: &str) -> String {
        let logs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| {
                let epochs: Vec<i32> = n.log.records.iter().map(|r| r.1).collect();
                format!(
                    "node {} alive={} isolated={} hw={} leader={:?} follower={:?}\n    {epochs:?}",
                    n.id,
                    n.alive,
                    n.isolated,
                    n.log.high_watermark,
                    n.leader
                        .as_ref()
                        .map(|l| (l.leader_epoch(), l.isr().to_vec())),
                    n.follower
                        .as_ref()
                        .map(|f| (f.leader(), f.leader_epoch(), f.is_fenced())),
                )
            })
            .collect();
        format!(
            "seed {} ({:?}): {what}\nimage {:?}\ncommitted {:?}\n{}\nlast events:\n{}",
            self.seed,
            self.mode,
            self.image,
            self.committed,
            logs.join("\n"),
            self.trace.join("\n")
        )
    }

    fn check(&mut self) -> Result<(), String> {
        if self.mode == Mode::Clean {
            self.check_isr_has_committed();
        }
        match self.error.take() {
            Some(error) => Err(self.report(&error)),
            None => Ok(()),
        }
    }

    fn step(&mut self) {
        self.now += ms(1 + self.rng.below(5));
        self.deliver_due();
        for id in NODES {
            self.tick(id);
        }
        if self.chaos && self.rng.chance(300) {
            self.produce();
        }
        let delivery = match (self.chaos, self.fast_leader_changes) {
            (false, _) => 500,
            (true, false) => 150,
            (true, true) => 60,
        };
        for id in NODES {
            let stale = self
                .node_ref(id)
                .image
                .as_ref()
                .is_none_or(|i| i.version < self.image.version);
            if self.node_ref(id).reachable() && stale && self.rng.chance(delivery) {
                self.deliver_image(id);
            }
            if self.rng.chance(100) {
                let node = self.node(id);
                node.synced = node.log.records.len();
            }
        }
        let faults = if self.fast_leader_changes { 40 } else { 8 };
        if self.chaos && self.rng.chance(faults) {
            self.fault();
        }
    }
}

fn run_seeds(mode: Mode, fast_leader_changes: bool, seeds: std::ops::Range<u64>) -> Stats {
    let mut total = Stats::default();
    for seed in seeds {
        let mut sim = Sim::new(seed, mode, fast_leader_changes);
        if let Err(report) = sim.run(3_000, 30_000) {
            panic!("{report}");
        }
        let s = &sim.stats;
        total.commits += s.commits;
        total.acked += s.acked;
        total.ack_errors += s.ack_errors;
        total.truncations += s.truncations;
        total.elections += s.elections;
        total.crashes += s.crashes;
        total.isolations += s.isolations;
        total.isr_changes += s.isr_changes;
    }
    total
}

#[test]
fn clean_elections_lose_no_committed_record_and_converge() {
    let stats = run_seeds(Mode::Clean, false, 0..150);
    // The runs did exercise what they check.
    assert!(stats.acked > 1_000, "{stats:?}");
    assert!(stats.truncations > 50, "{stats:?}");
    assert!(stats.elections > 100, "{stats:?}");
    assert!(stats.crashes > 50 && stats.isolations > 50, "{stats:?}");
    assert!(stats.isr_changes > 100, "{stats:?}");
}

#[test]
fn unclean_elections_still_converge_and_complete_every_wait_once() {
    let stats = run_seeds(Mode::Unclean, false, 1_000..1_100);
    assert!(stats.truncations > 50, "{stats:?}");
    assert!(stats.elections > 100, "{stats:?}");
}

#[test]
fn fast_leader_changes_with_late_metadata_lose_nothing_and_converge() {
    let stats = run_seeds(Mode::Clean, true, 2_000..2_100);
    assert!(stats.elections > 1_000, "{stats:?}");
    assert!(stats.truncations > 100, "{stats:?}");
}

#[test]
fn fast_unclean_leader_changes_converge() {
    let stats = run_seeds(Mode::Unclean, true, 3_000..3_100);
    assert!(stats.elections > 1_000, "{stats:?}");
}
