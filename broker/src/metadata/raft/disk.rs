//! The metadata log's own fjall Database (`<data_dir>/raft`), apart from partition data so its
//! fsyncs never queue behind it.
//!
//! Keyspaces and keys:
//!
//! | keyspace | key | value |
//! |---|---|---|
//! | `log` | entry index, u64 big-endian | encoded `Entry` (log id + payload) |
//! | `state` | `vote` | encoded `Vote` (fsynced before `save_vote` returns) |
//! | `state` | `committed` | encoded `Option<LogId>` (handed to the OS) |
//! | `state` | `purged` | encoded `LogId` of the last purged entry |
//! | `state` | `snapshot` | encoded `StoredSnapshot` (meta + image bytes, fsynced) |
//!
//! Appends are one write batch committed with `PersistMode::SyncAll` before openraft's callback;
//! a purge is one batch (its `purged` key and the removals) so the two never disagree.

// openraft's storage traits return its `StorageError` (224 bytes); the helpers here pass it on.
#![allow(clippy::result_large_err)]

use std::path::Path;
use std::sync::Arc;

use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};
use tokio::sync::mpsc;

use super::RaftNodeId;

pub(crate) const VOTE: &[u8] = b"vote";
pub(crate) const COMMITTED: &[u8] = b"committed";
pub(crate) const PURGED: &[u8] = b"purged";
pub(crate) const SNAPSHOT: &[u8] = b"snapshot";

/// The open Database. Shared (`Arc`) by the log store, its readers, the state machine and
/// snapshot builders; when the last of them is dropped the Database closes (releasing its lock)
/// and then `closed` fires.
pub(crate) struct Disk {
    pub(crate) db: Database,
    pub(crate) log: Keyspace,
    pub(crate) state: Keyspace,
    // Declared last: dropped after the Database handles above.
    _open: mpsc::Sender<()>,
}

/// Resolves once every handle of a [`Disk`] is gone and the Database is closed.
pub(crate) struct Closed(mpsc::Receiver<()>);

impl Closed {
    /// Waits until the Database is closed.
    pub(crate) async fn wait(mut self) {
        while self.0.recv().await.is_some() {}
    }
}

impl Disk {
    /// Opens (or creates) the Database in `dir`. Blocking.
    pub(crate) fn open(dir: &Path) -> Result<(Arc<Disk>, Closed), fjall::Error> {
        let db = Database::builder(dir).open()?;
        let log = db.keyspace("log", KeyspaceCreateOptions::default)?;
        let state = db.keyspace("state", KeyspaceCreateOptions::default)?;
        let (open, closed) = mpsc::channel(1);
        Ok((
            Arc::new(Disk {
                db,
                log,
                state,
                _open: open,
            }),
            Closed(closed),
        ))
    }
}

/// Runs blocking fjall work off the reactor.
pub(crate) async fn blocking<T, F>(
    what: ErrorSubject<RaftNodeId>,
    verb: ErrorVerb,
    work: F,
) -> Result<T, StorageError<RaftNodeId>>
where
    F: FnOnce() -> Result<T, StorageError<RaftNodeId>> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(join) => Err(io_error(what, verb, join)),
    }
}

/// A storage error with its cause.
pub(crate) fn io_error(
    what: ErrorSubject<RaftNodeId>,
    verb: ErrorVerb,
    cause: impl std::fmt::Display,
) -> StorageError<RaftNodeId> {
    StorageIOError::new(what, verb, AnyError::error(cause.to_string())).into()
}

/// The big-endian key of a log index, so iteration order is index order.
pub(crate) fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The index of a log key; `None` for a key of the wrong size.
pub(crate) fn key_index(key: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes)
}
