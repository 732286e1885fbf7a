//! The same round trip over plain Kafka TCP: works against Rafka's Kafka port or any Kafka broker.
//!
//! ```sh
//! cargo run -p rafka-examples --example produce_consume_tcp -- --kafka 127.0.0.1:9092
//! ```

use std::time::Duration;

use anyhow::{Context, bail};
use rafka_client::{
    Admin, Bootstrap, Client, ClientConfig, Consumer, ConsumerConfig, Error, NewTopic, OffsetReset,
    Producer, ProducerConfig, ProducerRecord,
};

const TOPIC: &str = "produce-consume-tcp";

fn kafka_address() -> anyhow::Result<String> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (Some("--kafka"), Some(addr)) => Ok(addr),
        (None, _) => Ok("127.0.0.1:9092".into()),
        _ => bail!("usage: produce_consume_tcp [--kafka HOST:PORT]"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = kafka_address()?;
    let client = Client::connect(ClientConfig::new(Bootstrap::kafka(&addr)?))
        .await
        .with_context(|| format!("connect to {addr}"))?;
    match Admin::new(client.clone())
        .create_topic(NewTopic::new(TOPIC, 3))
        .await
    {
        Ok(()) | Err(Error::TopicAlreadyExists { .. }) => {}
        Err(e) => return Err(e).context("create topic"),
    }

    let producer = Producer::new(client.clone(), ProducerConfig::default())?;
    let mut deliveries = Vec::new();
    for i in 0..30 {
        let record =
            ProducerRecord::new(TOPIC, format!("message {i}")).with_key(format!("k{}", i % 7));
        deliveries.push(producer.send(record).await?);
    }
    for delivery in deliveries {
        delivery.await?;
    }
    producer.close().await;
    println!("produced 30 records");

    let config = ConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        ..Default::default()
    };
    let mut consumer = Consumer::new(client.clone(), config)?;
    consumer
        .assign_topic(TOPIC, Duration::from_secs(10))
        .await?;
    let mut count = 0;
    loop {
        let records = consumer.poll(Duration::from_secs(2)).await?;
        if records.is_empty() {
            break;
        }
        count += records.len();
    }
    println!("consumed {count} records (every record ever produced to {TOPIC})");
    client.shutdown().await;
    Ok(())
}
