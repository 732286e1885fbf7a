//! DescribeConfigs for topics (every key Rafka knows, with its source) and for the broker (its
//! static settings, read-only).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::Broker;
use crate::metadata::topic_config::{self, ConfigType};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// One config entry before encoding.
struct Entry {
    name: String,
    value: String,
    source: i8,
    read_only: bool,
    kind: ConfigType,
    doc: &'static str,
}

/// Answers a DescribeConfigs request.
pub fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let entries = match resource.resource_type {
                RESOURCE_TOPIC => topic_entries(broker, resource.resource_name.as_str()),
                RESOURCE_BROKER => broker_entries(broker, resource.resource_name.as_str()),
                _ => Err((
                    ResponseError::InvalidRequest,
                    "only topic and broker resources can be described".to_string(),
                )),
            };
            match entries {
                Ok(entries) => {
                    let wanted = resource.configuration_keys.as_ref();
                    let configs = entries
                        .into_iter()
                        .filter(|e| {
                            wanted.is_none_or(|keys| keys.iter().any(|k| k.as_str() == e.name))
                        })
                        .map(|e| encode(e, ctx.version, request.include_documentation))
                        .collect();
                    result.with_configs(configs)
                }
                Err((code, message)) => result
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn topic_entries(broker: &Broker, name: &str) -> Result<Vec<Entry>, (ResponseError, String)> {
    let image = broker.image();
    let topic = image.topic(name).ok_or_else(|| {
        (
            ResponseError::UnknownTopicOrPartition,
            format!("unknown topic '{name}'"),
        )
    })?;
    let defaults = broker.topic_defaults();
    Ok(topic_config::KEYS
        .iter()
        .map(|key| Entry {
            name: key.name.to_string(),
            value: topic_config::effective(&topic.configs, defaults, key.name).unwrap_or_default(),
            source: if topic.configs.contains_key(key.name) {
                SOURCE_TOPIC
            } else {
                SOURCE_DEFAULT
            },
            read_only: false,
            kind: key.kind,
            doc: key.doc,
        })
        .collect())
}

fn broker_entries(broker: &Broker, name: &str) -> Result<Vec<Entry>, (ResponseError, String)> {
    let own = broker.local().node_id.to_string();
    if !name.is_empty() && name != own {
        return Err((
            ResponseError::InvalidRequest,
            format!("this is node {own}, not {name}"),
        ));
    }
    let config = broker.config();
    let entry = |name: &str, value: String, kind: ConfigType, doc: &'static str| Entry {
        name: name.to_string(),
        value,
        source: SOURCE_STATIC_BROKER,
        read_only: true,
        kind,
        doc,
    };
    Ok(vec![
        entry(
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
            ConfigType::Boolean,
            "--auto-create-topics",
        ),
        entry(
            "default.replication.factor",
            config.default_replication_factor.to_string(),
            ConfigType::Int,
            "--default-replication-factor",
        ),
        entry(
            "log.retention.bytes",
            config.retention_bytes.to_string(),
            ConfigType::Long,
            "--retention-bytes",
        ),
        entry(
            "log.retention.ms",
            config.retention_ms.to_string(),
            ConfigType::Long,
            "--retention-ms",
        ),
        entry(
            "log.segment.bytes",
            config.segment_bytes.to_string(),
            ConfigType::Long,
            "--segment-bytes",
        ),
        entry(
            "min.insync.replicas",
            config.min_insync_replicas.to_string(),
            ConfigType::Int,
            "--min-insync-replicas",
        ),
        entry(
            "node.id",
            own,
            ConfigType::Int,
            "allocated by the metadata log",
        ),
        entry(
            "num.partitions",
            config.num_partitions.to_string(),
            ConfigType::Int,
            "--num-partitions",
        ),
        entry(
            "offsets.topic.num.partitions",
            config.offsets_topic_partitions.to_string(),
            ConfigType::Int,
            "--offsets-topic-partitions",
        ),
        entry(
            "offsets.topic.replication.factor",
            config.offsets_topic_replication_factor.to_string(),
            ConfigType::Int,
            "--offsets-topic-replication-factor",
        ),
        entry(
            "replica.lag.time.max.ms",
            config.replica_lag_time_max_ms.to_string(),
            ConfigType::Long,
            "--replica-lag-time-max-ms",
        ),
        entry(
            "rafka.fsync",
            config.fsync.to_string(),
            ConfigType::String,
            "--fsync",
        ),
        entry(
            "socket.request.max.bytes",
            config.max_request_bytes.to_string(),
            ConfigType::Int,
            "--max-request-bytes",
        ),
    ])
}

fn encode(
    entry: Entry,
    version: i16,
    include_documentation: bool,
) -> DescribeConfigsResourceResult {
    let result = DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(entry.name))
        .with_value(Some(StrBytes::from_string(entry.value)))
        .with_read_only(entry.read_only)
        .with_config_source(entry.source);
    if version >= 3 {
        let doc = include_documentation.then(|| StrBytes::from_static_str(entry.doc));
        result
            .with_config_type(entry.kind as i8)
            .with_documentation(doc)
    } else {
        result
    }
}
