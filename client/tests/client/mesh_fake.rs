//! The client over the libp2p mesh transport: a mesh peer in role `Node` answers the Kafka
//! frames it receives with the in-memory broker, so the real transport is exercised without a
//! rafka-node process.

use std::time::Duration;

use rafka_client::connection::FrameTransport;
use rafka_client::testing::FakeBroker;
use rafka_client::{
    Bootstrap, Client, ClientConfig, Consumer, ConsumerConfig, Producer, ProducerConfig,
    ProducerRecord, SeekTo, TopicPartition,
};
use rafka_mesh::{Keypair, Mesh, MeshConfig, Role};

/// Starts a mesh node on a loopback port that serves `broker`; returns its multiaddr (no peer id).
async fn serve_over_mesh(broker: FakeBroker) -> (Mesh, String) {
    let config = MeshConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        role: Role::Node,
        ..MeshConfig::default()
    };
    let (mesh, mut inbound) = Mesh::start(Keypair::generate_ed25519(), config)
        .await
        .unwrap();
    let addr = mesh.listen_addrs().await.first().unwrap().to_string();
    tokio::spawn(async move {
        while let Some(request) = inbound.kafka.recv().await {
            let response = broker.call(request.frame, true).await;
            let frame = match response {
                Ok(Some(frame)) => frame,
                _ => bytes::Bytes::new(),
            };
            let _ = request.reply.send(frame);
        }
    });
    (mesh, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_consume_over_the_mesh() {
    let broker = FakeBroker::new();
    broker.create_topic("m", 2);
    let (_mesh, addr) = serve_over_mesh(broker.clone()).await;
    // No /p2p/ suffix: the client dials and learns the peer id.
    let client = Client::connect(ClientConfig::new(Bootstrap::parse(&addr).unwrap()))
        .await
        .unwrap();

    let producer = Producer::new(client.clone(), ProducerConfig::default()).unwrap();
    let mut deliveries = Vec::new();
    for i in 0..500 {
        let record = ProducerRecord::new("m", format!("v{i}")).with_partition(i % 2);
        deliveries.push(producer.send(record).await.unwrap());
    }
    for d in deliveries {
        d.await.unwrap();
    }
    producer.close().await;
    assert_eq!(broker.log_end("m", 0) + broker.log_end("m", 1), 500);

    let mut consumer = Consumer::new(client.clone(), ConsumerConfig::default()).unwrap();
    let tp = TopicPartition::new("m", 1);
    consumer.assign([tp.clone()]);
    consumer.seek(&tp, SeekTo::Beginning).unwrap();
    let mut got = Vec::new();
    while got.len() < 250 {
        let records = consumer.poll(Duration::from_secs(10)).await.unwrap();
        assert!(!records.is_empty());
        got.extend(records.into_iter().map(|r| r.value.unwrap()));
    }
    let expected: Vec<_> = (0..500)
        .filter(|i| i % 2 == 1)
        .map(|i| bytes::Bytes::from(format!("v{i}")))
        .collect();
    assert_eq!(got, expected, "partition order is kept over the mesh");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_over_the_mesh_gets_no_response() {
    let broker = FakeBroker::new();
    broker.create_topic("z", 1);
    let (_mesh, addr) = serve_over_mesh(broker.clone()).await;
    let client = Client::connect(ClientConfig::new(Bootstrap::parse(&addr).unwrap()))
        .await
        .unwrap();
    let config = ProducerConfig {
        acks: rafka_client::Acks::None,
        ..Default::default()
    };
    let producer = Producer::new(client.clone(), config).unwrap();
    let md = producer
        .send(ProducerRecord::new("z", "x"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(md.offset, -1);
    producer.close().await;
    assert_eq!(broker.log_end("z", 0), 1);
}

#[tokio::test]
async fn unreachable_mesh_bootstrap_is_a_clear_error() {
    let err = Client::connect(ClientConfig::new(
        Bootstrap::parse("/ip4/127.0.0.1/tcp/1").unwrap(),
    ))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
}
