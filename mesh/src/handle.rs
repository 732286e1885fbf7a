//! [`Mesh`]: the handle callers hold; the swarms themselves live in [`crate::event_loop`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use libp2p::{Multiaddr, PeerId, identity::Keypair};
use tokio::sync::{mpsc, oneshot, watch};

use crate::event_loop::{Command, EventLoop, PushCommand, PushOutlets};
use crate::kafka_codec::Frame;
use crate::push::{InboundPushPoll, Listened, PushDelivery, PushValidator};
use crate::push_stream::{IncomingPushStreams, PushStream, PushStreams};
use crate::view::MembershipView;
use crate::{MeshConfig, MeshError};

/// Capacity of the inbound request queues handed to the broker.
const INBOUND_QUEUE: usize = 4096;
/// Capacity of the command queue into the swarm task.
const COMMAND_QUEUE: usize = 4096;
/// The largest answer a subscriber reads on a push stream (up to its byte budget plus one
/// message).
const PUSH_STREAM_MAX_FRAME: usize = 16 * 1024 * 1024;
/// How long [`Mesh::start`] waits for its listeners to bind.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// An inbound Kafka request frame from a peer, with the slot for its response.
#[derive(Debug)]
pub struct InboundKafka {
    /// The peer that sent it.
    pub peer: PeerId,
    /// Request header and body, no size prefix.
    pub frame: Bytes,
    /// Where the response frame goes; `Bytes::new()` means "no response" (acks=0).
    pub reply: oneshot::Sender<Bytes>,
    /// What the node's [`RequestAdmission`](crate::RequestAdmission) returned for this request:
    /// hold it until the request is answered.
    pub admitted: Option<crate::Admitted>,
}

/// An inbound Raft RPC from a peer (opaque bytes for the metadata log), with its reply slot.
#[derive(Debug)]
pub struct InboundRaft {
    /// The peer that sent it.
    pub peer: PeerId,
    /// The encoded RPC.
    pub payload: Bytes,
    /// Where the encoded answer goes.
    pub reply: oneshot::Sender<Bytes>,
}

/// Inbound requests for the broker.
#[derive(Debug)]
pub struct Inbound {
    /// Kafka frames (data plane).
    pub kafka: mpsc::Receiver<InboundKafka>,
    /// Raft RPCs (control plane).
    pub raft: mpsc::Receiver<InboundRaft>,
    /// Push gossip messages the validator accepted (nodes with push; data plane).
    pub push: mpsc::Receiver<PushDelivery>,
    /// Subscribers' polls (data plane).
    pub push_polls: mpsc::Receiver<InboundPushPoll>,
}

/// Cheap, cloneable handle to the mesh task.
#[derive(Clone, Debug)]
pub struct Mesh {
    commands: mpsc::Sender<Command>,
    local_peer_id: PeerId,
    view: watch::Receiver<Arc<MembershipView>>,
    push_listened: Listened,
    push_streams: PushStreams,
}

impl Mesh {
    /// Starts the swarm task and returns once every listener is bound (ports the OS assigned are
    /// then visible through [`Mesh::listen_addrs`] and [`Mesh::control_addrs`]).
    pub async fn start(keypair: Keypair, config: MeshConfig) -> Result<(Mesh, Inbound), MeshError> {
        config.validate()?;
        let local_peer_id = keypair.public().to_peer_id();
        let (kafka_tx, kafka) = mpsc::channel(INBOUND_QUEUE);
        let (raft_tx, raft) = mpsc::channel(INBOUND_QUEUE);
        let (push_tx, push) = mpsc::channel(INBOUND_QUEUE);
        let (poll_tx, push_polls) = mpsc::channel(INBOUND_QUEUE);
        let push_listened = Listened::default();
        let outlets = PushOutlets {
            deliveries: push_tx,
            polls: poll_tx,
            listened: push_listened.clone(),
        };
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (view_tx, view) = watch::channel(Arc::new(MembershipView::default()));
        let event_loop = EventLoop::new(
            keypair, &config, command_rx, kafka_tx, raft_tx, view_tx, outlets,
        )?;
        let push_streams = PushStreams::new(
            event_loop.stream_control(),
            PUSH_STREAM_MAX_FRAME,
            config.request_timeout,
        );
        tokio::spawn(event_loop.run());
        let mesh = Mesh {
            commands,
            local_peer_id,
            view,
            push_listened,
            push_streams,
        };
        let listening = mesh.call(|reply| Command::WaitListening { reply });
        match tokio::time::timeout(LISTEN_TIMEOUT, listening).await {
            Ok(result) => {
                result??;
            }
            Err(_) => {
                return Err(MeshError::Config(
                    "listeners did not start within 10 s".into(),
                ));
            }
        }
        Ok((
            mesh,
            Inbound {
                kafka,
                raft,
                push,
                push_polls,
            },
        ))
    }

    /// This peer's id (the same on both planes).
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// Data-plane listen addresses (with OS-assigned ports resolved).
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.call(|reply| Command::ListenAddrs {
            control: false,
            reply,
        })
        .await
        .unwrap_or_default()
    }

    /// Control-plane listen addresses.
    pub async fn control_addrs(&self) -> Vec<Multiaddr> {
        self.call(|reply| Command::ListenAddrs {
            control: true,
            reply,
        })
        .await
        .unwrap_or_default()
    }

    /// The membership view, updated as it changes (nodes; clients see what `cluster_info` told).
    pub fn membership(&self) -> watch::Receiver<Arc<MembershipView>> {
        self.view.clone()
    }

    /// Dials a data-plane address (the `/p2p/<peer id>` suffix is optional) and resolves with the
    /// peer's id once connected.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, MeshError> {
        self.call(|reply| Command::Dial { addr, reply }).await?
    }

    /// Peers found on the data plane so far (mDNS, bootstrap, cluster information).
    pub async fn known_peers(&self) -> Vec<PeerId> {
        self.call(|reply| Command::KnownPeers { reply })
            .await
            .unwrap_or_default()
    }

    /// Asks `peer` which members it knows; their data addresses become dialable.
    pub async fn cluster_info(&self, peer: PeerId) -> Result<MembershipView, MeshError> {
        self.call(|reply| Command::ClusterInfo { peer, reply })
            .await?
    }

    /// Sends one Kafka request frame to `peer` and returns its response frame (empty: no
    /// response). The request fails once `deadline` has passed (at most
    /// [`MAX_REQUEST_DEADLINE`](crate::MAX_REQUEST_DEADLINE)), its substream closed: give each
    /// request the deadline its kind needs (a Fetch its long-poll wait and some, a JoinGroup its
    /// rebalance timeout and some).
    pub async fn kafka_request(
        &self,
        peer: PeerId,
        frame: Bytes,
        deadline: Duration,
    ) -> Result<Bytes, MeshError> {
        let deadline = deadline.min(crate::MAX_REQUEST_DEADLINE);
        let at = tokio::time::Instant::now() + deadline;
        let frame = Frame::outbound(frame, at);
        let call = self.call(|reply| Command::KafkaRequest { peer, frame, reply });
        match tokio::time::timeout_at(at, call).await {
            Ok(answer) => answer?,
            Err(_) => Err(MeshError::Request {
                peer,
                reason: format!("no answer within {deadline:?}"),
            }),
        }
    }

    /// Sends one Raft RPC to `peer` over the control plane and returns its answer.
    pub async fn raft_request(&self, peer: PeerId, payload: Bytes) -> Result<Bytes, MeshError> {
        self.call(|reply| Command::RaftRequest {
            peer,
            payload,
            reply,
        })
        .await?
    }

    /// Sets (or with `None` removes) a key of this node's gossiped state.
    pub async fn set_state(&self, key: &str, value: Option<String>) -> Result<(), MeshError> {
        let key = key.to_string();
        self.call(|reply| Command::SetState { key, value, reply })
            .await?
    }

    /// Fixes this node's cluster id: from now on nodes of other clusters are ignored.
    pub async fn set_cluster_id(&self, cluster_id: &str) -> Result<(), MeshError> {
        let cluster_id = cluster_id.to_string();
        self.call(|reply| Command::SetClusterId { cluster_id, reply })
            .await?
    }

    /// Which peers' membership messages are accepted (`None`: everyone's, for a node not in a
    /// cluster yet). Messages about other peers are dropped too.
    pub async fn set_admitted(&self, peers: Option<HashSet<PeerId>>) {
        let _ = self.commands.send(Command::SetAdmitted { peers }).await;
    }

    /// Announces that this node leaves (peers mark it `left` at once); resolves once the notice
    /// went out.
    pub async fn leave(&self) {
        let _ = self.call(|reply| Command::Leave { reply }).await;
    }

    /// Joins (or with `subscribe` false, leaves) push gossip topic `topic` (nodes with push).
    pub async fn push_subscribe(&self, topic: &str, subscribe: bool) -> Result<(), MeshError> {
        let topic = topic.to_string();
        self.call(|reply| {
            Command::Push(PushCommand::Subscribe {
                topic,
                subscribe,
                reply,
            })
        })
        .await?
    }

    /// Publishes `data` on push gossip topic `topic`, signed by this node: sent to the topic's
    /// gossip peers (none subscribed is not an error). Resolves once handed to the swarm.
    pub async fn push_publish(&self, topic: &str, data: Bytes) -> Result<(), MeshError> {
        let topic = topic.to_string();
        self.call(|reply| Command::Push(PushCommand::Publish { topic, data, reply }))
            .await?
    }

    /// True if some connected node subscribes to push gossip topic `topic` (no round trip to
    /// the swarm task).
    pub fn push_listened(&self, topic: &str) -> bool {
        self.push_listened.contains(topic)
    }

    /// Installs the judge of inbound push gossip (until then every message is ignored).
    pub async fn set_push_validator(&self, validator: Arc<dyn PushValidator>) {
        let _ = self
            .call(|reply| Command::Push(PushCommand::SetValidator { validator, reply }))
            .await;
    }

    /// Sends a subscriber's poll frame to `peer` (its home node) and returns the answer frame.
    pub async fn push_poll(&self, peer: PeerId, frame: Bytes) -> Result<Bytes, MeshError> {
        self.call(|reply| Command::Push(PushCommand::Poll { peer, frame, reply }))
            .await?
    }

    /// Opens a push stream to `peer` (a subscriber to its home node); a node without the
    /// protocol answers [`MeshError::Unsupported`].
    pub async fn open_push_stream(&self, peer: PeerId) -> Result<PushStream, MeshError> {
        self.push_streams.open(peer).await
    }

    /// Starts accepting subscribers' push streams (a node, once).
    pub fn accept_push_streams(&self) -> Result<IncomingPushStreams, MeshError> {
        self.push_streams.accept()
    }

    /// Stops the swarm task: listeners close and connections drop.
    pub async fn shutdown(&self) {
        let _ = self.call(|reply| Command::Shutdown { reply }).await;
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, MeshError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| MeshError::Closed)?;
        rx.await.map_err(|_| MeshError::Closed)
    }
}
