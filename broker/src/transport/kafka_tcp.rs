//! The Kafka TCP listener: 4-byte big-endian size prefix, then the frame.
//!
//! One task per connection reads frames and starts their handling in order; responses complete in
//! any order but are written in request order (Kafka's guarantee), through a bounded queue that
//! stops reading when too many requests are in flight. Which request may start before the ones
//! ahead of it are answered is [`Pipeline`]'s rule. A frame's body is read only once the node's
//! request budget admits it ([`super::budget`]); connections per client address are limited
//! ([`super::connections`]).

use std::net::SocketAddr;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::budget::{RequestBudget, Reservation};
use super::connections::Connections;
use super::frames::{self, FrameError};
use crate::Broker;
use crate::api::{ConnectionInfo, Handled, handle_frame};
use crate::limits::{self, Limit};
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
/// A connection from an address that has `--max-connections-per-ip` open is closed at once.
pub async fn serve(
    listener: TcpListener,
    broker: Broker,
    budget: RequestBudget,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let connections = Connections::new(broker.config().max_connections_per_ip);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(counted) = connections.open(peer.ip()) else {
                        limits::hit(
                            Limit::ConnectionsPerAddress,
                            format_args!(
                                "connection from {peer} closed: {} are open from {}",
                                connections.count(peer.ip()),
                                peer.ip()
                            ),
                        );
                        drop(stream);
                        continue;
                    };
                    let broker = broker.clone();
                    let budget = budget.clone();
                    let shutdown = shutdown.clone();
                    tasks.spawn(async move {
                        if let Err(e) = connection(stream, peer, broker, budget, shutdown).await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                        drop(counted);
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
    budget: RequestBudget,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let _gauge = ConnectionGauge::open(LISTENER);
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let max = broker.config().max_request_bytes;
    let mut frames = Box::pin(frames::frames(read, max, budget));
    let mut writer = BufWriter::with_capacity(64 * 1024, write);
    let mut pipeline = Pipeline::new(broker, ConnectionInfo::Tcp(peer));
    let mut reading = true;
    loop {
        if !reading && pipeline.in_flight.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            Some((class, outcome)) = pipeline.in_flight.next(), if !pipeline.in_flight.is_empty() => {
                match outcome {
                    Outcome::Respond(frame) => {
                        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
                        writer.write_all(&len.to_be_bytes()).await?;
                        writer.write_all(&frame).await?;
                        metrics::transferred(LISTENER, 0, frame.len() + 4);
                        if pipeline.in_flight.is_empty() {
                            writer.flush().await?;
                        }
                    }
                    Outcome::Nothing => {}
                    Outcome::Close(reason) => {
                        tracing::info!(%peer, %reason, "closing Kafka connection");
                        break;
                    }
                }
                if !pipeline.answered(class) {
                    reading = false;
                }
            },
            frame = frames.next(), if reading && pipeline.accepts() => match frame {
                Some(Ok((frame, reservation))) => {
                    metrics::transferred(LISTENER, frame.len() + 4, 0);
                    if !pipeline.arrived(frame, reservation) {
                        reading = false;
                    }
                }
                Some(Err(FrameError::TooLarge { len, max })) => {
                    // Kafka closes the connection; so do we, after answering what is in flight.
                    limits::hit(
                        Limit::RequestSize,
                        format_args!("a request of {len} bytes from {peer} (limit {max}); closing the connection"),
                    );
                    reading = false;
                }
                Some(Err(FrameError::Io(e))) => {
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

/// How a request orders against the others of its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Produce: pipelined; appends queue in start order.
    Produce,
    /// Reads with no effect a later request could depend on (Fetch, ListOffsets, OffsetFetch, ...).
    Read,
    /// Everything else (topic changes, commits, group requests, ...): later requests start only
    /// once it has been answered.
    Barrier,
}

impl Class {
    fn of(frame: &[u8]) -> Class {
        let key = match frame.get(..2) {
            Some(&[a, b]) => ApiKey::try_from(i16::from_be_bytes([a, b])).ok(),
            _ => None,
        };
        match key {
            Some(ApiKey::Produce) => Class::Produce,
            Some(
                ApiKey::Fetch
                | ApiKey::ListOffsets
                | ApiKey::OffsetFetch
                | ApiKey::ApiVersions
                | ApiKey::DescribeConfigs
                | ApiKey::OffsetForLeaderEpoch,
            ) => Class::Read,
            _ => Class::Barrier,
        }
    }
}

/// The requests of one connection: started in order, answered in order.
///
/// Produce requests are pipelined (their appends queue in order and share group commits). Any
/// other request waits until the produce requests before it have been answered, and a request
/// with effects (a barrier: CreateTopics, OffsetCommit, ...) is answered before anything after it
/// starts, as on a Kafka broker, which handles one request per connection at a time: a Fetch or
/// ListOffsets sent right after an acknowledged produce sees its records, a request after a
/// CreateTopics sees the topic. Starting never waits ([`handle_frame`] returns at once), so the
/// connection keeps writing responses while requests wait.
struct Pipeline {
    broker: Broker,
    info: ConnectionInfo,
    in_flight: FuturesOrdered<BoxFuture<'static, (Class, Outcome)>>,
    produces: usize,
    barriers: usize,
    held: Option<(Class, Bytes, Reservation)>,
}

impl Pipeline {
    fn new(broker: Broker, info: ConnectionInfo) -> Self {
        Self {
            broker,
            info,
            in_flight: FuturesOrdered::new(),
            produces: 0,
            barriers: 0,
            held: None,
        }
    }

    /// Whether another frame may be read now.
    fn accepts(&self) -> bool {
        self.held.is_none() && self.in_flight.len() < MAX_IN_FLIGHT
    }

    fn must_wait(&self, class: Class) -> bool {
        match class {
            Class::Produce => self.barriers > 0,
            Class::Read | Class::Barrier => self.produces > 0 || self.barriers > 0,
        }
    }

    /// A frame arrived: start it, or hold it until what it must follow is answered. False: close.
    fn arrived(&mut self, frame: Bytes, reservation: Reservation) -> bool {
        let class = Class::of(&frame);
        if self.must_wait(class) {
            self.held = Some((class, frame, reservation));
            return true;
        }
        self.start(class, frame, reservation)
    }

    /// A request was answered; starts the held request if it may start now. False: close.
    fn answered(&mut self, class: Class) -> bool {
        match class {
            Class::Produce => self.produces = self.produces.saturating_sub(1),
            Class::Barrier => self.barriers = self.barriers.saturating_sub(1),
            Class::Read => {}
        }
        match self.held.take() {
            Some((class, frame, reservation)) if !self.must_wait(class) => {
                self.start(class, frame, reservation)
            }
            held => {
                self.held = held;
                true
            }
        }
    }

    /// Starts a request; its reservation is given back once it has been answered.
    fn start(&mut self, class: Class, frame: Bytes, reservation: Reservation) -> bool {
        let future = match handle_frame(&self.broker, &self.info, frame).handled {
            Handled::Respond(future) => future
                .map(move |r| {
                    drop(reservation);
                    match r {
                        Ok(frame) => (class, Outcome::Respond(frame)),
                        Err(reason) => (class, Outcome::Close(reason)),
                    }
                })
                .boxed(),
            Handled::Silent(future) => future
                .map(move |r| {
                    drop(reservation);
                    match r {
                        Ok(()) => (class, Outcome::Nothing),
                        Err(reason) => (class, Outcome::Close(reason)),
                    }
                })
                .boxed(),
            Handled::Close(_) => return false,
        };
        match class {
            Class::Produce => self.produces += 1,
            Class::Barrier => self.barriers += 1,
            Class::Read => {}
        }
        self.in_flight.push_back(future);
        true
    }
}
