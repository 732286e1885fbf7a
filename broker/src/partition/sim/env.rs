//! The simulation's [`Env`]: a virtual clock with timers, a deterministic single-threaded
//! executor, an in-memory log per node ([`SimLog`]) and the network (`network.rs`). The shells
//! run on it unchanged.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::task::ArcWake;
use rafka_store::{Appended, StoreError, TopicPartition};

use super::{MemLog, Shared};
use crate::ids::{BrokerEpoch, LeaderEpoch, NodeId, Offset};
use crate::partition::core::{AlterPartition, EpochEndOffset, LeaderOffsets, LocalLog};
use crate::partition::{Env, Fetched, LinkError, ProposalError, Refused, ReplicaLog};

/// A std lock that ignores poisoning (a panicking test fails anyway).
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Virtual time and the timers waiting on it.
#[derive(Default)]
pub(super) struct Clock {
    pub now: Duration,
    timers: BTreeMap<(Duration, u64), Waker>,
    next_timer: u64,
}

impl Clock {
    /// The earliest timer, if any.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.timers.keys().next().map(|(at, _)| *at)
    }

    /// Moves the clock to `at` (never back) and wakes every timer due by then.
    pub fn advance(&mut self, at: Duration) {
        self.now = self.now.max(at);
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            entry.remove().wake();
        }
    }
}

/// [`Env::sleep_until`] on the virtual clock.
struct Sleep {
    shared: Weak<Shared>,
    deadline: Duration,
    timer: Option<(Duration, u64)>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(shared) = self.shared.upgrade() else {
            return Poll::Pending;
        };
        let mut clock = lock(&shared.clock);
        if clock.now >= self.deadline {
            if let Some(key) = self.timer.take() {
                clock.timers.remove(&key);
            }
            return Poll::Ready(());
        }
        let key = match self.timer {
            Some(key) => key,
            None => {
                clock.next_timer += 1;
                (self.deadline, clock.next_timer)
            }
        };
        clock.timers.insert(key, cx.waker().clone());
        drop(clock);
        self.timer = Some(key);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let (Some(key), Some(shared)) = (self.timer, self.shared.upgrade()) {
            lock(&shared.clock).timers.remove(&key);
        }
    }
}

/// Tasks in spawn order; woken ones run in the order they were woken. Deterministic: the same
/// seed runs the same polls in the same order.
#[derive(Default)]
pub(super) struct Executor {
    tasks: BTreeMap<u64, BoxFuture<'static, ()>>,
    ready: Arc<ReadyQueue>,
    next_task: u64,
}

#[derive(Default)]
struct ReadyQueue(Mutex<VecDeque<u64>>);

struct TaskWaker {
    task: u64,
    ready: Arc<ReadyQueue>,
}

impl ArcWake for TaskWaker {
    fn wake_by_ref(this: &Arc<Self>) {
        lock(&this.ready.0).push_back(this.task);
    }
}

impl Executor {
    /// Runs every task that can make progress until none can (or `budget` polls were spent:
    /// a task waking itself forever is a bug, reported as `Err`).
    pub fn run_until_stalled(&mut self, shared: &Shared, budget: u64) -> Result<(), String> {
        let mut polls = 0u64;
        loop {
            for task in std::mem::take(&mut *lock(&shared.spawned)) {
                self.next_task += 1;
                self.tasks.insert(self.next_task, task);
                lock(&self.ready.0).push_back(self.next_task);
            }
            let Some(id) = lock(&self.ready.0).pop_front() else {
                if lock(&shared.spawned).is_empty() {
                    return Ok(());
                }
                continue;
            };
            let Some(task) = self.tasks.get_mut(&id) else {
                continue;
            };
            polls += 1;
            if polls > budget {
                return Err(format!("tasks still running after {budget} polls"));
            }
            let waker = futures::task::waker(Arc::new(TaskWaker {
                task: id,
                ready: self.ready.clone(),
            }));
            if task
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready()
            {
                self.tasks.remove(&id);
            }
        }
    }
}

/// What one simulated fetch brings: records (offset, leader epoch), and from which index they
/// arrive corrupt.
#[derive(Clone, Debug, Default)]
pub(super) struct SimRecords {
    pub records: Vec<(i64, i32)>,
    pub corrupt_at: Option<usize>,
}

/// One node's log of the simulated partition, as the shells see it.
#[derive(Clone)]
pub(super) struct SimLog {
    pub shared: Weak<Shared>,
    pub node: NodeId,
}

impl SimLog {
    fn with<T>(&self, read: impl FnOnce(&mut MemLog) -> T) -> Option<T> {
        let shared = self.shared.upgrade()?;
        let log = shared.log(self.node);
        let mut log = lock(&log);
        Some(read(&mut log))
    }
}

impl LocalLog for SimLog {
    fn log_start_offset(&self) -> Offset {
        Offset(self.with(|log| log.start).unwrap_or(0))
    }

    fn log_end_offset(&self) -> Offset {
        Offset(self.with(|log| log.end()).unwrap_or(0))
    }

    fn high_watermark(&self) -> Offset {
        Offset(self.with(|log| log.high_watermark).unwrap_or(0))
    }

    fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.with(|log| log.latest_epoch()).flatten()
    }

    fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        self.with(|log| log.end_offset_for_epoch(epoch)).flatten()
    }
}

fn ready<T: Send + 'static>(value: T) -> impl Future<Output = T> + Send + 'static {
    std::future::ready(value)
}

impl ReplicaLog for SimLog {
    type Batch = ();
    type Records = SimRecords;

    fn append(
        &self,
        (): (),
        leader_epoch: LeaderEpoch,
        _now_ms: i64,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send + 'static {
        let appended = self.with(|log| {
            let offset = log.append(leader_epoch.0);
            Appended {
                base_offset: offset,
                last_offset: offset,
                log_append_time_ms: -1,
                log_start_offset: log.start,
                duplicate: false,
            }
        });
        ready(appended.ok_or(StoreError::Closed))
    }

    fn append_replicated(
        &self,
        fetched: SimRecords,
    ) -> impl Future<Output = Result<(), Refused>> + Send + 'static {
        let good = fetched
            .corrupt_at
            .unwrap_or(usize::MAX)
            .min(fetched.records.len());
        let appended = self.with(|log| {
            if fetched
                .records
                .first()
                .is_some_and(|&(offset, _)| offset != log.end())
            {
                return Err(Refused {
                    at: None,
                    reason: "records do not continue the log".into(),
                });
            }
            log.append_replicated(&fetched.records[..good]);
            match fetched.records.get(good) {
                Some(&(offset, _)) => Err(Refused {
                    at: Some(Offset(offset)),
                    reason: "corrupt batch".into(),
                }),
                None => Ok(()),
            }
        });
        ready(appended.unwrap_or(Ok(())))
    }

    fn is_empty(records: &SimRecords) -> bool {
        records.records.is_empty()
    }

    fn truncate_to(
        &self,
        offset: Offset,
    ) -> impl Future<Output = Result<Offset, StoreError>> + Send + 'static {
        let end = self
            .shared
            .upgrade()
            .map(|shared| shared.truncate(self.node, offset, false));
        ready(end.ok_or(StoreError::Closed))
    }

    fn reset_to(
        &self,
        offset: Offset,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let done = self.shared.upgrade().map(|shared| {
            shared.truncate(self.node, offset, true);
        });
        ready(done.ok_or(StoreError::Closed))
    }

    fn advance_high_watermark(&self, offset: Offset) -> Result<(), StoreError> {
        let Some(shared) = self.shared.upgrade() else {
            return Err(StoreError::Closed);
        };
        {
            let log = shared.log(self.node);
            let mut log = lock(&log);
            log.high_watermark = log.high_watermark.max(offset.0.min(log.end()));
        }
        shared.on_high_watermark(self.node, offset);
        Ok(())
    }
}

/// One simulated node's environment.
#[derive(Clone)]
pub(super) struct SimEnv {
    pub shared: Weak<Shared>,
    pub node: NodeId,
    pub broker_epoch: BrokerEpoch,
}

impl Env for SimEnv {
    type Log = SimLog;

    fn now(&self) -> Duration {
        self.shared
            .upgrade()
            .map_or(Duration::ZERO, |shared| lock(&shared.clock).now)
    }

    fn sleep_until(&self, deadline: Duration) -> impl Future<Output = ()> + Send + 'static {
        Sleep {
            shared: self.shared.clone(),
            deadline,
            timer: None,
        }
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        if let Some(shared) = self.shared.upgrade() {
            lock(&shared.spawned).push(Box::pin(task));
        }
    }

    fn propose(
        &self,
        _tp: TopicPartition,
        proposal: AlterPartition,
    ) -> impl Future<Output = Result<(), ProposalError>> + Send + 'static {
        super::network::propose(self.clone(), proposal)
    }

    fn epoch_end(
        &self,
        leader: NodeId,
        _tp: TopicPartition,
        current: LeaderEpoch,
        epoch: LeaderEpoch,
    ) -> impl Future<Output = Result<Option<EpochEndOffset>, LinkError>> + Send + 'static {
        let request = super::network::Request::EpochEnd { current, epoch };
        let call = super::network::call(self.clone(), leader, request);
        async move {
            match call.await? {
                super::network::Reply::EpochEnd(end) => Ok(end),
                other => Err(LinkError::Unreachable(format!("answered {other:?}"))),
            }
        }
    }

    fn leader_offsets(
        &self,
        leader: NodeId,
        _tp: TopicPartition,
        current: LeaderEpoch,
    ) -> impl Future<Output = Result<LeaderOffsets, LinkError>> + Send + 'static {
        let request = super::network::Request::Offsets { current };
        let call = super::network::call(self.clone(), leader, request);
        async move {
            match call.await? {
                super::network::Reply::Offsets(offsets) => Ok(offsets),
                other => Err(LinkError::Unreachable(format!("answered {other:?}"))),
            }
        }
    }

    fn fetch(
        &self,
        leader: NodeId,
        _tp: TopicPartition,
        current: LeaderEpoch,
        offset: Offset,
    ) -> impl Future<Output = Result<Fetched<SimRecords>, LinkError>> + Send + 'static {
        let request = super::network::Request::Fetch {
            current,
            broker_epoch: self.broker_epoch,
            offset,
        };
        let call = super::network::call(self.clone(), leader, request);
        async move {
            match call.await? {
                super::network::Reply::Fetch(fetched) => Ok(fetched),
                other => Err(LinkError::Unreachable(format!("answered {other:?}"))),
            }
        }
    }
}
