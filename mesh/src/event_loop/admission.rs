//! Who may take part: connections refused at the gate (logged once a minute per address), and
//! which peers' membership messages are accepted. Once the node belongs to a cluster, the broker
//! names the admitted peers (the nodes registered in its metadata log); gossip from anyone else,
//! and news about anyone else, is dropped. Before that (a fresh node) everyone is heard.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::multiaddr::Protocol;

use crate::gate::{Refusal, Refused};
use crate::membership::{Message, MessageBody};
use crate::metrics;

/// At most one log line per remote address (or peer) and reason in this time.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Remembered log times beyond this many are pruned.
const MAX_REMEMBERED: usize = 1024;

/// Refusal logging and the admitted set.
#[derive(Default)]
pub(super) struct Gatekeeper {
    admitted: Option<HashSet<PeerId>>,
    logged: HashMap<String, Instant>,
}

impl Gatekeeper {
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
