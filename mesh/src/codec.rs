//! The `/rafka/kafka/1` codec: one length-prefixed Kafka frame each way.
//!
//! Each side writes `u32 BE length` then that many bytes. A length over the configured maximum is
//! refused with an I/O error, which resets the stream; nothing is allocated for it.

use std::io;

use bytes::{Bytes, BytesMut};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

/// The protocol name of Kafka frames over the mesh.
pub const KAFKA_PROTOCOL: StreamProtocol = StreamProtocol::new("/rafka/kafka/1");

/// Length-prefixed frame codec with a size limit.
#[derive(Clone, Debug)]
pub struct FrameCodec {
    max_frame_bytes: usize,
}

impl FrameCodec {
    /// A codec refusing frames over `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        Self { max_frame_bytes }
    }

    /// Reads a frame's length prefix, refusing one over the limit before anything is allocated.
    pub(crate) async fn read_len<T: AsyncRead + Unpin + Send>(
        &self,
        io: &mut T,
    ) -> io::Result<usize> {
        let mut len = [0u8; 4];
        io.read_exact(&mut len).await?;
        let len = u32::from_be_bytes(len) as usize;
        if len > self.max_frame_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "frame of {len} bytes exceeds the limit of {}",
                    self.max_frame_bytes
                ),
            ));
        }
        Ok(len)
    }

    async fn read_frame<T: AsyncRead + Unpin + Send>(&self, io: &mut T) -> io::Result<Bytes> {
        let len = self.read_len(io).await?;
        let mut buf = BytesMut::zeroed(len);
        io.read_exact(&mut buf).await?;
        Ok(buf.freeze())
    }

    async fn write_frame<T: AsyncWrite + Unpin + Send>(
        &self,
        io: &mut T,
        frame: &[u8],
    ) -> io::Result<()> {
        let len = u32::try_from(frame.len())
            .ok()
            .filter(|len| *len as usize <= self.max_frame_bytes)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("frame of {} bytes exceeds the limit", frame.len()),
                )
            })?;
        io.write_all(&len.to_be_bytes()).await?;
        io.write_all(frame).await?;
        io.flush().await
    }
}

impl libp2p::request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Bytes;
    type Response = Bytes;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Bytes>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read_frame(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Bytes>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read_frame(io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Bytes,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write_frame(io, &req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Bytes,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write_frame(io, &res).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    #[tokio::test]
    async fn frames_round_trip() {
        let codec = FrameCodec::new(1024);
        let mut wire = Cursor::new(Vec::new());
        codec.write_frame(&mut wire, b"hello kafka").await.unwrap();
        wire.set_position(0);
        assert_eq!(
            &codec.read_frame(&mut wire).await.unwrap()[..],
            b"hello kafka"
        );
    }

    #[tokio::test]
    async fn oversized_frame_is_refused_without_allocating() {
        let codec = FrameCodec::new(1024);
        let mut wire = Cursor::new(u32::MAX.to_be_bytes().to_vec());
        let err = codec.read_frame(&mut wire).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let mut out = Cursor::new(Vec::new());
        let too_big = vec![0u8; 2048];
        assert!(codec.write_frame(&mut out, &too_big).await.is_err());
    }

    #[tokio::test]
    async fn truncated_frame_is_an_error() {
        let codec = FrameCodec::new(1024);
        let mut bytes = 10u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(b"abc");
        let mut wire = Cursor::new(bytes);
        assert!(codec.read_frame(&mut wire).await.is_err());
    }
}
