//! Gossip membership: who is in the mesh, what each node says about itself, and who is alive.
//! A sans-IO core: no sockets, no clock, no unseeded randomness. The caller (the swarm's event
//! loop) feeds it time and messages and carries out what it asks.
//!
//! Each node owns a small versioned key-value state (addresses, endpoints, metadata version,
//! load, ...), a heartbeat counter and a `left` flag, under a [`Generation`] that grows across
//! restarts. That state spreads two ways:
//!
//! - **broadcast**: every `heartbeat_interval` the node bumps its heartbeat and emits an
//!   [`Output::Broadcast`] of an `Update` with its heartbeat and the changes since its previous
//!   broadcast (the caller publishes it on gossipsub: best effort);
//! - **anti-entropy** (scuttlebutt): every `gossip_interval` it sends a `Syn` (digest: which version
//!   of whom it knows) to a random live peer, sometimes to a dead one or a seed; the peer answers
//!   `Ack` (its digest and what the initiator lacks) and gets `Ack2` (what it lacks). Deltas fill a
//!   byte budget, stalest nodes first.
//!
//! Peers' heartbeat increases feed a phi-accrual [`crate::failure_detector`]; the observed
//! [`MemberStatus`] is `Alive`, `Suspect`, `Dead` or, when the node said so, `Left`. Changes come
//! out as [`MemberEvent`]s. Dead and left nodes are forgotten after `gc_after`, keeping a
//! tombstone of their generation for as long again so stale gossip cannot bring them back.
//!
//! # Driving it (the event loop's side)
//!
//! - `Membership::new(peer_id, Generation(start_time_ms), config, seed)`; `set` the keys peers need
//!   (listen addresses, endpoints, ...); `add_seed` for bootstrap and discovered peers.
//! - `tick(now)` every `tick_interval` (100 ms), `now` a monotonic `Duration` since any epoch.
//! - `handle(now, from, message)` for every message: `codec::decode(bytes,
//!   config.max_message_bytes)` first (drop what fails). `from` is where answers go: the sender of
//!   a direct message; for a gossipsub `Update`, its author (answers are never sent to it).
//! - Drain `poll_output()` after each call: `Send` goes to one peer (dial it if need be; a failed
//!   send is just a lost message), `Broadcast` is published on the membership gossipsub topic,
//!   `Event` updates the view the rest of the node watches (`members()` is the full snapshot).
//! - Shutdown: `leave()`, then keep ticking and sending for ~600 ms (the departure is rebroadcast
//!   three times, 200 ms apart) if shutdown allows; peers mark the node `Left` at once.
//!
//! # Choices
//!
//! - Only first-hand-fresh states are relayed: a node's own, and peers it observes alive (left
//!   ones only to nodes that know them). Relayed heartbeats carry their age, so old news neither
//!   delays detection nor revives a dead node.
//! - A delta carries each node's entries in version order from the receiver's version on; a
//!   receiver applies it only if it continues what it has (so a truncated or out-of-order
//!   delta never hides a missing change), and a new incarnation only from a whole state.
//! - Removed keys stay as tombstones for the life of the generation (nodes gossip a handful of
//!   keys; a generation resets them).
//! - A peer turning suspect is probed with a `Syn` at once; a stall of this node (a tick gap
//!   over `stall_threshold`) is not blamed on its peers.
//!
//! ```
//! use std::time::Duration;
//! use rafka_mesh::PeerId;
//! use rafka_mesh::membership::{Generation, Membership, MembershipConfig, Output, codec};
//!
//! let config = MembershipConfig::default();
//! let mut node = Membership::new(PeerId::random(), Generation(1), config, 42).unwrap();
//! node.set("kafka", "10.0.0.1:9092").unwrap();
//! node.add_seed(PeerId::random());
//! node.tick(Duration::from_millis(0));
//! while let Some(output) = node.poll_output() {
//!     match output {
//!         Output::Send { to, message } => { let _bytes = codec::encode(&message); /* to `to` */ }
//!         Output::Broadcast { message } => { let _bytes = codec::encode(&message); /* publish */ }
//!         Output::Event(event) => println!("{event:?}"),
//!     }
//! }
//! ```

pub mod codec;
pub mod config;
mod event;
mod gossip;
mod merge;
pub mod message;
mod own;
mod peer;
mod rng;
mod state;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

pub use config::MembershipConfig;
pub use event::{Member, MemberEvent, Output, StateError};
pub use message::{
    Delta, Digest, Generation, KeyEntry, Message, MessageBody, NodeDelta, NodeDigest, Version,
};
pub use peer::MemberStatus;

use crate::MeshError;
use peer::Peer;
use rng::SplitMix64;
use state::NodeState;

/// A member's id: its libp2p peer id.
pub type MemberId = libp2p::PeerId;

/// The key under which a node gossips its cluster id (reserved: set through
/// [`Membership::set_cluster_id`]).
pub const CLUSTER_ID_KEY: &str = "cluster_id";

#[derive(Clone, Copy, Debug)]
struct Tombstone {
    generation: Generation,
    removed_at: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Leaving {
    rebroadcasts_left: u32,
    next_at: Option<Duration>,
}

/// The membership protocol of one node. See the module documentation.
#[derive(Debug)]
pub struct Membership {
    id: MemberId,
    config: MembershipConfig,
    rng: SplitMix64,
    own: NodeState,
    peers: BTreeMap<MemberId, Peer>,
    tombstones: BTreeMap<MemberId, Tombstone>,
    seeds: BTreeSet<MemberId>,
    outputs: VecDeque<Output>,
    now: Duration,
    last_tick: Option<Duration>,
    next_heartbeat: Option<Duration>,
    next_gossip: Option<Duration>,
    /// Own versions up to this one were broadcast.
    broadcast_version: Version,
    leaving: Option<Leaving>,
    foreign_reported: BTreeMap<MemberId, Duration>,
}

impl Membership {
    /// A node `id` in its incarnation `generation` (which must grow across restarts). `seed`
    /// drives every random choice.
    pub fn new(
        id: MemberId,
        generation: Generation,
        config: MembershipConfig,
        seed: u64,
    ) -> Result<Self, MeshError> {
        config.validate()?;
        let mut own = NodeState::new(generation);
        if let Some(cluster_id) = &config.cluster_id {
            own.set_own(CLUSTER_ID_KEY, Some(cluster_id));
        }
        Ok(Self {
            id,
            config,
            rng: SplitMix64::new(seed),
            own,
            peers: BTreeMap::new(),
            tombstones: BTreeMap::new(),
            seeds: BTreeSet::new(),
            outputs: VecDeque::new(),
            now: Duration::ZERO,
            last_tick: None,
            next_heartbeat: None,
            next_gossip: None,
            broadcast_version: 0,
            leaving: None,
            foreign_reported: BTreeMap::new(),
        })
    }

    /// This node's id.
    pub fn id(&self) -> MemberId {
        self.id
    }

    /// This node's incarnation.
    pub fn generation(&self) -> Generation {
        self.own.generation
    }

    /// The configuration in force.
    pub fn config(&self) -> &MembershipConfig {
        &self.config
    }

    /// Peers to gossip with when nothing else is known (bootstrap addresses, mDNS discoveries).
    pub fn add_seed(&mut self, seed: MemberId) {
        self.seeds.insert(seed);
    }

    /// Replaces the seed peers.
    pub fn set_seeds(&mut self, seeds: impl IntoIterator<Item = MemberId>) {
        self.seeds = seeds.into_iter().collect();
    }

    /// Advances the protocol to `now` (time since any fixed epoch, never going back; call it every
    /// `tick_interval`): failure detection, heartbeat and broadcast, anti-entropy, forgetting.
    pub fn tick(&mut self, now: Duration) {
        self.now = self.now.max(now);
        let now = self.now;
        if let Some(gap) = self.last_tick.map(|last| now.saturating_sub(last))
            && gap > self.config.stall_threshold()
        {
            let stalled = gap.saturating_sub(self.config.tick_interval());
            for peer in self.peers.values_mut() {
                peer.detector.pause(stalled);
            }
        }
        self.last_tick = Some(now);
        self.detect(now);
        self.heartbeat(now);
        if self.next_gossip.is_none_or(|at| now >= at) {
            self.next_gossip = Some(next_deadline(
                self.next_gossip,
                now,
                self.config.gossip_interval(),
            ));
            for to in self.gossip_targets() {
                let digest = self.digest(self.digest_budget());
                let message = self.message(MessageBody::Syn(digest));
                self.outputs.push_back(Output::Send { to, message });
            }
            self.collect_garbage(now);
        }
    }

    /// Handles a message from peer `from` (the direct sender of a `Syn`/`Ack`/`Ack2`, to which
    /// answers go; for a broadcast `Update`, its author).
    pub fn handle(&mut self, now: Duration, from: MemberId, message: Message) {
        self.now = self.now.max(now);
        let now = self.now;
        if self.is_foreign(&message.cluster_id) {
            if matches!(message.body, MessageBody::Syn(_)) {
                let reply = self.message(MessageBody::BadCluster);
                self.outputs.push_back(Output::Send {
                    to: from,
                    message: reply,
                });
            }
            self.report_foreign(from, message.cluster_id);
            return;
        }
        match message.body {
            MessageBody::Syn(digest) => {
                let own_digest = self.digest(self.digest_budget());
                let used: usize = own_digest.nodes.iter().map(codec::node_digest_len).sum();
                let delta = self.delta_for(&digest, self.delta_budget().saturating_sub(used));
                let reply = self.message(MessageBody::Ack {
                    digest: own_digest,
                    delta,
                });
                self.outputs.push_back(Output::Send {
                    to: from,
                    message: reply,
                });
            }
            MessageBody::Ack { digest, delta } => {
                self.apply(now, delta);
                let delta = self.delta_for(&digest, self.delta_budget());
                if !delta.nodes.is_empty() {
                    let reply = self.message(MessageBody::Ack2(delta));
                    self.outputs.push_back(Output::Send {
                        to: from,
                        message: reply,
                    });
                }
            }
            MessageBody::Ack2(delta) | MessageBody::Update(delta) => self.apply(now, delta),
            MessageBody::BadCluster => {}
        }
    }

    /// The next thing for the caller to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The observed status of a node (this one included), if known.
    pub fn status(&self, id: &MemberId) -> Option<MemberStatus> {
        if *id == self.id {
            return Some(self.own_status());
        }
        self.peers.get(id).map(|p| p.status)
    }

    /// Every known peer (not this node) and its observed status, cheaply: for choosing whom to
    /// stay connected to.
    pub fn peers(&self) -> impl Iterator<Item = (MemberId, MemberStatus)> + '_ {
        self.peers.iter().map(|(id, p)| (*id, p.status))
    }

    /// A peer's incarnation, latest heartbeat counter and when that heartbeat was sent, as best
    /// known (this node's clock); cheap, for a caller measuring how long it went without news.
    pub fn last_heartbeat(&self, id: &MemberId) -> Option<(Generation, u64, Duration)> {
        self.peers
            .get(id)
            .map(|p| (p.state.generation, p.state.heartbeat, p.last_heard))
    }

    /// One member as seen from here.
    pub fn member(&self, id: &MemberId) -> Option<Member> {
        if *id == self.id {
            return Some(Member {
                id: self.id,
                generation: self.own.generation,
                status: self.own_status(),
                status_since: Duration::ZERO,
                heartbeat: self.own.heartbeat,
                keys: own_keys(&self.own),
                last_heard: self.now,
                phi: 0.0,
            });
        }
        let peer = self.peers.get(id)?;
        Some(Member {
            id: *id,
            generation: peer.state.generation,
            status: peer.status,
            status_since: peer.status_since,
            heartbeat: peer.state.heartbeat,
            keys: own_keys(&peer.state),
            last_heard: peer.last_heard,
            phi: peer.phi(self.now, &self.config.failure_detector),
        })
    }

    /// Every member as seen from here, this node first.
    pub fn members(&self) -> Vec<Member> {
        std::iter::once(&self.id)
            .chain(self.peers.keys())
            .filter_map(|id| self.member(id))
            .collect()
    }

    fn own_status(&self) -> MemberStatus {
        if self.own.left {
            MemberStatus::Left
        } else {
            MemberStatus::Alive
        }
    }

    fn message(&self, body: MessageBody) -> Message {
        Message {
            cluster_id: self.config.cluster_id.clone().unwrap_or_default(),
            body,
        }
    }

    fn event(&mut self, event: MemberEvent) {
        self.outputs.push_back(Output::Event(event));
    }

    /// Bytes for digests and deltas in one message.
    fn delta_budget(&self) -> usize {
        let cluster_id = self.config.cluster_id.as_deref().unwrap_or_default();
        self.config
            .max_message_bytes
            .saturating_sub(codec::envelope_overhead(cluster_id))
    }

    /// A digest takes at most half a message, leaving the rest of an `Ack` to its delta.
    fn digest_budget(&self) -> usize {
        self.delta_budget() / 2
    }
}

/// The next periodic deadline: one interval after the previous one, without drifting by the
/// tick granularity, unless the caller fell more than an interval behind.
pub(super) fn next_deadline(
    previous: Option<Duration>,
    now: Duration,
    interval: Duration,
) -> Duration {
    match previous {
        Some(at) if at + interval > now => at + interval,
        _ => now + interval,
    }
}

fn own_keys(state: &NodeState) -> BTreeMap<String, String> {
    state
        .live_entries()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests;
