//! The transaction coordinator core, tested by the outputs it emits.

use std::collections::BTreeMap;

use super::*;

const T0: i64 = 1_700_000_000_000;
const EPOCH: i32 = 3;
const PARTITIONS: i32 = 4;
const TIMEOUT: i32 = 10_000;

struct Harness {
    core: TxnCoordinator,
    now: i64,
    next_reply: u64,
    /// What each `__transaction_state` partition holds: every record persisted, in order.
    log: BTreeMap<i32, Vec<TxnRecord>>,
}

impl Harness {
    fn new() -> Self {
        let config = TxnConfig {
            state_partitions: PARTITIONS,
            offsets_partitions: 8,
            ..TxnConfig::default()
        };
        let mut core = TxnCoordinator::new(config);
        for p in 0..PARTITIONS {
            core.begin_load(p);
            core.load(p, EPOCH, Vec::new());
        }
        core.add_producer_ids(1_000..1_100);
        Self {
            core,
            now: T0,
            next_reply: 0,
            log: BTreeMap::new(),
        }
    }

    fn reply(&mut self) -> Reply {
        self.next_reply += 1;
        Reply(self.next_reply)
    }

    fn outputs(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.core.poll_output()).collect()
    }

    /// Persists every pending record (each write succeeds) until none is left; returns the
    /// other outputs in order.
    fn settle(&mut self) -> Vec<Output> {
        let mut rest = Vec::new();
        loop {
            let outputs = self.outputs();
            if outputs.is_empty() {
                return rest;
            }
            for output in outputs {
                match output {
                    Output::Persist {
                        token,
                        partition,
                        record,
                    } => {
                        self.log.entry(partition).or_default().push(record);
                        self.core.persisted(self.now, token, Ok(()));
                    }
                    other => rest.push(other),
                }
            }
        }
    }

    fn init(
        &mut self,
        id: &str,
        current: Option<ProducerIdEpoch>,
    ) -> Result<ProducerIdEpoch, ResponseError> {
        let reply = self.reply();
        let request = InitRequest {
            transactional_id: id.into(),
            timeout_ms: TIMEOUT,
            current,
        };
        self.core.init_producer_id(self.now, reply, request);
        let outputs = self.settle();
        match answer_of(&outputs, reply) {
            Some(Answer::Init(result)) => result,
            other => panic!("init answered {other:?}: {outputs:?}"),
        }
    }

    fn add(
        &mut self,
        id: &str,
        p: ProducerIdEpoch,
        tps: &[(&str, i32)],
    ) -> Result<(), ResponseError> {
        let reply = self.reply();
        let tps = tps.iter().map(|(t, i)| TopicPartition::new(*t, *i));
        self.core.add_partitions(self.now, reply, id, p, tps);
        let outputs = self.settle();
        done(&outputs, reply)
    }

    /// AddPartitionsToTxn whose answer may come now or later (held while a transaction ends).
    fn add_sent(&mut self, id: &str, p: ProducerIdEpoch, tps: &[(&str, i32)]) {
        let reply = self.reply();
        let tps = tps.iter().map(|(t, i)| TopicPartition::new(*t, *i));
        self.core.add_partitions(self.now, reply, id, p, tps);
        self.settle();
    }

    /// AddPartitionsToTxn that the coordinator holds (the previous transaction is still ending).
    fn add_held(&mut self, id: &str, p: ProducerIdEpoch, tps: &[(&str, i32)]) -> Reply {
        let reply = self.reply();
        let tps = tps.iter().map(|(t, i)| TopicPartition::new(*t, *i));
        self.core.add_partitions(self.now, reply, id, p, tps);
        let outputs = self.settle();
        assert_eq!(answer_of(&outputs, reply), None, "held: {outputs:?}");
        reply
    }

    /// Time passes up to the end of the held adds' wait; returns `reply`'s answer then.
    fn wait_out(&mut self, reply: Reply) -> Result<(), ResponseError> {
        self.now += i64::try_from(TxnConfig::default().add_wait.as_millis()).unwrap();
        self.core.tick(self.now);
        let outputs = self.settle();
        done(&outputs, reply)
    }

    /// EndTxn; returns its answer and the markers it caused (not yet reported written).
    fn end(
        &mut self,
        id: &str,
        p: ProducerIdEpoch,
        commit: bool,
    ) -> (Result<(), ResponseError>, Vec<Markers>) {
        let reply = self.reply();
        self.core.end_txn(self.now, reply, id, p, commit);
        let outputs = self.settle();
        (done(&outputs, reply), markers(&outputs))
    }

    fn write_markers(&mut self, markers: &[Markers]) -> Vec<Output> {
        for m in markers {
            for tp in &m.partitions {
                let producer = ProducerIdEpoch {
                    producer_id: m.producer_id,
                    epoch: m.producer_epoch,
                };
                self.core.marker_written(
                    self.now,
                    &m.transactional_id,
                    producer,
                    tp,
                    MarkerOutcome::Written,
                );
            }
        }
        self.settle()
    }

    fn status(&self, id: &str) -> TxnStatus {
        self.core.describe(id).expect("described").state.status
    }

    /// A coordinator that loads this one's log.
    fn replayed(&self) -> (TxnCoordinator, Vec<Output>) {
        let mut core = TxnCoordinator::new(self.core.config.clone());
        for p in 0..PARTITIONS {
            core.begin_load(p);
            core.load(p, EPOCH + 1, self.log.get(&p).cloned().unwrap_or_default());
        }
        let outputs = std::iter::from_fn(|| core.poll_output()).collect();
        (core, outputs)
    }
}

fn answer_of(outputs: &[Output], reply: Reply) -> Option<Answer> {
    outputs.iter().find_map(|o| match o {
        Output::Answer { reply: r, answer } if *r == reply => Some(answer.clone()),
        _ => None,
    })
}

fn done(outputs: &[Output], reply: Reply) -> Result<(), ResponseError> {
    match answer_of(outputs, reply) {
        Some(Answer::Done(result)) => result,
        other => panic!("answered {other:?}: {outputs:?}"),
    }
}

fn markers(outputs: &[Output]) -> Vec<Markers> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::WriteMarkers(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

#[test]
fn a_new_id_gets_a_producer_id_at_epoch_0_once_its_record_is_persisted() {
    let mut h = Harness::new();
    let reply = h.reply();
    let request = InitRequest {
        transactional_id: "t".into(),
        timeout_ms: TIMEOUT,
        current: None,
    };
    h.core.init_producer_id(h.now, reply, request);
    let outputs = h.outputs();
    let [
        Output::Persist {
            token,
            partition,
            record,
        },
    ] = &outputs[..]
    else {
        panic!("expected one write and no answer yet: {outputs:?}");
    };
    assert_eq!(*partition, h.core.partition_for("t"));
    let state = record.state.clone().expect("a value");
    assert_eq!(
        (state.producer_id, state.producer_epoch, state.status),
        (1_000, 0, TxnStatus::Empty)
    );
    h.core.persisted(h.now, *token, Ok(()));
    assert_eq!(
        h.outputs(),
        vec![Output::Answer {
            reply,
            answer: Answer::Init(Ok(ProducerIdEpoch {
                producer_id: 1_000,
                epoch: 0
            })),
        }]
    );
}

#[test]
fn a_second_init_bumps_the_epoch_and_fences_the_first_producer() {
    let mut h = Harness::new();
    let first = h.init("t", None).expect("first");
    let second = h.init("t", None).expect("second");
    assert_eq!(
        second,
        ProducerIdEpoch {
            producer_id: first.producer_id,
            epoch: 1
        }
    );
    assert_eq!(
        h.add("t", first, &[("a", 0)]),
        Err(ResponseError::ProducerFenced)
    );
    assert_eq!(
        h.end("t", first, true).0,
        Err(ResponseError::ProducerFenced)
    );
    let stranger = ProducerIdEpoch {
        producer_id: 7,
        epoch: 1,
    };
    assert_eq!(
        h.add("t", stranger, &[("a", 0)]),
        Err(ResponseError::InvalidProducerIdMapping)
    );
    assert_eq!(h.add("t", second, &[("a", 0)]), Ok(()));
    // v3+: a client naming a stale producer is fenced rather than bumped.
    assert_eq!(h.init("t", Some(first)), Err(ResponseError::ProducerFenced));
}

#[test]
fn a_retried_init_gets_the_same_answer_and_a_current_one_bumps() {
    let mut h = Harness::new();
    let first = h.init("t", None).expect("first");
    let bumped = h.init("t", Some(first)).expect("bump");
    assert_eq!(bumped.epoch, 1);
    // The answer was lost; the client retries with what it had.
    assert_eq!(h.init("t", Some(first)), Ok(bumped));
    assert_eq!(h.init("t", Some(bumped)).expect("bump").epoch, 2);
}

#[test]
fn timeouts_out_of_range_are_refused() {
    let mut h = Harness::new();
    for timeout_ms in [0, -1, 900_001] {
        let reply = h.reply();
        let request = InitRequest {
            transactional_id: "t".into(),
            timeout_ms,
            current: None,
        };
        h.core.init_producer_id(h.now, reply, request);
        let outputs = h.settle();
        assert_eq!(
            answer_of(&outputs, reply),
            Some(Answer::Init(Err(ResponseError::InvalidTransactionTimeout)))
        );
    }
    assert!(h.log.is_empty());
}

#[test]
fn ids_of_partitions_not_led_or_loading_are_refused() {
    let mut h = Harness::new();
    let p = h.core.partition_for("t");
    h.core.unload(p);
    assert_eq!(h.init("t", None), Err(ResponseError::NotCoordinator));
    h.core.begin_load(p);
    assert_eq!(
        h.init("t", None),
        Err(ResponseError::CoordinatorLoadInProgress)
    );
    h.core.load(p, EPOCH, Vec::new());
    assert!(h.init("t", None).is_ok());
}

#[test]
fn a_commit_is_answered_after_prepare_and_completed_after_every_marker() {
    let mut h = Harness::new();
    let p = h.init("t", None).expect("init");
    assert_eq!(h.add("t", p, &[("a", 0), ("b", 1)]), Ok(()));
    assert_eq!(h.status("t"), TxnStatus::Ongoing);
    assert_eq!(h.core.describe("t").expect("d").state.start_ms, T0);
    // Adding a partition already in the transaction writes nothing.
    let before = h.log.values().map(Vec::len).sum::<usize>();
    assert_eq!(h.add("t", p, &[("a", 0)]), Ok(()));
    assert_eq!(h.log.values().map(Vec::len).sum::<usize>(), before);

    let reply = h.reply();
    h.core.end_txn(h.now, reply, "t", p, true);
    let outputs = h.outputs();
    let [Output::Persist { token, record, .. }] = &outputs[..] else {
        panic!("the decision is written before anything else: {outputs:?}");
    };
    assert_eq!(
        record.state.as_ref().map(|s| s.status),
        Some(TxnStatus::PrepareCommit)
    );
    h.core.persisted(h.now, *token, Ok(()));
    let outputs = h.outputs();
    assert_eq!(answer_of(&outputs, reply), Some(Answer::Done(Ok(()))));
    let sent = markers(&outputs);
    assert_eq!(
        sent,
        vec![Markers {
            transactional_id: "t".into(),
            producer_id: p.producer_id,
            producer_epoch: p.epoch,
            commit: true,
            coordinator_epoch: EPOCH,
            partitions: vec![tp("a", 0), tp("b", 1)],
        }]
    );
    // Retried EndTxn while the markers are out: retriable; the opposite outcome: invalid.
    assert_eq!(
        h.end("t", p, true).0,
        Err(ResponseError::ConcurrentTransactions)
    );
    assert_eq!(h.end("t", p, false).0, Err(ResponseError::InvalidTxnState));
    // The next transaction's first add is held while this one ends, and retriable if that takes
    // longer than the wait.
    let held = h.add_held("t", p, &[("c", 0)]);
    assert_eq!(h.wait_out(held), Err(ResponseError::ConcurrentTransactions));

    // One marker is not enough.
    h.core
        .marker_written(h.now, "t", p, &tp("a", 0), MarkerOutcome::Written);
    assert!(h.settle().is_empty());
    assert_eq!(h.status("t"), TxnStatus::PrepareCommit);
    h.core
        .marker_written(h.now, "t", p, &tp("b", 1), MarkerOutcome::Written);
    h.settle();
    let state = h.core.describe("t").expect("d").state;
    assert_eq!(state.status, TxnStatus::CompleteCommit);
    assert!(state.partitions.is_empty());
    assert_eq!(h.core.stats().commits, 1);

    assert_eq!(h.end("t", p, true).0, Ok(()));
    assert_eq!(h.end("t", p, false).0, Err(ResponseError::InvalidTxnState));
    // The next transaction starts from Complete.
    assert_eq!(h.add("t", p, &[("c", 0)]), Ok(()));
    assert_eq!(h.end("t", p, false).0, Ok(()));
}

#[test]
fn end_without_a_transaction_is_invalid() {
    let mut h = Harness::new();
    let p = h.init("t", None).expect("init");
    assert_eq!(h.end("t", p, true).0, Err(ResponseError::InvalidTxnState));
    assert_eq!(
        h.end("u", p, true).0,
        Err(ResponseError::InvalidProducerIdMapping)
    );
}

#[test]
fn requests_during_a_pending_write_wait_for_it_or_are_concurrent() {
    let mut h = Harness::new();
    let p = h.init("t", None).expect("init");
    let first = h.reply();
    h.core.add_partitions(h.now, first, "t", p, [tp("a", 0)]);
    let second = h.reply();
    h.core.add_partitions(h.now, second, "t", p, [tp("b", 0)]);
    let third = h.reply();
    h.core.init_producer_id(
        h.now,
        third,
        InitRequest {
            transactional_id: "t".into(),
            timeout_ms: TIMEOUT,
            current: None,
        },
    );
    let outputs = h.settle();
    assert_eq!(answer_of(&outputs, first), Some(Answer::Done(Ok(()))));
    // The second add waited for the first one's write, then joined the same transaction.
    assert_eq!(answer_of(&outputs, second), Some(Answer::Done(Ok(()))));
    assert_eq!(
        h.core.describe("t").expect("described").state.partitions,
        [tp("a", 0), tp("b", 0)].into_iter().collect()
    );
    assert_eq!(
        answer_of(&outputs, third),
        Some(Answer::Init(Err(ResponseError::ConcurrentTransactions)))
    );
}

#[test]
fn kip_890_verification_accepts_only_partitions_added_to_the_open_transaction() {
    let mut h = Harness::new();
    let p = h.init("t", None).expect("init");
    assert_eq!(
        h.core.verify("t", p, &tp("a", 0)),
        Err(ResponseError::TransactionAbortable)
    );
    h.add("t", p, &[("a", 0)]).expect("add");
    assert_eq!(h.core.verify("t", p, &tp("a", 0)), Ok(()));
    assert_eq!(
        h.core.verify("t", p, &tp("a", 1)),
        Err(ResponseError::TransactionAbortable)
    );
    let stale = ProducerIdEpoch {
        epoch: p.epoch - 1,
        ..p
    };
    assert_eq!(
        h.core.verify("t", stale, &tp("a", 0)),
        Err(ResponseError::ProducerFenced)
    );
    assert_eq!(
        h.core.verify("nope", p, &tp("a", 0)),
        Err(ResponseError::InvalidProducerIdMapping)
    );
    let (_, sent) = h.end("t", p, false);
    // Once the end is decided, a late write to the same partition is refused: retriable while
    // the markers are written, abortable once the transaction is complete.
    assert_eq!(
        h.core.verify("t", p, &tp("a", 0)),
        Err(ResponseError::ConcurrentTransactions)
    );
    h.write_markers(&sent);
    assert_eq!(
        h.core.verify("t", p, &tp("a", 0)),
        Err(ResponseError::TransactionAbortable)
    );
}

#[test]
fn add_offsets_adds_the_groups_offsets_partition() {
    let mut h = Harness::new();
    let p = h.init("t", None).expect("init");
    let reply = h.reply();
    h.core.add_offsets(h.now, reply, "t", p, "my-group");
    let outputs = h.settle();
    assert_eq!(answer_of(&outputs, reply), Some(Answer::Done(Ok(()))));
    let offsets = tp(
        crate::group::OFFSETS_TOPIC,
        crate::group::partition_for_group("my-group", 8),
    );
    assert_eq!(h.core.verify("t", p, &offsets), Ok(()));
}

#[test]
fn init_during_an_open_transaction_aborts_it_under_a_bumped_epoch() {
    let mut h = Harness::new();
    let zombie = h.init("t", None).expect("init");
    h.add("t", zombie, &[("a", 0), ("a", 1)]).expect("add");
    let reply = h.reply();
    h.core.init_producer_id(
        h.now,
        reply,
        InitRequest {
            transactional_id: "t".into(),
            timeout_ms: TIMEOUT,
            current: None,
        },
    );
    let outputs = h.settle();
    assert_eq!(
        answer_of(&outputs, reply),
        Some(Answer::Init(Err(ResponseError::ConcurrentTransactions)))
    );
    let sent = markers(&outputs);
    assert_eq!(sent.len(), 1);
    assert!(!sent[0].commit);
    assert_eq!(
        sent[0].producer_epoch,
        zombie.epoch + 1,
        "markers carry the fencing epoch"
    );
    assert_eq!(sent[0].partitions, vec![tp("a", 0), tp("a", 1)]);
    assert_eq!(h.core.stats().fenced, 1);
    // The zombie is fenced at once, even before the abort completes.
    assert_eq!(
        h.end("t", zombie, true).0,
        Err(ResponseError::ProducerFenced)
    );
    // Until the markers are written, the new producer retries.
    assert_eq!(
        h.init("t", None),
        Err(ResponseError::ConcurrentTransactions)
    );
    h.write_markers(&sent);
    assert_eq!(h.status("t"), TxnStatus::CompleteAbort);
    assert_eq!(h.core.stats().aborts, 1);
    let fresh = h.init("t", None).expect("init");
    assert_eq!(
        fresh,
        ProducerIdEpoch {
            producer_id: zombie.producer_id,
            epoch: zombie.epoch + 2
        }
    );
}

#[test]
fn a_transaction_open_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let mut h = Harness::new();
    let p = h.init("t", None).expect("init");
    h.now += 500;
    h.add("t", p, &[("a", 0)]).expect("add");
    let deadline = T0 + 500 + i64::from(TIMEOUT);
    assert_eq!(h.core.next_deadline(), Some(deadline));
    h.now = deadline - 1;
    h.core.tick(h.now);
    assert!(h.settle().is_empty());
    assert_eq!(h.status("t"), TxnStatus::Ongoing);
    h.now = deadline;
    h.core.tick(h.now);
    let sent = markers(&h.settle());
    assert_eq!(sent.len(), 1);
    assert!(!sent[0].commit);
    assert_eq!(sent[0].producer_epoch, p.epoch + 1);
    assert_eq!(h.core.stats().timeouts, 1);
    assert_eq!(h.end("t", p, true).0, Err(ResponseError::ProducerFenced));
    h.write_markers(&sent);
    assert_eq!(h.status("t"), TxnStatus::CompleteAbort);
    assert_eq!(h.core.open_transactions(), 0);
}

#[test]
fn a_timer_whose_write_fails_waits_the_retry_delay_before_firing_again() {
    let mut h = Harness::new();
    let p = h.init("t", None).expect("init");
    h.add("t", p, &[("a", 0)]).expect("add");
    let deadline = T0 + i64::from(TIMEOUT);
    h.now = deadline;
    h.core.tick(h.now);
    // The abort's write fails at once (say, leadership is moving).
    let token = match h.outputs().as_slice() {
        [Output::Persist { token, .. }] => *token,
        other => panic!("expected one write: {other:?}"),
    };
    h.core
        .persisted(h.now, token, Err(ResponseError::NotCoordinator));
    assert_eq!(h.status("t"), TxnStatus::Ongoing);
    let retry = i64::try_from(TxnConfig::default().marker_retry.as_millis()).expect("ms");
    assert_eq!(h.core.next_deadline(), Some(h.now + retry));
    h.core.tick(h.now);
    assert!(h.outputs().is_empty(), "no write before the retry delay");
    h.now += retry;
    h.core.tick(h.now);
    let sent = markers(&h.settle());
    assert_eq!(sent.len(), 1, "the abort is written once the delay passed");
    assert_eq!(h.status("t"), TxnStatus::PrepareAbort);
}

#[test]
fn an_idle_id_expires_and_comes_back_with_a_new_producer_id() {
    let mut h = Harness::new();
    let p = h.init("t", None).expect("init");
    h.add("t", p, &[("a", 0)]).expect("add");
    let (_, sent) = h.end("t", p, true);
    h.write_markers(&sent);
    let expiry = h.now + i64::try_from(TxnConfig::default().id_expiration.as_millis()).expect("ms");
    assert_eq!(h.core.next_deadline(), Some(expiry));
    h.now = expiry;
    h.core.tick(h.now);
    h.settle();
    let partition = h.core.partition_for("t");
    let last = h.log[&partition].last().cloned().expect("records");
    assert_eq!(
        last,
        TxnRecord {
            transactional_id: "t".into(),
            state: None
        }
    );
    assert_eq!(
        h.core.describe("t"),
        Err(ResponseError::TransactionalIdNotFound)
    );
    let again = h.init("t", None).expect("init");
    assert_ne!(again.producer_id, p.producer_id);
    assert_eq!(again.epoch, 0);
}

#[test]
fn a_failed_marker_is_sent_again_after_the_retry_delay() {
    let mut h = Harness::new();
    let p = h.init("t", None).expect("init");
    h.add("t", p, &[("a", 0), ("b", 0)]).expect("add");
    let (_, sent) = h.end("t", p, true);
    assert_eq!(sent.len(), 1);
    h.core
        .marker_written(h.now, "t", p, &tp("a", 0), MarkerOutcome::Written);
    h.core
        .marker_written(h.now, "t", p, &tp("b", 0), MarkerOutcome::Retry);
    assert!(h.settle().is_empty());
    assert_eq!(h.core.next_deadline(), Some(h.now + 100));
    h.now += 100;
    h.core.tick(h.now);
    let again = markers(&h.settle());
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].partitions, vec![tp("b", 0)]);
    // A report about another epoch changes nothing.
    let other = ProducerIdEpoch {
        epoch: p.epoch + 1,
        ..p
    };
    h.core
        .marker_written(h.now, "t", other, &tp("b", 0), MarkerOutcome::Written);
    assert!(h.settle().is_empty());
    h.core
        .marker_written(h.now, "t", p, &tp("b", 0), MarkerOutcome::Gone);
    h.settle();
    assert_eq!(h.status("t"), TxnStatus::CompleteCommit);
}

#[test]
fn an_exhausted_epoch_moves_to_a_new_producer_id() {
    let mut h = Harness::new();
    let p = h.core.partition_for("t");
    let state = TxnState {
        producer_id: 55,
        producer_epoch: i16::MAX - 1,
        timeout_ms: TIMEOUT,
        status: TxnStatus::CompleteCommit,
        partitions: BTreeSet::new(),
        last_update_ms: T0,
        start_ms: -1,
    };
    h.core.load(
        p,
        EPOCH,
        [TxnRecord {
            transactional_id: "t".into(),
            state: Some(state),
        }],
    );
    let fresh = h.init("t", None).expect("init");
    assert_eq!(
        fresh,
        ProducerIdEpoch {
            producer_id: 1_000,
            epoch: 0
        }
    );
}

#[test]
fn init_waits_for_producer_ids_when_none_are_left() {
    let mut h = Harness::new();
    h.core.producer_ids.clear();
    let reply = h.reply();
    h.core.init_producer_id(
        h.now,
        reply,
        InitRequest {
            transactional_id: "t".into(),
            timeout_ms: TIMEOUT,
            current: None,
        },
    );
    let second = h.reply();
    h.core.init_producer_id(
        h.now,
        second,
        InitRequest {
            transactional_id: "u".into(),
            timeout_ms: TIMEOUT,
            current: None,
        },
    );
    assert_eq!(
        h.settle(),
        vec![Output::NeedProducerIds],
        "asked once, nothing answered"
    );
    h.core.add_producer_ids([42, 43]);
    let outputs = h.settle();
    assert_eq!(
        answer_of(&outputs, reply),
        Some(Answer::Init(Ok(ProducerIdEpoch {
            producer_id: 42,
            epoch: 0
        })))
    );
    assert_eq!(
        answer_of(&outputs, second),
        Some(Answer::Init(Ok(ProducerIdEpoch {
            producer_id: 43,
            epoch: 0
        })))
    );
}

#[test]
fn a_failed_write_answers_its_error_and_changes_nothing() {
    let mut h = Harness::new();
    let reply = h.reply();
    h.core.init_producer_id(
        h.now,
        reply,
        InitRequest {
            transactional_id: "t".into(),
            timeout_ms: TIMEOUT,
            current: None,
        },
    );
    let Some(Output::Persist { token, .. }) = h.core.poll_output() else {
        panic!("a write");
    };
    h.core
        .persisted(h.now, token, Err(ResponseError::NotCoordinator));
    assert_eq!(
        h.outputs(),
        vec![Output::Answer {
            reply,
            answer: Answer::Init(Err(ResponseError::NotCoordinator))
        }]
    );
    assert_eq!(
        h.core.describe("t"),
        Err(ResponseError::TransactionalIdNotFound)
    );

    let p = h.init("t", None).expect("init");
    let reply = h.reply();
    h.core.add_partitions(h.now, reply, "t", p, [tp("a", 0)]);
    let Some(Output::Persist { token, .. }) = h.core.poll_output() else {
        panic!("a write");
    };
    h.core
        .persisted(h.now, token, Err(ResponseError::CoordinatorNotAvailable));
    assert_eq!(
        h.outputs(),
        vec![Output::Answer {
            reply,
            answer: Answer::Done(Err(ResponseError::CoordinatorNotAvailable))
        }]
    );
    assert_eq!(h.status("t"), TxnStatus::Empty);
}

#[test]
fn unloading_answers_held_requests_with_not_coordinator() {
    let mut h = Harness::new();
    let reply = h.reply();
    h.core.init_producer_id(
        h.now,
        reply,
        InitRequest {
            transactional_id: "t".into(),
            timeout_ms: TIMEOUT,
            current: None,
        },
    );
    let Some(Output::Persist { token, .. }) = h.core.poll_output() else {
        panic!("a write");
    };
    h.core.unload(h.core.partition_for("t"));
    assert_eq!(
        h.outputs(),
        vec![Output::Answer {
            reply,
            answer: Answer::Init(Err(ResponseError::NotCoordinator))
        }]
    );
    // The late completion of the write is ignored.
    h.core.persisted(h.now, token, Ok(()));
    assert!(h.outputs().is_empty());
}

#[test]
fn a_new_coordinator_finishes_what_was_decided_and_keeps_what_is_open() {
    let mut h = Harness::new();
    let c = h.init("committing", None).expect("init");
    h.add("committing", c, &[("a", 0), ("b", 2)]).expect("add");
    let (_, sent) = h.end("committing", c, true);
    // Only one of the two markers made it before the coordinator died.
    h.core
        .marker_written(h.now, "committing", c, &tp("a", 0), MarkerOutcome::Written);
    drop(sent);
    let o = h.init("open", None).expect("init");
    h.add("open", o, &[("a", 1)]).expect("add");

    let (mut replayed, outputs) = h.replayed();
    let resumed = markers(&outputs);
    assert_eq!(resumed.len(), 1, "{outputs:?}");
    assert_eq!(resumed[0].transactional_id, "committing");
    assert!(resumed[0].commit);
    assert_eq!(resumed[0].coordinator_epoch, EPOCH + 1);
    // Markers are idempotent on the partitions: every partition of the transaction gets one.
    assert_eq!(resumed[0].partitions, vec![tp("a", 0), tp("b", 2)]);
    assert_eq!(replayed.verify("open", o, &tp("a", 1)), Ok(()));
    assert_eq!(replayed.list(&[], &[]), h.core.list(&[], &[]));
    for partition in &resumed[0].partitions {
        replayed.marker_written(h.now, "committing", c, partition, MarkerOutcome::Written);
    }
    let Some(Output::Persist { record, .. }) = replayed.poll_output() else {
        panic!("Complete is written");
    };
    assert_eq!(
        record.state.map(|s| s.status),
        Some(TxnStatus::CompleteCommit)
    );
}

#[test]
fn list_filters_by_status_and_producer() {
    let mut h = Harness::new();
    let a = h.init("a", None).expect("init");
    let b = h.init("b", None).expect("init");
    h.add("b", b, &[("x", 0)]).expect("add");
    let ids = |list: Vec<TxnDescription>| {
        list.into_iter()
            .map(|d| d.transactional_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(h.core.list(&[], &[])), vec!["a", "b"]);
    assert_eq!(ids(h.core.list(&[TxnStatus::Ongoing], &[])), vec!["b"]);
    assert_eq!(ids(h.core.list(&[], &[a.producer_id])), vec!["a"]);
    assert_eq!(h.core.open_transactions(), 1);
}

/// A seeded xorshift, so a failing run can be repeated from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Random producers against one coordinator; after every step, a coordinator replaying the
/// persisted records holds exactly the live state, and no id's producer epoch ever goes back.
#[test]
fn replay_equals_live_state_under_random_producers() {
    let mut total = TxnStats::default();
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut h = Harness::new();
        let ids = ["t0", "t1", "t2", "t3", "t4"];
        let mut producers: BTreeMap<&str, ProducerIdEpoch> = BTreeMap::new();
        let mut outstanding: Vec<Markers> = Vec::new();
        let mut seen_epochs: BTreeMap<&str, (i64, i16)> = BTreeMap::new();
        for step in 0..300 {
            let id = ids[rng.below(ids.len() as u64) as usize];
            let held = producers.get(id).copied();
            match (rng.below(7), held) {
                (0, _) | (_, None) => {
                    if let Ok(p) = h.init(id, None) {
                        producers.insert(id, p);
                    }
                }
                (1 | 2, Some(p)) => {
                    let topic = ["a", "b"][rng.below(2) as usize];
                    h.add_sent(id, p, &[(topic, rng.below(3) as i32)]);
                }
                (3, Some(p)) => {
                    let (_, sent) = h.end(id, p, rng.below(2) == 0);
                    outstanding.extend(sent);
                }
                (4, _) => {
                    let sent = std::mem::take(&mut outstanding);
                    outstanding.extend(markers(&h.write_markers(&sent)));
                }
                (5, _) => {
                    h.now += rng.below(u64::from(TIMEOUT.unsigned_abs()) / 2) as i64;
                    h.core.tick(h.now);
                    outstanding.extend(markers(&h.settle()));
                }
                (_, Some(p)) => {
                    h.add_sent(id, p, &[("__consumer_offsets", 1)]);
                }
            }
            let (replayed, _) = h.replayed();
            assert_eq!(
                replayed.list(&[], &[]),
                h.core.list(&[], &[]),
                "seed {seed} step {step}: replay differs from the live state"
            );
            for d in h.core.list(&[], &[]) {
                let now = (d.state.producer_id, d.state.producer_epoch);
                let id = ids
                    .iter()
                    .find(|i| **i == d.transactional_id)
                    .expect("known id");
                if let Some(before) = seen_epochs.insert(id, now) {
                    assert!(
                        before.0 != now.0 || before.1 <= now.1,
                        "seed {seed} step {step}: {id}'s epoch went back from {before:?} to {now:?}"
                    );
                }
            }
        }
        let stats = h.core.stats();
        total.commits += stats.commits;
        total.aborts += stats.aborts;
        total.timeouts += stats.timeouts;
        total.fenced += stats.fenced;
    }
    // The runs went through every way a transaction ends.
    assert!(
        total.commits > 0 && total.aborts > 0 && total.timeouts > 0 && total.fenced > 0,
        "{total:?}"
    );
}

/// Every request of the current producer against every status, as Kafka's coordinator answers.
#[test]
fn every_request_in_every_status() {
    use ResponseError::{ConcurrentTransactions as Concurrent, InvalidTxnState as Invalid};
    use TxnStatus::*;
    // status, add a new partition, EndTxn commit, EndTxn abort, InitProducerId
    type Outcome = Result<(), ResponseError>;
    type Row = (
        TxnStatus,
        Outcome,
        Outcome,
        Outcome,
        Result<i16, ResponseError>,
    );
    let table: [Row; 6] = [
        (Empty, Ok(()), Err(Invalid), Err(Invalid), Ok(6)),
        (Ongoing, Ok(()), Ok(()), Ok(()), Err(Concurrent)),
        (
            PrepareCommit,
            Err(Concurrent),
            Err(Concurrent),
            Err(Invalid),
            Err(Concurrent),
        ),
        (
            PrepareAbort,
            Err(Concurrent),
            Err(Invalid),
            Err(Concurrent),
            Err(Concurrent),
        ),
        (CompleteCommit, Ok(()), Ok(()), Err(Invalid), Ok(6)),
        (CompleteAbort, Ok(()), Err(Invalid), Ok(()), Ok(6)),
    ];
    let p = ProducerIdEpoch {
        producer_id: 77,
        epoch: 5,
    };
    for (status, add, commit, abort, init) in table {
        let fresh = || {
            let mut h = Harness::new();
            let partitions = match status {
                Ongoing | PrepareCommit | PrepareAbort => [tp("a", 0)].into_iter().collect(),
                _ => BTreeSet::new(),
            };
            let state = TxnState {
                producer_id: p.producer_id,
                producer_epoch: p.epoch,
                timeout_ms: TIMEOUT,
                status,
                partitions,
                last_update_ms: T0,
                start_ms: T0,
            };
            let partition = h.core.partition_for("t");
            h.core.load(
                partition,
                EPOCH,
                [TxnRecord {
                    transactional_id: "t".into(),
                    state: Some(state),
                }],
            );
            h.settle();
            h
        };
        let added = match status {
            // Held while the transaction ends; nothing moves here, so the wait runs out.
            PrepareCommit | PrepareAbort => {
                let mut h = fresh();
                let held = h.add_held("t", p, &[("b", 0)]);
                h.wait_out(held)
            }
            _ => fresh().add("t", p, &[("b", 0)]),
        };
        assert_eq!(added, add, "{status:?}: add");
        assert_eq!(fresh().end("t", p, true).0, commit, "{status:?}: commit");
        assert_eq!(fresh().end("t", p, false).0, abort, "{status:?}: abort");
        let answer = fresh().init("t", Some(p)).map(|fresh| fresh.epoch);
        assert_eq!(answer, init, "{status:?}: init");
    }
}

/// The next transaction's first add, sent as soon as EndTxn is answered, is held until the ended
/// transaction is complete and then answered (no client retry backoff); one held on a partition
/// this node stops leading gets NOT_COORDINATOR.
#[test]
fn an_add_during_the_end_of_the_previous_transaction_waits_for_its_completion() {
    let mut h = Harness::new();
    let p = h.init("t", None).expect("init");
    h.add("t", p, &[("a", 0)]).expect("add");
    let (answer, sent) = h.end("t", p, true);
    assert_eq!(answer, Ok(()));
    let held = h.add_held("t", p, &[("b", 0)]);
    assert_eq!(h.core.next_deadline(), Some(h.now + 500));
    let outputs = h.write_markers(&sent);
    let outputs = [outputs, h.settle()].concat();
    assert_eq!(answer_of(&outputs, held), Some(Answer::Done(Ok(()))));
    let state = h.core.describe("t").expect("described").state;
    assert_eq!(state.status, TxnStatus::Ongoing);
    assert_eq!(state.partitions, [tp("b", 0)].into_iter().collect());
    assert_eq!(h.core.stats().commits, 1);

    let (_, sent) = h.end("t", p, false);
    assert!(!sent.is_empty());
    let held = h.add_held("t", p, &[("c", 0)]);
    h.core.unload(h.core.partition_for("t"));
    let outputs = h.settle();
    assert_eq!(
        answer_of(&outputs, held),
        Some(Answer::Done(Err(ResponseError::NotCoordinator)))
    );
}
