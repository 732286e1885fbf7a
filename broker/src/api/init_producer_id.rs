//! InitProducerId: without a transactional id (an idempotent producer), a fresh producer id at
//! epoch 0 from any node; with one, the transaction coordinator's answer ([`crate::txn`]): the
//! id's producer id with its epoch bumped, which fences the previous producer. Transactional ids
//! are refused while transactions are not served ([`crate::txn::served`]).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::RequestContext;
use crate::Broker;
use crate::txn::core::{InitRequest, ProducerIdEpoch};

/// Answers an InitProducerId request.
pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    if let Some(id) = &request.transactional_id {
        if !crate::txn::served(broker) {
            tracing::warn!(connection = %ctx.connection, transactional_id = id.0.as_str(), "transactions are not supported yet");
            return failed(ResponseError::InvalidRequest);
        }
        return transactional(broker, ctx, &request, id.0.to_string()).await;
    }
    match broker.producer_ids().next().await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::warn!(error = %e, "cannot allocate a producer id");
            failed(ResponseError::CoordinatorNotAvailable)
        }
    }
}

fn failed(error: ResponseError) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(error.code())
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

/// A transactional producer's InitProducerId, answered by the id's coordinator (this node, or
/// NOT_COORDINATOR).
async fn transactional(
    broker: &Broker,
    ctx: &RequestContext,
    request: &InitProducerIdRequest,
    transactional_id: String,
) -> InitProducerIdResponse {
    if transactional_id.is_empty() {
        return failed(ResponseError::InvalidRequest);
    }
    // v3+: the producer the client has (-1/-1 for none); one of the two alone is malformed.
    let current = match (request.producer_id.0, request.producer_epoch) {
        (-1, -1) => None,
        (-1, _) | (_, -1) => return failed(ResponseError::InvalidRequest),
        (producer_id, epoch) => Some(ProducerIdEpoch { producer_id, epoch }),
    };
    let answer = broker
        .txns()
        .init_producer_id(InitRequest {
            transactional_id,
            timeout_ms: request.transaction_timeout_ms,
            current,
        })
        .await;
    match answer {
        Ok(producer) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(producer.producer_id))
            .with_producer_epoch(producer.epoch),
        // v0-3 clients do not know PRODUCER_FENCED (Kafka answers them INVALID_PRODUCER_EPOCH).
        Err(ResponseError::ProducerFenced) if ctx.version < 4 => {
            failed(ResponseError::InvalidProducerEpoch)
        }
        Err(error) => failed(error),
    }
}
