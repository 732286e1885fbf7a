//! [`Partitions`]: every partition with a replica on this node, each in one role at a time:
//! leading (a [`Leader`]), following (a follower task) or idle (no leader). The metadata moves
//! them between roles ([`Partitions::apply`] per partition); handlers look up the
//! leaders.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rafka_store::{TopicId, TopicPartition};
use tokio_util::sync::CancellationToken;

use super::core::{FollowerConfig, LeaderConfig, Leadership, PartitionMetadata};
use super::env::Env;
use super::follower::FollowerTask;
use super::leader::Leader;
use crate::ids::{BrokerEpoch, NodeId};

/// How often led partitions are ticked (ISR shrink and expansion, acks=all deadlines).
pub const TICK: Duration = Duration::from_millis(100);

/// The replication settings of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// `replica.lag.time.max.ms`: an in-sync follower not caught up for longer leaves the ISR.
    pub replica_lag_time_max: Duration,
    /// How long an ISR proposal may go unanswered before it is sent again.
    pub alter_partition_retry: Duration,
    /// A follower's pause after a failed request (`replica.fetch.backoff.ms`).
    pub fetch_backoff: Duration,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        let leader = LeaderConfig::default();
        Self {
            replica_lag_time_max: leader.replica_lag_time_max,
            alter_partition_retry: leader.alter_partition_retry,
            fetch_backoff: FollowerConfig::default().retry_backoff,
        }
    }
}

impl ReplicationConfig {
    /// A leader's settings with the topic's `min.insync.replicas`.
    pub fn leader(&self, min_insync_replicas: usize) -> LeaderConfig {
        LeaderConfig {
            min_insync_replicas: min_insync_replicas.max(1),
            replica_lag_time_max: self.replica_lag_time_max,
            alter_partition_retry: self.alter_partition_retry,
        }
    }
}

/// A change of this node's leadership of a partition, as [`Partitions::apply`] reports it: what
/// a coordinator (whose state is the partition's records) acts on.
#[derive(Debug)]
pub enum LeadershipChange<E: Env> {
    /// This node leads the partition now, in the handle's leader epoch.
    Gained(Arc<Leader<E>>),
    /// It no longer leads it (another node does, nobody does, or it is gone from here).
    Lost(TopicPartition),
}

enum Role<E: Env> {
    Leading(Arc<Leader<E>>),
    Following(FollowerTask),
    Idle,
}

struct Replica<E: Env> {
    log: E::Log,
    role: Role<E>,
}

/// The partitions with a replica on this node (cheap to clone).
pub struct Partitions<E: Env> {
    inner: Arc<Inner<E>>,
}

impl<E: Env> Clone for Partitions<E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<E: Env> {
    env: E,
    local: NodeId,
    broker_epoch: BrokerEpoch,
    config: ReplicationConfig,
    replicas: Mutex<HashMap<TopicPartition, Replica<E>>>,
    shutdown: CancellationToken,
}

impl<E: Env> Partitions<E> {
    /// No partitions yet, for node `local` registered in `broker_epoch`. Starts ticking led
    /// partitions every [`TICK`] until `shutdown`.
    pub fn new(
        env: E,
        (local, broker_epoch): (NodeId, BrokerEpoch),
        config: ReplicationConfig,
        shutdown: CancellationToken,
    ) -> Self {
        let partitions = Self {
            inner: Arc::new(Inner {
                env,
                local,
                broker_epoch,
                config,
                replicas: Mutex::new(HashMap::new()),
                shutdown,
            }),
        };
        partitions.start_ticking();
        partitions
    }

    /// The environment the shells run in.
    pub fn env(&self) -> &E {
        &self.inner.env
    }

    /// This node.
    pub fn local(&self) -> NodeId {
        self.inner.local
    }

    /// This node's registration.
    pub fn broker_epoch(&self) -> BrokerEpoch {
        self.inner.broker_epoch
    }

    /// The replication settings.
    pub fn config(&self) -> &ReplicationConfig {
        &self.inner.config
    }

    fn replicas(&self) -> MutexGuard<'_, HashMap<TopicPartition, Replica<E>>> {
        // Entries are replaced whole; a panic elsewhere cannot leave the map torn.
        self.inner
            .replicas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The partition, if this node leads it: the one place a handler asks "am I the leader?".
    pub fn leader(&self, tp: &TopicPartition) -> Option<Arc<Leader<E>>> {
        match self.replicas().get(tp).map(|r| &r.role) {
            Some(Role::Leading(leader)) => Some(leader.clone()),
            _ => None,
        }
    }

    /// Every partition this node leads, in partition order, optionally of one topic only: a
    /// coordinator compares it with the partitions it serves after each metadata change.
    pub fn leaders(&self, topic_id: Option<TopicId>) -> Vec<Arc<Leader<E>>> {
        let mut leaders: Vec<Arc<Leader<E>>> = self
            .replicas()
            .iter()
            .filter(|(tp, _)| topic_id.is_none_or(|id| tp.topic_id == id))
            .filter_map(|(_, replica)| match &replica.role {
                Role::Leading(leader) => Some(leader.clone()),
                _ => None,
            })
            .collect();
        leaders.sort_by_key(|leader| leader.topic_partition().partition);
        leaders
    }

    /// The partitions with a replica here.
    pub fn topic_partitions(&self) -> Vec<TopicPartition> {
        self.replicas().keys().copied().collect()
    }

    /// Brings one partition in line with its metadata: `Some` for a replica on this node (its
    /// log, what the metadata says of it and its leader settings), `None` for one no longer here.
    /// A new leadership (or a new leader epoch) gets a [`Leader`], a lost one resigns (failing
    /// its acks=all waits), another node's leadership gets a follower task (retargeted on a
    /// newer leader epoch). Returns the changes of this node's leadership.
    ///
    /// Calls into a [`Leader`] happen outside the map's lock (they carry out what the core asks,
    /// which may call back into this map), and a kept leadership stays in place throughout, so
    /// a handler never sees it missing. Calls for one partition must not run concurrently (the
    /// node applies metadata images one at a time).
    pub fn apply(
        &self,
        tp: TopicPartition,
        wanted: Option<(E::Log, &PartitionMetadata, LeaderConfig)>,
    ) -> Vec<LeadershipChange<E>> {
        let mut changes = Vec::new();
        let Some((log, metadata, config)) = wanted else {
            let removed = self.replicas().remove(&tp);
            if let Some(replica) = removed {
                self.end_role(tp, replica.role, &mut changes);
            }
            return changes;
        };
        let leads = metadata.leader == self.inner.local;
        let follows = metadata.leader.is_some() && !leads;
        let (leading, log) = {
            let mut replicas = self.replicas();
            let replica = replicas.entry(tp).or_insert_with(|| Replica {
                log,
                role: Role::Idle,
            });
            match &replica.role {
                Role::Following(task) if follows => {
                    task.retarget((metadata.leader, metadata.leader_epoch));
                    return changes;
                }
                Role::Following(task) => {
                    // Stopped before anything else writes this log.
                    task.stop();
                    replica.role = Role::Idle;
                    (None, replica.log.clone())
                }
                Role::Leading(leader) => (Some(leader.clone()), replica.log.clone()),
                Role::Idle => (None, replica.log.clone()),
            }
        };
        if let Some(leader) = &leading
            && leads
            && leader.on_metadata(metadata, config) == Leadership::Kept
        {
            return changes;
        }
        if let Some(leader) = leading {
            self.end_role(tp, Role::Leading(leader), &mut changes);
        }
        let role = self.start_role(tp, &log, (metadata, config), &mut changes);
        let replaced = match self.replicas().get_mut(&tp) {
            Some(replica) => std::mem::replace(&mut replica.role, role),
            // Removed meanwhile (not expected: one caller at a time).
            None => role,
        };
        let mut ended = Vec::new();
        self.end_role(tp, replaced, &mut ended);
        changes
    }

    fn end_role(&self, tp: TopicPartition, role: Role<E>, changes: &mut Vec<LeadershipChange<E>>) {
        match role {
            Role::Leading(leader) => {
                leader.resign();
                changes.push(LeadershipChange::Lost(tp));
            }
            Role::Following(task) => task.stop(),
            Role::Idle => {}
        }
    }

    fn start_role(
        &self,
        tp: TopicPartition,
        log: &E::Log,
        (metadata, config): (&PartitionMetadata, LeaderConfig),
        changes: &mut Vec<LeadershipChange<E>>,
    ) -> Role<E> {
        let inner = &self.inner;
        if metadata.leader == inner.local {
            let local = inner.local;
            match Leader::new(
                inner.env.clone(),
                local,
                tp,
                log.clone(),
                (metadata, config),
            ) {
                Ok(leader) => {
                    tracing::debug!(topic_id = %tp.topic_id, partition = tp.partition, leader_epoch = metadata.leader_epoch.0, isr = ?metadata.isr, "leading partition");
                    changes.push(LeadershipChange::Gained(leader.clone()));
                    Role::Leading(leader)
                }
                Err(e) => {
                    tracing::warn!(topic_id = %tp.topic_id, partition = tp.partition, error = %e, "cannot lead partition");
                    Role::Idle
                }
            }
        } else if metadata.leader.is_some() {
            let config = FollowerConfig {
                retry_backoff: inner.config.fetch_backoff,
            };
            let followed = (metadata.leader, metadata.leader_epoch);
            let stop = inner.shutdown.child_token();
            let task = FollowerTask::start(&inner.env, tp, log.clone(), followed, config, stop);
            Role::Following(task)
        } else {
            Role::Idle
        }
    }

    /// Ticks every led partition: acks=all deadlines, ISR changes, proposals sent again.
    pub fn tick(&self) {
        let leaders = self.leaders(None);
        for leader in leaders {
            leader.tick();
        }
    }

    fn start_ticking(&self) {
        let this = self.clone();
        let env = self.inner.env.clone();
        let shutdown = self.inner.shutdown.clone();
        self.inner.env.spawn(async move {
            let mut next = env.now();
            loop {
                next += TICK;
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return,
                    () = env.sleep_until(next) => this.tick(),
                }
            }
        });
    }

    /// Cancelled when the partitions stop (background work ends with it).
    pub(super) fn stopped(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Stops everything (shutdown, or a node's crash in the simulation): leaderships resign
    /// (acks=all waits answer NOT_LEADER_OR_FOLLOWER at once), follower tasks and the ticker
    /// end.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let replicas: Vec<(TopicPartition, Replica<E>)> = self.replicas().drain().collect();
        let mut changes = Vec::new();
        for (tp, replica) in replicas {
            self.end_role(tp, replica.role, &mut changes);
        }
    }
}
