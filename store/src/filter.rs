//! fjall compaction filters on the `index` and `producers` keyspaces.
//!
//! They drop entries of partitions that no longer exist and entries wholly below a partition's
//! log start. This is where filters fit: those keyspaces are small and rewritten by compaction.
//! The log data itself is never left to a filter (ever-increasing keys may never be compacted);
//! it goes away with whole segment keyspaces. Until recovery has registered every partition
//! the filters keep everything. They hold only a `Weak` reference to the registry, so they
//! never keep the store's state (and its fjall handles) alive.

use crate::TopicPartition;
use crate::codec::decode_producer;
use crate::keys::{self, parse_entry_key};
use crate::shared::Registry;
use fjall::compaction::filter::{CompactionFilter, Context, Factory, ItemAccessor, Verdict};
use std::sync::{Arc, Weak};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Index,
    Producers,
}

struct LogStartFactory {
    registry: Weak<Registry>,
    kind: Kind,
}

/// What `DatabaseBuilder::with_compaction_filter_factories` takes.
pub(crate) type Assigner = Arc<dyn Fn(&str) -> Option<Arc<dyn Factory>> + Send + Sync>;

/// The assigner: filters for `index` and `producers`, none elsewhere.
pub(crate) fn assigner(registry: &Arc<Registry>) -> Assigner {
    let weak = Arc::downgrade(registry);
    Arc::new(move |name: &str| {
        let kind = match name {
            keys::KS_INDEX => Kind::Index,
            keys::KS_PRODUCERS => Kind::Producers,
            _ => return None,
        };
        let factory: Arc<dyn Factory> = Arc::new(LogStartFactory {
            registry: weak.clone(),
            kind,
        });
        Some(factory)
    })
}

impl Factory for LogStartFactory {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Index => "rafka-index-log-start",
            Kind::Producers => "rafka-producers-log-start",
        }
    }

    fn make_filter(&self, _ctx: &Context) -> Box<dyn CompactionFilter> {
        Box::new(LogStartFilter {
            registry: self.registry.upgrade().filter(|r| r.is_ready()),
            kind: self.kind,
            last: None,
            removed: 0,
        })
    }
}

struct LogStartFilter {
    registry: Option<Arc<Registry>>,
    kind: Kind,
    /// Last partition looked up and its log start (entries arrive in key order).
    last: Option<(TopicPartition, Option<i64>)>,
    removed: u64,
}

impl LogStartFilter {
    fn log_start(&mut self, registry: &Registry, tp: TopicPartition) -> Option<i64> {
        match self.last {
            Some((cached, start)) if cached == tp => start,
            _ => {
                let start = registry.log_start(&tp);
                self.last = Some((tp, start));
                start
            }
        }
    }
}

impl CompactionFilter for LogStartFilter {
    fn filter_item(&mut self, item: ItemAccessor<'_>, _ctx: &Context) -> lsm_result::Result {
        let Some(registry) = self.registry.clone() else {
            return Ok(Verdict::Keep);
        };
        let Some((tp, n)) = parse_entry_key(item.key()) else {
            return Ok(Verdict::Keep);
        };
        let drop = match self.log_start(&registry, tp) {
            None => true,
            Some(start) => match self.kind {
                Kind::Index => n < start,
                Kind::Producers => match item.value() {
                    Ok(v) => decode_producer(&v).is_ok_and(|e| e.is_below(start)),
                    Err(_) => false,
                },
            },
        };
        if drop {
            self.removed += 1;
            Ok(Verdict::Remove)
        } else {
            Ok(Verdict::Keep)
        }
    }

    fn finish(self: Box<Self>) {
        if self.removed > 0 {
            tracing::debug!(filter = ?self.kind, removed = self.removed, "compaction filter dropped entries");
        }
    }
}

mod lsm_result {
    pub(crate) type Result = fjall::compaction::filter::CompactionFilterResult;
}
