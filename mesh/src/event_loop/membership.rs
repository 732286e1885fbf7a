//! Drives the membership core: time in, messages in, outputs carried out, the view published.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use libp2p::PeerId;
use libp2p::gossipsub;
use tokio::sync::oneshot;

use super::EventLoop;
use crate::control::MEMBERSHIP_TOPIC;
use crate::membership::{
    Generation, MemberEvent, MemberStatus, Membership, Message, MessageBody, Output, codec,
};
use crate::view::{self, CONTROL_ADDRS_KEY, DATA_ADDRS_KEY, MemberInfo, MembershipView};
use crate::{MeshError, metrics};

impl EventLoop {
    pub(super) fn on_tick(&mut self) {
        let now = self.now();
        let Some(membership) = self.membership.as_mut() else {
            return;
        };
        membership.tick(now);
        self.drain_membership();
        self.publish_view();
        let left = self
            .leaving
            .as_ref()
            .is_some_and(|(deadline, _)| Instant::now() >= *deadline);
        if left && let Some((_, waiters)) = self.leaving.take() {
            for waiter in waiters {
                let _ = waiter.send(());
            }
        }
    }

    /// A membership message from `from` (a direct sender, or the author of a broadcast).
    pub(super) fn membership_message(&mut self, from: PeerId, bytes: &[u8]) {
        let now = self.now();
        let Some(membership) = self.membership.as_mut() else {
            return;
        };
        match codec::decode(bytes, membership.config().max_message_bytes + 4096) {
            Ok(message) => {
                let Some(message) = self.gatekeeper.filter(from, message) else {
                    return;
                };
                let known = known_heartbeats(membership, &message);
                membership.handle(now, from, message);
                record_heartbeat_gaps(membership, now, &known);
                self.drain_membership();
            }
            Err(e) => tracing::debug!(peer = %from, error = %e, "unreadable membership message"),
        }
    }

    fn drain_membership(&mut self) {
        while let Some(output) = self.membership.as_mut().and_then(|m| m.poll_output()) {
            match output {
                Output::Send { to, message } => {
                    let bytes = Bytes::from(codec::encode(&message));
                    if let Some(control) = self.control.as_mut() {
                        control.behaviour_mut().membership.send_request(&to, bytes);
                    }
                }
                Output::Broadcast { message } => {
                    let bytes = codec::encode(&message);
                    if let Some(control) = self.control.as_mut() {
                        let topic = gossipsub::IdentTopic::new(MEMBERSHIP_TOPIC);
                        if let Err(e) = control.behaviour_mut().gossipsub.publish(topic, bytes) {
                            tracing::trace!(error = %e, "membership broadcast not published");
                        }
                    }
                }
                Output::Event(event) => self.member_event(event),
            }
        }
    }

    fn member_event(&mut self, event: MemberEvent) {
        match event {
            MemberEvent::Joined {
                id,
                generation,
                previous,
            } => {
                tracing::info!(peer = %id, %generation, restarted = previous.is_some(), "member joined");
            }
            MemberEvent::StatusChanged { id, old, new, .. } => match (old, new) {
                (_, MemberStatus::Dead) => tracing::warn!(peer = %id, ?old, "member dead"),
                (_, MemberStatus::Left) => tracing::info!(peer = %id, "member left"),
                (MemberStatus::Dead | MemberStatus::Left, _) => {
                    tracing::info!(peer = %id, ?old, ?new, "member alive again")
                }
                _ => tracing::debug!(peer = %id, ?old, ?new, "member status changed"),
            },
            MemberEvent::KeyChanged {
                id,
                key,
                value: Some(value),
            } if key == CONTROL_ADDRS_KEY => {
                self.learn_control_addrs(id, &view::parse_addrs(&value));
            }
            MemberEvent::KeyChanged {
                id,
                key,
                value: Some(value),
            } if key == DATA_ADDRS_KEY => {
                for addr in view::parse_addrs(&value) {
                    self.data.add_peer_address(id, addr);
                }
                self.known_data_peers.insert(id);
            }
            MemberEvent::ForeignCluster { id, cluster_id } => {
                tracing::warn!(peer = %id, %cluster_id, "ignoring a node of another cluster");
            }
            MemberEvent::Removed { id, .. } => {
                self.known_data_peers.remove(&id);
            }
            MemberEvent::KeyChanged { .. } => {}
        }
    }

    /// Publishes the current view to the broker (and to `/rafka/cluster/1` askers).
    pub(super) fn publish_view(&mut self) {
        let Some(membership) = self.membership.as_ref() else {
            return;
        };
        let now = self.now();
        let mut members: Vec<MemberInfo> = membership
            .members()
            .iter()
            .map(|m| MemberInfo::from_member(m, now))
            .collect();
        members.sort_by_key(|m| m.peer_id);
        let view = MembershipView {
            local: Some(self.local),
            members,
        };
        self.view.send_if_modified(|current| {
            let changed = **current != view;
            if changed {
                *current = Arc::new(view);
            }
            changed
        });
    }

    /// Gossips this node's listen addresses of both planes.
    pub(super) fn publish_own_addrs(&mut self) {
        let data: Vec<_> = self.data.listeners().cloned().collect();
        let control: Vec<_> = self
            .control
            .as_ref()
            .map(|c| c.listeners().cloned().collect())
            .unwrap_or_default();
        let Some(membership) = self.membership.as_mut() else {
            return;
        };
        for (key, addrs) in [(DATA_ADDRS_KEY, data), (CONTROL_ADDRS_KEY, control)] {
            if !addrs.is_empty() {
                let _ = membership.set(key, &view::format_addrs(&addrs));
            }
        }
        self.publish_view();
    }

    pub(super) fn set_state(&mut self, key: &str, value: Option<&str>) -> Result<(), MeshError> {
        let membership = self.membership.as_mut().ok_or_else(no_membership)?;
        let result = match value {
            Some(value) => membership.set(key, value),
            None => membership.remove(key),
        };
        result.map_err(|e| MeshError::Config(e.to_string()))?;
        self.drain_membership();
        self.publish_view();
        Ok(())
    }

    pub(super) fn set_cluster_id(&mut self, cluster_id: &str) -> Result<(), MeshError> {
        let membership = self.membership.as_mut().ok_or_else(no_membership)?;
        membership
            .set_cluster_id(cluster_id)
            .map_err(|e| MeshError::Config(e.to_string()))?;
        self.drain_membership();
        self.publish_view();
        Ok(())
    }

    /// Leaves: the core broadcasts `left` a few times; the caller is answered after that.
    pub(super) fn leave(&mut self, reply: oneshot::Sender<()>) {
        let Some(membership) = self.membership.as_mut() else {
            let _ = reply.send(());
            return;
        };
        let config = membership.config();
        let wait = config.leave_rebroadcast_interval() * (config.leave_rebroadcasts + 1);
        membership.leave();
        self.drain_membership();
        match &mut self.leaving {
            Some((_, waiters)) => waiters.push(reply),
            None => self.leaving = Some((Instant::now() + wait, vec![reply])),
        }
    }
}

fn no_membership() -> MeshError {
    MeshError::Config("a client has no membership state".into())
}

/// A peer's incarnation, heartbeat counter and when that heartbeat was sent.
type KnownHeartbeat = (PeerId, (Generation, u64, Duration));

/// What is known of the heartbeats of the peers `message` has news of, before it is handled.
fn known_heartbeats(membership: &Membership, message: &Message) -> Vec<KnownHeartbeat> {
    let delta = match &message.body {
        MessageBody::Ack { delta, .. } | MessageBody::Ack2(delta) | MessageBody::Update(delta) => {
            delta
        }
        MessageBody::Syn(_) | MessageBody::BadCluster => return Vec::new(),
    };
    delta
        .nodes
        .iter()
        .filter_map(|node| Some((node.id, membership.last_heartbeat(&node.id)?)))
        .collect()
}

/// For each peer whose heartbeat the message advanced (same incarnation), records how long this
/// node had gone without news of it ([`metrics::HEARTBEAT_GAP_SECONDS`]).
fn record_heartbeat_gaps(membership: &Membership, now: Duration, known: &[KnownHeartbeat]) {
    for (id, (generation, heartbeat, sent)) in known {
        let advanced = membership
            .last_heartbeat(id)
            .is_some_and(|(g, h, _)| g == *generation && h > *heartbeat);
        if advanced {
            metrics::heartbeat_gap(now.saturating_sub(*sent));
        }
    }
}
