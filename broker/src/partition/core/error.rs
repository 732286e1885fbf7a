//! What the replication core refuses, and what a follower's requests can fail with.

use kafka_protocol::ResponseError;

use crate::ids::{BrokerEpoch, LeaderEpoch, NodeId, Offset};

/// A refusal or failure decided by the leader's core, with its Kafka error code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// acks=all with fewer in-sync replicas than `min.insync.replicas`: nothing was appended.
    #[error("not enough in-sync replicas: {isr} < min.insync.replicas {min_insync}")]
    NotEnoughReplicas {
        /// Size of the committed ISR.
        isr: usize,
        /// The topic's `min.insync.replicas`.
        min_insync: usize,
    },
    /// The records were appended and reached the high watermark, but the ISR had shrunk below
    /// `min.insync.replicas` by then.
    #[error("appended, but the ISR ({isr}) is below min.insync.replicas {min_insync}")]
    NotEnoughReplicasAfterAppend {
        /// Size of the committed ISR at completion.
        isr: usize,
        /// The topic's `min.insync.replicas`.
        min_insync: usize,
    },
    /// This node no longer leads the partition (or never did).
    #[error("not the leader of this partition")]
    NotLeaderOrFollower,
    /// An acks=all wait passed its deadline.
    #[error("timed out waiting for the in-sync replicas")]
    RequestTimedOut,
    /// The request's leader epoch is older than this leader's.
    #[error("fenced leader epoch {request} (current {current})")]
    FencedLeaderEpoch {
        /// The epoch in the request.
        request: LeaderEpoch,
        /// This leader's epoch.
        current: LeaderEpoch,
    },
    /// The request's leader epoch is newer than this leader's (its metadata is behind).
    #[error("unknown leader epoch {request} (current {current})")]
    UnknownLeaderEpoch {
        /// The epoch in the request.
        request: LeaderEpoch,
        /// This leader's epoch.
        current: LeaderEpoch,
    },
    /// A follower fetch from a node that is not an assigned replica. Kafka answers
    /// NOT_LEADER_OR_FOLLOWER.
    #[error("node {replica} is not a replica of this partition")]
    UnknownReplica {
        /// The node that fetched.
        replica: NodeId,
    },
    /// A follower fetch with an older broker epoch than the replica's current one: a request
    /// from before the replica restarted. Kafka answers NOT_LEADER_OR_FOLLOWER.
    #[error("stale broker epoch {request} for node {replica} (current {current})")]
    StaleBrokerEpoch {
        /// The node that fetched.
        replica: NodeId,
        /// The broker epoch in the request.
        request: BrokerEpoch,
        /// The newest broker epoch known for it.
        current: BrokerEpoch,
    },
    /// A follower fetch beyond the leader's log end.
    #[error("fetch offset {offset} beyond the log end {log_end}")]
    OffsetOutOfRange {
        /// The requested offset.
        offset: Offset,
        /// The leader's log end offset.
        log_end: Offset,
    },
}

impl ReplicaError {
    /// The Kafka error code to answer with.
    pub fn kafka_code(&self) -> i16 {
        self.as_response_error().code()
    }

    /// True when the same request may succeed later.
    pub fn is_retriable(&self) -> bool {
        self.as_response_error().is_retriable()
    }

    fn as_response_error(&self) -> ResponseError {
        match self {
            Self::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas,
            Self::NotEnoughReplicasAfterAppend { .. } => {
                ResponseError::NotEnoughReplicasAfterAppend
            }
            Self::NotLeaderOrFollower
            | Self::UnknownReplica { .. }
            | Self::StaleBrokerEpoch { .. } => ResponseError::NotLeaderOrFollower,
            Self::RequestTimedOut => ResponseError::RequestTimedOut,
            Self::FencedLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
            Self::UnknownLeaderEpoch { .. } => ResponseError::UnknownLeaderEpoch,
            Self::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        }
    }
}

/// Why a follower's request to its leader failed, as the shell reports it to
/// [`super::FollowerState`]. Each kind is handled differently (see there).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// FENCED_LEADER_EPOCH: this node's metadata is behind; wait for a newer leader epoch.
    #[error("fenced leader epoch")]
    FencedLeaderEpoch,
    /// UNKNOWN_LEADER_EPOCH: the leader's metadata is behind; retry after a backoff.
    #[error("unknown leader epoch")]
    UnknownLeaderEpoch,
    /// NOT_LEADER_OR_FOLLOWER: the node is not (or not yet) the leader; retry after a backoff
    /// unless new metadata comes first.
    #[error("not the leader")]
    NotLeaderOrFollower,
    /// OFFSET_OUT_OF_RANGE: the fetch offset is outside the leader's log.
    #[error("offset out of range")]
    OffsetOutOfRange,
    /// A batch failed verification (CRC, framing), in a response or in the local log. Records
    /// from `offset` on are not to be trusted; everything before it was appended.
    #[error("corrupt batch at offset {offset}")]
    CorruptBatch {
        /// Base offset of the bad batch.
        offset: Offset,
    },
    /// Anything transient: timeout, disconnection, the leader's storage error, a local append
    /// that failed for a reason other than corruption.
    #[error("transient failure")]
    Transient,
}

impl FetchError {
    /// The failure a Kafka error code in a response stands for; `None` for 0 (no error).
    /// Codes without a specific handling are [`FetchError::Transient`].
    pub fn from_kafka_code(code: i16) -> Option<Self> {
        let error = match code {
            0 => return None,
            c if c == ResponseError::FencedLeaderEpoch.code() => Self::FencedLeaderEpoch,
            c if c == ResponseError::UnknownLeaderEpoch.code() => Self::UnknownLeaderEpoch,
            c if c == ResponseError::NotLeaderOrFollower.code() => Self::NotLeaderOrFollower,
            c if c == ResponseError::OffsetOutOfRange.code() => Self::OffsetOutOfRange,
            _ => Self::Transient,
        };
        Some(error)
    }
}
