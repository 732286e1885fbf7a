//! Keeps this node's partitions in line with each metadata image: creates the logs of partitions
//! assigned here and applies config changes (on the store), moves each partition into its role
//! ([`Partitions::apply`]), then has the logs of partitions no longer here deleted in the
//! background ([`NodeEnv::delete_in_background`]), so a large deleted topic holds up neither the
//! next image nor the requests waiting for it.
//!
//! A partition this node leads whose ISR is this node alone has its high watermark at its log end,
//! as Kafka's leader computes it (the minimum log end over the ISR): the store checkpoints the high
//! watermark only now and then, so after a crash the recovered log end is ahead of it, and the
//! leader state moves it up at once.

use std::collections::{BTreeSet, HashMap, HashSet};

use rafka_store::{LogConfig, Store, StoreError, TopicPartition};

use super::core::PartitionMetadata;
use super::node_env::NodeEnv;
use super::partitions::{LeadershipChange, Partitions};
use crate::metadata::{MetadataImage, topic_config};

impl Partitions<NodeEnv> {
    /// Brings the store and the partitions' roles in line with `image`; returns the changes of
    /// this node's leaderships. Idempotent; concurrent calls are serialised and an image older
    /// than one already applied is skipped.
    pub async fn reconcile(
        &self,
        image: &MetadataImage,
    ) -> Result<Vec<LeadershipChange<NodeEnv>>, StoreError> {
        let mut applied = self.env().applied().lock().await;
        if image.version < *applied {
            return Ok(Vec::new());
        }
        let desired = self.desired(image);
        let store = self.env().store().clone();
        // Waits for the background deletion's current batch at most.
        let mut doomed = self.env().doomed().lock().await;
        let queued = std::mem::take(&mut *doomed);
        let (queued, applied_to_store) =
            tokio::task::spawn_blocking(move || apply(&store, desired, queued))
                .await
                .map_err(|e| {
                    StoreError::Io(std::io::Error::other(format!("reconcile task failed: {e}")))
                })?;
        *doomed = queued;
        applied_to_store?;
        // Out of their roles before the background task may delete their logs.
        let changes = self.sync(image);
        let deleting = !doomed.is_empty();
        drop(doomed);
        if deleting {
            self.env().delete_in_background(self.stopped());
        }
        *applied = image.version;
        Ok(changes)
    }

    /// Each partition with a replica here into its role; the others out.
    fn sync(&self, image: &MetadataImage) -> Vec<LeadershipChange<NodeEnv>> {
        let local = self.local();
        let mut changes = Vec::new();
        let mut here = HashSet::new();
        for topic in image.topics() {
            let min_insync =
                topic_config::min_insync_replicas(&topic.configs, self.env().defaults());
            let config = self
                .config()
                .leader(usize::try_from(min_insync).unwrap_or(1));
            for p in topic
                .partitions
                .iter()
                .filter(|p| p.replicas.contains(&local))
            {
                let tp = TopicPartition {
                    topic_id: topic.id,
                    partition: p.index,
                };
                let Some(log) = self.env().store().partition(tp) else {
                    continue;
                };
                here.insert(tp);
                let metadata = PartitionMetadata::from_image(p, &image.nodes);
                changes.extend(self.apply(tp, Some((log, &metadata, config))));
            }
        }
        for tp in self.topic_partitions() {
            if !here.contains(&tp) {
                changes.extend(self.apply(tp, None));
            }
        }
        changes
    }

    fn desired(&self, image: &MetadataImage) -> HashMap<TopicPartition, LogConfig> {
        let mut desired = HashMap::new();
        for topic in image.topics() {
            let config = topic_config::log_config(&topic.configs, self.env().defaults());
            for partition in &topic.partitions {
                if partition.replicas.contains(&self.local()) {
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

/// Applies config changes and creates the logs assigned here; dooms (adds to `doomed`) the logs
/// no longer assigned here, which the background task deletes, and spares a doomed log assigned
/// here again.
fn apply(
    store: &Store,
    mut desired: HashMap<TopicPartition, LogConfig>,
    mut doomed: BTreeSet<TopicPartition>,
) -> (BTreeSet<TopicPartition>, Result<(), StoreError>) {
    let result = apply_to(store, &mut desired, &mut doomed);
    (doomed, result)
}

fn apply_to(
    store: &Store,
    desired: &mut HashMap<TopicPartition, LogConfig>,
    doomed: &mut BTreeSet<TopicPartition>,
) -> Result<(), StoreError> {
    let mut newly_doomed = 0usize;
    for log in store.partitions() {
        let tp = log.topic_partition();
        match desired.remove(&tp) {
            Some(config) => {
                doomed.remove(&tp);
                if config != log.config() {
                    tracing::debug!(topic_id = %tp.topic_id, partition = tp.partition, "topic config changed");
                    store.set_log_config(tp, config)?;
                }
            }
            None => {
                if doomed.insert(tp) {
                    newly_doomed += 1;
                }
            }
        }
    }
    if newly_doomed > 0 {
        tracing::info!(
            logs = newly_doomed,
            "partition logs no longer assigned here; deleting them in the background"
        );
    }
    for (tp, config) in desired.drain() {
        tracing::debug!(topic_id = %tp.topic_id, partition = tp.partition, "creating partition log");
        store.create_partition(tp, config)?;
    }
    Ok(())
}
