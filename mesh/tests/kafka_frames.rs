//! Two real swarms on loopback exchange Kafka frames over `/rafka/kafka/1`.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use rafka_mesh::{Keypair, Mesh, MeshConfig, Multiaddr};

mod common;

fn node_config() -> MeshConfig {
    MeshConfig {
        max_frame_bytes: 64 * 1024,
        ..common::node_config()
    }
}

async fn listen_addr(mesh: &Mesh) -> Multiaddr {
    // `Mesh::start` returns once listeners are bound, so the OS-assigned port is known now.
    mesh.listen_addrs()
        .await
        .into_iter()
        .next()
        .expect("a bound listen address")
}

#[tokio::test]
async fn client_sends_frames_and_node_answers() {
    let (node, inbound) = Mesh::start(Keypair::generate_ed25519(), node_config())
        .await
        .unwrap();
    let mut inbound = inbound.kafka;
    tokio::spawn(async move {
        while let Some(request) = inbound.recv().await {
            let mut answer = b"echo:".to_vec();
            answer.extend_from_slice(&request.frame);
            let _ = request.reply.send(Bytes::from(answer));
        }
    });
    let addr = listen_addr(&node).await;

    let (client, _) = Mesh::start(Keypair::generate_ed25519(), common::client_config())
        .await
        .unwrap();
    let peer = client.dial(addr.clone()).await.unwrap();
    assert_eq!(peer, node.local_peer_id());

    // Many requests in flight at once all come back matched to their request.
    let mut tasks = Vec::new();
    for i in 0..64u32 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let body = Bytes::from(format!("request {i}"));
            let response = client
                .kafka_request(peer, body.clone(), Duration::from_secs(10))
                .await
                .unwrap();
            assert_eq!(
                &response[..],
                [&b"echo:"[..], &body[..]].concat().as_slice()
            );
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    // Dialing with the /p2p suffix resolves to the same peer.
    let with_id: Multiaddr = format!("{addr}/p2p/{peer}").parse().unwrap();
    assert_eq!(client.dial(with_id).await.unwrap(), peer);

    // An oversized frame is refused, and the node keeps serving afterwards.
    let too_big = Bytes::from(vec![0u8; 128 * 1024]);
    assert!(
        client
            .kafka_request(peer, too_big, Duration::from_secs(10))
            .await
            .is_err()
    );
    let after = client
        .kafka_request(
            peer,
            Bytes::from_static(b"still there"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(&after[..], b"echo:still there");
}

#[tokio::test]
async fn dialing_nothing_fails_cleanly() {
    let (client, _) = Mesh::start(Keypair::generate_ed25519(), common::client_config())
        .await
        .unwrap();
    // Port 1 on loopback: nothing listens there.
    let err = client
        .dial("/ip4/127.0.0.1/tcp/1".parse().unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

/// Each Kafka request ends at its own deadline, not at the swarm's request timeout: with a
/// request timeout of 1 s on both sides, a request the node answers after 2 s succeeds when its
/// deadline is 10 s (a long-poll Fetch, a JoinGroup waiting for a rebalance), and one whose
/// deadline is 500 ms fails at that deadline.
#[tokio::test]
async fn a_kafka_request_ends_at_its_own_deadline_not_at_the_request_timeout() {
    let short = Duration::from_secs(1);
    let answer_after = Duration::from_secs(2);
    let config = MeshConfig {
        request_timeout: short,
        ..node_config()
    };
    let (node, inbound) = Mesh::start(Keypair::generate_ed25519(), config)
        .await
        .unwrap();
    let mut inbound = inbound.kafka;
    tokio::spawn(async move {
        while let Some(request) = inbound.recv().await {
            tokio::spawn(async move {
                tokio::time::sleep(answer_after).await;
                let _ = request.reply.send(request.frame);
            });
        }
    });
    let addr = listen_addr(&node).await;
    let client_config = MeshConfig {
        request_timeout: short,
        ..common::client_config()
    };
    let (client, _) = Mesh::start(Keypair::generate_ed25519(), client_config)
        .await
        .unwrap();
    let peer = client.dial(addr).await.unwrap();

    let started = std::time::Instant::now();
    let answer = client
        .kafka_request(peer, Bytes::from_static(b"long"), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(&answer[..], b"long");
    assert!(started.elapsed() >= answer_after);

    let started = std::time::Instant::now();
    let failed = client
        .kafka_request(
            peer,
            Bytes::from_static(b"short"),
            Duration::from_millis(500),
        )
        .await;
    let took = started.elapsed();
    assert!(failed.is_err(), "answered after its deadline: {failed:?}");
    assert!(
        took >= Duration::from_millis(500) && took < answer_after,
        "failed after {took:?}"
    );
    client.shutdown().await;
    node.shutdown().await;
}
