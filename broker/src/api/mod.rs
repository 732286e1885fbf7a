//! The Kafka API: one file per request type, and the dispatcher that routes frames to them.
//!
//! Handlers are transport-agnostic: they see a decoded request and a [`RequestContext`], and return
//! a response (or a future of one). [`dispatch::handle_frame`] does the decoding, version checks and
//! encoding, for both the TCP and the libp2p listener.

mod api_versions;
mod create_topics;
mod delete_topics;
mod describe_configs;
pub mod dispatch;
mod fetch;
mod find_coordinator;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
pub mod topics;
pub mod versions;

pub use dispatch::{ConnectionInfo, Handled, RequestContext, handle_frame};
pub use produce::now_ms;
