//! Keeps this node's partition logs in line with the metadata image: creates the logs of partitions
//! assigned here, applies config changes, and deletes logs of partitions no longer assigned here.
//!
//! A partition this node leads whose ISR is this node alone has its high watermark at its log end,
//! as Kafka's leader computes it (the minimum log end over the ISR). The store checkpoints the high
//! watermark only now and then, so after a crash the recovered log end is ahead of it: without
//! this, records acknowledged before a SIGKILL would stay invisible until the next append.

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
}

impl Replicas {
    /// A reconciler for `local`'s partitions.
    pub fn new(store: Store, local: NodeId, defaults: TopicDefaults) -> Self {
        Self {
            store,
            local,
            defaults,
            applied: Arc::new(Mutex::new(0)),
        }
    }

    /// Brings the store in line with `image`. Idempotent; concurrent calls are serialised and an
    /// image older than one already applied is skipped.
    pub async fn reconcile(&self, image: &MetadataImage) -> Result<(), StoreError> {
        let mut applied = self.applied.lock().await;
        if image.version < *applied {
            return Ok(());
        }
        let desired = self.desired(image);
        let sole_replica = self.sole_in_sync_leader(image);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            apply(&store, desired)?;
            advance_to_log_end(&store, &sole_replica)
        })
        .await
        .map_err(|e| {
            StoreError::Io(std::io::Error::other(format!("reconcile task failed: {e}")))
        })??;
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

    /// Partitions this node leads with an ISR of this node alone.
    fn sole_in_sync_leader(&self, image: &MetadataImage) -> Vec<TopicPartition> {
        image
            .topics()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .filter(|p| p.leader == self.local && p.isr == [self.local])
                    .map(|p| TopicPartition {
                        topic_id: topic.id,
                        partition: p.index,
                    })
            })
            .collect()
    }
}

/// Moves the high watermark of each of `partitions` to its log end.
fn advance_to_log_end(store: &Store, partitions: &[TopicPartition]) -> Result<(), StoreError> {
    for tp in partitions {
        if let Some(log) = store.partition(*tp) {
            log.advance_high_watermark(log.log_end_offset())?;
        }
    }
    Ok(())
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
