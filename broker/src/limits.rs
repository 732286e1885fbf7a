//! The node's resource limits, and the one log line each time one is hit.
//!
//! Every limit is a flag with a finite default (see docs/operations.md, "Limits"). When a limit
//! refuses or delays something, [`hit`] counts it (`rafka_limit_hits_total{limit}`) and logs one
//! warning naming the limit and its flag; further hits of the same limit within a minute are only
//! counted, and the next line says how many there were, so a flood of refused requests is a few
//! lines, not a flood of lines.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::metrics;

/// Further hits of one limit within this time after a logged one are counted, not logged.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

/// A resource limit of the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// A request larger than `--max-request-bytes` (the connection is closed).
    RequestSize,
    /// Large requests wait for `--queued-max-request-bytes`.
    RequestBudget,
    /// A connection refused by `--max-connections-per-ip`.
    ConnectionsPerAddress,
    /// A p2p connection refused by `--p2p-max-connections-per-peer`.
    P2pConnectionsPerPeer,
    /// A p2p connection refused by `--p2p-max-pending-connections`.
    P2pPendingConnections,
    /// A p2p connection refused by `--p2p-max-incoming-connections`.
    P2pIncomingConnections,
    /// A CreateTopics over `--max-partitions-per-request`.
    PartitionsPerRequest,
    /// A topic refused by `--max-partitions-per-node`.
    PartitionsPerNode,
    /// Per-partition or per-group metric series left out by `--max-metric-series`.
    MetricSeries,
}

impl Limit {
    const ALL: [Limit; 9] = [
        Limit::RequestSize,
        Limit::RequestBudget,
        Limit::ConnectionsPerAddress,
        Limit::P2pConnectionsPerPeer,
        Limit::P2pPendingConnections,
        Limit::P2pIncomingConnections,
        Limit::PartitionsPerRequest,
        Limit::PartitionsPerNode,
        Limit::MetricSeries,
    ];

    /// The flag that sets it.
    pub fn flag(self) -> &'static str {
        match self {
            Limit::RequestSize => "--max-request-bytes",
            Limit::RequestBudget => "--queued-max-request-bytes",
            Limit::ConnectionsPerAddress => "--max-connections-per-ip",
            Limit::P2pConnectionsPerPeer => "--p2p-max-connections-per-peer",
            Limit::P2pPendingConnections => "--p2p-max-pending-connections",
            Limit::P2pIncomingConnections => "--p2p-max-incoming-connections",
            Limit::PartitionsPerRequest => "--max-partitions-per-request",
            Limit::PartitionsPerNode => "--max-partitions-per-node",
            Limit::MetricSeries => "--max-metric-series",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|l| *l == self).unwrap_or(0)
    }
}

/// When each limit was last logged, and its hits since.
#[derive(Clone, Copy)]
struct Window {
    logged: Option<Instant>,
    unlogged: u64,
}

static WINDOWS: [Mutex<Window>; Limit::ALL.len()] = [const {
    Mutex::new(Window {
        logged: None,
        unlogged: 0,
    })
}; Limit::ALL.len()];

/// The mesh's connection limits, counted and logged as the node's other limits.
#[derive(Debug)]
pub struct MeshLimitHits;

impl rafka_mesh::LimitHits for MeshLimitHits {
    fn hit(&self, limit: rafka_mesh::ConnectionLimit, what: &str) {
        let limit = match limit {
            rafka_mesh::ConnectionLimit::PerPeer => Limit::P2pConnectionsPerPeer,
            rafka_mesh::ConnectionLimit::PendingIncoming => Limit::P2pPendingConnections,
            rafka_mesh::ConnectionLimit::EstablishedIncoming => Limit::P2pIncomingConnections,
        };
        hit(limit, format_args!("{what}"));
    }
}

/// Records a hit of `limit`; `what` says what it refused or delayed.
pub fn hit(limit: Limit, what: fmt::Arguments<'_>) {
    metrics::limit_hit(limit.flag());
    let now = Instant::now();
    let unlogged = {
        let Some(window) = WINDOWS.get(limit.index()) else {
            return;
        };
        let mut window = window.lock().unwrap_or_else(|e| e.into_inner());
        if window
            .logged
            .is_some_and(|at| now.duration_since(at) < LOG_EVERY)
        {
            window.unlogged += 1;
            return;
        }
        let unlogged = window.unlogged;
        *window = Window {
            logged: Some(now),
            unlogged: 0,
        };
        unlogged
    };
    if unlogged > 0 {
        tracing::warn!(
            limit = limit.flag(),
            "limit hit: {what} (and {unlogged} more times since the last line)"
        );
    } else {
        tracing::warn!(limit = limit.flag(), "limit hit: {what}");
    }
}
