//! An idempotent producer's retry at a node that led stale, truncated and caught up: three nodes
//! in network namespaces (replication factor 3, min.insync.replicas 2), raw Produce requests with
//! explicit producer id, epoch and sequence (see `idempotence_failover` for the answers Kafka
//! gives). The leader of the only partition is cut off from the other two; while the majority
//! elects another leader it still takes one batch (acks=1) that nobody else gets, and the
//! producer's retry of that batch is appended by the new leader. After the heal the old leader
//! truncates its copy, rebuilds the producer's state from the batches it kept and replicates the
//! new leader's log; when it leads again, retries of each of the producer's last five batches get
//! their original offsets and nothing is written twice. Root only (skips with a message
//! otherwise, unless `RAFKA_REQUIRE_NETNS=1`).

use std::time::Duration;

use uuid::Uuid;

use crate::idempotence_failover::{
    Logged, OUT_OF_ORDER, init_producer_id, log_end, produce, read_all, values,
};
use crate::support::netns::{self, Net, all_in_sync, replicated_three};
use crate::support::wait_until_blocking;
use crate::support::wire::Topic;

const TOPIC: &str = "idem-stale";
const STEP: Duration = Duration::from_secs(30);
const REQUEST: Duration = Duration::from_secs(5);

/// The index of the node that leads partition 0 as node `via` sees it, once it is not `not`.
fn wait_leader(net: &Net, ids: &[i32], via: usize, not: Option<usize>) -> usize {
    wait_until_blocking(STEP, "a leader for partition 0", || {
        let p0 = net.node(via).partitions(TOPIC, REQUEST)?[0].clone();
        match ids.iter().position(|&id| id == p0.leader) {
            Some(leader) if p0.error == 0 && Some(leader) != not => Ok(leader),
            _ => Err(format!("partition 0 as node {via} sees it: {p0:?}")),
        }
    })
}

/// Every one of the three nodes sees three members, all alive.
fn all_alive(net: &Net) -> Result<(), String> {
    for i in 0..3 {
        let members = net.node(i).members()?;
        if members.len() != 3 || members.iter().any(|m| m.state != "alive") {
            return Err(format!("node {i}: {members:?}"));
        }
    }
    Ok(())
}

#[test]
fn netns_a_node_that_led_stale_truncated_and_caught_up_deduplicates_retries() {
    if !netns::available("netns_idempotence") {
        return;
    }
    let (net, ids) = replicated_three(TOPIC, 1);
    let topic = Topic {
        name: TOPIC.to_string(),
        id: Uuid::nil(),
    };
    let first = wait_leader(&net, &ids, 0, None);
    let a = net.node(first);
    let (id, epoch) = init_producer_id(a);
    let at = |sequence: i32| (id, epoch, sequence);
    for i in 0..3 {
        assert_eq!(
            produce(a, &topic, -1, at(i * 3), &values(i)),
            (0, i64::from(i * 3))
        );
    }

    // The leader is cut off; the other two elect one of themselves.
    net.split(&[first]);
    let survivor = (first + 1) % 3;
    let second = wait_leader(&net, &ids, survivor, Some(first));
    let b = net.node(second);
    // The cut-off node still leads its old epoch as far as it knows: it takes batch 3 with
    // acks=1, at offset 9, and no follower ever gets it.
    assert_eq!(produce(a, &topic, 1, at(9), &values(3)), (0, 9));
    // The producer's retry of batch 3 reaches the new leader, which never had it: appended, also
    // at 9. Then batch 4.
    assert_eq!(produce(b, &topic, -1, at(9), &values(3)), (0, 9));
    assert_eq!(produce(b, &topic, -1, at(12), &values(4)), (0, 12));

    // Healed, the old leader truncates its batch 3 and replicates the new leader's.
    net.heal();
    // Alive again to every node (the controller elects only among nodes its membership view
    // has alive: back in the ISR is not enough), then in sync.
    wait_until_blocking(STEP, "every member alive to every node", || all_alive(&net));
    wait_until_blocking(STEP, "every replica back in sync", || {
        all_in_sync(&net, TOPIC, 1)
    });
    assert!(
        a.log_text().contains("truncated to the leader's log"),
        "the stale leader never truncated"
    );
    // The new leader pauses; the first live in-sync replica in replica order, the old leader
    // (a new partition is led by its first replica), takes over.
    b.signal(libc::SIGSTOP);
    let third = wait_leader(&net, &ids, first, Some(second));
    assert_eq!(third, first, "the preferred replica leads again");
    // Every one of the producer's last five batches is a duplicate there, as at the leader that
    // wrote them: the original offsets, nothing written.
    for i in (0..5).rev() {
        let answer = produce(a, &topic, -1, at(i * 3), &values(i));
        assert_eq!(answer, (0, i64::from(i * 3)), "retry of batch {i}");
    }
    assert_eq!(produce(a, &topic, -1, at(16), &values(5)).0, OUT_OF_ORDER);
    assert_eq!(log_end(a, &topic), 15);
    assert_eq!(produce(a, &topic, -1, at(15), &values(5)), (0, 15));
    b.signal(libc::SIGCONT);

    let log: Vec<Logged> = read_all(a, &topic);
    let written: Vec<(i64, Vec<u8>)> = log.iter().map(|r| (r.0, r.1.to_vec())).collect();
    let expected: Vec<(i64, Vec<u8>)> = (0..6)
        .flat_map(values)
        .enumerate()
        .map(|(offset, value)| (offset as i64, value))
        .collect();
    assert_eq!(written, expected, "each batch once, in order");
}
