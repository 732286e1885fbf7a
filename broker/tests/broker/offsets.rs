//! FindCoordinator v0-5, OffsetCommit v2-9 and OffsetFetch v1-9: simple-consumer commits (generation
//! -1, empty member), groups[] at v8+, topics=null, missing commits, metadata limits, and commits
//! surviving a restart.

use crate::support::TestNode;
use crate::support::raw::RawClient;
use crate::support::wire::{str, topic_name};
use crate::support::{wait_until, wire};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, OffsetCommitRequest, OffsetFetchRequest,
};
use std::time::Duration;

fn group(name: &str) -> GroupId {
    GroupId(str(name))
}

/// (offset, leader epoch, metadata) committed per partition.
type Commit = (i32, i64, i32, &'static str);

fn commit_request(group_id: &str, topic: &str, commits: &[Commit]) -> OffsetCommitRequest {
    let partitions = commits
        .iter()
        .map(|(p, offset, epoch, metadata)| {
            OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*offset)
                .with_committed_leader_epoch(*epoch)
                .with_committed_metadata(Some(str(metadata)))
        })
        .collect();
    OffsetCommitRequest::default()
        .with_group_id(group(group_id))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(str(""))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(partitions),
        ])
}

async fn commit(
    client: &mut RawClient,
    version: i16,
    request: &OffsetCommitRequest,
) -> Vec<(i32, i16)> {
    // As a client does: find the coordinator, and find it again while it is not ready yet (the
    // offsets topic is created by the first FindCoordinator and served a moment later).
    let not_ready = [
        ResponseError::NotCoordinator,
        ResponseError::CoordinatorLoadInProgress,
        ResponseError::CoordinatorNotAvailable,
    ]
    .map(|e| e.code());
    let ready = Duration::from_secs(10);
    wait_until(ready, "a coordinator that takes the commit", async || {
        wire::find_coordinator(client, request.group_id.0.as_str()).await;
        let response = client.send(request, version).await;
        assert_eq!(response.topics.len(), request.topics.len());
        let errors: Vec<(i32, i16)> = response.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.error_code))
            .collect();
        if errors.iter().any(|(_, e)| not_ready.contains(e)) {
            Err(format!("{errors:?}"))
        } else {
            Ok(errors)
        }
    })
    .await
}

/// OffsetFetch (v9) right after a restart: the coordinator answers COORDINATOR_LOAD_IN_PROGRESS
/// until it has replayed its offsets partition, and a Kafka client retries that; so does this.
async fn fetch_once_loaded(client: &mut RawClient, group_id: &str) -> Fetched {
    let loading = ResponseError::CoordinatorLoadInProgress.code();
    wait_until(
        Duration::from_secs(30),
        "the coordinator loaded",
        async || match fetch(client, 9, group_id, None).await {
            (0, rows) => Ok(rows),
            (error, _) if error == loading => Err("still loading".to_string()),
            (error, rows) => panic!("OffsetFetch answered {error}: {rows:?}"),
        },
    )
    .await
}

/// One group's answer, flattened: (topic, partition, offset, leader epoch, metadata, error).
type Fetched = Vec<(String, i32, i64, i32, String, i16)>;

/// OffsetFetch of one group at any version; `topics = None` asks for every commit.
async fn fetch(
    client: &mut RawClient,
    version: i16,
    group_id: &str,
    topics: Option<&[(&str, &[i32])]>,
) -> (i16, Fetched) {
    if version >= 8 {
        let topics = topics.map(|ts| {
            ts.iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopics::default()
                        .with_name(topic_name(t))
                        .with_partition_indexes(ps.to_vec())
                })
                .collect()
        });
        let request = OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(group(group_id))
                .with_topics(topics),
        ]);
        let response = client.send(&request, version).await;
        assert_eq!(response.groups.len(), 1);
        let answer = &response.groups[0];
        assert_eq!(answer.group_id.0.as_str(), group_id);
        let rows = answer
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    let metadata = p
                        .metadata
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default();
                    (
                        t.name.0.to_string(),
                        p.partition_index,
                        p.committed_offset,
                        p.committed_leader_epoch,
                        metadata,
                        p.error_code,
                    )
                })
            })
            .collect();
        return (answer.error_code, rows);
    }
    let topics = topics.map(|ts| {
        ts.iter()
            .map(|(t, ps)| {
                OffsetFetchRequestTopic::default()
                    .with_name(topic_name(t))
                    .with_partition_indexes(ps.to_vec())
            })
            .collect()
    });
    let request = OffsetFetchRequest::default()
        .with_group_id(group(group_id))
        .with_topics(topics);
    let response = client.send(&request, version).await;
    let rows = response
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                let metadata = p
                    .metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default();
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    metadata,
                    p.error_code,
                )
            })
        })
        .collect();
    (response.error_code, rows)
}

fn row(
    topic: &str,
    partition: i32,
    offset: i64,
    epoch: i32,
    metadata: &str,
) -> (String, i32, i64, i32, String, i16) {
    (
        topic.to_string(),
        partition,
        offset,
        epoch,
        metadata.to_string(),
        0,
    )
}

#[tokio::test]
async fn find_coordinator_at_every_version() {
    let node = TestNode::start().await;
    let node_id = node.node.as_ref().unwrap().broker().local().node_id.0;
    let addr = node.kafka_addr();
    let mut client = node.connect().await;
    for version in 0..=3 {
        let response = client
            .send(
                &FindCoordinatorRequest::default().with_key(str("g1")),
                version,
            )
            .await;
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(response.node_id.0, node_id, "v{version}");
        assert_eq!(response.host.as_str(), addr.ip().to_string());
        assert_eq!(response.port, i32::from(addr.port()));
        assert!(response.coordinators.is_empty());
        if version >= 1 {
            // Key type 1: a transactional id's coordinator (its state topic is created by the
            // first such request).
            let request = FindCoordinatorRequest::default()
                .with_key(str("txn"))
                .with_key_type(1);
            let response = client.send(&request, version).await;
            assert_eq!(
                response.error_code, 0,
                "v{version}: transaction coordinator"
            );
            assert_eq!(response.node_id.0, node_id, "v{version}");
            assert_eq!(response.port, i32::from(addr.port()));
        }
    }
    for version in 4..=5 {
        let request = FindCoordinatorRequest::default().with_coordinator_keys(vec![
            str("g1"),
            str("g2"),
            str(""),
        ]);
        let response = client.send(&request, version).await;
        assert_eq!(response.coordinators.len(), 3, "v{version}");
        for (coordinator, key) in response.coordinators.iter().zip(["g1", "g2", ""]) {
            assert_eq!(coordinator.key.as_str(), key);
            assert_eq!(coordinator.error_code, 0, "v{version} key {key:?}");
            assert_eq!(coordinator.node_id.0, node_id);
            assert_eq!(coordinator.port, i32::from(addr.port()));
        }
        let request = FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![str("txn")]);
        let response = client.send(&request, version).await;
        assert_eq!(response.coordinators[0].error_code, 0, "v{version}");
        assert_eq!(response.coordinators[0].key.as_str(), "txn");
        assert_eq!(response.coordinators[0].node_id.0, node_id);
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn simple_consumer_commits_at_every_version_read_back_at_every_version() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    wire::create_topic(&mut client, "oc-topic", 3).await;
    for commit_version in 2..=9 {
        let group_id = format!("oc-g{commit_version}");
        // The leader epoch is on the wire from OffsetCommit v6 and OffsetFetch v5.
        let epoch = if commit_version >= 6 { 0 } else { -1 };
        let request = commit_request(
            &group_id,
            "oc-topic",
            &[(0, 5, epoch, "m0"), (2, 7, epoch, "")],
        );
        assert_eq!(
            commit(&mut client, commit_version, &request).await,
            [(0, 0), (2, 0)],
            "v{commit_version}"
        );

        for fetch_version in 1..=9 {
            let wanted: &[(&str, &[i32])] = &[("oc-topic", &[0, 1, 2])];
            let (error, rows) = fetch(&mut client, fetch_version, &group_id, Some(wanted)).await;
            assert_eq!(error, 0);
            let shown_epoch = |e: i32| if fetch_version >= 5 { e } else { -1 };
            assert_eq!(
                rows,
                [
                    row("oc-topic", 0, 5, shown_epoch(epoch), "m0"),
                    // No commit: offset -1, no error.
                    row("oc-topic", 1, -1, -1, ""),
                    row("oc-topic", 2, 7, shown_epoch(epoch), ""),
                ],
                "committed at v{commit_version}, fetched at v{fetch_version}"
            );
        }
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn null_topics_return_every_commit_of_the_group() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    wire::create_topic(&mut client, "oc-a", 2).await;
    wire::create_topic(&mut client, "oc-b", 1).await;
    commit(
        &mut client,
        8,
        &commit_request("oc-all", "oc-b", &[(0, 3, 0, "b")]),
    )
    .await;
    commit(
        &mut client,
        8,
        &commit_request("oc-all", "oc-a", &[(1, 9, 0, "a1"), (0, 4, 0, "a0")]),
    )
    .await;
    commit(
        &mut client,
        8,
        &commit_request("oc-other", "oc-a", &[(0, 100, 0, "x")]),
    )
    .await;
    // topics = null is on the wire from OffsetFetch v2.
    for version in 2..=9 {
        let (error, rows) = fetch(&mut client, version, "oc-all", None).await;
        assert_eq!(error, 0);
        let epoch = if version >= 5 { 0 } else { -1 };
        let mut rows = rows;
        rows.sort();
        assert_eq!(
            rows,
            [
                row("oc-a", 0, 4, epoch, "a0"),
                row("oc-a", 1, 9, epoch, "a1"),
                row("oc-b", 0, 3, epoch, "b")
            ],
            "v{version}"
        );
        let (_, none) = fetch(&mut client, version, "oc-never-committed", None).await;
        assert!(none.is_empty(), "v{version}");
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn offset_fetch_v8_answers_several_groups() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    wire::create_topic(&mut client, "oc-groups", 1).await;
    commit(
        &mut client,
        9,
        &commit_request("oc-g-a", "oc-groups", &[(0, 11, 0, "")]),
    )
    .await;
    commit(
        &mut client,
        9,
        &commit_request("oc-g-b", "oc-groups", &[(0, 22, 0, "")]),
    )
    .await;
    for version in 8..=9 {
        let request = OffsetFetchRequest::default().with_groups(
            ["oc-g-a", "oc-g-b", "oc-g-none"]
                .iter()
                .map(|g| {
                    OffsetFetchRequestGroup::default()
                        .with_group_id(group(g))
                        .with_topics(Some(vec![
                            OffsetFetchRequestTopics::default()
                                .with_name(topic_name("oc-groups"))
                                .with_partition_indexes(vec![0]),
                        ]))
                })
                .collect(),
        );
        let response = client.send(&request, version).await;
        let offsets: Vec<(String, i64)> = response
            .groups
            .iter()
            .map(|g| {
                (
                    g.group_id.0.to_string(),
                    g.topics[0].partitions[0].committed_offset,
                )
            })
            .collect();
        assert_eq!(
            offsets,
            [
                ("oc-g-a".into(), 11),
                ("oc-g-b".into(), 22),
                ("oc-g-none".into(), -1)
            ],
            "v{version}"
        );
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn bad_commits_get_typed_errors() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    wire::create_topic(&mut client, "oc-bad", 1).await;
    let too_large: &'static str = Box::leak("m".repeat(4097).into_boxed_str());
    let at_limit: &'static str = Box::leak("m".repeat(4096).into_boxed_str());
    for version in 2..=9 {
        let group_id = format!("oc-bad-{version}");
        let request = commit_request(&group_id, "oc-bad", &[(0, 1, -1, too_large)]);
        assert_eq!(
            commit(&mut client, version, &request).await,
            [(0, ResponseError::OffsetMetadataTooLarge.code())],
            "v{version}"
        );
        let request = commit_request(&group_id, "oc-bad", &[(0, 2, -1, at_limit)]);
        assert_eq!(
            commit(&mut client, version, &request).await,
            [(0, 0)],
            "v{version}: 4096 bytes is allowed"
        );

        let request = commit_request(&group_id, "oc-bad", &[(5, 1, -1, "")]);
        assert_eq!(
            commit(&mut client, version, &request).await,
            [(5, ResponseError::UnknownTopicOrPartition.code())]
        );
        let request = commit_request(&group_id, "oc-no-such-topic", &[(0, 1, -1, "")]);
        assert_eq!(
            commit(&mut client, version, &request).await,
            [(0, ResponseError::UnknownTopicOrPartition.code())]
        );
        let request = commit_request("", "oc-bad", &[(0, 1, -1, "")]);
        assert_eq!(
            commit(&mut client, version, &request).await,
            [(0, ResponseError::InvalidGroupId.code())]
        );

        let wanted: &[(&str, &[i32])] = &[("oc-bad", &[0])];
        let (_, rows) = fetch(&mut client, 9, &group_id, Some(wanted)).await;
        assert_eq!(rows[0].2, 2, "v{version}: only the valid commit counted");
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn commits_survive_a_restart() {
    let mut node = TestNode::start().await;
    let mut client = node.connect().await;
    wire::create_topic(&mut client, "oc-restart", 2).await;
    let first = commit(
        &mut client,
        9,
        &commit_request("oc-r", "oc-restart", &[(0, 42, 0, "kept"), (1, 7, 0, "")]),
    )
    .await;
    assert_eq!(first, [(0, 0), (1, 0)]);
    let second = commit(
        &mut client,
        9,
        &commit_request("oc-r", "oc-restart", &[(1, 8, 0, "newer")]),
    )
    .await;
    assert_eq!(second, [(1, 0)]);
    drop(client);
    node.restart().await;
    let mut client = node.connect().await;
    let mut rows = fetch_once_loaded(&mut client, "oc-r").await;
    rows.sort();
    assert_eq!(
        rows,
        [
            row("oc-restart", 0, 42, 0, "kept"),
            row("oc-restart", 1, 8, 0, "newer")
        ]
    );
    wire::stop(node).await;
}

#[tokio::test]
async fn an_undecodable_batch_in_the_offsets_topic_does_not_stop_the_node() {
    let mut node = TestNode::start().await;
    let mut client = node.connect().await;
    wire::create_topic(&mut client, "oc-poison", 1).await;
    let request = commit_request("oc-p", "oc-poison", &[(0, 5, 0, "")]);
    assert_eq!(commit(&mut client, 9, &request).await, [(0, 0)]);

    // Written behind the API's back (clients are refused; see bad_input.rs): a gzip batch whose
    // payload is noise under a valid CRC, in every offsets partition, between two commits.
    let broker = node.node.as_ref().unwrap().broker().clone();
    let image = broker.image();
    let offsets_topic = image.topic("__consumer_offsets").unwrap();
    let good = wire::batch_with(
        &[b"k", b"v"],
        None,
        0,
        kafka_protocol::records::Compression::Gzip,
    );
    let mut bad = good.to_vec();
    bad.iter_mut().skip(61).for_each(|b| *b = 0xa5);
    let crc = rafka_store::batch::compute_crc(&bad).unwrap();
    bad[17..21].copy_from_slice(&crc.to_be_bytes());
    for p in &offsets_topic.partitions {
        let tp = rafka_store::TopicPartition {
            topic_id: offsets_topic.id,
            partition: p.index,
        };
        let log = broker.store().partition(tp).unwrap();
        let options = rafka_store::AppendOptions {
            leader_epoch: p.leader_epoch,
            now_ms: 0,
        };
        let appended = log
            .append(bytes::Bytes::from(bad.clone()), options)
            .await
            .unwrap();
        log.advance_high_watermark(appended.last_offset + 1)
            .unwrap();
    }
    drop((broker, image));
    let request = commit_request("oc-p", "oc-poison", &[(0, 6, 0, "after")]);
    assert_eq!(commit(&mut client, 9, &request).await, [(0, 0)]);
    drop(client);

    node.restart().await;
    let mut client = node.connect().await;
    let rows = fetch_once_loaded(&mut client, "oc-p").await;
    assert_eq!(rows, [row("oc-poison", 0, 6, 0, "after")]);
    wire::stop(node).await;
}
