//! The composed network behaviour: one behaviour per concern.

use libp2p::swarm::NetworkBehaviour;
use libp2p::{identify, identity::Keypair, ping, request_response};

use crate::codec::{FrameCodec, KAFKA_PROTOCOL};
use crate::{MeshConfig, Role};

/// Agent string announced through identify.
pub const AGENT: &str = concat!("rafka/", env!("CARGO_PKG_VERSION"));
/// Identify protocol name of Rafka peers.
pub const IDENTIFY_PROTOCOL: &str = "/rafka/id/1";

/// Everything this peer speaks.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Kafka frames between clients and nodes.
    pub kafka: request_response::Behaviour<FrameCodec>,
    /// Learns the peer's listen and observed addresses.
    pub identify: identify::Behaviour,
    /// Keeps connections measured.
    pub ping: ping::Behaviour,
}

impl Behaviour {
    /// Builds the behaviour for `config.role`.
    pub fn new(keypair: &Keypair, config: &MeshConfig) -> Self {
        let support = match config.role {
            Role::Node => request_response::ProtocolSupport::Full,
            Role::Client => request_response::ProtocolSupport::Outbound,
        };
        let rr_config = request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(config.max_concurrent_streams);
        let kafka = request_response::Behaviour::with_codec(
            FrameCodec::new(config.max_frame_bytes),
            [(KAFKA_PROTOCOL, support)],
            rr_config,
        );
        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_string(), keypair.public())
                .with_agent_version(AGENT.to_string()),
        );
        Self {
            kafka,
            identify,
            ping: ping::Behaviour::default(),
        }
    }
}
