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
mod gossip;
pub mod message;
mod peer;
mod rng;
mod state;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

pub use config::MembershipConfig;
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

/// What the core asks its caller to do, or tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send `message` to one peer (anti-entropy; a departure notice), dialling it if needed.
    Send {
        /// The peer.
        to: MemberId,
        /// The message.
        message: Message,
    },
    /// Publish `message` to every peer (gossipsub); best effort.
    Broadcast {
        /// The message.
        message: Message,
    },
    /// Something changed in the membership view.
    Event(MemberEvent),
}

/// A change of the membership view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberEvent {
    /// A node incarnation appeared, alive. `previous` is the generation it replaces (a restart):
    /// forget everything about that one; its keys are reported anew.
    Joined {
        /// The node.
        id: MemberId,
        /// Its incarnation.
        generation: Generation,
        /// The incarnation it replaces.
        previous: Option<Generation>,
    },
    /// The observed status of a node changed.
    StatusChanged {
        /// The node.
        id: MemberId,
        /// Its incarnation.
        generation: Generation,
        /// Before.
        old: MemberStatus,
        /// After.
        new: MemberStatus,
    },
    /// A key of a node's state changed; `None` when removed.
    KeyChanged {
        /// The node.
        id: MemberId,
        /// The key.
        key: String,
        /// The new value.
        value: Option<String>,
    },
    /// A node dead or left for `gc_after` was forgotten.
    Removed {
        /// The node.
        id: MemberId,
        /// Its last incarnation.
        generation: Generation,
    },
    /// A node of another cluster talked to this one (or was gossiped about); it is ignored.
    /// Reported at most once per `foreign_report_interval` per node.
    ForeignCluster {
        /// The node.
        id: MemberId,
        /// Its cluster id.
        cluster_id: String,
    },
}

/// One member as this node sees it (itself included).
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// The node.
    pub id: MemberId,
    /// Its incarnation.
    pub generation: Generation,
    /// Its observed status.
    pub status: MemberStatus,
    /// Since when (this node's clock).
    pub status_since: Duration,
    /// Its latest heartbeat known.
    pub heartbeat: u64,
    /// Its state.
    pub keys: BTreeMap<String, String>,
    /// When its heartbeat last increased (this node: the last `now` given).
    pub last_heard: Duration,
    /// The failure detector's phi (0 for this node).
    pub phi: f64,
}

/// Why a change of the own state was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The key is the protocol's own.
    #[error("key {key:?} is reserved by the membership protocol")]
    ReservedKey {
        /// The key.
        key: String,
    },
    /// Empty or over `max_key_bytes`.
    #[error("key of {len} bytes is empty or over the limit of {max}")]
    BadKeyLength {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Over `max_value_bytes`.
    #[error("value of {len} bytes for key {key:?} exceeds the limit of {max}")]
    ValueTooLong {
        /// The key.
        key: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// After [`Membership::leave`] the state no longer changes.
    #[error("this node has left the cluster")]
    Left,
    /// A node belongs to one cluster for life.
    #[error("the cluster id is already {current:?}")]
    ClusterIdSet {
        /// The cluster id in force.
        current: String,
    },
}

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

    /// Sets a key of this node's state; it spreads from the next tick.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), StateError> {
        self.check_key(key)?;
        if value.len() > self.config.max_value_bytes {
            return Err(StateError::ValueTooLong {
                key: key.to_string(),
                len: value.len(),
                max: self.config.max_value_bytes,
            });
        }
        self.own.set_own(key, Some(value));
        Ok(())
    }

    /// Removes a key of this node's state.
    pub fn remove(&mut self, key: &str) -> Result<(), StateError> {
        self.check_key(key)?;
        self.own.set_own(key, None);
        Ok(())
    }

    /// A key of this node's state.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.own.get(key)
    }

    fn check_key(&self, key: &str) -> Result<(), StateError> {
        if self.own.left {
            return Err(StateError::Left);
        }
        if key == CLUSTER_ID_KEY {
            return Err(StateError::ReservedKey {
                key: key.to_string(),
            });
        }
        if key.is_empty() || key.len() > self.config.max_key_bytes {
            return Err(StateError::BadKeyLength {
                len: key.len(),
                max: self.config.max_key_bytes,
            });
        }
        Ok(())
    }

    /// Sets the cluster id once it is known (at formation, or when joining). From then on, nodes
    /// gossiping another cluster id are ignored, and those already known are forgotten.
    pub fn set_cluster_id(&mut self, cluster_id: &str) -> Result<(), StateError> {
        match &self.config.cluster_id {
            Some(current) if current == cluster_id => return Ok(()),
            Some(current) => {
                return Err(StateError::ClusterIdSet {
                    current: current.clone(),
                });
            }
            None => {}
        }
        if cluster_id.is_empty() || cluster_id.len() > self.config.max_value_bytes {
            return Err(StateError::ValueTooLong {
                key: CLUSTER_ID_KEY.to_string(),
                len: cluster_id.len(),
                max: self.config.max_value_bytes,
            });
        }
        self.config.cluster_id = Some(cluster_id.to_string());
        self.own.set_own(CLUSTER_ID_KEY, Some(cluster_id));
        let foreign: Vec<(MemberId, String)> = self
            .peers
            .iter()
            .filter_map(|(id, p)| {
                let theirs = p.state.get(CLUSTER_ID_KEY)?;
                (theirs != cluster_id).then(|| (*id, theirs.to_string()))
            })
            .collect();
        for (id, theirs) in foreign {
            if let Some(peer) = self.peers.remove(&id) {
                self.event(MemberEvent::Removed {
                    id,
                    generation: peer.state.generation,
                });
            }
            self.report_foreign(id, theirs);
        }
        Ok(())
    }

    /// Peers to gossip with when nothing else is known (bootstrap addresses, mDNS discoveries).
    pub fn add_seed(&mut self, seed: MemberId) {
        self.seeds.insert(seed);
    }

    /// Replaces the seed peers.
    pub fn set_seeds(&mut self, seeds: impl IntoIterator<Item = MemberId>) {
        self.seeds = seeds.into_iter().collect();
    }

    /// Announces that this node leaves (graceful shutdown): broadcast now, sent directly to a few
    /// live peers, and broadcast again on the next ticks. Peers mark it `Left` at once. Keep
    /// ticking and sending for `leave_rebroadcasts × leave_rebroadcast_interval` (600 ms by
    /// default) before stopping, if shutdown allows.
    pub fn leave(&mut self) {
        if self.own.left {
            return;
        }
        self.own.left = true;
        self.own.max_version += 1;
        self.own.heartbeat += 1;
        let updates = self.own_updates();
        let mut live: Vec<MemberId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.status.is_live())
            .map(|(id, _)| *id)
            .collect();
        self.rng.shuffle(&mut live);
        for to in live
            .into_iter()
            .take(self.config.leave_rebroadcasts as usize)
        {
            for message in &updates {
                self.outputs.push_back(Output::Send {
                    to,
                    message: message.clone(),
                });
            }
        }
        for message in updates {
            self.outputs.push_back(Output::Broadcast { message });
        }
        self.leaving = Some(Leaving {
            rebroadcasts_left: self.config.leave_rebroadcasts,
            next_at: None,
        });
    }

    /// True once [`Self::leave`] was called.
    pub fn has_left(&self) -> bool {
        self.own.left
    }

    /// Advances the protocol to `now` (time since any fixed epoch, never going back; call it every
    /// `tick_interval`): failure detection, heartbeat and broadcast, anti-entropy, forgetting.
    pub fn tick(&mut self, now: Duration) {
        self.now = self.now.max(now);
        let now = self.now;
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
        }
        self.collect_garbage(now);
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

    fn is_foreign(&self, theirs: &str) -> bool {
        match self.config.cluster_id.as_deref() {
            Some(ours) => !ours.is_empty() && !theirs.is_empty() && ours != theirs,
            None => false,
        }
    }

    fn report_foreign(&mut self, id: MemberId, cluster_id: String) {
        let interval = self.config.foreign_report_interval();
        if let Some(at) = self.foreign_reported.get(&id)
            && self.now.saturating_sub(*at) < interval
        {
            return;
        }
        self.foreign_reported.insert(id, self.now);
        self.event(MemberEvent::ForeignCluster { id, cluster_id });
    }

    /// Failure detection: re-evaluates every peer's phi.
    fn detect(&mut self, now: Duration) {
        let mut changes = Vec::new();
        for (id, peer) in &mut self.peers {
            if let Some((old, new)) = peer.check(now, &self.config.failure_detector) {
                changes.push(MemberEvent::StatusChanged {
                    id: *id,
                    generation: peer.state.generation,
                    old,
                    new,
                });
            }
        }
        for change in changes {
            self.event(change);
        }
    }

    /// Bumps and broadcasts the heartbeat when due; broadcasts own changes at once otherwise.
    /// After `leave`, only the departure is broadcast again.
    fn heartbeat(&mut self, now: Duration) {
        if let Some(mut leaving) = self.leaving {
            if leaving.rebroadcasts_left == 0 || leaving.next_at.is_some_and(|at| now < at) {
                return;
            }
            if leaving.next_at.is_some() {
                leaving.rebroadcasts_left -= 1;
                // A new heartbeat each time, so content-addressed gossipsub ids never dedup it.
                self.own.heartbeat += 1;
                self.broadcast_own();
            }
            leaving.next_at = Some(now + self.config.leave_rebroadcast_interval());
            self.leaving = Some(leaving);
            return;
        }
        if self.next_heartbeat.is_none_or(|at| now >= at) {
            self.next_heartbeat = Some(next_deadline(
                self.next_heartbeat,
                now,
                self.config.heartbeat_interval(),
            ));
            self.own.heartbeat += 1;
            self.broadcast_own();
        } else if self.own.max_version > self.broadcast_version {
            self.broadcast_own();
        }
    }

    fn broadcast_own(&mut self) {
        for message in self.own_updates() {
            self.outputs.push_back(Output::Broadcast { message });
        }
    }

    /// `Update`s carrying the own heartbeat and every change since the previous broadcast, split
    /// to fit the byte budget (each a contiguous version range).
    fn own_updates(&mut self) -> Vec<Message> {
        let budget = self.delta_budget();
        let own = &self.own;
        // Every chunk's versions are at most `max_version`: a bound for each header.
        let header = codec::node_delta_header_len(
            &self.id,
            own.generation,
            own.heartbeat,
            own.max_version,
            own.max_version,
        );
        let mut deltas = Vec::new();
        let mut current = self.own_delta(self.broadcast_version);
        let mut used = header;
        for (key, value) in own.entries_above(self.broadcast_version) {
            let len = codec::key_entry_len(key, value.value.as_deref(), value.version);
            if used + len > budget && !current.entries.is_empty() {
                let from = current.entries.last().map_or(0, |e| e.version);
                current.to_version = from;
                deltas.push(std::mem::replace(&mut current, self.own_delta(from)));
                used = header;
            }
            used += len;
            current.entries.push(KeyEntry {
                key: key.clone(),
                value: value.value.clone(),
                version: value.version,
            });
        }
        deltas.push(current);
        self.broadcast_version = self.own.max_version;
        deltas
            .into_iter()
            .map(|node| self.message(MessageBody::Update(Delta { nodes: vec![node] })))
            .collect()
    }

    fn own_delta(&self, from_version: Version) -> NodeDelta {
        NodeDelta {
            id: self.id,
            generation: self.own.generation,
            heartbeat: self.own.heartbeat,
            left: self.own.left,
            from_version,
            to_version: self.own.max_version,
            entries: Vec::new(),
        }
    }

    /// Merges a delta (from anti-entropy or a broadcast).
    fn apply(&mut self, now: Duration, delta: Delta) {
        for node in delta.nodes {
            self.apply_node(now, node);
        }
    }

    fn apply_node(&mut self, now: Duration, delta: NodeDelta) {
        let id = delta.id;
        // This node is the only source of its own state.
        if id == self.id {
            return;
        }
        if self
            .tombstones
            .get(&id)
            .is_some_and(|t| delta.generation <= t.generation)
        {
            return;
        }
        let theirs = delta
            .entries
            .iter()
            .find(|e| e.key == CLUSTER_ID_KEY)
            .and_then(|e| e.value.as_deref())
            .or_else(|| {
                self.peers
                    .get(&id)
                    .and_then(|p| p.state.get(CLUSTER_ID_KEY))
            });
        if let Some(theirs) = theirs.filter(|t| self.is_foreign(t)) {
            let theirs = theirs.to_string();
            self.report_foreign(id, theirs);
            return;
        }
        let previous = match self.peers.get(&id) {
            Some(peer) if delta.generation < peer.state.generation => return,
            Some(peer) if delta.generation == peer.state.generation => None,
            // A new incarnation (or node) needs its whole state; a departure of a node never
            // known is no news.
            Some(_) | None if delta.from_version != 0 => return,
            None if delta.left => return,
            Some(peer) => Some(peer.state.generation),
            None => None,
        };
        if previous.is_some() || !self.peers.contains_key(&id) {
            let peer = Peer::new(now, &delta, &self.config.failure_detector);
            self.peers.insert(id, peer);
            self.event(MemberEvent::Joined {
                id,
                generation: delta.generation,
                previous,
            });
        }
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let merge = peer.merge(now, &delta, &self.config.failure_detector);
        let generation = peer.state.generation;
        if let Some((old, new)) = merge.status {
            self.event(MemberEvent::StatusChanged {
                id,
                generation,
                old,
                new,
            });
        }
        for (key, value) in merge.keys {
            self.event(MemberEvent::KeyChanged { id, key, value });
        }
    }

    /// Forgets nodes dead or left for `gc_after`, keeping a tombstone of their generation for as
    /// long again; drops expired tombstones and foreign-cluster reports.
    fn collect_garbage(&mut self, now: Duration) {
        let gc_after = self.config.gc_after();
        let expired: Vec<MemberId> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                matches!(p.status, MemberStatus::Dead | MemberStatus::Left)
                    && now.saturating_sub(p.status_since) >= gc_after
            })
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(peer) = self.peers.remove(&id) {
                let generation = peer.state.generation;
                self.tombstones.insert(
                    id,
                    Tombstone {
                        generation,
                        removed_at: now,
                    },
                );
                self.event(MemberEvent::Removed { id, generation });
            }
        }
        self.tombstones
            .retain(|_, t| now.saturating_sub(t.removed_at) < gc_after);
        let interval = self.config.foreign_report_interval();
        self.foreign_reported
            .retain(|_, at| now.saturating_sub(*at) < interval);
    }
}

/// The next periodic deadline: one interval after the previous one, without drifting by the
/// tick granularity, unless the caller fell more than an interval behind.
fn next_deadline(previous: Option<Duration>, now: Duration, interval: Duration) -> Duration {
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
