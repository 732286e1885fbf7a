//! The data plane: Kafka frames (`/rafka/kafka/1`), cluster information (`/rafka/cluster/1`),
//! push (gossip between nodes and subscribers' polls, see [`crate::push`]) and mDNS discovery, on
//! the swarm that listens on the user-facing p2p address. Bulk traffic lives
//! here so it never queues in front of membership heartbeats or Raft messages, which use the
//! control plane's own connections (see [`crate::control`]).

use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, connection_limits, gossipsub, identify, identity::Keypair, mdns,
    request_response,
};

use crate::codec::{FrameCodec, KAFKA_PROTOCOL};
use crate::kafka_codec::{KafkaCodec, MAX_REQUEST_DEADLINE};
use crate::{MeshConfig, MeshError, Role};

/// Agent string announced through identify.
pub const AGENT: &str = concat!("rafka/", env!("CARGO_PKG_VERSION"));
/// Identify protocol name of Rafka's data plane.
pub const IDENTIFY_PROTOCOL: &str = "/rafka/id/1";
/// The cluster information protocol.
pub const CLUSTER_PROTOCOL: StreamProtocol = StreamProtocol::new("/rafka/cluster/1");

/// Everything the data plane speaks.
#[derive(NetworkBehaviour)]
pub struct DataBehaviour {
    /// Connection limits: first, so a refused connection reaches no other behaviour.
    pub limits: connection_limits::Behaviour,
    /// Kafka frames between clients and nodes, and between nodes; each request has its own
    /// deadline (see [`crate::kafka_codec`]).
    pub kafka: request_response::Behaviour<KafkaCodec>,
    /// Who is in the cluster, with their addresses.
    pub cluster: request_response::Behaviour<FrameCodec>,
    /// Learns the peer's listen and observed addresses.
    pub identify: identify::Behaviour,
    /// LAN discovery (nodes announce their data addresses; clients listen).
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Push gossip between nodes (nodes with push configured; never on clients).
    pub push: Toggle<gossipsub::Behaviour>,
    /// Subscribers' long-polls to their home node.
    pub push_poll: request_response::Behaviour<FrameCodec>,
    /// Raw streams: subscribers' push streams to their home node
    /// ([`crate::push_stream`]); read and written outside the swarm task.
    pub streams: libp2p_stream::Behaviour,
}

impl DataBehaviour {
    /// Builds the data plane for `config.role`.
    pub fn new(keypair: &Keypair, config: &MeshConfig) -> Result<Self, MeshError> {
        let support = match config.role {
            Role::Node => request_response::ProtocolSupport::Full,
            Role::Client => request_response::ProtocolSupport::Outbound,
        };
        let rr_config = request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(config.max_concurrent_streams);
        // The behaviour's timeout is only a ceiling: each Kafka request ends at its own deadline.
        let kafka = request_response::Behaviour::with_codec(
            KafkaCodec::new(
                config.max_frame_bytes,
                config.admission.clone(),
                config.request_timeout,
            ),
            [(KAFKA_PROTOCOL, support.clone())],
            rr_config.clone().with_request_timeout(MAX_REQUEST_DEADLINE),
        );
        let cluster = request_response::Behaviour::with_codec(
            FrameCodec::new(4 * 1024 * 1024),
            [(CLUSTER_PROTOCOL, support)],
            rr_config,
        );
        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_string(), keypair.public())
                .with_agent_version(AGENT.to_string()),
        );
        let mdns = if config.mdns {
            let mdns_config = mdns::Config {
                query_interval: config.mdns_query_interval,
                ..mdns::Config::default()
            };
            let behaviour = mdns::tokio::Behaviour::new(mdns_config, keypair.public().to_peer_id())
                .map_err(|e| MeshError::Build(format!("mDNS: {e}")))?;
            Some(behaviour)
        } else {
            None
        };
        let push = match (&config.push, config.role) {
            (Some(push), Role::Node) => Some(crate::push::gossip(keypair, push)?),
            _ => None,
        };
        Ok(Self {
            limits: connection_limits::Behaviour::new(config.connection_limits.libp2p()),
            kafka,
            cluster,
            identify,
            mdns: Toggle::from(mdns),
            push: Toggle::from(push),
            push_poll: crate::push::polls(config),
            streams: libp2p_stream::Behaviour::new(),
        })
    }
}
