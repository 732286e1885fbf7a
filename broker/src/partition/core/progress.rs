//! What a leader knows of one follower: its log end offset (from its fetches), its broker epoch,
//! and since when it has been caught up (Kafka's `ReplicaState`).

use std::time::Duration;

use crate::ids::{BrokerEpoch, Offset};

/// One follower, as its leader sees it. Everything starts unknown when leadership begins: the
/// follower's log end is only trusted once it has fetched in this leader epoch (after its own
/// truncation), so the high watermark waits for every in-sync replica to fetch once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FollowerProgress {
    /// Its current broker epoch in the metadata (`None`: not registered).
    pub metadata_broker_epoch: Option<BrokerEpoch>,
    /// The broker epoch its fetches carried (`None`: no fetch yet in this leadership).
    pub fetch_broker_epoch: Option<BrokerEpoch>,
    /// Its log end offset: the offset of its last fetch.
    pub log_end: Option<Offset>,
    /// The leader's log end and the time at its previous fetch.
    pub last_fetch: Option<(Offset, Duration)>,
    /// Last time it was known to have everything the leader had (Kafka's `lastCaughtUpTimeMs`).
    pub caught_up_at: Option<Duration>,
    /// It restarted or lost records below the high watermark: it leaves the ISR at the next
    /// proposal whatever its lag.
    pub must_leave: bool,
}

impl FollowerProgress {
    /// Records a fetch at `fetch_offset` when the leader's log ends at `leader_log_end`. Kafka's
    /// rule: a fetch at or past the leader's current end means caught up now; one at or past the
    /// leader's end as of the previous fetch means caught up as of that previous fetch.
    pub fn record_fetch(&mut self, fetch_offset: Offset, leader_log_end: Offset, now: Duration) {
        let caught_up = if fetch_offset >= leader_log_end {
            Some(now)
        } else {
            match self.last_fetch {
                Some((previous_end, previous_at)) if fetch_offset >= previous_end => {
                    Some(previous_at)
                }
                _ => None,
            }
        };
        if let Some(at) = caught_up {
            self.caught_up_at = Some(self.caught_up_at.map_or(at, |t| t.max(at)));
        }
        self.last_fetch = Some((leader_log_end, now));
        self.log_end = Some(fetch_offset);
    }

    /// Forgets where the follower is (it restarted): its log end and catch-up time are unknown
    /// until it fetches again.
    pub fn reset(&mut self) {
        self.log_end = None;
        self.last_fetch = None;
        self.caught_up_at = None;
    }

    /// Kafka's `isCaughtUp`: at the leader's log end, or caught up within `max_lag`.
    pub fn is_caught_up(&self, leader_log_end: Offset, now: Duration, max_lag: Duration) -> bool {
        self.log_end == Some(leader_log_end)
            || self
                .caught_up_at
                .is_some_and(|at| now.saturating_sub(at) <= max_lag)
    }

    /// The broker epoch to propose it with (KIP-903): the one it fetched with, else the
    /// metadata's.
    pub fn broker_epoch(&self) -> Option<BrokerEpoch> {
        self.fetch_broker_epoch.or(self.metadata_broker_epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn at(v: i64) -> Offset {
        Offset(v)
    }

    #[test]
    fn fetch_at_leader_end_is_caught_up_now() {
        let mut p = FollowerProgress::default();
        p.record_fetch(at(10), at(10), ms(5));
        assert_eq!(p.caught_up_at, Some(ms(5)));
        assert_eq!(p.log_end, Some(at(10)));
    }

    #[test]
    fn fetch_at_previous_leader_end_is_caught_up_as_of_the_previous_fetch() {
        let mut p = FollowerProgress::default();
        p.record_fetch(at(0), at(10), ms(100)); // behind: the first fetch proves nothing
        assert_eq!(p.caught_up_at, None);
        p.record_fetch(at(10), at(20), ms(200)); // has what the leader had at the previous fetch
        assert_eq!(p.caught_up_at, Some(ms(100)));
        p.record_fetch(at(15), at(30), ms(300)); // behind both the current and the previous end
        assert_eq!(p.caught_up_at, Some(ms(100)));
    }

    #[test]
    fn caught_up_within_lag_or_at_the_end() {
        let mut p = FollowerProgress::default();
        assert!(!p.is_caught_up(at(0), ms(0), ms(100)));
        p.record_fetch(at(10), at(10), ms(0));
        assert!(p.is_caught_up(at(10), ms(1_000), ms(100)), "at the end");
        assert!(p.is_caught_up(at(11), ms(100), ms(100)));
        assert!(!p.is_caught_up(at(11), ms(101), ms(100)));
    }
}
