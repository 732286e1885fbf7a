//! TxnOffsetCommit at the group coordinator (issue 15): offsets a transactional producer commits
//! are pending until its transaction's marker lands on the group's `__consumer_offsets`
//! partition (commit: visible to OffsetFetch; abort: gone), OffsetFetch with `require_stable`
//! answers UNSTABLE_OFFSET_COMMIT meanwhile, KIP-890 part 1 refuses a commit whose offsets
//! partition was never added to the transaction, members are fenced by generation, and the
//! pending and committed state is rebuilt by replay after a restart (in process, raw requests)
//! and on a new coordinator after the old one is SIGKILLed (three processes, RF 3). The
//! confluent-kafka test drives `send_offsets_to_transaction` (`tests/python/txn_offsets.py`).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, EndTxnRequest, FindCoordinatorRequest, GroupId, InitProducerIdRequest,
    OffsetFetchRequest, OffsetFetchResponse, ProducerId, TransactionalId, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use rafka_broker::NodeConfig;

use crate::support::raw::RawClient;
use crate::support::wire::{self, DEADLINE, str, topic_name};
use crate::support::{TestNode, wait_until};

const TIMEOUT_MS: i32 = 60_000;
const TOPIC: &str = "txo-in";
const GROUP: &str = "txo-group";
const UNSTABLE: i16 = 88;

fn serve_transactions(config: &mut NodeConfig) {
    config.transaction_state_partitions = 2;
}

fn txn_id(id: &str) -> TransactionalId {
    TransactionalId(str(id))
}

// ---- requests, shared with the process tests ----

fn init_request(id: &str) -> InitProducerIdRequest {
    InitProducerIdRequest::default()
        .with_transactional_id(Some(txn_id(id)))
        .with_transaction_timeout_ms(TIMEOUT_MS)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

fn find_request(key: &str, key_type: i8) -> FindCoordinatorRequest {
    FindCoordinatorRequest::default()
        .with_key(str(key))
        .with_key_type(key_type)
}

fn add_offsets_request(id: &str, (pid, epoch): (i64, i16), group: &str) -> AddOffsetsToTxnRequest {
    AddOffsetsToTxnRequest::default()
        .with_transactional_id(txn_id(id))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_group_id(GroupId(str(group)))
}

fn end_request(id: &str, (pid, epoch): (i64, i16), commit: bool) -> EndTxnRequest {
    EndTxnRequest::default()
        .with_transactional_id(txn_id(id))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit)
}

/// TxnOffsetCommit of `TOPIC`/0 at `offset`; v3+ carry `member` (member id, generation).
fn txn_commit_request(
    id: &str,
    (pid, epoch): (i64, i16),
    group: &str,
    member: (&str, i32),
    offset: i64,
) -> TxnOffsetCommitRequest {
    let partition = TxnOffsetCommitRequestPartition::default()
        .with_partition_index(0)
        .with_committed_offset(offset)
        .with_committed_leader_epoch(-1)
        .with_committed_metadata(Some(str("txn")));
    TxnOffsetCommitRequest::default()
        .with_transactional_id(txn_id(id))
        .with_group_id(GroupId(str(group)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_member_id(str(member.0))
        .with_generation_id(member.1)
        .with_topics(vec![
            TxnOffsetCommitRequestTopic::default()
                .with_name(topic_name(TOPIC))
                .with_partitions(vec![partition]),
        ])
}

fn txn_commit_code(response: &TxnOffsetCommitResponse) -> i16 {
    response.topics[0].partitions[0].error_code
}

/// OffsetFetch of `TOPIC`/0 for `group`: v8+ (groups), v7 (require_stable in the top level) or
/// older; (committed offset, partition error, group error).
fn fetch_request(group: &str, version: i16, require_stable: bool) -> OffsetFetchRequest {
    if version >= 8 {
        OffsetFetchRequest::default()
            .with_groups(vec![
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(str(group)))
                    .with_topics(Some(vec![
                        OffsetFetchRequestTopics::default()
                            .with_name(topic_name(TOPIC))
                            .with_partition_indexes(vec![0]),
                    ])),
            ])
            .with_require_stable(require_stable)
    } else {
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(str(group)))
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(topic_name(TOPIC))
                    .with_partition_indexes(vec![0]),
            ]));
        if version >= 7 {
            request.with_require_stable(require_stable)
        } else {
            request
        }
    }
}

fn fetched(response: &OffsetFetchResponse, version: i16) -> (i64, i16, i16) {
    if version >= 8 {
        let group = &response.groups[0];
        let p = &group.topics[0].partitions[0];
        (p.committed_offset, p.error_code, group.error_code)
    } else {
        let p = &response.topics[0].partitions[0];
        (p.committed_offset, p.error_code, response.error_code)
    }
}

// ---- one node, in process ----

async fn init(client: &mut RawClient, id: &str) -> (i64, i16) {
    wait_until(DEADLINE, "a transactional producer id", async || {
        let found = client.send(&find_request(id, 1), 3).await;
        if let Some(e) = ResponseError::try_from_code(found.error_code) {
            return Err(format!("FindCoordinator: {e:?}"));
        }
        let response = client.send(&init_request(id), 4).await;
        match ResponseError::try_from_code(response.error_code) {
            None => Ok((response.producer_id.0, response.producer_epoch)),
            Some(e) => Err(format!("InitProducerId: {e:?}")),
        }
    })
    .await
}

/// AddOffsetsToTxn, retried while the previous transaction's markers are out
/// (CONCURRENT_TRANSACTIONS); the final error code.
async fn add_offsets(client: &mut RawClient, id: &str, producer: (i64, i16)) -> i16 {
    let request = add_offsets_request(id, producer, GROUP);
    let concurrent = ResponseError::ConcurrentTransactions.code();
    wait_until(DEADLINE, "AddOffsetsToTxn answered", async || {
        let code = client.send(&request, 0).await.error_code;
        if code == concurrent {
            Err("CONCURRENT_TRANSACTIONS".to_string())
        } else {
            Ok(code)
        }
    })
    .await
}

/// EndTxn, retried while the previous end's markers are out (CONCURRENT_TRANSACTIONS) or the
/// coordinator loads.
async fn end(client: &mut RawClient, id: &str, producer: (i64, i16), commit: bool) {
    wait_until(DEADLINE, "EndTxn answered", async || {
        let code = client
            .send(&end_request(id, producer, commit), 3)
            .await
            .error_code;
        match ResponseError::try_from_code(code) {
            None => Ok(()),
            Some(e) => Err(format!("{e:?}")),
        }
    })
    .await;
}

async fn txn_commit(
    client: &mut RawClient,
    version: i16,
    id: &str,
    producer: (i64, i16),
    offset: i64,
) -> i16 {
    let request = txn_commit_request(id, producer, GROUP, ("", -1), offset);
    txn_commit_code(&client.send(&request, version).await)
}

async fn fetch(client: &mut RawClient, version: i16, require_stable: bool) -> (i64, i16, i16) {
    let response = client
        .send(&fetch_request(GROUP, version, require_stable), version)
        .await;
    fetched(&response, version)
}

/// Waits until OffsetFetch (v8, `require_stable`) answers exactly `expected`.
async fn wait_fetch(client: &mut RawClient, expected: (i64, i16), what: &str) {
    wait_until(DEADLINE, what, async || {
        let (offset, code, group) = fetch(client, 8, true).await;
        if group != 0 {
            return Err(format!("group error {group}"));
        }
        if (offset, code) == expected {
            Ok(())
        } else {
            Err(format!("offset {offset}, error {code}"))
        }
    })
    .await;
}

#[tokio::test]
async fn txn_offsets_are_pending_until_commit_gone_on_abort_and_replayed_after_a_restart() {
    let mut node = TestNode::start_with(serve_transactions).await;
    let mut client = node.connect().await;
    wire::create_topic(&mut client, TOPIC, 1).await;
    wire::find_coordinator(&mut client, GROUP).await;
    let id = "txo-1";
    let producer = init(&mut client, id).await;

    // Not added to the transaction (KIP-890 part 1): refused with what each version knows.
    assert_eq!(
        txn_commit(&mut client, 4, id, producer, 1).await,
        ResponseError::TransactionAbortable.code()
    );
    assert_eq!(
        txn_commit(&mut client, 3, id, producer, 1).await,
        ResponseError::InvalidTxnState.code()
    );

    // Transaction 1, aborted: pending (UNSTABLE_OFFSET_COMMIT with require_stable, invisible
    // otherwise at every version), then gone.
    assert_eq!(add_offsets(&mut client, id, producer).await, 0);
    assert_eq!(txn_commit(&mut client, 3, id, producer, 5).await, 0);
    assert_eq!(fetch(&mut client, 8, true).await, (-1, UNSTABLE, 0));
    assert_eq!(fetch(&mut client, 7, true).await, (-1, UNSTABLE, 0));
    for version in [1, 5, 7, 8] {
        assert_eq!(
            fetch(&mut client, version, false).await,
            (-1, 0, 0),
            "v{version}"
        );
    }
    end(&mut client, id, producer, false).await;
    wait_fetch(&mut client, (-1, 0), "the aborted offsets dropped").await;

    // Transaction 2, committed: visible once its marker is written.
    assert_eq!(add_offsets(&mut client, id, producer).await, 0);
    assert_eq!(txn_commit(&mut client, 0, id, producer, 10).await, 0);
    assert_eq!(fetch(&mut client, 8, true).await, (-1, UNSTABLE, 0));
    end(&mut client, id, producer, true).await;
    wait_fetch(&mut client, (10, 0), "the committed offsets").await;

    // Transaction 3 left open across a restart: replay rebuilds committed and pending.
    assert_eq!(add_offsets(&mut client, id, producer).await, 0);
    assert_eq!(txn_commit(&mut client, 4, id, producer, 15).await, 0);
    assert_eq!(fetch(&mut client, 8, true).await, (-1, UNSTABLE, 0));
    drop(client);
    node.restart().await;
    let mut client = node.connect().await;
    wire::find_coordinator(&mut client, GROUP).await;
    wait_fetch(&mut client, (-1, UNSTABLE), "the pending offsets replayed").await;
    assert_eq!(fetch(&mut client, 8, false).await, (10, 0, 0));
    wait_until(DEADLINE, "the transaction coordinator back", async || {
        let found = client.send(&find_request(id, 1), 3).await;
        ResponseError::try_from_code(found.error_code).map_or(Ok(()), Err)
    })
    .await;
    end(&mut client, id, producer, true).await;
    wait_fetch(&mut client, (15, 0), "the replayed offsets committed").await;

    // A newer producer fences the old one's commits.
    let newer = init(&mut client, id).await;
    assert_eq!(newer.0, producer.0);
    assert!(newer.1 > producer.1);
    assert_eq!(
        txn_commit(&mut client, 3, id, producer, 20).await,
        ResponseError::InvalidProducerEpoch.code()
    );
    assert_eq!(add_offsets(&mut client, id, newer).await, 0);
    assert_eq!(txn_commit(&mut client, 4, id, newer, 20).await, 0);
    // And a restart with the commit decided but nothing more from the producer.
    end(&mut client, id, newer, true).await;
    wait_fetch(&mut client, (20, 0), "the newer producer's offsets").await;
    drop(client);
    node.restart().await;
    let mut client = node.connect().await;
    wire::find_coordinator(&mut client, GROUP).await;
    wait_fetch(&mut client, (20, 0), "the committed offsets replayed").await;
    wire::stop(node).await;
}

#[tokio::test]
async fn txn_offset_commits_are_fenced_by_member_and_generation() {
    let node = TestNode::start_with(serve_transactions).await;
    let mut client = node.connect().await;
    wire::create_topic(&mut client, TOPIC, 1).await;
    wire::find_coordinator(&mut client, GROUP).await;
    let id = "txo-fence";
    let producer = init(&mut client, id).await;
    assert_eq!(add_offsets(&mut client, id, producer).await, 0);
    // An unknown group with a generation (a zombie of a group long gone).
    let request = txn_commit_request(id, producer, GROUP, ("ghost", 4), 1);
    assert_eq!(
        txn_commit_code(&client.send(&request, 3).await),
        ResponseError::IllegalGeneration.code()
    );
    // A topic that does not exist, and metadata too large: per partition.
    let mut request = txn_commit_request(id, producer, GROUP, ("", -1), 1);
    request.topics[0].name = topic_name("no-such-topic");
    assert_eq!(
        txn_commit_code(&client.send(&request, 3).await),
        ResponseError::UnknownTopicOrPartition.code()
    );
    let mut request = txn_commit_request(id, producer, GROUP, ("", -1), 1);
    request.topics[0].partitions[0].committed_metadata = Some(str(&"m".repeat(5000)));
    assert_eq!(
        txn_commit_code(&client.send(&request, 3).await),
        ResponseError::OffsetMetadataTooLarge.code()
    );
    let mut request = txn_commit_request(id, producer, "", ("", -1), 1);
    request.group_id = GroupId(str(""));
    assert_eq!(
        txn_commit_code(&client.send(&request, 3).await),
        ResponseError::InvalidGroupId.code()
    );
    end(&mut client, id, producer, false).await;
    wire::stop(node).await;
}

mod failover {
    //! Three `rafka-node` processes, `__consumer_offsets` and `__transaction_state` at
    //! replication factor 3: the group coordinator is SIGKILLed with one transactional commit
    //! committed and the next one pending; the new coordinator has both (committed visible,
    //! UNSTABLE_OFFSET_COMMIT for the pending one), and the producer's commit then makes it
    //! visible there.

    use std::net::SocketAddr;
    use std::time::Duration;

    use kafka_protocol::ResponseError;

    use super::*;
    use crate::support::cluster::{ProcessCluster, kafka_call};
    use crate::support::wait_until_blocking;

    const STEP: Duration = Duration::from_secs(60);
    const CALL: Duration = Duration::from_secs(15);

    /// The node id coordinating `key` (`key_type` 0: a group, 1: a transactional id).
    fn coordinator(addr: SocketAddr, key: &str, key_type: i8) -> Result<i32, String> {
        let response =
            kafka_call(addr, &find_request(key, key_type), 3, CALL).map_err(|e| e.to_string())?;
        match ResponseError::try_from_code(response.error_code) {
            None => Ok(response.node_id.0),
            Some(e) => Err(format!("{e:?}")),
        }
    }

    fn code(code: i16) -> Result<(), String> {
        match ResponseError::try_from_code(code) {
            None => Ok(()),
            Some(e) => Err(format!("{e:?}")),
        }
    }

    fn index_of(cluster: &ProcessCluster, node: i32) -> usize {
        cluster
            .running()
            .into_iter()
            .find(|&i| cluster.identity(i).1 == i64::from(node))
            .expect("a running node")
    }

    /// (offset, partition error) of OffsetFetch v8 at `addr`, or the group's error.
    fn fetch(addr: SocketAddr, require_stable: bool) -> Result<(i64, i16), String> {
        let request = fetch_request(GROUP, 8, require_stable);
        let response = kafka_call(addr, &request, 8, CALL).map_err(|e| e.to_string())?;
        let (offset, partition, group) = fetched(&response, 8);
        code(group)?;
        Ok((offset, partition))
    }

    fn expect_fetch(addr: SocketAddr, expected: (i64, i16), what: &str) {
        wait_until_blocking(STEP, what, || {
            let found = fetch(addr, true)?;
            if found == expected {
                Ok(())
            } else {
                Err(format!("{found:?}"))
            }
        });
    }

    /// The address of whichever node coordinates `key` now (asked of a running node).
    fn find(cluster: &ProcessCluster, key: &str, key_type: i8, not: Option<i32>) -> SocketAddr {
        let ask = cluster.kafka(cluster.running()[0]);
        let node = wait_until_blocking(STEP, &format!("a coordinator for {key}"), || {
            let node = coordinator(ask, key, key_type)?;
            if Some(node) == not {
                Err("still the killed node".to_string())
            } else {
                Ok(node)
            }
        });
        cluster.kafka(index_of(cluster, node))
    }

    #[test]
    fn a_new_group_coordinator_has_the_committed_and_the_pending_txn_offsets() {
        let extra = [
            "--transaction-state-partitions",
            "1",
            "--offsets-topic-partitions",
            "1",
        ];
        let mut cluster = ProcessCluster::replicated(TOPIC, 1, &extra);
        let id = "txo-failover";
        let txn_at = find(&cluster, id, 1, None);
        let producer = wait_until_blocking(STEP, "a producer id", || {
            let response = kafka_call(txn_at, &init_request(id), 4, CALL).unwrap();
            code(response.error_code).map(|()| (response.producer_id.0, response.producer_epoch))
        });
        let group_at = find(&cluster, GROUP, 0, None);
        let group_node = coordinator(group_at, GROUP, 0).unwrap();
        let transaction = |txn_at: SocketAddr, group_at: SocketAddr, offset: i64| {
            wait_until_blocking(STEP, "AddOffsetsToTxn", || {
                let request = add_offsets_request(id, producer, GROUP);
                let response = kafka_call(txn_at, &request, 0, CALL).map_err(|e| e.to_string())?;
                code(response.error_code)
            });
            wait_until_blocking(STEP, "TxnOffsetCommit", || {
                let request = txn_commit_request(id, producer, GROUP, ("", -1), offset);
                let response =
                    kafka_call(group_at, &request, 3, CALL).map_err(|e| e.to_string())?;
                code(txn_commit_code(&response))
            });
        };
        let end = |txn_at: SocketAddr| {
            wait_until_blocking(STEP, "EndTxn", || {
                let request = end_request(id, producer, true);
                let response = kafka_call(txn_at, &request, 3, CALL).map_err(|e| e.to_string())?;
                code(response.error_code)
            });
        };
        transaction(txn_at, group_at, 5);
        end(txn_at);
        expect_fetch(group_at, (5, 0), "the first commit visible");
        transaction(txn_at, group_at, 9);
        expect_fetch(group_at, (-1, UNSTABLE), "the second commit pending");

        cluster.kill(index_of(&cluster, group_node));
        let group_at = find(&cluster, GROUP, 0, Some(group_node));
        expect_fetch(
            group_at,
            (-1, UNSTABLE),
            "the pending commit on the new coordinator",
        );
        assert_eq!(fetch(group_at, false), Ok((5, 0)));
        let txn_at = find(&cluster, id, 1, Some(group_node));
        end(txn_at);
        expect_fetch(group_at, (9, 0), "the pending commit committed");
    }
}

mod clients {
    //! confluent-kafka (librdkafka): a consumer reads, a transactional producer commits its
    //! position with `send_offsets_to_transaction`; the offsets are invisible and unstable
    //! until the commit, gone on abort.

    use std::io::{BufRead, BufReader, Write};
    use std::path::PathBuf;
    use std::process::{Child, ChildStdin, Command, Stdio};
    use std::sync::mpsc;
    use std::time::Duration;

    use serde_json::Value;

    use super::*;
    use crate::support::cluster::{create_topic, kafka_call};
    use crate::support::process::NodeProcess;
    use crate::support::run::confluent_kafka_available;
    use crate::support::wait_until_blocking;

    const STEP: Duration = Duration::from_secs(60);

    /// `txn_offsets.py`, driven step by step: it prints one JSON event per line and waits for
    /// a command on stdin between steps.
    struct Script {
        child: Child,
        stdin: ChildStdin,
        events: mpsc::Receiver<Value>,
    }

    impl Script {
        fn start(bootstrap: &str) -> Script {
            let script =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/txn_offsets.py");
            let mut child = Command::new("python3")
                .arg(script)
                .arg(bootstrap)
                .arg(TOPIC)
                .arg(GROUP)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("python3 runs");
            let stdin = child.stdin.take().unwrap();
            let stdout = child.stdout.take().unwrap();
            let (tx, events) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("txn_offsets.py: {line}");
                    if let Ok(value) = serde_json::from_str::<Value>(&line) {
                        let _ = tx.send(value);
                    }
                }
            });
            Script {
                child,
                stdin,
                events,
            }
        }

        /// The next event, which must be `kind`.
        fn expect(&self, kind: &str) -> Value {
            let event = self
                .events
                .recv_timeout(STEP)
                .unwrap_or_else(|e| panic!("waiting for {kind}: {e}"));
            assert_eq!(event["event"], kind, "{event}");
            event
        }

        fn tell(&mut self, command: &str) {
            writeln!(self.stdin, "{command}").unwrap();
            self.stdin.flush().unwrap();
        }
    }

    impl Drop for Script {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn fetch(node: &NodeProcess, require_stable: bool) -> (i64, i16) {
        let request = fetch_request(GROUP, 8, require_stable);
        let response = kafka_call(node.ready.kafka, &request, 8, Duration::from_secs(10)).unwrap();
        let (offset, code, group) = fetched(&response, 8);
        assert_eq!(group, 0);
        (offset, code)
    }

    fn expect_fetch(node: &NodeProcess, expected: (i64, i16), what: &str) {
        wait_until_blocking(STEP, what, || {
            let found = fetch(node, true);
            if found == expected {
                Ok(())
            } else {
                Err(format!("{found:?}"))
            }
        });
    }

    #[test]
    fn confluent_kafka_send_offsets_to_transaction_commits_them_with_the_transaction() {
        if !confluent_kafka_available() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let node = NodeProcess::start(
            dir.path(),
            &[
                "--transaction-state-partitions",
                "2",
                "--offsets-topic-partitions",
                "2",
            ],
        );
        for (name, partitions) in [(TOPIC, 1), ("txo-out", 1)] {
            let (code, message) =
                create_topic(node.ready.kafka, name, partitions, Duration::from_secs(10))
                    .expect("CreateTopics answered");
            assert_eq!(code, 0, "creating {name}: {message:?}");
        }
        let mut script = Script::start(&node.ready.kafka.to_string());
        let consumed = script.expect("consumed");
        assert_eq!(consumed["count"], 10);

        // Aborted: pending meanwhile, then gone.
        script.expect("sent");
        assert_eq!(fetch(&node, true), (-1, UNSTABLE));
        assert_eq!(fetch(&node, false), (-1, 0));
        script.tell("abort");
        script.expect("aborted");
        expect_fetch(&node, (-1, 0), "the aborted offsets gone");

        // Committed: visible once committed, and to the consumer's own committed().
        script.tell("again");
        script.expect("sent");
        assert_eq!(fetch(&node, true), (-1, UNSTABLE));
        script.tell("commit");
        script.expect("committed");
        expect_fetch(&node, (10, 0), "the committed offsets");
        let seen = script.expect("seen");
        assert_eq!(seen["offset"], 10);
        let done = script.expect("done");
        assert_eq!(done["errors"], Value::Array(vec![]));
    }
}
