//! An in-memory Kafka broker for tests (feature `testing`): it answers the APIs this client
//! uses, keeps partition logs and idempotent producer state like a real broker, and can be told
//! to fail requests or drop answers. `tests/conformance.rs` runs the same client calls against
//! it and against the real broker and requires the same answers.
//!
//! It can also play a cluster of several nodes sharing one state ([`FakeBroker::cluster`]):
//! each node answers only for the partitions it leads (NOT_LEADER_OR_FOLLOWER otherwise) and
//! group requests only as the coordinator (NOT_COORDINATOR); nodes can be stopped, restarted
//! under a new peer id, or added; and [`FakeBroker::members`] answers member lists the way a
//! mesh node's `cluster_info` does, so mesh routing is testable without processes.
//!
//! ```
//! use rafka_client::testing::FakeBroker;
//! let broker = FakeBroker::new();
//! broker.create_topic("t", 3);
//! assert_eq!(broker.log_end("t", 0), 0);
//!
//! let cluster = FakeBroker::cluster(3);
//! cluster.create_topic("t", 3);
//! assert_eq!(cluster.leader("t", 2), Some(3));
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::future::BoxFuture;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use uuid::Uuid;

use crate::cluster::{Dialer, lock};
use crate::connection::{CLIENT_VERSIONS, Endpoint, FrameTransport};
use crate::error::{Error, Result};
use crate::members::{
    ClusterMember, ClusterView, DATA_ADDRS_KEY, KAFKA_KEY, LED_KEY, MemberSource, MemberState,
    NODE_ID_KEY, ROLE_KEY,
};
use crate::metadata::NodeId;

#[path = "testing_handlers.rs"]
mod handlers;

/// One stored batch.
#[derive(Debug, Clone)]
pub struct StoredBatch {
    /// Base offset assigned by the broker.
    pub base_offset: i64,
    /// Record count.
    pub count: i32,
    /// Producer id, epoch and base sequence from the batch header.
    pub producer: (i64, i16, i32),
    /// The batch bytes (base offset rewritten).
    pub bytes: Bytes,
}

/// Recent batches of one producer: (first sequence, last sequence, base offset).
type RecentBatches = VecDeque<(i32, i32, i64)>;
/// One produce attempt: (topic, partition, (producer id, epoch, base sequence), records).
pub type ProduceAttempt = (String, i32, (i64, i16, i32), i32);

#[derive(Debug, Default)]
struct Partition {
    /// The node leading it (`None`: no leader).
    leader: Option<NodeId>,
    batches: Vec<StoredBatch>,
    next_offset: i64,
    /// Per producer id: epoch and the last batches (first seq, last seq, base offset).
    producers: HashMap<i64, (i16, RecentBatches)>,
}

#[derive(Debug)]
struct Topic {
    id: Uuid,
    partitions: Vec<Partition>,
    configs: BTreeMap<String, String>,
}

/// A fault: answer `code` for the next `times` attempts of `api` on `partition`.
#[derive(Debug, Clone)]
struct Fault {
    api: ApiKey,
    topic: String,
    partition: i32,
    code: i16,
    times: usize,
    /// Append the batch anyway before answering (a lost response).
    append: bool,
}

/// One node of a fake cluster.
#[derive(Debug, Clone)]
struct FakeNode {
    live: bool,
    peer: String,
    /// Whether member lists carry its node id yet (gossip can lag behind the metadata log).
    gossiped: bool,
}

#[derive(Debug, Default)]
struct State {
    /// The nodes; empty means the one node 1.
    nodes: BTreeMap<NodeId, FakeNode>,
    coordinator: Option<NodeId>,
    /// Requests each node handled: (node, api key).
    node_requests: Vec<(NodeId, i16)>,
    member_requests: usize,
    topics: BTreeMap<String, Topic>,
    faults: Vec<Fault>,
    disconnects: usize,
    hide_topic_ids: bool,
    next_producer_id: i64,
    offsets: HashMap<(String, String, i32), i64>,
    requests: Vec<(i16, i16)>,
    produce_log: Vec<ProduceAttempt>,
    version_caps: HashMap<i16, i16>,
    advertised: Option<(String, i32)>,
    /// Transactions: partitions added to the open transaction, the ends (producer id, epoch,
    /// committed), and answers to give the next transaction requests ((api, code), in order).
    txn_added: Vec<(String, i32)>,
    txn_ends: Vec<(i64, i16, bool)>,
    txn_faults: VecDeque<(ApiKey, i16)>,
    /// Groups added with AddOffsetsToTxn, and TxnOffsetCommits received (committed to
    /// `offsets` by the EndTxn that commits, dropped by one that aborts).
    txn_groups: Vec<String>,
    txn_offset_commits: Vec<TxnOffsetCommitRequest>,
    txn_offset_commits_seen: Vec<TxnOffsetCommitRequest>,
}

/// The in-memory broker (node 1 at `fake:9092`; node N of a cluster at `fake:909(1+N)`, peer
/// id `fake-peer-N`). Cheap to clone.
#[derive(Debug, Clone)]
pub struct FakeBroker {
    state: Arc<Mutex<State>>,
    /// The node this handle answers as.
    node: NodeId,
}

impl Default for FakeBroker {
    fn default() -> Self {
        FakeBroker {
            state: Arc::default(),
            node: 1,
        }
    }
}

impl State {
    fn node_ids(&self) -> Vec<NodeId> {
        if self.nodes.is_empty() {
            vec![1]
        } else {
            self.nodes.keys().copied().collect()
        }
    }

    fn is_live(&self, node: NodeId) -> bool {
        match self.nodes.get(&node) {
            Some(n) => n.live,
            None => self.nodes.is_empty() && node == 1,
        }
    }

    fn live_nodes(&self) -> Vec<NodeId> {
        let ids = self.node_ids();
        ids.into_iter().filter(|n| self.is_live(*n)).collect()
    }

    fn address(&self, node: NodeId) -> (String, i32) {
        match (&self.advertised, node) {
            (Some(a), 1) => a.clone(),
            _ => ("fake".into(), 9091 + node),
        }
    }

    fn coordinator(&self) -> NodeId {
        self.coordinator
            .unwrap_or_else(|| self.node_ids().first().copied().unwrap_or(1))
    }

    /// A new topic whose partition `p` is led by the `p`-th node (round robin).
    fn new_topic(&self, partitions: i32, configs: BTreeMap<String, String>) -> Topic {
        let ids = self.node_ids();
        Topic {
            id: Uuid::new_v4(),
            partitions: (0..partitions.max(0) as usize)
                .map(|p| Partition {
                    leader: ids.get(p % ids.len().max(1)).copied(),
                    ..Partition::default()
                })
                .collect(),
            configs,
        }
    }
}

impl FakeBroker {
    /// An empty broker: one node, id 1.
    pub fn new() -> FakeBroker {
        FakeBroker::default()
    }

    /// An empty cluster of nodes `1..=n` sharing one state; this handle answers as node 1.
    pub fn cluster(n: i32) -> FakeBroker {
        let broker = FakeBroker::new();
        for id in 1..=n.max(1) {
            broker.add_node(id);
        }
        broker
    }

    /// The same cluster answering as node `id`.
    pub fn node(&self, id: NodeId) -> FakeBroker {
        FakeBroker {
            state: self.state.clone(),
            node: id,
        }
    }

    /// The node this handle answers as.
    pub fn node_id(&self) -> NodeId {
        self.node
    }

    /// Adds node `id` (live, peer id `fake-peer-<id>`, gossiping its id). Topics created
    /// afterwards spread their leaders over it too.
    pub fn add_node(&self, id: NodeId) {
        let mut state = lock(&self.state);
        if state.nodes.is_empty() && id != 1 {
            state.nodes.insert(1, FakeNode::new(1));
        }
        state.nodes.insert(id, FakeNode::new(id));
    }

    /// Stops (`false`) or restarts (`true`) node `id`: a stopped node is left out of Metadata,
    /// its partitions report LEADER_NOT_AVAILABLE, member lists say it `left`, and requests to
    /// it fail as a broken connection.
    pub fn set_live(&self, id: NodeId, live: bool) {
        if let Some(n) = lock(&self.state).nodes.get_mut(&id) {
            n.live = live;
        }
    }

    /// Gives node `id` a new peer id (a node restarted with a new identity).
    pub fn set_peer(&self, id: NodeId, peer: &str) {
        if let Some(n) = lock(&self.state).nodes.get_mut(&id) {
            n.peer = peer.to_owned();
        }
    }

    /// Whether member lists carry node `id`'s node id (gossip can lag behind Metadata).
    pub fn set_gossiped(&self, id: NodeId, gossiped: bool) {
        if let Some(n) = lock(&self.state).nodes.get_mut(&id) {
            n.gossiped = gossiped;
        }
    }

    /// The peer id of node `id`.
    pub fn peer(&self, id: NodeId) -> String {
        lock(&self.state)
            .nodes
            .get(&id)
            .map_or_else(|| FakeNode::new(id).peer, |n| n.peer.clone())
    }

    /// Moves the leadership of `topic`-`partition` (`None`: no leader).
    pub fn set_leader(&self, topic: &str, partition: i32, leader: Option<NodeId>) {
        let mut state = lock(&self.state);
        if let Some(p) = state
            .topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(partition as usize))
        {
            p.leader = leader;
        }
    }

    /// The leader of `topic`-`partition`.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<NodeId> {
        let state = lock(&self.state);
        let p = state
            .topics
            .get(topic)
            .and_then(|t| t.partitions.get(partition as usize));
        p.and_then(|p| p.leader)
    }

    /// Makes node `id` the coordinator of every group (default: the lowest node id).
    pub fn set_coordinator(&self, id: NodeId) {
        lock(&self.state).coordinator = Some(id);
    }

    /// How many requests of `api` node `node` handled.
    pub fn requests_on(&self, node: NodeId, api: ApiKey) -> usize {
        let state = lock(&self.state);
        let key = api as i16;
        state
            .node_requests
            .iter()
            .filter(|(n, k)| *n == node && *k == key)
            .count()
    }

    /// Answers the next transaction request of `api` (InitProducerId, AddPartitionsToTxn,
    /// EndTxn) with `code` (queued: one answer per call).
    pub fn fail_txn(&self, api: ApiKey, code: i16) {
        lock(&self.state).txn_faults.push_back((api, code));
    }

    /// The partitions added to the open transaction (AddPartitionsToTxn), in order.
    pub fn txn_added(&self) -> Vec<(String, i32)> {
        lock(&self.state).txn_added.clone()
    }

    /// The TxnOffsetCommit requests received, in order.
    pub fn txn_offset_commits(&self) -> Vec<TxnOffsetCommitRequest> {
        let state = lock(&self.state);
        let mut all = state.txn_offset_commits_seen.clone();
        all.extend(state.txn_offset_commits.iter().cloned());
        all
    }

    /// The group's committed offset of `topic`-`partition`.
    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        let key = (group.to_owned(), topic.to_owned(), partition);
        lock(&self.state).offsets.get(&key).copied()
    }

    /// The transactions ended (EndTxn): producer id, epoch, committed.
    pub fn txn_ends(&self) -> Vec<(i64, i16, bool)> {
        lock(&self.state).txn_ends.clone()
    }

    /// How many member lists [`FakeBroker::members`] answered.
    pub fn member_requests(&self) -> usize {
        lock(&self.state).member_requests
    }

    /// Answers member lists as a mesh node's `cluster_info` does: every node with its peer id,
    /// node id (unless not yet gossiped), Kafka address and state. A stopped node does not
    /// answer.
    pub fn members(&self) -> Arc<dyn MemberSource> {
        Arc::new(self.clone())
    }

    /// A [`Dialer`]: a Kafka endpoint reaches the node advertised there (this handle's node for
    /// any other address); a mesh endpoint reaches the node with that peer id.
    pub fn dialer(&self) -> Dialer {
        let broker = self.clone();
        Arc::new(move |endpoint: &Endpoint| {
            let state = lock(&broker.state);
            let node = match endpoint {
                Endpoint::Kafka(addr) => state
                    .node_ids()
                    .into_iter()
                    .find(|n| {
                        let (host, port) = state.address(*n);
                        *addr == format!("{host}:{port}")
                    })
                    .unwrap_or(broker.node),
                Endpoint::Mesh { peer, .. } => state
                    .nodes
                    .iter()
                    .find(|(_, n)| n.peer == *peer)
                    .map(|(id, _)| *id)
                    .ok_or_else(|| Error::Connect {
                        endpoint: endpoint.to_string(),
                        reason: "no such peer".into(),
                    })?,
            };
            Ok(Arc::new(broker.node(node)) as Arc<dyn FrameTransport>)
        })
    }

    /// Creates a topic (partition `p` led by the `p`-th node).
    pub fn create_topic(&self, name: &str, partitions: i32) {
        let mut state = lock(&self.state);
        let topic = state.new_topic(partitions, BTreeMap::new());
        state.topics.insert(name.to_owned(), topic);
    }

    /// Fails the next `times` produce attempts on `topic`-`partition` with `code`; with
    /// `append`, the batch is written first (the answer is what gets lost).
    pub fn fail_produce(&self, topic: &str, partition: i32, code: i16, times: usize, append: bool) {
        lock(&self.state).faults.push(Fault {
            api: ApiKey::Produce,
            topic: topic.to_owned(),
            partition,
            code,
            times,
            append,
        });
    }

    /// Fails the next `times` fetches of `topic`-`partition` with `code`.
    pub fn fail_fetch(&self, topic: &str, partition: i32, code: i16, times: usize) {
        lock(&self.state).faults.push(Fault {
            api: ApiKey::Fetch,
            topic: topic.to_owned(),
            partition,
            code,
            times,
            append: false,
        });
    }

    /// Over TCP ([`FakeBroker::serve_tcp`]): the next `n` requests are handled, then the
    /// connection is dropped instead of answering (lost responses).
    pub fn drop_answers(&self, n: usize) {
        lock(&self.state).disconnects += n;
    }

    fn take_disconnect(&self) -> bool {
        let mut state = lock(&self.state);
        let hit = state.disconnects > 0;
        state.disconnects = state.disconnects.saturating_sub(1);
        hit
    }

    /// Answers Metadata without topic ids (as brokers before KIP-516 do).
    pub fn hide_topic_ids(&self) {
        lock(&self.state).hide_topic_ids = true;
    }

    /// Advertises at most `max` for `api` in ApiVersions.
    pub fn cap_version(&self, api: ApiKey, max: i16) {
        lock(&self.state).version_caps.insert(api as i16, max);
    }

    /// Log end offset of a partition (0 if unknown).
    pub fn log_end(&self, topic: &str, partition: i32) -> i64 {
        let state = lock(&self.state);
        let p = state
            .topics
            .get(topic)
            .and_then(|t| t.partitions.get(partition as usize));
        p.map_or(0, |p| p.next_offset)
    }

    /// Stored batches of a partition.
    pub fn batches(&self, topic: &str, partition: i32) -> Vec<StoredBatch> {
        let state = lock(&self.state);
        let p = state
            .topics
            .get(topic)
            .and_then(|t| t.partitions.get(partition as usize));
        p.map(|p| p.batches.clone()).unwrap_or_default()
    }

    /// Every produce attempt seen: (topic, partition, (producer id, epoch, base seq), records).
    pub fn produce_log(&self) -> Vec<ProduceAttempt> {
        lock(&self.state).produce_log.clone()
    }

    /// Every request seen: (api key, version).
    pub fn requests(&self) -> Vec<(i16, i16)> {
        lock(&self.state).requests.clone()
    }

    /// Serves this broker on a TCP listener (Kafka framing) at `addr` (e.g. `127.0.0.1:0`),
    /// advertising the bound address in Metadata. Returns the address; the server runs until
    /// the runtime stops.
    pub async fn serve_tcp(&self, addr: &str) -> std::io::Result<std::net::SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        lock(&self.state).advertised = Some((local.ip().to_string(), i32::from(local.port())));
        let broker = self.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve_connection(broker.clone(), socket));
            }
        });
        Ok(local)
    }

    /// Appends a raw batch as a producer would (for consumer tests).
    pub fn append_raw(&self, topic: &str, partition: i32, batch: Bytes) -> Result<i64> {
        let mut state = lock(&self.state);
        handlers::append(&mut state, topic, partition, batch)
            .map_err(|code| Error::broker("append", code, None).unwrap_or(Error::Closed))
    }

    fn handle(&self, mut frame: Bytes) -> Result<Bytes> {
        let header = kafka_protocol::protocol::decode_request_header_from_buffer(&mut frame)
            .map_err(|e| Error::protocol(format!("fake broker: {e}")))?;
        let key = ApiKey::try_from(header.request_api_key)
            .map_err(|_| Error::protocol("fake broker: unknown api key"))?;
        let v = header.request_api_version;
        let node = self.node;
        let mut state = lock(&self.state);
        if !state.is_live(node) {
            return Err(Error::Disconnected {
                endpoint: format!("fake node {node}"),
                reason: "the node is stopped".into(),
            });
        }
        state.requests.push((header.request_api_key, v));
        state.node_requests.push((node, header.request_api_key));
        let state = &mut *state;
        let body = match key {
            ApiKey::ApiVersions => encode(&api_versions(state), v),
            ApiKey::Metadata => encode(&handlers::metadata(state, decode(&mut frame, v)?, v), v),
            ApiKey::InitProducerId if state.txn_fault(key).is_some() => {
                let code = state.txn_fault(key).unwrap_or_default();
                state.txn_faults.pop_front();
                let r = InitProducerIdResponse::default()
                    .with_error_code(code)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1);
                encode(&r, v)
            }
            ApiKey::AddPartitionsToTxn => {
                let req: AddPartitionsToTxnRequest = decode(&mut frame, v)?;
                let code = state.txn_fault(key).unwrap_or_default();
                if code != 0 {
                    state.txn_faults.pop_front();
                }
                let topics = req
                    .v3_and_below_topics
                    .iter()
                    .map(|t| {
                        add_partitions_to_txn_response::AddPartitionsToTxnTopicResult::default()
                            .with_name(t.name.clone())
                            .with_results_by_partition(
                                t.partitions
                                    .iter()
                                    .map(|&p| {
                                        if code == 0 {
                                            state.txn_added.push((t.name.to_string(), p));
                                        }
                                        add_partitions_to_txn_response::AddPartitionsToTxnPartitionResult::default()
                                            .with_partition_index(p)
                                            .with_partition_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                encode(
                    &AddPartitionsToTxnResponse::default()
                        .with_results_by_topic_v3_and_below(topics),
                    v,
                )
            }
            ApiKey::EndTxn => {
                let req: EndTxnRequest = decode(&mut frame, v)?;
                let code = state.txn_fault(key).unwrap_or_default();
                if code != 0 {
                    state.txn_faults.pop_front();
                } else {
                    state
                        .txn_ends
                        .push((req.producer_id.0, req.producer_epoch, req.committed));
                    state.txn_added.clear();
                    state.txn_groups.clear();
                    let pending = std::mem::take(&mut state.txn_offset_commits);
                    if req.committed {
                        for commit in &pending {
                            for t in &commit.topics {
                                for p in &t.partitions {
                                    let key = (
                                        commit.group_id.to_string(),
                                        t.name.to_string(),
                                        p.partition_index,
                                    );
                                    state.offsets.insert(key, p.committed_offset);
                                }
                            }
                        }
                    }
                    // Kept for the test to look at (the offsets were applied or dropped).
                    state.txn_offset_commits_seen.extend(pending);
                }
                encode(&EndTxnResponse::default().with_error_code(code), v)
            }
            ApiKey::AddOffsetsToTxn => {
                let req: AddOffsetsToTxnRequest = decode(&mut frame, v)?;
                let code = state.txn_fault(key).unwrap_or_default();
                if code != 0 {
                    state.txn_faults.pop_front();
                } else {
                    state.txn_groups.push(req.group_id.to_string());
                }
                encode(&AddOffsetsToTxnResponse::default().with_error_code(code), v)
            }
            ApiKey::TxnOffsetCommit => {
                let req: TxnOffsetCommitRequest = decode(&mut frame, v)?;
                let code = state.txn_fault(key).unwrap_or_default();
                if code != 0 {
                    state.txn_faults.pop_front();
                }
                let group_added = state.txn_groups.contains(&req.group_id.to_string());
                let code = if code == 0 && !group_added { 48 } else { code };
                let topics = req
                    .topics
                    .iter()
                    .map(|t| {
                        txn_offset_commit_response::TxnOffsetCommitResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        txn_offset_commit_response::TxnOffsetCommitResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                if code == 0 {
                    state.txn_offset_commits.push(req);
                }
                encode(&TxnOffsetCommitResponse::default().with_topics(topics), v)
            }
            ApiKey::InitProducerId => {
                state.next_producer_id += 1;
                let r = InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(999 + state.next_producer_id))
                    .with_producer_epoch(0);
                encode(&r, v)
            }
            ApiKey::Produce => {
                let req: ProduceRequest = decode(&mut frame, v)?;
                if req.acks == 0 {
                    handlers::produce(state, node, req, v);
                    return Ok(Bytes::new());
                }
                encode(&handlers::produce(state, node, req, v), v)
            }
            ApiKey::Fetch => encode(&handlers::fetch(state, node, decode(&mut frame, v)?, v), v),
            ApiKey::ListOffsets => encode(
                &handlers::list_offsets(state, node, decode(&mut frame, v)?),
                v,
            ),
            ApiKey::FindCoordinator => encode(
                &handlers::find_coordinator(state, decode(&mut frame, v)?, v),
                v,
            ),
            ApiKey::OffsetCommit => encode(
                &handlers::offset_commit(state, node, decode(&mut frame, v)?),
                v,
            ),
            ApiKey::OffsetFetch => encode(
                &handlers::offset_fetch(state, node, decode(&mut frame, v)?, v),
                v,
            ),
            ApiKey::CreateTopics => {
                encode(&handlers::create_topics(state, decode(&mut frame, v)?), v)
            }
            ApiKey::DeleteTopics => encode(
                &handlers::delete_topics(state, decode(&mut frame, v)?, v),
                v,
            ),
            ApiKey::DescribeConfigs => encode(
                &handlers::describe_configs(state, decode(&mut frame, v)?),
                v,
            ),
            _ => {
                return Err(Error::protocol(format!(
                    "fake broker: {key:?} not implemented"
                )));
            }
        }?;
        let mut out = BytesMut::new();
        let header_version = response_header_version(key, v);
        ResponseHeader::default()
            .with_correlation_id(header.correlation_id)
            .encode(&mut out, header_version)
            .map_err(|e| Error::protocol(e.to_string()))?;
        out.extend_from_slice(&body);
        Ok(out.freeze())
    }
}

impl State {
    /// The code queued for the next request of `api`, if it is the next queued answer.
    fn txn_fault(&self, api: ApiKey) -> Option<i16> {
        self.txn_faults
            .front()
            .filter(|(a, _)| *a == api)
            .map(|&(_, code)| code)
    }
}

impl FakeNode {
    fn new(id: NodeId) -> FakeNode {
        FakeNode {
            live: true,
            peer: format!("fake-peer-{id}"),
            gossiped: true,
        }
    }
}

impl MemberSource for FakeBroker {
    fn cluster_info(&self, peer: &str) -> BoxFuture<'static, Result<ClusterView>> {
        let mut state = lock(&self.state);
        let asked = state.nodes.iter().find(|(_, n)| n.peer == peer);
        let result = match asked {
            Some((_, n)) if n.live => {
                state.member_requests += 1;
                let coordinator = state.coordinator();
                let members = state
                    .nodes
                    .iter()
                    .map(|(id, n)| member(&state, *id, n, *id == coordinator))
                    .collect();
                Ok(ClusterView {
                    responder: Some(peer.to_owned()),
                    members,
                })
            }
            _ => Err(Error::Disconnected {
                endpoint: format!("/p2p/{peer}"),
                reason: "no such live peer".into(),
            }),
        };
        futures::future::ready(result).boxed()
    }
}

fn member(state: &State, id: NodeId, node: &FakeNode, leader: bool) -> ClusterMember {
    let (host, port) = state.address(id);
    let led = state
        .topics
        .values()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.leader == Some(id))
        .count();
    let mut keys = BTreeMap::from([
        (KAFKA_KEY.to_owned(), format!("{host}:{port}")),
        (DATA_ADDRS_KEY.to_owned(), format!("/memory/{}", node.peer)),
        (
            ROLE_KEY.to_owned(),
            if leader { "leader" } else { "voter" }.to_owned(),
        ),
        (LED_KEY.to_owned(), led.to_string()),
    ]);
    if node.gossiped {
        keys.insert(NODE_ID_KEY.to_owned(), id.to_string());
    }
    ClusterMember {
        peer_id: node.peer.clone(),
        state: if node.live {
            MemberState::Alive
        } else {
            MemberState::Left
        },
        last_heard_ago: std::time::Duration::ZERO,
        generation: 1,
        keys,
    }
}

impl FrameTransport for FakeBroker {
    fn call(
        &self,
        frame: Bytes,
        expect_response: bool,
    ) -> BoxFuture<'static, Result<Option<Bytes>>> {
        let result = self.handle(frame).map(|r| expect_response.then_some(r));
        futures::future::ready(result).boxed()
    }
    fn is_closed(&self) -> bool {
        false
    }
    fn close(&self) {}
}

async fn serve_connection(broker: FakeBroker, socket: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = socket.set_nodelay(true);
    let (read, write) = socket.into_split();
    let mut read = tokio::io::BufReader::with_capacity(1 << 20, read);
    let mut write = tokio::io::BufWriter::with_capacity(1 << 16, write);
    loop {
        let Ok(len) = read.read_u32().await else {
            return;
        };
        let mut frame = vec![0u8; len as usize];
        if read.read_exact(&mut frame).await.is_err() {
            return;
        }
        let Ok(response) = broker.handle(Bytes::from(frame)) else {
            return;
        };
        if broker.take_disconnect() {
            return;
        }
        if response.is_empty() {
            continue;
        }
        let written = async {
            write.write_u32(response.len() as u32).await?;
            write.write_all(&response).await?;
            write.flush().await
        };
        if written.await.is_err() {
            return;
        }
    }
}

fn api_versions(state: &State) -> ApiVersionsResponse {
    let keys = CLIENT_VERSIONS
        .iter()
        .map(|&(key, min, max)| {
            let cap = state
                .version_caps
                .get(&(key as i16))
                .copied()
                .unwrap_or(max);
            api_versions_response::ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(cap.min(max))
        })
        .collect();
    ApiVersionsResponse::default().with_api_keys(keys)
}

fn response_header_version(key: ApiKey, v: i16) -> i16 {
    match key {
        ApiKey::ApiVersions => ApiVersionsResponse::header_version(v),
        ApiKey::Metadata => MetadataResponse::header_version(v),
        ApiKey::InitProducerId => InitProducerIdResponse::header_version(v),
        ApiKey::Produce => ProduceResponse::header_version(v),
        ApiKey::Fetch => FetchResponse::header_version(v),
        ApiKey::ListOffsets => ListOffsetsResponse::header_version(v),
        ApiKey::FindCoordinator => FindCoordinatorResponse::header_version(v),
        ApiKey::OffsetCommit => OffsetCommitResponse::header_version(v),
        ApiKey::OffsetFetch => OffsetFetchResponse::header_version(v),
        ApiKey::CreateTopics => CreateTopicsResponse::header_version(v),
        ApiKey::DeleteTopics => DeleteTopicsResponse::header_version(v),
        ApiKey::AddPartitionsToTxn => AddPartitionsToTxnResponse::header_version(v),
        ApiKey::EndTxn => EndTxnResponse::header_version(v),
        ApiKey::AddOffsetsToTxn => AddOffsetsToTxnResponse::header_version(v),
        ApiKey::TxnOffsetCommit => TxnOffsetCommitResponse::header_version(v),
        _ => DescribeConfigsResponse::header_version(v),
    }
}

fn decode<T: Decodable>(frame: &mut Bytes, v: i16) -> Result<T> {
    T::decode(frame, v).map_err(|e| Error::protocol(format!("fake broker decode: {e}")))
}

fn encode<T: Encodable>(message: &T, v: i16) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    message
        .encode(&mut buf, v)
        .map_err(|e| Error::protocol(format!("fake broker encode: {e}")))?;
    Ok(buf.freeze())
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

fn batch_identity(batch: &Bytes) -> Option<(i64, i16, i32, i32)> {
    let h = rafka_format::batch::check_batch(batch).ok()?;
    Some((
        h.producer_id,
        h.producer_epoch,
        h.base_sequence,
        h.record_count,
    ))
}
