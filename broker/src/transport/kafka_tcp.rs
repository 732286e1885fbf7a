//! The Kafka TCP listener: 4-byte big-endian size prefix, then the frame.
//!
//! One task per connection reads frames and starts their handling in order; responses complete in
//! any order but are written in request order (Kafka's guarantee), through a bounded queue that
//! stops reading when too many requests are in flight.

use std::net::SocketAddr;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Broker;
use crate::api::{ConnectionInfo, Handled, handle_frame};
use crate::metrics::{self, ConnectionGauge};

/// Requests of one connection being handled at once before reading pauses.
const MAX_IN_FLIGHT: usize = 64;
const LISTENER: &str = "kafka";

/// What the writer does once a request's handling completes.
enum Outcome {
    Respond(Bytes),
    Nothing,
    Close(String),
}

/// Accepts connections until `shutdown`; each connection drains its in-flight requests and closes.
pub async fn serve(
    listener: TcpListener,
    broker: Broker,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let broker = broker.clone();
                    let shutdown = shutdown.clone();
                    tasks.spawn(async move {
                        if let Err(e) = connection(stream, peer, broker, shutdown).await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: log, back off briefly, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            () = shutdown.cancelled() => break,
        }
    }
    tracing::debug!("Kafka listener stopped accepting");
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Broker,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let _gauge = ConnectionGauge::open(LISTENER);
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let codec = LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(broker.config().max_request_bytes)
        .new_codec();
    let mut frames = FramedRead::with_capacity(read, codec, 64 * 1024);
    let mut writer = BufWriter::with_capacity(64 * 1024, write);
    let info = ConnectionInfo::Tcp(peer);
    let mut in_flight: FuturesOrdered<BoxFuture<'static, Outcome>> = FuturesOrdered::new();
    let mut reading = true;
    loop {
        if !reading && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            Some(outcome) = in_flight.next(), if !in_flight.is_empty() => match outcome {
                Outcome::Respond(frame) => {
                    let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
                    writer.write_all(&len.to_be_bytes()).await?;
                    writer.write_all(&frame).await?;
                    metrics::transferred(LISTENER, 0, frame.len() + 4);
                    if in_flight.is_empty() {
                        writer.flush().await?;
                    }
                }
                Outcome::Nothing => {}
                Outcome::Close(reason) => {
                    tracing::info!(%peer, %reason, "closing Kafka connection");
                    break;
                }
            },
            frame = frames.next(), if reading && in_flight.len() < MAX_IN_FLIGHT => match frame {
                Some(Ok(frame)) => {
                    metrics::transferred(LISTENER, frame.len() + 4, 0);
                    match handle_frame(&broker, &info, frame.freeze()).await {
                        Handled::Respond(future) => in_flight.push_back(future.map(|r| match r {
                            Ok(frame) => Outcome::Respond(frame),
                            Err(reason) => Outcome::Close(reason),
                        }).boxed()),
                        Handled::Silent(future) => in_flight.push_back(future.map(|r| match r {
                            Ok(()) => Outcome::Nothing,
                            Err(reason) => Outcome::Close(reason),
                        }).boxed()),
                        Handled::Close(_) => reading = false,
                    }
                }
                Some(Err(e)) => {
                    // Oversized or truncated frame: Kafka closes the connection; so do we, after
                    // answering what is already in flight.
                    tracing::info!(%peer, error = %e, "bad frame; closing Kafka connection");
                    reading = false;
                }
                None => reading = false,
            },
            () = shutdown.cancelled(), if reading => reading = false,
        }
    }
    writer.flush().await?;
    writer.into_inner().shutdown().await
}
