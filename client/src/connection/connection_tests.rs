//! Connection: version negotiation, correlation ids, timeouts, with scripted transports.

use std::sync::Mutex;

use futures::FutureExt;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse};

use super::*;

/// Answers each frame with `respond(header, body)`; `None` never answers.
struct Scripted<F> {
    respond: F,
    closed: std::sync::atomic::AtomicBool,
}

impl<F> FrameTransport for Scripted<F>
where
    F: Fn(RequestHeader, Bytes) -> Option<Bytes> + Send + Sync + 'static,
{
    fn call(&self, frame: Bytes, _: bool) -> BoxFuture<'static, Result<Option<Bytes>>> {
        let (header, body) = decode_request(frame).unwrap();
        match (self.respond)(header, body) {
            Some(frame) => futures::future::ready(Ok(Some(frame))).boxed(),
            None => futures::future::pending().boxed(),
        }
    }
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

fn scripted<F>(respond: F) -> Arc<Scripted<F>>
where
    F: Fn(RequestHeader, Bytes) -> Option<Bytes> + Send + Sync + 'static,
{
    Arc::new(Scripted {
        respond,
        closed: Default::default(),
    })
}

fn versions(keys: &[(ApiKey, i16, i16)]) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        keys.iter()
            .map(|&(k, min, max)| {
                ApiVersion::default()
                    .with_api_key(k as i16)
                    .with_min_version(min)
                    .with_max_version(max)
            })
            .collect(),
    )
}

fn endpoint() -> Endpoint {
    Endpoint::Kafka("test:1".into())
}

#[tokio::test]
async fn negotiates_the_highest_common_versions() {
    let t = scripted(|h, _| {
        assert_eq!(h.request_api_key, ApiKey::ApiVersions as i16);
        let resp = versions(&[(ApiKey::ApiVersions, 0, 4), (ApiKey::Metadata, 0, 9)]);
        Some(
            encode_response::<ApiVersionsRequest>(h.correlation_id, h.request_api_version, &resp)
                .unwrap(),
        )
    });
    let conn = Connection::negotiate(t, endpoint(), &ConnectionConfig::default())
        .await
        .unwrap();
    assert_eq!(conn.version::<MetadataRequest>().unwrap(), 9);
    assert!(matches!(
        conn.version::<kafka_protocol::messages::ProduceRequest>(),
        Err(Error::UnsupportedVersion { .. })
    ));
}

#[tokio::test]
async fn falls_back_when_the_broker_refuses_our_api_versions_version() {
    // KIP-511: an old broker answers v0 with UNSUPPORTED_VERSION and its own range.
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let t = scripted(move |h, _| {
        seen.lock().unwrap().push(h.request_api_version);
        let mut resp = versions(&[(ApiKey::ApiVersions, 0, 2), (ApiKey::Metadata, 0, 5)]);
        let version = if h.request_api_version > 2 {
            resp.error_code = 35;
            0
        } else {
            h.request_api_version
        };
        Some(encode_response::<ApiVersionsRequest>(h.correlation_id, version, &resp).unwrap())
    });
    let conn = Connection::negotiate(t, endpoint(), &ConnectionConfig::default())
        .await
        .unwrap();
    assert_eq!(*asked.lock().unwrap(), vec![4, 2]);
    assert_eq!(conn.version::<MetadataRequest>().unwrap(), 5);
}

#[tokio::test]
async fn mismatched_correlation_ids_are_protocol_errors() {
    let t = scripted(|h, _| {
        Some(
            encode_response::<MetadataRequest>(
                h.correlation_id + 1,
                9,
                &MetadataResponse::default(),
            )
            .unwrap(),
        )
    });
    let conn = Connection::with_versions(
        t,
        endpoint(),
        NegotiatedVersions::client_max(),
        &ConnectionConfig::default(),
    );
    let err = conn.send(9, &MetadataRequest::default()).await.unwrap_err();
    assert!(err.to_string().contains("correlation id"), "{err}");
}

#[tokio::test]
async fn garbage_responses_are_errors_not_panics() {
    let t = scripted(|h, _| {
        let mut frame = h.correlation_id.to_be_bytes().to_vec();
        frame.extend_from_slice(&[0xff; 7]);
        Some(Bytes::from(frame))
    });
    let conn = Connection::with_versions(
        t.clone(),
        endpoint(),
        NegotiatedVersions::client_max(),
        &ConnectionConfig::default(),
    );
    let err = conn.send(9, &MetadataRequest::default()).await.unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err}");
    assert!(t.is_closed(), "a connection that sent garbage is closed");
}

#[tokio::test]
async fn timeouts_close_the_connection() {
    let t = scripted(|_, _| None);
    let config = ConnectionConfig {
        request_timeout: Duration::from_millis(50),
        ..Default::default()
    };
    let conn = Connection::with_versions(
        t.clone(),
        endpoint(),
        NegotiatedVersions::client_max(),
        &config,
    );
    let err = conn.send(9, &MetadataRequest::default()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                api: "Metadata",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_retriable());
    assert!(conn.is_closed());
}

#[tokio::test]
async fn correlation_ids_increase() {
    let ids = Arc::new(Mutex::new(Vec::new()));
    let seen = ids.clone();
    let t = scripted(move |h, _| {
        seen.lock().unwrap().push(h.correlation_id);
        Some(
            encode_response::<MetadataRequest>(h.correlation_id, 9, &MetadataResponse::default())
                .unwrap(),
        )
    });
    let conn = Connection::with_versions(
        t,
        endpoint(),
        NegotiatedVersions::client_max(),
        &ConnectionConfig::default(),
    );
    for _ in 0..3 {
        conn.send(9, &MetadataRequest::default()).await.unwrap();
    }
    let ids = ids.lock().unwrap().clone();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
}
