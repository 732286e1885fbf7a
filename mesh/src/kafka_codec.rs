//! The `/rafka/kafka/1` codec: a Kafka request frame out, its response frame back, each
//! length-prefixed as [`FrameCodec`] writes them, with two things the other protocols do without:
//!
//! - **A deadline per request.** An outbound [`Frame`] carries the deadline its caller gave (a
//!   Fetch its long-poll wait, a JoinGroup its rebalance timeout); writing the request and reading
//!   the answer fail with `TimedOut` at that instant, which ends the substream. The behaviour's own
//!   timeout is only the ceiling ([`MAX_REQUEST_DEADLINE`]).
//! - **Admission of inbound requests.** Before the body of an inbound request is read (and its
//!   memory allocated), the node's [`RequestAdmission`] is asked, with the declared length and the
//!   first bytes; it may make the request wait (a node-wide budget of request bytes). What it
//!   returns travels with the request ([`InboundKafka::admitted`](crate::InboundKafka)) and is
//!   dropped once the request is answered. Reading an inbound request, waiting included, must end
//!   within the read timeout.

use std::any::Any;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite};
use libp2p::StreamProtocol;
use tokio::time::Instant;

use crate::codec::FrameCodec;

/// The longest any Kafka request over the mesh may take (a JoinGroup waiting out a long
/// rebalance timeout); each request's own deadline is usually far shorter.
pub const MAX_REQUEST_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// How many leading bytes of a request an admission decision sees (a Kafka request's api key,
/// version and correlation id).
pub const ADMISSION_HEAD: usize = 8;

/// Held while an admitted inbound request is read and handled; dropped once it is answered.
pub type Admitted = Box<dyn Any + Send + Sync>;

/// Decides when an inbound request may be read.
pub trait RequestAdmission: Send + Sync + fmt::Debug + 'static {
    /// Resolves once a request of `len` bytes (frame without its size prefix) whose first bytes
    /// (at most [`ADMISSION_HEAD`]) are `head` may be read.
    fn admit(&self, len: usize, head: &[u8]) -> BoxFuture<'static, Admitted>;
}

/// A Kafka request frame (header and body, no size prefix) with what travels beside it in this
/// process: the deadline of an outbound request, the admission an inbound one holds.
pub struct Frame {
    /// The frame.
    pub bytes: Bytes,
    deadline: Option<Instant>,
    admitted: Option<Admitted>,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("len", &self.bytes.len())
            .field("deadline", &self.deadline)
            .field("admitted", &self.admitted.is_some())
            .finish()
    }
}

impl Frame {
    /// An outbound request that must be answered by `deadline`.
    pub fn outbound(bytes: Bytes, deadline: Instant) -> Frame {
        Frame {
            bytes,
            deadline: Some(deadline),
            admitted: None,
        }
    }

    /// The frame and its admission.
    pub fn into_parts(self) -> (Bytes, Option<Admitted>) {
        (self.bytes, self.admitted)
    }
}

/// The codec of `/rafka/kafka/1`; one clone serves one substream.
#[derive(Clone, Debug)]
pub struct KafkaCodec {
    frames: FrameCodec,
    admission: Option<Arc<dyn RequestAdmission>>,
    read_timeout: Duration,
    /// The deadline of the outbound request on this substream, once written.
    deadline: Option<Instant>,
}

impl KafkaCodec {
    /// Frames up to `max_frame_bytes`; inbound requests admitted by `admission` (all at once
    /// without one) and read within `read_timeout`.
    pub fn new(
        max_frame_bytes: usize,
        admission: Option<Arc<dyn RequestAdmission>>,
        read_timeout: Duration,
    ) -> Self {
        Self {
            frames: FrameCodec::new(max_frame_bytes),
            admission,
            read_timeout,
            deadline: None,
        }
    }

    async fn read_admitted<T: AsyncRead + Unpin + Send>(&self, io: &mut T) -> io::Result<Frame> {
        let len = self.frames.read_len(io).await?;
        let mut head = [0u8; ADMISSION_HEAD];
        let head_len = len.min(ADMISSION_HEAD);
        let head = head.get_mut(..head_len).unwrap_or_default();
        io.read_exact(head).await?;
        let admitted = match &self.admission {
            Some(admission) => Some(admission.admit(len, head).await),
            None => None,
        };
        let mut buf = BytesMut::zeroed(len);
        if let Some((start, rest)) = buf.split_at_mut_checked(head_len) {
            start.copy_from_slice(head);
            io.read_exact(rest).await?;
        }
        Ok(Frame {
            bytes: buf.freeze(),
            deadline: None,
            admitted,
        })
    }

    /// Runs `io` until the outbound request's deadline (if any).
    async fn by_deadline<R>(&self, io: impl Future<Output = io::Result<R>>) -> io::Result<R> {
        match self.deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, io)
                .await
                .unwrap_or_else(|_| Err(timed_out("the request's deadline passed"))),
            None => io.await,
        }
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}

impl libp2p::request_response::Codec for KafkaCodec {
    type Protocol = StreamProtocol;
    type Request = Frame;
    type Response = Bytes;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Frame>
    where
        T: AsyncRead + Unpin + Send,
    {
        tokio::time::timeout(self.read_timeout, self.read_admitted(io))
            .await
            .unwrap_or_else(|_| Err(timed_out("request not read within the read timeout")))
    }

    async fn read_response<T>(&mut self, p: &StreamProtocol, io: &mut T) -> io::Result<Bytes>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut frames = self.frames.clone();
        self.by_deadline(frames.read_response(p, io)).await
    }

    async fn write_request<T>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
        req: Frame,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.deadline = req.deadline;
        let mut frames = self.frames.clone();
        self.by_deadline(frames.write_request(p, io, req.bytes))
            .await
    }

    async fn write_response<T>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
        res: Bytes,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.frames.write_response(p, io, res).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use futures::io::Cursor;
    use libp2p::request_response::Codec;
    use std::pin::Pin;
    use std::sync::Mutex;
    use std::task::{Context, Poll};

    use crate::codec::KAFKA_PROTOCOL;

    /// Records what it was asked and admits everything.
    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<(usize, Vec<u8>)>>);

    impl RequestAdmission for Recorder {
        fn admit(&self, len: usize, head: &[u8]) -> BoxFuture<'static, Admitted> {
            self.0.lock().unwrap().push((len, head.to_vec()));
            async move { Box::new(len) as Admitted }.boxed()
        }
    }

    /// A peer that never sends anything more.
    struct Silent;

    impl AsyncRead for Silent {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut wire = (body.len() as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(body);
        wire
    }

    #[tokio::test]
    async fn an_inbound_request_is_admitted_on_its_length_and_head_before_its_body_is_read() {
        let recorder = Arc::new(Recorder::default());
        let mut codec = KafkaCodec::new(1024, Some(recorder.clone()), Duration::from_secs(5));
        let body = b"0123456789abcdef";
        let mut wire = Cursor::new(framed(body));
        let frame = codec
            .read_request(&KAFKA_PROTOCOL, &mut wire)
            .await
            .unwrap();
        let (bytes, admitted) = frame.into_parts();
        assert_eq!(&bytes[..], body);
        assert_eq!(admitted.unwrap().downcast_ref::<usize>(), Some(&16));
        assert_eq!(
            *recorder.0.lock().unwrap(),
            vec![(16, b"01234567".to_vec())]
        );

        // A frame shorter than the head is admitted on what there is.
        let mut wire = Cursor::new(framed(b"abc"));
        let frame = codec
            .read_request(&KAFKA_PROTOCOL, &mut wire)
            .await
            .unwrap();
        assert_eq!(&frame.bytes[..], b"abc");
        assert_eq!(recorder.0.lock().unwrap()[1], (3, b"abc".to_vec()));
    }

    #[tokio::test]
    async fn an_oversized_request_is_refused_before_admission() {
        let recorder = Arc::new(Recorder::default());
        let mut codec = KafkaCodec::new(1024, Some(recorder.clone()), Duration::from_secs(5));
        let mut wire = Cursor::new(u32::MAX.to_be_bytes().to_vec());
        let err = codec
            .read_request(&KAFKA_PROTOCOL, &mut wire)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(recorder.0.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_outbound_request_fails_at_its_deadline() {
        let mut codec = KafkaCodec::new(1024, None, Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_millis(300);
        let mut sent = Cursor::new(Vec::new());
        let frame = Frame::outbound(Bytes::from_static(b"request"), deadline);
        codec
            .write_request(&KAFKA_PROTOCOL, &mut sent, frame)
            .await
            .unwrap();
        assert_eq!(sent.into_inner(), framed(b"request"));
        // An answer that never comes: the read ends at the deadline, not before.
        let mut never = Silent;
        let started = Instant::now();
        let err = codec
            .read_response(&KAFKA_PROTOCOL, &mut never)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(Instant::now() >= deadline, "gave up early");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not at its deadline"
        );
    }

    #[tokio::test]
    async fn an_inbound_request_must_be_read_within_the_read_timeout() {
        let timeout = Duration::from_millis(300);
        let mut codec = KafkaCodec::new(1024, None, timeout);
        // Four bytes of a sixteen-byte frame, then nothing.
        let mut reader = Cursor::new(framed(b"0123456789abcdef")[..8].to_vec()).chain(Silent);
        let started = Instant::now();
        let err = codec
            .read_request(&KAFKA_PROTOCOL, &mut reader)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= timeout, "gave up early");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not at the timeout"
        );
    }
}
