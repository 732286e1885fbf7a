//! The state machine ([`openraft::storage::RaftStateMachine`]): committed commands applied to a
//! [`MetadataImage`], each new image published on the watch channel.
//!
//! The image lives in memory; what is durable is the last snapshot (the encoded image with the
//! last applied log id and membership), written to the `state` keyspace with an fsync by the
//! snapshot builder or on install. On open the state machine starts from that snapshot and
//! openraft re-applies the committed entries after it.

// openraft's storage traits return its `StorageError` (224 bytes); the helpers here pass it on.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fjall::PersistMode;
use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};

use super::disk::{self, Disk, blocking, io_error};
use super::{ApplyResult, RaftNode, RaftNodeId, TypeConfig};
use super::{codec, snapshot};
use crate::metadata::{MetadataImage, Outcome};

type Error = StorageError<RaftNodeId>;
type Meta = SnapshotMeta<RaftNodeId, RaftNode>;

/// A snapshot as stored: openraft's meta and the encoded image.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct StoredSnapshot {
    meta: Meta,
    data: Vec<u8>,
}

impl StoredSnapshot {
    fn to_snapshot(&self) -> Snapshot<TypeConfig> {
        Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(self.data.clone())),
        }
    }
}

/// The state machine.
pub(crate) struct StateMachine {
    disk: Arc<Disk>,
    image: Arc<MetadataImage>,
    last_applied: Option<LogId<RaftNodeId>>,
    membership: StoredMembership<RaftNodeId, RaftNode>,
    images: watch::Sender<Arc<MetadataImage>>,
    /// The current snapshot, shared with builders; held across its persistence so an older
    /// snapshot never replaces a newer one.
    snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
}

fn snapshot_error(meta: Option<&Meta>, verb: ErrorVerb, cause: impl std::fmt::Display) -> Error {
    io_error(
        ErrorSubject::Snapshot(meta.map(Meta::signature)),
        verb,
        cause,
    )
}

impl StateMachine {
    /// Restores the state machine from the last snapshot in `disk` (blocking) and publishes its
    /// image on `images`.
    pub(crate) fn open(
        disk: Arc<Disk>,
        images: watch::Sender<Arc<MetadataImage>>,
    ) -> Result<Self, Error> {
        let stored = disk
            .state
            .get(disk::SNAPSHOT)
            .map_err(|e| snapshot_error(None, ErrorVerb::Read, e))?
            .map(|bytes| codec::decode::<StoredSnapshot>("snapshot", &bytes))
            .transpose()
            .map_err(|e| snapshot_error(None, ErrorVerb::Read, e))?;
        let mut machine = Self {
            disk,
            image: Arc::new(MetadataImage::default()),
            last_applied: None,
            membership: StoredMembership::default(),
            images,
            snapshot: Arc::new(Mutex::new(None)),
        };
        if let Some(stored) = stored {
            let image = snapshot::decode_image(&stored.data)
                .map_err(|e| snapshot_error(Some(&stored.meta), ErrorVerb::Read, e))?;
            machine.image = Arc::new(image);
            machine.last_applied = stored.meta.last_log_id;
            machine.membership = stored.meta.last_membership.clone();
            machine.snapshot = Arc::new(Mutex::new(Some(stored)));
        }
        machine.images.send_replace(machine.image.clone());
        Ok(machine)
    }
}

/// Persists `stored` as the current snapshot unless a newer one is already there.
async fn persist_snapshot(
    disk: &Arc<Disk>,
    current: &Mutex<Option<StoredSnapshot>>,
    stored: StoredSnapshot,
) -> Result<(), Error> {
    let mut current = current.lock().await;
    if let Some(existing) = current.as_ref()
        && existing.meta.last_log_id > stored.meta.last_log_id
    {
        return Ok(());
    }
    let meta = stored.meta.clone();
    let bytes = codec::encode("snapshot", &stored)
        .map_err(|e| snapshot_error(Some(&meta), ErrorVerb::Write, e))?;
    let disk = disk.clone();
    let signature = ErrorSubject::Snapshot(Some(meta.signature()));
    blocking(signature, ErrorVerb::Write, move || {
        disk.state
            .insert(disk::SNAPSHOT, bytes)
            .and_then(|()| disk.db.persist(PersistMode::SyncAll))
            .map_err(|e| snapshot_error(Some(&meta), ErrorVerb::Write, e))
    })
    .await?;
    *current = Some(stored);
    Ok(())
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<RaftNodeId>>,
            StoredMembership<RaftNodeId, RaftNode>,
        ),
        Error,
    > {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyResult>, Error>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut results = Vec::new();
        let mut changed = false;
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => Ok(Outcome::Done),
                EntryPayload::Normal(command) => {
                    let result = Arc::make_mut(&mut self.image).apply(&command);
                    changed |= result.is_ok();
                    tracing::debug!(
                        index = entry.log_id.index,
                        ?command,
                        ok = result.is_ok(),
                        "metadata command applied"
                    );
                    result
                }
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Ok(Outcome::Done)
                }
            };
            results.push(result);
        }
        if changed {
            self.images.send_replace(self.image.clone());
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            disk: self.disk.clone(),
            image: self.image.clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            current: self.snapshot.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, Error> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), Error> {
        let data = snapshot.into_inner();
        let image = snapshot::decode_image(&data)
            .map_err(|e| snapshot_error(Some(meta), ErrorVerb::Read, e))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        persist_snapshot(&self.disk, &self.snapshot, stored).await?;
        tracing::info!(last_log_id = ?meta.last_log_id, version = image.version, "metadata snapshot installed");
        self.image = Arc::new(image);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.images.send_replace(self.image.clone());
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, Error> {
        Ok(self
            .snapshot
            .lock()
            .await
            .as_ref()
            .map(StoredSnapshot::to_snapshot))
    }
}

/// Builds a snapshot of the state machine as it was when the builder was made.
pub(crate) struct SnapshotBuilder {
    disk: Arc<Disk>,
    image: Arc<MetadataImage>,
    last_applied: Option<LogId<RaftNodeId>>,
    membership: StoredMembership<RaftNodeId, RaftNode>,
    current: Arc<Mutex<Option<StoredSnapshot>>>,
}

/// Distinguishes snapshots of one last log id built at different times.
static SNAPSHOT_SEQ: AtomicU64 = AtomicU64::new(0);

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, Error> {
        let data = snapshot::encode_image(&self.image)
            .map_err(|e| snapshot_error(None, ErrorVerb::Write, e))?;
        let at = self.last_applied.map_or_else(
            || "0-0-0".to_string(),
            |id| {
                format!(
                    "{}-{}-{}",
                    id.leader_id.term, id.leader_id.node_id, id.index
                )
            },
        );
        let seq = SNAPSHOT_SEQ.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let stored = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.membership.clone(),
                snapshot_id: format!("{at}-{nanos}-{seq}"),
            },
            data,
        };
        let snapshot = stored.to_snapshot();
        persist_snapshot(&self.disk, &self.current, stored).await?;
        tracing::info!(last_log_id = ?self.last_applied, bytes = snapshot.snapshot.get_ref().len(), "metadata snapshot built");
        Ok(snapshot)
    }
}
