//! A partition leader cut off from the majority while a client still reaches it, each node and
//! the client in its own network namespace (root only; skipped with a message otherwise).
//!
//! Three nodes (replication factor 3, min.insync.replicas 2) and `python/checker.py` on a fourth
//! host. Mid-run the leader of partition 0 and the client are moved to the far bridge together:
//! the client keeps writing to the old leader, which cannot reach its followers or the metadata
//! quorum, while the majority elects another leader. Then the network heals.
//!
//! - acks=all: the isolated leader appends what it is sent (the test sends it one more write of
//!   its own) but acknowledges none of it; after the heal it truncates that tail, and the checker finds nothing acknowledged lost,
//!   duplicated, out of order, or seen by a consumer and later gone.
//! - acks=1: the isolated leader acknowledges writes it alone has (Kafka's acks=1 contract allows
//!   losing them on failover); after the heal it truncates them. Only partitions it led lose
//!   records, and no consumer ever saw one of them (it never advanced its high watermark past
//!   what its followers had).

use crate::support::netns;
use crate::support::wait_until_blocking;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::batches;
use crate::support::checker::{Checker, Plan, assert_clean};
use crate::support::netns::{KAFKA_PORT, Net, all_in_sync, replicated_three};
use crate::support::run::confluent_kafka_available;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

const TOPIC: &str = "checked";
const PARTITIONS: i32 = 3;
const RATE: u64 = 1500;
const SECONDS: u64 = 30;
const MIN_ACKED: u64 = 1_000 * SECONDS;
const STEP: Duration = Duration::from_secs(30);
const REQUEST: Duration = Duration::from_secs(5);
/// The host the checker runs on (hosts 0-2 run the nodes).
const CLIENT: usize = 3;
/// Acknowledged records before the split.
const BEFORE_SPLIT: u64 = 6_000;
/// Records the isolated leader acknowledges with acks=1 after the majority elected another.
const ISOLATED_ACKS: u64 = 1_000;
const LOG_END: &str = "rafka_partition_log_end_offset";
const HIGH_WATERMARK: &str = "rafka_partition_high_watermark";

fn plan(net: &Net, acks: &'static str) -> Plan {
    let bootstrap = (0..3)
        .map(|i| format!("{}:{KAFKA_PORT}", net.node(i).ip))
        .collect::<Vec<_>>()
        .join(",");
    Plan {
        bootstrap,
        topic: TOPIC.into(),
        partitions: PARTITIONS,
        seconds: SECONDS,
        rate: RATE,
        acks,
    }
}

/// What the isolation left behind, for the checks after the heal.
struct Isolated {
    victim: usize,
    /// Partitions the victim led before the split.
    led: BTreeSet<i32>,
    new_leader: usize,
}

/// Splits the leader of partition 0 and the client from the other two nodes, waits until the
/// majority elected another leader for partition 0 and `while_isolated` holds, then heals.
fn isolate_leader_of_partition_zero(
    net: &Net,
    ids: &[i32],
    checker: &mut Checker,
    mut while_isolated: impl FnMut(&Net, usize, &mut Checker) -> Result<(), String>,
) -> Isolated {
    checker.wait_acked(BEFORE_SPLIT, STEP);
    let before = net.node(0).partitions(TOPIC, REQUEST).unwrap();
    let index_of = |id: i32| ids.iter().position(|&n| n == id);
    let victim = index_of(before[0].leader).expect("partition 0 has a leader");
    let led: BTreeSet<i32> = before
        .iter()
        .filter(|p| p.leader == ids[victim])
        .map(|p| p.partition)
        .collect();
    let survivor = (0..3).find(|&i| i != victim).unwrap();
    net.split(&[victim, CLIENT]);
    let split = Instant::now();
    let new_leader = wait_until_blocking(STEP, "the majority elects another leader", || {
        let p0 = net.node(survivor).partitions(TOPIC, REQUEST)?[0].clone();
        match index_of(p0.leader) {
            Some(leader) if leader != victim => Ok(leader),
            _ => Err(format!("partition 0: {p0:?}")),
        }
    });
    eprintln!(
        "node {victim} (led {led:?}) isolated with the client; node {new_leader} leads partition 0 after {:?}",
        split.elapsed()
    );
    wait_until_blocking(STEP, "the isolated leader's writes", || {
        while_isolated(net, victim, checker)
    });
    net.heal();
    eprintln!("healed {:?} after the split", split.elapsed());
    Isolated {
        victim,
        led,
        new_leader,
    }
}

/// After the heal: every replica back in sync everywhere, the old leader has truncated (its
/// log says so) and ends partition 0 where the new leader does.
fn check_truncated(net: &Net, isolated: &Isolated) {
    wait_until_blocking(STEP, "every replica back in sync", || {
        all_in_sync(net, TOPIC, PARTITIONS)
    });
    let old = net.node(isolated.victim);
    assert!(
        old.log_text().contains("truncated to the leader's log"),
        "the isolated leader never truncated"
    );
    let new = net.node(isolated.new_leader);
    wait_until_blocking(
        STEP,
        "the old leader's log ends where the new one's does",
        || {
            let theirs = new.partition_gauge(LOG_END, TOPIC, 0)?;
            let ours = old.partition_gauge(LOG_END, TOPIC, 0)?;
            if ours == theirs {
                Ok(())
            } else {
                Err(format!("old leader ends at {ours}, new leader at {theirs}"))
            }
        },
    );
}

/// The victim's log end and high watermark of partition 0, read inside its namespace.
fn unreplicated_tail(net: &Net, victim: usize) -> Result<i64, String> {
    let node = net.node(victim);
    Ok(
        node.partition_gauge(LOG_END, TOPIC, 0)?
            - node.partition_gauge(HIGH_WATERMARK, TOPIC, 0)?,
    )
}

/// An acks=all Produce of one record (value `-1`, which the checker never writes) to partition 0
/// on node `victim`, sent from the client's host with a 1 s timeout; the partition's error code.
fn produce_unreplicable(net: &Net, victim: usize) -> i16 {
    let records = batches::batch(&[b"-1"], None, 1_700_000_000_000);
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ]);
    let response = netns::kafka_call(
        &net.host(CLIENT).ns,
        net.node(victim).kafka(),
        &request,
        9,
        REQUEST + Duration::from_secs(5),
    )
    .expect("the isolated leader answers its client");
    let code = response.responses[0].partition_responses[0].error_code;
    eprintln!("acks=all write to the isolated leader: error {code}");
    code
}

fn skip(test: &str) -> bool {
    !netns::available(test) || !confluent_kafka_available()
}

#[test]
fn netns_isolated_leader_acknowledges_nothing_with_acks_all_and_truncates() {
    if skip("netns_isolated_leader_acknowledges_nothing_with_acks_all_and_truncates") {
        return;
    }
    let (net, ids) = replicated_three(TOPIC, PARTITIONS);
    let mut checker = Checker::start_in(&net.host(CLIENT).ns, &plan(&net, "all"));
    let mut frozen = None;
    let mut refused = None;
    let isolated = isolate_leader_of_partition_zero(&net, &ids, &mut checker, |net, victim, c| {
        // Acknowledgements already in the client's sockets at the split are read by now; from
        // here on nothing the client can reach may acknowledge anything.
        let acked = c.poll();
        let at = *frozen.get_or_insert(acked);
        assert_eq!(acked, at, "a write was acknowledged while isolated");
        // One more acks=all write from the client's side: appended, never acknowledged (the
        // checker's own requests may all have been replicated before the split).
        let code = *refused.get_or_insert_with(|| produce_unreplicable(net, victim));
        assert_ne!(
            code, 0,
            "the isolated leader acknowledged an acks=all write"
        );
        let tail = unreplicated_tail(net, victim)?;
        if tail > 0 {
            Ok(())
        } else {
            Err("the isolated leader has appended nothing unreplicated yet".into())
        }
    });
    assert_clean(&checker.report(), "leader isolated, acks=all", MIN_ACKED);
    check_truncated(&net, &isolated);
}

#[test]
fn netns_isolated_leader_with_acks_1_loses_only_its_own_unreplicated_writes() {
    if skip("netns_isolated_leader_with_acks_1_loses_only_its_own_unreplicated_writes") {
        return;
    }
    let (net, ids) = replicated_three(TOPIC, PARTITIONS);
    let mut checker = Checker::start_in(&net.host(CLIENT).ns, &plan(&net, "1"));
    let mut from = None;
    let isolated = isolate_leader_of_partition_zero(&net, &ids, &mut checker, |net, victim, c| {
        let acked = c.poll();
        let start = *from.get_or_insert(acked);
        let tail = unreplicated_tail(net, victim)?;
        if acked >= start + ISOLATED_ACKS && tail > 0 {
            Ok(())
        } else {
            Err(format!(
                "{} acknowledged by the isolated leader, unreplicated tail {tail}",
                acked - start
            ))
        }
    });
    let report = checker.report();
    eprintln!("leader isolated, acks=1: {report}");
    for key in ["duplicated", "out_of_order", "vanished"] {
        assert_eq!(report[key], 0, "{key} in {report}");
    }
    let lost = report["lost"].as_u64().unwrap();
    assert!(
        lost >= ISOLATED_ACKS,
        "the isolated leader acknowledged {ISOLATED_ACKS}+ records nobody else had, yet only {lost} are missing: {report}"
    );
    let lost_in: BTreeSet<i32> = report["lost_by_partition"]
        .as_object()
        .unwrap()
        .keys()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        lost_in.is_subset(&isolated.led),
        "records lost in partitions {lost_in:?}, but the isolated node led only {:?}",
        isolated.led
    );
    assert!(report["acked"].as_u64().unwrap() >= MIN_ACKED, "{report}");
    check_truncated(&net, &isolated);
}
