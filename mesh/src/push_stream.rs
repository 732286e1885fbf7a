//! Push streams (`/rafka/push/stream/1`): one long-lived libp2p stream from a subscriber to its
//! home node, carrying length-prefixed frames both ways (a 4-byte big-endian length, then the
//! frame). The subscriber writes its session request; the node writes an answer frame whenever
//! it has messages for the session, without waiting to be asked again.
//!
//! A poll (`/rafka/push/1`, request-response) costs a new substream, a protocol negotiation and a
//! pass through the swarm task in both processes for every answer; on a stream the node's writer
//! and the subscriber's reader touch only the connection's own task, which is what brings a
//! pushed record to the subscriber in about the time a Kafka TCP fetch answer takes. What the
//! frames mean is the broker's business (`rafka_format::push`).
//!
//! Bytes are read and written in the caller's task: [`PushStream::next_frame`] keeps its partial
//! frame in the stream, so it may be cancelled (in a `select!`) without losing bytes.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::{AsyncRead, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, StreamProtocol};

use crate::MeshError;

/// The push stream protocol.
pub const STREAM_PROTOCOL: StreamProtocol = StreamProtocol::new("/rafka/push/stream/1");

/// The largest frame a node reads from a subscriber (its request: a session id and topics).
pub const MAX_REQUEST: usize = 64 * 1024;
/// Bytes asked of the stream at a time while a frame's length is not known yet.
const READ_CHUNK: usize = 8 * 1024;
/// The most asked at a time for the rest of a frame whose length is known.
const READ_MAX_CHUNK: usize = 1024 * 1024;

/// One push stream, either end.
pub struct PushStream {
    peer: PeerId,
    stream: libp2p::Stream,
    /// Bytes read but not yet handed out as frames.
    buffer: BytesMut,
    /// The largest frame this end reads (a longer one fails the stream).
    max_read: usize,
}

impl std::fmt::Debug for PushStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushStream")
            .field("peer", &self.peer)
            .finish()
    }
}

impl PushStream {
    fn new(peer: PeerId, stream: libp2p::Stream, max_read: usize) -> Self {
        PushStream {
            peer,
            stream,
            buffer: BytesMut::new(),
            max_read,
        }
    }

    /// The peer at the other end.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// Writes one frame and flushes it.
    pub async fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        let len = u32::try_from(frame.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "push frame over 4 GiB"))?;
        self.stream.write_all(&len.to_be_bytes()).await?;
        self.stream.write_all(frame).await?;
        self.stream.flush().await
    }

    /// The next frame; `None` once the other end closed the stream cleanly. Cancel-safe.
    pub async fn next_frame(&mut self) -> Option<io::Result<Bytes>> {
        futures::future::poll_fn(|cx| self.poll_frame(cx)).await
    }

    /// Closes the writing half (the other end reads `None`).
    pub async fn close(&mut self) {
        let _ = self.stream.close().await;
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            let mut chunk = READ_CHUNK;
            if let Some(prefix) = self.buffer.first_chunk::<4>() {
                let len = u32::from_be_bytes(*prefix) as usize;
                if len > self.max_read {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "push frame of {len} bytes over the limit of {}",
                            self.max_read
                        ),
                    ))));
                }
                if self.buffer.len() >= 4 + len {
                    self.buffer.advance(4);
                    return Poll::Ready(Some(Ok(self.buffer.split_to(len).freeze())));
                }
                chunk = (4 + len - self.buffer.len()).clamp(READ_CHUNK, READ_MAX_CHUNK);
            }
            let start = self.buffer.len();
            self.buffer.resize(start + chunk, 0);
            let (_, free) = self.buffer.split_at_mut(start);
            let read = Pin::new(&mut self.stream).poll_read(cx, free);
            let read = match read {
                Poll::Ready(Ok(n)) => n,
                other => {
                    self.buffer.truncate(start);
                    return match other {
                        Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
                        _ => Poll::Pending,
                    };
                }
            };
            self.buffer.truncate(start + read);
            if read == 0 {
                return Poll::Ready(if self.buffer.is_empty() {
                    None
                } else {
                    Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "push stream closed inside a frame",
                    )))
                });
            }
        }
    }
}

/// Opens and accepts push streams (a clone of the data plane's stream control).
#[derive(Clone)]
pub(crate) struct PushStreams {
    control: Arc<Mutex<libp2p_stream::Control>>,
    /// The largest answer a subscriber reads.
    max_answer: usize,
    open_timeout: Duration,
}

impl std::fmt::Debug for PushStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushStreams").finish_non_exhaustive()
    }
}

impl PushStreams {
    pub(crate) fn new(
        control: libp2p_stream::Control,
        max_answer: usize,
        open_timeout: Duration,
    ) -> Self {
        PushStreams {
            control: Arc::new(Mutex::new(control)),
            max_answer,
            open_timeout,
        }
    }

    fn control(&self) -> libp2p_stream::Control {
        self.control
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Opens a push stream to `peer` (connected already, or dialled at an address the swarm
    /// knows).
    pub(crate) async fn open(&self, peer: PeerId) -> Result<PushStream, MeshError> {
        let mut control = self.control();
        let opening = control.open_stream(peer, STREAM_PROTOCOL);
        let failed = |reason: String| MeshError::Request { peer, reason };
        match tokio::time::timeout(self.open_timeout, opening).await {
            Ok(Ok(stream)) => Ok(PushStream::new(peer, stream, self.max_answer)),
            Ok(Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(_))) => {
                Err(MeshError::Unsupported {
                    peer,
                    protocol: STREAM_PROTOCOL.to_string(),
                })
            }
            Ok(Err(e)) => Err(failed(e.to_string())),
            Err(_) => Err(failed("push stream not opened in time".into())),
        }
    }

    /// Starts accepting push streams (once per node).
    pub(crate) fn accept(&self) -> Result<IncomingPushStreams, MeshError> {
        let incoming = self
            .control()
            .accept(STREAM_PROTOCOL)
            .map_err(|e| MeshError::Config(format!("push streams: {e}")))?;
        Ok(IncomingPushStreams { incoming })
    }
}

/// Push streams subscribers opened to this node. Poll it continuously: a stream that arrives
/// while nobody polls is dropped by the swarm.
pub struct IncomingPushStreams {
    incoming: libp2p_stream::IncomingStreams,
}

impl std::fmt::Debug for IncomingPushStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingPushStreams")
            .finish_non_exhaustive()
    }
}

impl IncomingPushStreams {
    /// The next stream a subscriber opened; `None` once the mesh stopped.
    pub async fn next(&mut self) -> Option<PushStream> {
        let (peer, stream) = self.incoming.next().await?;
        Some(PushStream::new(peer, stream, MAX_REQUEST))
    }
}
