//! Real swarms on loopback forming a membership: join through one bootstrap address, see each
//! other alive, carry Raft RPCs on the control plane, notice a graceful leave at once and a
//! vanished node within the failure detector's bound.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use rafka_mesh::membership::MemberStatus;
use rafka_mesh::{Inbound, Keypair, Mesh, MeshConfig, Multiaddr, PeerId};

fn node_config(bootstrap: Vec<Multiaddr>, generation: u64) -> MeshConfig {
    MeshConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        control_listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        mdns: false,
        bootstrap,
        generation,
        seed: generation,
        ..MeshConfig::default()
    }
}

async fn start(bootstrap: Vec<Multiaddr>, generation: u64) -> (Mesh, Inbound) {
    Mesh::start(
        Keypair::generate_ed25519(),
        node_config(bootstrap, generation),
    )
    .await
    .unwrap()
}

async fn data_addr(mesh: &Mesh) -> Multiaddr {
    let addr = mesh.listen_addrs().await.into_iter().next().unwrap();
    format!("{addr}/p2p/{}", mesh.local_peer_id())
        .parse()
        .unwrap()
}

/// Waits until `mesh` observes `peer` with `status`; returns how long that took.
async fn wait_for_status(
    mesh: &Mesh,
    peer: PeerId,
    status: MemberStatus,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    let mut view = mesh.membership();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if view
            .borrow_and_update()
            .member(&peer)
            .is_some_and(|m| m.status == status)
        {
            return started.elapsed();
        }
        let changed = tokio::time::timeout_at(deadline, view.changed()).await;
        assert!(
            matches!(changed, Ok(Ok(()))),
            "{} did not see {peer} {status:?} within {within:?}; view: {:?}",
            mesh.local_peer_id(),
            view.borrow()
                .members
                .iter()
                .map(|m| (m.peer_id, m.status))
                .collect::<Vec<_>>()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_through_one_address_and_track_liveness() {
    let (a, _a_in) = start(vec![], 1).await;
    let bootstrap = vec![data_addr(&a).await];
    let (b, mut b_in) = start(bootstrap.clone(), 2).await;
    let (c, _c_in) = start(bootstrap, 3).await;
    let nodes = [&a, &b, &c];
    for observer in nodes {
        for observed in nodes {
            wait_for_status(
                observer,
                observed.local_peer_id(),
                MemberStatus::Alive,
                Duration::from_secs(20),
            )
            .await;
        }
    }
    // C never dialled B: it learned B through A, on both planes.
    let b_member = c
        .membership()
        .borrow()
        .member(&b.local_peer_id())
        .cloned()
        .unwrap();
    assert!(
        !b_member
            .addrs(rafka_mesh::view::CONTROL_ADDRS_KEY)
            .is_empty()
    );

    // Raft RPCs travel on the control plane.
    tokio::spawn(async move {
        while let Some(rpc) = b_in.raft.recv().await {
            let _ = rpc
                .reply
                .send(Bytes::from([b"vote:".as_slice(), &rpc.payload].concat()));
        }
    });
    let answer = c
        .raft_request(b.local_peer_id(), Bytes::from_static(b"term 7"))
        .await
        .unwrap();
    assert_eq!(&answer[..], b"vote:term 7");

    // A graceful leave is seen at once.
    c.leave().await;
    let took = wait_for_status(
        &a,
        c.local_peer_id(),
        MemberStatus::Left,
        Duration::from_secs(5),
    )
    .await;
    eprintln!("left seen after {took:?}");
    assert!(took < Duration::from_secs(1), "left took {took:?}");
    c.shutdown().await;

    // A node that vanishes without a word is declared dead within the failure detector's bound
    // for a peer it has known only briefly: its window starts from samples of mean
    // `initial_interval_ms` and σ half of that, so the peer turns suspect `suspect_sigmas` σ past
    // the mean after its last heartbeat (sent at most when it stopped) and dead `dead_after`
    // later (5.1 s with the defaults), plus 500 ms for ticks and gossip.
    let b_id = b.local_peer_id();
    b.shutdown().await;
    let detector = MeshConfig::default().membership.failure_detector;
    let mean = detector.initial_interval_ms as f64 / 1000.0;
    let sigma = (mean / 2.0).max(detector.min_std_dev_ms as f64 / 1000.0);
    let bound = Duration::from_secs_f64(mean + detector.suspect_sigmas() * sigma)
        + detector.dead_after()
        + Duration::from_millis(500);
    let took = wait_for_status(&a, b_id, MemberStatus::Dead, Duration::from_secs(10)).await;
    eprintln!("dead seen after {took:?} (bound {bound:?})");
    assert!(took < bound, "dead took {took:?}, more than {bound:?}");
}
