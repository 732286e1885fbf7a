//! Keeps this node's partition logs in line with the metadata image: creates the logs of partitions
//! assigned here, applies config changes, and deletes logs of partitions no longer assigned here;
//! then hands the image to the replication shells: [`Leaders`] for the partitions this node leads
//! and [`Followers`] for those it follows.
//!
//! A partition this node leads whose ISR is this node alone has its high watermark at its log end,
//! as Kafka's leader computes it (the minimum log end over the ISR): the store checkpoints the high
//! watermark only now and then, so after a crash the recovered log end is ahead of it, and the
//! leader state moves it up at once.

mod follower;
mod leaders;
mod peer;

pub use follower::Followers;
pub use leaders::{AckWait, Leaders, Led, TICK};
pub use peer::Peers;

use std::collections::HashMap;
use std::sync::Arc;

use rafka_store::{LogConfig, Store, StoreError, TopicPartition};
use tokio::sync::Mutex;

use crate::metadata::{MetadataImage, NodeId, TopicDefaults, topic_config};

/// Reconciles partition logs with the metadata (cheap to clone).
#[derive(Clone)]
pub struct Replicas {
    store: Store,
    local: NodeId,
    defaults: TopicDefaults,
    applied: Arc<Mutex<u64>>,
    leaders: Leaders,
    followers: Followers,
}

impl Replicas {
    /// A reconciler for `local`'s partitions, with the replication shells.
    pub fn new(
        store: Store,
        local: NodeId,
        defaults: TopicDefaults,
        leaders: Leaders,
        followers: Followers,
    ) -> Self {
        Self {
            store,
            local,
            defaults,
            applied: Arc::new(Mutex::new(0)),
            leaders,
            followers,
        }
    }

    /// The partitions this node leads.
    pub fn leaders(&self) -> &Leaders {
        &self.leaders
    }

    /// Brings the store in line with `image`. Idempotent; concurrent calls are serialised and an
    /// image older than one already applied is skipped.
    pub async fn reconcile(&self, image: &MetadataImage) -> Result<(), StoreError> {
        let mut applied = self.applied.lock().await;
        if image.version < *applied {
            return Ok(());
        }
        let desired = self.desired(image);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || apply(&store, desired))
            .await
            .map_err(|e| {
                StoreError::Io(std::io::Error::other(format!("reconcile task failed: {e}")))
            })??;
        let logs = |tp| self.store.partition(tp);
        self.leaders.sync(image, logs);
        self.followers.sync(image, logs);
        *applied = image.version;
        Ok(())
    }

    fn desired(&self, image: &MetadataImage) -> HashMap<TopicPartition, LogConfig> {
        let mut desired = HashMap::new();
        for topic in image.topics() {
            let config = topic_config::log_config(&topic.configs, &self.defaults);
            for partition in &topic.partitions {
                if partition.replicas.contains(&self.local) {
                    let tp = TopicPartition {
                        topic_id: topic.id,
                        partition: partition.index,
                    };
                    desired.insert(tp, config.clone());
                }
            }
        }
        desired
    }
}

fn apply(store: &Store, mut desired: HashMap<TopicPartition, LogConfig>) -> Result<(), StoreError> {
    for log in store.partitions() {
        let tp = log.topic_partition();
        match desired.remove(&tp) {
            Some(config) if config != log.config() => {
                tracing::info!(topic_id = %tp.topic_id, partition = tp.partition, "topic config changed");
                store.set_log_config(tp, config)?;
            }
            Some(_) => {}
            None => {
                tracing::info!(topic_id = %tp.topic_id, partition = tp.partition, "deleting partition log");
                store.delete_partition(tp)?;
            }
        }
    }
    for (tp, config) in desired {
        tracing::info!(topic_id = %tp.topic_id, partition = tp.partition, "creating partition log");
        store.create_partition(tp, config)?;
    }
    Ok(())
}
