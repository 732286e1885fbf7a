//! Consumer groups. At this stage: committed offsets (the "simple consumer" commit); group
//! membership and rebalancing come with the consumer-group work.

mod codec;
mod offsets;

pub use codec::{CommitKey, CommitValue};
pub use offsets::{CommitError, CommittedOffset, GroupOffsets, OFFSETS_TOPIC, partition_for_group};
