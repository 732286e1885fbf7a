//! The metadata service: orders commands, persists the image, publishes it.
//!
//! Single-voter stage: the image is persisted (fsynced) in its own fjall Database after every
//! command, so its fsyncs never queue behind partition data. Proposals are serialised by one async
//! mutex; readers never wait: they take the current `Arc<MetadataImage>` from a watch channel.

use std::path::Path;
use std::sync::Arc;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use tokio::sync::{Mutex, watch};

use super::{MetadataCommand, MetadataError, MetadataImage, Outcome};

const IMAGE_KEY: &[u8] = b"image";
/// Version tag in front of the encoded image; bump when the encoding changes.
const FORMAT: u8 = 1;

/// Handle to the metadata service (cheap to clone).
#[derive(Clone)]
pub struct Metadata {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    images: Keyspace,
    proposals: Mutex<()>,
    current: watch::Sender<Arc<MetadataImage>>,
}

impl std::fmt::Debug for Metadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metadata")
            .field("version", &self.image().version)
            .finish()
    }
}

fn storage(e: impl std::fmt::Display) -> MetadataError {
    MetadataError::Storage(e.to_string())
}

impl Metadata {
    /// Opens (or creates) the metadata store in `dir` and loads the last image.
    pub fn open(dir: &Path) -> Result<Self, MetadataError> {
        let db = Database::builder(dir).open().map_err(storage)?;
        let images = db
            .keyspace("image", KeyspaceCreateOptions::default)
            .map_err(storage)?;
        let image = match images.get(IMAGE_KEY).map_err(storage)? {
            Some(bytes) => decode(&bytes)?,
            None => MetadataImage::default(),
        };
        let (current, _) = watch::channel(Arc::new(image));
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                images,
                proposals: Mutex::new(()),
                current,
            }),
        })
    }

    /// The current image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.inner.current.borrow().clone()
    }

    /// Every future image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.inner.current.subscribe()
    }

    /// Applies `command`, persists the result durably, then publishes it.
    pub async fn propose(&self, command: MetadataCommand) -> Result<Outcome, MetadataError> {
        let _ordered = self.inner.proposals.lock().await;
        let mut next = MetadataImage::clone(&self.image());
        let outcome = next.apply(&command)?;
        let encoded = encode(&next)?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || -> Result<(), MetadataError> {
            inner.images.insert(IMAGE_KEY, encoded).map_err(storage)?;
            inner.db.persist(PersistMode::SyncAll).map_err(storage)
        })
        .await
        .map_err(storage)??;
        tracing::debug!(version = next.version, ?command, "metadata applied");
        self.inner.current.send_replace(Arc::new(next));
        Ok(outcome)
    }
}

fn encode(image: &MetadataImage) -> Result<Vec<u8>, MetadataError> {
    let mut out = vec![FORMAT];
    let body =
        bincode::serde::encode_to_vec(image, bincode::config::standard()).map_err(storage)?;
    out.extend_from_slice(&body);
    Ok(out)
}

fn decode(bytes: &[u8]) -> Result<MetadataImage, MetadataError> {
    match bytes.split_first() {
        Some((&FORMAT, body)) => {
            let (mut image, _): (MetadataImage, usize) =
                bincode::serde::decode_from_slice(body, bincode::config::standard())
                    .map_err(|e| storage(format!("corrupt metadata image: {e}")))?;
            image.rebuild_indexes();
            Ok(image)
        }
        Some((other, _)) => Err(storage(format!("unknown metadata format version {other}"))),
        None => Err(storage("empty metadata image")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[tokio::test]
    async fn the_image_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let topic_id = uuid::Uuid::new_v4();
        {
            let metadata = Metadata::open(dir.path()).unwrap();
            let updates = metadata.subscribe();
            metadata
                .propose(MetadataCommand::Form {
                    cluster_id: "abc".into(),
                })
                .await
                .unwrap();
            assert!(updates.has_changed().unwrap());
            metadata
                .propose(MetadataCommand::RegisterNode {
                    peer_id: "p".into(),
                    kafka_host: "h".into(),
                    kafka_port: 1,
                })
                .await
                .unwrap();
            metadata
                .propose(MetadataCommand::CreateTopic {
                    name: "t".into(),
                    topic_id,
                    partitions: 2,
                    replication_factor: 1,
                    configs: BTreeMap::new(),
                    internal: false,
                })
                .await
                .unwrap();
            assert!(
                metadata
                    .propose(MetadataCommand::DeleteTopic {
                        topic_id: uuid::Uuid::nil()
                    })
                    .await
                    .is_err()
            );
        }
        let reopened = Metadata::open(dir.path()).unwrap();
        let image = reopened.image();
        assert_eq!(image.cluster_id, "abc");
        assert_eq!(image.version, 3);
        assert_eq!(image.topic_by_id(&topic_id).unwrap().partitions.len(), 2);
    }

    #[test]
    fn garbage_images_are_errors_not_panics() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[9, 1, 2]).is_err());
        assert!(decode(&[FORMAT, 0xff, 0xff, 0xff]).is_err());
    }
}
