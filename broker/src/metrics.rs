//! Metric names and the small helpers that record them. Only the binary installs a recorder; without
//! one these calls cost next to nothing.

use std::time::Duration;

use kafka_protocol::messages::ApiKey;

/// Requests handled, by API.
pub const REQUESTS: &str = "rafka_requests_total";
/// Request latency from frame arrival to encoded response, by API (a histogram).
pub const REQUEST_SECONDS: &str = "rafka_request_duration_seconds";
/// Requests of an unknown API or unsupported version (the connection was closed).
pub const UNSUPPORTED_REQUESTS: &str = "rafka_unsupported_requests_total";
/// Bytes received in request frames, by listener.
pub const BYTES_IN: &str = "rafka_bytes_in_total";
/// Bytes sent in response frames, by listener.
pub const BYTES_OUT: &str = "rafka_bytes_out_total";
/// Record batch bytes accepted by Produce.
pub const PRODUCE_BYTES: &str = "rafka_produce_bytes_total";
/// Record batch bytes returned by Fetch.
pub const FETCH_BYTES: &str = "rafka_fetch_bytes_total";
/// Open client connections, by listener.
pub const CONNECTIONS: &str = "rafka_connections";
/// Log end offset of each local partition (rendered per scrape: [`crate::series`]).
pub const LOG_END_OFFSET: &str = "rafka_partition_log_end_offset";
/// Log start offset of each local partition.
pub const LOG_START_OFFSET: &str = "rafka_partition_log_start_offset";
/// High watermark of each local partition.
pub const HIGH_WATERMARK: &str = "rafka_partition_high_watermark";
/// High watermark minus last stable offset of each local partition: the records read_committed
/// consumers cannot read yet because a transaction before them is undecided (Kafka's
/// `LastStableOffsetLag`).
pub const LSO_LAG: &str = "rafka_partition_last_stable_offset_lag";
/// Gauge: dirty bytes over cleanable bytes of a compacted partition (Kafka's dirty ratio).
pub const CLEANER_DIRTY_RATIO: &str = "rafka_log_cleaner_dirty_ratio";
/// Gauge: dirty bytes of a compacted partition the cleaner may clean now (its backlog).
pub const CLEANER_BACKLOG_BYTES: &str = "rafka_log_cleaner_backlog_bytes";
/// Gauge: cleanings of a compacted partition since the node started.
pub const CLEANER_CLEANINGS: &str = "rafka_log_cleaner_cleanings";
/// Gauge: bytes of batches the cleaner read from a partition's cleaned segments since the node
/// started.
pub const CLEANER_BYTES_CLEANED: &str = "rafka_log_cleaner_bytes_cleaned";
/// Gauge: records the cleaner removed from a partition since the node started.
pub const CLEANER_RECORDS_REMOVED: &str = "rafka_log_cleaner_records_removed";
/// Gauge: CPU seconds the cleaner spent on a partition since the node started.
pub const CLEANER_CPU_SECONDS: &str = "rafka_log_cleaner_cpu_seconds";
/// Gauge: wall-clock time of a partition's last cleaning, in ms since the epoch (-1: none yet).
pub const CLEANER_LAST_CLEAN_MS: &str = "rafka_log_cleaner_last_clean_timestamp_ms";
/// Gauge: 1 when the cleaner gave up on a partition (a corrupt batch) until the node restarts.
pub const CLEANER_UNCLEANABLE: &str = "rafka_log_cleaner_uncleanable";
/// Bytes the partition store occupies on disk.
pub const STORAGE_BYTES: &str = "rafka_storage_bytes";
/// Gauge: the cluster's finalized feature level, as this node's metadata image has it.
pub const FEATURE_LEVEL: &str = "rafka_feature_level";
/// Gauge: the highest feature level this node supports (its release, or `--max-feature-level`).
pub const FEATURE_LEVEL_SUPPORTED: &str = "rafka_feature_level_supported";

/// Times a resource limit refused or delayed something, by limit (its flag).
pub const LIMIT_HITS: &str = "rafka_limit_hits_total";
/// Gauge: bytes of requests admitted and not yet answered, by kind (`large`: within
/// `--queued-max-request-bytes`; `small`: admitted without waiting).
pub const REQUEST_BYTES_IN_FLIGHT: &str = "rafka_request_bytes_in_flight";

/// Gauge: partition logs no longer assigned here and not yet deleted (the background deletion).
pub const PARTITION_LOGS_DOOMED: &str = "rafka_partition_logs_doomed";

/// Histogram buckets of request latency, in seconds (50 µs to 10 s).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// Records a handled request.
pub fn request_done(api: ApiKey, elapsed: Duration) {
    let name = format!("{api:?}");
    metrics::counter!(REQUESTS, "api" => name.clone()).increment(1);
    metrics::histogram!(REQUEST_SECONDS, "api" => name).record(elapsed.as_secs_f64());
}

/// Records a refused request.
pub fn unsupported_request(api_key: i16, version: i16) {
    metrics::counter!(UNSUPPORTED_REQUESTS, "api_key" => api_key.to_string(), "version" => version.to_string())
        .increment(1);
}

/// Records bytes read and written on a listener.
pub fn transferred(listener: &'static str, bytes_in: usize, bytes_out: usize) {
    metrics::counter!(BYTES_IN, "listener" => listener).increment(bytes_in as u64);
    metrics::counter!(BYTES_OUT, "listener" => listener).increment(bytes_out as u64);
}

/// Records a hit of the limit set by `flag`.
pub fn limit_hit(flag: &'static str) {
    metrics::counter!(LIMIT_HITS, "limit" => flag).increment(1);
}

/// Records request bytes admitted (`delta` > 0) or given back (< 0), of `kind` (`large`/`small`).
pub fn request_bytes_in_flight(kind: &'static str, delta: f64) {
    metrics::gauge!(REQUEST_BYTES_IN_FLIGHT, "kind" => kind).increment(delta);
}

/// Records produced bytes.
/// Partition logs waiting for the background deletion.
pub fn partition_logs_doomed(count: usize) {
    metrics::gauge!(PARTITION_LOGS_DOOMED).set(count as f64);
}

/// Record batch bytes accepted by Produce.
pub fn produce_bytes(bytes: usize) {
    metrics::counter!(PRODUCE_BYTES).increment(bytes as u64);
}

/// Records fetched bytes.
pub fn fetch_bytes(bytes: usize) {
    metrics::counter!(FETCH_BYTES).increment(bytes as u64);
}

/// Tracks an open connection until dropped.
pub struct ConnectionGauge(&'static str);

impl ConnectionGauge {
    /// Counts a new connection on `listener`.
    pub fn open(listener: &'static str) -> Self {
        metrics::gauge!(CONNECTIONS, "listener" => listener).increment(1.0);
        Self(listener)
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        metrics::gauge!(CONNECTIONS, "listener" => self.0).decrement(1.0);
    }
}

/// Push notices this node published as a partition leader, by kind (`inline`, `extent`).
pub const PUSH_NOTICES: &str = "rafka_push_notices_published_total";
/// Bytes of push messages (notices and summaries) this node published.
pub const PUSH_BYTES: &str = "rafka_push_published_bytes_total";
/// Push messages a home broker dropped for a subscriber whose queue was full.
pub const PUSH_SESSION_DROPPED: &str = "rafka_push_session_dropped_total";
/// Subscriber sessions this node serves.
pub const PUSH_SESSIONS: &str = "rafka_push_sessions";

/// Records a published notice.
pub fn push_notice(inline: bool, bytes: usize) {
    let kind = if inline { "inline" } else { "extent" };
    metrics::counter!(PUSH_NOTICES, "kind" => kind).increment(1);
    metrics::counter!(PUSH_BYTES).increment(bytes as u64);
}

/// Records a published summary.
pub fn push_summary(bytes: usize) {
    metrics::counter!(PUSH_BYTES).increment(bytes as u64);
}

/// Records a message dropped for a full subscriber queue.
pub fn push_session_dropped() {
    metrics::counter!(PUSH_SESSION_DROPPED).increment(1);
}

/// Records the number of sessions.
pub fn push_sessions(count: usize) {
    metrics::gauge!(PUSH_SESSIONS).set(count as f64);
}

/// Gauge: consumer groups this node coordinates, by state.
pub const GROUPS: &str = "rafka_groups";
/// Gauge: members of the groups this node coordinates.
pub const GROUP_MEMBERS: &str = "rafka_group_members";
/// Counter: rebalances started by this node's coordinator.
pub const GROUP_REBALANCES: &str = "rafka_group_rebalances_total";
/// Histogram: OffsetCommit latency on the coordinator (validation, acks=all append, apply), by
/// outcome.
pub const GROUP_COMMIT_SECONDS: &str = "rafka_group_commit_seconds";
/// Gauge: transactional ids this node coordinates, by status (Empty, Ongoing, PrepareCommit,
/// PrepareAbort, CompleteCommit, CompleteAbort).
pub const TXN_IDS: &str = "rafka_txn_transactional_ids";
/// Gauge: open transactions this node coordinates (Ongoing or ending).
pub const TXN_OPEN: &str = "rafka_txn_open_transactions";
/// Gauge: partitions whose commit or abort marker this node's coordinator has yet to write.
pub const TXN_MARKERS_PENDING: &str = "rafka_txn_markers_pending";
/// Counter: transactions ended by this node's coordinator, by outcome (commit, abort).
pub const TXN_ENDED: &str = "rafka_txn_ended_total";
/// Counter: transactions aborted because they outlived their timeout.
pub const TXN_TIMEOUTS: &str = "rafka_txn_timeouts_total";
/// Counter: producers fenced by a newer InitProducerId for their transactional id.
pub const TXN_FENCED: &str = "rafka_txn_fenced_producers_total";
/// Histogram: EndTxn latency on the coordinator (until the decision is replicated), by outcome.
pub const TXN_END_SECONDS: &str = "rafka_txn_end_seconds";
/// Gauge: consumer lag (high watermark minus committed offset) per group and partition, as the
/// coordinator computes it for partitions this node holds a replica of (rendered per scrape
/// within `--max-metric-series`: [`crate::series`]).
pub const GROUP_LAG: &str = "rafka_group_lag";
