//! The control plane: membership gossip (gossipsub broadcasts plus `/rafka/membership/1`
//! anti-entropy), Raft RPCs (`/rafka/raft/1`) and Kademlia, on a second swarm with the same
//! identity and its own listener (OS-assigned by default, learned by peers through membership and
//! cluster information). Its connections carry only small messages, so heartbeats and Raft never
//! wait behind bulk data.

use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    StreamProtocol, connection_limits, gossipsub, identify, identity::Keypair, kad,
    request_response,
};

use crate::codec::FrameCodec;
use crate::data::{AGENT, IDENTIFY_PROTOCOL};
use crate::{MeshConfig, MeshError};

/// Membership anti-entropy messages.
pub const MEMBERSHIP_PROTOCOL: StreamProtocol = StreamProtocol::new("/rafka/membership/1");
/// Raft RPCs of the metadata log.
pub const RAFT_PROTOCOL: StreamProtocol = StreamProtocol::new("/rafka/raft/1");
/// Kademlia protocol name (Rafka's own DHT, not the IPFS one).
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/rafka/kad/1");
/// The gossipsub topic carrying membership broadcasts.
pub const MEMBERSHIP_TOPIC: &str = "rafka/membership/1";
/// Largest Raft message (snapshot chunks are kept well below).
pub const MAX_RAFT_FRAME: usize = 16 * 1024 * 1024;

/// Everything the control plane speaks.
#[derive(NetworkBehaviour)]
pub struct ControlBehaviour {
    /// Connection limits: first, so a refused connection reaches no other behaviour.
    pub limits: connection_limits::Behaviour,
    /// Membership anti-entropy (Syn / Ack / Ack2), answered with an empty frame.
    pub membership: request_response::Behaviour<FrameCodec>,
    /// Raft RPCs.
    pub raft: request_response::Behaviour<FrameCodec>,
    /// Membership broadcasts (own-state updates and heartbeats).
    pub gossipsub: gossipsub::Behaviour,
    /// Peer routing: finds nodes beyond the ones first met.
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Learns the peer's control-plane listen addresses.
    pub identify: identify::Behaviour,
}

impl ControlBehaviour {
    /// Builds the control plane.
    pub fn new(keypair: &Keypair, config: &MeshConfig) -> Result<Self, MeshError> {
        let peer_id = keypair.public().to_peer_id();
        let rr = |timeout: Duration| {
            request_response::Config::default()
                .with_request_timeout(timeout)
                .with_max_concurrent_streams(config.max_concurrent_streams)
        };
        let full = request_response::ProtocolSupport::Full;
        let membership = request_response::Behaviour::with_codec(
            FrameCodec::new(config.membership.max_message_bytes + 4096),
            [(MEMBERSHIP_PROTOCOL, full.clone())],
            rr(Duration::from_secs(5)),
        );
        let raft = request_response::Behaviour::with_codec(
            FrameCodec::new(MAX_RAFT_FRAME),
            [(RAFT_PROTOCOL, full)],
            rr(config.raft_request_timeout),
        );
        let gossipsub_config = gossipsub::ConfigBuilder::default()
            .heartbeat_interval(Duration::from_millis(700))
            .max_transmit_size(config.membership.max_message_bytes + 4096)
            .validation_mode(gossipsub::ValidationMode::Strict)
            .build()
            .map_err(|e| MeshError::Build(format!("gossipsub: {e}")))?;
        let mut gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(keypair.clone()),
            gossipsub_config,
        )
        .map_err(|e| MeshError::Build(format!("gossipsub: {e}")))?;
        gossipsub
            .subscribe(&gossipsub::IdentTopic::new(MEMBERSHIP_TOPIC))
            .map_err(|e| MeshError::Build(format!("gossipsub subscribe: {e}")))?;
        let mut kad = kad::Behaviour::with_config(
            peer_id,
            kad::store::MemoryStore::new(peer_id),
            kad::Config::new(KAD_PROTOCOL),
        );
        // Without server mode Kademlia answers nothing (checked on this machine).
        kad.set_mode(Some(kad::Mode::Server));
        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_string(), keypair.public())
                .with_agent_version(AGENT.to_string()),
        );
        Ok(Self {
            limits: connection_limits::Behaviour::new(config.connection_limits.libp2p()),
            membership,
            raft,
            gossipsub,
            kad,
            identify,
        })
    }
}
