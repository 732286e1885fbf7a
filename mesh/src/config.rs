//! Mesh configuration.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use serde::{Deserialize, Serialize};

use crate::MeshError;
use crate::kafka_codec::RequestAdmission;
use crate::key::ClusterKey;
use crate::membership::MembershipConfig;
use crate::push::PushConfig;

/// Whether this peer serves requests (a broker node) or only sends them (a client).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A broker node: both planes, membership, inbound Kafka and Raft.
    Node,
    /// A light client peer: the data plane only, dialling out.
    Client,
}

/// Configuration of the mesh layer.
#[derive(Clone, Debug)]
pub struct MeshConfig {
    /// Data-plane listen addresses (the user-facing p2p address); empty for clients.
    pub listen: Vec<Multiaddr>,
    /// Control-plane listen addresses (nodes); OS-assigned port by default, learned by peers.
    pub control_listen: Vec<Multiaddr>,
    /// Node or client.
    pub role: Role,
    /// LAN discovery through mDNS (IPv4).
    pub mdns: bool,
    /// How often mDNS queries the network.
    pub mdns_query_interval: Duration,
    /// Data-plane addresses of known nodes to join through (`/p2p/<peer id>` optional).
    pub bootstrap: Vec<Multiaddr>,
    /// Largest Kafka frame accepted or sent (Kafka's `socket.request.max.bytes`).
    pub max_frame_bytes: usize,
    /// How long a cluster-information request may take, and reading an inbound Kafka request
    /// (admission included). Each outbound Kafka request has its own deadline
    /// ([`crate::Mesh::kafka_request`]).
    pub request_timeout: Duration,
    /// How long a Raft RPC may take before the transport gives up.
    pub raft_request_timeout: Duration,
    /// Data-plane connections idle this long are closed (and re-dialled on demand). The control
    /// plane keeps its connections for as long as the peers are members.
    pub idle_connection_timeout: Duration,
    /// Inbound requests processed concurrently per connection before new streams are refused.
    pub max_concurrent_streams: usize,
    /// Decides when an inbound Kafka request may be read (a node's request budget); `None`
    /// reads every request at once.
    pub admission: Option<Arc<dyn RequestAdmission>>,
    /// Gossip membership settings (nodes).
    pub membership: MembershipConfig,
    /// This incarnation's generation: must grow across restarts (milliseconds since the Unix epoch
    /// at start-up is the usual choice).
    pub generation: u64,
    /// Seed of the membership protocol's random choices.
    pub seed: u64,
    /// Push gossip (nodes; `None`: this node neither publishes nor relays).
    pub push: Option<PushConfig>,
    /// The cluster key: with it, only peers holding the same key complete a connection (see
    /// [`crate::gate`]); without it the wire is plain libp2p.
    pub cluster_key: Option<ClusterKey>,
    /// How many connections each swarm holds (per peer, in their handshake, established inbound).
    pub connection_limits: ConnectionLimits,
    /// Told of each connection a limit refused (a node counts and logs them); without one the
    /// mesh logs them itself.
    pub limit_hits: Option<Arc<dyn LimitHits>>,
}

/// Connection limits of a swarm (libp2p's `connection_limits`), applied to the data plane and to
/// the control plane, each on its own. Kafka's port has `max.connections.per.ip`; these bound
/// what any number of peers can make a node hold on its p2p listeners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections established with one peer (it needs one; two while a simultaneous dial
    /// settles). Also bounds this side's dials.
    pub per_peer: u32,
    /// Inbound connections still in their handshake (TCP accepted; the key check, noise and
    /// yamux not done, each ending within [`crate::gate::HANDSHAKE_TIMEOUT`]). More are closed
    /// as they are accepted.
    pub pending_incoming: u32,
    /// Inbound connections established, from clients and other nodes. More are closed once
    /// their handshake is done.
    pub established_incoming: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            per_peer: 8,
            pending_incoming: 256,
            established_incoming: 4096,
        }
    }
}

impl ConnectionLimits {
    /// The same limits as libp2p takes them.
    pub(crate) fn libp2p(self) -> libp2p::connection_limits::ConnectionLimits {
        libp2p::connection_limits::ConnectionLimits::default()
            .with_max_established_per_peer(Some(self.per_peer))
            .with_max_pending_incoming(Some(self.pending_incoming))
            .with_max_established_incoming(Some(self.established_incoming))
    }
}

/// Which connection limit refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionLimit {
    /// [`ConnectionLimits::per_peer`].
    PerPeer,
    /// [`ConnectionLimits::pending_incoming`].
    PendingIncoming,
    /// [`ConnectionLimits::established_incoming`].
    EstablishedIncoming,
}

/// Where connection-limit hits go (the node's limit counter and log).
pub trait LimitHits: Send + Sync + fmt::Debug + 'static {
    /// `limit` refused a connection; `what` says which one (plane, direction, address).
    fn hit(&self, limit: ConnectionLimit, what: &str);
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            listen: vec![default_listen()],
            control_listen: vec![default_control_listen()],
            role: Role::Node,
            mdns: true,
            mdns_query_interval: Duration::from_secs(5),
            bootstrap: Vec::new(),
            max_frame_bytes: 100 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            raft_request_timeout: Duration::from_secs(10),
            idle_connection_timeout: Duration::from_secs(300),
            max_concurrent_streams: 256,
            admission: None,
            membership: MembershipConfig::default(),
            generation: 1,
            seed: 0,
            push: None,
            cluster_key: None,
            connection_limits: ConnectionLimits::default(),
            limit_hits: None,
        }
    }
}

/// `/ip4/0.0.0.0/tcp/7070`.
pub fn default_listen() -> Multiaddr {
    Multiaddr::from(std::net::Ipv4Addr::UNSPECIFIED).with(Protocol::Tcp(7070))
}

/// `/ip4/0.0.0.0/tcp/0`: an OS-assigned port.
pub fn default_control_listen() -> Multiaddr {
    Multiaddr::from(std::net::Ipv4Addr::UNSPECIFIED).with(Protocol::Tcp(0))
}

impl MeshConfig {
    /// A light client's configuration: no listeners, no membership.
    pub fn client() -> Self {
        Self {
            listen: vec![],
            control_listen: vec![],
            role: Role::Client,
            ..Self::default()
        }
    }

    /// Checks the values make sense together.
    pub fn validate(&self) -> Result<(), MeshError> {
        let bad = |reason: String| Err(MeshError::Config(reason));
        if self.max_frame_bytes < 1024 {
            return bad(format!(
                "max_frame_bytes {} is below 1 KiB",
                self.max_frame_bytes
            ));
        }
        if self.request_timeout.is_zero() || self.raft_request_timeout.is_zero() {
            return bad("request timeouts must be positive".into());
        }
        if self.role == Role::Node && (self.listen.is_empty() || self.control_listen.is_empty()) {
            return bad("a node needs a data-plane and a control-plane listen address".into());
        }
        let limits = self.connection_limits;
        if limits.per_peer == 0 || limits.pending_incoming == 0 || limits.established_incoming == 0
        {
            return bad(format!("connection limits must be positive: {limits:?}"));
        }
        if self.max_concurrent_streams == 0 {
            return bad("max_concurrent_streams must be positive".into());
        }
        if self.mdns_query_interval.is_zero() {
            return bad("mdns_query_interval must be positive".into());
        }
        if let Some(push) = &self.push
            && push.max_message_bytes < 1024
        {
            return bad(format!(
                "push max_message_bytes {} is below 1 KiB",
                push.max_message_bytes
            ));
        }
        self.membership.validate()
    }
}
