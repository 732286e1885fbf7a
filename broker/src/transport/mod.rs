//! The two listeners that carry Kafka frames to [`crate::api::dispatch`]: plain TCP for Kafka
//! clients, libp2p request-response for the mesh client library.

pub mod kafka_tcp;
pub mod mesh;
