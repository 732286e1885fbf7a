//! The libp2p listener: Kafka frames from mesh peers (`/rafka/kafka/1`), answered by the same
//! dispatcher as TCP.
//!
//! Each mesh request travels on its own substream, so there is no connection order to keep, and
//! no request waits for another: every request is started on a task of its own as soon as it
//! arrives (a follower's fetch never queues behind a commit waiting for that very fetch), except
//! Produce requests, which start in arrival order on one task (their appends then queue in the
//! order the peer sent them; starting one only checks and queues its batches). Each response is
//! sent when ready, or the request is dropped (its substream closed) once its deadline has passed
//! ([`crate::api::deadline`]). What the request budget admitted is held until then.

use bytes::Bytes;
use futures::FutureExt;
use rafka_mesh::{Admitted, InboundKafka};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Broker;
use crate::api::{ConnectionInfo, Handled, Started, handle_frame};
use crate::metrics;

const LISTENER: &str = "p2p";

/// Serves inbound mesh requests until `shutdown`.
pub async fn serve(
    mut inbound: mpsc::Receiver<InboundKafka>,
    broker: Broker,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let (produces, queued) = mpsc::unbounded_channel();
    tasks.spawn(start_produces(queued, broker.clone(), tasks.clone()));
    loop {
        let request = tokio::select! {
            request = inbound.recv() => match request {
                Some(request) => request,
                None => break,
            },
            () = shutdown.cancelled() => break,
        };
        metrics::transferred(LISTENER, request.frame.len(), 0);
        if is_produce(&request.frame) {
            // The produce task ends only when this sender is dropped, below.
            let _ = produces.send(request);
            continue;
        }
        let broker = broker.clone();
        tasks.spawn(async move {
            let info = ConnectionInfo::Mesh(request.peer);
            let started = handle_frame(&broker, &info, request.frame);
            answer(started, info, request.reply, request.admitted).await;
        });
    }
    tracing::debug!("mesh listener stopped");
}

/// Starts produce requests one after another, in arrival order; their answers come on tasks of
/// their own.
async fn start_produces(
    mut queued: mpsc::UnboundedReceiver<InboundKafka>,
    broker: Broker,
    tasks: TaskTracker,
) {
    while let Some(request) = queued.recv().await {
        let info = ConnectionInfo::Mesh(request.peer);
        let started = handle_frame(&broker, &info, request.frame);
        tasks.spawn(answer(started, info, request.reply, request.admitted));
    }
}

/// Sends a started request's response to the peer when it is ready, unless its deadline passes
/// first; then lets go of its admission.
async fn answer(
    started: Started,
    info: ConnectionInfo,
    reply: oneshot::Sender<Bytes>,
    admitted: Option<Admitted>,
) {
    let deadline = started.deadline;
    let outcome = match started.handled {
        Handled::Respond(future) => {
            tokio::time::timeout(deadline, future.map(|r| r.map(Some))).await
        }
        Handled::Silent(future) => {
            tokio::time::timeout(deadline, future.map(|r| r.map(|()| None))).await
        }
        Handled::Close(reason) => Ok(Err(reason)),
    };
    match outcome {
        Ok(Ok(Some(frame))) => {
            metrics::transferred(LISTENER, 0, frame.len());
            let _ = reply.send(frame);
        }
        Ok(Ok(None)) => {
            let _ = reply.send(Bytes::new());
        }
        // Dropping the reply closes the substream: the peer sees the request fail.
        Ok(Err(reason)) => tracing::info!(peer = %info, %reason, "dropping mesh request"),
        Err(_) => {
            tracing::debug!(peer = %info, ?deadline, "mesh request not answered by its deadline")
        }
    }
    drop(admitted);
}

fn is_produce(frame: &[u8]) -> bool {
    matches!(frame.get(..2), Some([0, 0]))
}
