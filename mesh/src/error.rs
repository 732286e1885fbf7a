//! The mesh crate's error type.

use libp2p::PeerId;

/// Errors from the mesh layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeshError {
    /// The identity file exists but cannot be read or decoded.
    #[error("node identity at {path}: {reason}")]
    Identity {
        /// The key file.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A configuration value is invalid.
    #[error("invalid mesh configuration: {0}")]
    Config(String),
    /// Listening on an address failed.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: libp2p::Multiaddr,
        /// The transport's error.
        reason: String,
    },
    /// Dialing an address failed.
    #[error("cannot connect to {addr}: {reason}")]
    Dial {
        /// The address dialed.
        addr: libp2p::Multiaddr,
        /// The transport's error.
        reason: String,
    },
    /// A request to a peer failed; whether the peer processed it is unknown.
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// The peer.
        peer: PeerId,
        /// The failure.
        reason: String,
    },
    /// The mesh task has stopped.
    #[error("the mesh has shut down")]
    Closed,
    /// A cluster key file cannot be read, parsed or written.
    #[error("cluster key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A cluster key cannot be made.
    #[error("cluster key: {0}")]
    Key(String),
    /// The peer does not speak a protocol (an older node, say).
    #[error("{peer} does not support {protocol}")]
    Unsupported {
        /// The peer.
        peer: PeerId,
        /// The protocol it refused.
        protocol: String,
    },
    /// Building the swarm failed.
    #[error("cannot build the libp2p swarm: {0}")]
    Build(String),
}
