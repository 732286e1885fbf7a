//! An idempotent producer's requests across a leader change, as raw Kafka requests with explicit
//! producer id, epoch and sequence against three `rafka-node` processes (replication factor 3,
//! min.insync.replicas 2). The leader of the only partition is SIGSTOPped past failure detection
//! and the same batches are sent again to the node that took over, then to a third leader after
//! the paused node has come back and caught up as a follower. Each answer is Kafka's
//! (`ProducerStateManager` / `ProducerAppendInfo`, `UnifiedLog.analyzeAndValidateProducerState`):
//!
//! - a retry of any of the producer's last five batches: no error and the batch's original base
//!   offset, nothing written (the new leader built that state from replicated batches);
//! - a retry of an older batch, or a sequence gap: OUT_OF_ORDER_SEQUENCE_NUMBER;
//! - the next sequence after batches the old leader wrote: appended at the next offset;
//! - a bumped epoch (epoch + 1, sequence 0): appended as new records even when they repeat a
//!   batch already in the log, which is how librdkafka's epoch bump at a leader change (it fails
//!   requests behind a refused one locally, bumps the epoch and re-sends messages of unknown fate
//!   under new sequence numbers) duplicates a batch at the next offsets, against Kafka too;
//! - the old epoch afterwards: INVALID_PRODUCER_EPOCH.
//!
//! docs/reliability.md ("The duplicated batch") names these tests as the reproduction of the
//! chaos run's duplicate.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::InitProducerIdRequest;
use kafka_protocol::records::RecordBatchDecoder;
use uuid::Uuid;

use crate::support::cluster::{self, ProcessCluster, create_topic, partition_leaders};
use crate::support::wait_until_blocking;
use crate::support::wire::{self, Topic};

const STEP: Duration = Duration::from_secs(30);
const CALL: Duration = Duration::from_secs(20);
const T: i64 = 1_700_000_000_000;
const NOT_LEADER: i16 = 6;

/// Three nodes and a one-partition topic with three in-sync replicas.
fn cluster_with_topic(name: &str) -> (ProcessCluster, Topic) {
    let args = [
        "--default-replication-factor",
        "3",
        "--min-insync-replicas",
        "2",
    ];
    let cluster = ProcessCluster::start(3, &args);
    cluster.wait_all(STEP, "every member alive", |view| view.count("alive") == 3);
    wait_until_blocking(STEP, "the topic created with three replicas", || {
        matches!(
            create_topic(cluster.kafka(0), name, 1, Duration::from_secs(10)),
            Ok((0 | 36, _))
        )
    });
    wait_isr(&cluster, 0, name, 3);
    let topic = Topic {
        name: name.to_string(),
        id: Uuid::nil(),
    };
    (cluster, topic)
}

/// Waits until node `via` says the partition has `size` distinct in-sync replicas.
fn wait_isr(cluster: &ProcessCluster, via: usize, topic: &str, size: usize) {
    let addr = cluster.kafka(via);
    wait_until_blocking(STEP, &format!("{size} in-sync replicas"), || {
        cluster::topic_metadata(addr, topic).is_ok_and(|m| {
            m.topics.first().is_some_and(|t| {
                t.partitions.iter().all(|p| {
                    p.error_code == 0
                        && p.isr_nodes
                            .iter()
                            .map(|n| n.0)
                            .collect::<BTreeSet<_>>()
                            .len()
                            == size
                })
            })
        })
    });
}

/// The process index of the partition's leader as node `via` sees it, once it is not `not`
/// (`ids`: each process's node id).
fn wait_leader(
    cluster: &ProcessCluster,
    ids: &[i64],
    via: usize,
    topic: &str,
    not: Option<usize>,
) -> usize {
    wait_until_blocking(STEP, "a leader for the partition", || {
        let leaders = partition_leaders(cluster.kafka(via), topic).ok()?;
        let &(_, error, leader) = leaders.first()?;
        let index = ids.iter().position(|&id| id == i64::from(leader))?;
        (error == 0 && Some(index) != not).then_some(index)
    })
}

fn init_producer_id(addr: SocketAddr) -> (i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let response = cluster::kafka_call(addr, &request, 4, CALL).unwrap();
    assert_eq!(response.error_code, 0);
    (response.producer_id.0, response.producer_epoch)
}

/// The values of batch `i`: three records, as the chaos run's batch.
fn values(i: i32) -> Vec<Vec<u8>> {
    wire::values(&format!("batch{i}"), 3)
}

/// Produces one idempotent batch (acks=all) to `addr`; (error code, base offset). A node that
/// does not lead yet (NOT_LEADER_OR_FOLLOWER: nothing appended) is asked again, as a client would.
fn produce(
    addr: SocketAddr,
    topic: &Topic,
    (id, epoch, sequence): (i64, i16, i32),
    values: &[Vec<u8>],
) -> (i16, i64) {
    let batch = wire::batch(&wire::refs(values), Some((id, epoch, sequence)), T);
    let request = wire::produce_request(topic, 0, Some(batch), -1, wire::PRODUCE);
    wait_until_blocking(STEP, "an answer from the partition's leader", || {
        let response = cluster::kafka_call(addr, &request, wire::PRODUCE, CALL).ok()?;
        let p = response.responses.first()?.partition_responses.first()?;
        (p.error_code != NOT_LEADER).then_some((p.error_code, p.base_offset))
    })
}

/// Every record of the partition below the high watermark as `addr` serves it: (offset, value,
/// producer epoch, sequence).
fn read_all(addr: SocketAddr, topic: &Topic) -> Vec<(i64, Bytes, i16, i32)> {
    let mut out = Vec::new();
    loop {
        let next = out.last().map_or(0, |r: &(i64, Bytes, i16, i32)| r.0 + 1);
        let request = wire::fetch_request(topic, 0, next, wire::FETCH);
        let response = cluster::kafka_call(addr, &request, wire::FETCH, CALL).unwrap();
        let data = wire::only_partition(&response);
        assert_eq!(data.error_code, 0, "fetch at {next}");
        let mut records = data.records.unwrap_or_default();
        let batches = RecordBatchDecoder::decode_all(&mut records).unwrap();
        let fresh: Vec<_> = batches
            .into_iter()
            .flat_map(|set| set.records)
            .filter(|r| r.offset >= next)
            .map(|r| {
                let value = r.value.unwrap_or_default();
                (r.offset, value, r.producer_epoch, r.sequence)
            })
            .collect();
        if fresh.is_empty() {
            return out;
        }
        out.extend(fresh);
        if out.last().is_some_and(|r| r.0 + 1 >= data.high_watermark) {
            return out;
        }
    }
}

/// The high watermark as `addr` serves it (ListOffsets latest).
fn log_end(addr: SocketAddr, topic: &Topic) -> i64 {
    let request = wire::list_offsets_request(topic, 0, -1);
    let response = cluster::kafka_call(addr, &request, wire::LIST_OFFSETS, CALL).unwrap();
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

const OUT_OF_ORDER: i16 = ResponseError::OutOfOrderSequenceNumber.code();
const INVALID_EPOCH: i16 = ResponseError::InvalidProducerEpoch.code();

#[test]
fn process_idempotent_retries_after_leader_changes_are_answered_as_kafka_does() {
    let (cluster, topic) = cluster_with_topic("idem-failover");
    let ids: Vec<i64> = (0..3).map(|i| cluster.identity(i).1).collect();
    let first = wait_leader(&cluster, &ids, 0, &topic.name, None);
    let (id, e0) = init_producer_id(cluster.kafka(first));
    let at = |epoch: i16, sequence: i32| (id, epoch, sequence);

    // Six batches of three records to the first leader: offsets 0, 3, ..., 15. acks=all, so the
    // other two replicas have every one of them.
    for i in 0..6 {
        let answer = produce(cluster.kafka(first), &topic, at(e0, i * 3), &values(i));
        assert_eq!(answer, (0, i64::from(i * 3)), "batch {i}");
    }

    // The leader pauses past failure detection; another node takes over.
    cluster::signal(cluster.node(first), libc::SIGSTOP);
    let survivor = (first + 1) % 3;
    let second = wait_leader(&cluster, &ids, survivor, &topic.name, Some(first));
    let b = cluster.kafka(second);

    // Retries of the last five batches (the producer never saw their answers): success with the
    // original offsets, nothing written. The new leader's producer state came from replication.
    for i in (1..6).rev() {
        let answer = produce(b, &topic, at(e0, i * 3), &values(i));
        assert_eq!(
            answer,
            (0, i64::from(i * 3)),
            "retry of batch {i} at the new leader"
        );
    }
    // The oldest batch fell out of the five remembered: out of order, as Kafka answers.
    assert_eq!(produce(b, &topic, at(e0, 0), &values(0)).0, OUT_OF_ORDER);
    // A gap after the old leader's last batch, and a new epoch not starting at 0.
    assert_eq!(produce(b, &topic, at(e0, 19), &values(6)).0, OUT_OF_ORDER);
    assert_eq!(
        produce(b, &topic, at(e0 + 1, 3), &values(6)).0,
        OUT_OF_ORDER
    );
    assert_eq!(
        log_end(b, &topic),
        18,
        "a refused or duplicate batch was written"
    );
    // The producer's next batch (its earlier requests went to the old leader): the next offset.
    assert_eq!(produce(b, &topic, at(e0, 18), &values(6)), (0, 18));

    // librdkafka's bump at a leader change: batch 6's messages, their fate unknown to it, sent
    // again under epoch + 1 from sequence 0. No broker can tell them from new records: the same
    // three records again at the next offsets, as in the chaos run.
    let e1 = e0 + 1;
    assert_eq!(produce(b, &topic, at(e1, 0), &values(6)), (0, 21));
    assert_eq!(produce(b, &topic, at(e1, 0), &values(6)), (0, 21), "retry");
    // The old epoch is fenced from now on, retries of its batches included.
    assert_eq!(produce(b, &topic, at(e0, 18), &values(6)).0, INVALID_EPOCH);
    assert_eq!(produce(b, &topic, at(e0, 21), &values(7)).0, INVALID_EPOCH);

    let log = read_all(b, &topic);
    let offsets: Vec<i64> = log.iter().map(|r| r.0).collect();
    assert_eq!(offsets, (0..24).collect::<Vec<_>>());
    let copy = |from: usize| {
        log[from..from + 3]
            .iter()
            .map(|r| r.1.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(copy(18), copy(21), "the bump's copy repeats batch 6");
    // The copies differ in what a reader of the log can check: the epoch and the sequences.
    let identity = |r: &(i64, Bytes, i16, i32)| (r.2, r.3);
    let copies: Vec<_> = log[18..24].iter().map(identity).collect();
    assert_eq!(
        copies,
        [(e0, 18), (e0, 19), (e0, 20), (e1, 0), (e1, 1), (e1, 2)]
    );

    // The paused node comes back (it led epoch N when it stopped), follows and catches up.
    cluster::signal(cluster.node(first), libc::SIGCONT);
    wait_isr(&cluster, second, &topic.name, 3);
    // The second leader pauses too: one of the other two, both followers throughout the
    // bump, takes over with the same producer state.
    cluster::signal(cluster.node(second), libc::SIGSTOP);
    let third = wait_leader(&cluster, &ids, first, &topic.name, Some(second));
    let c = cluster.kafka(third);
    eprintln!("leaders: node {first}, node {second}, node {third}");
    assert_eq!(produce(c, &topic, at(e1, 0), &values(6)), (0, 21));
    assert_eq!(produce(c, &topic, at(e0, 18), &values(6)).0, INVALID_EPOCH);
    assert_eq!(produce(c, &topic, at(e1, 6), &values(8)).0, OUT_OF_ORDER);
    assert_eq!(log_end(c, &topic), 24);
    assert_eq!(produce(c, &topic, at(e1, 3), &values(7)), (0, 24));
    cluster::signal(cluster.node(second), libc::SIGCONT);
}
