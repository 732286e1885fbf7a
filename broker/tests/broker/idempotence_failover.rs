//! An idempotent producer's requests across a leader change, as raw Kafka requests with explicit
//! producer id, epoch and sequence against three `rafka-node` processes (replication factor 3,
//! min.insync.replicas 2). The leader of the only partition is SIGSTOPped past failure detection
//! and the same batches are sent again to the node that took over, then to the first node again
//! once it has come back, caught up as a follower and taken leadership back (the second leader
//! paused in turn). Each answer is Kafka's
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
use kafka_protocol::protocol::Request;
use kafka_protocol::records::RecordBatchDecoder;
use uuid::Uuid;

use crate::support::cluster::{self, ProcessCluster, create_topic, partition_leaders};
use crate::support::netns::NetNode;
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

/// A node to send Kafka requests to: by address from this process, or inside a node's network
/// namespace (`netns_idempotence`).
pub trait Node {
    fn call<R: Request>(&self, request: &R, version: i16) -> Result<R::Response, String>;
}

impl Node for SocketAddr {
    fn call<R: Request>(&self, request: &R, version: i16) -> Result<R::Response, String> {
        cluster::kafka_call(*self, request, version, CALL).map_err(|e| e.to_string())
    }
}

impl Node for &NetNode {
    fn call<R: Request>(&self, request: &R, version: i16) -> Result<R::Response, String> {
        self.kafka_call(request, version, CALL)
    }
}

/// A fresh producer id and its epoch.
pub fn init_producer_id(node: impl Node) -> (i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let response = node.call(&request, 4).unwrap();
    assert_eq!(response.error_code, 0);
    (response.producer_id.0, response.producer_epoch)
}

/// The values of batch `i`: three records, as the chaos run's batch.
pub fn values(i: i32) -> Vec<Vec<u8>> {
    wire::values(&format!("batch{i}"), 3)
}

/// Produces one idempotent batch with `acks` to partition 0; (error code, base offset). A node
/// that does not lead yet (NOT_LEADER_OR_FOLLOWER: nothing appended) is asked again, as a client
/// would.
pub fn produce(
    node: impl Node,
    topic: &Topic,
    acks: i16,
    (id, epoch, sequence): (i64, i16, i32),
    values: &[Vec<u8>],
) -> (i16, i64) {
    let batch = wire::batch(&wire::refs(values), Some((id, epoch, sequence)), T);
    let request = wire::produce_request(topic, 0, Some(batch), acks, wire::PRODUCE);
    wait_until_blocking(STEP, "an answer from the partition's leader", || {
        let response = node.call(&request, wire::PRODUCE).ok()?;
        let p = response.responses.first()?.partition_responses.first()?;
        (p.error_code != NOT_LEADER).then_some((p.error_code, p.base_offset))
    })
}

/// One record as a reader of the log sees it: offset, value, producer epoch, sequence.
pub type Logged = (i64, Bytes, i16, i32);

/// Every record of partition 0 below the high watermark as `node` serves it.
pub fn read_all(node: impl Node, topic: &Topic) -> Vec<Logged> {
    let mut out: Vec<Logged> = Vec::new();
    loop {
        let next = out.last().map_or(0, |r| r.0 + 1);
        let request = wire::fetch_request(topic, 0, next, wire::FETCH);
        let response = node.call(&request, wire::FETCH).unwrap();
        let data = wire::only_partition(&response);
        assert_eq!(data.error_code, 0, "fetch at {next}");
        let mut records = data.records.unwrap_or_default();
        let batches = RecordBatchDecoder::decode_all(&mut records).unwrap();
        let fresh: Vec<Logged> = batches
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

/// The high watermark of partition 0 as `node` serves it (ListOffsets latest).
pub fn log_end(node: impl Node, topic: &Topic) -> i64 {
    let request = wire::list_offsets_request(topic, 0, -1);
    let response = node.call(&request, wire::LIST_OFFSETS).unwrap();
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

pub const OUT_OF_ORDER: i16 = ResponseError::OutOfOrderSequenceNumber.code();
pub const INVALID_EPOCH: i16 = ResponseError::InvalidProducerEpoch.code();

#[test]
fn process_idempotent_retries_after_leader_changes_are_answered_as_kafka_does() {
    let (cluster, topic) = cluster_with_topic("idem-failover");
    let ids: Vec<i64> = (0..3).map(|i| cluster.identity(i).1).collect();
    let first = wait_leader(&cluster, &ids, 0, &topic.name, None);
    let metadata = cluster::topic_metadata(cluster.kafka(0), &topic.name).unwrap();
    let replicas = &metadata.topics[0].partitions[0].replica_nodes;
    assert_eq!(
        replicas.first().map(|n| i64::from(n.0)),
        Some(ids[first]),
        "a new partition is led by its first replica"
    );
    let (id, e0) = init_producer_id(cluster.kafka(first));
    let at = |epoch: i16, sequence: i32| (id, epoch, sequence);

    // Six batches of three records to the first leader: offsets 0, 3, ..., 15. acks=all, so the
    // other two replicas have every one of them.
    for i in 0..6 {
        let answer = produce(cluster.kafka(first), &topic, -1, at(e0, i * 3), &values(i));
        assert_eq!(answer, (0, i64::from(i * 3)), "batch {i}");
    }

    // The leader pauses past failure detection; another node takes over.
    cluster::signal(cluster.node(first), libc::SIGSTOP);
    let survivor = (first + 1) % 3;
    let second = wait_leader(&cluster, &ids, survivor, &topic.name, Some(first));
    let b = cluster.kafka(second);
    // One batch with acks=all to the new leader.
    let to_b = |producer, values: &[Vec<u8>]| produce(b, &topic, -1, producer, values);

    // Retries of the last five batches (the producer never saw their answers): success with the
    // original offsets, nothing written. The new leader's producer state came from replication.
    for i in (1..6).rev() {
        let answer = to_b(at(e0, i * 3), &values(i));
        assert_eq!(
            answer,
            (0, i64::from(i * 3)),
            "retry of batch {i} at the new leader"
        );
    }
    // The oldest batch fell out of the five remembered: out of order, as Kafka answers.
    assert_eq!(to_b(at(e0, 0), &values(0)).0, OUT_OF_ORDER);
    // A gap after the old leader's last batch, and a new epoch not starting at 0.
    assert_eq!(to_b(at(e0, 19), &values(6)).0, OUT_OF_ORDER);
    assert_eq!(to_b(at(e0 + 1, 3), &values(6)).0, OUT_OF_ORDER);
    assert_eq!(
        log_end(b, &topic),
        18,
        "a refused or duplicate batch was written"
    );
    // The producer's next batch (its earlier requests went to the old leader): the next offset.
    assert_eq!(to_b(at(e0, 18), &values(6)), (0, 18));

    // librdkafka's bump at a leader change: batch 6's messages, their fate unknown to it, sent
    // again under epoch + 1 from sequence 0. No broker can tell them from new records: the same
    // three records again at the next offsets, as in the chaos run.
    let e1 = e0 + 1;
    assert_eq!(to_b(at(e1, 0), &values(6)), (0, 21));
    assert_eq!(to_b(at(e1, 0), &values(6)), (0, 21), "retry");
    // The old epoch is fenced from now on, retries of its batches included.
    assert_eq!(to_b(at(e0, 18), &values(6)).0, INVALID_EPOCH);
    assert_eq!(to_b(at(e0, 21), &values(7)).0, INVALID_EPOCH);

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
    let identity = |r: &Logged| (r.2, r.3);
    let copies: Vec<_> = log[18..24].iter().map(identity).collect();
    assert_eq!(
        copies,
        [(e0, 18), (e0, 19), (e0, 20), (e1, 0), (e1, 1), (e1, 2)]
    );

    // The paused node comes back (it led epoch N when it stopped), follows and catches up.
    cluster::signal(cluster.node(first), libc::SIGCONT);
    // Alive again to every node (the controller elects only among nodes its membership view
    // has alive: back in the ISR is not enough), then in sync.
    cluster.wait_all(STEP, "every member alive again", |view| {
        view.count("alive") == 3
    });
    wait_isr(&cluster, second, &topic.name, 3);
    // The second leader pauses too. The controller elects the first live in-sync replica in
    // replica order, and the first leader is the first replica: the node that was paused while
    // it led takes over again, with the producer state it replicated meanwhile.
    cluster::signal(cluster.node(second), libc::SIGSTOP);
    let third = wait_leader(&cluster, &ids, first, &topic.name, Some(second));
    assert_eq!(third, first, "the preferred replica leads again");
    let c = cluster.kafka(third);
    let to_c = |producer, values: &[Vec<u8>]| produce(c, &topic, -1, producer, values);
    assert_eq!(to_c(at(e1, 0), &values(6)), (0, 21));
    assert_eq!(to_c(at(e0, 18), &values(6)).0, INVALID_EPOCH);
    assert_eq!(to_c(at(e1, 6), &values(8)).0, OUT_OF_ORDER);
    assert_eq!(log_end(c, &topic), 24);
    assert_eq!(to_c(at(e1, 3), &values(7)), (0, 24));
    cluster::signal(cluster.node(second), libc::SIGCONT);
}
