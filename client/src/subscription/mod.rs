//! Push subscription: records committed on a partition's leader reach the subscriber through its
//! home node (the mesh node it polls) without a Fetch round trip, each exactly once and in offset
//! order per partition. The path and its guarantees are described in `docs/push.md`.
//!
//! A [`Subscription`] long-polls its home node for the leaders' notices (`/rafka/push/1`; the
//! encodings are `rafka_format::push`) and fetches whatever push did not bring: the history
//! before the live records, gaps detected by offset, notices that only announce an extent, the
//! tail a summary reveals, everything after the home node dropped messages for it. Which
//! records to deliver and what to fetch is decided by the sans-IO [`core::SubscriberCore`]; this
//! shell carries out its actions.
//!
//! Push needs the mesh transport (a multiaddr or `mdns` bootstrap).

pub mod core;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rafka_format::push::{PollRequest, PollResponse, PushMessage, poll_error};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::cluster::Client;
use crate::config::ConsumerConfig;
use crate::connection::Endpoint;
use crate::connection::mesh::PushFeed;
use crate::consumer::{fetcher, offsets};
use crate::error::{Error, Result};
use crate::metadata::TopicPartition;
use crate::records::{ConsumerRecord, DecodedRecords, decode_records};
use core::{Action, Counts, PartitionId, SubscriberCore};

/// Where a subscription starts in each partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAt {
    /// The log start.
    Beginning,
    /// The high watermark: only records committed from now on.
    End,
    /// This offset in every partition.
    Offset(i64),
    /// These offsets; partitions not listed start at the end.
    Offsets(HashMap<TopicPartition, i64>),
    /// The first record with a timestamp (ms) at or after this one.
    Timestamp(i64),
    /// The group's committed offsets; partitions without one start at the end.
    Committed(String),
}

/// Settings of a subscription.
#[derive(Debug, Clone)]
pub struct SubscriptionConfig {
    /// How long the home node may hold a poll when it has nothing.
    pub poll_wait: Duration,
    /// About how many bytes of notices one poll answer may carry.
    pub poll_max_bytes: u32,
    /// Early notices (past a gap) held per partition while the gap is fetched; beyond it they
    /// are dropped and read by Fetch instead (bounded memory for a subscriber that fell behind).
    pub max_early_bytes: usize,
    /// The Fetch settings of backfills.
    pub fetch: ConsumerConfig,
    /// How long to wait for the topics' metadata at the start.
    pub metadata_wait: Duration,
}

impl Default for SubscriptionConfig {
    fn default() -> Self {
        SubscriptionConfig {
            poll_wait: Duration::from_secs(5),
            poll_max_bytes: 1024 * 1024,
            max_early_bytes: 4 * 1024 * 1024,
            fetch: ConsumerConfig {
                fetch_max_wait: Duration::from_millis(100),
                read_committed: true,
                ..ConsumerConfig::default()
            },
            metadata_wait: Duration::from_secs(10),
        }
    }
}

/// What a subscription has seen, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriptionStats {
    /// The core's counters (records by push and by Fetch, duplicates, gaps, overflows).
    pub counts: Counts,
    /// Records announced but not yet delivered, over every partition.
    pub lag: i64,
    /// Polls the home node answered with dropped messages or a fresh session.
    pub push_losses: u64,
    /// Push messages that could not be read (dropped).
    pub unreadable: u64,
}

type FetchDone = (PartitionId, i64, Option<(DecodedRecords, i64)>);

/// A push subscription to one or more topics (see the module documentation).
pub struct Subscription {
    client: Client,
    config: SubscriptionConfig,
    core: SubscriberCore,
    names: HashMap<[u8; 16], Arc<str>>,
    session: u64,
    home: Option<String>,
    feed: Feed,
    /// The home node serves polls only (an older node): poll it instead of opening a stream.
    polls_only: bool,
    fetches: FuturesUnordered<JoinHandle<FetchDone>>,
    ready: VecDeque<ConsumerRecord>,
    stats: SubscriptionStats,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("topics", &self.names.values().collect::<Vec<_>>())
            .field("home", &self.home)
            .finish()
    }
}

/// How push messages reach the subscription from its home node.
enum Feed {
    /// Nothing yet, or the last poll was answered: start one.
    Idle,
    /// A push stream being opened (its request is written once it is open).
    Opening(JoinHandle<Result<Option<PushFeed>>>),
    /// An open push stream: the home node writes an answer whenever it has messages, and an
    /// empty one after the poll wait with none, so silence past the deadline means it is gone.
    Stream(Box<PushFeed>, tokio::time::Instant),
    /// A poll in flight (home nodes without push streams).
    Polling(JoinHandle<Result<Bytes>>),
}

enum Event {
    Opened(Result<Option<PushFeed>>),
    /// A poll's answer, or a frame from the stream (`true`).
    Polled(Result<Bytes>, bool),
    Fetched(FetchDone),
    Timeout,
}

impl Subscription {
    /// Subscribes to `topics` from `start`: resolves the start offsets, starts fetching the
    /// history and polling the home node.
    pub async fn new(
        client: Client,
        topics: &[&str],
        start: StartAt,
        config: SubscriptionConfig,
    ) -> Result<Subscription> {
        let mut names = HashMap::new();
        let mut partitions = Vec::new();
        for topic in topics {
            let info = client.wait_for_topic(topic, config.metadata_wait).await?;
            let name: Arc<str> = Arc::from(info.name.as_str());
            names.insert(*info.id.as_bytes(), name.clone());
            partitions.extend(
                info.partitions
                    .iter()
                    .map(|p| TopicPartition::new(name.clone(), p.partition)),
            );
        }
        let offsets = start_offsets(&client, &partitions, &start, &config).await?;
        let session = session_id();
        let mut subscription = Subscription {
            core: SubscriberCore::new(config.max_early_bytes),
            client,
            config,
            names,
            session,
            home: None,
            feed: Feed::Idle,
            polls_only: false,
            fetches: FuturesUnordered::new(),
            ready: VecDeque::new(),
            stats: SubscriptionStats::default(),
        };
        for tp in partitions {
            let offset = offsets.get(&tp).copied().unwrap_or(0);
            let actions = subscription.core.start((tp.topic, tp.partition), offset);
            subscription.apply(actions);
        }
        subscription.start_feed();
        Ok(subscription)
    }

    /// The next records, in offset order per partition, each once; waits up to `timeout` for
    /// some (an empty answer when none came).
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if !self.ready.is_empty() {
                return Ok(self.ready.drain(..).collect());
            }
            if matches!(self.feed, Feed::Idle) {
                self.start_feed();
            }
            let silence = self.stream_silence();
            let event = {
                let feed = &mut self.feed;
                let fetches = &mut self.fetches;
                tokio::select! {
                    event = async {
                        match feed {
                            Feed::Opening(handle) => Event::Opened(
                                handle.await.unwrap_or_else(|e| Err(Error::Mesh(e.to_string()))),
                            ),
                            Feed::Stream(stream, deadline) => {
                                let frame = tokio::time::timeout_at(*deadline, stream.next_frame())
                                    .await
                                    .unwrap_or_else(|_| {
                                        Err(Error::Mesh("home node silent on the push stream".into()))
                                    });
                                if frame.is_ok() {
                                    *deadline = tokio::time::Instant::now() + silence;
                                }
                                Event::Polled(frame, true)
                            }
                            Feed::Polling(handle) => Event::Polled(
                                handle.await.unwrap_or_else(|e| Err(Error::Mesh(e.to_string()))),
                                false,
                            ),
                            Feed::Idle => std::future::pending().await,
                        }
                    } => event,
                    Some(Ok(done)) = fetches.next(), if !fetches.is_empty() => Event::Fetched(done),
                    () = tokio::time::sleep_until(deadline) => Event::Timeout,
                }
            };
            match event {
                Event::Opened(Ok(Some(stream))) => {
                    let deadline = tokio::time::Instant::now() + silence;
                    self.feed = Feed::Stream(Box::new(stream), deadline);
                }
                Event::Opened(Ok(None)) => {
                    debug!(home = ?self.home, "home node serves push polls only");
                    self.polls_only = true;
                    self.feed = Feed::Idle;
                }
                Event::Opened(Err(e)) => {
                    self.feed = Feed::Idle;
                    self.on_polled(Err(e)).await;
                }
                Event::Polled(answer, streaming) => {
                    if !streaming || answer.is_err() {
                        self.feed = Feed::Idle;
                    }
                    self.on_polled(answer).await;
                }
                Event::Fetched((partition, from, answer)) => {
                    let actions = self.core.on_fetched(&partition, from, answer);
                    self.apply(actions);
                }
                Event::Timeout => return Ok(self.ready.drain(..).collect()),
            }
        }
    }

    /// The next offset owed to the application in `tp`.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.core.position(&(tp.topic.clone(), tp.partition))
    }

    /// What the subscription has seen so far.
    pub fn stats(&self) -> SubscriptionStats {
        SubscriptionStats {
            counts: self.core.counts(),
            lag: self.core.lag(),
            ..self.stats
        }
    }

    /// The home node's peer id, once a stream was opened or a poll sent.
    pub fn home(&self) -> Option<&str> {
        self.home.as_deref()
    }

    /// How long an open push stream may stay silent: the home node writes at least once per
    /// poll wait; the rest is slack for a loaded machine.
    fn stream_silence(&self) -> Duration {
        self.config.poll_wait + self.client.config().connection.request_timeout
    }

    /// Starts receiving from the home node (picking one if needed): opens a push stream, or
    /// sends a poll to a node that serves polls only.
    fn start_feed(&mut self) {
        let home = match &self.home {
            Some(home) => home.clone(),
            None => match pick_home(&self.client, None) {
                Some(home) => home,
                None => {
                    self.feed = Feed::Polling(tokio::spawn(async {
                        Err(Error::Config(
                            "push subscription needs the mesh transport".into(),
                        ))
                    }));
                    return;
                }
            },
        };
        self.home = Some(home.clone());
        if !self.polls_only {
            // Each stream is a new session: whatever was queued for an earlier one is gone, and
            // the home node's first answer (fresh) makes the core fetch what was missed.
            self.session = session_id();
        }
        let request = PollRequest {
            session: self.session,
            max_wait_ms: u32::try_from(self.config.poll_wait.as_millis()).unwrap_or(u32::MAX),
            max_bytes: self.config.poll_max_bytes,
            topics: self.names.keys().copied().collect(),
        };
        let client = self.client.clone();
        if self.polls_only {
            self.feed = Feed::Polling(tokio::spawn(async move {
                client.push_poll(&home, request.encode()).await
            }));
            return;
        }
        self.feed = Feed::Opening(tokio::spawn(async move {
            match client.open_push_stream(&home).await? {
                Some(mut stream) => {
                    stream.send(&request.encode()).await?;
                    Ok(Some(stream))
                }
                None => Ok(None),
            }
        }));
    }

    async fn on_polled(&mut self, answer: Result<Bytes>) {
        let response = answer.and_then(|frame| {
            PollResponse::decode(&frame).map_err(|e| Error::protocol(format!("push poll: {e}")))
        });
        let response = match response {
            Ok(response) if response.error == poll_error::NONE => response,
            Ok(response) => {
                debug!(error = response.error, "home node refused the push poll");
                self.lost_home().await;
                return;
            }
            Err(Error::Config(reason)) => {
                // No mesh: nothing will ever come by push; Fetch carries on alone, slowly.
                debug!(%reason, "push unavailable");
                tokio::time::sleep(self.config.poll_wait).await;
                return;
            }
            Err(e) => {
                debug!(error = %e, "push poll failed");
                self.lost_home().await;
                return;
            }
        };
        if response.fresh || response.dropped > 0 {
            self.stats.push_losses += 1;
            let actions = self.core.on_push_lost();
            self.apply(actions);
        }
        for message in &response.messages {
            self.on_message(message);
        }
    }

    /// The home node failed or refused: move to another one (a new session there) and fetch
    /// whatever may have been missed meanwhile.
    async fn lost_home(&mut self) {
        self.stats.push_losses += 1;
        self.feed = Feed::Idle;
        self.polls_only = false;
        let previous = self.home.take();
        self.home = pick_home(&self.client, previous.as_deref());
        self.session = session_id();
        let actions = self.core.on_push_lost();
        self.apply(actions);
        if let Err(e) = self.client.refresh_metadata(None).await {
            debug!(error = %e, "metadata refresh after losing the home node failed");
        }
        // A short pause before polling again, so a cluster that is down is not hammered.
        tokio::time::sleep(self.client.config().retry_backoff).await;
    }

    fn on_message(&mut self, message: &Bytes) {
        let Ok(message) = PushMessage::decode(message) else {
            self.stats.unreadable += 1;
            return;
        };
        match message {
            PushMessage::Notice(notice) => {
                let Some(topic) = self.names.get(&notice.partition.topic_id) else {
                    return;
                };
                let partition: PartitionId = (topic.clone(), notice.partition.partition);
                let records = match notice.batches {
                    Some(batches) => {
                        match decode_records(topic, partition.1, notice.base_offset, batches) {
                            Ok(records) => Some(records),
                            Err(_) => {
                                // A corrupt inline batch is read again by Fetch.
                                self.stats.unreadable += 1;
                                None
                            }
                        }
                    }
                    None => None,
                };
                let actions =
                    self.core
                        .on_notice(&partition, notice.base_offset, notice.end_offset, records);
                self.apply(actions);
            }
            PushMessage::Summary(summary) => {
                for entry in summary.entries {
                    let Some(topic) = self.names.get(&entry.partition.topic_id) else {
                        continue;
                    };
                    let partition: PartitionId = (topic.clone(), entry.partition.partition);
                    let actions = self
                        .core
                        .on_high_watermark(&partition, entry.high_watermark);
                    self.apply(actions);
                }
            }
        }
    }

    fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Deliver(records) => self.ready.extend(records),
                Action::Fetch(partition, from) => {
                    let client = self.client.clone();
                    let config = self.config.fetch.clone();
                    self.fetches
                        .push(tokio::spawn(backfill(client, config, partition, from)));
                }
            }
        }
    }
}

/// Fetches `partition` from `from` on its leader: the records and the high watermark, or `None`
/// after a failure (the metadata is refreshed, and the core asks again).
async fn backfill(
    client: Client,
    config: ConsumerConfig,
    partition: PartitionId,
    from: i64,
) -> FetchDone {
    let tp = TopicPartition::new(partition.0.clone(), partition.1);
    let leader = client.metadata().leader(&tp.topic, tp.partition);
    let result = match leader {
        Some(node) => fetcher::fetch(client.clone(), node, config, vec![(tp.clone(), from)]).await,
        None => Err(Error::LeaderNotAvailable {
            topic: tp.topic.to_string(),
        }),
    };
    let answer = match result {
        Ok(fetched) => match fetched.into_iter().next() {
            Some(f) if f.error.is_none() => Some((f.records, f.high_watermark)),
            Some(f) => {
                debug!(tp = %tp, error = ?f.error, "backfill refused");
                None
            }
            None => None,
        },
        Err(e) => {
            debug!(tp = %tp, error = %e, "backfill failed");
            None
        }
    };
    if answer.is_none() {
        client.invalidate(&tp.topic);
        if let Err(e) = client.refresh_metadata(Some(&[tp.topic.to_string()])).await {
            debug!(error = %e, "metadata refresh failed");
        }
        // Retry pacing: the leader may be moving.
        tokio::time::sleep(client.config().retry_backoff).await;
    }
    (partition, from, answer)
}

/// The first offset owed to the application in each partition.
async fn start_offsets(
    client: &Client,
    partitions: &[TopicPartition],
    start: &StartAt,
    config: &SubscriptionConfig,
) -> Result<HashMap<TopicPartition, i64>> {
    let listed = |ts: i64| -> Vec<(TopicPartition, i64)> {
        partitions.iter().map(|tp| (tp.clone(), ts)).collect()
    };
    let read_committed = config.fetch.read_committed;
    match start {
        StartAt::Beginning => {
            offsets::list_offsets(client, &listed(offsets::EARLIEST), read_committed).await
        }
        StartAt::End => {
            offsets::list_offsets(client, &listed(offsets::LATEST), read_committed).await
        }
        StartAt::Timestamp(ms) => offsets::list_offsets(client, &listed(*ms), read_committed).await,
        StartAt::Offset(offset) => Ok(partitions.iter().map(|tp| (tp.clone(), *offset)).collect()),
        StartAt::Offsets(given) => {
            let mut out =
                offsets::list_offsets(client, &listed(offsets::LATEST), read_committed).await?;
            for (tp, offset) in given {
                out.insert(tp.clone(), *offset);
            }
            Ok(out)
        }
        StartAt::Committed(group) => {
            let mut out =
                offsets::list_offsets(client, &listed(offsets::LATEST), read_committed).await?;
            let committed =
                offsets::committed(client, group, partitions, config.metadata_wait).await?;
            for (tp, offset) in committed {
                if let Some(offset) = offset {
                    out.insert(tp, offset);
                }
            }
            Ok(out)
        }
    }
}

/// A mesh node to poll: the first reachable one other than `not`.
fn pick_home(client: &Client, not: Option<&str>) -> Option<String> {
    let peers: Vec<String> = client
        .routes()
        .any()
        .into_iter()
        .filter_map(|endpoint| match endpoint {
            Endpoint::Mesh { peer, .. } => Some(peer),
            Endpoint::Kafka(_) => None,
        })
        .collect();
    peers
        .iter()
        .find(|peer| Some(peer.as_str()) != not)
        .or(peers.first())
        .cloned()
}

/// A session id unlikely to repeat (the home node keys sessions by peer and id).
fn session_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (nanos as u64) ^ (u64::from(std::process::id()) << 32)
}
