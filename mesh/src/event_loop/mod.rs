//! The one task that owns both swarms (data plane and control plane) and drives the membership
//! protocol core with time and messages.

mod admission;
mod control;
mod data;
mod listeners;
mod membership;
mod push;

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use libp2p::request_response::{OutboundRequestId, ResponseChannel};
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId, Swarm, identity::Keypair};
use tokio::sync::{mpsc, oneshot, watch};

use crate::control::ControlBehaviour;
use crate::data::DataBehaviour;
use crate::gate::{self, Refusal};
use crate::handle::{InboundKafka, InboundRaft};
use crate::kafka_codec::Frame;
use crate::membership::{Generation, Membership};
use crate::view::MembershipView;
use crate::{MeshConfig, MeshError, Role};

use admission::Gatekeeper;
use listeners::Listeners;
use push::PushState;
pub(crate) use push::{PushCommand, PushOutlets};

/// Requests from [`crate::Mesh`] handles to the swarm task.
#[derive(Debug)]
pub(crate) enum Command {
    ListenAddrs {
        control: bool,
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    WaitListening {
        reply: oneshot::Sender<Result<(), MeshError>>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, MeshError>>,
    },
    KnownPeers {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    ClusterInfo {
        peer: PeerId,
        reply: oneshot::Sender<Result<MembershipView, MeshError>>,
    },
    KafkaRequest {
        peer: PeerId,
        frame: Frame,
        reply: oneshot::Sender<Result<Bytes, MeshError>>,
    },
    RaftRequest {
        peer: PeerId,
        payload: Bytes,
        reply: oneshot::Sender<Result<Bytes, MeshError>>,
    },
    SetState {
        key: String,
        value: Option<String>,
        reply: oneshot::Sender<Result<(), MeshError>>,
    },
    SetClusterId {
        cluster_id: String,
        reply: oneshot::Sender<Result<(), MeshError>>,
    },
    SetAdmitted {
        peers: Option<HashSet<PeerId>>,
    },
    Leave {
        reply: oneshot::Sender<()>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    Push(PushCommand),
}

/// A response the broker is still preparing for an inbound request.
enum Reply {
    Kafka(ResponseChannel<Bytes>, Option<Bytes>),
    Raft(ResponseChannel<Bytes>, Option<Bytes>),
    Push(ResponseChannel<Bytes>, Option<Bytes>),
}

type PendingReply = Pin<Box<dyn Future<Output = Reply> + Send>>;
type Waiter<T> = oneshot::Sender<Result<T, MeshError>>;

/// One event of a request-response protocol answering with bytes whose outbound requests wait in
/// `pending` (Kafka frames, Raft RPCs): a response or failure answers its waiter; an inbound
/// request is handed back for the caller to serve.
fn settle_bytes<Req>(
    pending: &mut HashMap<OutboundRequestId, Waiter<Bytes>>,
    event: libp2p::request_response::Event<Req, Bytes>,
    what: &str,
) -> Option<(PeerId, Req, ResponseChannel<Bytes>)> {
    use libp2p::request_response::{Event, Message};
    match event {
        Event::Message {
            peer,
            message: Message::Request {
                request, channel, ..
            },
            ..
        } => return Some((peer, request, channel)),
        Event::Message {
            message:
                Message::Response {
                    request_id,
                    response,
                },
            ..
        } => {
            if let Some(reply) = pending.remove(&request_id) {
                let _ = reply.send(Ok(response));
            }
        }
        Event::OutboundFailure {
            request_id,
            error,
            peer,
            ..
        } => {
            if let Some(reply) = pending.remove(&request_id) {
                let _ = reply.send(Err(MeshError::Request {
                    peer,
                    reason: error.to_string(),
                }));
            }
        }
        Event::InboundFailure { peer, error, .. } => {
            tracing::debug!(peer = %peer, %error, "inbound {what} failed");
        }
        Event::ResponseSent { .. } => {}
    }
    None
}

/// State of the swarm task.
pub(crate) struct EventLoop {
    local: PeerId,
    role: Role,
    data: Swarm<DataBehaviour>,
    control: Option<Swarm<ControlBehaviour>>,
    membership: Option<Membership>,
    started: Instant,
    commands: mpsc::Receiver<Command>,
    inbound_kafka: mpsc::Sender<InboundKafka>,
    inbound_raft: mpsc::Sender<InboundRaft>,
    view: watch::Sender<Arc<MembershipView>>,
    listeners: Listeners,
    bootstrap: Vec<Multiaddr>,
    known_data_peers: HashSet<PeerId>,
    asked_cluster: HashMap<PeerId, Instant>,
    pending_dials: HashMap<ConnectionId, (Multiaddr, Waiter<PeerId>)>,
    pending_kafka: HashMap<OutboundRequestId, Waiter<Bytes>>,
    pending_raft: HashMap<OutboundRequestId, Waiter<Bytes>>,
    pending_cluster: HashMap<OutboundRequestId, (PeerId, Option<Waiter<MembershipView>>)>,
    replies: FuturesUnordered<PendingReply>,
    leaving: Option<(Instant, Vec<oneshot::Sender<()>>)>,
    push: PushState,
    refusals: mpsc::Receiver<Refusal>,
    gatekeeper: Gatekeeper,
}

fn swarm<B: libp2p::swarm::NetworkBehaviour>(
    keypair: &Keypair,
    config: &MeshConfig,
    behaviour: B,
    idle: Duration,
    refusals: &mpsc::Sender<Refusal>,
) -> Result<Swarm<B>, MeshError> {
    let transport = gate::transport(keypair, config.cluster_key, refusals.clone())?;
    let swarm_config =
        libp2p::swarm::Config::with_tokio_executor().with_idle_connection_timeout(idle);
    Ok(Swarm::new(
        transport,
        behaviour,
        keypair.public().to_peer_id(),
        swarm_config,
    ))
}

impl EventLoop {
    pub(crate) fn new(
        keypair: Keypair,
        config: &MeshConfig,
        commands: mpsc::Receiver<Command>,
        inbound_kafka: mpsc::Sender<InboundKafka>,
        inbound_raft: mpsc::Sender<InboundRaft>,
        view: watch::Sender<Arc<MembershipView>>,
        push: PushOutlets,
    ) -> Result<Self, MeshError> {
        let local = keypair.public().to_peer_id();
        let mut listeners = Listeners::default();
        let (refusals_tx, refusals) = gate::refusal_queue();
        let behaviour = DataBehaviour::new(&keypair, config)?;
        let idle = config.idle_connection_timeout;
        let mut data = swarm(&keypair, config, behaviour, idle, &refusals_tx)?;
        listeners.listen_data(&mut data, &config.listen)?;
        let (control, membership) = match config.role {
            Role::Node => {
                let behaviour = ControlBehaviour::new(&keypair, config)?;
                // Members stay connected: a closed control connection would only be redialled.
                let idle = Duration::from_secs(3600);
                let mut control = swarm(&keypair, config, behaviour, idle, &refusals_tx)?;
                listeners.listen_control(&mut control, &config.control_listen)?;
                let generation = Generation(config.generation);
                let membership =
                    Membership::new(local, generation, config.membership.clone(), config.seed)?;
                (Some(control), Some(membership))
            }
            Role::Client => (None, None),
        };
        Ok(Self {
            local,
            role: config.role,
            data,
            control,
            membership,
            started: Instant::now(),
            commands,
            inbound_kafka,
            inbound_raft,
            view,
            listeners,
            bootstrap: config.bootstrap.clone(),
            known_data_peers: HashSet::new(),
            asked_cluster: HashMap::new(),
            pending_dials: HashMap::new(),
            pending_kafka: HashMap::new(),
            pending_raft: HashMap::new(),
            pending_cluster: HashMap::new(),
            replies: FuturesUnordered::new(),
            leaving: None,
            push: PushState::new(push),
            refusals,
            gatekeeper: Gatekeeper::new(config.limit_hits.clone()),
        })
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// A control for the data plane's raw streams (push streams), used outside this task.
    pub(crate) fn stream_control(&self) -> libp2p_stream::Control {
        self.data.behaviour().streams.new_control()
    }

    /// Runs until a shutdown command arrives or every handle is dropped.
    pub(crate) async fn run(mut self) {
        let tick_every = self
            .membership
            .as_ref()
            .map_or(Duration::from_secs(1), |m| m.config().tick_interval());
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut bootstrap_retry = tokio::time::interval(Duration::from_secs(2));
        let mut kad_refresh = tokio::time::interval(Duration::from_secs(30));
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
                event = self.data.select_next_some() => self.handle_data_event(event),
                event = next_control_event(&mut self.control) => self.handle_control_event(event),
                Some(reply) = self.replies.next(), if !self.replies.is_empty() => self.send_reply(reply),
                Some(refusal) = self.refusals.recv() => self.gatekeeper.refused(&refusal),
                _ = tick.tick() => self.on_tick(),
                _ = bootstrap_retry.tick() => {
                    self.bootstrap_step();
                    self.connect_push_peers();
                }
                _ = kad_refresh.tick() => self.refresh_kad(),
            }
        }
        tracing::debug!("mesh event loop stopped");
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::ListenAddrs { control, reply } => {
                let addrs = if control {
                    self.control
                        .as_ref()
                        .map(|c| c.listeners().cloned().collect())
                        .unwrap_or_default()
                } else {
                    self.data.listeners().cloned().collect()
                };
                let _ = reply.send(addrs);
            }
            Command::WaitListening { reply } => self.listeners.wait(reply),
            Command::Dial { addr, reply } => self.dial(addr, reply),
            Command::KnownPeers { reply } => {
                let _ = reply.send(self.known_data_peers.iter().copied().collect());
            }
            Command::ClusterInfo { peer, reply } => self.ask_cluster(peer, Some(reply)),
            Command::KafkaRequest { peer, frame, reply } => {
                let id = self.data.behaviour_mut().kafka.send_request(&peer, frame);
                self.pending_kafka.insert(id, reply);
            }
            Command::RaftRequest {
                peer,
                payload,
                reply,
            } => match self.control.as_mut() {
                Some(control) => {
                    let id = control.behaviour_mut().raft.send_request(&peer, payload);
                    self.pending_raft.insert(id, reply);
                }
                None => {
                    let _ = reply.send(Err(MeshError::Config(
                        "a client has no control plane".into(),
                    )));
                }
            },
            Command::SetState { key, value, reply } => {
                let _ = reply.send(self.set_state(&key, value.as_deref()));
            }
            Command::SetClusterId { cluster_id, reply } => {
                let _ = reply.send(self.set_cluster_id(&cluster_id));
            }
            Command::SetAdmitted { peers } => self.gatekeeper.set_admitted(peers),
            Command::Leave { reply } => self.leave(reply),
            Command::Push(command) => self.handle_push_command(command),
            Command::Shutdown { .. } => {}
        }
    }

    fn send_reply(&mut self, reply: Reply) {
        // A dropped reply (None) drops the channel: the peer sees the stream fail.
        match reply {
            Reply::Kafka(channel, Some(response)) => {
                let _ = self
                    .data
                    .behaviour_mut()
                    .kafka
                    .send_response(channel, response);
            }
            Reply::Raft(channel, Some(response)) => {
                if let Some(control) = self.control.as_mut() {
                    let _ = control
                        .behaviour_mut()
                        .raft
                        .send_response(channel, response);
                }
            }
            Reply::Push(channel, Some(response)) => {
                let _ = self
                    .data
                    .behaviour_mut()
                    .push_poll
                    .send_response(channel, response);
            }
            Reply::Kafka(_, None) | Reply::Raft(_, None) | Reply::Push(_, None) => {}
        }
    }

    fn dial(&mut self, addr: Multiaddr, reply: Waiter<PeerId>) {
        let (base, peer) = crate::split_peer_id(&addr);
        if let Some(peer) = peer {
            if self.data.is_connected(&peer) {
                let _ = reply.send(Ok(peer));
                return;
            }
            self.data.add_peer_address(peer, base.clone());
        }
        let opts = match peer {
            Some(peer) => libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                .addresses(vec![base])
                .build(),
            None => libp2p::swarm::dial_opts::DialOpts::unknown_peer_id()
                .address(base)
                .build(),
        };
        let connection_id = opts.connection_id();
        match self.data.dial(opts) {
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

    /// Asks a data-plane peer for its member list, at most once per few seconds unless a caller
    /// waits for the answer.
    fn ask_cluster(&mut self, peer: PeerId, reply: Option<Waiter<MembershipView>>) {
        if reply.is_none() {
            let recent = self
                .asked_cluster
                .get(&peer)
                .is_some_and(|at| at.elapsed() < Duration::from_secs(5));
            if recent || peer == self.local {
                return;
            }
        }
        self.asked_cluster.insert(peer, Instant::now());
        let id = self
            .data
            .behaviour_mut()
            .cluster
            .send_request(&peer, Bytes::new());
        self.pending_cluster.insert(id, (peer, reply));
    }

    /// Dials the bootstrap addresses until each answered with its member list once.
    fn bootstrap_step(&mut self) {
        if self.bootstrap.is_empty() {
            return;
        }
        for addr in self.bootstrap.clone() {
            let (_, peer) = crate::split_peer_id(&addr);
            if peer.is_some_and(|p| self.known_data_peers.contains(&p)) {
                continue;
            }
            let (reply, _) = oneshot::channel();
            self.dial(addr, reply);
        }
    }

    fn refresh_kad(&mut self) {
        if let Some(control) = self.control.as_mut() {
            // Fails only when the routing table is empty: nothing to refresh yet.
            let _ = control.behaviour_mut().kad.bootstrap();
        }
    }

    fn forward_inbound_kafka(
        &mut self,
        peer: PeerId,
        frame: Frame,
        channel: ResponseChannel<Bytes>,
    ) {
        let (reply, rx) = oneshot::channel();
        let (frame, admitted) = frame.into_parts();
        let request = InboundKafka {
            peer,
            frame,
            reply,
            admitted,
        };
        if let Err(e) = self.inbound_kafka.try_send(request) {
            tracing::warn!(peer = %peer, error = %e, "inbound Kafka queue full; request dropped");
            return;
        }
        self.replies
            .push(Box::pin(rx.map(move |r| Reply::Kafka(channel, r.ok()))));
    }

    fn forward_inbound_raft(
        &mut self,
        peer: PeerId,
        payload: Bytes,
        channel: ResponseChannel<Bytes>,
    ) {
        let (reply, rx) = oneshot::channel();
        if let Err(e) = self.inbound_raft.try_send(InboundRaft {
            peer,
            payload,
            reply,
        }) {
            tracing::warn!(peer = %peer, error = %e, "inbound Raft queue full; RPC dropped");
            return;
        }
        self.replies
            .push(Box::pin(rx.map(move |r| Reply::Raft(channel, r.ok()))));
    }
}

async fn next_control_event(
    control: &mut Option<Swarm<ControlBehaviour>>,
) -> libp2p::swarm::SwarmEvent<crate::control::ControlBehaviourEvent> {
    match control.as_mut() {
        Some(swarm) => swarm.select_next_some().await,
        None => std::future::pending().await,
    }
}
