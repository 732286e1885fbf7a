//! What a number in the partition path means, as a type: node ids, the three epochs and offsets.
//! Swapping two of them is a compile error (`on_follower_fetch(node, broker_epoch,
//! leader_epoch, offset, now)` cannot take them in another order).
//!
//! Each is a transparent newtype over the integer Kafka uses on the wire and the metadata log
//! stores (serde encodes it as that integer: the metadata's encoding does not change). Convert
//! at the edges only: where a Kafka message is read or built, and where the metadata image (whose
//! epochs are plain integers) is turned into a partition's [`crate::partition::PartitionMetadata`].
//!
//! ```
//! use rafka_broker::ids::{LeaderEpoch, NodeId, Offset};
//!
//! assert!(NodeId::NONE.is_none() && NodeId(3).is_some());
//! assert_eq!(Offset(9).next(), Offset(10));
//! assert_eq!(LeaderEpoch(4).to_string(), "4");
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! number {
    ($(#[$doc:meta])* $name:ident($int:ty)) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $int);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

number!(
    /// A node, as the metadata log allocated it (Kafka's int32 broker id; -1: none).
    NodeId(i32)
);
number!(
    /// A node's registration: grows each time it starts (KIP-903), so requests and ISR
    /// proposals from before a restart are told apart.
    BrokerEpoch(i64)
);
number!(
    /// A partition's leadership: grows with every leader change (Kafka's leader epoch; -1 in a
    /// request: not given).
    LeaderEpoch(i32)
);
number!(
    /// A partition's version: grows with every change of the partition, ISR changes included
    /// (KRaft's partition epoch).
    PartitionEpoch(i32)
);
number!(
    /// A position in a partition's log (the offset of a record, or of the next one).
    Offset(i64)
);

impl NodeId {
    /// No node (a partition without a leader).
    pub const NONE: NodeId = NodeId(-1);

    /// True for [`NodeId::NONE`] (any negative id).
    pub fn is_none(self) -> bool {
        self.0 < 0
    }

    /// True for a real node.
    pub fn is_some(self) -> bool {
        !self.is_none()
    }
}

impl From<NodeId> for kafka_protocol::messages::BrokerId {
    fn from(node: NodeId) -> Self {
        kafka_protocol::messages::BrokerId(node.0)
    }
}

impl From<kafka_protocol::messages::BrokerId> for NodeId {
    fn from(broker: kafka_protocol::messages::BrokerId) -> Self {
        NodeId(broker.0)
    }
}

impl LeaderEpoch {
    /// The epoch a request carries, `None` when it carries none (negative: Kafka's "no epoch",
    /// which skips fencing).
    pub fn given(self) -> Option<LeaderEpoch> {
        (self.0 >= 0).then_some(self)
    }
}

impl Offset {
    /// The offset after this one.
    pub fn next(self) -> Offset {
        Offset(self.0.saturating_add(1))
    }
}
