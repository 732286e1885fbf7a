//! Kafka's own transport: TCP, each frame behind a 4-byte big-endian size.
//!
//! Two tasks own the socket: the writer sends frames in call order (coalescing whatever is
//! queued into one flush) and records, *before* writing, where each answer must go; the reader
//! reads size-prefixed frames and hands them out in that same order, which is the order Kafka
//! answers in. Correlation ids are checked one level up, in [`super::Connection`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::debug;

use super::{ConnectionConfig, FrameTransport};
use crate::error::{Error, Result};

type Reply = oneshot::Sender<Result<Option<Bytes>>>;

struct Outgoing {
    frame: Bytes,
    reply: Reply,
    expect_response: bool,
}

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests queued for the writer before callers wait.
const QUEUE_DEPTH: usize = 1024;

/// A pipelined Kafka TCP connection.
pub struct TcpTransport {
    tx: mpsc::Sender<Outgoing>,
    closed: Arc<AtomicBool>,
    /// Shared with each call's future, so the error is only built if it fails.
    endpoint: Arc<str>,
    tasks: [JoinHandle<()>; 2],
}

impl TcpTransport {
    /// Connects to `addr` (`host:port`).
    pub async fn connect(addr: &str, config: &ConnectionConfig) -> Result<TcpTransport> {
        let connect_error = |reason: String| Error::Connect {
            endpoint: addr.to_owned(),
            reason,
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| connect_error(format!("timed out after {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| connect_error(e.to_string()))?;
        stream
            .set_nodelay(true)
            .map_err(|e| connect_error(e.to_string()))?;
        debug!(endpoint = addr, "tcp connected");
        Ok(TcpTransport::from_stream(
            stream,
            addr.to_owned(),
            config.max_frame_bytes,
        ))
    }

    fn from_stream(stream: TcpStream, endpoint: String, max_frame: usize) -> TcpTransport {
        let (read, write) = stream.into_split();
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let (pending_tx, pending_rx) = mpsc::unbounded_channel();
        let closed = Arc::new(AtomicBool::new(false));
        let writer = tokio::spawn(write_loop(
            rx,
            write,
            pending_tx,
            endpoint.clone(),
            closed.clone(),
        ));
        let reader = tokio::spawn(read_loop(
            BufReader::with_capacity(64 * 1024, read),
            pending_rx,
            max_frame,
            endpoint.clone(),
            closed.clone(),
        ));
        TcpTransport {
            tx,
            closed,
            endpoint: Arc::from(endpoint),
            tasks: [writer, reader],
        }
    }

    fn disconnected(&self, reason: &str) -> Error {
        lost(&self.endpoint, reason)
    }
}

impl FrameTransport for TcpTransport {
    fn call(
        &self,
        frame: Bytes,
        expect_response: bool,
    ) -> BoxFuture<'static, Result<Option<Bytes>>> {
        if self.is_closed() {
            return futures::future::ready(Err(self.disconnected("connection closed"))).boxed();
        }
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.clone();
        let endpoint = self.endpoint.clone();
        let pending = "connection closed while the request was pending";
        async move {
            tx.send(Outgoing {
                frame,
                reply,
                expect_response,
            })
            .await
            .map_err(|_| lost(&endpoint, pending))?;
            rx.await.map_err(|_| lost(&endpoint, pending))?
        }
        .boxed()
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.tasks.iter().any(|t| t.is_finished())
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn lost(endpoint: &str, reason: &str) -> Error {
    Error::Disconnected {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        self.close();
    }
}

async fn write_loop(
    mut rx: mpsc::Receiver<Outgoing>,
    write: OwnedWriteHalf,
    pending: mpsc::UnboundedSender<Reply>,
    endpoint: String,
    closed: Arc<AtomicBool>,
) {
    let mut writer = BufWriter::with_capacity(64 * 1024, write);
    let mut written = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(out) = next.take() {
            let result = write_frame(&mut writer, &out.frame).await;
            if let Err(e) = result {
                let _ = out.reply.send(Err(Error::Disconnected {
                    endpoint,
                    reason: e.to_string(),
                }));
                closed.store(true, Ordering::Release);
                return;
            }
            if out.expect_response {
                // The reader may only see this response after the entry is queued: queue first.
                if pending.send(out.reply).is_err() {
                    closed.store(true, Ordering::Release);
                    return;
                }
            } else {
                written.push(out.reply);
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = writer.flush().await {
            debug!(error = %e, "tcp write failed");
            closed.store(true, Ordering::Release);
            return;
        }
        for reply in written.drain(..) {
            let _ = reply.send(Ok(None));
        }
    }
}

async fn write_frame(writer: &mut BufWriter<OwnedWriteHalf>, frame: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(frame.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large"))?;
    writer.write_all(&len.to_be_bytes()).await?;
    writer.write_all(frame).await
}

async fn read_loop(
    mut reader: BufReader<OwnedReadHalf>,
    mut pending: mpsc::UnboundedReceiver<Reply>,
    max_frame: usize,
    endpoint: String,
    closed: Arc<AtomicBool>,
) {
    let reason = loop {
        let frame = match read_frame(&mut reader, max_frame).await {
            Ok(frame) => frame,
            Err(e) => break e,
        };
        match pending.recv().await {
            Some(reply) => {
                let _ = reply.send(Ok(Some(frame)));
            }
            None => break "writer stopped".to_owned(),
        }
    };
    debug!(endpoint = %endpoint, reason = %reason, "tcp connection closed");
    closed.store(true, Ordering::Release);
    pending.close();
    while let Ok(reply) = pending.try_recv() {
        let _ = reply.send(Err(Error::Disconnected {
            endpoint: endpoint.clone(),
            reason: reason.clone(),
        }));
    }
}

async fn read_frame(
    reader: &mut BufReader<OwnedReadHalf>,
    max_frame: usize,
) -> std::result::Result<Bytes, String> {
    let len = reader.read_u32().await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => "closed by the broker".to_owned(),
        _ => e.to_string(),
    })?;
    let len = usize::try_from(len).map_err(|e| e.to_string())?;
    if len > max_frame {
        return Err(format!(
            "response of {len} bytes exceeds the {max_frame}-byte limit"
        ));
    }
    // Read into spare capacity: no zeroing of (up to 100 MiB) buffers that are overwritten.
    let mut buf = BytesMut::with_capacity(len);
    while buf.len() < len {
        let want = len - buf.len();
        let n = reader
            .read_buf(&mut (&mut buf).limit(want))
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed by the broker mid-frame".to_owned());
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    /// A TCP peer that echoes every frame back, prefixed, in order.
    async fn echo_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            loop {
                let Ok(len) = sock.read_u32().await else {
                    return;
                };
                let mut buf = vec![0u8; len as usize];
                sock.read_exact(&mut buf).await.unwrap();
                sock.write_u32(len).await.unwrap();
                sock.write_all(&buf).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn pipelined_calls_get_their_own_answers() {
        let addr = echo_server().await;
        let t = Arc::new(
            TcpTransport::connect(&addr, &ConnectionConfig::default())
                .await
                .unwrap(),
        );
        let calls: Vec<_> = (0..50u32)
            .map(|i| t.call(Bytes::from(i.to_be_bytes().to_vec()), true))
            .collect();
        let answers = futures::future::join_all(calls).await;
        for (i, a) in answers.into_iter().enumerate() {
            assert_eq!(a.unwrap().unwrap().as_ref(), (i as u32).to_be_bytes());
        }
    }

    #[tokio::test]
    async fn closed_peer_fails_pending_calls() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            drop(sock);
        });
        let t = TcpTransport::connect(&addr, &ConnectionConfig::default())
            .await
            .unwrap();
        let err = t.call(Bytes::from_static(b"x"), true).await.unwrap_err();
        assert!(matches!(err, Error::Disconnected { .. }), "{err}");
        assert!(t.is_closed());
    }

    #[tokio::test]
    async fn oversized_frames_are_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let _ = sock.read_u32().await;
            sock.write_u32(u32::MAX).await.unwrap();
            let _ = sock.read_u8().await;
        });
        let config = ConnectionConfig {
            max_frame_bytes: 1024,
            ..Default::default()
        };
        let t = TcpTransport::connect(&addr, &config).await.unwrap();
        let err = t.call(Bytes::from_static(b"x"), true).await.unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
    }
}
