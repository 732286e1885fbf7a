//! Partition assignors, run by the group's leader on every member's subscription: Kafka's
//! `range`, `roundrobin` and `cooperative-sticky`, under those names, so members of other clients
//! that list the same names can share a group with ours.
//!
//! Pure functions: members and partition counts in, an assignment per member out.
//!
//! - **range**: per topic, its partitions split into contiguous ranges over the members
//!   subscribed to it, in member order (the first `partitions % members` get one more).
//! - **roundrobin**: every partition of every topic, in (topic, partition) order, dealt in turn to
//!   the next member subscribed to its topic.
//! - **cooperative-sticky** (KIP-429): members keep what they own as far as balance allows, the
//!   rest goes to the least loaded subscribed member; a partition that moves to another member is
//!   withheld this round (its owner revokes it and rejoins, and the next round hands it out).
//!
//! Member order is Kafka's: static members (with a group instance id) by instance id first,
//! then dynamic ones by member id.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::metadata::TopicPartition;

/// An assignment strategy, by its protocol name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Assignor {
    /// `range`.
    Range,
    /// `roundrobin`.
    RoundRobin,
    /// `cooperative-sticky`.
    CooperativeSticky,
}

impl Assignor {
    /// The protocol name in JoinGroup.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// The assignor with protocol name `name`.
    pub fn from_name(name: &str) -> Option<Assignor> {
        [
            Assignor::Range,
            Assignor::RoundRobin,
            Assignor::CooperativeSticky,
        ]
        .into_iter()
        .find(|a| a.name() == name)
    }

    /// Whether members give up only what moves (and rejoin), rather than everything.
    pub fn is_cooperative(self) -> bool {
        self == Assignor::CooperativeSticky
    }

    /// Assigns the partitions of the subscribed topics (`partitions`: topic → partition count;
    /// topics without metadata are left out) to `members`.
    pub fn assign(
        self,
        members: &[Member],
        partitions: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        let mut sorted: Vec<&Member> = members.iter().collect();
        sorted.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        let mut out: BTreeMap<String, Vec<TopicPartition>> = members
            .iter()
            .map(|m| (m.member_id.clone(), Vec::new()))
            .collect();
        match self {
            Assignor::Range => range(&sorted, partitions, &mut out),
            Assignor::RoundRobin => round_robin(&sorted, partitions, &mut out),
            Assignor::CooperativeSticky => cooperative_sticky(&sorted, partitions, &mut out),
        }
        for assigned in out.values_mut() {
            assigned.sort();
        }
        out
    }
}

/// A member as the leader sees it in the JoinGroup answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    /// Member id.
    pub member_id: String,
    /// Group instance id (static members).
    pub instance_id: Option<String>,
    /// Subscribed topics.
    pub topics: Vec<String>,
    /// Partitions it owns now (cooperative members).
    pub owned: Vec<TopicPartition>,
    /// The generation its owned partitions come from (-1: unknown).
    pub generation: i32,
}

impl Member {
    fn order_key(&self) -> (bool, &str, &str) {
        (
            self.instance_id.is_none(),
            self.instance_id.as_deref().unwrap_or(""),
            &self.member_id,
        )
    }

    fn subscribes(&self, topic: &str) -> bool {
        self.topics.iter().any(|t| t == topic)
    }
}

fn all_partitions(
    partitions: &BTreeMap<String, i32>,
    topics: &BTreeSet<&str>,
) -> Vec<TopicPartition> {
    partitions
        .iter()
        .filter(|(t, _)| topics.contains(t.as_str()))
        .flat_map(|(t, n)| {
            let topic: Arc<str> = Arc::from(t.as_str());
            (0..*n).map(move |p| TopicPartition::new(topic.clone(), p))
        })
        .collect()
}

fn subscribed<'a>(members: &[&'a Member]) -> BTreeSet<&'a str> {
    members
        .iter()
        .flat_map(|m| m.topics.iter().map(String::as_str))
        .collect()
}

fn range(
    members: &[&Member],
    partitions: &BTreeMap<String, i32>,
    out: &mut BTreeMap<String, Vec<TopicPartition>>,
) {
    for (topic, count) in partitions {
        let takers: Vec<&&Member> = members.iter().filter(|m| m.subscribes(topic)).collect();
        if takers.is_empty() {
            continue;
        }
        let n = takers.len() as i32;
        let (per, extra) = (count / n, count % n);
        let topic: Arc<str> = Arc::from(topic.as_str());
        for (i, m) in (0_i32..).zip(takers) {
            let start = per * i + i.min(extra);
            let len = per + i32::from(i < extra);
            if let Some(assigned) = out.get_mut(&m.member_id) {
                assigned
                    .extend((start..start + len).map(|p| TopicPartition::new(topic.clone(), p)));
            }
        }
    }
}

fn round_robin(
    members: &[&Member],
    partitions: &BTreeMap<String, i32>,
    out: &mut BTreeMap<String, Vec<TopicPartition>>,
) {
    if members.is_empty() {
        return;
    }
    let mut next = 0;
    for tp in all_partitions(partitions, &subscribed(members)) {
        // The next member in the circle subscribed to this topic (one exists: the topic is
        // someone's subscription).
        for step in 0..members.len() {
            let i = (next + step) % members.len();
            let Some(m) = members.get(i) else { continue };
            if m.subscribes(&tp.topic) {
                if let Some(assigned) = out.get_mut(&m.member_id) {
                    assigned.push(tp);
                }
                next = i + 1;
                break;
            }
        }
    }
}

fn cooperative_sticky(
    members: &[&Member],
    partitions: &BTreeMap<String, i32>,
    out: &mut BTreeMap<String, Vec<TopicPartition>>,
) {
    let all = all_partitions(partitions, &subscribed(members));
    if members.is_empty() || all.is_empty() {
        return;
    }
    let exists: BTreeSet<&TopicPartition> = all.iter().collect();
    // Who owns what now: a partition claimed twice goes to the claim of the newest generation.
    let mut claims: Vec<&Member> = members.to_vec();
    claims.sort_by_key(|m| std::cmp::Reverse(m.generation));
    let mut owner: HashMap<&TopicPartition, &str> = HashMap::new();
    for m in &claims {
        for tp in &m.owned {
            if exists.contains(tp) && m.subscribes(&tp.topic) {
                owner.entry(tp).or_insert(&m.member_id);
            }
        }
    }
    // Each member may keep up to its quota: a balanced share of the partitions it can take.
    let quota = quotas(members, &all);
    let mut kept: BTreeMap<&str, Vec<TopicPartition>> = BTreeMap::new();
    for tp in &all {
        if let Some(m) = owner.get(tp) {
            let mine = kept.entry(m).or_default();
            if mine.len() < quota.get(m).copied().unwrap_or(0) {
                mine.push(tp.clone());
            }
        }
    }
    let taken: BTreeSet<TopicPartition> = kept.values().flatten().cloned().collect();
    let mut load: BTreeMap<&str, usize> = members
        .iter()
        .map(|m| {
            (
                m.member_id.as_str(),
                kept.get(m.member_id.as_str()).map_or(0, Vec::len),
            )
        })
        .collect();
    for (m, tps) in kept {
        if let Some(assigned) = out.get_mut(m) {
            assigned.extend(tps);
        }
    }
    // The rest goes to the least loaded member subscribed to its topic, unless another member
    // still owns it: then it is withheld until that member has revoked it (KIP-429).
    for tp in all.into_iter().filter(|tp| !taken.contains(tp)) {
        let Some(m) = members
            .iter()
            .filter(|m| m.subscribes(&tp.topic))
            .min_by_key(|m| load.get(m.member_id.as_str()).copied().unwrap_or(0))
        else {
            continue;
        };
        if let Some(n) = load.get_mut(m.member_id.as_str()) {
            *n += 1;
        }
        let owned_elsewhere = owner.get(&tp).is_some_and(|o| *o != m.member_id);
        if !owned_elsewhere && let Some(assigned) = out.get_mut(&m.member_id) {
            assigned.push(tp);
        }
    }
}

/// How many partitions each member may keep: with everyone subscribed to the same topics,
/// `ceil(P / M)` for the first `P % M` members keeping the most, `floor(P / M)` for the rest;
/// otherwise the share of the partitions of its own topics over the members that want them.
fn quotas<'a>(members: &[&'a Member], all: &[TopicPartition]) -> BTreeMap<&'a str, usize> {
    let m = members.len();
    let uniform = members
        .windows(2)
        .all(|w| matches!(w, [a, b] if a.topics.iter().collect::<BTreeSet<_>>() == b.topics.iter().collect::<BTreeSet<_>>()));
    let mut out = BTreeMap::new();
    if uniform {
        let (floor, extra) = (all.len() / m, all.len() % m);
        // Those who own the most keep the extra one, so as little as possible moves.
        let mut by_owned: Vec<&&Member> = members.iter().collect();
        by_owned.sort_by_key(|mm| std::cmp::Reverse(mm.owned.len()));
        for (i, mm) in by_owned.into_iter().enumerate() {
            out.insert(mm.member_id.as_str(), floor + usize::from(i < extra));
        }
        return out;
    }
    for mm in members {
        let share: f64 = all
            .iter()
            .filter(|tp| mm.subscribes(&tp.topic))
            .map(|tp| {
                1.0 / members
                    .iter()
                    .filter(|o| o.subscribes(&tp.topic))
                    .count()
                    .max(1) as f64
            })
            .sum();
        out.insert(mm.member_id.as_str(), share.ceil() as usize);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str], owned: &[(&str, i32)], generation: i32) -> Member {
        Member {
            member_id: id.into(),
            instance_id: None,
            topics: topics.iter().map(|t| t.to_string()).collect(),
            owned: owned
                .iter()
                .map(|(t, p)| TopicPartition::new(*t, *p))
                .collect(),
            generation,
        }
    }

    fn counts(topics: &[(&str, i32)]) -> BTreeMap<String, i32> {
        topics.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn names(a: &[TopicPartition]) -> Vec<String> {
        a.iter().map(ToString::to_string).collect()
    }

    /// Every partition of `topics` assigned exactly once.
    fn assert_complete(out: &BTreeMap<String, Vec<TopicPartition>>, topics: &[(&str, i32)]) {
        let mut seen = BTreeSet::new();
        for tps in out.values() {
            for tp in tps {
                assert!(seen.insert(tp.clone()), "{tp} assigned twice: {out:?}");
            }
        }
        let total: i32 = topics.iter().map(|(_, n)| n).sum();
        assert_eq!(seen.len(), total as usize, "{out:?}");
    }

    #[test]
    fn range_splits_each_topic_into_ranges_in_member_order() {
        let members = [
            member("b", &["t", "u"], &[], -1),
            member("a", &["t", "u"], &[], -1),
        ];
        let out = Assignor::Range.assign(&members, &counts(&[("t", 5), ("u", 2)]));
        assert_eq!(names(&out["a"]), ["t-0", "t-1", "t-2", "u-0"]);
        assert_eq!(names(&out["b"]), ["t-3", "t-4", "u-1"]);
        // Static members come first, by instance id.
        let mut s = member("z", &["t"], &[], -1);
        s.instance_id = Some("i".into());
        let out = Assignor::Range.assign(&[member("a", &["t"], &[], -1), s], &counts(&[("t", 3)]));
        assert_eq!(names(&out["z"]), ["t-0", "t-1"]);
    }

    #[test]
    fn round_robin_deals_partitions_to_subscribed_members() {
        let members = [
            member("a", &["t"], &[], -1),
            member("b", &["t", "u"], &[], -1),
            member("c", &["u"], &[], -1),
        ];
        let topics = [("t", 3), ("u", 3)];
        let out = Assignor::RoundRobin.assign(&members, &counts(&topics));
        assert_complete(&out, &topics);
        assert_eq!(names(&out["a"]), ["t-0", "t-2"]);
        assert_eq!(names(&out["b"]), ["t-1", "u-0", "u-2"]);
        assert_eq!(names(&out["c"]), ["u-1"]);
    }

    #[test]
    fn cooperative_sticky_keeps_owned_partitions_and_withholds_what_moves() {
        let topics = [("t", 6)];
        // First generation: nobody owns anything; balanced.
        let out = Assignor::CooperativeSticky.assign(
            &[member("a", &["t"], &[], -1), member("b", &["t"], &[], -1)],
            &counts(&topics),
        );
        assert_complete(&out, &topics);
        assert_eq!((out["a"].len(), out["b"].len()), (3, 3));
        let a: Vec<(&str, i32)> = out["a"].iter().map(|tp| ("t", tp.partition)).collect();
        let b: Vec<(&str, i32)> = out["b"].iter().map(|tp| ("t", tp.partition)).collect();

        // A third member joins: a and b keep two each, and the partition each gives up is
        // withheld (it is still owned) rather than handed to c at once.
        let members = [
            member("a", &["t"], &a, 1),
            member("b", &["t"], &b, 1),
            member("c", &["t"], &[], -1),
        ];
        let out = Assignor::CooperativeSticky.assign(&members, &counts(&topics));
        assert_eq!((out["a"].len(), out["b"].len(), out["c"].len()), (2, 2, 0));
        for tp in out["a"].iter() {
            assert!(
                a.contains(&("t", tp.partition)),
                "a kept only what it owned"
            );
        }
        // Second round: a and b revoked the moved partitions; c gets them.
        let a2: Vec<(&str, i32)> = out["a"].iter().map(|tp| ("t", tp.partition)).collect();
        let b2: Vec<(&str, i32)> = out["b"].iter().map(|tp| ("t", tp.partition)).collect();
        let members = [
            member("a", &["t"], &a2, 2),
            member("b", &["t"], &b2, 2),
            member("c", &["t"], &[], 2),
        ];
        let out2 = Assignor::CooperativeSticky.assign(&members, &counts(&topics));
        assert_complete(&out2, &topics);
        assert_eq!(out2["a"], out["a"]);
        assert_eq!(out2["b"], out["b"]);
        assert_eq!(out2["c"].len(), 2);
    }

    #[test]
    fn cooperative_sticky_resolves_double_claims_by_generation() {
        let topics = [("t", 2)];
        let members = [
            member("old", &["t"], &[("t", 0), ("t", 1)], 3),
            member("new", &["t"], &[("t", 0)], 4),
        ];
        let out = Assignor::CooperativeSticky.assign(&members, &counts(&topics));
        assert_eq!(names(&out["new"]), ["t-0"]);
        assert_eq!(names(&out["old"]), ["t-1"]);
    }

    #[test]
    fn every_assignor_covers_every_partition_once() {
        for seed in 0..200_u64 {
            let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut next = |n: u64| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % n
            };
            let topics: Vec<(String, i32)> = (0..1 + next(3))
                .map(|t| (format!("t{t}"), 1 + next(9) as i32))
                .collect();
            let refs: Vec<(&str, i32)> = topics.iter().map(|(t, n)| (t.as_str(), *n)).collect();
            let all: Vec<&str> = refs.iter().map(|(t, _)| *t).collect();
            let members: Vec<Member> = (0..1 + next(5))
                .map(|m| member(&format!("m{m}"), &all, &[], -1))
                .collect();
            for assignor in [
                Assignor::Range,
                Assignor::RoundRobin,
                Assignor::CooperativeSticky,
            ] {
                let out = assignor.assign(&members, &counts(&refs));
                assert_complete(&out, &refs);
                let sizes: Vec<usize> = out.values().map(Vec::len).collect();
                if assignor != Assignor::Range {
                    let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                    assert!(
                        hi - lo <= 1,
                        "seed {seed}: {assignor:?} unbalanced {sizes:?}"
                    );
                }
            }
        }
    }
}
