//! Committed offsets (with generation and member fencing), offsets retention, and the admin
//! requests: DescribeGroups, ListGroups, DeleteGroups, OffsetDelete.

use std::time::Instant;

use super::group::{Group, GroupState};
use super::membership::check_member;
use super::{Commit, GroupCoordinator, GroupDescription, ListedGroup, MemberRef, ResponseError};
use crate::group::records::{OffsetKey, OffsetValue, Record};

impl GroupCoordinator {
    /// Checks an OffsetCommit before its records are appended (Kafka's
    /// `validateOffsetCommit`): generation -1 with no member is an admin or simple consumer's
    /// commit, allowed only while the group has no members; otherwise the member must belong to
    /// the current generation, and the group must not be waiting for the leader's assignment.
    /// Returns the offsets partition to append to.
    pub fn validate_commit(
        &mut self,
        now: Instant,
        group: &str,
        generation: i32,
        member: &MemberRef,
    ) -> Result<i32, ResponseError> {
        let partition = self.check_coordinator(group)?;
        let Some(g) = self.groups.get_mut(group) else {
            return if generation < 0 && member.member_id.is_empty() {
                Ok(partition)
            } else {
                Err(ResponseError::IllegalGeneration)
            };
        };
        if generation < 0 && member.member_id.is_empty() && member.instance_id.is_none() {
            return if g.members.is_empty() {
                Ok(partition)
            } else {
                Err(ResponseError::UnknownMemberId)
            };
        }
        check_member(g, &member.member_id, member.instance_id.as_deref())?;
        if generation != g.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        if g.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        if let Some(m) = g.members.get_mut(&member.member_id) {
            m.touch(now);
        }
        Ok(partition)
    }

    /// Commits of `group` now in the offsets partition at `log_offset` and replicated: they
    /// become visible, unless a later write of the same partition is already applied (commits
    /// to one partition are pipelined and may finish out of order).
    pub fn committed(
        &mut self,
        now: Instant,
        group: &str,
        entries: Vec<(String, i32, OffsetValue)>,
        log_offset: i64,
    ) {
        let partition = self.partition_of(group);
        if !self.is_active(partition) {
            return;
        }
        let created = self.wall_ms(now);
        let g = self
            .groups
            .entry(group.to_string())
            .or_insert_with(|| Group::new(group, partition, created));
        for (topic, p, value) in entries {
            let key = (topic, p);
            if g.offsets
                .get(&key)
                .is_some_and(|c| c.log_offset > log_offset)
            {
                continue;
            }
            g.offsets.insert(key, Commit { value, log_offset });
        }
    }

    /// The committed offsets of `group`: of the wanted partitions, or all of them.
    pub fn fetch_offsets(
        &self,
        group: &str,
        wanted: Option<&[(String, Vec<i32>)]>,
    ) -> Result<Vec<(String, i32, Option<OffsetValue>)>, ResponseError> {
        self.check_coordinator(group)?;
        let g = self.groups.get(group);
        let get = |topic: &str, p: i32| {
            g.and_then(|g| g.offsets.get(&(topic.to_string(), p)))
                .map(|c| c.value.clone())
        };
        Ok(match wanted {
            Some(topics) => topics
                .iter()
                .flat_map(|(topic, partitions)| {
                    partitions
                        .iter()
                        .map(move |p| (topic.clone(), *p, get(topic, *p)))
                })
                .collect(),
            None => {
                let mut all: Vec<_> = g
                    .map(|g| {
                        g.offsets
                            .iter()
                            .map(|((t, p), c)| (t.clone(), *p, Some(c.value.clone())))
                            .collect()
                    })
                    .unwrap_or_default();
                all.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
                all
            }
        })
    }

    /// DescribeGroups of one group: a group unknown here is described as Dead.
    pub fn describe(&self, group: &str) -> Result<GroupDescription, ResponseError> {
        self.check_coordinator(group)?;
        let Some(g) = self.groups.get(group) else {
            return Ok(GroupDescription {
                group: group.to_string(),
                state: GroupState::Dead,
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            });
        };
        Ok(GroupDescription {
            group: group.to_string(),
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if g.state == GroupState::Stable {
                g.protocol.clone().unwrap_or_default()
            } else {
                String::new()
            },
            members: g.describe_members(),
        })
    }

    /// ListGroups: every group served here, optionally only those in `states`.
    pub fn list(&self, states: &[GroupState]) -> Vec<ListedGroup> {
        let mut listed: Vec<ListedGroup> = self
            .groups
            .values()
            .filter(|g| self.is_active(g.partition))
            .filter(|g| states.is_empty() || states.contains(&g.state))
            .map(|g| ListedGroup {
                group: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state,
            })
            .collect();
        listed.sort_by(|a, b| a.group.cmp(&b.group));
        listed
    }

    /// DeleteGroups of one group: only an empty group can go (NON_EMPTY_GROUP otherwise;
    /// GROUP_ID_NOT_FOUND if unknown). Returns the tombstones to append (its offsets and its
    /// metadata) and the partition.
    pub fn delete_group(&mut self, group: &str) -> Result<(i32, Vec<Record>), ResponseError> {
        let partition = self.check_coordinator(group)?;
        let Some(g) = self.groups.get(group) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        match g.state {
            GroupState::Empty => {}
            GroupState::Dead => return Err(ResponseError::GroupIdNotFound),
            _ => return Err(ResponseError::NonEmptyGroup),
        }
        let mut g = self
            .groups
            .remove(group)
            .ok_or(ResponseError::GroupIdNotFound)?;
        g.state = GroupState::Dead;
        // Pending transactional offsets go too (Kafka writes their tombstones as well).
        let mut keys: Vec<(String, i32)> = g.offsets.keys().cloned().collect();
        for key in self.pending_partitions(group) {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        self.drop_pending(group, &keys);
        Ok((partition, tombstones(&g, keys, true)))
    }

    /// OffsetDelete: drops the commits of the given partitions, refused while the group has
    /// members (GROUP_SUBSCRIBED_TO_TOPIC: Rafka does not read subscriptions, so any member
    /// counts as subscribed). Returns the tombstones to append and the partition.
    pub fn delete_offsets(
        &mut self,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<(i32, Vec<Record>), ResponseError> {
        let partition = self.check_coordinator(group)?;
        let Some(g) = self.groups.get(group) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        if !g.members.is_empty() {
            return Err(ResponseError::GroupSubscribedToTopic);
        }
        let pending = self.pending_partitions(group);
        let Some(g) = self.groups.get_mut(group) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        // A tombstone also for a partition with only pending transactional offsets (Kafka's
        // deleteOffsets): its replay drops them.
        let keys: Vec<(String, i32)> = partitions
            .iter()
            .filter(|k| g.offsets.remove(*k).is_some() || pending.contains(*k))
            .cloned()
            .collect();
        let records = tombstones(g, keys.clone(), false);
        self.drop_pending(group, &keys);
        Ok((partition, records))
    }

    /// Offsets past `offsets.retention.minutes` at `now_ms` (Kafka's KIP-211 rules): of an empty
    /// group with a protocol type, all of them once it has been empty that long (counted from
    /// its state timestamp, or from each commit when that is unknown); of a group without one
    /// (simple consumers), each commit older than that. Empty groups left with no offsets are
    /// forgotten (with a tombstone if they had a generation). Returns the tombstones to append,
    /// per partition.
    pub fn expire_offsets(&mut self, now_ms: i64) -> Vec<(i32, Vec<Record>)> {
        let retention_ms =
            i64::try_from(self.config.offsets_retention.as_millis()).unwrap_or(i64::MAX);
        let mut out: Vec<(i32, Vec<Record>)> = Vec::new();
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for id in ids {
            let Some(g) = self.groups.get_mut(&id) else {
                continue;
            };
            if g.state != GroupState::Empty || !self.served.contains_key(&g.partition) {
                continue;
            }
            let emptied = g.state_timestamp.filter(|_| g.protocol_type.is_some());
            // Offsets with a transactional commit pending stay until it ends (as in Kafka).
            let pending = super::txn::pending_of(&self.txns, &id, g.partition);
            let expired: Vec<(String, i32)> = g
                .offsets
                .iter()
                .filter(|(k, c)| {
                    let since = emptied.unwrap_or(c.value.commit_timestamp);
                    since.saturating_add(retention_ms) <= now_ms && !pending.contains(*k)
                })
                .map(|(k, _)| k.clone())
                .collect();
            for key in &expired {
                g.offsets.remove(key);
            }
            // A first joiner's member id (KIP-394) keeps a new group alive, and so does an
            // open transaction's commit.
            let forget = g.offsets.is_empty() && g.pending.is_empty() && pending.is_empty();
            let mut records = tombstones(g, expired, forget);
            let partition = g.partition;
            if forget {
                self.groups.remove(&id);
            } else if records.is_empty() {
                continue;
            }
            match out.iter_mut().find(|(p, _)| *p == partition) {
                Some((_, all)) => all.append(&mut records),
                None => out.push((partition, records)),
            }
        }
        out.retain(|(_, records)| !records.is_empty());
        out
    }
}

fn tombstones(group: &Group, keys: Vec<(String, i32)>, with_group: bool) -> Vec<Record> {
    let mut records: Vec<Record> = keys
        .into_iter()
        .map(|(topic, partition)| Record::Offset {
            key: OffsetKey {
                group: group.id.clone(),
                topic,
                partition,
            },
            value: None,
        })
        .collect();
    if with_group && group.generation > 0 {
        records.push(Record::Group {
            group: group.id.clone(),
            metadata: None,
        });
    }
    records
}
