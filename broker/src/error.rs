//! The broker's error types.

use std::path::PathBuf;

/// A configuration value or file is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file cannot be read or parsed.
    #[error("config file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key).
        reason: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid {key}: {reason}")]
    Invalid {
        /// The setting.
        key: String,
        /// Why.
        reason: String,
    },
}

/// Errors that stop the node from starting or running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The storage engine failed.
    #[error("storage: {0}")]
    Store(#[from] rafka_store::StoreError),
    /// The metadata store failed.
    #[error("metadata: {0}")]
    Metadata(#[from] crate::metadata::MetadataError),
    /// The mesh failed.
    #[error("mesh: {0}")]
    Mesh(#[from] rafka_mesh::MeshError),
    /// A listener could not bind.
    #[error("cannot listen on {addr} ({what}): {reason}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        reason: String,
    },
    /// Another process holds this data directory.
    #[error("data directory {0} is in use by another rafka-node")]
    DataDirLocked(PathBuf),
    /// Any other I/O failure.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}
