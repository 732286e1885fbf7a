//! Consumer groups: Kafka's classic group protocol and committed offsets, coordinated by the
//! leader of each group's `__consumer_offsets` partition and kept in that partition's records.
//!
//! | file | what | kind |
//! |---|---|---|
//! | `core/` | [`core::GroupCoordinator`]: membership, rebalances, static members, offsets with fencing, retention | sans-IO core |
//! | [`service.rs`](Groups) | the task that owns the core and the offsets partitions this node leads; the handle handlers call | shell |
//! | `log.rs` | acks=all appends of group records (pipelined) and the replay of a partition | shell I/O |
//! | [`records.rs`](records) | the records of `__consumer_offsets`: Kafka's layout and the legacy one | codec |
//! | `metrics.rs` | groups by state, members, rebalances, commit latency (the consumer lag is rendered per scrape: `Groups::lag`) | metrics |
//!
//! How it fits together, where state lives and what fails over how: `docs/groups.md`.

pub mod core;
pub(crate) mod log;
mod metrics;
pub mod records;
mod service;

pub use service::{Fetched, Groups, GroupsEnv};

/// Name of the internal topic.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Name of the transactions' internal topic (reserved: clients may not create it).
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Java's `String.hashCode` (over UTF-16 code units), as Kafka uses to place groups.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The offsets partition of `group` among `partitions` (Kafka's `abs(hash) % partitions`).
pub fn partition_for_group(group: &str, partitions: i32) -> i32 {
    // Kafka's Utils.abs maps i32::MIN to 0 rather than overflowing.
    let hash = java_string_hash(group);
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_land_where_kafka_puts_them() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("ab"), 97 * 31 + 98);
        // "hello".hashCode() in Java.
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(partition_for_group("hello", 50), 99_162_322 % 50);
        for p in 1..64 {
            let partition = partition_for_group("any-group", p);
            assert!((0..p).contains(&partition));
        }
    }
}
