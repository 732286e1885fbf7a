//! The HTTP admin endpoint: `GET /health` (the process serves), `GET /ready` (start-up finished:
//! metadata loaded, partitions open, listeners bound), `GET /metrics` (Prometheus text format).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Broker;
use crate::metrics as names;

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

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let Some(prometheus) = state.prometheus else {
        return (
            StatusCode::NOT_FOUND,
            "metrics recorder not installed\n".to_string(),
        );
    };
    record_gauges(&state.broker);
    prometheus.run_upkeep();
    (StatusCode::OK, prometheus.render())
}

/// Refreshes the gauges that describe state rather than events.
fn record_gauges(broker: &Broker) {
    let image = broker.image();
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
            let labels = [
                ("topic", topic.name.clone()),
                ("partition", index.to_string()),
            ];
            metrics::gauge!(names::LOG_END_OFFSET, &labels).set(log.log_end_offset() as f64);
            metrics::gauge!(names::LOG_START_OFFSET, &labels).set(log.log_start_offset() as f64);
            metrics::gauge!(names::HIGH_WATERMARK, &labels).set(log.high_watermark() as f64);
        }
    }
    metrics::gauge!(names::STORAGE_BYTES).set(broker.store().disk_space() as f64);
}
