//! acks=all waiters (Kafka's produce purgatory) as a pure structure: each waits for the high
//! watermark to reach an offset, or for its deadline. [`super::LeaderState`] owns one and decides
//! with which result each completes; this only keeps them ordered and hands each out once.

use std::collections::VecDeque;
use std::time::Duration;

use crate::ids::Offset;

/// An opaque handle for one acks=all produce wait, chosen by the shell (unique among the waits
/// it has registered on one partition and not yet seen completed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WaiterId(pub u64);

#[derive(Clone, Copy, Debug)]
struct Waiter {
    required: Offset,
    id: WaiterId,
    deadline: Duration,
}

/// Waiters ordered by the offset they need. Appends complete in offset order, so registering is
/// a push at the back and completing a pop at the front; the sort only matters for a shell that
/// registers out of order.
#[derive(Debug, Default)]
pub(crate) struct AckWaiters {
    queue: VecDeque<Waiter>,
    /// No deadline is earlier than this (a lower bound, so `take_expired` can skip the scan).
    earliest_deadline: Option<Duration>,
}

impl AckWaiters {
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Registers `id`, complete once the high watermark is at least `required`.
    pub(crate) fn insert(&mut self, id: WaiterId, required: Offset, deadline: Duration) {
        let waiter = Waiter {
            required,
            id,
            deadline,
        };
        let at = self.queue.partition_point(|w| w.required <= required);
        self.queue.insert(at, waiter);
        self.earliest_deadline = Some(self.earliest_deadline.map_or(deadline, |d| d.min(deadline)));
    }

    /// Removes and yields every waiter whose offset is at or below `high_watermark`, in offset
    /// order.
    pub(crate) fn take_reached(
        &mut self,
        high_watermark: Offset,
    ) -> impl Iterator<Item = WaiterId> {
        let reached = self.queue.partition_point(|w| w.required <= high_watermark);
        self.queue.drain(..reached).map(|w| w.id)
    }

    /// Removes and yields every waiter whose deadline is at or before `now`.
    pub(crate) fn take_expired(&mut self, now: Duration) -> Vec<WaiterId> {
        if self.earliest_deadline.is_none_or(|d| d > now) {
            return Vec::new();
        }
        let mut expired = Vec::new();
        let mut earliest = None::<Duration>;
        self.queue.retain(|w| {
            if w.deadline <= now {
                expired.push(w.id);
                false
            } else {
                earliest = Some(earliest.map_or(w.deadline, |d| d.min(w.deadline)));
                true
            }
        });
        self.earliest_deadline = earliest;
        expired
    }

    /// Removes `id`; false if it is not waiting.
    pub(crate) fn remove(&mut self, id: WaiterId) -> bool {
        let before = self.queue.len();
        self.queue.retain(|w| w.id != id);
        self.queue.len() != before
    }

    /// Removes and yields every waiter.
    pub(crate) fn take_all(&mut self) -> impl Iterator<Item = WaiterId> {
        self.earliest_deadline = None;
        self.queue.drain(..).map(|w| w.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn reached_waiters_come_out_in_offset_order_once() {
        let mut w = AckWaiters::default();
        w.insert(WaiterId(1), Offset(10), ms(100));
        w.insert(WaiterId(2), Offset(20), ms(100));
        w.insert(WaiterId(3), Offset(5), ms(100));
        assert_eq!(w.take_reached(Offset(4)).count(), 0);
        assert_eq!(
            w.take_reached(Offset(10)).collect::<Vec<_>>(),
            [WaiterId(3), WaiterId(1)]
        );
        assert_eq!(w.take_reached(Offset(10)).count(), 0);
        assert_eq!(
            w.take_reached(Offset(100)).collect::<Vec<_>>(),
            [WaiterId(2)]
        );
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn expiry_takes_only_past_deadlines() {
        let mut w = AckWaiters::default();
        w.insert(WaiterId(1), Offset(10), ms(100));
        w.insert(WaiterId(2), Offset(20), ms(50));
        assert!(w.take_expired(ms(49)).is_empty());
        assert_eq!(w.take_expired(ms(50)), [WaiterId(2)]);
        assert!(w.take_expired(ms(99)).is_empty());
        assert_eq!(w.take_expired(ms(100)), [WaiterId(1)]);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn remove_and_take_all() {
        let mut w = AckWaiters::default();
        w.insert(WaiterId(1), Offset(10), ms(100));
        w.insert(WaiterId(2), Offset(20), ms(100));
        assert!(w.remove(WaiterId(1)));
        assert!(!w.remove(WaiterId(1)));
        assert_eq!(w.take_all().collect::<Vec<_>>(), [WaiterId(2)]);
        assert_eq!(w.len(), 0);
    }
}
