//! The group coordinator's sans-IO core: Kafka's classic consumer-group protocol (JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup, static membership, the protocol vote) and committed offsets
//! with generation and member fencing, for the groups of the `__consumer_offsets` partitions this
//! node leads. No I/O, no clock, no tasks: requests and `now` go in, answers and records to write
//! come out ([`Output`]), and the shell (`group/service.rs`) carries them out.
//!
//! # What goes in
//!
//! - Partition life: [`GroupCoordinator::begin_load`] when this node gains leadership of an
//!   offsets partition (its groups answer COORDINATOR_LOAD_IN_PROGRESS), [`GroupCoordinator::load`]
//!   with the partition's records once replayed, [`GroupCoordinator::unload`] when leadership is
//!   lost (NOT_COORDINATOR from then on; waiting joins and syncs are answered with it).
//! - Requests: [`GroupCoordinator::join`] and [`GroupCoordinator::sync`] (answered later, through
//!   [`Output::Join`] / [`Output::Sync`], when the rebalance gets there), the immediate ones
//!   (heartbeat, leave, describe, list, delete, offset fetch and delete) and commits:
//!   [`GroupCoordinator::validate_commit`] before the append, [`GroupCoordinator::committed`]
//!   once the records are replicated.
//! - Writes finished: [`GroupCoordinator::persisted`] for each [`Output::Persist`].
//! - Time: [`GroupCoordinator::tick`] at [`GroupCoordinator::next_deadline`] at the latest;
//!   timers run on the monotonic `now` every call takes, and [`GroupCoordinator::set_wall_clock`]
//!   says what the wall clock reads at an instant, for the times Kafka records in milliseconds
//!   since the Unix epoch (when a group entered its state, which offsets retention of an empty
//!   group counts from).
//!
//! # What comes out
//!
//! [`Output`]s, drained with [`GroupCoordinator::poll_output`] after every call: the answers of
//! held joins and syncs, and group metadata records to append (acks=all) to a partition before
//! the rebalance completes.

mod group;
mod membership;
mod offsets;
#[cfg(test)]
mod tests;
mod txn;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
pub use kafka_protocol::ResponseError;

use group::Group;
pub use group::{GroupState, MemberDescription};
pub use txn::LogEntry;
use txn::TxnOffsets;

use super::records::{GroupMetadata, OffsetValue, Record};

/// The coordinator's settings (Kafka's `group.*` broker configs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout: Duration,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout: Duration,
    /// `group.initial.rebalance.delay.ms`: how long a new or empty group waits for more joiners.
    pub initial_rebalance_delay: Duration,
    /// `group.max.size`: members of one group at most.
    pub max_group_size: usize,
    /// `offsets.retention.minutes`: how long offsets outlive an empty group (or, for groups that
    /// never had members, their commit).
    pub offsets_retention: Duration,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            min_session_timeout: Duration::from_millis(6_000),
            max_session_timeout: Duration::from_millis(1_800_000),
            initial_rebalance_delay: Duration::from_millis(3_000),
            max_group_size: i32::MAX as usize,
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Identifies a held request, chosen by the shell; its answer comes back with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reply(pub u64);

/// Identifies a write of group metadata; [`GroupCoordinator::persisted`] reports how it went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PersistToken(pub u64);

/// A JoinGroup request.
#[derive(Clone, Debug, Default)]
pub struct JoinRequest {
    /// Group id.
    pub group: String,
    /// Empty for a member's first join.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// The client's id.
    pub client_id: String,
    /// Where the client connects from.
    pub client_host: String,
    /// How long the member may go without a heartbeat.
    pub session_timeout: Duration,
    /// How long the member may take to rejoin during a rebalance.
    pub rebalance_timeout: Duration,
    /// "consumer" for consumers.
    pub protocol_type: String,
    /// The member's assignors by preference, each with its subscription bytes.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a first join gets MEMBER_ID_REQUIRED and a member id (KIP-394).
    pub require_known_member_id: bool,
    /// JoinGroup v9+: a static leader that rejoins may be told to skip the assignment (KIP-814).
    pub supports_skip_assignment: bool,
}

/// One member as the leader sees it in its JoinGroup answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// Its static instance id.
    pub instance_id: Option<String>,
    /// Its subscription for the chosen protocol.
    pub metadata: Bytes,
}

/// A JoinGroup answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JoinResponse {
    /// Error, if any.
    pub error: Option<ResponseError>,
    /// The new generation.
    pub generation: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The chosen assignor.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// Every member, for the leader only.
    pub members: Vec<JoinedMember>,
    /// The leader keeps the current assignment (KIP-814).
    pub skip_assignment: bool,
}

impl JoinResponse {
    fn error(error: ResponseError, member_id: &str) -> Self {
        Self {
            error: Some(error),
            generation: -1,
            member_id: member_id.to_string(),
            ..Self::default()
        }
    }
}

/// A SyncGroup request.
#[derive(Clone, Debug, Default)]
pub struct SyncRequest {
    /// Group id.
    pub group: String,
    /// The generation the member joined.
    pub generation: i32,
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// v5+: checked against the group's.
    pub protocol_type: Option<String>,
    /// v5+: checked against the group's.
    pub protocol_name: Option<String>,
    /// The leader's assignment: member id and its bytes.
    pub assignments: Vec<(String, Bytes)>,
}

/// A SyncGroup answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncResponse {
    /// Error, if any.
    pub error: Option<ResponseError>,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The chosen assignor.
    pub protocol_name: Option<String>,
    /// This member's assignment.
    pub assignment: Bytes,
}

impl SyncResponse {
    fn error(error: ResponseError) -> Self {
        Self {
            error: Some(error),
            ..Self::default()
        }
    }
}

/// Who a Heartbeat, LeaveGroup or OffsetCommit claims to be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberRef {
    /// Member id (empty for an admin or simple consumer).
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
}

/// A group as DescribeGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group: String,
    /// State name, as Kafka spells it.
    pub state: GroupState,
    /// Protocol type ("consumer") or empty.
    pub protocol_type: String,
    /// The chosen assignor, when stable.
    pub protocol: String,
    /// The members.
    pub members: Vec<MemberDescription>,
}

/// A group as ListGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedGroup {
    /// Group id.
    pub group: String,
    /// Protocol type ("consumer") or empty.
    pub protocol_type: String,
    /// Its state.
    pub state: GroupState,
}

/// Something for the shell to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Answer a held JoinGroup.
    Join {
        /// The request.
        reply: Reply,
        /// Its answer.
        response: JoinResponse,
    },
    /// Answer a held SyncGroup.
    Sync {
        /// The request.
        reply: Reply,
        /// Its answer.
        response: SyncResponse,
    },
    /// Append these records to offsets partition `partition` (acks=all) and report with
    /// [`GroupCoordinator::persisted`].
    Persist {
        /// Reported back.
        token: PersistToken,
        /// The offsets partition.
        partition: i32,
        /// What to write.
        records: Vec<Record>,
    },
}

/// Whether this node serves an offsets partition's groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Served {
    Loading,
    Active,
}

/// Gauges the coordinator reports: groups per state and members.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Groups in each state.
    pub by_state: BTreeMap<&'static str, usize>,
    /// Members over every group.
    pub members: usize,
    /// Rebalances started since the coordinator was created.
    pub rebalances: u64,
}

/// The coordinator of every group whose offsets partition this node serves.
pub struct GroupCoordinator {
    config: GroupConfig,
    partitions: i32,
    /// Makes member ids unique across coordinators and restarts (node id and broker epoch).
    member_prefix: String,
    next_member: u64,
    served: HashMap<i32, Served>,
    groups: HashMap<String, Group>,
    outputs: VecDeque<Output>,
    next_token: u64,
    /// Group metadata writes in flight: which group and generation each completes.
    persisting: HashMap<PersistToken, (String, i32)>,
    rebalances: u64,
    /// An instant and what the wall clock read then (ms since the Unix epoch).
    wall_clock: Option<(Instant, i64)>,
    /// Per offsets partition served (or loading): transactional offsets pending per producer.
    txns: HashMap<i32, TxnOffsets>,
}

impl GroupCoordinator {
    /// A coordinator for groups spread over `partitions` offsets partitions, none served yet.
    /// `member_prefix` must differ between nodes and between starts of one node.
    pub fn new(config: GroupConfig, partitions: i32, member_prefix: String) -> Self {
        Self {
            config,
            partitions: partitions.max(1),
            member_prefix,
            next_member: 0,
            served: HashMap::new(),
            groups: HashMap::new(),
            outputs: VecDeque::new(),
            next_token: 0,
            persisting: HashMap::new(),
            rebalances: 0,
            wall_clock: None,
            txns: HashMap::new(),
        }
    }

    /// The wall clock reads `now_ms` (ms since the Unix epoch) at `now`. The shell says so
    /// before each input; until it has, the times a group entered its states are unknown.
    pub fn set_wall_clock(&mut self, now: Instant, now_ms: i64) {
        self.wall_clock = Some((now, now_ms));
    }

    /// What the wall clock read (or will read) at `at`, in ms since the Unix epoch.
    fn wall_ms(&self, at: Instant) -> Option<i64> {
        let (then, then_ms) = self.wall_clock?;
        let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Some(if at >= then {
            then_ms.saturating_add(millis(at - then))
        } else {
            then_ms.saturating_sub(millis(then - at))
        })
    }

    /// The settings.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// The offsets partition of `group`.
    pub fn partition_of(&self, group: &str) -> i32 {
        super::partition_for_group(group, self.partitions)
    }

    /// The next output to carry out.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Whether `group` may be served here: `Err` with NOT_COORDINATOR or
    /// COORDINATOR_LOAD_IN_PROGRESS otherwise (and INVALID_GROUP_ID for an empty id).
    pub fn check_coordinator(&self, group: &str) -> Result<i32, ResponseError> {
        if group.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        let partition = self.partition_of(group);
        match self.served.get(&partition) {
            Some(Served::Active) => Ok(partition),
            Some(Served::Loading) => Err(ResponseError::CoordinatorLoadInProgress),
            None => Err(ResponseError::NotCoordinator),
        }
    }

    /// Whether offsets partition `partition` is served (loaded) here.
    pub fn is_active(&self, partition: i32) -> bool {
        self.served.get(&partition) == Some(&Served::Active)
    }

    /// This node now leads offsets partition `partition`: its groups answer
    /// COORDINATOR_LOAD_IN_PROGRESS until [`Self::load`].
    pub fn begin_load(&mut self, partition: i32) {
        if self.served.contains_key(&partition) {
            self.unload(partition);
        }
        self.served.insert(partition, Served::Loading);
    }

    /// The partition's records, replayed in log order (each with its offset): its groups and
    /// offsets are served from now on. Members loaded from a group record get a full session
    /// from `now` to heartbeat the new coordinator.
    pub fn load(&mut self, partition: i32, records: Vec<(i64, Record)>, now: Instant) {
        let entries = records.into_iter().map(|(o, r)| (o, LogEntry::from(r)));
        self.load_log(partition, entries.collect(), now);
    }

    /// [`Self::load`] of a log with transactions: transactional offset records wait per producer
    /// for its marker (commit applies them, abort drops them, none leaves them pending), as
    /// Kafka's loader does. Markers reported while the partition loaded are applied after it,
    /// unless the replay already held them.
    pub fn load_log(&mut self, partition: i32, entries: Vec<(i64, LogEntry)>, now: Instant) {
        let mut loaded: HashMap<String, Group> = HashMap::new();
        let mut txns = TxnOffsets::default();
        for entry in entries {
            self.replay_entry(partition, entry, &mut loaded, &mut txns, now);
        }
        txns.pending.retain(|_, pending| !pending.is_empty());
        for (id, group) in loaded {
            if !group.is_dead() {
                self.groups.insert(id, group);
            }
        }
        let early = self
            .txns
            .insert(partition, txns)
            .map(|t| t.early_markers)
            .unwrap_or_default();
        self.served.insert(partition, Served::Active);
        for (producer_id, commit, offset) in early {
            self.end_txn(now, partition, producer_id, commit, offset);
        }
    }

    /// This node no longer leads offsets partition `partition`: its groups are dropped and
    /// every held join or sync of theirs is answered NOT_COORDINATOR.
    pub fn unload(&mut self, partition: i32) {
        self.served.remove(&partition);
        self.txns.remove(&partition);
        let ids: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.partition == partition)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            if let Some(mut group) = self.groups.remove(&id) {
                group.fail_waiting(ResponseError::NotCoordinator, &mut self.outputs);
            }
        }
        self.persisting.retain(|_, (group, _)| {
            super::partition_for_group(group, self.partitions) != partition
        });
    }

    /// The offsets partitions served (or loading) here.
    pub fn served_partitions(&self) -> Vec<i32> {
        let mut served: Vec<i32> = self.served.keys().copied().collect();
        served.sort_unstable();
        served
    }

    /// The earliest time [`Self::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.groups.values().filter_map(Group::next_deadline).min()
    }

    /// Advances time: ends join phases whose time is up, expires members whose session ran out
    /// and pending members who never rejoined.
    pub fn tick(&mut self, now: Instant) {
        let due: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.next_deadline().is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.with_group(&id, |coordinator, group| {
                coordinator.tick_group(group, now);
            });
        }
    }

    /// Groups per state, members and rebalances (for the metrics).
    pub fn stats(&self) -> GroupStats {
        let mut stats = GroupStats {
            rebalances: self.rebalances,
            ..GroupStats::default()
        };
        for group in self.groups.values() {
            *stats.by_state.entry(group.state.name()).or_default() += 1;
            stats.members += group.members.len();
        }
        stats
    }

    /// Every committed offset of every served group (for lag).
    pub fn all_offsets(&self) -> Vec<(String, String, i32, i64)> {
        let mut all = Vec::new();
        for (id, group) in &self.groups {
            for ((topic, partition), commit) in &group.offsets {
                all.push((id.clone(), topic.clone(), *partition, commit.value.offset));
            }
        }
        all.sort();
        all
    }

    /// Every live record of offsets partition `partition`: what a snapshot of it must hold.
    pub fn live_records(&self, partition: i32) -> Vec<Record> {
        let mut ids: Vec<&String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.partition == partition)
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        let mut records = Vec::new();
        for id in ids {
            if let Some(group) = self.groups.get(id) {
                records.extend(group.live_records());
            }
        }
        records
    }

    /// Runs `f` on group `id` taken out of the map, and puts it back unless it died.
    fn with_group<T>(&mut self, id: &str, f: impl FnOnce(&mut Self, &mut Group) -> T) -> Option<T> {
        let mut group = self.groups.remove(id)?;
        let result = f(self, &mut group);
        if !group.is_dead() {
            self.groups.insert(id.to_string(), group);
        }
        Some(result)
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.next_member += 1;
        format!("{client_id}-{}-{}", self.member_prefix, self.next_member)
    }

    fn persist(&mut self, group: &Group) {
        self.next_token += 1;
        let token = PersistToken(self.next_token);
        self.persisting
            .insert(token, (group.id.clone(), group.generation));
        self.outputs.push_back(Output::Persist {
            token,
            partition: group.partition,
            records: vec![Record::Group {
                group: group.id.clone(),
                metadata: Some(group.metadata()),
            }],
        });
    }
}

/// A committed offset as the coordinator keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    /// The value.
    pub value: OffsetValue,
    /// Where in the offsets partition it was written (a later write wins).
    pub log_offset: i64,
}

/// Group metadata the way a snapshot or test builds it.
pub type Metadata = GroupMetadata;
