//! The sans-IO judge of push gossip: is a notice or summary from the partition's current leader
//! for the leader epoch it names? Pure functions of the message and what the metadata says.

use rafka_format::push::{PartitionKey, PushMessage};
use rafka_mesh::Verdict;

use crate::ids::NodeId;

/// What the metadata says of a partition: its leader and leader epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leadership {
    /// The leader (none while the partition has no leader).
    pub leader: NodeId,
    /// Its leader epoch.
    pub leader_epoch: i32,
}

/// What the judge needs to know: the registered node behind an author, a partition's leadership.
pub trait LeaderBook {
    /// The node registered with this peer id (`None`: not a node of this cluster).
    fn node_of(&self, author: &str) -> Option<NodeId>;
    /// The partition's leadership, `None` if the metadata does not know the partition.
    fn leadership(&self, partition: &PartitionKey) -> Option<Leadership>;
}

/// One claim "`author` leads `partition` in `epoch`" judged against the metadata:
/// - the current epoch by its leader: accept;
/// - the current epoch by anyone else: reject (forged, so never forwarded);
/// - an older epoch: ignore (a former leader's message still in flight; harmless, not passed on);
/// - a newer epoch or an unknown partition: ignore (this node's metadata is behind).
pub fn judge_claim(author: Option<NodeId>, leadership: Option<Leadership>, epoch: i32) -> Verdict {
    let Some(author) = author else {
        return Verdict::Reject;
    };
    let Some(current) = leadership else {
        return Verdict::Ignore;
    };
    match epoch.cmp(&current.leader_epoch) {
        std::cmp::Ordering::Equal if current.leader == author && author.is_some() => {
            Verdict::Accept
        }
        std::cmp::Ordering::Equal => Verdict::Reject,
        std::cmp::Ordering::Less | std::cmp::Ordering::Greater => Verdict::Ignore,
    }
}

/// The verdict on a whole message: malformed bytes and messages from strangers are rejected; a
/// notice is its claim's verdict; a summary is rejected if any entry is forged, accepted if any
/// entry is the current leader's, ignored otherwise.
pub fn judge(book: &impl LeaderBook, author: &str, message: &PushMessage) -> Verdict {
    let node = book.node_of(author);
    if node.is_none() {
        return Verdict::Reject;
    }
    match message {
        PushMessage::Notice(notice) => judge_claim(
            node,
            book.leadership(&notice.partition),
            notice.leader_epoch,
        ),
        PushMessage::Summary(summary) => {
            let mut verdict = Verdict::Ignore;
            for entry in &summary.entries {
                match judge_claim(node, book.leadership(&entry.partition), entry.leader_epoch) {
                    Verdict::Reject => return Verdict::Reject,
                    Verdict::Accept => verdict = Verdict::Accept,
                    Verdict::Ignore => {}
                }
            }
            verdict
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bytes::Bytes;
    use rafka_format::push::{Notice, Summary, SummaryEntry};

    use super::*;

    struct Book {
        nodes: HashMap<&'static str, NodeId>,
        partitions: HashMap<PartitionKey, Leadership>,
    }

    impl LeaderBook for Book {
        fn node_of(&self, author: &str) -> Option<NodeId> {
            self.nodes.get(author).copied()
        }
        fn leadership(&self, partition: &PartitionKey) -> Option<Leadership> {
            self.partitions.get(partition).copied()
        }
    }

    const P0: PartitionKey = PartitionKey {
        topic_id: [7; 16],
        partition: 0,
    };
    const P1: PartitionKey = PartitionKey {
        topic_id: [7; 16],
        partition: 1,
    };

    /// Node 1 ("a") leads P0 in epoch 5, node 2 ("b") leads P1 in epoch 3.
    fn book() -> Book {
        Book {
            nodes: HashMap::from([("a", NodeId(1)), ("b", NodeId(2))]),
            partitions: HashMap::from([
                (
                    P0,
                    Leadership {
                        leader: NodeId(1),
                        leader_epoch: 5,
                    },
                ),
                (
                    P1,
                    Leadership {
                        leader: NodeId(2),
                        leader_epoch: 3,
                    },
                ),
            ]),
        }
    }

    fn notice(partition: PartitionKey, leader_epoch: i32) -> PushMessage {
        PushMessage::Notice(Notice {
            partition,
            leader_epoch,
            base_offset: 10,
            end_offset: 12,
            batch_bytes: 3,
            batches: Some(Bytes::from_static(b"abc")),
        })
    }

    fn summary(entries: &[(PartitionKey, i32)]) -> PushMessage {
        PushMessage::Summary(Summary {
            entries: entries
                .iter()
                .map(|&(partition, leader_epoch)| SummaryEntry {
                    partition,
                    leader_epoch,
                    high_watermark: 100,
                })
                .collect(),
        })
    }

    #[test]
    fn the_current_leaders_notice_is_accepted() {
        assert_eq!(judge(&book(), "a", &notice(P0, 5)), Verdict::Accept);
        assert_eq!(judge(&book(), "b", &notice(P1, 3)), Verdict::Accept);
    }

    #[test]
    fn a_notice_forged_by_a_node_that_does_not_lead_the_partition_is_rejected() {
        // "b" is a node of the cluster, but does not lead P0 in its current epoch.
        assert_eq!(judge(&book(), "b", &notice(P0, 5)), Verdict::Reject);
        // Nor can a stranger (a client, another cluster's node) author one.
        assert_eq!(judge(&book(), "mallory", &notice(P0, 5)), Verdict::Reject);
    }

    #[test]
    fn other_epochs_and_unknown_partitions_are_ignored_not_forwarded() {
        // A former leader's notice still in flight, a leader this node has not heard of yet.
        assert_eq!(judge(&book(), "b", &notice(P0, 4)), Verdict::Ignore);
        assert_eq!(judge(&book(), "b", &notice(P0, 6)), Verdict::Ignore);
        let unknown = PartitionKey {
            topic_id: [9; 16],
            partition: 0,
        };
        assert_eq!(judge(&book(), "a", &notice(unknown, 1)), Verdict::Ignore);
    }

    #[test]
    fn a_partition_without_leader_accepts_nobody() {
        let mut book = book();
        book.partitions.insert(
            P0,
            Leadership {
                leader: NodeId(-1),
                leader_epoch: 5,
            },
        );
        book.nodes.insert("nobody", NodeId(-1));
        assert_eq!(judge(&book, "nobody", &notice(P0, 5)), Verdict::Reject);
    }

    #[test]
    fn a_summary_with_one_forged_entry_is_rejected() {
        assert_eq!(judge(&book(), "a", &summary(&[(P0, 5)])), Verdict::Accept);
        assert_eq!(
            judge(&book(), "a", &summary(&[(P0, 5), (P1, 3)])),
            Verdict::Reject
        );
        assert_eq!(judge(&book(), "a", &summary(&[(P0, 4)])), Verdict::Ignore);
    }
}
