//! Events and commands of push on the data plane: gossip messages judged by the broker's
//! validator before they go further, subscribers' polls handed to the broker, this peer's own
//! polls, and a node's data-plane connections to the other live members (gossip needs them).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{PeerId, gossipsub};
use tokio::sync::{mpsc, oneshot};

use super::{EventLoop, Reply, Waiter};
use crate::MeshError;
use crate::membership::MemberStatus;
use crate::metrics;
use crate::push::{IgnoreAll, InboundPushPoll, Listened, PushDelivery, SharedValidator, Verdict};

/// How often a node dials a live member it has no data-plane connection to.
const REDIAL_EVERY: Duration = Duration::from_secs(5);

/// Where push hands things to the broker.
#[derive(Debug)]
pub(crate) struct PushOutlets {
    pub(crate) deliveries: mpsc::Sender<PushDelivery>,
    pub(crate) polls: mpsc::Sender<InboundPushPoll>,
    pub(crate) listened: Listened,
}

/// Push's share of the event loop's state.
pub(super) struct PushState {
    validator: SharedValidator,
    outlets: PushOutlets,
    pending_polls: HashMap<OutboundRequestId, Waiter<Bytes>>,
    dialed: HashMap<PeerId, Instant>,
    /// Who subscribes to each gossip topic, among connected nodes.
    subscribers: HashMap<String, HashSet<PeerId>>,
}

impl PushState {
    pub(super) fn new(outlets: PushOutlets) -> Self {
        PushState {
            validator: std::sync::Arc::new(IgnoreAll),
            outlets,
            pending_polls: HashMap::new(),
            dialed: HashMap::new(),
            subscribers: HashMap::new(),
        }
    }
}

/// Push commands from [`crate::Mesh`] handles.
#[derive(Debug)]
pub(crate) enum PushCommand {
    Subscribe {
        topic: String,
        subscribe: bool,
        reply: oneshot::Sender<Result<(), MeshError>>,
    },
    Publish {
        topic: String,
        data: Bytes,
        reply: oneshot::Sender<Result<(), MeshError>>,
    },
    SetValidator {
        validator: SharedValidator,
        reply: oneshot::Sender<()>,
    },
    Poll {
        peer: PeerId,
        frame: Bytes,
        reply: Waiter<Bytes>,
    },
}

impl std::fmt::Debug for dyn crate::push::PushValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PushValidator")
    }
}

fn no_gossip() -> MeshError {
    MeshError::Config("push gossip is not enabled on this peer".into())
}

impl EventLoop {
    pub(super) fn handle_push_command(&mut self, command: PushCommand) {
        match command {
            PushCommand::Subscribe {
                topic,
                subscribe,
                reply,
            } => {
                let result = match self.data.behaviour_mut().push.as_mut() {
                    Some(gossip) => {
                        let topic = gossipsub::IdentTopic::new(topic);
                        if subscribe {
                            gossip
                                .subscribe(&topic)
                                .map(|_| ())
                                .map_err(|e| MeshError::Config(format!("push subscribe: {e}")))
                        } else {
                            gossip.unsubscribe(&topic);
                            Ok(())
                        }
                    }
                    None => Err(no_gossip()),
                };
                let _ = reply.send(result);
            }
            PushCommand::Publish { topic, data, reply } => {
                let result = match self.data.behaviour_mut().push.as_mut() {
                    Some(gossip) => match gossip.publish(gossipsub::IdentTopic::new(topic), data) {
                        Ok(_) => Ok(()),
                        // Nobody subscribed (yet): nothing to send, nothing wrong.
                        Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => Ok(()),
                        Err(e) => Err(MeshError::Config(format!("push publish: {e}"))),
                    },
                    None => Err(no_gossip()),
                };
                let _ = reply.send(result);
            }
            PushCommand::SetValidator { validator, reply } => {
                self.push.validator = validator;
                let _ = reply.send(());
            }
            PushCommand::Poll { peer, frame, reply } => {
                let id = self
                    .data
                    .behaviour_mut()
                    .push_poll
                    .send_request(&peer, frame);
                self.push.pending_polls.insert(id, reply);
            }
        }
    }

    pub(super) fn handle_push_gossip(&mut self, event: gossipsub::Event) {
        let (propagation_source, message_id, message) = match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => (propagation_source, message_id, message),
            gossipsub::Event::Subscribed { peer_id, topic } => {
                self.push_subscriber(peer_id, topic.as_str(), true);
                return;
            }
            gossipsub::Event::Unsubscribed { peer_id, topic } => {
                self.push_subscriber(peer_id, topic.as_str(), false);
                return;
            }
            _ => return,
        };
        let verdict = match message.source {
            Some(author) => {
                let verdict =
                    self.push
                        .validator
                        .validate(&author, message.topic.as_str(), &message.data);
                (author, verdict)
            }
            // Strict mode refuses unsigned messages before this; never forward one.
            None => (propagation_source, Verdict::Reject),
        };
        let (author, verdict) = verdict;
        metrics::push_gossip_received(verdict);
        let acceptance = match verdict {
            Verdict::Accept => gossipsub::MessageAcceptance::Accept,
            Verdict::Reject => gossipsub::MessageAcceptance::Reject,
            Verdict::Ignore => gossipsub::MessageAcceptance::Ignore,
        };
        if let Some(gossip) = self.data.behaviour_mut().push.as_mut() {
            gossip.report_message_validation_result(&message_id, &propagation_source, acceptance);
        }
        if verdict != Verdict::Accept {
            tracing::debug!(peer = %author, topic = %message.topic, ?verdict, "push gossip not accepted");
            return;
        }
        let delivery = PushDelivery {
            author,
            topic: message.topic.into_string(),
            data: Bytes::from(message.data),
        };
        if self.push.outlets.deliveries.try_send(delivery).is_err() {
            metrics::push_delivery_dropped();
        }
    }

    /// Records that `peer` joined or left gossip topic `topic`.
    fn push_subscriber(&mut self, peer: PeerId, topic: &str, joined: bool) {
        let peers = self.push.subscribers.entry(topic.to_string()).or_default();
        if joined {
            peers.insert(peer);
        } else {
            peers.remove(&peer);
        }
        let listened = !peers.is_empty();
        if !listened {
            self.push.subscribers.remove(topic);
        }
        self.push.outlets.listened.set(topic, listened);
    }

    /// A node's last data-plane connection closed: it subscribes to nothing here any more.
    pub(super) fn push_peer_gone(&mut self, peer: PeerId) {
        let topics: Vec<String> = self
            .push
            .subscribers
            .iter()
            .filter(|(_, peers)| peers.contains(&peer))
            .map(|(topic, _)| topic.clone())
            .collect();
        for topic in topics {
            self.push_subscriber(peer, &topic, false);
        }
    }

    pub(super) fn handle_push_poll(&mut self, event: request_response::Event<Bytes, Bytes>) {
        if let Some((peer, frame, channel)) =
            super::settle_bytes(&mut self.push.pending_polls, event, "push poll")
        {
            self.forward_inbound_poll(peer, frame, channel);
        }
    }

    fn forward_inbound_poll(
        &mut self,
        peer: PeerId,
        frame: Bytes,
        channel: ResponseChannel<Bytes>,
    ) {
        let (reply, rx) = oneshot::channel();
        if let Err(e) = self
            .push
            .outlets
            .polls
            .try_send(InboundPushPoll { peer, frame, reply })
        {
            tracing::warn!(peer = %peer, error = %e, "inbound poll queue full; poll dropped");
            return;
        }
        self.replies
            .push(Box::pin(rx.map(move |r| Reply::Push(channel, r.ok()))));
    }

    /// Keeps a data-plane connection to every live member, so that the push gossip has peers
    /// (nodes otherwise connect only where replication or requests take them).
    pub(super) fn connect_push_peers(&mut self) {
        if self.data.behaviour().push.as_ref().is_none() {
            return;
        }
        let Some(membership) = self.membership.as_ref() else {
            return;
        };
        let live: Vec<PeerId> = membership
            .peers()
            .filter(|(_, status)| *status == MemberStatus::Alive)
            .map(|(id, _)| id)
            .collect();
        let now = Instant::now();
        self.push.dialed.retain(|peer, _| live.contains(peer));
        for peer in live {
            if self.data.is_connected(&peer) {
                continue;
            }
            let recent = self
                .push
                .dialed
                .get(&peer)
                .is_some_and(|at| now.duration_since(*at) < REDIAL_EVERY);
            if recent {
                continue;
            }
            self.push.dialed.insert(peer, now);
            // Addresses come from the member's gossiped data addresses (added to the swarm).
            if let Err(e) = self.data.dial(DialOpts::peer_id(peer).build()) {
                tracing::debug!(peer = %peer, error = %e, "cannot dial a member for push gossip");
            }
        }
    }
}
