//! The group consumer: `subscribe` with a group id, and the group's coordinator hands out the
//! partitions (Kafka's classic group protocol, as a Kafka client speaks it).
//!
//! - [`coordinator`]: JoinGroup, SyncGroup, Heartbeat, LeaveGroup.
//! - [`admin`]: list, describe and delete groups, reset their offsets.
//! - [`protocol`]: the ConsumerProtocol Subscription and Assignment bytes.
//! - [`assignor`]: range, roundrobin and cooperative-sticky, run by the group's leader.
//! - [`member`]: the heartbeat task.
//!
//! [`GroupConsumer::poll`] drives everything the member does, as the Java consumer's `poll`
//! does: it finds the coordinator, joins (taking the member id MEMBER_ID_REQUIRED hands out and
//! rejoining at once), runs the assignor when it is the leader, syncs, tells the
//! [`RebalanceListener`], commits on the interval, and fetches the assignment with a
//! [`Consumer`]. A task heartbeats on its own, so a member that is busy between polls stays in
//! the group; what it hears (a rebalance, the member fenced, the coordinator gone) the next poll
//! acts on. Fencing: REBALANCE_IN_PROGRESS means rejoin; ILLEGAL_GENERATION and
//! UNKNOWN_MEMBER_ID mean the partitions are lost (no commit) and the member rejoins;
//! FENCED_INSTANCE_ID is fatal. A coordinator that moves (NOT_COORDINATOR,
//! COORDINATOR_NOT_AVAILABLE, a closed connection) is found again; one that is loading
//! (COORDINATOR_LOAD_IN_PROGRESS) is retried after the backoff.
//!
//! Eager assignors (range, roundrobin) revoke everything before each join; cooperative-sticky
//! revokes only what the new assignment moves away and then rejoins, so the moved partitions
//! are handed out in a second rebalance (KIP-429).
//!
//! Offsets: what `poll` returned is "consumed" and stored (unless [`GroupConfig::auto_store`]
//! is off: then the application stores what it has handled with [`GroupConsumer::store`]);
//! stored offsets are committed every [`GroupConfig::auto_commit_interval`] (unless
//! [`GroupConfig::auto_commit`] is off), before partitions are revoked, and on close.

pub mod admin;
pub mod assignor;
pub mod coordinator;
pub mod member;
pub mod protocol;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tracing::{debug, info, warn};

use self::assignor::{Assignor, Member};
use self::coordinator::{JoinParams, Joined, MemberRef, group_error};
use self::member::{Heartbeat, Signal};
use self::protocol::{Assignment, Subscription};
use crate::cluster::Client;
use crate::config::ConsumerConfig;
use crate::consumer::offsets::{self, Generation};
use crate::consumer::{Consumer, SeekTo};
use crate::error::{Error, Result};
use crate::metadata::{NodeId, TopicPartition};
use crate::records::ConsumerRecord;

/// Settings of a group member (Kafka's names and defaults unless said otherwise).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.id`.
    pub group_id: String,
    /// `group.instance.id`: a static member (KIP-345).
    pub instance_id: Option<String>,
    /// `session.timeout.ms` (45 s).
    pub session_timeout: Duration,
    /// The rebalance timeout (`max.poll.interval.ms`, 300 s): how long the coordinator waits for
    /// members to rejoin.
    pub rebalance_timeout: Duration,
    /// `heartbeat.interval.ms` (3 s).
    pub heartbeat_interval: Duration,
    /// `partition.assignment.strategy`, in preference order (range, cooperative-sticky: the
    /// Java client's default).
    pub assignors: Vec<Assignor>,
    /// `enable.auto.commit` (true).
    pub auto_commit: bool,
    /// `auto.commit.interval.ms` (5 s).
    pub auto_commit_interval: Duration,
    /// `enable.auto.offset.store` (librdkafka's name; true): records `poll` returns count as
    /// consumed. Off, only what [`GroupConsumer::store`] was given is committed.
    pub auto_store: bool,
}

impl GroupConfig {
    /// A configuration for group `group_id` with every other value at its default.
    pub fn new(group_id: impl Into<String>) -> Self {
        GroupConfig {
            group_id: group_id.into(),
            instance_id: None,
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(3),
            assignors: vec![Assignor::Range, Assignor::CooperativeSticky],
            auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            auto_store: true,
        }
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(m.to_owned()));
        if self.group_id.is_empty() {
            return bad("group id must not be empty");
        }
        if self.instance_id.as_deref() == Some("") {
            return bad("group instance id must not be empty");
        }
        if self.assignors.is_empty() {
            return bad("at least one assignor is needed");
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.session_timeout {
            return bad("the heartbeat interval must be positive and below the session timeout");
        }
        if self.auto_commit && self.auto_commit_interval.is_zero() {
            return bad("the auto commit interval must be positive");
        }
        Ok(())
    }
}

/// A group member's identity for offsets committed inside a transaction (Kafka's
/// `ConsumerGroupMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMetadata {
    /// `group.id`.
    pub group_id: String,
    /// Generation (-1 outside one: the coordinator then checks no generation).
    pub generation_id: i32,
    /// Member id ("" outside a generation).
    pub member_id: String,
    /// Group instance id of a static member.
    pub instance_id: Option<String>,
}

impl ConsumerGroupMetadata {
    /// A group without membership (offsets of a consumer that assigns its own partitions).
    pub fn new(group_id: impl Into<String>) -> Self {
        ConsumerGroupMetadata {
            group_id: group_id.into(),
            generation_id: -1,
            member_id: String::new(),
            instance_id: None,
        }
    }
}

/// Told about assignment changes, from inside [`GroupConsumer::poll`] (and `close`).
pub trait RebalanceListener: Send {
    /// Partitions newly assigned (their positions are the committed offsets, or the reset).
    fn on_assigned(&mut self, _partitions: &[TopicPartition]) {}
    /// Partitions given up in a rebalance; with auto commit on, their stored offsets were
    /// committed just before.
    fn on_revoked(&mut self, _partitions: &[TopicPartition]) {}
    /// Partitions lost: the member was fenced (its session expired, its generation is gone), so
    /// another member may own them already and nothing was committed. Default: `on_revoked`.
    fn on_lost(&mut self, partitions: &[TopicPartition]) {
        self.on_revoked(partitions);
    }
}

/// The member's place in the group.
#[derive(Debug, Clone, Default)]
struct State {
    member_id: String,
    /// -1 outside a generation.
    generation: i32,
    protocol: Option<Assignor>,
    coordinator: Option<NodeId>,
    /// Whether the next poll must (re)join.
    rejoin: bool,
    /// Why, for JoinGroup's reason field and the logs.
    reason: String,
}

/// A consumer in a group: subscribes to topics, the group splits their partitions.
pub struct GroupConsumer {
    client: Client,
    config: GroupConfig,
    consumer: Consumer,
    topics: Vec<String>,
    state: State,
    heartbeat: Option<Heartbeat>,
    /// In a mutex only so the consumer is `Sync` without asking it of listeners.
    listener: std::sync::Mutex<Option<Box<dyn RebalanceListener>>>,
    /// Offsets to commit (the next offset to read), and what was last committed.
    stored: BTreeMap<TopicPartition, i64>,
    committed: BTreeMap<TopicPartition, i64>,
    last_commit: Instant,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("group", &self.config.group_id)
            .field("member_id", &self.state.member_id)
            .field("generation", &self.state.generation)
            .finish_non_exhaustive()
    }
}

/// How long `poll` waits on fetches before it looks at the heartbeat's news again.
const SLICE: Duration = Duration::from_millis(100);

impl GroupConsumer {
    /// A member of `group.group_id`, not yet subscribed. `consumer` sets the fetch settings and
    /// `auto_offset_reset` (for partitions without a committed offset); its group id is ignored.
    pub fn new(client: Client, consumer: ConsumerConfig, group: GroupConfig) -> Result<Self> {
        group.validate()?;
        let consumer = ConsumerConfig {
            group_id: Some(group.group_id.clone()),
            ..consumer
        };
        Ok(GroupConsumer {
            consumer: Consumer::new(client.clone(), consumer)?,
            client,
            config: group,
            topics: Vec::new(),
            state: State {
                generation: -1,
                ..State::default()
            },
            heartbeat: None,
            listener: std::sync::Mutex::new(None),
            stored: BTreeMap::new(),
            committed: BTreeMap::new(),
            last_commit: Instant::now(),
        })
    }

    /// Sets the topics to consume; the next `poll` joins (or rejoins) the group with them.
    pub fn subscribe<S: Into<String>>(&mut self, topics: impl IntoIterator<Item = S>) {
        let mut topics: Vec<String> = topics.into_iter().map(Into::into).collect();
        topics.sort();
        topics.dedup();
        if topics != self.topics {
            self.topics = topics;
            self.request_rejoin("subscription changed");
        }
    }

    /// Who hears about assignment changes.
    pub fn set_listener(&mut self, listener: impl RebalanceListener + 'static) {
        *crate::cluster::lock(&self.listener) = Some(Box::new(listener));
    }

    /// The partitions assigned in the current generation.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.consumer.assignment()
    }

    /// The current generation id and member id, once joined.
    pub fn generation(&self) -> Option<(i32, &str)> {
        (self.state.generation >= 0).then_some((self.state.generation, &self.state.member_id))
    }

    /// What a transactional producer needs to commit this member's offsets inside a
    /// transaction ([`crate::Producer::send_offsets_to_transaction`]): the group, the
    /// generation and member id (so the coordinator fences a member that was rebalanced out)
    /// and the instance id.
    pub fn group_metadata(&self) -> ConsumerGroupMetadata {
        ConsumerGroupMetadata {
            group_id: self.config.group_id.clone(),
            generation_id: self.state.generation,
            member_id: self.state.member_id.clone(),
            instance_id: self.config.instance_id.clone(),
        }
    }

    /// The next offset `poll` will return for `tp`, once known.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.consumer.position(tp)
    }

    /// Moves the position of an assigned partition.
    pub fn seek(&mut self, tp: &TopicPartition, to: SeekTo) -> Result<()> {
        self.consumer.seek(tp, to)
    }

    /// Marks everything before `next_offset` of `tp` as handled: the next commit commits it.
    pub fn store(&mut self, tp: &TopicPartition, next_offset: i64) {
        if self.consumer.assignment().contains(tp) {
            self.stored.insert(tp.clone(), next_offset);
        }
    }

    /// Records of the assigned partitions, or none after `timeout`. Joins the group first when
    /// it must; a rebalance may make one call last longer than `timeout`.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        if self.topics.is_empty() {
            return Err(Error::Config("subscribe to a topic before polling".into()));
        }
        let deadline = Instant::now() + timeout;
        loop {
            self.on_heartbeat_news()?;
            if self.state.rejoin {
                self.join().await?;
            }
            if self.config.auto_commit
                && self.last_commit.elapsed() >= self.config.auto_commit_interval
            {
                self.auto_commit().await?;
            }
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .min(SLICE);
            let records = self.consumer.poll(slice).await?;
            if self.config.auto_store {
                for r in &records {
                    let tp = TopicPartition::new(r.topic.clone(), r.partition);
                    self.stored.insert(tp, r.offset + 1);
                }
            }
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(records);
            }
        }
    }

    /// Commits the stored offsets of the assigned partitions as this generation's member.
    pub async fn commit(&mut self) -> Result<()> {
        let pending: Vec<(TopicPartition, i64)> = self
            .stored
            .iter()
            .filter(|(tp, o)| self.committed.get(*tp) != Some(*o))
            .map(|(tp, o)| (tp.clone(), *o))
            .collect();
        self.commit_offsets(&pending).await
    }

    /// Commits explicit offsets (the next offset to read) as this generation's member.
    ///
    /// Fenced (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID): the error is
    /// returned and the next `poll` rejoins.
    pub async fn commit_offsets(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        self.last_commit = Instant::now();
        if offsets.is_empty() {
            return Ok(());
        }
        if self.state.generation < 0 {
            return Err(Error::Broker {
                context: format!("commit of group {}", self.config.group_id),
                error: ResponseError::RebalanceInProgress,
                message: Some("not in a generation yet".into()),
            });
        }
        let generation = Generation {
            id: self.state.generation,
            member_id: &self.state.member_id,
            instance_id: self.config.instance_id.as_deref(),
        };
        let wait = self.client.config().connection.request_timeout;
        let result = offsets::commit(
            &self.client,
            &self.config.group_id,
            generation,
            offsets,
            wait,
        )
        .await;
        match &result {
            Ok(()) => self.committed.extend(offsets.iter().cloned()),
            Err(e) => self.on_fenced(e, "commit")?,
        }
        result
    }

    /// Leaves the group: commits the stored offsets (auto commit), tells the listener the
    /// partitions are revoked, and sends LeaveGroup (dynamic members only: a static member
    /// stays until its session times out, so a restart within it gets its partitions back).
    pub async fn close(mut self) -> Result<()> {
        self.stop_heartbeat();
        let mut result = Ok(());
        if self.state.generation >= 0 {
            if self.config.auto_commit
                && let Err(e) = self.commit().await
            {
                warn!(group = %self.config.group_id, error = %e, "commit on close failed");
                result = Err(e);
            }
            let all = self.consumer.assignment();
            if !all.is_empty() {
                self.tell(|l| l.on_revoked(&all));
            }
        }
        if self.config.instance_id.is_none() && !self.state.member_id.is_empty() {
            let node = self.coordinator().await;
            let me = self.member_ref();
            let left = match node {
                Ok(node) => {
                    coordinator::leave(&self.client, node, &me, "the consumer is closing").await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = left {
                debug!(group = %self.config.group_id, error = %e, "LeaveGroup failed");
            }
        }
        self.consumer.assign([]);
        result
    }

    fn member_ref(&self) -> MemberRef<'_> {
        MemberRef {
            group: &self.config.group_id,
            member_id: &self.state.member_id,
            instance_id: self.config.instance_id.as_deref(),
            generation: self.state.generation,
        }
    }

    fn request_rejoin(&mut self, reason: &str) {
        if !self.state.rejoin {
            debug!(group = %self.config.group_id, reason, "rejoining");
            self.state.rejoin = true;
            self.state.reason = reason.to_owned();
        }
    }

    /// What the heartbeat task heard since the last look.
    fn on_heartbeat_news(&mut self) -> Result<()> {
        while let Some(signal) = self.heartbeat.as_ref().and_then(Heartbeat::take) {
            match signal {
                Signal::Rejoin => self.request_rejoin("the group is rebalancing"),
                Signal::Fenced(e) => self.on_fenced(&e, "heartbeat")?,
                Signal::Coordinator(node) => self.state.coordinator = node,
            }
        }
        Ok(())
    }

    /// Acts on a fencing error of a heartbeat or commit: rejoin, the partitions lost when the
    /// generation or member is gone; FENCED_INSTANCE_ID is returned (fatal).
    fn on_fenced(&mut self, e: &Error, what: &str) -> Result<()> {
        match group_error(e) {
            Some(ResponseError::RebalanceInProgress) => {
                self.request_rejoin("the group is rebalancing");
            }
            Some(ResponseError::IllegalGeneration) => {
                self.lose_partitions(what, e);
                self.state.generation = -1;
                self.request_rejoin("the generation is gone");
            }
            Some(ResponseError::UnknownMemberId) => {
                self.lose_partitions(what, e);
                self.state.generation = -1;
                self.state.member_id.clear();
                self.request_rejoin("the member is unknown");
            }
            Some(ResponseError::FencedInstanceId) => {
                self.lose_partitions(what, e);
                return Err(e.clone());
            }
            _ if e.needs_metadata_refresh() || e.is_connection_error() => {
                self.state.coordinator = None;
            }
            _ => {}
        }
        Ok(())
    }

    fn lose_partitions(&mut self, what: &str, e: &Error) {
        self.stop_heartbeat();
        let lost = self.consumer.assignment();
        warn!(group = %self.config.group_id, %what, error = %e, partitions = lost.len(), "partitions lost");
        self.consumer.assign([]);
        self.stored.clear();
        if !lost.is_empty() {
            self.tell(|l| l.on_lost(&lost));
        }
    }

    fn tell(&self, f: impl FnOnce(&mut dyn RebalanceListener)) {
        if let Some(l) = crate::cluster::lock(&self.listener).as_mut() {
            f(l.as_mut());
        }
    }

    fn stop_heartbeat(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.stop();
        }
    }

    async fn auto_commit(&mut self) -> Result<()> {
        match self.commit().await {
            Ok(()) => Ok(()),
            Err(e) if group_error(&e) == Some(ResponseError::FencedInstanceId) => Err(e),
            Err(e) => {
                debug!(group = %self.config.group_id, error = %e, "auto commit failed");
                Ok(())
            }
        }
    }

    /// The coordinator, found again when unknown.
    async fn coordinator(&mut self) -> Result<NodeId> {
        if let Some(node) = self.state.coordinator {
            return Ok(node);
        }
        let wait = self.client.config().connection.request_timeout;
        let node = offsets::find_coordinator(&self.client, &self.config.group_id, wait).await?;
        self.state.coordinator = Some(node);
        Ok(node)
    }

    /// Revokes what an eager protocol gives up before joining, then joins and syncs until a
    /// generation's assignment is in hand; applies it.
    async fn join(&mut self) -> Result<()> {
        self.stop_heartbeat();
        let cooperative = self.state.protocol.is_some_and(Assignor::is_cooperative);
        if !cooperative {
            let all = self.consumer.assignment();
            self.revoke(&all).await;
        }
        let backoff = self.client.config().retry_backoff;
        loop {
            match self.join_and_sync().await {
                Ok(Some((joined, assignment))) => return self.apply(joined, assignment).await,
                Ok(None) => {}
                Err(e) if is_fatal(&e) => return Err(e),
                Err(e) => {
                    debug!(group = %self.config.group_id, error = %e, "join failed; retrying");
                    if matches!(e, Error::Coordinator { .. }) || e.is_connection_error() {
                        self.state.coordinator = None;
                    }
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }

    /// One JoinGroup and SyncGroup; `None` when they must be sent again at once.
    async fn join_and_sync(&mut self) -> Result<Option<(Joined, Assignment)>> {
        let node = self.coordinator().await?;
        let params = self.join_params()?;
        let joined = match coordinator::join(&self.client, node, &self.member_ref(), &params).await
        {
            Ok(joined) => joined,
            Err((e, Some(id))) => {
                debug!(group = %self.config.group_id, member = %id, "member id assigned (KIP-394)");
                let _ = e;
                self.state.member_id = id;
                return Ok(None);
            }
            Err((e, None)) => {
                match group_error(&e) {
                    Some(ResponseError::UnknownMemberId) => {
                        self.state.member_id.clear();
                        self.state.generation = -1;
                    }
                    Some(ResponseError::IllegalGeneration) => self.state.generation = -1,
                    Some(ResponseError::RebalanceInProgress) => return Ok(None),
                    _ => {}
                }
                return Err(e);
            }
        };
        let protocol = Assignor::from_name(&joined.protocol).ok_or_else(|| Error::Broker {
            context: format!("JoinGroup of group {}", self.config.group_id),
            error: ResponseError::InconsistentGroupProtocol,
            message: Some(format!("assignor {:?} was not offered", joined.protocol)),
        })?;
        self.state.member_id = joined.member_id.clone();
        let assignments = if joined.leader == joined.member_id && !joined.skip_assignment {
            self.assign(protocol, &joined).await?
        } else {
            Vec::new()
        };
        let me = MemberRef {
            generation: joined.generation,
            ..self.member_ref()
        };
        let wait = self.config.rebalance_timeout + coordinator::JOIN_MARGIN;
        match coordinator::sync(&self.client, node, &me, &joined.protocol, assignments, wait).await
        {
            Ok(bytes) => Ok(Some((joined, Assignment::decode(bytes)?))),
            Err(e) => match group_error(&e) {
                Some(ResponseError::RebalanceInProgress) => Ok(None),
                Some(ResponseError::UnknownMemberId) => {
                    self.state.member_id.clear();
                    self.state.generation = -1;
                    Err(e)
                }
                _ => Err(e),
            },
        }
    }

    /// The protocols this member offers: one subscription per assignor, in preference order.
    fn join_params(&self) -> Result<JoinParams> {
        let owned = self.consumer.assignment();
        let subscription = Subscription {
            topics: self.topics.clone(),
            owned,
            generation: self.state.generation,
            ..Subscription::default()
        };
        let bytes = subscription.encode()?;
        Ok(JoinParams {
            session_timeout: self.config.session_timeout,
            rebalance_timeout: self.config.rebalance_timeout,
            protocols: self
                .config
                .assignors
                .iter()
                .map(|a| (a.name().to_owned(), bytes.clone()))
                .collect(),
            reason: self.state.reason.clone(),
        })
    }

    /// The leader's part: every member's subscription through the chosen assignor.
    async fn assign(&self, protocol: Assignor, joined: &Joined) -> Result<Vec<(String, Bytes)>> {
        let mut members = Vec::new();
        for (member_id, instance_id, metadata) in &joined.members {
            let s = Subscription::decode(metadata.clone()).unwrap_or_else(|e| {
                warn!(member = %member_id, error = %e, "unreadable subscription: assigning nothing");
                Subscription::default()
            });
            members.push(Member {
                member_id: member_id.clone(),
                instance_id: instance_id.clone(),
                topics: s.topics,
                owned: s.owned,
                generation: s.generation,
            });
        }
        let topics: BTreeSet<&String> = members.iter().flat_map(|m| &m.topics).collect();
        let mut counts = BTreeMap::new();
        for topic in topics {
            match self.client.topic(topic).await {
                Ok(info) => {
                    counts.insert(topic.clone(), info.partitions.len() as i32);
                }
                Err(e) => debug!(topic = %topic, error = %e, "subscribed topic left out"),
            }
        }
        let assigned = protocol.assign(&members, &counts);
        info!(group = %self.config.group_id, generation = joined.generation, assignor = protocol.name(), members = members.len(), "assigned as leader");
        assigned
            .into_iter()
            .map(|(member, partitions)| {
                let bytes = Assignment {
                    partitions,
                    user_data: None,
                }
                .encode()?;
                Ok((member, bytes))
            })
            .collect()
    }

    /// Takes the generation's assignment: revokes what moved away (cooperative), assigns what
    /// is new, starts heartbeating; a cooperative member that gave something up rejoins.
    async fn apply(&mut self, joined: Joined, assignment: Assignment) -> Result<()> {
        let protocol = Assignor::from_name(&joined.protocol);
        let new: BTreeSet<TopicPartition> = assignment
            .partitions
            .into_iter()
            .filter(|tp| self.topics.iter().any(|t| **t == *tp.topic))
            .collect();
        let old: BTreeSet<TopicPartition> = self.consumer.assignment().into_iter().collect();
        let revoked: Vec<TopicPartition> = old.difference(&new).cloned().collect();
        let added: Vec<TopicPartition> = new.difference(&old).cloned().collect();
        self.revoke(&revoked).await;
        self.state.generation = joined.generation;
        self.state.protocol = protocol;
        self.state.rejoin = false;
        self.consumer.assign(new.iter().cloned());
        info!(
            group = %self.config.group_id,
            generation = joined.generation,
            member = %joined.member_id,
            partitions = new.len(),
            "joined"
        );
        if !added.is_empty() {
            self.tell(|l| l.on_assigned(&added));
        }
        let node = self.coordinator().await?;
        self.heartbeat = Some(Heartbeat::start(
            self.client.clone(),
            node,
            self.config.clone(),
            joined.member_id,
            joined.generation,
        ));
        if protocol.is_some_and(Assignor::is_cooperative) && !revoked.is_empty() {
            // KIP-429: what was given up goes to its new owner in the next rebalance.
            self.request_rejoin("partitions were revoked");
        }
        Ok(())
    }

    /// Commits what was stored for `partitions` (auto commit), tells the listener, and stops
    /// fetching them.
    async fn revoke(&mut self, partitions: &[TopicPartition]) {
        if partitions.is_empty() {
            return;
        }
        if self.config.auto_commit && self.state.generation >= 0 {
            let pending: Vec<(TopicPartition, i64)> = partitions
                .iter()
                .filter_map(|tp| Some((tp.clone(), *self.stored.get(tp)?)))
                .filter(|(tp, o)| self.committed.get(tp) != Some(o))
                .collect();
            if let Err(e) = self.commit_offsets(&pending).await {
                warn!(group = %self.config.group_id, error = %e, "commit before revoking failed");
            }
        }
        self.tell(|l| l.on_revoked(partitions));
        let keep: Vec<TopicPartition> = self
            .consumer
            .assignment()
            .into_iter()
            .filter(|tp| !partitions.contains(tp))
            .collect();
        self.consumer.assign(keep);
        for tp in partitions {
            self.stored.remove(tp);
            self.committed.remove(tp);
        }
    }
}

/// Errors a member cannot get past by joining again.
fn is_fatal(e: &Error) -> bool {
    match group_error(e) {
        Some(
            ResponseError::FencedInstanceId
            | ResponseError::InconsistentGroupProtocol
            | ResponseError::GroupMaxSizeReached
            | ResponseError::InvalidSessionTimeout
            | ResponseError::GroupAuthorizationFailed
            | ResponseError::InvalidGroupId
            | ResponseError::UnsupportedVersion,
        ) => true,
        Some(_) => false,
        None => !e.is_retriable(),
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        self.stop_heartbeat();
    }
}
