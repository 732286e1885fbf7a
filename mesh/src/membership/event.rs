//! What the core hands its caller: outputs, membership events, member views, and refusals.

use std::collections::BTreeMap;
use std::time::Duration;

use super::message::{Generation, Message};
use super::{MemberId, MemberStatus};

/// What the core asks its caller to do, or tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send `message` to one peer (anti-entropy; a departure notice), dialling it if needed.
    Send {
        /// The peer.
        to: MemberId,
        /// The message.
        message: Message,
    },
    /// Publish `message` to every peer (gossipsub); best effort.
    Broadcast {
        /// The message.
        message: Message,
    },
    /// Something changed in the membership view.
    Event(MemberEvent),
}

/// A change of the membership view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberEvent {
    /// A node incarnation appeared, alive. `previous` is the generation it replaces (a restart):
    /// forget everything about that one; its keys are reported anew.
    Joined {
        /// The node.
        id: MemberId,
        /// Its incarnation.
        generation: Generation,
        /// The incarnation it replaces.
        previous: Option<Generation>,
    },
    /// The observed status of a node changed.
    StatusChanged {
        /// The node.
        id: MemberId,
        /// Its incarnation.
        generation: Generation,
        /// Before.
        old: MemberStatus,
        /// After.
        new: MemberStatus,
    },
    /// A key of a node's state changed; `None` when removed.
    KeyChanged {
        /// The node.
        id: MemberId,
        /// The key.
        key: String,
        /// The new value.
        value: Option<String>,
    },
    /// A node dead or left for `gc_after` was forgotten.
    Removed {
        /// The node.
        id: MemberId,
        /// Its last incarnation.
        generation: Generation,
    },
    /// A node of another cluster talked to this one (or was gossiped about); it is ignored.
    /// Reported at most once per `foreign_report_interval` per node.
    ForeignCluster {
        /// The node.
        id: MemberId,
        /// Its cluster id.
        cluster_id: String,
    },
}

/// One member as this node sees it (itself included).
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// The node.
    pub id: MemberId,
    /// Its incarnation.
    pub generation: Generation,
    /// Its observed status.
    pub status: MemberStatus,
    /// Since when (this node's clock).
    pub status_since: Duration,
    /// Its latest heartbeat known.
    pub heartbeat: u64,
    /// Its state.
    pub keys: BTreeMap<String, String>,
    /// When its heartbeat last increased (this node: the last `now` given).
    pub last_heard: Duration,
    /// The failure detector's phi (0 for this node).
    pub phi: f64,
}

/// Why a change of the own state was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The key is the protocol's own.
    #[error("key {key:?} is reserved by the membership protocol")]
    ReservedKey {
        /// The key.
        key: String,
    },
    /// Empty or over `max_key_bytes`.
    #[error("key of {len} bytes is empty or over the limit of {max}")]
    BadKeyLength {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Over `max_value_bytes`.
    #[error("value of {len} bytes for key {key:?} exceeds the limit of {max}")]
    ValueTooLong {
        /// The key.
        key: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// After [`Membership::leave`] the state no longer changes.
    #[error("this node has left the cluster")]
    Left,
    /// A node belongs to one cluster for life.
    #[error("the cluster id is already {current:?}")]
    ClusterIdSet {
        /// The cluster id in force.
        current: String,
    },
}
