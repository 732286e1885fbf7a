//! The leader side of replication on this node: one [`LeaderState`] per partition it leads, fed
//! by produce (appends and acks=all waits), follower fetches and a ticker, and carrying out what
//! the core asks (high watermarks on the store, AlterPartition proposals, acks).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rafka_store::{PartitionLog, TopicPartition};
use tokio::sync::oneshot;

use crate::ids::{BrokerEpoch, LeaderEpoch, Offset};
use crate::metadata::{
    IsrMember, Metadata, MetadataCommand, MetadataError, MetadataImage, NodeId, TopicDefaults,
    TopicImage, topic_config,
};
use crate::replication::{
    AlterPartition, AlterPartitionRefusal, LeaderConfig, LeaderOutput, LeaderState, Leadership,
    PartitionMetadata, ReplicaError, WaiterId,
};

/// How often leader states are ticked (ISR shrink and expansion, waiter deadlines).
pub const TICK: Duration = Duration::from_millis(100);

/// An acks=all wait: resolves when the in-sync replicas have the records, or why not.
pub type AckWait = oneshot::Receiver<Result<(), ReplicaError>>;

/// One partition this node leads.
pub struct Led {
    tp: TopicPartition,
    log: PartitionLog,
    state: Mutex<LeaderState>,
    waiters: Mutex<HashMap<WaiterId, oneshot::Sender<Result<(), ReplicaError>>>>,
}

impl Led {
    fn state(&self) -> MutexGuard<'_, LeaderState> {
        // The core never panics half-way through a change; a poisoned lock holds a whole state.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn waiters(
        &self,
    ) -> MutexGuard<'_, HashMap<WaiterId, oneshot::Sender<Result<(), ReplicaError>>>> {
        self.waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The partitions this node leads (cheap to clone).
#[derive(Clone)]
pub struct Leaders {
    inner: Arc<Inner>,
}

struct Inner {
    local: NodeId,
    started: Instant,
    metadata: Metadata,
    defaults: TopicDefaults,
    lag_max: Duration,
    map: Mutex<HashMap<TopicPartition, Arc<Led>>>,
    next_waiter: std::sync::atomic::AtomicU64,
}

impl Leaders {
    /// No partitions led yet.
    pub fn new(
        local: NodeId,
        metadata: Metadata,
        defaults: TopicDefaults,
        lag_max: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                local,
                started: Instant::now(),
                metadata,
                defaults,
                lag_max,
                map: Mutex::new(HashMap::new()),
                next_waiter: std::sync::atomic::AtomicU64::new(1),
            }),
        }
    }

    fn now(&self) -> Duration {
        self.inner.started.elapsed()
    }

    fn map(&self) -> MutexGuard<'_, HashMap<TopicPartition, Arc<Led>>> {
        self.inner
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn config(&self, topic: &TopicImage) -> LeaderConfig {
        let min_isr = topic_config::min_insync_replicas(&topic.configs, &self.inner.defaults);
        LeaderConfig {
            min_insync_replicas: usize::try_from(min_isr).unwrap_or(1).max(1),
            replica_lag_time_max: self.inner.lag_max,
            ..LeaderConfig::default()
        }
    }

    /// The state of a partition this node leads, if it does.
    pub fn get(&self, tp: &TopicPartition) -> Option<Arc<Led>> {
        self.map().get(tp).cloned()
    }

    /// Brings the led partitions in line with `image`: new leaderships get a state, changed
    /// ones are told, lost ones resign (failing their acks=all waits).
    pub fn sync(
        &self,
        image: &MetadataImage,
        logs: impl Fn(TopicPartition) -> Option<PartitionLog>,
    ) {
        let now = self.now();
        let mut wanted: HashMap<TopicPartition, (PartitionMetadata, LeaderConfig)> = HashMap::new();
        for topic in image.topics() {
            for p in &topic.partitions {
                if p.leader == self.inner.local {
                    let tp = TopicPartition {
                        topic_id: topic.id,
                        partition: p.index,
                    };
                    wanted.insert(
                        tp,
                        (
                            PartitionMetadata::from_image(p, &image.nodes),
                            self.config(topic),
                        ),
                    );
                }
            }
        }
        let mut touched = Vec::new();
        {
            let mut map = self.map();
            map.retain(|tp, led| {
                let keep = match wanted.get(tp) {
                    Some((metadata, config)) => {
                        led.state().on_metadata(metadata, *config, now) == Leadership::Kept
                    }
                    None => {
                        led.state().resign();
                        false
                    }
                };
                touched.push(led.clone());
                keep
            });
            for (tp, (metadata, config)) in wanted {
                if map.contains_key(&tp) {
                    continue;
                }
                let Some(log) = logs(tp) else { continue };
                match LeaderState::new(self.inner.local, &metadata, config, &log, now) {
                    Ok(state) => {
                        tracing::info!(topic_id = %tp.topic_id, partition = tp.partition, leader_epoch = metadata.leader_epoch.0, isr = ?metadata.isr, "leading partition");
                        let led = Arc::new(Led {
                            tp,
                            log,
                            state: Mutex::new(state),
                            waiters: Mutex::new(HashMap::new()),
                        });
                        touched.push(led.clone());
                        map.insert(tp, led);
                    }
                    Err(e) => {
                        tracing::warn!(topic_id = %tp.topic_id, partition = tp.partition, error = %e, "cannot lead partition")
                    }
                }
            }
        }
        for led in touched {
            self.drain(&led);
        }
    }

    /// Produce admission for acks=all (`min.insync.replicas`).
    pub fn admit(&self, led: &Led, acks_all: bool) -> Result<(), ReplicaError> {
        led.state().can_append(acks_all)
    }

    /// Records an append ending at `last_offset`; with `acks_all`, returns the wait for the
    /// in-sync replicas (failing after `timeout`).
    pub fn appended(
        &self,
        led: &Arc<Led>,
        last_offset: Offset,
        acks_all: bool,
        timeout: Duration,
    ) -> Option<AckWait> {
        let now = self.now();
        let wait = {
            let mut state = led.state();
            state.on_local_append(Offset(led.log.log_end_offset()).max(last_offset.next()));
            acks_all.then(|| {
                let id = WaiterId(
                    self.inner
                        .next_waiter
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                );
                let (tx, rx) = oneshot::channel();
                led.waiters().insert(id, tx);
                state.add_waiter(id, last_offset.next(), now + timeout);
                rx
            })
        };
        self.drain(led);
        wait
    }

    /// A follower's fetch at `fetch_offset`, refused or recorded (the answer carries the store's
    /// high watermark, which this keeps current).
    pub fn follower_fetch(
        &self,
        led: &Arc<Led>,
        replica: NodeId,
        broker_epoch: BrokerEpoch,
        leader_epoch: LeaderEpoch,
        fetch_offset: Offset,
    ) -> Result<(), ReplicaError> {
        let now = self.now();
        let result = {
            let mut state = led.state();
            // Appends that did not come through produce (group offsets) count too.
            state.on_local_append(Offset(led.log.log_end_offset()));
            state.on_follower_fetch(replica, broker_epoch, leader_epoch, fetch_offset, now)
        };
        self.drain(led);
        result
    }

    /// Ticks every led partition: waiter deadlines, ISR changes, proposals sent again.
    pub fn tick(&self) {
        let now = self.now();
        let all: Vec<Arc<Led>> = self.map().values().cloned().collect();
        for led in all {
            {
                let mut state = led.state();
                state.on_local_append(Offset(led.log.log_end_offset()));
                state.tick(now);
            }
            self.drain(&led);
        }
    }

    /// Resigns every leadership (shutdown): acks=all waits fail with NOT_LEADER_OR_FOLLOWER.
    pub fn resign_all(&self) {
        let all: Vec<Arc<Led>> = self.map().drain().map(|(_, led)| led).collect();
        for led in all {
            led.state().resign();
            self.drain(&led);
        }
    }

    /// Carries out what the core asked for.
    fn drain(&self, led: &Arc<Led>) {
        let outputs: Vec<LeaderOutput> = {
            let mut state = led.state();
            std::iter::from_fn(|| state.poll_output()).collect()
        };
        for output in outputs {
            match output {
                LeaderOutput::HighWatermark(hw) => {
                    if let Err(e) = led.log.advance_high_watermark(hw.0) {
                        tracing::warn!(topic_id = %led.tp.topic_id, partition = led.tp.partition, error = %e, "cannot advance the high watermark");
                    }
                }
                LeaderOutput::Acked { waiter, result } => {
                    if let Some(tx) = led.waiters().remove(&waiter) {
                        let _ = tx.send(result);
                    }
                }
                LeaderOutput::AlterPartition(proposal) => self.propose(led, proposal),
            }
        }
    }

    fn propose(&self, led: &Arc<Led>, proposal: AlterPartition) {
        let this = self.clone();
        let led = led.clone();
        tracing::info!(topic_id = %led.tp.topic_id, partition = led.tp.partition, isr = ?proposal.isr, "proposing an ISR change");
        let command = MetadataCommand::AlterPartition {
            topic_id: led.tp.topic_id,
            partition: led.tp.partition,
            leader: proposal.leader,
            leader_epoch: proposal.leader_epoch.0,
            partition_epoch: proposal.partition_epoch.0,
            isr: proposal
                .isr
                .iter()
                .map(|e| IsrMember {
                    node: e.node,
                    broker_epoch: e.broker_epoch.0,
                })
                .collect(),
        };
        tokio::spawn(async move {
            match this.inner.metadata.propose(command).await {
                Ok(_) => {}
                Err(
                    e @ (MetadataError::StalePartition(_) | MetadataError::IneligibleReplica(_)),
                ) => {
                    tracing::info!(topic_id = %led.tp.topic_id, partition = led.tp.partition, error = %e, "ISR change refused");
                    let refusal = if matches!(e, MetadataError::StalePartition(_)) {
                        AlterPartitionRefusal::StaleEpoch
                    } else {
                        AlterPartitionRefusal::Ineligible
                    };
                    let now = this.now();
                    led.state()
                        .on_alter_partition_refused(&proposal, refusal, now);
                    this.drain(&led);
                }
                // Not committed (yet): the core proposes again when no answer comes.
                Err(e) => tracing::debug!(error = %e, "ISR change not committed"),
            }
        });
    }
}
