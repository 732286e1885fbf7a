//! Metadata v0-13: all topics, named topics, auto-creation (and refusing it), topic ids at v10+,
//! lookup by id at v12+, invalid names.

use crate::support::TestNode;
use crate::support::raw::RawClient;
use crate::support::wire;
use crate::support::wire::{Topic, topic_name};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
use uuid::Uuid;

fn named(names: &[&str]) -> Option<Vec<MetadataRequestTopic>> {
    Some(
        names
            .iter()
            .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
            .collect(),
    )
}

/// "All topics": an empty list at v0, null from v1.
fn all_topics(version: i16) -> MetadataRequest {
    let topics = if version == 0 { Some(Vec::new()) } else { None };
    MetadataRequest::default().with_topics(topics)
}

fn find<'a>(response: &'a MetadataResponse, name: &str) -> Option<&'a MetadataResponseTopic> {
    response
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name))
}

/// Checks the broker list and the fields each version carries.
fn check_common(node: &TestNode, response: &MetadataResponse, version: i16) {
    let node_id = node.node.as_ref().unwrap().broker().local().node_id.0;
    assert_eq!(response.brokers.len(), 1, "v{version}");
    let broker = &response.brokers[0];
    assert_eq!(broker.node_id.0, node_id);
    assert_eq!(broker.host.as_str(), node.kafka_addr().ip().to_string());
    assert_eq!(broker.port, i32::from(node.kafka_addr().port()));
    if version >= 1 {
        assert_eq!(response.controller_id.0, node_id, "v{version}");
    }
    if version >= 2 {
        let cluster_id = response.cluster_id.as_ref().expect("cluster id at v2+");
        assert_eq!(cluster_id.len(), 22, "v{version}");
    }
}

/// Checks one described topic against what was created.
fn check_topic(
    node: &TestNode,
    topic: &MetadataResponseTopic,
    expected: &Topic,
    partitions: usize,
    version: i16,
) {
    let node_id = node.node.as_ref().unwrap().broker().local().node_id.0;
    assert_eq!(topic.error_code, 0, "v{version} {}", expected.name);
    assert_eq!(topic.name.as_ref().unwrap().0.as_str(), expected.name);
    if version >= 10 {
        assert_eq!(topic.topic_id, expected.id, "v{version}");
    } else {
        assert!(topic.topic_id.is_nil(), "v{version} carries no topic id");
    }
    assert!(!topic.is_internal);
    assert_eq!(topic.partitions.len(), partitions, "v{version}");
    for (i, p) in topic.partitions.iter().enumerate() {
        assert_eq!(p.partition_index, i as i32);
        assert_eq!(p.error_code, 0);
        assert_eq!(p.leader_id.0, node_id);
        assert_eq!(
            p.replica_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
            vec![node_id]
        );
        assert_eq!(
            p.isr_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
            vec![node_id]
        );
        if version >= 7 {
            assert!(p.leader_epoch >= 0, "v{version}");
        }
    }
}

async fn topic_exists(client: &mut RawClient, name: &str) -> bool {
    let request = MetadataRequest::default()
        .with_topics(named(&[name]))
        .with_allow_auto_topic_creation(false);
    let response = client.send(&request, 9).await;
    response.topics[0].error_code == 0
}

#[tokio::test]
async fn all_topics_and_named_topics_at_every_version() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let created = wire::create_topic(&mut client, "md-all", 3).await;
    wire::find_coordinator(&mut client, "md-group").await;
    for version in 0..=13 {
        let response = client.send(&all_topics(version), version).await;
        check_common(&node, &response, version);
        check_topic(
            &node,
            find(&response, "md-all").expect("created topic listed"),
            &created,
            3,
            version,
        );
        let internal = find(&response, "__consumer_offsets").expect("internal topic listed");
        if version >= 1 {
            assert!(internal.is_internal, "v{version}");
        }

        let response = client
            .send(
                &MetadataRequest::default().with_topics(named(&["md-all"])),
                version,
            )
            .await;
        check_common(&node, &response, version);
        assert_eq!(response.topics.len(), 1, "v{version}");
        check_topic(&node, &response.topics[0], &created, 3, version);

        if version >= 1 {
            // v1+: an empty list asks for no topics at all.
            let response = client
                .send(
                    &MetadataRequest::default().with_topics(Some(Vec::new())),
                    version,
                )
                .await;
            assert!(response.topics.is_empty(), "v{version}");
            check_common(&node, &response, version);
        }
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn unknown_topics_are_auto_created_unless_refused() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    for version in 0..=13 {
        let name = format!("md-auto-v{version}");
        let response = client
            .send(
                &MetadataRequest::default().with_topics(named(&[&name])),
                version,
            )
            .await;
        assert_eq!(response.topics.len(), 1);
        let topic = &response.topics[0];
        assert_eq!(topic.error_code, 0, "v{version}: auto-creation");
        assert_eq!(
            topic.partitions.len(),
            1,
            "v{version}: node default partitions"
        );
        if version >= 10 {
            assert!(!topic.topic_id.is_nil(), "v{version}");
        }
        assert!(topic_exists(&mut client, &name).await);

        if version >= 4 {
            let refused = format!("md-refused-v{version}");
            let request = MetadataRequest::default()
                .with_topics(named(&[&refused]))
                .with_allow_auto_topic_creation(false);
            let response = client.send(&request, version).await;
            assert_eq!(
                response.topics[0].error_code,
                ResponseError::UnknownTopicOrPartition.code(),
                "v{version}: allow_auto_topic_creation=false"
            );
            assert!(
                !topic_exists(&mut client, &refused).await,
                "v{version}: created anyway"
            );
        }
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn auto_creation_off_on_the_node_answers_unknown_topic() {
    let node = TestNode::start_with(|c| c.auto_create_topics = false).await;
    let mut client = node.connect().await;
    for version in [0, 1, 4, 9, 12, 13] {
        let response = client
            .send(
                &MetadataRequest::default().with_topics(named(&["md-off"])),
                version,
            )
            .await;
        assert_eq!(
            response.topics[0].error_code,
            ResponseError::UnknownTopicOrPartition.code(),
            "v{version}"
        );
    }
    assert!(!topic_exists(&mut client, "md-off").await);
    wire::stop(node).await;
}

#[tokio::test]
async fn invalid_names_are_invalid_topic_exception() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let long = "x".repeat(250);
    for version in [0, 1, 4, 9, 12, 13] {
        for bad in ["bad name!", "..", long.as_str()] {
            // allow_auto_topic_creation is on the wire from v4.
            let allows: &[bool] = if version >= 4 {
                &[true, false]
            } else {
                &[true]
            };
            for &allow in allows {
                let request = MetadataRequest::default()
                    .with_topics(named(&[bad]))
                    .with_allow_auto_topic_creation(allow);
                let response = client.send(&request, version).await;
                assert_eq!(
                    response.topics[0].error_code,
                    ResponseError::InvalidTopicException.code(),
                    "v{version} {bad:?} allow_auto_topic_creation={allow}"
                );
            }
        }
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn lookup_by_topic_id_from_v12() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let created = wire::create_topic(&mut client, "md-by-id", 2).await;
    for version in [12, 13] {
        let request = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default()
                .with_name(None)
                .with_topic_id(created.id),
        ]));
        let response = client.send(&request, version).await;
        assert_eq!(response.topics.len(), 1);
        check_topic(&node, &response.topics[0], &created, 2, version);

        let unknown = Uuid::new_v4();
        let request = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default()
                .with_name(None)
                .with_topic_id(unknown),
        ]));
        let response = client.send(&request, version).await;
        assert_eq!(
            response.topics[0].error_code,
            ResponseError::UnknownTopicId.code(),
            "v{version}"
        );
        assert_eq!(response.topics[0].topic_id, unknown);
    }
    wire::stop(node).await;
}
