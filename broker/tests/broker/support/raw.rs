//! A raw Kafka client over TCP for protocol tests: every message encoded and decoded by the
//! kafka-protocol crate, versions chosen by the test.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::wire;

pub struct RawClient {
    stream: TcpStream,
    correlation_id: i32,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        RawClient {
            stream,
            correlation_id: 0,
        }
    }

    /// Encodes `request` at `version` into a frame body (header + body, no size prefix).
    pub fn encode<R: Request>(&mut self, request: &R, version: i16) -> (i32, Bytes) {
        self.correlation_id += 1;
        let body = wire::request_body(request, version, self.correlation_id, "raw-test");
        (self.correlation_id, body)
    }

    /// Sends a frame with its size prefix.
    pub async fn send_frame(&mut self, frame: &[u8]) -> std::io::Result<()> {
        let mut out = BytesMut::with_capacity(frame.len() + 4);
        out.put_u32(frame.len() as u32);
        out.put_slice(frame);
        self.stream.write_all(&out).await
    }

    /// Reads one response frame; `None` when the broker closed the connection.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let read = async {
            let mut len = [0u8; 4];
            self.stream.read_exact(&mut len).await.ok()?;
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            self.stream.read_exact(&mut body).await.ok()?;
            Some(Bytes::from(body))
        };
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .expect("no response within 30 s")
    }

    /// Sends `request` at `version` and decodes the response.
    pub async fn send<R: Request>(&mut self, request: &R, version: i16) -> R::Response {
        let (correlation_id, frame) = self.encode(request, version);
        self.send_frame(&frame).await.unwrap();
        let mut response = self
            .read_frame()
            .await
            .expect("connection closed instead of a response");
        let api_key = ApiKey::try_from(R::KEY).unwrap();
        let header =
            ResponseHeader::decode(&mut response, api_key.response_header_version(version))
                .unwrap();
        assert_eq!(header.correlation_id, correlation_id);
        let decoded = R::Response::decode(&mut response, version).unwrap();
        assert_eq!(
            response.remaining(),
            0,
            "trailing bytes in {api_key:?} v{version} response"
        );
        decoded
    }

    /// True once the broker has closed this connection (reads EOF within the timeout).
    pub async fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut byte)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}
