//! [`Mesh`]: the handle callers hold; the swarm itself lives in [`crate::event_loop`].

use bytes::Bytes;
use libp2p::{Multiaddr, PeerId, identity::Keypair};
use tokio::sync::{mpsc, oneshot};

use crate::event_loop::{Command, EventLoop};
use crate::{MeshConfig, MeshError};

/// Capacity of the inbound Kafka request queue handed to the broker.
const INBOUND_QUEUE: usize = 4096;
/// Capacity of the command queue into the swarm task.
const COMMAND_QUEUE: usize = 4096;
/// How long [`Mesh::start`] waits for its listeners to bind.
const LISTEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// An inbound Kafka request frame from a peer, with the slot for its response.
#[derive(Debug)]
pub struct InboundKafka {
    /// The peer that sent it.
    pub peer: PeerId,
    /// Request header and body, no size prefix.
    pub frame: Bytes,
    /// Where the response frame goes; `Bytes::new()` means "no response" (acks=0).
    pub reply: oneshot::Sender<Bytes>,
}

/// Cheap, cloneable handle to the mesh task.
#[derive(Clone, Debug)]
pub struct Mesh {
    commands: mpsc::Sender<Command>,
    local_peer_id: PeerId,
}

impl Mesh {
    /// Starts the swarm task and returns once every listener is bound (ports the OS assigned are
    /// then visible through [`Mesh::listen_addrs`]).
    ///
    /// Inbound Kafka frames (role [`crate::Role::Node`]) arrive on the returned receiver.
    pub async fn start(
        keypair: Keypair,
        config: MeshConfig,
    ) -> Result<(Mesh, mpsc::Receiver<InboundKafka>), MeshError> {
        config.validate()?;
        let local_peer_id = keypair.public().to_peer_id();
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let event_loop = EventLoop::new(keypair, &config, command_rx, inbound_tx)?;
        tokio::spawn(event_loop.run());
        let mesh = Mesh {
            commands,
            local_peer_id,
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
        Ok((mesh, inbound_rx))
    }

    /// This peer's id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// The addresses the swarm listens on now (with OS-assigned ports resolved).
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.call(|reply| Command::ListenAddrs { reply })
            .await
            .unwrap_or_default()
    }

    /// Dials `addr` (the `/p2p/<peer id>` suffix is optional) and resolves with the peer's id once
    /// connected.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, MeshError> {
        self.call(|reply| Command::Dial { addr, reply }).await?
    }

    /// Sends one Kafka request frame to `peer` and returns its response frame (empty: no response).
    pub async fn kafka_request(&self, peer: PeerId, frame: Bytes) -> Result<Bytes, MeshError> {
        self.call(|reply| Command::KafkaRequest { peer, frame, reply })
            .await?
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
