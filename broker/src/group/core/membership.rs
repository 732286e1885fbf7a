//! Membership: JoinGroup (KIP-394 member ids, static members, the protocol vote, the initial
//! delay), SyncGroup, Heartbeat, LeaveGroup, session expiry and the rebalance that ties them.

use std::time::Instant;

use bytes::Bytes;

use super::group::{Group, GroupState, JoinPhase, Member};
use super::{
    GroupCoordinator, JoinRequest, JoinResponse, JoinedMember, MemberRef, Output, PersistToken,
    Reply, ResponseError, SyncRequest, SyncResponse,
};

impl GroupCoordinator {
    /// A JoinGroup; its answer comes as [`Output::Join`] with `reply` (at once, or when the join
    /// phase ends).
    pub fn join(&mut self, now: Instant, reply: Reply, request: JoinRequest) {
        if let Err(error) = self.check_join(&request) {
            return self.answer_join(reply, JoinResponse::error(error, &request.member_id));
        }
        let partition = self.partition_of(&request.group);
        if !self.groups.contains_key(&request.group) {
            if !request.member_id.is_empty() {
                return self.answer_join(
                    reply,
                    JoinResponse::error(ResponseError::UnknownMemberId, &request.member_id),
                );
            }
            let group = Group::new(&request.group, partition, self.wall_ms(now));
            self.groups.insert(request.group.clone(), group);
        }
        let id = request.group.clone();
        self.with_group(&id, |coordinator, group| {
            if request.member_id.is_empty() {
                coordinator.join_unknown(group, now, reply, request);
            } else {
                coordinator.join_known(group, now, reply, request);
            }
        });
    }

    fn check_join(&self, request: &JoinRequest) -> Result<(), ResponseError> {
        self.check_coordinator(&request.group)?;
        let timeout = request.session_timeout;
        if timeout < self.config.min_session_timeout || timeout > self.config.max_session_timeout {
            return Err(ResponseError::InvalidSessionTimeout);
        }
        Ok(())
    }

    fn answer_join(&mut self, reply: Reply, response: JoinResponse) {
        self.outputs.push_back(Output::Join { reply, response });
    }

    fn answer_sync(&mut self, reply: Reply, response: SyncResponse) {
        self.outputs.push_back(Output::Sync { reply, response });
    }

    /// A first join (no member id yet).
    fn join_unknown(&mut self, group: &mut Group, now: Instant, reply: Reply, req: JoinRequest) {
        if group.state == GroupState::Dead {
            let response = JoinResponse::error(ResponseError::CoordinatorNotAvailable, "");
            return self.answer_join(reply, response);
        }
        if !group.supports(&req.protocol_type, &req.protocols) {
            let response = JoinResponse::error(ResponseError::InconsistentGroupProtocol, "");
            return self.answer_join(reply, response);
        }
        if let Some(instance) = req.instance_id.clone()
            && let Some(old) = group.static_members.get(&instance).cloned()
        {
            return self.rejoin_static(group, now, reply, req, &old);
        }
        if group.members.len() + group.pending.len() >= self.config.max_group_size {
            let response = JoinResponse::error(ResponseError::GroupMaxSizeReached, "");
            return self.answer_join(reply, response);
        }
        let member_id = self.new_member_id(&req.client_id);
        if req.instance_id.is_none() && req.require_known_member_id {
            // KIP-394: the client must come back with this id; until then it only holds a place.
            group
                .pending
                .insert(member_id.clone(), now + req.session_timeout);
            let response = JoinResponse::error(ResponseError::MemberIdRequired, &member_id);
            return self.answer_join(reply, response);
        }
        self.add_member(group, now, reply, req, member_id);
    }

    /// A static member joins again with a new process: it takes its old place (a new member id,
    /// the old one fenced), without a rebalance when nothing changed (KIP-345).
    fn rejoin_static(
        &mut self,
        group: &mut Group,
        now: Instant,
        reply: Reply,
        req: JoinRequest,
        old_id: &str,
    ) {
        let Some(mut member) = group.members.remove(old_id) else {
            return self.add_member(group, now, reply, req, String::new());
        };
        let new_id = self.new_member_id(&req.client_id);
        if let Some(old_reply) = member.awaiting_join.take() {
            let response = JoinResponse::error(ResponseError::FencedInstanceId, old_id);
            self.answer_join(old_reply, response);
        }
        if let Some(old_reply) = member.awaiting_sync.take() {
            self.answer_sync(
                old_reply,
                SyncResponse::error(ResponseError::FencedInstanceId),
            );
        }
        let unchanged = member.protocols == req.protocols;
        member.id = new_id.clone();
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.protocols = req.protocols.clone();
        member.touch(now);
        let was_leader = group.leader.as_deref() == Some(old_id);
        if was_leader {
            group.leader = Some(new_id.clone());
        }
        if let Some(instance) = &req.instance_id {
            group
                .static_members
                .insert(instance.clone(), new_id.clone());
        }
        match group.state {
            GroupState::Stable if unchanged => {
                group.members.insert(new_id.clone(), member);
                // The group's metadata names the new id from now on.
                self.persist(group);
                let skip = was_leader && req.supports_skip_assignment;
                let members = if skip {
                    joined_members(group)
                } else {
                    Vec::new()
                };
                let response = generation_answer(group, new_id, members, skip);
                self.answer_join(reply, response);
            }
            GroupState::PreparingRebalance => {
                member.awaiting_join = Some(reply);
                group.members.insert(new_id, member);
                self.maybe_complete_join(group, now);
            }
            _ => {
                member.awaiting_join = Some(reply);
                group.members.insert(new_id, member);
                self.prepare_rebalance(group, now);
            }
        }
    }

    fn add_member(
        &mut self,
        group: &mut Group,
        now: Instant,
        reply: Reply,
        req: JoinRequest,
        member_id: String,
    ) {
        let member_id = if member_id.is_empty() {
            self.new_member_id(&req.client_id)
        } else {
            member_id
        };
        if group.members.is_empty() {
            group.protocol_type = Some(req.protocol_type.clone());
        }
        group.next_seq += 1;
        let mut member = Member {
            id: member_id.clone(),
            instance_id: req.instance_id.clone(),
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout: req.session_timeout,
            rebalance_timeout: req.rebalance_timeout,
            protocols: req.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(reply),
            awaiting_sync: None,
            session_deadline: now,
            is_new: true,
            joined_seq: group.next_seq,
        };
        member.touch(now);
        if let Some(instance) = &req.instance_id {
            group
                .static_members
                .insert(instance.clone(), member_id.clone());
        }
        group.members.insert(member_id, member);
        group.new_member_joined = true;
        if group.state == GroupState::PreparingRebalance {
            self.maybe_complete_join(group, now);
        } else {
            self.prepare_rebalance(group, now);
        }
    }

    /// A join with a member id: a pending member coming back, or a known member rejoining.
    fn join_known(&mut self, group: &mut Group, now: Instant, reply: Reply, req: JoinRequest) {
        if group.pending.remove(&req.member_id).is_some() {
            if !group.supports(&req.protocol_type, &req.protocols) {
                let response =
                    JoinResponse::error(ResponseError::InconsistentGroupProtocol, &req.member_id);
                return self.answer_join(reply, response);
            }
            let member_id = req.member_id.clone();
            return self.add_member(group, now, reply, req, member_id);
        }
        if let Err(error) = check_member(group, &req.member_id, req.instance_id.as_deref()) {
            return self.answer_join(reply, JoinResponse::error(error, &req.member_id));
        }
        if !group.supports(&req.protocol_type, &req.protocols) {
            let response =
                JoinResponse::error(ResponseError::InconsistentGroupProtocol, &req.member_id);
            return self.answer_join(reply, response);
        }
        let is_leader = group.leader.as_deref() == Some(req.member_id.as_str());
        let Some(member) = group.members.get_mut(&req.member_id) else {
            return;
        };
        let unchanged = member.protocols == req.protocols;
        if let Some(old) = member.awaiting_join.replace(reply) {
            // A join sent again before the first was answered: the old one gets nothing better.
            self.outputs.push_back(Output::Join {
                reply: old,
                response: JoinResponse::error(ResponseError::UnknownMemberId, &req.member_id),
            });
        }
        member.protocols = req.protocols;
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.touch(now);
        match group.state {
            GroupState::PreparingRebalance => self.maybe_complete_join(group, now),
            GroupState::CompletingRebalance | GroupState::Stable if unchanged && !is_leader => {
                // It missed the answer of this generation: send it again.
                let reply = member.awaiting_join.take();
                let response = generation_answer(group, req.member_id, Vec::new(), false);
                if let Some(reply) = reply {
                    self.answer_join(reply, response);
                }
            }
            _ => self.prepare_rebalance(group, now),
        }
    }

    /// Starts a rebalance: every member must rejoin within the rebalance timeout (or the initial
    /// delay, for a group that was empty).
    pub(super) fn prepare_rebalance(&mut self, group: &mut Group, now: Instant) {
        if group.state == GroupState::CompletingRebalance {
            // The leader's assignment of the generation being completed will never come.
            for member in group.members.values_mut() {
                member.assignment = Bytes::new();
                if let Some(reply) = member.awaiting_sync.take() {
                    self.outputs.push_back(Output::Sync {
                        reply,
                        response: SyncResponse::error(ResponseError::RebalanceInProgress),
                    });
                }
            }
        }
        let timeout = group.rebalance_timeout();
        let phase = if group.state == GroupState::Empty {
            let delay = self.config.initial_rebalance_delay.min(timeout);
            JoinPhase {
                deadline: now + delay,
                initial: Some(timeout.saturating_sub(delay)),
            }
        } else {
            JoinPhase {
                deadline: now + timeout,
                initial: None,
            }
        };
        group.join_phase = Some(phase);
        group.new_member_joined = false;
        group.set_state(GroupState::PreparingRebalance, self.wall_ms(now));
        self.rebalances += 1;
        tracing::debug!(group = %group.id, generation = group.generation, "preparing rebalance");
        self.maybe_complete_join(group, now);
    }

    /// Ends the join phase if every member has rejoined (never early during the initial delay).
    pub(super) fn maybe_complete_join(&mut self, group: &mut Group, now: Instant) {
        if group.state != GroupState::PreparingRebalance {
            return;
        }
        let initial = group.join_phase.is_some_and(|p| p.initial.is_some());
        if !initial && group.all_joined() {
            self.complete_join(group, now);
        }
    }

    /// The join phase's time is up (or everyone is in): members that did not rejoin are out,
    /// the generation moves on, and every held join is answered.
    fn complete_join(&mut self, group: &mut Group, now: Instant) {
        group.join_phase = None;
        let gone: Vec<String> = group
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(group, &id);
        }
        group.pending.clear();
        group.generation += 1;
        if group.members.is_empty() {
            // The protocol type stays, as in Kafka: an empty consumer group is still one.
            group.protocol = None;
            group.leader = None;
            group.set_state(GroupState::Empty, self.wall_ms(now));
            self.persist(group);
            return;
        }
        group.protocol = group.select_protocol();
        let leader_kept = group.leader.as_ref().is_some_and(|l| {
            group
                .members
                .get(l)
                .is_some_and(|m| m.awaiting_join.is_some())
        });
        if !leader_kept {
            group.leader = group
                .members
                .values()
                .filter(|m| m.awaiting_join.is_some())
                .min_by_key(|m| m.joined_seq)
                .or_else(|| group.members.values().min_by_key(|m| m.joined_seq))
                .map(|m| m.id.clone());
        }
        group.set_state(GroupState::CompletingRebalance, self.wall_ms(now));
        tracing::debug!(group = %group.id, generation = group.generation, protocol = ?group.protocol, "join phase complete");
        let everyone = joined_members(group);
        let leader = group.leader.clone().unwrap_or_default();
        let replies: Vec<(Reply, String)> = group
            .members
            .values_mut()
            .filter_map(|m| {
                m.is_new = false;
                m.touch(now);
                m.awaiting_join.take().map(|r| (r, m.id.clone()))
            })
            .collect();
        for (reply, member_id) in replies {
            let members = if member_id == leader {
                everyone.clone()
            } else {
                Vec::new()
            };
            let response = generation_answer(group, member_id, members, false);
            self.answer_join(reply, response);
        }
    }

    /// A SyncGroup; its answer comes as [`Output::Sync`] with `reply`.
    pub fn sync(&mut self, now: Instant, reply: Reply, req: SyncRequest) {
        if let Err(error) = self.check_coordinator(&req.group) {
            return self.answer_sync(reply, SyncResponse::error(error));
        }
        let id = req.group.clone();
        let handled = self.with_group(&id, |coordinator, group| {
            coordinator.sync_group(group, now, reply, req)
        });
        if handled.is_none() {
            self.answer_sync(reply, SyncResponse::error(ResponseError::UnknownMemberId));
        }
    }

    fn sync_group(&mut self, group: &mut Group, now: Instant, reply: Reply, req: SyncRequest) {
        if let Err(error) = check_member(group, &req.member_id, req.instance_id.as_deref()) {
            return self.answer_sync(reply, SyncResponse::error(error));
        }
        if req.generation != group.generation {
            return self.answer_sync(reply, SyncResponse::error(ResponseError::IllegalGeneration));
        }
        let type_differs = req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != group.protocol_type.as_ref());
        let name_differs = req
            .protocol_name
            .as_ref()
            .is_some_and(|n| Some(n) != group.protocol.as_ref());
        if type_differs || name_differs {
            let error = ResponseError::InconsistentGroupProtocol;
            return self.answer_sync(reply, SyncResponse::error(error));
        }
        let is_leader = group.leader.as_deref() == Some(req.member_id.as_str());
        match group.state {
            GroupState::Empty | GroupState::Dead => {
                self.answer_sync(reply, SyncResponse::error(ResponseError::UnknownMemberId));
            }
            GroupState::PreparingRebalance => {
                let error = ResponseError::RebalanceInProgress;
                self.answer_sync(reply, SyncResponse::error(error));
            }
            GroupState::Stable => {
                let response = self.sync_answer(group, &req.member_id);
                if let Some(member) = group.members.get_mut(&req.member_id) {
                    member.touch(now);
                }
                self.answer_sync(reply, response);
            }
            GroupState::CompletingRebalance => {
                if let Some(member) = group.members.get_mut(&req.member_id) {
                    member.touch(now);
                    if let Some(old) = member.awaiting_sync.replace(reply) {
                        let error = SyncResponse::error(ResponseError::RebalanceInProgress);
                        self.outputs.push_back(Output::Sync {
                            reply: old,
                            response: error,
                        });
                    }
                }
                if is_leader && !self.persisting_generation(group) {
                    for member in group.members.values_mut() {
                        member.assignment = req
                            .assignments
                            .iter()
                            .find(|(id, _)| *id == member.id)
                            .map(|(_, a)| a.clone())
                            .unwrap_or_default();
                    }
                    // Answered once the assignment is durable (`persisted`).
                    self.persist(group);
                }
            }
        }
    }

    fn persisting_generation(&self, group: &Group) -> bool {
        self.persisting
            .values()
            .any(|(id, generation)| *id == group.id && *generation == group.generation)
    }

    fn sync_answer(&self, group: &Group, member_id: &str) -> SyncResponse {
        SyncResponse {
            error: None,
            protocol_type: group.protocol_type.clone(),
            protocol_name: group.protocol.clone(),
            assignment: group
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    /// A group metadata write finished: a generation whose assignment is now durable becomes
    /// stable and its held syncs are answered; a failed one is answered with `error` and the
    /// group rebalances.
    pub fn persisted(
        &mut self,
        now: Instant,
        token: PersistToken,
        result: Result<(), ResponseError>,
    ) {
        let Some((id, generation)) = self.persisting.remove(&token) else {
            return;
        };
        self.with_group(&id, |coordinator, group| {
            if group.generation != generation || group.state != GroupState::CompletingRebalance {
                return;
            }
            match result {
                Ok(()) => {
                    group.set_state(GroupState::Stable, coordinator.wall_ms(now));
                    let waiting: Vec<(Reply, String)> = group
                        .members
                        .values_mut()
                        .filter_map(|m| m.awaiting_sync.take().map(|r| (r, m.id.clone())))
                        .collect();
                    for (reply, member_id) in waiting {
                        let response = coordinator.sync_answer(group, &member_id);
                        coordinator.answer_sync(reply, response);
                    }
                }
                Err(error) => {
                    for member in group.members.values_mut() {
                        member.assignment = Bytes::new();
                        if let Some(reply) = member.awaiting_sync.take() {
                            coordinator.outputs.push_back(Output::Sync {
                                reply,
                                response: SyncResponse::error(error),
                            });
                        }
                    }
                    coordinator.prepare_rebalance(group, now);
                }
            }
        });
    }

    /// A Heartbeat: `None` means no error.
    pub fn heartbeat(
        &mut self,
        now: Instant,
        group: &str,
        generation: i32,
        member: &MemberRef,
    ) -> Option<ResponseError> {
        if let Err(error) = self.check_coordinator(group) {
            return Some(error);
        }
        let Some(group) = self.groups.get_mut(group) else {
            return Some(ResponseError::UnknownMemberId);
        };
        if let Err(error) = check_member(group, &member.member_id, member.instance_id.as_deref()) {
            return Some(error);
        }
        if generation != group.generation {
            return Some(ResponseError::IllegalGeneration);
        }
        let state = group.state;
        if let Some(m) = group.members.get_mut(&member.member_id) {
            m.touch(now);
        }
        match state {
            GroupState::Empty | GroupState::Dead => Some(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => Some(ResponseError::RebalanceInProgress),
            GroupState::CompletingRebalance | GroupState::Stable => None,
        }
    }

    /// A LeaveGroup of `members`: each one's error (`None`: gone).
    pub fn leave(
        &mut self,
        now: Instant,
        group: &str,
        members: &[MemberRef],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        self.check_coordinator(group)?;
        let id = group.to_string();
        let results = self.with_group(&id, |coordinator, group| {
            let results: Vec<Option<ResponseError>> = members
                .iter()
                .map(|m| coordinator.leave_one(group, m))
                .collect();
            if results.iter().any(Option::is_none) {
                coordinator.member_left(group, now);
            }
            results
        });
        Ok(results.unwrap_or_else(|| vec![Some(ResponseError::UnknownMemberId); members.len()]))
    }

    fn leave_one(&mut self, group: &mut Group, who: &MemberRef) -> Option<ResponseError> {
        let member_id = match &who.instance_id {
            Some(instance) => {
                let Some(current) = group.static_members.get(instance).cloned() else {
                    return Some(ResponseError::UnknownMemberId);
                };
                let unknown = who.member_id.is_empty() || who.member_id == "JoinGroup";
                if !unknown && who.member_id != current {
                    return Some(ResponseError::FencedInstanceId);
                }
                current
            }
            None => who.member_id.clone(),
        };
        if group.pending.remove(&member_id).is_some() {
            return None;
        }
        if !group.members.contains_key(&member_id) {
            return Some(ResponseError::UnknownMemberId);
        }
        self.remove_member(group, &member_id);
        None
    }

    /// Takes a member out, answering its held requests with UNKNOWN_MEMBER_ID.
    pub(super) fn remove_member(&mut self, group: &mut Group, member_id: &str) {
        let Some(mut member) = group.members.remove(member_id) else {
            return;
        };
        if let Some(instance) = &member.instance_id
            && group.static_members.get(instance).map(String::as_str) == Some(member_id)
        {
            group.static_members.remove(instance);
        }
        if let Some(reply) = member.awaiting_join.take() {
            self.answer_join(
                reply,
                JoinResponse::error(ResponseError::UnknownMemberId, member_id),
            );
        }
        if let Some(reply) = member.awaiting_sync.take() {
            self.answer_sync(reply, SyncResponse::error(ResponseError::UnknownMemberId));
        }
        if group.leader.as_deref() == Some(member_id) {
            group.leader = None;
        }
    }

    /// After members left or expired: the rest rebalance (or the join phase may now be done).
    fn member_left(&mut self, group: &mut Group, now: Instant) {
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if group.members.is_empty() {
                    self.empty_group(group, now);
                } else {
                    self.prepare_rebalance(group, now);
                }
            }
            GroupState::PreparingRebalance => {
                if group.members.is_empty() && group.join_phase.is_some_and(|p| p.initial.is_none())
                {
                    self.complete_join(group, now);
                } else {
                    self.maybe_complete_join(group, now);
                }
            }
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// The last member is gone: the group is empty in a new generation, persisted as Kafka does
    /// (keeping its protocol type, with the time it emptied: offsets retention counts from it).
    fn empty_group(&mut self, group: &mut Group, now: Instant) {
        group.generation += 1;
        group.protocol = None;
        group.leader = None;
        group.join_phase = None;
        group.set_state(GroupState::Empty, self.wall_ms(now));
        self.persist(group);
    }

    /// Deadlines of one group: its join phase, sessions, pending members.
    pub(super) fn tick_group(&mut self, group: &mut Group, now: Instant) {
        group.pending.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> = group
            .members
            .values()
            .filter(|m| {
                m.awaiting_join.is_none() && m.awaiting_sync.is_none() && m.session_deadline <= now
            })
            .map(|m| m.id.clone())
            .collect();
        if !expired.is_empty() {
            for id in &expired {
                tracing::info!(group = %group.id, member = %id, "member's session expired");
                self.remove_member(group, id);
            }
            self.member_left(group, now);
        }
        let Some(phase) = group.join_phase else {
            return;
        };
        if group.state != GroupState::PreparingRebalance || phase.deadline > now {
            return;
        }
        match phase.initial {
            Some(remaining) if group.new_member_joined && !remaining.is_zero() => {
                // New members came during the delay: wait for more (Kafka's InitialDelayedJoin).
                let delay = self.config.initial_rebalance_delay.min(remaining);
                group.join_phase = Some(JoinPhase {
                    deadline: now + delay,
                    initial: Some(remaining.saturating_sub(delay)),
                });
                group.new_member_joined = false;
            }
            Some(_) => {
                group.join_phase = Some(JoinPhase {
                    deadline: now + group.rebalance_timeout(),
                    initial: None,
                });
                if group.all_joined() {
                    self.complete_join(group, now);
                }
            }
            None => self.complete_join(group, now),
        }
    }
}

/// A successful JoinGroup answer in the group's current generation.
fn generation_answer(
    group: &Group,
    member_id: String,
    members: Vec<JoinedMember>,
    skip_assignment: bool,
) -> JoinResponse {
    JoinResponse {
        error: None,
        generation: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol.clone(),
        leader: group.leader.clone().unwrap_or_default(),
        member_id,
        members,
        skip_assignment,
    }
}

fn joined_members(group: &Group) -> Vec<JoinedMember> {
    let protocol = group.protocol.clone().unwrap_or_default();
    let mut members: Vec<&Member> = group.members.values().collect();
    members.sort_by_key(|m| m.joined_seq);
    members
        .into_iter()
        .map(|m| JoinedMember {
            member_id: m.id.clone(),
            instance_id: m.instance_id.clone(),
            metadata: m.metadata_for(&protocol),
        })
        .collect()
}

/// Checks that `member_id` is a member, and that a static `instance_id` maps to it.
pub(super) fn check_member(
    group: &Group,
    member_id: &str,
    instance_id: Option<&str>,
) -> Result<(), ResponseError> {
    if let Some(instance) = instance_id
        && let Some(current) = group.static_members.get(instance)
        && current != member_id
    {
        return Err(ResponseError::FencedInstanceId);
    }
    if group.members.contains_key(member_id) {
        Ok(())
    } else {
        Err(ResponseError::UnknownMemberId)
    }
}
