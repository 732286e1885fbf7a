//! Scuttlebutt reconciliation (van Renesse et al. 2008, as in Cassandra and chitchat): digests,
//! deltas under a byte budget, and the choice of anti-entropy partners.

use std::collections::BTreeMap;

use super::codec::{key_entry_len, node_delta_header_len, node_digest_len};
use super::message::{Delta, Digest, KeyEntry, NodeDelta, NodeDigest, Version};
use super::state::NodeState;
use super::{MemberId, MemberStatus, Membership};

/// A node the peer lacks something of, and from which version on.
struct Stale<'a> {
    id: MemberId,
    state: &'a NodeState,
    /// How long ago this node learnt that heartbeat.
    heartbeat_age_ms: u64,
    floor: Version,
    staleness: usize,
    tie: u64,
}

impl Membership {
    /// What this node knows, within `budget` bytes: itself and every peer it has not forgotten
    /// (dead and left ones too, so a peer that knows better can say so). If everything does not
    /// fit (about a thousand nodes at the default budget), a random subset does; what is left out
    /// only costs the other side a redundant full state.
    pub(super) fn digest(&mut self, budget: usize) -> Digest {
        let own = self.own.digest(self.id);
        let mut used = node_digest_len(&own);
        let mut nodes = vec![own];
        let mut rest: Vec<NodeDigest> = self
            .peers
            .iter()
            .map(|(id, peer)| peer.state.digest(*id))
            .collect();
        let total: usize = rest.iter().map(node_digest_len).sum();
        if used + total > budget {
            self.rng.shuffle(&mut rest);
        }
        for node in rest {
            let len = node_digest_len(&node);
            if used + len <= budget {
                used += len;
                nodes.push(node);
            }
        }
        Digest { nodes }
    }

    /// What a peer with `digest` lacks, within `budget` bytes, stalest nodes first.
    ///
    /// Only first-hand-fresh states are offered: this node's own, and peers it observes alive.
    /// A suspect or dead peer's last heartbeat is old news that could only make the receiver
    /// believe a crashed node is alive again; a departed peer's state is offered only to a receiver
    /// that knows the node (to tell it the node left).
    pub(super) fn delta_for(&mut self, digest: &Digest, budget: usize) -> Delta {
        let known: BTreeMap<MemberId, &NodeDigest> =
            digest.nodes.iter().map(|n| (n.id, n)).collect();
        let now = self.now;
        let candidates = std::iter::once((self.id, &self.own, 0)).chain(
            self.peers
                .iter()
                .filter(|(_, p)| matches!(p.status, MemberStatus::Alive | MemberStatus::Left))
                .map(|(id, p)| {
                    let age = now.saturating_sub(p.last_heard).as_millis();
                    (*id, &p.state, u64::try_from(age).unwrap_or(u64::MAX))
                }),
        );
        let mut stale = Vec::new();
        for (id, state, heartbeat_age_ms) in candidates {
            let (floor, newer_heartbeat) = match known.get(&id) {
                None if state.left => continue,
                None => (0, true),
                Some(d) if d.generation > state.generation => continue,
                Some(d) if d.generation < state.generation => (0, true),
                Some(d) => (d.max_version, state.heartbeat > d.heartbeat),
            };
            let stale_entries = state.entries.values().filter(|v| v.version > floor).count();
            let newer_versions = state.max_version > floor;
            if !newer_heartbeat && !newer_versions {
                continue;
            }
            stale.push(Stale {
                id,
                state,
                heartbeat_age_ms,
                floor,
                staleness: stale_entries + usize::from(newer_heartbeat || stale_entries == 0),
                tie: self.rng.next_u64(),
            });
        }
        stale.sort_by_key(|s| (std::cmp::Reverse(s.staleness), s.tie));
        let mut remaining = budget;
        let mut nodes = Vec::new();
        for s in stale {
            if let Some(node) = node_delta(&s, &mut remaining) {
                nodes.push(node);
            }
        }
        Delta { nodes }
    }

    /// Anti-entropy partners for this round: one random live peer; a random dead one with
    /// probability dead / (live + 1), so a partition heals (Cassandra's rule); and a random seed
    /// when no peer is live, or with probability seeds / (live + dead + 1), so separately started
    /// groups find each other.
    pub(super) fn gossip_targets(&mut self) -> Vec<MemberId> {
        let mut live = Vec::new();
        let mut dead = Vec::new();
        for (id, peer) in &self.peers {
            match peer.status {
                MemberStatus::Alive | MemberStatus::Suspect => live.push(*id),
                MemberStatus::Dead => dead.push(*id),
                MemberStatus::Left => {}
            }
        }
        let mut targets = Vec::new();
        if let Some(id) = self.rng.pick(&live) {
            targets.push(*id);
        }
        let p_dead = dead.len() as f64 / (live.len() + 1) as f64;
        if !dead.is_empty() && self.rng.chance(p_dead) {
            targets.extend(self.rng.pick(&dead).copied());
        }
        let seeds: Vec<MemberId> = self
            .seeds
            .iter()
            .filter(|s| **s != self.id && !targets.contains(s))
            .copied()
            .collect();
        let p_seed = seeds.len() as f64 / (live.len() + dead.len() + 1) as f64;
        if !seeds.is_empty() && (live.is_empty() || self.rng.chance(p_seed)) {
            targets.extend(self.rng.pick(&seeds).copied());
        }
        targets
    }
}

/// The delta of one node's state above `floor`, as much of it as `remaining` allows (entries in
/// version order, so a truncated delta is still a prefix the receiver can apply), or `None` if not
/// even its header fits.
fn node_delta(s: &Stale<'_>, remaining: &mut usize) -> Option<NodeDelta> {
    let state = s.state;
    let complete_to = state.max_version.max(s.floor);
    let header = node_delta_header_len(
        &s.id,
        state.generation,
        state.heartbeat,
        s.heartbeat_age_ms,
        s.floor,
        complete_to,
    );
    *remaining = remaining.checked_sub(header)?;
    let mut entries = Vec::new();
    let mut to_version = complete_to;
    for (key, value) in state.entries_above(s.floor) {
        let len = key_entry_len(key, value.value.as_deref(), value.version);
        if len > *remaining {
            // Truncated: the receiver gets versions up to the last entry sent.
            to_version = entries.last().map_or(s.floor, |e: &KeyEntry| e.version);
            break;
        }
        *remaining -= len;
        entries.push(KeyEntry {
            key: key.clone(),
            value: value.value.clone(),
            version: value.version,
        });
    }
    Some(NodeDelta {
        id: s.id,
        generation: state.generation,
        heartbeat: state.heartbeat,
        heartbeat_age_ms: s.heartbeat_age_ms,
        left: state.left,
        from_version: s.floor,
        to_version,
        entries,
    })
}
