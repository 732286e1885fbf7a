//! One node's gossiped state: a versioned key-value map, a heartbeat and a `left` flag, all owned
//! (and only ever changed at the source) by that node.

use std::collections::BTreeMap;

use super::MemberId;
use super::message::{Generation, KeyEntry, NodeDelta, NodeDigest, Version};

/// A value and the owner's version of the change that set it; `None` is a removed key
/// (a tombstone, kept for the life of the generation so the removal spreads like any change).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VersionedValue {
    pub(crate) value: Option<String>,
    pub(crate) version: Version,
}

/// What is known of one node incarnation's state.
#[derive(Clone, Debug)]
pub(crate) struct NodeState {
    pub(crate) generation: Generation,
    pub(crate) heartbeat: u64,
    pub(crate) left: bool,
    /// Every version up to this one is known (the owner: the latest it made).
    pub(crate) max_version: Version,
    pub(crate) entries: BTreeMap<String, VersionedValue>,
}

/// A key whose value changed by applying a delta: the new value, `None` if removed.
pub(crate) type KeyChange = (String, Option<String>);

impl NodeState {
    pub(crate) fn new(generation: Generation) -> Self {
        Self {
            generation,
            heartbeat: 0,
            left: false,
            max_version: 0,
            entries: BTreeMap::new(),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key)?.value.as_deref()
    }

    /// Keys with a value (tombstones left out).
    pub(crate) fn live_entries(&self) -> impl Iterator<Item = (&String, &String)> {
        self.entries
            .iter()
            .filter_map(|(k, v)| v.value.as_ref().map(|value| (k, value)))
    }

    /// The owner sets a key: a new version unless the value is unchanged. True if it changed.
    pub(crate) fn set_own(&mut self, key: &str, value: Option<&str>) -> bool {
        let current = self.entries.get(key).map(|v| v.value.as_deref());
        // Unchanged value, or removing a key that never existed: nothing to spread.
        if current == Some(value) || (current.is_none() && value.is_none()) {
            return false;
        }
        self.max_version += 1;
        self.entries.insert(
            key.to_string(),
            VersionedValue {
                value: value.map(str::to_string),
                version: self.max_version,
            },
        );
        true
    }

    pub(crate) fn digest(&self, id: MemberId) -> NodeDigest {
        NodeDigest {
            id,
            generation: self.generation,
            heartbeat: self.heartbeat,
            max_version: self.max_version,
        }
    }

    /// Entries with a version above `floor`, by increasing version.
    pub(crate) fn entries_above(&self, floor: Version) -> Vec<(&String, &VersionedValue)> {
        let mut stale: Vec<_> = self
            .entries
            .iter()
            .filter(|(_, v)| v.version > floor)
            .collect();
        stale.sort_by_key(|(_, v)| v.version);
        stale
    }

    /// Applies the entries of `delta` (same node, same generation), if they continue what is
    /// known: `from_version` must not exceed `max_version`, else a change in between is missing
    /// and claiming the later versions would hide it for good. Returns the keys whose value
    /// changed. The heartbeat and `left` flag are the caller's business.
    pub(crate) fn apply_entries(&mut self, delta: &NodeDelta) -> Vec<KeyChange> {
        if delta.from_version > self.max_version {
            return Vec::new();
        }
        let mut changes = Vec::new();
        let mut top = delta.to_version;
        for KeyEntry {
            key,
            value,
            version,
        } in &delta.entries
        {
            top = top.max(*version);
            let newer = self.entries.get(key).is_none_or(|v| v.version < *version);
            if !newer {
                continue;
            }
            let previous = self.entries.insert(
                key.clone(),
                VersionedValue {
                    value: value.clone(),
                    version: *version,
                },
            );
            let old_value = previous.and_then(|p| p.value);
            if old_value != *value {
                changes.push((key.clone(), value.clone()));
            }
        }
        self.max_version = self.max_version.max(top);
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(from: Version, to: Version, entries: &[(&str, Option<&str>, Version)]) -> NodeDelta {
        NodeDelta {
            id: MemberId::random(),
            generation: Generation(1),
            heartbeat: 0,
            heartbeat_age_ms: 0,
            left: false,
            from_version: from,
            to_version: to,
            entries: entries
                .iter()
                .map(|(k, v, version)| KeyEntry {
                    key: k.to_string(),
                    value: v.map(str::to_string),
                    version: *version,
                })
                .collect(),
        }
    }

    #[test]
    fn the_owner_bumps_a_version_per_change_only() {
        let mut s = NodeState::new(Generation(1));
        assert!(s.set_own("a", Some("1")));
        assert!(!s.set_own("a", Some("1")));
        assert!(s.set_own("b", Some("2")));
        assert!(s.set_own("a", None));
        assert!(!s.set_own("a", None));
        assert!(!s.set_own("never", None));
        assert_eq!(s.max_version, 3);
        assert_eq!(s.get("a"), None);
        assert_eq!(s.live_entries().count(), 1);
        let above: Vec<_> = s
            .entries_above(1)
            .into_iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(above, ["b", "a"]);
    }

    #[test]
    fn entries_apply_only_when_contiguous_and_newer() {
        let mut s = NodeState::new(Generation(1));
        // A gap (from 2 while nothing is known): ignored.
        assert!(
            s.apply_entries(&delta(2, 3, &[("a", Some("x"), 3)]))
                .is_empty()
        );
        assert_eq!(s.max_version, 0);
        let changes = s.apply_entries(&delta(0, 4, &[("a", Some("1"), 1), ("b", Some("2"), 2)]));
        assert_eq!(changes.len(), 2);
        assert_eq!(s.max_version, 4);
        // Older versions do not overwrite; a removal is a change.
        let changes = s.apply_entries(&delta(0, 5, &[("a", Some("old"), 1), ("b", None, 5)]));
        assert_eq!(changes, vec![("b".to_string(), None)]);
        assert_eq!(s.get("a"), Some("1"));
        assert_eq!(s.max_version, 5);
    }
}
