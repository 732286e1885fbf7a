//! API versions: what this client implements, and the negotiation with a broker's ApiVersions.

use std::collections::HashMap;

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

/// The version ranges this client implements, per API key.
///
/// Produce v13 and Fetch v13+ address topics by id (KIP-516); the client fills ids from the
/// metadata cache for those versions.
pub const CLIENT_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 1, 13),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::UnregisterBroker, 0, 0),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    // Transactions v1: AddPartitionsToTxn v4+ and EndTxn v5 are for brokers and transactions
    // v2; TxnOffsetCommit v5 is transactions v2 (it adds the offsets itself).
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 4),
    (ApiKey::TxnOffsetCommit, 0, 4),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 2),
];

/// The highest ApiVersions version the client sends first.
pub const API_VERSIONS_MAX: i16 = 4;

/// Versions agreed with one broker: for each API, the highest version both sides support.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NegotiatedVersions {
    chosen: HashMap<i16, i16>,
}

impl NegotiatedVersions {
    /// Intersects the broker's advertised ranges with [`CLIENT_VERSIONS`].
    pub fn from_response(response: &ApiVersionsResponse) -> Self {
        let broker: HashMap<i16, (i16, i16)> = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        let chosen = CLIENT_VERSIONS
            .iter()
            .filter_map(|&(key, min, max)| {
                let (bmin, bmax) = *broker.get(&(key as i16))?;
                let hi = max.min(bmax);
                (hi >= min.max(bmin)).then_some((key as i16, hi))
            })
            .collect();
        NegotiatedVersions { chosen }
    }

    /// Every API at the client's maximum (for tests and fake transports).
    pub fn client_max() -> Self {
        let chosen = CLIENT_VERSIONS
            .iter()
            .map(|&(k, _, max)| (k as i16, max))
            .collect();
        NegotiatedVersions { chosen }
    }

    /// Caps one API at `max` (tests use it to exercise older layouts).
    pub fn with_cap(mut self, key: ApiKey, max: i16) -> Self {
        if let Some(v) = self.chosen.get_mut(&(key as i16)) {
            *v = (*v).min(max);
        }
        self
    }

    /// The version to use for `key`, or `None` if no common version exists.
    pub fn get(&self, key: i16) -> Option<i16> {
        self.chosen.get(&key).copied()
    }
}

/// A short, stable name for an API key (for errors and logs).
pub fn api_name(key: i16) -> &'static str {
    match ApiKey::try_from(key) {
        Ok(ApiKey::Produce) => "Produce",
        Ok(ApiKey::Fetch) => "Fetch",
        Ok(ApiKey::ListOffsets) => "ListOffsets",
        Ok(ApiKey::Metadata) => "Metadata",
        Ok(ApiKey::OffsetCommit) => "OffsetCommit",
        Ok(ApiKey::OffsetFetch) => "OffsetFetch",
        Ok(ApiKey::FindCoordinator) => "FindCoordinator",
        Ok(ApiKey::ApiVersions) => "ApiVersions",
        Ok(ApiKey::CreateTopics) => "CreateTopics",
        Ok(ApiKey::DeleteTopics) => "DeleteTopics",
        Ok(ApiKey::InitProducerId) => "InitProducerId",
        Ok(ApiKey::DescribeConfigs) => "DescribeConfigs",
        Ok(ApiKey::UnregisterBroker) => "UnregisterBroker",
        Ok(ApiKey::JoinGroup) => "JoinGroup",
        Ok(ApiKey::SyncGroup) => "SyncGroup",
        Ok(ApiKey::Heartbeat) => "Heartbeat",
        Ok(ApiKey::LeaveGroup) => "LeaveGroup",
        Ok(ApiKey::DescribeGroups) => "DescribeGroups",
        Ok(ApiKey::ListGroups) => "ListGroups",
        Ok(ApiKey::DeleteGroups) => "DeleteGroups",
        Ok(ApiKey::OffsetDelete) => "OffsetDelete",
        Ok(ApiKey::IncrementalAlterConfigs) => "IncrementalAlterConfigs",
        Ok(ApiKey::AddPartitionsToTxn) => "AddPartitionsToTxn",
        Ok(ApiKey::AddOffsetsToTxn) => "AddOffsetsToTxn",
        Ok(ApiKey::EndTxn) => "EndTxn",
        Ok(ApiKey::TxnOffsetCommit) => "TxnOffsetCommit",
        Ok(ApiKey::DescribeTransactions) => "DescribeTransactions",
        Ok(ApiKey::ListTransactions) => "ListTransactions",
        _ => "request",
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::api_versions_response::ApiVersion;

    use super::*;

    fn advertised(key: ApiKey, min: i16, max: i16) -> ApiVersion {
        ApiVersion::default()
            .with_api_key(key as i16)
            .with_min_version(min)
            .with_max_version(max)
    }

    #[test]
    fn picks_highest_common_version() {
        let resp = ApiVersionsResponse::default().with_api_keys(vec![
            advertised(ApiKey::Produce, 0, 9),
            advertised(ApiKey::Fetch, 0, 99),
            advertised(ApiKey::Metadata, 0, 0),
        ]);
        let v = NegotiatedVersions::from_response(&resp);
        assert_eq!(v.get(ApiKey::Produce as i16), Some(9));
        assert_eq!(v.get(ApiKey::Fetch as i16), Some(18));
        assert_eq!(
            v.get(ApiKey::Metadata as i16),
            None,
            "no overlap with 1..=13"
        );
        assert_eq!(v.get(ApiKey::OffsetCommit as i16), None, "not advertised");
    }

    #[test]
    fn client_ranges_are_within_the_crate() {
        use kafka_protocol::messages::*;
        use kafka_protocol::protocol::Message;
        fn within<M: Message>(min: i16, max: i16) -> bool {
            M::VERSIONS.min <= min && max <= M::VERSIONS.max
        }
        for &(key, min, max) in CLIENT_VERSIONS {
            let ok = match key {
                ApiKey::Produce => within::<ProduceRequest>(min, max),
                ApiKey::Fetch => within::<FetchRequest>(min, max),
                ApiKey::ListOffsets => within::<ListOffsetsRequest>(min, max),
                ApiKey::Metadata => within::<MetadataRequest>(min, max),
                ApiKey::OffsetCommit => within::<OffsetCommitRequest>(min, max),
                ApiKey::OffsetFetch => within::<OffsetFetchRequest>(min, max),
                ApiKey::FindCoordinator => within::<FindCoordinatorRequest>(min, max),
                ApiKey::ApiVersions => within::<ApiVersionsRequest>(min, max),
                ApiKey::CreateTopics => within::<CreateTopicsRequest>(min, max),
                ApiKey::DeleteTopics => within::<DeleteTopicsRequest>(min, max),
                ApiKey::InitProducerId => within::<InitProducerIdRequest>(min, max),
                ApiKey::DescribeConfigs => within::<DescribeConfigsRequest>(min, max),
                ApiKey::UnregisterBroker => within::<UnregisterBrokerRequest>(min, max),
                ApiKey::JoinGroup => within::<JoinGroupRequest>(min, max),
                ApiKey::SyncGroup => within::<SyncGroupRequest>(min, max),
                ApiKey::Heartbeat => within::<HeartbeatRequest>(min, max),
                ApiKey::LeaveGroup => within::<LeaveGroupRequest>(min, max),
                ApiKey::DescribeGroups => within::<DescribeGroupsRequest>(min, max),
                ApiKey::ListGroups => within::<ListGroupsRequest>(min, max),
                ApiKey::DeleteGroups => within::<DeleteGroupsRequest>(min, max),
                ApiKey::OffsetDelete => within::<OffsetDeleteRequest>(min, max),
                ApiKey::IncrementalAlterConfigs => {
                    within::<IncrementalAlterConfigsRequest>(min, max)
                }
                ApiKey::AddPartitionsToTxn => within::<AddPartitionsToTxnRequest>(min, max),
                ApiKey::AddOffsetsToTxn => within::<AddOffsetsToTxnRequest>(min, max),
                ApiKey::EndTxn => within::<EndTxnRequest>(min, max),
                ApiKey::TxnOffsetCommit => within::<TxnOffsetCommitRequest>(min, max),
                ApiKey::DescribeTransactions => within::<DescribeTransactionsRequest>(min, max),
                ApiKey::ListTransactions => within::<ListTransactionsRequest>(min, max),
                _ => false,
            };
            assert!(ok, "{key:?} {min}..={max}");
            assert_ne!(api_name(key as i16), "request");
        }
    }
}
