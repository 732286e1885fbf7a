//! The one task that owns the libp2p `Swarm`.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use libp2p::core::transport::ListenerId;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identity::Keypair, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};

use crate::behaviour::{Behaviour, BehaviourEvent};
use crate::handle::InboundKafka;
use crate::{MeshConfig, MeshError, split_peer_id};

/// Requests from [`crate::Mesh`] handles to the swarm task.
#[derive(Debug)]
pub(crate) enum Command {
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    /// Replies once every listener has an address (or failed).
    WaitListening {
        reply: oneshot::Sender<Result<Vec<Multiaddr>, MeshError>>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, MeshError>>,
    },
    KafkaRequest {
        peer: PeerId,
        frame: Bytes,
        reply: oneshot::Sender<Result<Bytes, MeshError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

type PendingResponse =
    Pin<Box<dyn Future<Output = (ResponseChannel<Bytes>, Option<Bytes>)> + Send>>;

/// State of the swarm task.
pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    inbound: mpsc::Sender<InboundKafka>,
    pending_dials: HashMap<ConnectionId, (Multiaddr, oneshot::Sender<Result<PeerId, MeshError>>)>,
    pending_requests:
        HashMap<OutboundRequestId, (PeerId, oneshot::Sender<Result<Bytes, MeshError>>)>,
    pending_responses: FuturesUnordered<PendingResponse>,
    listeners_starting: HashSet<ListenerId>,
    listen_failure: Option<MeshError>,
    listen_waiters: Vec<oneshot::Sender<Result<Vec<Multiaddr>, MeshError>>>,
}

impl EventLoop {
    pub(crate) fn new(
        keypair: Keypair,
        config: &MeshConfig,
        commands: mpsc::Receiver<Command>,
        inbound: mpsc::Sender<InboundKafka>,
    ) -> Result<Self, MeshError> {
        let build = |e: &dyn std::fmt::Display| MeshError::Build(e.to_string());
        let idle = config.idle_connection_timeout;
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| build(&e))?
            .with_behaviour(|key| Behaviour::new(key, config))
            .map_err(|e| build(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build();
        let mut listeners_starting = HashSet::new();
        for addr in &config.listen {
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|e| MeshError::Listen {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
            listeners_starting.insert(id);
        }
        Ok(Self {
            swarm,
            commands,
            inbound,
            pending_dials: HashMap::new(),
            pending_requests: HashMap::new(),
            pending_responses: FuturesUnordered::new(),
            listeners_starting,
            listen_failure: None,
            listen_waiters: Vec::new(),
        })
    }

    /// Runs until a shutdown command arrives or every handle is dropped.
    pub(crate) async fn run(mut self) {
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        let _ = reply.send(());
                        break;
                    }
                    Some(command) => self.handle_command(command),
                    None => break,
                },
                event = self.swarm.select_next_some() => self.handle_event(event),
                Some((channel, response)) = self.pending_responses.next(),
                    if !self.pending_responses.is_empty() =>
                {
                    // A dropped reply (None) drops the channel: the peer sees the stream fail.
                    if let Some(response) = response {
                        let _ = self.swarm.behaviour_mut().kafka.send_response(channel, response);
                    }
                }
            }
        }
        tracing::debug!("mesh event loop stopped");
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::WaitListening { reply } => {
                self.listen_waiters.push(reply);
                self.notify_listen_waiters();
            }
            Command::Dial { addr, reply } => self.dial(addr, reply),
            Command::KafkaRequest { peer, frame, reply } => {
                let id = self.swarm.behaviour_mut().kafka.send_request(&peer, frame);
                self.pending_requests.insert(id, (peer, reply));
            }
            Command::Shutdown { .. } => {}
        }
    }

    fn notify_listen_waiters(&mut self) {
        if !self.listeners_starting.is_empty() && self.listen_failure.is_none() {
            return;
        }
        for waiter in self.listen_waiters.drain(..) {
            let result = match &self.listen_failure {
                Some(MeshError::Listen { addr, reason }) => Err(MeshError::Listen {
                    addr: addr.clone(),
                    reason: reason.clone(),
                }),
                _ => Ok(self.swarm.listeners().cloned().collect()),
            };
            let _ = waiter.send(result);
        }
    }

    fn dial(&mut self, addr: Multiaddr, reply: oneshot::Sender<Result<PeerId, MeshError>>) {
        let (base, peer) = split_peer_id(&addr);
        if let Some(peer) = peer {
            if self.swarm.is_connected(&peer) {
                let _ = reply.send(Ok(peer));
                return;
            }
            self.swarm.add_peer_address(peer, base.clone());
        }
        let opts = match peer {
            Some(peer) => DialOpts::peer_id(peer).addresses(vec![base]).build(),
            None => DialOpts::unknown_peer_id().address(base).build(),
        };
        let connection_id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.pending_dials.insert(connection_id, (addr, reply));
            }
            Err(e) => {
                let _ = reply.send(Err(MeshError::Dial {
                    addr,
                    reason: e.to_string(),
                }));
            }
        }
    }

    fn handle_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                tracing::info!(%address, "mesh listening");
                self.listeners_starting.remove(&listener_id);
                self.notify_listen_waiters();
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } if self.listeners_starting.remove(&listener_id) => {
                let reason = match reason {
                    Ok(()) => "closed".to_string(),
                    Err(e) => e.to_string(),
                };
                let addr = addresses
                    .into_iter()
                    .next()
                    .unwrap_or_else(Multiaddr::empty);
                self.listen_failure = Some(MeshError::Listen { addr, reason });
                self.notify_listen_waiters();
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
                if let Some((addr, reply)) = self.pending_dials.remove(&connection_id) {
                    let (base, _) = split_peer_id(&addr);
                    self.swarm.add_peer_address(peer_id, base);
                    let _ = reply.send(Ok(peer_id));
                }
            }
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
            SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
                tracing::debug!(peer = %peer_id, ?cause, "connection closed");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kafka(event)) => self.handle_kafka(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(
                libp2p::identify::Event::Received { peer_id, info, .. },
            )) => {
                for addr in info.listen_addrs {
                    self.swarm.add_peer_address(peer_id, addr);
                }
            }
            _ => {}
        }
    }

    fn handle_kafka(&mut self, event: request_response::Event<Bytes, Bytes>) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let (reply, rx) = oneshot::channel();
                let inbound = InboundKafka {
                    peer,
                    frame: request,
                    reply,
                };
                if let Err(e) = self.inbound.try_send(inbound) {
                    tracing::warn!(peer = %peer, error = %e, "inbound Kafka queue full; request dropped");
                    return;
                }
                self.pending_responses
                    .push(Box::pin(rx.map(move |r| (channel, r.ok()))));
            }
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some((_, reply)) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
            Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            } => {
                if let Some((_, reply)) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Err(MeshError::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(peer = %peer, %error, "inbound Kafka request failed");
            }
            Event::ResponseSent { .. } => {}
        }
    }
}
