//! Frame in, response out: decodes the header and body, checks the version, calls the handler and
//! encodes its response. Both transports call [`handle_frame`].
//!
//! [`handle_frame`] never waits: it decodes, starts the handler and returns the future of the
//! response. Whatever a request waits for (its in-sync replicas, the metadata log, a rebalance)
//! is inside that future, so it holds up nothing but its own response; the transports decide how
//! requests of one connection are ordered (see `crate::transport`). A produce handler queues its
//! appends before returning, so pipelined produce requests append in start order and share group
//! commits.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use super::versions;
use crate::Broker;
use crate::metrics;

/// Who is on the other end of a connection.
#[derive(Clone, Debug)]
pub enum ConnectionInfo {
    /// A Kafka client over TCP.
    Tcp(SocketAddr),
    /// A mesh peer over libp2p.
    Mesh(rafka_mesh::PeerId),
}

impl std::fmt::Display for ConnectionInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "tcp:{addr}"),
            Self::Mesh(peer) => write!(f, "p2p:{peer}"),
        }
    }
}

/// One decoded request's context.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// The API.
    pub api_key: ApiKey,
    /// Its version.
    pub version: i16,
    /// The request header.
    pub header: RequestHeader,
    /// The connection.
    pub connection: ConnectionInfo,
    /// When the frame arrived.
    pub received: Instant,
}

/// What the transport should do with a request.
pub enum Handled {
    /// Send the response frame this future yields (header + body, no size prefix); an `Err` closes
    /// the connection instead.
    Respond(BoxFuture<'static, Result<Bytes, String>>),
    /// Send nothing (acks=0 produce); an `Err` from the future closes the connection, which is how
    /// Kafka tells an acks=0 producer that something failed.
    Silent(BoxFuture<'static, Result<(), String>>),
    /// Close the connection now.
    Close(String),
}

/// A request that started (or was refused at once).
pub struct Started {
    /// What the transport does with it.
    pub handled: Handled,
    /// By when it must be answered, as its kind says ([`super::deadline`]); the mesh listener
    /// drops a request not answered by then.
    pub deadline: Duration,
}

/// Decodes one request frame and starts its handling; returns without waiting for anything (what
/// the request waits for, such as its in-sync replicas or the metadata log, is in the returned
/// future), so a transport can start the next request at once.
pub fn handle_frame(broker: &Broker, connection: &ConnectionInfo, frame: Bytes) -> Started {
    match decode(connection, frame) {
        Ok((ctx, request)) => Started {
            deadline: super::deadline::of(&request),
            handled: route(broker, ctx, request),
        },
        Err(handled) => Started {
            handled,
            deadline: Duration::ZERO,
        },
    }
}

/// Decodes a frame, or says what to do instead (answer an unknown ApiVersions version, close).
fn decode(
    connection: &ConnectionInfo,
    frame: Bytes,
) -> Result<(RequestContext, RequestKind), Handled> {
    let received = Instant::now();
    let Some((raw_key, version, correlation_id)) = fixed_header(&frame) else {
        return Err(close(
            connection,
            format!("frame of {} bytes is too short for a header", frame.len()),
        ));
    };
    let Ok(api_key) = ApiKey::try_from(raw_key) else {
        metrics::unsupported_request(raw_key, version);
        return Err(close(connection, format!("unknown API key {raw_key}")));
    };
    let served = versions::served(api_key).filter(|s| (s.min..=s.max).contains(&version));
    if served.is_none() {
        metrics::unsupported_request(raw_key, version);
        if api_key == ApiKey::ApiVersions {
            // KIP-511: answer an unknown ApiVersions version with v0 and UNSUPPORTED_VERSION, so the
            // client can retry with a version both sides know.
            return Err(ready_frame(super::api_versions::unsupported_version_frame(
                correlation_id,
            )));
        }
        return Err(close(
            connection,
            format!("{api_key:?} v{version} is not supported"),
        ));
    }
    let mut buf = frame;
    let header = match RequestHeader::decode(&mut buf, api_key.request_header_version(version)) {
        Ok(header) => header,
        Err(e) => {
            return Err(close(
                connection,
                format!("malformed {api_key:?} v{version} header: {e}"),
            ));
        }
    };
    // The decoder may panic ("capacity overflow") on absurd element counts: treat it as malformed.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        RequestKind::decode(api_key, &mut buf, version)
    }));
    let request = match decoded {
        Ok(Ok(request)) => request,
        Ok(Err(e)) => {
            return Err(close(
                connection,
                format!("malformed {api_key:?} v{version} body: {e:#}"),
            ));
        }
        Err(_) => {
            return Err(close(
                connection,
                format!("malformed {api_key:?} v{version} body: decoder panicked"),
            ));
        }
    };
    let ctx = RequestContext {
        api_key,
        version,
        header,
        connection: connection.clone(),
        received,
    };
    Ok((ctx, request))
}

/// Starts the handler of `request`. Handlers that wait (for the metadata log, in-sync replicas, a
/// new topic) do so inside the future they return, never here.
fn route(broker: &Broker, ctx: RequestContext, request: RequestKind) -> Handled {
    use super::*;
    let broker = broker.clone();
    match request {
        RequestKind::ApiVersions(r) => respond(ctx, api_versions::handle(&r)),
        RequestKind::Metadata(r) => respond_later(ctx.clone(), async move {
            metadata::handle(&broker, &ctx, r).await
        }),
        RequestKind::CreateTopics(r) => respond_later(ctx.clone(), async move {
            create_topics::handle(&broker, &ctx, r).await
        }),
        RequestKind::DeleteTopics(r) => respond_later(ctx.clone(), async move {
            delete_topics::handle(&broker, &ctx, r).await
        }),
        RequestKind::Produce(r) => produce::handle(&broker, ctx, r),
        RequestKind::Fetch(r) => respond_later(ctx.clone(), fetch::handle(broker, ctx, r)),
        RequestKind::ListOffsets(r) => respond(ctx.clone(), list_offsets::handle(&broker, &ctx, r)),
        RequestKind::FindCoordinator(r) => respond_later(ctx.clone(), async move {
            find_coordinator::handle(&broker, &ctx, r).await
        }),
        // The group APIs answer from the coordinator task; a JoinGroup or SyncGroup may be held
        // for a whole rebalance and a commit waits for its in-sync replicas, so each returns
        // its response future at once: it holds up nothing but its own response.
        RequestKind::OffsetCommit(r) => respond_later(ctx, offset_commit::handle(broker, r)),
        RequestKind::OffsetFetch(r) => {
            respond_later(ctx.clone(), offset_fetch::handle(broker, ctx, r))
        }
        RequestKind::JoinGroup(r) => respond_later(ctx.clone(), join_group::handle(broker, ctx, r)),
        RequestKind::SyncGroup(r) => respond_later(ctx.clone(), sync_group::handle(broker, ctx, r)),
        RequestKind::Heartbeat(r) => respond_later(ctx, heartbeat::handle(broker, r)),
        RequestKind::LeaveGroup(r) => {
            respond_later(ctx.clone(), leave_group::handle(broker, ctx, r))
        }
        RequestKind::DescribeGroups(r) => {
            respond_later(ctx.clone(), describe_groups::handle(broker, ctx, r))
        }
        RequestKind::ListGroups(r) => {
            respond_later(ctx.clone(), list_groups::handle(broker, ctx, r))
        }
        RequestKind::DeleteGroups(r) => respond_later(ctx, delete_groups::handle(broker, r)),
        RequestKind::OffsetDelete(r) => respond_later(ctx, offset_delete::handle(broker, r)),
        RequestKind::OffsetForLeaderEpoch(r) => {
            respond(ctx, offset_for_leader_epoch::handle(&broker, r))
        }
        RequestKind::DescribeConfigs(r) => {
            respond(ctx.clone(), describe_configs::handle(&broker, &ctx, r))
        }
        RequestKind::AlterConfigs(r) => respond_later(ctx.clone(), async move {
            alter_configs::handle_alter(&broker, r).await
        }),
        RequestKind::IncrementalAlterConfigs(r) => respond_later(ctx.clone(), async move {
            alter_configs::handle_incremental(&broker, r).await
        }),
        RequestKind::InitProducerId(r) => respond_later(ctx.clone(), async move {
            init_producer_id::handle(&broker, &ctx, r).await
        }),
        // The transaction coordinator's APIs answer from its task once their records are
        // replicated; AddPartitionsToTxn v4+ (verification) comes from other nodes only.
        RequestKind::AddPartitionsToTxn(r) => {
            respond_later(ctx.clone(), add_partitions_to_txn::handle(broker, ctx, r))
        }
        RequestKind::AddOffsetsToTxn(r) => {
            respond_later(ctx.clone(), add_offsets_to_txn::handle(broker, ctx, r))
        }
        RequestKind::EndTxn(r) => respond_later(ctx.clone(), end_txn::handle(broker, ctx, r)),
        // At the group coordinator: waits for the transaction coordinator's verification and
        // the offsets partition's in-sync replicas inside the returned future.
        RequestKind::TxnOffsetCommit(r) => {
            respond_later(ctx.clone(), txn_offset_commit::handle(broker, ctx, r))
        }
        RequestKind::DescribeTransactions(r) => {
            respond_later(ctx, describe_transactions::handle(broker, r))
        }
        RequestKind::ListTransactions(r) => {
            respond_later(ctx, list_transactions::handle(broker, r))
        }
        RequestKind::UnregisterBroker(r) => respond_later(ctx.clone(), async move {
            unregister_broker::handle(&broker, r).await
        }),
        // Broker to broker: each marker waits for its partition's in-sync replicas inside the
        // returned future.
        RequestKind::WriteTxnMarkers(r) => {
            respond_later(ctx.clone(), write_txn_markers::handle(broker, ctx, r))
        }
        _ => {
            // Unreachable while `versions::SERVED` and this match agree; a test checks they do.
            let reason = format!("no handler for {:?}", ctx.api_key);
            close(&ctx.connection, reason)
        }
    }
}

/// Reads api key, api version and correlation id without trusting the frame's length.
fn fixed_header(frame: &[u8]) -> Option<(i16, i16, i32)> {
    let mut head = frame.get(..8)?;
    Some((head.get_i16(), head.get_i16(), head.get_i32()))
}

fn close(connection: &ConnectionInfo, reason: String) -> Handled {
    tracing::warn!(%connection, %reason, "closing connection");
    Handled::Close(reason)
}

fn ready_frame(frame: Result<Bytes, String>) -> Handled {
    Handled::Respond(Box::pin(std::future::ready(frame)))
}

/// A response available now.
pub fn respond<R>(ctx: RequestContext, response: R) -> Handled
where
    R: Encodable + HeaderVersion + Send + 'static,
{
    ready_frame(encode_response(&ctx, &response))
}

/// A response that a future will produce.
pub fn respond_later<R, F>(ctx: RequestContext, future: F) -> Handled
where
    R: Encodable + HeaderVersion + Send + 'static,
    F: Future<Output = R> + Send + 'static,
{
    Handled::Respond(Box::pin(async move {
        let response = future.await;
        encode_response(&ctx, &response)
    }))
}

/// Encodes a response header and body for the request in `ctx`, and records its metrics.
pub fn encode_response<R: Encodable + HeaderVersion>(
    ctx: &RequestContext,
    response: &R,
) -> Result<Bytes, String> {
    let header = ResponseHeader::default().with_correlation_id(ctx.header.correlation_id);
    let header_version = ctx.api_key.response_header_version(ctx.version);
    let size = header
        .compute_size(header_version)
        .and_then(|h| response.compute_size(ctx.version).map(|b| h + b));
    let mut buf = BytesMut::with_capacity(size.unwrap_or(64));
    let encoded = header
        .encode(&mut buf, header_version)
        .and_then(|()| response.encode(&mut buf, ctx.version));
    match encoded {
        Ok(()) => {
            metrics::request_done(ctx.api_key, ctx.received.elapsed());
            Ok(buf.freeze())
        }
        Err(e) => {
            // A handler filled a field this version cannot carry: a bug, reported loudly.
            tracing::error!(api = ?ctx.api_key, version = ctx.version, error = %e, "cannot encode response");
            Err(format!(
                "cannot encode {:?} v{} response: {e}",
                ctx.api_key, ctx.version
            ))
        }
    }
}

/// Encodes a response with the given header version, for frames answered before decoding.
pub fn encode_raw<R: Encodable>(
    correlation_id: i32,
    response: &R,
    version: i16,
) -> Result<Bytes, String> {
    let mut buf = BytesMut::new();
    buf.put_i32(correlation_id);
    response
        .encode(&mut buf, version)
        .map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}
