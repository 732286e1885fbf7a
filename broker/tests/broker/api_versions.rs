//! ApiVersions at every served version, the KIP-511 fallback for versions the broker does not
//! know, and the advertised ranges equal to what the dispatcher serves.

use crate::support::TestNode;
use crate::support::wire;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, MetadataRequest};
use kafka_protocol::protocol::Decodable;
use rafka_broker::api::versions::SERVED;

fn served() -> Vec<(i16, i16, i16)> {
    let mut ranges: Vec<_> = SERVED
        .iter()
        .map(|s| (s.key as i16, s.min, s.max))
        .collect();
    ranges.sort_unstable();
    ranges
}

fn advertised(response: &ApiVersionsResponse) -> Vec<(i16, i16, i16)> {
    let mut ranges: Vec<_> = response
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    ranges.sort_unstable();
    ranges
}

#[tokio::test]
async fn every_served_version_advertises_exactly_the_served_ranges() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    for version in 0..=4 {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(wire::str("rafka-conformance"))
            .with_client_software_version(wire::str("1.0.0"));
        let response = client.send(&request, version).await;
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(advertised(&response), served(), "v{version}");
        if version >= 3 {
            // No feature is finalized, so clients stay off transaction.version 2 paths.
            assert!(response.finalized_features.is_empty(), "v{version}");
        }
    }
    wire::stop(node).await;
}

/// An ApiVersions frame of `version` with a v1 request header (api key, version, correlation id,
/// client id) and `body`, built by hand because the crate cannot encode versions it does not know.
fn api_versions_frame(version: i16, correlation_id: i32, body: &[u8]) -> Bytes {
    let mut frame = BytesMut::new();
    frame.put_i16(18);
    frame.put_i16(version);
    frame.put_i32(correlation_id);
    frame.put_i16(4);
    frame.put_slice(b"test");
    frame.put_slice(body);
    frame.freeze()
}

#[tokio::test]
async fn unknown_versions_get_a_v0_answer_with_unsupported_version_and_the_ranges() {
    let node = TestNode::start().await;
    let mut client = node.connect().await;
    for (version, correlation_id) in [(5i16, 501), (127, 502), (i16::MAX, 503)] {
        // A future version's body is unknown to us; send something plausible (tagged fields).
        client
            .send_frame(&api_versions_frame(version, correlation_id, &[0, 0, 0]))
            .await
            .unwrap();
        let mut response = client
            .read_frame()
            .await
            .expect("connection closed instead of a KIP-511 answer");
        // v0 response header: the correlation id only.
        assert_eq!(response.get_i32(), correlation_id);
        let decoded = ApiVersionsResponse::decode(&mut response, 0).unwrap();
        assert_eq!(
            response.remaining(),
            0,
            "trailing bytes after the v0 answer to v{version}"
        );
        assert_eq!(
            decoded.error_code,
            ResponseError::UnsupportedVersion.code(),
            "v{version}"
        );
        assert_eq!(advertised(&decoded), served(), "v{version}");
    }
    // The connection stays usable: the client retries with a version both sides know.
    let response = client.send(&ApiVersionsRequest::default(), 0).await;
    assert_eq!(response.error_code, 0);
    let metadata = client
        .send(&MetadataRequest::default().with_topics(None), 1)
        .await;
    assert_eq!(metadata.brokers.len(), 1);
    wire::stop(node).await;
}
