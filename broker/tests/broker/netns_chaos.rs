//! A long randomized fault run, started by `scripts/chaos.sh` (ignored by a plain test run; root
//! only, for network namespaces).
//!
//! Three nodes (replication factor 3, min.insync.replicas 2) each in its own namespace and
//! `python/checker.py` (confluent-kafka, idempotent, acks=all) on a fourth host, for
//! `RAFKA_CHAOS_SECONDS` (default 300). Faults come one at a time, each on a random node for a
//! random 2-10 s, chosen by a seeded generator (`RAFKA_CHAOS_SEED`, printed either way):
//!
//! - `kill`: SIGKILL, then restart on the same data dir and addresses;
//! - `pause`: SIGSTOP, then SIGCONT;
//! - `isolate`: the node's link moved to the far bridge, then back;
//! - `isolate-with-client`: the node and the client moved together (the client writes only to it).
//!
//! After each fault the run waits (up to 60 s) until every node reports every replica in sync,
//! then stays calm for 1-5 s. At the end the checker's counts are printed and must all be 0, but
//! for duplicates the client made: each duplicated record's two copies are read back with their
//! batch's producer id and epoch and the record's sequence. A second copy under a higher epoch
//! of the same producer is librdkafka's epoch bump re-sending messages of unknown fate as new
//! ones (no broker can tell them apart; docs/reliability.md, "The duplicated batch") and is
//! printed as such; a second copy under the same epoch is the broker's fault and fails the run.

use crate::support::netns;
use crate::support::wait_until_blocking;
use crate::support::wire;
use kafka_protocol::records::RecordBatchDecoder;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::checker::{Checker, Plan};
use crate::support::netns::{KAFKA_PORT, REPLICATED_FLAGS, all_in_sync, replicated_three};
use crate::support::run::confluent_kafka_available;

const TOPIC: &str = "chaos";
const PARTITIONS: i32 = 6;
const RATE: u64 = 1500;
const CLIENT: usize = 3;
const STEP: Duration = Duration::from_secs(30);
const RECOVER: Duration = Duration::from_secs(60);

/// xorshift64*: enough randomness for choosing faults, and repeatable from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.parse().ok())
}

#[test]
#[ignore = "minutes long: run by scripts/chaos.sh"]
fn netns_chaos_randomized_faults_lose_nothing_acknowledged() {
    if !netns::available("netns_chaos") || !confluent_kafka_available() {
        return;
    }
    let seconds = env_u64("RAFKA_CHAOS_SECONDS").unwrap_or(300);
    let seed = env_u64("RAFKA_CHAOS_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    }) | 1;
    eprintln!("chaos: seed {seed}, {seconds} s, {RATE} records/s, acks=all");
    let mut rng = Rng(seed);

    let (mut net, _) = replicated_three(TOPIC, PARTITIONS);
    let bootstrap = (0..3)
        .map(|i| format!("{}:{KAFKA_PORT}", net.node(i).ip))
        .collect::<Vec<_>>()
        .join(",");
    let plan = Plan {
        bootstrap,
        topic: TOPIC.into(),
        partitions: PARTITIONS,
        seconds,
        rate: RATE,
        acks: "all",
    };
    let client_ns = net.host(CLIENT).ns.clone();
    let mut checker = Checker::start_in(&client_ns, &plan);
    checker.wait_acked(1_000, STEP);
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let mut faults = 0;
    let mut slowest_recovery = Duration::ZERO;
    // Leave the last 15 s calm so the run ends with a healthy cluster.
    while Instant::now() + Duration::from_secs(25) < end {
        let node = usize::try_from(rng.below(3)).unwrap();
        let kind = ["kill", "pause", "isolate", "isolate-with-client"][rng.below(4) as usize];
        let hold = rng.millis(2_000, 10_000);
        let at = started.elapsed();
        match kind {
            "kill" => {
                net.node_mut(node).kill();
                std::thread::sleep(hold);
                net.restart_node(node, &REPLICATED_FLAGS);
            }
            "pause" => {
                net.node(node).signal(libc::SIGSTOP);
                std::thread::sleep(hold);
                net.node(node).signal(libc::SIGCONT);
            }
            "isolate" => {
                net.split(&[node]);
                std::thread::sleep(hold);
                net.heal();
            }
            _ => {
                net.split(&[node, CLIENT]);
                std::thread::sleep(hold);
                net.heal();
            }
        }
        faults += 1;
        let healed = Instant::now();
        let waiting = Instant::now();
        wait_until_blocking(RECOVER, "every replica back in sync", || {
            all_in_sync(&net, TOPIC, PARTITIONS)
        });
        let took = waiting.elapsed();
        slowest_recovery = slowest_recovery.max(took);
        let acked = checker.poll();
        eprintln!(
            "chaos: {:>6.1}s {kind:<19} node {node} for {:.1}s, in sync again {:.1}s later; {acked} acknowledged",
            at.as_secs_f64(),
            hold.as_secs_f64(),
            healed.elapsed().as_secs_f64(),
        );
        std::thread::sleep(rng.millis(1_000, 5_000));
    }
    let report = checker.report();
    let acked = report["acked"].as_u64().unwrap_or(0);
    println!(
        "chaos result: seed {seed}, {seconds} s, {faults} faults, slowest recovery {:.1}s, {} acknowledged/s: {report}",
        slowest_recovery.as_secs_f64(),
        acked / seconds.max(1)
    );
    for key in ["lost", "out_of_order", "vanished"] {
        assert_eq!(report[key], 0, "{key} in {report} (seed {seed})");
    }
    let duplicated = report["duplicated"].as_u64().unwrap_or(u64::MAX);
    let pairs = report["duplicates"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        pairs.len() as u64,
        duplicated,
        "every duplicate listed (seed {seed})"
    );
    let mut by_the_broker = 0;
    for pair in &pairs {
        let at = |i: usize| pair[i].as_i64().expect("partition and offsets are numbers");
        let partition = i32::try_from(at(0)).expect("a partition index");
        let copies =
            [at(1), at(2)].map(|offset| (offset, record_identity(&net, partition, offset)));
        let [(first, a), (second, b)] = copies;
        let bump = a.0 == b.0 && b.1 > a.1;
        println!(
            "chaos duplicate: partition {partition}, offset {first} (producer {} epoch {} sequence {}) and {second} (producer {} epoch {} sequence {}): {}",
            a.0,
            a.1,
            a.2,
            b.0,
            b.1,
            b.2,
            if bump {
                "the client's re-send under a bumped epoch"
            } else {
                "NOT a client epoch bump"
            }
        );
        if !bump {
            by_the_broker += 1;
        }
    }
    assert_eq!(
        by_the_broker, 0,
        "duplicates under one producer epoch in {report} (seed {seed})"
    );
}

/// The producer id and epoch of the batch holding `offset` in `partition`, and the record's
/// sequence, as the partition's leader (whichever node answers the fetch) serves it.
fn record_identity(net: &netns::Net, partition: i32, offset: i64) -> (i64, i16, i32) {
    let topic = wire::Topic {
        name: TOPIC.to_string(),
        id: uuid::Uuid::nil(),
    };
    let request = wire::fetch_request(&topic, partition, offset, wire::FETCH);
    let mut answers = Vec::new();
    for node in 0..3 {
        let data = match net.node(node).kafka_call(&request, wire::FETCH, STEP) {
            Ok(response) => wire::only_partition(&response),
            Err(e) => {
                answers.push(e);
                continue;
            }
        };
        if data.error_code != 0 {
            answers.push(format!("node {node}: error {}", data.error_code));
            continue;
        }
        let mut records = data.records.unwrap_or_default();
        let batches = RecordBatchDecoder::decode_all(&mut records).expect("batches from a node");
        if let Some(r) = batches
            .into_iter()
            .flat_map(|set| set.records)
            .find(|r| r.offset == offset)
        {
            return (r.producer_id, r.producer_epoch, r.sequence);
        }
        answers.push(format!("node {node}: no record at the offset"));
    }
    panic!("reading {partition}/{offset}: {answers:?}")
}
