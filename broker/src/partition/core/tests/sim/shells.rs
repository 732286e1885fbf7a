//! The shells: what a node's partition task does with the cores' outputs and actions, and how
//! it answers its followers' requests.

use super::*;

impl Sim {
    /// Answers a follower's request on node `id`.
    pub(super) fn serve(&mut self, id: NodeId, from: NodeId, body: &Body) -> Body {
        let now = self.now;
        let corrupt = self.chaos && self.rng.chance(10);
        let batch = usize::try_from(1 + self.rng.below(4)).unwrap();
        let node = self.node(id);
        let request_epoch = match body {
            Body::EpochRequest { leader_epoch, .. }
            | Body::OffsetsRequest { leader_epoch }
            | Body::FetchRequest { leader_epoch, .. } => *leader_epoch,
            _ => unreachable!(),
        };
        let checked = match (&node.leader, &node.image) {
            (Some(leader), _) => leader
                .check_leader_epoch(request_epoch)
                .map_err(|e| fetch_error(&e)),
            (None, Some(image)) if image.leader_epoch > request_epoch => {
                Err(FetchError::FencedLeaderEpoch)
            }
            (None, Some(image)) if image.leader_epoch < request_epoch => {
                Err(FetchError::UnknownLeaderEpoch)
            }
            (None, _) => Err(FetchError::NotLeaderOrFollower),
        };
        let reply = match (body, checked) {
            (Body::EpochRequest { .. }, Err(e)) => Body::EpochReply(Err(e)),
            (Body::OffsetsRequest { .. }, Err(e)) => Body::OffsetsReply(Err(e)),
            (Body::FetchRequest { .. }, Err(e)) => Body::FetchReply(Err(e)),
            (Body::EpochRequest { epoch, .. }, Ok(())) => {
                let leader = node.leader.as_ref().unwrap();
                Body::EpochReply(Ok(leader.epoch_end_offset(*epoch, &node.log)))
            }
            (Body::OffsetsRequest { .. }, Ok(())) => Body::OffsetsReply(Ok(LeaderOffsets {
                log_start: Offset(node.log.start),
                log_end: Offset(node.log.end()),
            })),
            (
                Body::FetchRequest {
                    leader_epoch,
                    broker_epoch,
                    offset,
                },
                Ok(()),
            ) => {
                let leader = node.leader.as_mut().unwrap();
                match leader.on_follower_fetch(from, *broker_epoch, *leader_epoch, *offset, now) {
                    Err(e) => Body::FetchReply(Err(fetch_error(&e))),
                    Ok(()) => {
                        let records = node.log.read(offset.0, batch);
                        let corrupt_at = corrupt.then_some(batch.min(records.len()) / 2);
                        Body::FetchReply(Ok(FetchData {
                            records,
                            high_watermark: leader.high_watermark().0,
                            corrupt_at,
                        }))
                    }
                }
            }
            _ => unreachable!(),
        };
        self.run_leader(id);
        reply
    }

    pub(super) fn produce(&mut self) {
        let leaders: Vec<NodeId> = NODES
            .iter()
            .copied()
            .filter(|&id| self.node_ref(id).alive && self.node_ref(id).leader.is_some())
            .collect();
        let Some(id) = self.rng.pick(&leaders) else {
            return;
        };
        let acks_all = self.rng.chance(700);
        let waiter = self.next_waiter;
        let deadline = self.now + ACK_TIMEOUT;
        let node = self.node(id);
        let Some(leader) = node.leader.as_mut() else {
            return;
        };
        if leader.can_append(acks_all).is_err() {
            return;
        }
        let epoch = leader.leader_epoch();
        let offset = node.log.append(epoch.0);
        leader.on_local_append(Offset(node.log.end()));
        if acks_all {
            leader.add_waiter(WaiterId(waiter), Offset(offset + 1), deadline);
            self.produced.insert(waiter, (offset, epoch.0));
            self.next_waiter += 1;
        }
        self.note(format!(
            "node {id} appends {offset} in epoch {epoch} (acks=all: {acks_all})"
        ));
        self.run_leader(id);
    }

    /// Carries out what node `id`'s leader core asks.
    pub(super) fn run_leader(&mut self, id: NodeId) {
        loop {
            let Some(output) = self.node(id).leader.as_mut().and_then(|l| l.poll_output()) else {
                return;
            };
            match output {
                LeaderOutput::HighWatermark(hw) => {
                    self.on_commit(id, hw.0);
                    let log = &mut self.node(id).log;
                    log.high_watermark = log.high_watermark.max(hw.0);
                }
                LeaderOutput::AlterPartition(proposal) => {
                    self.note(format!("node {id} proposes {proposal:?}"));
                    self.send(id, CONTROLLER, 0, RequestId(0), Body::Alter(proposal));
                }
                LeaderOutput::Acked { waiter, result } => self.on_acked(waiter.0, result),
            }
        }
    }

    pub(super) fn on_reply(&mut self, msg: Msg) {
        let now = self.now;
        let node = self.node(msg.to);
        if node.incarnation != msg.incarnation {
            return;
        }
        let Node { follower, log, .. } = node;
        let Some(follower) = follower.as_mut() else {
            return;
        };
        match msg.body {
            Body::EpochReply(reply) => follower.on_epoch_end_offset(msg.request, reply, log, now),
            Body::OffsetsReply(reply) => follower.on_leader_offsets(msg.request, reply, log, now),
            Body::FetchReply(Ok(data)) => {
                let good = data
                    .corrupt_at
                    .unwrap_or(usize::MAX)
                    .min(data.records.len());
                if follower.accepts_records(msg.request, log) {
                    log.append_replicated(&data.records[..good]);
                }
                let reply = match data.records.get(good) {
                    Some(&(offset, _)) => Err(FetchError::CorruptBatch {
                        offset: Offset(offset),
                    }),
                    None => Ok(Offset(data.high_watermark)),
                };
                follower.on_fetch(msg.request, reply, log, now);
            }
            Body::FetchReply(Err(e)) => follower.on_fetch(msg.request, Err(e), log, now),
            _ => unreachable!(),
        }
        self.run_follower(msg.to);
    }

    /// Carries out what node `id`'s follower core asks.
    pub(super) fn run_follower(&mut self, id: NodeId) {
        loop {
            let node = self.node(id);
            let Some(action) = node.follower.as_mut().and_then(|f| f.poll_action()) else {
                return;
            };
            let incarnation = node.incarnation;
            match action {
                FollowerAction::SendOffsetForLeaderEpoch {
                    request,
                    leader,
                    leader_epoch,
                    epoch,
                } => {
                    let body = Body::EpochRequest {
                        leader_epoch,
                        epoch,
                    };
                    self.send(id, leader, incarnation, request, body);
                }
                FollowerAction::ListLeaderOffsets {
                    request,
                    leader,
                    leader_epoch,
                } => {
                    let body = Body::OffsetsRequest { leader_epoch };
                    self.send(id, leader, incarnation, request, body);
                }
                FollowerAction::Fetch {
                    request,
                    leader,
                    leader_epoch,
                    offset,
                } => {
                    let broker_epoch = node.broker_epoch;
                    let body = Body::FetchRequest {
                        leader_epoch,
                        broker_epoch,
                        offset,
                    };
                    self.send(id, leader, incarnation, request, body);
                }
                FollowerAction::Truncate { request, to } => {
                    self.truncate(id, to.0, false);
                    let Node { follower, log, .. } = self.node(id);
                    if let Some(f) = follower.as_mut() {
                        f.on_truncated(request, log);
                    }
                }
                FollowerAction::Reset { request, offset } => {
                    self.truncate(id, offset.0, true);
                    let Node { follower, log, .. } = self.node(id);
                    if let Some(f) = follower.as_mut() {
                        f.on_truncated(request, log);
                    }
                }
                FollowerAction::SetHighWatermark(hw) => {
                    let log = &mut node.log;
                    log.high_watermark = log.high_watermark.max(hw.0.min(log.end()));
                }
                FollowerAction::Backoff { .. } => {}
            }
        }
    }

    /// Node `id` applies the current image.
    pub(super) fn deliver_image(&mut self, id: NodeId) {
        let now = self.now;
        let image = self.image.clone();
        let metadata = image.metadata();
        let crashes: BTreeMap<NodeId, u32> = self.nodes.iter().map(|n| (n.id, n.crashes)).collect();
        let node = self.node(id);
        node.image = Some(image.clone());
        let lost = node
            .leader
            .as_mut()
            .is_some_and(|l| l.on_metadata(&metadata, leader_config(), now) == Leadership::Lost);
        if lost {
            self.run_leader(id);
            self.node(id).leader = None;
        }
        let node = self.node(id);
        if image.leader == id {
            if node.follower.take().is_some() {
                node.incarnation += 1;
            }
            if node.leader.is_none() {
                let leader = LeaderState::new(id, &metadata, leader_config(), &node.log, now);
                node.leader = Some(leader.unwrap());
                node.crashes_at_leadership = crashes;
            }
            self.run_leader(id);
        } else if image.leader.is_none() {
            if node.follower.take().is_some() {
                node.incarnation += 1;
            }
        } else {
            match node.follower.as_mut() {
                Some(f) => f.on_metadata(image.leader, image.leader_epoch, &node.log),
                None => {
                    node.incarnation += 1;
                    let f = FollowerState::new(
                        image.leader,
                        image.leader_epoch,
                        follower_config(),
                        &node.log,
                    );
                    node.follower = Some(f);
                }
            }
            self.run_follower(id);
        }
    }

    pub(super) fn tick(&mut self, id: NodeId) {
        let now = self.now;
        let node = self.node(id);
        if !node.alive {
            return;
        }
        if let Some(leader) = node.leader.as_mut() {
            leader.tick(now);
        }
        if let Some(follower) = node.follower.as_mut() {
            follower.tick(now, &node.log);
        }
        self.run_leader(id);
        self.run_follower(id);
    }
}
