//! Kafka requests from this node to a partition's leader over the mesh's data plane, as standard
//! Kafka frames: what a follower sends (OffsetForLeaderEpoch, ListOffsets and Fetch as a replica
//! with this node's broker epoch). [`MeshLink`] is the production side of the follower shell's
//! requests ([`super::Env::fetch`] and the others).

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use rafka_mesh::Mesh;
use rafka_store::TopicPartition;

use super::core::{EpochEndOffset, LeaderOffsets};
use super::env::{Fetched, LinkError};
use crate::ids::{BrokerEpoch, LeaderEpoch, NodeId, Offset};
use crate::metadata::{Metadata, MetadataImage};
use crate::peers::Peers;

/// Fetch version followers send (v15: the replica state with the broker epoch).
const FETCH_VERSION: i16 = 15;
/// How long a follower's fetch may wait at the leader for new records.
const FETCH_MAX_WAIT_MS: i32 = 500;
/// Bytes per partition per fetch (Kafka's replica.fetch.max.bytes).
const FETCH_PARTITION_MAX_BYTES: i32 = 1 << 20;
/// Requests other than the long-polling fetch.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A follower's requests to its leaders, from this node (registered as `local` with
/// `broker_epoch`); topics and peers are looked up in the current metadata image.
#[derive(Clone)]
pub struct MeshLink {
    peers: Peers,
    metadata: Metadata,
    local: NodeId,
    broker_epoch: BrokerEpoch,
}

impl MeshLink {
    /// Requests from node `local` in its registration `broker_epoch`.
    pub fn new(mesh: Mesh, metadata: Metadata, local: NodeId, broker_epoch: BrokerEpoch) -> Self {
        Self {
            peers: Peers::new(mesh, format!("rafka-replica-{local}")),
            metadata,
            local,
            broker_epoch,
        }
    }

    /// One request to `leader`; no answer in time (or an undecodable one) is `Unreachable`.
    async fn ask<Req, Resp>(
        &self,
        image: &MetadataImage,
        leader: NodeId,
        (key, version): (ApiKey, i16),
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, LinkError>
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        self.peers
            .call(image, leader, key, version, request, timeout)
            .await
            .map_err(|error| {
                tracing::debug!(%error, "{key:?} to the leader failed");
                LinkError::Unreachable(error.to_string())
            })
    }

    fn topic_name(image: &MetadataImage, tp: TopicPartition) -> Result<TopicName, LinkError> {
        image
            .topic_by_id(&tp.topic_id)
            .map(|t| TopicName(StrBytes::from_string(t.name.clone())))
            .ok_or_else(|| LinkError::Unreachable(format!("topic {} is unknown", tp.topic_id)))
    }

    /// OffsetForLeaderEpoch v4 as a replica.
    pub async fn epoch_end(
        &self,
        leader: NodeId,
        tp: TopicPartition,
        current: LeaderEpoch,
        epoch: LeaderEpoch,
    ) -> Result<Option<EpochEndOffset>, LinkError> {
        let image = self.metadata.image();
        let request = OffsetForLeaderEpochRequest::default()
            .with_replica_id(self.local.into())
            .with_topics(vec![
                OffsetForLeaderTopic::default()
                    .with_topic(Self::topic_name(&image, tp)?)
                    .with_partitions(vec![
                        OffsetForLeaderPartition::default()
                            .with_partition(tp.partition)
                            .with_current_leader_epoch(current.0)
                            .with_leader_epoch(epoch.0),
                    ]),
            ]);
        let key = (ApiKey::OffsetForLeaderEpoch, 4);
        let response: OffsetForLeaderEpochResponse = self
            .ask(&image, leader, key, &request, REQUEST_TIMEOUT)
            .await?;
        let answer = only(response.topics.first().and_then(|t| t.partitions.first()))?;
        refused(answer.error_code)?;
        Ok(
            (answer.leader_epoch >= 0 && answer.end_offset >= 0).then_some(EpochEndOffset {
                epoch: LeaderEpoch(answer.leader_epoch),
                end_offset: Offset(answer.end_offset),
            }),
        )
    }

    /// ListOffsets v7 earliest, then latest, as a replica (latest is the log end).
    pub async fn leader_offsets(
        &self,
        leader: NodeId,
        tp: TopicPartition,
        current: LeaderEpoch,
    ) -> Result<LeaderOffsets, LinkError> {
        let mut offsets = [0i64; 2];
        for (slot, timestamp) in offsets.iter_mut().zip([-2i64, -1]) {
            let image = self.metadata.image();
            let request = ListOffsetsRequest::default()
                .with_replica_id(self.local.into())
                .with_topics(vec![
                    ListOffsetsTopic::default()
                        .with_name(Self::topic_name(&image, tp)?)
                        .with_partitions(vec![
                            ListOffsetsPartition::default()
                                .with_partition_index(tp.partition)
                                .with_current_leader_epoch(current.0)
                                .with_timestamp(timestamp),
                        ]),
                ]);
            let key = (ApiKey::ListOffsets, 7);
            let response: ListOffsetsResponse = self
                .ask(&image, leader, key, &request, REQUEST_TIMEOUT)
                .await?;
            let answer = only(response.topics.first().and_then(|t| t.partitions.first()))?;
            refused(answer.error_code)?;
            *slot = answer.offset;
        }
        Ok(LeaderOffsets {
            log_start: Offset(offsets[0]),
            log_end: Offset(offsets[1]),
        })
    }

    /// One Fetch v15 as a replica: the leader's high watermark and the records.
    pub async fn fetch(
        &self,
        leader: NodeId,
        tp: TopicPartition,
        current: LeaderEpoch,
        offset: Offset,
    ) -> Result<Fetched<Bytes>, LinkError> {
        let image = self.metadata.image();
        let request = FetchRequest::default()
            .with_replica_state(
                ReplicaState::default()
                    .with_replica_id(self.local.into())
                    .with_replica_epoch(self.broker_epoch.0),
            )
            .with_max_wait_ms(FETCH_MAX_WAIT_MS)
            .with_min_bytes(1)
            .with_max_bytes(FETCH_PARTITION_MAX_BYTES * 8)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic_id(tp.topic_id)
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(tp.partition)
                            .with_current_leader_epoch(current.0)
                            .with_fetch_offset(offset.0)
                            .with_last_fetched_epoch(-1)
                            .with_log_start_offset(-1)
                            .with_partition_max_bytes(FETCH_PARTITION_MAX_BYTES),
                    ]),
            ]);
        let timeout = REQUEST_TIMEOUT + Duration::from_millis(FETCH_MAX_WAIT_MS as u64);
        let key = (ApiKey::Fetch, FETCH_VERSION);
        let response: FetchResponse = self.ask(&image, leader, key, &request, timeout).await?;
        refused(response.error_code)?;
        let partition = only(
            response
                .responses
                .first()
                .and_then(|t| t.partitions.first()),
        )?;
        refused(partition.error_code)?;
        Ok(Fetched {
            high_watermark: Offset(partition.high_watermark),
            records: partition.records.clone().unwrap_or_default(),
        })
    }
}

/// The one partition an answer about one partition carries.
fn only<T>(partition: Option<&T>) -> Result<&T, LinkError> {
    partition.ok_or_else(|| LinkError::Unreachable("an answer without the partition".into()))
}

/// An error code in the leader's answer.
fn refused(code: i16) -> Result<(), LinkError> {
    if code == 0 {
        Ok(())
    } else {
        Err(LinkError::Refused(code))
    }
}
