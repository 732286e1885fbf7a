//! Push on the data plane: the gossip brokers publish on (gossipsub, between nodes only) and the
//! long-poll a subscriber sends its home broker (`/rafka/push/1`). The mesh moves opaque bytes:
//! what a message means, who may author it and what a poll asks for is the broker's business
//! (the encodings are `rafka_format::push`).
//!
//! - **Gossip** (nodes): gossipsub on the data-plane swarm, never on the control plane's (so
//!   pushed records never queue in front of membership heartbeats). Messages are signed by their
//!   author (`Strict`), and each is held back until the broker's [`PushValidator`] judges it:
//!   accepted messages are forwarded to the node's gossip peers and handed to the broker
//!   ([`PushDelivery`]), rejected or ignored ones go no further. Own messages are sent to the
//!   mesh peers of the topic only (`flood_publish` off), so a publisher's cost does not grow with
//!   the number of nodes subscribed. The message id is the key the broker's
//!   [`PushConfig::message_key`] finds in the bytes (else author and sequence number).
//! - **Streams** (client → node, [`crate::push_stream`]): a subscriber's one long-lived stream
//!   to its home node, which writes to it whenever it has messages for the subscriber.
//! - **Polls** (client → node): request-response with one frame each way; the node hands each
//!   poll to the broker ([`InboundPushPoll`]) and answers when the broker does (subscribers use
//!   them with nodes that do not serve streams). Clients have no gossipsub at all, so a
//!   subscriber never relays anything and is never counted in a topic's gossip mesh.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use libp2p::{PeerId, StreamProtocol, gossipsub, identity::Keypair, request_response};
use tokio::sync::oneshot;

use crate::codec::FrameCodec;
use crate::{MeshConfig, MeshError, Role};

/// The subscribers' long-poll protocol.
pub const POLL_PROTOCOL: StreamProtocol = StreamProtocol::new("/rafka/push/1");
/// Protocol prefix of the push gossip (`/rafka/push/gossip/1.1.0`), distinct from the control
/// plane's membership gossip.
pub const GOSSIP_PROTOCOL_PREFIX: &str = "/rafka/push/gossip";

/// Finds a message's key (its gossip message id) in its bytes; `None`: author and sequence
/// number identify it.
pub type MessageKey = for<'a> fn(&'a [u8]) -> Option<&'a [u8]>;

/// Push settings of a node.
#[derive(Clone, Debug)]
pub struct PushConfig {
    /// Largest gossip message (gossipsub refuses larger ones at publish and on receipt).
    pub max_message_bytes: usize,
    /// The message id of a message.
    pub message_key: MessageKey,
    /// How long a poll may be held (an upper bound on what pollers ask for).
    pub max_poll_wait: Duration,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            max_message_bytes: 256 * 1024,
            message_key: |_| None,
            max_poll_wait: Duration::from_secs(10),
        }
    }
}

/// What the broker decides of a gossip message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: forward it and hand it to the broker.
    Accept,
    /// Invalid (forged, malformed): drop it, do not forward it.
    Reject,
    /// Not judgeable now (stale, or this node is behind): drop it without blaming the sender.
    Ignore,
}

/// Judges gossip messages before they are forwarded. Called on the swarm task for every message,
/// so it must be quick and must not block.
pub trait PushValidator: Send + Sync + 'static {
    /// The verdict on `data`, authored (signed) by `author`, received on gossip topic `topic`.
    fn validate(&self, author: &PeerId, topic: &str, data: &[u8]) -> Verdict;
}

/// Until the broker installs its validator, nothing is judged valid.
pub(crate) struct IgnoreAll;

impl PushValidator for IgnoreAll {
    fn validate(&self, _: &PeerId, _: &str, _: &[u8]) -> Verdict {
        Verdict::Ignore
    }
}

/// A shared validator.
pub type SharedValidator = Arc<dyn PushValidator>;

/// The push gossip topics some connected node subscribes to, kept by the swarm task and read
/// without a round trip to it (a leader skips announcing what nobody would receive).
#[derive(Clone, Debug, Default)]
pub struct Listened(Arc<std::sync::RwLock<std::collections::HashSet<String>>>);

impl Listened {
    /// True if some connected node subscribes to `topic`.
    pub fn contains(&self, topic: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(topic)
    }

    pub(crate) fn set(&self, topic: &str, listened: bool) {
        let mut topics = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if listened {
            topics.insert(topic.to_string());
        } else {
            topics.remove(topic);
        }
    }
}

/// An accepted gossip message, for the broker.
#[derive(Debug, Clone)]
pub struct PushDelivery {
    /// Who signed it.
    pub author: PeerId,
    /// The gossip topic.
    pub topic: String,
    /// The message.
    pub data: Bytes,
}

/// A subscriber's poll, with the slot for the answer (dropping it fails the poll).
#[derive(Debug)]
pub struct InboundPushPoll {
    /// The subscriber's peer.
    pub peer: PeerId,
    /// The request frame.
    pub frame: Bytes,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Bytes>,
}

/// The push gossip of a node.
pub(crate) fn gossip(
    keypair: &Keypair,
    push: &PushConfig,
) -> Result<gossipsub::Behaviour, MeshError> {
    let message_key = push.message_key;
    let config = gossipsub::ConfigBuilder::default()
        .protocol_id_prefix(GOSSIP_PROTOCOL_PREFIX)
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .flood_publish(false)
        .max_transmit_size(push.max_message_bytes)
        .heartbeat_interval(Duration::from_millis(700))
        .message_id_fn(
            move |message: &gossipsub::Message| match message_key(&message.data) {
                Some(key) => gossipsub::MessageId::from(key.to_vec()),
                None => {
                    let mut id = message.source.map(|p| p.to_bytes()).unwrap_or_default();
                    id.extend_from_slice(&message.sequence_number.unwrap_or(0).to_be_bytes());
                    gossipsub::MessageId::from(id)
                }
            },
        )
        .build()
        .map_err(|e| MeshError::Build(format!("push gossip: {e}")))?;
    gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(keypair.clone()),
        config,
    )
    .map_err(|e| MeshError::Build(format!("push gossip: {e}")))
}

/// The poll protocol: nodes answer, clients ask. Polls are held up to `max_poll_wait`, so the
/// request timeout covers that plus the usual request time.
pub(crate) fn polls(config: &MeshConfig) -> request_response::Behaviour<FrameCodec> {
    let support = match config.role {
        Role::Node => request_response::ProtocolSupport::Full,
        Role::Client => request_response::ProtocolSupport::Outbound,
    };
    let max_wait = config
        .push
        .as_ref()
        .map_or(Duration::ZERO, |p| p.max_poll_wait);
    let rr_config = request_response::Config::default()
        .with_request_timeout(config.request_timeout + max_wait)
        .with_max_concurrent_streams(config.max_concurrent_streams);
    request_response::Behaviour::with_codec(
        FrameCodec::new(config.max_frame_bytes),
        [(POLL_PROTOCOL, support)],
        rr_config,
    )
}
