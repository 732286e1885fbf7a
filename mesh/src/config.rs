//! Mesh configuration.

use std::time::Duration;

use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::MeshError;

/// Whether this peer serves Kafka requests (a broker node) or only sends them (a client).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A broker node: listens and accepts inbound Kafka frames.
    Node,
    /// A light client peer: dials out only.
    Client,
}

/// Configuration of the mesh layer.
#[derive(Clone, Debug)]
pub struct MeshConfig {
    /// Addresses to listen on (nodes); empty for clients.
    pub listen: Vec<Multiaddr>,
    /// Node or client.
    pub role: Role,
    /// Largest Kafka frame accepted or sent (Kafka's `socket.request.max.bytes`).
    pub max_frame_bytes: usize,
    /// How long an outbound request may take, end to end.
    pub request_timeout: Duration,
    /// Connections idle this long are closed (and re-dialled on demand).
    pub idle_connection_timeout: Duration,
    /// Inbound requests processed concurrently per connection before new streams are refused.
    pub max_concurrent_streams: usize,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            listen: vec![default_listen()],
            role: Role::Node,
            max_frame_bytes: 100 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            idle_connection_timeout: Duration::from_secs(300),
            max_concurrent_streams: 256,
        }
    }
}

/// `/ip4/0.0.0.0/tcp/7070`.
pub fn default_listen() -> Multiaddr {
    Multiaddr::from(std::net::Ipv4Addr::UNSPECIFIED).with(libp2p::multiaddr::Protocol::Tcp(7070))
}

impl MeshConfig {
    /// Checks the values make sense together.
    pub fn validate(&self) -> Result<(), MeshError> {
        if self.max_frame_bytes < 1024 {
            return Err(MeshError::Config(format!(
                "max_frame_bytes {} is below 1 KiB",
                self.max_frame_bytes
            )));
        }
        if self.request_timeout.is_zero() {
            return Err(MeshError::Config("request_timeout must be positive".into()));
        }
        if self.role == Role::Node && self.listen.is_empty() {
            return Err(MeshError::Config(
                "a node needs at least one listen address".into(),
            ));
        }
        if self.max_concurrent_streams == 0 {
            return Err(MeshError::Config(
                "max_concurrent_streams must be positive".into(),
            ));
        }
        Ok(())
    }
}
