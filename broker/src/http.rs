//! The HTTP admin endpoint: `GET /health` (the process serves), `GET /ready` (joined a cluster,
//! and the metadata image has caught up with what was committed when it joined), `GET /metrics`
//! (Prometheus text format), `GET /cluster` (every member with its gossiped state, and the
//! metadata log as seen from here; JSON).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use rafka_mesh::membership::MemberStatus;

use crate::metrics as names;
use crate::series::{Series, Table};
use crate::{Broker, cluster};

#[derive(Clone)]
struct AppState {
    broker: Broker,
    prometheus: Option<PrometheusHandle>,
}

/// Serves the admin endpoint until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    broker: Broker,
    prometheus: Option<PrometheusHandle>,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/cluster", get(cluster))
        .with_state(AppState { broker, prometheus });
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "HTTP endpoint stopped");
    }
}

async fn health() -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        "{\"status\":\"ok\"}\n",
    )
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let image = state.broker.image();
    let ready = state.broker.is_ready();
    let body = format!(
        "{{\"ready\":{ready},\"node_id\":{},\"metadata_version\":{}}}\n",
        state.broker.local().node_id,
        image.version
    );
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, [(header::CONTENT_TYPE, "application/json")], body)
}

/// Every member this node knows, with its gossiped state, and the metadata log as seen from here.
async fn cluster(State(state): State<AppState>) -> impl IntoResponse {
    let body = cluster_json(&state.broker).await;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

/// The `/cluster` document.
pub async fn cluster_json(broker: &Broker) -> serde_json::Value {
    let status = broker.metadata().status().await;
    let view = broker.cluster().view();
    let members: Vec<serde_json::Value> = view
        .members
        .iter()
        .map(|m| {
            let state = match m.status {
                MemberStatus::Alive => "alive",
                MemberStatus::Suspect => "suspect",
                MemberStatus::Dead => "dead",
                MemberStatus::Left => "left",
            };
            serde_json::json!({
                "peer_id": m.peer_id.to_string(),
                "node_id": m.keys.get(cluster::NODE_ID_KEY).and_then(|v| v.parse::<i64>().ok()),
                "state": state,
                "generation": m.generation,
                "heartbeat": m.heartbeat,
                "last_heartbeat_ms_ago": u64::try_from(m.last_heard_ago.as_millis()).unwrap_or(u64::MAX),
                "kafka": m.keys.get(cluster::KAFKA_KEY),
                "http": m.keys.get(cluster::HTTP_KEY),
                "p2p": m.keys.get(rafka_mesh::view::DATA_ADDRS_KEY),
                "control": m.keys.get(rafka_mesh::view::CONTROL_ADDRS_KEY),
                "metadata_role": m.keys.get(cluster::ROLE_KEY),
                "metadata_version": m.keys.get(cluster::METADATA_VERSION_KEY),
                "partitions_led": m.keys.get(cluster::LED_KEY).and_then(|v| v.parse::<u64>().ok()),
                "feature_levels": m.keys.get(cluster::FEATURE_LEVELS_KEY),
            })
        })
        .collect();
    let image = broker.image();
    serde_json::json!({
        "cluster_id": image.cluster_id,
        "node_id": broker.local().node_id,
        "metadata": status,
        "features": features_json(&image, broker.config().supported_levels()),
        "members": members,
    })
}

/// The feature levels: finalized (the metadata log's), supported by this node, and recorded for
/// each registered node (null: registered as nodes of level 0 do; gossip may say more).
fn features_json(
    image: &crate::metadata::MetadataImage,
    supported: crate::metadata::LevelRange,
) -> serde_json::Value {
    let nodes: serde_json::Map<String, serde_json::Value> = image
        .nodes
        .values()
        .map(|n| {
            let range = n.supported.map(|r| r.to_string());
            (n.node_id.to_string(), serde_json::json!(range))
        })
        .collect();
    serde_json::json!({
        "finalized": image.features().finalized().0,
        "supported": supported.to_string(),
        "latest": crate::metadata::features::LATEST.0,
        "nodes": nodes,
    })
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let Some(prometheus) = state.prometheus else {
        return (
            StatusCode::NOT_FOUND,
            "metrics recorder not installed\n".to_string(),
        );
    };
    record_gauges(&state.broker);
    prometheus.run_upkeep();
    let mut text = prometheus.render();
    text.push_str(&entity_series(&state.broker));
    (StatusCode::OK, text)
}

/// Families of per-partition gauges, one row per local partition.
const PARTITION_FAMILIES: &[(&str, &str)] = &[
    (
        names::LOG_END_OFFSET,
        "Log end offset of each local partition.",
    ),
    (
        names::LOG_START_OFFSET,
        "Log start offset of each local partition.",
    ),
    (
        names::HIGH_WATERMARK,
        "High watermark of each local partition.",
    ),
    (
        names::LSO_LAG,
        "High watermark minus last stable offset of each local partition.",
    ),
];

/// The per-group family, one row per group and partition.
const GROUP_FAMILIES: &[(&str, &str)] = &[(
    names::GROUP_LAG,
    "Consumer lag (high watermark minus committed offset) per group and partition.",
)];

/// Families of the log cleaner's gauges, one row per local compacted partition (in order: the
/// values of [`cleaner_row`]).
const CLEANER_FAMILIES: &[(&str, &str)] = &[
    (
        names::CLEANER_DIRTY_RATIO,
        "Dirty bytes over cleanable bytes of each compacted partition.",
    ),
    (
        names::CLEANER_BACKLOG_BYTES,
        "Dirty bytes of each compacted partition the cleaner may clean now.",
    ),
    (
        names::CLEANER_CLEANINGS,
        "Cleanings of each compacted partition since the node started.",
    ),
    (
        names::CLEANER_BYTES_CLEANED,
        "Bytes the cleaner read from each partition's cleaned segments since the node started.",
    ),
    (
        names::CLEANER_RECORDS_REMOVED,
        "Records the cleaner removed from each partition since the node started.",
    ),
    (
        names::CLEANER_CPU_SECONDS,
        "CPU seconds the cleaner spent on each partition since the node started.",
    ),
    (
        names::CLEANER_LAST_CLEAN_MS,
        "Wall-clock time of each partition's last cleaning, ms since the epoch (-1: none yet).",
    ),
    (
        names::CLEANER_UNCLEANABLE,
        "1 when the cleaner gave up on a partition (a corrupt batch) until the node restarts.",
    ),
];

/// The log cleaner's values of a partition (`CLEANER_FAMILIES`), if it is compacted.
fn cleaner_row(log: &rafka_store::PartitionLog) -> Option<Vec<f64>> {
    let state = log.cleaner_state(crate::api::now_ms());
    state.compacted.then(|| {
        vec![
            state.dirty_ratio,
            state.cleanable_bytes as f64,
            state.cleanings as f64,
            state.bytes_read as f64,
            state.records_removed as f64,
            state.cpu_ns as f64 / 1e9,
            state.last_clean_ms as f64,
            if state.failed { 1.0 } else { 0.0 },
        ]
    })
}

/// The per-entity series of this scrape, within `--max-metric-series` (see [`crate::series`]).
fn entity_series(broker: &Broker) -> String {
    let mut series = Series::new(broker.config().max_metric_series);
    let image = broker.image();
    let mut partitions = Table::new(PARTITION_FAMILIES);
    let mut cleaner = Table::new(CLEANER_FAMILIES);
    for topic in image.topics() {
        for partition in 0..topic.partitions.len() {
            let Ok(index) = i32::try_from(partition) else {
                continue;
            };
            let tp = rafka_store::TopicPartition {
                topic_id: topic.id,
                partition: index,
            };
            let Some(log) = broker.store().partition(tp) else {
                continue;
            };
            let labels = vec![
                ("topic", topic.name.clone()),
                ("partition", index.to_string()),
            ];
            if let Some(values) = cleaner_row(&log) {
                cleaner.row(labels.clone(), values);
            }
            let high_watermark = log.high_watermark();
            partitions.row(
                labels,
                vec![
                    log.log_end_offset() as f64,
                    log.log_start_offset() as f64,
                    high_watermark as f64,
                    (high_watermark - log.last_stable_offset()).max(0) as f64,
                ],
            );
        }
    }
    series.add(partitions);
    series.add(cleaner);
    let mut lag = Table::new(GROUP_FAMILIES);
    for (group, topic, partition, value) in broker.groups().lag() {
        lag.row(
            vec![
                ("group", group),
                ("topic", topic),
                ("partition", partition.to_string()),
            ],
            vec![value as f64],
        );
    }
    series.add(lag);
    series.render()
}

/// Refreshes the gauges that describe state rather than events.
fn record_gauges(broker: &Broker) {
    let image = broker.image();
    metrics::gauge!(names::STORAGE_BYTES).set(broker.store().disk_space() as f64);
    metrics::gauge!(names::FEATURE_LEVEL).set(f64::from(image.features().finalized().0));
    let supported = broker.config().supported_levels();
    metrics::gauge!(names::FEATURE_LEVEL_SUPPORTED).set(f64::from(supported.max.0));
}
