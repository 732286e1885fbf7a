//! Rafka's mesh layer: everything that touches libp2p.
//!
//! Component map:
//! - [`identity`]: the node's ed25519 key, persisted in the data dir so the peer id survives restarts.
//! - [`config`]: [`MeshConfig`] and the [`Role`] of this peer (a broker node or a light client).
//! - [`key`]: the cluster key ([`ClusterKey`]) nodes and clients share; without it no connection
//!   to the mesh completes.
//! - [`gate`]: the connection handshake of both planes: libp2p's private-network pre-shared key
//!   plus an explicit key check, so a wrong key is refused by name.
//! - [`codec`]: the length-prefixed frame codec of Rafka's request-response protocols.
//! - [`kafka_codec`]: the `/rafka/kafka/1` codec on top of it: a deadline per outbound request,
//!   admission (the node's request budget) before an inbound request's body is read.
//! - [`data`]: the data plane (`/rafka/kafka/1`, `/rafka/cluster/1`, mDNS) on the user-facing p2p
//!   address; bulk traffic stays here.
//! - [`push`]: push on the data plane: gossip between nodes (validated by the broker before it is
//!   forwarded), subscribers' push streams to their home node ([`push_stream`],
//!   `/rafka/push/stream/1`) and their long-polls (`/rafka/push/1`).
//! - [`control`]: the control plane (membership gossip, Raft RPCs, Kademlia) on a second swarm with
//!   the same identity and its own, OS-assigned listener, so heartbeats never queue behind data.
//! - `event_loop`: the single task that owns both swarms and drives the membership core.
//! - [`handle`]: [`Mesh`], the cheap cloneable handle callers use, and the inbound queues.
//! - [`view`]: the membership view the broker reads, and the `/rafka/cluster/1` encoding.
//! - [`membership`]: gossip membership (scuttlebutt anti-entropy plus own-state broadcasts), a
//!   sans-IO core the event loop drives with `tick(now)` / `handle(now, from, message)` /
//!   `poll_output()`; its messages are `proto/membership.proto` ([`membership::codec`]).
//! - [`failure_detector`]: phi-accrual failure detection, pure (time is an argument).
//! - [`metrics`]: names of the metrics the mesh records (heartbeat gaps).
//!
//! The mesh knows nothing of topics or partitions: it moves opaque Kafka frames between peers.
//!
//! ```
//! use rafka_mesh::{MeshConfig, Role};
//! let config = MeshConfig::client();
//! assert_eq!(config.role, Role::Client);
//! assert!(config.validate().is_ok());
//! ```
#![deny(clippy::indexing_slicing)]

pub mod codec;
pub mod config;
pub mod control;
pub mod data;
pub mod error;
mod event_loop;
pub mod failure_detector;
pub mod gate;
pub mod handle;
pub mod identity;
pub mod kafka_codec;
pub mod key;
pub mod membership;
pub mod metrics;
pub mod push;
pub mod push_stream;
pub mod view;

pub use config::{ConnectionLimit, ConnectionLimits, LimitHits, MeshConfig, Role};
pub use error::MeshError;
pub use handle::{Inbound, InboundKafka, InboundRaft, Mesh};
pub use identity::load_or_create_identity;
pub use kafka_codec::{Admitted, MAX_REQUEST_DEADLINE, RequestAdmission};
pub use key::ClusterKey;
pub use libp2p::{Multiaddr, PeerId, identity::Keypair, multiaddr::Protocol};
pub use push::{InboundPushPoll, PushConfig, PushDelivery, PushValidator, Verdict};
pub use push_stream::{IncomingPushStreams, PushStream};
pub use view::{MemberInfo, MembershipView};

/// Splits a multiaddr into the dialable part and the optional trailing `/p2p/<peer id>`.
pub fn split_peer_id(addr: &Multiaddr) -> (Multiaddr, Option<PeerId>) {
    let mut base = addr.clone();
    match base.pop() {
        Some(Protocol::P2p(peer)) => (base, Some(peer)),
        Some(other) => {
            base.push(other);
            (base, None)
        }
        None => (base, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_peer_id_handles_both_forms() {
        let peer = PeerId::random();
        let with: Multiaddr = format!("/ip4/127.0.0.1/tcp/7070/p2p/{peer}")
            .parse()
            .unwrap();
        let (base, id) = split_peer_id(&with);
        assert_eq!(base.to_string(), "/ip4/127.0.0.1/tcp/7070");
        assert_eq!(id, Some(peer));
        let without: Multiaddr = "/ip4/127.0.0.1/tcp/7070".parse().unwrap();
        assert_eq!(split_peer_id(&without), (without.clone(), None));
    }
}
