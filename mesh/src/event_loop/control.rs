//! Events of the control plane: membership anti-entropy and broadcasts, Raft RPCs, Kademlia and
//! identify.

use bytes::Bytes;
use libp2p::request_response::{self, Message};
use libp2p::swarm::{ListenError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, gossipsub, identify, kad};

use super::EventLoop;
use super::admission::Denied;
use crate::control::ControlBehaviourEvent;

impl EventLoop {
    pub(super) fn handle_control_event(&mut self, event: SwarmEvent<ControlBehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                tracing::info!(%address, "mesh control plane listening");
                self.listeners.bound(listener_id);
                self.publish_own_addrs();
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                let reason = reason.map_or_else(|e| e.to_string(), |()| "closed".to_string());
                self.listeners
                    .closed(listener_id, addresses.into_iter().next(), reason);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "control plane connected");
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error: ListenError::Denied { cause },
                peer_id,
                ..
            } => self.gatekeeper.denied(&Denied {
                plane: "control",
                peer: peer_id,
                addr: &send_back_addr,
                cause: &cause,
            }),
            SwarmEvent::Behaviour(ControlBehaviourEvent::Membership(event)) => {
                self.handle_membership_rr(event)
            }
            SwarmEvent::Behaviour(ControlBehaviourEvent::Raft(event)) => self.handle_raft(event),
            SwarmEvent::Behaviour(ControlBehaviourEvent::Gossipsub(
                gossipsub::Event::Message {
                    propagation_source,
                    message,
                    ..
                },
            )) => {
                let author = message.source.unwrap_or(propagation_source);
                self.membership_message(author, &message.data);
            }
            SwarmEvent::Behaviour(ControlBehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer,
                addresses,
                ..
            })) => {
                let addrs: Vec<Multiaddr> = addresses.iter().cloned().collect();
                self.learn_control_addrs(peer, &addrs);
            }
            SwarmEvent::Behaviour(ControlBehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                if let Some(control) = self.control.as_mut() {
                    for addr in &info.listen_addrs {
                        control.add_peer_address(peer_id, addr.clone());
                        control
                            .behaviour_mut()
                            .kad
                            .add_address(&peer_id, addr.clone());
                    }
                }
            }
            _ => {}
        }
    }

    fn handle_membership_rr(&mut self, event: request_response::Event<Bytes, Bytes>) {
        use request_response::Event;
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                if let Some(control) = self.control.as_mut() {
                    let _ = control
                        .behaviour_mut()
                        .membership
                        .send_response(channel, Bytes::new());
                }
                self.membership_message(peer, &request);
            }
            Event::OutboundFailure { peer, error, .. } => {
                tracing::trace!(peer = %peer, %error, "membership message not delivered");
                // A connection that timed out may be a TCP connection across a network split,
                // backing off its retransmissions for many seconds after the split heals: drop it
                // so the next anti-entropy round dials afresh and sees the heal at once.
                if matches!(error, request_response::OutboundFailure::Timeout)
                    && let Some(control) = self.control.as_mut()
                {
                    let _ = control.disconnect_peer_id(peer);
                }
            }
            _ => {}
        }
    }

    fn handle_raft(&mut self, event: request_response::Event<Bytes, Bytes>) {
        if let Some((peer, request, channel)) =
            super::settle_bytes(&mut self.pending_raft, event, "Raft RPC")
        {
            self.forward_inbound_raft(peer, request, channel);
        }
    }

    /// A node's control-plane addresses: dialable, in the DHT, and a membership seed.
    pub(super) fn learn_control_addrs(&mut self, peer: PeerId, addrs: &[Multiaddr]) {
        if peer == self.local || addrs.is_empty() {
            return;
        }
        if let Some(control) = self.control.as_mut() {
            for addr in addrs {
                control.add_peer_address(peer, addr.clone());
                control.behaviour_mut().kad.add_address(&peer, addr.clone());
            }
        }
        if let Some(membership) = self.membership.as_mut()
            && membership.status(&peer).is_none()
            && self.gatekeeper.admits(&peer)
        {
            membership.add_seed(peer);
        }
    }
}
