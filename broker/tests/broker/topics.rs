//! CreateTopics v2-7, DeleteTopics v1-6 and DescribeConfigs v1-4.

use crate::support::TestNode;
use crate::support::raw::RawClient;
use crate::support::wire;
use crate::support::wire::{creatable, str, topic_name};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest, MetadataRequest,
};
use uuid::Uuid;

async fn create(
    client: &mut RawClient,
    version: i16,
    topics: Vec<kafka_protocol::messages::create_topics_request::CreatableTopic>,
    validate_only: bool,
) -> Vec<CreatableTopicResult> {
    let request = CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(10_000)
        .with_validate_only(validate_only);
    client.send(&request, version).await.topics
}

/// (error code, partitions) of a topic, without creating it.
async fn describe(client: &mut RawClient, name: &str) -> (i16, usize) {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(name))),
        ]))
        .with_allow_auto_topic_creation(false);
    let response = client.send(&request, 12).await;
    (
        response.topics[0].error_code,
        response.topics[0].partitions.len(),
    )
}

fn expect_error(result: &CreatableTopicResult, code: ResponseError, version: i16) {
    assert_eq!(
        result.error_code,
        code.code(),
        "v{version} {:?}: {:?}",
        result.name,
        result.error_message
    );
    let message = result.error_message.as_ref().expect("an error message");
    assert!(!message.is_empty(), "v{version}: empty error message");
}

#[tokio::test]
async fn create_topics_at_every_version() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    for version in 2..=7 {
        let name = format!("ct-v{version}");
        let results = create(
            &mut client,
            version,
            vec![creatable(&name, 3, 1, &[])],
            false,
        )
        .await;
        assert_eq!(results.len(), 1);
        let result = &results[0];
        assert_eq!(result.name.0.as_str(), name);
        assert_eq!(
            result.error_code, 0,
            "v{version}: {:?}",
            result.error_message
        );
        if version >= 5 {
            assert_eq!(result.num_partitions, 3, "v{version}");
            assert_eq!(result.replication_factor, 1, "v{version}");
            let configs = result.configs.as_ref().expect("configs at v5+");
            assert!(
                configs.iter().any(|c| c.name.as_str() == "retention.ms"),
                "v{version}"
            );
        }
        if version >= 7 {
            assert!(!result.topic_id.is_nil());
        }
        assert_eq!(describe(&mut client, &name).await, (0, 3), "v{version}");

        // Again: the topic exists.
        let results = create(
            &mut client,
            version,
            vec![creatable(&name, 3, 1, &[])],
            false,
        )
        .await;
        expect_error(&results[0], ResponseError::TopicAlreadyExists, version);
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn validate_only_creates_nothing() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    for version in 2..=7 {
        let name = format!("ct-validate-v{version}");
        let results = create(
            &mut client,
            version,
            vec![creatable(&name, 2, 1, &[])],
            true,
        )
        .await;
        assert_eq!(
            results[0].error_code, 0,
            "v{version}: {:?}",
            results[0].error_message
        );
        if version >= 5 {
            assert_eq!(results[0].num_partitions, 2);
        }
        assert_eq!(
            describe(&mut client, &name).await.0,
            ResponseError::UnknownTopicOrPartition.code()
        );
        // Validation still finds errors.
        let results = create(
            &mut client,
            version,
            vec![creatable(&name, 2, 9, &[])],
            true,
        )
        .await;
        expect_error(
            &results[0],
            ResponseError::InvalidReplicationFactor,
            version,
        );
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn minus_one_takes_the_node_defaults() {
    let node = TestNode::start_with(|c| c.num_partitions = 4).await;
    let mut client = node.connect().await;
    // KIP-464: -1 for partitions and replication factor from v4.
    for version in 4..=7 {
        let name = format!("ct-defaults-v{version}");
        let results = create(
            &mut client,
            version,
            vec![creatable(&name, -1, -1, &[])],
            false,
        )
        .await;
        assert_eq!(
            results[0].error_code, 0,
            "v{version}: {:?}",
            results[0].error_message
        );
        if version >= 5 {
            assert_eq!(results[0].num_partitions, 4);
            assert_eq!(results[0].replication_factor, 1);
        }
        assert_eq!(describe(&mut client, &name).await, (0, 4));
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn configs_are_echoed_from_v5_and_bad_ones_refused() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    for version in 2..=7 {
        let name = format!("ct-configs-v{version}");
        let configs = [("retention.ms", "3600000"), ("max.message.bytes", "5000")];
        let results = create(
            &mut client,
            version,
            vec![creatable(&name, 1, 1, &configs)],
            false,
        )
        .await;
        let result = &results[0];
        assert_eq!(
            result.error_code, 0,
            "v{version}: {:?}",
            result.error_message
        );
        if version >= 5 {
            let echoed = result.configs.as_ref().unwrap();
            for (key, value) in configs {
                let entry = echoed
                    .iter()
                    .find(|c| c.name.as_str() == key)
                    .expect("override echoed");
                assert_eq!(
                    entry.value.as_ref().unwrap().as_str(),
                    value,
                    "v{version} {key}"
                );
                assert_eq!(
                    entry.config_source, 1,
                    "v{version} {key}: source TOPIC_CONFIG"
                );
            }
            let default = echoed
                .iter()
                .find(|c| c.name.as_str() == "cleanup.policy")
                .unwrap();
            assert_eq!(default.value.as_ref().unwrap().as_str(), "delete");
            assert_eq!(default.config_source, 5, "DEFAULT_CONFIG");
        }

        for bad in [
            ("retention.ms", "soon"),
            ("no.such.config", "1"),
            ("cleanup.policy", "compact,delete,nonsense"),
            ("min.insync.replicas", "0"),
        ] {
            let bad_name = format!("ct-bad-config-v{version}");
            let results = create(
                &mut client,
                version,
                vec![creatable(&bad_name, 1, 1, &[bad])],
                false,
            )
            .await;
            expect_error(&results[0], ResponseError::InvalidConfig, version);
            let message = results[0].error_message.as_ref().unwrap();
            assert!(
                message.contains(bad.0),
                "v{version}: message {message:?} does not name {}",
                bad.0
            );
            assert_eq!(
                describe(&mut client, &bad_name).await.0,
                ResponseError::UnknownTopicOrPartition.code()
            );
        }
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn invalid_requests_get_typed_errors_per_topic() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    for version in 2..=7 {
        let ok = format!("ct-mixed-ok-v{version}");
        let results = create(
            &mut client,
            version,
            vec![
                creatable(&format!("ct-rf-v{version}"), 1, 3, &[]),
                creatable("bad name!", 1, 1, &[]),
                creatable(&format!("ct-zero-v{version}"), 0, 1, &[]),
                creatable(&ok, 1, 1, &[]),
            ],
            false,
        )
        .await;
        assert_eq!(results.len(), 4);
        expect_error(
            &results[0],
            ResponseError::InvalidReplicationFactor,
            version,
        );
        expect_error(&results[1], ResponseError::InvalidTopicException, version);
        expect_error(&results[2], ResponseError::InvalidPartitions, version);
        assert_eq!(
            results[3].error_code, 0,
            "v{version}: the valid topic is created"
        );
        assert_eq!(describe(&mut client, &ok).await.0, 0);
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn duplicate_names_in_one_request_are_invalid_request() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    for version in 2..=7 {
        let dup = format!("ct-dup-v{version}");
        let ok = format!("ct-dup-ok-v{version}");
        let results = create(
            &mut client,
            version,
            vec![
                creatable(&dup, 1, 1, &[]),
                creatable(&ok, 1, 1, &[]),
                creatable(&dup, 2, 1, &[]),
            ],
            false,
        )
        .await;
        // As Kafka: one INVALID_REQUEST result for the name given twice, which is not created;
        // the other topics are handled as usual.
        assert_eq!(results.len(), 2, "v{version}: one result per distinct name");
        let by_name = |name: &str| results.iter().find(|r| r.name.0.as_str() == name).unwrap();
        expect_error(by_name(&dup), ResponseError::InvalidRequest, version);
        assert_eq!(by_name(&ok).error_code, 0);
        assert_eq!(
            describe(&mut client, &dup).await.0,
            ResponseError::UnknownTopicOrPartition.code()
        );
        assert_eq!(describe(&mut client, &ok).await.0, 0);
    }
    wire::stop(node).await;
}

async fn delete_names(
    client: &mut RawClient,
    version: i16,
    names: &[&str],
) -> Vec<DeletableTopicResult> {
    let request = if version >= 6 {
        DeleteTopicsRequest::default().with_topics(
            names
                .iter()
                .map(|n| DeleteTopicState::default().with_name(Some(topic_name(n))))
                .collect(),
        )
    } else {
        DeleteTopicsRequest::default()
            .with_topic_names(names.iter().map(|n| topic_name(n)).collect())
    };
    client
        .send(&request.with_timeout_ms(10_000), version)
        .await
        .responses
}

#[tokio::test]
async fn delete_topics_by_name_at_every_version() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    for version in 1..=6 {
        let name = format!("dt-v{version}");
        let created = wire::create_topic(&mut client, &name, 2).await;
        let results = delete_names(&mut client, version, &[&name, "dt-never-existed"]).await;
        assert_eq!(results.len(), 2);
        assert_eq!(results[0].name.as_ref().unwrap().0.as_str(), name);
        assert_eq!(
            results[0].error_code, 0,
            "v{version}: {:?}",
            results[0].error_message
        );
        if version >= 6 {
            assert_eq!(results[0].topic_id, created.id);
        }
        assert_eq!(
            results[1].error_code,
            ResponseError::UnknownTopicOrPartition.code(),
            "v{version}"
        );
        assert_eq!(
            describe(&mut client, &name).await.0,
            ResponseError::UnknownTopicOrPartition.code()
        );
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn delete_topics_by_id_at_v6() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let created = wire::create_topic(&mut client, "dt-by-id", 1).await;
    let unknown = Uuid::new_v4();
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            DeleteTopicState::default()
                .with_name(None)
                .with_topic_id(created.id),
            DeleteTopicState::default()
                .with_name(None)
                .with_topic_id(unknown),
        ]);
    let results = client.send(&request, 6).await.responses;
    assert_eq!(results[0].error_code, 0, "{:?}", results[0].error_message);
    assert_eq!(results[0].topic_id, created.id);
    assert_eq!(results[0].name.as_ref().unwrap().0.as_str(), "dt-by-id");
    assert_eq!(results[1].error_code, ResponseError::UnknownTopicId.code());
    assert_eq!(results[1].topic_id, unknown);
    assert_eq!(
        describe(&mut client, "dt-by-id").await.0,
        ResponseError::UnknownTopicOrPartition.code()
    );
    wire::stop(node).await;
}

#[tokio::test]
async fn the_internal_topic_cannot_be_deleted() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    wire::find_coordinator(&mut client, "internal-topic").await;
    for version in [1, 5, 6] {
        let results = delete_names(&mut client, version, &["__consumer_offsets"]).await;
        assert_ne!(results[0].error_code, 0, "v{version}");
        if version >= 5 {
            assert!(
                results[0]
                    .error_message
                    .as_ref()
                    .is_some_and(|m| m.contains("internal"))
            );
        }
        assert_eq!(describe(&mut client, "__consumer_offsets").await.0, 0);
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn a_deleted_then_recreated_topic_starts_empty_at_offset_zero() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let first = wire::create_topic(&mut client, "dt-recreate", 1).await;
    wire::produce_values(&mut client, &first, 0, &[b"a", b"b", b"c"]).await;
    wire::produce_values(&mut client, &first, 0, &[b"d"]).await;
    assert_eq!(wire::log_end(&mut client, &first, 0).await, 4);

    assert_eq!(
        delete_names(&mut client, 6, &["dt-recreate"]).await[0].error_code,
        0
    );
    let second = wire::create_topic(&mut client, "dt-recreate", 1).await;
    assert_ne!(second.id, first.id, "a recreated topic gets a new id");
    assert_eq!(wire::log_end(&mut client, &second, 0).await, 0);
    let earliest = wire::list_offset(&mut client, &second, 0, -2, wire::LIST_OFFSETS).await;
    assert_eq!(earliest.offset, 0);
    let data = wire::fetch_at(&mut client, &second, 0, 0, wire::FETCH).await;
    assert_eq!(data.error_code, 0);
    assert_eq!(data.high_watermark, 0);
    assert!(data.records.unwrap_or_default().is_empty());

    assert_eq!(
        wire::produce_values(&mut client, &second, 0, &[b"new"]).await,
        0
    );
    let records = wire::read_all(&mut client, &second, 0, 0).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].1.as_ref(), b"new");
    // The old id is gone.
    let stale = wire::fetch_at(&mut client, &first, 0, 0, 13).await;
    assert_eq!(stale.error_code, ResponseError::UnknownTopicId.code());
    wire::stop(node).await;
}

fn resource(kind: i8, name: &str, keys: Option<&[&str]>) -> DescribeConfigsResource {
    DescribeConfigsResource::default()
        .with_resource_type(kind)
        .with_resource_name(str(name))
        .with_configuration_keys(keys.map(|k| k.iter().map(|k| str(k)).collect()))
}

fn value<'a>(result: &'a DescribeConfigsResult, key: &str) -> Option<&'a str> {
    result
        .configs
        .iter()
        .find(|c| c.name.as_str() == key)
        .and_then(|c| c.value.as_ref())
        .map(|v| v.as_str())
}

#[tokio::test]
async fn describe_configs_of_topics_and_the_broker_at_every_version() {
    let node = TestNode::start().await;
    let node_id = node.node.as_ref().unwrap().broker().local().node_id;
    let mut client = node.connect().await;
    wire::create_topic_with(&mut client, "dc-topic", 1, &[("retention.ms", "7200000")]).await;
    for version in 1..=4 {
        // include_documentation is on the wire from v3.
        let documentations: &[bool] = if version >= 3 {
            &[false, true]
        } else {
            &[false]
        };
        for &documentation in documentations {
            let request = DescribeConfigsRequest::default()
                .with_include_documentation(documentation)
                .with_resources(vec![
                    resource(2, "dc-topic", None),
                    resource(2, "dc-topic", Some(&["retention.ms", "max.message.bytes"])),
                    resource(4, &node_id.to_string(), None),
                    resource(2, "dc-unknown", None),
                    resource(4, "9999", None),
                ]);
            let results = client.send(&request, version).await.results;
            assert_eq!(results.len(), 5);

            let all = &results[0];
            assert_eq!(all.error_code, 0);
            assert_eq!(
                (all.resource_type, all.resource_name.as_str()),
                (2, "dc-topic")
            );
            assert!(all.configs.len() >= 10, "v{version}: every topic key");
            assert_eq!(value(all, "retention.ms"), Some("7200000"));
            assert_eq!(value(all, "cleanup.policy"), Some("delete"));
            for config in &all.configs {
                let expected_source = if config.name.as_str() == "retention.ms" {
                    1
                } else {
                    5
                };
                assert_eq!(
                    config.config_source,
                    expected_source,
                    "v{version} {}",
                    config.name.as_str()
                );
                if version >= 3 {
                    assert!(
                        config.config_type > 0,
                        "v{version}: type of {}",
                        config.name.as_str()
                    );
                    assert_eq!(config.documentation.is_some(), documentation, "v{version}");
                }
            }

            let selected = &results[1];
            let mut names: Vec<_> = selected.configs.iter().map(|c| c.name.as_str()).collect();
            names.sort_unstable();
            assert_eq!(names, ["max.message.bytes", "retention.ms"], "v{version}");

            let broker = &results[2];
            assert_eq!(
                broker.error_code, 0,
                "v{version}: {:?}",
                broker.error_message
            );
            assert_eq!(value(broker, "num.partitions"), Some("1"));
            assert!(broker.configs.iter().all(|c| c.read_only));

            assert_eq!(
                results[3].error_code,
                ResponseError::UnknownTopicOrPartition.code()
            );
            assert!(results[3].error_message.is_some());
            assert_ne!(results[4].error_code, 0, "another node's id");
        }
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn configs_the_store_cannot_hold_are_refused_and_break_nothing() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    // Below a batch header: no batch could ever be stored.
    let results = create(
        &mut client,
        7,
        vec![creatable(
            "ct-tiny-batches",
            1,
            1,
            &[("max.message.bytes", "10")],
        )],
        false,
    )
    .await;
    expect_error(&results[0], ResponseError::InvalidConfig, 7);
    assert_eq!(
        describe(&mut client, "ct-tiny-batches").await.0,
        ResponseError::UnknownTopicOrPartition.code()
    );
    // Topics created afterwards get their logs and take records.
    for i in 0..3 {
        let topic = wire::create_topic(&mut client, &format!("ct-after-{i}"), 2).await;
        for p in 0..2 {
            assert_eq!(
                wire::produce_values(&mut client, &topic, p, &[b"ok"]).await,
                0
            );
        }
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn user_topics_named_with_two_underscores_are_ordinary_topics() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "__user-topic", 1).await;
    let request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic_name("__user-topic"))),
    ]));
    let metadata = client.send(&request, 12).await;
    assert!(
        !metadata.topics[0].is_internal,
        "only Kafka's own internal topics are internal"
    );
    assert_eq!(
        wire::produce_values(&mut client, &topic, 0, &[b"mine"]).await,
        0
    );
    let results = delete_names(&mut client, 6, &["__user-topic"]).await;
    assert_eq!(results[0].error_code, 0, "{:?}", results[0].error_message);
    wire::stop(node).await;
}

#[tokio::test]
async fn concurrent_creations_of_one_name_make_one_topic() {
    let node = TestNode::start().await;
    let addr = node.kafka_addr();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            tokio::spawn(async move {
                let mut client = RawClient::connect(addr).await;
                if i % 2 == 0 {
                    let results =
                        create(&mut client, 7, vec![creatable("ct-race", 2, 1, &[])], false).await;
                    (results[0].error_code, results[0].topic_id)
                } else {
                    // Metadata auto-creation racing the explicit creations.
                    let request = MetadataRequest::default().with_topics(Some(vec![
                        MetadataRequestTopic::default().with_name(Some(topic_name("ct-race"))),
                    ]));
                    let response = client.send(&request, 12).await;
                    (response.topics[0].error_code, response.topics[0].topic_id)
                }
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let mut client = node.connect().await;
    let request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic_name("ct-race"))),
    ]));
    let topic = &client.send(&request, 12).await.topics[0];
    assert_eq!(topic.error_code, 0);
    let id = topic.topic_id;
    for (code, seen) in &outcomes {
        assert!(
            *code == 0 || *code == ResponseError::TopicAlreadyExists.code(),
            "unexpected outcome {outcomes:?}"
        );
        if *code == 0 {
            assert_eq!(*seen, id, "every success names the one topic: {outcomes:?}");
        }
    }
    let created = wire::Topic {
        name: "ct-race".into(),
        id,
    };
    for p in 0..topic.partitions.len() as i32 {
        assert_eq!(
            wire::produce_values(&mut client, &created, p, &[b"one"]).await,
            0
        );
    }
    wire::stop(node).await;
}

#[tokio::test]
async fn deleting_a_topic_answers_fetches_parked_on_it() {
    let node = TestNode::start().await;
    let mut consumer = node.connect().await;
    let mut admin = node.connect().await;
    let topic = wire::create_topic(&mut admin, "dt-parked", 1).await;
    let request = wire::fetch_request(&topic, 0, 0, wire::FETCH)
        .with_max_wait_ms(20_000)
        .with_min_bytes(1);
    let (correlation_id, frame) = consumer.encode(&request, wire::FETCH);
    consumer.send_frame(&frame).await.unwrap();
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), consumer.read_frame())
            .await
            .is_err()
    );
    let deleted = std::time::Instant::now();
    assert_eq!(
        delete_names(&mut admin, 6, &["dt-parked"]).await[0].error_code,
        0
    );
    let frame = consumer.read_frame().await.unwrap();
    let waited = deleted.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(5),
        "the parked fetch waited {waited:?} after the delete"
    );
    let response =
        wire::decode::<kafka_protocol::messages::FetchRequest>(frame, wire::FETCH, correlation_id);
    let data = wire::only_partition(&response);
    assert_eq!(
        data.error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert!(data.records.unwrap_or_default().is_empty());
    wire::stop(node).await;
}

#[tokio::test]
async fn clients_cannot_create_the_internal_topics() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    for version in [2, 5, 7] {
        for name in ["__consumer_offsets", "__transaction_state"] {
            for validate_only in [false, true] {
                let results = create(
                    &mut client,
                    version,
                    vec![creatable(name, 1, 1, &[])],
                    validate_only,
                )
                .await;
                expect_error(&results[0], ResponseError::InvalidRequest, version);
                let message = results[0].error_message.as_deref().unwrap_or_default();
                assert!(
                    message.contains("internal") && message.contains("only the broker"),
                    "v{version} {name}: the message names the rule: {message}"
                );
            }
            assert_eq!(
                describe(&mut client, name).await.0,
                ResponseError::UnknownTopicOrPartition.code(),
                "{name} was not created"
            );
        }
    }
    // The broker creates the offsets topic itself, on the first group request.
    wire::find_coordinator(&mut client, "internal-topic").await;
    assert_eq!(describe(&mut client, "__consumer_offsets").await.0, 0);
    wire::stop(node).await;
}

#[tokio::test]
async fn metadata_creates_the_offsets_topic_the_brokers_way() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    // A Metadata request that allows auto-creation (kcat -L -t, a consumer's first look) gets
    // the offsets topic created as the broker creates it, not refused and not a client topic.
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name("__consumer_offsets"))),
        ]))
        .with_allow_auto_topic_creation(true);
    let response = client.send(&request, 12).await;
    let topic = &response.topics[0];
    assert_eq!(topic.error_code, 0, "{topic:?}");
    assert!(topic.is_internal);
    let partitions = node
        .node
        .as_ref()
        .unwrap()
        .broker()
        .config()
        .offsets_topic_partitions;
    assert_eq!(topic.partitions.len(), usize::try_from(partitions).unwrap());
    assert_ne!(
        partitions,
        node.node.as_ref().unwrap().broker().config().num_partitions
    );
    wire::stop(node).await;
}
