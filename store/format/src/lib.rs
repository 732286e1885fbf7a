//! rafka-format: the wire contracts the broker and the client share, written once. No I/O, no
//! fjall, no libp2p: the client depends on it without pulling in the store.
//!
//! # Component map
//!
//! | module | what it holds |
//! |---|---|
//! | [`batch`] | RecordBatch v2: the header layout, [`BatchHeader::parse`](batch::BatchHeader::parse), the checks every stored batch passes ([`check_batch`](batch::check_batch)), walking concatenated batches ([`BatchIter`](batch::BatchIter)), header rewrites (base offset, leader epoch, append time, producer identity) |
//! | `builder` (feature `records`, default) | writing a batch: records encoded in place, the header and CRC filled once ([`BatchBuilder`](builder::BatchBuilder)); flags, base offset and offset deltas for rewrites and control batches ([`BatchOptions`](builder::BatchOptions)) |
//! | `records` (feature `records`) | reading the records of one batch ([`Records`](records::Records)), keys and values sliced out of the batch |
//! | `marker` (feature `records`) | transaction markers: the control batch that commits or aborts a producer's transaction on a partition ([`EndTxnMarker`](marker::EndTxnMarker)), and the type of a control record |
//! | [`varint`] | Kafka's zigzag varints |
//! | [`gossip`] | the keys a node gossips about itself in the mesh membership |
//! | [`push`] | push subscription: the notices and high-watermark summaries leaders publish, the gossip topic of a Kafka topic, a subscriber's long-poll to its home broker |
//!
//! Nothing here panics on bytes from the network or the disk: every read is checked, and
//! property tests feed the readers random and mutated batches.
//!
//! # Example
//!
//! ```
//! use kafka_protocol::records::Compression;
//! use rafka_format::batch::{BatchIdentity, check_batch};
//! use rafka_format::builder::{BatchBuilder, RecordParts};
//! use rafka_format::records::Records;
//!
//! let mut builder = BatchBuilder::with_capacity(256);
//! let hello = RecordParts { key: Some(b"k"), value: Some(b"hello"), headers: &[] };
//! builder.append(1_000, &hello).unwrap();
//! let batch = builder.build(BatchIdentity::NONE, Compression::Lz4).unwrap();
//!
//! let header = check_batch(&batch).unwrap();
//! assert_eq!((header.base_offset, header.record_count), (0, 1));
//! let records: Vec<_> = Records::new(&batch, &header).unwrap().collect::<Result<_, _>>().unwrap();
//! assert_eq!(records[0].value.as_deref(), Some(&b"hello"[..]));
//! assert_eq!(records[0].timestamp, 1_000);
//! ```

#![deny(clippy::indexing_slicing)]
#![warn(missing_docs)]

pub mod batch;
#[cfg(feature = "records")]
pub mod builder;
pub mod gossip;
#[cfg(feature = "records")]
pub mod marker;
pub mod push;
#[cfg(feature = "records")]
pub mod records;
pub mod varint;

#[cfg(all(test, feature = "records"))]
mod tests;
