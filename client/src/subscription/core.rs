//! The subscriber's sans-IO core: per partition, the next offset owed to the application, what
//! push announced beyond it, and the decisions that follow: deliver in offset order, drop
//! duplicates, fetch gaps, hold a bounded window of early notices. No I/O, no clock: the shell
//! feeds it what arrives and carries out the [`Action`]s it returns.

use std::collections::{BTreeMap, HashMap};

use crate::records::{ConsumerRecord, DecodedRecords};

/// A partition, as the core names it.
pub type PartitionId = (std::sync::Arc<str>, i32);

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Hand these records (one partition, offset order, each once) to the application.
    Deliver(Vec<ConsumerRecord>),
    /// Fetch the partition from this offset (a gap, an extent-only notice, a summary ahead).
    Fetch(PartitionId, i64),
}

/// Counters the shell exports as metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Records delivered from push (inline in a notice).
    pub pushed: u64,
    /// Records delivered from Fetch.
    pub fetched: u64,
    /// Notices wholly below the next offset (already delivered).
    pub duplicates: u64,
    /// Gaps detected by offset (a notice starting past the next offset).
    pub gaps: u64,
    /// Early notices dropped because the window was full (Fetch reads them instead).
    pub overflowed: u64,
}

/// An announced range, held until the records before it are delivered.
#[derive(Debug)]
struct Early {
    end: i64,
    records: DecodedRecords,
    bytes: usize,
}

#[derive(Debug)]
struct Track {
    next: i64,
    known_end: i64,
    fetching: bool,
    early: BTreeMap<i64, Early>,
    early_bytes: usize,
}

/// The core of a subscription.
#[derive(Debug)]
pub struct SubscriberCore {
    tracks: HashMap<PartitionId, Track>,
    max_early_bytes: usize,
    counts: Counts,
}

impl SubscriberCore {
    /// No partitions yet; each partition may hold `max_early_bytes` of early notices.
    pub fn new(max_early_bytes: usize) -> Self {
        SubscriberCore {
            tracks: HashMap::new(),
            max_early_bytes,
            counts: Counts::default(),
        }
    }

    /// Starts following `partition` at `offset` (the first owed to the application); its
    /// history, if any, is fetched first.
    pub fn start(&mut self, partition: PartitionId, offset: i64) -> Vec<Action> {
        self.tracks.insert(
            partition.clone(),
            Track {
                next: offset,
                known_end: offset,
                fetching: true,
                early: BTreeMap::new(),
                early_bytes: 0,
            },
        );
        vec![Action::Fetch(partition, offset)]
    }

    /// The next offset owed to the application of `partition`.
    pub fn position(&self, partition: &PartitionId) -> Option<i64> {
        self.tracks.get(partition).map(|t| t.next)
    }

    /// The highest end the subscriber has heard of for `partition` (a high watermark).
    pub fn known_end(&self, partition: &PartitionId) -> Option<i64> {
        self.tracks.get(partition).map(|t| t.known_end)
    }

    /// Records behind, over every partition (what push or summaries announced, not yet delivered).
    pub fn lag(&self) -> i64 {
        self.tracks
            .values()
            .map(|t| (t.known_end - t.next).max(0))
            .sum()
    }

    /// The counters.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The partitions followed.
    pub fn partitions(&self) -> impl Iterator<Item = &PartitionId> {
        self.tracks.keys()
    }

    /// A notice: records `[base, end)` committed, `records` decoded from its inline batches
    /// (`None`: announced by extent only).
    pub fn on_notice(
        &mut self,
        partition: &PartitionId,
        base: i64,
        end: i64,
        records: Option<DecodedRecords>,
    ) -> Vec<Action> {
        let max_early = self.max_early_bytes;
        let Some(track) = self.tracks.get_mut(partition) else {
            return Vec::new();
        };
        track.known_end = track.known_end.max(end);
        if end <= track.next {
            self.counts.duplicates += 1;
            return Vec::new();
        }
        let mut actions = Vec::new();
        match records {
            Some(records) if base <= track.next && !track.fetching => {
                let delivered = take_from(track, records, end);
                self.counts.pushed += delivered.len() as u64;
                push_delivery(&mut actions, delivered);
                self.drain_early(partition, &mut actions);
            }
            Some(records) => {
                if base > track.next {
                    self.counts.gaps += 1;
                }
                let bytes: usize = records
                    .records
                    .iter()
                    .map(|r| {
                        r.value.as_ref().map_or(0, |v| v.len())
                            + r.key.as_ref().map_or(0, |k| k.len())
                            + 64
                    })
                    .sum();
                if track.early_bytes + bytes <= max_early {
                    track.early_bytes += bytes;
                    track.early.insert(
                        base,
                        Early {
                            end,
                            records,
                            bytes,
                        },
                    );
                } else {
                    self.counts.overflowed += 1;
                }
                self.want_fetch(partition, &mut actions);
            }
            None => {
                if base > track.next {
                    self.counts.gaps += 1;
                }
                self.want_fetch(partition, &mut actions);
            }
        }
        actions
    }

    /// A summary's high watermark (or a fetch answer's, or a fresh session's "anything may be
    /// missing" with the last known end): fetch if it is ahead of what was delivered and nothing
    /// held explains it.
    pub fn on_high_watermark(
        &mut self,
        partition: &PartitionId,
        high_watermark: i64,
    ) -> Vec<Action> {
        let Some(track) = self.tracks.get_mut(partition) else {
            return Vec::new();
        };
        track.known_end = track.known_end.max(high_watermark);
        let mut actions = Vec::new();
        let explained = track
            .early
            .first_key_value()
            .is_some_and(|(base, _)| *base <= track.next);
        if track.next < high_watermark && !explained {
            self.want_fetch(partition, &mut actions);
        }
        actions
    }

    /// Push may have lost messages of every partition (the home broker dropped some, or the
    /// session is new): fetch each partition once to learn where it stands.
    pub fn on_push_lost(&mut self) -> Vec<Action> {
        let partitions: Vec<PartitionId> = self.tracks.keys().cloned().collect();
        let mut actions = Vec::new();
        for partition in partitions {
            self.want_fetch(&partition, &mut actions);
        }
        actions
    }

    /// A Fetch of `partition` from `from` answered `records` with `high_watermark`; `None`: it
    /// failed (the shell retries by asking again later).
    pub fn on_fetched(
        &mut self,
        partition: &PartitionId,
        from: i64,
        answer: Option<(DecodedRecords, i64)>,
    ) -> Vec<Action> {
        let Some(track) = self.tracks.get_mut(partition) else {
            return Vec::new();
        };
        track.fetching = false;
        let mut actions = Vec::new();
        let Some((records, high_watermark)) = answer else {
            self.want_fetch(partition, &mut actions);
            return actions;
        };
        track.known_end = track.known_end.max(high_watermark);
        if from == track.next {
            let end = records
                .next_offset
                .unwrap_or(track.next)
                .min(high_watermark);
            let delivered = take_from(track, records, end);
            self.counts.fetched += delivered.len() as u64;
            push_delivery(&mut actions, delivered);
        }
        self.drain_early(partition, &mut actions);
        if let Some(track) = self.tracks.get(partition)
            && track.next < track.known_end
        {
            self.want_fetch(partition, &mut actions);
        }
        actions
    }

    /// Applies early notices that now start at or before the next offset.
    fn drain_early(&mut self, partition: &PartitionId, actions: &mut Vec<Action>) {
        let Some(track) = self.tracks.get_mut(partition) else {
            return;
        };
        while let Some(entry) = track.early.first_entry() {
            if *entry.key() > track.next {
                break;
            }
            let early = entry.remove();
            track.early_bytes -= early.bytes;
            if early.end <= track.next {
                continue;
            }
            let delivered = take_from(track, early.records, early.end);
            self.counts.pushed += delivered.len() as u64;
            push_delivery(actions, delivered);
        }
    }

    fn want_fetch(&mut self, partition: &PartitionId, actions: &mut Vec<Action>) {
        if let Some(track) = self.tracks.get_mut(partition)
            && !track.fetching
        {
            track.fetching = true;
            actions.push(Action::Fetch(partition.clone(), track.next));
        }
    }
}

/// The records of `records` from the track's next offset, below `end`; moves the next offset
/// to `end` (records may be absent at some offsets: control batches, compacted away).
fn take_from(track: &mut Track, records: DecodedRecords, end: i64) -> Vec<ConsumerRecord> {
    let from = track.next;
    let taken: Vec<ConsumerRecord> = records
        .records
        .into_iter()
        .filter(|r| r.offset >= from && r.offset < end)
        .collect();
    let after_last = taken.last().map_or(from, |r| r.offset + 1);
    track.next = end.max(after_last).max(from);
    taken
}

fn push_delivery(actions: &mut Vec<Action>, records: Vec<ConsumerRecord>) {
    if !records.is_empty() {
        actions.push(Action::Deliver(records));
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
