//! ApiVersions: the ranges in [`super::versions::SERVED`], nothing more.

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiVersionsRequest;
use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::messages::api_versions_response::ApiVersion;

use super::dispatch::encode_raw;
use super::versions::SERVED;

fn api_keys() -> Vec<ApiVersion> {
    SERVED
        .iter()
        .map(|s| {
            ApiVersion::default()
                .with_api_key(s.key as i16)
                .with_min_version(s.min)
                .with_max_version(s.max)
        })
        .collect()
}

/// Answers a supported ApiVersions request.
pub fn handle(request: &ApiVersionsRequest) -> ApiVersionsResponse {
    tracing::trace!(
        client = request.client_software_name.as_str(),
        client_version = request.client_software_version.as_str(),
        "ApiVersions"
    );
    // No features are finalized: in particular not `transaction.version`, so clients stay on the
    // protocol paths Rafka serves.
    ApiVersionsResponse::default()
        .with_error_code(0)
        .with_api_keys(api_keys())
}

/// The v0 answer to an ApiVersions request of a version we do not know (KIP-511).
pub fn unsupported_version_frame(correlation_id: i32) -> Result<Bytes, String> {
    let response = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys());
    encode_raw(correlation_id, &response, 0)
}
