//! fjall compaction filters on the `index`, `producers` and `keys` keyspaces.
//!
//! They drop entries whose verdict is final by the time fjall rewrites them: entries of
//! partitions that no longer exist, index and producer entries wholly below a partition's log
//! start, and key index entries of a generation the partition no longer uses (after a
//! truncation or a strategy change) or pointing below its log start (the key has no record
//! left). This is where filters fit: those keyspaces hold small entries under keys that are
//! rewritten by compaction. The log data itself is never left to a filter (ever-increasing keys
//! may never be compacted): retention drops whole segment keyspaces and the log cleaner swaps
//! whole cleaned segments in. Until recovery has registered every partition the filters keep
//! everything. They hold only a `Weak` reference to the registry, so they never keep the
//! store's state (and its fjall handles) alive.

use crate::TopicPartition;
use crate::codec::{KeyEntry, decode_producer};
use crate::keys::{self, parse_entry_key, parse_key_index_key};
use crate::shared::Registry;
use fjall::compaction::filter::{CompactionFilter, Context, Factory, ItemAccessor, Verdict};
use std::sync::{Arc, Weak};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Index,
    Producers,
    Keys,
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
            keys::KS_KEYS => Kind::Keys,
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
            Kind::Keys => "rafka-key-index",
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
    /// Last partition looked up, with its log start and key index generation (entries arrive
    /// in key order).
    last: Option<(TopicPartition, Option<(i64, u32)>)>,
    removed: u64,
}

impl LogStartFilter {
    fn state(&mut self, registry: &Registry, tp: TopicPartition) -> Option<(i64, u32)> {
        match self.last {
            Some((cached, state)) if cached == tp => state,
            _ => {
                let state = registry.key_index_state(&tp);
                self.last = Some((tp, state));
                state
            }
        }
    }

    fn drop(&mut self, registry: &Registry, item: &ItemAccessor<'_>) -> bool {
        let key = item.key();
        let parsed = match self.kind {
            Kind::Keys => parse_key_index_key(key).map(|(tp, g)| (tp, i64::from(g))),
            Kind::Index | Kind::Producers => parse_entry_key(key),
        };
        let Some((tp, n)) = parsed else {
            return false;
        };
        let Some((start, generation)) = self.state(registry, tp) else {
            return true;
        };
        match self.kind {
            Kind::Index => n < start,
            Kind::Producers => item
                .value()
                .is_ok_and(|v| decode_producer(&v).is_ok_and(|e| e.is_below(start))),
            Kind::Keys => {
                n != i64::from(generation)
                    || item
                        .value()
                        .is_ok_and(|v| KeyEntry::decode(&v).is_ok_and(|e| e.offset < start))
            }
        }
    }
}

impl CompactionFilter for LogStartFilter {
    fn filter_item(&mut self, item: ItemAccessor<'_>, _ctx: &Context) -> lsm_result::Result {
        let Some(registry) = self.registry.clone() else {
            return Ok(Verdict::Keep);
        };
        let drop = self.drop(&registry, &item);
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
