//! The leader's publisher: one task per led partition and leader epoch, following the high
//! watermark and announcing each move.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use rafka_format::batch::BatchHeader;
use rafka_format::push::{Notice, PartitionKey};
use rafka_store::TopicPartition;
use tokio::task::AbortHandle;

use super::{INLINE_MAX_BYTES, Push};
use crate::ids::Offset;
use crate::metrics;
use crate::partition::{NodeLeader, Reader};

/// The running publishers, by partition, with the leader epoch each publishes for.
#[derive(Default)]
pub(super) struct Publishers {
    running: Mutex<HashMap<TopicPartition, (i32, AbortHandle)>>,
}

impl Publishers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TopicPartition, (i32, AbortHandle)>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes the running publishers match `leaders`.
    pub(super) fn attach(&self, leaders: &[Arc<NodeLeader>], push: &Push) {
        let mut running = self.lock();
        running.retain(|tp, (epoch, task)| {
            let still = leaders.iter().any(|l| {
                l.topic_partition() == *tp && l.leader_epoch().0 == *epoch && !l.is_resigned()
            });
            if !still || task.is_finished() {
                task.abort();
            }
            still && !task.is_finished()
        });
        for leader in leaders {
            let tp = leader.topic_partition();
            if running.contains_key(&tp) || leader.is_resigned() {
                continue;
            }
            let task = tokio::spawn(publish(leader.clone(), push.clone()));
            running.insert(tp, (leader.leader_epoch().0, task.abort_handle()));
        }
    }

    pub(super) fn stop_all(&self) {
        for (_, (_, task)) in self.lock().drain() {
            task.abort();
        }
    }
}

/// Announces every move of `leader`'s high watermark (read committed: its last stable offset)
/// from the one it had when this started, until leadership moves.
async fn publish(leader: Arc<NodeLeader>, push: Push) {
    let tp = leader.topic_partition();
    let partition = PartitionKey {
        topic_id: *tp.topic_id.as_bytes(),
        partition: tp.partition,
    };
    let epoch = leader.leader_epoch().0;
    let mut commits = leader.subscribe_commits();
    let mut from = leader.last_stable_offset().0;
    commits.borrow_and_update();
    while commits.changed().await.is_ok() {
        if leader.is_resigned() {
            break;
        }
        let end = leader.last_stable_offset().0;
        if end <= from {
            continue;
        }
        if !push.wanted(&partition.topic_id) {
            from = end;
            continue;
        }
        let reading = leader.clone();
        let read = tokio::task::spawn_blocking(move || {
            reading.read(Reader::Consumer, Offset(from), INLINE_MAX_BYTES)
        })
        .await;
        let inline = match read {
            Ok(Ok(read)) => covering(&read.batches, from, end),
            Ok(Err(e)) => {
                tracing::debug!(partition = %tp, error = %e, "push: cannot read committed batches");
                None
            }
            Err(_) => None,
        };
        let notice = match inline {
            Some((batches, covered_end)) => Notice {
                partition,
                leader_epoch: epoch,
                base_offset: from,
                end_offset: covered_end,
                batch_bytes: u32::try_from(batches.len()).unwrap_or(u32::MAX),
                batches: Some(batches),
            },
            None => Notice {
                partition,
                leader_epoch: epoch,
                base_offset: from,
                end_offset: end,
                batch_bytes: 0,
                batches: None,
            },
        };
        let message = notice.encode();
        metrics::push_notice(notice.batches.is_some(), message.len());
        from = notice.end_offset;
        push.publish(partition.topic_id, message).await;
    }
}

/// The batches of `batches` that hold offsets of `[from, end)`, joined, and the end of the last
/// one, if together they cover `[from, end)` within [`INLINE_MAX_BYTES`]. Batches wholly past
/// `end` (committed meanwhile) are included when they fit: they are committed too.
fn covering(batches: &[Bytes], from: i64, end: i64) -> Option<(Bytes, i64)> {
    let mut joined = BytesMut::new();
    let mut covered = from;
    for batch in batches {
        let header = BatchHeader::parse(batch).ok()?;
        let last = header.last_offset()?;
        if last < from {
            continue;
        }
        if header.base_offset > covered || joined.len() + batch.len() > INLINE_MAX_BYTES {
            break;
        }
        joined.extend_from_slice(batch);
        covered = last + 1;
    }
    (covered >= end).then(|| (joined.freeze(), covered))
}

#[cfg(test)]
mod tests {
    use rafka_format::batch::BatchIdentity;
    use rafka_format::builder::{BatchBuilder, BatchOptions, RecordParts};

    use super::*;

    fn batch(base: i64, records: usize) -> Bytes {
        let mut builder = BatchBuilder::with_capacity(256);
        for i in 0..records {
            let record = RecordParts {
                key: None,
                value: Some(b"v"),
                headers: &[],
            };
            builder.append(i as i64, &record).expect("append");
        }
        let options = BatchOptions {
            base_offset: base,
            ..BatchOptions::new(
                BatchIdentity::NONE,
                kafka_protocol::records::Compression::None,
            )
        };
        builder.finish(options).expect("batch")
    }

    #[test]
    fn covering_joins_the_batches_of_the_commit_and_reports_their_end() {
        let batches = [batch(0, 2), batch(2, 3), batch(5, 1)];
        let (joined, end) = covering(&batches, 2, 5).expect("covered");
        assert_eq!(end, 6, "the committed batch after the move rides along");
        assert_eq!(joined.len(), batches[1].len() + batches[2].len());
        assert!(covering(&batches[..2], 2, 6).is_none(), "short of the end");
        assert!(
            covering(&[batch(3, 1)], 2, 4).is_none(),
            "a hole at the start"
        );
    }
}
