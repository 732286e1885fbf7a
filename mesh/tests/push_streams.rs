//! Push streams (`/rafka/push/stream/1`) between two real swarms on loopback.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rafka_mesh::{Keypair, Mesh, MeshError};

mod common;
use common::{client_config, node_config};

async fn node_and_client() -> (Mesh, Mesh) {
    let (node, _inbound) = Mesh::start(Keypair::generate_ed25519(), node_config())
        .await
        .unwrap();
    let addr = node.listen_addrs().await.into_iter().next().unwrap();
    let (client, _) = Mesh::start(Keypair::generate_ed25519(), client_config())
        .await
        .unwrap();
    client.dial(addr).await.unwrap();
    (node, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_cross_a_push_stream_whole_and_in_order_both_ways() {
    let (node, client) = node_and_client().await;
    let mut incoming = node.accept_push_streams().unwrap();
    assert!(
        node.accept_push_streams().is_err(),
        "a node accepts push streams once"
    );
    let server = tokio::spawn(async move {
        let mut stream = incoming.next().await.unwrap();
        // Echo every frame, then announce the end by closing.
        let mut seen = 0;
        while let Some(frame) = stream.next_frame().await {
            let frame = frame.unwrap();
            stream.send(&frame).await.unwrap();
            seen += 1;
        }
        stream.close().await;
        (stream.peer(), seen)
    });

    let mut stream = client.open_push_stream(node.local_peer_id()).await.unwrap();
    // Sizes around the read chunk, an empty frame, and one spanning many chunks.
    let sizes = [0usize, 1, 3, 4, 100, 8_191, 8_192, 8_193, 65_536];
    for (i, size) in sizes.iter().enumerate() {
        let frame: Vec<u8> = (0..*size).map(|b| (b + i) as u8).collect();
        stream.send(&frame).await.unwrap();
    }
    for (i, size) in sizes.iter().enumerate() {
        // Each read is raced against a timer that fires first at least once for the larger
        // frames: an interrupted read must not lose the bytes it had taken.
        let frame = loop {
            tokio::select! {
                frame = stream.next_frame() => break frame.unwrap().unwrap(),
                () = tokio::time::sleep(Duration::from_micros(50)) => {}
            }
        };
        let expected: Vec<u8> = (0..*size).map(|b| (b + i) as u8).collect();
        assert_eq!(frame.len(), *size, "frame {i}");
        assert_eq!(&frame[..], &expected[..], "frame {i}");
    }
    stream.close().await;
    let (peer, seen) = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(peer, client.local_peer_id());
    assert_eq!(seen, sizes.len());
    assert!(
        stream.next_frame().await.is_none(),
        "the node closed its side after the echo loop ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_a_request_frame_over_its_limit() {
    let (node, client) = node_and_client().await;
    let mut incoming = node.accept_push_streams().unwrap();
    let server = tokio::spawn(async move {
        let mut stream = incoming.next().await.unwrap();
        stream.next_frame().await
    });
    let mut stream = client.open_push_stream(node.local_peer_id()).await.unwrap();
    let oversized = vec![7u8; rafka_mesh::push_stream::MAX_REQUEST + 1];
    // The node reads the length and gives up before the body arrives.
    let _ = stream.send(&oversized).await;
    let read = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
    let error = read.unwrap().unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData, "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_does_not_accept_push_streams_is_reported_unsupported() {
    let (node, client) = node_and_client().await;
    match client.open_push_stream(node.local_peer_id()).await {
        Err(MeshError::Unsupported { peer, protocol }) => {
            assert_eq!(peer, node.local_peer_id());
            assert_eq!(protocol, "/rafka/push/stream/1");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
}
