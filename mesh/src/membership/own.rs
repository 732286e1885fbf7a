//! This node's own state: keys, cluster id, heartbeat, broadcasts, and leaving.

use std::time::Duration;

use super::message::{Delta, KeyEntry, Message, MessageBody, NodeDelta, Version};
use super::{
    CLUSTER_ID_KEY, Leaving, MemberEvent, MemberId, Membership, Output, StateError, codec,
    next_deadline,
};

impl Membership {
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

    pub(super) fn check_key(&self, key: &str) -> Result<(), StateError> {
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

    /// Bumps and broadcasts the heartbeat when due; broadcasts own changes at once otherwise.
    /// After `leave`, only the departure is broadcast again.
    pub(super) fn heartbeat(&mut self, now: Duration) {
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

    pub(super) fn broadcast_own(&mut self) {
        for message in self.own_updates() {
            self.outputs.push_back(Output::Broadcast { message });
        }
    }

    /// `Update`s carrying the own heartbeat and every change since the previous broadcast, split
    /// to fit the byte budget (each a contiguous version range).
    pub(super) fn own_updates(&mut self) -> Vec<Message> {
        let budget = self.delta_budget();
        let own = &self.own;
        // Every chunk's versions are at most `max_version`: a bound for each header.
        let header = codec::node_delta_header_len(
            &self.id,
            own.generation,
            own.heartbeat,
            0,
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

    pub(super) fn own_delta(&self, from_version: Version) -> NodeDelta {
        NodeDelta {
            id: self.id,
            generation: self.own.generation,
            heartbeat: self.own.heartbeat,
            heartbeat_age_ms: 0,
            left: self.own.left,
            from_version,
            to_version: self.own.max_version,
            entries: Vec::new(),
        }
    }
}
