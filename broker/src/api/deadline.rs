//! How long a request may take before its answer is useless, as its kind and its own fields say.
//!
//! Over the mesh every request is held to this deadline on both ends: the client gives its
//! request the deadline it needs (`rafka_mesh::Mesh::kafka_request`), and the node drops a request
//! not answered by then (the peer's substream closes). A request that legitimately waits says for
//! how long: a Fetch its `max_wait_ms`, a Produce its `timeout_ms`, CreateTopics and DeleteTopics
//! their `timeout_ms`, a JoinGroup its rebalance timeout (v1+; its session timeout at v0); every
//! other request gets Kafka's default `request.timeout.ms`. The node adds [`MARGIN`] so the client,
//! which waits for the same time plus its own margin, decides first. Over TCP the client alone
//! decides (Kafka closes nothing on a timer).

use std::time::Duration;

use kafka_protocol::messages::RequestKind;
use rafka_mesh::MAX_REQUEST_DEADLINE;

/// Kafka's default `request.timeout.ms`: the deadline of requests that do not say how long they
/// wait.
pub const DEFAULT: Duration = Duration::from_secs(30);

/// Added to what a request says it waits for: time to encode, send and read the answer.
pub const MARGIN: Duration = Duration::from_secs(5);

/// The deadline of `request`, at most [`MAX_REQUEST_DEADLINE`].
pub fn of(request: &RequestKind) -> Duration {
    let waits_ms = match request {
        RequestKind::Fetch(r) => r.max_wait_ms,
        RequestKind::Produce(r) => r.timeout_ms,
        RequestKind::CreateTopics(r) => r.timeout_ms,
        RequestKind::DeleteTopics(r) => r.timeout_ms,
        RequestKind::JoinGroup(r) if r.rebalance_timeout_ms > 0 => r.rebalance_timeout_ms,
        RequestKind::JoinGroup(r) => r.session_timeout_ms,
        _ => return DEFAULT,
    };
    let waits = Duration::from_millis(u64::try_from(waits_ms).unwrap_or(0));
    (waits + MARGIN).min(MAX_REQUEST_DEADLINE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{
        ApiVersionsRequest, FetchRequest, JoinGroupRequest, OffsetCommitRequest, ProduceRequest,
    };

    #[test]
    fn a_request_that_waits_gets_what_it_waits_for_plus_the_margin() {
        let fetch = RequestKind::Fetch(FetchRequest::default().with_max_wait_ms(500));
        assert_eq!(of(&fetch), Duration::from_millis(5500));
        let produce = RequestKind::Produce(ProduceRequest::default().with_timeout_ms(30_000));
        assert_eq!(of(&produce), Duration::from_secs(35));
        // A JoinGroup may wait out its rebalance timeout: five minutes is the clients' default.
        let join = JoinGroupRequest::default()
            .with_session_timeout_ms(45_000)
            .with_rebalance_timeout_ms(300_000);
        assert_eq!(of(&RequestKind::JoinGroup(join)), Duration::from_secs(305));
        // v0 has no rebalance timeout: the session timeout is the wait.
        let join_v0 = JoinGroupRequest::default()
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(-1);
        assert_eq!(
            of(&RequestKind::JoinGroup(join_v0)),
            Duration::from_secs(15)
        );
    }

    #[test]
    fn other_requests_get_the_default_and_nothing_exceeds_the_ceiling() {
        let commit = RequestKind::OffsetCommit(OffsetCommitRequest::default());
        assert_eq!(of(&commit), DEFAULT);
        assert_eq!(
            of(&RequestKind::ApiVersions(ApiVersionsRequest::default())),
            DEFAULT
        );
        let forever = JoinGroupRequest::default().with_rebalance_timeout_ms(i32::MAX);
        assert_eq!(of(&RequestKind::JoinGroup(forever)), MAX_REQUEST_DEADLINE);
        // A negative wait is no wait.
        let negative = RequestKind::Fetch(FetchRequest::default().with_max_wait_ms(-5));
        assert_eq!(of(&negative), MARGIN);
    }
}
