//! A deterministic simulator for the membership core: N nodes on a virtual clock, a message queue
//! with per-link latency, link cuts, random loss, crashes, restarts (a new generation and a fresh
//! state), graceful leaves, and a broadcast channel modelled on gossipsub (best-effort fan-out to
//! the peers the sender knows alive; each copy can be lost).
//!
//! Everything random comes from one seed: `RAFKA_SIM_SEED` overrides a scenario's default, and a
//! failing scenario prints the seed to replay it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::time::Duration;

use rafka_mesh::PeerId;
use rafka_mesh::membership::{
    Generation, MemberEvent, MemberStatus, Membership, MembershipConfig, Message, Output, codec,
};

/// SplitMix64, for the simulator's own choices (the cores have their own, seeded from this one).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// The seed of a scenario: `RAFKA_SIM_SEED` if set, else `default`. The returned guard prints it
/// if the scenario panics.
pub fn seed(default: u64) -> (u64, SeedGuard) {
    let seed = std::env::var("RAFKA_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    (seed, SeedGuard(seed))
}

/// Prints the seed when dropped during a panic.
pub struct SeedGuard(u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "membership simulation failed; replay with RAFKA_SIM_SEED={}",
                self.0
            );
        }
    }
}

pub fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

pub fn secs(v: u64) -> Duration {
    Duration::from_secs(v)
}

/// A deterministic peer id for node slot `n`.
pub fn peer_id(n: usize) -> PeerId {
    let mut bytes = [7u8; 32];
    bytes[..8].copy_from_slice(&(n as u64).to_be_bytes());
    rafka_mesh::Keypair::ed25519_from_bytes(bytes)
        .expect("32 bytes")
        .public()
        .to_peer_id()
}

/// One observed event: when, at which node (slot), what.
#[derive(Clone, Debug)]
pub struct Observation {
    pub at: Duration,
    pub observer: usize,
    pub event: MemberEvent,
}

/// Traffic counters.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub bytes: u64,
    pub largest: usize,
}

pub struct SimNode {
    pub id: PeerId,
    pub core: Option<Membership>,
    pub cluster: Option<String>,
    pub seeds: Vec<usize>,
    /// Starts so far; each start is a new generation.
    pub starts: u64,
    /// Keys set on every start.
    pub keys: BTreeMap<String, String>,
    /// The tick chain of the current incarnation (stale ticks are ignored).
    incarnation: u64,
}

enum Action {
    Tick {
        node: usize,
        incarnation: u64,
    },
    Deliver {
        from: PeerId,
        to: usize,
        message: Message,
    },
    Stop {
        node: usize,
        incarnation: u64,
    },
}

struct Scheduled {
    at: Duration,
    seq: u64,
    action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

pub struct Sim {
    pub seed: u64,
    pub now: Duration,
    pub config: MembershipConfig,
    /// Probability that any one message (or broadcast copy) is lost.
    pub loss: f64,
    pub nodes: Vec<SimNode>,
    pub log: Vec<Observation>,
    pub stats: Stats,
    rng: Rng,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    cuts: HashSet<(usize, usize)>,
    index: BTreeMap<PeerId, usize>,
}

/// How long a leaving node keeps running (ticking, answering) before it stops.
pub const LEAVE_LINGER: Duration = Duration::from_millis(700);

impl Sim {
    pub fn new(seed: u64, config: MembershipConfig) -> Self {
        Self {
            seed,
            now: Duration::ZERO,
            config,
            loss: 0.0,
            nodes: Vec::new(),
            log: Vec::new(),
            stats: Stats::default(),
            rng: Rng::new(seed),
            queue: BinaryHeap::new(),
            seq: 0,
            cuts: HashSet::new(),
            index: BTreeMap::new(),
        }
    }

    /// Adds a node (not started) of `cluster`, gossiping first with `seeds` (slots).
    pub fn add_node(&mut self, cluster: Option<&str>, seeds: Vec<usize>) -> usize {
        let slot = self.nodes.len();
        let id = peer_id(slot);
        self.index.insert(id, slot);
        let keys = [
            (
                "addrs".to_string(),
                format!("/ip4/10.0.{}.{}/tcp/7070", slot / 250, slot % 250),
            ),
            (
                "kafka".to_string(),
                format!("10.0.{}.{}:9092", slot / 250, slot % 250),
            ),
        ]
        .into_iter()
        .collect();
        self.nodes.push(SimNode {
            id,
            core: None,
            cluster: cluster.map(str::to_string),
            seeds,
            starts: 0,
            keys,
            incarnation: 0,
        });
        slot
    }

    /// Adds `n` nodes of one cluster seeded by `seeds`, and starts them over `spread`.
    pub fn add_started(&mut self, n: usize, seeds: &[usize], spread: Duration) -> Vec<usize> {
        let slots: Vec<usize> = (0..n)
            .map(|_| self.add_node(None, seeds.to_vec()))
            .collect();
        for &slot in &slots {
            let delay = ms(self.rng.below(spread.as_millis() as u64 + 1));
            self.start_at(slot, self.now + delay);
        }
        slots
    }

    /// Starts (or restarts) a node now: a new generation, a fresh state.
    pub fn start(&mut self, slot: usize) {
        let node = &mut self.nodes[slot];
        node.starts += 1;
        node.incarnation += 1;
        let config = MembershipConfig {
            cluster_id: node.cluster.clone(),
            ..self.config.clone()
        };
        // A generation that grows across restarts, as the start time in ms would.
        let generation = Generation(self.now.as_millis() as u64 * 16 + node.starts);
        let core_seed = self.seed ^ (slot as u64).wrapping_mul(0x9E37_79B9) ^ node.starts;
        let mut core =
            Membership::new(node.id, generation, config, core_seed).expect("valid config");
        for (k, v) in &node.keys {
            core.set(k, v).expect("valid key");
        }
        core.set_seeds(node.seeds.iter().map(|s| peer_id(*s)));
        node.core = Some(core);
        let incarnation = node.incarnation;
        // Each node ticks on its own phase.
        let phase = ms(self.rng.below(self.config.tick_interval_ms));
        self.schedule(
            self.now + phase,
            Action::Tick {
                node: slot,
                incarnation,
            },
        );
    }

    fn start_at(&mut self, slot: usize, at: Duration) {
        // Starting is immediate when due; a later start waits in the queue as a tick of
        // incarnation 0, which `tick` turns into a start.
        if at <= self.now {
            self.start(slot);
        } else {
            self.schedule(
                at,
                Action::Tick {
                    node: slot,
                    incarnation: 0,
                },
            );
        }
    }

    /// Kills a node: no goodbye, messages to it are lost.
    pub fn crash(&mut self, slot: usize) {
        self.nodes[slot].core = None;
        self.nodes[slot].incarnation += 1;
    }

    /// Graceful shutdown: `leave`, keep running for [`LEAVE_LINGER`], stop.
    pub fn leave(&mut self, slot: usize) {
        if let Some(core) = self.nodes[slot].core.as_mut() {
            core.leave();
            self.flush(slot);
            let incarnation = self.nodes[slot].incarnation;
            self.schedule(
                self.now + LEAVE_LINGER,
                Action::Stop {
                    node: slot,
                    incarnation,
                },
            );
        }
    }

    pub fn is_up(&self, slot: usize) -> bool {
        self.nodes[slot]
            .core
            .as_ref()
            .is_some_and(|c| !c.has_left())
    }

    /// Slots of running nodes that have not left.
    pub fn live(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|s| self.is_up(*s)).collect()
    }

    pub fn core(&self, slot: usize) -> &Membership {
        self.nodes[slot].core.as_ref().expect("node is up")
    }

    pub fn core_mut(&mut self, slot: usize) -> &mut Membership {
        self.nodes[slot].core.as_mut().expect("node is up")
    }

    /// What `observer` thinks of `subject`'s status.
    pub fn status(&self, observer: usize, subject: usize) -> Option<MemberStatus> {
        self.core(observer).status(&self.nodes[subject].id)
    }

    pub fn cut(&mut self, a: usize, b: usize) {
        self.cuts.insert((a.min(b), a.max(b)));
    }

    /// Cuts every link between the two groups.
    pub fn split(&mut self, left: &[usize], right: &[usize]) {
        for &a in left {
            for &b in right {
                self.cut(a, b);
            }
        }
    }

    pub fn heal_all(&mut self) {
        self.cuts.clear();
    }

    fn is_cut(&self, a: usize, b: usize) -> bool {
        self.cuts.contains(&(a.min(b), a.max(b)))
    }

    /// One-way latency of a link: a fixed 1-20 ms per link plus 0-5 ms of jitter per message.
    fn latency(&mut self, a: usize, b: usize) -> Duration {
        let (lo, hi) = (a.min(b) as u64, a.max(b) as u64);
        let mut link = Rng::new(self.seed ^ lo.wrapping_mul(0x1_0000_0001) ^ hi.rotate_left(32));
        let base = 1 + link.below(20);
        ms(base + self.rng.below(6))
    }

    fn schedule(&mut self, at: Duration, action: Action) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            action,
        }));
    }

    /// Runs every action due up to `until`, then sets the clock there.
    pub fn run_until(&mut self, until: Duration) {
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.at > until {
                break;
            }
            let Some(Reverse(next)) = self.queue.pop() else {
                break;
            };
            self.now = next.at;
            match next.action {
                Action::Tick { node, incarnation } => self.tick(node, incarnation),
                Action::Deliver { from, to, message } => {
                    if let Some(core) = self.nodes[to].core.as_mut() {
                        self.stats.delivered += 1;
                        core.handle(next.at, from, message);
                        self.flush(to);
                    }
                }
                Action::Stop { node, incarnation } => {
                    if self.nodes[node].incarnation == incarnation {
                        self.crash(node);
                    }
                }
            }
        }
        self.now = until;
    }

    pub fn run_for(&mut self, duration: Duration) {
        self.run_until(self.now + duration);
    }

    fn tick(&mut self, slot: usize, incarnation: u64) {
        if incarnation == 0 {
            if self.nodes[slot].core.is_none() {
                self.start(slot);
            }
            return;
        }
        if self.nodes[slot].incarnation != incarnation || self.nodes[slot].core.is_none() {
            return;
        }
        let now = self.now;
        self.core_mut(slot).tick(now);
        self.flush(slot);
        let next = now + self.config.tick_interval();
        self.schedule(
            next,
            Action::Tick {
                node: slot,
                incarnation,
            },
        );
    }

    /// Carries out a node's outputs.
    fn flush(&mut self, slot: usize) {
        let mut outputs = Vec::new();
        if let Some(core) = self.nodes[slot].core.as_mut() {
            while let Some(output) = core.poll_output() {
                outputs.push(output);
            }
        }
        for output in outputs {
            match output {
                Output::Send { to, message } => {
                    if let Some(&to) = self.index.get(&to) {
                        let message = self.wire(&message);
                        self.transmit(slot, to, message);
                    }
                }
                Output::Broadcast { message } => {
                    let message = self.wire(&message);
                    // gossipsub: the sender's connected peers, i.e. those it knows alive.
                    let targets: Vec<usize> = self
                        .core(slot)
                        .peers()
                        .filter(|(_, status)| status.is_live())
                        .filter_map(|(id, _)| self.index.get(&id).copied())
                        .collect();
                    for to in targets {
                        self.transmit(slot, to, message.clone());
                    }
                }
                Output::Event(event) => self.log.push(Observation {
                    at: self.now,
                    observer: slot,
                    event,
                }),
            }
        }
    }

    /// Through the codec, as on the wire: every message fits the budget and decodes to itself.
    fn wire(&mut self, message: &Message) -> Message {
        let bytes = codec::encode(message);
        let max = self.config.max_message_bytes;
        assert!(
            bytes.len() <= max,
            "a {} byte message exceeds {max}",
            bytes.len()
        );
        self.stats.bytes += bytes.len() as u64;
        self.stats.largest = self.stats.largest.max(bytes.len());
        codec::decode(&bytes, max).expect("own messages decode")
    }

    fn transmit(&mut self, from: usize, to: usize, message: Message) {
        self.stats.sent += 1;
        if from == to || self.is_cut(from, to) || self.rng.chance(self.loss) {
            self.stats.lost += 1;
            return;
        }
        let at = self.now + self.latency(from, to);
        let from = self.nodes[from].id;
        self.schedule(at, Action::Deliver { from, to, message });
    }

    /// Runs until `condition` holds (checked every `step`) or `timeout` passes; returns how long it
    /// took, or the last reason it gave.
    pub fn wait_until(
        &mut self,
        timeout: Duration,
        step: Duration,
        mut condition: impl FnMut(&Sim) -> Result<(), String>,
    ) -> Result<Duration, String> {
        let start = self.now;
        loop {
            let why = match condition(self) {
                Ok(()) => return Ok(self.now - start),
                Err(why) => why,
            };
            if self.now - start >= timeout {
                return Err(format!(
                    "not within {timeout:?} (seed {}): {why}",
                    self.seed
                ));
            }
            self.run_for(step);
        }
    }

    /// Every running node knows every other running node (of its cluster) alive, in its current generation, with
    /// exactly its state; and every stopped node it knows is dead or left (or forgotten).
    pub fn converged(&self) -> Result<(), String> {
        let live = self.live();
        for &a in &live {
            let view = self.core(a);
            for &b in &live {
                if a == b || self.nodes[a].cluster != self.nodes[b].cluster {
                    continue;
                }
                let truth = self.core(b).member(&self.nodes[b].id).expect("self");
                let Some(seen) = view.member(&self.nodes[b].id) else {
                    return Err(format!("{a} does not know {b}"));
                };
                if seen.status != MemberStatus::Alive {
                    return Err(format!("{a} sees {b} {:?}", seen.status));
                }
                if seen.generation != truth.generation || seen.keys != truth.keys {
                    return Err(format!("{a} has a stale state of {b}"));
                }
            }
            for (b, node) in self.nodes.iter().enumerate() {
                // Running nodes were checked above, or are leaving and may still look alive.
                if node.core.is_some() || node.cluster != self.nodes[a].cluster {
                    continue;
                }
                if let Some(status) = view.status(&node.id)
                    && status.is_live()
                {
                    return Err(format!("{a} sees stopped {b} {status:?}"));
                }
            }
        }
        Ok(())
    }

    /// Status changes of `subject` seen by anyone since `since`: (when, observer, new status).
    pub fn transitions(
        &self,
        subject: usize,
        since: Duration,
    ) -> Vec<(Duration, usize, MemberStatus)> {
        let id = self.nodes[subject].id;
        self.log
            .iter()
            .filter(|o| o.at >= since)
            .filter_map(|o| match &o.event {
                MemberEvent::StatusChanged { id: s, new, .. } if *s == id => {
                    Some((o.at, o.observer, *new))
                }
                _ => None,
            })
            .collect()
    }

    /// The first time each of `observers` saw `subject` as `status` after `since`.
    pub fn first_seen(
        &self,
        subject: usize,
        status: MemberStatus,
        since: Duration,
        observers: &[usize],
    ) -> Result<Vec<Duration>, String> {
        let transitions = self.transitions(subject, since);
        observers
            .iter()
            .map(|o| {
                transitions
                    .iter()
                    .find(|(_, observer, s)| observer == o && *s == status)
                    .map(|(at, _, _)| *at - since)
                    .ok_or_else(|| format!("{o} never saw {subject} {status:?}"))
            })
            .collect()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        eprintln!(
            "simulated {:?} of virtual time with {} nodes (seed {}); {:?}",
            self.now,
            self.nodes.len(),
            self.seed,
            self.stats
        );
    }
}

/// Min, mean and max of durations, for reports.
pub fn summary(durations: &[Duration]) -> String {
    let max = durations.iter().max().copied().unwrap_or_default();
    let min = durations.iter().min().copied().unwrap_or_default();
    let mean = durations.iter().sum::<Duration>() / durations.len().max(1) as u32;
    format!("min {min:?} mean {mean:?} max {max:?}")
}
