//! Turns of a producer's transactional appends to one led partition (KIP-890 part 1 on produce,
//! `api/produce.rs`): the first batch of a transaction on a partition waits for the transaction
//! coordinator's verification before it is appended, and the producer's batches that arrive
//! meanwhile must wait behind it, in the order they arrived, or the producer's sequence would
//! have a gap.
//!
//! A turn is taken synchronously when a request starts (the mesh listener starts its produce
//! requests in arrival order, a TCP connection its requests in order), so the order holds even
//! though the requests' futures may then run on different tasks; a lock taken inside those
//! futures would be taken in whatever order they are first polled. Each turn ends with an
//! outcome the next one reads: queued (go on), refused with an error code (refuse too), or
//! abandoned (its request was dropped before its batch was queued).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

/// Producers whose ended turns are kept before they are swept.
const TURNS_KEPT: usize = 64;

/// A turn's end as its successor sees it: `None` until it ends (or if it was dropped), then
/// `Some(0)` (queued) or `Some(code)` (refused).
type Ended = watch::Receiver<Option<i16>>;

/// Per producer, its latest turn at one partition.
#[derive(Debug, Default)]
pub struct TxnTurns {
    latest: Mutex<HashMap<i64, Ended>>,
}

impl TxnTurns {
    /// The producer's next turn, behind its latest one if that has not ended.
    pub fn take(&self, producer_id: i64) -> TxnTurn {
        let mut latest = self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (end, ended) = watch::channel(None);
        let previous = latest
            .insert(producer_id, ended)
            .filter(|previous| !over(previous));
        if latest.len() > TURNS_KEPT {
            latest.retain(|_, turn| !over(turn));
        }
        TxnTurn { previous, end }
    }

    /// Producers with a turn not yet swept (tests).
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.latest.lock().unwrap().len()
    }
}

fn over(turn: &Ended) -> bool {
    turn.borrow().is_some() || turn.has_changed().is_err()
}

/// One transactional append's turn among its producer's appends to a partition.
#[derive(Debug)]
pub struct TxnTurn {
    /// The producer's turn before this one, if it had not ended when this one was taken.
    previous: Option<Ended>,
    end: watch::Sender<Option<i16>>,
}

/// How the turn before an append ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreviousTurn {
    /// None was waiting, or its batch was queued: go on.
    Done,
    /// Its batch was refused with this Kafka error code, and not appended.
    Refused(i16),
    /// Its request was dropped before its batch was queued.
    Abandoned,
}

impl TxnTurn {
    /// Whether no earlier append of the producer was waiting when this turn was taken.
    pub fn first(&self) -> bool {
        self.previous.is_none()
    }

    /// Waits until the turn before this one ends.
    pub async fn previous(&mut self) -> PreviousTurn {
        let Some(mut previous) = self.previous.take() else {
            return PreviousTurn::Done;
        };
        // An error only says the sender is gone; the value it left says how the turn ended.
        let _ = previous.wait_for(Option::is_some).await;
        let ended = *previous.borrow();
        match ended {
            Some(0) => PreviousTurn::Done,
            Some(code) => PreviousTurn::Refused(code),
            None => PreviousTurn::Abandoned,
        }
    }

    /// Ends this turn: 0 once its batch is queued, else the error code that refused it.
    /// Dropping a turn without ending it abandons it.
    pub fn end(self, code: i16) {
        self.end.send_replace(Some(code));
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[tokio::test]
    async fn turns_follow_the_order_they_were_taken_in_not_the_order_they_are_awaited() {
        let turns = TxnTurns::default();
        let first = turns.take(7);
        let mut second = turns.take(7);
        let mut third = turns.take(7);
        assert!(first.first());
        assert!(!second.first() && !third.first());
        // Another producer is not behind producer 7.
        assert!(turns.take(8).first());

        // The third is awaited first: it waits for the second, which waits for the first (each
        // future polled once: pending until the turn before it ends).
        let mut waiting = std::pin::pin!(third.previous());
        assert_eq!((&mut waiting).now_or_never(), None);
        let mut second_done = std::pin::pin!(async {
            let previous = second.previous().await;
            second.end(0);
            previous
        });
        assert_eq!((&mut second_done).now_or_never(), None);
        assert_eq!((&mut waiting).now_or_never(), None);
        first.end(0);
        assert_eq!(second_done.await, PreviousTurn::Done);
        assert_eq!(waiting.await, PreviousTurn::Done);
    }

    #[tokio::test]
    async fn a_refused_or_abandoned_turn_is_told_to_the_next() {
        let turns = TxnTurns::default();
        let refused = turns.take(1);
        let mut after_refused = turns.take(1);
        refused.end(48);
        assert_eq!(after_refused.previous().await, PreviousTurn::Refused(48));

        let abandoned = turns.take(2);
        let mut after_abandoned = turns.take(2);
        drop(abandoned);
        assert_eq!(after_abandoned.previous().await, PreviousTurn::Abandoned);

        // Once the latest turn ended, the next one is first again.
        after_refused.end(0);
        assert!(turns.take(1).first());
    }

    #[test]
    fn ended_turns_are_swept() {
        let turns = TxnTurns::default();
        for producer in 0..200 {
            turns.take(producer).end(0);
        }
        let open = turns.take(1000);
        assert!(turns.kept() <= TURNS_KEPT + 1, "{} kept", turns.kept());
        drop(open);
    }
}
