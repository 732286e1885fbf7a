//! The API versions this broker serves. ApiVersions advertises exactly these ranges, and the
//! dispatcher refuses anything outside them, so what clients see is what the handlers do.

use kafka_protocol::messages::ApiKey;

/// Inclusive version range of one API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Served {
    /// The API.
    pub key: ApiKey,
    /// Lowest version served.
    pub min: i16,
    /// Highest version served.
    pub max: i16,
}

/// Every API served, with its versions. Ranges are the kafka-protocol crate's full ranges except
/// where a handler's semantics stop (noted inline).
pub const SERVED: &[Served] = &[
    Served {
        key: ApiKey::Produce,
        min: 3,
        max: 13,
    },
    Served {
        key: ApiKey::Fetch,
        min: 4,
        max: 18,
    },
    Served {
        key: ApiKey::ListOffsets,
        min: 1,
        max: 10,
    },
    Served {
        key: ApiKey::Metadata,
        min: 0,
        max: 13,
    },
    Served {
        key: ApiKey::OffsetCommit,
        min: 2,
        max: 9,
    },
    Served {
        key: ApiKey::OffsetFetch,
        min: 1,
        max: 9,
    },
    // v6 adds share-group coordinators, which Rafka does not have.
    Served {
        key: ApiKey::FindCoordinator,
        min: 0,
        max: 5,
    },
    Served {
        key: ApiKey::JoinGroup,
        min: 0,
        max: 9,
    },
    Served {
        key: ApiKey::SyncGroup,
        min: 0,
        max: 5,
    },
    Served {
        key: ApiKey::Heartbeat,
        min: 0,
        max: 4,
    },
    Served {
        key: ApiKey::LeaveGroup,
        min: 0,
        max: 5,
    },
    // v6 answers GROUP_ID_NOT_FOUND for unknown groups instead of describing them as Dead.
    Served {
        key: ApiKey::DescribeGroups,
        min: 0,
        max: 5,
    },
    Served {
        key: ApiKey::ListGroups,
        min: 0,
        max: 5,
    },
    Served {
        key: ApiKey::DeleteGroups,
        min: 0,
        max: 2,
    },
    Served {
        key: ApiKey::OffsetDelete,
        min: 0,
        max: 0,
    },
    Served {
        key: ApiKey::ApiVersions,
        min: 0,
        max: 4,
    },
    Served {
        key: ApiKey::CreateTopics,
        min: 2,
        max: 7,
    },
    Served {
        key: ApiKey::DeleteTopics,
        min: 1,
        max: 6,
    },
    Served {
        key: ApiKey::InitProducerId,
        min: 0,
        max: 5,
    },
    // Transactions v1 (KIP-98) with KIP-890 part 1: v0-3 from producers, v4+ (batched,
    // verify_only) from other nodes only.
    Served {
        key: ApiKey::AddPartitionsToTxn,
        min: 0,
        max: 5,
    },
    Served {
        key: ApiKey::AddOffsetsToTxn,
        min: 0,
        max: 4,
    },
    // At the group coordinator; v5 is transactions v2 (the offsets partition added to the
    // transaction implicitly), which Rafka does not have.
    Served {
        key: ApiKey::TxnOffsetCommit,
        min: 0,
        max: 4,
    },
    // v5 is transactions v2 (a new producer epoch per transaction), which Rafka does not have.
    Served {
        key: ApiKey::EndTxn,
        min: 0,
        max: 4,
    },
    Served {
        key: ApiKey::DescribeTransactions,
        min: 0,
        max: 0,
    },
    // v2 filters ids by a Java regular expression, which Rafka does not evaluate.
    Served {
        key: ApiKey::ListTransactions,
        min: 0,
        max: 1,
    },
    // The crate's range: v0-1 lack the current leader epoch fencing clients rely on.
    Served {
        key: ApiKey::OffsetForLeaderEpoch,
        min: 2,
        max: 4,
    },
    Served {
        key: ApiKey::DescribeConfigs,
        min: 1,
        max: 4,
    },
    // `rafka cluster remove` (kafka-cluster.sh unregister): removes a stopped node for good.
    Served {
        key: ApiKey::UnregisterBroker,
        min: 0,
        max: 0,
    },
    Served {
        key: ApiKey::AlterConfigs,
        min: 0,
        max: 2,
    },
    Served {
        key: ApiKey::IncrementalAlterConfigs,
        min: 0,
        max: 1,
    },
    // Broker to broker (the transaction coordinator to partition leaders); the crate's range.
    Served {
        key: ApiKey::WriteTxnMarkers,
        min: 1,
        max: 1,
    },
];

/// The served range of `key`, if it is served at all.
pub fn served(key: ApiKey) -> Option<Served> {
    SERVED.iter().copied().find(|s| s.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_ranges_lie_within_the_protocol_crate() {
        for s in SERVED {
            let valid = s.key.valid_versions();
            assert!(s.min <= s.max, "{:?}", s.key);
            assert!(
                valid.min <= s.min && s.max <= valid.max,
                "{:?} outside {valid}",
                s.key
            );
        }
    }

    #[test]
    fn clients_find_the_features_they_need() {
        // librdkafka enables idempotence only with InitProducerId from v0, and simple offset
        // management only with OffsetCommit/OffsetFetch from v1-v2 (research notes, section 0).
        assert_eq!(served(ApiKey::InitProducerId).unwrap().min, 0);
        assert!(served(ApiKey::OffsetFetch).unwrap().min <= 1);
        assert!(served(ApiKey::FindCoordinator).unwrap().min == 0);
    }
}
