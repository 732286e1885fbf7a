//! Connection limits on the p2p listeners: a node holds at most its configured number of
//! established inbound connections and of connections still in their handshake; a connection
//! over either limit is closed, the limit hit is told to the node, and the place frees up once a
//! connection closes.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rafka_mesh::{
    ConnectionLimit, ConnectionLimits, Keypair, LimitHits, Mesh, MeshConfig, Multiaddr, Protocol,
};

/// Every hit, in order.
#[derive(Debug, Default)]
struct Hits(Mutex<Vec<(ConnectionLimit, String)>>);

impl LimitHits for Hits {
    fn hit(&self, limit: ConnectionLimit, what: &str) {
        self.0.lock().unwrap().push((limit, what.to_string()));
    }
}

impl Hits {
    fn of(&self, limit: ConnectionLimit) -> Vec<String> {
        let hits = self.0.lock().unwrap();
        hits.iter()
            .filter(|(l, _)| *l == limit)
            .map(|(_, what)| what.clone())
            .collect()
    }

    /// Waits (up to 10 s) until `limit` was hit at least once; returns its hits.
    async fn wait_for(&self, limit: ConnectionLimit) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let hits = self.of(limit);
            if !hits.is_empty() {
                return hits;
            }
            assert!(Instant::now() < deadline, "{limit:?} never hit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A node with `limits` that answers every Kafka frame with `echo:` and the frame.
async fn echo_node(limits: ConnectionLimits, hits: Arc<Hits>) -> (Mesh, Multiaddr) {
    common::echo_node(MeshConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        control_listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        mdns: false,
        connection_limits: limits,
        limit_hits: Some(hits),
        ..MeshConfig::default()
    })
    .await
}

async fn client() -> Mesh {
    let config = MeshConfig {
        mdns: false,
        ..MeshConfig::client()
    };
    Mesh::start(Keypair::generate_ed25519(), config)
        .await
        .unwrap()
        .0
}

/// One echo round trip from `client` to `node` (dialled at `addr` first).
async fn echo(client: &Mesh, node: &Mesh, addr: &Multiaddr) -> Result<(), String> {
    let peer = node.local_peer_id();
    let addr = addr.clone().with(Protocol::P2p(peer));
    client.dial(addr).await.map_err(|e| e.to_string())?;
    let answer = client
        .kafka_request(peer, Bytes::from_static(b"hi"), Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    if &answer[..] == b"echo:hi" {
        Ok(())
    } else {
        Err(format!("unexpected answer {answer:?}"))
    }
}

/// Retries `echo` until it succeeds or `within` has passed.
async fn echo_within(
    client: &Mesh,
    node: &Mesh,
    addr: &Multiaddr,
    within: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let err = match echo(client, node, addr).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(err);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn established_incoming_connections_are_capped_and_a_closed_one_frees_a_place() {
    let hits = Arc::new(Hits::default());
    let limits = ConnectionLimits {
        established_incoming: 2,
        ..ConnectionLimits::default()
    };
    let (node, addr) = echo_node(limits, hits.clone()).await;
    let first = client().await;
    let second = client().await;
    echo(&first, &node, &addr).await.unwrap();
    echo(&second, &node, &addr).await.unwrap();
    assert!(hits.of(ConnectionLimit::EstablishedIncoming).is_empty());

    // A third peer completes the handshake, then the node closes the connection.
    let third = client().await;
    let refused = echo(&third, &node, &addr).await;
    assert!(refused.is_err(), "a third connection was served");
    let told = hits.wait_for(ConnectionLimit::EstablishedIncoming).await;
    assert!(
        told.iter().any(|what| what.contains("data plane")
            && what.contains(&third.local_peer_id().to_string())
            && what.contains("at most 2")),
        "hits: {told:?}"
    );

    // One of the first two leaves: the third gets its place.
    first.shutdown().await;
    echo_within(&third, &node, &addr, Duration::from_secs(10))
        .await
        .unwrap();
    echo(&second, &node, &addr).await.unwrap();
}

#[tokio::test]
async fn connections_stuck_in_their_handshake_are_capped_and_closing_them_frees_the_listener() {
    let hits = Arc::new(Hits::default());
    let limits = ConnectionLimits {
        pending_incoming: 2,
        ..ConnectionLimits::default()
    };
    let (node, addr) = echo_node(limits, hits.clone()).await;
    let port = addr
        .iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();

    // Two TCP connections that never start the handshake fill the pending places.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        stalled.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    // The node accepts connections in the order they came: the real peer's comes third.
    let peer = client().await;
    assert!(
        echo(&peer, &node, &addr).await.is_err(),
        "a peer was served while two handshakes stalled"
    );
    let told = hits.wait_for(ConnectionLimit::PendingIncoming).await;
    assert!(
        told.iter()
            .all(|what| what.contains("data plane") && what.contains("at most 2")),
        "hits: {told:?}"
    );

    // The stalled connections go away: the listener takes peers again.
    drop(stalled);
    echo_within(&peer, &node, &addr, Duration::from_secs(10))
        .await
        .unwrap();
}
