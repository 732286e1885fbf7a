//! Events of the data plane: Kafka requests both ways, cluster information, mDNS, identify.

use bytes::Bytes;
use libp2p::request_response::{self, Message};
use libp2p::swarm::{ListenError, SwarmEvent};
use libp2p::{PeerId, identify, mdns};

use super::EventLoop;
use super::admission::Denied;
use crate::data::DataBehaviourEvent;
use crate::kafka_codec::Frame;
use crate::view::{self, DATA_ADDRS_KEY};
use crate::{MeshError, Role, split_peer_id};

impl EventLoop {
    pub(super) fn handle_data_event(&mut self, event: SwarmEvent<DataBehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                tracing::info!(%address, "mesh data plane listening");
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
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "data plane connected");
                if let Some((addr, reply)) = self.pending_dials.remove(&connection_id) {
                    let (base, _) = split_peer_id(&addr);
                    self.data.add_peer_address(peer_id, base);
                    let _ = reply.send(Ok(peer_id));
                }
                self.data_peer_found(peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => self.push_peer_gone(peer_id),
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                if let Some((addr, reply)) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Err(MeshError::Dial {
                        addr,
                        reason: error.to_string(),
                    }));
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error: ListenError::Denied { cause },
                peer_id,
                ..
            } => self.gatekeeper.denied(&Denied {
                plane: "data",
                peer: peer_id,
                addr: &send_back_addr,
                cause: &cause,
            }),
            SwarmEvent::Behaviour(DataBehaviourEvent::Kafka(event)) => self.handle_kafka(event),
            SwarmEvent::Behaviour(DataBehaviourEvent::Cluster(event)) => self.handle_cluster(event),
            SwarmEvent::Behaviour(DataBehaviourEvent::Mdns(event)) => self.handle_mdns(event),
            SwarmEvent::Behaviour(DataBehaviourEvent::Push(event)) => {
                self.handle_push_gossip(event)
            }
            SwarmEvent::Behaviour(DataBehaviourEvent::PushPoll(event)) => {
                self.handle_push_poll(event)
            }
            SwarmEvent::Behaviour(DataBehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                for addr in info.listen_addrs {
                    self.data.add_peer_address(peer_id, addr);
                }
            }
            _ => {}
        }
    }

    /// A node reachable on the data plane: learn who else it knows (nodes only ask once in a
    /// while; clients ask when the library asks).
    fn data_peer_found(&mut self, peer: PeerId) {
        let new = self.known_data_peers.insert(peer);
        let known_member = self
            .membership
            .as_ref()
            .is_some_and(|m| m.status(&peer).is_some());
        if self.role == Role::Node && (new || !known_member) {
            self.ask_cluster(peer, None);
        }
    }

    fn handle_mdns(&mut self, event: mdns::Event) {
        match event {
            mdns::Event::Discovered(found) => {
                for (peer, addr) in found {
                    if peer == self.local {
                        continue;
                    }
                    tracing::debug!(peer = %peer, %addr, "mDNS discovered");
                    self.data.add_peer_address(peer, addr);
                    self.data_peer_found(peer);
                }
            }
            mdns::Event::Expired(_) => {}
        }
    }

    fn handle_kafka(&mut self, event: request_response::Event<Frame, Bytes>) {
        if let Some((peer, request, channel)) =
            super::settle_bytes(&mut self.pending_kafka, event, "Kafka request")
        {
            self.forward_inbound_kafka(peer, request, channel);
        }
    }

    fn handle_cluster(&mut self, event: request_response::Event<Bytes, Bytes>) {
        use request_response::Event;
        match event {
            Event::Message {
                message: Message::Request { channel, .. },
                ..
            } => {
                let answer = view::encode_cluster_info(&self.view.borrow());
                let _ = self
                    .data
                    .behaviour_mut()
                    .cluster
                    .send_response(channel, Bytes::from(answer));
            }
            Event::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                let Some((_, reply)) = self.pending_cluster.remove(&request_id) else {
                    return;
                };
                let result = view::decode_cluster_info(&response).map_err(|e| MeshError::Request {
                    peer,
                    reason: format!("bad cluster information: {e}"),
                });
                if let Ok(info) = &result {
                    self.learn_cluster(info);
                }
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            } => {
                if let Some((_, Some(reply))) = self.pending_cluster.remove(&request_id) {
                    let _ = reply.send(Err(MeshError::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            _ => {}
        }
    }

    /// Makes every member of `info` dialable on both planes and a membership seed.
    fn learn_cluster(&mut self, info: &view::MembershipView) {
        for member in &info.members {
            if member.peer_id == self.local || !member.is_live() {
                continue;
            }
            for addr in member.addrs(DATA_ADDRS_KEY) {
                self.data.add_peer_address(member.peer_id, addr);
            }
            self.known_data_peers.insert(member.peer_id);
            self.learn_control_addrs(member.peer_id, &member.addrs(view::CONTROL_ADDRS_KEY));
        }
        if self.role == Role::Client {
            // Clients have no membership of their own: what the node said is their view.
            let mut view = info.clone();
            view.local = Some(self.local);
            self.view.send_replace(std::sync::Arc::new(view));
        }
    }
}
