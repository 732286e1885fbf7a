//! The two listeners that carry Kafka frames to [`crate::api::dispatch`]: plain TCP for Kafka
//! clients, libp2p request-response for the mesh client library.

pub mod budget;
pub mod connections;
pub mod frames;
pub mod kafka_tcp;
pub mod mesh;
