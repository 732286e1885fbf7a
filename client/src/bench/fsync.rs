//! The broker's fsync mode, asked with a standard DescribeConfigs (topic and broker resources,
//! key `rafka.fsync`). A broker that is not Rafka answers without that key (or without the
//! API), and the mode is reported as unknown; nothing Rafka-specific is ever sent.

use std::fmt;

use kafka_protocol::messages::DescribeConfigsRequest;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;
use tracing::debug;

use crate::cluster::Client;
use crate::error::{Error, Result};

/// The config key Rafka reports its fsync policy under.
pub const FSYNC_KEY: &str = "rafka.fsync";
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// What the broker said about fsync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FsyncMode {
    /// A Rafka broker: the topic's effective policy and the node's default.
    Rafka {
        /// The topic's effective `rafka.fsync`.
        topic: Option<String>,
        /// The broker's `rafka.fsync` (`--fsync`).
        broker: Option<String>,
    },
    /// No `rafka.fsync` anywhere: not a Rafka broker (or DescribeConfigs failed).
    Unknown,
}

impl fmt::Display for FsyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncMode::Rafka { topic, broker } => {
                let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
                write!(f, "{} (topic), {} (broker)", show(topic), show(broker))
            }
            FsyncMode::Unknown => f.write_str("unknown (not a Rafka broker)"),
        }
    }
}

/// Asks the leader of `topic`'s first partition for `rafka.fsync` of the topic and of itself.
pub async fn fsync_mode(client: &Client, topic: &str) -> FsyncMode {
    match ask(client, topic).await {
        Ok((None, None)) => FsyncMode::Unknown,
        Ok((topic, broker)) => FsyncMode::Rafka { topic, broker },
        Err(e) => {
            debug!(error = %e, "DescribeConfigs for the fsync mode failed");
            FsyncMode::Unknown
        }
    }
}

async fn ask(client: &Client, topic: &str) -> Result<(Option<String>, Option<String>)> {
    let info = client.topic(topic).await?;
    let leader = info
        .partitions
        .iter()
        .find_map(|p| p.leader)
        .ok_or_else(|| Error::LeaderNotAvailable {
            topic: topic.to_owned(),
        })?;
    // A broker resource must be asked of that broker.
    let conn = client.node(leader).await?;
    let version = conn.version::<DescribeConfigsRequest>()?;
    let resource = |kind: i8, name: String| {
        DescribeConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(StrBytes::from_string(name))
            .with_configuration_keys(Some(vec![StrBytes::from_static_str(FSYNC_KEY)]))
    };
    let request = DescribeConfigsRequest::default().with_resources(vec![
        resource(RESOURCE_TOPIC, topic.to_owned()),
        resource(RESOURCE_BROKER, leader.to_string()),
    ]);
    let response = conn.send(version, &request).await?;
    let value = |kind: i8| {
        response
            .results
            .iter()
            .filter(|r| r.resource_type == kind && r.error_code == 0)
            .flat_map(|r| r.configs.iter())
            .find(|c| c.name.as_str() == FSYNC_KEY)
            .and_then(|c| c.value.as_ref().map(|v| v.to_string()))
    };
    Ok((value(RESOURCE_TOPIC), value(RESOURCE_BROKER)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let known = FsyncMode::Rafka {
            topic: Some("never".into()),
            broker: Some("always".into()),
        };
        assert_eq!(known.to_string(), "never (topic), always (broker)");
        assert_eq!(
            FsyncMode::Unknown.to_string(),
            "unknown (not a Rafka broker)"
        );
        assert_eq!(
            serde_json::to_value(&known).unwrap(),
            serde_json::json!({"kind": "rafka", "topic": "never", "broker": "always"})
        );
        assert_eq!(
            serde_json::to_value(FsyncMode::Unknown).unwrap(),
            serde_json::json!({"kind": "unknown"})
        );
    }
}
