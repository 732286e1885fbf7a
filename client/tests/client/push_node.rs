//! Push subscription against a `rafka-node` process over the mesh: every committed record
//! exactly once and in offset order per partition, the history by Fetch joined to the live
//! records by push without a hole at the seam, and `rafka subscribe`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::Node;
use rafka_client::admin::Admin;
use rafka_client::{
    Bootstrap, Client, ClientConfig, NewTopic, Producer, ProducerConfig, ProducerRecord, StartAt,
    Subscription, SubscriptionConfig, TopicPartition,
};

/// Generous bound for each wait.
const STEP: Duration = Duration::from_secs(30);

async fn connect(node: &Node) -> Client {
    Client::connect(ClientConfig::new(Bootstrap::parse(&node.p2p).unwrap()))
        .await
        .expect("connect")
}

/// Produces `count` records to `topic` (values `<tag>-<i>`) and returns each one's partition
/// and offset with its value.
async fn produce(client: &Client, topic: &str, tag: &str, count: usize) -> Vec<(i32, i64, String)> {
    let producer = Producer::new(client.clone(), ProducerConfig::default()).unwrap();
    let mut pending = Vec::new();
    for i in 0..count {
        let value = format!("{tag}-{i}");
        let record = ProducerRecord::new(topic, value.clone()).with_key(format!("k{}", i % 13));
        pending.push((value, producer.send(record).await.unwrap()));
    }
    let mut out = Vec::new();
    for (value, delivery) in pending {
        let md = delivery.await.expect("delivered");
        out.push((md.partition, md.offset, value));
    }
    producer.close().await;
    out
}

/// Reads from `subscription` until every partition reached its end in `ends`; returns what came,
/// per partition, in arrival order.
async fn read_until(
    subscription: &mut Subscription,
    ends: &BTreeMap<i32, i64>,
) -> BTreeMap<i32, Vec<(i64, String)>> {
    let mut got: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    let deadline = Instant::now() + STEP;
    let done = |got: &BTreeMap<i32, Vec<(i64, String)>>| {
        ends.iter().all(|(p, end)| {
            *end == 0
                || got
                    .get(p)
                    .and_then(|v| v.last())
                    .is_some_and(|(o, _)| o + 1 >= *end)
        })
    };
    while !done(&got) {
        assert!(
            Instant::now() < deadline,
            "subscription stalled: got up to {:?}, want {ends:?}; stats {:?}",
            got.iter()
                .map(|(p, v)| (*p, v.last().map(|(o, _)| *o)))
                .collect::<Vec<_>>(),
            subscription.stats()
        );
        for r in subscription.poll(Duration::from_secs(1)).await.unwrap() {
            let value = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
            got.entry(r.partition).or_default().push((r.offset, value));
        }
    }
    got
}

/// Every offset from `starts` to `ends` once, in order, with the value produced there.
fn check_exactly_once_in_order(
    got: &BTreeMap<i32, Vec<(i64, String)>>,
    produced: &[(i32, i64, String)],
    starts: &BTreeMap<i32, i64>,
) {
    for (partition, records) in got {
        let start = starts.get(partition).copied().unwrap_or(0);
        let offsets: Vec<i64> = records.iter().map(|(o, _)| *o).collect();
        let expected: Vec<i64> = (start..start + offsets.len() as i64).collect();
        assert_eq!(
            offsets, expected,
            "partition {partition}: offsets once each, in order"
        );
        for (offset, value) in records {
            let wanted = produced
                .iter()
                .find(|(p, o, _)| p == partition && o == offset)
                .map(|(_, _, v)| v);
            assert_eq!(wanted, Some(value), "partition {partition} offset {offset}");
        }
    }
}

fn ends_of(produced: &[(i32, i64, String)], partitions: i32) -> BTreeMap<i32, i64> {
    let mut ends: BTreeMap<i32, i64> = (0..partitions).map(|p| (p, 0)).collect();
    for (p, o, _) in produced {
        let end = ends.entry(*p).or_default();
        *end = (*end).max(o + 1);
    }
    ends
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_gets_the_history_then_the_live_records_each_once_in_order() {
    let Some(node) = Node::start() else { return };
    let client = connect(&node).await;
    Admin::new(client.clone())
        .create_topic(NewTopic::new("pushed", 3))
        .await
        .expect("create");
    let mut produced = produce(&client, "pushed", "old", 300).await;
    let mut subscription = Subscription::new(
        client.clone(),
        &["pushed"],
        StartAt::Beginning,
        SubscriptionConfig::default(),
    )
    .await
    .expect("subscribe");
    // The history first (by Fetch), then records produced while subscribed.
    let history = read_until(&mut subscription, &ends_of(&produced, 3)).await;
    let live = tokio::spawn({
        let client = client.clone();
        async move { produce(&client, "pushed", "new", 2000).await }
    });
    produced.extend(live.await.unwrap());
    let mut got = read_until(&mut subscription, &ends_of(&produced, 3)).await;
    for (p, mut records) in history {
        let rest = got.remove(&p).unwrap_or_default();
        records.extend(rest);
        got.insert(p, records);
    }
    check_exactly_once_in_order(&got, &produced, &BTreeMap::new());
    let stats = subscription.stats();
    eprintln!("{stats:?}");
    assert!(
        stats.counts.pushed > 0,
        "live records came by push: {stats:?}"
    );
    // Nothing more arrives: no duplicate after the end.
    let extra = subscription
        .poll(Duration::from_millis(1500))
        .await
        .unwrap();
    assert!(extra.is_empty(), "records past the end: {extra:?}");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_from_an_offset_misses_nothing_at_the_seam_between_fetch_and_push() {
    let Some(node) = Node::start() else { return };
    let client = connect(&node).await;
    Admin::new(client.clone())
        .create_topic(NewTopic::new("seam", 1))
        .await
        .expect("create");
    let mut produced = produce(&client, "seam", "old", 100).await;
    let tp = TopicPartition::new("seam", 0);
    let mut subscription = Subscription::new(
        client.clone(),
        &["seam"],
        StartAt::Offsets([(tp.clone(), 50)].into()),
        SubscriptionConfig::default(),
    )
    .await
    .expect("subscribe");
    // Records produced while the history fetch may still be out: the seam.
    let live = tokio::spawn({
        let client = client.clone();
        async move { produce(&client, "seam", "new", 500).await }
    });
    produced.extend(live.await.unwrap());
    let mut got = read_until(&mut subscription, &ends_of(&produced, 1)).await;
    // Once caught up, what is produced next comes by push.
    let before = subscription.stats().counts;
    produced.extend(produce(&client, "seam", "later", 100).await);
    for (p, records) in read_until(&mut subscription, &ends_of(&produced, 1)).await {
        got.entry(p).or_default().extend(records);
    }
    check_exactly_once_in_order(&got, &produced, &[(0, 50)].into());
    assert_eq!(got[&0].len(), 650);
    assert_eq!(subscription.position(&tp), Some(700));
    let stats = subscription.stats();
    assert!(
        before.fetched >= 50,
        "the history came by Fetch: {before:?}"
    );
    assert!(
        stats.counts.pushed > before.pushed,
        "records after the seam came by push: {stats:?}"
    );
    client.shutdown().await;
}

#[test]
fn rafka_subscribe_prints_like_consume() {
    let Some(node) = Node::start() else { return };
    let rafka = |args: &[&str], stdin: &[u8]| {
        let out = crate::node_e2e::rafka(&["--bootstrap", &node.p2p], args, stdin);
        assert!(
            out.status.success(),
            "rafka {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    rafka(&["topic", "create", "cli-push", "--partitions", "2"], b"");
    let input: String = (0..200).map(|i| format!("k{}:v{i}\n", i % 7)).collect();
    rafka(
        &["produce", "cli-push", "--key-separator", ":"],
        input.as_bytes(),
    );
    let out = rafka(
        &[
            "subscribe",
            "cli-push",
            "--from-beginning",
            "-n",
            "200",
            "--timeout-ms",
            "20000",
            "--format",
            "%p %o %k %v\\n",
        ],
        b"",
    );
    let text = String::from_utf8(out).unwrap();
    let mut next: BTreeMap<i64, i64> = BTreeMap::new();
    let mut values = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let [p, o, _k, v] = fields[..] else {
            panic!("line {line:?}")
        };
        let (p, o): (i64, i64) = (p.parse().unwrap(), o.parse().unwrap());
        let expected = next.entry(p).or_default();
        assert_eq!(o, *expected, "partition {p}: offsets in order, once each");
        *expected += 1;
        values.push(v.to_string());
    }
    values.sort();
    let mut want: Vec<String> = (0..200).map(|i| format!("v{i}")).collect();
    want.sort();
    assert_eq!(values, want);
}
