//! The simulated network: a follower's requests to a leader and a leader's ISR proposals to the
//! controller, with delays, losses, cut-off nodes and corrupted fetch responses. A request is
//! served on the leader by the production [`Leader`](crate::partition::Leader) (as the node's
//! Fetch, OffsetForLeaderEpoch and ListOffsets handlers call it); a lost request or answer is a
//! timeout for the requester.

use kafka_protocol::ResponseError;

use super::env::{SimEnv, SimRecords, lock};
use super::{REQUEST_TIMEOUT, Shared, TP};
use crate::ids::{BrokerEpoch, LeaderEpoch, NodeId, Offset};
use crate::partition::core::{
    AlterPartition, EpochEndOffset, LeaderOffsets, LocalLog, ReplicaError,
};
use crate::partition::{Env, Fetched, LinkError, ProposalError, Reader};

/// A follower's request to its leader.
#[derive(Clone, Debug)]
pub(super) enum Request {
    EpochEnd {
        current: LeaderEpoch,
        epoch: LeaderEpoch,
    },
    Offsets {
        current: LeaderEpoch,
    },
    Fetch {
        current: LeaderEpoch,
        broker_epoch: BrokerEpoch,
        offset: Offset,
    },
}

/// The leader's answer.
#[derive(Debug)]
pub(super) enum Reply {
    EpochEnd(Option<EpochEndOffset>),
    Offsets(LeaderOffsets),
    Fetch(Fetched<SimRecords>),
}

/// One hop from `from`: lost (or `from` cut off), or delivered after a delay.
fn hop(shared: &Shared, from: NodeId) -> Option<std::time::Duration> {
    let mut world = lock(&shared.world);
    let lost = world.chaos && world.rng.chance(10);
    let cut = from.is_some() && !world.node(from).reachable();
    let delay = super::ms(1 + world.rng.below(20));
    (!lost && !cut).then_some(delay)
}

/// A timeout as the requester's transport reports it, `REQUEST_TIMEOUT` after `since`.
async fn timeout(env: &SimEnv, since: std::time::Duration) -> LinkError {
    env.sleep_until(since + REQUEST_TIMEOUT).await;
    LinkError::Unreachable("timed out".into())
}

fn reachable(shared: &Shared, node: NodeId) -> bool {
    lock(&shared.world).node(node).reachable()
}

/// `env`'s node sends `request` to `leader` and waits for the answer.
pub(super) async fn call(
    env: SimEnv,
    leader: NodeId,
    request: Request,
) -> Result<Reply, LinkError> {
    let Some(shared) = env.shared.upgrade() else {
        return Err(LinkError::Unreachable("the simulation ended".into()));
    };
    let sent = env.now();
    let Some(delay) = hop(&shared, env.node) else {
        return Err(timeout(&env, sent).await);
    };
    env.sleep_until(sent + delay).await;
    let arrived = env.now();
    if !reachable(&shared, leader) {
        return Err(timeout(&env, arrived).await);
    }
    let reply = serve(&shared, leader, env.node, request);
    let Some(delay) = hop(&shared, leader) else {
        return Err(timeout(&env, arrived).await);
    };
    env.sleep_until(arrived + delay).await;
    if !reachable(&shared, env.node) {
        return Err(timeout(&env, env.now()).await);
    }
    reply
}

/// What `node`'s partition answers `from`, through the production [`crate::partition::Leader`].
fn serve(
    shared: &Shared,
    node: NodeId,
    from: NodeId,
    request: Request,
) -> Result<Reply, LinkError> {
    let refused = |e: ReplicaError| LinkError::Refused(e.kafka_code());
    let Some(leader) = shared.partitions(node).and_then(|p| p.leader(&TP)) else {
        return Err(LinkError::Refused(
            ResponseError::NotLeaderOrFollower.code(),
        ));
    };
    match request {
        Request::EpochEnd { current, epoch } => leader
            .epoch_end_offset(current, epoch)
            .map(Reply::EpochEnd)
            .map_err(refused),
        Request::Offsets { current } => {
            leader.check_epoch(current).map_err(refused)?;
            Ok(Reply::Offsets(LeaderOffsets {
                log_start: leader.log().log_start_offset(),
                log_end: leader.visible_end(Reader::Replica),
            }))
        }
        Request::Fetch {
            current,
            broker_epoch,
            offset,
        } => {
            leader
                .replica_fetch(from, broker_epoch, current, offset)
                .map_err(refused)?;
            let (count, corrupt) = {
                let mut world = lock(&shared.world);
                let count = usize::try_from(1 + world.rng.below(4)).unwrap_or(1);
                (count, world.chaos && world.rng.chance(10))
            };
            let log = shared.log(node);
            let log = lock(&log);
            let records = log.read(offset.0, count);
            let corrupt_at = corrupt.then_some(count.min(records.len()) / 2);
            Ok(Reply::Fetch(Fetched {
                high_watermark: Offset(log.high_watermark),
                records: SimRecords {
                    records,
                    corrupt_at,
                },
            }))
        }
    }
}

/// `env`'s node, leading, proposes an ISR change to the controller, which decides on arrival
/// (accepted changes reach the nodes as metadata; a refusal comes back).
pub(super) async fn propose(env: SimEnv, proposal: AlterPartition) -> Result<(), ProposalError> {
    let not_committed = || ProposalError::NotCommitted("no answer".into());
    let Some(shared) = env.shared.upgrade() else {
        return Err(not_committed());
    };
    let sent = env.now();
    let Some(delay) = hop(&shared, env.node) else {
        env.sleep_until(sent + REQUEST_TIMEOUT).await;
        return Err(not_committed());
    };
    env.sleep_until(sent + delay).await;
    let decided = lock(&shared.world).apply_alter(&proposal, env.now());
    let Some(refusal) = decided else {
        return Ok(());
    };
    let arrived = env.now();
    let Some(delay) = hop(&shared, NodeId::NONE) else {
        env.sleep_until(arrived + REQUEST_TIMEOUT).await;
        return Err(not_committed());
    };
    env.sleep_until(arrived + delay).await;
    if !reachable(&shared, env.node) {
        return Err(not_committed());
    }
    Err(ProposalError::Refused(refusal))
}
