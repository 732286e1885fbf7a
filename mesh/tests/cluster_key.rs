//! The cluster key at the handshake: peers with the same key talk (Kafka frames on the data
//! plane, membership on the control plane); a wrong key, a missing key and a key the peer does
//! not have are all refused, each by name on the side that can tell.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use rafka_mesh::{ClusterKey, Keypair, Mesh, MeshConfig, Multiaddr};

fn node_config(key: Option<ClusterKey>, bootstrap: Vec<Multiaddr>) -> MeshConfig {
    MeshConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        control_listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        mdns: false,
        bootstrap,
        cluster_key: key,
        ..MeshConfig::default()
    }
}

fn client_config(key: Option<ClusterKey>) -> MeshConfig {
    MeshConfig {
        mdns: false,
        cluster_key: key,
        ..MeshConfig::client()
    }
}

/// A node with `key` that answers every Kafka frame with `echo:` and the frame.
async fn echo_node(key: Option<ClusterKey>) -> (Mesh, Multiaddr) {
    common::echo_node(node_config(key, vec![])).await
}

async fn client(key: Option<ClusterKey>) -> Mesh {
    Mesh::start(Keypair::generate_ed25519(), client_config(key))
        .await
        .unwrap()
        .0
}

#[tokio::test]
async fn the_same_key_connects_and_carries_frames() {
    let key = ClusterKey::generate().unwrap();
    let (node, addr) = echo_node(Some(key)).await;
    let client = client(Some(key)).await;
    let peer = client.dial(addr).await.unwrap();
    assert_eq!(peer, node.local_peer_id());
    let answer = client
        .kafka_request(peer, Bytes::from_static(b"hello"), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(&answer[..], b"echo:hello");
}

#[tokio::test]
async fn a_wrong_key_is_refused_by_name() {
    let (_node, addr) = echo_node(Some(ClusterKey::generate().unwrap())).await;
    let client = client(Some(ClusterKey::generate().unwrap())).await;
    let err = client.dial(addr).await.unwrap_err().to_string();
    assert!(err.contains("wrong cluster key"), "{err}");
}

#[tokio::test]
async fn a_keyless_peer_cannot_connect_to_a_keyed_node_nor_the_reverse() {
    let key = ClusterKey::generate().unwrap();
    let (_keyed, keyed_addr) = echo_node(Some(key)).await;
    let keyless = client(None).await;
    let err = keyless.dial(keyed_addr).await.unwrap_err().to_string();
    assert!(
        err.contains("requires a cluster key") || err.contains("may require a cluster key"),
        "{err}"
    );

    // A keyed peer dialling a keyless node: the node closes on the nonce it cannot read.
    let (_open, open_addr) = echo_node(None).await;
    let keyed = client(Some(key)).await;
    let started = std::time::Instant::now();
    let err = keyed.dial(open_addr).await.unwrap_err().to_string();
    assert!(err.contains("cluster-key handshake"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused only after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn nodes_with_the_key_form_a_membership_and_others_stay_out() {
    let key = ClusterKey::generate().unwrap();
    let start = |key, bootstrap| async move {
        let (mesh, inbound) = Mesh::start(Keypair::generate_ed25519(), node_config(key, bootstrap))
            .await
            .unwrap();
        (mesh, inbound)
    };
    let (first, _a) = start(Some(key), vec![]).await;
    let seed = first.listen_addrs().await.into_iter().next().unwrap();
    let (second, _b) = start(Some(key), vec![seed.clone()]).await;
    let (stranger, _c) = start(Some(ClusterKey::generate().unwrap()), vec![seed]).await;
    let mut view = first.membership();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let seen = view.borrow_and_update().clone();
        if seen
            .member(&second.local_peer_id())
            .is_some_and(|m| m.is_live())
        {
            assert!(seen.member(&stranger.local_peer_id()).is_none());
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second node never joined: {seen:?}"
        );
        let _ = tokio::time::timeout_at(deadline, view.changed()).await;
    }
    // The stranger dialled the same seed (its first bootstrap round runs at start) and knows
    // nobody.
    assert!(stranger.membership().borrow().live().count() <= 1);
}
