//! Appends inside a group: idempotence, offset assignment, segment rolls, the batch's
//! log value, index entry and producer state staged into the group's write batch.

use super::request::{LeaderAppend, ReplicaAppend, Request};
use super::state::{PartitionState, SegmentState};
use super::{Group, Writer};
use crate::batch::{self, BatchError, BatchHeader};
use crate::codec::{IndexEntry, SegmentSummary, decode_producer};
use crate::error::{Result, StoreError};
use crate::keys::{self, META_TXN};
use crate::producer_state::{self, ProducerEntry, SequenceCheck, TxnEvent};
use crate::shared::{Engine, PartitionShared};
use crate::stats::Counters;
use crate::txn;
use crate::types::Appended;
use bytes::Bytes;
use rafka_format::marker::ControlType;
use std::collections::HashMap;
use std::sync::Arc;

impl Writer {
    pub(super) fn append(&mut self, g: &mut Group, req: Request) {
        match req {
            Request::Leader(a) => {
                let LeaderAppend {
                    part,
                    batch,
                    header,
                    opts,
                    log_append_time,
                    reply,
                } = a;
                let out = self.check_failed().and_then(|()| {
                    let req = (batch, header, opts, log_append_time);
                    self.leader_append(g, &part, req)
                });
                match out {
                    Ok(appended) => g.replies.push((reply, appended)),
                    Err(e) => reply.send(Err(e)),
                }
            }
            Request::Replica(r) => {
                let ReplicaAppend {
                    part,
                    batches,
                    reply,
                } = r;
                let out = self
                    .check_failed()
                    .and_then(|()| self.replica_append(g, &part, batches));
                match out {
                    Ok(appended) => g.replies.push((reply, appended)),
                    Err(e) => reply.send(Err(e)),
                }
            }
            _ => {}
        }
    }

    fn leader_append(
        &mut self,
        g: &mut Group,
        part: &Arc<PartitionShared>,
        (mut buf, mut h, opts, log_append_time): (
            bytes::BytesMut,
            BatchHeader,
            crate::AppendOptions,
            bool,
        ),
    ) -> Result<Appended> {
        let st = live_state(&mut self.parts, part)?;
        let tp = st.tp();
        g.need(st.config.fsync.unwrap_or(self.default_fsync));
        if h.producer_id >= 0 {
            let entry = producer_entry(&self.engine, st, h.producer_id)?;
            if let SequenceCheck::Duplicate(b) = producer_state::check(tp, entry, &h)? {
                Counters::add(&self.stats.duplicates, 1);
                tracing::debug!(%tp, producer_id = h.producer_id, offset = b.base_offset, "duplicate batch");
                return Ok(Appended {
                    base_offset: b.base_offset,
                    last_offset: b.last_offset,
                    log_append_time_ms: -1,
                    log_start_offset: st.log_start,
                    duplicate: true,
                });
            }
        }
        let base = st.log_end;
        h.base_offset = base;
        h.partition_leader_epoch = opts.leader_epoch;
        let last = h.last_offset().ok_or_else(|| bad_offsets(&h))?;
        batch::set_base_offset(&mut buf, base);
        batch::set_partition_leader_epoch(&mut buf, opts.leader_epoch);
        let value = buf.freeze();
        let marker = h
            .is_control()
            .then(|| txn::marker_type(&value, &h))
            .flatten();
        put_batch(&self.engine, g, st, &h, value, opts.now_ms, &self.stats)?;
        if h.producer_id >= 0 {
            record_producer(&self.engine, st, g, &h, (base, last), marker);
        }
        st.log_end = last + 1;
        Ok(Appended {
            base_offset: base,
            last_offset: last,
            log_append_time_ms: if log_append_time { h.max_timestamp } else { -1 },
            log_start_offset: st.log_start,
            duplicate: false,
        })
    }

    fn replica_append(
        &mut self,
        g: &mut Group,
        part: &Arc<PartitionShared>,
        batches: Vec<(BatchHeader, Bytes)>,
    ) -> Result<Appended> {
        let st = live_state(&mut self.parts, part)?;
        g.need(st.config.fsync.unwrap_or(self.default_fsync));
        // Check everything before staging anything. Offsets never go back; they may skip
        // ahead: a compacted leader has gaps where its cleaner removed whole batches (Kafka's
        // `appendAsFollower` accepts them too).
        let mut expected = st.log_end;
        for (h, _) in &batches {
            if h.base_offset < expected {
                let reason = BatchError::NotContiguous {
                    expected,
                    found: h.base_offset,
                };
                return Err(StoreError::InvalidRecord { reason });
            }
            expected = h.last_offset().ok_or_else(|| bad_offsets(h))? + 1;
        }
        let first = batches.first().map_or(st.log_end, |b| b.0.base_offset);
        let now_ms = wall_clock_ms();
        for (h, value) in batches {
            let last = h.last_offset().ok_or_else(|| bad_offsets(&h))?;
            if h.producer_id >= 0 {
                producer_entry(&self.engine, st, h.producer_id)?;
            }
            let marker = h
                .is_control()
                .then(|| txn::marker_type(&value, &h))
                .flatten();
            put_batch(&self.engine, g, st, &h, value, now_ms, &self.stats)?;
            if h.producer_id >= 0 {
                record_producer(&self.engine, st, g, &h, (h.base_offset, last), marker);
            }
            st.log_end = last + 1;
        }
        Ok(Appended {
            base_offset: first,
            last_offset: st.log_end - 1,
            log_append_time_ms: -1,
            log_start_offset: st.log_start,
            duplicate: false,
        })
    }
}

fn bad_offsets(h: &BatchHeader) -> StoreError {
    let reason = BatchError::BadOffsets {
        base_offset: h.base_offset,
        last_offset_delta: h.last_offset_delta,
    };
    StoreError::InvalidRecord { reason }
}

pub(crate) fn wall_clock_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The writer's state of a live partition, `UnknownPartition` if it was deleted (or deleted
/// and recreated since the caller looked it up).
pub(crate) fn live_state<'a>(
    parts: &'a mut HashMap<crate::TopicPartition, PartitionState>,
    part: &Arc<PartitionShared>,
) -> Result<&'a mut PartitionState> {
    match parts.get_mut(&part.tp) {
        Some(st) if Arc::ptr_eq(&st.shared, part) => Ok(st),
        _ => Err(StoreError::UnknownPartition { partition: part.tp }),
    }
}

/// A producer's state, from the writer's cache or from fjall.
fn producer_entry<'a>(
    e: &Engine,
    st: &'a mut PartitionState,
    pid: i64,
) -> Result<Option<&'a ProducerEntry>> {
    if !st.producers.contains_key(&pid)
        && let Some(v) = e.producers.get(keys::entry_key(st.tp(), pid))?
    {
        let entry = decode_producer(&v)?;
        if !entry.is_below(st.log_start) {
            st.producers.insert(pid, entry);
        }
    }
    Ok(st.producers.get(&pid))
}

/// Records the append in the producer's state, and what it did to its transaction: a first
/// transactional batch opens one, a marker ends it (an abort adds an entry to the aborted
/// transactions index, in the same atomic batch).
fn record_producer(
    e: &Engine,
    st: &mut PartitionState,
    g: &mut Group,
    h: &BatchHeader,
    offsets: (i64, i64),
    marker: Option<ControlType>,
) {
    let pid = h.producer_id;
    let prev = st.producers.remove(&pid);
    let (entry, event) = producer_state::record(prev, h, offsets, marker);
    st.producers.insert(pid, entry);
    g.producers.insert((st.tp(), pid));
    match event {
        TxnEvent::None => {}
        TxnEvent::Begin(first) => st.txns.begin(pid, first),
        TxnEvent::End { first, aborted } => {
            st.txns.prune(st.shared.offsets().high_watermark);
            let ended = txn::Ended {
                producer_id: pid,
                first_offset: first,
                marker_offset: offsets.0,
            };
            if let Some(a) = st.txns.end(ended, aborted) {
                let key = keys::meta_key(META_TXN, st.tp(), &a.last_offset.to_be_bytes());
                g.wb.insert(&e.meta, key, txn::encode_aborted(&a));
            }
        }
    }
}

/// Stages one batch (already carrying its final offsets) into the group.
pub(crate) fn put_batch(
    e: &Engine,
    g: &mut Group,
    st: &mut PartitionState,
    h: &BatchHeader,
    value: Bytes,
    now_ms: i64,
    stats: &Counters,
) -> Result<()> {
    let tp = st.tp();
    let last = h.last_offset().ok_or_else(|| bad_offsets(h))?;
    let size = value.len();
    maybe_roll(e, g, st, size as u64, h.base_offset, now_ms, stats)?;
    let Some(seg) = st.segments.last_mut() else {
        return Err(StoreError::Failed {
            reason: "no active segment after roll".into(),
        });
    };
    let key = keys::entry_key(tp, last);
    g.wb.insert(&seg.keyspace, key, value);
    g.wb.insert(&e.index, key, IndexEntry::from_header(h, size).encode());
    let s = &mut seg.summary;
    if s.batch_count == 0 {
        s.first_timestamp = h.max_timestamp;
    }
    if s.batch_count == 0 || h.max_timestamp > s.max_timestamp {
        s.max_timestamp = h.max_timestamp;
        s.max_timestamp_batch = last;
    }
    s.last_offset = last;
    s.size_bytes += size as u64;
    s.batch_count += 1;
    if let Some(change) = st.epochs.assign(h.partition_leader_epoch, h.base_offset) {
        st.put_epoch_changes(e, &mut g.wb, &[change]);
        g.epochs.insert(tp);
    }
    g.touched.insert(tp);
    g.bytes += size as u64;
    Counters::add(&stats.appended_batches, 1);
    Counters::add(&stats.appended_bytes, size as u64);
    Ok(())
}

/// Seals the active segment and creates a new one when the next batch would not fit, or the
/// active one is older than `segment_ms` (capped by `max_compaction_lag_ms` when compacted). The new keyspace is created (a durable fjall
/// operation) before the batch that makes it known; a crash in between leaves an empty
/// keyspace with no summary, which recovery deletes.
fn maybe_roll(
    e: &Engine,
    g: &mut Group,
    st: &mut PartitionState,
    size: u64,
    base: i64,
    now_ms: i64,
    stats: &Counters,
) -> Result<()> {
    let cfg = &st.config;
    let roll = match st.segments.last() {
        None => true,
        Some(s) => {
            let s = &s.summary;
            s.batch_count > 0
                && (s.size_bytes + size > cfg.segment_bytes
                    || cfg
                        .roll_ms()
                        .is_some_and(|ms| now_ms.saturating_sub(s.created_ms) >= ms))
        }
    };
    if !roll {
        return Ok(());
    }
    let tp = st.tp();
    if let Some(old) = st.segments.last() {
        st.put_summary(e, &mut g.wb, &old.summary);
        g.sealed.push(old.keyspace.clone());
    }
    let keyspace = e.open_keyspace(&keys::segment_name(tp, base, 0))?;
    let summary = SegmentSummary::empty(base, now_ms);
    st.segments.push(SegmentState { summary, keyspace });
    g.structural.insert(tp);
    Counters::add(&stats.segments_rolled, 1);
    tracing::debug!(%tp, offset = base, segments = st.segments.len(), "rolled log segment");
    Ok(())
}
