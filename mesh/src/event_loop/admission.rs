//! Who may take part: connections refused at the gate (logged once a minute per address) or by a
//! connection limit (told to the node), and which peers' membership messages are accepted. Once the node belongs to a cluster, the broker
//! names the admitted peers (the nodes registered in its metadata log); gossip from anyone else,
//! and news about anyone else, is dropped. Before that (a fresh node) everyone is heard.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::connection_limits::Exceeded;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionDenied;
use libp2p::{Multiaddr, PeerId};

use crate::config::{ConnectionLimit, LimitHits};
use crate::gate::{Refusal, Refused};
use crate::membership::{Message, MessageBody};
use crate::metrics;

/// At most one log line per remote address (or peer) and reason in this time.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Remembered log times beyond this many are pruned.
const MAX_REMEMBERED: usize = 1024;

/// Refusal logging, connection-limit hits and the admitted set.
#[derive(Default)]
pub(super) struct Gatekeeper {
    admitted: Option<HashSet<PeerId>>,
    logged: HashMap<String, Instant>,
    limit_hits: Option<Arc<dyn LimitHits>>,
}

/// An inbound connection a behaviour refused, as the swarm reported it.
pub(super) struct Denied<'a> {
    /// `data` or `control`.
    pub(super) plane: &'static str,
    /// The peer, once known (an inbound connection refused as it was accepted has none yet).
    pub(super) peer: Option<PeerId>,
    /// The remote address.
    pub(super) addr: &'a Multiaddr,
    /// Why.
    pub(super) cause: &'a ConnectionDenied,
}

/// Which connection limit refused an inbound connection, if one did. libp2p names the kind of an
/// [`Exceeded`] only in its text: a connection refused before its handshake faces one limit
/// (pending incoming), an established one two (incoming, per peer).
fn which_limit(denied: &Denied<'_>) -> Option<(ConnectionLimit, Exceeded)> {
    let exceeded = *denied.cause.downcast_ref::<Exceeded>()?;
    let limit = if exceeded.to_string().contains("per peer") {
        ConnectionLimit::PerPeer
    } else if denied.peer.is_none() {
        ConnectionLimit::PendingIncoming
    } else {
        ConnectionLimit::EstablishedIncoming
    };
    Some((limit, exceeded))
}

impl Gatekeeper {
    /// A gatekeeper that tells connection-limit hits to `limit_hits` (or logs them itself).
    pub(super) fn new(limit_hits: Option<Arc<dyn LimitHits>>) -> Self {
        Self {
            limit_hits,
            ..Self::default()
        }
    }

    /// An inbound connection refused by a behaviour: a connection limit's refusal is told to the
    /// node, or logged (once a minute per limit) when nobody listens.
    pub(super) fn denied(&mut self, denied: &Denied<'_>) {
        let Some((limit, exceeded)) = which_limit(denied) else {
            tracing::debug!(addr = %denied.addr, cause = %denied.cause, "connection denied");
            return;
        };
        let peer = denied
            .peer
            .map(|p| format!(" (peer {p})"))
            .unwrap_or_default();
        let what = format!(
            "{} plane connection from {}{peer} refused: {exceeded}",
            denied.plane, denied.addr
        );
        match &self.limit_hits {
            Some(hits) => hits.hit(limit, &what),
            None => {
                if self.first_in_a_while(format!("{limit:?}")) {
                    tracing::warn!("connection limit hit: {what}");
                }
            }
        }
    }

    /// `None`: everyone is heard (a node not in a cluster yet).
    pub(super) fn set_admitted(&mut self, peers: Option<HashSet<PeerId>>) {
        self.admitted = peers;
    }

    /// Whether membership messages from (or about) `peer` are accepted.
    pub(super) fn admits(&self, peer: &PeerId) -> bool {
        self.admitted.as_ref().is_none_or(|set| set.contains(peer))
    }

    /// Logs a refused connection (first time, then once a minute per address and reason).
    pub(super) fn refused(&mut self, refusal: &Refusal) {
        let (reason, name) = match refusal.reason {
            Refused::WrongKey => ("wrong cluster key", "wrong_key"),
            Refused::PeerHasNoKey => ("peer has no cluster key", "peer_has_no_key"),
            Refused::PeerNeedsKey => ("peer requires a cluster key", "peer_needs_key"),
            Refused::PeerClosed => ("peer closed during the key handshake", "peer_closed"),
            Refused::PeerClosedUnanswered => (
                "peer closed without answering, it may require a cluster key",
                "peer_closed_unanswered",
            ),
        };
        metrics::connection_refused(name);
        let host = refusal
            .addr
            .iter()
            .find_map(|p| match p {
                Protocol::Ip4(ip) => Some(ip.to_string()),
                Protocol::Ip6(ip) => Some(ip.to_string()),
                Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h) => Some(h.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| refusal.addr.to_string());
        if self.first_in_a_while(format!("{host} {name}")) {
            let direction = if refusal.inbound { "from" } else { "to" };
            tracing::warn!(
                addr = %refusal.addr,
                "mesh connection {direction} {host} refused: {reason} ({})",
                refusal.reason
            );
        }
    }

    /// Drops what `message` from `from` says about peers that are not admitted; `None` if the
    /// sender itself is not admitted (the message is dropped, and logged now and then).
    pub(super) fn filter(&mut self, from: PeerId, mut message: Message) -> Option<Message> {
        let Some(admitted) = &self.admitted else {
            return Some(message);
        };
        if !admitted.contains(&from) {
            metrics::unadmitted_message();
            if self.first_in_a_while(from.to_string()) {
                tracing::info!(peer = %from, "ignoring membership messages from a peer that is not a registered node of this cluster (a new node asks to join first)");
            }
            return None;
        }
        match &mut message.body {
            MessageBody::Ack { delta, .. }
            | MessageBody::Ack2(delta)
            | MessageBody::Update(delta) => {
                delta.nodes.retain(|node| admitted.contains(&node.id));
            }
            MessageBody::Syn(_) | MessageBody::BadCluster => {}
        }
        Some(message)
    }

    fn first_in_a_while(&mut self, key: String) -> bool {
        let now = Instant::now();
        if self.logged.len() >= MAX_REMEMBERED {
            self.logged
                .retain(|_, at| now.duration_since(*at) < LOG_EVERY);
        }
        match self.logged.get(&key) {
            Some(at) if now.duration_since(*at) < LOG_EVERY => false,
            _ => {
                self.logged.insert(key, now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use libp2p::connection_limits::{Behaviour, ConnectionLimits};
    use libp2p::swarm::{ConnectionId, NetworkBehaviour};

    use super::*;

    /// What libp2p's limits say when `limits` refuse an inbound connection before its handshake
    /// (`established` false) or after it.
    fn refusal(limits: ConnectionLimits, established: bool) -> ConnectionDenied {
        let mut behaviour = Behaviour::new(limits);
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        let id = ConnectionId::new_unchecked(1);
        if established {
            behaviour
                .handle_established_inbound_connection(id, PeerId::random(), &addr, &addr)
                .err()
                .unwrap()
        } else {
            behaviour
                .handle_pending_inbound_connection(id, &addr, &addr)
                .unwrap_err()
        }
    }

    fn classify(cause: &ConnectionDenied, peer: Option<PeerId>) -> Option<ConnectionLimit> {
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        which_limit(&Denied {
            plane: "data",
            peer,
            addr: &addr,
            cause,
        })
        .map(|(limit, _)| limit)
    }

    #[test]
    fn each_refusal_of_libp2ps_limits_is_told_as_its_own_limit() {
        let none = ConnectionLimits::default();
        let peer = Some(PeerId::random());
        let pending = refusal(none.clone().with_max_pending_incoming(Some(0)), false);
        assert_eq!(
            classify(&pending, None),
            Some(ConnectionLimit::PendingIncoming)
        );
        let incoming = refusal(none.clone().with_max_established_incoming(Some(0)), true);
        assert_eq!(
            classify(&incoming, peer),
            Some(ConnectionLimit::EstablishedIncoming)
        );
        let per_peer = refusal(none.with_max_established_per_peer(Some(0)), true);
        assert_eq!(classify(&per_peer, peer), Some(ConnectionLimit::PerPeer));
        // A refusal that is not a connection limit is not told as one.
        let other = ConnectionDenied::new(std::io::Error::other("not a limit"));
        assert_eq!(classify(&other, peer), None);
    }
}
