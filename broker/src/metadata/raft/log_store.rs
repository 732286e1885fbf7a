//! The Raft log and vote on fjall ([`openraft::storage::RaftLogStorage`]).
//!
//! openraft calls these methods one at a time (`&mut self`) and each awaits its blocking fjall
//! work, so writes are applied in call order as openraft requires. Appends and votes are
//! fsynced (`PersistMode::SyncAll`) before the callback or the return.

// openraft's storage traits return its `StorageError` (224 bytes); the helpers here pass it on.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use fjall::PersistMode;
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogId, LogState, RaftLogReader, StorageError, Vote};

use super::codec;
use super::disk::{self, Disk, blocking, io_error, key_index, log_key};
use super::{RaftNodeId, TypeConfig};

type Entry = openraft::Entry<TypeConfig>;
type Error = StorageError<RaftNodeId>;

/// The log store; clones are the log readers replication tasks use.
#[derive(Clone)]
pub(crate) struct LogStore {
    disk: Arc<Disk>,
}

impl LogStore {
    pub(crate) fn new(disk: Arc<Disk>) -> Self {
        Self { disk }
    }
}

fn logs_error(verb: ErrorVerb, cause: impl std::fmt::Display) -> Error {
    io_error(ErrorSubject::Logs, verb, cause)
}

/// Reads one value of the `state` keyspace.
fn read_state<T: serde::de::DeserializeOwned>(
    disk: &Disk,
    key: &'static [u8],
    subject: ErrorSubject<RaftNodeId>,
) -> Result<Option<T>, Error> {
    let Some(bytes) = disk
        .state
        .get(key)
        .map_err(|e| io_error(subject.clone(), ErrorVerb::Read, e))?
    else {
        return Ok(None);
    };
    codec::decode("raft state", &bytes)
        .map(Some)
        .map_err(|e| io_error(subject, ErrorVerb::Read, e))
}

/// Writes one value of the `state` keyspace, then persists the journal with `mode`.
fn write_state<T: serde::Serialize>(
    disk: &Disk,
    key: &'static [u8],
    value: &T,
    mode: PersistMode,
    subject: ErrorSubject<RaftNodeId>,
) -> Result<(), Error> {
    let bytes = codec::encode("raft state", value)
        .map_err(|e| io_error(subject.clone(), ErrorVerb::Write, e))?;
    disk.state
        .insert(key, bytes)
        .and_then(|()| disk.db.persist(mode))
        .map_err(|e| io_error(subject, ErrorVerb::Write, e))
}

fn decode_entry(key: &[u8], value: &[u8]) -> Result<Entry, Error> {
    let index =
        key_index(key).ok_or_else(|| logs_error(ErrorVerb::Read, "log key is not 8 bytes"))?;
    let entry: Entry = codec::decode("log entry", value)
        .map_err(|e| io_error(ErrorSubject::LogIndex(index), ErrorVerb::Read, e))?;
    if entry.log_id.index != index {
        return Err(io_error(
            ErrorSubject::LogIndex(index),
            ErrorVerb::Read,
            format!("entry under key {index} has index {}", entry.log_id.index),
        ));
    }
    Ok(entry)
}

fn key_bounds(range: &impl RangeBounds<u64>) -> (Bound<[u8; 8]>, Bound<[u8; 8]>) {
    let start = match range.start_bound() {
        Bound::Included(i) => Bound::Included(log_key(*i)),
        Bound::Excluded(i) => match i.checked_add(1) {
            Some(next) => Bound::Included(log_key(next)),
            None => Bound::Excluded(log_key(*i)),
        },
        Bound::Unbounded => Bound::Unbounded,
    };
    let end = match range.end_bound() {
        Bound::Included(i) => Bound::Included(log_key(*i)),
        Bound::Excluded(i) => Bound::Excluded(log_key(*i)),
        Bound::Unbounded => Bound::Unbounded,
    };
    (start, end)
}

fn last_entry(disk: &Disk) -> Result<Option<Entry>, Error> {
    let Some(guard) = disk.log.last_key_value() else {
        return Ok(None);
    };
    let (key, value) = guard
        .into_inner()
        .map_err(|e| logs_error(ErrorVerb::Read, e))?;
    decode_entry(&key, &value).map(Some)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, Error> {
        let disk = self.disk.clone();
        let bounds = key_bounds(&range);
        blocking(ErrorSubject::Logs, ErrorVerb::Read, move || {
            let mut entries = Vec::new();
            for item in disk.log.range::<[u8; 8], _>(bounds) {
                let (key, value) = item
                    .into_inner()
                    .map_err(|e| logs_error(ErrorVerb::Read, e))?;
                entries.push(decode_entry(&key, &value)?);
            }
            Ok(entries)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, Error> {
        let disk = self.disk.clone();
        blocking(ErrorSubject::Logs, ErrorVerb::Read, move || {
            let purged: Option<LogId<RaftNodeId>> =
                read_state(&disk, disk::PURGED, ErrorSubject::Logs)?;
            let last = last_entry(&disk)?.map(|entry| entry.log_id);
            Ok(LogState {
                last_log_id: last.or(purged),
                last_purged_log_id: purged,
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<RaftNodeId>) -> Result<(), Error> {
        let disk = self.disk.clone();
        let vote = *vote;
        blocking(ErrorSubject::Vote, ErrorVerb::Write, move || {
            write_state(
                &disk,
                disk::VOTE,
                &vote,
                PersistMode::SyncAll,
                ErrorSubject::Vote,
            )
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<RaftNodeId>>, Error> {
        let disk = self.disk.clone();
        blocking(ErrorSubject::Vote, ErrorVerb::Read, move || {
            read_state(&disk, disk::VOTE, ErrorSubject::Vote)
        })
        .await
    }

    /// The committed log id only speeds up a restart (entries up to it are re-applied at once);
    /// it is handed to the OS, not fsynced: a lost one is learnt again from the leader.
    async fn save_committed(&mut self, committed: Option<LogId<RaftNodeId>>) -> Result<(), Error> {
        let disk = self.disk.clone();
        blocking(ErrorSubject::Store, ErrorVerb::Write, move || {
            write_state(
                &disk,
                disk::COMMITTED,
                &committed,
                PersistMode::Buffer,
                ErrorSubject::Store,
            )
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<RaftNodeId>>, Error> {
        let disk = self.disk.clone();
        blocking(ErrorSubject::Store, ErrorVerb::Read, move || {
            Ok(read_state::<Option<LogId<RaftNodeId>>>(
                &disk,
                disk::COMMITTED,
                ErrorSubject::Store,
            )?
            .flatten())
        })
        .await
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), Error>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = codec::encode("log entry", &entry)
                .map_err(|e| io_error(ErrorSubject::Log(entry.log_id), ErrorVerb::Write, e))?;
            encoded.push((log_key(entry.log_id.index), bytes));
        }
        let disk = self.disk.clone();
        let written = blocking(ErrorSubject::Logs, ErrorVerb::Write, move || {
            let mut batch = disk.db.batch().durability(Some(PersistMode::SyncAll));
            for (key, value) in encoded {
                batch.insert(&disk.log, key, value);
            }
            batch.commit().map_err(|e| logs_error(ErrorVerb::Write, e))
        })
        .await;
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<RaftNodeId>) -> Result<(), Error> {
        let disk = self.disk.clone();
        blocking(ErrorSubject::Logs, ErrorVerb::Delete, move || {
            let mut batch = disk.db.batch().durability(Some(PersistMode::SyncAll));
            for item in disk.log.range(log_key(log_id.index)..) {
                let key = item.key().map_err(|e| logs_error(ErrorVerb::Delete, e))?;
                batch.remove(&disk.log, key);
            }
            batch.commit().map_err(|e| logs_error(ErrorVerb::Delete, e))
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<RaftNodeId>) -> Result<(), Error> {
        let disk = self.disk.clone();
        blocking(ErrorSubject::Logs, ErrorVerb::Delete, move || {
            let purged = codec::encode("raft state", &log_id)
                .map_err(|e| logs_error(ErrorVerb::Delete, e))?;
            let mut batch = disk.db.batch().durability(Some(PersistMode::Buffer));
            batch.insert(&disk.state, disk::PURGED, purged);
            for item in disk.log.range(..=log_key(log_id.index)) {
                let key = item.key().map_err(|e| logs_error(ErrorVerb::Delete, e))?;
                batch.remove(&disk.log, key);
            }
            batch.commit().map_err(|e| logs_error(ErrorVerb::Delete, e))
        })
        .await
    }
}
