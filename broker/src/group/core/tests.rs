//! The coordinator core, tested by the outputs it emits.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::group::records::{GroupMetadata, MemberMetadata, OffsetKey, OffsetValue, Record};

const SESSION: Duration = Duration::from_secs(10);
const REBALANCE: Duration = Duration::from_secs(30);
const DELAY: Duration = Duration::from_secs(3);
const RETENTION: Duration = Duration::from_secs(3600);
/// What the wall clock reads when a harness starts (ms since the Unix epoch).
const START_MS: i64 = 1_765_000_000_000;

struct Harness {
    core: GroupCoordinator,
    started: Instant,
    now: Instant,
    next_reply: u64,
}

impl Harness {
    fn new() -> Self {
        let config = GroupConfig {
            initial_rebalance_delay: DELAY,
            max_group_size: 3,
            offsets_retention: RETENTION,
            ..GroupConfig::default()
        };
        let mut core = GroupCoordinator::new(config, 1, "n1.1".into());
        let now = Instant::now();
        core.set_wall_clock(now, START_MS);
        core.begin_load(0);
        core.load(0, Vec::new(), now);
        Self {
            core,
            started: now,
            now,
            next_reply: 0,
        }
    }

    /// What the wall clock reads now.
    fn wall(&self) -> i64 {
        START_MS + i64::try_from((self.now - self.started).as_millis()).unwrap()
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.core.tick(self.now);
    }

    fn outputs(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.core.poll_output()).collect()
    }

    fn join_request(member_id: &str, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            group: "g".into(),
            member_id: member_id.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: SESSION,
            rebalance_timeout: REBALANCE,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(format!("sub-{p}"))))
                .collect(),
            require_known_member_id: true,
            supports_skip_assignment: false,
        }
    }

    fn send_join(&mut self, request: JoinRequest) -> Reply {
        self.next_reply += 1;
        let reply = Reply(self.next_reply);
        self.core.join(self.now, reply, request);
        reply
    }

    fn send_sync(&mut self, request: SyncRequest) -> Reply {
        self.next_reply += 1;
        let reply = Reply(self.next_reply);
        self.core.sync(self.now, reply, request);
        reply
    }

    /// A first join through the KIP-394 round trip: returns the member id and the held reply.
    fn join_new(&mut self, protocols: &[&str]) -> (String, Reply) {
        let first = self.send_join(Self::join_request("", protocols));
        let outputs = self.outputs();
        let member_id = match outputs.as_slice() {
            [Output::Join { reply, response }] if *reply == first => {
                assert_eq!(response.error, Some(ResponseError::MemberIdRequired));
                response.member_id.clone()
            }
            other => panic!("expected MEMBER_ID_REQUIRED, got {other:?}"),
        };
        let reply = self.send_join(Self::join_request(&member_id, protocols));
        (member_id, reply)
    }

    fn joins(&mut self) -> Vec<(Reply, JoinResponse)> {
        self.outputs()
            .into_iter()
            .map(|o| match o {
                Output::Join { reply, response } => (reply, response),
                other => panic!("expected a join answer, got {other:?}"),
            })
            .collect()
    }

    fn sync(&self, member_id: &str, generation: i32, assignments: &[(&str, &str)]) -> SyncRequest {
        SyncRequest {
            group: "g".into(),
            generation,
            member_id: member_id.into(),
            instance_id: None,
            protocol_type: Some("consumer".into()),
            protocol_name: None,
            assignments: assignments
                .iter()
                .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
                .collect(),
        }
    }

    fn heartbeat(&mut self, member_id: &str, generation: i32) -> Option<ResponseError> {
        let member = MemberRef {
            member_id: member_id.into(),
            instance_id: None,
        };
        self.core.heartbeat(self.now, "g", generation, &member)
    }

    /// Syncs every member (the leader with `assignments`), persists, and returns each answer.
    fn sync_all(
        &mut self,
        leader: &str,
        others: &[&str],
        generation: i32,
        assignments: &[(&str, &str)],
    ) -> Vec<(Reply, SyncResponse)> {
        for other in others {
            let request = self.sync(other, generation, &[]);
            self.send_sync(request);
        }
        assert!(self.outputs().is_empty(), "followers' syncs are held");
        let request = self.sync(leader, generation, assignments);
        self.send_sync(request);
        let token = match self.outputs().as_slice() {
            [Output::Persist { token, records, .. }] => {
                assert!(
                    matches!(records.as_slice(), [Record::Group { metadata: Some(m), .. }] if m.generation == generation)
                );
                *token
            }
            other => panic!("expected a persist, got {other:?}"),
        };
        self.core.persisted(self.now, token, Ok(()));
        self.outputs()
            .into_iter()
            .map(|o| match o {
                Output::Sync { reply, response } => (reply, response),
                other => panic!("expected a sync answer, got {other:?}"),
            })
            .collect()
    }

    fn state(&self) -> GroupState {
        self.core.describe("g").unwrap().state
    }
}

#[test]
fn a_first_join_needs_a_member_id_then_waits_out_the_initial_delay() {
    let mut h = Harness::new();
    let (member, reply) = h.join_new(&["range"]);
    assert!(h.outputs().is_empty(), "held during the initial delay");
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    h.advance(DELAY - Duration::from_millis(1));
    assert!(h.outputs().is_empty());
    h.advance(Duration::from_millis(1));
    let joins = h.joins();
    assert_eq!(joins.len(), 1);
    let (r, response) = &joins[0];
    assert_eq!(*r, reply);
    assert_eq!(response.error, None);
    assert_eq!(response.generation, 1);
    assert_eq!(response.leader, member);
    assert_eq!(response.protocol_name.as_deref(), Some("range"));
    assert_eq!(response.members.len(), 1, "the leader sees every member");
    assert_eq!(response.members[0].metadata, Bytes::from("sub-range"));
    let syncs = h.sync_all(&member, &[], 1, &[(&member, "p0-5")]);
    assert_eq!(syncs[0].1.assignment, Bytes::from("p0-5"));
    assert_eq!(h.state(), GroupState::Stable);
}

#[test]
fn joiners_during_the_initial_delay_extend_it_and_land_in_one_generation() {
    let mut h = Harness::new();
    let (a, _) = h.join_new(&["range"]);
    h.advance(Duration::from_secs(2));
    let (b, _) = h.join_new(&["range"]);
    h.advance(Duration::from_secs(1));
    assert!(
        h.outputs().is_empty(),
        "a new joiner pushed the deadline back"
    );
    h.advance(DELAY);
    let joins = h.joins();
    assert_eq!(joins.len(), 2);
    let leader = joins.iter().find(|(_, r)| !r.members.is_empty()).unwrap();
    assert_eq!(leader.1.member_id, a, "the first to join leads");
    assert_eq!(leader.1.members.len(), 2);
    assert!(
        joins
            .iter()
            .all(|(_, r)| r.generation == 1 && r.leader == a)
    );
    let follower = joins.iter().find(|(_, r)| r.member_id == b).unwrap();
    assert!(
        follower.1.members.is_empty(),
        "only the leader gets members"
    );
}

/// Two members in a stable generation: (leader, follower).
fn stable_pair(h: &mut Harness) -> (String, String) {
    let (a, _) = h.join_new(&["range"]);
    let (b, _) = h.join_new(&["range"]);
    h.advance(DELAY);
    assert!(
        h.outputs().is_empty(),
        "b joined during the delay: it was extended"
    );
    h.advance(DELAY);
    assert_eq!(h.joins().len(), 2);
    let syncs = h.sync_all(&a, &[&b], 1, &[(&a, "A"), (&b, "B")]);
    let mut assignments: Vec<_> = syncs.iter().map(|(_, r)| r.assignment.clone()).collect();
    assignments.sort();
    assert_eq!(assignments, vec![Bytes::from("A"), Bytes::from("B")]);
    (a, b)
}

#[test]
fn a_new_member_makes_the_others_rejoin_and_the_rebalance_ends_when_all_have() {
    let mut h = Harness::new();
    let (a, b) = stable_pair(&mut h);
    let (c, c_reply) = h.join_new(&["range"]);
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat(&a, 1), Some(ResponseError::RebalanceInProgress));
    let a_reply = h.send_join(Harness::join_request(&a, &["range"]));
    assert!(h.outputs().is_empty(), "b has not rejoined yet");
    let b_reply = h.send_join(Harness::join_request(&b, &["range"]));
    let joins = h.joins();
    let replies: Vec<Reply> = joins.iter().map(|(r, _)| *r).collect();
    assert_eq!(replies.len(), 3);
    for reply in [a_reply, b_reply, c_reply] {
        assert!(replies.contains(&reply));
    }
    assert!(
        joins
            .iter()
            .all(|(_, r)| r.generation == 2 && r.leader == a)
    );
    assert_eq!(
        h.heartbeat(&c, 2),
        None,
        "heartbeats are fine while completing"
    );
    assert_eq!(h.heartbeat(&c, 1), Some(ResponseError::IllegalGeneration));
}

#[test]
fn a_member_that_does_not_rejoin_in_time_is_dropped() {
    let mut h = Harness::new();
    let (a, b) = stable_pair(&mut h);
    h.send_join(Harness::join_request(&a, &["range"]));
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    h.advance(REBALANCE);
    let joins = h.joins();
    assert_eq!(joins.len(), 1);
    assert_eq!(joins[0].1.generation, 2);
    assert_eq!(joins[0].1.members.len(), 1);
    assert_eq!(h.heartbeat(&b, 2), Some(ResponseError::UnknownMemberId));
}

#[test]
fn a_silent_member_expires_after_its_session_and_the_rest_rebalance() {
    let mut h = Harness::new();
    let (a, b) = stable_pair(&mut h);
    for _ in 0..4 {
        h.advance(SESSION / 4 - Duration::from_millis(1));
        assert_eq!(h.heartbeat(&a, 1), None);
    }
    assert_eq!(h.state(), GroupState::Stable);
    h.advance(Duration::from_millis(10));
    assert_eq!(
        h.state(),
        GroupState::PreparingRebalance,
        "b's session ran out"
    );
    assert_eq!(h.heartbeat(&b, 1), Some(ResponseError::UnknownMemberId));
    assert_eq!(h.heartbeat(&a, 1), Some(ResponseError::RebalanceInProgress));
    h.send_join(Harness::join_request(&a, &["range"]));
    let joins = h.joins();
    assert_eq!(joins.len(), 1, "a alone completes the join phase");
    assert_eq!(joins[0].1.generation, 2);
}

#[test]
fn leaving_rebalances_the_rest_and_the_last_leaving_empties_the_group() {
    let mut h = Harness::new();
    let (a, b) = stable_pair(&mut h);
    let leave = |id: &str| MemberRef {
        member_id: id.into(),
        instance_id: None,
    };
    let results = h.core.leave(h.now, "g", &[leave(&b)]).unwrap();
    assert_eq!(results, vec![None]);
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    let results = h.core.leave(h.now, "g", &[leave(&b)]).unwrap();
    assert_eq!(results, vec![Some(ResponseError::UnknownMemberId)]);
    h.core.leave(h.now, "g", &[leave(&a)]).unwrap();
    let outputs = h.outputs();
    assert!(
        matches!(outputs.as_slice(), [Output::Persist { records, .. }] if matches!(&records[0], Record::Group { metadata: Some(m), .. } if m.members.is_empty())),
        "{outputs:?}"
    );
    assert_eq!(h.state(), GroupState::Empty);
}

#[test]
fn the_vote_picks_the_protocol_every_member_supports() {
    let mut h = Harness::new();
    let (_, _) = h.join_new(&["range", "cooperative-sticky"]);
    let (_, _) = h.join_new(&["cooperative-sticky"]);
    h.advance(DELAY);
    h.advance(DELAY);
    let joins = h.joins();
    assert_eq!(joins.len(), 2);
    assert!(
        joins
            .iter()
            .all(|(_, r)| r.protocol_name.as_deref() == Some("cooperative-sticky"))
    );
    let reply = h.send_join(Harness::join_request("", &["roundrobin"]));
    let joins = h.joins();
    assert_eq!(joins[0].0, reply);
    assert_eq!(
        joins[0].1.error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
}

#[test]
fn commits_are_fenced_by_generation_member_and_rebalance_phase() {
    let mut h = Harness::new();
    let (a, b) = stable_pair(&mut h);
    let who = |id: &str| MemberRef {
        member_id: id.into(),
        instance_id: None,
    };
    let now = h.now;
    assert_eq!(h.core.validate_commit(now, "g", 1, &who(&a)), Ok(0));
    assert_eq!(
        h.core.validate_commit(now, "g", 0, &who(&a)),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        h.core.validate_commit(now, "g", 1, &who("stranger")),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        h.core.validate_commit(now, "g", -1, &who("")),
        Err(ResponseError::UnknownMemberId),
        "no simple commits while the group has members"
    );
    // PreparingRebalance: the current generation may still commit (cooperative members do).
    h.join_new(&["range"]);
    assert_eq!(h.core.validate_commit(now, "g", 1, &who(&b)), Ok(0));
    h.send_join(Harness::join_request(&a, &["range"]));
    h.send_join(Harness::join_request(&b, &["range"]));
    assert_eq!(h.joins().len(), 3);
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    assert_eq!(
        h.core.validate_commit(now, "g", 2, &who(&b)),
        Err(ResponseError::RebalanceInProgress)
    );
}

#[test]
fn a_simple_consumer_commits_to_a_group_without_members() {
    let mut h = Harness::new();
    let simple = MemberRef::default();
    assert_eq!(h.core.validate_commit(h.now, "solo", -1, &simple), Ok(0));
    assert_eq!(
        h.core.validate_commit(h.now, "solo", 3, &simple),
        Err(ResponseError::IllegalGeneration)
    );
    h.core
        .committed(h.now, "solo", vec![("t".into(), 0, value(5))], 10);
    let fetched = h.core.fetch_offsets("solo", None).unwrap();
    assert_eq!(fetched, vec![("t".into(), 0, Some(value(5)))]);
    let listed = h.core.list(&[GroupState::Empty]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].group, "solo");
}

fn value(offset: i64) -> OffsetValue {
    OffsetValue {
        offset,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp: 1_000,
    }
}

#[test]
fn pipelined_commits_that_finish_out_of_order_keep_the_later_write() {
    let mut h = Harness::new();
    h.core
        .committed(h.now, "g", vec![("t".into(), 0, value(20))], 8);
    h.core
        .committed(h.now, "g", vec![("t".into(), 0, value(10))], 7);
    let wanted = vec![("t".to_string(), vec![0, 1])];
    let fetched = h.core.fetch_offsets("g", Some(&wanted)).unwrap();
    assert_eq!(
        fetched,
        vec![("t".into(), 0, Some(value(20))), ("t".into(), 1, None)]
    );
}

#[test]
fn a_static_member_restarting_within_its_session_keeps_its_place_without_a_rebalance() {
    let mut h = Harness::new();
    let mut request = Harness::join_request("", &["range"]);
    request.instance_id = Some("instance-1".into());
    h.send_join(request.clone());
    h.advance(DELAY);
    let joins = h.joins();
    assert_eq!(joins.len(), 1, "static members skip MEMBER_ID_REQUIRED");
    let old = joins[0].1.member_id.clone();
    h.sync_all(&old, &[], 1, &[(&old, "P")]);
    let rebalances = h.core.stats().rebalances;

    h.advance(SESSION / 2);
    h.send_join(request);
    let outputs = h.outputs();
    let (response, persisted) = match outputs.as_slice() {
        [Output::Persist { token, .. }, Output::Join { response, .. }] => {
            (response.clone(), *token)
        }
        other => panic!("{other:?}"),
    };
    h.core.persisted(h.now, persisted, Ok(()));
    assert_eq!(response.error, None);
    assert_eq!(response.generation, 1, "same generation: no rebalance");
    assert_ne!(response.member_id, old);
    assert_eq!(h.core.stats().rebalances, rebalances);
    assert_eq!(h.state(), GroupState::Stable);
    let new = response.member_id.clone();
    let reply = h.send_sync(SyncRequest {
        instance_id: Some("instance-1".into()),
        ..h.sync(&new, 1, &[])
    });
    match h.outputs().as_slice() {
        [Output::Sync { reply: r, response }] => {
            assert_eq!(*r, reply);
            assert_eq!(response.assignment, Bytes::from("P"), "its assignment back");
        }
        other => panic!("{other:?}"),
    }
    let fenced = MemberRef {
        member_id: old,
        instance_id: Some("instance-1".into()),
    };
    assert_eq!(
        h.core.heartbeat(h.now, "g", 1, &fenced),
        Some(ResponseError::FencedInstanceId)
    );
}

#[test]
fn session_timeouts_and_group_size_are_bounded() {
    let mut h = Harness::new();
    let mut request = Harness::join_request("", &["range"]);
    request.session_timeout = Duration::from_millis(100);
    let reply = h.send_join(request);
    assert_eq!(
        h.joins(),
        vec![(
            reply,
            JoinResponse::error(ResponseError::InvalidSessionTimeout, "")
        )]
    );
    for _ in 0..3 {
        h.join_new(&["range"]);
    }
    let reply = h.send_join(Harness::join_request("", &["range"]));
    let joins = h.joins();
    assert_eq!(joins[0].0, reply);
    assert_eq!(joins[0].1.error, Some(ResponseError::GroupMaxSizeReached));
}

#[test]
fn pending_member_ids_expire_if_never_used() {
    let mut h = Harness::new();
    let first = h.send_join(Harness::join_request("", &["range"]));
    let joins = h.joins();
    assert_eq!(joins[0].0, first);
    let id = joins[0].1.member_id.clone();
    h.advance(SESSION + Duration::from_millis(1));
    h.send_join(Harness::join_request(&id, &["range"]));
    let joins = h.joins();
    assert_eq!(joins[0].1.error, Some(ResponseError::UnknownMemberId));
}

#[test]
fn losing_the_partition_answers_held_requests_not_coordinator() {
    let mut h = Harness::new();
    let (_, reply) = h.join_new(&["range"]);
    h.core.unload(0);
    let joins = h.joins();
    assert_eq!(joins[0].0, reply);
    assert_eq!(joins[0].1.error, Some(ResponseError::NotCoordinator));
    assert_eq!(
        h.core.describe("g").unwrap_err(),
        ResponseError::NotCoordinator
    );
    h.core.begin_load(0);
    assert_eq!(
        h.core.check_coordinator("g"),
        Err(ResponseError::CoordinatorLoadInProgress)
    );
}

#[test]
fn a_loaded_partition_brings_back_members_generation_and_offsets() {
    let mut h = Harness::new();
    h.core.unload(0);
    h.core.begin_load(0);
    let member = MemberMetadata {
        member_id: "m-1".into(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "h".into(),
        rebalance_timeout_ms: 30_000,
        session_timeout_ms: 10_000,
        subscription: Bytes::from("sub"),
        assignment: Bytes::from("A"),
    };
    let metadata = GroupMetadata {
        protocol_type: "consumer".into(),
        generation: 7,
        protocol: Some("range".into()),
        leader: Some("m-1".into()),
        state_timestamp: -1,
        members: vec![member],
    };
    let offset = |o: i64| Record::Offset {
        key: OffsetKey {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
        },
        value: Some(value(o)),
    };
    let records = vec![
        (0, offset(1)),
        (
            1,
            Record::Group {
                group: "g".into(),
                metadata: Some(metadata),
            },
        ),
        (2, offset(2)),
        (
            3,
            Record::Group {
                group: "gone".into(),
                metadata: None,
            },
        ),
    ];
    h.core.load(0, records, h.now);
    assert_eq!(h.state(), GroupState::Stable);
    assert_eq!(h.heartbeat("m-1", 7), None);
    let fetched = h.core.fetch_offsets("g", None).unwrap();
    assert_eq!(fetched, vec![("t".into(), 0, Some(value(2)))]);
    let reply = h.send_sync(h.sync("m-1", 7, &[]));
    match h.outputs().as_slice() {
        [Output::Sync { reply: r, response }] => {
            assert_eq!(*r, reply);
            assert_eq!(response.assignment, Bytes::from("A"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.core.live_records(0).len(),
        2,
        "one group record and one offset"
    );
}

#[test]
fn offsets_of_an_empty_group_expire_after_the_retention() {
    let mut h = Harness::new();
    let (a, _) = h.join_new(&["range"]);
    h.advance(DELAY);
    h.joins();
    h.core
        .committed(h.now, "g", vec![("t".into(), 0, value(3))], 1);
    let leave = MemberRef {
        member_id: a,
        instance_id: None,
    };
    h.core.leave(h.now, "g", &[leave]).unwrap();
    h.outputs();
    assert!(h.core.expire_offsets(h.wall()).is_empty());
    h.advance(RETENTION);
    let expired = h.core.expire_offsets(h.wall());
    assert_eq!(expired.len(), 1);
    assert_eq!(
        expired[0].1.len(),
        2,
        "an offset and the group's tombstones"
    );
    assert_eq!(h.core.describe("g").unwrap().state, GroupState::Dead);
}

/// The records a group's life wrote, as the partition's log holds them (for a replay).
fn log_of(outputs: &[Output], first_offset: i64) -> Vec<(i64, Record)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Persist { records, .. } => Some(records.clone()),
            _ => None,
        })
        .flatten()
        .zip(first_offset..)
        .map(|(record, offset)| (offset, record))
        .collect()
}

#[test]
fn an_empty_group_is_persisted_with_when_it_emptied_and_a_new_coordinator_counts_from_then() {
    let mut h = Harness::new();
    let (a, _) = h.join_new(&["range"]);
    h.advance(DELAY);
    h.joins();
    let reply = h.send_sync(h.sync(&a, 1, &[(&a, "A")]));
    let mut written = h.outputs();
    let token = match written.as_slice() {
        [Output::Persist { token, .. }] => *token,
        other => panic!("{other:?}"),
    };
    h.core.persisted(h.now, token, Ok(()));
    assert!(matches!(h.outputs().as_slice(), [Output::Sync { reply: r, .. }] if *r == reply));
    h.core
        .committed(h.now, "g", vec![("t".into(), 0, value(3))], 1);
    h.advance(Duration::from_secs(600));
    let emptied_ms = h.wall();
    let leave = MemberRef {
        member_id: a,
        instance_id: None,
    };
    h.core.leave(h.now, "g", &[leave]).unwrap();
    let emptied = h.outputs();
    match emptied.as_slice() {
        [Output::Persist { records, .. }] => match records.as_slice() {
            [
                Record::Group {
                    metadata: Some(m), ..
                },
            ] => {
                assert!(m.members.is_empty());
                assert_eq!(m.generation, 2);
                assert_eq!(m.state_timestamp, emptied_ms, "when the group emptied");
                assert_eq!(m.protocol_type, "consumer", "an empty consumer group");
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    let before = h.core.describe("g").unwrap();
    assert_eq!(before.state, GroupState::Empty);
    assert_eq!(before.protocol_type, "consumer");
    written.extend(emptied);
    // The log as a new coordinator replays it: the first generation, the commit, the empty one.
    let mut log = log_of(&written[..1], 0);
    log.push((
        1,
        Record::Offset {
            key: OffsetKey {
                group: "g".into(),
                topic: "t".into(),
                partition: 0,
            },
            value: Some(value(3)),
        },
    ));
    log.extend(log_of(&written[1..], 2));

    // Another node takes over half an hour later (its own monotonic clock).
    let mut other = GroupCoordinator::new(h.core.config().clone(), 1, "n2.1".into());
    let loaded_at = Instant::now();
    let loaded_ms = emptied_ms + 1_800_000;
    other.set_wall_clock(loaded_at, loaded_ms);
    other.begin_load(0);
    other.load(0, log, loaded_at);
    assert_eq!(other.describe("g").unwrap(), before, "the same view");
    let listed = other.list(&[GroupState::Empty]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].protocol_type, "consumer");
    // Retention counts from when the group emptied, not from the load.
    let retention_ms = i64::try_from(RETENTION.as_millis()).unwrap();
    assert!(
        other
            .expire_offsets(emptied_ms + retention_ms - 1)
            .is_empty()
    );
    let expired = other.expire_offsets(emptied_ms + retention_ms);
    assert_eq!(expired.len(), 1, "expired an hour after emptying");
    assert_eq!(
        expired[0].1.len(),
        2,
        "the offset's and the group's tombstones"
    );
    assert_eq!(other.describe("g").unwrap().state, GroupState::Dead);
}

#[test]
fn an_empty_group_recorded_without_a_state_timestamp_expires_by_its_commit_times() {
    let mut h = Harness::new();
    h.core.unload(0);
    h.core.begin_load(0);
    let empty = GroupMetadata {
        protocol_type: "consumer".into(),
        generation: 4,
        protocol: None,
        leader: None,
        state_timestamp: -1,
        members: Vec::new(),
    };
    let committed_ms = h.wall() - 1_000;
    let commit = |partition: i32| Record::Offset {
        key: OffsetKey {
            group: "g".into(),
            topic: "t".into(),
            partition,
        },
        value: Some(OffsetValue {
            commit_timestamp: committed_ms + i64::from(partition) * 1_000,
            ..value(5)
        }),
    };
    let records = vec![
        (0, commit(0)),
        (1, commit(1)),
        (
            2,
            Record::Group {
                group: "g".into(),
                metadata: Some(empty),
            },
        ),
    ];
    h.core.load(0, records, h.now);
    assert_eq!(h.state(), GroupState::Empty);
    let retention_ms = i64::try_from(RETENTION.as_millis()).unwrap();
    assert!(
        h.core
            .expire_offsets(committed_ms + retention_ms - 1)
            .is_empty()
    );
    let expired = h.core.expire_offsets(committed_ms + retention_ms);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].1.len(), 1, "only the older commit: {expired:?}");
    assert_eq!(h.state(), GroupState::Empty, "the later commit remains");
}

#[test]
fn deleting_a_group_needs_it_empty() {
    let mut h = Harness::new();
    stable_pair(&mut h);
    assert_eq!(
        h.core.delete_group("g").unwrap_err(),
        ResponseError::NonEmptyGroup
    );
    assert_eq!(
        h.core.delete_group("nope").unwrap_err(),
        ResponseError::GroupIdNotFound
    );
    h.core
        .committed(h.now, "solo", vec![("t".into(), 0, value(1))], 1);
    let (_, records) = h.core.delete_group("solo").unwrap();
    assert_eq!(records.len(), 1);
    assert!(h.core.fetch_offsets("solo", None).unwrap().is_empty());
}

#[test]
fn a_failed_persist_answers_the_syncs_and_rebalances() {
    let mut h = Harness::new();
    let (a, _) = h.join_new(&["range"]);
    h.advance(DELAY);
    h.joins();
    let reply = h.send_sync(h.sync(&a, 1, &[(&a, "A")]));
    let token = match h.outputs().as_slice() {
        [Output::Persist { token, .. }] => *token,
        other => panic!("{other:?}"),
    };
    h.core
        .persisted(h.now, token, Err(ResponseError::NotCoordinator));
    match h.outputs().as_slice() {
        [Output::Sync { reply: r, response }] => {
            assert_eq!(*r, reply);
            assert_eq!(response.error, Some(ResponseError::NotCoordinator));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.state(), GroupState::PreparingRebalance);
}

// Transactional offset commits (TxnOffsetCommit): pending per producer until the marker.

fn member(id: &str) -> MemberRef {
    MemberRef {
        member_id: id.into(),
        instance_id: None,
    }
}

fn offset_key(group: &str, partition: i32) -> OffsetKey {
    OffsetKey {
        group: group.into(),
        topic: "t".into(),
        partition,
    }
}

fn txn_offset(group: &str, partition: i32, producer_id: i64, offset: i64) -> LogEntry {
    LogEntry::Txn {
        producer_id,
        record: Record::Offset {
            key: offset_key(group, partition),
            value: Some(value(offset)),
        },
    }
}

fn plain_offset(group: &str, partition: i32, offset: i64) -> LogEntry {
    LogEntry::Record(Record::Offset {
        key: offset_key(group, partition),
        value: Some(value(offset)),
    })
}

fn marker(producer_id: i64, commit: bool) -> LogEntry {
    LogEntry::Marker {
        producer_id,
        commit,
    }
}

/// What OffsetFetch of `group` returns: (partition, offset) of every committed offset.
fn committed_offsets(core: &GroupCoordinator, group: &str) -> Vec<(i32, i64)> {
    core.fetch_offsets(group, None)
        .unwrap()
        .into_iter()
        .map(|(_, p, c)| (p, c.unwrap().offset))
        .collect()
}

fn pending(core: &GroupCoordinator, group: &str) -> Vec<i32> {
    core.pending_partitions(group)
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

#[test]
fn transactional_offsets_are_pending_until_the_commit_marker() {
    let mut h = Harness::new();
    let now = h.now;
    assert_eq!(h.core.validate_txn_commit("g", -1, &member("")), Ok(0));
    h.core
        .txn_committed(now, "g", 7, vec![("t".into(), 0, value(5))], 10);
    h.core
        .txn_committed(now, "g", 7, vec![("t".into(), 1, value(9))], 11);
    assert!(committed_offsets(&h.core, "g").is_empty(), "invisible");
    assert_eq!(pending(&h.core, "g"), vec![0, 1]);
    assert!(h.core.has_pending_txns(0));
    // Another producer's marker changes nothing.
    h.core.end_txn(now, 0, 8, true, 12);
    assert_eq!(pending(&h.core, "g"), vec![0, 1]);
    h.core.end_txn(now, 0, 7, true, 13);
    assert_eq!(committed_offsets(&h.core, "g"), vec![(0, 5), (1, 9)]);
    assert!(pending(&h.core, "g").is_empty());
    assert!(!h.core.has_pending_txns(0));
    // The group exists now (a simple consumer's group, as Kafka creates it).
    assert_eq!(h.core.describe("g").unwrap().state, GroupState::Empty);
}

#[test]
fn an_abort_marker_drops_the_pending_offsets_and_keeps_the_committed_ones() {
    let mut h = Harness::new();
    let now = h.now;
    h.core
        .committed(now, "g", vec![("t".into(), 0, value(3))], 1);
    h.core
        .txn_committed(now, "g", 7, vec![("t".into(), 0, value(5))], 2);
    assert_eq!(committed_offsets(&h.core, "g"), vec![(0, 3)]);
    assert_eq!(pending(&h.core, "g"), vec![0]);
    h.core.end_txn(now, 0, 7, false, 3);
    assert_eq!(committed_offsets(&h.core, "g"), vec![(0, 3)]);
    assert!(pending(&h.core, "g").is_empty());
    // The next transaction of the same producer starts clean.
    h.core
        .txn_committed(now, "g", 7, vec![("t".into(), 1, value(8))], 4);
    h.core.end_txn(now, 0, 7, true, 5);
    assert_eq!(committed_offsets(&h.core, "g"), vec![(0, 3), (1, 8)]);
}

#[test]
fn plain_and_transactional_commits_of_a_partition_keep_the_later_write() {
    let mut h = Harness::new();
    let now = h.now;
    // The transactional write (log offset 10) is older than a plain commit (12): it loses.
    h.core
        .txn_committed(now, "g", 7, vec![("t".into(), 0, value(5))], 10);
    h.core
        .committed(now, "g", vec![("t".into(), 0, value(6))], 12);
    h.core.end_txn(now, 0, 7, true, 13);
    assert_eq!(committed_offsets(&h.core, "g"), vec![(0, 6)]);
    // A newer transactional write (14) wins over the plain one.
    h.core
        .txn_committed(now, "g", 7, vec![("t".into(), 0, value(9))], 14);
    h.core.end_txn(now, 0, 7, true, 15);
    assert_eq!(committed_offsets(&h.core, "g"), vec![(0, 9)]);
}

#[test]
fn transactional_commits_are_fenced_as_kafka_fences_them() {
    let mut h = Harness::new();
    assert_eq!(
        h.core.validate_txn_commit("unknown", 3, &member("m")),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        h.core.validate_txn_commit("", -1, &member("")),
        Err(ResponseError::InvalidGroupId)
    );
    let (a, b) = stable_pair(&mut h);
    assert_eq!(h.core.validate_txn_commit("g", 1, &member(&a)), Ok(0));
    // v0-2 carry no member: accepted even though the group has members (not for OffsetCommit).
    assert_eq!(h.core.validate_txn_commit("g", -1, &member("")), Ok(0));
    assert_eq!(
        h.core.validate_txn_commit("g", 0, &member(&a)),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        h.core.validate_txn_commit("g", 1, &member("zombie")),
        Err(ResponseError::UnknownMemberId)
    );
    // CompletingRebalance: a transactional commit of the new generation is accepted.
    h.join_new(&["range"]);
    h.send_join(Harness::join_request(&a, &["range"]));
    h.send_join(Harness::join_request(&b, &["range"]));
    assert_eq!(h.joins().len(), 3);
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    assert_eq!(h.core.validate_txn_commit("g", 2, &member(&b)), Ok(0));
    h.core.unload(0);
    assert_eq!(
        h.core.validate_txn_commit("g", 2, &member(&b)),
        Err(ResponseError::NotCoordinator)
    );
}

#[test]
fn replay_commits_aborts_and_keeps_pending_what_has_no_marker() {
    let mut h = Harness::new();
    let entries = vec![
        (0, plain_offset("g", 0, 1)),
        (1, txn_offset("g", 0, 7, 5)),
        (2, txn_offset("g", 1, 8, 50)),
        (3, txn_offset("g", 2, 9, 90)),
        (4, marker(7, true)),
        (5, marker(8, false)),
        // A marker of a producer without offsets here changes nothing.
        (6, marker(42, true)),
        (7, txn_offset("g", 0, 7, 6)),
        (8, txn_offset("h", 0, 9, 70)),
    ];
    h.core.begin_load(0);
    h.core.load_log(0, entries, h.now);
    assert_eq!(committed_offsets(&h.core, "g"), vec![(0, 5)]);
    assert_eq!(pending(&h.core, "g"), vec![0, 2]);
    assert_eq!(pending(&h.core, "h"), vec![0]);
    assert_eq!(h.core.pending_producers(0), vec![7, 9]);
    // The markers of what stayed pending still come and settle it.
    h.core.end_txn(h.now, 0, 9, true, 9);
    h.core.end_txn(h.now, 0, 7, false, 10);
    assert_eq!(committed_offsets(&h.core, "g"), vec![(0, 5), (2, 90)]);
    assert_eq!(committed_offsets(&h.core, "h"), vec![(0, 70)]);
    assert!(!h.core.has_pending_txns(0));
}

#[test]
fn replay_of_what_the_live_coordinator_wrote_gives_the_same_state() {
    // Live: plain and transactional commits of two producers and their markers, in log order.
    let mut h = Harness::new();
    let now = h.now;
    let mut log = Vec::new();
    h.core
        .committed(now, "g", vec![("t".into(), 0, value(1))], 0);
    log.push((0, plain_offset("g", 0, 1)));
    h.core
        .txn_committed(now, "g", 7, vec![("t".into(), 0, value(5))], 1);
    log.push((1, txn_offset("g", 0, 7, 5)));
    h.core
        .txn_committed(now, "g", 8, vec![("t".into(), 1, value(6))], 2);
    log.push((2, txn_offset("g", 1, 8, 6)));
    h.core.end_txn(now, 0, 7, true, 3);
    log.push((3, marker(7, true)));
    h.core
        .txn_committed(now, "g", 7, vec![("t".into(), 2, value(7))], 4);
    log.push((4, txn_offset("g", 2, 7, 7)));
    let mut other = GroupCoordinator::new(GroupConfig::default(), 1, "n2.1".into());
    other.begin_load(0);
    other.load_log(0, log, now);
    assert_eq!(
        committed_offsets(&other, "g"),
        committed_offsets(&h.core, "g")
    );
    assert_eq!(pending(&other, "g"), pending(&h.core, "g"));
    assert_eq!(pending(&other, "g"), vec![1, 2]);
}

#[test]
fn markers_written_while_the_partition_loads_apply_after_the_replay_once() {
    let mut h = Harness::new();
    let now = h.now;
    h.core.begin_load(0);
    // Reported while loading: one the replay holds (offset 2), one after it (offset 5).
    h.core.end_txn(now, 0, 7, true, 2);
    h.core.end_txn(now, 0, 8, true, 5);
    assert_eq!(
        h.core.validate_txn_commit("g", -1, &member("")),
        Err(ResponseError::CoordinatorLoadInProgress)
    );
    let entries = vec![
        (0, txn_offset("g", 0, 7, 10)),
        (1, txn_offset("g", 1, 8, 20)),
        (2, marker(7, true)),
        // Producer 7's next transaction, still open: the early report of its earlier marker
        // must not commit it.
        (3, txn_offset("g", 2, 7, 30)),
    ];
    h.core.load_log(0, entries, now);
    assert_eq!(committed_offsets(&h.core, "g"), vec![(0, 10), (1, 20)]);
    assert_eq!(pending(&h.core, "g"), vec![2]);
}

#[test]
fn a_write_acknowledged_after_its_marker_is_settled_as_the_marker_said() {
    let mut h = Harness::new();
    let now = h.now;
    // The coordinator aborted the transaction (timeout) while the write at 15 waited for its
    // replicas: its late acknowledgement must not leave it pending for the next transaction.
    h.core.end_txn(now, 0, 7, false, 20);
    h.core
        .txn_committed(now, "g", 7, vec![("t".into(), 0, value(5))], 15);
    assert!(pending(&h.core, "g").is_empty());
    assert!(committed_offsets(&h.core, "g").is_empty());
    h.core.end_txn(now, 0, 8, true, 30);
    h.core
        .txn_committed(now, "g", 8, vec![("t".into(), 1, value(6))], 25);
    assert_eq!(committed_offsets(&h.core, "g"), vec![(1, 6)]);
    // A write after the last marker is pending as usual.
    h.core
        .txn_committed(now, "g", 7, vec![("t".into(), 0, value(9))], 31);
    assert_eq!(pending(&h.core, "g"), vec![0]);
}

#[test]
fn deletes_drop_pending_offsets_and_retention_waits_for_them() {
    let mut h = Harness::new();
    let now = h.now;
    h.core
        .committed(now, "g", vec![("t".into(), 0, value(1))], 0);
    h.core
        .txn_committed(now, "g", 7, vec![("t".into(), 1, value(2))], 1);
    // OffsetDelete of a partition with only a pending commit writes its tombstone too.
    let (_, records) = h
        .core
        .delete_offsets("g", &[("t".into(), 1), ("t".into(), 5)])
        .unwrap();
    assert_eq!(records.len(), 1);
    assert!(pending(&h.core, "g").is_empty());
    h.core.end_txn(now, 0, 7, true, 2);
    assert_eq!(committed_offsets(&h.core, "g"), vec![(0, 1)]);
    // Retention keeps an offset while a transactional commit of it is pending.
    h.core
        .txn_committed(now, "g", 7, vec![("t".into(), 0, value(3))], 3);
    h.advance(RETENTION + RETENTION);
    assert!(h.core.expire_offsets(h.wall()).is_empty());
    assert_eq!(committed_offsets(&h.core, "g"), vec![(0, 1)]);
    // DeleteGroups drops them with the group.
    let (_, records) = h.core.delete_group("g").unwrap();
    assert_eq!(records.len(), 1, "one tombstone for partition 0");
    assert!(pending(&h.core, "g").is_empty());
    h.core.end_txn(now, 0, 7, true, 4);
    assert!(h.core.fetch_offsets("g", None).unwrap().is_empty());
}

#[test]
fn losing_the_partition_forgets_its_pending_offsets() {
    let mut h = Harness::new();
    let now = h.now;
    h.core
        .txn_committed(now, "g", 7, vec![("t".into(), 0, value(2))], 1);
    h.core.unload(0);
    h.core.end_txn(now, 0, 7, true, 2);
    h.core.begin_load(0);
    h.core.load_log(0, Vec::new(), now);
    assert!(pending(&h.core, "g").is_empty());
    assert!(h.core.fetch_offsets("g", None).unwrap().is_empty());
}
