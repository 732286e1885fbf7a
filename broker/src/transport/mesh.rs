//! The libp2p listener: Kafka frames from mesh peers (`/rafka/kafka/1`), answered by the same
//! dispatcher as TCP. Requests are started in arrival order; each response is sent when ready.

use bytes::Bytes;
use rafka_mesh::InboundKafka;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Broker;
use crate::api::{ConnectionInfo, Handled, handle_frame};
use crate::metrics;

const LISTENER: &str = "p2p";

/// Serves inbound mesh requests until `shutdown`.
pub async fn serve(
    mut inbound: mpsc::Receiver<InboundKafka>,
    broker: Broker,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let request = tokio::select! {
            request = inbound.recv() => match request {
                Some(request) => request,
                None => break,
            },
            () = shutdown.cancelled() => break,
        };
        metrics::transferred(LISTENER, request.frame.len(), 0);
        let info = ConnectionInfo::Mesh(request.peer);
        let reply = request.reply;
        match handle_frame(&broker, &info, request.frame).await {
            Handled::Respond(future) => {
                tasks.spawn(async move {
                    match future.await {
                        Ok(frame) => {
                            metrics::transferred(LISTENER, 0, frame.len());
                            let _ = reply.send(frame);
                        }
                        // Dropping the reply resets the stream: the peer sees the request fail.
                        Err(reason) => {
                            tracing::info!(peer = %info, %reason, "dropping mesh request")
                        }
                    }
                });
            }
            Handled::Silent(future) => {
                tasks.spawn(async move {
                    if future.await.is_ok() {
                        let _ = reply.send(Bytes::new());
                    }
                });
            }
            Handled::Close(reason) => {
                tracing::info!(peer = %info, %reason, "refusing mesh request")
            }
        }
    }
    tracing::debug!("mesh listener stopped");
}
