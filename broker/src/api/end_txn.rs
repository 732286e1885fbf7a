//! EndTxn: commit or abort the producer's open transaction. Answered once the decision
//! (PrepareCommit or PrepareAbort) is replicated in `__transaction_state`; the markers follow.
//! Served up to v4 (transactions v1: v5 is transactions v2's epoch bump per transaction). v0-1
//! get INVALID_PRODUCER_EPOCH instead of PRODUCER_FENCED, as Kafka answers.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use super::RequestContext;
use crate::Broker;
use crate::txn::core::ProducerIdEpoch;

/// Answers an EndTxn request.
pub async fn handle(broker: Broker, ctx: RequestContext, request: EndTxnRequest) -> EndTxnResponse {
    let id = request.transactional_id.0.to_string();
    let producer = ProducerIdEpoch {
        producer_id: request.producer_id.0,
        epoch: request.producer_epoch,
    };
    let result = if id.is_empty() {
        Err(ResponseError::InvalidRequest)
    } else {
        broker.txns().end_txn(id, producer, request.committed).await
    };
    let code = txn_error_code(result, ctx.version >= 2);
    EndTxnResponse::default().with_error_code(code)
}

/// The error code of a transaction coordinator's answer. Clients of the versions before
/// PRODUCER_FENCED (`knows_fenced` false) get INVALID_PRODUCER_EPOCH instead, as Kafka answers
/// them.
pub(super) fn txn_error_code(result: Result<(), ResponseError>, knows_fenced: bool) -> i16 {
    match result {
        Ok(()) => 0,
        Err(ResponseError::ProducerFenced) if !knows_fenced => {
            ResponseError::InvalidProducerEpoch.code()
        }
        Err(error) => error.code(),
    }
}
