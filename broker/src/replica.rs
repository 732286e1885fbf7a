//! Keeps this node's partition logs in line with the metadata image: creates the logs of partitions
//! assigned here, applies config changes, and deletes logs of partitions no longer assigned here.

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
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || apply(&store, desired))
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
