//! The messages of the membership protocol, as Rust types (their wire form is
//! `proto/membership.proto`, converted in [`super::codec`]).

use serde::{Deserialize, Serialize};

use super::MemberId;

/// A node incarnation. It must grow across restarts of a node (start time in milliseconds, or a
/// persisted counter), so peers replace the old incarnation's state instead of ignoring a
/// heartbeat counter that starts again at zero.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Generation(pub u64);

impl std::fmt::Display for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A per-node version: the owner bumps its own counter on every change of its state.
pub type Version = u64;

/// One membership message, sent directly ([`super::Output::Send`]) or broadcast
/// ([`super::Output::Broadcast`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The sender's cluster id; empty while it has none.
    pub cluster_id: String,
    /// What the message says.
    pub body: MessageBody,
}

/// The kinds of membership messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// Opens an anti-entropy round: what the initiator knows.
    Syn(Digest),
    /// The responder's answer: what it knows and what the initiator lacks.
    Ack {
        /// What the responder knows.
        digest: Digest,
        /// What the initiator lacks.
        delta: Delta,
    },
    /// Closes the round: what the responder lacks.
    Ack2(Delta),
    /// A node's own recent changes and heartbeat.
    Update(Delta),
    /// The answer to a `Syn` from a node of another cluster.
    BadCluster,
}

/// Which version of each node's state a node has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Digest {
    /// One entry per known node.
    pub nodes: Vec<NodeDigest>,
}

/// What a node knows of one node's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeDigest {
    /// The node.
    pub id: MemberId,
    /// Its incarnation.
    pub generation: Generation,
    /// Its latest heartbeat known.
    pub heartbeat: u64,
    /// Every version up to this one is known.
    pub max_version: Version,
}

/// Node states, or parts of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// One entry per node.
    pub nodes: Vec<NodeDelta>,
}

/// Part of one node's state: its heartbeat and `left` flag, and every entry whose version lies in
/// `(from_version, to_version]`, in increasing version order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeDelta {
    /// The node.
    pub id: MemberId,
    /// Its incarnation.
    pub generation: Generation,
    /// Its heartbeat.
    pub heartbeat: u64,
    /// How long before sending the sender learnt that heartbeat (0 from the node itself): a
    /// heartbeat relayed by anti-entropy is dated from when the node sent it, give or take the
    /// hops' latency, so old news neither delays failure detection nor revives a dead node.
    pub heartbeat_age_ms: u64,
    /// It announced that it left.
    pub left: bool,
    /// Entries above this version follow; 0 means the whole state.
    pub from_version: Version,
    /// The receiver knows every version up to this one once it has applied the entries.
    pub to_version: Version,
    /// The entries, by increasing version.
    pub entries: Vec<KeyEntry>,
}

/// One versioned key of a node's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEntry {
    /// The key.
    pub key: String,
    /// The value, `None` once the key was removed.
    pub value: Option<String>,
    /// The owner's version of this change.
    pub version: Version,
}
