//! The partition side of transactions on one node: transactional batches appended through the
//! partition's leader (as the produce path does once the coordinator verified them), markers
//! written by WriteTxnMarkers from a registered node (this node, through its own dispatcher),
//! refused over TCP and from a mesh peer that is not a node; Fetch read_committed up to the last
//! stable offset with the aborted transactions of the range (over TCP and the mesh, and `rafka
//! consume --isolation read_committed`), read_uncommitted up to the high watermark; ListOffsets
//! latest under each isolation level; the produce path's refusals; all of it after a restart.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ApiKey, ListOffsetsRequest, ProduceRequest, ProducerId, TransactionalId,
    WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::records::RecordBatchDecoder;
use rafka_broker::Broker;
use rafka_broker::metadata::Feature;
use rafka_broker::partition::{Acks, NodeLeader};
use rafka_broker::peers::request_node;
use rafka_store::{ProducedBatch, TopicPartition};

use crate::support::mesh_client::MeshClient;
use crate::support::run::{rafka, run};
use crate::support::wire::{self, Topic};
use crate::support::{TestNode, batches, wait_until};

const STEP: Duration = Duration::from_secs(20);

/// Each record of a fetched range: (offset, producer id, is control, value).
fn records(data: &Bytes) -> Vec<(i64, i64, bool, Bytes)> {
    let mut buf = data.clone();
    RecordBatchDecoder::decode_all(&mut buf)
        .unwrap()
        .into_iter()
        .flat_map(|set| set.records)
        .map(|r| {
            (
                r.offset,
                r.producer_id,
                r.control,
                r.value.unwrap_or_default(),
            )
        })
        .collect()
}

async fn leader_of(broker: &Broker, topic: &Topic) -> Arc<NodeLeader> {
    let tp = TopicPartition {
        topic_id: topic.id,
        partition: 0,
    };
    wait_until(STEP, "the partition led", async || {
        broker.partitions().leader(&tp).ok_or("no leader")
    })
    .await
}

/// Appends a transactional batch as the produce path does after verification.
async fn append_txn(leader: &Arc<NodeLeader>, values: &[&str], producer: (i64, i16, i32)) -> i64 {
    let values: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
    let batch = batches::transactional(&values, producer, 1_700_000_000_000);
    let batch = ProducedBatch::parse(batch).unwrap();
    let appending = leader
        .append(batch, 1_700_000_000_000, Acks::All, STEP)
        .unwrap();
    appending.await.unwrap().base_offset
}

fn markers(topic: &Topic, ends: &[(i64, bool)]) -> WriteTxnMarkersRequest {
    WriteTxnMarkersRequest::default().with_markers(
        ends.iter()
            .map(|&(pid, commit)| {
                WritableTxnMarker::default()
                    .with_producer_id(ProducerId(pid))
                    .with_producer_epoch(0)
                    .with_transaction_result(commit)
                    .with_coordinator_epoch(1)
                    .with_topics(vec![
                        WritableTxnMarkerTopic::default()
                            .with_name(wire::topic_name(&topic.name))
                            .with_partition_indexes(vec![0]),
                    ])
            })
            .collect(),
    )
}

fn codes(response: &WriteTxnMarkersResponse) -> Vec<i16> {
    response
        .markers
        .iter()
        .flat_map(|m| &m.topics)
        .flat_map(|t| &t.partitions)
        .map(|p| p.error_code)
        .collect()
}

/// WriteTxnMarkers from this node to itself (a registered node).
async fn write_markers(broker: &Broker, request: &WriteTxnMarkersRequest) -> Vec<i16> {
    let local = broker.local().node_id;
    let response: WriteTxnMarkersResponse =
        request_node(broker, local, (ApiKey::WriteTxnMarkers, 1), request, STEP)
            .await
            .unwrap();
    codes(&response)
}

async fn fetch(
    client: &mut crate::support::raw::RawClient,
    topic: &Topic,
    offset: i64,
    committed: bool,
) -> kafka_protocol::messages::fetch_response::PartitionData {
    let request = wire::fetch_request(topic, 0, offset, wire::FETCH)
        .with_isolation_level(i8::from(committed));
    wire::only_partition(&client.send(&request, wire::FETCH).await)
}

async fn latest(
    client: &mut crate::support::raw::RawClient,
    topic: &Topic,
    committed: bool,
) -> i64 {
    let request: ListOffsetsRequest =
        wire::list_offsets_request(topic, 0, -1).with_isolation_level(i8::from(committed));
    let response = client.send(&request, wire::LIST_OFFSETS).await;
    let partition = &response.topics[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    partition.offset
}

fn offsets(records: &[(i64, i64, bool, Bytes)], data_only: bool) -> Vec<i64> {
    records
        .iter()
        .filter(|r| !(data_only && r.2))
        .map(|r| r.0)
        .collect()
}

#[tokio::test]
async fn markers_end_transactions_and_read_committed_reads_up_to_the_lso() {
    let mut node = TestNode::start().await;
    let broker = node.node.as_ref().unwrap().broker().clone();
    wait_until(STEP, "the transactions feature level", async || {
        broker
            .image()
            .features()
            .enabled(Feature::Transactions)
            .then_some(())
            .ok_or("not finalized yet")
    })
    .await;
    let mut client = node.connect().await;
    let topic = wire::create_topic(&mut client, "txn-reads", 1).await;
    let leader = leader_of(&broker, &topic).await;

    wire::produce_values(&mut client, &topic, 0, &[&b"a0"[..], &b"a1"[..]]).await; // 0..=1
    assert_eq!(
        append_txn(&leader, &["p1-0", "p1-1"], (1000, 0, 0)).await,
        2
    ); // 2..=3
    assert_eq!(append_txn(&leader, &["p2-0"], (2000, 0, 0)).await, 4); // 4
    wire::produce_values(&mut client, &topic, 0, &[&b"b0"[..]]).await; // 5
    assert_eq!(append_txn(&leader, &["p1-2"], (1000, 0, 2)).await, 6); // 6

    // read_uncommitted sees everything up to the high watermark; read_committed stops at the
    // first open transaction.
    let uncommitted = fetch(&mut client, &topic, 0, false).await;
    assert_eq!(uncommitted.high_watermark, 7);
    assert_eq!(uncommitted.last_stable_offset, 2);
    assert_eq!(uncommitted.aborted_transactions, None);
    assert_eq!(
        offsets(&records(&uncommitted.records.unwrap()), true),
        (0..7).collect::<Vec<_>>()
    );
    let committed = fetch(&mut client, &topic, 0, true).await;
    assert_eq!(committed.last_stable_offset, 2);
    assert_eq!(
        offsets(&records(&committed.records.unwrap()), true),
        vec![0, 1]
    );
    assert_eq!(committed.aborted_transactions, Some(vec![]));
    assert_eq!(latest(&mut client, &topic, true).await, 2);
    assert_eq!(latest(&mut client, &topic, false).await, 7);

    // A producer's non-transactional batch while its transaction is open is refused.
    let plain = batches::batch(&[&b"x"[..]], Some((1000, 0, 3)), 1_700_000_000_000);
    let response = wire::produce_at(&mut client, &topic, 0, plain, wire::PRODUCE).await;
    assert_eq!(response.error_code, ResponseError::InvalidTxnState.code());
    // A transactional batch without a transactional id is refused; with one, the coordinator
    // is asked first, and with no __transaction_state yet it cannot answer: retriable.
    let txn = batches::transactional(&[&b"y"[..]], (3000, 0, 0), 1_700_000_000_000);
    let response = wire::produce_at(&mut client, &topic, 0, txn.clone(), wire::PRODUCE).await;
    assert_eq!(
        response.error_code,
        ResponseError::TransactionalIdAuthorizationFailed.code()
    );
    let request: ProduceRequest = wire::produce_request(&topic, 0, Some(txn), -1, wire::PRODUCE)
        .with_transactional_id(Some(TransactionalId(wire::str("tx-1"))));
    let response = client.send(&request, wire::PRODUCE).await;
    let answer = &response.responses[0].partition_responses[0];
    assert_eq!(answer.error_code, ResponseError::NotEnoughReplicas.code());
    assert_eq!(
        latest(&mut client, &topic, false).await,
        7,
        "nothing appended"
    );

    // Markers from outside the cluster are refused.
    let request = markers(&topic, &[(1000, false), (2000, true)]);
    let response = client.send(&request, 1).await;
    assert_eq!(
        codes(&response),
        vec![ResponseError::ClusterAuthorizationFailed.code(); 2]
    );
    // From a registered node: producer 1000 aborts, 2000 commits.
    assert_eq!(write_markers(&broker, &request).await, vec![0, 0]); // markers at 7 and 8
    let committed = fetch(&mut client, &topic, 0, true).await;
    assert_eq!(committed.high_watermark, 9);
    assert_eq!(committed.last_stable_offset, 9);
    let aborted = committed.aborted_transactions.clone().unwrap();
    assert_eq!(aborted.len(), 1);
    assert_eq!(
        (aborted[0].producer_id.0, aborted[0].first_offset),
        (1000, 2)
    );
    let got = records(&committed.records.unwrap());
    assert_eq!(offsets(&got, false), (0..9).collect::<Vec<_>>());
    assert_eq!(
        got.iter()
            .filter(|r| r.2)
            .map(|r| (r.0, r.1))
            .collect::<Vec<_>>(),
        vec![(7, 1000), (8, 2000)],
        "the markers are control records"
    );
    assert_eq!(latest(&mut client, &topic, true).await, 9);
    // A read starting after producer 1000's marker is told of no aborted transaction.
    let later = fetch(&mut client, &topic, 8, true).await;
    assert_eq!(later.aborted_transactions, Some(vec![]));
    // A read starting inside it is.
    let inside = fetch(&mut client, &topic, 6, true).await;
    assert_eq!(inside.aborted_transactions.map(|a| a.len()), Some(1));

    // Over the mesh: a peer that is not a registered node cannot write markers, and reads
    // read_committed as over TCP; so does `rafka consume --isolation read_committed`.
    let p2p = node.node.as_ref().unwrap().addresses().p2p[0].to_string();
    let peer = MeshClient::connect(&p2p).await;
    let refused = peer
        .send(&markers(&topic, &[(1000, true)]), 1, STEP)
        .await
        .unwrap();
    assert_eq!(
        codes(&refused),
        vec![ResponseError::ClusterAuthorizationFailed.code()]
    );
    let request = wire::fetch_request(&topic, 0, 0, wire::FETCH).with_isolation_level(1);
    let over_mesh = wire::only_partition(&peer.send(&request, wire::FETCH, STEP).await.unwrap());
    assert_eq!(over_mesh.last_stable_offset, 9);
    assert_eq!(over_mesh.aborted_transactions.map(|a| a.len()), Some(1));
    peer.shutdown().await;
    let consumed = |isolation: &'static str, n: &'static str| {
        let args = [
            "--bootstrap",
            p2p.as_str(),
            "consume",
            topic.name.as_str(),
            "--from-beginning",
            "-n",
            n,
            "--isolation",
            isolation,
        ]
        .map(str::to_string);
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            String::from_utf8(run(rafka(&args), b"", STEP).ok()).unwrap()
        })
    };
    assert_eq!(
        consumed("read_committed", "4").await.unwrap(),
        "a0\na1\np2-0\nb0\n",
        "producer 1000's aborted records are skipped"
    );
    assert_eq!(
        consumed("read_uncommitted", "7").await.unwrap(),
        "a0\na1\np1-0\np1-1\np2-0\nb0\np1-2\n"
    );

    // Errors per partition: an unknown topic or partition.
    let mut unknown = markers(&topic, &[(1000, true)]);
    unknown.markers[0].topics[0].partition_indexes = vec![5];
    assert_eq!(
        write_markers(&broker, &unknown).await,
        vec![ResponseError::UnknownTopicOrPartition.code()]
    );

    // A transaction left open across a restart still holds the LSO; the index survives.
    assert_eq!(append_txn(&leader, &["p3-0"], (3000, 0, 0)).await, 9);
    drop((leader, broker));
    node.restart().await;
    let broker = node.node.as_ref().unwrap().broker().clone();
    let mut client = node.connect().await;
    let leader = leader_of(&broker, &topic).await;
    wait_until(STEP, "the high watermark back at the log end", async || {
        (leader.high_watermark().0 == 10)
            .then_some(())
            .ok_or("not yet")
    })
    .await;
    let committed = fetch(&mut client, &topic, 0, true).await;
    assert_eq!(committed.last_stable_offset, 9);
    assert_eq!(committed.aborted_transactions.map(|a| a.len()), Some(1));
    assert_eq!(
        write_markers(&broker, &markers(&topic, &[(3000, true)])).await,
        vec![0]
    );
    assert_eq!(latest(&mut client, &topic, true).await, 11);
}

/// A free loopback TCP port (bound and released: the node binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Three nodes in this process, replication factor 3: the first listens on a known mesh port,
/// the others join through it; all start together (a cluster forms once the three see each
/// other).
async fn three_nodes(dirs: &[tempfile::TempDir; 3]) -> Vec<rafka_broker::Node> {
    let first: rafka_mesh::Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", free_port())
        .parse()
        .unwrap();
    let configs: Vec<rafka_broker::NodeConfig> = dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            let mut config = crate::support::test_config(dir.path());
            config.bootstrap_expect = Some(3);
            config.default_replication_factor = 3;
            config.offsets_topic_replication_factor = 3;
            if i == 0 {
                config.p2p_addr = Some(first.clone());
            } else {
                config.bootstrap = vec![first.clone()];
            }
            config
        })
        .collect();
    let starts = configs.into_iter().map(|config| {
        rafka_broker::Node::start(config, None, tokio_util::sync::CancellationToken::new())
    });
    futures::future::join_all(starts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_rf3_markers_over_the_mesh_and_read_committed_on_the_leader() {
    let dirs = [(); 3].map(|()| tempfile::tempdir().unwrap());
    let nodes = three_nodes(&dirs).await;
    let brokers: Vec<Broker> = nodes.iter().map(|n| n.broker().clone()).collect();
    wait_until(
        STEP,
        "the transactions feature level on every node",
        async || {
            brokers
                .iter()
                .all(|b| b.image().features().enabled(Feature::Transactions))
                .then_some(())
                .ok_or("not finalized yet")
        },
    )
    .await;
    let mut client = crate::support::raw::RawClient::connect(nodes[0].addresses().kafka).await;
    let request = kafka_protocol::messages::CreateTopicsRequest::default()
        .with_topics(vec![wire::creatable("txn-rf3", 1, 3, &[])])
        .with_timeout_ms(10_000);
    // Until the metadata log has seen all three nodes register, a replication factor of 3 is
    // refused with INVALID_REPLICATION_FACTOR: retry that, and only that.
    let invalid_replication_factor = kafka_protocol::ResponseError::InvalidReplicationFactor.code();
    let created = wait_until(STEP, "txn-rf3 created on three nodes", async || {
        let created = client.send(&request, wire::CREATE_TOPICS).await;
        let answer = &created.topics[0];
        match answer.error_code {
            0 => Ok(answer.topic_id),
            code if code == invalid_replication_factor => {
                Err(format!("{:?}", answer.error_message))
            }
            code => panic!("CreateTopics answered {code}: {:?}", answer.error_message),
        }
    })
    .await;
    let topic = Topic {
        name: "txn-rf3".to_string(),
        id: created,
    };
    let tp = TopicPartition {
        topic_id: topic.id,
        partition: 0,
    };
    let (at, leader) = wait_until(STEP, "a leader with three in-sync replicas", async || {
        brokers
            .iter()
            .enumerate()
            .find_map(|(i, b)| b.partitions().leader(&tp).map(|l| (i, l)))
            .filter(|(_, l)| l.isr().len() == 3)
            .ok_or("not yet")
    })
    .await;
    assert_eq!(append_txn(&leader, &["x0", "x1"], (7000, 0, 0)).await, 0);
    assert_eq!(append_txn(&leader, &["y0"], (8000, 0, 0)).await, 2);
    assert_eq!(leader.last_stable_offset().0, 0);
    // The markers come from another node, over the mesh.
    let other = &brokers[(at + 1) % 3];
    let request = markers(&topic, &[(7000, false), (8000, true)]);
    let response: WriteTxnMarkersResponse = request_node(
        other,
        brokers[at].local().node_id,
        (ApiKey::WriteTxnMarkers, 1),
        &request,
        STEP,
    )
    .await
    .unwrap();
    assert_eq!(codes(&response), vec![0, 0]);
    // acks=all: every replica has the markers; the leader's LSO is past them.
    assert_eq!(leader.high_watermark().0, 5);
    assert_eq!(leader.last_stable_offset().0, 5);
    let mut on_leader = crate::support::raw::RawClient::connect(nodes[at].addresses().kafka).await;
    let committed = fetch(&mut on_leader, &topic, 0, true).await;
    assert_eq!(committed.last_stable_offset, 5);
    let aborted = committed.aborted_transactions.unwrap();
    assert_eq!(aborted.len(), 1);
    assert_eq!(
        (aborted[0].producer_id.0, aborted[0].first_offset),
        (7000, 0)
    );
    // A follower's store ended the same transactions (what a new leader would serve).
    for (i, b) in brokers.iter().enumerate().filter(|(i, _)| *i != at) {
        let log = b.store().partition(tp).unwrap();
        wait_until(STEP, &format!("node {i} has the markers"), async || {
            (log.log_end_offset() == 5).then_some(()).ok_or("not yet")
        })
        .await;
        assert_eq!(log.open_transaction(7000), None);
        assert_eq!(log.aborted_transactions(0, 5).unwrap().len(), 1);
    }
    drop(leader);
    for node in nodes {
        node.shutdown().await;
    }
}
