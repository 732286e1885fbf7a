//! Producer ids for idempotent producers, handed out from blocks reserved in the metadata log so
//! that a new producer costs no metadata write most of the time.

use std::sync::{Arc, Mutex};

use crate::metadata::{Metadata, MetadataCommand, MetadataError, Outcome};

/// Ids reserved per metadata write.
const BLOCK: i64 = 1000;

/// Producer id allocator (cheap to clone).
#[derive(Clone)]
pub struct ProducerIds {
    metadata: Metadata,
    block: Arc<Mutex<(i64, i64)>>,
    refill: Arc<tokio::sync::Mutex<()>>,
}

impl ProducerIds {
    /// An allocator with no block reserved yet.
    pub fn new(metadata: Metadata) -> Self {
        Self {
            metadata,
            block: Arc::new(Mutex::new((0, 0))),
            refill: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// A producer id never handed out before, in this cluster.
    pub async fn next(&self) -> Result<i64, MetadataError> {
        loop {
            if let Some(id) = self.take() {
                return Ok(id);
            }
            let _refilling = self.refill.lock().await;
            if self.has_ids() {
                continue;
            }
            let outcome = self
                .metadata
                .propose(MetadataCommand::AllocateProducerIds { count: BLOCK })
                .await?;
            if let Outcome::ProducerIds { first } = outcome {
                *self.lock() = (first, first + BLOCK);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (i64, i64)> {
        // A poisoned lock only means another thread panicked mid-update of two integers that are
        // always written together; the values are still consistent.
        self.block
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn has_ids(&self) -> bool {
        let (next, end) = *self.lock();
        next < end
    }

    fn take(&self) -> Option<i64> {
        let mut block = self.lock();
        let (next, end) = *block;
        (next < end).then(|| {
            block.0 += 1;
            next
        })
    }
}
