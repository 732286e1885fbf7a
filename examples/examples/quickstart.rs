//! Produce a few records and read them back through the library.
//!
//! ```sh
//! RAFKA_BOOTSTRAP=/ip4/127.0.0.1/tcp/7070 cargo run -p rafka-examples --example quickstart
//! ```
//!
//! `RAFKA_BOOTSTRAP` is a multiaddr (the libp2p mesh) or `HOST:PORT` (plain Kafka over TCP).

use std::time::Duration;

use anyhow::Context;
use rafka_client::bootstrap::DEFAULT_BOOTSTRAP;
use rafka_client::{
    Admin, Bootstrap, Client, ClientConfig, Consumer, ConsumerConfig, Error, NewTopic, Producer,
    ProducerConfig, ProducerRecord, SeekTo, TopicPartition,
};

const TOPIC: &str = "quickstart";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bootstrap = std::env::var("RAFKA_BOOTSTRAP").unwrap_or_else(|_| DEFAULT_BOOTSTRAP.into());
    let config = ClientConfig::new(Bootstrap::parse(&bootstrap)?);
    let client = Client::connect(config)
        .await
        .with_context(|| format!("connect to {bootstrap}"))?;
    run(&client).await?;
    client.shutdown().await;
    Ok(())
}

/// Creates the topic (if needed), produces five records, and consumes them back.
pub async fn run(client: &Client) -> anyhow::Result<()> {
    match Admin::new(client.clone())
        .create_topic(NewTopic::new(TOPIC, 1))
        .await
    {
        Ok(()) | Err(Error::TopicAlreadyExists { .. }) => {}
        Err(e) => return Err(e).context("create topic"),
    }

    let producer = Producer::new(client.clone(), ProducerConfig::default())?;
    let mut deliveries = Vec::new();
    for i in 0..5 {
        let record = ProducerRecord::new(TOPIC, format!("hello {i}")).with_key(format!("key-{i}"));
        deliveries.push(producer.send(record).await?);
    }
    let mut first_offset = None;
    for delivery in deliveries {
        let md = delivery.await?;
        println!(
            "produced to {}-{} at offset {}",
            md.topic, md.partition, md.offset
        );
        first_offset.get_or_insert(md.offset);
    }
    producer.close().await;

    let mut consumer = Consumer::new(client.clone(), ConsumerConfig::default())?;
    let tp = TopicPartition::new(TOPIC, 0);
    consumer.assign([tp.clone()]);
    consumer.seek(&tp, SeekTo::Offset(first_offset.unwrap_or(0)))?;
    let mut seen = 0;
    while seen < 5 {
        let records = consumer.poll(Duration::from_secs(5)).await?;
        anyhow::ensure!(!records.is_empty(), "no records within 5 s");
        for r in records.iter().take(5 - seen) {
            let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
            println!("consumed offset {}: {value}", r.offset);
        }
        seen += records.len().min(5 - seen);
    }
    Ok(())
}
