//! One classic group: its state, members, generation and protocol, and its committed offsets.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Commit, JoinResponse, Output, Reply, ResponseError, SyncResponse};
use crate::group::records::{GroupMetadata, MemberMetadata, OffsetKey, OffsetValue, Record};

/// A group's state (Kafka's classic group states).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    /// No members (it may still have offsets).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// Deleted, or moved to another coordinator.
    Dead,
}

impl GroupState {
    /// The name Kafka uses (DescribeGroups, ListGroups' state filter).
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
            Self::Dead => "Dead",
        }
    }

    /// Parses a state name, case-insensitively (ListGroups filters).
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Empty,
            Self::PreparingRebalance,
            Self::CompletingRebalance,
            Self::Stable,
            Self::Dead,
        ]
        .into_iter()
        .find(|s| s.name().eq_ignore_ascii_case(name))
    }
}

/// A member as DescribeGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Subscription for the chosen protocol (when stable).
    pub metadata: Bytes,
    /// Assignment (when stable).
    pub assignment: Bytes,
}

#[derive(Clone, Debug)]
pub(super) struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// A JoinGroup of this member held until the join phase ends.
    pub awaiting_join: Option<Reply>,
    /// A SyncGroup of this member held until the leader's assignment is persisted.
    pub awaiting_sync: Option<Reply>,
    /// When the session ends unless the member is heard from.
    pub session_deadline: Instant,
    /// Joined in this rebalance for the first time (the initial delay extends for it).
    pub is_new: bool,
    /// Join order, for choosing a leader.
    pub joined_seq: u64,
}

impl Member {
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    pub fn touch(&mut self, now: Instant) {
        self.session_deadline = now + self.session_timeout;
    }
}

/// The join phase of a rebalance: when it ends.
#[derive(Clone, Copy, Debug)]
pub(super) struct JoinPhase {
    pub deadline: Instant,
    /// Within the initial delay of a new or empty group: completes only at the deadline, which
    /// new joiners push back by the delay while `remaining` lasts.
    pub initial: Option<Duration>,
}

pub(super) struct Group {
    pub id: String,
    pub partition: i32,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// KIP-394: ids handed out with MEMBER_ID_REQUIRED, valid until their deadline.
    pub pending: HashMap<String, Instant>,
    /// `group.instance.id` → member id.
    pub static_members: HashMap<String, String>,
    pub join_phase: Option<JoinPhase>,
    pub new_member_joined: bool,
    pub offsets: HashMap<(String, i32), Commit>,
    /// When the group entered its state, in ms since the Unix epoch as commit timestamps count
    /// (Kafka's `currentStateTimestamp`): written with the group's metadata, so offsets retention
    /// of an empty group counts from when it emptied on whichever node coordinates it. `None`
    /// when unknown (a record written without it, or no wall clock given to the core).
    pub state_timestamp: Option<i64>,
    pub next_seq: u64,
}

impl Group {
    /// A new, empty group; `state_timestamp` is now on the wall clock.
    pub fn new(id: &str, partition: i32, state_timestamp: Option<i64>) -> Self {
        Self {
            id: id.to_string(),
            partition,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            join_phase: None,
            new_member_joined: false,
            offsets: HashMap::new(),
            state_timestamp,
            next_seq: 0,
        }
    }

    pub fn is_dead(&self) -> bool {
        self.state == GroupState::Dead
    }

    /// Moves to `state` at wall-clock time `at` (ms since the Unix epoch).
    pub fn set_state(&mut self, state: GroupState, at: Option<i64>) {
        if self.state != state {
            self.state = state;
            self.state_timestamp = at;
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let join = self.join_phase.map(|p| p.deadline);
        let sessions = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.awaiting_sync.is_none())
            .map(|m| m.session_deadline)
            .min();
        let pending = self.pending.values().copied().min();
        [join, sessions, pending].into_iter().flatten().min()
    }

    /// The largest rebalance timeout of the members: how long a join phase waits.
    pub fn rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }

    /// Protocols every member lists.
    fn candidates(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return Vec::new();
        };
        let mut candidates: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for member in members {
            candidates.retain(|c| member.protocols.iter().any(|(n, _)| n == c));
        }
        candidates
    }

    /// Whether a member with `protocol_type` and `protocols` may join: same type, and at least
    /// one protocol in common with every current member.
    pub fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidates();
        protocols.iter().any(|(n, _)| candidates.contains(n))
    }

    /// Kafka's vote: each member votes for its most preferred candidate; most votes wins (ties
    /// go to the candidate listed first by the first member).
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidates();
        let mut votes: Vec<(String, usize)> = candidates.iter().map(|c| (c.clone(), 0)).collect();
        for member in self.members.values() {
            let vote = member
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(n));
            if let Some((name, _)) = vote
                && let Some(entry) = votes.iter_mut().find(|(c, _)| c == name)
            {
                entry.1 += 1;
            }
        }
        let best = votes.iter().map(|(_, n)| *n).max()?;
        votes.into_iter().find(|(_, n)| *n == best).map(|(c, _)| c)
    }

    pub fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// Answers every held join and sync with `error` (leadership lost, group deleted).
    pub fn fail_waiting(&mut self, error: ResponseError, outputs: &mut VecDeque<Output>) {
        for member in self.members.values_mut() {
            if let Some(reply) = member.awaiting_join.take() {
                outputs.push_back(Output::Join {
                    reply,
                    response: JoinResponse::error(error, &member.id),
                });
            }
            if let Some(reply) = member.awaiting_sync.take() {
                outputs.push_back(Output::Sync {
                    reply,
                    response: SyncResponse::error(error),
                });
            }
        }
    }

    /// The group's generation as a record value.
    pub fn metadata(&self) -> GroupMetadata {
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupMetadata {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp: self.state_timestamp.unwrap_or(-1),
            members: self
                .members
                .values()
                .map(|m| MemberMetadata {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: millis(m.rebalance_timeout),
                    session_timeout_ms: millis(m.session_timeout),
                    subscription: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Applies a replayed group metadata record: the group as it was when last persisted (with
    /// the time it entered that state, when the record has it); its members get a full session
    /// from `now`.
    pub fn replay_metadata(&mut self, metadata: &GroupMetadata, now: Instant) {
        self.generation = metadata.generation;
        self.protocol_type =
            Some(metadata.protocol_type.clone()).filter(|t: &String| !t.is_empty());
        self.protocol = metadata.protocol.clone();
        self.leader = metadata.leader.clone();
        self.members.clear();
        self.static_members.clear();
        let protocol = metadata.protocol.clone().unwrap_or_default();
        for m in &metadata.members {
            self.next_seq += 1;
            let session_timeout = duration(m.session_timeout_ms);
            let member = Member {
                id: m.member_id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout,
                rebalance_timeout: duration(m.rebalance_timeout_ms),
                protocols: vec![(protocol.clone(), m.subscription.clone())],
                assignment: m.assignment.clone(),
                awaiting_join: None,
                awaiting_sync: None,
                session_deadline: now + session_timeout,
                is_new: false,
                joined_seq: self.next_seq,
            };
            if let Some(instance) = &m.instance_id {
                self.static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            self.members.insert(m.member_id.clone(), member);
        }
        self.state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        self.state_timestamp = Some(metadata.state_timestamp).filter(|t| *t >= 0);
    }

    pub fn replay_offset(
        &mut self,
        topic: String,
        partition: i32,
        value: Option<OffsetValue>,
        log_offset: i64,
    ) {
        match value {
            Some(value) => {
                self.offsets
                    .insert((topic, partition), Commit { value, log_offset });
            }
            None => {
                self.offsets.remove(&(topic, partition));
            }
        }
    }

    /// Every record that describes this group now (a snapshot of it).
    pub fn live_records(&self) -> Vec<Record> {
        let mut records = Vec::new();
        if self.generation > 0 || !self.members.is_empty() {
            records.push(Record::Group {
                group: self.id.clone(),
                metadata: Some(self.metadata()),
            });
        }
        let mut offsets: Vec<_> = self.offsets.iter().collect();
        offsets.sort_by(|a, b| a.0.cmp(b.0));
        for ((topic, partition), commit) in offsets {
            records.push(Record::Offset {
                key: OffsetKey {
                    group: self.id.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                },
                value: Some(commit.value.clone()),
            });
        }
        records
    }

    pub fn describe_members(&self) -> Vec<MemberDescription> {
        let stable = self.state == GroupState::Stable;
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| MemberDescription {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable {
                    m.metadata_for(&protocol)
                } else {
                    Bytes::new()
                },
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Bytes::new()
                },
            })
            .collect()
    }
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

fn duration(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
