//! The `rafka` CLI against a `rafka-node` process over the libp2p mesh: a million lines produced
//! from stdin come back byte-identical (every partition's offsets contiguous and in produce order),
//! after a clean restart and after a SIGKILL; `--group` commits resume exactly where they stopped,
//! across a SIGKILL too.
//!
//! Run alone: `cargo build --workspace --bins && cargo nextest run -p rafka-broker --test e2e_cli`.
//! Each test takes ~15-25 s in a debug build on 2 cores (producing the million lines ~4-6 s,
//! each full read ~1.5 s; the rest is this test generating, sorting and comparing).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::process::NodeProcess;
use crate::support::run::{rafka, run};

const PARTITIONS: i32 = 4;
/// Every CLI run gets this long; a stuck client fails the test instead of hanging it.
const CLI_TIMEOUT: Duration = Duration::from_secs(300);
/// Placeholders: partition, offset, value. Values never contain `\n`, so one record is one line.
const FORMAT: &str = "%p %o %v\\n";

/// A deterministic pseudo-random generator (xorshift64*), seeded per line.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// Line `n` of the input: `record-<n>-<payload>` (~100 bytes), except a few that are empty or
/// hold arbitrary non-UTF-8 bytes, NULs, tabs and carriage returns (never `\n`).
fn line(n: usize, out: &mut Vec<u8>) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if n % 99_991 == 17 {
        match (n / 99_991) % 4 {
            0 => {}
            1 => {
                out.extend_from_slice(&[0xff, 0xfe, 0x00, 0xc3, 0x28, b' ']);
                out.extend_from_slice(n.to_string().as_bytes());
                out.push(b'\r');
            }
            2 => {
                out.extend_from_slice(b"\t  spaces %v %% \\n ");
                out.extend_from_slice(n.to_string().as_bytes());
                out.push(b' ');
            }
            _ => {
                out.extend((0x80u8..=0xff).chain(0u8..0x0a));
                out.extend_from_slice(n.to_string().as_bytes());
            }
        }
        return;
    }
    out.extend_from_slice(format!("record-{n:07}-").as_bytes());
    let mut state = (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for _ in 0..11 {
        let bits = xorshift(&mut state);
        out.extend((0..8).map(|i| ALPHABET[((bits >> (i * 6)) & 63) as usize]));
    }
}

/// `records` lines, each ended by `\n`.
fn dataset(records: usize) -> Vec<u8> {
    let mut input = Vec::with_capacity(records * 104);
    for n in 0..records {
        line(n, &mut input);
        input.push(b'\n');
    }
    input
}

/// The lines of `bytes` (every line ended by `\n`).
fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "output ends mid-line"
    );
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    lines.pop();
    lines
}

/// What was produced: the lines sorted, and the input position of every line that occurs once.
struct Expected<'a> {
    sorted: Vec<&'a [u8]>,
    position: HashMap<&'a [u8], usize>,
}

impl<'a> Expected<'a> {
    fn new(input: &'a [u8]) -> Self {
        let lines = lines(input);
        let mut position = HashMap::with_capacity(lines.len());
        let mut repeated = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            if position.insert(*line, i).is_some() {
                repeated.push(*line);
            }
        }
        for line in repeated {
            position.remove(line);
        }
        let mut sorted = lines;
        sorted.sort_unstable();
        Expected { sorted, position }
    }
}

/// One consumed record: (partition, offset, value).
type Consumed<'a> = (i32, i64, &'a [u8]);

/// Parses `--format '%p %o %v\n'` output.
fn parse(output: &[u8]) -> Vec<Consumed<'_>> {
    lines(output)
        .into_iter()
        .map(|line| {
            let mut fields = line.splitn(3, |&b| b == b' ');
            let mut number = || {
                std::str::from_utf8(fields.next().unwrap())
                    .unwrap()
                    .to_owned()
            };
            let partition = number().parse().unwrap();
            let offset = number().parse().unwrap();
            (partition, offset, fields.next().expect("a value field"))
        })
        .collect()
}

/// Records per partition, in the order consumed.
fn by_partition<'a>(records: &[Consumed<'a>]) -> BTreeMap<i32, Vec<(i64, &'a [u8])>> {
    let mut map: BTreeMap<i32, Vec<(i64, &[u8])>> = BTreeMap::new();
    for &(partition, offset, value) in records {
        map.entry(partition).or_default().push((offset, value));
    }
    map
}

/// Asserts that `records` are exactly what was produced: the same multiset of lines, every
/// partition's offsets contiguous from `first[p]`, and each partition's lines in input order.
fn verify(expected: &Expected<'_>, records: &[Consumed<'_>], what: &str) {
    assert_eq!(records.len(), expected.sorted.len(), "{what}: record count");
    for (partition, list) in by_partition(records) {
        assert!(
            (0..PARTITIONS).contains(&partition),
            "{what}: partition {partition}"
        );
        for (i, (offset, _)) in list.iter().enumerate() {
            assert_eq!(
                *offset, i as i64,
                "{what}: partition {partition} offsets not contiguous"
            );
        }
        let positions: Vec<usize> = list
            .iter()
            .filter_map(|(_, v)| expected.position.get(v).copied())
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "{what}: partition {partition} is not in produce order"
        );
    }
    let mut values: Vec<&[u8]> = records.iter().map(|r| r.2).collect();
    values.sort_unstable();
    assert!(
        values == expected.sorted,
        "{what}: consumed lines differ from the produced lines"
    );
}

/// The records in a canonical order, to compare two consumptions of the same log.
fn canonical<'a>(records: &[Consumed<'a>]) -> Vec<Consumed<'a>> {
    let mut sorted = records.to_vec();
    sorted.sort_unstable();
    sorted
}

fn consume(node: &NodeProcess, topic: &str, extra: &[&str]) -> Vec<u8> {
    let mut args = vec!["--bootstrap", &node.ready.p2p, "consume", topic];
    args.extend_from_slice(extra);
    let started = Instant::now();
    let out = run(rafka(&args), b"", CLI_TIMEOUT).ok();
    eprintln!("consume {extra:?}: {:?}", started.elapsed());
    out
}

fn start(dir: &Path) -> NodeProcess {
    let started = Instant::now();
    let node = NodeProcess::start(dir, &[]);
    eprintln!("node ready in {:?}: {:?}", started.elapsed(), node.ready);
    node
}

fn create_topic(node: &NodeProcess, topic: &str) {
    let partitions = PARTITIONS.to_string();
    let args = [
        "--bootstrap",
        &node.ready.p2p,
        "topic",
        "create",
        topic,
        "--partitions",
        &partitions,
    ];
    run(rafka(&args), b"", CLI_TIMEOUT).ok();
}

fn produce(node: &NodeProcess, topic: &str, input: &[u8]) {
    let args = ["--bootstrap", &node.ready.p2p, "produce", topic];
    let out = run(rafka(&args), input, CLI_TIMEOUT);
    eprintln!("produce {} lines: {:?}", lines(input).len(), out.elapsed);
    out.ok();
}

/// Consumes everything with partitions and offsets and checks it against `expected`.
fn consume_all<'o>(
    node: &NodeProcess,
    topic: &str,
    n: &str,
    expected: &Expected<'_>,
    output: &'o mut Vec<u8>,
    what: &str,
) -> Vec<Consumed<'o>> {
    *output = consume(
        node,
        topic,
        &[
            "--from-beginning",
            "-n",
            n,
            "--timeout-ms",
            "30000",
            "--format",
            FORMAT,
        ],
    );
    let records = parse(output);
    verify(expected, &records, what);
    records
}

#[test]
fn process_cli_million_records_survive_restart_and_kill() {
    const RECORDS: usize = 1_000_000;
    const TOPIC: &str = "cli-million";
    let n = RECORDS.to_string();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let test_started = Instant::now();
    let input = dataset(RECORDS);
    let expected = Expected::new(&input);

    let mut node = start(&dir);
    create_topic(&node, TOPIC);
    produce(&node, TOPIC, &input);

    // The default format is the value and a newline: the same bytes as the input, reordered only
    // across partitions.
    let plain = consume(
        &node,
        TOPIC,
        &["--from-beginning", "-n", &n, "--timeout-ms", "30000"],
    );
    assert_eq!(plain.len(), input.len(), "default-format output size");
    let mut plain_lines = lines(&plain);
    plain_lines.sort_unstable();
    assert!(
        plain_lines == expected.sorted,
        "default-format output differs from the input"
    );
    drop(plain_lines);
    drop(plain);

    let mut first_out = Vec::new();
    let first = canonical(&consume_all(
        &node,
        TOPIC,
        &n,
        &expected,
        &mut first_out,
        "first read",
    ));
    let counts: BTreeMap<i32, usize> = by_partition(&first)
        .into_iter()
        .map(|(p, l)| (p, l.len()))
        .collect();
    eprintln!("records per partition: {counts:?}");
    assert_eq!(
        counts.len(),
        PARTITIONS as usize,
        "every partition got records"
    );

    assert!(
        node.terminate(),
        "SIGTERM: clean exit; log:\n{}",
        node.log_text()
    );
    let mut node = start(&dir);
    let mut out = Vec::new();
    let again = consume_all(
        &node,
        TOPIC,
        &n,
        &expected,
        &mut out,
        "after a clean restart",
    );
    assert!(
        canonical(&again) == first,
        "after a clean restart: (partition, offset, value) changed"
    );

    node.kill();
    let node = start(&dir);
    let again = consume_all(&node, TOPIC, &n, &expected, &mut out, "after SIGKILL");
    assert!(
        canonical(&again) == first,
        "after SIGKILL: (partition, offset, value) changed"
    );
    drop(node);
    eprintln!(
        "process_cli_million_records_survive_restart_and_kill: {:?}",
        test_started.elapsed()
    );
}

#[test]
fn process_cli_group_commits_resume_exactly_after_kill() {
    const RECORDS: usize = 1_000_000;
    const HALF: usize = RECORDS / 2;
    const TOPIC: &str = "cli-group";
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let test_started = Instant::now();
    let input = dataset(RECORDS);
    let expected = Expected::new(&input);

    let mut node = start(&dir);
    create_topic(&node, TOPIC);
    produce(&node, TOPIC, &input);

    let half = HALF.to_string();
    let group = ["--group", "g", "--from-beginning", "--format", FORMAT];
    let first_out = consume(&node, TOPIC, &[&group[..], &["-n", &half]].concat());
    let first = parse(&first_out);
    assert_eq!(first.len(), HALF, "first group read");

    // The commit is durable: it survives a SIGKILL.
    node.kill();
    let node = start(&dir);
    // `-n` ends the read at the other half; the idle timeout only ends a read that falls short
    // (it counts from the member's first assignment, and after the restart its first fetch can
    // take seconds on a loaded machine: a 3 s timeout once ended the read with nothing printed).
    // Reading past the committed offsets is not hidden by `-n`: the overlap would break the
    // contiguity `verify` checks below.
    let rest_out = consume(
        &node,
        TOPIC,
        &[&group[..], &["-n", &half, "--timeout-ms", "30000"]].concat(),
    );
    let rest = parse(&rest_out);
    assert_eq!(
        rest.len(),
        RECORDS - HALF,
        "second group read: exactly the other half"
    );

    // Per partition, the first read is a prefix and the second read the rest, with no overlap.
    let first_parts = by_partition(&first);
    for (partition, list) in by_partition(&rest) {
        let resume_at = first_parts.get(&partition).map_or(0, Vec::len) as i64;
        assert_eq!(
            list[0].0, resume_at,
            "partition {partition} resumed at the committed offset"
        );
    }
    let all: Vec<Consumed<'_>> = first.iter().chain(&rest).copied().collect();
    verify(&expected, &all, "both group reads together");
    drop(node);
    eprintln!(
        "process_cli_group_commits_resume_exactly_after_kill: {:?}",
        test_started.elapsed()
    );
}
