//! Shared by the mesh's integration tests: a node that echoes Kafka frames.
#![allow(clippy::unwrap_used, dead_code)]

use bytes::Bytes;
use rafka_mesh::{Inbound, Keypair, Mesh, MeshConfig, Multiaddr};

/// A node listening on loopback (OS-assigned ports, both planes), without mDNS.
pub fn node_config() -> MeshConfig {
    MeshConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        control_listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        mdns: false,
        ..MeshConfig::default()
    }
}

/// A client peer without mDNS.
pub fn client_config() -> MeshConfig {
    MeshConfig {
        mdns: false,
        ..MeshConfig::client()
    }
}

/// Starts a node with `config` that answers every Kafka frame with `echo:` and the frame;
/// returns it and its data-plane address.
pub async fn echo_node(config: MeshConfig) -> (Mesh, Multiaddr) {
    let (node, inbound) = Mesh::start(Keypair::generate_ed25519(), config)
        .await
        .unwrap();
    let Inbound {
        mut kafka, raft, ..
    } = inbound;
    tokio::spawn(async move {
        let _raft = raft;
        while let Some(request) = kafka.recv().await {
            let mut answer = b"echo:".to_vec();
            answer.extend_from_slice(&request.frame);
            let _ = request.reply.send(Bytes::from(answer));
        }
    });
    let addr = node.listen_addrs().await.into_iter().next().unwrap();
    (node, addr)
}
