//! AlterConfigs (the whole set of a topic's overrides, replaced) and IncrementalAlterConfigs
//! (KIP-339: set, delete, append to or subtract from single keys), for topics. Broker settings
//! are start-up flags and cannot be altered. Each resource succeeds or fails on its own.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, alter_configs_response, incremental_alter_configs_response,
};
use kafka_protocol::protocol::StrBytes;

use super::topics;
use crate::Broker;
use crate::metadata::TopicConfigError;
use crate::metadata::topic_config::{self, TopicDefaults};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// One change to one key (IncrementalAlterConfigs' operations; AlterConfigs is a `Replace`).
#[derive(Clone, Debug, PartialEq)]
enum Op {
    Set(String),
    Delete,
    Append(String),
    Subtract(String),
}

/// What one resource's alteration came to: an error code and message, or success.
type Outcome = Result<(), (ResponseError, String)>;

/// Answers AlterConfigs: each topic's overrides become exactly the ones given.
pub async fn handle_alter(broker: &Broker, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let mut names = BTreeSet::new();
        let mut overrides = BTreeMap::new();
        let mut bad = None;
        for config in &resource.configs {
            let name = config.name.to_string();
            if !names.insert(name.clone()) {
                bad = Some(duplicate(&name));
            }
            match &config.value {
                Some(value) => {
                    overrides.insert(name, value.to_string());
                }
                None => bad = Some(no_value(&name)),
            }
        }
        let outcome = alter(
            broker,
            resource.resource_type,
            resource.resource_name.as_str(),
            bad.map_or(Ok(|_: &_| Ok(overrides)), Err),
            request.validate_only,
        )
        .await;
        let (code, message) = split(outcome);
        responses.push(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
                .with_error_code(code)
                .with_error_message(message),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// Answers IncrementalAlterConfigs: each topic's overrides changed key by key.
pub async fn handle_incremental(
    broker: &Broker,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let mut ops = Vec::with_capacity(resource.configs.len());
        let mut bad = None;
        for config in &resource.configs {
            let name = config.name.to_string();
            if ops.iter().any(|(n, _)| *n == name) {
                bad = Some(duplicate(&name));
            }
            let value = config.value.as_ref().map(ToString::to_string);
            let op = match (config.config_operation, value) {
                (0, Some(v)) => Op::Set(v),
                (1, _) => Op::Delete,
                (2, Some(v)) => Op::Append(v),
                (3, Some(v)) => Op::Subtract(v),
                (0 | 2 | 3, None) => {
                    bad = Some(no_value(&name));
                    continue;
                }
                (other, _) => {
                    bad = Some((
                        ResponseError::InvalidRequest,
                        format!("unknown config operation {other} for '{name}'"),
                    ));
                    continue;
                }
            };
            ops.push((name, op));
        }
        let outcome = alter(
            broker,
            resource.resource_type,
            resource.resource_name.as_str(),
            bad.map_or(
                Ok(|current: &_| apply_ops(current, &ops, broker.topic_defaults())),
                Err,
            ),
            request.validate_only,
        )
        .await;
        let (code, message) = split(outcome);
        responses.push(
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
                .with_error_code(code)
                .with_error_message(message),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// Alters one resource: its new overrides are `change` of the current ones, unless the request
/// already failed for this resource.
async fn alter(
    broker: &Broker,
    resource_type: i8,
    name: &str,
    change: Result<
        impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, TopicConfigError>,
        (ResponseError, String),
    >,
    validate_only: bool,
) -> Outcome {
    let change = change?;
    match resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER => {
            return Err((
                ResponseError::InvalidConfig,
                "broker settings are start-up flags and cannot be altered".into(),
            ));
        }
        other => {
            return Err((
                ResponseError::InvalidRequest,
                format!("resource type {other} has no configs to alter"),
            ));
        }
    }
    let image = broker.image();
    let topic = image.topic(name).cloned().ok_or_else(|| {
        (
            ResponseError::UnknownTopicOrPartition,
            format!("unknown topic '{name}'"),
        )
    })?;
    let configs =
        change(&topic.configs).map_err(|e| (ResponseError::InvalidConfig, e.to_string()))?;
    let result = topics::alter_configs(broker, &topic, configs, validate_only).await;
    match result {
        Ok(()) => {
            if !validate_only {
                tracing::info!(topic = %name, "altered topic configs");
            }
            Ok(())
        }
        Err(e) => {
            let code = ResponseError::try_from_code(e.kafka_code())
                .unwrap_or(ResponseError::UnknownServerError);
            Err((code, e.to_string()))
        }
    }
}

/// The overrides after IncrementalAlterConfigs' operations. APPEND and SUBTRACT work on list
/// configs (`cleanup.policy`), starting from the effective value when the key has no override.
fn apply_ops(
    current: &BTreeMap<String, String>,
    ops: &[(String, Op)],
    defaults: &TopicDefaults,
) -> Result<BTreeMap<String, String>, TopicConfigError> {
    let mut configs = current.clone();
    for (name, op) in ops {
        match op {
            Op::Set(value) => {
                configs.insert(name.clone(), value.clone());
            }
            Op::Delete => {
                configs.remove(name);
            }
            Op::Append(value) | Op::Subtract(value) => {
                topic_config::check_list_key(name)?;
                let base = topic_config::effective(&configs, defaults, name).unwrap_or_default();
                let mut items: Vec<String> = split_list(&base);
                for item in split_list(value) {
                    let present = items.contains(&item);
                    match op {
                        Op::Append(_) if !present => items.push(item),
                        Op::Subtract(_) => items.retain(|i| *i != item),
                        _ => {}
                    }
                }
                configs.insert(name.clone(), items.join(","));
            }
        }
    }
    Ok(configs)
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn duplicate(name: &str) -> (ResponseError, String) {
    (
        ResponseError::InvalidRequest,
        format!("config '{name}' given twice"),
    )
}

fn no_value(name: &str) -> (ResponseError, String) {
    (
        ResponseError::InvalidConfig,
        format!("config '{name}' has no value"),
    )
}

fn split(outcome: Outcome) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err((code, message)) => {
            tracing::info!(%message, "AlterConfigs refused");
            (code.code(), Some(StrBytes::from_string(message)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::topic_config::tests::{defaults, map};

    #[test]
    fn incremental_operations_set_delete_append_and_subtract() {
        let current = map(&[("retention.ms", "1000"), ("segment.bytes", "4096")]);
        let ops = vec![
            ("retention.ms".to_string(), Op::Delete),
            ("segment.ms".to_string(), Op::Set("60000".into())),
            ("cleanup.policy".to_string(), Op::Append("compact".into())),
        ];
        let got = apply_ops(&current, &ops, &defaults()).expect("valid");
        assert_eq!(
            got,
            map(&[
                ("cleanup.policy", "delete,compact"),
                ("segment.bytes", "4096"),
                ("segment.ms", "60000"),
            ])
        );
        let ops = vec![("cleanup.policy".to_string(), Op::Subtract("delete".into()))];
        let got = apply_ops(&got, &ops, &defaults()).expect("valid");
        assert_eq!(
            got.get("cleanup.policy").map(String::as_str),
            Some("compact")
        );
        // Appending what is there already changes nothing.
        let ops = vec![("cleanup.policy".to_string(), Op::Append("compact".into()))];
        assert_eq!(apply_ops(&got, &ops, &defaults()).expect("valid"), got);
    }

    #[test]
    fn append_and_subtract_only_work_on_lists() {
        let ops = vec![("retention.ms".to_string(), Op::Append("5".into()))];
        assert!(matches!(
            apply_ops(&BTreeMap::new(), &ops, &defaults()),
            Err(TopicConfigError::Invalid { .. })
        ));
        let ops = vec![("no.such.key".to_string(), Op::Subtract("5".into()))];
        assert!(matches!(
            apply_ops(&BTreeMap::new(), &ops, &defaults()),
            Err(TopicConfigError::Unknown(_))
        ));
    }
}
