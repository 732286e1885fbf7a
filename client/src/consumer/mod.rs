//! The consumer: assigned partitions, positions, prefetching long-poll fetches, and offsets
//! committed under a group id.
//!
//! - [`fetcher`]: one Fetch per leader, decoded into records.
//! - [`offsets`]: ListOffsets, FindCoordinator, OffsetCommit / OffsetFetch.
//!
//! One fetch per leader runs as its own task while the application handles what `poll`
//! returned, so the network and the application overlap.

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

#[derive(Debug, Default)]
struct PartitionState {
    position: Option<i64>,
    seek: Option<SeekTo>,
    high_watermark: Option<i64>,
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
    retry_at: Option<Instant>,
    refresh_metadata: bool,
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
            let wake = self.retry_at.map_or(deadline, |r| r.min(deadline));
            if self.fetches.is_empty() {
                tokio::time::sleep_until(wake.into()).await;
                self.retry_at = None;
                continue;
            }
            match tokio::time::timeout_at(deadline.into(), self.fetches.join_next()).await {
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
        offsets::commit(&self.client, &group, offsets, wait).await
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
        if self.retry_at.is_some_and(|r| r > Instant::now()) {
            return Ok(());
        }
        if std::mem::take(&mut self.refresh_metadata) {
            let mut topics: Vec<String> = self
                .partitions
                .keys()
                .map(|tp| tp.topic.to_string())
                .collect();
            topics.dedup();
            if let Err(e) = self.client.refresh_metadata(Some(&topics)).await {
                debug!(error = %e, "metadata refresh failed");
                return self.on_retriable(e);
            }
        }
        self.ensure_metadata().await?;
        match self.resolve_positions().await {
            Ok(()) => Ok(()),
            Err(e) => self.on_retriable(e),
        }
    }

    /// Loads metadata for assigned topics the client does not know yet.
    async fn ensure_metadata(&mut self) -> Result<()> {
        if self.retry_at.is_some_and(|r| r > Instant::now()) {
            return Ok(());
        }
        let meta = self.client.metadata();
        let mut missing: Vec<Arc<str>> = self
            .partitions
            .keys()
            .filter(|tp| meta.leader(&tp.topic, tp.partition).is_none())
            .map(|tp| tp.topic.clone())
            .collect();
        missing.dedup();
        for topic in missing {
            if let Err(e) = self.client.topic(&topic).await {
                debug!(topic = %topic, error = %e, "no metadata for an assigned topic yet");
                self.on_retriable(e)?;
            }
        }
        Ok(())
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

    /// Starts one fetch per leader for partitions with a position and no fetch in flight.
    fn start_fetches(&mut self) {
        if self.retry_at.is_some_and(|r| r > Instant::now()) {
            return;
        }
        let meta = self.client.metadata();
        let mut by_leader: BTreeMap<NodeId, Vec<(TopicPartition, i64)>> = BTreeMap::new();
        for (tp, state) in &self.partitions {
            let Some(position) = state.position else {
                continue;
            };
            if self.in_fetch.contains(tp) || self.buffered_from.contains(tp) {
                continue;
            }
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
                return self.on_retriable(e);
            }
        };
        let mut failures = Vec::new();
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
                Some(e) => failures.push(e),
            }
        }
        failures.into_iter().try_for_each(|e| self.on_retriable(e))
    }

    fn on_retriable(&mut self, e: Error) -> Result<()> {
        if !e.is_retriable() {
            return Err(e);
        }
        self.refresh_metadata |= e.needs_metadata_refresh();
        self.retry_at = Some(Instant::now() + self.client.config().retry_backoff);
        Ok(())
    }
}

#[cfg(test)]
#[path = "consumer_tests.rs"]
mod tests;
