//! Request handlers of the in-memory test broker.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{Fault, Partition, State, StoredBatch, batch_identity, name};
use crate::metadata::NodeId;

/// NOT_LEADER_OR_FOLLOWER.
const NOT_LEADER: i16 = 6;
/// LEADER_NOT_AVAILABLE.
const LEADER_NOT_AVAILABLE: i16 = 5;
/// COORDINATOR_NOT_AVAILABLE.
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
/// NOT_COORDINATOR.
const NOT_COORDINATOR: i16 = 16;

/// Whether `node` leads `topic`-`p` (unknown partitions are left to the handler).
fn leads(state: &State, node: NodeId, topic: &str, p: i32) -> bool {
    state
        .topics
        .get(topic)
        .and_then(|t| t.partitions.get(p as usize))
        .is_none_or(|part| part.leader == Some(node))
}

fn topic_by_id(state: &State, id: uuid::Uuid) -> Option<String> {
    state
        .topics
        .iter()
        .find(|(_, t)| t.id == id)
        .map(|(n, _)| n.clone())
}

pub(super) fn metadata(state: &State, req: MetadataRequest, _v: i16) -> MetadataResponse {
    use metadata_response::*;
    let names: Vec<String> = match &req.topics {
        None => state.topics.keys().cloned().collect(),
        Some(ts) => ts
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
            .collect(),
    };
    let topics = names
        .iter()
        .map(|n| match state.topics.get(n) {
            None => MetadataResponseTopic::default()
                .with_name(Some(name(n)))
                .with_error_code(3),
            Some(t) => MetadataResponseTopic::default()
                .with_name(Some(name(n)))
                .with_topic_id(if state.hide_topic_ids {
                    uuid::Uuid::nil()
                } else {
                    t.id
                })
                .with_partitions(
                    t.partitions
                        .iter()
                        .enumerate()
                        .map(|(p, part)| {
                            let leader = part.leader.unwrap_or(-1);
                            let mut r = MetadataResponsePartition::default()
                                .with_partition_index(p as i32)
                                .with_leader_id(BrokerId(leader))
                                .with_replica_nodes(vec![BrokerId(leader)])
                                .with_isr_nodes(vec![BrokerId(leader)]);
                            // As Rafka does: a leader that is not alive is no leader.
                            if !part.leader.is_some_and(|l| state.is_live(l)) {
                                r.leader_id = BrokerId(-1);
                                r.error_code = LEADER_NOT_AVAILABLE;
                            }
                            r
                        })
                        .collect(),
                ),
        })
        .collect();
    let live = state.live_nodes();
    let brokers = live
        .iter()
        .map(|&id| {
            let (host, port) = state.address(id);
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(StrBytes::from_string(host))
                .with_port(port)
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_controller_id(BrokerId(live.first().copied().unwrap_or(-1)))
        .with_topics(topics)
}

/// Appends one batch with the broker's idempotence rules; returns the base offset or an error
/// code.
pub(super) fn append(state: &mut State, topic: &str, p: i32, batch: Bytes) -> Result<i64, i16> {
    let part = state
        .topics
        .get_mut(topic)
        .and_then(|t| t.partitions.get_mut(p as usize))
        .ok_or(3i16)?;
    let (pid, epoch, seq, count) = batch_identity(&batch).ok_or(2i16)?;
    if pid >= 0
        && let Some(offset) = check_sequence(part, pid, epoch, seq, count)?
    {
        return Ok(offset);
    }
    let base = part.next_offset;
    let mut bytes = BytesMut::from(&batch[..]);
    rafka_format::batch::set_base_offset(&mut bytes, base);
    part.batches.push(StoredBatch {
        base_offset: base,
        count,
        producer: (pid, epoch, seq),
        bytes: bytes.freeze(),
    });
    part.next_offset += i64::from(count);
    if pid >= 0 {
        let entry = part
            .producers
            .entry(pid)
            .or_insert((epoch, Default::default()));
        if entry.0 != epoch {
            *entry = (epoch, Default::default());
        }
        entry.1.push_back((seq, seq + count - 1, base));
        if entry.1.len() > 5 {
            entry.1.pop_front();
        }
    }
    Ok(base)
}

/// `Ok(Some(offset))` for a duplicate, `Ok(None)` to append, `Err(code)` to refuse.
fn check_sequence(
    part: &Partition,
    pid: i64,
    epoch: i16,
    seq: i32,
    count: i32,
) -> Result<Option<i64>, i16> {
    let Some((current, recent)) = part.producers.get(&pid) else {
        return Ok(None);
    };
    if epoch < *current {
        return Err(47);
    }
    if epoch > *current {
        return if seq == 0 { Ok(None) } else { Err(45) };
    }
    if let Some(&(_, _, base)) = recent
        .iter()
        .find(|(f, l, _)| *f == seq && *l == seq + count - 1)
    {
        return Ok(Some(base));
    }
    match recent.back() {
        Some(&(_, last, _)) if seq == last.wrapping_add(1) => Ok(None),
        None => Ok(None),
        Some(_) => Err(45),
    }
}

fn take_fault(state: &mut State, api: ApiKey, topic: &str, p: i32) -> Option<Fault> {
    let i = state
        .faults
        .iter()
        .position(|f| f.api == api && f.topic == topic && f.partition == p && f.times > 0)?;
    let fault = state.faults.get_mut(i)?;
    fault.times -= 1;
    Some(fault.clone())
}

pub(super) fn produce(
    state: &mut State,
    node: NodeId,
    req: ProduceRequest,
    v: i16,
) -> ProduceResponse {
    use produce_response::*;
    let mut responses = Vec::new();
    for t in req.topic_data {
        let topic = if v >= 13 {
            topic_by_id(state, t.topic_id).unwrap_or_default()
        } else {
            t.name.to_string()
        };
        let mut parts = Vec::new();
        for pd in t.partition_data {
            let batch = pd.records.unwrap_or_default();
            if let Some((pid, epoch, seq, count)) = batch_identity(&batch) {
                state
                    .produce_log
                    .push((topic.clone(), pd.index, (pid, epoch, seq), count));
            }
            if !leads(state, node, &topic, pd.index) {
                parts.push(
                    PartitionProduceResponse::default()
                        .with_index(pd.index)
                        .with_base_offset(-1)
                        .with_error_code(NOT_LEADER),
                );
                continue;
            }
            let fault = take_fault(state, ApiKey::Produce, &topic, pd.index);
            let result = match &fault {
                Some(f) if !f.append => Err(f.code),
                _ => append(state, &topic, pd.index, batch),
            };
            let result = match (result, fault) {
                (Ok(_), Some(f)) => Err(f.code),
                (r, _) => r,
            };
            let mut r = PartitionProduceResponse::default()
                .with_index(pd.index)
                .with_log_start_offset(0);
            match result {
                Ok(base) => r.base_offset = base,
                Err(code) => r.error_code = code,
            }
            parts.push(r);
        }
        let mut tr = TopicProduceResponse::default().with_partition_responses(parts);
        if v >= 13 {
            tr.topic_id = t.topic_id;
        } else {
            tr.name = t.name;
        }
        responses.push(tr);
    }
    ProduceResponse::default().with_responses(responses)
}

pub(super) fn fetch(state: &mut State, node: NodeId, req: FetchRequest, v: i16) -> FetchResponse {
    use fetch_response::*;
    let mut responses = Vec::new();
    for t in req.topics {
        let topic = if v >= 13 {
            topic_by_id(state, t.topic_id).unwrap_or_default()
        } else {
            t.topic.to_string()
        };
        let mut parts = Vec::new();
        for fp in t.partitions {
            let mut pd = PartitionData::default().with_partition_index(fp.partition);
            if !leads(state, node, &topic, fp.partition) {
                pd.error_code = NOT_LEADER;
                parts.push(pd);
                continue;
            }
            if let Some(fault) = take_fault(state, ApiKey::Fetch, &topic, fp.partition) {
                pd.error_code = fault.code;
                parts.push(pd);
                continue;
            }
            match state
                .topics
                .get(&topic)
                .and_then(|x| x.partitions.get(fp.partition as usize))
            {
                None => pd.error_code = 3,
                Some(part) if fp.fetch_offset > part.next_offset || fp.fetch_offset < 0 => {
                    pd.error_code = 1;
                }
                Some(part) => {
                    let mut data = BytesMut::new();
                    for b in part
                        .batches
                        .iter()
                        .filter(|b| b.base_offset + i64::from(b.count) > fp.fetch_offset)
                    {
                        if !data.is_empty()
                            && data.len() + b.bytes.len() > fp.partition_max_bytes as usize
                        {
                            break;
                        }
                        data.extend_from_slice(&b.bytes);
                    }
                    pd.high_watermark = part.next_offset;
                    pd.last_stable_offset = part.next_offset;
                    pd.log_start_offset = 0;
                    pd.records = Some(data.freeze());
                }
            }
            parts.push(pd);
        }
        let mut tr = FetchableTopicResponse::default().with_partitions(parts);
        if v >= 13 {
            tr.topic_id = t.topic_id;
        } else {
            tr.topic = t.topic;
        }
        responses.push(tr);
    }
    FetchResponse::default().with_responses(responses)
}

pub(super) fn list_offsets(
    state: &State,
    node: NodeId,
    req: ListOffsetsRequest,
) -> ListOffsetsResponse {
    use list_offsets_response::*;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    let mut r = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    if !leads(state, node, t.name.as_str(), p.partition_index) {
                        r.error_code = NOT_LEADER;
                        return r;
                    }
                    match state
                        .topics
                        .get(t.name.as_str())
                        .and_then(|x| x.partitions.get(p.partition_index as usize))
                    {
                        None => r.error_code = 3,
                        Some(part) => {
                            r.offset = match p.timestamp {
                                -2 => 0,
                                -1 => part.next_offset,
                                ts => first_batch_at(part, ts),
                            };
                            r.timestamp = -1;
                        }
                    }
                    r
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(parts)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// Base offset of the first batch whose max timestamp is at or after `ts` (-1: none).
fn first_batch_at(part: &Partition, ts: i64) -> i64 {
    let max_ts = |b: &StoredBatch| {
        rafka_format::batch::BatchHeader::parse(&b.bytes).map_or(i64::MIN, |h| h.max_timestamp)
    };
    part.batches
        .iter()
        .find(|b| max_ts(b) >= ts)
        .map_or(-1, |b| b.base_offset)
}

pub(super) fn find_coordinator(
    state: &State,
    req: FindCoordinatorRequest,
    v: i16,
) -> FindCoordinatorResponse {
    use find_coordinator_response::Coordinator;
    let node = state.coordinator();
    let (host, port) = state.address(node);
    let host = StrBytes::from_string(host);
    let code = if state.is_live(node) {
        0
    } else {
        COORDINATOR_NOT_AVAILABLE
    };
    if v >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|k| {
                Coordinator::default()
                    .with_key(k)
                    .with_node_id(BrokerId(node))
                    .with_host(host.clone())
                    .with_port(port)
                    .with_error_code(code)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    FindCoordinatorResponse::default()
        .with_node_id(BrokerId(node))
        .with_host(host)
        .with_port(port)
        .with_error_code(code)
}

pub(super) fn offset_commit(
    state: &mut State,
    node: NodeId,
    req: OffsetCommitRequest,
) -> OffsetCommitResponse {
    use offset_commit_response::*;
    let group = req.group_id.to_string();
    let refuse = node != state.coordinator();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    let r = OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index);
                    if refuse {
                        return r.with_error_code(NOT_COORDINATOR);
                    }
                    let key = (group.clone(), t.name.to_string(), p.partition_index);
                    state.offsets.insert(key, p.committed_offset);
                    r
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(parts)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

pub(super) fn offset_fetch(
    state: &State,
    node: NodeId,
    req: OffsetFetchRequest,
    v: i16,
) -> OffsetFetchResponse {
    use offset_fetch_response::*;
    let code = if node == state.coordinator() {
        0
    } else {
        NOT_COORDINATOR
    };
    let lookup = |g: &str, t: &str, p: i32| {
        state
            .offsets
            .get(&(g.to_owned(), t.to_owned(), p))
            .copied()
            .unwrap_or(-1)
    };
    if v >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                let topics = g.topics.unwrap_or_default().into_iter().map(|t| {
                    let parts = t.partition_indexes.iter().map(|&p| {
                        OffsetFetchResponsePartitions::default()
                            .with_partition_index(p)
                            .with_committed_offset(lookup(&g.group_id, &t.name, p))
                    });
                    OffsetFetchResponseTopics::default()
                        .with_name(t.name.clone())
                        .with_partitions(parts.collect())
                });
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_topics(topics.collect())
                    .with_error_code(code)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = req.topics.unwrap_or_default().into_iter().map(|t| {
        let parts = t.partition_indexes.iter().map(|&p| {
            OffsetFetchResponsePartition::default()
                .with_partition_index(p)
                .with_committed_offset(lookup(&req.group_id, &t.name, p))
        });
        OffsetFetchResponseTopic::default()
            .with_name(t.name.clone())
            .with_partitions(parts.collect())
    });
    let mut response = OffsetFetchResponse::default().with_topics(topics.collect());
    if v >= 2 {
        response.error_code = code;
    }
    response
}

pub(super) fn create_topics(state: &mut State, req: CreateTopicsRequest) -> CreateTopicsResponse {
    use create_topics_response::CreatableTopicResult;
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let mut r = CreatableTopicResult::default().with_name(t.name.clone());
            if state.topics.contains_key(t.name.as_str()) {
                r.error_code = 36;
            } else {
                let configs = t
                    .configs
                    .iter()
                    .map(|c| {
                        (
                            c.name.to_string(),
                            c.value.as_deref().unwrap_or("").to_owned(),
                        )
                    })
                    .collect();
                let topic = state.new_topic(t.num_partitions.max(1), configs);
                state.topics.insert(t.name.to_string(), topic);
            }
            r
        })
        .collect();
    CreateTopicsResponse::default().with_topics(results)
}

pub(super) fn delete_topics(
    state: &mut State,
    req: DeleteTopicsRequest,
    v: i16,
) -> DeleteTopicsResponse {
    use delete_topics_response::DeletableTopicResult;
    let names: Vec<String> = if v >= 6 {
        req.topics
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
            .collect()
    } else {
        req.topic_names.iter().map(|n| n.to_string()).collect()
    };
    let results = names
        .into_iter()
        .map(|n| {
            let code = if state.topics.remove(&n).is_some() {
                0
            } else {
                3
            };
            DeletableTopicResult::default()
                .with_name(Some(name(&n)))
                .with_error_code(code)
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(results)
}

pub(super) fn describe_configs(
    state: &State,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    use describe_configs_response::*;
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let mut out = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            match state.topics.get(r.resource_name.as_str()) {
                None => out.error_code = 3,
                Some(t) => {
                    out.configs = t
                        .configs
                        .iter()
                        .map(|(k, v)| {
                            DescribeConfigsResourceResult::default()
                                .with_name(StrBytes::from_string(k.clone()))
                                .with_value(Some(StrBytes::from_string(v.clone())))
                        })
                        .collect();
                }
            }
            out
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
