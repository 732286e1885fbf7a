//! The consumer: assigned partitions, positions, prefetching long-poll fetches, and offsets
//! committed under a group id.
//!
//! - [`fetcher`]: one Fetch per leader, decoded into records.
//! - [`offsets`]: ListOffsets, FindCoordinator, OffsetCommit / OffsetFetch.
//!
//! One fetch per leader runs as its own task while the application handles what `poll`
//! returned, so the network and the application overlap.
//!
//! Following leaders: a partition whose fetch failed with a leader error (NOT_LEADER_OR_FOLLOWER,
//! FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH, ...), a timeout or a closed connection backs off on
//! its own and asks for a metadata refresh; so does a partition the metadata names no leader for
//! (an election under way). Refreshes are spaced by a backoff that doubles while partitions stay
//! without a leader (up to [`MAX_BACKOFF`]). The partition then resumes from its position on
//! whichever node the refreshed metadata names. Fetches carry the leader epoch of the metadata
//! (v9+), so a deposed leader answers FENCED_LEADER_EPOCH instead of serving its stale log.

pub mod fetcher;
pub mod offsets;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tracing::debug;

use self::fetcher::PartitionFetch;
use crate::cluster::Client;
use crate::config::{ConsumerConfig, OffsetReset};
use crate::error::{Error, Result};
use crate::metadata::{NodeId, TopicPartition};
use crate::records::ConsumerRecord;

/// Where to move a partition's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    /// The log start offset.
    Beginning,
    /// The log end offset (only new records).
    End,
    /// An exact offset.
    Offset(i64),
    /// The first record with a timestamp (ms) at or after this one.
    Timestamp(i64),
}

/// The longest pause between metadata refreshes while a partition has no leader
/// (`retry.backoff.max.ms`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct PartitionState {
    position: Option<i64>,
    seek: Option<SeekTo>,
    high_watermark: Option<i64>,
    /// After a failed fetch, the partition is not fetched again before this.
    paused_until: Option<Instant>,
}

type FetchResult = (
    NodeId,
    Vec<(TopicPartition, i64)>,
    Result<Vec<PartitionFetch>>,
);

/// A consumer of explicitly assigned partitions.
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    partitions: BTreeMap<TopicPartition, PartitionState>,
    /// Records fetched and not yet returned by `poll`, and the partitions they are from.
    buffered: Vec<ConsumerRecord>,
    buffered_from: HashSet<TopicPartition>,
    fetches: JoinSet<FetchResult>,
    fetching: HashSet<NodeId>,
    in_fetch: HashSet<TopicPartition>,
    /// Position lookups (committed offsets, ListOffsets) failed: not retried before this.
    retry_at: Option<Instant>,
    /// A metadata refresh is wanted (leader errors, broken connections, leaderless partitions).
    refresh_metadata: bool,
    /// When the last refresh was made, and the pause before the next one.
    refreshed_at: Option<Instant>,
    refresh_backoff: Duration,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("partitions", &self.partitions.len())
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// A consumer with no assignment.
    pub fn new(client: Client, config: ConsumerConfig) -> Result<Consumer> {
        config.validate()?;
        Ok(Consumer {
            client,
            config,
            partitions: BTreeMap::new(),
            buffered: Vec::new(),
            buffered_from: HashSet::new(),
            fetches: JoinSet::new(),
            fetching: HashSet::new(),
            in_fetch: HashSet::new(),
            retry_at: None,
            refresh_metadata: false,
            refreshed_at: None,
            refresh_backoff: Duration::ZERO,
        })
    }

    /// Replaces the assignment. Positions start unknown: they come from the group's committed
    /// offsets (with a group id) or `auto_offset_reset`, unless [`Consumer::seek`] sets them.
    pub fn assign(&mut self, partitions: impl IntoIterator<Item = TopicPartition>) {
        let wanted: HashSet<TopicPartition> = partitions.into_iter().collect();
        self.partitions.retain(|tp, _| wanted.contains(tp));
        for tp in wanted {
            self.partitions.entry(tp).or_default();
        }
        if self
            .buffered_from
            .iter()
            .any(|tp| !self.partitions.contains_key(tp))
        {
            self.buffered.retain(|r| {
                self.partitions
                    .contains_key(&TopicPartition::new(r.topic.clone(), r.partition))
            });
            self.buffered_from
                .retain(|tp| self.partitions.contains_key(tp));
        }
    }

    /// Assigns every partition of `topic` (waiting up to `wait` for its metadata).
    pub async fn assign_topic(
        &mut self,
        topic: &str,
        wait: Duration,
    ) -> Result<Vec<TopicPartition>> {
        let info = self.client.wait_for_topic(topic, wait).await?;
        let topic: Arc<str> = Arc::from(topic);
        let tps: Vec<TopicPartition> = info
            .partitions
            .iter()
            .map(|p| TopicPartition::new(topic.clone(), p.partition))
            .collect();
        let mut all: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
        all.extend(tps.iter().cloned());
        self.assign(all);
        Ok(tps)
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.partitions.keys().cloned().collect()
    }

    /// Moves the position of `tp` (resolved at the next `poll`).
    pub fn seek(&mut self, tp: &TopicPartition, to: SeekTo) -> Result<()> {
        let state = self
            .partitions
            .get_mut(tp)
            .ok_or_else(|| Error::Config(format!("{tp} is not assigned to this consumer")))?;
        state.seek = Some(to);
        state.position = None;
        if self.buffered_from.remove(tp) {
            self.buffered
                .retain(|r| !(*r.topic == *tp.topic && r.partition == tp.partition));
        }
        Ok(())
    }

    /// The next offset to be returned for `tp`, once known.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.partitions.get(tp)?.position
    }

    /// The last high watermark a fetch reported for `tp`.
    pub fn high_watermark(&self, tp: &TopicPartition) -> Option<i64> {
        self.partitions.get(tp)?.high_watermark
    }

    /// Returns buffered records, or waits up to `timeout` for some.
    ///
    /// Before returning records it starts the next fetch of their partitions, so the network
    /// and the broker work while the caller handles them.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.prepare().await?;
            if !self.buffered.is_empty() {
                let records = std::mem::take(&mut self.buffered);
                self.buffered_from.clear();
                self.start_fetches();
                return Ok(records);
            }
            self.start_fetches();
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let wake = self
                .next_wake()
                .map_or(deadline, |w| w.clamp(now, deadline));
            if self.fetches.is_empty() {
                tokio::time::sleep_until(wake.into()).await;
                continue;
            }
            match tokio::time::timeout_at(wake.into(), self.fetches.join_next()).await {
                Ok(Some(Ok(result))) => self.on_fetch(result)?,
                Ok(Some(Err(join))) => return Err(Error::protocol(format!("fetch task: {join}"))),
                Ok(None) | Err(_) => {}
            }
        }
    }

    /// Commits the current positions of every assigned partition under the group id.
    pub async fn commit(&mut self) -> Result<()> {
        let offsets: Vec<(TopicPartition, i64)> = self
            .partitions
            .iter()
            .filter_map(|(tp, s)| s.position.map(|p| (tp.clone(), p)))
            .collect();
        self.commit_offsets(&offsets).await
    }

    /// Commits explicit offsets (the next offset to read) under the group id.
    pub async fn commit_offsets(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        let group = self.group()?.to_owned();
        if offsets.is_empty() {
            return Ok(());
        }
        let wait = self.client.config().connection.request_timeout;
        offsets::commit(
            &self.client,
            &group,
            offsets::Generation::NONE,
            offsets,
            wait,
        )
        .await
    }

    /// The group's committed offsets for `partitions`.
    pub async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, Option<i64>>> {
        let group = self.group()?;
        let wait = self.client.config().connection.request_timeout;
        offsets::committed(&self.client, group, partitions, wait).await
    }

    fn group(&self) -> Result<&str> {
        self.config
            .group_id
            .as_deref()
            .ok_or_else(|| Error::Config("no group id configured".into()))
    }

    /// Metadata and positions; retriable failures (leader moves, coordinator loads) wait for the
    /// backoff, anything else is the caller's.
    async fn prepare(&mut self) -> Result<()> {
        self.refresh_leaders().await?;
        if self.retry_at.is_some_and(|r| r > Instant::now()) {
            return Ok(());
        }
        self.retry_at = None;
        match self.resolve_positions().await {
            Ok(()) => Ok(()),
            Err(e) => self.on_retriable(e),
        }
    }

    /// Refreshes metadata when an error asked for it or an assigned partition has no known
    /// leader, at most once per backoff (doubling while partitions stay leaderless).
    async fn refresh_leaders(&mut self) -> Result<()> {
        let leaderless = self.leaderless_topics();
        self.refresh_metadata |= !leaderless.is_empty();
        if !self.refresh_metadata {
            self.refresh_backoff = Duration::ZERO;
            return Ok(());
        }
        if self.refresh_due().is_some_and(|due| due > Instant::now()) {
            return Ok(());
        }
        let mut topics: Vec<String> = self
            .partitions
            .keys()
            .map(|tp| tp.topic.to_string())
            .collect();
        topics.dedup();
        self.refresh_metadata = false;
        self.refreshed_at = Some(Instant::now());
        let base = self.client.config().retry_backoff;
        self.refresh_backoff = (self.refresh_backoff * 2).clamp(base, MAX_BACKOFF.max(base));
        let meta = match self.client.refresh_metadata(Some(&topics)).await {
            Ok(meta) => meta,
            Err(e) => {
                debug!(error = %e, "metadata refresh failed");
                self.refresh_metadata = true;
                return if e.is_retriable() { Ok(()) } else { Err(e) };
            }
        };
        for topic in self.leaderless_topics() {
            // A topic the broker refuses for good (authorization, invalid name) is the caller's.
            if let Err(e) = meta.topic(&topic)
                && !e.is_retriable()
            {
                return Err(e);
            }
            debug!(topic = %topic, "partitions without a leader yet");
            self.refresh_metadata = true;
        }
        Ok(())
    }

    /// Topics with an assigned partition the metadata names no leader for.
    fn leaderless_topics(&self) -> Vec<Arc<str>> {
        let meta = self.client.metadata();
        let mut topics: Vec<Arc<str>> = self
            .partitions
            .keys()
            .filter(|tp| meta.leader(&tp.topic, tp.partition).is_none())
            .map(|tp| tp.topic.clone())
            .collect();
        topics.dedup();
        topics
    }

    /// When the wanted metadata refresh may be made.
    fn refresh_due(&self) -> Option<Instant> {
        let last = self.refreshed_at?;
        Some(last + self.refresh_backoff)
    }

    /// The earliest time something paused may go on: a refresh, a position lookup, a partition.
    fn next_wake(&self) -> Option<Instant> {
        let refresh = self
            .refresh_metadata
            .then(|| self.refresh_due().unwrap_or_else(Instant::now));
        let paused = self
            .partitions
            .iter()
            .filter(|(tp, s)| s.position.is_some() && !self.in_fetch.contains(*tp))
            .filter_map(|(_, s)| s.paused_until);
        [refresh, self.retry_at]
            .into_iter()
            .flatten()
            .chain(paused)
            .min()
    }

    /// Turns seeks and unknown positions into offsets.
    async fn resolve_positions(&mut self) -> Result<()> {
        let unknown: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(tp, s)| s.position.is_none() && !self.in_fetch.contains(*tp))
            .map(|(tp, _)| tp.clone())
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        if self.config.group_id.is_some() {
            self.seek_to_committed(&unknown).await?;
        }
        let lookups = self.timestamps_to_look_up(&unknown)?;
        if lookups.is_empty() {
            return Ok(());
        }
        for (tp, _) in &lookups {
            self.client.topic(&tp.topic).await?;
        }
        let resolved =
            offsets::list_offsets(&self.client, &lookups, self.config.read_committed).await?;
        for (tp, offset) in resolved {
            let Some(s) = self.partitions.get_mut(&tp) else {
                continue;
            };
            if offset < 0 {
                // No record at or after the timestamp: start at the end, as Kafka's seek does.
                s.seek = Some(SeekTo::End);
                continue;
            }
            debug!(tp = %tp, offset, "position resolved");
            s.position = Some(offset);
            s.seek = None;
        }
        Ok(())
    }

    /// Partitions without an explicit seek start at the group's committed offset, if any.
    async fn seek_to_committed(&mut self, unknown: &[TopicPartition]) -> Result<()> {
        let fresh: Vec<TopicPartition> = unknown
            .iter()
            .filter(|tp| self.partitions.get(*tp).is_some_and(|s| s.seek.is_none()))
            .cloned()
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        for (tp, committed) in self.committed(&fresh).await? {
            if let (Some(offset), Some(s)) = (committed, self.partitions.get_mut(&tp)) {
                s.seek = Some(SeekTo::Offset(offset));
            }
        }
        Ok(())
    }

    /// Applies exact-offset seeks; returns the ListOffsets timestamps the others need.
    fn timestamps_to_look_up(
        &mut self,
        unknown: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, i64)>> {
        let mut lookups = Vec::new();
        for tp in unknown {
            let Some(state) = self.partitions.get_mut(tp) else {
                continue;
            };
            let ts = match state.seek {
                Some(SeekTo::Offset(o)) => {
                    state.position = Some(o);
                    state.seek = None;
                    continue;
                }
                Some(SeekTo::Beginning) => offsets::EARLIEST,
                Some(SeekTo::End) => offsets::LATEST,
                Some(SeekTo::Timestamp(ts)) => ts,
                None => match self.config.auto_offset_reset {
                    OffsetReset::Earliest => offsets::EARLIEST,
                    OffsetReset::Latest => offsets::LATEST,
                    OffsetReset::None => {
                        return Err(Error::Config(format!(
                            "no committed offset for {tp} and auto offset reset is none"
                        )));
                    }
                },
            };
            lookups.push((tp.clone(), ts));
        }
        Ok(lookups)
    }

    /// Starts one fetch per leader for partitions with a position, no fetch in flight and no
    /// pause after an error.
    fn start_fetches(&mut self) {
        let now = Instant::now();
        let meta = self.client.metadata();
        let mut by_leader: BTreeMap<NodeId, Vec<(TopicPartition, i64)>> = BTreeMap::new();
        for (tp, state) in &mut self.partitions {
            let Some(position) = state.position else {
                continue;
            };
            if self.in_fetch.contains(tp) || self.buffered_from.contains(tp) {
                continue;
            }
            if state.paused_until.is_some_and(|p| p > now) {
                continue;
            }
            state.paused_until = None;
            if let Some(leader) = meta.leader(&tp.topic, tp.partition)
                && !self.fetching.contains(&leader)
            {
                by_leader
                    .entry(leader)
                    .or_default()
                    .push((tp.clone(), position));
            }
        }
        for (node, parts) in by_leader {
            self.fetching.insert(node);
            self.in_fetch.extend(parts.iter().map(|(tp, _)| tp.clone()));
            let client = self.client.clone();
            let config = self.config.clone();
            self.fetches.spawn(async move {
                let result = fetcher::fetch(client, node, config, parts.clone()).await;
                (node, parts, result)
            });
        }
    }

    fn on_fetch(&mut self, (node, parts, result): FetchResult) -> Result<()> {
        self.fetching.remove(&node);
        for (tp, _) in &parts {
            self.in_fetch.remove(tp);
        }
        let fetched = match result {
            Ok(fetched) => fetched,
            Err(e) => {
                debug!(node, error = %e, "fetch failed");
                let tps: Vec<&TopicPartition> = parts.iter().map(|(tp, _)| tp).collect();
                return self.pause(&tps, e);
            }
        };
        for f in fetched {
            let Some(state) = self.partitions.get_mut(&f.tp) else {
                continue;
            };
            if state.position != Some(f.fetch_offset) {
                continue; // sought elsewhere meanwhile
            }
            if f.high_watermark >= 0 {
                state.high_watermark = Some(f.high_watermark);
            }
            match f.error {
                None => {
                    if let Some(next) = f.records.next_offset {
                        state.position = Some(next.max(f.fetch_offset));
                    }
                    if !f.records.records.is_empty() {
                        self.buffered_from.insert(f.tp);
                        if self.buffered.is_empty() {
                            self.buffered = f.records.records;
                        } else {
                            self.buffered.extend(f.records.records);
                        }
                    }
                }
                Some(Error::OffsetOutOfRange { .. })
                    if self.config.auto_offset_reset != OffsetReset::None =>
                {
                    debug!(tp = %f.tp, offset = f.fetch_offset, "offset out of range: resetting");
                    state.position = None;
                    state.seek = Some(match self.config.auto_offset_reset {
                        OffsetReset::Earliest => SeekTo::Beginning,
                        _ => SeekTo::End,
                    });
                }
                Some(e) => {
                    debug!(tp = %f.tp, error = %e, "partition fetch failed");
                    self.pause(&[&f.tp], e)?;
                }
            }
        }
        Ok(())
    }

    /// A retriable fetch error pauses `tps` for the backoff and, if the error says the leader
    /// may have moved, asks for a metadata refresh; any other error is the caller's.
    fn pause(&mut self, tps: &[&TopicPartition], e: Error) -> Result<()> {
        if !e.is_retriable() {
            return Err(e);
        }
        self.refresh_metadata |= e.needs_metadata_refresh();
        let until = Instant::now() + self.client.config().retry_backoff;
        for tp in tps {
            if let Some(state) = self.partitions.get_mut(*tp) {
                state.paused_until = Some(until);
            }
        }
        Ok(())
    }

    /// A retriable position lookup error waits for the backoff (refreshing metadata first if
    /// the error asks for it); any other error is the caller's.
    fn on_retriable(&mut self, e: Error) -> Result<()> {
        if !e.is_retriable() {
            return Err(e);
        }
        debug!(error = %e, "position lookup failed");
        self.refresh_metadata |= e.needs_metadata_refresh();
        self.retry_at = Some(Instant::now() + self.client.config().retry_backoff);
        Ok(())
    }
}

#[cfg(test)]
#[path = "consumer_tests.rs"]
mod tests;
