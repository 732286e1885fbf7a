use std::sync::Arc;

use super::*;

fn p() -> PartitionId {
    (Arc::from("t"), 0)
}

fn record(offset: i64) -> ConsumerRecord {
    ConsumerRecord {
        topic: Arc::from("t"),
        partition: 0,
        offset,
        timestamp: 0,
        log_append_time: false,
        key: None,
        value: Some(bytes::Bytes::from(offset.to_string())),
        headers: Vec::new(),
    }
}

fn records(range: std::ops::Range<i64>) -> DecodedRecords {
    DecodedRecords {
        records: range.clone().map(record).collect(),
        next_offset: Some(range.end),
    }
}

fn delivered(actions: &[Action]) -> Vec<i64> {
    actions
        .iter()
        .flat_map(|a| match a {
            Action::Deliver(records) => records.iter().map(|r| r.offset).collect(),
            Action::Fetch(..) => Vec::new(),
        })
        .collect()
}

fn fetches(actions: &[Action]) -> Vec<i64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Fetch(_, from) => Some(*from),
            Action::Deliver(_) => None,
        })
        .collect()
}

/// A core at `offset` whose history fetch answered "nothing more" (high watermark `offset`).
fn live_at(offset: i64) -> SubscriberCore {
    let mut core = SubscriberCore::new(1 << 20);
    assert_eq!(fetches(&core.start(p(), offset)), vec![offset]);
    let after = core.on_fetched(&p(), offset, Some((DecodedRecords::default(), offset)));
    assert!(after.is_empty());
    core
}

#[test]
fn notices_in_order_are_delivered_and_duplicates_dropped() {
    let mut core = live_at(0);
    assert_eq!(
        delivered(&core.on_notice(&p(), 0, 3, Some(records(0..3)))),
        vec![0, 1, 2]
    );
    assert!(core.on_notice(&p(), 0, 3, Some(records(0..3))).is_empty());
    assert_eq!(
        delivered(&core.on_notice(&p(), 3, 4, Some(records(3..4)))),
        vec![3]
    );
    assert_eq!(core.counts().duplicates, 1);
    assert_eq!(core.position(&p()), Some(4));
}

#[test]
fn a_gap_is_fetched_before_anything_after_it_is_delivered() {
    let mut core = live_at(0);
    let actions = core.on_notice(&p(), 5, 7, Some(records(5..7)));
    assert!(delivered(&actions).is_empty(), "nothing past the gap yet");
    assert_eq!(fetches(&actions), vec![0]);
    assert_eq!(core.counts().gaps, 1);
    // Another notice meanwhile is held too, and no second fetch starts.
    let actions = core.on_notice(&p(), 7, 8, Some(records(7..8)));
    assert!(actions.is_empty());
    // The fetch fills the gap (and overlaps what was pushed): every offset once, in order.
    let actions = core.on_fetched(&p(), 0, Some((records(0..6), 8)));
    assert_eq!(delivered(&actions), vec![0, 1, 2, 3, 4, 5, 6, 7]);
    assert!(fetches(&actions).is_empty());
    assert_eq!(core.lag(), 0);
}

#[test]
fn an_extent_only_notice_is_fetched() {
    let mut core = live_at(10);
    let actions = core.on_notice(&p(), 10, 500, None);
    assert_eq!(fetches(&actions), vec![10]);
    // The broker answers part of it; the core keeps fetching until it reaches the end.
    let actions = core.on_fetched(&p(), 10, Some((records(10..300), 500)));
    assert_eq!(delivered(&actions).len(), 290);
    assert_eq!(fetches(&actions), vec![300]);
    let actions = core.on_fetched(&p(), 300, Some((records(300..500), 500)));
    assert_eq!(delivered(&actions), (300..500).collect::<Vec<_>>());
    assert!(fetches(&actions).is_empty());
}

#[test]
fn a_summary_ahead_reveals_a_lost_tail_and_one_behind_does_nothing() {
    let mut core = live_at(0);
    core.on_notice(&p(), 0, 2, Some(records(0..2)));
    assert!(core.on_high_watermark(&p(), 2).is_empty());
    assert!(core.on_high_watermark(&p(), 1).is_empty());
    let actions = core.on_high_watermark(&p(), 4);
    assert_eq!(fetches(&actions), vec![2]);
    assert_eq!(core.lag(), 2);
}

#[test]
fn the_history_is_fetched_then_live_notices_join_without_a_hole_at_the_seam() {
    let mut core = SubscriberCore::new(1 << 20);
    assert_eq!(fetches(&core.start(p(), 3)), vec![3]);
    // Live notices arrive while the history fetch is out: held.
    assert!(delivered(&core.on_notice(&p(), 10, 12, Some(records(10..12)))).is_empty());
    // The history ends at 10 (the high watermark when read).
    let actions = core.on_fetched(&p(), 3, Some((records(3..10), 10)));
    assert_eq!(delivered(&actions), (3..12).collect::<Vec<_>>());
}

#[test]
fn a_full_window_drops_early_notices_and_fetch_catches_up_with_bounded_memory() {
    let mut core = SubscriberCore::new(200);
    core.start(p(), 0);
    for base in 0..50 {
        core.on_notice(&p(), base, base + 1, Some(records(base..base + 1)));
    }
    assert!(core.counts().overflowed > 0);
    let actions = core.on_fetched(&p(), 0, Some((records(0..20), 50)));
    assert_eq!(fetches(&actions), vec![20]);
    let actions = core.on_fetched(&p(), 20, Some((records(20..50), 50)));
    let mut all = delivered(&actions);
    all.dedup();
    assert_eq!(all, (20..50).collect::<Vec<_>>());
    assert_eq!(core.position(&p()), Some(50));
}

#[test]
fn a_failed_fetch_is_asked_again_and_lost_push_refetches_every_partition() {
    let mut core = live_at(0);
    assert_eq!(fetches(&core.on_notice(&p(), 4, 5, None)), vec![0]);
    assert_eq!(fetches(&core.on_fetched(&p(), 0, None)), vec![0]);
    core.on_fetched(&p(), 0, Some((records(0..5), 5)));
    assert_eq!(fetches(&core.on_push_lost()), vec![5]);
}

#[test]
fn a_records_gap_inside_a_notice_is_not_waited_for() {
    // Offsets 1 and 2 hold control records or were compacted: the notice still covers them.
    let mut core = live_at(0);
    let sparse = DecodedRecords {
        records: vec![record(0), record(3)],
        next_offset: Some(4),
    };
    assert_eq!(
        delivered(&core.on_notice(&p(), 0, 4, Some(sparse))),
        vec![0, 3]
    );
    assert_eq!(core.position(&p()), Some(4));
}
