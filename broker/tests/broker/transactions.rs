//! The transaction coordinator through its Kafka APIs, as a transactional producer and an admin
//! client use them (FindCoordinator key type 1, InitProducerId with a transactional id,
//! AddPartitionsToTxn v0-3, AddOffsetsToTxn, EndTxn, DescribeTransactions, ListTransactions),
//! and AddPartitionsToTxn v4+ `verify_only` as another node sends it (KIP-890 part 1): fencing,
//! errors by version, timeouts, and the state surviving a restart.

use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey,
    DescribeTransactionsRequest, EndTxnRequest, FindCoordinatorRequest, GroupId,
    InitProducerIdRequest, ListTransactionsRequest, ProducerId, TransactionalId,
};
use rafka_broker::NodeConfig;
use rafka_broker::peers::request_node;

use crate::support::mesh_client::MeshClient;
use crate::support::raw::RawClient;
use crate::support::wire::{self, DEADLINE, str, topic_name};
use crate::support::{TestNode, wait_until};

const TIMEOUT_MS: i32 = 60_000;

/// A node with a small `__transaction_state`.
async fn txn_node() -> TestNode {
    TestNode::start_with(small_state_topic).await
}

fn small_state_topic(config: &mut NodeConfig) {
    config.transaction_state_partitions = 3;
}

fn txn_id(id: &str) -> TransactionalId {
    TransactionalId(str(id))
}

/// InitProducerId `version` for `id`, with the producer the client has (v3+).
async fn init_at(
    client: &mut RawClient,
    version: i16,
    id: &str,
    timeout_ms: i32,
    current: Option<(i64, i16)>,
) -> Result<(i64, i16), ResponseError> {
    let (pid, epoch) = current.unwrap_or((-1, -1));
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(txn_id(id)))
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch);
    let response = client.send(&request, version).await;
    match ResponseError::try_from_code(response.error_code) {
        None => Ok((response.producer_id.0, response.producer_epoch)),
        Some(error) => {
            assert_eq!(response.producer_id.0, -1);
            assert_eq!(response.producer_epoch, -1);
            Err(error)
        }
    }
}

/// As a client starts: FindCoordinator (which creates `__transaction_state` on first use), then
/// InitProducerId until the coordinator has loaded its partition.
async fn init(client: &mut RawClient, id: &str, timeout_ms: i32) -> (i64, i16) {
    let what = format!("a producer id for {id}");
    wait_until(DEADLINE, &what, async || {
        find(client, id, 3).await?;
        init_at(client, 4, id, timeout_ms, None)
            .await
            .map_err(|e| format!("{e:?}"))
    })
    .await
}

/// FindCoordinator v`version` (< 4) for a transactional id: the node id, or the error.
async fn find(client: &mut RawClient, id: &str, version: i16) -> Result<i32, String> {
    let request = FindCoordinatorRequest::default()
        .with_key(str(id))
        .with_key_type(1);
    let response = client.send(&request, version).await;
    match ResponseError::try_from_code(response.error_code) {
        None => Ok(response.node_id.0),
        Some(error) => Err(format!("{error:?}: {:?}", response.error_message)),
    }
}

fn topics(partitions: &[(&str, i32)]) -> Vec<AddPartitionsToTxnTopic> {
    let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
    for (topic, partition) in partitions {
        match topics.iter_mut().find(|t| t.name.0.as_str() == *topic) {
            Some(t) => t.partitions.push(*partition),
            None => topics.push(
                AddPartitionsToTxnTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(vec![*partition]),
            ),
        }
    }
    topics
}

/// AddPartitionsToTxn v`version` (< 4): each partition's error code, by (topic, partition).
async fn add(
    client: &mut RawClient,
    version: i16,
    id: &str,
    (pid, epoch): (i64, i16),
    partitions: &[(&str, i32)],
) -> Vec<(String, i32, i16)> {
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(txn_id(id))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(topics(partitions));
    let response = client.send(&request, version).await;
    codes_v3(&response)
}

fn codes_v3(response: &AddPartitionsToTxnResponse) -> Vec<(String, i32, i16)> {
    response
        .results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| {
            t.results_by_partition.iter().map(|p| {
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    p.partition_error_code,
                )
            })
        })
        .collect()
}

/// EndTxn v`version`: its error (`None` for success).
async fn end(
    client: &mut RawClient,
    version: i16,
    id: &str,
    (pid, epoch): (i64, i16),
    commit: bool,
) -> Option<ResponseError> {
    let request = EndTxnRequest::default()
        .with_transactional_id(txn_id(id))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    let response = client.send(&request, version).await;
    ResponseError::try_from_code(response.error_code)
}

/// DescribeTransactions of one id: (error, status, producer id, epoch, partitions).
async fn describe(
    client: &mut RawClient,
    id: &str,
) -> (Option<ResponseError>, String, i64, i16, Vec<(String, i32)>) {
    let request = DescribeTransactionsRequest::default().with_transactional_ids(vec![txn_id(id)]);
    let response = client.send(&request, 0).await;
    assert_eq!(response.transaction_states.len(), 1);
    let state = &response.transaction_states[0];
    assert_eq!(state.transactional_id.0.as_str(), id);
    let mut partitions: Vec<(String, i32)> = state
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
        .collect();
    partitions.sort();
    (
        ResponseError::try_from_code(state.error_code),
        state.transaction_state.to_string(),
        state.producer_id.0,
        state.producer_epoch,
        partitions,
    )
}

#[tokio::test]
async fn the_coordinator_is_found_and_a_second_init_fences_the_first_producer() {
    let node = txn_node().await;
    let mut client = node.connect().await;
    let first = init(&mut client, "fence-me", TIMEOUT_MS).await;
    assert_eq!(first.1, 0, "a new transactional id starts at epoch 0");
    let node_id = find(&mut client, "fence-me", 3).await.expect("found");
    // v0 has no key type (groups only).
    for version in 1..=2 {
        assert_eq!(find(&mut client, "fence-me", version).await, Ok(node_id));
    }
    for version in 4..=5 {
        let request = FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![str("fence-me"), str("other")]);
        let response = client.send(&request, version).await;
        let found: Vec<(String, i16, i32)> = response
            .coordinators
            .iter()
            .map(|c| (c.key.to_string(), c.error_code, c.node_id.0))
            .collect();
        assert_eq!(
            found,
            vec![
                ("fence-me".into(), 0, node_id),
                ("other".into(), 0, node_id)
            ],
            "v{version}"
        );
    }

    let second = init_at(&mut client, 4, "fence-me", TIMEOUT_MS, None)
        .await
        .expect("second init");
    assert_eq!(
        second,
        (first.0, first.1 + 1),
        "same producer id, epoch bumped"
    );
    // The first producer is fenced: PRODUCER_FENCED from the versions that know it,
    // INVALID_PRODUCER_EPOCH before.
    for (version, expected) in [
        (0, ResponseError::InvalidProducerEpoch),
        (1, ResponseError::InvalidProducerEpoch),
        (2, ResponseError::ProducerFenced),
        (3, ResponseError::ProducerFenced),
    ] {
        let codes = add(&mut client, version, "fence-me", first, &[("t", 0)]).await;
        assert_eq!(
            codes,
            vec![("t".into(), 0, ResponseError::UnknownTopicOrPartition.code())],
            "an unknown partition is refused before the producer is checked"
        );
        wire::create_topic(&mut client, &format!("fence-{version}"), 1).await;
        let topic = format!("fence-{version}");
        let codes = add(&mut client, version, "fence-me", first, &[(&topic, 0)]).await;
        assert_eq!(codes, vec![(topic, 0, expected.code())], "v{version}");
    }
    for (version, expected) in [
        (1, ResponseError::InvalidProducerEpoch),
        (2, ResponseError::ProducerFenced),
    ] {
        assert_eq!(
            end(&mut client, version, "fence-me", first, true).await,
            Some(expected),
            "EndTxn v{version}"
        );
    }
    // InitProducerId v3+ naming the producer it replaced is a retry of that InitProducerId (the
    // same answer again, KIP-360); naming an older one is fenced (v3 says it the old way).
    let third = init_at(&mut client, 4, "fence-me", TIMEOUT_MS, Some(second))
        .await
        .expect("a bump by the current producer");
    assert_eq!(third, (first.0, first.1 + 2));
    assert_eq!(
        init_at(&mut client, 4, "fence-me", TIMEOUT_MS, Some(second)).await,
        Ok(third),
        "a retried bump gets the same answer"
    );
    assert_eq!(
        init_at(&mut client, 3, "fence-me", TIMEOUT_MS, Some(first)).await,
        Err(ResponseError::InvalidProducerEpoch)
    );
    assert_eq!(
        init_at(&mut client, 4, "fence-me", TIMEOUT_MS, Some(first)).await,
        Err(ResponseError::ProducerFenced)
    );
    // Out of range timeouts, a missing transactional id, half a producer.
    assert_eq!(
        init_at(&mut client, 4, "fence-me", 900_001, None).await,
        Err(ResponseError::InvalidTransactionTimeout)
    );
    assert_eq!(
        init_at(&mut client, 4, "", TIMEOUT_MS, None).await,
        Err(ResponseError::InvalidRequest)
    );
    assert_eq!(
        init_at(&mut client, 4, "fence-me", TIMEOUT_MS, Some((third.0, -1))).await,
        Err(ResponseError::InvalidRequest)
    );
    wire::stop(node).await;
}

#[tokio::test]
async fn a_transaction_is_added_to_described_listed_and_ended() {
    let node = txn_node().await;
    let mut client = node.connect().await;
    wire::create_topic(&mut client, "txn-a", 2).await;
    wire::create_topic(&mut client, "txn-b", 1).await;
    let producer = init(&mut client, "payments", TIMEOUT_MS).await;
    let (error, status, pid, epoch, partitions) = describe(&mut client, "payments").await;
    assert_eq!(error, None);
    assert_eq!(
        (status.as_str(), pid, epoch),
        ("Empty", producer.0, producer.1)
    );
    assert!(partitions.is_empty());

    // One unknown partition fails the whole request; nothing is added.
    let codes = add(
        &mut client,
        3,
        "payments",
        producer,
        &[("txn-a", 0), ("txn-a", 7)],
    )
    .await;
    assert_eq!(
        codes,
        vec![
            (
                "txn-a".into(),
                0,
                ResponseError::OperationNotAttempted.code()
            ),
            (
                "txn-a".into(),
                7,
                ResponseError::UnknownTopicOrPartition.code()
            ),
        ]
    );
    assert_eq!(describe(&mut client, "payments").await.1, "Empty");

    let codes = add(
        &mut client,
        0,
        "payments",
        producer,
        &[("txn-a", 0), ("txn-a", 1), ("txn-b", 0)],
    )
    .await;
    assert!(codes.iter().all(|(_, _, code)| *code == 0), "{codes:?}");
    let request = AddOffsetsToTxnRequest::default()
        .with_transactional_id(txn_id("payments"))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_group_id(GroupId(str("billing")));
    let response = client.send(&request, 0).await;
    assert_eq!(response.error_code, 0);

    let (error, status, _, _, partitions) = describe(&mut client, "payments").await;
    assert_eq!((error, status.as_str()), (None, "Ongoing"));
    let offsets_partitions = node.config.offsets_topic_partitions;
    let billing = rafka_broker::group::partition_for_group("billing", offsets_partitions);
    let mut expected = vec![
        ("__consumer_offsets".to_string(), billing),
        ("txn-a".into(), 0),
        ("txn-a".into(), 1),
        ("txn-b".into(), 0),
    ];
    expected.sort();
    assert_eq!(partitions, expected);

    let listed = |statuses: &[&str], pids: &[i64], duration: i64| {
        ListTransactionsRequest::default()
            .with_state_filters(statuses.iter().map(|s| str(s)).collect())
            .with_producer_id_filters(pids.iter().map(|p| ProducerId(*p)).collect())
            .with_duration_filter(duration)
    };
    let response = client
        .send(&listed(&["Ongoing", "Bogus"], &[producer.0], -1), 1)
        .await;
    assert_eq!(response.error_code, 0);
    let ids: Vec<(String, i64, String)> = response
        .transaction_states
        .iter()
        .map(|s| {
            (
                s.transactional_id.0.to_string(),
                s.producer_id.0,
                s.transaction_state.to_string(),
            )
        })
        .collect();
    assert_eq!(ids, vec![("payments".into(), producer.0, "Ongoing".into())]);
    assert_eq!(
        response
            .unknown_state_filters
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
        vec!["Bogus".to_string()]
    );
    // Filters that match nothing: another status, another producer, a long duration, only an
    // unknown status.
    for request in [
        listed(&["Empty"], &[], -1),
        listed(&[], &[producer.0 + 1], -1),
        listed(&[], &[], 3_600_000),
        listed(&["Bogus"], &[], -1),
    ] {
        let response = client.send(&request, 1).await;
        assert!(response.transaction_states.is_empty(), "{request:?}");
    }

    // The commit is answered once decided. Its markers go to the partitions' leaders; whether
    // they are written yet or not, the outcome is decided: the other one is refused and a
    // retried commit is never an error other than "still ending".
    assert_eq!(end(&mut client, 3, "payments", producer, true).await, None);
    let (_, status, _, _, _) = describe(&mut client, "payments").await;
    assert!(
        ["PrepareCommit", "CompleteCommit"].contains(&status.as_str()),
        "{status}"
    );
    assert_eq!(
        end(&mut client, 3, "payments", producer, false).await,
        Some(ResponseError::InvalidTxnState)
    );
    let retried = end(&mut client, 3, "payments", producer, true).await;
    assert!(
        matches!(retried, None | Some(ResponseError::ConcurrentTransactions)),
        "{retried:?}"
    );
    // Nothing to end without a transaction; an unknown id is nobody's.
    let other = init(&mut client, "idle", TIMEOUT_MS).await;
    assert_eq!(
        end(&mut client, 3, "idle", other, true).await,
        Some(ResponseError::InvalidTxnState)
    );
    let (error, ..) = describe(&mut client, "never-seen").await;
    assert!(
        matches!(
            error,
            Some(ResponseError::TransactionalIdNotFound | ResponseError::NotCoordinator)
        ),
        "{error:?}"
    );
    wire::stop(node).await;
}

/// AddPartitionsToTxn v4+ `verify_only` from `node` itself (through its own dispatcher, as a
/// partition leader on the coordinator's node asks).
async fn verify_from_node(
    node: &TestNode,
    id: &str,
    (pid, epoch): (i64, i16),
    partitions: &[(&str, i32)],
) -> (i16, Vec<(String, i32, i16)>) {
    let broker = node.node.as_ref().unwrap().broker();
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(txn_id(id))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_verify_only(true)
            .with_topics(topics(partitions)),
    ]);
    let response: AddPartitionsToTxnResponse = request_node(
        broker,
        broker.local().node_id,
        (ApiKey::AddPartitionsToTxn, 5),
        &request,
        Duration::from_secs(10),
    )
    .await
    .expect("answered");
    let codes = response
        .results_by_transaction
        .iter()
        .flat_map(|t| {
            assert_eq!(t.transactional_id.0.as_str(), id);
            t.topic_results.iter().flat_map(|topic| {
                topic.results_by_partition.iter().map(|p| {
                    (
                        topic.name.0.to_string(),
                        p.partition_index,
                        p.partition_error_code,
                    )
                })
            })
        })
        .collect();
    (response.error_code, codes)
}

#[tokio::test]
async fn verification_answers_nodes_only_and_only_for_added_partitions() {
    let node = txn_node().await;
    let mut client = node.connect().await;
    wire::create_topic(&mut client, "verified", 2).await;
    let producer = init(&mut client, "v-1", TIMEOUT_MS).await;
    let codes = add(&mut client, 3, "v-1", producer, &[("verified", 0)]).await;
    assert_eq!(codes, vec![("verified".into(), 0, 0)]);

    let (error, codes) =
        verify_from_node(&node, "v-1", producer, &[("verified", 0), ("verified", 1)]).await;
    assert_eq!(error, 0);
    assert_eq!(
        codes,
        vec![
            ("verified".into(), 0, 0),
            (
                "verified".into(),
                1,
                ResponseError::TransactionAbortable.code()
            ),
        ],
        "only the added partition may be written"
    );
    let stale = (producer.0, producer.1 - 1);
    let (_, codes) = verify_from_node(&node, "v-1", stale, &[("verified", 0)]).await;
    assert_eq!(
        codes,
        vec![("verified".into(), 0, ResponseError::ProducerFenced.code())]
    );
    let (_, codes) = verify_from_node(&node, "v-1", (producer.0 + 1, 0), &[("verified", 0)]).await;
    assert_eq!(
        codes,
        vec![(
            "verified".into(),
            0,
            ResponseError::InvalidProducerIdMapping.code()
        )]
    );

    // A client may not send the broker-to-broker versions: not over TCP, not over the mesh.
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(txn_id("v-1"))
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_verify_only(true)
            .with_topics(topics(&[("verified", 0)])),
    ]);
    for version in 4..=5 {
        let response = client.send(&request, version).await;
        assert_eq!(
            response.error_code,
            ResponseError::ClusterAuthorizationFailed.code(),
            "TCP v{version}"
        );
        assert!(response.results_by_transaction.is_empty());
    }
    let p2p = node.node.as_ref().unwrap().addresses().p2p[0].to_string();
    let mesh = MeshClient::connect(&p2p).await;
    let response = mesh
        .send(&request, 5, Duration::from_secs(10))
        .await
        .expect("answered over the mesh");
    assert_eq!(
        response.error_code,
        ResponseError::ClusterAuthorizationFailed.code(),
        "a mesh client is not a registered node"
    );
    mesh.shutdown().await;
    wire::stop(node).await;
}

#[tokio::test]
async fn a_transaction_open_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let node = txn_node().await;
    let mut client = node.connect().await;
    wire::create_topic(&mut client, "slow", 1).await;
    let producer = init(&mut client, "slow-1", 1_000).await;
    let codes = add(&mut client, 3, "slow-1", producer, &[("slow", 0)]).await;
    assert_eq!(codes, vec![("slow".into(), 0, 0)]);
    let aborted = wait_until(DEADLINE, "the timed-out transaction aborted", async || {
        let (error, status, pid, epoch, _) = describe(&mut client, "slow-1").await;
        assert_eq!(error, None);
        ["PrepareAbort", "CompleteAbort"]
            .contains(&status.as_str())
            .then_some((pid, epoch))
            .ok_or(status)
    })
    .await;
    assert_eq!(
        aborted,
        (producer.0, producer.1 + 1),
        "aborted under a bumped epoch"
    );
    assert_eq!(
        end(&mut client, 3, "slow-1", producer, true).await,
        Some(ResponseError::ProducerFenced)
    );
    wire::stop(node).await;
}

#[tokio::test]
async fn an_open_transaction_survives_a_restart_of_its_coordinator() {
    let mut node = txn_node().await;
    let mut client = node.connect().await;
    wire::create_topic(&mut client, "kept", 3).await;
    let producer = init(&mut client, "kept-1", TIMEOUT_MS).await;
    let codes = add(
        &mut client,
        3,
        "kept-1",
        producer,
        &[("kept", 2), ("kept", 0)],
    )
    .await;
    assert!(codes.iter().all(|(_, _, c)| *c == 0), "{codes:?}");
    drop(client);
    node.restart().await;
    let mut client = node.connect().await;
    let described = wait_until(DEADLINE, "the transaction loaded again", async || {
        find(&mut client, "kept-1", 3).await?;
        let (error, status, pid, epoch, partitions) = describe(&mut client, "kept-1").await;
        match error {
            None => Ok((status, pid, epoch, partitions)),
            Some(e) => Err(format!("{e:?}")),
        }
    })
    .await;
    assert_eq!(
        described,
        (
            "Ongoing".to_string(),
            producer.0,
            producer.1,
            vec![("kept".to_string(), 0), ("kept".to_string(), 2)]
        )
    );
    // The same producer carries on: adds and ends its transaction.
    let codes = add(&mut client, 3, "kept-1", producer, &[("kept", 1)]).await;
    assert_eq!(codes, vec![("kept".into(), 1, 0)]);
    assert_eq!(end(&mut client, 3, "kept-1", producer, false).await, None);
    wire::stop(node).await;
}

mod failover {
    //! Three `rafka-node` processes, `__transaction_state` at replication factor 3: the
    //! coordinator is SIGKILLed with one transaction decided (committed, markers perhaps not all
    //! written) and one open; the new coordinator has both, and the open one's producer carries on.

    use std::net::SocketAddr;
    use std::time::Duration;

    use kafka_protocol::ResponseError;
    use kafka_protocol::messages::{
        AddPartitionsToTxnRequest, DescribeTransactionsRequest, EndTxnRequest,
        FindCoordinatorRequest, InitProducerIdRequest, ProducerId,
    };

    use super::{TIMEOUT_MS, codes_v3, topics, txn_id};
    use crate::support::cluster::{ProcessCluster, kafka_call};
    use crate::support::wait_until_blocking;
    use crate::support::wire::str;

    const TOPIC: &str = "txn-failover";
    const STEP: Duration = Duration::from_secs(60);
    const CALL: Duration = Duration::from_secs(15);

    /// The node id coordinating `id`, as the node at `addr` says.
    fn coordinator(addr: SocketAddr, id: &str) -> Result<i32, String> {
        let request = FindCoordinatorRequest::default()
            .with_key(str(id))
            .with_key_type(1);
        let response = kafka_call(addr, &request, 3, CALL).map_err(|e| e.to_string())?;
        match ResponseError::try_from_code(response.error_code) {
            None => Ok(response.node_id.0),
            Some(e) => Err(format!("{e:?}")),
        }
    }

    fn init(addr: SocketAddr, id: &str) -> Result<(i64, i16), String> {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(txn_id(id)))
            .with_transaction_timeout_ms(TIMEOUT_MS);
        let response = kafka_call(addr, &request, 4, CALL).map_err(|e| e.to_string())?;
        match ResponseError::try_from_code(response.error_code) {
            None => Ok((response.producer_id.0, response.producer_epoch)),
            Some(e) => Err(format!("{e:?}")),
        }
    }

    fn add(addr: SocketAddr, id: &str, (pid, epoch): (i64, i16), partitions: &[i32]) -> Vec<i16> {
        let partitions: Vec<(&str, i32)> = partitions.iter().map(|p| (TOPIC, *p)).collect();
        let request = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(txn_id(id))
            .with_v3_and_below_producer_id(ProducerId(pid))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(topics(&partitions));
        let response = kafka_call(addr, &request, 3, CALL).unwrap();
        codes_v3(&response).into_iter().map(|(_, _, c)| c).collect()
    }

    fn end(addr: SocketAddr, id: &str, (pid, epoch): (i64, i16), commit: bool) -> i16 {
        let request = EndTxnRequest::default()
            .with_transactional_id(txn_id(id))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_committed(commit);
        kafka_call(addr, &request, 3, CALL).unwrap().error_code
    }

    /// (status, producer id, epoch, partitions) of `id` at `addr`, or the error.
    fn describe(addr: SocketAddr, id: &str) -> Result<(String, i64, i16, Vec<i32>), String> {
        let request =
            DescribeTransactionsRequest::default().with_transactional_ids(vec![txn_id(id)]);
        let response = kafka_call(addr, &request, 0, CALL).map_err(|e| e.to_string())?;
        let state = &response.transaction_states[0];
        if let Some(e) = ResponseError::try_from_code(state.error_code) {
            return Err(format!("{e:?}"));
        }
        let mut partitions: Vec<i32> = state
            .topics
            .iter()
            .flat_map(|t| t.partitions.clone())
            .collect();
        partitions.sort_unstable();
        Ok((
            state.transaction_state.to_string(),
            state.producer_id.0,
            state.producer_epoch,
            partitions,
        ))
    }

    /// The process index of node id `node`.
    fn index_of(cluster: &ProcessCluster, node: i32) -> usize {
        cluster
            .running()
            .into_iter()
            .find(|&i| cluster.identity(i).1 == i64::from(node))
            .expect("a running node")
    }

    #[test]
    fn a_new_coordinator_has_the_decided_and_the_open_transactions() {
        let extra = ["--transaction-state-partitions", "1"];
        let mut cluster = ProcessCluster::replicated(TOPIC, 3, &extra);
        let first = wait_until_blocking(STEP, "a transaction coordinator", || {
            coordinator(cluster.kafka(0), "decided")
        });
        let at = cluster.kafka(index_of(&cluster, first));
        let decided = wait_until_blocking(STEP, "a producer id", || init(at, "decided"));
        let open = init(at, "open").expect("the same coordinator serves both ids");
        assert_eq!(add(at, "decided", decided, &[0, 1]), vec![0, 0]);
        assert_eq!(add(at, "open", open, &[2]), vec![0]);
        assert_eq!(end(at, "decided", decided, true), 0);

        let killed = index_of(&cluster, first);
        cluster.kill(killed);
        let survivor = cluster.kafka(cluster.running()[0]);
        let next = wait_until_blocking(STEP, "a new transaction coordinator", || {
            coordinator(survivor, "decided").and_then(|node| {
                if node == first {
                    Err("still the killed node".to_string())
                } else {
                    Ok(node)
                }
            })
        });
        let at = cluster.kafka(index_of(&cluster, next));
        let (status, pid, epoch, _) =
            wait_until_blocking(STEP, "the decided commit", || describe(at, "decided"));
        assert!(
            ["PrepareCommit", "CompleteCommit"].contains(&status.as_str()),
            "{status}"
        );
        assert_eq!((pid, epoch), decided);
        assert_eq!(
            end(at, "decided", decided, false),
            ResponseError::InvalidTxnState.code(),
            "the decision stands"
        );
        assert_eq!(
            describe(at, "open"),
            Ok(("Ongoing".to_string(), open.0, open.1, vec![2]))
        );
        assert_eq!(add(at, "open", open, &[0]), vec![0]);
        assert_eq!(end(at, "open", open, false), 0);
        let (status, ..) = describe(at, "open").expect("described");
        assert!(
            ["PrepareAbort", "CompleteAbort"].contains(&status.as_str()),
            "{status}"
        );
    }
}
