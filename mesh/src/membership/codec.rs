//! Wire form of membership messages: `proto/membership.proto` (prost), converted to and from the
//! core's types. Decoding never panics: oversized input, garbage, unknown peer ids and
//! inconsistent versions are typed [`DecodeError`]s.
//!
//! The `*_len` functions give the exact (or, for nested lengths, slightly pessimistic) encoded
//! size of each part, so the core can fill a message up to its byte budget without encoding it.

use libp2p::PeerId;
use prost::Message as _;
use prost::encoding::encoded_len_varint;

use super::message::{
    Delta, Digest, Generation, KeyEntry, Message, MessageBody, NodeDelta, NodeDigest,
};

/// The prost-generated types of `proto/membership.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::indexing_slicing)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/rafka.membership.v1.rs"));
}

/// Why bytes are not a membership message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// More bytes than the configured maximum; nothing was parsed.
    #[error("membership message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a valid protobuf `Envelope`.
    #[error("malformed membership message: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// The envelope carries no message (or one of a newer kind this node does not know).
    #[error("membership message without a known body")]
    MissingBody,
    /// A node id that is not a libp2p peer id.
    #[error("membership message names an invalid peer id")]
    InvalidPeerId,
    /// A node delta whose entries are not all in `(from_version, to_version]`, ascending.
    #[error(
        "node delta of {peer}: entry version {version} outside ({from_version}, {to_version}] or out of order"
    )]
    BadVersions {
        /// The node the delta is about.
        peer: PeerId,
        /// The delta's lower bound (exclusive).
        from_version: u64,
        /// The delta's upper bound (inclusive).
        to_version: u64,
        /// The offending entry version (or `from_version` when it exceeds `to_version`).
        version: u64,
    },
}

/// Encodes a message.
pub fn encode(message: &Message) -> Vec<u8> {
    to_proto(message).encode_to_vec()
}

/// Decodes a message of at most `max_bytes` bytes.
pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Message, DecodeError> {
    if bytes.len() > max_bytes {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: max_bytes,
        });
    }
    from_proto(proto::Envelope::decode(bytes)?)
}

fn to_proto(message: &Message) -> proto::Envelope {
    use proto::envelope::Body;
    let body = match &message.body {
        MessageBody::Syn(digest) => Body::Syn(proto::Syn {
            digest: Some(digest_to_proto(digest)),
        }),
        MessageBody::Ack { digest, delta } => Body::Ack(proto::Ack {
            digest: Some(digest_to_proto(digest)),
            delta: Some(delta_to_proto(delta)),
        }),
        MessageBody::Ack2(delta) => Body::Ack2(proto::Ack2 {
            delta: Some(delta_to_proto(delta)),
        }),
        MessageBody::Update(delta) => Body::Update(proto::Update {
            delta: Some(delta_to_proto(delta)),
        }),
        MessageBody::BadCluster => Body::BadCluster(proto::BadCluster {}),
    };
    proto::Envelope {
        cluster_id: message.cluster_id.clone(),
        body: Some(body),
    }
}

fn digest_to_proto(digest: &Digest) -> proto::Digest {
    proto::Digest {
        nodes: digest
            .nodes
            .iter()
            .map(|n| proto::NodeDigest {
                id: n.id.to_bytes(),
                generation: n.generation.0,
                heartbeat: n.heartbeat,
                max_version: n.max_version,
            })
            .collect(),
    }
}

fn delta_to_proto(delta: &Delta) -> proto::Delta {
    proto::Delta {
        nodes: delta
            .nodes
            .iter()
            .map(|n| proto::NodeDelta {
                id: n.id.to_bytes(),
                generation: n.generation.0,
                heartbeat: n.heartbeat,
                heartbeat_age_ms: n.heartbeat_age_ms,
                left: n.left,
                from_version: n.from_version,
                to_version: n.to_version,
                entries: n
                    .entries
                    .iter()
                    .map(|e| proto::KeyEntry {
                        key: e.key.clone(),
                        value: e.value.clone(),
                        version: e.version,
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn from_proto(envelope: proto::Envelope) -> Result<Message, DecodeError> {
    use proto::envelope::Body;
    let body = match envelope.body.ok_or(DecodeError::MissingBody)? {
        Body::Syn(syn) => MessageBody::Syn(digest_from_proto(syn.digest.unwrap_or_default())?),
        Body::Ack(ack) => MessageBody::Ack {
            digest: digest_from_proto(ack.digest.unwrap_or_default())?,
            delta: delta_from_proto(ack.delta.unwrap_or_default())?,
        },
        Body::Ack2(ack2) => MessageBody::Ack2(delta_from_proto(ack2.delta.unwrap_or_default())?),
        Body::Update(update) => {
            MessageBody::Update(delta_from_proto(update.delta.unwrap_or_default())?)
        }
        Body::BadCluster(_) => MessageBody::BadCluster,
    };
    Ok(Message {
        cluster_id: envelope.cluster_id,
        body,
    })
}

fn peer_id(bytes: &[u8]) -> Result<PeerId, DecodeError> {
    PeerId::from_bytes(bytes).map_err(|_| DecodeError::InvalidPeerId)
}

fn digest_from_proto(digest: proto::Digest) -> Result<Digest, DecodeError> {
    let nodes = digest
        .nodes
        .into_iter()
        .map(|n| {
            Ok(NodeDigest {
                id: peer_id(&n.id)?,
                generation: Generation(n.generation),
                heartbeat: n.heartbeat,
                max_version: n.max_version,
            })
        })
        .collect::<Result<_, DecodeError>>()?;
    Ok(Digest { nodes })
}

fn delta_from_proto(delta: proto::Delta) -> Result<Delta, DecodeError> {
    let nodes = delta
        .nodes
        .into_iter()
        .map(node_delta_from_proto)
        .collect::<Result<_, DecodeError>>()?;
    Ok(Delta { nodes })
}

fn node_delta_from_proto(n: proto::NodeDelta) -> Result<NodeDelta, DecodeError> {
    let id = peer_id(&n.id)?;
    let bad = |version| DecodeError::BadVersions {
        peer: id,
        from_version: n.from_version,
        to_version: n.to_version,
        version,
    };
    if n.from_version > n.to_version {
        return Err(bad(n.from_version));
    }
    let mut previous = n.from_version;
    for entry in &n.entries {
        if entry.version <= previous || entry.version > n.to_version {
            return Err(bad(entry.version));
        }
        previous = entry.version;
    }
    Ok(NodeDelta {
        id,
        generation: Generation(n.generation),
        heartbeat: n.heartbeat,
        heartbeat_age_ms: n.heartbeat_age_ms,
        left: n.left,
        from_version: n.from_version,
        to_version: n.to_version,
        entries: n
            .entries
            .into_iter()
            .map(|e| KeyEntry {
                key: e.key,
                value: e.value,
                version: e.version,
            })
            .collect(),
    })
}

/// Bytes reserved for a nested message's length prefix: a varint of 3 bytes covers 2 MiB, above
/// any allowed message size.
const NESTED_LEN_RESERVE: usize = 3;

fn bytes_field_len(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        1 + encoded_len_varint(len as u64) + len
    }
}

fn u64_field_len(value: u64) -> usize {
    if value == 0 {
        0
    } else {
        1 + encoded_len_varint(value)
    }
}

/// Encoded length of a peer id, without allocating its bytes.
fn peer_id_len(id: &PeerId) -> usize {
    let multihash: &libp2p::multihash::Multihash<64> = id.as_ref();
    multihash.encoded_len()
}

fn element_len(inner: usize) -> usize {
    1 + encoded_len_varint(inner as u64) + inner
}

/// Upper bound of everything in a message but its digest and delta entries: the envelope with
/// the cluster id, the body, and the digest and delta wrappers.
pub fn envelope_overhead(cluster_id: &str) -> usize {
    bytes_field_len(cluster_id.len()) + 3 * (1 + NESTED_LEN_RESERVE)
}

/// Encoded size of one node's entry in a digest.
pub fn node_digest_len(node: &NodeDigest) -> usize {
    element_len(
        bytes_field_len(peer_id_len(&node.id))
            + u64_field_len(node.generation.0)
            + u64_field_len(node.heartbeat)
            + u64_field_len(node.max_version),
    )
}

/// Upper bound of the encoded size of a node delta without its entries, given an upper bound of
/// its `to_version`.
pub fn node_delta_header_len(
    id: &PeerId,
    generation: Generation,
    heartbeat: u64,
    heartbeat_age_ms: u64,
    from_version: u64,
    max_to_version: u64,
) -> usize {
    1 + NESTED_LEN_RESERVE
        + bytes_field_len(peer_id_len(id))
        + u64_field_len(generation.0)
        + u64_field_len(heartbeat)
        + u64_field_len(heartbeat_age_ms)
        + 2 // left, when true
        + u64_field_len(from_version)
        + u64_field_len(max_to_version)
}

/// Encoded size of one entry inside a node delta.
pub fn key_entry_len(key: &str, value: Option<&str>, version: u64) -> usize {
    let value_len = value.map_or(0, |v| 1 + encoded_len_varint(v.len() as u64) + v.len());
    element_len(bytes_field_len(key.len()) + value_len + u64_field_len(version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn peer(n: u8) -> PeerId {
        let key = libp2p::identity::Keypair::ed25519_from_bytes([n; 32]).expect("32 bytes");
        key.public().to_peer_id()
    }

    fn sample_delta() -> Delta {
        Delta {
            nodes: vec![NodeDelta {
                id: peer(1),
                generation: Generation(1_700_000_000_000),
                heartbeat: 42,
                heartbeat_age_ms: 1_250,
                left: true,
                from_version: 3,
                to_version: 9,
                entries: vec![
                    KeyEntry {
                        key: "addr".into(),
                        value: Some("/ip4/10.0.0.1/tcp/7070".into()),
                        version: 4,
                    },
                    KeyEntry {
                        key: "empty".into(),
                        value: Some(String::new()),
                        version: 5,
                    },
                    KeyEntry {
                        key: "gone".into(),
                        value: None,
                        version: 9,
                    },
                ],
            }],
        }
    }

    fn all_kinds() -> Vec<Message> {
        let digest = Digest {
            nodes: vec![
                NodeDigest {
                    id: peer(1),
                    generation: Generation(7),
                    heartbeat: 0,
                    max_version: 3,
                },
                NodeDigest {
                    id: peer(2),
                    generation: Generation(0),
                    heartbeat: u64::MAX,
                    max_version: u64::MAX,
                },
            ],
        };
        [
            MessageBody::Syn(digest.clone()),
            MessageBody::Syn(Digest::default()),
            MessageBody::Ack {
                digest,
                delta: sample_delta(),
            },
            MessageBody::Ack2(sample_delta()),
            MessageBody::Update(Delta::default()),
            MessageBody::BadCluster,
        ]
        .into_iter()
        .map(|body| Message {
            cluster_id: "dev-a".into(),
            body,
        })
        .collect()
    }

    #[test]
    fn every_kind_round_trips() {
        for message in all_kinds() {
            let bytes = encode(&message);
            assert_eq!(decode(&bytes, 1 << 20).expect("decodes"), message);
        }
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let bytes = encode(&all_kinds()[2]);
        let err = decode(&bytes, bytes.len() - 1).unwrap_err();
        assert!(matches!(err, DecodeError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn garbage_and_inconsistencies_are_typed_errors() {
        assert!(matches!(
            decode(&[0xff, 0xff, 0xff], 100),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(decode(&[], 100), Err(DecodeError::MissingBody)));
        let mut bad_peer = to_proto(&all_kinds()[0]);
        if let Some(proto::envelope::Body::Syn(syn)) = &mut bad_peer.body {
            syn.digest.as_mut().expect("digest").nodes[0].id = vec![1, 2, 3];
        }
        assert!(matches!(
            decode(&bad_peer.encode_to_vec(), 1 << 20),
            Err(DecodeError::InvalidPeerId)
        ));
        for (from, to, versions) in [
            (5, 4, vec![]),
            (0, 4, vec![2, 2]),
            (0, 4, vec![5]),
            (3, 9, vec![3]),
        ] {
            let mut delta = sample_delta();
            let node = &mut delta.nodes[0];
            node.from_version = from;
            node.to_version = to;
            node.entries = versions
                .into_iter()
                .map(|version| KeyEntry {
                    key: "k".into(),
                    value: None,
                    version,
                })
                .collect();
            let bytes = encode(&Message {
                cluster_id: String::new(),
                body: MessageBody::Ack2(delta),
            });
            assert!(
                matches!(
                    decode(&bytes, 1 << 20),
                    Err(DecodeError::BadVersions { .. })
                ),
                "({from}, {to}]"
            );
        }
    }

    #[test]
    fn size_functions_bound_the_encoding() {
        let delta = sample_delta();
        let node = &delta.nodes[0];
        let mut expected = envelope_overhead("dev-a")
            + node_delta_header_len(&node.id, node.generation, node.heartbeat, 1_250, 3, 9);
        for e in &node.entries {
            expected += key_entry_len(&e.key, e.value.as_deref(), e.version);
        }
        let actual = encode(&Message {
            cluster_id: "dev-a".into(),
            body: MessageBody::Ack2(delta.clone()),
        })
        .len();
        assert!(
            actual <= expected && expected <= actual + 16,
            "{actual} vs {expected}"
        );
        for e in &node.entries {
            let exact = proto::KeyEntry {
                key: e.key.clone(),
                value: e.value.clone(),
                version: e.version,
            }
            .encoded_len();
            assert_eq!(
                key_entry_len(&e.key, e.value.as_deref(), e.version),
                element_len(exact)
            );
        }
        let d = NodeDigest {
            id: peer(3),
            generation: Generation(1_700_000_000_000),
            heartbeat: 100_000,
            max_version: 12,
        };
        let exact = proto::NodeDigest {
            id: d.id.to_bytes(),
            generation: d.generation.0,
            heartbeat: d.heartbeat,
            max_version: d.max_version,
        }
        .encoded_len();
        assert_eq!(node_digest_len(&d), element_len(exact));
        assert_eq!(peer_id_len(&d.id), d.id.to_bytes().len());
    }

    fn arb_entry() -> impl Strategy<Value = (String, Option<String>)> {
        ("[a-z_.]{0,12}", proptest::option::of(".{0,40}"))
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        let node_delta = (
            0u8..8,
            (any::<u64>(), any::<u64>(), any::<u64>()),
            any::<bool>(),
            0u64..1_000,
            proptest::collection::vec((arb_entry(), 1u64..5), 0..6),
        )
            .prop_map(
                |(p, (generation, heartbeat, heartbeat_age_ms), left, from, entries)| {
                    let mut version = from;
                    let entries = entries
                        .into_iter()
                        .map(|((key, value), step)| {
                            version += step;
                            KeyEntry {
                                key,
                                value,
                                version,
                            }
                        })
                        .collect();
                    NodeDelta {
                        id: peer(p),
                        generation: Generation(generation),
                        heartbeat,
                        heartbeat_age_ms,
                        left,
                        from_version: from,
                        to_version: version + 1,
                        entries,
                    }
                },
            );
        let delta = proptest::collection::vec(node_delta, 0..4)
            .prop_map(|nodes| Delta { nodes })
            .boxed();
        let digest =
            proptest::collection::vec((0u8..8, any::<u64>(), any::<u64>(), any::<u64>()), 0..8)
                .prop_map(|nodes| Digest {
                    nodes: nodes
                        .into_iter()
                        .map(|(p, g, heartbeat, max_version)| NodeDigest {
                            id: peer(p),
                            generation: Generation(g),
                            heartbeat,
                            max_version,
                        })
                        .collect(),
                })
                .boxed();
        let body = prop_oneof![
            digest.clone().prop_map(MessageBody::Syn),
            (digest, delta.clone()).prop_map(|(digest, delta)| MessageBody::Ack { digest, delta }),
            delta.clone().prop_map(MessageBody::Ack2),
            delta.prop_map(MessageBody::Update),
            Just(MessageBody::BadCluster),
        ];
        ("[a-z0-9-]{0,16}", body).prop_map(|(cluster_id, body)| Message { cluster_id, body })
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes, 256);
            let _ = decode(&bytes, 1 << 20);
        }

        #[test]
        fn round_trips_are_exact(message in arb_message()) {
            let bytes = encode(&message);
            prop_assert_eq!(decode(&bytes, 1 << 20).expect("decodes"), message);
        }

        #[test]
        fn mutated_messages_never_panic(message in arb_message(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let mut bytes = encode(&message);
            if !bytes.is_empty() {
                for (at, value) in flips {
                    let len = bytes.len();
                    bytes[at % len] = value;
                }
            }
            let _ = decode(&bytes, 1 << 20);
        }
    }
}
