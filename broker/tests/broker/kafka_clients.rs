//! Real Kafka clients no one here wrote, against a `rafka-node` process: kcat 1.7 and
//! confluent-kafka for Python (both librdkafka). They list metadata, produce (idempotent or not,
//! keyed, compressed) and consume (assign, committed offsets, read_committed) byte-identically, and
//! what they write the `rafka` CLI reads, and the other way round. Each also produces a million
//! keyed records and reads them back byte-identical per partition, before and after a clean
//! restart and a SIGKILL (the issue's acceptance criterion; e2e_cli.rs does the same for the
//! `rafka` CLI).
//!
//! Each test skips with a message when its client is missing, and fails instead when
//! `RAFKA_REQUIRE_EXTERNAL_CLIENTS=1` (CI). `scripts/install-test-deps.sh` installs both.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::process::NodeProcess;
use crate::support::raw::RawClient;
use crate::support::run::{Output, confluent_kafka_available, kcat_available, rafka, run, spawn};
use crate::support::wait_until_blocking;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(300);

fn start(dir: &std::path::Path) -> NodeProcess {
    let started = Instant::now();
    let node = NodeProcess::start(dir, &[]);
    eprintln!("node ready in {:?}: {:?}", started.elapsed(), node.ready);
    node
}

fn kafka(node: &NodeProcess) -> String {
    node.ready.kafka.to_string()
}

fn kcat(node: &NodeProcess, args: &[&str], stdin: &[u8]) -> Output {
    let mut command = Command::new("kcat");
    command.args(["-b", &kafka(node)]).args(args);
    run(command, stdin, TIMEOUT)
}

/// The `rafka` CLI over the mesh (the native client's own transport).
fn cli(node: &NodeProcess, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut all = vec!["--bootstrap", &node.ready.p2p];
    all.extend_from_slice(args);
    run(rafka(&all), stdin, TIMEOUT).ok()
}

fn create_topic(node: &NodeProcess, topic: &str, partitions: i32) {
    cli(
        node,
        &[
            "topic",
            "create",
            topic,
            "--partitions",
            &partitions.to_string(),
        ],
        b"",
    );
}

/// Lines of `bytes` (each ended by `\n`).
fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "output ends mid-line"
    );
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    lines.pop();
    lines
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

/// A record as read back: (partition, offset) → (key, value).
type Log = BTreeMap<(i32, i64), (Vec<u8>, Vec<u8>)>;

/// Parses `KEY VALUE PARTITION OFFSET` lines (keys hold no space; values may).
fn parse_key_value_partition_offset(output: &[u8]) -> Vec<(i32, i64, Vec<u8>, Vec<u8>)> {
    lines(output)
        .into_iter()
        .map(|line| {
            let (key, rest) = line.split_at(line.iter().position(|&b| b == b' ').unwrap());
            let mut tail = rest[1..].rsplitn(3, |&b| b == b' ');
            let offset = text(tail.next().unwrap()).parse().unwrap();
            let partition = text(tail.next().unwrap()).parse().unwrap();
            (
                partition,
                offset,
                key.to_vec(),
                tail.next().unwrap().to_vec(),
            )
        })
        .collect()
}

/// Parses `PARTITION OFFSET KEY VALUE` lines (keys hold no space; values may).
fn parse_partition_offset_key_value(output: &[u8]) -> Vec<(i32, i64, Vec<u8>, Vec<u8>)> {
    lines(output)
        .into_iter()
        .map(|line| {
            let mut fields = line.splitn(4, |&b| b == b' ');
            let partition = text(fields.next().unwrap()).parse().unwrap();
            let offset = text(fields.next().unwrap()).parse().unwrap();
            let key = fields.next().unwrap().to_vec();
            (partition, offset, key, fields.next().unwrap().to_vec())
        })
        .collect()
}

/// Asserts per-partition offsets are contiguous from 0 in read order, and returns the log.
fn contiguous_log(records: Vec<(i32, i64, Vec<u8>, Vec<u8>)>, what: &str) -> Log {
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut log = Log::new();
    for (partition, offset, key, value) in records {
        let expected = next.entry(partition).or_insert(0);
        assert_eq!(
            offset, *expected,
            "{what}: partition {partition} read out of order or with a gap"
        );
        *expected += 1;
        log.insert((partition, offset), (key, value));
    }
    log
}

/// Kafka's `Utils.murmur2`, written again here so the test does not trust the code it checks.
fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= u32::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default (Java) partitioner picks for `key`.
fn kafka_partition(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions
}

#[test]
fn murmur2_matches_kafkas_test_vectors() {
    // From Kafka's UtilsTest.testMurmur2.
    assert_eq!(murmur2(b"21"), -973_932_308);
    assert_eq!(murmur2(b"foobar"), -790_332_482);
    assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
    assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
    assert_eq!(
        murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
        -58_897_971
    );
    assert_eq!(murmur2(b"abc"), 479_470_107);
}

// ---------------------------------------------------------------------------------------------
// kcat

/// One parsed `kcat -L` listing.
#[derive(Debug, Default)]
struct Listing {
    /// (id, host:port)
    brokers: Vec<(i32, String)>,
    /// name → [(partition, leader, replicas, isrs)]
    topics: BTreeMap<String, Vec<(i32, i32, String, String)>>,
    /// name → declared partition count
    declared: BTreeMap<String, usize>,
}

/// Parses kcat's metadata listing:
/// ```text
///  1 brokers:
///   broker 1 at 127.0.0.1:40109 (controller)
///  2 topics:
///   topic "a" with 3 partitions:
///     partition 0, leader 1, replicas: 1, isrs: 1
/// ```
fn parse_listing(output: &str) -> Listing {
    let mut listing = Listing::default();
    let mut current = None;
    for line in output.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("broker ") {
            let (id, rest) = rest.split_once(" at ").unwrap();
            let addr = rest.split_whitespace().next().unwrap();
            listing
                .brokers
                .push((id.parse().unwrap(), addr.to_string()));
        } else if let Some(rest) = line.strip_prefix("topic \"") {
            let (name, rest) = rest.split_once('"').unwrap();
            let count = rest
                .trim()
                .strip_prefix("with ")
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap();
            listing
                .declared
                .insert(name.to_string(), count.parse().unwrap());
            listing.topics.insert(name.to_string(), Vec::new());
            current = Some(name.to_string());
        } else if let Some(rest) = line.strip_prefix("partition ") {
            let fields: Vec<&str> = rest.split(", ").collect();
            let partition = fields[0].parse().unwrap();
            let leader = fields[1].strip_prefix("leader ").unwrap().parse().unwrap();
            let replicas = fields[2].strip_prefix("replicas: ").unwrap().to_string();
            let isrs = fields[3].strip_prefix("isrs: ").unwrap().to_string();
            let topic = current.as_ref().expect("a partition line under a topic");
            listing
                .topics
                .get_mut(topic)
                .unwrap()
                .push((partition, leader, replicas, isrs));
        }
    }
    listing
}

#[test]
fn process_kcat_lists_the_broker_and_topics() {
    if !kcat_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let node = start(&tmp.path().join("node"));
    create_topic(&node, "listed-three", 3);
    create_topic(&node, "listed-one", 1);

    let listing = parse_listing(&String::from_utf8(kcat(&node, &["-L"], b"").ok()).unwrap());
    assert_eq!(listing.brokers.len(), 1, "{listing:?}");
    let (id, addr) = &listing.brokers[0];
    assert_eq!(
        addr,
        &kafka(&node),
        "the advertised address is the listener"
    );
    for (name, partitions) in [("listed-three", 3), ("listed-one", 1)] {
        assert_eq!(listing.declared.get(name), Some(&partitions), "{listing:?}");
        let listed = &listing.topics[name];
        assert_eq!(listed.len(), partitions, "{listing:?}");
        for (i, (partition, leader, replicas, isrs)) in listed.iter().enumerate() {
            assert_eq!(*partition, i as i32);
            assert_eq!(leader, id, "the only broker leads {name}/{partition}");
            assert_eq!(
                (replicas.as_str(), isrs.as_str()),
                (&*id.to_string(), &*id.to_string())
            );
        }
    }

    // One topic by name.
    let one = kcat(&node, &["-L", "-t", "listed-three"], b"").ok();
    let one = parse_listing(&String::from_utf8(one).unwrap());
    assert_eq!(one.topics.keys().collect::<Vec<_>>(), ["listed-three"]);
    assert_eq!(one.topics["listed-three"].len(), 3);
}

/// Lines of arbitrary bytes (never `\n`), numbered so each is distinct.
fn binary_lines(count: usize, tag: &str) -> Vec<u8> {
    let mut input = Vec::new();
    for i in 0..count {
        input.extend_from_slice(format!("{tag}-{i} ").as_bytes());
        input.extend(
            (0..24u32)
                .map(|j| ((i as u32 * 13 + j * 29) % 256) as u8)
                .filter(|&b| b != b'\n'),
        );
        input.extend_from_slice(&[0xff, 0x00, 0xc3, 0x28, b'\r', b' ', b'x']);
        input.push(b'\n');
    }
    input
}

#[test]
fn process_kcat_produces_and_consumes_byte_identical() {
    if !kcat_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let node = start(&tmp.path().join("node"));
    create_topic(&node, "kcat-plain", 3);
    create_topic(&node, "kcat-keyed", 3);

    // Values only, to one explicit partition: the partition reads back exactly the input.
    let input = binary_lines(5000, "plain");
    kcat(&node, &["-P", "-t", "kcat-plain", "-p", "1"], &input).ok();
    let read = kcat(
        &node,
        &[
            "-C",
            "-t",
            "kcat-plain",
            "-p",
            "1",
            "-e",
            "-o",
            "beginning",
            "-f",
            "%s\n",
        ],
        b"",
    )
    .ok();
    assert_eq!(read.len(), input.len());
    assert!(
        read == input,
        "kcat read back different bytes from partition 1"
    );
    for empty in [0, 2] {
        let none = kcat(
            &node,
            &[
                "-C",
                "-t",
                "kcat-plain",
                "-p",
                &empty.to_string(),
                "-e",
                "-o",
                "beginning",
            ],
            b"",
        )
        .ok();
        assert!(none.is_empty(), "partition {empty} got records");
    }

    // Keyed, placed by Kafka's murmur2 partitioner; read back with key, partition and offset.
    let mut keyed = Vec::new();
    let mut expected: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (i, line) in lines(&binary_lines(5000, "keyed")).into_iter().enumerate() {
        let key = format!("k{}", i % 300).into_bytes();
        keyed.extend_from_slice(&key);
        keyed.push(b':');
        keyed.extend_from_slice(line);
        keyed.push(b'\n');
        expected.push((key, line.to_vec()));
    }
    kcat(
        &node,
        &[
            "-P",
            "-t",
            "kcat-keyed",
            "-K:",
            "-X",
            "partitioner=murmur2_random",
        ],
        &keyed,
    )
    .ok();
    let read = kcat(
        &node,
        &[
            "-C",
            "-t",
            "kcat-keyed",
            "-e",
            "-o",
            "beginning",
            "-f",
            "%k %s %p %o\n",
        ],
        b"",
    )
    .ok();
    let records = parse_key_value_partition_offset(&read);
    let log = contiguous_log(records, "kcat keyed");
    assert_eq!(log.len(), expected.len());
    for ((partition, _), (key, _)) in &log {
        assert_eq!(
            *partition,
            kafka_partition(key, 3),
            "key {}",
            String::from_utf8_lossy(key)
        );
    }
    // Per partition, the records are in the order kcat read them from stdin.
    for p in 0..3 {
        let got: Vec<&(Vec<u8>, Vec<u8>)> =
            log.range((p, 0)..(p + 1, 0)).map(|(_, kv)| kv).collect();
        let want: Vec<&(Vec<u8>, Vec<u8>)> = expected
            .iter()
            .filter(|(k, _)| kafka_partition(k, 3) == p)
            .collect();
        assert!(got == want, "partition {p} differs from what kcat produced");
    }
}

#[test]
fn process_kcat_and_the_rafka_cli_read_each_other() {
    if !kcat_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let node = start(&tmp.path().join("node"));
    create_topic(&node, "from-kcat", 2);
    create_topic(&node, "from-rafka", 2);

    // kcat → rafka consume (over the mesh), keys and values exact.
    let mut input = Vec::new();
    for (i, line) in lines(&binary_lines(3000, "kcat")).into_iter().enumerate() {
        input.extend_from_slice(format!("key{}:", i % 50).as_bytes());
        input.extend_from_slice(line);
        input.push(b'\n');
    }
    kcat(&node, &["-P", "-t", "from-kcat", "-K:"], &input).ok();
    let read = cli(
        &node,
        &[
            "consume",
            "from-kcat",
            "--from-beginning",
            "-n",
            "3000",
            "--timeout-ms",
            "30000",
            "--format",
            "%p %o %k %v\\n",
        ],
        b"",
    );
    let records = parse_partition_offset_key_value(&read);
    let mut got: Vec<Vec<u8>> = contiguous_log(records, "rafka reading kcat")
        .into_values()
        .map(|(key, value)| [&key[..], b":", &value[..]].concat())
        .collect();
    got.sort();
    let mut want: Vec<Vec<u8>> = lines(&input).into_iter().map(<[u8]>::to_vec).collect();
    want.sort();
    assert!(
        got == want,
        "rafka consume read different bytes from what kcat produced"
    );

    // rafka produce (over the mesh) → kcat, keys and values exact.
    let mut input = Vec::new();
    for (i, line) in lines(&binary_lines(3000, "rafka")).into_iter().enumerate() {
        input.extend_from_slice(format!("key{}:", i % 50).as_bytes());
        input.extend_from_slice(line);
        input.push(b'\n');
    }
    cli(
        &node,
        &["produce", "from-rafka", "--key-separator", ":"],
        &input,
    );
    let read = kcat(
        &node,
        &[
            "-C",
            "-t",
            "from-rafka",
            "-e",
            "-o",
            "beginning",
            "-f",
            "%k:%s\n",
        ],
        b"",
    )
    .ok();
    let mut got: Vec<&[u8]> = lines(&read);
    got.sort_unstable();
    let mut want: Vec<&[u8]> = lines(&input);
    want.sort_unstable();
    assert!(
        got == want,
        "kcat read different bytes from what rafka produced"
    );
    // The rafka producer placed each key where Kafka's partitioner would.
    let placed = kcat(
        &node,
        &[
            "-C",
            "-t",
            "from-rafka",
            "-e",
            "-o",
            "beginning",
            "-f",
            "%k %p\n",
        ],
        b"",
    )
    .ok();
    for line in lines(&placed) {
        let (key, partition) = text(line).split_once(' ').unwrap();
        assert_eq!(
            partition.parse::<i32>().unwrap(),
            kafka_partition(key.as_bytes(), 2),
            "key {key}"
        );
    }
}

#[test]
fn process_kcat_100k_records_survive_sigkill() {
    const RECORDS: usize = 100_000;
    if !kcat_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let started = Instant::now();
    let mut node = start(&dir);
    create_topic(&node, "kcat-restart", 3);
    let mut input = Vec::new();
    for (i, line) in lines(&binary_lines(RECORDS, "restart"))
        .into_iter()
        .enumerate()
    {
        input.extend_from_slice(format!("key{}:", i % 1000).as_bytes());
        input.extend_from_slice(line);
        input.push(b'\n');
    }
    // acks=all (librdkafka's default, spelled out) on a node with fsync=always (its default).
    let produced = kcat(
        &node,
        &["-P", "-t", "kcat-restart", "-K:", "-X", "acks=all"],
        &input,
    );
    eprintln!("kcat produced {RECORDS} records in {:?}", produced.elapsed);
    produced.ok();
    let format = [
        "-C",
        "-t",
        "kcat-restart",
        "-e",
        "-o",
        "beginning",
        "-f",
        "%k %s %p %o\n",
    ];
    let before = contiguous_log(
        parse_key_value_partition_offset(&kcat(&node, &format, b"").ok()),
        "before the kill",
    );
    assert_eq!(before.len(), RECORDS);
    let mut got: Vec<Vec<u8>> = before
        .values()
        .map(|(k, v)| [&k[..], b":", v].concat())
        .collect();
    got.sort();
    let mut want: Vec<Vec<u8>> = lines(&input).into_iter().map(<[u8]>::to_vec).collect();
    want.sort();
    assert!(
        got == want,
        "kcat read different bytes from what it produced"
    );

    node.kill();
    let node = start(&dir);
    let consumed = kcat(&node, &format, b"");
    eprintln!(
        "kcat consumed {RECORDS} records after the restart in {:?}",
        consumed.elapsed
    );
    let after = contiguous_log(
        parse_key_value_partition_offset(&consumed.ok()),
        "after the kill",
    );
    assert_eq!(after.len(), RECORDS);
    assert!(
        after == before,
        "(partition, offset, key, value) changed across SIGKILL and restart"
    );
    eprintln!(
        "process_kcat_100k_records_survive_sigkill: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// confluent-kafka (Python)

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

fn python(script_name: &str, args: &[&str]) -> Value {
    python_with_stdin(script_name, args, b"")
}

/// Runs a script with `stdin` as its standard input; its stdout is one JSON object.
fn python_with_stdin(script_name: &str, args: &[&str], stdin: &[u8]) -> Value {
    let mut command = Command::new("python3");
    command.arg(script(script_name)).args(args);
    let out = run(command, stdin, TIMEOUT);
    eprintln!("{script_name} {args:?}: {:?}", out.elapsed);
    let stdout = out.ok();
    serde_json::from_slice(&stdout).unwrap_or_else(|e| panic!("{script_name}: not JSON ({e})"))
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn assert_no_errors(report: &Value, what: &str) {
    let errors = report["errors"].as_array().unwrap();
    assert!(errors.is_empty(), "{what}: {errors:?}");
}

/// (partition, offset) → (key, value) from JSON rows `[.., .., key, value_hex]`.
fn rows(report: &Value, field: &str, order: [usize; 4]) -> Vec<(i32, i64, Vec<u8>, Vec<u8>)> {
    let [k, p, o, v] = order;
    report[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row[p].as_i64().unwrap() as i32,
                row[o].as_i64().unwrap(),
                row[k].as_str().unwrap().as_bytes().to_vec(),
                unhex(row[v].as_str().unwrap()),
            )
        })
        .collect()
}

/// Runs produce.py and checks every delivery report: success, offsets unique and contiguous per
/// partition, keys where Kafka's murmur2 partitioner puts them. Returns the deliveries in order.
fn python_produce(
    node: &NodeProcess,
    topic: &str,
    partitions: i32,
    count: usize,
    extra: &[&str],
) -> Vec<(i32, i64, Vec<u8>, Vec<u8>)> {
    let bootstrap = kafka(node);
    let count_arg = count.to_string();
    let mut args = vec![bootstrap.as_str(), topic, "--count", &count_arg];
    args.extend_from_slice(extra);
    let report = python("produce.py", &args);
    assert_no_errors(&report, "produce.py");
    assert_eq!(report["client_errors"], Value::Array(vec![]), "produce.py");
    assert_eq!(report["fatal"], Value::Array(vec![]), "produce.py");
    assert_eq!(report["undelivered"], 0);
    let deliveries = rows(&report, "delivered", [0, 1, 2, 3]);
    assert_eq!(
        deliveries.len(),
        count,
        "one successful delivery report per record"
    );
    let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (partition, offset, key, _) in &deliveries {
        assert_eq!(
            *partition,
            kafka_partition(key, partitions),
            "key {}",
            String::from_utf8_lossy(key)
        );
        offsets.entry(*partition).or_default().push(*offset);
    }
    for (partition, mut list) in offsets {
        list.sort_unstable();
        let n = list.len() as i64;
        assert!(
            list.into_iter().eq(0..n),
            "partition {partition}: offsets not unique and contiguous"
        );
    }
    deliveries
}

fn python_round_trip(topic: &str, produce_args: &[&str], isolation: &str, ordered: bool) {
    const RECORDS: usize = 50_000;
    const PARTITIONS: i32 = 4;
    if !confluent_kafka_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let node = start(&tmp.path().join("node"));
    let started = Instant::now();
    create_topic(&node, topic, PARTITIONS);
    let deliveries = python_produce(&node, topic, PARTITIONS, RECORDS, produce_args);
    let produced: Log = deliveries
        .iter()
        .map(|(p, o, k, v)| ((*p, *o), (k.clone(), v.clone())))
        .collect();
    assert_eq!(produced.len(), RECORDS);

    // Per key, the idempotent producer's order is the log's (record i carries "value-<i>-").
    if ordered {
        let mut last_for_key: HashMap<&[u8], &[u8]> = HashMap::new();
        for (key, value) in produced.values() {
            if let Some(previous) = last_for_key.insert(key, value) {
                assert!(previous[..12] < value[..12], "key {key:?} out of order");
            }
        }
    }

    // A consumer with assign() reads everything back exactly and commits half of each partition.
    let bootstrap = kafka(&node);
    let partitions = PARTITIONS.to_string();
    let consume = |start: &str, commit: &str| {
        let args = [
            bootstrap.as_str(),
            topic,
            "--partitions",
            &partitions,
            "--group",
            "py-group",
            "--start",
            start,
            "--commit",
            commit,
            "--isolation",
            isolation,
        ];
        let report = python("consume.py", &args);
        assert_no_errors(&report, "consume.py");
        report
    };
    let first = consume("beginning", "half");
    let read = rows(&first, "records", [2, 0, 1, 3]);
    let log = contiguous_log(read.clone(), "confluent-kafka consumer");
    assert!(
        log == produced,
        "the consumer read something other than what was produced"
    );
    let mut committed = BTreeMap::new();
    for p in 0..PARTITIONS {
        let offsets: Vec<i64> = log
            .keys()
            .filter(|(q, _)| *q == p)
            .map(|(_, o)| *o)
            .collect();
        let half = offsets.get(offsets.len() / 2).copied().unwrap_or(-1001);
        assert_eq!(
            first["committed"][p.to_string()].as_i64(),
            Some(half),
            "partition {p} committed"
        );
        committed.insert(p, half);
    }

    // A second consumer in the group resumes from the committed offsets: exactly the rest.
    let second = consume("stored", "none");
    let resumed: Log = rows(&second, "records", [2, 0, 1, 3])
        .into_iter()
        .map(|(p, o, k, v)| ((p, o), (k, v)))
        .collect();
    let rest: Log = produced
        .iter()
        .filter(|((p, o), _)| *o >= committed[p])
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    assert_eq!(
        resumed.len(),
        second["records"].as_array().unwrap().len(),
        "no duplicates"
    );
    assert!(
        resumed == rest,
        "the second consumer did not resume at the committed offsets"
    );

    // The Rust client (rafka produce) places the same keys on the same partitions.
    let twin = format!("{topic}-rafka");
    create_topic(&node, &twin, PARTITIONS);
    let keys: BTreeMap<&[u8], i32> = produced
        .iter()
        .map(|((p, _), (k, _))| (&k[..], *p))
        .collect();
    let mut input = Vec::new();
    for key in keys.keys() {
        input.extend_from_slice(key);
        input.extend_from_slice(b" v\n");
    }
    cli(&node, &["produce", &twin, "--key-separator", " "], &input);
    let n = keys.len().to_string();
    let placed = cli(
        &node,
        &[
            "consume",
            &twin,
            "--from-beginning",
            "-n",
            &n,
            "--timeout-ms",
            "30000",
            "--format",
            "%k %p\\n",
        ],
        b"",
    );
    let placed: BTreeMap<&[u8], i32> = lines(&placed)
        .into_iter()
        .map(|line| {
            let (key, partition) = text(line).split_once(' ').unwrap();
            (key.as_bytes(), partition.parse().unwrap())
        })
        .collect();
    assert!(
        placed == keys,
        "rafka produce placed keys differently from librdkafka's murmur2_random"
    );
    eprintln!("python round trip on {topic}: {:?}", started.elapsed());
}

#[test]
fn process_confluent_kafka_idempotent_producer_and_assign_consumer() {
    python_round_trip(
        "py-idempotent",
        &["--idempotence", "true", "--acks", "all"],
        "read_committed",
        true,
    );
}

#[test]
fn process_confluent_kafka_plain_producer_and_assign_consumer() {
    python_round_trip(
        "py-plain",
        &["--idempotence", "false", "--acks", "1"],
        "read_uncommitted",
        false,
    );
}

/// The compression codec of the first batch of `topic`/`partition`, read with a raw Fetch.
fn first_batch_codec(node: &NodeProcess, topic: &str, partition: i32) -> i16 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = RawClient::connect(node.ready.kafka).await;
        let request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ]);
        let response = client.send(&request, 12).await;
        let data = &response.responses[0].partitions[0];
        assert_eq!(data.error_code, 0);
        let records = data.records.clone().unwrap();
        // RecordBatch v2: base offset (8), length (4), leader epoch (4), magic (1), crc (4), attributes.
        assert_eq!(records[16], 2, "magic");
        i16::from_be_bytes([records[21], records[22]]) & 0x7
    })
}

#[test]
fn process_compressed_batches_cross_between_librdkafka_and_the_rafka_cli() {
    const RECORDS: usize = 10_000;
    if !confluent_kafka_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let node = start(&tmp.path().join("node"));
    for (codec, id) in [("gzip", 1), ("snappy", 2), ("lz4", 3), ("zstd", 4)] {
        let topic = format!("py-{codec}");
        create_topic(&node, &topic, 3);
        let deliveries = python_produce(&node, &topic, 3, RECORDS, &["--compression", codec]);
        let produced: Log = deliveries
            .into_iter()
            .map(|(p, o, k, v)| ((p, o), (k, v)))
            .collect();
        assert_eq!(
            first_batch_codec(&node, &topic, 0),
            id,
            "{codec}: batches are stored compressed"
        );
        let n = RECORDS.to_string();
        let read = cli(
            &node,
            &[
                "consume",
                &topic,
                "--from-beginning",
                "-n",
                &n,
                "--timeout-ms",
                "30000",
                "--format",
                "%p %o %k %v\\n",
            ],
            b"",
        );
        let log = contiguous_log(parse_partition_offset_key_value(&read), codec);
        assert!(
            log == produced,
            "{codec}: rafka consume read different bytes than librdkafka produced"
        );

        // The other way: batches the rafka client compressed, decompressed by librdkafka.
        let topic = format!("rafka-{codec}");
        create_topic(&node, &topic, 3);
        let mut input = Vec::new();
        for (i, line) in lines(&binary_lines(RECORDS, codec)).into_iter().enumerate() {
            input.extend_from_slice(format!("key{}:", i % 100).as_bytes());
            input.extend_from_slice(line);
            input.push(b'\n');
        }
        cli(
            &node,
            &[
                "produce",
                &topic,
                "--key-separator",
                ":",
                "--compression",
                codec,
            ],
            &input,
        );
        assert_eq!(
            first_batch_codec(&node, &topic, 0),
            id,
            "{codec}: the rafka client compressed"
        );
        let bootstrap = kafka(&node);
        let args = [
            bootstrap.as_str(),
            &topic,
            "--partitions",
            "3",
            "--group",
            "g",
        ];
        let report = python("consume.py", &args);
        assert_no_errors(&report, "consume.py");
        let log = contiguous_log(rows(&report, "records", [2, 0, 1, 3]), codec);
        let mut got: Vec<Vec<u8>> = log
            .into_values()
            .map(|(key, value)| [&key[..], b":", &value[..]].concat())
            .collect();
        got.sort();
        let mut want: Vec<Vec<u8>> = lines(&input).into_iter().map(<[u8]>::to_vec).collect();
        want.sort();
        assert!(
            got == want,
            "{codec}: librdkafka read different bytes than the rafka client produced"
        );
    }
}

/// The sum of `topic`'s partition high watermarks, from the node's `/metrics`.
fn high_watermark_sum(node: &NodeProcess, topic: &str) -> i64 {
    let metrics = node.http_get("/metrics").unwrap_or_default();
    let prefix = format!("rafka_partition_high_watermark{{topic=\"{topic}\",");
    metrics
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|hw| hw as i64)
        .sum()
}

#[test]
fn process_confluent_kafka_idempotent_producer_survives_sigkill() {
    const RECORDS: usize = 300_000;
    const PARTITIONS: i32 = 3;
    const TOPIC: &str = "py-crash";
    if !confluent_kafka_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let started = Instant::now();
    let mut node = start(&dir);
    create_topic(&node, TOPIC, PARTITIONS);

    // The producer is mid-stream (acks=all, idempotent, up to 5 requests in flight per
    // partition) when the node is killed; the node comes back on the same port, the producer
    // retries what was in flight, and nothing may be lost or written twice.
    let bootstrap = kafka(&node);
    let mut command = Command::new("python3");
    command
        .arg(script("produce.py"))
        .args([&bootstrap, TOPIC, "--count", &RECORDS.to_string()]);
    command.args(["--idempotence", "true", "--acks", "all"]);
    let producer = spawn(command, b"");
    wait_until_blocking(
        Duration::from_secs(120),
        "the producer to be under way",
        || high_watermark_sum(&node, TOPIC) >= 50_000,
    );
    node.kill();
    let killed_at = started.elapsed();
    let node = NodeProcess::start_on(&dir, &bootstrap, &[]);
    eprintln!(
        "killed at {killed_at:?}, restarted at {:?}",
        started.elapsed()
    );
    let report: Value = serde_json::from_slice(&producer.wait(TIMEOUT).ok()).unwrap();
    eprintln!("producer: client errors {}", report["client_errors"]);
    assert_no_errors(&report, "produce.py across the kill");
    assert_eq!(
        report["fatal"],
        Value::Array(vec![]),
        "no fatal (idempotence) error"
    );
    assert_eq!(report["undelivered"], 0);
    let deliveries = rows(&report, "delivered", [0, 1, 2, 3]);
    assert_eq!(deliveries.len(), RECORDS, "every record acknowledged once");
    let acked: Log = deliveries
        .into_iter()
        .map(|(p, o, k, v)| ((p, o), (k, v)))
        .collect();
    assert_eq!(
        acked.len(),
        RECORDS,
        "no two acknowledgements share a (partition, offset)"
    );

    let partitions = PARTITIONS.to_string();
    let args = [
        bootstrap.as_str(),
        TOPIC,
        "--partitions",
        &partitions,
        "--group",
        "crash",
    ];
    let read = python("consume.py", &args);
    assert_no_errors(&read, "consume.py");
    let log = contiguous_log(rows(&read, "records", [2, 0, 1, 3]), "after the kill");
    assert_eq!(log.len(), RECORDS, "no record lost, none written twice");
    assert!(
        log == acked,
        "every acknowledged record is where its acknowledgement said"
    );
    drop(node);
    eprintln!(
        "process_confluent_kafka_idempotent_producer_survives_sigkill: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// A million records with each client, read back before and after a clean restart and a SIGKILL

const MILLION: usize = 1_000_000;
const MILLION_PARTITIONS: i32 = 4;

/// `count` lines `key-<i mod 5000>:<value>`, each value 100 bytes and distinct: `v<i>-` (9 bytes),
/// 88 pseudo-random bytes of the whole range but `\n` (so `:`, spaces, invalid UTF-8 too), then
/// a space, a NUL and a `\r`.
fn million_input(count: usize) -> Vec<u8> {
    let mut input = Vec::with_capacity(count * 111);
    for i in 0..count {
        input.extend_from_slice(format!("key-{}:v{i:07}-", i % 5000).as_bytes());
        let mut state = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for _ in 0..11 {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let bits = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            input.extend(bits.iter().map(|&b| if b == b'\n' { b'\t' } else { b }));
        }
        input.extend_from_slice(b" \0\r\n");
    }
    input
}

/// The input's `KEY:VALUE` lines per partition, in input order: where Kafka's murmur2
/// partitioner puts each key, and the order an idempotent producer must keep.
fn by_partition(input: &[u8], partitions: i32) -> Vec<Vec<&[u8]>> {
    let mut expected = vec![Vec::new(); partitions as usize];
    for line in lines(input) {
        let colon = line.iter().position(|&b| b == b':').unwrap();
        expected[kafka_partition(&line[..colon], partitions) as usize].push(line);
    }
    expected
}

/// A record for messages: at most 120 bytes of it, escaped.
fn shown(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(120)];
    format!("{:?}", String::from_utf8_lossy(cut))
}

/// Checks `PARTITION OFFSET KEY VALUE` lines (kcat's `-f '%p %o %k %s\n'`, consume.py's `--out`)
/// against `expected`: per partition, offsets contiguous from 0 in read order and every record
/// byte-identical to the input line at that position, and nothing missing at the end.
fn verify_per_partition(expected: &[Vec<&[u8]>], output: &[u8], what: &str) {
    let mut next = vec![0usize; expected.len()];
    for line in lines(output) {
        let mut fields = line.splitn(4, |&b| b == b' ');
        let mut number = |name: &str| -> usize {
            let field = fields.next().unwrap_or_default();
            text(field)
                .parse()
                .unwrap_or_else(|_| panic!("{what}: bad {name} in {}", shown(line)))
        };
        let (partition, offset) = (number("partition"), number("offset"));
        let key = fields.next().unwrap_or_default();
        let value = fields.next().unwrap_or_default();
        assert!(partition < expected.len(), "{what}: partition {partition}");
        assert_eq!(
            offset, next[partition],
            "{what}: partition {partition} read out of order, with a gap or a duplicate"
        );
        let want = expected[partition].get(offset).unwrap_or_else(|| {
            panic!("{what}: partition {partition} has more records than were produced")
        });
        let same = want.len() == key.len() + 1 + value.len()
            && want.starts_with(key)
            && want[key.len()] == b':'
            && &want[key.len() + 1..] == value;
        assert!(
            same,
            "{what}: partition {partition} offset {offset}: read key {} value {}, produced {}",
            shown(key),
            shown(value),
            shown(want)
        );
        next[partition] += 1;
    }
    for (partition, want) in expected.iter().enumerate() {
        assert_eq!(
            next[partition],
            want.len(),
            "{what}: partition {partition} record count"
        );
    }
}

/// (partition, offset, key, value)
type Read = (usize, usize, Vec<u8>, Vec<u8>);

/// `records` as kcat's `-f '%p %o %k %s\n'` prints them.
fn printed(records: &[Read]) -> Vec<u8> {
    let mut out = Vec::new();
    for (partition, offset, key, value) in records {
        out.extend_from_slice(format!("{partition} {offset} ").as_bytes());
        out.extend_from_slice(key);
        out.push(b' ');
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

#[test]
fn the_million_record_check_rejects_reorder_loss_duplicates_and_corruption() {
    let input = million_input(2000);
    let expected = by_partition(&input, MILLION_PARTITIONS);
    // What a faithful client reads, partitions interleaved.
    let mut faithful: Vec<Read> = Vec::new();
    for offset in 0..expected.iter().map(Vec::len).max().unwrap() {
        for (partition, list) in expected.iter().enumerate() {
            if let Some(line) = list.get(offset) {
                let colon = line.iter().position(|&b| b == b':').unwrap();
                let (key, value) = (line[..colon].to_vec(), line[colon + 1..].to_vec());
                faithful.push((partition, offset, key, value));
            }
        }
    }
    verify_per_partition(&expected, &printed(&faithful), "faithful");

    let at = |partition, offset| {
        faithful
            .iter()
            .position(|r| (r.0, r.1) == (partition, offset))
            .unwrap()
    };
    let mut reordered = faithful.clone();
    let (first, second) = (at(0, 0), at(0, 1));
    let swapped = (faithful[second].2.clone(), faithful[second].3.clone());
    (reordered[first].2, reordered[first].3) = swapped;
    (reordered[second].2, reordered[second].3) =
        (faithful[first].2.clone(), faithful[first].3.clone());
    let mut lost = faithful.clone();
    lost.remove(at(1, 5));
    let mut lost_last = faithful.clone();
    lost_last.remove(at(2, expected[2].len() - 1));
    let mut duplicated = faithful.clone();
    duplicated.insert(at(3, 7) + 1, faithful[at(3, 7)].clone());
    let mut flipped = faithful.clone();
    flipped[at(0, 10)].3[50] ^= 0x01;
    let mut other_key = faithful.clone();
    other_key[at(2, 3)].2 = b"key-1".to_vec();
    let mut extra = faithful.clone();
    extra.push((0, expected[0].len(), b"key-0".to_vec(), b"v".to_vec()));
    for (what, records) in [
        ("reordered", reordered),
        ("lost", lost),
        ("lost at the end", lost_last),
        ("duplicated", duplicated),
        ("flipped", flipped),
        ("other key", other_key),
        ("extra", extra),
    ] {
        let output = printed(&records);
        let caught = std::panic::catch_unwind(|| verify_per_partition(&expected, &output, what));
        assert!(caught.is_err(), "the check accepted a {what} read");
    }
}

/// Produces a million keyed records with one client into a fresh multi-partition topic, reads
/// them all back with the same client, then again after a SIGTERM restart and after a SIGKILL
/// restart (same data dir), each time checking every partition byte for byte.
///
/// `produce(node, topic, input, counts)` must produce the input lines (`KEY:VALUE`) in order
/// (`counts`: how many records each partition should get); `read(node, topic, round)` returns
/// the whole topic as `PARTITION OFFSET KEY VALUE` lines.
fn million_records_survive_restart_and_kill(
    test: &str,
    topic: &str,
    produce: impl Fn(&NodeProcess, &str, &[u8], &[usize]),
    read: impl Fn(&NodeProcess, &str, usize) -> Vec<u8>,
) {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let input = million_input(MILLION);
    let expected = by_partition(&input, MILLION_PARTITIONS);
    let counts: Vec<usize> = expected.iter().map(Vec::len).collect();
    eprintln!(
        "{test}: {} input bytes, per partition {counts:?}",
        input.len()
    );
    assert!(
        counts.iter().all(|&n| n > 0),
        "every partition gets records"
    );

    let mut node = start(&dir);
    create_topic(&node, topic, MILLION_PARTITIONS);
    let at = Instant::now();
    produce(&node, topic, &input, &counts);
    eprintln!("{test}: produced in {:?}", at.elapsed());

    let check = |node: &NodeProcess, round: usize, what: &str| {
        let at = Instant::now();
        let output = read(node, topic, round);
        let read_in = at.elapsed();
        verify_per_partition(&expected, &output, what);
        eprintln!(
            "{test}: {what}: read in {read_in:?}, checked in {:?}",
            at.elapsed() - read_in
        );
    };
    check(&node, 0, "first read");

    assert!(
        node.terminate(),
        "SIGTERM: clean exit; log:\n{}",
        node.log_text()
    );
    let mut node = start(&dir);
    check(&node, 1, "after a clean restart");

    node.kill();
    let node = start(&dir);
    check(&node, 2, "after SIGKILL");
    drop(node);
    eprintln!("{test}: {:?}", started.elapsed());
}

#[test]
fn process_kcat_million_records_survive_restart_and_kill() {
    if !kcat_available() {
        return;
    }
    million_records_survive_restart_and_kill(
        "process_kcat_million_records_survive_restart_and_kill",
        "kcat-million",
        |node, topic, input, _| {
            // Idempotent (so retries cannot reorder a partition), acks=all, Kafka's partitioner;
            // kcat exits non-zero if any delivery report failed.
            let args = [
                "-P",
                "-t",
                topic,
                "-K:",
                "-X",
                "acks=all",
                "-X",
                "enable.idempotence=true",
                "-X",
                "partitioner=murmur2_random",
            ];
            kcat(node, &args, input).ok();
        },
        |node, topic, _| {
            // librdkafka 2.0 stops fetching once 100000 records wait in kcat's queue and resumes
            // only on its next ~1 s wakeup; let the whole topic queue instead.
            let args = [
                "-C",
                "-t",
                topic,
                "-e",
                "-o",
                "beginning",
                "-f",
                "%p %o %k %s\n",
                "-X",
                "queued.min.messages=1000000",
                "-X",
                "queued.max.messages.kbytes=1048576",
            ];
            kcat(node, &args, b"").ok()
        },
    );
}

#[test]
fn process_confluent_kafka_million_records_survive_restart_and_kill() {
    if !confluent_kafka_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    million_records_survive_restart_and_kill(
        "process_confluent_kafka_million_records_survive_restart_and_kill",
        "py-million",
        |node, topic, input, counts| {
            let bootstrap = kafka(node);
            let args = [
                bootstrap.as_str(),
                topic,
                "--from-stdin",
                "--report",
                "summary",
                "--idempotence",
                "true",
                "--acks",
                "all",
            ];
            let report = python_with_stdin("produce.py", &args, input);
            assert_no_errors(&report, "produce.py");
            assert_eq!(report["client_errors"], Value::Array(vec![]), "produce.py");
            assert_eq!(report["fatal"], Value::Array(vec![]), "produce.py");
            assert_eq!(report["undelivered"], 0, "produce.py");
            assert_eq!(
                report["delivered_count"], MILLION,
                "one successful delivery report per record"
            );
            // Per partition, the acknowledged offsets run 0, 1, 2, ... in delivery order.
            for (partition, &n) in counts.iter().enumerate() {
                let got = &report["partitions"][partition.to_string()];
                assert_eq!(
                    (&got["count"], &got["first"], &got["last"], &got["gaps"]),
                    (
                        &Value::from(n),
                        &Value::from(0),
                        &Value::from(n - 1),
                        &Value::from(0)
                    ),
                    "partition {partition}: deliveries"
                );
            }
        },
        |node, topic, round| {
            let out = tmp.path().join(format!("read-{round}"));
            let bootstrap = kafka(node);
            let partitions = MILLION_PARTITIONS.to_string();
            let args = [
                bootstrap.as_str(),
                topic,
                "--partitions",
                &partitions,
                "--group",
                "million",
                "--out",
                out.to_str().unwrap(),
            ];
            let report = python("consume.py", &args);
            assert_no_errors(&report, "consume.py");
            assert_eq!(report["read"], MILLION, "consume.py");
            let output = std::fs::read(&out).unwrap();
            std::fs::remove_file(&out).unwrap();
            output
        },
    );
}
