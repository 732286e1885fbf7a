//! rafka-store: Rafka's durable partition data on fjall. No networking.
//!
//! # Component map
//!
//! | module | what it holds |
//! |---|---|
//! | [`Store`] (`store.rs`) | opens ONE fjall `Database`, recovers, starts the writer thread; partition lifecycle, retention |
//! | [`PartitionLog`] (`partition.rs`, `read.rs`) | cheap handle to one log: appends (validated on the caller's thread, queued to the writer), reads against fjall |
//! | `writer/` | the ONE thread that writes: group commit (`mod.rs`), appends and segment rolls (`append.rs`), truncation / DeleteRecords / retention (`log_ops.rs`), create / delete / config / flush (`admin.rs`) |
//! | `recovery.rs` | rebuilds partition state from `meta` at open, deletes orphan segments, checks tail batches |
//! | [`batch`] | RecordBatch v2: `rafka_format::batch` (layout, parsing, checks, rewrites; shared with the client) re-exported, plus the leader's `validate_produce` |
//! | [`ProducedBatch`] (`produced.rs`) | a produced batch with its header read once, for the broker's checks and the store's |
//! | `records.rs` | record-level timestamps inside a (possibly compressed) batch, for ListOffsets (read with `rafka_format::records`) |
//! | `keys.rs`, `codec.rs` | key layouts and value encodings: the on-disk format (pinned by a fixture test) |
//! | `producer_state.rs`, `leader_epoch.rs`, `retention.rs` | pure rules: idempotence, the leader-epoch cache, which segments retention deletes |
//! | `filter.rs` | fjall compaction filters dropping index / producer entries below the log start |
//! | `shared.rs` | what readers share with the writer: `watch` offsets, `Arc` snapshots behind short std locks |
//! | [`config`], [`StoreError`] | configuration (serde, `Default`, `validate`) and the error enum (`kafka_code`, `is_retriable`) |
//!
//! On disk, each partition's log is a run of segments, each its own fjall keyspace keyed by
//! (topic id, partition, last offset of the batch) so "the batch containing offset X" is one
//! forward seek; retention drops whole segment keyspaces, which actually frees the disk.
//! `docs/storage.md` describes the layout, the crash-safety argument and the fsync modes.
//!
//! # Example
//!
//! ```
//! use bytes::BytesMut;
//! use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
//! use rafka_store::{AppendOptions, LogConfig, Store, StoreConfig, TopicPartition};
//!
//! # fn main() -> anyhow::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(StoreConfig::new(dir.path()))?;
//! let tp = TopicPartition::new(uuid::Uuid::new_v4(), 0);
//! let log = store.create_partition(tp, LogConfig::default())?;
//!
//! let record = Record {
//!     transactional: false, control: false, delete_horizon: false,
//!     partition_leader_epoch: -1, producer_id: -1, producer_epoch: -1,
//!     timestamp_type: TimestampType::Creation, offset: 0, sequence: -1, timestamp: 1_000,
//!     key: None, value: Some("hello".into()), headers: Default::default(),
//! };
//! let mut buf = BytesMut::new();
//! let opts = RecordEncodeOptions { version: 2, compression: Compression::None };
//! RecordBatchEncoder::encode(&mut buf, [&record], &opts)?;
//!
//! let appended = log.append_blocking(buf.freeze(), AppendOptions { leader_epoch: 0, now_ms: 1_000 })?;
//! assert_eq!((appended.base_offset, appended.last_offset), (0, 0));
//! assert_eq!(log.read(0, 1 << 20, i64::MAX)?.len(), 1);
//! # Ok(())
//! # }
//! ```

#![deny(clippy::indexing_slicing)]
#![warn(missing_docs)]

pub mod batch;
mod codec;
mod compaction;
pub mod config;
mod error;
mod filter;
mod keys;
mod leader_epoch;
mod partition;
mod produced;
mod producer_state;
mod read;
mod records;
mod recovery;
mod retention;
mod shared;
mod stats;
mod store;
mod txn;
mod types;
mod writer;

pub use config::{
    CleanupPolicy, CompactionConfig, CompactionStrategy, FsyncPolicy, LogConfig, StoreConfig,
    TimestampType,
};
pub use error::{Result, StoreError};
pub use partition::PartitionLog;
pub use produced::ProducedBatch;
pub use producer_state::{ProducerBatch, ProducerSnapshot};
pub use store::Store;
pub use txn::AbortedTxn;
pub use types::{
    AppendOptions, Appended, CleanReport, CleanerState, LogOffsets, RetentionReport, StoreStats,
    TimestampOffset, TopicId, TopicPartition,
};
