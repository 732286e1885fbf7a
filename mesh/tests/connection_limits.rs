//! Connection limits on the p2p listeners: a node holds at most its configured number of
//! connections from one peer, of established inbound connections and of connections still in
//! their handshake; a connection over a limit is closed, the limit hit is told to the node, and
//! the place frees up once a connection closes. One peer holding all it may does not keep other
//! peers out.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{SwarmEvent, dummy};
use libp2p::{SwarmBuilder, noise, tcp, yamux};
use rafka_mesh::{
    ConnectionLimit, ConnectionLimits, Keypair, LimitHits, Mesh, MeshConfig, Multiaddr, Protocol,
};
use tokio::sync::watch;
use tokio_util::task::AbortOnDropHandle;

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
        self.wait_for_n(limit, 1).await
    }

    /// Waits (up to 10 s) until `limit` was hit at least `n` times; returns its hits.
    async fn wait_for_n(&self, limit: ConnectionLimit, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let hits = self.of(limit);
            if hits.len() >= n {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "{limit:?} hit {} times, not {n}: {hits:?}",
                hits.len()
            );
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

/// What a flooding peer's connections came to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Flood {
    /// Established and still open.
    open: usize,
    /// Established, then closed.
    closed: usize,
    /// Never established.
    failed: usize,
}

/// A peer (`identity`) that opens `connections` connections to `addr` (a node's data- or
/// control-plane address, `/p2p/<id>` included), as plain libp2p (tcp, noise, yamux) with no
/// protocol of its own, and keeps every connection the node lets it keep. The returned watch says
/// what came of them; dropping the returned guard closes them all.
fn flood(
    identity: &Keypair,
    addr: &Multiaddr,
    connections: usize,
) -> (watch::Receiver<Flood>, AbortOnDropHandle<()>) {
    let mut swarm = SwarmBuilder::with_existing_identity(identity.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| dummy::Behaviour)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    let Some(Protocol::P2p(node)) = addr.iter().last() else {
        panic!("{addr} names no peer");
    };
    for _ in 0..connections {
        let opts = DialOpts::peer_id(node)
            .condition(PeerCondition::Always)
            .addresses(vec![addr.clone()])
            .build();
        swarm.dial(opts).unwrap();
    }
    let (tx, rx) = watch::channel(Flood::default());
    let task = tokio::spawn(async move {
        let mut flood = Flood::default();
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => flood.open += 1,
                SwarmEvent::ConnectionClosed { .. } => {
                    flood.open -= 1;
                    flood.closed += 1;
                }
                SwarmEvent::OutgoingConnectionError { .. } => flood.failed += 1,
                _ => continue,
            }
            tx.send_replace(flood);
        }
    });
    (rx, AbortOnDropHandle::new(task))
}

/// Waits (up to 10 s) until the flood has `open` connections open and the rest refused.
async fn wait_flood(flood: &mut watch::Receiver<Flood>, connections: usize, open: usize) {
    let settled = |f: &Flood| f.open == open && f.closed + f.failed == connections - open;
    let waited = tokio::time::timeout(Duration::from_secs(10), flood.wait_for(settled))
        .await
        .is_ok_and(|seen| seen.is_ok());
    assert!(
        waited,
        "the flood never settled at {open} open of {connections}: {:?}",
        *flood.borrow()
    );
}

#[tokio::test]
async fn connections_over_the_per_peer_limit_are_refused_and_other_peers_still_connect() {
    const PER_PEER: u32 = 2;
    const FLOOD: usize = 6;
    let hits = Arc::new(Hits::default());
    let limits = ConnectionLimits {
        per_peer: PER_PEER,
        ..ConnectionLimits::default()
    };
    let (node, addr) = echo_node(limits, hits.clone()).await;
    let id = node.local_peer_id();
    let data = addr.clone().with(Protocol::P2p(id));
    let control = node.control_addrs().await[0]
        .clone()
        .with(Protocol::P2p(id));

    // One peer opens six connections to each plane: two stay, four are refused on each.
    let flooder = Keypair::generate_ed25519();
    let flooder_id = flooder.public().to_peer_id().to_string();
    let (mut on_data, _data_flood) = flood(&flooder, &data, FLOOD);
    let (mut on_control, _control_flood) = flood(&flooder, &control, FLOOD);
    wait_flood(&mut on_data, FLOOD, PER_PEER as usize).await;
    wait_flood(&mut on_control, FLOOD, PER_PEER as usize).await;
    let refused = FLOOD - PER_PEER as usize;
    let told = hits.wait_for_n(ConnectionLimit::PerPeer, 2 * refused).await;
    for plane in ["data plane", "control plane"] {
        let on_plane = told.iter().filter(|what| what.contains(plane)).count();
        assert_eq!(on_plane, refused, "{plane}: {told:?}");
    }
    assert!(
        told.iter().all(|what| what.contains(&flooder_id)
            && what.contains("at most 2 established connections per peer")),
        "hits: {told:?}"
    );
    assert!(hits.of(ConnectionLimit::EstablishedIncoming).is_empty());

    // Meanwhile a node joins through the data plane (membership on the control plane), and it
    // and a client have their requests answered.
    let (joiner, _inbound) = Mesh::start(
        Keypair::generate_ed25519(),
        MeshConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            control_listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            mdns: false,
            bootstrap: vec![data.clone()],
            ..MeshConfig::default()
        },
    )
    .await
    .unwrap();
    let joiner_id = joiner.local_peer_id();
    let mut view = node.membership();
    let joined = tokio::time::timeout(
        Duration::from_secs(20),
        view.wait_for(|v| v.member(&joiner_id).is_some_and(|m| m.is_live())),
    )
    .await
    .is_ok_and(|seen| seen.is_ok());
    assert!(
        joined,
        "the joiner never became a live member: {:?}",
        *view.borrow()
    );
    echo_within(&joiner, &node, &addr, Duration::from_secs(10))
        .await
        .unwrap();
    let client = client().await;
    echo(&client, &node, &addr).await.unwrap();

    // The flooder kept the connections it was allowed on each plane, and nobody else was refused.
    assert_eq!(on_data.borrow().open, PER_PEER as usize);
    assert_eq!(on_control.borrow().open, PER_PEER as usize);
    let told = hits.of(ConnectionLimit::PerPeer);
    assert!(
        told.len() == 2 * refused && told.iter().all(|what| what.contains(&flooder_id)),
        "hits: {told:?}"
    );
}
